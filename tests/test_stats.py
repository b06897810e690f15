import numpy as np
import pytest

from lens_emotion.stats import StatsError, bootstrap_mean_ci, cluster_bootstrap


def test_bootstrap_mean_ci_shapes_seed_and_coverage():
    rng = np.random.default_rng(3)
    values = rng.normal(loc=[0.0, 5.0], scale=1.0, size=(400, 2))
    mean, low, high = bootstrap_mean_ci(values, n_boot=500, seed=1)
    assert mean.shape == low.shape == high.shape == (2,)
    assert np.all(low < mean) and np.all(mean < high)
    # The interval of a mean of 400 unit-variance draws is about +-2/sqrt(400) = 0.1 wide.
    assert np.all((high - low) > 0.1) and np.all((high - low) < 0.3)
    again = bootstrap_mean_ci(values, n_boot=500, seed=1)
    assert all(np.array_equal(a, b) for a, b in zip((mean, low, high), again, strict=True))
    other = bootstrap_mean_ci(values, n_boot=500, seed=2)
    assert not np.array_equal(low, other[1])


def test_bootstrap_mean_ci_leaves_nans_out_and_handles_one_row():
    values = np.array([[1.0, np.nan], [3.0, 2.0], [5.0, 4.0]])
    mean, low, high = bootstrap_mean_ci(values, n_boot=200)
    assert mean.tolist() == [3.0, 3.0]
    assert np.isfinite(low).all() and np.isfinite(high).all()
    one = bootstrap_mean_ci(np.array([[2.0, 7.0]]))
    assert [x.tolist() for x in one] == [[2.0, 7.0]] * 3
    with pytest.raises(StatsError, match="at least one row"):
        bootstrap_mean_ci(np.zeros((0, 3)))


def test_bootstrap_matches_explicit_resampling():
    values = np.arange(10, dtype=float)
    mean, low, high = bootstrap_mean_ci(values, n_boot=300, seed=4)
    rng = np.random.default_rng(4)
    boots = [values[rng.integers(0, 10, size=10)].mean() for _ in range(300)]
    assert (low, high) == tuple(np.quantile(boots, [0.025, 0.975]))
    assert mean == 4.5


def test_cluster_bootstrap():
    values = np.array([1, 1, 0, 0, 1, 0, 1, 1], dtype=float)
    clusters = ["a", "a", "b", "b", "c", "c", "d", "d"]
    mean, low, high = cluster_bootstrap(values, clusters, n_boot=500, seed=1)
    assert mean == pytest.approx(0.625)
    assert 0 <= low <= mean <= high <= 1
    assert cluster_bootstrap(values, clusters, n_boot=500, seed=1) == (mean, low, high)
    assert cluster_bootstrap(np.ones(6), list("aabbcc"), n_boot=100) == (1.0, 1.0, 1.0)
    with pytest.raises(StatsError, match="empty"):
        cluster_bootstrap([], [])
