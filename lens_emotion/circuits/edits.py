"""Interventions on heads, neurons and sublayer outputs, as TransformerLens hooks.

An :class:`ComponentEdit` rewrites chosen components as ``a := mult * a + add``:

* a head's attention values ``z_h`` (``attn.hook_z``, per query head, so the head's whole
  output ``z_h @ W_O[h]`` is scaled or replaced);
* a neuron's hidden activation ``H_i`` (``mlp.hook_post``);

and can add a vector to a sublayer output (``hook_attn_out`` / ``hook_mlp_out``). Zero
ablation is ``mult=0, add=0``; mean ablation ``mult=0, add=mean``; scaling about the mean
``mult=f, add=(1-f) * mean``; shifting towards an emotion ``mult=1, add=gamma * delta``.

Edits act at the **last position** of every forward pass by default (``positions="last"``):
during scoring that is the last prompt token; during cached generation every new token is
the last position of its step, so the edit applies to the last prompt token and to every
generated token. ``positions="all"`` edits every position.

Note: in TransformerLens' bridge, ``hook_resid_mid`` is the second norm's input, and editing
it changes only what the MLP reads, not the residual stream (checked on SmolLM2): to move the
stream after attention, edit ``hook_attn_out``, which is what sublayer injections here do.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lens_emotion.circuits.errors import CircuitError

__all__ = [
    "INTERVENTIONS",
    "SUBLAYERS",
    "ComponentEdit",
    "EditShape",
    "ablation_edit",
    "edit_hooks",
    "stack_edits",
]

#: Ablation/enhancement interventions understood by :func:`ablation_edit`.
INTERVENTIONS: tuple[str, ...] = ("zero", "mean", "scale")

#: Sublayer output sites that accept injections.
SUBLAYERS: tuple[str, ...] = ("attn_out", "mlp_out")

Hook = tuple[str, Callable[..., Any]]


@dataclass(frozen=True)
class EditShape:
    """Sizes of the edit tensors of one model."""

    n_layers: int
    n_heads: int
    d_head: int
    d_mlp: int
    d_model: int

    @classmethod
    def of(cls, model: Any) -> EditShape:
        """Read the sizes from an :class:`~lens_emotion.models.EmotionModel`."""
        cfg = model.cfg
        return cls(
            n_layers=int(cfg.n_layers),
            n_heads=int(cfg.n_heads),
            d_head=int(cfg.d_head),
            d_mlp=int(cfg.d_mlp),
            d_model=int(cfg.d_model),
        )


def _index(pairs: Sequence[tuple[int, int]] | Tensor) -> Int[Tensor, "k 2"]:
    idx = torch.as_tensor(pairs, dtype=torch.long)
    return idx.reshape(-1, 2)


@dataclass(frozen=True)
class ComponentEdit:
    """A sparse set of edits; the empty edit leaves the model unchanged.

    Attributes:
        head_index: ``[k, 2]`` (layer, head) pairs.
        head_mult: ``[k]`` multipliers of ``z_h``.
        head_add: ``[k, d_head]`` added to ``z_h`` after multiplying.
        neuron_index: ``[m, 2]`` (layer, neuron) pairs.
        neuron_mult: ``[m]`` multipliers of ``H_i``.
        neuron_add: ``[m]`` added after multiplying.
        inject: ``{(sublayer, layer): vector}`` added to ``hook_attn_out``/``hook_mlp_out``.
        label: Free text for tables.
    """

    head_index: Int[Tensor, "k 2"] = field(
        default_factory=lambda: torch.zeros((0, 2), dtype=torch.long)
    )
    head_mult: Float[Tensor, " k"] = field(default_factory=lambda: torch.zeros(0))
    head_add: Float[Tensor, "k d_head"] | None = None
    neuron_index: Int[Tensor, "m 2"] = field(
        default_factory=lambda: torch.zeros((0, 2), dtype=torch.long)
    )
    neuron_mult: Float[Tensor, " m"] = field(default_factory=lambda: torch.zeros(0))
    neuron_add: Float[Tensor, " m"] | None = None
    inject: dict[tuple[str, int], Float[Tensor, " d_model"]] = field(default_factory=dict)
    label: str = ""

    def __post_init__(self) -> None:
        for key in self.inject:
            if key[0] not in SUBLAYERS:
                raise CircuitError(f"cannot inject at {key[0]!r}; choose from {SUBLAYERS}.")
        if len(self.head_mult) != len(self.head_index):
            raise CircuitError("head_mult needs one value per head in head_index.")
        if len(self.neuron_mult) != len(self.neuron_index):
            raise CircuitError("neuron_mult needs one value per neuron in neuron_index.")

    @property
    def is_identity(self) -> bool:
        """True when the edit changes nothing."""
        return len(self.head_index) == 0 and len(self.neuron_index) == 0 and not self.inject

    @classmethod
    def heads(
        cls,
        pairs: Sequence[tuple[int, int]] | Tensor,
        mult: float | Tensor = 1.0,
        add: Tensor | None = None,
        label: str = "",
    ) -> ComponentEdit:
        """Edit heads ``(layer, head)``: ``z_h := mult * z_h + add``."""
        idx = _index(pairs)
        mult_t = torch.broadcast_to(torch.as_tensor(mult, dtype=torch.float32), (len(idx),))
        return cls(head_index=idx, head_mult=mult_t.clone(), head_add=add, label=label)

    @classmethod
    def neurons(
        cls,
        pairs: Sequence[tuple[int, int]] | Tensor,
        mult: float | Tensor = 1.0,
        add: Tensor | None = None,
        label: str = "",
    ) -> ComponentEdit:
        """Edit neurons ``(layer, index)``: ``H_i := mult * H_i + add``."""
        idx = _index(pairs)
        mult_t = torch.broadcast_to(torch.as_tensor(mult, dtype=torch.float32), (len(idx),))
        return cls(neuron_index=idx, neuron_mult=mult_t.clone(), neuron_add=add, label=label)

    @classmethod
    def injection(
        cls, sublayer: str, layer: int, vector: Float[Tensor, " d_model"], label: str = ""
    ) -> ComponentEdit:
        """Add ``vector`` to a sublayer's output."""
        return cls(inject={(sublayer, int(layer)): vector.float()}, label=label)

    def __add__(self, other: ComponentEdit) -> ComponentEdit:
        """Both edits together (their component sets should not overlap)."""
        inject = dict(self.inject)
        for key, vec in other.inject.items():
            inject[key] = inject[key] + vec if key in inject else vec
        return ComponentEdit(
            head_index=torch.cat([self.head_index, other.head_index]),
            head_mult=torch.cat([self.head_mult, other.head_mult]),
            head_add=_cat_add(
                self.head_add, other.head_add, len(self.head_index), len(other.head_index)
            ),
            neuron_index=torch.cat([self.neuron_index, other.neuron_index]),
            neuron_mult=torch.cat([self.neuron_mult, other.neuron_mult]),
            neuron_add=_cat_add(
                self.neuron_add, other.neuron_add, len(self.neuron_index), len(other.neuron_index)
            ),
            inject=inject,
            label=" + ".join(x for x in (self.label, other.label) if x),
        )


def _cat_add(a: Tensor | None, b: Tensor | None, n_a: int, n_b: int) -> Tensor | None:
    if a is None and b is None:
        return None
    like = a if a is not None else b
    assert like is not None
    a = a if a is not None else torch.zeros((n_a, *like.shape[1:]))
    b = b if b is not None else torch.zeros((n_b, *like.shape[1:]))
    return torch.cat([a, b])


def ablation_edit(
    kind: str,
    components: Sequence[tuple[int, int]],
    intervention: str,
    means: Tensor | None = None,
    factor: float = 2.0,
    label: str = "",
) -> ComponentEdit:
    """Zero-ablate, mean-ablate or scale a set of heads or neurons.

    Args:
        kind: ``"head"`` or ``"neuron"``.
        components: ``(layer, unit)`` pairs.
        intervention: ``"zero"`` (``a := 0``), ``"mean"`` (``a := mean``) or ``"scale"``
            (``a := mean + factor * (a - mean)``: the component's deviation from its mean,
            i.e. its context- and emotion-specific part, is scaled; ``factor > 1`` enhances,
            ``0`` is mean ablation).
        means: Mean activations, ``[layer, head, d_head]`` or ``[layer, d_mlp]`` (for
            ``"mean"`` and ``"scale"``).
        factor: Multiplier for ``"scale"``.
        label: Free text.

    Returns:
        The edit.
    """
    if kind not in ("head", "neuron"):
        raise CircuitError(f"kind must be 'head' or 'neuron', not {kind!r}.")
    if intervention not in INTERVENTIONS:
        raise CircuitError(f"unknown intervention {intervention!r}; choose from {INTERVENTIONS}.")
    idx = _index(list(components)) if len(components) else torch.zeros((0, 2), dtype=torch.long)
    build = ComponentEdit.heads if kind == "head" else ComponentEdit.neurons
    if intervention == "zero":
        return build(idx, 0.0, None, label)
    if means is None:
        raise CircuitError(f"{intervention!r} needs the mean activations (means=...).")
    mean = means[idx[:, 0], idx[:, 1]].float()
    if intervention == "scale":
        return build(idx, float(factor), (1.0 - float(factor)) * mean, label)
    return build(idx, 0.0, mean, label)


@dataclass(frozen=True)
class StackedEdits:
    """Dense per-row edit tensors for a batch (rows broadcast when the first axis is 1)."""

    head_mult: Float[Tensor, "row layer head"]
    head_add: Float[Tensor, "row layer head d_head"]
    neuron_mult: Float[Tensor, "row layer d_mlp"]
    neuron_add: Float[Tensor, "row layer d_mlp"]
    inject: dict[tuple[str, int], Float[Tensor, "row d_model"]]
    head_layers: tuple[int, ...]
    neuron_layers: tuple[int, ...]

    def repeat(self, times: int) -> StackedEdits:
        """Tile the rows ``times`` times (row ``r`` of the result is row ``r % n``)."""

        def tile(t: Tensor) -> Tensor:
            return t.repeat(times, *([1] * (t.dim() - 1)))

        return StackedEdits(
            tile(self.head_mult),
            tile(self.head_add),
            tile(self.neuron_mult),
            tile(self.neuron_add),
            {k: tile(v) for k, v in self.inject.items()},
            self.head_layers,
            self.neuron_layers,
        )


def stack_edits(edits: Sequence[ComponentEdit], shape: EditShape) -> StackedEdits:
    """Densify edits into per-row tensors (one row per edit).

    Raises:
        CircuitError: A component index is out of range.
    """
    n = len(edits)
    head_mult = torch.ones((n, shape.n_layers, shape.n_heads))
    head_add = torch.zeros((n, shape.n_layers, shape.n_heads, shape.d_head))
    neuron_mult = torch.ones((n, shape.n_layers, shape.d_mlp))
    neuron_add = torch.zeros((n, shape.n_layers, shape.d_mlp))
    inject: dict[tuple[str, int], Tensor] = {}
    head_layers: set[int] = set()
    neuron_layers: set[int] = set()
    for row, edit in enumerate(edits):
        for idx, units, name in (
            (edit.head_index, shape.n_heads, "head"),
            (edit.neuron_index, shape.d_mlp, "neuron"),
        ):
            if len(idx) and (
                idx[:, 0].min() < 0
                or idx[:, 0].max() >= shape.n_layers
                or idx[:, 1].min() < 0
                or idx[:, 1].max() >= units
            ):
                raise CircuitError(
                    f"{name} index out of range: layers 0..{shape.n_layers - 1}, "
                    f"units 0..{units - 1}."
                )
        if len(edit.head_index):
            layer, head = edit.head_index[:, 0], edit.head_index[:, 1]
            head_mult[row, layer, head] = edit.head_mult
            if edit.head_add is not None:
                head_add[row, layer, head] = edit.head_add
            head_layers.update(layer.tolist())
        if len(edit.neuron_index):
            layer, unit = edit.neuron_index[:, 0], edit.neuron_index[:, 1]
            neuron_mult[row, layer, unit] = edit.neuron_mult
            if edit.neuron_add is not None:
                neuron_add[row, layer, unit] = edit.neuron_add
            neuron_layers.update(layer.tolist())
        for key, vec in edit.inject.items():
            if not 0 <= key[1] < shape.n_layers:
                raise CircuitError(f"injection layer {key[1]} out of range.")
            inject.setdefault(key, torch.zeros((n, shape.d_model)))[row] = vec
    return StackedEdits(
        head_mult,
        head_add,
        neuron_mult,
        neuron_add,
        inject,
        tuple(sorted(head_layers)),
        tuple(sorted(neuron_layers)),
    )


def _position_slice(positions: str) -> slice:
    if positions == "last":
        return slice(-1, None)
    if positions == "all":
        return slice(None)
    raise CircuitError(f"positions must be 'last' or 'all', not {positions!r}.")


def edit_hooks(
    model: Any, edits: StackedEdits | ComponentEdit, positions: str = "last"
) -> list[Hook]:
    """TransformerLens forward hooks that apply edits.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        edits: One edit (applied to every row of every batch) or stacked per-row edits whose
            row count matches the batch.
        positions: ``"last"`` or ``"all"`` (see the module docstring).

    Returns:
        ``(hook_name, fn)`` pairs for ``run_with_hooks`` or hooked generation.
    """
    if isinstance(edits, ComponentEdit):
        edits = stack_edits([edits], EditShape.of(model))
    where = _position_slice(positions)
    hooks: list[Hook] = []
    for layer in edits.head_layers:
        mult = edits.head_mult[:, layer]
        add = edits.head_add[:, layer]

        def head_fn(act: Tensor, hook: Any, mult: Tensor = mult, add: Tensor = add) -> Tensor:
            out = act.clone()
            m = mult.to(act.device, act.dtype)[:, None, :, None]
            a = add.to(act.device, act.dtype)[:, None]
            out[:, where] = act[:, where] * m + a
            return out

        hooks.append((model.hook_name("z", layer), head_fn))
    for layer in edits.neuron_layers:
        mult = edits.neuron_mult[:, layer]
        add = edits.neuron_add[:, layer]

        def neuron_fn(act: Tensor, hook: Any, mult: Tensor = mult, add: Tensor = add) -> Tensor:
            out = act.clone()
            m = mult.to(act.device, act.dtype)[:, None]
            a = add.to(act.device, act.dtype)[:, None]
            out[:, where] = act[:, where] * m + a
            return out

        hooks.append((model.hook_name("mlp_post", layer), neuron_fn))
    for (sublayer, layer), vec in sorted(edits.inject.items()):

        def inject_fn(act: Tensor, hook: Any, vec: Tensor = vec) -> Tensor:
            out = act.clone()
            out[:, where] = act[:, where] + vec.to(act.device, act.dtype)[:, None]
            return out

        hooks.append((model.hook_name(sublayer, layer), inject_fn))
    return hooks
