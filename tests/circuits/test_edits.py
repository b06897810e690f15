import pytest
import torch

from lens_emotion.circuits.edits import (
    ComponentEdit,
    EditShape,
    ablation_edit,
    edit_hooks,
    stack_edits,
)
from lens_emotion.circuits.errors import CircuitError

pytestmark = pytest.mark.integration


def test_ablation_edit_semantics(circ):
    means = circ.means.head
    pairs = [(4, 2), (20, 7)]
    zero = ablation_edit("head", pairs, "zero")
    assert zero.head_mult.tolist() == [0.0, 0.0] and zero.head_add is None
    mean = ablation_edit("head", pairs, "mean", means)
    assert torch.equal(mean.head_add[1], means[20, 7])
    scale = ablation_edit("head", pairs, "scale", means, factor=3.0)
    a = torch.randn(64)
    # scale about the mean: mean + 3 * (a - mean)
    assert torch.allclose(
        a * scale.head_mult[0] + scale.head_add[0], means[4, 2] + 3 * (a - means[4, 2]), atol=1e-5
    )
    with pytest.raises(CircuitError, match="needs the mean"):
        ablation_edit("neuron", [(0, 1)], "mean")
    with pytest.raises(CircuitError, match="unknown intervention"):
        ablation_edit("neuron", [(0, 1)], "double")


def test_stacking_and_hooks_apply_per_row_edits(circ):
    model = circ.model
    shape = EditShape.of(model)
    assert (shape.n_heads, shape.d_head, shape.d_mlp) == (9, 64, 1536)
    edits = [
        ComponentEdit(),
        ComponentEdit.neurons([(5, 10)], 0.0),
        ComponentEdit.heads([(5, 1)], 2.0),
    ]
    stacked = stack_edits(edits, shape)
    assert stacked.neuron_layers == (5,) and stacked.head_layers == (5,)
    assert stacked.neuron_mult[1, 5, 10] == 0 and stacked.neuron_mult[0, 5, 10] == 1
    ids, mask = model.pad([circ.disc.token_ids[0]] * 3)
    seen = {}

    def keep(act, hook):
        seen["post"] = act.clone()

    def keep_z(act, hook):
        seen["z"] = act.clone()

    hooks = edit_hooks(model, stacked, positions="last")
    with torch.no_grad():
        model.bridge.run_with_hooks(
            ids,
            attention_mask=mask,
            fwd_hooks=hooks
            + [(model.hook_name("mlp_post", 5), keep), (model.hook_name("z", 5), keep_z)],
            return_type=None,
        )
    post, z = seen["post"], seen["z"]
    assert post[1, -1, 10] == 0 and post[0, -1, 10] != 0 and post[1, -2, 10] != 0
    assert torch.allclose(z[2, -1, 1], 2 * z[0, -1, 1], atol=1e-5)
    with pytest.raises(CircuitError, match="out of range"):
        stack_edits([ComponentEdit.heads([(0, 9)], 0.0)], shape)
    with pytest.raises(CircuitError, match="cannot inject"):
        ComponentEdit(inject={("resid_mid", 0): torch.zeros(576)})
    combined = ComponentEdit.heads([(1, 1)], 0.0) + ComponentEdit.neurons([(2, 2)], 0.0)
    assert len(combined.head_index) == 1 and len(combined.neuron_index) == 1
    assert ComponentEdit().is_identity and not combined.is_identity
