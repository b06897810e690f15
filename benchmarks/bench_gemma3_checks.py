"""Real-model checks on Gemma 3 270M next to SmolLM2-135M-Instruct, in one run.

For each zoo model (``smollm2-135m-instruct``, ``gemma-3-270m``; fp32 on the CPU), on the same
real crowd-enVENT rows (stratified sample, seed 0) and the ``emotion-list`` prompt:

* **inference**: :func:`lens_emotion.inference.infer_emotions` with mean calibration, plus the
  raw and content-free accuracies of the same pass (``accuracy_by_calibration``), against the
  13-label chance rate;
* **probing**: ``resid_post`` at every layer and ``resid_pre`` at layer 0 (the embedding)
  extracted once (``extract_activations``, its default engine; the engine that ran is
  recorded), then :func:`lens_emotion.probing.probe_emotions` (5-fold CV, C = 1) per layer:
  the peak layer, its accuracy and relative depth, and the embedding's accuracy.

Raw numbers go to ``benchmarks/results/gemma3_checks.json``.

    LENS_EMOTION_DATA=../shared/data OMP_NUM_THREADS=1 \\
        python benchmarks/bench_gemma3_checks.py --n 320
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import torch

from lens_emotion.activations import extract_activations
from lens_emotion.data import default_crowd_envent_path, load_crowd_envent
from lens_emotion.inference import infer_emotions
from lens_emotion.models import load_model
from lens_emotion.probing import probe_emotions
from lens_emotion.prompts import build_prompts

MODELS = ("smollm2-135m-instruct", "gemma-3-270m")
OUT = Path(__file__).resolve().parent / "results" / "gemma3_checks.json"


def check_model(alias: str, rows, batch_size: int) -> dict:
    """Inference and per-layer probing numbers of one model on ``rows``."""
    started = time.time()
    model = load_model(alias, device="cpu", dtype="float32")
    load_s = time.time() - started
    t0 = time.time()
    result = infer_emotions(
        model, rows, "emotion-list", batch_size=batch_size, calibrate="mean", progress=False
    )
    infer_s = time.time() - t0
    by = result.metrics()["accuracy_by_calibration"]
    prompts = build_prompts(model, rows.texts, rows.labels, rows.label_names, "emotion-list")
    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        store = extract_activations(
            model,
            prompts,
            sites=["resid_pre", "resid_post"],
            layers=list(range(model.n_layers)),
            dataset=rows,
            out_dir=Path(tmp) / "store",
            batch_size=batch_size,
            progress=False,
        )
        extract_s = time.time() - t0
        engine = store.manifest.get("engine")
        t0 = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            table = probe_emotions(
                store,
                rows.labels,
                sites=["resid_pre", "resid_post"],
                n_folds=5,
                progress=False,
                num_threads=1,
                fit_directions=False,
            ).table
    probe_s = time.time() - t0
    post = table[table.site == "resid_post"].sort_values("layer")
    embed = table[(table.site == "resid_pre") & (table.layer == 0)].iloc[0]
    peak = post.loc[post.accuracy_mean.idxmax()]
    n_labels = len(rows.label_names)
    return {
        "model": alias,
        "n_layers": model.n_layers,
        "d_model": model.d_model,
        "weights_dtype": str(model.dtype).removeprefix("torch."),
        "n_texts": len(rows),
        "chance": 1 / n_labels,
        "inference": {
            "template": "emotion-list",
            "accuracy_calibrated_mean": by["mean"],
            "accuracy_raw": by["none"],
            "accuracy_content_free": by.get("content-free"),
            "accuracy_by_calibration": by,
            "seconds": round(infer_s, 1),
        },
        "probing": {
            "site": "resid_post",
            "peak_layer": int(peak.layer),
            "peak_relative_depth": round(int(peak.layer) / (model.n_layers - 1), 3),
            "peak_accuracy": float(peak.accuracy_mean),
            "embedding_accuracy": float(embed.accuracy_mean),
            "majority_baseline": float(peak.majority_baseline),
            "accuracy_by_layer": [round(float(a), 4) for a in post.accuracy_mean],
            "extraction_engine": engine,
            "extraction_seconds": round(extract_s, 1),
            "probe_seconds": round(probe_s, 1),
        },
        "load_seconds": round(load_s, 1),
    }


def main() -> None:
    """Run both models on the same rows and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=320, help="crowd-enVENT rows (default 320)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--models", nargs="+", default=list(MODELS))
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = load_crowd_envent(default_crowd_envent_path()).sample(args.n, seed=0)
    started = time.time()
    results = [check_model(alias, rows, args.batch_size) for alias in args.models]
    payload = {
        "command": f"OMP_NUM_THREADS=1 python benchmarks/bench_gemma3_checks.py --n {args.n}",
        "rows": f"crowd-enVENT, stratified sample of {args.n}, seed 0",
        "device": "cpu",
        "torch_threads": 1,
        "seconds": round(time.time() - started, 1),
        "models": {r["model"]: r for r in results},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(payload, indent=2))
    for r in results:
        inf, pr = r["inference"], r["probing"]
        print(
            f"{r['model']}: calibrated accuracy {inf['accuracy_calibrated_mean']:.3f} "
            f"(raw {inf['accuracy_raw']:.3f}, chance {r['chance']:.3f}); resid_post probe peak "
            f"layer {pr['peak_layer']}/{r['n_layers'] - 1} ({pr['peak_accuracy']:.3f}; "
            f"embedding {pr['embedding_accuracy']:.3f}); engine {pr['extraction_engine']}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
