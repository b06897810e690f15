"""Generation with head/neuron edits at every position, on the fast KV-cached engine.

:func:`lens_emotion.interventions.generate_with_hooks` runs a KV-cached loop on the plain
transformers copy of the weights when every hook sits on a residual or sublayer-output site.
Head and neuron edits live one step earlier (``attn.hook_z``, ``mlp.hook_post``), but an
edit ``a := mult * a + add`` applied at every position is exactly

* ``mult`` multiplying the component's columns of the output matrix (``o_proj`` for head
  ``h``: columns ``h*d_head : (h+1)*d_head``; ``down_proj`` for neuron ``i``: column ``i``),
  plus
* the constant ``add @ W`` added to the sublayer output (``hook_attn_out``/``hook_mlp_out``),

because the output projection is linear and has no bias (Llama, Mistral, Qwen, Phi-3, Gemma,
OLMo 2; the layers come from :mod:`lens_emotion.architecture`). Where a norm follows the
projection (Gemma 2/3, OLMo 2) the constant is added to the projection's output, before that
norm, by a module hook held for the ``with`` block; GPT-2 and GPT-NeoX (biased projections)
are refused.
:func:`plain_weight_edit` applies the first part to the plain model for the duration of a
``with`` block (restoring the weights after) and yields the second part as direction hooks.
The equivalence with hooking ``hook_z``/``hook_post`` on the bridge is tested.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from lens_emotion.circuits.ablation import ComponentMeans, random_components
from lens_emotion.circuits.components import ComponentScores
from lens_emotion.circuits.edits import ComponentEdit, ablation_edit
from lens_emotion.circuits.errors import CircuitError

__all__ = [
    "generate_with_edit",
    "judged_ablation",
    "plain_weight_edit",
    "vector_hooks",
]


def vector_hooks(
    model: Any, vectors: Mapping[tuple[str, int], Tensor], positions: str = "all"
) -> list[tuple[str, Any]]:
    """Hooks adding fixed vectors to sublayer outputs (``{(site, layer): vector}``).

    Built from :func:`lens_emotion.interventions.direction_hook` with ``beta = ||vector||``,
    so they run on either generation engine. Zero vectors are skipped.
    """
    from lens_emotion.interventions import direction_hook

    hooks = []
    for (site, layer), vec in sorted(vectors.items()):
        norm = float(vec.double().norm())
        if norm > 0:
            hooks.append(
                (
                    model.hook_name(site, layer),
                    direction_hook(vec, norm, scale="none", positions=positions),
                )
            )
    return hooks


def _plain_layers(model: Any) -> Any:
    """The family adapter of the plain model, checked for bias-free linear output projections."""
    from lens_emotion.architecture import ArchitectureError, architecture

    try:
        arch = architecture(model)
        modules = (arch.out_proj(0), arch.mlp_out_proj(0))
    except (ArchitectureError, AttributeError) as exc:
        raise CircuitError(
            f"edited generation needs a model with a family adapter (attention and MLP output "
            f"projections); this architecture lacks one ({exc})."
        ) from exc
    for module in modules:
        if not isinstance(module, torch.nn.Linear) or module.bias is not None:
            raise CircuitError(
                "edited generation assumes bias-free linear output projections; "
                f"{arch.family.name} has {type(module).__name__} with a bias. Edit hook_z on the "
                "bridge instead."
            )
    return arch


@contextlib.contextmanager
def plain_weight_edit(model: Any, edit: ComponentEdit) -> Iterator[list[tuple[str, Any]]]:
    """Apply an edit at every position via the plain model's output weights (module docstring).

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel` with bias-free projections.
        edit: Head/neuron edits and sublayer injections.

    Yields:
        Hooks (``positions="all"``) that add the edit's constant parts; pass them to
        :func:`lens_emotion.interventions.generate_with_hooks`. The weights are restored
        when the block exits, also on errors.
    """
    arch = _plain_layers(model)
    d_head = int(model.cfg.d_head)
    saved: list[tuple[Tensor, tuple[slice, slice], Tensor]] = []
    vectors: dict[tuple[str, int], Tensor] = {}
    # Where a norm follows the projection (Gemma, OLMo 2) the constant part must be added to
    # the projection's output, before that norm, not to hook_attn_out/hook_mlp_out.
    before_norm: dict[Any, Tensor] = {}
    handles = []

    def add_vector(key: tuple[str, int], vec: Tensor) -> None:
        site, layer = key
        normed = arch.family.post_attn_norm if site == "attn_out" else arch.family.post_mlp_norm
        if normed:
            module = arch.out_proj(layer) if site == "attn_out" else arch.mlp_out_proj(layer)
            before_norm[module] = before_norm[module] + vec if module in before_norm else vec
            return
        vectors[key] = vectors[key] + vec if key in vectors else vec

    try:
        with torch.no_grad():
            for row, (layer, head) in enumerate(edit.head_index.tolist()):
                weight = arch.out_proj(layer).weight
                cols = slice(head * d_head, (head + 1) * d_head)
                block = weight[:, cols]
                saved.append((weight, (slice(None), cols), block.clone()))
                if edit.head_add is not None:
                    add = edit.head_add[row].to(weight.dtype).to(weight.device)
                    add_vector(("attn_out", layer), (block @ add).float().cpu())
                weight[:, cols] = block * float(edit.head_mult[row])
            for row, (layer, unit) in enumerate(edit.neuron_index.tolist()):
                weight = arch.mlp_out_proj(layer).weight
                cols = slice(unit, unit + 1)
                block = weight[:, cols]
                saved.append((weight, (slice(None), cols), block.clone()))
                if edit.neuron_add is not None:
                    add_vector(
                        ("mlp_out", layer),
                        (block[:, 0] * float(edit.neuron_add[row])).float().cpu(),
                    )
                weight[:, cols] = block * float(edit.neuron_mult[row])
            for key, vec in edit.inject.items():
                vectors[key] = (
                    vectors[key] + vec.float().cpu() if key in vectors else vec.float().cpu()
                )
        for module, vec in before_norm.items():

            def add_output(mod, args, output, vec=vec):
                return output + vec.to(device=output.device, dtype=output.dtype)

            handles.append(module.register_forward_hook(add_output))
        yield vector_hooks(model, vectors, positions="all")
    finally:
        for handle in handles:
            handle.remove()
        with torch.no_grad():
            for weight, index, original in reversed(saved):
                weight[index] = original


def generate_with_edit(
    model: Any,
    prompts: Sequence[str],
    edit: ComponentEdit,
    max_new_tokens: int = 30,
    batch_size: int = 16,
    seed: int = 0,
    progress: bool = False,
) -> list[str]:
    """Greedy continuations of chat prompts with an edit at every position (plain, KV-cached).

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        prompts: Chat-formatted prompts (special tokens already in them).
        edit: The edit (``ComponentEdit()`` for none).
        max_new_tokens: Tokens to generate at most.
        batch_size: Prompts per batch.
        seed: Seed (unused by greedy decoding; recorded for sampling variants).
        progress: Show a progress bar.

    Returns:
        The new text of each prompt.
    """
    from lens_emotion.interventions import generate_with_hooks

    with plain_weight_edit(model, edit) as hooks:
        return generate_with_hooks(
            model,
            list(prompts),
            hooks,
            max_new_tokens=max_new_tokens,
            seed=seed,
            batch_size=batch_size,
            progress=progress,
            add_special_tokens=False,
            engine="plain",
        )


def judged_ablation(
    model: Any,
    judge: Any,
    prompts: Mapping[str, Any],
    scores: Mapping[str, ComponentScores],
    means: ComponentMeans,
    ks: Mapping[str, int],
    intervention: str = "mean",
    seed: int = 0,
    max_new_tokens: int = 30,
    batch_size: int = 16,
    progress: bool = False,
    readout: Any | None = None,
    min_words: int = 5,
    min_distinct: float = 0.5,
    n_boot: int = 2000,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Judged emotion of generations with top-k vs random-k components ablated.

    For each emotion ``e`` (key of ``prompts``, prompts that ask for ``e``) and kind, the
    top-``k`` components for ``e`` and ``k`` random components are ablated at **every
    position** (prompt and generated tokens) while the model replies. The means written are
    therefore **position-matched**: means over every position of the discovery prompts
    (:meth:`~.ablation.ComponentMeans.from_position_means`), not last-token means, which
    would push every other position off its distribution. Replies are scored by
    :func:`~.modulation.score_generations` (masked judge first).

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        judge: An :class:`~lens_emotion.judge.EmotionJudge` with the SEV labels.
        prompts: ``{emotion: SevPrompts asking for it}``.
        scores: Component rankings.
        means: All-position means (``positions == "all"``; needed by ``"mean"``/``"scale"``).
        ks: ``{kind: k}``.
        intervention: ``"zero"``, ``"mean"`` or ``"scale"``.
        seed: Seed of the random components and the bootstrap.
        max_new_tokens: Tokens per reply.
        batch_size: Prompts per generation batch.
        progress: Show progress bars.
        readout: Optional second judge (e.g. :class:`~lens_emotion.judge.ReadoutJudge`).
        min_words: Degenerate-reply threshold.
        min_distinct: Degenerate-reply threshold.
        n_boot: Bootstrap resamples (scenarios resampled).

    Returns:
        ``(table, generations)``: one row per emotion, component_type, k, intervention and
        which (``none``/``top``/``random``) with :func:`~.modulation.summarise_generations`
        columns plus ``edit_positions`` (``"all"``) and ``ablation_means`` (``"all
        positions"``); and every reply.

    Raises:
        CircuitError: Last-token means given for an all-position edit.
    """
    from lens_emotion.circuits.modulation import score_generations, summarise_generations

    if intervention != "zero" and means.positions != "all":
        raise CircuitError(
            "judged ablation edits every position, so it needs position-matched means: pass "
            "ComponentMeans.from_position_means(acts), not last-token means."
        )
    replies: list[str] = []
    extra: dict[str, list[Any]] = {
        key: []
        for key in ("emotion", "component_type", "k", "intervention", "which", "skeleton_id")
    }
    for e_index, (emotion, items) in enumerate(prompts.items()):
        rng = np.random.default_rng([seed, e_index, 7])
        conditions: list[tuple[str, int, str, ComponentEdit]] = [
            ("none", 0, "none", ComponentEdit())
        ]
        for kind, k in ks.items():
            kind_scores = scores[kind]
            top = kind_scores.top(emotion, k)
            rand = random_components(kind_scores.n_layers, kind_scores.n_units, k, rng)
            for which, comps in (("top", top), ("random", rand)):
                edit = ablation_edit(kind, comps, intervention, means.of(kind))
                conditions.append((kind, k, which, edit))
        for kind, k, which, edit in conditions:
            out = generate_with_edit(
                model, items.prompts, edit, max_new_tokens, batch_size, seed, progress
            )
            replies += out
            extra["emotion"] += [emotion] * len(out)
            extra["component_type"] += [kind] * len(out)
            extra["k"] += [k] * len(out)
            extra["intervention"] += [intervention if which != "none" else "none"] * len(out)
            extra["which"] += [which] * len(out)
            extra["skeleton_id"] += list(items.skeleton_id)
    generations = score_generations(
        judge, replies, extra["emotion"], extra, readout, min_words, min_distinct
    )
    keys = ["emotion", "component_type", "k", "intervention", "which"]
    per_emotion = summarise_generations(generations, keys, n_boot, seed)
    pooled = summarise_generations(generations, keys[1:], n_boot, seed)
    pooled.insert(0, "emotion", "all")
    table = pd.concat([per_emotion, pooled], ignore_index=True)
    edited = table["which"] != "none"
    table["edit_positions"] = np.where(edited, "all", "none (unedited)")
    label = "all positions" if intervention != "zero" else "none (zero)"
    table["ablation_means"] = np.where(edited, label, "none (unedited)")
    return table, generations
