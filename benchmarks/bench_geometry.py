"""Emotion geometry on SmolLM2 with real crowd-enVENT and SEV rows (``lens-emotion geometry``).

Runs :func:`lens_emotion.geometry.run_geometry` on a stratified crowd-enVENT sample (seed 0)
with the real SEV file. The crowd-enVENT activations come from the activation cache: with the
default sites the request is the one ``lens-emotion probe`` / ``bench_probes.py`` make for
the same rows, so an existing store is reused without a forward pass. Outputs (``geometry.csv``,
per-analysis tables, summary, manifest; figures as HTML) go to
``benchmarks/results/geometry_run/``; the headline numbers, the large-model reference
figures and the timings go to ``benchmarks/results/geometry.json``.

    OMP_NUM_THREADS=1 python benchmarks/bench_geometry.py --n 2000 --sev-scenarios 12
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from lens_emotion.data import (
    default_crowd_envent_path,
    default_sev_path,
    load_crowd_envent,
    load_sev,
)
from lens_emotion.geometry import GeometrySettings, run_geometry
from lens_emotion.io import write_json_atomic
from lens_emotion.models import load_model

RESULTS = Path(__file__).resolve().parent / "results"

#: Reference figures for large models (issue 17): PC1 ~ valence and PC2 ~ arousal.
REFERENCE = {"pc1_valence_r": 0.81, "pc2_arousal_r": 0.66, "open_model_pc1_valence_r": [0.76, 0.83]}


def _layer_rows(outputs, kind: str, layer: int) -> dict[str, float]:
    t = outputs.table
    t = t[(t.layer == layer) & t.measure.str.startswith(f"{kind}.")]
    return {
        row.measure: [round(row.value, 4), round(row.ci_low, 4), round(row.ci_high, 4)]
        for row in t.itertuples()
        if not row.measure.split(".")[-1].startswith("cos")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="crowd-enVENT rows (stratified)")
    parser.add_argument("--sev-scenarios", type=int, default=12)
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model = load_model(args.model, device="cpu")
    data = load_crowd_envent(default_crowd_envent_path())
    if args.n < len(data):
        data = data.sample(args.n, seed=0)
    sev = load_sev(default_sev_path())
    settings = GeometrySettings(
        n_rows=args.n, n_sev_scenarios=args.sev_scenarios, n_boot=args.n_boot
    )
    out = RESULTS / "geometry_run"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    outputs = run_geometry(
        model, data, out, settings, sev, seed=0, progress=not args.quiet,
        command=f"benchmarks/bench_geometry.py --n {args.n} --sev-scenarios {args.sev_scenarios}",
    )  # fmt: skip
    wall = time.perf_counter() - started
    summary = outputs.summary()
    by_kind = summary.pop("by_kind")
    peak_layers = {
        "valence_peak": summary["peak_valence_layer"],
        "rsa_peak": summary.get("peak_rsa_layer"),
        "crosspaper_peak": summary.get("crosspaper_peak_layer"),
    }
    result = {
        "model": args.model,
        "n_rows": len(data),
        "n_layers": model.n_layers,
        "settings": settings.describe(),
        "summary": summary,
        "by_kind": by_kind,
        "at_peak_layers": {
            name: {"layer": layer, **_layer_rows(outputs, "mean", layer)}
            for name, layer in peak_layers.items()
            if layer is not None
        },
        "reference_large_models": REFERENCE,
        "notes": outputs.notes,
        "activation_store": outputs.store_root,
        "timings_s": outputs.timings,
        "wall_s": round(wall, 1),
        "manifest": json.loads((out / "manifest.json").read_text())["sev"],
    }
    write_json_atomic(RESULTS / "geometry.json", result)
    print(json.dumps(summary, indent=1, default=str))


if __name__ == "__main__":
    main()
