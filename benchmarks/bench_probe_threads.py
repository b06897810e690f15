"""Probe fits with a single-threaded BLAS pool vs the default pool, side by side.

    python benchmarks/bench_probe_threads.py --rows 130 --layers 15,29

Extracts (or reuses) a ``resid_post`` store of ``--rows`` stratified crowd-enVENT rows on
SmolLM2, then fits the emotion probes of ``--layers`` twice: with ``num_threads=1`` (the
default BLAS pool limit, ``lens_emotion.probing.solvers.fit_threads``) and with the BLAS pool
left at its default size (``threadpoolctl`` limit ``None``). Writes
``benchmarks/results/probe_threads.json``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from threadpoolctl import threadpool_info, threadpool_limits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=130)
    parser.add_argument("--layers", default="15,29")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "probe_threads.json"
    )
    args = parser.parse_args()

    import lens_emotion.probing.emotions as probing  # probe_emotions and its fit_threads
    from lens_emotion.activations import extract_activations
    from lens_emotion.data import load_crowd_envent
    from lens_emotion.models import load_model
    from lens_emotion.prompts import build_prompts

    data = load_crowd_envent().sample(args.rows, seed=0)
    model = load_model("smollm2-135m-instruct")
    prompts = build_prompts(model, data.texts, data.labels, data.label_names, "emotion-list")
    store = extract_activations(model, prompts, sites=["resid_post"], dataset=data, progress=False)
    layers = [int(x) for x in args.layers.split(",")]
    results = {}
    default_pool = probing.fit_threads

    def unlimited(num_threads):  # the old behaviour: torch threads only, BLAS pool as is
        return threadpool_limits(limits=None, user_api="blas")

    for name, ctx in (("single_thread_blas", default_pool), ("default_blas_pool", unlimited)):
        probing.fit_threads = ctx
        started = time.perf_counter()
        table = probing.probe_emotions(
            store,
            data.labels,
            label_names=data.label_names,
            sites=["resid_post"],
            layers=layers,
            progress=False,
        ).table
        results[name] = {
            "seconds": round(time.perf_counter() - started, 2),
            "accuracy": table.accuracy_mean.round(4).tolist(),
            "n_iter": table.n_iter.tolist(),
        }
        print(name, results[name])
    probing.fit_threads = default_pool
    results["ratio_default_over_single"] = round(
        results["default_blas_pool"]["seconds"] / results["single_thread_blas"]["seconds"], 2
    )
    results["blas"] = [
        {k: v for k, v in pool.items() if k in ("internal_api", "num_threads", "version")}
        for pool in threadpool_info()
    ]
    results["settings"] = {"rows": args.rows, "layers": layers, "model": model.describe()}
    args.out.write_text(json.dumps(results, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main()
