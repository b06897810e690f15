"""One hooked forward pass per prompt, keeping every layer's activations at the last token.

The circuit analyses need, at the last prompt token and for every layer: the residual stream
after attention (``resid_mid``) and after the MLP (``resid_post``), the per-query-head
attention values before the output projection (``z``, from ``attn.hook_z``) and the MLP
hidden activations (``mlp_post``, from ``mlp.hook_post``; for gated MLPs this is
``act(gate) * up``, the input of ``W_out``). :func:`capture_last_token` gets all of them from a
single pass per (length-bucketed, left-padded) batch. The same pass can also average chosen
sites over *every* real (non-padding) position (``position_means=``), the reference of
edits that act at every position (:meth:`.ablation.ComponentMeans.from_position_means`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lens_emotion.batching import length_batches
from lens_emotion.circuits.errors import CircuitError

__all__ = ["CAPTURE_SITES", "LastTokenActivations", "capture_last_token"]

#: Sites :func:`capture_last_token` can keep.
CAPTURE_SITES: tuple[str, ...] = ("resid_mid", "resid_post", "z", "mlp_post")


@dataclass(frozen=True)
class LastTokenActivations:
    """Last-token activations of every layer, one row per prompt (prompt order kept).

    Attributes:
        resid_mid: ``[n, layer, d_model]`` residual stream after attention, or ``None``.
        resid_post: ``[n, layer, d_model]`` residual stream after the MLP, or ``None``.
        z: ``[n, layer, head, d_head]`` attention values per query head, or ``None``.
        mlp_post: ``[n, layer, d_mlp]`` MLP hidden activations, or ``None``.
        position_means: ``{site: [layer, ...]}`` means over every real position of every
            prompt (not only the last), for the sites asked for; ``None`` otherwise.
        n_positions: Number of positions averaged in ``position_means``.
    """

    resid_mid: Float[Tensor, "n layer d_model"] | None = None
    resid_post: Float[Tensor, "n layer d_model"] | None = None
    z: Float[Tensor, "n layer head d_head"] | None = None
    mlp_post: Float[Tensor, "n layer d_mlp"] | None = None
    position_means: dict[str, Tensor] | None = None
    n_positions: int = 0

    def site(self, name: str) -> Tensor:
        """Return one site's tensor.

        Raises:
            CircuitError: The site is unknown or was not captured.
        """
        value = getattr(self, name, None) if name in CAPTURE_SITES else None
        if value is None:
            raise CircuitError(
                f"site {name!r} was not captured; pass it in capture_last_token(sites=...) "
                f"(available: {', '.join(CAPTURE_SITES)})."
            )
        return value

    def __len__(self) -> int:
        for name in CAPTURE_SITES:
            value = getattr(self, name)
            if value is not None:
                return int(value.shape[0])
        return 0

    def subset(self, indices: Sequence[int] | Tensor) -> LastTokenActivations:
        """Rows at ``indices`` of every captured site (``position_means`` are dropped)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return LastTokenActivations(
            **{
                name: None if getattr(self, name) is None else getattr(self, name)[idx]
                for name in CAPTURE_SITES
            }
        )


def _keep_last(
    act: Tensor,
    hook: object,
    store: dict[tuple[str, int], Tensor],
    key: tuple[str, int],
    sums: dict[tuple[str, int], Tensor] | None = None,
    mask: Tensor | None = None,
) -> None:
    store[key] = act[:, -1].detach().float().cpu()
    if sums is not None and mask is not None:
        weight = mask.to(act.device, torch.float64).reshape(*mask.shape, *([1] * (act.dim() - 2)))
        total = (act.detach().double() * weight).sum(dim=(0, 1)).cpu()
        sums[key] = sums[key] + total if key in sums else total


@torch.no_grad()
def capture_last_token(
    model: object,
    token_ids: Sequence[Sequence[int]],
    sites: Sequence[str] = CAPTURE_SITES,
    batch_size: int = 16,
    progress: bool = False,
    position_means: Sequence[str] = (),
) -> LastTokenActivations:
    """Run each prompt once through the hooked model and keep the last-token activations.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        token_ids: Tokenized prompts (e.g. :attr:`SevPrompts.token_ids`).
        sites: Any of :data:`CAPTURE_SITES`.
        batch_size: Prompts per forward pass (length-bucketed, left-padded).
        progress: Show a progress bar.
        position_means: Sites (among ``sites``) to also average over every real position of
            every prompt (padding excluded), into :attr:`LastTokenActivations.position_means`.

    Returns:
        The activations, float32 on the CPU, rows in the order of ``token_ids``.

    Raises:
        CircuitError: Unknown site or no prompts.
    """
    sites = tuple(dict.fromkeys(sites))
    unknown = [s for s in sites if s not in CAPTURE_SITES]
    if unknown or not sites:
        raise CircuitError(
            f"unknown or missing capture site(s) {unknown}; choose from {CAPTURE_SITES}."
        )
    if not token_ids:
        raise CircuitError("capture_last_token() needs at least one prompt.")
    averaged = tuple(dict.fromkeys(position_means))
    if any(site not in sites for site in averaged):
        raise CircuitError(f"position_means {averaged} must be among the captured sites {sites}.")
    n_layers = model.n_layers  # type: ignore[attr-defined]
    out: dict[str, Tensor] = {}
    sums: dict[tuple[str, int], Tensor] = {}
    n_positions = 0
    bar = tqdm(total=len(token_ids), desc="last-token pass", disable=not progress, unit="prompt")
    for batch in length_batches([len(ids) for ids in token_ids], batch_size):
        input_ids, mask = model.pad([token_ids[i] for i in batch])  # type: ignore[attr-defined]
        seen: dict[tuple[str, int], Tensor] = {}
        hooks = []
        n_positions += int(mask.sum())
        for site in sites:
            extra = {"sums": sums, "mask": mask} if site in averaged else {}
            for layer in range(n_layers):
                keep = partial(_keep_last, store=seen, key=(site, layer), **extra)
                hooks.append((model.hook_name(site, layer), keep))  # type: ignore[attr-defined]
        model.bridge.run_with_hooks(  # type: ignore[attr-defined]
            input_ids, attention_mask=mask, fwd_hooks=hooks, return_type=None
        )
        rows = torch.as_tensor(batch, dtype=torch.long)
        for site in sites:
            stacked = torch.stack([seen[(site, layer)] for layer in range(n_layers)], dim=1)
            if site not in out:
                out[site] = torch.empty((len(token_ids), *stacked.shape[1:]), dtype=torch.float32)
            out[site][rows] = stacked
        bar.update(len(batch))
    bar.close()
    means = None
    if averaged:
        means = {
            site: (
                torch.stack([sums[(site, layer)] for layer in range(n_layers)]) / n_positions
            ).float()
            for site in averaged
        }
    return LastTokenActivations(
        **out, position_means=means, n_positions=n_positions if averaged else 0
    )
