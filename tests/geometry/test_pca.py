import numpy as np
import pytest

from lens_emotion.geometry import emotion_pca, emotion_vectors, valence_geometry
from lens_emotion.geometry.pca import pearson_rows, spearman_rows

from .conftest import EMOTIONS, planted


def _run(strength=(0.0, 1.0, 2.0), arousal_strength=0.0, seed=0, n_boot=200):
    acts, labels, ratings, u, w, valence = planted(
        seed=seed, strength=strength, arousal_strength=arousal_strength
    )
    vec = emotion_vectors(acts, labels, EMOTIONS, [0, 1, 2])
    return valence_geometry(vec, ratings, acts, n_boot=n_boot, seed=seed), u, w


def _value(result, measure, layer):
    t = result.table
    return t[(t.measure == measure) & (t.layer == layer)].iloc[0]


def test_planted_valence_axis_is_recovered():
    result, u, _ = _run()
    row = _value(result, "pc1_valence_r", 2)
    assert row.value > 0.95
    assert row.ci_low > 0.8 and row.ci_low <= row.value <= row.ci_high
    # the PC1 direction is the planted axis, oriented towards positive valence
    assert result.components["resid_post"][2, 0] @ u > 0.95
    assert _value(result, "pc1_var", 2).value > 0.5
    assert _value(result, "text_pc1_pleasantness_rho", 2).value > 0.6
    # the layer without signal does not look like valence
    assert _value(result, "pc1_valence_r", 0).value < 0.8
    peak = result.peak("pc1_valence_r")
    assert peak["layer"] == 2 and peak["relative_depth"] == 1.0


def test_planted_arousal_on_pc2():
    result, _, w = _run(strength=(0.0, 0.0, 3.0), arousal_strength=1.5)
    assert _value(result, "pc2_arousal_r", 2).value > 0.9
    assert abs(result.components["resid_post"][2, 1] @ w) > 0.9


def test_null_intervals_are_not_pushed_away_from_zero():
    """Without signal PC1's |r| is biased up, but the bootstrap CI must still reach low."""
    covered = 0
    for seed in range(8):
        result, _, _ = _run(strength=(0.0, 0.0, 0.0), seed=seed, n_boot=100)
        row = _value(result, "pc1_valence_r", 2)
        covered += row.ci_low < 0.3
    assert covered >= 6


def test_emotion_pca_on_a_known_configuration():
    v = np.zeros((4, 3))
    v[:, 0] = [-3, -1, 1, 3]
    v[:, 1] = [0.5, -0.5, -0.5, 0.5]
    comps, ratio, scores = emotion_pca(v)
    assert abs(comps[0, 0]) == pytest.approx(1.0)
    assert ratio[0] == pytest.approx(20 / 21)
    np.testing.assert_allclose(np.abs(scores[:, 0]), [3, 1, 1, 3])


def test_correlation_helpers_match_numpy_and_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(2, 30))
    assert pearson_rows(a[None], b[None])[0] == pytest.approx(np.corrcoef(a, b)[0, 1])
    b_ties = np.round(b)
    assert spearman_rows(a[None], b_ties[None])[0] == pytest.approx(spearmanr(a, b_ties)[0])


def test_per_emotion_only_without_activations():
    acts, labels, ratings, *_ = planted()
    vec = emotion_vectors(acts, labels, EMOTIONS, [0, 1, 2])
    result = valence_geometry(vec, ratings)
    assert "text_pc1_pleasantness_rho" not in set(result.table.measure)
    assert result.table.ci_low.isna().all()


def test_pca_result_protocol(tmp_path):
    result, _, _ = _run(n_boot=20)
    assert list(result.table.columns) == ["site", "layer", "measure", "value", "ci_low", "ci_high"]
    assert result.to_frame().equals(result.table)
    names = [p.name for p in result.save(tmp_path)]
    assert names == ["pca_mean_all.csv", "pca_mean_all_scores.csv"]
    assert len(result.figure().data) >= 3
    assert len(result.scatter("resid_post", 2).data) == 1
    assert result.summary()["peak_pc1_valence_r"]["layer"] == 2
