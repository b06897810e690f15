"""Attribution patching estimates: gradients vs finite differences, exact linear identities,
GQA heads, TransformerLens's own node attribution, the result protocol, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lens_emotion.attribution import (
    ATP_SITES,
    HEAD_SITE,
    AttributionError,
    attribute,
    attribution_patch,
    interpolation_patch,
    patching_cost,
)
from lens_emotion.errors import LensEmotionError
from lens_emotion.results import AnalysisResult

from .conftest import central_difference, component, pairs_from_rows

# ---------------------------------------------------------------------------------------------
# Tiny models: plumbing
# ---------------------------------------------------------------------------------------------


def test_tiny_shapes_tables_and_gqa_heads(tiny_llama, tiny_atp):
    assert (tiny_llama.n_heads, tiny_llama.n_kv_heads) == (4, 2)
    n_layers = tiny_llama.n_layers
    assert tiny_atp.site_effects.shape == (3, len(ATP_SITES), n_layers)
    assert tiny_atp.head_effects.shape == (3, n_layers, 4)  # one per *query* head
    assert np.isfinite(tiny_atp.site_effects).all() and np.isfinite(tiny_atp.head_effects).all()
    per_pair = tiny_atp.per_pair()
    assert len(per_pair) == 3 * (len(ATP_SITES) * n_layers + n_layers * 4)
    table = tiny_atp.table
    assert list(table.columns) == [
        "site",
        "layer",
        "head",
        "atp_effect",
        "atp_std",
        "atp_abs_mean",
        "n_pairs",
    ]
    assert len(table) == len(ATP_SITES) * n_layers + n_layers * 4
    assert table[table.site != HEAD_SITE]["head"].isna().all()
    heads = table[table.site == HEAD_SITE]
    assert sorted(heads["head"].unique()) == [0, 1, 2, 3]
    row = table[(table.site == "mlp_out") & (table.layer == 1)].iloc[0]
    assert row.atp_effect == pytest.approx(float(tiny_atp.site("mlp_out")[:, 1].mean()), abs=1e-6)
    # Two forwards (source, target) and one backward per pair.
    assert (tiny_atp.n_forward, tiny_atp.n_backward) == (6, 3)
    cost = tiny_atp.cost()
    assert cost["atp_fpe"] == 3 * 4
    assert cost["patching_fpe"] == 3 * (2 + len(ATP_SITES) * n_layers + n_layers * 4)


def test_tiny_batching_does_not_change_estimates(tiny_llama, tiny_pairs, tiny_atp):
    single = attribution_patch(tiny_llama, **tiny_pairs, batch_size=1, progress=False)
    np.testing.assert_allclose(single.site_effects, tiny_atp.site_effects, atol=1e-4)
    np.testing.assert_allclose(single.head_effects, tiny_atp.head_effects, atol=1e-4)
    np.testing.assert_allclose(single.target_metric, tiny_atp.target_metric, atol=1e-4)


def test_tiny_gradients_match_finite_differences_everywhere(tiny_llama, tiny_pairs, tiny_atp):
    for site in ATP_SITES:
        for layer in range(tiny_llama.n_layers):
            fd = central_difference(tiny_llama, tiny_pairs, site, layer)
            np.testing.assert_allclose(
                component(tiny_atp, site, layer), fd, rtol=2e-2, atol=2e-4, err_msg=site
            )
    for head in range(tiny_llama.n_heads):
        fd = central_difference(tiny_llama, tiny_pairs, HEAD_SITE, 1, head)
        np.testing.assert_allclose(
            component(tiny_atp, HEAD_SITE, 1, head), fd, rtol=2e-2, atol=2e-4
        )


def _explicit_resid_mid_patch(model, pairs, layer):
    """Reference for patching resid_mid at the last token, written out by hand.

    The source's resid_mid ``m`` (read at the bridge's hook) replaces the target's, so the
    target's resid_post at the last token becomes ``m + MLP(norm(m))`` (plain transformers
    modules); nothing before that position or earlier in the layer changes.
    """
    from lens_emotion.batching import length_batches

    bridge, block = model.bridge, model.plain_model.model.layers[layer]
    mid, post = model.hook_name("resid_mid", layer), model.hook_name("resid_post", layer)
    n = len(pairs["target_tokens"])
    out = np.zeros(n, dtype=np.float32)
    for idx in length_batches([len(t) for t in pairs["target_tokens"]], 8):
        plus = torch.tensor([pairs["source_label_ids"][i] for i in idx])
        minus = torch.tensor([pairs["target_label_ids"][i] for i in idx])
        got = {}

        def keep(act, hook, got=got):
            got["m"] = act[:, -1].detach().clone()

        def write(act, hook, got=got):
            m = got["m"]
            act = act.clone()
            act[:, -1] = m + block.mlp(block.post_attention_layernorm(m))
            return act

        with torch.no_grad():
            ids, mask = model.pad([pairs["source_tokens"][i] for i in idx])
            bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=[(mid, keep)])
            ids, mask = model.pad([pairs["target_tokens"][i] for i in idx])
            clean = bridge(ids, attention_mask=mask)[:, -1]
            patched = bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=[(post, write)])
            patched = patched[:, -1]
        rows = torch.arange(len(idx))
        change = (patched - clean)[rows, plus] - (patched - clean)[rows, minus]
        out[idx] = change.numpy()
    return out


def test_tiny_resid_mid_patch_and_gradient_include_the_skip_path(tiny_llama, tiny_pairs, tiny_atp):
    """resid_mid means the residual stream: patching it equals the hand-written patch (source
    resid_mid + the MLP's response at resid_post), and AtP's resid_mid gradient is attn_out's,
    the residual stream's. The bridge's MLP-input-only alias fails both."""
    for layer in range(tiny_llama.n_layers):
        real = interpolation_patch(tiny_llama, **tiny_pairs, site="resid_mid", layer=layer)[0]
        ref = _explicit_resid_mid_patch(tiny_llama, tiny_pairs, layer)
        np.testing.assert_allclose(real, ref, atol=1e-4)
        assert np.abs(ref).max() > 1e-3
    # Exact: resid_mid and attn_out share one gradient, so the per-unit-delta slopes agree.
    last = tiny_llama.n_layers - 1
    fd_mid = central_difference(tiny_llama, tiny_pairs, "resid_mid", last)
    np.testing.assert_allclose(component(tiny_atp, "resid_mid", last), fd_mid, rtol=2e-2, atol=2e-4)


def test_tiny_gpt2_matches_transformer_lens_node_attribution(tiny_gpt2, sample_dataset):
    """TransformerLens's own node-level AtP (non-GQA GPT-2, equal-length pairs) agrees."""
    from transformer_lens.tools.analysis import Node
    from transformer_lens.tools.analysis import attribution_patch as tl_attribution_patch

    data = sample_dataset.sample(40, seed=0)
    pairs = pairs_from_rows(tiny_gpt2, data, 1, equal_length=True)
    ours = attribution_patch(tiny_gpt2, **pairs, progress=False)
    source, target = pairs["source_label_ids"][0], pairs["target_label_ids"][0]
    clean = torch.tensor([pairs["source_tokens"][0]])
    corrupt = torch.tensor([pairs["target_tokens"][0]])
    result = tl_attribution_patch(
        tiny_gpt2.bridge,
        clean,
        corrupt,
        lambda logits: logits[0, -1, source] - logits[0, -1, target],
    )
    last = clean.shape[1] - 1
    for layer in range(tiny_gpt2.n_layers):
        mlp = result.node_scores[Node("mlp_out", last, layer=layer)]
        assert component(ours, "mlp_out", layer)[0] == pytest.approx(mlp, abs=1e-5)
        for head in range(tiny_gpt2.n_heads):
            tl_head = result.node_scores[Node("attn_head_out", last, layer=layer, head=head)]
            assert component(ours, HEAD_SITE, layer, head)[0] == pytest.approx(tl_head, abs=1e-5)


def test_result_protocol_and_summary(tiny_llama, tiny_atp, tmp_path):
    """AttributionResult follows the one result protocol; summary() is small and JSON-ready."""
    assert isinstance(tiny_atp, AnalysisResult)
    table = tiny_atp.table
    frame = tiny_atp.to_frame()
    pd.testing.assert_frame_equal(frame, table)
    frame.loc[0, "atp_effect"] = 1e9  # a copy: editing it leaves the result alone
    assert tiny_atp.table.loc[0, "atp_effect"] != 1e9
    summary = tiny_atp.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["n_pairs"] == 3 and summary["n_heads"] == 4
    assert summary["n_layers"] == tiny_llama.n_layers
    assert summary["atp_fpe"] == tiny_atp.cost()["atp_fpe"]
    assert set(summary["strongest"]) == {*ATP_SITES, HEAD_SITE}
    for site, best in summary["strongest"].items():
        rows = table[table.site == site]
        assert abs(best["atp_effect"]) == pytest.approx(rows.atp_effect.abs().max())
        assert (best["head"] is None) == (site != HEAD_SITE)
    paths = tiny_atp.save(tmp_path)
    assert [p.name for p in paths] == ["attribution.csv", "attribution_per_pair.csv"]
    assert len(pd.read_csv(paths[0])) == len(table)
    assert len(tiny_atp.figure().data) == 2 * len(ATP_SITES)  # band + line per site


# ---------------------------------------------------------------------------------------------
# Bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda p: p.update(source_tokens=p["source_tokens"][:2]), "one source prompt"),
        (lambda p: p.update(source_tokens=[], target_tokens=[]), "No pairs"),
        (lambda p: p["target_tokens"].__setitem__(0, ()), "empty"),
        (lambda p: p["source_label_ids"].__setitem__(0, 10**9), "not a token id"),
        (lambda p: p.update(target_label_ids=list(p["source_label_ids"])), "same source and"),
    ],
)
def test_bad_pairs_are_refused(tiny_llama, tiny_pairs, change, message):
    pairs = {key: list(value) for key, value in tiny_pairs.items()}
    change(pairs)
    with pytest.raises(AttributionError, match=message):
        attribution_patch(tiny_llama, **pairs, progress=False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sites": ("resid_post", "hook_bogus")}, "Unknown AtP site"),
        ({"sites": ("mlp_out", "mlp_out")}, "repeat"),
        ({"layers": [0, 7]}, "out of range"),
        ({"layers": []}, "layers is empty"),
        ({"sites": (), "heads": False}, "Nothing to score"),
        ({"batch_size": 0}, "batch_size"),
    ],
)
def test_bad_options_are_refused(tiny_llama, tiny_pairs, kwargs, message):
    with pytest.raises(AttributionError, match=message) as info:
        attribution_patch(tiny_llama, **tiny_pairs, progress=False, **kwargs)
    assert isinstance(info.value, LensEmotionError)


def test_bad_pair_objects_and_heads_are_refused(tiny_llama, tiny_pairs):
    with pytest.raises(AttributionError, match="not a PatchPairs"):
        attribute(tiny_llama, {"source_tokens": tiny_pairs["source_tokens"]})
    with pytest.raises(AttributionError, match="site 'z' needs a query head"):
        interpolation_patch(tiny_llama, **tiny_pairs, site=HEAD_SITE, layer=0)


def test_patching_cost_counts():
    cost = patching_cost(n_pairs=100, n_layers=30, n_sites=3, n_heads=9)
    assert cost["atp_fpe"] == 400
    assert cost["patching_fpe"] == 100 * (2 + 90 + 270)
    assert cost["ratio"] == pytest.approx(cost["patching_fpe"] / cost["atp_fpe"])


# ---------------------------------------------------------------------------------------------
# Real SmolLM2 and real crowd-enVENT rows
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_pairs(smollm2, crowd_envent):
    return pairs_from_rows(smollm2, crowd_envent.sample(40, seed=3), 3)


@pytest.fixture(scope="module")
def real_atp(smollm2, real_pairs):
    return attribution_patch(smollm2, **real_pairs, batch_size=3, progress=False)


@pytest.mark.integration
def test_smollm2_atp_is_the_gradient_times_delta(smollm2, real_pairs, real_atp):
    """Each AtP estimate is the slope of a patch scaled towards the source (finite difference),
    including single query heads of different key/value groups under GQA."""
    assert (smollm2.n_heads, smollm2.n_kv_heads) == (9, 3)
    two = {key: value[:2] for key, value in real_pairs.items()}
    for site, layer, head in [("resid_mid", 16, None), (HEAD_SITE, 14, 1), (HEAD_SITE, 24, 7)]:
        fd = central_difference(smollm2, two, site, layer, head)
        est = component(real_atp, site, layer, head)[:2]
        scale = max(float(np.abs(est).max()), 1e-2)
        np.testing.assert_allclose(est, fd, atol=0.03 * scale, err_msg=f"{site} {layer} {head}")


@pytest.mark.integration
def test_smollm2_exact_linear_identities(smollm2, real_atp):
    # Heads: attn_out = sum_h z_h W_O^h, so per-head estimates add up to the attn_out estimate.
    heads_sum = real_atp.head_effects.sum(axis=2)
    attn = real_atp.site("attn_out")
    np.testing.assert_allclose(heads_sum, attn, atol=1e-4 * max(1.0, np.abs(attn).max()))
    assert np.abs(real_atp.head_effects).max() > 1e-3
    # resid_pre of layer l is resid_post of layer l-1.
    np.testing.assert_allclose(
        real_atp.site("resid_pre")[:, 1:], real_atp.site("resid_post")[:, :-1], atol=1e-5
    )
    # Both prompts end with the same token and Llama has no positional embedding in the
    # residual stream, so the layer-0 input is identical and its estimate is exactly 0.
    assert np.all(real_atp.site("resid_pre")[:, 0] == 0)


@pytest.mark.integration
def test_smollm2_final_layer_is_near_linear(smollm2, real_pairs, real_atp):
    """Patching the final resid_post at the last token turns the target's logit difference
    into the source's exactly; AtP recovers that change up to the final norm's curvature."""
    last = smollm2.n_layers - 1
    real = interpolation_patch(smollm2, **real_pairs, site="resid_post", layer=last)[0]
    np.testing.assert_allclose(real, real_atp.source_metric - real_atp.target_metric, atol=1e-3)
    est = real_atp.site("resid_post")[:, last]
    assert np.abs(est - real).sum() / np.abs(real).sum() < 0.1
    assert np.all(np.sign(est) == np.sign(real))


@pytest.mark.integration
def test_smollm2_matches_transformer_lens_node_attribution(smollm2, crowd_envent):
    """On an equal-length real pair, TransformerLens's node AtP gives our last-token head and
    MLP scores; its edge mode refuses SmolLM2's grouped-query attention."""
    from transformer_lens.tools.analysis import EdgeAttributionConfig, Node
    from transformer_lens.tools.analysis import attribution_patch as tl_attribution_patch

    pairs = pairs_from_rows(smollm2, crowd_envent.sample(60, seed=0), 1, equal_length=True)
    ours = attribution_patch(smollm2, **pairs, sites=("mlp_out",), progress=False)
    source, target = pairs["source_label_ids"][0], pairs["target_label_ids"][0]
    clean = torch.tensor([pairs["source_tokens"][0]])
    corrupt = torch.tensor([pairs["target_tokens"][0]])

    def metric(logits):
        return logits[0, -1, source] - logits[0, -1, target]

    result = tl_attribution_patch(smollm2.bridge, clean, corrupt, metric)
    last = clean.shape[1] - 1
    tl_heads = np.array(
        [
            [result.node_scores[Node("attn_head_out", last, layer=layer, head=h)] for h in range(9)]
            for layer in range(smollm2.n_layers)
        ]
    )
    tl_mlp = np.array(
        [result.node_scores[Node("mlp_out", last, layer=layer)] for layer in range(30)]
    )
    np.testing.assert_allclose(ours.head_effects[0], tl_heads, atol=1e-4)
    np.testing.assert_allclose(ours.site("mlp_out")[0], tl_mlp, atol=1e-4)
    assert np.abs(tl_heads).max() > 1e-2
    with pytest.raises(ValueError, match="GQA"):
        tl_attribution_patch(
            smollm2.bridge, clean, corrupt, metric, EdgeAttributionConfig(granularity="edge")
        )
