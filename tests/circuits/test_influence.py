import pytest

from lens_emotion.circuits.influence import influence_matrix, residual_rms, sublayer_influence
from lens_emotion.circuits.scoring import LastTokenScorer

pytestmark = pytest.mark.integration


def test_sublayer_influence(circ):
    prompts = [circ.held.token_ids[i] for i, e in enumerate(circ.held.emotion) if e == "sadness"][
        :2
    ]
    sigma = residual_rms(circ.acts)
    assert (sigma["resid_post"][-1] > sigma["resid_post"][0]).item()  # the stream grows
    table = sublayer_influence(
        {"sadness": LastTokenScorer(circ.model, prompts)}, circ.directions, sigma, alpha=0.5
    )
    assert len(table) == 2 * circ.model.n_layers
    last = table[(table.layer == 29) & (table.sublayer == "mlp")].influence.iloc[0]
    assert last == pytest.approx(1.0, abs=1e-3)  # a direct write along the readout itself
    mid = table[(table.layer >= 10) & (table.layer <= 20)]
    assert mid.influence.mean() > 0.5  # mid-layer pushes along v_e are carried to the end
    matrix = influence_matrix(table, "sadness")
    assert matrix.shape == (30, 2)
