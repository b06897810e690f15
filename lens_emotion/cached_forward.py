"""Last-position patched forwards on transformers' own decoder layers, for every family.

Attention is causal, so overwriting an activation at the **last** position changes nothing at
earlier positions: their keys and values in every layer stay those of the clean run. A patched
run therefore only has to recompute the last position, from the first patched layer on,
attending to the clean run's cached keys/values plus its own new key/value.

:class:`CachedLastToken` does that with the model's own modules (found by the family adapter
of :mod:`lens_emotion.architecture`), so any decoder the adapter covers gets the fast path:
RoPE variants, QK-norm, Gemma's extra norms and soft-capping, sliding-window layers, fused
projections (Phi-3, GPT-NeoX), parallel residuals and absolute positions (GPT-2).

1. :meth:`CachedLastToken.clean` runs the clean prompts once through the plain model with
   transformers' KV cache (a :class:`transformers.DynamicCache` with full layers, so that
   sliding-window layers keep every key) and keeps the keys/values of positions ``0 .. T-2``
   and the last-position activations of every site.
2. :meth:`CachedLastToken.patched` runs many *variants* for every prompt at once. The
   last-position rows are laid out variant-major (``[variants x prompts, 1, d_model]``); a
   variant joins at its start layer with the clean ``resid_pre`` there, and each decoder layer
   is called once per layer on all active rows. Overwrites are PyTorch hooks on the modules
   that produce the sites. Inside the layer, attention runs through a registered transformers
   attention function (``"lens_emotion_last_token"``) that scores the new query against the
   shared clean prefix without copying it per variant (one einsum over ``[prompts, kv_heads,
   T-1, d_head]``), then against the row's own new key; it honours the scaling, soft-cap and
   sliding window each attention module passes, and the padding of each prompt.

Values read and written are in the bridge's convention
(:meth:`~lens_emotion.architecture.Architecture.to_bridge`), so results equal the bridge's
full-sequence patch (``tests/test_cached_forward.py``). It takes the
:class:`lens_emotion.patching.fast.Variant` requests of :mod:`lens_emotion.patching.engines`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from jaxtyping import Float
from torch import Tensor

from lens_emotion.architecture import ArchitectureError, architecture, unsupported_reason

if TYPE_CHECKING:  # lens_emotion.patching imports this module (its "fast" engine)
    from lens_emotion.patching.fast import Provider, Variant

PATCH_SITES: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post", "z")
"""Sites a variant can overwrite (as :data:`lens_emotion.patching.fast.PATCH_SITES`)."""

ATTENTION_NAME = "lens_emotion_last_token"
"""Name under which the last-token attention function is registered with transformers."""

_ACT_SITES: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out", "resid_post", "z")


@dataclass
class CachedRun:
    """Cached clean run of a batch of left-padded prompts (tensors on the model device).

    Attributes:
        keys: Per layer, keys of positions ``0 .. T-2`` as the model caches them (after RoPE
            and any QK-norm): ``[P, n_kv, T-1, d_head]`` (empty without a cache).
        values: Per layer, values of those positions (same shape).
        key_mask: Which of those positions are real tokens: ``[P, T-1]`` bool.
        last_position: Position id of the last token: ``[P]``.
        acts: Last-position activations in the bridge's convention: ``resid_pre``,
            ``attn_out``, ``mlp_out``, ``resid_post`` as ``[n_layers, P, d_model]``, ``z`` as
            ``[n_layers, P, n_heads, d_head]``.
        logits: Clean label logits at the last position: ``[P, n_labels]``.
        resid_pre_plain: ``resid_pre`` at the last position as the plain model holds it
            (where the patched rows start): ``[n_layers, P, d_model]``.
    """

    keys: list[Tensor]
    values: list[Tensor]
    key_mask: Tensor
    last_position: Tensor
    acts: dict[str, Tensor]
    logits: Float[Tensor, "P n_labels"]
    resid_pre_plain: Tensor = field(repr=False)

    def select(self, index: Tensor) -> CachedRun:
        """The run of the prompts at ``index`` (repeats allowed: one clean run, many rows)."""
        return CachedRun(
            keys=[k[index] for k in self.keys],
            values=[v[index] for v in self.values],
            key_mask=self.key_mask[index],
            last_position=self.last_position[index],
            acts={s: a[:, index] for s, a in self.acts.items()},
            logits=self.logits[index],
            resid_pre_plain=self.resid_pre_plain[:, index],
        )


# --------------------------------------------------------------------------- attention


@dataclass
class _Context:
    """What the registered attention function needs during one patched layer call."""

    run: CachedRun
    n_prompts: int


_CONTEXT: list[_Context] = []


class _NewKeysOnly:
    """Stands in for a cache during patched calls: ``update`` hands back the new key/value.

    The clean prefix is read by the attention function from the active context instead, so
    it is never copied per variant.
    """

    def update(self, key_states: Tensor, value_states: Tensor, *args: Any, **kwargs: Any):
        return key_states, value_states


def _last_token_attention(
    module: Any,
    query: Tensor,
    key: Tensor,
    value: Tensor,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    softcap: float | None = None,
    sliding_window: int | None = None,
    **kwargs: Any,
) -> tuple[Tensor, None]:
    """Attention of one new query per row against the shared clean prefix and its own key.

    ``query`` is ``[m*P, H, 1, d]`` (variant-major rows), ``key``/``value`` ``[m*P, kv, 1, d]``.
    Returns ``[m*P, 1, H, d]`` as transformers' attention functions do.
    """
    context = _CONTEXT[-1]
    run = context.run
    layer = module.layer_idx
    P = context.n_prompts
    R, H, _, d = query.shape
    m = R // P
    n_kv = key.shape[1]
    group = H // n_kv
    if scaling is None:
        scaling = d**-0.5
    q = query.view(m, P, n_kv, group, d)
    k_new = key.view(m, P, n_kv, d)
    v_new = value.view(m, P, n_kv, d)
    keys, values = run.keys[layer], run.values[layer]  # [P, kv, T-1, d]
    prefix = torch.einsum("mpkgd,pktd->mpkgt", q, keys) * scaling
    own = torch.einsum("mpkgd,mpkd->mpkg", q, k_new)[..., None] * scaling
    scores = torch.cat([prefix, own], dim=-1)
    if softcap:
        scores = torch.tanh(scores / softcap) * softcap
    allowed = run.key_mask
    if sliding_window:
        T1 = allowed.shape[1]
        distance = T1 - torch.arange(T1, device=allowed.device)  # query index T-1 minus key index
        allowed = allowed & (distance < sliding_window)[None]
    bias = torch.zeros(allowed.shape, dtype=torch.float32, device=allowed.device)
    bias.masked_fill_(~allowed, float("-inf"))
    bias = torch.cat([bias, bias.new_zeros(P, 1)], dim=1)
    probs = torch.softmax(scores.float() + bias[None, :, None, None, :], dim=-1).to(query.dtype)
    z = torch.einsum("mpkgt,pktd->mpkgd", probs[..., :-1], values)
    z = z + probs[..., -1:] * v_new[:, :, :, None, :]
    return z.reshape(R, 1, H, d), None


def _register_attention() -> None:
    from transformers import AttentionInterface

    if ATTENTION_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION_NAME, _last_token_attention)


@contextlib.contextmanager
def _attention_implementation(configs: Sequence[Any], name: str) -> Iterator[None]:
    """Switch the attention modules' configs to ``name`` for the duration of a block."""
    saved = [config._attn_implementation_internal for config in configs]
    try:
        for config in configs:
            config._attn_implementation_internal = name
        yield
    finally:
        for config, old in zip(configs, saved, strict=True):
            config._attn_implementation_internal = old


# --------------------------------------------------------------------------- engine


def cached_path_reason(model: Any) -> str | None:
    """One line saying why :class:`CachedLastToken` cannot run a model, or ``None``."""
    reason = unsupported_reason(model)
    return None if reason is None else f"cached last-position path: {reason}"


def cached_path_supported(model: Any) -> bool:
    """Whether :class:`CachedLastToken` covers the model's architecture."""
    return cached_path_reason(model) is None


def _replace_first(output: Any, new: Tensor) -> Any:
    return (new, *output[1:]) if isinstance(output, tuple) else new


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


class CachedLastToken:
    """Batched last-position forwards on the model's own decoder layers (module docstring).

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel` whose family has an adapter.

    Raises:
        ArchitectureError: No adapter for the model (the message says why).
    """

    def __init__(self, model: Any) -> None:
        reason = cached_path_reason(model)
        if reason is not None:
            raise ArchitectureError(reason)
        _register_attention()
        self.model = model
        self.arch = architecture(model)
        hf = model.plain_model
        self.n_layers = self.arch.n_layers
        self.n_heads = self.arch.n_heads
        self.d_head = self.arch.d_head
        self.device = next(hf.parameters()).device
        self.dtype = next(hf.parameters()).dtype
        configs: dict[int, Any] = {}
        for layer in range(self.n_layers):
            config = self.arch.attn(layer).config
            configs[id(config)] = config
        self._configs = list(configs.values())

    # ------------------------------------------------------------------ clean run

    @torch.inference_mode()
    def clean(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        label_ids: Tensor,
        keep_cache: bool = True,
    ) -> CachedRun:
        """Run left-padded prompts once (with transformers' KV cache) and keep the last position.

        Args:
            input_ids: ``[P, T]`` left-padded token ids.
            attention_mask: ``[P, T]`` 1 for real tokens.
            label_ids: Token ids of the labels (for the clean label logits).
            keep_cache: Keep per-layer keys/values (needed for :meth:`patched`).
        """
        from transformers import DynamicCache

        arch = self.arch
        plain: dict[str, list[Tensor]] = {s: [None] * self.n_layers for s in _ACT_SITES}
        handles = []

        def grab(site: str, layer: int, act: Tensor) -> None:
            plain[site][layer] = act[:, -1].clone()

        for layer in range(self.n_layers):
            for site in ("resid_pre", "z"):
                module, _ = arch.site_module(site, layer)

                def pre(mod, args, kwargs, site=site, layer=layer):
                    grab(site, layer, kwargs.get("hidden_states", args[0] if args else None))

                handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
            for site in ("attn_out", "mlp_out", "resid_post"):
                module, _ = arch.site_module(site, layer)

                def post(mod, args, output, site=site, layer=layer):
                    grab(site, layer, _first(output))

                handles.append(module.register_forward_hook(post))
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        cache = DynamicCache() if keep_cache else None
        try:
            arch.base(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=keep_cache,
            )
        finally:
            for handle in handles:
                handle.remove()
        keys: list[Tensor] = []
        values: list[Tensor] = []
        if cache is not None:
            for layer in range(self.n_layers):
                keys.append(cache.layers[layer].keys[:, :, :-1])
                values.append(cache.layers[layer].values[:, :, :-1])
        stacked = {s: torch.stack(v) for s, v in plain.items()}
        stacked["z"] = stacked["z"].reshape(self.n_layers, -1, self.n_heads, self.d_head)
        acts = {
            s: torch.stack([arch.to_bridge(s, layer, v[layer]) for layer in range(self.n_layers)])
            for s, v in stacked.items()
        }
        return CachedRun(
            keys=keys,
            values=values,
            key_mask=attention_mask[:, :-1].bool(),
            last_position=positions[:, -1],
            acts=acts,
            logits=arch.label_logits(stacked["resid_post"][-1], label_ids),
            resid_pre_plain=stacked["resid_pre"],
        )

    # ------------------------------------------------------------------ patched runs

    @torch.inference_mode()
    def patched(
        self,
        clean: CachedRun,
        variants: Sequence[Variant],
        provider: Provider,
        rows: Tensor,
        label_ids: Tensor,
    ) -> Float[Tensor, "P m n_labels"]:
        """Label logits of every prompt of ``clean`` under every variant.

        Args:
            clean: The prompts' clean run (with cache).
            variants: Interventions; all are applied to every prompt.
            provider: Values to write (see :data:`~lens_emotion.patching.fast.Provider`),
                in the bridge's convention, called with ``rows``.
            rows: Row indices of the prompts of ``clean`` (passed to ``provider``).
            label_ids: Token ids of the labels.

        Returns:
            ``[P, len(variants), n_labels]`` float32 logits, variants in the given order.
        """
        bad = sorted({v.site for v in variants} - set(PATCH_SITES))
        if bad:
            raise ArchitectureError(f"Unknown sites {bad}; choose from {list(PATCH_SITES)}.")
        arch = self.arch
        P = clean.logits.shape[0]
        order = sorted(range(len(variants)), key=lambda j: variants[j].start)
        ordered = [variants[j] for j in order]
        starts = [v.start for v in ordered]
        resid_pre = clean.resid_pre_plain
        d_model = resid_pre.shape[-1]
        position = clean.last_position[:, None]  # [P, 1]
        probe = resid_pre[0][:, None, :]
        pe_per_layer = arch.position_embeddings(probe, position)
        x = resid_pre.new_zeros(0, 1, d_model)
        active = 0
        cache = _NewKeysOnly()
        _CONTEXT.append(_Context(clean, P))
        try:
            with _attention_implementation(self._configs, ATTENTION_NAME):
                for layer in range(starts[0], self.n_layers):
                    joining = 0
                    while active + joining < len(ordered) and starts[active + joining] == layer:
                        joining += 1
                    if joining:
                        fresh = resid_pre[layer][None].expand(joining, P, d_model)
                        x = torch.cat([x, fresh.reshape(joining * P, 1, d_model)])
                        active += joining
                    x = self._layer(
                        layer,
                        x,
                        active,
                        ordered,
                        provider,
                        rows,
                        position,
                        pe_per_layer[layer],
                        cache,
                    )
        finally:
            _CONTEXT.pop()
        logits = arch.label_logits(x[:, 0], label_ids).view(len(ordered), P, -1)
        out = torch.empty(P, len(variants), logits.shape[-1], device=logits.device)
        out[:, order] = logits.transpose(0, 1)
        return out

    def _layer(
        self,
        layer: int,
        x: Tensor,
        active: int,
        ordered: Sequence[Variant],
        provider: Provider,
        rows: Tensor,
        position: Tensor,
        position_embeddings: Any,
        cache: Any,
    ) -> Tensor:
        """One decoder layer on all active rows, with this layer's overwrites as hooks."""
        arch = self.arch
        P = rows.shape[0]
        plan: dict[str, list[int]] = {}
        for j, variant in enumerate(ordered[:active]):
            if layer in variant.layers and layer >= variant.start:
                plan.setdefault(variant.site, []).append(j)

        def values(site: str) -> list[tuple[int, Tensor]]:
            return [
                (j, provider(ordered[j], layer, rows).to(device=self.device, dtype=self.dtype))
                for j in plan.get(site, [])
            ]

        def write_residual(site: str, act: Tensor) -> Tensor:
            act = act.clone()
            for j, value in values(site):
                block = act[j * P : (j + 1) * P, -1]
                act[j * P : (j + 1) * P, -1] = arch.from_bridge(site, layer, value, block)
            return act

        handles = []
        if "z" in plan:

            def pre_z(module, args):
                z = args[0].clone()
                view = z.view(*z.shape[:2], self.n_heads, self.d_head)
                bias = arch.z_bias(layer) if arch.family.layernorm else None
                for j, value in values("z"):
                    head = ordered[j].head
                    if bias is not None:
                        value = value + bias[head].to(value.dtype)
                    view[j * P : (j + 1) * P, -1, head] = value
                return (z, *args[1:])

            handles.append(arch.out_proj(layer).register_forward_pre_hook(pre_z))
        for site in ("attn_out", "mlp_out"):
            if site in plan:
                module, _ = arch.site_module(site, layer)

                def post(module, args, output, site=site):
                    return _replace_first(output, write_residual(site, _first(output)))

                handles.append(module.register_forward_hook(post))
        R = x.shape[0]
        m = R // P
        pos = position.repeat(m, 1)
        pe = position_embeddings
        if pe is not None:
            pe = tuple(t.repeat(m, *([1] * (t.dim() - 1))) for t in pe)
        try:
            x = arch.call_layer(layer, x, pos, pe, cache)
        finally:
            for handle in handles:
                handle.remove()
        if "resid_post" in plan:
            x = write_residual("resid_post", x)
        return x


def cached_engine(model: Any) -> CachedLastToken:
    """The model's (cached) :class:`CachedLastToken`."""
    engine = getattr(model, "_cached_last_token_engine", None)
    if engine is None:
        engine = CachedLastToken(model)
        model._cached_last_token_engine = engine
    return engine
