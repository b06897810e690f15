import pandas as pd
import pytest

from lens_emotion.circuits import figures
from lens_emotion.circuits.circuit import EmotionCircuit
from lens_emotion.circuits.errors import CircuitError


def _ablation_table() -> pd.DataFrame:
    rows = []
    for e in ("anger", "fear"):
        for kind in ("head", "neuron"):
            for iv in ("zero", "mean"):
                for k in (1, 2, 4):
                    rows.append(
                        {
                            "emotion": e,
                            "component_type": kind,
                            "k": k,
                            "intervention": iv,
                            "score": 10.0 - k,
                            "control_score": 10.0,
                            "baseline": 10.0,
                        }
                    )
    return pd.DataFrame(rows)


def test_ablation_and_control_figures():
    fig = figures.ablation_figure(_ablation_table())
    assert len(fig.data) == 2 * 2 * 2 * 2  # kinds x interventions x emotions x (top, random)
    assert fig.data[0].y[-1] == pytest.approx(0.6)  # relative to the unedited score
    control = pd.DataFrame(
        {
            "method": ["prompting", "circuit"],
            "emotion": ["all", "all"],
            "accuracy": [0.3, 0.5],
            "ci_low": [0.2, 0.4],
            "ci_high": [0.4, 0.6],
        }
    )
    assert len(figures.control_figure(control).data) == 2  # an older table (unmasked judge)
    control["judged_masked"] = [0.1, 0.2]
    fig = figures.control_figure(control)
    assert list(fig.data[1].y) == [0.2]  # the primary metric is drawn, not 'accuracy'
    assert "masked" in fig.layout.annotations[0].text
    with pytest.raises(CircuitError):
        figures.ablation_figure(_ablation_table().iloc[:0])


def test_circuit_figure_draws_nodes_and_readout():
    circuit = EmotionCircuit(
        "fear",
        heads=[{"layer": 20, "head": 3, "score": 2.0, "influence": 1.5, "effect": 3.0}],
        neurons=[{"layer": 29, "neuron": 7, "score": 1.0, "influence": 1.0, "effect": 1.0}],
        sublayers=[
            {
                "layer": 20,
                "sublayer": "attn",
                "influence": 1.5,
                "n_heads": 1,
                "n_neurons": 0,
                "effect": 3.0,
            },
            {
                "layer": 29,
                "sublayer": "mlp",
                "influence": 1.0,
                "n_heads": 0,
                "n_neurons": 1,
                "effect": 1.0,
            },
        ],
    )
    fig = figures.circuit_figure(circuit, 30)
    nodes = [t for t in fig.data if t.mode == "markers+text"]
    assert list(nodes[0].text) == ["A20", "M29"] and "fear" in nodes[1].text[0]
    with pytest.raises(CircuitError):
        figures.circuit_figure(EmotionCircuit("fear", [], [], []))


@pytest.mark.integration
def test_real_heatmap_influence_and_consistency_figures(circ):
    heat = figures.head_heatmap(circ.scores["head"])
    assert len(heat.data) == 6 and heat.data[0].z.shape == (30, 9)
    with pytest.raises(CircuitError):
        figures.head_heatmap(circ.scores["neuron"])
    influence = pd.DataFrame(
        [
            {"emotion": "anger", "layer": x, "sublayer": s, "influence": 1.0}
            for x in range(3)
            for s in ("attn", "mlp")
        ]
    )
    assert len(figures.influence_figure(influence).data) == 2
    consistency = pd.DataFrame(
        {
            "site": ["resid_post"] * 3,
            "layer": [0, 1, 2],
            "heldout_accuracy": [0.2, 0.5, 0.9],
            "cos_across_themes": [0.9] * 3,
            "cos_across_valences": [0.95] * 3,
            "chance": [1 / 6] * 3,
        }
    )
    assert len(figures.consistency_figure(consistency).data) == 3
