"""Residual-stream interventions: direction hooks, hooked readout and hooked generation.

A *hook* is a TransformerLens-style callable ``fn(activation, hook) -> activation`` paired with
a hook name such as ``"blocks.12.hook_resid_post"``. :func:`direction_hook` builds the one
this suite steers with, ``h <- h + beta * d / ||d||`` (optionally times the RMS of ``h`` at
that position), at the last prompt token or at every position; :func:`steering_hooks` places
it at one layer or a window of layers.

**Positions under KV-cached generation.** ``positions="last"`` means the last token of the
*prompt*: the hook acts in the prompt (prefill) pass at the last column (prompts are left
padded, so every row ends there) and is skipped while new tokens are generated.
``positions="all"`` acts on every position, generated tokens included: in the cached loop each
new token passes the hook once, when it is computed. A hook that is not a
:class:`DirectionHook` is called on every forward pass and sees only the positions computed in
that pass (the whole prompt, then one new token per step); give it an attribute
``positions = "last"`` to have it run in the prompt pass only.

**resid_mid.** In TransformerLens 4.3's bridge ``blocks.{l}.hook_resid_mid`` is an alias of
``ln2.hook_in``: reading it gives the residual stream after attention, but an edit there reaches
only the MLP's input, not the skip connection to ``resid_post``. Every hook at ``resid_mid``
(from :func:`steering_hooks` or passed to the runners here) is therefore rewritten by
:func:`residual_hooks` into an edit of ``attn_out`` at the same positions (``resid_mid =
resid_pre + attn_out``, checked per model by :func:`check_resid_mid`), which moves the stream
itself: ``resid_post`` then holds the edited value plus the MLP's response to it.

**Engines.** ``engine="plain"`` runs the plain transformers copy of the weights
(:attr:`~lens_emotion.models.EmotionModel.plain_model`) with PyTorch hooks at the modules that
produce ``resid_pre``, ``resid_post``, ``attn_out`` and ``mlp_out`` (``resid_mid`` through
:func:`residual_hooks`) and a KV cache: fast. It is
offered where :func:`lens_emotion.activations.resolve_engine` has verified that those modules
give exactly the bridge's hook values (Llama-family models). ``engine="bridge"`` runs the
TransformerLens bridge with ``run_with_hooks`` and any hook name; it generates without a cache
(the whole sequence is re-run each step, with ``"last"`` hooks pinned to the last prompt
column), which is slow but simple enough to serve as the reference the tests compare the cached
loop against. ``engine="auto"`` picks plain when it is verified and every hook name is
supported, else the bridge.

**Fast readout sweeps.** A hook that acts only at the last prompt token cannot change the
earlier positions (attention is causal), so :func:`readout_many` runs each batch's prompt minus
its last token once, keeps the KV cache, and evaluates every hook set with a one-token forward
pass on top of it (the cache is cropped back after each). On SmolLM2 with ~100-token prompts
this is tens of times faster than re-running the prompt per hook set; it is checked against
the plain per-set readout in the tests.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, no_type_check

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lens_emotion.batching import length_batches
from lens_emotion.errors import LensEmotionError
from lens_emotion.models import SITE_HOOKS

__all__ = [
    "PLAIN_SITES",
    "DirectionHook",
    "HookFn",
    "InterventionError",
    "ResidMidError",
    "ResidMidHook",
    "ResidPreCapture",
    "check_resid_mid",
    "direction_hook",
    "generate_with_hooks",
    "parse_hook_name",
    "readout_many",
    "readout_with_hooks",
    "residual_hooks",
    "resolve_intervention_engine",
    "steering_hooks",
]

HookFn = Callable[..., Tensor | None]
"""A TransformerLens-style hook: ``fn(activation, hook) -> new activation or None``."""

Hooks = Sequence[tuple[str, HookFn]]

PLAIN_SITES: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
"""Sites the plain (transformers) engine can intervene on (``resid_mid`` through
:func:`residual_hooks`)."""

_NAME_PATTERNS = {
    site: re.compile("^" + re.escape(template).replace(r"\{layer\}", r"(\d+)") + "$")
    for site, template in SITE_HOOKS.items()
}


class InterventionError(LensEmotionError, ValueError):
    """An intervention is ill-specified: bad direction, beta, layers, positions or hook names."""


# --------------------------------------------------------------------------- hooks


@dataclass(frozen=True, eq=False)
class DirectionHook:
    """Add ``beta`` times a unit direction to an activation (a TransformerLens hook).

    Attributes:
        unit: The direction divided by its norm, float32 ``(d_model,)``.
        beta: Step size in activation units (or in RMS units when ``scale="rms"``).
        scale: ``"none"``: add ``beta * unit``; ``"rms"``: add ``beta * rms(h) * unit`` where
            ``rms(h)`` is the root-mean-square of the activation at that position (before
            the addition), so ``beta`` is relative to the stream's size at that layer.
        positions: ``"last"`` (last prompt token) or ``"all"`` (every position).
        norm: Norm of the direction as given (before normalising), for records.
    """

    unit: Float[Tensor, " d_model"] = field(repr=False)
    beta: float
    scale: Literal["none", "rms"] = "none"
    positions: Literal["last", "all"] = "last"
    norm: float = 1.0

    def delta(self, activation: Float[Tensor, "... d_model"]) -> Float[Tensor, "... d_model"]:
        """What this hook adds to ``activation`` (same shape)."""
        unit = self.unit.to(device=activation.device, dtype=activation.dtype)
        step = self.beta * unit
        if self.scale == "rms":
            rms = activation.float().pow(2).mean(dim=-1, keepdim=True).sqrt().to(activation.dtype)
            return rms * step
        return step.expand_as(activation)

    def apply_at(
        self, activation: Float[Tensor, "batch pos d_model"], column: int | None
    ) -> Float[Tensor, "batch pos d_model"]:
        """Add the step at one sequence column (``None``: at every column)."""
        if self.beta == 0.0:
            return activation
        if column is None:
            return activation + self.delta(activation)
        out = activation.clone()
        out[:, column] = activation[:, column] + self.delta(activation[:, column])
        return out

    def __call__(self, activation: Tensor, hook: Any = None) -> Tensor:
        """TransformerLens hook entry point: last column for ``"last"``, all for ``"all"``."""
        return self.apply_at(activation, -1 if self.positions == "last" else None)


@no_type_check  # validates its input itself, with clear errors
def direction_hook(
    direction: Float[Tensor, " d_model"] | np.ndarray,
    beta: float,
    *,
    scale: Literal["none", "rms"] = "none",
    positions: Literal["last", "all"] = "last",
) -> DirectionHook:
    """A hook that adds ``beta * d / ||d||`` (times the activation's RMS if ``scale="rms"``).

    Args:
        direction: The direction ``d``; only its orientation matters.
        beta: Signed step size: negative suppresses, positive facilitates.
        scale: ``"none"`` or ``"rms"`` (see :class:`DirectionHook`).
        positions: ``"last"`` (last prompt token) or ``"all"`` (every position, generated
            tokens included).

    Returns:
        The :class:`DirectionHook`.

    Raises:
        InterventionError: A zero, non-finite or non-vector direction, a non-finite beta, or
            unknown ``scale``/``positions``.
    """
    if isinstance(direction, Tensor):
        vec = direction.detach().to(device="cpu", dtype=torch.float64)
    else:
        vec = torch.as_tensor(np.asarray(direction, dtype=np.float64))
    if vec.ndim != 1:
        raise InterventionError(
            f"direction must be one vector (d_model,), got shape {tuple(vec.shape)}; pass one "
            "row of a direction matrix."
        )
    norm = float(vec.norm())
    if not np.isfinite(norm) or norm == 0.0:
        raise InterventionError(
            "direction is zero or not finite, so it has no orientation to steer along; check "
            "the probe that produced it (an all-zero ridge direction means the target had no "
            "variance)."
        )
    if not np.isfinite(beta):
        raise InterventionError(f"beta must be a finite number, got {beta!r}.")
    if scale not in ("none", "rms"):
        raise InterventionError(f"scale must be 'none' or 'rms', not {scale!r}.")
    if positions not in ("last", "all"):
        raise InterventionError(f"positions must be 'last' or 'all', not {positions!r}.")
    return DirectionHook(
        unit=(vec / norm).to(torch.float32),
        beta=float(beta),
        scale=scale,
        positions=positions,
        norm=norm,
    )


def _layer_list(model: Any, layers: Sequence[int] | int) -> list[int]:
    chosen = [int(layers)] if isinstance(layers, int | np.integer) else [int(x) for x in layers]
    if not chosen:
        raise InterventionError("no layers given; pass a layer index or a window of layers.")
    bad = [x for x in chosen if not 0 <= x < model.n_layers]
    if bad:
        raise InterventionError(
            f"layers {bad} are outside 0..{model.n_layers - 1} for this {model.n_layers}-layer "
            "model."
        )
    return list(dict.fromkeys(chosen))


def steering_hooks(
    model: Any,
    direction: Float[Tensor, " d_model"] | np.ndarray,
    beta: float,
    layers: Sequence[int] | int,
    site: str = "resid_post",
    scale: Literal["none", "rms"] = "none",
    positions: Literal["last", "all"] = "last",
) -> list[tuple[str, HookFn]]:
    """The same direction hook at one layer or a window of layers.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        direction: Direction ``(d_model,)``.
        beta: Step size per layer.
        layers: One layer or several (e.g. ``range(10, 13)`` for a window of three).
        site: A site of :data:`lens_emotion.models.SITE_HOOKS` with ``d_model``-wide
            activations (``resid_post`` by default).
        scale: ``"none"`` or ``"rms"``.
        positions: ``"last"`` or ``"all"``.

    Returns:
        ``[(hook_name, hook), ...]``, one per layer, ready for ``run_with_hooks`` or the
        functions of this module. At ``site="resid_mid"`` each layer gives two entries, a
        :class:`ResidPreCapture` at ``resid_pre`` and a :class:`ResidMidHook` at ``attn_out``:
        the step then moves the residual stream (the bridge's own ``hook_resid_mid`` is the
        MLP's input only; see :func:`residual_hooks`).

    Raises:
        InterventionError: Bad layers, site or direction width.
    """
    if site not in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"):
        raise InterventionError(
            f"site {site!r} cannot take a d_model-wide direction; use resid_post, resid_pre, "
            "resid_mid, attn_out or mlp_out."
        )
    width = int(np.asarray(direction).shape[-1]) if np.ndim(direction) else 0
    if width != model.d_model:
        raise InterventionError(
            f"direction has width {width} but the model's residual stream is {model.d_model} "
            "wide; the direction comes from another model or site."
        )
    hook = direction_hook(direction, beta, scale=scale, positions=positions)
    hooks = [(model.hook_name(site, layer), hook) for layer in _layer_list(model, layers)]
    return residual_hooks(model, hooks)


def parse_hook_name(name: str) -> tuple[str, int] | None:
    """``"blocks.12.hook_resid_post"`` -> ``("resid_post", 12)``; ``None`` if not a known site."""
    for site, pattern in _NAME_PATTERNS.items():
        match = pattern.match(name)
        if match:
            return site, int(match.group(1))
    return None


def _is_last_only(fn: HookFn) -> bool:
    return getattr(fn, "positions", "all") == "last"


# --------------------------------------------------------------------------- resid_mid


class ResidMidError(InterventionError):
    """An intervention at ``resid_mid`` cannot be given residual-stream semantics on this model."""


@dataclass(eq=False)
class ResidPreCapture:
    """Keeps the block input (``resid_pre``) of one layer for a :class:`ResidMidHook`.

    It returns ``None`` (reads only). ``positions`` follows the hook it serves, so the cached
    generation loop runs or skips the two together.
    """

    positions: str = "all"
    value: Tensor | None = field(default=None, repr=False)

    def __call__(self, activation: Tensor, hook: Any = None) -> None:
        """Record the block input of this forward pass."""
        self.value = activation


@dataclass(eq=False)
class ResidMidHook:
    """A hook written for ``resid_mid``, run at ``attn_out`` so that it edits the residual stream.

    In the TransformerLens bridge ``blocks.{l}.hook_resid_mid`` is an alias of ``ln2.hook_in``:
    an edit there reaches the MLP's input only, while the skip connection carries the unedited
    value on to ``resid_post``. Since ``resid_mid = resid_pre + attn_out`` (checked per model by
    :func:`check_resid_mid`), adding ``new - resid_mid`` to ``attn_out`` at the same positions
    is the residual-stream edit: the MLP reads the edited value *and* the skip path carries it.

    The wrapped hook ``inner`` sees ``resid_mid = resid_pre + attn_out`` (the value the bridge's
    ``hook_resid_mid`` would show it, with ``hook.name`` that hook's name) and may return a new
    value or ``None``.

    Attributes:
        inner: The hook as written for ``resid_mid``.
        capture: The :class:`ResidPreCapture` placed at ``resid_pre`` of the same layer.
        name: The ``resid_mid`` hook name.
    """

    inner: HookFn
    capture: ResidPreCapture
    name: str

    @property
    def positions(self) -> str:
        """``"last"`` or ``"all"``, as the wrapped hook declares (default ``"all"``)."""
        return getattr(self.inner, "positions", "all")

    def _mid(self, attn_out: Tensor) -> Tensor:
        pre = self.capture.value
        if pre is None or pre.shape != attn_out.shape:
            raise ResidMidError(
                f"the resid_mid hook {self.name!r} ran without the resid_pre value of its pass; "
                "pass the hook list from steering_hooks()/residual_hooks() whole, with its "
                "ResidPreCapture entry."
            )
        return pre.to(attn_out.dtype) + attn_out

    def __call__(self, activation: Tensor, hook: Any = None) -> Tensor | None:
        """TransformerLens hook entry point (``activation`` is ``attn_out``)."""
        mid = self._mid(activation)
        new = self.inner(mid, hook=_Point(self.name))
        if new is None:
            return None
        return activation + (new - mid)

    def apply_at(self, activation: Tensor, column: int | None) -> Tensor:
        """Apply a wrapped :class:`DirectionHook` at one column (``None``: every column)."""
        mid = self._mid(activation)
        return activation + (self.inner.apply_at(mid, column) - mid)  # type: ignore[attr-defined]


def check_resid_mid(model: Any, atol: float = 1e-4) -> None:
    """Check once per model that ``resid_mid = resid_pre + attn_out`` in every layer.

    That identity is what lets :class:`ResidMidHook` move the residual stream by editing
    ``attn_out``. It holds for pre-norm blocks (Llama, GPT-2, ...); it fails where the
    attention output is normalised again before the residual add (Gemma's post-attention
    norm), and resid_mid interventions are then refused.

    Raises:
        ResidMidError: The identity does not hold for this model.
    """
    error = getattr(model, "__dict__", {}).get("_resid_mid_error")
    if error is None:
        got: dict[str, Tensor] = {}
        names = []
        for layer in range(model.n_layers):
            for site in ("resid_pre", "attn_out", "resid_mid"):
                names.append((model.hook_name(site, layer), f"{site}.{layer}"))

        def keep(label: str) -> HookFn:
            def fn(act: Tensor, hook: Any = None) -> None:
                got[label] = act.detach().float()

            return fn

        ids = torch.tensor(
            [[int(model.tokenizer.bos_token_id or 0), 5, 17, 42]], device=model.device
        )
        ids = ids.clamp(max=int(model.cfg.d_vocab) - 1)
        with torch.inference_mode():
            model.bridge.run_with_hooks(ids, fwd_hooks=[(n, keep(label)) for n, label in names])
        error = 0.0
        for layer in range(model.n_layers):
            mid = got[f"resid_mid.{layer}"]
            diff = (got[f"resid_pre.{layer}"] + got[f"attn_out.{layer}"] - mid).abs().max()
            error = max(error, float(diff / mid.abs().max().clamp_min(1.0)))
        with contextlib.suppress(AttributeError, TypeError):
            model.__dict__["_resid_mid_error"] = error
    if error > atol:
        raise ResidMidError(
            f"resid_mid interventions need resid_mid = resid_pre + attn_out, but on this model "
            f"they differ by {error:.2g} (relative): its attention output is transformed again "
            "before the residual add, so no attn_out edit moves the stream; intervene at "
            "attn_out, resid_pre or resid_post instead."
        )


def residual_hooks(model: Any, hooks: Hooks) -> list[tuple[str, HookFn]]:
    """Give every hook at ``resid_mid`` residual-stream semantics (see :class:`ResidMidHook`).

    Each ``(blocks.{l}.hook_resid_mid, fn)`` becomes ``(blocks.{l}.hook_resid_pre, capture)``
    and ``(blocks.{l}.hook_attn_out, ResidMidHook(fn, capture))``, appended after the other
    hooks so that it sees what earlier hooks at those points did. Other hooks pass unchanged,
    so the function is idempotent. Every runner of this module, :mod:`lens_emotion.attribution`
    and :func:`steering_hooks` apply it; call it yourself before handing hooks written for
    ``resid_mid`` to ``bridge.run_with_hooks``.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        hooks: ``[(hook_name, fn), ...]``.

    Returns:
        The rewritten hook list.

    Raises:
        ResidMidError: The model's blocks do not satisfy ``resid_mid = resid_pre + attn_out``.
    """
    kept: list[tuple[str, HookFn]] = []
    moved: list[tuple[str, HookFn]] = []
    for name, fn in hooks:
        parsed = parse_hook_name(name)
        if parsed is None or parsed[0] != "resid_mid":
            kept.append((name, fn))
            continue
        check_resid_mid(model)
        layer = parsed[1]
        capture = ResidPreCapture(positions=getattr(fn, "positions", "all"))
        moved.append((model.hook_name("resid_pre", layer), capture))
        moved.append((model.hook_name("attn_out", layer), ResidMidHook(fn, capture, name)))
    return kept + moved


def _is_direction(fn: HookFn) -> bool:
    """A :class:`DirectionHook`, or one wrapped for ``resid_mid``."""
    if isinstance(fn, ResidMidHook):
        return isinstance(fn.inner, DirectionHook)
    return isinstance(fn, DirectionHook)


# --------------------------------------------------------------------------- engines


def resolve_intervention_engine(model: Any, hooks: Hooks, engine: str = "auto") -> str:
    """Pick ``"plain"`` or ``"bridge"`` for a set of hooks.

    Raises:
        InterventionError: Unknown engine, or ``"plain"`` with a hook it cannot place.
    """
    from lens_emotion.activations import ActivationStoreError, resolve_engine

    if engine not in ("auto", "plain", "bridge"):
        raise InterventionError(f"engine must be 'auto', 'plain' or 'bridge', not {engine!r}.")
    unplaceable = [
        name
        for name, _ in hooks
        if (parsed := parse_hook_name(name)) is None or parsed[0] not in PLAIN_SITES
    ]
    if engine == "bridge":
        return "bridge"
    if engine == "plain":
        if unplaceable:
            raise InterventionError(
                f"the plain engine can hook only {list(PLAIN_SITES)}, not {unplaceable[:3]}; "
                "use engine='bridge'."
            )
        try:
            return resolve_engine(model, "plain")
        except ActivationStoreError as exc:
            raise InterventionError(str(exc)) from exc
    if unplaceable:
        return "bridge"
    return resolve_engine(model, "auto")


@dataclass(frozen=True)
class _Point:
    """Stand-in for a TransformerLens HookPoint in the plain engine (hooks may read ``.name``)."""

    name: str


def _replace_first(output: Any, new: Tensor) -> Any:
    if isinstance(output, tuple):
        return (new, *output[1:])
    return new


@contextlib.contextmanager
def _plain_hooks(model: Any, hooks: Hooks, prompt_pass: bool) -> Iterator[None]:
    """Register hooks on the plain model; in non-prompt passes, ``"last"`` hooks are skipped.

    Modules come from the family adapter (:mod:`lens_emotion.architecture`); each hook sees
    the activation in the bridge's convention and its result is mapped back
    (``Architecture.to_bridge`` / ``from_bridge``: identities except for LayerNorm families).
    """
    from lens_emotion.architecture import architecture

    arch = architecture(model)
    handles = []
    active = [(name, fn) for name, fn in hooks if prompt_pass or not _is_last_only(fn)]
    for name, fn in residual_hooks(model, active):
        parsed = parse_hook_name(name)
        if parsed is None or parsed[0] not in PLAIN_SITES:
            raise InterventionError(f"the plain engine cannot place hook {name!r}.")
        site, layer = parsed
        point = _Point(name)

        def call(act: Tensor, fn=fn, point=point, site=site, layer=layer) -> Tensor | None:
            new = fn(arch.to_bridge(site, layer, act), hook=point)
            return None if new is None else arch.from_bridge(site, layer, new, act)

        if site == "resid_pre":

            def pre(module, args, kwargs, call=call):
                if "hidden_states" in kwargs:
                    new = call(kwargs["hidden_states"])
                    return None if new is None else (args, {**kwargs, "hidden_states": new})
                new = call(args[0])
                return None if new is None else ((new, *args[1:]), kwargs)

            handles.append(arch.layer(layer).register_forward_pre_hook(pre, with_kwargs=True))
            continue

        def post(module, args, output, call=call):
            act = output[0] if isinstance(output, tuple) else output
            new = call(act)
            return None if new is None else _replace_first(output, new)

        target, _ = arch.site_module(site, layer)
        handles.append(target.register_forward_hook(post))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _positions(mask: Tensor) -> Tensor:
    return (mask.long().cumsum(-1) - 1).clamp(min=0)


def _bridge_last_logits(
    model: Any, input_ids: Tensor, mask: Tensor, hooks: Hooks
) -> Float[Tensor, "batch vocab"]:
    hooks = residual_hooks(model, hooks)
    try:
        logits = model.bridge.run_with_hooks(
            input_ids, attention_mask=mask, fwd_hooks=hooks, logits_to_keep=1
        )
    except TypeError:
        logits = model.bridge.run_with_hooks(input_ids, attention_mask=mask, fwd_hooks=hooks)
    return logits[:, -1, :].float()


def _plain_last_logits(
    model: Any, input_ids: Tensor, mask: Tensor, hooks: Hooks
) -> Float[Tensor, "batch vocab"]:
    with _plain_hooks(model, hooks, prompt_pass=True):
        out = model.plain_model(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=_positions(mask),
            use_cache=False,
            logits_to_keep=1,
        )
    return out.logits[:, -1, :].float()


# --------------------------------------------------------------------------- readout


def _label_ids(model: Any, prompt_set: Any) -> Tensor:
    return torch.tensor(prompt_set.label_tokens.token_ids, device=model.device)


@torch.inference_mode()
def readout_with_hooks(
    model: Any,
    prompt_set: Any,
    hooks: Hooks,
    batch_size: int = 16,
    engine: str = "auto",
    progress: bool = True,
) -> Float[np.ndarray, "n n_labels"]:
    """Label log-probabilities at the last prompt token with hooks active.

    The same quantity as :func:`lens_emotion.inference.label_logprobs` (full-vocabulary
    log-softmax of each label's scored token), computed with the given hooks in place.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        prompt_set: A :class:`~lens_emotion.prompts.PromptSet`.
        hooks: ``[(hook_name, fn), ...]`` (may be empty).
        batch_size: Prompts per forward pass (length-bucketed, left padded).
        engine: ``"auto"``, ``"plain"`` or ``"bridge"`` (see the module docstring).
        progress: Show a progress bar.

    Returns:
        ``(len(prompt_set), n_labels)`` float32, in prompt-set order.
    """
    chosen = resolve_intervention_engine(model, hooks, engine)
    label_ids = _label_ids(model, prompt_set)
    out = np.zeros((len(prompt_set), len(label_ids)), dtype=np.float32)
    run = _plain_last_logits if chosen == "plain" else _bridge_last_logits
    bar = tqdm(total=len(prompt_set), desc="readout", disable=not progress, unit="prompt")
    for batch in length_batches(prompt_set.lengths, batch_size):
        input_ids, mask = model.pad([prompt_set.token_ids[i] for i in batch])
        logits = run(model, input_ids, mask, hooks)
        out[batch] = torch.log_softmax(logits, dim=-1)[:, label_ids].cpu().numpy()
        bar.update(len(batch))
    bar.close()
    return out


def _fast_path_ok(model: Any, hook_sets: Sequence[Hooks], prompt_set: Any) -> bool:
    if min(prompt_set.lengths, default=0) < 2:
        return False
    every = [(name, fn) for hooks in hook_sets for name, fn in residual_hooks(model, hooks)]
    if not all(
        (_is_direction(fn) or isinstance(fn, ResidPreCapture)) and fn.positions == "last"
        for _, fn in every
    ):
        return False
    return resolve_intervention_engine(model, every, "auto") == "plain"


@torch.inference_mode()
def readout_many(
    model: Any,
    prompt_set: Any,
    hook_sets: Sequence[Hooks],
    batch_size: int = 16,
    engine: str = "auto",
    progress: bool = True,
) -> Float[np.ndarray, "n_sets n n_labels"]:
    """Label log-probabilities under many hook sets (e.g. a beta x direction x layer sweep).

    When every hook is a last-position :class:`DirectionHook` and the plain engine is
    available, each batch's prompt prefix is run once and every hook set costs a one-token
    forward pass (see the module docstring); otherwise each set is a full
    :func:`readout_with_hooks` pass.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        prompt_set: A :class:`~lens_emotion.prompts.PromptSet`.
        hook_sets: One hook list per condition (an empty list is the clean run).
        batch_size: Prompts per forward pass.
        engine: ``"auto"`` (fast path when possible), ``"plain"`` or ``"bridge"``.
        progress: Show a progress bar.

    Returns:
        ``(len(hook_sets), len(prompt_set), n_labels)`` float32.
    """
    n_sets = len(hook_sets)
    label_ids = _label_ids(model, prompt_set)
    out = np.zeros((n_sets, len(prompt_set), len(label_ids)), dtype=np.float32)
    if engine != "auto" or not _fast_path_ok(model, hook_sets, prompt_set):
        for k, hooks in enumerate(
            tqdm(hook_sets, desc="readout sweep", disable=not progress, unit="set")
        ):
            out[k] = readout_with_hooks(model, prompt_set, hooks, batch_size, engine, False)
        return out
    from transformers import DynamicCache

    from lens_emotion.architecture import architecture

    hf = model.plain_model
    base = architecture(model).base
    bar = tqdm(
        total=len(prompt_set) * n_sets, desc="readout sweep", disable=not progress, unit="prompt"
    )
    for batch in length_batches(prompt_set.lengths, batch_size):
        input_ids, mask = model.pad([prompt_set.token_ids[i] for i in batch])
        prefix = base(  # full cache layers (no sliding-window trimming), so crop() works
            input_ids=input_ids[:, :-1],
            attention_mask=mask[:, :-1],
            position_ids=_positions(mask[:, :-1]),
            past_key_values=DynamicCache(),
            use_cache=True,
        )
        cache = prefix.past_key_values
        last_ids = input_ids[:, -1:]
        last_pos = _positions(mask)[:, -1:]
        for k, hooks in enumerate(hook_sets):
            with _plain_hooks(model, hooks, prompt_pass=True):
                step = hf(
                    input_ids=last_ids,
                    attention_mask=mask,
                    position_ids=last_pos,
                    past_key_values=cache,
                    use_cache=True,
                    logits_to_keep=1,
                )
            cache.crop(-1)  # drop the last token's keys/values again
            logits = step.logits[:, -1, :].float()
            out[k, batch] = torch.log_softmax(logits, dim=-1)[:, label_ids].cpu().numpy()
            bar.update(len(batch))
    bar.close()
    return out


# --------------------------------------------------------------------------- generation


def _stop_ids(model: Any) -> set[int]:
    ids: set[int] = set()
    if model.tokenizer.eos_token_id is not None:
        ids.add(int(model.tokenizer.eos_token_id))
    try:
        with open(model.path / "generation_config.json") as handle:
            config = json.load(handle).get("eos_token_id")
    except (OSError, ValueError):
        config = None
    if isinstance(config, int):
        ids.add(config)
    elif isinstance(config, list):
        ids.update(int(x) for x in config)
    return ids


def _next_tokens(
    logits: Tensor, do_sample: bool, temperature: float, generator: torch.Generator | None
) -> Tensor:
    if not do_sample:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def _generate_plain(
    model: Any,
    input_ids: Tensor,
    mask: Tensor,
    hooks: Hooks,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    generator: torch.Generator | None,
    stop: set[int],
) -> Tensor:
    hf = model.plain_model
    with _plain_hooks(model, hooks, prompt_pass=True):
        out = hf(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=_positions(mask),
            use_cache=True,
            logits_to_keep=1,
        )
    cache = out.past_key_values
    position = _positions(mask)[:, -1:]
    new: list[Tensor] = []
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    pad = model.tokenizer.pad_token_id
    stop_t = torch.tensor(sorted(stop), device=input_ids.device)
    for step in range(max_new_tokens):
        token = _next_tokens(out.logits[:, -1, :], do_sample, temperature, generator)
        token = torch.where(done, torch.full_like(token, pad), token)
        new.append(token)
        done = done | torch.isin(token, stop_t)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=1)
        position = position + 1
        with _plain_hooks(model, hooks, prompt_pass=False):
            out = hf(
                input_ids=token[:, None],
                attention_mask=mask,
                position_ids=position,
                past_key_values=cache,
                use_cache=True,
                logits_to_keep=1,
            )
    return torch.stack(new, dim=1)


def _generate_bridge(
    model: Any,
    input_ids: Tensor,
    mask: Tensor,
    hooks: Hooks,
    max_new_tokens: int,
    do_sample: bool,
    temperature: float,
    generator: torch.Generator | None,
    stop: set[int],
) -> Tensor:
    """Reference loop: re-run the whole sequence each step; ``"last"`` hooks at the prompt end."""
    column = input_ids.shape[1] - 1
    pinned: list[tuple[str, HookFn]] = []
    for name, fn in residual_hooks(model, hooks):
        if isinstance(fn, ResidPreCapture):
            pinned.append((name, fn))  # reads only: harmless in every pass
        elif _is_direction(fn) and fn.positions == "last":

            def at_prompt_end(act, hook=None, fn=fn):
                return fn.apply_at(act, column)

            pinned.append((name, at_prompt_end))
        elif _is_last_only(fn):
            raise InterventionError(
                f"hook {name!r} is marked positions='last' but is not a DirectionHook; the "
                "bridge engine cannot pin it to the prompt end. Use engine='plain'."
            )
        else:
            pinned.append((name, fn))
    new: list[Tensor] = []
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
    pad = model.tokenizer.pad_token_id
    stop_t = torch.tensor(sorted(stop), device=input_ids.device)
    ids, full_mask = input_ids, mask
    for _ in range(max_new_tokens):
        logits = _bridge_last_logits(model, ids, full_mask, pinned)
        token = _next_tokens(logits, do_sample, temperature, generator)
        token = torch.where(done, torch.full_like(token, pad), token)
        new.append(token)
        done = done | torch.isin(token, stop_t)
        if bool(done.all()):
            break
        ids = torch.cat([ids, token[:, None]], dim=1)
        full_mask = torch.cat([full_mask, torch.ones_like(full_mask[:, :1])], dim=1)
    return torch.stack(new, dim=1)


@torch.inference_mode()
def generate_with_hooks(
    model: Any,
    prompts: Sequence[str],
    hooks: Hooks,
    max_new_tokens: int = 40,
    seed: int = 0,
    do_sample: bool = False,
    batch_size: int = 8,
    progress: bool = True,
    *,
    temperature: float = 1.0,
    add_special_tokens: bool = True,
    engine: str = "auto",
) -> list[str]:
    """Continue prompts with hooks active; return only the new text of each.

    Batches are length-bucketed and left padded; decoding stops per row at an end-of-sequence
    token. Position semantics of the hooks are described in the module docstring.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        prompts: Prompt strings (already chat-formatted if wanted).
        hooks: ``[(hook_name, fn), ...]`` (empty for plain generation).
        max_new_tokens: Tokens to generate at most.
        seed: Seed of the sampler (unused when greedy).
        do_sample: Sample instead of greedy decoding.
        batch_size: Prompts per batch.
        progress: Show a progress bar.
        temperature: Sampling temperature.
        add_special_tokens: Let the tokenizer add its special tokens (not for chat prompts
            that already hold them).
        engine: ``"auto"``, ``"plain"`` (KV-cached) or ``"bridge"`` (uncached reference).

    Returns:
        One decoded continuation per prompt, special tokens removed, in prompt order.

    Raises:
        InterventionError: Bad ``max_new_tokens``, ``temperature`` or hooks.
    """
    if max_new_tokens < 1:
        raise InterventionError(f"max_new_tokens must be at least 1, got {max_new_tokens}.")
    if do_sample and not temperature > 0:
        raise InterventionError(f"temperature must be positive when sampling, got {temperature}.")
    chosen = resolve_intervention_engine(model, hooks, engine)
    token_ids = model.encode(list(prompts), add_special_tokens=add_special_tokens)
    generator = None
    if do_sample:
        generator = torch.Generator(device=model.device)
        generator.manual_seed(int(seed))
    stop = _stop_ids(model)
    run = _generate_plain if chosen == "plain" else _generate_bridge
    texts: list[str] = [""] * len(token_ids)
    bar = tqdm(total=len(token_ids), desc="generate", disable=not progress, unit="prompt")
    for batch in length_batches([len(t) for t in token_ids], batch_size):
        input_ids, mask = model.pad([token_ids[i] for i in batch])
        new = run(
            model, input_ids, mask, hooks, max_new_tokens, do_sample, temperature, generator, stop
        ).cpu()
        for row, index in enumerate(batch):
            tokens = new[row].tolist()
            cut = next((j for j, t in enumerate(tokens) if t in stop), len(tokens))
            texts[index] = model.tokenizer.decode(tokens[:cut], skip_special_tokens=True)
        bar.update(len(batch))
    bar.close()
    return texts
