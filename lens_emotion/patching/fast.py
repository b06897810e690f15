"""Last-position patched forwards for Llama-family decoders, from the model's own weights.

Attention is causal, so overwriting an activation at the **last** position changes nothing at
earlier positions: their keys and values in every layer stay those of the clean run. A patched
run therefore only has to recompute the last position, from the first patched layer on, and
let it attend to the clean run's cached keys/values (post-RoPE) at positions ``0 .. T-2`` plus
its own new key/value. :class:`LastTokenLlama` does exactly that:

1. :meth:`LastTokenLlama.clean` runs the clean prompts once (full sequence, left-padded,
   SDPA) and keeps, per layer, the keys/values of all but the last position and the
   last-position activations (``resid_pre``, ``z``, ``attn_out``, ``mlp_out``,
   ``resid_post``) plus the clean label logits.
2. :meth:`LastTokenLlama.patched` runs many *variants* (what to overwrite, where) for every
   prompt of the batch at once. The last-position state has shape ``[prompts, variants,
   d_model]``; a variant joins at its start layer (the first layer of its window, or the last
   one for ``resid_post`` whose overwrite makes earlier layers irrelevant), so each layer does
   one batched matmul over all variants that are active there.

The block is re-implemented from the weights of ``model.plain_model`` (the plain transformers
copy): RMSNorm, rotary embeddings (the model's own rotary module computes cos/sin, so RoPE
scaling variants are honoured), grouped-query attention (query head ``h`` reads key/value
head ``h // (n_heads / n_kv_heads)``, as ``repeat_kv`` does), gated SiLU MLP, final norm and
the label rows of the unembedding. Compatibility mode of the bridge only folds weights for
RMSNorm models, so these activations equal the bridge's hook values (checked by
:func:`fast_path_matches` before first use, and by the tests to ~1e-4 on SmolLM2). Raw logits
differ from the bridge's by a per-row constant (it centres the unembedding); logit
*differences* and argmax agree.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

if TYPE_CHECKING:
    from lens_emotion.models import EmotionModel

__all__ = [
    "FAST_ARCHITECTURES",
    "PATCH_SITES",
    "CleanRun",
    "LastTokenLlama",
    "Provider",
    "Variant",
    "fast_path_supported",
]

FAST_ARCHITECTURES = frozenset({"LlamaForCausalLM", "Qwen2ForCausalLM"})
"""Architectures whose decoder block :class:`LastTokenLlama` re-implements."""

PATCH_SITES: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post", "z")
"""Sites a :class:`Variant` can overwrite (``z``: one query head's attention output)."""


@dataclass(frozen=True)
class Variant:
    """One intervention applied to every prompt of a batch.

    Attributes:
        site: ``"attn_out"``, ``"mlp_out"``, ``"resid_post"`` or ``"z"``.
        layers: Layers whose last-position activation is overwritten (sorted).
        head: Query head for ``site="z"`` (``None`` otherwise).
        kind: What is written, interpreted by the value provider (``"source"``, ``"zero"``,
            ``"mean"``, ``"random"``).
    """

    site: str
    layers: tuple[int, ...]
    head: int | None = None
    kind: str = "source"

    @property
    def start(self) -> int:
        """First layer the last position must be recomputed from.

        Overwriting ``resid_post`` at the window's last layer fixes the stream there, so the
        earlier layers of the window do not change the result.
        """
        return max(self.layers) if self.site == "resid_post" else min(self.layers)


Provider = Callable[[Variant, int, Tensor], Tensor]
"""``provider(variant, layer, rows)`` returns the value written at ``layer`` for the target
rows ``rows`` (a 1-D long tensor of row indices on the model's device): ``[len(rows),
d_model]``, or ``[len(rows), d_head]`` for ``z``."""


@dataclass
class CleanRun:
    """Cached clean run of a batch of left-padded prompts (all tensors on the model device).

    Attributes:
        keys: Per layer, post-RoPE keys of positions ``0 .. T-2``: ``[P, n_kv, T-1, d_head]``
            (empty when the run kept no cache).
        values: Per layer, values of positions ``0 .. T-2`` (same shape).
        key_bias: Additive attention mask over those positions (0 or -inf): ``[P, T-1]``.
        cos: Rotary cosine at the last position: ``[P, d_head]``.
        sin: Rotary sine at the last position: ``[P, d_head]``.
        acts: Last-position activations per site: ``resid_pre``, ``attn_out``, ``mlp_out``,
            ``resid_post`` as ``[n_layers, P, d_model]``, ``z`` as ``[n_layers, P, n_heads,
            d_head]``.
        logits: Clean logits of the label tokens at the last position: ``[P, n_labels]``.
    """

    keys: list[Tensor]
    values: list[Tensor]
    key_bias: Float[Tensor, "P prev"]
    cos: Float[Tensor, "P d_head"]
    sin: Float[Tensor, "P d_head"]
    acts: dict[str, Tensor]
    logits: Float[Tensor, "P n_labels"]

    def select(self, index: Tensor) -> CleanRun:
        """The run of the prompts at ``index`` (repeats allowed: one clean run, many rows)."""
        return CleanRun(
            keys=[k[index] for k in self.keys],
            values=[v[index] for v in self.values],
            key_bias=self.key_bias[index],
            cos=self.cos[index],
            sin=self.sin[index],
            acts={s: a[:, index] for s, a in self.acts.items()},
            logits=self.logits[index],
        )


def _rotate_half(x: Tensor) -> Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    return x * cos + _rotate_half(x) * sin


def fast_path_supported(model: EmotionModel) -> bool:
    """Whether the model's architecture is one :class:`LastTokenLlama` re-implements."""
    try:
        with open(model.path / "config.json") as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        return False
    if not set(config.get("architectures") or []) & FAST_ARCHITECTURES:
        return False
    return config.get("hidden_act", "silu") == "silu" and not config.get("use_sliding_window")


class LastTokenLlama:
    """Batched last-position forwards of a Llama-family decoder (see the module docstring).

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel` of a supported architecture.
    """

    def __init__(self, model: EmotionModel) -> None:
        hf = model.plain_model
        self.model = model
        self.blocks = hf.model.layers
        self.embed = hf.model.embed_tokens
        self.final_norm = hf.model.norm
        self.rotary = hf.model.rotary_emb
        self.unembed = hf.lm_head
        config = hf.config
        self.n_layers = int(config.num_hidden_layers)
        self.n_heads = int(config.num_attention_heads)
        self.n_kv = int(getattr(config, "num_key_value_heads", None) or self.n_heads)
        self.group = self.n_heads // self.n_kv
        attn = self.blocks[0].self_attn
        self.d_head = int(getattr(attn, "head_dim", config.hidden_size // self.n_heads))
        self.scale = float(getattr(attn, "scaling", self.d_head**-0.5))
        self.device = next(hf.parameters()).device
        self.dtype = next(hf.parameters()).dtype

    # ------------------------------------------------------------------ pieces of a block

    @staticmethod
    def _rms(x: Tensor, norm: Any) -> Tensor:
        """RMSNorm in float32, as transformers computes it."""
        dtype = x.dtype
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + norm.variance_epsilon)
        return norm.weight * h.to(dtype)

    @staticmethod
    def _mlp(block: Any, x: Tensor) -> Tensor:
        mlp = block.mlp
        return mlp.down_proj(mlp.act_fn(mlp.gate_proj(x)) * mlp.up_proj(x))

    def _label_logits(self, x: Tensor, label_ids: Tensor) -> Tensor:
        h = self._rms(x, self.final_norm)
        weight = self.unembed.weight[label_ids]
        bias = None if self.unembed.bias is None else self.unembed.bias[label_ids]
        return F.linear(h, weight, bias).float()

    # ------------------------------------------------------------------ clean run

    @torch.inference_mode()
    def clean(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        label_ids: Tensor,
        keep_cache: bool = True,
    ) -> CleanRun:
        """Run left-padded prompts once and cache what patched runs need.

        Args:
            input_ids: ``[P, T]`` left-padded token ids.
            attention_mask: ``[P, T]`` 1 for real tokens.
            label_ids: Token ids of the labels (for the clean label logits).
            keep_cache: Keep per-layer keys/values (needed for :meth:`patched`).
        """
        P, T = input_ids.shape
        mask = attention_mask.bool()
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        x = self.embed(input_ids)
        cos, sin = self.rotary(x, positions)
        cos_h, sin_h = cos[:, None], sin[:, None]
        causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
        allowed = causal[None] & mask[:, None, :]
        allowed |= torch.eye(T, dtype=torch.bool, device=x.device)[None]  # pad rows: no NaN
        allowed = allowed[:, None]
        acts: dict[str, list[Tensor]] = {s: [] for s in (*PATCH_SITES, "resid_pre")}
        keys: list[Tensor] = []
        values: list[Tensor] = []
        for block in self.blocks:
            attn = block.self_attn
            acts["resid_pre"].append(x[:, -1])
            h = self._rms(x, block.input_layernorm)
            q = attn.q_proj(h).view(P, T, self.n_heads, self.d_head).transpose(1, 2)
            k = attn.k_proj(h).view(P, T, self.n_kv, self.d_head).transpose(1, 2)
            v = attn.v_proj(h).view(P, T, self.n_kv, self.d_head).transpose(1, 2)
            q, k = _rope(q, cos_h, sin_h), _rope(k, cos_h, sin_h)
            if keep_cache:
                keys.append(k[:, :, :-1])
                values.append(v[:, :, :-1])
            k_all = k.repeat_interleave(self.group, dim=1)
            v_all = v.repeat_interleave(self.group, dim=1)
            z = F.scaled_dot_product_attention(q, k_all, v_all, attn_mask=allowed, scale=self.scale)
            z = z.transpose(1, 2)  # [P, T, H, d_head]
            acts["z"].append(z[:, -1])
            attn_out = attn.o_proj(z.reshape(P, T, self.n_heads * self.d_head))
            acts["attn_out"].append(attn_out[:, -1])
            x = x + attn_out
            mlp_out = self._mlp(block, self._rms(x, block.post_attention_layernorm))
            acts["mlp_out"].append(mlp_out[:, -1])
            x = x + mlp_out
            acts["resid_post"].append(x[:, -1])
        key_bias = torch.zeros(P, T - 1, dtype=x.dtype, device=x.device)
        key_bias.masked_fill_(~mask[:, :-1], float("-inf"))
        return CleanRun(
            keys=keys,
            values=values,
            key_bias=key_bias,
            cos=cos[:, -1],
            sin=sin[:, -1],
            acts={s: torch.stack(v) for s, v in acts.items()},
            logits=self._label_logits(x[:, -1], label_ids),
        )

    # ------------------------------------------------------------------ patched runs

    def _attend(
        self, layer: int, clean: CleanRun, h: Float[Tensor, "P m d"]
    ) -> Float[Tensor, "P m H dh"]:
        """Attention output ``z`` of the last position for every variant of every prompt."""
        attn = self.blocks[layer].self_attn
        P, m, _ = h.shape
        cos, sin = clean.cos[:, None, None], clean.sin[:, None, None]
        q = _rope(attn.q_proj(h).view(P, m, self.n_heads, self.d_head), cos, sin)
        k = _rope(attn.k_proj(h).view(P, m, self.n_kv, self.d_head), cos, sin)
        v = attn.v_proj(h).view(P, m, self.n_kv, self.d_head)
        q = q.view(P, m, self.n_kv, self.group, self.d_head)
        keys, values = clean.keys[layer], clean.values[layer]  # [P, kv, T-1, dh]
        cached = torch.einsum("pmkgd,pktd->pmkgt", q, keys) * self.scale
        cached = cached + clean.key_bias[:, None, None, None, :]
        own = torch.einsum("pmkgd,pmkd->pmkg", q, k)[..., None] * self.scale
        probs = torch.softmax(torch.cat([cached, own], dim=-1), dim=-1)
        z = torch.einsum("pmkgt,pktd->pmkgd", probs[..., :-1], values)
        z = z + probs[..., -1:] * v[:, :, :, None, :]
        return z.reshape(P, m, self.n_heads, self.d_head)

    @torch.inference_mode()
    def patched(
        self,
        clean: CleanRun,
        variants: Sequence[Variant],
        provider: Provider,
        rows: Tensor,
        label_ids: Tensor,
    ) -> Float[Tensor, "P m n_labels"]:
        """Label logits of every prompt of ``clean`` under every variant.

        Args:
            clean: The prompts' clean run (with cache).
            variants: Interventions; all are applied to every prompt.
            provider: Values to write (see :data:`Provider`), called with ``rows``.
            rows: Row indices of the prompts of ``clean`` (passed to ``provider``).
            label_ids: Token ids of the labels.

        Returns:
            ``[P, len(variants), n_labels]`` float32 logits, variants in the given order.
        """
        P = clean.logits.shape[0]
        order = sorted(range(len(variants)), key=lambda j: variants[j].start)
        ordered = [variants[j] for j in order]
        starts = [v.start for v in ordered]
        resid_pre = clean.acts["resid_pre"]
        d_model = resid_pre.shape[-1]
        x = resid_pre.new_zeros(P, 0, d_model)
        active = 0
        for layer in range(starts[0], self.n_layers):
            joining = 0
            while active + joining < len(ordered) and starts[active + joining] == layer:
                joining += 1
            if joining:
                fresh = resid_pre[layer][:, None, :].expand(P, joining, d_model)
                x = torch.cat([x, fresh], dim=1)
                active += joining
            plan = self._layer_plan(ordered[:active], layer)
            block = self.blocks[layer]
            z = self._attend(layer, clean, self._rms(x, block.input_layernorm))
            if "z" in plan:
                idx, values = self._values(plan["z"], ordered, provider, layer, rows)
                heads = torch.tensor([ordered[j].head for j in plan["z"]], device=x.device)
                z[:, idx, heads] = values
            attn_out = block.self_attn.o_proj(z.flatten(2))
            attn_out = self._overwrite(attn_out, plan, "attn_out", ordered, provider, layer, rows)
            x = x + attn_out
            mlp_out = self._mlp(block, self._rms(x, block.post_attention_layernorm))
            mlp_out = self._overwrite(mlp_out, plan, "mlp_out", ordered, provider, layer, rows)
            x = x + mlp_out
            x = self._overwrite(x, plan, "resid_post", ordered, provider, layer, rows)
        logits = self._label_logits(x, label_ids)
        out = torch.empty_like(logits)
        out[:, order] = logits
        return out

    @staticmethod
    def _layer_plan(active: Sequence[Variant], layer: int) -> dict[str, list[int]]:
        plan: dict[str, list[int]] = {}
        for j, variant in enumerate(active):
            if layer in variant.layers and layer >= variant.start:
                plan.setdefault(variant.site, []).append(j)
        return plan

    def _values(
        self,
        indices: list[int],
        ordered: Sequence[Variant],
        provider: Provider,
        layer: int,
        rows: Tensor,
    ) -> tuple[Tensor, Tensor]:
        values = torch.stack([provider(ordered[j], layer, rows) for j in indices], dim=1)
        idx = torch.tensor(indices, device=values.device)
        return idx, values.to(device=self.device, dtype=self.dtype)

    def _overwrite(
        self,
        act: Float[Tensor, "P m d"],
        plan: dict[str, list[int]],
        site: str,
        ordered: Sequence[Variant],
        provider: Provider,
        layer: int,
        rows: Tensor,
    ) -> Tensor:
        if site not in plan:
            return act
        idx, values = self._values(plan[site], ordered, provider, layer, rows)
        act = act.clone()
        act[:, idx] = values
        return act
