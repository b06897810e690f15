import pytest
import torch

from lens_emotion.circuits.edits import ComponentEdit, ablation_edit, edit_hooks
from lens_emotion.circuits.scoring import LastTokenScorer

pytestmark = pytest.mark.integration


@torch.no_grad()
def test_cached_prefix_scores_equal_full_forward_passes(circ):
    model = circ.model
    rows = [1, 8, 20]
    token_ids = [circ.disc.token_ids[i] for i in rows]
    scorer = LastTokenScorer(model, token_ids, batch_size=2, max_rows=4)
    edit = ablation_edit("head", circ.scores["head"].top("anger", 4), "zero") + ablation_edit(
        "neuron", circ.scores["neuron"].top("anger", 16), "mean", circ.means.neuron
    )
    inject = ComponentEdit.injection(
        "attn_out", 12, circ.directions.vector("anger", "resid_mid", 12) * 5
    )
    got = scorer.residuals([ComponentEdit(), edit, inject])
    # Unedited == the captured full pass.
    assert torch.allclose(got[:, 0], circ.acts.resid_post[rows, -1], atol=2e-3, rtol=1e-5)
    ids, mask = model.pad(token_ids)
    for j, e in enumerate((edit, inject), start=1):
        seen = {}

        def keep(act, hook, seen=seen):
            seen["x"] = act[:, -1].clone()

        hooks = edit_hooks(model, e, positions="last") + [(model.hook_name("resid_post", 29), keep)]
        model.bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks, return_type=None)
        scale = seen["x"].abs().max()
        assert (got[:, j] - seen["x"]).abs().max() < 1e-5 * scale + 1e-3
        assert (got[:, j] - got[:, 0]).norm(dim=-1).min() > 1.0  # the edits do something


def test_scores_project_and_centre(circ):
    scorer = LastTokenScorer(circ.model, circ.disc.token_ids[:2])
    readout = circ.directions.final()
    center = circ.acts.resid_post[:, -1].mean(0)
    scores = scorer.scores([ComponentEdit()], readout, center)
    expected = (circ.acts.resid_post[:2, -1] - center) @ readout.T
    assert scores.shape == (2, 1, 6)
    assert torch.allclose(scores[:, 0], expected, atol=1e-2, rtol=1e-4)
