import pytest
import torch

from lens_emotion.circuits.edits import ComponentEdit, ablation_edit, edit_hooks
from lens_emotion.circuits.generation import generate_with_edit, plain_weight_edit

pytestmark = pytest.mark.integration


@torch.no_grad()
def test_weight_edit_equals_hooking_z_and_hook_post_at_every_position(circ):
    """Plain model with rescaled output columns + constant adds == bridge hooks on z / post."""
    from lens_emotion.interventions import _plain_hooks

    model = circ.model
    edit = (
        ablation_edit("head", [(3, 4), (22, 0)], "mean", circ.means.head)
        + ablation_edit(
            "neuron", [(10, 5), (28, 100), (28, 7)], "scale", circ.means.neuron, factor=3.0
        )
        + ComponentEdit.heads([(15, 8)], 0.0)
    )
    ids, mask = model.pad(list(circ.disc.token_ids[:2]))
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    ref = model.bridge.run_with_hooks(
        ids, attention_mask=mask, fwd_hooks=edit_hooks(model, edit, positions="all")
    )
    ref = torch.log_softmax(ref[:, -1].float(), -1)
    hf = model.plain_model
    before = hf.model.layers[22].self_attn.o_proj.weight.clone()
    with plain_weight_edit(model, edit) as hooks:
        assert {name for name, _ in hooks} == {
            "blocks.3.hook_attn_out",
            "blocks.22.hook_attn_out",
            "blocks.10.hook_mlp_out",
            "blocks.28.hook_mlp_out",
        }
        with _plain_hooks(model, hooks, prompt_pass=True):
            out = hf(input_ids=ids, attention_mask=mask, position_ids=positions).logits
    got = torch.log_softmax(out[:, -1].float(), -1)
    assert (got - ref).abs().max() < 2e-3
    clean = torch.log_softmax(
        hf(input_ids=ids, attention_mask=mask, position_ids=positions).logits[:, -1], -1
    )
    assert (clean - ref).abs().max() > 1e-2  # the edit changes the output
    assert torch.equal(hf.model.layers[22].self_attn.o_proj.weight, before)  # restored


def test_generate_with_edit(circ):
    prompts = list(circ.held.where("happiness").prompts[:2])
    plain = generate_with_edit(circ.model, prompts, ComponentEdit(), max_new_tokens=6)
    assert len(plain) == 2 and all(isinstance(t, str) and t for t in plain)
    edited = generate_with_edit(
        circ.model,
        prompts,
        ablation_edit("neuron", circ.scores["neuron"].top("happiness", 512), "zero"),
        max_new_tokens=6,
    )
    assert edited != plain
