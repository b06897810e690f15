"""Attribution patching (AtP) on SmolLM2 vs real single-layer activation patching.

1. Draw seeded source/target pairs from real crowd-enVENT rows (agreeing subset, as the paper).
2. AtP for every (site, layer) and every query head (one source forward, one target forward
   and one backward per pair), then real span-1 patching of the same components
   (``patch_sites`` + ``patch_heads``, fast last-position engine) on the same pairs.
3. Pearson/Spearman per site and for heads, the components where the two disagree most.
4. Cost side by side on a subset (contenders interleaved over repeats): AtP, real patching
   with the fast engine, a plain bridge forward pass over the same prompts (the unit of a
   "forward-pass equivalent"), and the per-pair reference engine (one full forward per patch,
   timed on one pair and extrapolated per patched forward).

    python benchmarks/bench_attribution.py --rows 800 --pairs 100
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from lens_emotion.attribution import attribute, compare_with_patching, patching_cost
from lens_emotion.batching import length_batches
from lens_emotion.data import default_crowd_envent_path, load_crowd_envent
from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import run_manifest, seed_everything
from lens_emotion.models import load_model
from lens_emotion.patching import draw_pairs, patch_heads, patch_sites
from lens_emotion.viz import StaticExportError, write_figure

RESULTS = Path(__file__).resolve().parent / "results"


@torch.inference_mode()
def time_forward(model, token_lists, batch_size):
    """Seconds for one plain bridge forward pass over every prompt (last-position logits)."""
    start = time.perf_counter()
    for idx in length_batches([len(t) for t in token_lists], batch_size):
        ids, mask = model.pad([token_lists[i] for i in idx])
        model.bridge(ids, attention_mask=mask, logits_to_keep=1)
    return time.perf_counter() - start


def timed(fn, *args, **kwargs):
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=800, help="stratified crowd-enVENT rows")
    parser.add_argument("--pairs", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8, help="AtP pairs per pass")
    parser.add_argument("--cost-pairs", type=int, default=16, help="subset for the timing runs")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", type=Path, default=RESULTS / "attribution.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seed_everything(args.seed)

    model = load_model("smollm2-135m-instruct", device="cpu")
    data = load_crowd_envent(default_crowd_envent_path()).sample(args.rows, seed=args.seed)
    pairs, draw_s = timed(draw_pairs, model, data, n_pairs=args.pairs, seed=args.seed)
    print(f"{len(pairs)} pairs from {pairs.n_eligible_rows} agreeing rows ({draw_s:.0f} s)")

    # ---- full comparison
    atp, atp_s = timed(attribute, model, pairs, batch_size=args.batch_size)
    sites, sites_s = timed(patch_sites, model, pairs, span=1)
    heads, heads_s = timed(patch_heads, model, pairs)
    cmp = compare_with_patching(atp, sites, heads, patching_seconds=sites_s + heads_s)
    for key, corr in cmp.correlations.items():
        pp = corr.get("per_pair", {})
        print(
            f"{key:<11} means: r={corr['pearson']:.3f} rho={corr['spearman']:.3f} "
            f"(n={corr['n']}); per pair: r={pp.get('pearson', float('nan')):.3f} "
            f"rho={pp.get('spearman', float('nan')):.3f} (n={pp.get('n', 0)})"
        )
    print(cmp.disagreements(10).to_string())
    print(f"AtP {atp_s:.1f} s; real patching {sites_s:.1f} + {heads_s:.1f} s ({sites.method})")

    # ---- cost, side by side on a subset, interleaved
    sub = pairs.subset(range(min(args.cost_pairs, len(pairs))))
    prompts = list(sub.source_tokens) + list(sub.target_tokens)
    runs: dict[str, list[float]] = {"atp": [], "patching_fast": [], "forward": []}
    for rep in range(args.repeats):
        order = ["atp", "patching_fast", "forward"]
        for name in order if rep % 2 == 0 else order[::-1]:
            if name == "atp":
                runs[name].append(
                    timed(attribute, model, sub, batch_size=args.batch_size, progress=False)[1]
                )
            elif name == "patching_fast":
                runs[name].append(
                    timed(patch_sites, model, sub, span=1, progress=False)[1]
                    + timed(patch_heads, model, sub, progress=False)[1]
                )
            else:
                runs[name].append(time_forward(model, prompts, 16))
    one = pairs.subset([0])
    _, ref_s = timed(patch_sites, model, one, span=1, method="reference", progress=False)
    n_ref_forwards = 2 + 3 * model.n_layers  # clean source + clean target + one per patch
    per_forward = ref_s / n_ref_forwards
    med = {name: statistics.median(values) for name, values in runs.items()}
    n_sub = len(sub)
    fpe_unit = med["forward"] / (2 * n_sub)  # one forward of one prompt
    counts = patching_cost(n_sub, model.n_layers, 3, model.n_heads)
    reference_extrapolated = per_forward * counts["patching_fpe"]
    cost = {
        "subset_pairs": n_sub,
        "repeats": args.repeats,
        "seconds": {name: [round(v, 2) for v in values] for name, values in runs.items()},
        "median_seconds": {name: round(v, 2) for name, v in med.items()},
        "forward_seconds_per_prompt": round(fpe_unit, 4),
        "atp_measured_fpe_per_pair": round(med["atp"] / n_sub / fpe_unit, 2),
        "patching_fast_measured_fpe_per_pair": round(med["patching_fast"] / n_sub / fpe_unit, 2),
        "reference_seconds_one_pair_sites": round(ref_s, 2),
        "reference_seconds_per_forward": round(per_forward, 4),
        "reference_extrapolated_seconds_sites_and_heads": round(reference_extrapolated, 1),
        "counted": counts,
        "speedup_atp_vs_reference_extrapolated": round(reference_extrapolated / med["atp"], 1),
        "speedup_atp_vs_fast_patching": round(med["patching_fast"] / med["atp"], 2),
    }
    print(cost)

    figure_note = None
    try:
        write_figure(cmp.figure(), RESULTS / "attribution_vs_patching", formats=("png",))
        write_figure(
            cmp.figure(level="pair"), RESULTS / "attribution_vs_patching_pairs", formats=("png",)
        )
    except StaticExportError as exc:
        figure_note = f"scatter PNG not written: {exc}"
    write_json_atomic(
        args.out,
        {
            "manifest": run_manifest(seed=args.seed, model=model, dataset=data),
            "pairs": pairs.describe(),
            "draw_seconds": round(draw_s, 1),
            "full_run_seconds": {
                "atp": round(atp_s, 1),
                "patch_sites_span1": round(sites_s, 1),
                "patch_heads": round(heads_s, 1),
                "patching_method": sites.method,
            },
            **cmp.to_json(),
            "cost_side_by_side": cost,
            "figure_note": figure_note,
        },
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
