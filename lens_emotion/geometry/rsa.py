"""Representational similarity: the model's emotion geometry against human appraisal profiles.

Per site and layer, the 13 x 13 **cosine similarity** of the emotion vectors is compared with
the 13 x 13 similarity of the **human appraisal profiles** (each emotion's mean of the 21
appraisals; each appraisal is z-scored over the emotions first, so that an appraisal rated
high for every emotion does not make all profiles look alike, and the similarity is the
cosine of those centred profiles, like the model side).

* ``rsa_rho``: Spearman correlation over the upper triangles (78 pairs for 13 emotions);
* ``rsa_p``: one-sided permutation p-value: the emotion labels of the human matrix are
  permuted (rows and columns together), ``p = (1 + #{rho_perm >= rho}) / (1 + n_perm)``.

Everything is computed in a canonical (sorted) emotion order, so the result does not depend
on the order the emotions are given in, permutations included.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from jaxtyping import Float
from scipy.stats import rankdata

from lens_emotion.geometry.errors import GeometryError
from lens_emotion.geometry.pca import GEOMETRY_COLUMNS, pearson_rows
from lens_emotion.geometry.vectors import EmotionVectorsResult
from lens_emotion.io import write_text_atomic

__all__ = [
    "RSAResult",
    "appraisal_similarity",
    "cosine_similarity_matrix",
    "representational_similarity",
    "rsa_test",
]


def cosine_similarity_matrix(
    vectors: Float[np.ndarray, "emotion d"],
) -> Float[np.ndarray, "emotion emotion"]:
    """Cosine similarity of every pair of rows."""
    v = np.asarray(vectors, dtype=np.float64)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    u = v / np.where(norms > 0, norms, 1.0)
    return u @ u.T


def appraisal_similarity(
    profiles: Float[np.ndarray, "emotion appraisal"],
) -> Float[np.ndarray, "emotion emotion"]:
    """Cosine similarity of the profiles after z-scoring each appraisal over the emotions."""
    p = np.asarray(profiles, dtype=np.float64)
    sd = p.std(axis=0, keepdims=True)
    z = (p - p.mean(axis=0, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    return cosine_similarity_matrix(z)


def rsa_test(
    model_sim: Float[np.ndarray, "emotion emotion"],
    human_sim: Float[np.ndarray, "emotion emotion"],
    n_perm: int = 999,
    seed: int = 0,
) -> tuple[float, float]:
    """Spearman over the upper triangles and its one-sided label-permutation p-value.

    Args:
        model_sim: Model similarity matrix.
        human_sim: Human similarity matrix (same emotion order).
        n_perm: Random permutations of the emotion labels (0: no p-value).
        seed: Seed of the permutations.

    Returns:
        ``(rho, p)`` (``p`` is NaN with ``n_perm = 0``).
    """
    a = np.asarray(model_sim, dtype=np.float64)
    b = np.asarray(human_sim, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise GeometryError(
            f"similarity matrices must be square, of equal size and at least 3 x 3; got "
            f"{a.shape} and {b.shape}."
        )
    i, j = np.triu_indices(a.shape[0], k=1)
    ra = rankdata(a[i, j])
    rho = float(pearson_rows(ra[None], rankdata(b[i, j])[None])[0])
    if n_perm <= 0:
        return rho, float("nan")
    rng = np.random.default_rng(seed)
    perms = np.argsort(rng.random((n_perm, a.shape[0])), axis=1)
    permuted = b[perms[:, i], perms[:, j]]  # [n_perm, pairs]
    null = pearson_rows(np.broadcast_to(ra, permuted.shape), rankdata(permuted, axis=1))
    p = (1 + int(np.sum(null >= rho - 1e-12))) / (1 + n_perm)
    return rho, float(p)


@dataclass(frozen=True, eq=False)
class RSAResult:
    """RSA of the emotion vectors against the human appraisal profiles, per site and layer.

    Attributes:
        table: Long table (:data:`~.pca.GEOMETRY_COLUMNS`): ``rsa_rho`` and ``rsa_p``.
        emotions: Canonical (sorted) emotion order of the matrices.
        layers: Layers.
        model_similarity: ``{site: [layer, emotion, emotion]}`` cosine similarities.
        human_similarity: ``[emotion, emotion]`` appraisal-profile similarity.
        kind: Vector kind.
        n_model_layers: Layers of the model (for relative depth).
        params: Permutations and seed.
    """

    table: pd.DataFrame
    emotions: tuple[str, ...]
    layers: tuple[int, ...]
    model_similarity: Mapping[str, np.ndarray] = field(repr=False)
    human_similarity: np.ndarray = field(repr=False)
    kind: str = "mean"
    n_model_layers: int = 0
    params: dict[str, Any] = field(default_factory=dict)

    def to_frame(self) -> pd.DataFrame:
        """A copy of :attr:`table`."""
        return self.table.copy()

    def save(self, out: str | Path) -> list[Path]:
        """Write ``rsa_{kind}.csv`` and ``rsa_human_similarity.csv``."""
        out = Path(out)
        human = pd.DataFrame(self.human_similarity, index=self.emotions, columns=self.emotions)
        return [
            write_text_atomic(out / f"rsa_{self.kind}.csv", self.table.to_csv(index=False)),
            write_text_atomic(out / "rsa_human_similarity.csv", human.to_csv()),
        ]

    def figure(self) -> go.Figure:
        """RSA against layer (:func:`.figures.rsa_figure`)."""
        from lens_emotion.geometry.figures import rsa_figure

        return rsa_figure(self)

    def summary(self) -> dict[str, Any]:
        """The RSA peak: rho, its p-value, layer, relative depth and site."""
        rho = self.table[self.table.measure == "rsa_rho"].dropna(subset=["value"])
        if rho.empty:
            return {"kind": self.kind, "peak_rsa_rho": float("nan")}
        best = rho.loc[rho.value.idxmax()]
        p = self.table[
            (self.table.measure == "rsa_p")
            & (self.table.site == best.site)
            & (self.table.layer == best.layer)
        ].value
        return {
            "kind": self.kind,
            "peak_rsa_rho": float(best.value),
            "peak_rsa_p": float(p.iloc[0]) if len(p) else float("nan"),
            "peak_rsa_layer": int(best.layer),
            "peak_rsa_relative_depth": round(int(best.layer) / max(1, self.n_model_layers - 1), 4),
            "site": best.site,
        }


def representational_similarity(
    vectors: EmotionVectorsResult,
    profiles: Float[np.ndarray, "emotion appraisal"],
    n_perm: int = 999,
    seed: int = 0,
    n_model_layers: int | None = None,
    emotions: Sequence[str] | None = None,
) -> RSAResult:
    """RSA per site and layer (see the module docstring).

    Args:
        vectors: The emotion vectors.
        profiles: Mean appraisal profile per emotion, in ``emotions`` order.
        n_perm: Label permutations per layer.
        seed: Seed of the permutations (the same permutations at every layer).
        n_model_layers: Layers of the model (default: the last layer + 1).
        emotions: Emotion order of ``profiles`` (default: ``vectors.emotions``).

    Returns:
        The :class:`RSAResult`.

    Raises:
        GeometryError: Profiles that do not match the emotions.
    """
    emotions = tuple(emotions or vectors.emotions)
    profiles = np.asarray(profiles, dtype=np.float64)
    if profiles.shape[0] != len(emotions) or set(emotions) != set(vectors.emotions):
        raise GeometryError(
            f"{profiles.shape[0]} profiles for emotions {emotions}, vectors for "
            f"{vectors.emotions}; pass one profile per vector emotion."
        )
    order = sorted(emotions)
    p_idx = [emotions.index(e) for e in order]
    v_idx = [vectors.emotions.index(e) for e in order]
    human = appraisal_similarity(profiles[p_idx])
    records, sims = [], {}
    for site in vectors.sites:
        per_layer = []
        for li, layer in enumerate(vectors.layers):
            model_sim = cosine_similarity_matrix(vectors.vectors[site][li][v_idx])
            per_layer.append(model_sim)
            rho, p = rsa_test(model_sim, human, n_perm, seed)
            for name, value in (("rsa_rho", rho), ("rsa_p", p)):
                records.append(
                    {"site": site, "layer": int(layer), "measure": name, "value": value,
                     "ci_low": np.nan, "ci_high": np.nan}
                )  # fmt: skip
        sims[site] = np.stack(per_layer)
    return RSAResult(
        table=pd.DataFrame(records, columns=list(GEOMETRY_COLUMNS)),
        emotions=tuple(order),
        layers=vectors.layers,
        model_similarity=sims,
        human_similarity=human,
        kind=vectors.kind,
        n_model_layers=n_model_layers or (max(vectors.layers) + 1),
        params={"n_perm": n_perm, "seed": seed},
    )
