import pandas as pd
import pytest

from lens_emotion.circuits.circuit import EmotionCircuit, assemble_circuit
from lens_emotion.circuits.errors import CircuitError

pytestmark = pytest.mark.integration


def _flat_influence(n_layers: int, value: float = 1.0) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"emotion": e, "layer": layer, "sublayer": s, "influence": value + 0.01 * layer}
            for e in ("anger", "fear")
            for layer in range(n_layers)
            for s in ("attn", "mlp")
        ]
    )


def test_assemble_and_roundtrip(circ, tmp_path):
    circuit = assemble_circuit(
        "fear", circ.scores, _flat_influence(30), n_heads=5, n_neurons=12, n_sublayers=3
    )
    assert len(circuit.heads) == 5 and len(circuit.neurons) == 12
    effects = [h["effect"] for h in circuit.heads]
    assert effects == sorted(effects, reverse=True) and min(effects) > 0
    for h in circuit.heads:
        assert h["effect"] == pytest.approx(h["score"] * h["influence"], rel=1e-5)
    hosts = {(h["layer"], "attn") for h in circuit.heads} | {
        (n["layer"], "mlp") for n in circuit.neurons
    }
    listed = {(s["layer"], s["sublayer"]) for s in circuit.sublayers}
    assert hosts <= listed
    assert {(29, "attn"), (29, "mlp")} <= listed  # the most influential sublayers are listed
    back = EmotionCircuit.load(circuit.save(tmp_path / "c.json"))
    assert back.components("neuron") == circuit.components("neuron")
    assert back.meta["n_heads"] == 5
    # Where writing along v_e lowers the final score, components that write against it count.
    flipped = assemble_circuit("fear", circ.scores, _flat_influence(30, -5.0), n_heads=5)
    assert all(h["score"] < 0 < h["effect"] for h in flipped.heads)
    assert all(n["score"] < 0 < n["effect"] for n in flipped.neurons)
    with pytest.raises(CircuitError, match="no rows"):
        assemble_circuit("sadness", circ.scores, _flat_influence(30))
