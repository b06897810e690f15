import numpy as np
import pytest
import torch

from lens_emotion.circuits.directions import (
    EmotionDirections,
    complete_groups,
    context_agnostic_directions,
    direction_consistency,
    projection_accuracy,
)
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.data import SEV_EMOTIONS

pytestmark = pytest.mark.integration


def _reference(x: np.ndarray, emotions, groups) -> np.ndarray:
    """Explicit loops: centre each group, average per emotion, centre, normalise."""
    centred = {e: [] for e in SEV_EMOTIONS}
    for g in sorted(set(groups)):
        rows = [i for i, gg in enumerate(groups) if gg == g]
        mean = x[rows].mean(0)
        for i in rows:
            centred[emotions[i]].append(x[i] - mean)
    cents = np.stack([np.mean(centred[e], axis=0) for e in SEV_EMOTIONS])
    cents = cents - cents.mean(0)
    return cents / np.linalg.norm(cents, axis=1, keepdims=True)


def test_directions_follow_the_four_steps(circ):
    x = circ.acts.resid_post[:, 20].double().numpy()
    expected = _reference(x, circ.disc.emotion, circ.disc.group)
    got = circ.directions.get("resid_post", 20).double().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert circ.directions.n_groups == 6  # 2 scenarios x 3 valences


def test_directions_ignore_anything_shared_within_a_context(circ):
    """Adding an arbitrary vector per scenario x valence group changes nothing."""
    x = circ.acts.resid_mid[:, 12]
    groups = circ.disc.group
    offsets = {g: torch.randn(x.shape[-1]) * 50 for g in set(groups)}
    shifted = x + torch.stack([offsets[g] for g in groups])
    a = context_agnostic_directions(x, circ.disc.emotion, groups)
    b = context_agnostic_directions(shifted, circ.disc.emotion, groups)
    assert torch.allclose(a, b, atol=1e-4)
    # Row order does not matter either.
    perm = torch.randperm(len(groups))
    c = context_agnostic_directions(
        x[perm], [circ.disc.emotion[i] for i in perm], [groups[i] for i in perm]
    )
    assert torch.allclose(a, c, atol=1e-5)


def test_directions_classify_heldout_prompts_and_agree_across_contexts(circ):
    table = direction_consistency(
        circ.acts,
        circ.disc.emotion,
        circ.disc.group,
        circ.disc.theme,
        circ.disc.valence,
        circ.directions,
        circ.held_acts,
        circ.held.emotion,
        min_groups=1,
    )
    assert len(table) == 2 * circ.model.n_layers
    assert "heldout_accuracy_group_centered" not in table
    post = table[table.site == "resid_post"]
    # Unseen scenario: the instructed emotion is read off by projection far above chance.
    assert post.heldout_accuracy.max() >= 0.5 > post.chance.iloc[0]
    late = post[post.layer >= 15]
    assert late.heldout_accuracy.mean() > 2 * post.chance.iloc[0]
    # Directions from different valences (disjoint contexts) point the same way.
    assert late.cos_across_valences.mean() > 0.5
    assert np.isfinite(table.cos_between_emotions).all()


def test_projection_accuracy_is_near_chance_at_layer_zero(circ):
    """Centred on the discovery mean (not per group), layer 0 cannot read the emotion."""
    center = circ.acts.resid_post.double().mean(0)
    acc = projection_accuracy(
        circ.held_acts.resid_post,
        circ.held.emotion,
        circ.directions.get("resid_post"),
        SEV_EMOTIONS,
        center=center,
    )
    assert acc[0] < 0.5 and acc[-10:].mean() > 0.5


def test_save_load_roundtrip_and_errors(circ, tmp_path):
    path = circ.directions.save(tmp_path / "d.safetensors")
    back = EmotionDirections.load(path)
    assert back.emotions == SEV_EMOTIONS and back.n_groups == circ.directions.n_groups
    assert torch.equal(back.get("resid_mid"), circ.directions.get("resid_mid"))
    assert torch.equal(
        back.vector("fear", "resid_post", 3), circ.directions.vector("fear", "resid_post", 3)
    )
    with pytest.raises(CircuitError, match="unknown emotion"):
        back.vector("joy", "resid_post", 3)
    with pytest.raises(CircuitError, match="no scenario x valence group"):
        complete_groups(["anger", "anger"], ["g", "h"], SEV_EMOTIONS)
    with pytest.raises(CircuitError, match="not found"):
        EmotionDirections.load(tmp_path / "missing.safetensors")


def test_described_emotions_are_read_less_well_than_named_ones(circ):
    """Held-out prompts that describe the emotion (no emotion word): a test that can fail."""
    from lens_emotion.circuits.capture import capture_last_token
    from lens_emotion.circuits.sev_prompts import build_sev_prompts

    described = build_sev_prompts(circ.model, circ.heldout, instruction="described")
    acts = capture_last_token(circ.model, described.token_ids, ("resid_mid", "resid_post"), 18)
    table = direction_consistency(
        circ.acts,
        circ.disc.emotion,
        circ.disc.group,
        circ.disc.theme,
        circ.disc.valence,
        circ.directions,
        circ.held_acts,
        circ.held.emotion,
        acts,
        described.emotion,
        min_groups=1,
    )
    late = table[(table.site == "resid_post") & (table.layer >= 20)]
    chance = float(table.chance.iloc[0])
    # Part of what the directions read is the instruction's word: named >> described ...
    assert late.heldout_accuracy.mean() > late.heldout_accuracy_described.mean() + 0.2
    # ... but not all of it: described prompts are still read above chance somewhere late.
    assert late.heldout_accuracy_described.max() > chance + 0.1
    assert table[table.layer == 0].heldout_accuracy_described.max() < 0.5
