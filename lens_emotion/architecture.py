"""Where the TransformerLens hook points live in a plain transformers decoder, per family.

The suite's fast engines (plain extraction in :mod:`lens_emotion.activations`, plain
interventions in :mod:`lens_emotion.interventions`, the cached last-position forward in
:mod:`lens_emotion.cached_forward`) run transformers' own modules and read or write the same
activations as the bridge's hooks. This module says, for each supported family, which module
produces which hook value:

==================  ==========================================================================
hook (bridge)       plain transformers module
==================  ==========================================================================
``resid_pre``       input of decoder layer ``l``
``attn_out``        output of the attention module, or of the norm applied *after* it
                    (Gemma 2/3, OLMo 2: ``post_attention_layernorm``) - the bridge's
                    ``hook_attn_out`` is what is added to the residual stream
``z``               input of the attention output projection (``o_proj``/``c_proj``/``dense``)
``mlp_out``         output of the MLP, or of ``post_feedforward_layernorm`` (Gemma 2/3, OLMo 2)
``resid_mid``       input of the pre-MLP norm (``post_attention_layernorm`` in Llama-style
                    blocks, ``pre_feedforward_layernorm`` in Gemma, ``ln_2`` in GPT-2) or of
                    the MLP itself (OLMo 2, which has no pre-norm). GPT-NeoX with the parallel
                    residual has none (attention and MLP both read ``resid_pre``).
``resid_post``      output of decoder layer ``l``
==================  ==========================================================================

These were checked against the TransformerLens 4.3 bridge on tiny random models of every
family (``tests/test_architecture.py``).

**LayerNorm families (GPT-2, GPT-NeoX).** In compatibility mode the bridge centres the
weights that write to the residual stream, so its residual-stream values are the plain
model's minus their mean over ``d_model`` (a LayerNorm reader cannot tell the difference);
it also folds the LayerNorm and value biases into the output bias, so its ``z`` is the plain
``z`` minus a constant per head (:meth:`Architecture.z_bias`).
:meth:`Architecture.to_bridge` / :meth:`Architecture.from_bridge` convert between the two
(both are identities where the plain model shares the bridge's processed weights, since
centring twice changes nothing and a folded value bias is zero).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor

from lens_emotion.errors import LensEmotionError

RESIDUAL_SITES: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out")
"""Sites that live in the residual stream (width ``d_model``)."""


class ArchitectureError(LensEmotionError, ValueError):
    """A model's architecture has no family adapter (the message says why)."""


@dataclass(frozen=True)
class Family:
    """Module names of one decoder family (attribute paths inside the CausalLM).

    Attributes:
        name: Short family name (``"llama"``, ``"gemma2"`` ...).
        classes: transformers CausalLM class names of the family.
        base: Attribute of the CausalLM holding the decoder stack.
        layers: Attribute of the base holding the list of decoder layers.
        embed: Attribute of the base holding the token embedding.
        final_norm: Attribute of the base holding the final norm.
        unembed: Attribute of the CausalLM holding the unembedding.
        attn: Attribute of a layer holding the attention module.
        out_proj: Attribute of the attention module holding its output projection.
        mlp: Attribute of a layer holding the MLP.
        mlp_out_proj: Attribute of the MLP holding its output projection.
        pre_mlp_norm: Norm whose input is ``resid_mid`` (``None``: the MLP's input is).
        post_attn_norm: Norm applied to the attention output before the residual add.
        post_mlp_norm: Norm applied to the MLP output before the residual add.
        layernorm: LayerNorm family (the bridge centres its residual stream).
        cache_kwarg: Name of the cache argument of a decoder layer.
        rotary: Whether the base holds a ``rotary_emb`` module the layers need.
    """

    name: str
    classes: frozenset[str]
    base: str = "model"
    layers: str = "layers"
    embed: str = "embed_tokens"
    final_norm: str = "norm"
    unembed: str = "lm_head"
    attn: str = "self_attn"
    out_proj: str = "o_proj"
    mlp: str = "mlp"
    mlp_out_proj: str = "down_proj"
    pre_mlp_norm: str | None = "post_attention_layernorm"
    post_attn_norm: str | None = None
    post_mlp_norm: str | None = None
    layernorm: bool = False
    cache_kwarg: str = "past_key_values"
    rotary: bool = True


FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        Family("llama", frozenset({"LlamaForCausalLM"})),
        Family("mistral", frozenset({"MistralForCausalLM"})),
        Family("qwen2", frozenset({"Qwen2ForCausalLM"})),
        Family("qwen3", frozenset({"Qwen3ForCausalLM"})),
        Family("phi3", frozenset({"Phi3ForCausalLM"})),
        Family(
            "gemma2",
            frozenset({"Gemma2ForCausalLM"}),
            pre_mlp_norm="pre_feedforward_layernorm",
            post_attn_norm="post_attention_layernorm",
            post_mlp_norm="post_feedforward_layernorm",
        ),
        Family(
            "gemma3",
            frozenset({"Gemma3ForCausalLM"}),
            pre_mlp_norm="pre_feedforward_layernorm",
            post_attn_norm="post_attention_layernorm",
            post_mlp_norm="post_feedforward_layernorm",
        ),
        Family(
            "olmo2",
            frozenset({"Olmo2ForCausalLM"}),
            pre_mlp_norm=None,
            post_attn_norm="post_attention_layernorm",
            post_mlp_norm="post_feedforward_layernorm",
        ),
        Family(
            "gpt2",
            frozenset({"GPT2LMHeadModel"}),
            base="transformer",
            layers="h",
            embed="wte",
            final_norm="ln_f",
            attn="attn",
            out_proj="c_proj",
            mlp_out_proj="c_proj",
            pre_mlp_norm="ln_2",
            layernorm=True,
            rotary=False,
        ),
        Family(
            "gpt_neox",
            frozenset({"GPTNeoXForCausalLM"}),
            base="gpt_neox",
            embed="embed_in",
            final_norm="final_layer_norm",
            unembed="embed_out",
            attn="attention",
            out_proj="dense",
            mlp_out_proj="dense_4h_to_h",
            layernorm=True,
            cache_kwarg="layer_past",
        ),
    )
}
"""Every supported family, by name."""

SUPPORTED_ARCHITECTURES = frozenset(c for family in FAMILIES.values() for c in family.classes)
"""transformers CausalLM class names with a family adapter."""


def family_of(architectures: Any) -> Family | None:
    """The family of a CausalLM class name (or any of several names), else ``None``."""
    names = {architectures} if isinstance(architectures, str) else set(architectures or [])
    for family in FAMILIES.values():
        if names & family.classes:
            return family
    return None


def config_architectures(path: str | Path) -> list[str]:
    """The ``architectures`` list of a model folder's ``config.json`` (empty if unreadable)."""
    try:
        with open(Path(path) / "config.json") as handle:
            return list(json.load(handle).get("architectures") or [])
    except (OSError, ValueError):
        return []


def _config_reason(family: Family, config: Any) -> str | None:
    """Why a family member's configuration is outside what the adapters cover, or ``None``."""
    if family.name == "gpt2":
        if getattr(config, "add_cross_attention", False):
            return "GPT-2 with cross-attention is not a plain decoder"
    if getattr(config, "num_experts", None) or getattr(config, "num_local_experts", None):
        return f"{family.name} with mixture-of-experts MLPs is not covered"
    return None


def unsupported_reason(model: Any) -> str | None:
    """One line saying why the fast engines cannot run this model, or ``None`` if they can.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel` (only its folder's config is read,
            so the plain model is not built).
    """
    cached = getattr(model, "_unsupported_reason", False)
    if cached is not False:
        return cached
    reason = _folder_reason(model.path)
    model._unsupported_reason = reason
    return reason


def sliding_window(model: Any) -> int | None:
    """The smallest sliding attention window of the model's layers, or ``None`` if none slides.

    Reads the folder's ``config.json`` (``sliding_window`` where ``use_sliding_window`` is not
    off and, with ``layer_types``, some layer is ``"sliding_attention"``).
    """
    try:
        config = json.loads((Path(model.path) / "config.json").read_text())
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    config = config.get("text_config", config)
    window = config.get("sliding_window")
    if not window or config.get("use_sliding_window") is False:
        return None
    types = config.get("layer_types")
    if types is not None and "sliding_attention" not in types:
        return None
    return int(window)


def _folder_reason(path: Path) -> str | None:
    names = config_architectures(path)
    family = family_of(names)
    if family is None:
        supported = ", ".join(sorted(SUPPORTED_ARCHITECTURES))
        return f"architecture {names or ['unknown']} has no family adapter (supported: {supported})"
    try:
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - an unreadable config is a reason too
        return f"config of {path} is unreadable ({exc})"
    return _config_reason(family, config)


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _centre(x: Tensor) -> Tensor:
    return x - x.mean(dim=-1, keepdim=True)


class Architecture:
    """Family adapter bound to one plain transformers CausalLM.

    Args:
        hf: The plain model (``EmotionModel.plain_model``).

    Raises:
        ArchitectureError: The model's class has no family, or its configuration is outside
            what the adapter covers.
    """

    def __init__(self, hf: Any) -> None:
        family = family_of(type(hf).__name__)
        if family is None:
            raise ArchitectureError(
                f"{type(hf).__name__} has no family adapter; supported: "
                f"{', '.join(sorted(SUPPORTED_ARCHITECTURES))}. Use engine='bridge'."
            )
        config = hf.config
        reason = _config_reason(family, config)
        if reason:
            raise ArchitectureError(f"{reason}; use engine='bridge'.")
        self.hf = hf
        self.family = family
        self.config = config
        self.base = getattr(hf, family.base)
        self.layers = getattr(self.base, family.layers)
        self.embed = getattr(self.base, family.embed)
        self.final_norm = getattr(self.base, family.final_norm)
        self.unembed = hf.get_output_embeddings()
        self.rotary_emb = getattr(self.base, "rotary_emb", None) if family.rotary else None
        self.n_layers = len(self.layers)
        self.n_heads = int(getattr(config, "num_attention_heads", None) or config.n_head)
        attn = self.attn(0)
        d_model = int(getattr(config, "hidden_size", None) or config.n_embd)
        self.d_head = int(
            getattr(attn, "head_dim", None)
            or getattr(attn, "head_size", None)
            or d_model // self.n_heads
        )
        self.d_model = d_model
        self.parallel = bool(getattr(config, "use_parallel_residual", False))
        self.final_softcap = getattr(config, "final_logit_softcapping", None)
        self.layer_types = list(getattr(config, "layer_types", None) or [])
        self._z_bias: dict[int, Tensor | None] = {}

    # ------------------------------------------------------------------ modules

    def layer(self, layer: int) -> Any:
        """Decoder layer ``layer``."""
        return self.layers[layer]

    def attn(self, layer: int) -> Any:
        """The attention module of a layer."""
        return getattr(self.layers[layer], self.family.attn)

    def out_proj(self, layer: int) -> Any:
        """The attention output projection (its input is ``z``)."""
        return getattr(self.attn(layer), self.family.out_proj)

    def mlp(self, layer: int) -> Any:
        """The MLP module of a layer."""
        return getattr(self.layers[layer], self.family.mlp)

    def mlp_out_proj(self, layer: int) -> Any:
        """The MLP output projection (its input is the bridge's ``mlp.hook_post``)."""
        return getattr(self.mlp(layer), self.family.mlp_out_proj)

    def attn_out_module(self, layer: int) -> Any:
        """The module whose (first) output is the bridge's ``hook_attn_out``."""
        if self.family.post_attn_norm:
            return getattr(self.layers[layer], self.family.post_attn_norm)
        return self.attn(layer)

    def mlp_out_module(self, layer: int) -> Any:
        """The module whose output is the bridge's ``hook_mlp_out``."""
        if self.family.post_mlp_norm:
            return getattr(self.layers[layer], self.family.post_mlp_norm)
        return self.mlp(layer)

    def resid_mid_module(self, layer: int) -> Any | None:
        """The module whose input is ``resid_mid`` (``None`` under a parallel residual)."""
        if self.parallel:
            return None
        if self.family.pre_mlp_norm:
            return getattr(self.layers[layer], self.family.pre_mlp_norm)
        return self.mlp(layer)

    def site_module(self, site: str, layer: int) -> tuple[Any, str]:
        """``(module, "input" | "output")`` where a site's value passes.

        Raises:
            ArchitectureError: ``resid_mid`` under a parallel residual, or an unknown site.
        """
        if site in ("resid_pre", "resid_post"):
            return self.layers[layer], "input" if site == "resid_pre" else "output"
        if site == "attn_out":
            return self.attn_out_module(layer), "output"
        if site == "mlp_out":
            return self.mlp_out_module(layer), "output"
        if site == "z":
            return self.out_proj(layer), "input"
        if site == "resid_mid":
            module = self.resid_mid_module(layer)
            if module is None:
                raise ArchitectureError(
                    f"{self.family.name} uses a parallel residual: attention and MLP both read "
                    "resid_pre, so there is no resid_mid."
                )
            return module, "input"
        raise ArchitectureError(f"Unknown site {site!r}.")

    # ------------------------------------------------------------------ bridge values

    def z_bias(self, layer: int) -> Tensor | None:
        """Per-head constant of ``z`` that the bridge folds out, ``[n_heads, d_head]`` or ``None``.

        With LayerNorm ``ln`` before attention, ``v = W_V(ln_w * n + ln_b) + b_V``; since
        attention weights sum to one, ``z`` carries the constant ``W_V ln_b + b_V`` per head.
        Compatibility mode folds it into the output bias, so the bridge's ``z`` lacks it.
        """
        if layer not in self._z_bias:
            bias = None
            attn = self.attn(layer)
            H, dh = self.n_heads, self.d_head
            block = self.layers[layer]
            if self.family.name == "gpt2":  # c_attn(ln_1's bias) = constant part of q, k, v
                const = attn.c_attn(block.ln_1.bias.detach())
                bias = const[2 * H * dh :].view(H, dh)
            elif self.family.name == "gpt_neox":
                const = attn.query_key_value(block.input_layernorm.bias.detach())
                bias = const.view(H, 3 * dh)[:, 2 * dh :]
            if bias is not None and not bool(bias.any()):
                bias = None
            self._z_bias[layer] = bias
        return self._z_bias[layer]

    def to_bridge(self, site: str, layer: int, value: Tensor) -> Tensor:
        """A plain-model activation as the bridge's hook shows it (see the module docstring).

        ``z`` may be ``[..., n_heads, d_head]`` or flat ``[..., n_heads * d_head]``.
        """
        if not self.family.layernorm:
            return value
        if site in RESIDUAL_SITES:
            return _centre(value)
        if site == "z":
            bias = self.z_bias(layer)
            if bias is None:
                return value
            bias = bias.to(value.dtype)
            return value - (bias if value.shape[-1] == self.d_head else bias.reshape(-1))
        return value

    def from_bridge(self, site: str, layer: int, value: Tensor, plain: Tensor) -> Tensor:
        """Turn a bridge-space value written at a site into the plain model's space.

        ``plain`` is the plain activation being replaced. Residual-stream values keep the
        replaced activation's mean (every reader is a LayerNorm, so only the centred part
        matters, and the plain stream's mean is carried along); ``z`` gets the value bias back.
        """
        if not self.family.layernorm:
            return value
        if site in RESIDUAL_SITES:
            return value + plain.mean(dim=-1, keepdim=True)
        if site == "z":
            bias = self.z_bias(layer)
            if bias is None:
                return value
            bias = bias.to(value.dtype)
            return value + (bias if value.shape[-1] == self.d_head else bias.reshape(-1))
        return value

    # ------------------------------------------------------------------ forward pieces

    def position_embeddings(self, hidden: Tensor, position_ids: Tensor) -> list[Any]:
        """Per layer, the ``position_embeddings`` argument its decoder layer expects."""
        if self.rotary_emb is None:
            return [None] * self.n_layers
        if self.family.name == "gemma3":
            by_type = {
                kind: self.rotary_emb(hidden, position_ids, kind) for kind in set(self.layer_types)
            }
            return [by_type[kind] for kind in self.layer_types]
        shared = self.rotary_emb(hidden, position_ids)
        return [shared] * self.n_layers

    def call_layer(
        self,
        layer: int,
        hidden: Tensor,
        position_ids: Tensor,
        position_embeddings: Any,
        cache: Any,
        attention_mask: Any = None,
    ) -> Tensor:
        """Run decoder layer ``layer`` itself, with the arguments its model would pass."""
        kwargs: dict[str, Any] = {"attention_mask": attention_mask, self.family.cache_kwarg: cache}
        if self.family.name != "gpt2":
            kwargs["position_ids"] = position_ids
            kwargs["position_embeddings"] = position_embeddings
        return _first(self.layers[layer](hidden, use_cache=cache is not None, **kwargs))

    def label_logits(
        self, hidden: Float[Tensor, "... d_model"], label_ids: Tensor
    ) -> Float[Tensor, "... n_labels"]:
        """Final norm, the label rows of the unembedding and any final soft-capping (fp32)."""
        h = self.final_norm(hidden)
        weight = self.unembed.weight[label_ids]
        bias = getattr(self.unembed, "bias", None)
        logits = F.linear(h, weight, None if bias is None else bias[label_ids]).float()
        if self.final_softcap:
            logits = torch.tanh(logits / self.final_softcap) * self.final_softcap
        return logits


def architecture(model: Any) -> Architecture:
    """The (cached) :class:`Architecture` of an :class:`~lens_emotion.models.EmotionModel`."""
    adapter = getattr(model, "_architecture_adapter", None)
    if adapter is None or adapter.hf is not model.plain_model:
        adapter = Architecture(model.plain_model)
        model._architecture_adapter = adapter
    return adapter


def plain_layers(model: Any) -> Any:
    """The plain model's decoder layers (``model.layers`` / ``transformer.h`` / ...)."""
    return architecture(model).layers
