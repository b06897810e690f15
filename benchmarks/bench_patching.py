"""Windowed activation patching: fast last-position path vs the slow per-pair reference.

On SmolLM2-135M-Instruct with real crowd-enVENT pairs (agreeing subset, mean-calibrated, seed 0),
the full grid is ``n_pairs`` x all 30 center layers x 3 sites (attn_out, mlp_out, resid_post),
span 3:

* **fast** - ``patch_sites(method="fast")``: one clean run per distinct source (cached
  last-token activations) and per distinct target (cached keys/values), then only the last
  position is recomputed from each window's first layer, all windows of a batch of pairs at once.
  Timed on the whole grid.
* **reference** - ``patch_sites(method="reference")``: batch size 1, one full-sequence bridge
  forward pass per pair per window (``run_with_hooks`` overwriting the last position), plus one
  clean run per source. Timed on a random subset of the pairs (``--ref-pairs``) over the *same
  full grid* and extrapolated linearly to all pairs, by the number of target tokens (the cost
  of a forward pass is linear in its length here) and, as a cross-check, by the pair count.
* **bridge** (optional, ``--bridge-pairs``) - batched full-sequence patching (the fallback for
  architectures without a fast path), on the same subset.

The contenders run in one process, interleaved (fast, reference, bridge, fast), and the
per-pair outcomes of fast and reference on the subset are compared.

    python benchmarks/bench_patching.py --pairs 200 --rows 800 --ref-pairs 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from lens_emotion.data import default_crowd_envent_path, load_crowd_envent
from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import run_manifest, seed_everything
from lens_emotion.models import load_model
from lens_emotion.patching import draw_pairs, patch_sites


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    value = fn(*args, **kwargs)
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--rows", type=int, default=800, help="crowd-enVENT rows scored")
    parser.add_argument("--span", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ref-pairs", type=int, default=2, help="pairs timed on the reference")
    parser.add_argument("--bridge-pairs", type=int, default=0, help="pairs timed on 'bridge'")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="benchmarks/results/patching.json")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    seed_everything(args.seed)

    model, load_s = timed(load_model, "smollm2-135m-instruct", device="cpu")
    data = load_crowd_envent(default_crowd_envent_path()).sample(args.rows, seed=args.seed)
    pairs, pairs_s = timed(draw_pairs, model, data, n_pairs=args.pairs, seed=args.seed)
    print(
        f"{len(pairs)} pairs ({pairs.describe()['n_unique_rows']} distinct rows), {pairs_s:.0f} s"
    )
    grid = {"span": args.span, "progress": False, "n_boot": 1000}
    rng = np.random.default_rng(args.seed)
    subset_idx = np.sort(
        rng.choice(len(pairs), size=min(args.ref_pairs, len(pairs)), replace=False)
    )
    subset = pairs.subset(subset_idx)

    fast_times = []
    fast, t = timed(patch_sites, model, pairs, method="fast", **grid)
    fast_times.append(t)
    print(f"fast: {t:.1f} s for {fast.n_patched_runs} patched runs")
    ref, ref_s = timed(patch_sites, model, subset, method="reference", **grid)
    print(f"reference: {ref_s:.1f} s for {ref.n_patched_runs} patched runs ({len(subset)} pairs)")
    bridge_s = None
    if args.bridge_pairs:
        bsub = pairs.subset(subset_idx[: args.bridge_pairs])
        bridge, bridge_s = timed(patch_sites, model, bsub, method="bridge", **grid)
        print(f"bridge (batched full sequence): {bridge_s:.1f} s, {len(bsub)} pairs")
    _, t = timed(patch_sites, model, pairs, method="fast", **grid)
    fast_times.append(t)
    print(f"fast again: {t:.1f} s")

    # agreement on the subset: same per-pair outcomes, same logit-difference changes
    fast_sub = fast.per_pair[fast.per_pair.pair.isin(subset_idx)].copy()
    fast_sub["pair"] = np.searchsorted(subset_idx, fast_sub.pair)
    key = ["pair", "site", "center_layer"]
    a = fast_sub.sort_values(key).reset_index(drop=True)
    b = ref.per_pair.sort_values(key).reset_index(drop=True)
    same_outcomes = bool((a.outcome == b.outcome).all())
    max_diff = float(np.abs(a.logit_diff_change - b.logit_diff_change).max())

    all_tokens = sum(len(t) for t in pairs.target_tokens)
    sub_tokens = sum(len(t) for t in subset.target_tokens)
    ref_by_tokens = ref_s * all_tokens / sub_tokens
    ref_by_pairs = ref_s * len(pairs) / len(subset)
    fast_median = statistics.median(fast_times)
    result = {
        "benchmark": "windowed activation patching, full grid",
        "grid": {
            "n_pairs": len(pairs),
            "center_layers": model.n_layers,
            "sites": ["attn_out", "mlp_out", "resid_post"],
            "span": args.span,
            "patched_runs": fast.n_patched_runs,
            "mean_target_tokens": round(all_tokens / len(pairs), 1),
        },
        "pairs": pairs.describe(),
        "fast_seconds": [round(x, 2) for x in fast_times],
        "fast_seconds_median": round(fast_median, 2),
        "reference": {
            "pairs_timed": len(subset),
            "pair_indices": subset_idx.tolist(),
            "patched_runs_timed": ref.n_patched_runs,
            "seconds": round(ref_s, 2),
            "seconds_per_patched_forward": round(ref_s / ref.n_patched_runs, 4),
            "mean_target_tokens_timed": round(sub_tokens / len(subset), 1),
            "extrapolated_seconds_by_tokens": round(ref_by_tokens, 1),
            "extrapolated_seconds_by_pairs": round(ref_by_pairs, 1),
        },
        "bridge_batched": None
        if bridge_s is None
        else {
            "pairs_timed": args.bridge_pairs,
            "seconds": round(bridge_s, 2),
            "seconds_per_patched_forward": round(
                bridge_s / (args.bridge_pairs * 3 * model.n_layers), 4
            ),
        },
        "speedup_by_tokens": round(ref_by_tokens / fast_median, 1),
        "speedup_by_pairs": round(ref_by_pairs / fast_median, 1),
        "agreement_on_subset": {
            "same_outcomes": same_outcomes,
            "max_abs_logit_diff_change_difference": max_diff,
        },
        "peaks": fast.peaks().to_dict(orient="records"),
        "table": fast.table.to_dict(orient="records"),
        "load_seconds": round(load_s, 1),
        "pairs_seconds": round(pairs_s, 1),
        "threads": args.threads,
        "load_average_at_end": os.getloadavg(),
    }
    result["manifest"] = run_manifest(
        seed=args.seed, model=model, dataset=data, template=pairs.template
    )
    write_json_atomic(args.out, result)
    print(
        f"speedup {result['speedup_by_tokens']}x (by tokens), {result['speedup_by_pairs']}x "
        f"(by pairs); outcomes identical: {same_outcomes}, max |diff| {max_diff:.2e}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
