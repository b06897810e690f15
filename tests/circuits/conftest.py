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


class FakeJudge:
    """A deterministic stand-in for the offline judge (SEV labels): label by text length."""

    label_set = "sev"
    mask_token = "[MASK]"

    def __init__(self):
        from lens_emotion.data import SEV_EMOTIONS

        self.labels = SEV_EMOTIONS

    def predict(self, texts, **kwargs):
        return [self.labels[len(t) % len(self.labels)] for t in texts]

    def describe(self):
        return {"kind": "fake judge for tests"}


@pytest.fixture
def fake_judge():
    return FakeJudge()


@pytest.fixture(scope="session")
def sev_sample():
    from lens_emotion.data import load_sev_sample

    return load_sev_sample()


def tiny_settings(**changes):
    """Small run settings that fit the 2-layer tiny model."""
    from lens_emotion.circuits.workflow import CircuitSettings

    base = {
        "n_scenarios": 3,
        "n_eval_scenarios": 2,
        "n_ablation_prompts": 2,
        "max_k_heads": 4,
        "max_k_neurons": 8,
        "n_random": 2,
        "check_prompts": 1,
        "check_layers": (0, 1),
        "total_effect_heads": 0,
        "total_effect_neurons": 4,
        "circuit_heads": 3,
        "circuit_neurons": 5,
        "gen_ablation_prompts": 2,
        "gen_ablation_k": {"head": 2, "neuron": 4},
        "n_tune_scenarios": 2,
        "gamma_grid": (1.0, 4.0),
        "beta_grid": (2.0, 8.0),
        "steer_windows": ((0,), (1,)),
        "max_new_tokens": 4,
        "n_boot": 50,
        "readout_judge": False,
    }
    return CircuitSettings(**{**base, **changes})
