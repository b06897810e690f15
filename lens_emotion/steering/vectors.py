"""Steering vectors: signed appraisal combos, unique-effect vectors, random control directions.

**Appraisal directions.** :func:`lens_emotion.probing.probe_appraisals` fits ridge probes on
standardised activations and maps them back to the raw activation space, so for a raw
activation ``x`` the probe reads ``pred = x @ W.T + b`` (:func:`appraisal_readout`). Rows of
``W`` are the appraisal directions ``w_a``.

**Unique-effect vectors.** For appraisal ``a``, ``z_a = (I - P_others) w_a`` where
``P_others`` projects onto the span of the other appraisals' directions
(:func:`unique_effect_vector`, a least-squares solve, never an explicit inverse). Because
``w_b . z_a = 0`` for every other ``b``, adding ``z_a`` moves the probe readout of ``a`` and
leaves the others unchanged. (The code released with Tak et al. computes this projection but
then steers with the unprojected ``w_a``; here the projection is applied. ``method="raw"``
keeps the unprojected sum as a comparison.)

**Joint combinations** (:func:`combo_vector`) such as ``+pleasantness +other_responsblt``:
the *minimum-norm* vector ``v`` with ``w_a . v = s_a`` for every appraisal ``a`` of the combo
(sign ``s_a``) and ``w_b . v = 0`` for every held-fixed appraisal ``b``, i.e. one rating
point of change per named appraisal and none elsewhere, in the readout of the probes. For a
single appraisal this is ``z_a / ||z_a||^2``, parallel to ``z_a``. Hooks normalise it, so
``beta`` (see :mod:`lens_emotion.interventions`) sets the step length in activation units.

**Controls.** Random Gaussian directions, seeded per (seed, layer), steered with the same
``beta`` (hence the same step norm) as the real directions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from jaxtyping import Float

from lens_emotion.errors import LensEmotionError

if TYPE_CHECKING:
    from lens_emotion.probing import AppraisalProbeResult

__all__ = [
    "AppraisalCombo",
    "SteeringError",
    "appraisal_matrix",
    "appraisal_readout",
    "combo_vector",
    "layer_window",
    "min_norm_readout_vector",
    "random_direction",
    "unique_effect_vector",
]


class SteeringError(LensEmotionError, ValueError):
    """A steering request is inconsistent: unknown appraisal, bad signs, missing probes."""


# --------------------------------------------------------------------------- combos


@dataclass(frozen=True)
class AppraisalCombo:
    """Signed appraisals steered together, e.g. ``+pleasantness,+other_responsblt``.

    Attributes:
        appraisals: Appraisal names.
        signs: ``+1`` or ``-1`` per appraisal.
    """

    appraisals: tuple[str, ...]
    signs: tuple[int, ...]

    def __post_init__(self) -> None:
        if not self.appraisals:
            raise SteeringError("a combo needs at least one appraisal, e.g. 'pleasantness'.")
        if len(self.signs) != len(self.appraisals):
            raise SteeringError(
                f"{len(self.appraisals)} appraisal(s) but {len(self.signs)} sign(s); give one "
                "sign per appraisal, e.g. --appraisal pleasantness,other_responsblt --signs +,+."
            )
        if any(s not in (1, -1) for s in self.signs):
            raise SteeringError(f"signs must be +1 or -1, got {list(self.signs)}.")
        if len(set(self.appraisals)) != len(self.appraisals):
            raise SteeringError(f"an appraisal is repeated in {list(self.appraisals)}.")

    @property
    def name(self) -> str:
        """``"+pleasantness,+other_responsblt"``."""
        return ",".join(
            f"{'+' if s > 0 else '-'}{a}" for a, s in zip(self.appraisals, self.signs, strict=True)
        )

    @classmethod
    def parse(
        cls, appraisals: str | Sequence[str], signs: str | Sequence[Any] | None = None
    ) -> AppraisalCombo:
        """Build a combo from CLI-style text.

        Args:
            appraisals: ``"pleasantness,other_responsblt"``, a list of names, or signed names
                such as ``"+pleasantness,-other_responsblt"``.
            signs: ``"+,-"`` (or ``["+", "-"]``, ``[1, -1]``); default from the names or ``+``.

        Raises:
            SteeringError: Mismatched counts or signs other than ``+``/``-``.
        """
        if isinstance(appraisals, str):
            items = appraisals.split(",")
        else:
            items = [str(a) for a in appraisals]
        names = [n.strip() for n in items if n.strip()]
        inline = [-1 if n.startswith("-") else 1 for n in names]
        names = [n.lstrip("+-") for n in names]
        if signs is None:
            values = inline
        else:
            raw = signs.split(",") if isinstance(signs, str) else list(signs)
            parsed = []
            for s in raw:
                text = str(s).strip()
                if text in ("+", "+1", "1"):
                    parsed.append(1)
                elif text in ("-", "-1"):
                    parsed.append(-1)
                else:
                    raise SteeringError(f"sign {s!r} is neither '+' nor '-'; use e.g. --signs +,-.")
            if len(parsed) != len(names):
                raise SteeringError(
                    f"{len(names)} appraisal(s) but {len(parsed)} sign(s); give one sign per "
                    "appraisal, e.g. --appraisal pleasantness,other_responsblt --signs +,+."
                )
            values = [p * i for p, i in zip(parsed, inline, strict=True)]
        return cls(tuple(names), tuple(values))


# --------------------------------------------------------------------------- appraisal directions


def appraisal_matrix(
    result: AppraisalProbeResult, site: str, layer: int
) -> tuple[Float[np.ndarray, "A d"], Float[np.ndarray, " A"], tuple[str, ...]]:
    """Raw-space appraisal directions ``W``, intercepts ``b`` and names at one site and layer.

    Args:
        result: An :class:`~lens_emotion.probing.AppraisalProbeResult`.
        site: Site the probes were fitted at.
        layer: Layer.

    Raises:
        SteeringError: No probe at that site and layer.
    """
    key = (site, int(layer))
    if key not in result.directions:
        raise SteeringError(
            f"no appraisal probe at {site} layer {layer}; probed: "
            f"{sorted(result.directions)[:8]}. Probe that layer with probe_appraisals(...)."
        )
    w = np.asarray(result.directions[key], dtype=np.float64)
    b = np.asarray(result.intercepts[key], dtype=np.float64)
    return w, b, tuple(result.appraisal_names)


def appraisal_readout(
    x: Float[np.ndarray, "n d"], w: Float[np.ndarray, "A d"], b: Float[np.ndarray, " A"]
) -> Float[np.ndarray, "n A"]:
    """The probes' predicted appraisal ratings for raw activations: ``x @ W.T + b``."""
    return np.asarray(x, dtype=np.float64) @ np.asarray(w, dtype=np.float64).T + b


def unique_effect_vector(
    w: Float[np.ndarray, "A d"], index: int, others: Sequence[int] | None = None
) -> Float[np.ndarray, " d"]:
    """``z_a = (I - P_others) w_a``: the part of ``w_a`` orthogonal to the other directions.

    ``P_others w_a`` is the least-squares fit of ``w_a`` by the other directions (``lstsq``;
    rank-deficient sets of directions are handled), so no matrix is inverted.

    Args:
        w: Direction matrix (one row per appraisal).
        index: Row of ``a``.
        others: Rows to project out (default: every other row).

    Returns:
        ``z_a`` (float64). Zero if ``w_a`` lies in the span of the others.
    """
    w = np.asarray(w, dtype=np.float64)
    rows = [i for i in range(len(w)) if i != index] if others is None else list(others)
    if index in rows:
        raise SteeringError(f"row {index} cannot be both the target and one of the others.")
    target = w[index]
    if not rows:
        return target.copy()
    basis = w[rows].T  # (d, k)
    coef, *_ = np.linalg.lstsq(basis, target, rcond=None)
    return target - basis @ coef


def min_norm_readout_vector(
    w: Float[np.ndarray, "k d"], delta: Float[np.ndarray, " k"]
) -> Float[np.ndarray, " d"]:
    """The shortest ``v`` with ``w @ v = delta`` (least squares if no exact solution exists)."""
    v, *_ = np.linalg.lstsq(np.asarray(w, dtype=np.float64), np.asarray(delta, float), rcond=None)
    return v


def _indices(names: Sequence[str], wanted: Sequence[str], what: str) -> list[int]:
    missing = [a for a in wanted if a not in names]
    if missing:
        raise SteeringError(
            f"{what} {missing} are not among the probed appraisals {list(names)}; check the "
            "spelling (crowd-enVENT names such as 'pleasantness', 'other_responsblt')."
        )
    return [list(names).index(a) for a in wanted]


def combo_vector(
    result: AppraisalProbeResult,
    site: str,
    layer: int,
    combo: AppraisalCombo,
    method: Literal["unique", "raw"] = "unique",
    fixed: Sequence[str] | None = None,
) -> Float[np.ndarray, " d"]:
    """The steering vector of a signed appraisal combination at one layer.

    Args:
        result: An :class:`~lens_emotion.probing.AppraisalProbeResult`.
        site: Probe site.
        layer: Probe layer.
        combo: The signed appraisals.
        method: ``"unique"``: the minimum-norm vector that moves each combo appraisal's
            readout by its sign and every ``fixed`` appraisal's by 0 (see the module
            docstring). ``"raw"``: ``sum_a s_a w_a``, the unprojected probe weights.
        fixed: Appraisals held fixed (default: every probed appraisal not in the combo).

    Raises:
        SteeringError: Unknown appraisals, a fixed appraisal that is also in the combo, or a
            combo that cannot be moved independently of the fixed ones.
    """
    w, _, names = appraisal_matrix(result, site, layer)
    idx = _indices(names, combo.appraisals, "appraisals")
    signs = np.asarray(combo.signs, dtype=np.float64)
    if method == "raw":
        return signs @ w[idx]
    if method != "unique":
        raise SteeringError(f"method must be 'unique' or 'raw', not {method!r}.")
    if fixed is None:
        fixed_idx = [i for i in range(len(names)) if i not in idx]
    else:
        fixed_idx = _indices(names, fixed, "fixed appraisals")
        clash = sorted(set(fixed_idx) & set(idx))
        if clash:
            raise SteeringError(
                f"{[names[i] for i in clash]} are both steered and held fixed; drop them from "
                "the fixed list."
            )
    rows = idx + fixed_idx
    delta = np.concatenate([signs, np.zeros(len(fixed_idx))])
    v = min_norm_readout_vector(w[rows], delta)
    reached = w[idx] @ v
    if not np.allclose(reached, signs, atol=1e-6 * max(1.0, float(np.abs(w).max()))):
        raise SteeringError(
            f"{combo.name} cannot be moved while holding {len(fixed_idx)} other appraisals "
            "fixed at this layer (its directions lie in their span); hold fewer fixed."
        )
    return v


def random_direction(d: int, seed: int, layer: int, norm: float = 1.0) -> Float[np.ndarray, " d"]:
    """A Gaussian random direction of a given norm, reproducible from ``(seed, layer)``."""
    digest = hashlib.sha256(f"random-direction:{seed}:{layer}".encode()).digest()
    rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v) * norm


def layer_window(layer: int, span: int) -> list[int]:
    """The ``span`` layers centred on ``layer`` (``span`` odd).

    Raises:
        SteeringError: ``span`` is even or below 1.
    """
    if span < 1 or span % 2 == 0:
        raise SteeringError(
            f"span must be an odd number >= 1 (a window centred on the layer), got {span}."
        )
    half = span // 2
    return list(range(layer - half, layer + half + 1))
