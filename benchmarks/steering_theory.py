"""Real-model steering run: appraisal-theory checks on SmolLM2 with real crowd-enVENT rows.

Fits ridge appraisal probes on ``--n-probe`` rows, then steers ``--n`` disjoint rows:

* readout (outcome 1): unique-effect and raw combos for the three theory combos at
  ``--layers``, betas ``--betas`` (RMS units, last prompt token), ``--controls`` random
  directions per cell (10 by default);
* generation (outcome 2, only with ``--generate``): the theory combos at ``--gen-layers``
  with ``--gen-betas`` (RMS units, every position), ``--gen-n`` texts, judged by the masked
  offline judge with the model's own readout as the second judge;
* emotion promotion (the paper's six emotions, only with ``--promote``) on the readout.

Each prediction's verdict is Holm-corrected over its (layer, beta) cells, or decided at one
cell fixed before the run (``--theory-cell LAYER,STEP``). Writes the run folder
(``readout.csv``, ``theory_checks.csv``, ``theory_summary.csv`` ...) to ``--out``, every
condition's per-text readout probabilities (``readout_values.safetensors`` with
``readout_conditions.csv``, so the checks can be recomputed without the model) and a compact
JSON summary to ``--summary``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/steering_theory.py
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

from lens_emotion.data import default_crowd_envent_path, load_crowd_envent
from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.models import load_model
from lens_emotion.steering import AppraisalCombo, SteeringSettings, conditions_frame, run_steering


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/results/steering_theory_run")
    parser.add_argument("--summary", default="benchmarks/results/steering_theory.json")
    parser.add_argument("--n", type=int, default=80)
    parser.add_argument("--n-probe", type=int, default=600)
    parser.add_argument("--layers", default="8,12,16,20,24")
    parser.add_argument("--betas", default="-16,-8,0,8,16")
    parser.add_argument("--controls", type=int, default=10)
    parser.add_argument("--theory-cell", default="", help="LAYER,STEP fixed before the run")
    parser.add_argument("--generate", action="store_true")
    parser.add_argument("--gen-layers", default="12")
    parser.add_argument("--gen-betas", default="-4,0,4")
    parser.add_argument("--gen-n", type=int, default=40)
    parser.add_argument("--gen-controls", type=int, default=10)
    parser.add_argument("--max-new-tokens", type=int, default=20)
    parser.add_argument("--promote", default="", help="e.g. anger,joy,pride,fear,guilt,sadness")
    parser.add_argument("--promote-betas", default="1,8")
    parser.add_argument("--promote-controls", type=int, default=3)
    parser.add_argument("--methods", default="unique,raw")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cell = None
    if args.theory_cell:
        layer, step = args.theory_cell.split(",")
        cell = (int(layer), float(step))

    started = time.perf_counter()
    model = load_model("smollm2-135m-instruct", device="cpu")
    data = load_crowd_envent(default_crowd_envent_path())
    settings = SteeringSettings(
        combos=(AppraisalCombo.parse("pleasantness,other_responsblt", "+,+").name,),
        layers=tuple(_ints(args.layers)),
        betas=tuple(_floats(args.betas)),
        gen_betas=tuple(_floats(args.gen_betas)),
        gen_layers=tuple(_ints(args.gen_layers)),
        gen_n=args.gen_n,
        gen_controls=args.gen_controls,
        n=args.n,
        n_probe=args.n_probe,
        scale="rms",
        methods=tuple(m for m in args.methods.split(",") if m),
        n_controls=args.controls,
        theory=True,
        theory_cell=cell,
        theory_generation=args.generate,
        generate=args.generate,
        max_new_tokens=args.max_new_tokens,
        promote=tuple(e for e in args.promote.split(",") if e),
        promote_betas=tuple(_floats(args.promote_betas)),
        promote_controls=args.promote_controls,
        seed=args.seed,
    )
    outputs = run_steering(model, data, args.out, settings, command="benchmarks/steering_theory.py")
    out = Path(args.out)
    save_file(
        {"values": np.ascontiguousarray(outputs.readout.values, dtype=np.float32)},
        str(out / "readout_values.safetensors"),
        metadata={
            "labels": ",".join(outputs.readout.label_names),
            "ids": ",".join(outputs.readout.ids),
        },
    )
    write_text_atomic(
        out / "readout_conditions.csv",
        conditions_frame(outputs.readout.conditions).to_csv(index=False),
    )
    manifest = json.loads((out / "manifest.json").read_text())
    summary = {
        "model": manifest["model"],
        "settings": {k: manifest[k] for k in manifest if k not in ("model", "versions")},
        "judge": outputs.judge,
        "theory_summary": outputs.theory_summary.to_dict(orient="records"),
        "theory_checks": outputs.checks.to_dict(orient="records"),
        "promotion": None
        if outputs.promotion is None
        else outputs.promotion.table.to_dict(orient="records"),
        "directions": outputs.directions,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_json_atomic(Path(args.summary), summary)
    cols = ["outcome", "method", "prediction", "cells", "cells_passed", "min_p_holm", "verdict"]
    print(outputs.theory_summary[cols].to_string())


if __name__ == "__main__":
    main()
