"""Head decomposition and the cached-prefix scorer against explicit runs, for every family.

The same checks as tests/circuits/test_components.py and test_scoring.py (which run on real
SmolLM2), on a tiny random-weight model of each decoder family of lens_emotion.testing.
"""

import pytest
import torch

from lens_emotion.architecture import sliding_window
from lens_emotion.circuits.capture import capture_last_token
from lens_emotion.circuits.components import (
    decomposition_reason,
    head_ablation_effects,
    head_contributions,
)
from lens_emotion.circuits.directions import compute_directions
from lens_emotion.circuits.edits import ComponentEdit, ablation_edit, edit_hooks
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.scoring import LastTokenScorer
from lens_emotion.circuits.sev_prompts import SEV_EMOTIONS
from lens_emotion.testing import TINY_FAMILIES, make_tiny_family_model

TEXTS = [
    "My friend forgot my birthday again this year.",
    "The storm knocked out the power for two days.",
    "I finally got the job I had wanted for so long.",
    "Someone left a rude note on my car windshield.",
    "The test results came back and everything was fine.",
    "We lost the final match in the last second.",
]
# GPT-NeoX adds attention and MLP outputs in parallel: there is no resid_mid to decompose on.
FAMILIES = [f for f in TINY_FAMILIES if f != "gpt_neox"]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory):
    from lens_emotion.models import load_model

    folder = make_tiny_family_model(tmp_path_factory.mktemp("fam") / request.param, request.param)
    model = load_model(folder, device="cpu")
    token_ids = [model.encode([f"{t} I feel"])[0] for t in TEXTS for _ in range(2)]
    emotions = [SEV_EMOTIONS[i % 6] for i in range(len(token_ids))]
    groups = [f"g{i // 6}" for i in range(len(token_ids))]
    acts = capture_last_token(model, token_ids, batch_size=4)
    directions = compute_directions(acts, emotions, groups)
    return model, token_ids, acts, directions


@torch.no_grad()
def test_head_decomposition_equals_explicit_zero_ablation(family):
    from lens_emotion.circuits.components import head_output_weights

    model, token_ids, acts, directions = family
    rows = [0, 5]
    layers = list(range(model.n_layers))
    W_O = head_output_weights(model)  # noqa: N806
    decomposed = head_contributions(acts.z[rows], W_O, directions.get("resid_mid"))
    ablated = head_ablation_effects(model, [token_ids[i] for i in rows], directions)["local"]
    assert ablated.shape == (2, len(layers), model.n_heads, 6)
    scale = decomposed.abs().max()
    assert scale > 0  # not trivially zero
    error = (decomposed - ablated).abs().max()
    reason = decomposition_reason(model)
    if reason is None:
        assert error < 1e-4 * scale + 1e-5
    else:  # a post-attention norm: the suite says so, and the terms really are not exact
        assert "normalises the attention output" in reason
        assert error > 1e-3 * scale


@torch.no_grad()
def test_cached_prefix_scorer_equals_full_forward_passes(family):
    model, token_ids, acts, directions = family
    window = sliding_window(model)
    if window is not None:
        # Longer prompts than the window are refused in one line ...
        with pytest.raises(CircuitError, match="sliding attention window"):
            LastTokenScorer(model, token_ids[:2])
        # ... and prompts within it are scored exactly.
        token_ids = [model.encode([t])[0][:window] for t in ("We lost.", "Fine day!", "Oh no.")]
        acts = capture_last_token(model, token_ids, batch_size=4)
        rows = [0, 1, 2]
    else:
        rows = [1, 4, 7]
    prompts = [token_ids[i] for i in rows]
    scorer = LastTokenScorer(model, prompts, batch_size=2, max_rows=4)
    mid = model.n_layers // 2
    heads = [(mid, 0), (model.n_layers - 1, 1)]
    edit = ablation_edit("head", heads, "zero")
    inject = ComponentEdit.injection(
        "attn_out", mid, directions.vector("anger", "resid_mid", mid) * 5
    )
    got = scorer.residuals([ComponentEdit(), edit, inject])
    assert torch.allclose(got[:, 0], acts.resid_post[rows, -1].to(got.dtype), atol=1e-4)
    ids, mask = model.pad(prompts)
    for j, e in enumerate((edit, inject), start=1):
        seen = {}

        def keep(act, hook, seen=seen):
            seen["x"] = act[:, -1].clone()

        last = model.hook_name("resid_post", model.n_layers - 1)
        hooks = edit_hooks(model, e, positions="last") + [(last, keep)]
        model.bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks, return_type=None)
        scale = seen["x"].abs().max()
        assert (got[:, j] - seen["x"]).abs().max() < 1e-5 * scale + 1e-4
    assert (got[:, 2] - got[:, 0]).norm(dim=-1).min() > 0  # the injection does something
