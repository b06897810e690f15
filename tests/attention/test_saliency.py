"""Occlusion saliency: against a slow deletion reference, caches, the emotion-token rule."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from lens_emotion.attention import AttentionError, occlusion_saliency, token_groups
from lens_emotion.prompts import build_prompts


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
        occlusion_saliency(tiny_llama, prompt_set, groups, top_frac=0.0)


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
