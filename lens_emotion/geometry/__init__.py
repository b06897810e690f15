"""Emotion geometry: is the model's emotion space organised like human affect?

And do the crowd-enVENT (Tak et al.) and SEV (Wang et al.) directions agree?

Modules:

* :mod:`.ratings` - the human side: per-text valence, pleasantness, intensity, appraisals.
* :mod:`.vectors` - emotion vectors per site and layer (class means, probe weights) and the
  bootstrap over texts.
* :mod:`.pca` - principal components, variance explained, valence/arousal correlations.
* :mod:`.rsa` - model vs human similarity matrices, with a label-permutation p-value.
* :mod:`.crosspaper` - crowd-enVENT vectors vs SEV context-agnostic directions.
* :mod:`.figures` - Plotly figures (pure).
* :mod:`.workflow` - the end-to-end run behind ``lens-emotion geometry``.
"""

from lens_emotion.geometry.crosspaper import (
    SHARED_EMOTIONS,
    CrossPaperResult,
    cross_paper,
)
from lens_emotion.geometry.errors import GeometryError
from lens_emotion.geometry.pca import GEOMETRY_COLUMNS, PCAResult, emotion_pca, valence_geometry
from lens_emotion.geometry.ratings import HumanRatings, human_ratings
from lens_emotion.geometry.rsa import (
    RSAResult,
    appraisal_similarity,
    cosine_similarity_matrix,
    representational_similarity,
    rsa_test,
)
from lens_emotion.geometry.vectors import (
    VECTOR_KINDS,
    EmotionVectorsResult,
    bootstrap_counts,
    emotion_vectors,
    probe_vectors,
)
from lens_emotion.geometry.workflow import GeometryOutputs, GeometrySettings, run_geometry

__all__ = [
    "GEOMETRY_COLUMNS",
    "SHARED_EMOTIONS",
    "VECTOR_KINDS",
    "CrossPaperResult",
    "EmotionVectorsResult",
    "GeometryError",
    "GeometryOutputs",
    "GeometrySettings",
    "HumanRatings",
    "PCAResult",
    "RSAResult",
    "appraisal_similarity",
    "bootstrap_counts",
    "cosine_similarity_matrix",
    "cross_paper",
    "emotion_pca",
    "emotion_vectors",
    "human_ratings",
    "probe_vectors",
    "representational_similarity",
    "rsa_test",
    "run_geometry",
    "valence_geometry",
]
