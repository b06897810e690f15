"""Pattern capture: one pattern per query head, padding, shared prefix, options."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lens_emotion.attention import AttentionError, capture_patterns, shared_prefix_length
from lens_emotion.errors import LensEmotionError


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
