"""The last-position engine (lens_emotion.cached_forward) on a tiny GQA Llama: clean cache and
patched steps; the variants of lens_emotion.patching.fast."""

import numpy as np
import pytest
import torch

from lens_emotion.cached_forward import CachedLastToken, cached_path_reason
from lens_emotion.patching.fast import Variant


@pytest.fixture(scope="module")
def gqa_model(tiny_llama_dir, tmp_path_factory):
    """4 layers, 6 query heads sharing 2 key/value heads (groups of 3, as in SmolLM2)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from lens_emotion.models import load_model

    folder = tmp_path_factory.mktemp("m") / "gqa"
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama_dir)
    torch.manual_seed(1)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=72,
        intermediate_size=144,
        num_hidden_layers=4,
        num_attention_heads=6,
        num_key_value_heads=2,
        max_position_embeddings=512,
        tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return load_model(folder, device="cpu")


@pytest.fixture(scope="module")
def batch(gqa_model, sample_dataset):
    texts = [f"Context: {t}\nAnswer:" for t in sample_dataset.texts[:5]]
    tokens = gqa_model.encode(texts)
    assert len({len(t) for t in tokens}) > 1  # left padding is exercised
    ids, mask = gqa_model.pad(tokens)
    labels = torch.tensor(sorted({t for ids in tokens for t in ids})[:12])
    return ids, mask, labels


def test_clean_run_matches_transformers_and_bridge_hooks(gqa_model, batch):
    ids, mask, labels = batch
    engine = CachedLastToken(gqa_model)
    run = engine.clean(ids, mask, labels)
    hf_logits = gqa_model.last_logits(ids, mask, engine="plain")[:, labels]
    np.testing.assert_allclose(run.logits.numpy(), hf_logits.numpy(), atol=1e-5)
    captured = {}
    hooks = []
    for site in ("attn_out", "mlp_out", "resid_post", "z", "resid_pre"):
        for layer in range(4):
            name = gqa_model.hook_name(site, layer)

            def keep(act, hook, name=name):
                captured[name] = act[:, -1].clone()

            hooks.append((name, keep))
    with torch.inference_mode():
        gqa_model.bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks)
    for site in ("attn_out", "mlp_out", "resid_post", "z", "resid_pre"):
        for layer in range(4):
            expected = captured[gqa_model.hook_name(site, layer)]
            np.testing.assert_allclose(run.acts[site][layer].numpy(), expected.numpy(), atol=1e-5)
    # z is per query head (after the key/value heads are shared out): 6 heads, not 2
    assert run.acts["z"].shape == (4, 5, 6, 12)
    # the key/value cache holds the 2 KV heads for every position but the last
    assert run.keys[0].shape == (5, 2, ids.shape[1] - 1, 12)


def test_patching_with_own_activations_changes_nothing(gqa_model, batch):
    ids, mask, labels = batch
    engine = CachedLastToken(gqa_model)
    run = engine.clean(ids, mask, labels)
    variants = [
        Variant("attn_out", (0, 1, 2)),
        Variant("mlp_out", (2, 3)),
        Variant("resid_post", (1,)),
        Variant("z", (2,), head=4),
    ]

    def own(variant, layer, rows):
        value = run.acts[variant.site][layer][rows]
        return value if variant.head is None else value[:, variant.head]

    out = engine.patched(run, variants, own, torch.arange(5), labels)
    assert out.shape == (5, 4, 12)
    for j in range(4):
        np.testing.assert_allclose(out[:, j].numpy(), run.logits.numpy(), atol=1e-4)


def test_each_query_head_is_patched_separately(gqa_model, batch):
    """Heads 0-2 share one KV head: patching each with another prompt's z gives 3 results."""
    ids, mask, labels = batch
    engine = CachedLastToken(gqa_model)
    run = engine.clean(ids, mask, labels)
    variants = [Variant("z", (1,), head=h) for h in range(6)]

    def other(variant, layer, rows):
        return run.acts["z"][layer][(rows + 1) % 5, variant.head]

    out = engine.patched(run, variants, other, torch.arange(5), labels).numpy()
    change = out - run.logits.numpy()[:, None]
    norms = np.abs(change).sum(axis=(0, 2))
    assert (norms > 0).all()
    assert len({round(float(x), 6) for x in norms}) == 6


def test_variant_start_layer():
    assert Variant("attn_out", (3, 4, 5)).start == 3
    assert Variant("mlp_out", (0, 1)).start == 0
    assert Variant("resid_post", (3, 4, 5)).start == 5  # the last overwrite fixes the stream


def test_cached_path_supports_llama_and_gpt2(gqa_model, tiny_gpt2):
    assert cached_path_reason(gqa_model) is None
    assert cached_path_reason(tiny_gpt2) is None
