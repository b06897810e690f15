"""``python -m lens_emotion.cli``."""

import sys

from lens_emotion.cli.main import main

sys.exit(main())
