import pytest
import torch

from lens_emotion.circuits.components import (
    head_ablation_effects,
    head_contributions,
    neuron_contributions,
    topk_overlap,
)
from lens_emotion.circuits.errors import CircuitError

pytestmark = pytest.mark.integration


def test_head_decomposition_equals_explicit_zero_ablation(circ):
    """One cached pass == one forward pass per zero-ablated head, to 1e-4."""
    rows = [0, 11]
    layers = [3, 29]
    decomposed = head_contributions(circ.acts.z[rows], circ.W_O, circ.directions.get("resid_mid"))
    ablated = head_ablation_effects(
        circ.model, [circ.disc.token_ids[i] for i in rows], circ.directions, layers=layers
    )["local"]
    assert ablated.shape == (2, 2, circ.model.n_heads, 6)
    assert (decomposed[:, layers] - ablated).abs().max() < 1e-4
    assert decomposed[:, layers].abs().max() > 0.1  # not trivially zero


def test_neuron_contributions_sum_to_the_mlp_output_projection(circ):
    v = circ.directions.get("resid_post")[:, 2]  # happiness, every layer
    c = neuron_contributions(circ.acts.mlp_post[:4], circ.W_out, v)
    mlp_out = circ.acts.resid_post[:4] - circ.acts.resid_mid[:4]  # bias-free MLP
    expected = torch.einsum("nld,ld->nl", mlp_out.double(), v.double())
    assert torch.allclose(c.double().sum(-1), expected, atol=1e-3, rtol=1e-4)


def test_scores_equal_the_centred_average_of_per_prompt_contributions(circ):
    heads = circ.scores["head"]
    per_prompt = head_contributions(circ.acts.z, circ.W_O, circ.directions.get("resid_mid"))
    emotions = list(circ.disc.emotion)
    for e, emotion in enumerate(circ.directions.emotions):
        mine = torch.tensor([x == emotion for x in emotions])
        expected = per_prompt[mine, :, :, e].mean(0) - per_prompt[:, :, :, e].mean(0)
        assert torch.allclose(heads.score[e], expected, atol=1e-4)
        raw = per_prompt[mine, :, :, e].mean(0)
        assert torch.allclose(heads.mean_contribution[e], raw, atol=1e-4)
    ranking = heads.ranking("sadness")
    first = ranking[0]
    assert heads.score[1, first[0], first[1]] == heads.score[1].max()
    assert len(ranking) == circ.model.n_layers * circ.model.n_heads


def test_tables_and_overlap(circ):
    table = circ.scores["neuron"].table(top=5)
    assert len(table) == 30 and list(table.columns[:4]) == ["emotion", "rank", "layer", "neuron"]
    assert (table.groupby("emotion").score.apply(lambda s: s.is_monotonic_decreasing)).all()
    overlap = topk_overlap(circ.scores["head"], 8)
    assert overlap.shape == (6, 6)
    assert (overlap.to_numpy().diagonal() == 1).all()
    assert (overlap.to_numpy() == overlap.to_numpy().T).all()
    with pytest.raises(CircuitError, match="out of range|must lie"):
        head_ablation_effects(circ.model, circ.disc.token_ids[:1], circ.directions, layers=[99])
