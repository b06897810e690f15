"""Shared fakes of the probing tests: a Gaussian activation store, toy data, fake results."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from lens_emotion.probing.appraisals import (
    APPRAISAL_PROBE_COLUMNS,
    AppraisalProbeResult,
)
from lens_emotion.probing.emotions import (
    EMOTION_PROBE_COLUMNS,
    EmotionProbeResult,
    probe_emotions,
)

SITES = ("attn_out", "mlp_out", "resid_post")
LABELS = ("anger", "fear", "joy", "sadness")
COUNTS = (50, 45, 40, 35)  # imbalanced: majority baseline 50/170
SEP = {0: 0.0, 1: 0.5, 2: 1.2, 3: 3.0}  # class separation grows with layer
SITE_GAIN = {"attn_out": 0.6, "mlp_out": 0.8, "resid_post": 1.0}
POSITION_GAIN = {-2: 0.4, -1: 1.0}


class FakeStore:
    """Gaussian class clusters whose separation grows with layer (and is largest at -1)."""

    def __init__(self, d: int = 24, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.labels = np.repeat(np.arange(len(LABELS)), COUNTS)
        rng.shuffle(self.labels)
        n = len(self.labels)
        self.ids = tuple(f"row{i:04d}" for i in range(n))
        self.sites = SITES
        self.layers = tuple(SEP)
        self.positions = tuple(POSITION_GAIN)
        self.manifest = {"kind": "fake", "seed": seed, "d_model": d}
        centers = rng.normal(size=(len(LABELS), d))
        centers /= np.linalg.norm(centers, axis=1, keepdims=True)
        scales = np.exp(rng.normal(size=d))  # anisotropic features
        offset = np.zeros(d)
        offset[0] = 300.0  # a massive residual dimension
        self._data = {}
        for s_i, site in enumerate(self.sites):
            for layer in self.layers:
                for pos in self.positions:
                    sub = np.random.default_rng([seed, s_i, layer, pos + 10])
                    gain = SEP[layer] * SITE_GAIN[site] * POSITION_GAIN[pos]
                    x = sub.normal(size=(n, d)) + gain * 2.5 * centers[self.labels]
                    self._data[(site, layer, pos)] = (x * scales + offset).astype(np.float32)

    @property
    def label_names(self) -> list[str]:
        return [LABELS[i] for i in self.labels]

    def get(self, site: str, layer: int, position: int = -1) -> np.ndarray:
        return self._data[(site, layer, position)].copy()


@pytest.fixture(scope="module")
def store() -> FakeStore:
    return FakeStore()


@pytest.fixture(scope="module")
def result(store) -> EmotionProbeResult:
    return probe_emotions(store, store.label_names, n_folds=4, seed=0, progress=False)


@pytest.fixture(scope="module")
def planted():
    """Appraisals 0-2 are linear in the activations; 3-4 are noise."""
    rng = np.random.default_rng(11)
    n, d = 240, 16
    store = FakeStore(d=d)
    x = store.get("resid_post", 2).astype(np.float64)
    xs = (x - x.mean(0)) / x.std(0)
    beta = rng.normal(size=(d, 3))
    y = np.empty((n - 70, 5))
    y[:, :3] = xs @ beta + rng.normal(size=(n - 70, 3)) * 0.3 + 3.0
    y[:, 3:] = rng.normal(size=(n - 70, 2))
    names = ["pleasantness", "goal_relevance", "control", "noise_a", "noise_b"]
    return store, y, names


def toy(n=400, d=12, k=4, seed=0, weights=None):
    rng = np.random.default_rng(seed)
    y = rng.choice(k, size=n, p=weights)
    centers = rng.normal(size=(k, d)) * 0.9
    x = centers[y] + rng.normal(size=(n, d)) * np.exp(rng.normal(size=d))
    x[:, 1] += 50.0
    return x, y


def fake_results(layers=(0, 1, 2), d=8):
    eye = np.eye(d)
    emo_dirs = {("resid_post", layer): eye[:3] * (layer + 1) for layer in layers}
    app_dirs = {
        ("resid_post", layer): np.stack([5 * eye[0], eye[6] + eye[7], -eye[1]]) for layer in layers
    }
    emotion = EmotionProbeResult(
        table=pd.DataFrame(columns=list(EMOTION_PROBE_COLUMNS)),
        folds=pd.DataFrame(),
        label_names=("joy", "fear", "anger"),
        directions=emo_dirs,
        intercepts={k: np.zeros(3) for k in emo_dirs},
    )
    appraisal = AppraisalProbeResult(
        table=pd.DataFrame(columns=list(APPRAISAL_PROBE_COLUMNS)),
        appraisal_names=("pleasantness", "suddenness", "control"),
        directions=app_dirs,
        intercepts={k: np.zeros(3) for k in app_dirs},
        alphas={k: np.ones(3) for k in app_dirs},
    )
    return emotion, appraisal
