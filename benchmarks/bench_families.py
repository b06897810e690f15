"""Fast paths across model families: extraction vs the transformers floor, patching vs reference.

For each model (default: SmolLM2-135M-Instruct and Gemma 3 270M, skipped if it cannot be
pulled), on real crowd-enVENT texts (emotion-list prompts), in one process:

* **extraction** - ``extract_activations(engine="plain")`` (3 sites x all layers, last token,
  batches of 16) against the floor, transformers' own forward with ``logits_to_keep=1`` on the
  same length-sorted, left-padded batches; interleaved over ``--repeats``.
* **patching grid** - ``n_pairs`` (target, source) pairs x every centre layer x 3 sites
  (attn_out, mlp_out, resid_post), span 3, source values from one clean run per source:
  the general cached path (:class:`lens_emotion.cached_forward.CachedLastToken`) and the
  per-pair full-sequence reference (``run_variants(method="reference")``, timed
  on ``--ref-pairs`` pairs and extrapolated by target tokens). The fast engines run through
  ``run_variants(method="fast")`` with the engine under test installed as the model's
  last-token engine. Outcomes (argmax) and logit-difference changes are compared on the
  reference subset.

    python benchmarks/bench_families.py --rows 48 --pairs 24 --ref-pairs 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lens_emotion.activations import DEFAULT_SITES, extract_activations
from lens_emotion.batching import length_batches
from lens_emotion.cached_forward import CachedLastToken
from lens_emotion.data import default_crowd_envent_path, load_crowd_envent
from lens_emotion.errors import ModelLoadError
from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import run_manifest
from lens_emotion.models import load_model
from lens_emotion.patching.engines import clean_activations, run_variants
from lens_emotion.patching.fast import Variant
from lens_emotion.prompts import build_prompts

SITES = ("attn_out", "mlp_out", "resid_post")


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def time_extract(model, prompts, batch_size):
    with tempfile.TemporaryDirectory() as tmp:
        _, seconds = timed(
            extract_activations,
            model,
            prompts,
            sites=DEFAULT_SITES,
            out_dir=Path(tmp) / "s",
            engine="plain",
            batch_size=batch_size,
            progress=False,
        )
    return seconds


@torch.inference_mode()
def time_floor(model, prompts, batch_size):
    hf = model.plain_model
    start = time.perf_counter()
    for batch in length_batches(prompts.lengths, batch_size, 4096):
        ids, mask = model.pad([prompts.token_ids[i] for i in batch])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        hf(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1)
    return time.perf_counter() - start


def grid(model, span):
    variants = []
    for site in SITES:
        for centre in range(model.n_layers):
            lo = max(0, centre - span // 2)
            hi = min(model.n_layers, lo + span)
            variants.append(Variant(site, tuple(range(lo, hi))))
    return variants


def patch_grid(model, engine, targets, sources, variants, labels):
    """One clean run per source (cached activations), then the whole grid on the fast path."""
    model._last_token_engine = engine  # run_variants(method="fast") uses the installed engine
    acts, _ = clean_activations(model, sources, labels, "fast")

    def provider(variant, layer, rows):
        return acts[variant.site][layer][rows]

    return run_variants(model, targets, variants, provider, labels, "fast")


def reference_grid(model, targets, sources, variants, labels):
    acts, _ = clean_activations(model, sources, labels, "reference")

    def provider(variant, layer, rows):
        return acts[variant.site][layer][rows]

    return run_variants(model, targets, variants, provider, labels, "reference")


def centre(x):
    return x - x.mean(axis=-1, keepdims=True)


def bench_model(alias, data, args):
    try:
        model, load_s = timed(load_model, alias, device="cpu")
    except ModelLoadError as exc:
        return {"model": alias, "skipped": str(exc)}
    prompts = build_prompts(model, data.texts, data.labels, data.label_names, "emotion-list")
    labels = list(prompts.label_tokens.token_ids)
    out = {"model": alias, "n_layers": model.n_layers, "load_seconds": round(load_s, 1)}

    # ---------------------------------------------------------------- extraction
    n, sub = len(prompts), prompts
    ours, floor = [], []
    time_extract(model, sub, args.batch_size)  # warm-up: builds the plain model, verifies
    for _ in range(args.repeats):
        ours.append(time_extract(model, sub, args.batch_size))
        floor.append(time_floor(model, sub, args.batch_size))
    out["extraction"] = {
        "prompts": n,
        "mean_tokens": round(float(np.mean(sub.lengths)), 1),
        "batch_size": args.batch_size,
        "sites": list(DEFAULT_SITES),
        "layers": model.n_layers,
        "plain_engine_seconds": [round(x, 2) for x in ours],
        "transformers_floor_seconds": [round(x, 2) for x in floor],
        "plain_prompts_per_second": round(n / statistics.median(ours), 2),
        "floor_prompts_per_second": round(n / statistics.median(floor), 2),
        "ratio_vs_floor": round(statistics.median(floor) / statistics.median(ours), 3),
    }
    print(alias, "extraction", out["extraction"])

    # ---------------------------------------------------------------- patching grid
    tokens = [list(t) for t in prompts.token_ids]
    k = min(args.pairs, len(tokens) - 1)
    targets, sources = tokens[:k], tokens[1 : k + 1]
    variants = grid(model, args.span)
    engines = {"cached": CachedLastToken(model)}
    times = {name: [] for name in engines}
    results = {}
    for _ in range(args.repeats):
        for name, engine in engines.items():
            results[name], t = timed(patch_grid, model, engine, targets, sources, variants, labels)
            times[name].append(t)
    r = min(args.ref_pairs, k)
    (ref_patched, ref_clean), ref_s = timed(
        reference_grid, model, targets[:r], sources[:r], variants, labels
    )
    all_tokens = sum(len(t) for t in targets)
    ref_tokens = sum(len(t) for t in targets[:r])
    ref_extrapolated = ref_s * all_tokens / ref_tokens
    patching = {
        "pairs": k,
        "variants_per_pair": len(variants),
        "patched_runs": k * len(variants),
        "span": args.span,
        "mean_target_tokens": round(all_tokens / k, 1),
        "reference": {
            "pairs_timed": r,
            "seconds": round(ref_s, 2),
            "extrapolated_seconds_by_tokens": round(ref_extrapolated, 1),
        },
    }
    ref_change = centre(ref_patched) - centre(ref_clean)[:, None]
    for name in engines:
        patched, clean = results[name]
        change = centre(patched[:r]) - centre(clean[:r])[:, None]
        median = statistics.median(times[name])
        patching[name] = {
            "seconds": [round(x, 2) for x in times[name]],
            "speedup_vs_reference": round(ref_extrapolated / median, 1),
            "same_outcomes_on_subset": bool(
                np.array_equal(patched[:r].argmax(-1), ref_patched.argmax(-1))
            ),
            "max_abs_logit_diff_change_difference": float(np.abs(change - ref_change).max()),
        }
    out["patching"] = patching
    print(alias, "patching", patching)
    out["manifest"] = run_manifest(seed=args.seed, model=model, template=prompts.template)
    del model
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m-instruct", "gemma-3-270m"])
    parser.add_argument("--pairs", type=int, default=24)
    parser.add_argument("--ref-pairs", type=int, default=2)
    parser.add_argument("--span", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--rows", type=int, default=48, help="crowd-enVENT rows (prompts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/families.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = load_crowd_envent(default_crowd_envent_path()).sample(args.rows, seed=args.seed)
    started = time.perf_counter()
    result = {
        "benchmark": "plain extraction vs transformers floor; cached patching grid vs reference",
        "command": "python benchmarks/bench_families.py " + " ".join(os.sys.argv[1:]),
        "threads": args.threads,
        "models": [],
    }
    for alias in args.models:  # written after each model, so a cut-off run keeps its results
        result["models"].append(bench_model(alias, data, args))
        result["total_seconds"] = round(time.perf_counter() - started, 1)
        result["load_average_at_end"] = os.getloadavg()
        write_json_atomic(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
