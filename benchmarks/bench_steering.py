"""Speed of the steering machinery on SmolLM2, contenders interleaved in one process.

* Readout sweep: ``readout_many`` (prompt prefix run once per batch, one-token pass per hook
  set) against one full hooked readout per hook set (``readout_with_hooks``, plain engine).
* Generation: the KV-cached hooked loop (plain engine) against the uncached bridge loop, and
  against transformers' own ``generate`` without hooks (the floor).

Writes ``benchmarks/results/steering_speed.json``.

    .venv/bin/python benchmarks/bench_steering.py --n 32 --sets 12 --repeats 2
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from lens_emotion.data import default_crowd_envent_path, load_crowd_envent
from lens_emotion.interventions import (
    generate_with_hooks,
    readout_many,
    readout_with_hooks,
    steering_hooks,
)
from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import package_versions
from lens_emotion.models import load_model
from lens_emotion.prompts import build_prompts
from lens_emotion.steering import generation_prompts


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="prompts in the readout sweep")
    parser.add_argument("--sets", type=int, default=12, help="hook sets in the readout sweep")
    parser.add_argument("--gen-n", type=int, default=8, help="prompts generated for")
    parser.add_argument("--tokens", type=int, default=16, help="new tokens per prompt")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model = load_model("smollm2-135m-instruct", device="cpu")
    rows = load_crowd_envent(default_crowd_envent_path()).sample(args.n, seed=0)
    prompts = build_prompts(model, rows.texts, rows.labels, rows.label_names, "emotion-list")
    rng = np.random.default_rng(0)
    sets = [
        steering_hooks(model, rng.standard_normal(model.d_model), b, 12, scale="rms")
        for b in np.linspace(-8, 8, args.sets)
    ]
    gen_prompts, special = generation_prompts(model, rows.texts[: args.gen_n])
    gen_hooks = steering_hooks(
        model, rng.standard_normal(model.d_model), 2.0, 12, scale="rms", positions="all"
    )
    ids, mask = model.pad(model.encode(gen_prompts, add_special_tokens=special))
    readout_with_hooks(model, prompts, [], progress=False)  # warm-up: plain model, engine check

    kwargs = dict(max_new_tokens=args.tokens, add_special_tokens=special, progress=False)
    results: dict[str, list[float]] = {
        "readout_many_fast": [],
        "readout_per_set": [],
        "generate_cached_hooked": [],
        "generate_bridge_uncached_hooked": [],
        "generate_transformers_no_hooks": [],
    }
    agree = {}
    for repeat in range(args.repeats):
        order = ["fast", "slow"] if repeat % 2 == 0 else ["slow", "fast"]
        for which in order:
            if which == "fast":
                t, fast = _timed(lambda: readout_many(model, prompts, sets, progress=False))
                results["readout_many_fast"].append(t)
            else:
                t, slow = _timed(
                    lambda: np.stack(
                        [
                            readout_with_hooks(model, prompts, s, engine="plain", progress=False)
                            for s in sets
                        ]
                    )
                )
                results["readout_per_set"].append(t)
        agree["readout_max_abs_logprob_diff"] = float(np.abs(fast - slow).max())
        t, cached = _timed(
            lambda: generate_with_hooks(model, gen_prompts, gen_hooks, engine="plain", **kwargs)
        )
        results["generate_cached_hooked"].append(t)
        t, uncached = _timed(
            lambda: generate_with_hooks(model, gen_prompts, gen_hooks, engine="bridge", **kwargs)
        )
        results["generate_bridge_uncached_hooked"].append(t)
        with torch.inference_mode():
            t, _ = _timed(
                lambda: model.plain_model.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=args.tokens,
                    min_new_tokens=args.tokens,
                    do_sample=False,
                )
            )
        results["generate_transformers_no_hooks"].append(t)
        agree["generations_identical"] = cached == uncached
    med = {k: float(np.median(v)) for k, v in results.items()}
    summary = {
        "settings": vars(args),
        "prompt_tokens_mean": float(np.mean(prompts.lengths)),
        "seconds": results,
        "median_s": med,
        "readout_speedup": med["readout_per_set"] / med["readout_many_fast"],
        "generation_cached_vs_bridge": med["generate_bridge_uncached_hooked"]
        / med["generate_cached_hooked"],
        "generation_cached_vs_transformers_floor": med["generate_cached_hooked"]
        / med["generate_transformers_no_hooks"],
        "agreement": agree,
        "versions": package_versions(),
    }
    write_json_atomic(Path("benchmarks/results/steering_speed.json"), summary)
    for k, v in med.items():
        print(f"{k:<34} {v:8.2f} s")
    print({k: round(v, 2) for k, v in summary.items() if k.startswith(("readout_", "generation_"))})
    print(agree)


if __name__ == "__main__":
    main()
