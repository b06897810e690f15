import pytest
import torch

from lens_emotion.circuits.capture import capture_last_token
from lens_emotion.circuits.errors import CircuitError

pytestmark = pytest.mark.integration


@torch.no_grad()
def test_capture_matches_a_plain_cached_pass_and_hook_post_is_the_gated_product(circ):
    model, ids = circ.model, circ.disc.token_ids[5]
    _, cache = model.bridge.run_with_cache(torch.tensor([ids]))
    for layer in (0, 17, 29):
        post = cache[f"blocks.{layer}.hook_resid_post"][0, -1]
        assert torch.allclose(circ.acts.resid_post[5, layer], post, atol=1e-3, rtol=1e-5)
        mid = (
            cache[f"blocks.{layer}.hook_resid_pre"][0, -1]
            + cache[f"blocks.{layer}.hook_attn_out"][0, -1]
        )
        assert torch.allclose(circ.acts.resid_mid[5, layer], mid, atol=1e-3, rtol=1e-5)
        # mlp.hook_post is H = silu(gate) * up, the input of W_out.
        gate = cache[f"blocks.{layer}.mlp.hook_pre"][0, -1]
        up = cache[f"blocks.{layer}.mlp.hook_pre_linear"][0, -1]
        hidden = torch.nn.functional.silu(gate) * up
        assert torch.allclose(circ.acts.mlp_post[5, layer], hidden, atol=1e-4, rtol=1e-4)
        mlp_out = cache[f"blocks.{layer}.hook_mlp_out"][0, -1]
        assert torch.allclose(hidden @ circ.W_out[layer], mlp_out, atol=1e-3, rtol=1e-4)
        z = cache[f"blocks.{layer}.attn.hook_z"][0, -1]  # one z per query head (9), not per KV head
        assert z.shape == (model.n_heads, 64)
        assert torch.allclose(circ.acts.z[5, layer], z, atol=1e-4, rtol=1e-4)


def test_capture_subset_and_errors(circ):
    sub = circ.acts.subset([3, 1])
    assert torch.equal(sub.z[0], circ.acts.z[3])
    assert len(sub) == 2
    with pytest.raises(CircuitError, match="not captured"):
        circ.neutral_acts.site("resid_post")
    with pytest.raises(CircuitError, match="unknown"):
        capture_last_token(circ.model, circ.disc.token_ids[:1], ("logits",))
