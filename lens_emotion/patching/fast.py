"""What a last-position patched forward is asked to do: :class:`Variant` and its value provider.

Attention is causal, so overwriting an activation at the **last** position changes nothing at
earlier positions. A patched run therefore only recomputes the last position, from the first
patched layer on, against the clean run's cached keys and values. The engine that does so for
every decoder family, on transformers' own modules, is
:class:`lens_emotion.cached_forward.CachedLastToken` (``method="fast"`` in
:mod:`lens_emotion.patching.engines`). It replaced the hand-written Llama block that used to
live here once it was measured faster on SmolLM2 (0.88x its time, same outcomes;
``benchmarks/results/families.json``).

This module holds the shared request types: a :class:`Variant` (what to overwrite, where) and
the :data:`Provider` that supplies the written values.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from torch import Tensor

if TYPE_CHECKING:
    pass

__all__ = ["PATCH_SITES", "Provider", "Variant"]

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
