"""Activation extraction throughput (and peak memory) on SmolLM2 over real crowd-enVENT texts.

Side by side in one process, on the same length-sorted, left-padded batches of 16, extracting
3 sites (attn_out, mlp_out, resid_post) x all 30 layers at the last token:
  * ours (plain engine, the default on Llama-family models) and ours (bridge engine);
  * the floor: a plain transformers forward pass with logits for the last position only;
  * the per-prompt approach of the paper's code: batch size 1, full ``run_with_cache`` on the
    bridge, every cached tensor copied to CPU (timed on a subset, reported per prompt).
Contenders are interleaved across repeats to spread machine noise.

    python benchmarks/bench_activations.py --n 160 --repeats 2
    python benchmarks/bench_activations.py --full-rss          # all 6,600 texts, peak RSS
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from lens_emotion.activations import DEFAULT_SITES, extract_activations
from lens_emotion.batching import iter_batches
from lens_emotion.data import default_crowd_envent_path, load_crowd_envent
from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import run_manifest
from lens_emotion.models import load_model
from lens_emotion.prompts import build_prompts


def time_extract(model, prompts, engine, batch_size):
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        extract_activations(
            model,
            prompts,
            sites=DEFAULT_SITES,
            out_dir=Path(tmp) / "s",
            engine=engine,
            batch_size=batch_size,
            progress=False,
        )
        return time.perf_counter() - start


@torch.inference_mode()
def time_floor(hf, model, prompts, batch_size):
    start = time.perf_counter()
    for _, tokens in iter_batches(prompts.token_ids, batch_size):
        ids, mask = model.pad(tokens)
        hf(input_ids=ids, attention_mask=mask, logits_to_keep=1)
    return time.perf_counter() - start


@torch.inference_mode()
def time_per_prompt(model, prompts, n):
    start = time.perf_counter()
    for ids in prompts.token_ids[:n]:
        _, cache = model.bridge.run_with_cache(torch.tensor([ids]))
        {name: value.detach().cpu().clone() for name, value in cache.items()}
    return (time.perf_counter() - start) / n


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _status_gb(field: str) -> float:
    text = Path("/proc/self/status").read_text()
    return int(text.split(f"{field}:")[1].split()[0]) / 1024**2


def reset_peak_rss() -> None:
    """Reset the kernel's high-water mark (VmHWM) so the next phase is measured alone."""
    Path("/proc/self/clear_refs").write_text("5")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=160)
    parser.add_argument("--n-per-prompt", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--full-rss", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    model = load_model("smollm2-135m-instruct", device="cpu")
    data = load_crowd_envent(default_crowd_envent_path())
    model_gb = sum(p.numel() * p.element_size() for p in model.bridge.parameters()) / 1024**3

    if args.full_rss:
        load_peak = peak_rss_gb()  # includes the bridge's one-off weight-processing spike
        prompts = build_prompts(model, data.texts, data.labels, data.label_names, "emotion-list")
        model.plain_model  # noqa: B018 - load the engine's weights before measuring
        before = _status_gb("VmRSS")
        reset_peak_rss()
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            store = extract_activations(
                model, prompts, dataset=data, out_dir=Path(tmp) / "s", batch_size=args.batch_size
            )
            seconds = time.perf_counter() - start
            disk = sum(f.stat().st_size for f in Path(store.root).glob("*")) / 1024**3
            extraction_peak = _status_gb("VmHWM")
        result = {
            "n": len(data),
            "seconds": seconds,
            "prompts_per_s": len(data) / seconds,
            "peak_rss_during_extraction_gb": extraction_peak,
            "rss_before_extraction_gb": before,
            "process_peak_rss_gb": peak_rss_gb(),
            "load_peak_rss_gb": load_peak,
            "model_gb": model_gb,
            "store_gb": disk,
            "target_gb": model_gb + 1.5,
            "engine": store.manifest["engine"],
            "threads": torch.get_num_threads(),
        }
        print(result)
        write_json_atomic(
            args.out or "benchmarks/results/activations_full.json",
            {**result, "manifest": run_manifest(seed=args.seed, model=model, dataset=data)},
        )
        return

    data = data.sample(args.n, seed=args.seed)
    prompts = build_prompts(model, data.texts, data.labels, data.label_names, "emotion-list")
    hf = AutoModelForCausalLM.from_pretrained(model.path, dtype=torch.float32).eval()
    runs = {
        "ours_plain": lambda: time_extract(model, prompts, "plain", args.batch_size),
        "ours_bridge": lambda: time_extract(model, prompts, "bridge", args.batch_size),
        "transformers_floor": lambda: time_floor(hf, model, prompts, args.batch_size),
    }
    times = {name: [] for name in runs}
    per_prompt = []
    order = list(runs)
    for r in range(args.repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            secs = runs[name]()
            times[name].append(secs)
            print(f"repeat {r} {name}: {secs:.1f} s ({len(data) / secs:.2f} prompts/s)")
        per = time_per_prompt(model, prompts, args.n_per_prompt)
        per_prompt.append(per)
        print(f"repeat {r} per-prompt run_with_cache: {per:.3f} s/prompt ({1 / per:.2f} prompts/s)")
    median = {name: statistics.median(v) for name, v in times.items()}
    rate = {name: len(data) / secs for name, secs in median.items()}
    rate["per_prompt_full_cache"] = 1 / statistics.median(per_prompt)
    result = {
        "n": len(data),
        "batch_size": args.batch_size,
        "sites": list(DEFAULT_SITES),
        "layers": model.n_layers,
        "seconds": times,
        "per_prompt_s": per_prompt,
        "prompts_per_s": rate,
        "ratio_vs_floor": {k: v / rate["transformers_floor"] for k, v in rate.items()},
        "speedup_vs_per_prompt": {k: v / rate["per_prompt_full_cache"] for k, v in rate.items()},
        "mean_prompt_tokens": sum(prompts.lengths) / len(prompts),
        "model_gb": model_gb,
    }
    for key in ("prompts_per_s", "ratio_vs_floor", "speedup_vs_per_prompt"):
        print(key, {k: round(v, 2) for k, v in result[key].items()})
    write_json_atomic(
        args.out or "benchmarks/results/activations.json",
        {**result, "manifest": run_manifest(seed=args.seed, model=model, dataset=data)},
    )


if __name__ == "__main__":
    main()
