"""Re-judge committed steering generations with the masked judge and redo the theory checks.

Reads a run folder's ``generations.jsonl`` (written by :func:`lens_emotion.steering.
run_steering`), scores every reply with :func:`lens_emotion.judge.score_replies` (the judge
reads the reply with every emotion word form masked: the primary label; and unmasked), builds
the generation :class:`~lens_emotion.steering.SweepOutcome` from the masked labels and runs the
appraisal-theory checks on it (Holm over each prediction's cells). With ``--second-judge`` the
model's own label readout of the masked reply (:class:`lens_emotion.judge.ReadoutJudge`) is
added and Cohen's kappa between the two judges reported (this runs SmolLM2 on every reply).

No new generation happens: the replies are those of the committed run, so the random-direction
count is that run's (``gen_controls`` in its manifest).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/steering_rejudge.py \\
        --run benchmarks/results/steering_run --out benchmarks/results/steering_rejudged
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.judge import load_judge, score_replies
from lens_emotion.steering import (
    GENERATION_PREFIX,
    SteeringCondition,
    SweepOutcome,
    annotate_checks,
    check_predictions,
    summarize_checks,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="benchmarks/results/steering_run")
    parser.add_argument("--out", default="benchmarks/results/steering_rejudged")
    parser.add_argument("--second-judge", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-boot", type=int, default=2000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    run = Path(args.run)
    records = [json.loads(x) for x in (run / "generations.jsonl").read_text().splitlines() if x]
    manifest = json.loads((run / "manifest.json").read_text())
    conditions: dict[int, SteeringCondition] = {}
    for r in records:
        conditions.setdefault(
            r["condition"],
            SteeringCondition(
                r["combo"], r["method"], int(r["layer"]), float(r["beta"]), r["control"], r["seed"]
            ),
        )
    order = sorted(conditions)
    ids = [r["id"] for r in records if r["condition"] == order[0]]
    by_key = {(r["condition"], r["id"]): r for r in records}
    replies, extra = [], {"condition": [], "text_index": []}
    for k in order:
        for i, text_id in enumerate(ids):
            replies.append(f"{GENERATION_PREFIX}{by_key[(k, text_id)]['generation']}".strip())
            extra["condition"].append(order.index(k))
            extra["text_index"].append(i)

    judge = load_judge("crowd-envent", seed=args.seed, progress=False)
    readout = None
    if args.second_judge:
        from lens_emotion.judge import ReadoutJudge
        from lens_emotion.models import load_model

        model = load_model("smollm2-135m-instruct", device="cpu")
        readout = ReadoutJudge(model, labels=tuple(judge.labels), template="emotion-list")
    frame = score_replies(
        judge, replies, [judge.labels[0]] * len(replies), readout=readout, extra=extra
    )
    labels = tuple(judge.labels)
    values = np.zeros((len(order), len(ids), len(labels)))
    index = {lab: j for j, lab in enumerate(labels)}
    for row, label in enumerate(frame["judged_masked"]):
        if label in index:
            values[row // len(ids), row % len(ids), index[label]] = 1.0
    keep = [
        c
        for c in frame.columns
        if c
        not in (
            "target",
            "correct_masked",
            "correct_raw",
            "names_emotion",
            "fluent_correct_masked",
            "correct_readout",
        )
    ]
    sweep = SweepOutcome(
        "generation",
        tuple(conditions[k] for k in order),
        values,
        labels,
        ids=tuple(ids),
        replies=frame[keep],
    )
    table = sweep.proportions(n_boot=1000, seed=args.seed)
    checks = annotate_checks(check_predictions(sweep, n_boot=args.n_boot, seed=args.seed))
    summary = summarize_checks(checks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "steering.csv", table.to_csv(index=False))
    write_text_atomic(out / "theory_checks.csv", checks.to_csv(index=False))
    write_text_atomic(out / "theory_summary.csv", summary.to_csv(index=False))
    write_text_atomic(out / "replies.csv", frame[keep].to_csv(index=False))
    old = pd.Series([by_key[(k, text_id)]["judged"] for k in order for text_id in ids])
    new_raw = frame["judged_raw"]
    report = {
        "source_run": str(run),
        "source_created": manifest.get("created"),
        "gen_controls": manifest.get("gen_controls"),
        "n_replies": len(replies),
        "judge": judge.describe(),
        "second_judge": None if readout is None else readout.describe(),
        "share_naming_any_emotion": float(frame["names_any_emotion"].mean()),
        "share_masked_label_differs_from_raw": float(
            (frame["judged_masked"] != frame["judged_raw"]).mean()
        ),
        "old_vs_new_raw_agreement_note": "the source run's judge trained on unmasked text; "
        "judged_raw here is the new (masked-trained) judge reading unmasked replies",
        "new_raw_label_share_same_as_old": float(np.mean(new_raw.to_numpy() == old.to_numpy())),
        "new_masked_label_share_same_as_old": float(
            np.mean(frame["judged_masked"].to_numpy() == old.to_numpy())
        ),
        "theory_summary": summary.to_dict(orient="records"),
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_json_atomic(out / "rejudge.json", report)
    cols = ["prediction", "cells", "cells_passed", "min_p", "min_p_holm", "verdict"]
    print(summary[cols].to_string())


if __name__ == "__main__":
    main()
