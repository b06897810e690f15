"""Emotion probes on SmolLM2: the probing table, convergence, and our solver against sklearn.

Two parts, both on real crowd-enVENT rows (stratified sample, seed 0) and the ``emotion-list``
prompt's last token, with activations extracted once into the activation cache (a rerun reuses
them):

* ``table``: :func:`lens_emotion.probing.run_probing` with its defaults (3 sites, 5-fold
  CV, C = 1, last token; the layers of the BENCHMARKS.md table unless ``--layers ''`` asks for
  all 30), i.e. ``lens-emotion probe --limit N``; its CSV/JSON
  outputs (emotion table with the ``converged`` column, folds, embedding baseline, appraisal
  probes, alignment, manifest) go to ``benchmarks/results/probing_run/`` and a summary with
  timings and convergence to ``benchmarks/results/probing_table.json``.
* ``solver``: one (site, layer) x 5 folds, side by side in one process: the hand-written
  batched torch L-BFGS (``lens_emotion.probing.solvers.fit_logistic_batched``, the 5 fold problems
  solved together, as ``probe_emotions`` ran them before) against scikit-learn's
  ``LogisticRegression(C, class_weight="balanced")`` on per-fold ``StandardScaler`` features,
  fold by fold (``probe_emotions``' path now); fold accuracies, coefficient cosines and
  seconds go to ``benchmarks/results/probes.json``.

Everything runs on one thread (``torch.set_num_threads(1)``, ``OMP_NUM_THREADS=1``).

    OMP_NUM_THREADS=1 python benchmarks/bench_probes.py table  --n 2000
    OMP_NUM_THREADS=1 python benchmarks/bench_probes.py solver --n 2000 --layer 15
    OMP_NUM_THREADS=1 python benchmarks/bench_probes.py solver --n 1000 --template zero-shot
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


def store_for(model, dataset, seed: int, progress=True, template="emotion-list", one=None):
    """The activations run_probing extracts (same request, so the same cached store).

    With ``one=(site, layer)`` only that site and layer (the forward pass stops there), as the
    integration test ``test_smollm2_probe_matches_sklearn_at_real_size`` extracts them.
    """
    prompts = build_prompts(model, dataset.texts, dataset.labels, dataset.label_names, template)
    t0 = time.perf_counter()
    if one is None:
        store = extract_activations(
            model, prompts, sites=list(SITES), positions=1, dataset=dataset, batch_size=16,
            seed=seed, progress=progress,
        )  # fmt: skip
    else:
        store = extract_activations(
            model, prompts, sites=[one[0]], layers=[one[1]], dataset=dataset, progress=progress
        )
    return store, time.perf_counter() - t0


def part_table(args) -> None:
    from lens_emotion.probing import ProbingSettings, run_probing

    model, dataset = load(args.n, args.seed)
    _, extract_s = store_for(model, dataset, args.seed)
    out = RESULTS / "probing_run"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        settings = ProbingSettings(
            n_folds=5, seed=args.seed, formats=("html",), num_threads=1,
            layers=tuple(int(v) for v in args.layers.split(",")) if args.layers else None,
        )  # fmt: skip
        outputs = run_probing(model, dataset, out, settings, progress=not args.quiet)
        seconds = time.perf_counter() - t0
    for path in out.glob("*.safetensors"):  # directions: large binaries, rerun to get them
        path.unlink()
    shutil.rmtree(out / "figures", ignore_errors=True)
    table = outputs.emotion.table
    summary = {
        "command": (
            f"OMP_NUM_THREADS=1 python benchmarks/bench_probes.py table --n {args.n} "
            f"--layers {args.layers}"
        ),
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
    from lens_emotion.probing.emotions import (
        DEFAULT_MAX_ITER,
        _cv_plan,
        _label_setup,
        _logreg_scores,
    )

    torch.set_num_threads(1)
    model, dataset = load(args.n, args.seed)
    if args.template == "emotion-list":  # the table's store
        store, _ = store_for(model, dataset, args.seed, progress=not args.quiet)
    else:  # the integration test's store
        store, _ = store_for(
            model, dataset, args.seed, not args.quiet, args.template, (args.site, args.layer)
        )
    setup = _label_setup(store, dataset.labels, dataset.label_names, None, 5)
    plan = _cv_plan(setup.y, 5, args.seed)
    x = np.asarray(store.get(args.site, args.layer))[setup.rows]
    y, k = setup.y, len(setup.label_names)
    runs = {}
    settings = [
        # the torch solver at its defaults; sklearn (probe_emotions' path, gradient check
        # included) at the same tol (same objective, same gradient scale) and at sklearn's
        # own defaults (tol=1e-4, max_iter=100)
        ("defaults", {"tol": 1e-5, "max_iter": DEFAULT_MAX_ITER}, {"tol": 1e-5, "max_iter": 5000}),
        ("sklearn_defaults", {"tol": 1e-5, "max_iter": DEFAULT_MAX_ITER}, {}),
    ]
    if args.tight:  # both far past any practical tolerance: how close are the two optima?
        settings.append(
            ("tight", {"tol": 1e-7, "max_iter": 20000}, {"tol": 1e-7, "max_iter": 20000})
        )
    for name, ours_kw, sk_kw in settings:
        row: dict = {
            "torch_settings": ours_kw,
            "sklearn_settings": sk_kw,
            "torch": {},
            "sklearn": {},
        }
        for _ in range(args.repeats):  # interleaved: torch, sklearn, torch, sklearn ...
            t0 = time.perf_counter()
            ours = _torch_folds(x, y, k, plan, args.C, **ours_kw)
            row["torch"].setdefault("seconds", []).append(round(time.perf_counter() - t0, 3))
            t0 = time.perf_counter()
            sk = _logreg_scores(
                x, y, k, plan, C=args.C, control=False, fit_direction=False, fold_coefs=True,
                tol=sk_kw.get("tol", 1e-4), max_iter=sk_kw.get("max_iter", 100),
            )  # fmt: skip
            row["sklearn"].setdefault("seconds", []).append(round(time.perf_counter() - t0, 3))
        row["torch"].update(
            fold_accuracy=ours["fold_accuracy"],
            n_iter=ours["n_iter"],
            converged=ours["converged"],
            grad_max=ours["grad_max"],
        )
        row["sklearn"].update(
            fold_accuracy=[float(a) for a in sk.accuracy],
            n_iter_max=sk.n_iter,
            converged=sk.converged,
            grad_max=sk.grad_max,
        )
        row["coef_cosine"] = [
            _cosine(c, s * sc)
            for c, s, sc in zip(ours["coef_std"], sk.fold_coef, sk.fold_scale, strict=True)
        ]
        row["max_fold_accuracy_diff"] = float(
            np.max(
                np.abs(np.subtract(row["torch"]["fold_accuracy"], row["sklearn"]["fold_accuracy"]))
            )
        )
        row["sklearn_over_torch_seconds"] = round(
            float(np.median(row["sklearn"]["seconds"]) / np.median(row["torch"]["seconds"])), 2
        )
        runs[name] = row
        print(name, json.dumps(row, indent=1, default=str), flush=True)
    result = {
        "command": (
            f"OMP_NUM_THREADS=1 python benchmarks/bench_probes.py solver --n {args.n} "
            f"--site {args.site} --layer {args.layer} --repeats {args.repeats} "
            f"--template {args.template}" + (" --tight" if args.tight else "")
        ),
        "what": (
            f"one (site, layer) x 5 stratified folds (seed 0), {k} classes, d = {x.shape[1]}, "
            f"C = {args.C}, class-balanced, standardised per training fold; ours: the 5 fold "
            "problems in one batched preconditioned L-BFGS run (lens_emotion.probing.solvers."
            "fit_logistic_batched, probe_emotions' solver until this benchmark); sklearn: "
            "probe_emotions' path now (lens_emotion.probing._logreg_scores: StandardScaler + "
            "LogisticRegression(lbfgs) fold by fold, plus the gradient check), without "
            "controls or the all-rows fit; one thread; median of the repeats; coef_cosine "
            "in the standardised space of each fold"
        ),
        "site": args.site,
        "layer": args.layer,
        "template": args.template,
        "n_rows": int(len(y)),
        "d": int(x.shape[1]),
        "C": args.C,
        "runs": runs,
        "manifest": run_manifest(seed=args.seed, model=model, dataset=dataset),
    }
    write_json_atomic(RESULTS / "probes.json", result)


def _torch_folds(x, y, k, plan, C, tol, max_iter):
    """The 5 fold fits in one batched torch L-BFGS solve, as probe_emotions ran them before."""
    from lens_emotion.probing.solvers import (
        balanced_weights,
        fit_logistic_batched,
        fit_standardizer,
    )

    n = len(y)
    g_mean, g_scale = fit_standardizer(x)
    xg = ((x - g_mean) / g_scale).astype(np.float32)  # global rescale first, for float32
    masks = []
    for tr, _ in plan.folds:
        m = np.zeros(n, dtype=bool)
        m[tr] = True
        masks.append(m)
    stats = [fit_standardizer(xg, m) for m in masks]
    as32 = lambda v: torch.as_tensor(np.stack(v), dtype=torch.float32)  # noqa: E731
    fit = fit_logistic_batched(
        torch.from_numpy(xg),
        torch.as_tensor(np.stack([y] * len(masks))),
        as32([balanced_weights(y, k, m) for m in masks]),
        as32([st[0] for st in stats]),
        as32([st[1] for st in stats]),
        n_classes=k,
        C=C,
        tol=tol,
        max_iter=max_iter,
    )
    accuracy, coef_std = [], []
    for b, (_, te) in enumerate(plan.folds):
        xs = (xg[te] - stats[b][0]) / stats[b][1]
        pred = (xs @ fit.coef[b].double().numpy().T + fit.intercept[b].double().numpy()).argmax(1)
        accuracy.append(float(np.mean(pred == y[te])))
        coef_std.append(fit.coef[b].double().numpy())  # same space as sklearn's coef_
    return {
        "fold_accuracy": accuracy,
        "coef_std": coef_std,
        "n_iter": fit.n_iter,
        "converged": fit.converged,
        "grad_max": float(fit.grad_max.max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=["table", "solver", "extract"])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--site", default="resid_post")
    parser.add_argument("--layer", type=int, default=15)
    parser.add_argument("--C", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--template", default="emotion-list")
    parser.add_argument(
        "--layers",
        default="0,6,12,18,21,22,24,27,29",
        help="table: layers to probe ('' = all 30); the BENCHMARKS.md columns by default",
    )
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
