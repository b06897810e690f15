import pytest
import torch

from lens_emotion.circuits.ablation import ComponentMeans
from lens_emotion.circuits.circuit import EmotionCircuit
from lens_emotion.circuits.edits import ComponentEdit
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.modulation import (
    control_comparison,
    distinct_bigram_ratio,
    emotion_means,
    is_degenerate,
    modulation_hooks,
    modulation_vectors,
    steering_baseline_hooks,
)
from lens_emotion.circuits.scoring import LastTokenScorer


def test_distinct_bigrams():
    assert distinct_bigram_ratio("anger anger anger anger") == pytest.approx(1 / 3)
    assert distinct_bigram_ratio("I feel fine today") == 1.0
    assert is_degenerate("anger\n") and is_degenerate("sad sad sad sad sad sad sad sad")
    assert not is_degenerate("Anger is a powerful emotion that can be a blessing.")


def _small_circuit(circ, emotion):
    heads = [{"layer": layer, "head": h} for layer, h in circ.scores["head"].top(emotion, 4)]
    neurons = [{"layer": layer, "neuron": n} for layer, n in circ.scores["neuron"].top(emotion, 16)]
    return EmotionCircuit(emotion, heads, neurons, [])


@pytest.mark.integration
def test_modulation_vectors_equal_shifting_the_components(circ):
    target = emotion_means(circ.acts, circ.disc.emotion, circ.directions.emotions)["anger"]
    reference = ComponentMeans.from_activations(circ.neutral_acts)
    circuit = _small_circuit(circ, "anger")
    vectors = modulation_vectors(circuit, target, reference, circ.W_O, circ.W_out, gamma=3.0)
    heads = circuit.components("head")
    neurons = circuit.components("neuron")
    idx_h = torch.tensor(heads)
    idx_n = torch.tensor(neurons)
    shift = ComponentEdit.heads(
        heads, 1.0, 3.0 * (target.head - reference.head)[idx_h[:, 0], idx_h[:, 1]]
    ) + (
        ComponentEdit.neurons(
            neurons, 1.0, 3.0 * (target.neuron - reference.neuron)[idx_n[:, 0], idx_n[:, 1]]
        )
    )
    injected = ComponentEdit(inject=vectors)
    scorer = LastTokenScorer(circ.model, list(circ.neutral.token_ids[:2]))
    readout = circ.directions.final()
    out = scorer.scores([ComponentEdit(), shift, injected], readout)
    assert torch.allclose(out[:, 1], out[:, 2], atol=5e-3, rtol=1e-4)
    # Moving the circuit towards anger raises the anger score of neutral prompts.
    assert (out[:, 1, 0] > out[:, 0, 0]).all()


@pytest.mark.integration
def test_control_comparison_on_heldout_neutral_prompts(circ):
    from lens_emotion.circuits.sev_prompts import build_sev_prompts, one_valence_per_scenario
    from lens_emotion.judge import load_judge

    judge = load_judge(label_set="sev", progress=False)
    items = one_valence_per_scenario(circ.heldout, seed=0)
    neutral = build_sev_prompts(circ.model, items, [None])
    conditioned = build_sev_prompts(circ.model, items)
    emotions = ("anger", "happiness")
    target = emotion_means(circ.acts, circ.disc.emotion, circ.directions.emotions)
    reference = ComponentMeans.from_activations(circ.neutral_acts)
    hooks = {
        "steering": {
            e: steering_baseline_hooks(circ.model, circ.directions, e, 8.0, [12, 13])
            for e in emotions
        },
        "circuit": {
            e: modulation_hooks(
                circ.model,
                _small_circuit(circ, e),
                target[e],
                reference,
                circ.W_O,
                circ.W_out,
                16.0,
            )
            for e in emotions
        },
    }
    result = control_comparison(
        circ.model, judge, neutral, conditioned, hooks, emotions, max_new_tokens=8, n_boot=200
    )
    table = result.table
    assert list(dict.fromkeys(table.method)) == ["neutral", "prompting", "steering", "circuit"]
    assert set(table.emotion) == {"anger", "happiness", "all"}
    assert list(table.columns[2:5]) == ["n", "judged_masked", "ci_low"]
    assert ((table.ci_low <= table.judged_masked) & (table.judged_masked <= table.ci_high)).all()
    assert (table.fluent_judged_masked <= table.judged_masked).all()
    assert set(result.differences.metric) == {"judged_masked", "judged_raw", "fluent_judged_masked"}
    assert (table[table.emotion == "all"].n == 2).all()
    gens = result.generations
    assert len(gens) == 4 * 2 and set(gens.judged_masked) <= {*judge.labels, "(empty)"}
    assert (gens.fluent_correct_masked == (gens.correct_masked & ~gens.degenerate)).all()
    # The judge read masked replies: no emotion word form is left in them.
    from lens_emotion.lexicon import names_any_emotion

    assert not any(names_any_emotion(t) for t in gens.masked_reply)
    # Steering/circuit replies differ from the unsteered ones.
    plain = gens[gens.method == "neutral"].reply.tolist()
    assert gens[gens.method == "circuit"].reply.tolist() != plain
    assert len(result.differences) == 3 * 6
    with pytest.raises(CircuitError, match="neutral prompts"):
        control_comparison(circ.model, judge, conditioned, conditioned, {}, emotions)
