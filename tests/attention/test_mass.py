"""Attention analysis: pattern capture, token groups, occlusion saliency, mass, offline views."""

from __future__ import annotations

import math
import re
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from lens_emotion.attention import (
    GROUP_NAMES,
    MASS_GROUPS,
    AttentionError,
    attention_mass,
    bootstrap_ci,
    capture_patterns,
    layer_bands,
    occlusion_saliency,
    shared_prefix_length,
    token_groups,
)
from lens_emotion.viz.circuitsvis import (
    CircuitsVisError,
    OfflineView,
    attention_heads_view,
    colored_tokens_view,
    offline_fragment,
    write_views,
)
from lens_emotion.errors import LensEmotionError
from lens_emotion.prompts import build_prompts


@pytest.fixture(scope="module")
def small_data(sample_dataset):
    return sample_dataset.sample(6, seed=1)


@pytest.fixture(scope="module")
def tiny_setup(tiny_llama, small_data):
    prompt_set = build_prompts(
        tiny_llama, small_data.texts, small_data.labels, small_data.label_names, "emotion-list"
    )
    return prompt_set, token_groups(tiny_llama, prompt_set, small_data.texts)


# ---------------------------------------------------------------------------------------------
# Patterns
# ---------------------------------------------------------------------------------------------


def test_one_pattern_per_query_head_under_gqa(tiny_llama, tiny_setup):
    prompt_set, _ = tiny_setup
    assert (tiny_llama.n_heads, tiny_llama.n_kv_heads) == (4, 2)
    final = capture_patterns(tiny_llama, prompt_set)
    full = capture_patterns(tiny_llama, prompt_set, layers=[1], query="all")
    for i, n in enumerate(prompt_set.lengths):
        assert final.pattern(i).shape == (tiny_llama.n_layers, 4, n)
        assert full.pattern(i).shape == (1, 4, n, n)
        assert len(final.tokens[i]) == n
        # the "all" pattern's last query row is the final-token row
        np.testing.assert_allclose(full.pattern(i)[0, :, -1], final.layer(i, 1), atol=1e-6)


@pytest.mark.parametrize("share_prefix", [True, False])
def test_final_rows_sum_to_one_over_real_tokens(tiny_llama, tiny_setup, share_prefix):
    prompt_set, _ = tiny_setup
    assert len(set(prompt_set.lengths)) > 1  # the batch really is padded
    pats = capture_patterns(tiny_llama, prompt_set, share_prefix=share_prefix, batch_size=8)
    for arr in pats.patterns:
        np.testing.assert_allclose(arr.sum(-1), 1.0, atol=1e-5)


def test_padding_gets_no_attention(tiny_llama, tiny_setup):
    prompt_set, _ = tiny_setup
    ids, mask = tiny_llama.pad([list(t) for t in prompt_set.token_ids])
    seen = {}

    def keep(act, hook):
        seen["p"] = act.detach().clone()

    with torch.inference_mode():
        tiny_llama.bridge.run_with_hooks(
            ids,
            attention_mask=mask,
            fwd_hooks=[(tiny_llama.hook_name("pattern", 1), keep)],
            return_type=None,
        )
    final = seen["p"][:, :, -1, :]  # [batch, head, key]
    pad = (mask == 0)[:, None, :].expand_as(final)
    assert pad.any()
    assert float(final[pad].abs().max()) < 1e-6


def test_left_padded_batch_equals_prompt_alone(tiny_llama, tiny_setup):
    prompt_set, _ = tiny_setup
    for query in ("final", "all"):
        batch = capture_patterns(tiny_llama, prompt_set, query=query, share_prefix=False)
        for i in (0, 3):
            alone = capture_patterns(
                tiny_llama, [list(prompt_set.token_ids[i])], query=query, share_prefix=False
            )
            np.testing.assert_allclose(batch.pattern(i), alone.pattern(0), atol=1e-5)


def test_shared_prefix_gives_the_same_patterns(tiny_llama, tiny_setup):
    prompt_set, _ = tiny_setup
    lists = [list(t) for t in prompt_set.token_ids]
    assert shared_prefix_length(lists) > 10
    shared = capture_patterns(tiny_llama, prompt_set, share_prefix=True, batch_size=4)
    plain = capture_patterns(tiny_llama, prompt_set, share_prefix=False, batch_size=4)
    for a, b in zip(shared.patterns, plain.patterns, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_capture_accepts_strings_and_subsets(tiny_llama):
    pats = capture_patterns(
        tiny_llama, ["Context: I felt fine.\nAnswer:"], layers=[0], heads=[1, 3]
    )
    assert pats.pattern(0).shape[:2] == (1, 2)
    frame = pats.to_frame()
    assert set(frame.columns) >= {"id", "layer", "head", "key", "token", "weight"}
    assert pats.figure(0, layer=0).data


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"layers": [5]}, "layers"),
        ({"heads": [4]}, "query heads"),
        ({"query": "first"}, "query"),
    ],
)
def test_capture_rejects_bad_options(tiny_llama, kwargs, match):
    with pytest.raises(AttentionError, match=match) as info:
        capture_patterns(tiny_llama, ["Context: hi\nAnswer:"], **kwargs)
    assert isinstance(info.value, LensEmotionError)


# ---------------------------------------------------------------------------------------------
# Token groups
# ---------------------------------------------------------------------------------------------


def test_token_groups_partition_and_cover_exactly_the_event_text(
    tiny_llama, tiny_setup, small_data
):
    prompt_set, groups = tiny_setup
    enc = tiny_llama.tokenizer(list(prompt_set.prompts), return_offsets_mapping=True)
    for i, grp in enumerate(groups):
        n = len(prompt_set.token_ids[i])
        assert grp.groups.shape == (n,)
        assert set(np.unique(grp.groups)) <= set(range(len(GROUP_NAMES)))
        sizes = [len(grp.positions(g)) for g in GROUP_NAMES]
        assert sum(sizes) == n and sizes[0] == 1 and sizes[3] == 1
        assert grp.groups[0] == 0 and grp.groups[-1] == 3
        start, end = grp.context_chars
        text = small_data.texts[i].strip()
        assert grp.prompt[start:end] == text
        ctx = grp.context_positions
        assert np.all(np.diff(ctx) == 1)  # contiguous
        assert "".join(grp.tokens[p] for p in ctx).strip() == text
        offsets = enc["offset_mapping"][i]
        assert offsets[ctx[0]][0] <= start < offsets[ctx[0]][1]
        assert offsets[ctx[-1]][0] < end <= offsets[ctx[-1]][1]
        assert offsets[ctx[0] - 1][1] <= start and offsets[ctx[-1] + 1][0] >= end


def test_token_groups_reject_mismatched_texts(tiny_llama, tiny_setup):
    prompt_set, _ = tiny_setup
    with pytest.raises(AttentionError, match="texts"):
        token_groups(tiny_llama, prompt_set, ["only one"])
    with pytest.raises(AttentionError, match="does not occur"):
        token_groups(tiny_llama, prompt_set, ["not in the prompt at all"] * len(prompt_set))


# ---------------------------------------------------------------------------------------------
# Occlusion saliency
# ---------------------------------------------------------------------------------------------


def _deletion_reference(model, ids, positions, target_id):
    """Slow reference: delete each token (others keep their positions), one prompt at a time."""
    out = []
    with torch.inference_mode():
        full = model.plain_model(input_ids=torch.tensor([ids])).logits[0, -1]
        base = float(torch.log_softmax(full.float(), -1)[target_id])
        for pos in positions:
            keep = [j for j in range(len(ids)) if j != pos]
            logits = model.plain_model(
                input_ids=torch.tensor([[ids[j] for j in keep]]), position_ids=torch.tensor([keep])
            ).logits[0, -1]
            out.append(base - float(torch.log_softmax(logits.float(), -1)[target_id]))
    return np.asarray(out)


def test_saliency_matches_slow_deletion_reference(tiny_llama, tiny_setup):
    prompt_set, groups = tiny_setup
    sal = occlusion_saliency(tiny_llama, prompt_set, groups, chunk=3)
    i = 2
    target_id = prompt_set.label_tokens.token_ids[sal.targets[i]]
    ref = _deletion_reference(
        tiny_llama, list(prompt_set.token_ids[i]), sal.positions[i], target_id
    )
    np.testing.assert_allclose(sal.values[i], ref, atol=1e-4)
    assert int(np.argmax(sal.values[i])) == int(np.argmax(ref))
    top = sal.emotion_positions(i)
    assert sal.positions[i][int(np.argmax(ref))] in top


def test_saliency_is_reproducible_and_cache_free_path_agrees(tiny_llama, tiny_setup):
    prompt_set, groups = tiny_setup
    a = occlusion_saliency(tiny_llama, prompt_set, groups, chunk=4)
    b = occlusion_saliency(tiny_llama, prompt_set, groups, chunk=4)
    c = occlusion_saliency(tiny_llama, prompt_set, groups, chunk=5, use_cache=False)
    for x, y, z in zip(a.values, b.values, c.values, strict=True):
        np.testing.assert_array_equal(x, y)
        np.testing.assert_allclose(x, z, atol=1e-4)
    assert a.targets == b.targets == c.targets
    np.testing.assert_allclose(a.base_logprobs, c.base_logprobs, atol=1e-4)


def test_emotion_tokens_are_the_top_fraction(tiny_llama, tiny_setup):
    prompt_set, groups = tiny_setup
    sal = occlusion_saliency(tiny_llama, prompt_set, groups, top_frac=0.25, min_tokens=2)
    for i in range(len(sal)):
        k = max(2, math.ceil(0.25 * len(sal.values[i])))
        mask = sal.emotion_mask(i)
        assert mask.sum() == k
        assert sal.values[i][mask].min() >= sal.values[i][~mask].max()
    frame = sal.to_frame()
    assert frame.emotion_bearing.sum() == sum(sal.n_emotion(i) for i in range(len(sal)))
    assert sal.figure(0).data
    assert "ColoredTokens" in sal.view(0).html
    with pytest.raises(AttentionError, match="top_frac"):
        occlusion_saliency(tiny_llama, prompt_set, groups, top_frac=0)


# ---------------------------------------------------------------------------------------------
# Attention mass
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_mass(tiny_llama, small_data):
    return attention_mass(tiny_llama, small_data, n_boot=200, progress=False, keep_patterns=True)


def test_group_masses_sum_to_one(tiny_mass):
    mass = tiny_mass.mass
    assert mass.shape == (6, 2, 4, len(MASS_GROUPS))
    np.testing.assert_allclose(mass[..., :4].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(mass[..., 4] + mass[..., 5], mass[..., 2], atol=1e-6)
    counts = tiny_mass.n_tokens
    assert np.all(counts[:, 0] == 1) and np.all(counts[:, 3] == 1)
    assert np.all(counts[:, 4] + counts[:, 5] == counts[:, 2])
    np.testing.assert_allclose(tiny_mass.per_token[..., 0], mass[..., 0])


def test_mass_agrees_with_the_kept_patterns(tiny_mass):
    pats, groups = tiny_mass.patterns, tiny_mass.groups
    for i in range(len(tiny_mass)):
        ctx = pats.pattern(i)[..., groups[i].groups == 2].sum(-1)
        np.testing.assert_allclose(tiny_mass.mass[i, ..., 2], ctx, atol=1e-6)


def test_mass_frames_figures_and_files(tiny_mass, tmp_path):
    frame = tiny_mass.to_frame()
    assert set(frame.normalise) == {"total", "per_token"}
    assert len(frame) == 2 * 2 * len(MASS_GROUPS)
    assert (frame.ci_low <= frame["mean"] + 1e-12).all() and (
        frame["mean"] <= frame.ci_high + 1e-12
    ).all()
    bands = tiny_mass.band_frame()
    assert "emotion_enrichment" in set(bands.group)
    assert len(tiny_mass.head_frame()) == 2 * 2 * 4 * len(MASS_GROUPS)
    fig = tiny_mass.figure("per_token")
    assert "per token" in fig.layout.title.text
    assert any(t.fill == "toself" for t in fig.data)  # CI bands
    assert "total" in tiny_mass.figure().layout.title.text
    heat = tiny_mass.heatmap("emotion")
    assert np.asarray(heat.data[0].z).shape == (2, 4)
    with pytest.raises(AttentionError):
        tiny_mass.figure("relative")
    paths = tiny_mass.save(tmp_path)
    names = {p.name for p in paths}
    assert {"attention_mass_layers.csv", "attention_mass.json", "saliency.csv"} <= names
    assert all(p.is_file() for p in paths)
    summary = tiny_mass.summary()
    assert summary["emotion_tokens"]["top_frac"] == 0.2


def test_bootstrap_is_seeded():
    values = np.random.default_rng(3).normal(size=(40, 3))
    a, b = bootstrap_ci(values, seed=7), bootstrap_ci(values, seed=7)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    mean, low, high = a
    assert np.all(low < mean) and np.all(mean < high)
    assert layer_bands(30) == {
        "early": tuple(range(10)),
        "middle": tuple(range(10, 20)),
        "late": tuple(range(20, 30)),
    }


# ---------------------------------------------------------------------------------------------
# Offline CircuitsVis views
# ---------------------------------------------------------------------------------------------


def _bundle_head() -> str:
    import circuitsvis

    bundle = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    return bundle.read_text(encoding="utf-8")[:2000]


def _assert_offline(page: str) -> None:
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert "unpkg" not in page
    assert not re.search(r"""import[^;]*from\s*["'](https?:)?//""", page)
    assert "sourceMappingURL" not in page


def test_offline_views_embed_the_bundle(tmp_path):
    tokens = ["<s>", "I", " felt", " </script>", " sad"]
    pattern = np.tril(np.ones((2, 5, 5))) / np.arange(1, 6)[None, :, None]
    heads = attention_heads_view(tokens, pattern, ["L0H0", "L0H1"])
    colored = colored_tokens_view(tokens, [0.1, -0.2, 0.3, 0.0, 0.5])
    for view in (heads, colored):
        _assert_offline(view.html)
        assert _bundle_head() in view.html
        assert "</div>" in view.html.split("<script", 1)[0]  # mount div closed properly
        page = view.save(tmp_path / "view.html").read_text()
        _assert_offline(page)
        assert page.count("</script>") == 1  # token text cannot close the script early
    two = write_views(tmp_path / "two.html", [heads, colored], "two").read_text()
    _assert_offline(two)
    assert two.count(_bundle_head()) == 1  # one copy of the bundle for both views
    assert two.count("CircuitsVis.render(") >= 2


def test_offline_view_repr_makes_no_network_call(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    view = colored_tokens_view(["a", "b"], [1.0, -1.0])
    assert view._repr_html_() == view.html
    assert view.local_src == view.html
    assert isinstance(OfflineView.from_rendered(view.html), OfflineView)


def test_offline_view_input_errors():
    with pytest.raises(CircuitsVisError, match="one value per token"):
        colored_tokens_view(["a", "b"], [1.0])
    with pytest.raises(CircuitsVisError, match="shape"):
        attention_heads_view(["a", "b"], np.ones((1, 2, 3)))
    with pytest.raises(CircuitsVisError, match="RenderedHTML"):
        offline_fragment(42)
    with pytest.raises(CircuitsVisError):
        write_views("unused.html", [], "none")


# ---------------------------------------------------------------------------------------------
# Real model (SmolLM2, GQA 9 query / 3 key-value heads) on real crowd-enVENT rows
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_rows(crowd_envent):
    return crowd_envent.sample(4, seed=5)


@pytest.fixture(scope="module")
def real_setup(smollm2, real_rows):
    prompt_set = build_prompts(
        smollm2, real_rows.texts, real_rows.labels, real_rows.label_names, "emotion-list"
    )
    return prompt_set, token_groups(smollm2, prompt_set, real_rows.texts)


@pytest.mark.integration
def test_smollm2_patterns_per_query_head(smollm2, real_setup):
    prompt_set, _ = real_setup
    assert (smollm2.n_heads, smollm2.n_kv_heads) == (9, 3)
    layers = [0, 15, 29]
    shared = capture_patterns(smollm2, prompt_set, layers=layers, batch_size=4)
    plain = capture_patterns(smollm2, prompt_set, layers=layers, share_prefix=False)
    alone = capture_patterns(smollm2, [list(prompt_set.token_ids[1])], layers=layers)
    for i, n in enumerate(prompt_set.lengths):
        assert shared.pattern(i).shape == (3, 9, n)
        np.testing.assert_allclose(shared.pattern(i).sum(-1), 1.0, atol=1e-5)
        np.testing.assert_allclose(shared.pattern(i), plain.pattern(i), atol=1e-5)
    np.testing.assert_allclose(plain.pattern(1), alone.pattern(0), atol=1e-5)
    full = capture_patterns(smollm2, [list(prompt_set.token_ids[0])], layers=[15], query="all")
    assert full.pattern(0).shape == (1, 9, prompt_set.lengths[0], prompt_set.lengths[0])
    np.testing.assert_allclose(full.pattern(0)[0, :, -1], shared.layer(0, 15), atol=1e-5)


@pytest.mark.integration
def test_smollm2_groups_and_saliency(smollm2, real_setup, real_rows):
    prompt_set, groups = real_setup
    for i, grp in enumerate(groups):
        text = real_rows.texts[i].strip()
        assert "".join(grp.tokens[p] for p in grp.context_positions).strip() == text
    i = int(np.argmin([len(g.context_positions) for g in groups]))  # cheapest reference
    one = real_rows.subset([i])
    one_set = build_prompts(smollm2, one.texts, one.labels, one.label_names, "emotion-list")
    sal = occlusion_saliency(smollm2, one_set, token_groups(smollm2, one_set, one.texts))
    target_id = one_set.label_tokens.token_ids[sal.targets[0]]
    ref = _deletion_reference(smollm2, list(one_set.token_ids[0]), sal.positions[0], target_id)
    np.testing.assert_allclose(sal.values[0], ref, atol=2e-3)
    assert int(np.argmax(sal.values[0])) == int(np.argmax(ref))


@pytest.mark.integration
def test_smollm2_attention_mass(smollm2, real_rows):
    result = attention_mass(smollm2, real_rows, layers=[0, 14, 29], n_boot=100, progress=False)
    np.testing.assert_allclose(result.mass[..., :4].sum(-1), 1.0, atol=1e-4)
    assert result.mass.shape == (4, 3, 9, len(MASS_GROUPS))
    assert set(result.band_frame().band) == {"early", "middle", "late"}
