"""Head scoring by exact decomposition vs explicit per-head zero-ablation, and the cached scorer.

Side by side in one process on the same real SEV prompts (emotion-conditioned chat prompts,
SmolLM2-135M-Instruct, one left-padded batch), interleaved over repeats:

* **decomposition** (ours): one hooked forward pass keeping ``hook_z`` of every layer at the
  last token, then ``(z_h @ W_O[h]) . v_e`` for all 270 heads x 6 emotions (one einsum);
* **explicit ablation** (the paper's method): one forward pass per head with ``z_h := 0`` at
  every position, reading the change of that layer's attention output projected on ``v_e``;
  run to the end of the model (``full``) as the paper does, and also stopped right after the
  ablated layer (``truncated``, a stronger baseline).

The two must agree to 1e-4 for every head; the maximum difference is recorded. That agreement
is a **consistency check** (the two are equal by algebra), not evidence of causal importance. A
second comparison times the ablation sweep engine: scoring many last-token edits from cached
prefixes (:class:`~lens_emotion.circuits.scoring.LastTokenScorer`) vs one full forward pass per
edit. A third (``total-effect``) times the total-effect measurement of
:func:`~lens_emotion.circuits.total_effect.total_effects`: each of the direct top-k heads and
neurons of one emotion mean-ablated alone at the last token, the final-layer emotion score read
through every later layer, cached-prefix scorer vs one full pass per ablation, with the largest
difference of the effects.

    python benchmarks/bench_circuits.py --n 4 --repeats 2
    python benchmarks/bench_circuits.py --parts total-effect --n 4 --k 64 --repeats 2

``--parts run`` runs the whole workflow (:func:`~lens_emotion.circuits.workflow.run_circuits`,
what ``lens-emotion circuits`` calls) on real SEV with the given ``CircuitSettings`` fields
(JSON) and writes every output file to ``--run-out`` (``benchmarks/results/circuits_run``).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from lens_emotion.circuits import (
    ComponentEdit,
    LastTokenScorer,
    build_sev_prompts,
    capture_last_token,
    compute_directions,
    edit_hooks,
    head_ablation_effects,
    head_contributions,
    head_output_weights,
    split_scenarios,
)
from lens_emotion.circuits.ablation import ComponentMeans, random_components
from lens_emotion.circuits.components import mlp_output_weights, score_components
from lens_emotion.circuits.edits import ablation_edit
from lens_emotion.data import SEV_EMOTIONS, default_sev_path, load_sev
from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import run_manifest
from lens_emotion.models import load_model


@torch.no_grad()
def decomposition(model, token_ids, directions, W_O):  # noqa: N803
    start = time.perf_counter()
    z = capture_last_token(model, token_ids, ("z",), batch_size=len(token_ids)).z
    scores = head_contributions(z, W_O, directions.get("resid_mid"))
    return time.perf_counter() - start, scores


def ablation(model, token_ids, directions, final):
    start = time.perf_counter()
    out = head_ablation_effects(
        model, token_ids, directions, final=final, batch_size=len(token_ids)
    )
    return time.perf_counter() - start, out["local"]


@torch.no_grad()
def full_pass_scores(model, token_ids, edits, readout):
    ids, mask = model.pad(token_ids)
    out = []
    start = time.perf_counter()
    for edit in edits:
        seen = {}

        def keep(act, hook, seen=seen):
            seen["x"] = act[:, -1].clone()

        hooks = edit_hooks(model, edit, positions="last")
        hooks.append((model.hook_name("resid_post", model.n_layers - 1), keep))
        model.bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks, return_type=None)
        out.append(seen["x"] @ readout.T)
    return time.perf_counter() - start, torch.stack(out, 1)


def total_effect_part(model, sev, args) -> dict:
    """Cached-prefix scorer vs one full pass per single-component ablation (total effect)."""
    discovery, heldout = split_scenarios(
        sev, seed=args.seed, n_discovery=args.n_direction_scenarios, n_evaluation=2
    )
    prompts = build_sev_prompts(model, discovery)
    acts = capture_last_token(model, prompts.token_ids, batch_size=18)
    directions = compute_directions(acts, prompts.emotion, prompts.group)
    scores = score_components(
        acts,
        prompts.emotion,
        prompts.group,
        directions,
        head_output_weights(model),
        mlp_output_weights(model),
    )
    means = ComponentMeans.from_activations(acts, prompts.emotion, prompts.group, SEV_EMOTIONS)
    emotion = args.emotion
    held = build_sev_prompts(model, heldout, [emotion])
    token_ids = list(held.token_ids[: args.n])
    edits = [ComponentEdit()]
    for kind in ("head", "neuron"):
        for comp in scores[kind].top(emotion, args.k):
            edits.append(ablation_edit(kind, [comp], "mean", means.of(kind)))
    readout = directions.vector(emotion, "resid_post", -1)[None]
    cached_s, full_s, cached_cpu, full_cpu, max_diff, max_effect = [], [], [], [], 0.0, 0.0
    for _ in range(args.repeats):
        start, cpu = time.perf_counter(), time.process_time()
        scorer = LastTokenScorer(model, token_ids, batch_size=len(token_ids))
        cached = scorer.scores(edits, readout)[..., 0].double()
        cached_s.append(time.perf_counter() - start)
        cached_cpu.append(time.process_time() - cpu)
        cpu = time.process_time()
        t, full = full_pass_scores(model, token_ids, edits, readout)
        full_s.append(t)
        full_cpu.append(time.process_time() - cpu)
        full = full[..., 0].double()
        effect_cached = (cached[:, :1] - cached[:, 1:]).mean(0)
        effect_full = (full[:, :1] - full[:, 1:]).mean(0)
        max_diff = max(max_diff, float((effect_cached - effect_full).abs().max()))
        max_effect = max(max_effect, float(effect_full.abs().max()))
        print(
            f"total effect: scorer {cached_s[-1]:.2f}s wall / {cached_cpu[-1]:.2f}s CPU, "
            f"full passes {full_s[-1]:.2f}s wall / {full_cpu[-1]:.2f}s CPU"
        )
    return {
        "what": (
            "total effect of each of the direct top-k heads and top-k neurons of one emotion, "
            "mean-ablated alone at the last prompt token (last-token means); final-layer "
            "emotion score through every later layer"
        ),
        "emotion": emotion,
        "k_per_kind": args.k,
        "n_ablations": len(edits) - 1,
        "n_prompts": len(token_ids),
        "mean_prompt_tokens": sum(len(t) for t in token_ids) / len(token_ids),
        "repeats": args.repeats,
        "seconds_cached_prefix_scorer": cached_s,
        "seconds_one_full_pass_per_ablation": full_s,
        "cpu_seconds_cached_prefix_scorer": cached_cpu,
        "cpu_seconds_one_full_pass_per_ablation": full_cpu,
        "speedup_wall": statistics.median(full_s) / statistics.median(cached_s),
        "speedup": statistics.median(full_cpu) / statistics.median(cached_cpu),
        "note": (
            "one thread (torch.set_num_threads(1)); CPU seconds (time.process_time) are the "
            "comparison, since wall-clock time depends on other jobs sharing the machine"
        ),
        "max_abs_effect_difference": max_diff,
        "max_abs_effect": max_effect,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=4, help="prompts (one batch)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--n-direction-scenarios", type=int, default=6)
    parser.add_argument("--n-edits", type=int, default=48, help="edits for the scorer comparison")
    parser.add_argument(
        "--parts",
        default="decomposition,total-effect",
        help="comma-separated: decomposition (with the scorer comparison), total-effect",
    )
    parser.add_argument("--k", type=int, default=64, help="top-k heads and neurons (total effect)")
    parser.add_argument("--emotion", default="sadness", help="emotion of the total-effect part")
    parser.add_argument("--out", default="benchmarks/results/circuits.json")
    parser.add_argument(
        "--total-effect-out", default="benchmarks/results/circuits_total_effect.json"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--run-out", default="benchmarks/results/circuits_run")
    parser.add_argument("--settings", default="{}", help="CircuitSettings fields as JSON (run)")
    parser.add_argument("--formats", default="png", help="figure formats of the run")
    args = parser.parse_args()
    parts = {p.strip() for p in args.parts.split(",") if p.strip()}
    torch.set_num_threads(1)

    model = load_model("smollm2-135m-instruct", device="cpu")
    sev = load_sev(default_sev_path())
    if "run" in parts:
        from lens_emotion.circuits.workflow import CircuitSettings, run_circuits

        fields = json.loads(args.settings)
        for key in ("steer_windows",):
            if key in fields:
                fields[key] = tuple(tuple(w) for w in fields[key])
        for key, value in fields.items():
            if isinstance(value, list):
                fields[key] = tuple(value)
        out = Path(args.run_out)
        if out.exists():
            shutil.rmtree(out)  # replace the previous run's files
        start = time.perf_counter()
        outputs = run_circuits(
            model,
            sev,
            out,
            seed=args.seed,
            settings=CircuitSettings(**fields),
            formats=[f for f in args.formats.split(",") if f],
            command="python benchmarks/bench_circuits.py --parts run --settings "
            + json.dumps(json.loads(args.settings)),
        )
        print(f"run: {time.perf_counter() - start:.0f} s, {len(outputs.files)} files in {out}")
        print(json.dumps(outputs.timings))
        if outputs.control is not None:
            print(outputs.control[outputs.control.emotion == "all"].to_string())
    if "total-effect" in parts:
        result = total_effect_part(model, sev, args)
        result["manifest"] = run_manifest(seed=args.seed, model=model, dataset=sev)
        write_json_atomic(args.total_effect_out, result)
        print(
            f"total effect of {result['n_ablations']} single ablations x {result['n_prompts']} "
            f"prompts: scorer {statistics.median(result['seconds_cached_prefix_scorer']):.1f}s vs "
            f"full passes {statistics.median(result['seconds_one_full_pass_per_ablation']):.1f}s "
            f"({result['speedup']:.1f}x), max |diff| {result['max_abs_effect_difference']:.1e} "
            f"(effects up to {result['max_abs_effect']:.2f})"
        )
    if "decomposition" not in parts:
        return
    discovery, _ = split_scenarios(sev, seed=args.seed, n_discovery=args.n_direction_scenarios)
    prompts = build_sev_prompts(model, discovery)
    acts = capture_last_token(model, prompts.token_ids, ("resid_mid", "resid_post"), 18)
    directions = compute_directions(acts, prompts.emotion, prompts.group)
    W_O = head_output_weights(model)  # noqa: N806
    token_ids = list(prompts.token_ids[: args.n])

    times = {"decomposition": [], "ablation_truncated": [], "ablation_full": []}
    max_diff = 0.0
    for _ in range(args.repeats):
        t, dec = decomposition(model, token_ids, directions, W_O)
        times["decomposition"].append(t)
        t, trunc = ablation(model, token_ids, directions, final=False)
        times["ablation_truncated"].append(t)
        t, full = ablation(model, token_ids, directions, final=True)
        times["ablation_full"].append(t)
        max_diff = max(max_diff, float((dec - trunc).abs().max()), float((dec - full).abs().max()))
        print({k: round(v[-1], 3) for k, v in times.items()}, f"max |diff| {max_diff:.2e}")
    med = {k: statistics.median(v) for k, v in times.items()}

    # Ablation-sweep engine: cached-prefix one-token passes vs one full pass per edit.
    np_rng = np.random.default_rng(args.seed)
    edits = [ComponentEdit()] + [
        ablation_edit("neuron", random_components(30, 1536, 64, np_rng), "zero")
        for _ in range(args.n_edits - 1)
    ]
    readout = directions.final()
    scorer_times, full_times, scorer_diff = [], [], 0.0
    for _ in range(args.repeats):
        start = time.perf_counter()
        scorer = LastTokenScorer(model, token_ids, batch_size=len(token_ids))
        cached = scorer.scores(edits, readout)
        scorer_times.append(time.perf_counter() - start)
        t, full_scores = full_pass_scores(model, token_ids, edits, readout)
        full_times.append(t)
        scale = float(full_scores.abs().max())
        scorer_diff = max(scorer_diff, float((cached - full_scores).abs().max()) / scale)
        print(f"scorer {scorer_times[-1]:.2f}s  full passes {full_times[-1]:.2f}s")

    results = {
        "n_prompts": len(token_ids),
        "mean_prompt_tokens": sum(len(t) for t in token_ids) / len(token_ids),
        "n_heads": model.n_layers * model.n_heads,
        "repeats": args.repeats,
        "seconds": times,
        "median_seconds": med,
        "speedup_vs_full_ablation": med["ablation_full"] / med["decomposition"],
        "speedup_vs_truncated_ablation": med["ablation_truncated"] / med["decomposition"],
        "max_abs_difference": max_diff,
        "max_abs_contribution": float(dec.abs().max()),
        "label": "consistency check (decomposition = local zero-ablation by algebra)",
        "scorer": {
            "n_edits": len(edits),
            "seconds_cached": scorer_times,
            "seconds_full_passes": full_times,
            "speedup": statistics.median(full_times) / statistics.median(scorer_times),
            "max_relative_difference": scorer_diff,
        },
        "manifest": run_manifest(seed=args.seed, model=model, dataset=sev),
    }
    write_json_atomic(args.out, results)
    print(
        f"decomposition {med['decomposition']:.2f}s vs full ablation {med['ablation_full']:.1f}s "
        f"({results['speedup_vs_full_ablation']:.0f}x) / truncated "
        f"{med['ablation_truncated']:.1f}s ({results['speedup_vs_truncated_ablation']:.0f}x); "
        f"max |diff| {max_diff:.1e}; scorer {results['scorer']['speedup']:.1f}x"
    )


if __name__ == "__main__":
    main()
