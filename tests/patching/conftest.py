"""Pairs shared by the patching tests: tiny-model pairs, and real SmolLM2 pairs and grid.

Package scope: the real pairs and grid are computed once for every test module here.
"""

import pytest

from lens_emotion.inference import infer_emotions
from lens_emotion.patching import draw_pairs, patch_sites


@pytest.fixture(scope="package")
def tiny_pairs(tiny_llama, sample_dataset):
    return draw_pairs(
        tiny_llama, sample_dataset, n_pairs=6, seed=0, agreeing_only=False, progress=False
    )


@pytest.fixture(scope="package")
def real_rows(crowd_envent):
    return crowd_envent.sample(36, seed=0)


@pytest.fixture(scope="package")
def real_pairs(smollm2, real_rows):
    result = infer_emotions(smollm2, real_rows, "emotion-list", progress=False)
    return draw_pairs(smollm2, real_rows, n_pairs=3, seed=0, inference=result, progress=False)


@pytest.fixture(scope="package")
def real_grid(smollm2, real_pairs):
    """Fast-path grid at a few center layers (span 3) on the real pairs."""
    return patch_sites(smollm2, real_pairs, layers=[0, 14, 29], span=3, progress=False)
