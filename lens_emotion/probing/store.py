"""What the probes read and write: the activation-store protocol, input checks, errors, files.

The lowest module of :mod:`lens_emotion.probing`: :class:`ProbeError` and
:class:`ProbeConvergenceWarning` live here, with the checks every probe runs on its inputs
(sites, layers, positions, masks, folds, activations) and the safetensors files of probe
directions (:func:`load_directions` reads what a result's ``save()`` wrote).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from jaxtyping import Bool, Float

from lens_emotion.errors import LensEmotionError

__all__ = [
    "ProbeConvergenceWarning",
    "ProbeError",
    "SupportsActivations",
    "check_folds",
    "check_position",
    "choose",
    "directions_bytes",
    "load_directions",
    "preview",
    "read_activations",
    "row_mask",
]


class ProbeError(LensEmotionError, ValueError):
    """Probe inputs are inconsistent: wrong lengths, unknown sites/layers, too few rows."""


class ProbeConvergenceWarning(UserWarning):
    """Some probe fits stopped before meeting their gradient tolerance.

    The message says what that cost: the accuracy change when the worst fit is refitted with
    three times the iterations.
    """


@runtime_checkable
class SupportsActivations(Protocol):
    """What the probes need from an activation store (duck-typed).

    :class:`lens_emotion.activations.ActivationStore` implements it; tests use in-memory fakes.
    """

    @property
    def ids(self) -> tuple[str, ...]:
        """Row ids, in dataset order."""
        ...

    @property
    def sites(self) -> tuple[str, ...]:
        """Stored sites, e.g. ``("attn_out", "mlp_out", "resid_post")``."""
        ...

    @property
    def layers(self) -> tuple[int, ...]:
        """Stored layers."""
        ...

    @property
    def positions(self) -> tuple[int, ...]:
        """Stored positions, negative offsets from the last prompt token (-1 = last)."""
        ...

    @property
    def manifest(self) -> dict[str, Any]:
        """JSON-able description of how the activations were made."""
        ...

    def get(self, site: str, layer: int, position: int = -1) -> np.ndarray:
        """Float32 activations ``(n, d_model)`` of every row at one site, layer and position."""
        ...


def preview(items: Sequence[Any], limit: int = 6) -> str:
    """The first ``limit`` items as ``repr``s, with ``(+k more)`` for the rest (error messages)."""
    shown = ", ".join(repr(x) for x in list(items)[:limit])
    extra = len(items) - limit
    return f"{shown} (+{extra} more)" if extra > 0 else shown


def choose(kind: str, requested: Any, available: Sequence[Any]) -> list[Any]:
    """Validate requested sites/layers/positions against the store's; ``None`` means all."""
    if requested is None:
        return list(available)
    if isinstance(requested, str | int):
        requested = [requested]
    chosen = list(dict.fromkeys(requested))
    if not chosen:
        raise ProbeError(f"no {kind}s requested; pass at least one of {list(available)}.")
    missing = [v for v in chosen if v not in available]
    if missing:
        raise ProbeError(
            f"{kind}(s) {preview(missing)} not in the activation store, which holds "
            f"{kind}s {list(available)}; pick from those, or extract the missing ones with "
            "lens_emotion.activations.extractread_activations(...)."
        )
    return chosen


def check_position(position: int, store: SupportsActivations) -> int:
    """``position`` if the store holds it; else :class:`ProbeError` naming the stored ones."""
    return choose("position", [position], tuple(store.positions))[0]


def row_mask(mask: Any, n: int) -> Bool[np.ndarray, " n"]:
    """A boolean row mask of length ``n`` (``None``: every row); refuses bad or empty masks."""
    if mask is None:
        return np.ones(n, dtype=bool)
    arr = np.asarray(mask)
    if arr.dtype != np.bool_ or arr.shape != (n,):
        raise ProbeError(
            f"mask must be a boolean array with one entry per store row ({n}), got dtype "
            f"{arr.dtype} and shape {arr.shape}; e.g. pass np.isin(store.ids, keep_ids)."
        )
    if not arr.any():
        raise ProbeError("mask selects no rows; pass a mask with at least one True per class.")
    return arr


def check_folds(n_folds: int) -> int:
    """``n_folds`` as an int if it is at least 2; else :class:`ProbeError`."""
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer) or n_folds < 2:
        raise ProbeError(f"n_folds must be an int >= 2, got {n_folds!r}; 5 is the usual choice.")
    return int(n_folds)


def read_activations(
    store: SupportsActivations, site: str, layer: int, position: int, rows: np.ndarray
) -> Float[np.ndarray, "m d"]:
    """The store's activations at one site, layer and position, for ``rows``, checked finite.

    Raises:
        ProbeError: The store returned the wrong shape, or NaN/inf values.
    """
    x = np.asarray(store.get(site, layer, position))
    n = len(store.ids)
    if x.ndim < 2 or x.shape[0] != n:
        raise ProbeError(
            f"store.get({site!r}, {layer}, {position}) returned shape {x.shape}, expected "
            f"({n}, d_model): one row per store id; the store is inconsistent, re-extract it."
        )
    x = x.reshape(n, -1)[rows]
    if not np.isfinite(x).all():
        raise ProbeError(
            f"activations at {site} layer {layer} position {position} contain NaN or inf; "
            "re-extract them in float32 (a float16 overflow is the usual cause)."
        )
    return x


def directions_bytes(arrays: dict[tuple[str, int], np.ndarray], metadata: dict[str, Any]) -> bytes:
    """A safetensors file of ``{"site.layer": float32 array}`` with JSON-encoded ``metadata``."""
    from safetensors.numpy import save

    tensors = {
        f"{site}.{layer}": np.ascontiguousarray(value, dtype=np.float32)
        for (site, layer), value in arrays.items()
    }
    return save(tensors, metadata={k: json.dumps(v) for k, v in metadata.items()})


def load_directions(
    path: str | Path,
) -> tuple[dict[tuple[str, int], np.ndarray], dict[str, Any]]:
    """Read directions written by a result's ``save()``.

    Args:
        path: A ``probe_emotion_directions.safetensors`` (or ``..._intercepts``,
            ``probe_appraisal_...``) file.

    Returns:
        ``({(site, layer): array}, metadata)``, the metadata holding e.g. ``"names"`` (the row
        names of each array) and ``"space"``.

    Raises:
        ProbeError: If the file is missing or not a directions file.
    """
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"no directions file at {path}; write one with result.save(out).")
    out: dict[tuple[str, int], np.ndarray] = {}
    with safe_open(str(path), framework="numpy") as handle:
        raw_meta = handle.metadata() or {}
        for key in handle.keys():
            site, _, layer = key.rpartition(".")
            if not site or not layer.lstrip("-").isdigit():
                raise ProbeError(
                    f"{path} holds key {key!r}, not 'site.layer'; it is not a directions file."
                )
            out[(site, int(layer))] = handle.get_tensor(key)
    meta = {}
    for k, v in raw_meta.items():
        try:
            meta[k] = json.loads(v)
        except ValueError:
            meta[k] = v
    return out, meta
