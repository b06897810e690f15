"""Shared real-model fixtures of the circuit tests: a small SEV discovery/held-out set."""

from __future__ import annotations

from types import SimpleNamespace

import pytest


@pytest.fixture(scope="session")
def sev_items(sev_path):
    from lens_emotion.data import load_sev

    return load_sev(sev_path)


@pytest.fixture(scope="session")
def circ(smollm2, sev_items):
    """Two discovery scenarios and one held-out scenario of real SEV, captured on SmolLM2."""
    import torch

    from lens_emotion.circuits import (
        ComponentMeans,
        build_sev_prompts,
        capture_last_token,
        compute_directions,
        head_output_weights,
        mlp_output_weights,
        score_components,
        split_scenarios,
    )

    torch.manual_seed(0)
    discovery, heldout = split_scenarios(sev_items, seed=0, n_discovery=2, n_evaluation=1)
    disc = build_sev_prompts(smollm2, discovery)
    neutral = build_sev_prompts(smollm2, discovery, [None])
    held = build_sev_prompts(smollm2, heldout)
    acts = capture_last_token(smollm2, disc.token_ids, batch_size=36)
    neutral_acts = capture_last_token(smollm2, neutral.token_ids, ("z", "mlp_post"), 8)
    held_acts = capture_last_token(smollm2, held.token_ids, ("resid_mid", "resid_post"), 18)
    directions = compute_directions(acts, disc.emotion, disc.group)
    W_O, W_out = head_output_weights(smollm2), mlp_output_weights(smollm2)  # noqa: N806
    scores = score_components(acts, disc.emotion, disc.group, directions, W_O, W_out)
    means = ComponentMeans.from_activations(acts, disc.emotion, disc.group, directions.emotions)
    return SimpleNamespace(
        model=smollm2,
        discovery=discovery,
        heldout=heldout,
        disc=disc,
        neutral=neutral,
        held=held,
        acts=acts,
        neutral_acts=neutral_acts,
        held_acts=held_acts,
        directions=directions,
        W_O=W_O,
        W_out=W_out,
        scores=scores,
        means=means,
    )
