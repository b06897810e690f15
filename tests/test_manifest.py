"""Tests of lens_emotion/manifest.py's run-start helpers."""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from lens_emotion.manifest import override_seed_formats, start_run


@dataclass(frozen=True)
class _Settings:
    seed: int = 0
    formats: tuple[str, ...] = ("html",)
    other: int = 3


def test_start_run_seeds_and_creates_the_folder(tmp_path):
    out = start_run(7, tmp_path / "a" / "b")
    assert out == tmp_path / "a" / "b" and out.is_dir()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    start_run(7, str(out))  # an existing folder is fine
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_override_seed_formats_replaces_only_what_is_given():
    s = _Settings()
    assert override_seed_formats(s, None, None) is s
    assert override_seed_formats(s, 5, None) == _Settings(seed=5)
    assert override_seed_formats(s, None, ["png", "svg"]) == _Settings(formats=("png", "svg"))
    assert override_seed_formats(s, 2, ("svg",)) == _Settings(seed=2, formats=("svg",))
