"""The three patching engines give the same logits (tiny models: plumbing and fallback)."""

import numpy as np
import pytest
import torch

from lens_emotion.patching.engines import (
    clean_activations,
    fast_path_matches,
    resolve_method,
    run_variants,
)
from lens_emotion.patching.fast import Variant
from lens_emotion.patching.pairs import PatchingError


def _tokens(model, sample_dataset, n=4):
    tokens = model.encode([f"Context: {t}\nAnswer:" for t in sample_dataset.texts[:n]])
    return tokens + [tokens[0]]  # a repeated target: one clean run serves both rows


def _centred(x):
    return x - x.mean(axis=-1, keepdims=True)


def _run_all(model, tokens, variants, methods):
    labels = sorted({t for ids in tokens for t in ids})[:10]
    out = {}
    n = len(tokens)
    for method in methods:
        acts, _ = clean_activations(model, tokens, labels, method)

        def provider(variant, layer, rows, acts=acts):
            value = acts[variant.site][layer][(rows + 1) % n]
            if variant.kind == "zero":
                value = torch.zeros_like(value)
            return value if variant.head is None else value[:, variant.head]

        out[method] = run_variants(model, tokens, variants, provider, labels, method, max_rows=7)
    return out


def test_fast_bridge_and_reference_agree_on_tiny_llama(tiny_llama, sample_dataset):
    variants = [
        Variant("attn_out", (0, 1)),
        Variant("mlp_out", (1,)),
        Variant("resid_post", (0, 1)),
        Variant("z", (1,), head=3),
        Variant("mlp_out", (0,), kind="zero"),
    ]
    tokens = _tokens(tiny_llama, sample_dataset)
    out = _run_all(tiny_llama, tokens, variants, ("fast", "bridge", "reference"))
    ref_patched, ref_clean = out["reference"]
    assert ref_patched.shape == (5, 5, 10)
    for method in ("fast", "bridge"):
        patched, clean = out[method]
        np.testing.assert_allclose(_centred(patched), _centred(ref_patched), atol=1e-4)
        np.testing.assert_allclose(_centred(clean), _centred(ref_clean), atol=1e-4)
    # patches do change the result (the comparison is not vacuous)
    assert np.abs(_centred(ref_patched) - _centred(ref_clean)[:, None]).max() > 1e-3


def test_gpt2_takes_the_general_fast_path(tiny_gpt2, sample_dataset):
    assert resolve_method(tiny_gpt2, "auto") == "fast"  # cached path on GPT-2's own blocks
    variants = [Variant("attn_out", (0, 1)), Variant("resid_post", (1,)), Variant("z", (0,), 2)]
    methods = ("fast", "bridge", "reference")
    out = _run_all(tiny_gpt2, _tokens(tiny_gpt2, sample_dataset), variants, methods)
    for method in ("fast", "bridge"):
        np.testing.assert_allclose(
            _centred(out[method][0]), _centred(out["reference"][0]), atol=1e-4
        )


def test_architectures_without_an_adapter_fall_back_to_the_bridge(tmp_path):
    import json
    from types import SimpleNamespace

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"]}))
    unsupported = SimpleNamespace(path=tmp_path)
    assert not fast_path_matches(unsupported)
    with pytest.warns(UserWarning, match="falls back to the bridge engine: .*BertForMaskedLM"):
        assert resolve_method(unsupported, "auto") == "bridge"
    with pytest.raises(PatchingError, match="bridge"):
        resolve_method(unsupported, "fast")


def test_auto_uses_verified_fast_path(tiny_llama):
    assert fast_path_matches(tiny_llama)
    assert tiny_llama._fast_patch_verified is True
    assert resolve_method(tiny_llama, "auto") == "fast"
    with pytest.raises(PatchingError, match="method"):
        resolve_method(tiny_llama, "quick")


def test_clean_activations_agree_between_engines(tiny_llama, sample_dataset):
    tokens = _tokens(tiny_llama, sample_dataset)
    fast, fast_logits = clean_activations(tiny_llama, tokens, [5, 6, 7], "fast")
    ref, ref_logits = clean_activations(tiny_llama, tokens, [5, 6, 7], "reference")
    for site in ("attn_out", "mlp_out", "resid_post", "z"):
        np.testing.assert_allclose(fast[site].numpy(), ref[site].numpy(), atol=1e-5)
    assert fast["z"].shape == (2, 5, 4, 16)
    np.testing.assert_allclose(
        _centred(fast_logits.numpy()), _centred(ref_logits.numpy()), atol=1e-5
    )


def test_unknown_site_is_rejected(tiny_llama, sample_dataset):
    with pytest.raises(PatchingError, match="Unknown sites"):
        run_variants(
            tiny_llama,
            [[1, 2, 3]],
            [Variant("resid_mid", (0,))],
            lambda variant, layer, rows: torch.zeros(len(rows), tiny_llama.d_model),
            [1],
            "fast",
        )
