import numpy as np
import pandas as pd
import pytest

from lens_emotion.geometry import GeometryError, bootstrap_counts, emotion_vectors, probe_vectors
from lens_emotion.geometry.vectors import bootstrap_class_means, class_means, label_indices

from .conftest import EMOTIONS, planted


def test_mean_vectors_are_class_means_minus_grand_mean(planted_data):
    acts, labels, *_ = planted_data
    result = emotion_vectors(acts, labels, EMOTIONS, [0, 1, 2])
    x = acts["resid_post"][2].astype(np.float64)
    index = label_indices(labels, EMOTIONS)
    expected = class_means(x, index, 13) - x.mean(axis=0)
    np.testing.assert_allclose(result.get("resid_post", 2), expected, atol=1e-9)
    assert isinstance(result.table, pd.DataFrame)
    assert set(result.table.columns) == {"site", "layer", "emotion", "norm", "n"}
    assert result.n_rows == len(labels) and result.kind == "mean"


def test_mask_changes_the_rows_used(planted_data):
    acts, labels, *_ = planted_data
    mask = np.zeros(len(labels), dtype=bool)
    mask[::2] = True
    full = emotion_vectors(acts, labels, EMOTIONS, [0, 1, 2])
    half = emotion_vectors(acts, labels, EMOTIONS, [0, 1, 2], mask)
    assert half.n_rows == mask.sum()
    assert not np.allclose(full.get("resid_post", 1), half.get("resid_post", 1))


def test_missing_emotion_is_a_clear_error(planted_data):
    acts, labels, *_ = planted_data
    mask = np.array([lab != "joy" for lab in labels])
    with pytest.raises(GeometryError, match="joy"):
        emotion_vectors(acts, labels, EMOTIONS, [0, 1, 2], mask)
    with pytest.raises(GeometryError, match="shape"):
        emotion_vectors(acts, labels[:-1], EMOTIONS, [0, 1, 2])


def test_bootstrap_counts_keep_class_sizes_and_vary():
    index = np.repeat(np.arange(4), [3, 5, 7, 9])
    counts = bootstrap_counts(index, 50, seed=1)
    for e in range(4):
        assert (counts[:, index == e].sum(axis=1) == (index == e).sum()).all()
    assert len({tuple(c) for c in counts}) > 40
    np.testing.assert_array_equal(counts, bootstrap_counts(index, 50, seed=1))


def test_bootstrap_class_means_match_explicit_resampling():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 5))
    index = np.repeat(np.arange(3), 8)
    counts = bootstrap_counts(index, 4, seed=2)
    means = bootstrap_class_means(x, index, 3, counts)
    for b in range(4):
        rows = np.repeat(np.arange(24), counts[b])
        np.testing.assert_allclose(means[b], class_means(x[rows], index[rows], 3), atol=1e-12)


def test_probe_vectors_point_along_the_planted_axis():
    acts, labels, ratings, u, _, valence = planted(strength=(0.0, 0.0, 3.0))
    result = probe_vectors(acts, labels, EMOTIONS, [0, 1, 2])
    w = result.get("resid_post", 2)
    np.testing.assert_allclose(w.sum(axis=0), 0.0, atol=1e-8)  # centred over emotions
    proj = w @ u
    # the most pleasant emotion's weight points along +u, the least pleasant's along -u
    assert proj[np.argmax(valence)] > 0 > proj[np.argmin(valence)]
    assert np.corrcoef(proj, valence)[0, 1] > 0.9
    assert result.kind == "probe" and result.params["unconverged"] == []


def test_vectors_save_and_figure(tmp_path, planted_data):
    from safetensors.numpy import load_file

    acts, labels, *_ = planted_data
    result = emotion_vectors(acts, labels, EMOTIONS, [0, 1, 2])
    paths = result.save(tmp_path)
    assert [p.name for p in paths] == ["vectors_mean.csv", "vectors_mean.safetensors"]
    loaded = load_file(str(paths[1]))["resid_post"]
    assert loaded.shape == (3, 13, 48)
    assert len(result.figure().data) == 1
    assert result.summary()["n_layers"] == 3


def test_bias_corrected_interval_follows_the_estimate():
    from lens_emotion.geometry.vectors import bc_interval

    rng = np.random.default_rng(0)
    centred = rng.normal(0.0, 1.0, 4000)
    low, high = bc_interval(centred, 0.0)
    assert low == pytest.approx(-1.96, abs=0.1) and high == pytest.approx(1.96, abs=0.1)
    # replicates sitting below the estimate (attenuated) move the interval up to cover it
    low, high = bc_interval(centred - 1.0, 0.0)
    assert low < 0.0 < high
    assert np.isnan(bc_interval(np.array([1.0]), 0.0)[0])


def test_every_result_follows_the_result_protocol(tmp_path):
    """``.table`` attribute, ``to_frame()``, ``save(out)`` paths, ``figure()``, ``summary()``."""
    from pathlib import Path

    import plotly.graph_objects as go

    from lens_emotion.geometry import representational_similarity, valence_geometry

    from .test_crosspaper import _setup

    acts, labels, ratings, *_ = planted()
    vec = emotion_vectors(acts, labels, EMOTIONS, [0, 1, 2])
    pca = valence_geometry(vec, ratings, acts, n_boot=10)
    rsa = representational_similarity(vec, ratings.appraisal_profiles(), n_perm=9)
    from lens_emotion.geometry import cross_paper

    cvec, directions, *_ = _setup()
    cross = cross_paper(cvec, directions, n_random=10)
    for result in (vec, pca, rsa, cross):
        assert isinstance(result.table, pd.DataFrame) and not callable(result.table)
        assert result.to_frame().equals(result.table)
        paths = result.save(tmp_path / type(result).__name__)
        assert paths and all(isinstance(p, Path) and p.is_file() for p in paths)
        assert isinstance(result.figure(), go.Figure)
        assert isinstance(result.summary(), dict)
        with pytest.raises(AttributeError):
            result.kind = "changed"  # frozen
