"""Emotion probes on SmolLM2: the probing table, convergence, and our solver against sklearn.

Two parts, both on real crowd-enVENT rows (stratified sample, seed 0) and the ``emotion-list``
prompt's last token, with activations extracted once into the activation cache (a rerun reuses
them):

* ``table``: :func:`lens_emotion.workflows.run_probing` with its defaults (3 sites x 30
  layers, 5-fold CV, C = 1, last token), i.e. ``lens-emotion probe --limit N``; its CSV/JSON
  outputs (emotion table with the ``converged`` column, folds, embedding baseline, appraisal
  probes, alignment, manifest) go to ``benchmarks/results/probing_run/`` and a summary with
  timings and convergence to ``benchmarks/results/probing_table.json``.
* ``solver``: one (site, layer) x 5 folds, side by side in one process: our batched
  L-BFGS (the 5 fold problems solved together, as ``probe_emotions`` does) against
  scikit-learn's ``make_pipeline(StandardScaler(), LogisticRegression(C, class_weight=
  "balanced"))`` fold by fold, both at their defaults and both at a tight tolerance; fold
  accuracies, coefficient cosines and seconds go to ``benchmarks/results/probes.json``.

Everything runs on one thread (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``).

    OMP_NUM_THREADS=1 python benchmarks/bench_probes.py table  --n 2000
    OMP_NUM_THREADS=1 python benchmarks/bench_probes.py solver --n 2000 --layer 15
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from lens_emotion.activations import extract_activations
from lens_emotion.data import default_crowd_envent_path, load_crowd_envent
from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import run_manifest
from lens_emotion.models import load_model
from lens_emotion.prompts import build_prompts

RESULTS = Path(__file__).resolve().parent / "results"
SITES = ("attn_out", "mlp_out", "resid_post")


def load(n: int, seed: int):
    model = load_model("smollm2-135m-instruct", device="cpu")
    dataset = load_crowd_envent(default_crowd_envent_path())
    if n < len(dataset):
        dataset = dataset.sample(n, seed=seed)
    return model, dataset


def store_for(model, dataset, seed: int, layers=None, progress=True):
    """The activations run_probing extracts (same request, so the same cached store)."""
    prompts = build_prompts(
        model, dataset.texts, dataset.labels, dataset.label_names, "emotion-list"
    )
    t0 = time.perf_counter()
    store = extract_activations(
        model, prompts, sites=list(SITES), layers=layers, positions=1, dataset=dataset,
        batch_size=16, seed=seed, progress=progress,
    )  # fmt: skip
    return store, time.perf_counter() - t0


def part_table(args) -> None:
    from lens_emotion.workflows import run_probing

    model, dataset = load(args.n, args.seed)
    _, extract_s = store_for(model, dataset, args.seed)
    out = RESULTS / "probing_run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        outputs = run_probing(
            model, dataset, out, n_folds=5, seed=args.seed, formats=("html",), num_threads=1,
            progress=not args.quiet,
        )  # fmt: skip
        seconds = time.perf_counter() - t0
    for path in out.glob("*.safetensors"):  # directions: large binaries, rerun to get them
        path.unlink()
    shutil.rmtree(out / "figures", ignore_errors=True)
    table = outputs.emotion.table
    summary = {
        "command": f"OMP_NUM_THREADS=1 python benchmarks/bench_probes.py table --n {args.n}",
        "n_rows": len(dataset),
        "extraction_s_first_call": round(extract_s, 1),
        "run_probing_s": round(seconds, 1),
        "timings_s": json.loads((out / "manifest.json").read_text())["timings_s"],
        "n_fits": len(table),
        "n_converged": int(table["converged"].sum()),
        "max_iter": outputs.emotion.params["max_iter"],
        "tol": outputs.emotion.params["tol"],
        "warnings": [str(w.message) for w in caught if "converge" in str(w.message).lower()],
        "best": {
            site: {
                "layer": int(rows.loc[rows["accuracy_mean"].idxmax(), "layer"]),
                "accuracy_mean": float(rows["accuracy_mean"].max()),
            }
            for site, rows in table.groupby("site")
        },
        "embedding_baseline": float(outputs.embedding["accuracy_mean"].iloc[0]),
        "files": sorted(p.name for p in out.iterdir()),
        "manifest": run_manifest(seed=args.seed, model=model, dataset=dataset),
    }
    write_json_atomic(RESULTS / "probing_table.json", summary)
    print(json.dumps({k: v for k, v in summary.items() if k != "manifest"}, indent=1))


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel(), b.ravel()
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def part_solver(args) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from lens_emotion.probing import DEFAULT_MAX_ITER, _cv_plan, _label_setup, _logreg_scores

    torch.set_num_threads(1)
    model, dataset = load(args.n, args.seed)
    store, _ = store_for(model, dataset, args.seed, progress=not args.quiet)  # the table's store
    setup = _label_setup(store, dataset.labels, dataset.label_names, None, 5)
    plan = _cv_plan(setup.y, 5, args.seed)
    x = np.asarray(store.get(args.site, args.layer))[setup.rows]
    y, k = setup.y, len(setup.label_names)
    runs = {}
    settings = [
        # ours at probe_emotions' defaults; sklearn at the same tol (same objective, same
        # gradient scale) and at its own defaults (tol=1e-4, max_iter=100)
        ("defaults", {"tol": 1e-5, "max_iter": DEFAULT_MAX_ITER}, {"tol": 1e-5, "max_iter": 5000}),
        ("sklearn_defaults", {"tol": 1e-5, "max_iter": DEFAULT_MAX_ITER}, {}),
    ]
    if args.tight:  # both far past any practical tolerance: how close are the two optima?
        settings.append(
            ("tight", {"tol": 1e-7, "max_iter": 20000}, {"tol": 1e-7, "max_iter": 20000})
        )
    for name, ours_kw, sk_kw in settings:
        row: dict = {"ours_settings": ours_kw, "sklearn_settings": sk_kw, "ours": {}, "sklearn": {}}
        for _ in range(args.repeats):  # interleaved: ours, sklearn, ours, sklearn ...
            t0 = time.perf_counter()
            ours = _logreg_scores(
                x, y, k, plan, C=args.C, control=False, fit_direction=False, fold_coefs=True,
                **ours_kw,
            )  # fmt: skip
            row["ours"].setdefault("seconds", []).append(round(time.perf_counter() - t0, 3))
            t0 = time.perf_counter()
            sk = []
            for tr, te in plan.folds:
                clf = make_pipeline(
                    StandardScaler(),
                    LogisticRegression(C=args.C, class_weight="balanced", **sk_kw),
                )
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    clf.fit(x[tr], y[tr])
                sk.append(
                    {
                        "accuracy": float(np.mean(clf.predict(x[te]) == y[te])),
                        "coef_std": clf[-1].coef_,
                        "n_iter": int(clf[-1].n_iter_[0]),
                        "warned": any("converge" in str(w.message).lower() for w in caught),
                    }
                )
            row["sklearn"].setdefault("seconds", []).append(round(time.perf_counter() - t0, 3))
        row["ours"].update(
            fold_accuracy=[float(a) for a in ours.accuracy],
            n_iter=ours.n_iter,
            converged=ours.converged,
            grad_max=ours.grad_max,
        )
        row["sklearn"].update(
            fold_accuracy=[f["accuracy"] for f in sk],
            n_iter=[f["n_iter"] for f in sk],
            convergence_warning=[f["warned"] for f in sk],
        )
        row["coef_cosine"] = [
            _cosine(c * sc, f["coef_std"])
            for c, sc, f in zip(ours.fold_coef, ours.fold_scale, sk, strict=True)
        ]
        row["max_fold_accuracy_diff"] = float(
            np.max(
                np.abs(np.subtract(row["ours"]["fold_accuracy"], row["sklearn"]["fold_accuracy"]))
            )
        )
        row["sklearn_over_ours"] = round(
            float(np.median(row["sklearn"]["seconds"]) / np.median(row["ours"]["seconds"])), 2
        )
        runs[name] = row
        print(name, json.dumps(row, indent=1, default=str), flush=True)
    result = {
        "command": (
            f"OMP_NUM_THREADS=1 python benchmarks/bench_probes.py solver --n {args.n} "
            f"--site {args.site} --layer {args.layer} --repeats {args.repeats}"
            + (" --tight" if args.tight else "")
        ),
        "what": (
            f"one (site, layer) x 5 stratified folds (seed 0), {k} classes, d = {x.shape[1]}, "
            f"C = {args.C}, class-balanced, standardised per training fold; ours: the 5 fold "
            "problems in one batched preconditioned L-BFGS run (probe_emotions' solver, "
            "_logreg_scores without controls or the all-rows fit); sklearn: StandardScaler + "
            "LogisticRegression(lbfgs) fold by fold; one thread; median of the repeats; "
            "coef_cosine in the standardised space of each fold"
        ),
        "site": args.site,
        "layer": args.layer,
        "n_rows": int(len(y)),
        "d": int(x.shape[1]),
        "C": args.C,
        "runs": runs,
        "manifest": run_manifest(seed=args.seed, model=model, dataset=dataset),
    }
    write_json_atomic(RESULTS / "probes.json", result)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["table", "solver", "extract"])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--site", default="resid_post")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--tight", action="store_true", help="also compare at tol=1e-7")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if args.part == "extract":
        model, dataset = load(args.n, args.seed)
        store, seconds = store_for(model, dataset, args.seed)
        print(f"store {store.root}: {seconds:.0f} s")
    elif args.part == "table":
        part_table(args)
    else:
        part_solver(args)


if __name__ == "__main__":
    main()
