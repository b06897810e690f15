"""Attention mass: how much the final token attends to each token group, layer by layer.

:func:`attention_mass` sums the final token's attention over each group (see
:mod:`lens_emotion.attention.tokens`), per layer and head, and over the two halves of the
event text (``emotion`` = emotion-bearing, ``context_rest`` = the other context tokens; see
:mod:`lens_emotion.attention.saliency`). Results come both in total (the group's share of the
attention, groups sum to 1) and per token (total divided by the group's token count), with
seeded percentile-bootstrap 95% confidence intervals over prompts
(:func:`lens_emotion.stats.bootstrap_mean_ci`).

Example::

    result = attention_mass(model, data, template="emotion-list")
    result.band_frame()            # early / middle / late thirds, with intervals
    result.figure("per_token")     # mass by group vs layer, CI bands
    result.heatmap("emotion")      # layer x head map of attention to emotion-bearing tokens
    result.save("out/attention")   # CSV + JSON, atomic
"""

from __future__ import annotations

import contextlib
import json
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from jaxtyping import Float, Int

from lens_emotion.attention.patterns import AttentionPatterns, check_layers, iter_patterns
from lens_emotion.attention.saliency import Saliency, prompts_with_saliency
from lens_emotion.attention.tokens import (
    CONTEXT,
    GROUP_NAMES,
    MASS_GROUPS,
    AttentionError,
    TokenGroups,
    shared_prefix_length,
)
from lens_emotion.data import EmotionDataset
from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.models import EmotionModel
from lens_emotion.prompts import PromptTemplate
from lens_emotion.stats import bootstrap_mean_ci

if TYPE_CHECKING:
    import plotly.graph_objects as go

__all__ = [
    "NORMALISATIONS",
    "AttentionMassResult",
    "attention_mass",
    "bootstrap_ci",
    "group_counts",
    "group_masses",
    "layer_bands",
]


def group_masses(
    final: Float[np.ndarray, "layer head key"],
    groups: Int[np.ndarray, " key"],
    emotion_positions: Int[np.ndarray, " k"],
) -> Float[np.ndarray, "layer head group"]:
    """Final-token attention mass on each of :data:`MASS_GROUPS` (total, not per token)."""
    out = np.zeros((*final.shape[:2], len(MASS_GROUPS)), dtype=np.float64)
    for code in range(len(GROUP_NAMES)):
        out[..., code] = final[..., groups == code].sum(axis=-1)
    emotion = np.zeros(len(groups), dtype=bool)
    emotion[emotion_positions] = True
    out[..., 4] = final[..., emotion].sum(axis=-1)
    out[..., 5] = final[..., (groups == CONTEXT) & ~emotion].sum(axis=-1)
    return out


def group_counts(groups: Int[np.ndarray, " key"], n_emotion: int) -> Int[np.ndarray, " group"]:
    """Token count of each of :data:`MASS_GROUPS`."""
    counts = [int((groups == code).sum()) for code in range(len(GROUP_NAMES))]
    return np.asarray([*counts, n_emotion, counts[CONTEXT] - n_emotion], dtype=np.int64)


def bootstrap_ci(
    values: Float[np.ndarray, "n ..."],
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin alias of :func:`lens_emotion.stats.bootstrap_mean_ci` (``ci`` is its ``level``).

    Kept because it was public here; new code calls :func:`~lens_emotion.stats.bootstrap_mean_ci`.
    """
    return bootstrap_mean_ci(values, n_boot, seed, ci)


@contextlib.contextmanager
def _quiet_nan() -> Iterator[None]:
    """Silence NumPy's all-NaN-slice warnings (their result, NaN, is intended)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def layer_bands(n_layers: int) -> dict[str, tuple[int, ...]]:
    """Split ``0..n_layers-1`` into thirds: ``early``, ``middle``, ``late``."""
    parts = np.array_split(np.arange(n_layers), 3)
    return {
        name: tuple(int(x) for x in part)
        for name, part in zip(("early", "middle", "late"), parts, strict=True)
    }


NORMALISATIONS: tuple[str, ...] = ("total", "per_token")
"""How mass is normalised: ``total`` (share of the attention) or ``per_token``."""


@dataclass(frozen=True)
class AttentionMassResult:
    """How much the final token attends to each token group, per prompt, layer and head.

    Attributes:
        model_id: The model.
        template: Template name.
        ids: Prompt ids.
        labels: Human label per prompt.
        predictions: Predicted label per prompt.
        n_layers: Layers of the model (for the early/middle/late bands).
        layers: Layers analysed.
        heads: Query heads analysed.
        mass: Total attention mass ``(n, layer, head, group)`` over :data:`MASS_GROUPS`.
        n_tokens: Tokens per group ``(n, group)``.
        n_boot: Bootstrap resamples for the intervals.
        seed: Bootstrap seed.
        ci: Interval coverage.
        saliency: The occlusion saliency that defines the emotion-bearing tokens.
        groups: Token groups per prompt.
        patterns: The final-token patterns, if kept (``keep_patterns=True``).
    """

    model_id: str
    template: str
    ids: tuple[str, ...]
    labels: tuple[str, ...]
    predictions: tuple[str, ...]
    n_layers: int
    layers: tuple[int, ...]
    heads: tuple[int, ...]
    mass: Float[np.ndarray, "n layer head group"] = field(repr=False)
    n_tokens: Int[np.ndarray, "n group"] = field(repr=False)
    n_boot: int = 1000
    seed: int = 0
    ci: float = 0.95
    saliency: Saliency | None = field(default=None, repr=False)
    groups: tuple[TokenGroups, ...] = field(default=(), repr=False)
    patterns: AttentionPatterns | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def per_token(self) -> Float[np.ndarray, "n layer head group"]:
        """Mass divided by the group's token count (NaN for an empty group)."""
        counts = self.n_tokens[:, None, None, :].astype(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(counts > 0, self.mass / np.maximum(counts, 1), np.nan)

    def values(self, normalise: str = "total") -> Float[np.ndarray, "n layer head group"]:
        """``mass`` (``"total"``) or :attr:`per_token` (``"per_token"``)."""
        if normalise not in NORMALISATIONS:
            raise AttentionError(f"normalise must be 'total' or 'per_token', not {normalise!r}.")
        return self.mass if normalise == "total" else self.per_token

    @cached_property
    def _layer_stats(self) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
        return {
            norm: bootstrap_mean_ci(self.values(norm).mean(axis=2), self.n_boot, self.seed, self.ci)
            for norm in NORMALISATIONS
        }

    def layer_stats(
        self, normalise: str = "total"
    ) -> tuple[
        Float[np.ndarray, "layer group"],
        Float[np.ndarray, "layer group"],
        Float[np.ndarray, "layer group"],
    ]:
        """``(mean, low, high)`` per layer and group over prompts (heads averaged first)."""
        self.values(normalise)  # validates the option
        return self._layer_stats[normalise]

    def head_mean(self, normalise: str = "total") -> Float[np.ndarray, "layer head group"]:
        """Mean over prompts per layer, head and group (NaN where every prompt has NaN)."""
        with _quiet_nan():
            return np.nanmean(self.values(normalise), axis=0)

    @cached_property
    def _frame(self) -> pd.DataFrame:
        rows = []
        for norm in NORMALISATIONS:
            mean, low, high = self._layer_stats[norm]
            for li, layer in enumerate(self.layers):
                for gi, group in enumerate(MASS_GROUPS):
                    rows.append(
                        {
                            "layer": layer,
                            "group": group,
                            "normalise": norm,
                            "mean": mean[li, gi],
                            "ci_low": low[li, gi],
                            "ci_high": high[li, gi],
                            "n": len(self),
                        }
                    )
        return pd.DataFrame(rows)

    @property
    def table(self) -> pd.DataFrame:
        """Per layer and group, both normalisations, with bootstrap intervals over prompts.

        Heads are averaged within each prompt first. Columns: layer, group, normalise
        (``total`` or ``per_token``), mean, ci_low, ci_high, n.
        """
        return self._frame

    def to_frame(self) -> pd.DataFrame:
        """:attr:`table` as a new DataFrame."""
        return self._frame.copy()

    def head_frame(self) -> pd.DataFrame:
        """Per layer, head and group, both normalisations: mean over prompts."""
        rows = []
        for norm in NORMALISATIONS:
            mean = self.head_mean(norm)
            for li, layer in enumerate(self.layers):
                for hi, head in enumerate(self.heads):
                    for gi, group in enumerate(MASS_GROUPS):
                        rows.append(
                            {
                                "layer": layer,
                                "head": head,
                                "group": group,
                                "normalise": norm,
                                "mean": mean[li, hi, gi],
                            }
                        )
        return pd.DataFrame(rows)

    def band_frame(self) -> pd.DataFrame:
        """Early / middle / late thirds of the model, per group and normalisation.

        Each value is the mean over the band's analysed layers and all heads, with bootstrap
        intervals over prompts. Group ``emotion_enrichment`` is the per-token mass on
        emotion-bearing tokens divided by the per-token mass on the rest of the event text
        (ratio of means).
        """
        rows = []
        for band, members in layer_bands(self.n_layers).items():
            sel = [i for i, layer in enumerate(self.layers) if layer in members]
            if not sel:
                continue
            for norm in NORMALISATIONS:
                vals = self.values(norm)[:, sel].mean(axis=(1, 2))
                mean, low, high = bootstrap_mean_ci(vals, self.n_boot, self.seed, self.ci)
                for gi, group in enumerate(MASS_GROUPS):
                    rows.append(
                        {
                            "band": band,
                            "layers": f"{self.layers[sel[0]]}-{self.layers[sel[-1]]}",
                            "group": group,
                            "normalise": norm,
                            "mean": mean[gi],
                            "ci_low": low[gi],
                            "ci_high": high[gi],
                        }
                    )
            mean, low, high = self._enrichment(sel)
            rows.append(
                {
                    "band": band,
                    "layers": f"{self.layers[sel[0]]}-{self.layers[sel[-1]]}",
                    "group": "emotion_enrichment",
                    "normalise": "ratio",
                    "mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                }
            )
        return pd.DataFrame(rows)

    def _enrichment(self, layer_idx: Sequence[int]) -> tuple[float, float, float]:
        """Ratio of mean per-token mass (emotion / rest of event text) with a bootstrap CI."""
        vals = self.per_token[:, list(layer_idx)].mean(axis=(1, 2))[:, 4:6]
        ok = np.isfinite(vals).all(axis=1)
        vals = vals[ok]
        if len(vals) == 0:
            return float("nan"), float("nan"), float("nan")
        rng = np.random.default_rng(self.seed)
        idx = rng.integers(0, len(vals), size=(self.n_boot, len(vals)))
        boot = vals[idx].mean(axis=1)
        ratios = boot[:, 0] / boot[:, 1]
        alpha = (1 - self.ci) / 2
        low, high = np.quantile(ratios, [alpha, 1 - alpha])
        mean = vals.mean(axis=0)
        return float(mean[0] / mean[1]), float(low), float(high)

    def enrichment_frame(self) -> pd.DataFrame:
        """Per layer: per-token mass on emotion-bearing tokens / on the rest of the event text."""
        rows = []
        for li, layer in enumerate(self.layers):
            mean, low, high = self._enrichment([li])
            rows.append({"layer": layer, "mean": mean, "ci_low": low, "ci_high": high})
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        """Key numbers as a JSON-friendly dict: bands, peak layers, definition, sizes."""
        frame = self.table
        peaks = {}
        for group in MASS_GROUPS:
            for norm in NORMALISATIONS:
                sub = frame[(frame.group == group) & (frame.normalise == norm)]
                best = sub.loc[sub["mean"].idxmax()]
                peaks[f"{group}/{norm}"] = {"layer": int(best.layer), "mean": float(best["mean"])}
        return {
            "model_id": self.model_id,
            "template": self.template,
            "n_prompts": len(self),
            "layers": list(self.layers),
            "heads": list(self.heads),
            "groups": list(MASS_GROUPS),
            "n_tokens_mean": dict(
                zip(MASS_GROUPS, np.round(self.n_tokens.mean(axis=0), 2).tolist(), strict=True)
            ),
            "accuracy": float(np.mean(np.asarray(self.labels) == np.asarray(self.predictions))),
            "bands": self.band_frame().to_dict(orient="records"),
            "peak_layers": peaks,
            "emotion_tokens": self.saliency.describe() if self.saliency else None,
            "bootstrap": {"n_boot": self.n_boot, "seed": self.seed, "ci": self.ci},
        }

    def save(self, out: str | Path) -> list[Path]:
        """Write the CSV and JSON outputs atomically and return their paths.

        Files: ``attention_mass_layers.csv`` (:attr:`table`), ``attention_mass_heads.csv``,
        ``attention_mass_bands.csv``, ``attention_mass_enrichment.csv``,
        ``attention_mass_prompts.csv`` (per prompt and layer, heads averaged),
        ``attention_mass.json`` (:meth:`summary`) and the saliency files.
        """
        folder = Path(out)
        prompt_rows = []
        for norm in NORMALISATIONS:
            vals = self.values(norm).mean(axis=2)
            for i, pid in enumerate(self.ids):
                for li, layer in enumerate(self.layers):
                    row = {"id": pid, "layer": layer, "normalise": norm}
                    row.update({g: vals[i, li, gi] for gi, g in enumerate(MASS_GROUPS)})
                    prompt_rows.append(row)
        tables = {
            "attention_mass_layers.csv": self.table,
            "attention_mass_heads.csv": self.head_frame(),
            "attention_mass_bands.csv": self.band_frame(),
            "attention_mass_enrichment.csv": self.enrichment_frame(),
            "attention_mass_prompts.csv": pd.DataFrame(prompt_rows),
        }
        paths = [
            write_text_atomic(folder / name, frame.to_csv(index=False))
            for name, frame in tables.items()
        ]
        summary = json.loads(json.dumps(self.summary(), default=_plain))
        paths.append(write_json_atomic(folder / "attention_mass.json", summary))
        if self.saliency is not None:
            paths += self.saliency.save(folder)
        return paths

    def figure(self, normalise: str = "total", groups: Sequence[str] | None = None) -> go.Figure:
        """Final-token mass by group vs layer, CI bands (:func:`~.figures.mass_figure`).

        Args:
            normalise: ``"total"`` (share of the attention; the four partition groups sum to
                1) or ``"per_token"`` (share divided by the group's token count).
            groups: Groups to draw (default all of :data:`MASS_GROUPS`).
        """
        from lens_emotion.attention.figures import mass_figure

        return mass_figure(self, normalise, groups)

    def heatmap(self, group: str = "emotion", normalise: str = "total") -> go.Figure:
        """Layer x head map of the attention to one group (:func:`~.figures.mass_heatmap`).

        Args:
            group: One of :data:`MASS_GROUPS` (default: the emotion-bearing tokens).
            normalise: ``"total"`` or ``"per_token"``.
        """
        from lens_emotion.attention.figures import mass_heatmap

        return mass_heatmap(self, group, normalise)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def attention_mass(
    model: EmotionModel,
    dataset: EmotionDataset,
    template: str | PromptTemplate = "emotion-list",
    layers: Sequence[int] | None = None,
    *,
    top_frac: float = 0.2,
    min_tokens: int = 1,
    n_boot: int = 1000,
    seed: int = 0,
    ci: float = 0.95,
    batch_size: int = 8,
    keep_patterns: bool = False,
    share_prefix: bool = True,
    progress: bool = True,
) -> AttentionMassResult:
    """Attention of the final token to each token group, per layer and head, over a dataset.

    Runs, in order: prompt building, token groups, occlusion saliency (which defines the
    emotion-bearing tokens and the prediction), and one hooked pass that reads the final
    query row of every requested layer's ``hook_pattern``.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        dataset: An :class:`~lens_emotion.data.EmotionDataset`.
        template: Prompt template.
        layers: Layers (default all).
        top_frac: Fraction of event-text tokens called emotion-bearing (by saliency).
        min_tokens: At least this many emotion-bearing tokens per prompt.
        n_boot: Bootstrap resamples for confidence intervals.
        seed: Bootstrap seed.
        ci: Interval coverage.
        batch_size: Prompts per hooked forward pass.
        keep_patterns: Keep the final-token patterns in the result (memory grows with
            prompts x layers x heads x tokens).
        share_prefix: Run the template prefix shared by all prompts only once, in the hooked
            pass and in the occlusion variants (``False``: every prompt and variant in full;
            same numbers, slower).
        progress: Show progress bars.

    Returns:
        The :class:`AttentionMassResult`.

    Raises:
        AttentionError: Empty dataset, bad layers or saliency options.
    """
    if len(dataset) == 0:
        raise AttentionError("The dataset is empty; pass at least one text.")
    layer_t = check_layers(model, layers)
    prompt_set, groups, saliency = prompts_with_saliency(
        model,
        dataset,
        template,
        top_frac=top_frac,
        min_tokens=min_tokens,
        use_cache=share_prefix,
        progress=progress,
    )
    ids = tuple(dataset.ids)
    token_lists = [list(t) for t in prompt_set.token_ids]
    prefix = shared_prefix_length(token_lists) if share_prefix else 0
    heads = tuple(range(model.n_heads))
    mass = np.zeros((len(ids), len(layer_t), len(heads), len(MASS_GROUPS)), dtype=np.float64)
    counts = np.zeros((len(ids), len(MASS_GROUPS)), dtype=np.int64)
    kept: list[np.ndarray | None] = [None] * len(ids)
    for index, final, _ in iter_patterns(
        model,
        token_lists,
        layer_t,
        heads,
        (),
        [0] * len(ids),
        batch_size,
        prefix,
        progress,
        "attention",
    ):
        emo = saliency.emotion_positions(index)
        mass[index] = group_masses(final, groups[index].groups, emo)
        counts[index] = group_counts(groups[index].groups, len(emo))
        if keep_patterns:
            kept[index] = final.astype(np.float32)
    labels = prompt_set.label_tokens.labels
    patterns = None
    if keep_patterns:
        patterns = AttentionPatterns(
            ids=ids,
            tokens=tuple(g.tokens for g in groups),
            layers=layer_t,
            heads=heads,
            query="final",
            patterns=tuple(kept),  # type: ignore[arg-type]
        )
    return AttentionMassResult(
        model_id=str(getattr(model, "model_id", "model")),
        template=prompt_set.template.name,
        ids=ids,
        labels=tuple(labels[t] for t in prompt_set.targets),
        predictions=saliency.predictions,
        n_layers=int(model.n_layers),
        layers=layer_t,
        heads=heads,
        mass=mass,
        n_tokens=counts,
        n_boot=n_boot,
        seed=seed,
        ci=ci,
        saliency=saliency,
        groups=groups,
        patterns=patterns,
    )
