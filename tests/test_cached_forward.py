"""The cached last-position path on transformers' own layers equals the per-pair reference.

For every family of :data:`lens_emotion.testing.TINY_FAMILIES` (tiny random models, offline)
and on the real SmolLM2 and Gemma 3 270M (integration): clean last-position activations match
the bridge's, and patched label logits match the slow per-pair full-sequence reference
(``run_variants(method="reference")``): the same argmax outcome for every (prompt, variant)
and logit-difference changes within 1e-4.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lens_emotion.architecture import ArchitectureError
from lens_emotion.cached_forward import CachedLastToken, cached_engine, cached_path_reason
from lens_emotion.patching.engines import clean_activations, run_variants
from lens_emotion.patching.fast import Variant
from lens_emotion.testing import TINY_FAMILIES, make_tiny_family_model

TEXTS = [
    "I felt calm when the rain finally stopped after a long week.",
    "My dog ran away and never came back home.",
    "We won the final game after a long and hard fight.",
    "Someone stole my bike.",
    "I passed the exam I had been dreading for months, to my surprise.",
]


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def family_model(request, tmp_path_factory):
    from lens_emotion.models import load_model

    folder = make_tiny_family_model(tmp_path_factory.mktemp("fam") / request.param, request.param)
    return load_model(folder, device="cpu")


def _variants(n_layers: int, n_heads: int) -> list[Variant]:
    last = n_layers - 1
    return [
        Variant("attn_out", (0, 1)),
        Variant("mlp_out", (1, 2) if n_layers > 2 else (1,)),
        Variant("resid_post", (0, 1)),
        Variant("z", (1,), head=n_heads - 1),
        Variant("z", (0,), head=0, kind="zero"),
        Variant("attn_out", (last,), kind="zero"),
        Variant("mlp_out", (0,), kind="mean"),
        Variant("resid_post", (last,), kind="mean"),
    ]


def _provider(acts: dict, n: int):
    means = {site: value.mean(dim=1) for site, value in acts.items()}

    def provider(variant: Variant, layer: int, rows: torch.Tensor) -> torch.Tensor:
        if variant.kind == "source":
            value = acts[variant.site][layer][(rows + 1) % n]
        elif variant.kind == "mean":
            value = means[variant.site][layer].expand(len(rows), *means[variant.site].shape[1:])
        else:
            value = torch.zeros_like(acts[variant.site][layer][rows])
        return value if variant.head is None else value[:, variant.head]

    return provider


def _cached_run(engine, model, tokens, variants, provider, label_ids):
    """The cached path on its own: one padded batch of all targets."""
    ids, mask = model.pad(tokens)
    labels = torch.tensor(label_ids)
    run = engine.clean(ids, mask, labels)
    rows = torch.arange(len(tokens))
    return engine.patched(run, variants, provider, rows, labels).numpy(), run


def _centre(x: np.ndarray) -> np.ndarray:
    return x - x.mean(axis=-1, keepdims=True)


def _check_against_reference(model, tokens, variants, label_ids, engine):
    acts_ref, logits_ref = clean_activations(model, tokens, label_ids, "reference")
    provider = _provider(acts_ref, len(tokens))
    patched, run = _cached_run(engine, model, tokens, variants, provider, label_ids)
    ref_patched, ref_clean = run_variants(model, tokens, variants, provider, label_ids, "reference")
    for site, value in acts_ref.items():  # clean activations in the bridge's convention
        got = run.acts[site]
        scale = max(1.0, float(value.abs().max()))
        assert float((got - value).abs().max()) <= 1e-4 * scale, site
    clean = run.logits.numpy()
    np.testing.assert_allclose(_centre(clean), _centre(ref_clean), atol=1e-4)
    assert np.array_equal(patched.argmax(-1), ref_patched.argmax(-1))  # identical outcomes
    change = _centre(patched) - _centre(clean)[:, None]
    ref_change = _centre(ref_patched) - _centre(ref_clean)[:, None]
    assert np.abs(change - ref_change).max() <= 1e-4 * max(1.0, np.abs(ref_change).max())
    assert np.abs(ref_change).max() > 1e-2  # the variants do change the logits
    return patched, provider


def test_cached_path_matches_the_per_pair_reference(family_model):
    tokens = family_model.encode(TEXTS)
    assert max(len(t) for t in tokens) > 12  # longer than the tiny sliding windows (6)
    assert len({len(t) for t in tokens}) > 1  # left padding is exercised
    label_ids = sorted({t for ids in tokens for t in ids})[:10]
    variants = _variants(family_model.n_layers, family_model.n_heads)
    _check_against_reference(family_model, tokens, variants, label_ids, cached_engine(family_model))


def test_selected_and_repeated_rows_match_their_own_runs(family_model):
    engine = cached_engine(family_model)
    tokens = family_model.encode(TEXTS[:3])
    label_ids = sorted({t for ids in tokens for t in ids})[:8]
    acts, _ = clean_activations(family_model, tokens, label_ids, "reference")
    provider = _provider(acts, len(tokens))
    variants = _variants(family_model.n_layers, family_model.n_heads)[:4]
    ids, mask = family_model.pad(tokens)
    labels = torch.tensor(label_ids)
    index = torch.tensor([2, 0, 2, 1])
    run = engine.clean(ids, mask, labels).select(index)
    together = engine.patched(run, variants, provider, index, labels)
    for row, i in enumerate(index.tolist()):
        alone_ids, alone_mask = family_model.pad([tokens[i]])
        alone = engine.clean(alone_ids, alone_mask, labels)
        single = engine.patched(alone, variants, provider, torch.tensor([i]), labels)
        torch.testing.assert_close(together[row], single[0], atol=1e-4, rtol=1e-4)


def test_patch_sites_match_the_patching_package():
    from lens_emotion.cached_forward import PATCH_SITES
    from lens_emotion.patching.fast import PATCH_SITES as PATCHING_SITES

    assert PATCH_SITES == PATCHING_SITES


def test_unsupported_models_are_refused_with_a_reason(tmp_path):
    (tmp_path / "config.json").write_text(
        json.dumps({"architectures": ["T5ForConditionalGeneration"]})
    )
    fake = SimpleNamespace(path=tmp_path)
    reason = cached_path_reason(fake)
    assert reason is not None and "\n" not in reason and "T5ForConditionalGeneration" in reason
    with pytest.raises(ArchitectureError, match="no family adapter"):
        CachedLastToken(fake)


# --------------------------------------------------------------------------- real models


def _real_tokens(model, crowd_envent, n: int) -> list[list[int]]:
    from lens_emotion.prompts import build_prompts

    rows = crowd_envent.sample(n, seed=11)
    prompts = build_prompts(model, rows.texts, rows.labels, rows.label_names, "emotion-list")
    return [list(t) for t in prompts.token_ids], list(prompts.label_tokens.token_ids)


@pytest.mark.integration
def test_smollm2_cached_path_matches_the_reference(smollm2, crowd_envent):
    tokens, label_ids = _real_tokens(smollm2, crowd_envent, 2)
    mid = smollm2.n_layers // 2
    variants = [
        Variant("attn_out", (mid - 1, mid, mid + 1)),
        Variant("mlp_out", (mid,)),
        Variant("resid_post", (4, 5)),
        Variant("z", (20,), head=3, kind="zero"),
    ]
    engine = CachedLastToken(smollm2)
    _check_against_reference(smollm2, tokens, variants, label_ids, engine)


@pytest.fixture(scope="module")
def gemma3_270m():
    from lens_emotion.errors import ModelLoadError
    from lens_emotion.models import ZOO, load_model

    if "gemma-3-270m" not in ZOO:
        pytest.skip("the zoo has no gemma-3-270m alias")
    try:
        return load_model("gemma-3-270m", device="cpu")
    except ModelLoadError as exc:
        pytest.skip(f"gemma-3-270m could not be pulled: {exc}")


@pytest.mark.integration
def test_gemma3_270m_cached_path_matches_reference(gemma3_270m, crowd_envent):
    tokens, label_ids = _real_tokens(gemma3_270m, crowd_envent, 2)
    variants = [
        Variant("attn_out", (7, 8, 9)),
        Variant("mlp_out", (3,)),
        Variant("resid_post", (10, 11)),
        Variant("z", (6,), head=1),
    ]
    _check_against_reference(gemma3_270m, tokens, variants, label_ids, CachedLastToken(gemma3_270m))
