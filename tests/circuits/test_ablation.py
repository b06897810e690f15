import numpy as np
import pytest
import torch

from lens_emotion.circuits.ablation import ablation_sweep, default_ks, random_components
from lens_emotion.circuits.directions import complete_groups
from lens_emotion.circuits.scoring import LastTokenScorer


def test_default_ks_and_random_components():
    assert default_ks(270, 64) == [1, 2, 4, 8, 16, 32, 64]
    assert default_ks(270, 100) == [1, 2, 4, 8, 16, 32, 64, 100]
    assert default_ks(5, 64) == [1, 2, 4, 5]
    pairs = random_components(30, 9, 50, np.random.default_rng(0))
    assert len(set(pairs)) == 50
    assert all(0 <= layer < 30 and 0 <= head < 9 for layer, head in pairs)


@pytest.mark.integration
def test_top_components_matter_more_than_random_ones(circ):
    """Mean-ablating the top heads/neurons lowers the emotion score; random ones barely."""
    emotions = ("anger", "sadness", "fear")
    scorers = {
        e: LastTokenScorer(
            circ.model,
            [circ.held.token_ids[i] for i, x in enumerate(circ.held.emotion) if x == e][:2],
        )
        for e in emotions
    }
    index = torch.from_numpy(
        complete_groups(circ.disc.emotion, circ.disc.group, circ.directions.emotions)
    )
    center = circ.acts.resid_post[index.reshape(-1), -1].mean(0)
    table = ablation_sweep(
        scorers,
        circ.scores,
        circ.directions,
        circ.means,
        {"head": [16], "neuron": [256]},
        interventions=("mean", "scale"),
        scale_factor=2.0,
        n_random=2,
        seed=0,
        center=center,
    )
    assert set(table.columns) >= {
        "emotion",
        "component_type",
        "k",
        "intervention",
        "score",
        "control_score",
    }
    assert len(table) == 3 * 2 * 2
    assert (table.baseline > 0).all()  # held-out prompts score positively on their own emotion
    mean_rows = table[table.intervention == "mean"]
    drop_top = (mean_rows.baseline - mean_rows.score).mean()
    drop_random = (mean_rows.baseline - mean_rows.control_score).mean()
    assert drop_top > 0 and drop_top > 3 * abs(drop_random)
    scale_rows = table[table.intervention == "scale"]
    assert (scale_rows.score > scale_rows.baseline).mean() >= 0.5  # enhancement raises it
