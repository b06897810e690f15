import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from lens_emotion import activations
from lens_emotion.activations import (
    ActivationStore,
    ActivationStoreError,
    extract_activations,
    last_token_activations,
    resolve_engine,
)
from lens_emotion.prompts import build_prompts

ALL_SITES = ("resid_pre", "attn_out", "mlp_out", "resid_mid", "resid_post", "z")


@pytest.fixture(scope="module")
def rows(sample_dataset):
    return sample_dataset.sample(26, seed=0)


@pytest.fixture(scope="module")
def prompts(tiny_llama, rows):
    return build_prompts(tiny_llama, rows.texts, rows.labels, rows.label_names, "emotion-list")


def test_plain_and_bridge_engines_store_the_same_values(tiny_llama, prompts, rows, tmp_path):
    kwargs = dict(sites=ALL_SITES, positions=2, dataset=rows, batch_size=8, progress=False)
    plain = extract_activations(
        tiny_llama, prompts, out_dir=tmp_path / "p", engine="plain", **kwargs
    )
    bridge = extract_activations(
        tiny_llama, prompts, out_dir=tmp_path / "b", engine="bridge", **kwargs
    )
    assert plain.manifest["engine"] == "plain" and bridge.manifest["engine"] == "bridge"
    for site in ALL_SITES:
        for layer in (0, 1):
            for pos in (-2, -1):
                np.testing.assert_allclose(
                    plain.get(site, layer, pos), bridge.get(site, layer, pos), atol=1e-5
                )
    assert plain.get("z", 1).shape == (26, 4, 16)
    assert plain.get("resid_post", 0).shape == (26, 64)
    # resid_mid = resid_pre + attn_out, and resid_post = resid_mid + mlp_out
    np.testing.assert_allclose(
        plain.get("resid_mid", 1), plain.get("resid_pre", 1) + plain.get("attn_out", 1), atol=1e-5
    )
    np.testing.assert_allclose(
        plain.get("resid_post", 1), plain.get("resid_mid", 1) + plain.get("mlp_out", 1), atol=1e-5
    )


def test_float16_store_halves_the_size_and_reads_back_float32(tiny_llama, prompts, tmp_path):
    kwargs = dict(sites=("resid_post", "z"), positions=1, batch_size=8, progress=False)
    full = extract_activations(tiny_llama, prompts, out_dir=tmp_path / "f32", **kwargs)
    half = extract_activations(
        tiny_llama, prompts, out_dir=tmp_path / "f16", dtype="float16", **kwargs
    )
    assert half.manifest["request"]["dtype"] == "float16"
    sizes = [sum(f.stat().st_size for f in s.root.glob("shard_*")) for s in (full, half)]
    assert 0.45 < sizes[1] / sizes[0] < 0.6  # tensors halve; row indices and headers do not
    for site in ("resid_post", "z"):
        for layer in range(tiny_llama.n_layers):
            values = half.get(site, layer)
            assert values.dtype == np.float32
            np.testing.assert_allclose(values, full.get(site, layer), rtol=2e-3, atol=2e-3)


def test_rows_are_in_dataset_order_and_padding_free(tiny_llama, prompts, rows, tmp_path):
    store = extract_activations(
        tiny_llama,
        prompts,
        sites=["resid_post"],
        layers=[1],
        dataset=rows,
        out_dir=tmp_path / "s",
        batch_size=26,
        progress=False,
    )
    assert store.ids == rows.ids
    batched = store.get("resid_post", 1)
    for i in (0, 7, 25):
        alone = build_prompts(
            tiny_llama, [rows.texts[i]], [rows.labels[i]], rows.label_names, "emotion-list"
        )
        single = last_token_activations(tiny_llama, alone, "resid_post", 1, batch_size=1)
        np.testing.assert_allclose(batched[i], single[0], atol=1e-4)


def test_last_k_positions_match_last_token_store(tiny_llama, prompts, tmp_path):
    k3 = extract_activations(
        tiny_llama, prompts, positions=3, out_dir=tmp_path / "k3", progress=False
    )
    k1 = extract_activations(
        tiny_llama, prompts, positions=1, out_dir=tmp_path / "k1", progress=False
    )
    assert k3.positions == (-3, -2, -1) and k1.positions == (-1,)
    np.testing.assert_allclose(k3.get("attn_out", 1, -1), k1.get("attn_out", 1, -1), atol=1e-6)
    assert not np.allclose(k3.get("attn_out", 1, -3), k3.get("attn_out", 1, -1))


def test_same_request_is_reused_and_changed_request_recomputed(
    tiny_llama, prompts, tmp_path, monkeypatch
):
    first = extract_activations(tiny_llama, prompts, out_dir=tmp_path / "r", progress=False)
    calls = []
    original = activations._capture
    monkeypatch.setattr(
        activations, "_capture", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    again = extract_activations(tiny_llama, prompts, out_dir=tmp_path / "r", progress=False)
    assert calls == [] and again.manifest["request_sha256"] == first.manifest["request_sha256"]
    changed = extract_activations(
        tiny_llama, prompts, out_dir=tmp_path / "r", layers=[0], progress=False
    )
    assert calls and changed.layers == (0,)
    assert ActivationStore.open(tmp_path / "r").layers == (0,)


def test_forward_stops_after_last_needed_layer(tiny_llama, prompts, tmp_path):
    blocks = tiny_llama.plain_model.model.layers
    seen = []
    handle = blocks[1].register_forward_hook(lambda *a: seen.append(1))
    try:
        extract_activations(
            tiny_llama, prompts, layers=[0], out_dir=tmp_path / "s", engine="plain", progress=False
        )
    finally:
        handle.remove()
    assert seen == []


def test_bad_requests_fail_clearly(tiny_llama, prompts, tmp_path):
    with pytest.raises(ActivationStoreError, match="Unknown sites"):
        extract_activations(tiny_llama, prompts, sites=["resid"], out_dir=tmp_path / "a")
    with pytest.raises(ActivationStoreError, match="layers must lie"):
        extract_activations(tiny_llama, prompts, layers=[5], out_dir=tmp_path / "a")
    with pytest.raises(ActivationStoreError, match="negative offsets"):
        extract_activations(tiny_llama, prompts, positions=[0], out_dir=tmp_path / "a")
    with pytest.raises(ActivationStoreError, match="fewer than"):
        extract_activations(tiny_llama, prompts, positions=10_000, out_dir=tmp_path / "a")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ActivationStoreError, match="not an activation store"):
        extract_activations(tiny_llama, prompts, out_dir=tmp_path / "other")
    store = extract_activations(
        tiny_llama, prompts, layers=[0], out_dir=tmp_path / "ok", progress=False
    )
    with pytest.raises(ActivationStoreError, match="layer 1 is not in this store"):
        store.get("resid_post", 1)


def test_values_agree_per_vector_up_to_rounding_at_any_magnitude():
    rng = np.random.default_rng(0)
    big = torch.from_numpy(rng.normal(size=(2, 3, 640)).astype(np.float32))
    big[..., 0] = 3e4  # one huge entry, as in Gemma 3's late residual stream
    rounded = big + 4e-3 * torch.from_numpy(rng.normal(size=big.shape).astype(np.float32))
    assert activations.values_agree(rounded, big, atol=1e-3, rtol=1e-4)
    assert not torch.allclose(rounded, big, atol=1e-3, rtol=1e-3)  # what used to be asked
    wrong = big.clone()
    wrong[..., 5] += 10.0  # a real disagreement in one entry of every vector
    assert not activations.values_agree(wrong, big, atol=1e-3, rtol=1e-4)


def test_plain_engine_is_refused_for_unsupported_architectures(tmp_path):
    from types import SimpleNamespace

    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"]}))
    unsupported = SimpleNamespace(path=tmp_path)  # GPT-2 has an adapter now; BERT has none
    with pytest.warns(UserWarning, match="falls back to the bridge engine: .*BertForMaskedLM"):
        assert resolve_engine(unsupported, "auto") == "bridge"
    with pytest.raises(ActivationStoreError, match="engine='bridge'"):
        resolve_engine(unsupported, "plain")


_CHILD = """
import sys, time
from lens_emotion import activations
from lens_emotion.data import load_sample
from lens_emotion.models import load_model
from lens_emotion.prompts import build_prompts
model = load_model(sys.argv[1], device="cpu")
data = load_sample()
prompts = build_prompts(model, data.texts, data.labels, data.label_names, "emotion-list")
original = activations._capture
def slow(*args, **kwargs):
    time.sleep(0.15)
    return original(*args, **kwargs)
activations._capture = slow
activations.extract_activations(model, prompts, out_dir=sys.argv[2], dataset=data,
                                batch_size=4, shard_size=8, progress=False)
"""


def test_killed_run_resumes_from_complete_shards(
    tiny_llama, tiny_llama_dir, sample_dataset, tmp_path, monkeypatch
):
    out = tmp_path / "store"
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(tiny_llama_dir), str(out)])
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(out.glob("shard_*.safetensors"))) < 3:
            time.sleep(0.05)
            assert child.poll() is None, "the child finished before it could be killed"
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.wait()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["complete"] is False
    done = len(list(out.glob("shard_*.safetensors")))
    assert 3 <= done < len(manifest["shards"])
    with pytest.raises(ActivationStoreError, match="incomplete"):
        ActivationStore.open(out)
    # A leftover temporary file and a corrupt shard must not be trusted.
    (out / ".shard_99999.safetensors.tmp").write_bytes(b"partial")
    (out / manifest["shards"][0]).write_bytes(b"garbage")

    prompts = build_prompts(
        tiny_llama,
        sample_dataset.texts,
        sample_dataset.labels,
        sample_dataset.label_names,
        "emotion-list",
    )
    calls = []
    original = activations._capture
    monkeypatch.setattr(
        activations, "_capture", lambda *a, **k: calls.append(1) or original(*a, **k)
    )
    resumed = extract_activations(
        tiny_llama,
        prompts,
        out_dir=out,
        dataset=sample_dataset,
        batch_size=4,
        shard_size=8,
        progress=False,
    )
    n_batches = -(-len(sample_dataset) // 4)
    assert 0 < len(calls) < n_batches  # only the missing (and the corrupt) shards were run
    assert not list(out.glob(".*.tmp"))
    fresh = extract_activations(
        tiny_llama,
        prompts,
        out_dir=tmp_path / "fresh",
        dataset=sample_dataset,
        batch_size=4,
        shard_size=8,
        progress=False,
    )
    for site in ("attn_out", "resid_post"):
        np.testing.assert_allclose(resumed.get(site, 1), fresh.get(site, 1), atol=1e-6)


@pytest.mark.integration
def test_smollm2_plain_engine_matches_bridge_on_real_rows(smollm2, crowd_envent, tmp_path):
    rows = crowd_envent.sample(13, seed=5)
    prompts = build_prompts(smollm2, rows.texts, rows.labels, rows.label_names, "paper")
    layers = [0, 14, 29]
    kw = dict(sites=ALL_SITES, layers=layers, dataset=rows, progress=False)
    plain = extract_activations(smollm2, prompts, out_dir=tmp_path / "p", engine="plain", **kw)
    bridge = extract_activations(smollm2, prompts, out_dir=tmp_path / "b", engine="bridge", **kw)
    for site in ALL_SITES:
        for layer in layers:
            a, b = plain.get(site, layer), bridge.get(site, layer)
            assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(b).max())


def test_captured_slices_do_not_pin_full_sequences(tiny_llama, prompts):
    """Kept activations own just the sliced positions, not the full-sequence tensor."""
    ids, mask = tiny_llama.pad(list(prompts.token_ids[:4]))
    for engine in ("plain", "bridge"):
        captured = activations._capture(
            tiny_llama, engine, ids, mask, ["resid_post", "z"], [0, 1], 1
        )
        for value in captured.values():
            assert value.untyped_storage().nbytes() == value.numel() * value.element_size()


def test_max_tokens_caps_padded_batch_size(tiny_llama, prompts, rows, tmp_path):
    lengths = prompts.lengths
    cap = max(lengths) * 2  # at most two of the longest prompts per batch
    for shard in activations._shard_plan(lengths, 16, 512, cap):
        for batch in shard:
            assert len(batch) * max(lengths[i] for i in batch) <= cap or len(batch) == 1
    capped = extract_activations(
        tiny_llama, prompts, dataset=rows, out_dir=tmp_path / "c", max_tokens=cap, progress=False
    )
    free = extract_activations(
        tiny_llama, prompts, dataset=rows, out_dir=tmp_path / "f", max_tokens=None, progress=False
    )
    assert capped.manifest["request"]["max_tokens"] == cap
    np.testing.assert_allclose(capped.get("resid_post", 1), free.get("resid_post", 1), atol=1e-5)


def test_the_cap_defaults_to_the_one_the_model_was_memory_checked_for(
    tiny_llama, prompts, rows, tmp_path
):
    import dataclasses

    assert tiny_llama.max_tokens == activations.DEFAULT_MAX_TOKENS  # load_model's default
    store = extract_activations(
        tiny_llama, prompts, dataset=rows, out_dir=tmp_path / "d", progress=False
    )
    assert store.manifest["request"]["max_tokens"] == activations.DEFAULT_MAX_TOKENS
    small = dataclasses.replace(tiny_llama, max_tokens=max(prompts.lengths) * 2)
    capped = extract_activations(
        small, prompts, dataset=rows, out_dir=tmp_path / "e", progress=False
    )
    assert capped.manifest["request"]["max_tokens"] == max(prompts.lengths) * 2
