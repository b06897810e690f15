from lens_emotion.probing.emotions import *  # noqa: F403  (temporary during the move)
from lens_emotion.probing.emotions import __all__  # noqa: F401
