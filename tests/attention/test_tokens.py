"""Token groups: sink, template, event text and final token of each prompt."""

from __future__ import annotations

import numpy as np
import pytest

from lens_emotion.attention import GROUP_NAMES, AttentionError, token_groups


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
