"""Shared statistics: the one percentile bootstrap every analysis uses.

:func:`bootstrap_mean_ci` resamples rows (texts, pairs, prompts) with replacement and returns
the mean over the first axis with its percentile interval, for any trailing shape; NaNs are
left out of each mean (a per-token attention mass of an empty group, say).
:func:`cluster_bootstrap` resamples whole clusters (all replies of one scenario) instead.

Both draw their resamples from :func:`numpy.random.default_rng` with the given seed, so the
same seed gives the same interval.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
import pandas as pd
from jaxtyping import Float

from lens_emotion.errors import LensEmotionError

__all__ = ["StatsError", "bootstrap_mean_ci", "cluster_bootstrap"]


class StatsError(LensEmotionError, ValueError):
    """Bad input to a statistic (for example, nothing to bootstrap)."""


@contextlib.contextmanager
def _quiet_nan() -> Iterator[None]:
    """Silence NumPy's warnings about all-NaN slices (their result is NaN, as intended)."""
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def bootstrap_mean_ci(
    values: Float[np.ndarray, "n ..."] | Sequence[float] | pd.Series | pd.DataFrame,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[np.ndarray | np.floating, np.ndarray | np.floating, np.ndarray | np.floating]:
    """Mean over the first axis with a percentile-bootstrap confidence interval.

    Rows are resampled together, so the columns' intervals come from the same draws.

    Args:
        values: Samples along axis 0 (texts, pairs, prompts), any trailing shape.
        n_boot: Bootstrap resamples.
        seed: Seed of :func:`numpy.random.default_rng`.
        level: Coverage of the interval.

    Returns:
        ``(mean, low, high)``, each of the trailing shape (NumPy scalars for 1-D input). With a
        single row the interval is the mean itself.

    Raises:
        StatsError: ``values`` has no rows.
    """
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0 or arr.shape[0] == 0:
        raise StatsError("No samples to bootstrap; pass at least one row.")
    n = arr.shape[0]
    with _quiet_nan():
        mean = np.nanmean(arr, axis=0)
        if n < 2:
            return mean, mean.copy(), mean.copy()
        rng = np.random.default_rng(seed)
        idx = rng.integers(0, n, size=(n_boot, n))
        boots = np.nanmean(arr[idx], axis=1)
        alpha = (1.0 - level) / 2.0
        low, high = np.nanquantile(boots, [alpha, 1.0 - alpha], axis=0)
    return mean, low, high


def cluster_bootstrap(
    values: Sequence[float] | np.ndarray | pd.Series,
    clusters: Sequence[str] | np.ndarray | pd.Series,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[float, float, float]:
    """Mean with a percentile-bootstrap interval that resamples whole clusters.

    Args:
        values: One value per item (e.g. 1.0 for a correct reply).
        clusters: The cluster of each item (e.g. its scenario).
        n_boot: Resamples.
        seed: Seed.
        level: Coverage.

    Returns:
        ``(mean, low, high)``.

    Raises:
        StatsError: ``values`` is empty.
    """
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise StatsError("cannot bootstrap an empty set of values.")
    codes, uniques = pd.factorize(pd.Series(list(clusters)).astype(str))
    sums = np.bincount(codes, weights=x, minlength=len(uniques))
    counts = np.bincount(codes, minlength=len(uniques)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draw = rng.integers(0, len(uniques), size=(n_boot, len(uniques)))
    boot = sums[draw].sum(1) / counts[draw].sum(1)
    alpha = (1 - level) / 2
    low, high = np.quantile(boot, [alpha, 1 - alpha])
    return float(x.mean()), float(low), float(high)
