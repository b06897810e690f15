"""Re-score committed generation replies with the masked judge and a second, independent judge.

Reads a generations CSV (``method``, ``emotion`` = target, ``skeleton_id``, ``reply``; by
default ``benchmarks/results/circuits_run/generations.csv``, 120 replies per method) and
scores every reply with :func:`lens_emotion.judge.score_replies`:

* the SEV embedding judge trained on masked crowd-enVENT text, reading the masked reply
  (``judged_masked``, the primary metric) and the raw reply (``judged_raw``);
* the pre-issue-19 judge (trained on raw text, reading raw replies; ``judged_old``), which
  reproduces the committed ``judged`` column;
* the unsteered SmolLM2's own label readout on the masked reply under the ``emotion-list``
  prompt (:class:`lens_emotion.judge.ReadoutJudge`), content-free calibration by default;
  the other two calibrations (mean, none) are computed from the same forward passes and
  reported as ``readout_<mode>`` / ``kappa_<mode>``.

Writes into ``--out-dir`` (default ``benchmarks/results/judge_rescore``; not the circuits run
folder, which a new circuits run replaces):

* ``rescored_masked.csv``: per method, :func:`lens_emotion.judge.summarise_replies` plus
  ``judged_old``;
* ``rescored_masked_by_emotion.csv``: the same per method x emotion;
* ``rescored_contrasts.csv``: paired differences (same emotion x scenario) of each method
  against prompting, steering and neutral in ``judged_masked``, ``judged_raw`` and
  ``readout``, with a paired-bootstrap 95% interval and the exact McNemar p;
* ``rescored_replies.csv``: every reply with its scores;
* ``rescored_manifest.json``: judges, versions, inputs, timings.

    python benchmarks/rescore_generations.py   # ~10 min on 1 quiet thread (21 min under load)
    # the committed replies of the circuits run at commit 38a0415:
    git show 38a0415:benchmarks/results/circuits_run/generations.csv > /tmp/generations.csv
    python benchmarks/rescore_generations.py --generations /tmp/generations.csv
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lens_emotion.inference import recalibrate
from lens_emotion.io import write_json_atomic
from lens_emotion.judge import (
    NO_REPLY,
    ReadoutJudge,
    _mcnemar_p,
    load_judge,
    score_replies,
    summarise_replies,
)
from lens_emotion.manifest import run_manifest
from lens_emotion.models import load_model

DEFAULT_IN = Path("benchmarks/results/circuits_run/generations.csv")
METRICS = {
    "judged_masked": "correct_masked",
    "judged_raw": "correct_raw",
    "readout": "correct_readout",
}


def paired_contrasts(scored: pd.DataFrame, n_boot: int, seed: int) -> pd.DataFrame:
    """Each method minus each baseline, paired on (emotion, skeleton_id)."""
    rng = np.random.default_rng(seed)
    keyed = scored.set_index(["method", "emotion", "skeleton_id"]).sort_index()
    methods = list(dict.fromkeys(scored["method"]))
    rows = []
    for base in ("prompting", "steering", "neutral"):
        if base not in methods:
            continue
        for method in methods:
            if method == base:
                continue
            a, b = keyed.loc[method], keyed.loc[base]
            common = a.index.intersection(b.index)
            a, b = a.loc[common], b.loc[common]
            idx = rng.integers(0, len(common), size=(n_boot, len(common)))
            for metric, col in METRICS.items():
                x = a[col].to_numpy(dtype=bool)
                y = b[col].to_numpy(dtype=bool)
                diff = x.astype(float) - y.astype(float)
                boots = diff[idx].mean(axis=1)
                rows.append(
                    {
                        "method": method,
                        "baseline": base,
                        "metric": metric,
                        "n_pairs": len(common),
                        "method_value": float(x.mean()),
                        "baseline_value": float(y.mean()),
                        "difference": float(diff.mean()),
                        "lo": float(np.quantile(boots, 0.025)),
                        "hi": float(np.quantile(boots, 0.975)),
                        "mcnemar_p": _mcnemar_p(x, y),
                    }
                )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=Path, default=DEFAULT_IN)
    parser.add_argument("--out-dir", type=Path, default=Path("benchmarks/results/judge_rescore"))
    parser.add_argument("--model", default="smollm2-135m-instruct", help="readout judge model")
    parser.add_argument("--template", default="emotion-list")
    parser.add_argument(
        "--calibrate", default="content-free", choices=["content-free", "mean", "none"]
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out_dir = args.out_dir
    t0 = time.perf_counter()
    frame = pd.read_csv(args.generations, keep_default_na=False)
    timings: dict[str, float] = {}

    judge = load_judge("sev", seed=args.seed, progress=True)
    old = load_judge("sev", seed=args.seed, progress=True, mask=False)
    model = load_model(args.model, device="cpu")
    readout = ReadoutJudge(
        model,
        labels=judge.labels,
        template=args.template,
        calibrate=None,  # all three calibrations are derived from the same passes below
        progress=True,
    )
    timings["load_s"] = time.perf_counter() - t0

    t1 = time.perf_counter()
    extra = frame[[c for c in ("method", "emotion", "skeleton_id", "valence") if c in frame]]
    replies = frame["reply"].astype(str).tolist()
    keep = [i for i, r in enumerate(replies) if r.strip()]
    result = readout.infer([replies[i] for i in keep])  # masks the replies first
    per_mode: dict[str, list[str]] = {}
    for mode in ("content-free", "mean", None):
        labels = [NO_REPLY] * len(replies)
        scored_mode = recalibrate(result, mode, model=model, template=readout.template)
        for i, lab in zip(keep, scored_mode.predictions, strict=True):
            labels[i] = lab
        per_mode[mode or "none"] = labels
    timings["readout_s"] = time.perf_counter() - t1
    scored = score_replies(
        judge,
        replies,
        frame["emotion"].astype(str).tolist(),
        readout_labels=per_mode[args.calibrate],
        extra=extra,
    )
    timings["score_s"] = time.perf_counter() - t1
    old_labels = [NO_REPLY] * len(replies)
    for i, lab in zip(keep, old.predict([replies[i] for i in keep], mask=False), strict=True):
        old_labels[i] = lab
    scored["judged_old"] = old_labels
    scored["correct_old"] = scored["judged_old"] == scored["target"]
    if "judged" in frame:
        scored["judged_committed"] = frame["judged"].to_numpy()
    by_method = summarise_replies(scored, by="method")
    by_method.insert(
        by_method.columns.get_loc("judged_raw") + 1,
        "judged_old",
        by_method["method"].map(scored.groupby("method")["correct_old"].mean()),
    )
    for mode, labels in per_mode.items():
        if mode == args.calibrate:
            continue
        alt = scored.drop(columns=["readout_label", "correct_readout"]).assign(
            readout_label=labels, correct_readout=np.asarray(labels) == scored["target"]
        )
        alt_summary = summarise_replies(alt, by="method").set_index("method")
        by_method[f"readout_{mode}"] = by_method["method"].map(alt_summary["readout"])
        by_method[f"kappa_{mode}"] = by_method["method"].map(alt_summary["kappa"])
        scored[f"readout_label_{mode}"] = labels
    by_emotion = summarise_replies(scored, by=["method", "emotion"])
    contrasts = paired_contrasts(scored, args.n_boot, args.seed)

    out_dir.mkdir(parents=True, exist_ok=True)
    by_method.to_csv(out_dir / "rescored_masked.csv", index=False)
    by_emotion.to_csv(out_dir / "rescored_masked_by_emotion.csv", index=False)
    contrasts.to_csv(out_dir / "rescored_contrasts.csv", index=False)
    scored.to_csv(out_dir / "rescored_replies.csv", index=False)
    agree = (
        float((scored["judged_old"] == scored["judged_committed"]).mean())
        if "judged_committed" in scored
        else None
    )
    timings["total_s"] = time.perf_counter() - t0
    manifest = run_manifest(
        seed=args.seed,
        model=model,
        extra={
            "generations": str(args.generations),
            "generations_sha256": hashlib.sha256(args.generations.read_bytes()).hexdigest(),
            "n_replies": len(scored),
            "judge": judge.describe(),
            "old_judge": old.describe(),
            "readout_judge": readout.describe() | {"calibrate": args.calibrate},
            "old_judge_matches_committed_labels": agree,
            "disagreement_rule": "McNemar exact p < 0.05 or Cohen's kappa < 0.2",
            "timings": timings,
        },
    )
    write_json_atomic(out_dir / "rescored_manifest.json", manifest)
    cols = [
        "method",
        "n",
        "judged_masked",
        "judged_masked_lo",
        "judged_masked_hi",
        "judged_raw",
        "judged_old",
        "names_emotion",
        "judged_masked_unnamed",
        "fluency",
        "readout",
        "kappa",
        "judges_disagree",
    ]
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(by_method[cols].round(3).to_string(index=False))
        print(contrasts[contrasts.baseline == "prompting"].round(3).to_string(index=False))
    print("old judge reproduces committed labels:", agree)
    print("wrote", out_dir / "rescored_masked.csv", f"({timings['total_s']:.0f} s)")


if __name__ == "__main__":
    main()
