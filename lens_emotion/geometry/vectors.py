"""Emotion vectors per site and layer, at the last prompt token, and their bootstrap.

Two kinds:

* ``"mean"`` (:func:`emotion_vectors`): each emotion's mean activation minus the grand mean
  over the rows used (all rows, the agreeing subset, or any other mask);
* ``"probe"`` (:func:`probe_vectors`): the weight vectors of a multinomial logistic-regression
  emotion probe fitted on the same rows, mapped back from the standardised space it was
  fitted in to the model's raw activation space (``logits = x @ W.T + b``), and centred over
  the emotions (softmax ignores a vector added to every class, so only the centred part
  means anything).

The bootstrap over texts (:func:`bootstrap_counts`, :func:`bootstrap_class_means`) resamples
texts with replacement *within* each emotion, so every replicate keeps the class sizes; it
is shared by the PCA and cross-paper analyses so their intervals use the same replicates.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import torch
from jaxtyping import Bool, Float, Int
from safetensors.torch import save

from lens_emotion.geometry.errors import GeometryError
from lens_emotion.io import write_bytes_atomic, write_text_atomic

__all__ = [
    "VECTOR_KINDS",
    "EmotionVectorsResult",
    "bc_interval",
    "bootstrap_class_means",
    "bootstrap_counts",
    "class_means",
    "emotion_vectors",
    "label_indices",
    "probe_vectors",
]

#: The kinds of emotion vector.
VECTOR_KINDS: tuple[str, ...] = ("mean", "probe")


def label_indices(labels: Sequence[str], emotions: Sequence[str]) -> Int[np.ndarray, " n"]:
    """Emotion index of each label.

    Raises:
        GeometryError: A label is not among ``emotions``.
    """
    column = {e: i for i, e in enumerate(emotions)}
    bad = sorted({lab for lab in labels if lab not in column})
    if bad:
        raise GeometryError(f"labels {bad} are not among the emotions {tuple(emotions)}.")
    return np.asarray([column[lab] for lab in labels], dtype=np.int64)


def class_means(
    x: Float[np.ndarray, "n d"], index: Int[np.ndarray, " n"], n_emotions: int
) -> Float[np.ndarray, "emotion d"]:
    """Mean row per emotion (NaN for an emotion without rows)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full((n_emotions, x.shape[1]), np.nan)
    for e in range(n_emotions):
        rows = index == e
        if rows.any():
            out[e] = x[rows].mean(axis=0)
    return out


def _centred_means(
    x: Float[np.ndarray, "n d"], index: Int[np.ndarray, " n"], n_emotions: int
) -> Float[np.ndarray, "emotion d"]:
    """Class means minus the grand mean of the rows."""
    return class_means(x, index, n_emotions) - np.asarray(x, dtype=np.float64).mean(axis=0)


def bootstrap_counts(
    index: Int[np.ndarray, " n"], n_boot: int, seed: int = 0
) -> Int[np.ndarray, "boot n"]:
    """How often each row is drawn in each replicate (resampling within each emotion).

    Args:
        index: Emotion index of each row.
        n_boot: Replicates.
        seed: Seed of the draws.

    Returns:
        ``[n_boot, n]`` counts; within every emotion the counts of a replicate sum to that
        emotion's number of rows.
    """
    index = np.asarray(index)
    rng = np.random.default_rng(seed)
    counts = np.zeros((n_boot, len(index)), dtype=np.int32)
    for e in np.unique(index):
        rows = np.flatnonzero(index == e)
        draws = rng.integers(0, len(rows), size=(n_boot, len(rows)))
        for b in range(n_boot):
            counts[b, rows] = np.bincount(draws[b], minlength=len(rows))
    return counts


def bootstrap_class_means(
    x: Float[np.ndarray, "n d"],
    index: Int[np.ndarray, " n"],
    n_emotions: int,
    counts: Int[np.ndarray, "boot n"],
) -> Float[np.ndarray, "boot emotion d"]:
    """Class means of every bootstrap replicate (``counts`` from :func:`bootstrap_counts`)."""
    x = np.asarray(x, dtype=np.float64)
    out = np.full((counts.shape[0], n_emotions, x.shape[1]), np.nan)
    for e in range(n_emotions):
        rows = np.flatnonzero(index == e)
        if len(rows):
            w = counts[:, rows].astype(np.float64)
            out[:, e] = (w @ x[rows]) / w.sum(axis=1, keepdims=True)
    return out


def bc_interval(
    replicates: Float[np.ndarray, " boot"], observed: float, level: float = 0.95
) -> tuple[float, float]:
    """Bias-corrected percentile interval of a bootstrap distribution.

    Replicates of statistics built from resampled class means are noisier than the estimate
    itself (their PCs and cosines are attenuated), so their median sits below it and the
    plain percentile interval can even miss the estimate. The bias correction shifts the
    percentiles by ``z0 = Phi^-1(share of replicates below the estimate)`` (Efron 1987):
    ``(Phi(2 z0 - z), Phi(2 z0 + z))``. ``(nan, nan)`` with fewer than 2 finite replicates.
    """
    from scipy.stats import norm

    values = np.asarray(replicates, dtype=np.float64)
    values = values[np.isfinite(values)]
    if len(values) < 2 or not np.isfinite(observed):
        return float("nan"), float("nan")
    below = (np.sum(values < observed) + 0.5 * np.sum(values == observed)) / len(values)
    below = float(np.clip(below, 1 / (len(values) + 1), len(values) / (len(values) + 1)))
    z0 = norm.ppf(below)
    z = norm.ppf(0.5 + level / 2)
    lo, hi = norm.cdf(2 * z0 - z), norm.cdf(2 * z0 + z)
    low, high = np.quantile(values, [lo, hi])
    return float(low), float(high)


@dataclass(frozen=True, eq=False)
class EmotionVectorsResult:
    """Emotion vectors per site and layer.

    Attributes:
        table: One row per (site, layer, emotion): ``norm`` of the vector and ``n`` rows of
            that emotion.
        emotions: Emotion names, in the order of the emotion axis.
        layers: Layers, in the order of the layer axis.
        vectors: ``{site: [layer, emotion, d_model]}`` (float64).
        kind: ``"mean"`` or ``"probe"``.
        n_rows: Rows the vectors were computed from.
        params: Settings (mask, probe C, convergence ...).
    """

    table: pd.DataFrame
    emotions: tuple[str, ...]
    layers: tuple[int, ...]
    vectors: Mapping[str, np.ndarray] = field(repr=False)
    kind: str = "mean"
    n_rows: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def sites(self) -> tuple[str, ...]:
        """The sites held."""
        return tuple(self.vectors)

    def get(self, site: str, layer: int) -> Float[np.ndarray, "emotion d_model"]:
        """The vectors at one site and layer.

        Raises:
            GeometryError: Unknown site or layer.
        """
        if site not in self.vectors:
            raise GeometryError(f"no vectors at site {site!r}; available: {self.sites}.")
        if layer not in self.layers:
            raise GeometryError(f"layer {layer} not computed; available: {list(self.layers)}.")
        return self.vectors[site][self.layers.index(layer)]

    def to_frame(self) -> pd.DataFrame:
        """A copy of :attr:`table`."""
        return self.table.copy()

    def save(self, out: str | Path) -> list[Path]:
        """Write ``vectors_{kind}.csv`` (norms) and ``vectors_{kind}.safetensors``.

        The safetensors file holds one ``[layer, emotion, d_model]`` float32 tensor per site,
        with the emotions, layers and kind in its metadata.
        """
        out = Path(out)
        tensors = {s: torch.from_numpy(v.astype(np.float32)) for s, v in self.vectors.items()}
        meta = {
            "emotions": json.dumps(list(self.emotions)),
            "layers": json.dumps(list(self.layers)),
            "kind": self.kind,
        }
        return [
            write_text_atomic(out / f"vectors_{self.kind}.csv", self.table.to_csv(index=False)),
            write_bytes_atomic(out / f"vectors_{self.kind}.safetensors", save(tensors, meta)),
        ]

    def figure(self, site: str | None = None) -> go.Figure:
        """Vector norm per emotion and layer (:func:`.figures.vector_norms_figure`)."""
        from lens_emotion.geometry.figures import vector_norms_figure

        return vector_norms_figure(self, site)

    def summary(self) -> dict[str, Any]:
        """Kind, rows, sites and layers."""
        return {
            "kind": self.kind,
            "n_rows": self.n_rows,
            "sites": list(self.sites),
            "n_layers": len(self.layers),
        }


def _check_acts(
    acts: Mapping[str, np.ndarray], labels: Sequence[str], layers: Sequence[int]
) -> None:
    if not acts:
        raise GeometryError("no activations given; pass {site: [layer, n, d]} arrays.")
    for site, value in acts.items():
        if value.ndim != 3 or value.shape[0] != len(layers) or value.shape[1] != len(labels):
            raise GeometryError(
                f"activations at {site!r} have shape {tuple(value.shape)}; expected "
                f"[{len(layers)} layers, {len(labels)} rows, d_model] (one row per label)."
            )


def _rows(mask: Bool[np.ndarray, " n"] | None, n: int) -> Int[np.ndarray, " m"]:
    if mask is None:
        return np.arange(n)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != (n,):
        raise GeometryError(f"mask has shape {mask.shape}; pass one boolean per row ({n}).")
    return np.flatnonzero(mask)


def _norm_table(
    vectors: Mapping[str, np.ndarray],
    layers: Sequence[int],
    emotions: Sequence[str],
    counts: np.ndarray,
) -> pd.DataFrame:
    rows = []
    for site, v in vectors.items():
        norms = np.linalg.norm(v, axis=-1)
        for li, layer in enumerate(layers):
            for e, emotion in enumerate(emotions):
                rows.append(
                    {
                        "site": site,
                        "layer": int(layer),
                        "emotion": emotion,
                        "norm": float(norms[li, e]),
                        "n": int(counts[e]),
                    }
                )
    return pd.DataFrame(rows, columns=["site", "layer", "emotion", "norm", "n"])


def emotion_vectors(
    acts: Mapping[str, Float[np.ndarray, "layer n d"]],
    labels: Sequence[str],
    emotions: Sequence[str],
    layers: Sequence[int],
    mask: Bool[np.ndarray, " n"] | None = None,
) -> EmotionVectorsResult:
    """Class mean minus grand mean, per site and layer.

    Args:
        acts: ``{site: [layer, n, d]}`` last-token activations, one row per label.
        labels: The human emotion label of each row.
        emotions: Emotion order of the result.
        layers: The layers of the layer axis.
        mask: Rows to use (e.g. the agreeing subset); ``None``: all.

    Returns:
        The ``"mean"`` :class:`EmotionVectorsResult`.

    Raises:
        GeometryError: Shapes that do not match, unknown labels, or an emotion without rows.
    """
    _check_acts(acts, labels, layers)
    rows = _rows(mask, len(labels))
    index = label_indices([labels[i] for i in rows], emotions)
    counts = np.bincount(index, minlength=len(emotions))
    if (counts == 0).any():
        missing = [e for e, c in zip(emotions, counts, strict=True) if c == 0]
        raise GeometryError(
            f"no rows of {missing} among the {len(rows)} rows used; use more rows or all rows."
        )
    vectors = {
        site: np.stack([_centred_means(x[li, rows], index, len(emotions)) for li in range(len(x))])
        for site, x in acts.items()
    }
    return EmotionVectorsResult(
        table=_norm_table(vectors, layers, emotions, counts),
        emotions=tuple(emotions),
        layers=tuple(int(v) for v in layers),
        vectors=vectors,
        kind="mean",
        n_rows=len(rows),
        params={"masked": mask is not None},
    )


def probe_vectors(
    acts: Mapping[str, Float[np.ndarray, "layer n d"]],
    labels: Sequence[str],
    emotions: Sequence[str],
    layers: Sequence[int],
    mask: Bool[np.ndarray, " n"] | None = None,
    C: float = 1.0,  # noqa: N803 - scikit-learn's name
    max_iter: int = 500,
) -> EmotionVectorsResult:
    """Weight vectors of an emotion probe per site and layer, in the raw activation space.

    One L2 multinomial logistic regression (class-balanced, fitted on standardised features,
    :func:`lens_emotion.probing.solvers.fit_logistic_regression`) per site and layer on the
    selected rows; its weights are mapped back to raw space and centred over the emotions.

    Args:
        acts: ``{site: [layer, n, d]}`` last-token activations.
        labels: The human emotion label of each row.
        emotions: Emotion order of the result.
        layers: The layers of the layer axis.
        mask: Rows to use; ``None``: all.
        C: Inverse L2 strength.
        max_iter: L-BFGS iteration limit per fit.

    Returns:
        The ``"probe"`` :class:`EmotionVectorsResult` (``params["unconverged"]`` lists fits
        that stopped at the limit).
    """
    from lens_emotion.probing.solvers import fit_logistic_regression

    _check_acts(acts, labels, layers)
    rows = _rows(mask, len(labels))
    index = label_indices([labels[i] for i in rows], emotions)
    counts = np.bincount(index, minlength=len(emotions))
    if (counts == 0).any():
        raise GeometryError("every emotion needs rows to fit a probe; use more rows.")
    vectors: dict[str, np.ndarray] = {}
    unconverged = []
    for site, x in acts.items():
        per_layer = []
        for li, layer in enumerate(layers):
            probe = fit_logistic_regression(
                x[li, rows], index, len(emotions), C=C, max_iter=max_iter, tol=1e-5
            )
            if not probe.converged:
                unconverged.append(f"{site}.{layer}")
            w = probe.coef
            per_layer.append(w - w.mean(axis=0, keepdims=True))
        vectors[site] = np.stack(per_layer)
    return EmotionVectorsResult(
        table=_norm_table(vectors, layers, emotions, counts),
        emotions=tuple(emotions),
        layers=tuple(int(v) for v in layers),
        vectors=vectors,
        kind="probe",
        n_rows=len(rows),
        params={
            "masked": mask is not None,
            "C": C,
            "max_iter": max_iter,
            "unconverged": unconverged,
        },  # fmt: skip
    )
