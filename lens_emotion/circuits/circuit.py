"""Assemble heads, neurons and sublayers into a per-emotion circuit.

A component's local score ``c`` (its emotion-specific write along ``v_e`` of its own layer,
:mod:`.components`) says how much it moves the emotion coordinate *where it writes*. The
sublayer influence ``I`` (:mod:`.influence`) says how much the final emotion score moves per
unit written along ``v_e`` at that sublayer. Their product ``c * I`` estimates the
component's effect on the final emotion representation (first order), so components from
different depths become comparable. A circuit keeps the heads and neurons with the largest
positive estimated effect and the sublayers that host them or have the largest influence.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from lens_emotion.circuits.components import ComponentScores
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.io import write_json_atomic

__all__ = ["EmotionCircuit", "assemble_circuit"]


@dataclass(frozen=True)
class EmotionCircuit:
    """A per-emotion circuit.

    Attributes:
        emotion: The emotion.
        heads: ``{"layer", "head", "score", "influence", "effect"}`` per head, best first.
        neurons: ``{"layer", "neuron", "score", "influence", "effect"}`` per neuron.
        sublayers: ``{"layer", "sublayer", "influence", "n_heads", "n_neurons",
            "effect"}`` per sublayer, in layer order (``effect``: summed effect of its
            members).
        meta: Selection settings and provenance.
    """

    emotion: str
    heads: list[dict[str, Any]]
    neurons: list[dict[str, Any]]
    sublayers: list[dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)

    def components(self, kind: str) -> list[tuple[int, int]]:
        """``(layer, unit)`` of the circuit's heads (``"head"``) or neurons (``"neuron"``)."""
        if kind == "head":
            return [(int(h["layer"]), int(h["head"])) for h in self.heads]
        if kind == "neuron":
            return [(int(n["layer"]), int(n["neuron"])) for n in self.neurons]
        raise CircuitError(f"kind must be 'head' or 'neuron', not {kind!r}.")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    def save(self, path: str | Path) -> Path:
        """Write the circuit as JSON (atomic)."""
        return write_json_atomic(path, self.to_dict())

    @classmethod
    def load(cls, path: str | Path) -> EmotionCircuit:
        """Read a circuit written by :meth:`save`.

        Raises:
            CircuitError: Missing file or keys.
        """
        path = Path(path)
        if not path.is_file():
            raise CircuitError(f"circuit file not found: {path}.")
        data = json.loads(path.read_text())
        missing = {"emotion", "heads", "neurons", "sublayers"} - set(data)
        if missing:
            raise CircuitError(f"{path} lacks {sorted(missing)}; it is not a circuit file.")
        return cls(
            **{k: data[k] for k in ("emotion", "heads", "neurons", "sublayers")},
            meta=data.get("meta", {}),
        )


def _influence(table: pd.DataFrame, emotion: str, n_layers: int) -> dict[str, torch.Tensor]:
    sub = table[table.emotion == emotion]
    if sub.empty:
        raise CircuitError(f"the influence table has no rows for {emotion!r}.")
    out = {}
    for name in ("attn", "mlp"):
        part = sub[sub.sublayer == name].set_index("layer")["influence"]
        if len(part) != n_layers:
            raise CircuitError(
                f"the influence table has {len(part)} {name} rows for {emotion!r}, expected "
                f"{n_layers} (one per layer)."
            )
        out[name] = torch.tensor(part.sort_index().to_numpy(dtype="float32"))
    return out


def _pick(
    scores: ComponentScores, emotion: str, influence: torch.Tensor, k: int, unit: str
) -> list[dict[str, Any]]:
    e = scores.emotions.index(emotion)
    effect = scores.score[e] * influence[:, None]  # [layer, unit]
    flat = effect.reshape(-1)
    order = torch.argsort(flat, descending=True, stable=True)[:k]
    chosen = []
    for i in order.tolist():
        if flat[i] <= 0:
            break
        layer, index = divmod(int(i), scores.n_units)
        chosen.append(
            {
                "layer": layer,
                unit: index,
                "score": float(scores.score[e, layer, index]),
                "influence": float(influence[layer]),
                "effect": float(flat[i]),
            }
        )
    return chosen


def assemble_circuit(
    emotion: str,
    scores: Mapping[str, ComponentScores],
    influence: pd.DataFrame,
    n_heads: int = 8,
    n_neurons: int = 64,
    n_sublayers: int = 6,
    meta: Mapping[str, Any] | None = None,
) -> EmotionCircuit:
    """Choose an emotion's heads, neurons and sublayers by estimated effect (module docstring).

    Args:
        emotion: The emotion.
        scores: ``{"head": ..., "neuron": ...}`` component scores.
        influence: A :func:`~.influence.sublayer_influence` table.
        n_heads: Heads to keep (fewer if fewer have a positive effect).
        n_neurons: Neurons to keep (likewise).
        n_sublayers: Most influential sublayers to list besides those hosting members.
        meta: Extra provenance for the JSON.

    Returns:
        The circuit.
    """
    if "head" not in scores or "neuron" not in scores:
        raise CircuitError("assemble_circuit() needs both head and neuron scores.")
    n_layers = scores["head"].n_layers
    infl = _influence(influence, emotion, n_layers)
    heads = _pick(scores["head"], emotion, infl["attn"], n_heads, "head")
    neurons = _pick(scores["neuron"], emotion, infl["mlp"], n_neurons, "neuron")
    ranked = sorted(
        [
            (float(infl[name][layer]), layer, name)
            for name in ("attn", "mlp")
            for layer in range(n_layers)
        ],
        reverse=True,
    )
    keep = {(layer, name) for _, layer, name in ranked[:n_sublayers]}
    keep |= {(h["layer"], "attn") for h in heads} | {(n["layer"], "mlp") for n in neurons}
    sublayers = []
    for layer, name in sorted(keep, key=lambda x: (x[0], x[1] != "attn")):
        members = heads if name == "attn" else neurons
        inside = [m for m in members if m["layer"] == layer]
        sublayers.append(
            {
                "layer": layer,
                "sublayer": name,
                "influence": float(infl[name][layer]),
                "n_heads": len(inside) if name == "attn" else 0,
                "n_neurons": len(inside) if name == "mlp" else 0,
                "effect": float(sum(m["effect"] for m in inside)),
            }
        )
    settings = {"n_heads": n_heads, "n_neurons": n_neurons, "n_sublayers": n_sublayers}
    return EmotionCircuit(emotion, heads, neurons, sublayers, {**settings, **dict(meta or {})})
