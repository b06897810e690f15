import numpy as np
import pytest
import torch

from lens_emotion.circuits import EmotionDirections, LastTokenActivations
from lens_emotion.geometry import SHARED_EMOTIONS, GeometryError, cross_paper, emotion_vectors

from .conftest import EMOTIONS

SEV_ORDER = ("anger", "sadness", "happiness", "fear", "surprise", "disgust")


def _setup(match=True, seed=0, d=32, n_per=15, noise=1.0):
    """crowd texts and SEV prompts that share (or do not share) per-emotion directions."""
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(13, d)) * 2
    index = np.repeat(np.arange(13), n_per)
    x = means[index] + noise * rng.normal(size=(len(index), d))
    acts = {"resid_post": np.stack([x, x]).astype(np.float32)}
    labels = [EMOTIONS[i] for i in index]
    vec = emotion_vectors(acts, labels, EMOTIONS, [0, 1])
    crowd_of = {v: k for k, v in SHARED_EMOTIONS.items()}
    six = np.stack([means[EMOTIONS.index(crowd_of[e])] for e in SEV_ORDER])
    if not match:
        six = rng.normal(size=six.shape) * 2
    dirs = six - six.mean(axis=0)
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    directions = EmotionDirections(
        SEV_ORDER, {"resid_post": torch.tensor(np.stack([dirs, dirs]), dtype=torch.float32)}
    )
    sev_em = [e for e in SEV_ORDER for _ in range(10)]
    xs = np.stack([six[SEV_ORDER.index(e)] for e in sev_em]) + noise * rng.normal(
        size=(len(sev_em), d)
    )
    sev_acts = LastTokenActivations(
        resid_post=torch.tensor(np.stack([xs, xs], axis=1), dtype=torch.float32)
    )
    return vec, directions, acts, labels, sev_acts, sev_em


def _row(result, measure, layer=1):
    t = result.table
    return t[(t.measure == measure) & (t.layer == layer)].iloc[0]


def test_matched_directions_beat_both_baselines_and_transfer():
    vec, directions, acts, labels, sev_acts, sev_em = _setup()
    result = cross_paper(
        vec, directions, crowd_acts=acts, crowd_labels=labels, sev_acts=sev_acts,
        sev_emotions=sev_em, n_boot=100, n_random=200,
    )  # fmt: skip
    diag = _row(result, "diag_cos")
    assert diag.value > 0.9 and diag.ci_low > 0.8
    assert _row(result, "perm_p").value == pytest.approx(1 / 720)
    assert _row(result, "perm_mean").value < 0.2
    assert diag.value > _row(result, "random_q95").value
    assert _row(result, "transfer_sev_by_crowd").value > 0.9
    assert _row(result, "transfer_crowd_by_sev").value > 0.9
    # joy is matched with happiness
    assert result.crowd_emotions[result.sev_emotions.index("happiness")] == "joy"
    assert result.cosines["resid_post"].shape == (2, 6, 6)


def test_unrelated_directions_do_not_beat_the_permutation_baseline():
    pvalues = []
    for seed in range(6):
        vec, directions, *_ = _setup(match=False, seed=seed)
        result = cross_paper(vec, directions, n_random=100)
        pvalues.append(_row(result, "perm_p").value)
        assert np.isnan(_row(result, "diag_cos").ci_low)  # no bootstrap without acts
    assert np.median(pvalues) > 0.1


def test_cross_paper_protocol_and_errors(tmp_path):
    vec, directions, acts, labels, *_ = _setup()
    result = cross_paper(vec, directions, crowd_acts=acts, crowd_labels=labels, n_boot=20,
                         n_random=20)  # fmt: skip
    names = [p.name for p in result.save(tmp_path)]
    assert names == ["crosspaper_mean.csv", "crosspaper_mean_cosines.csv"]
    fig = result.figure()
    assert fig.data[0].type == "heatmap" and "[" in fig.data[0].text[0][0]
    summary = result.summary()
    assert summary["n_layers"] == 2 and summary["layers_beating_permutation"] == 2
    mid = EmotionDirections(SEV_ORDER, {"resid_mid": directions.vectors["resid_post"]})
    with pytest.raises(GeometryError, match="no site in common"):
        cross_paper(vec, mid)
