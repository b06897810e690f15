"""The offline emotion judge (``lens_emotion.judge``): accuracy, first-train and cache-load times.

The judge reads text whose emotion word forms are masked (``lens_emotion.lexicon``); it trains
on masked crowd-enVENT ``generated_text`` and is scored on the masked held-out rows
(``accuracy_masked``, the judge as used) and on the raw ones (``accuracy_raw``). For comparison
the pre-issue-19 judge (``mask=False``: trained on raw text, reading raw text) is trained too
(``unmasked_judge``), and the second judge, SmolLM2's own label readout on the masked held-out
SEV rows (``readout``: raw, content-free and mean calibration), is scored on the same rows.

In one process, on 1 CPU thread, with an empty temporary cache:
  * first ``load_judge("crowd-envent")``: embeds all crowd-enVENT texts (masked and raw) with
    all-MiniLM-L6-v2, fits the logistic regression, writes the cache (throughput reported);
  * ``load_judge("sev")``: reuses the cached corpus embeddings, fits its own classifier;
  * second ``load_judge`` of each label set: read from the cache (no training);
  * a fresh process: import, load from the cache, first ``predict`` (loads the embedder);
  * embedding throughput of our transformers path vs. ``SentenceTransformer.encode`` on the
    same texts, interleaved over repeats, at batch sizes 16 and 64.

    python benchmarks/bench_judge.py                 # full run (~8 min on 1 thread)
    python benchmarks/bench_judge.py --n-speed 160   # smaller speed comparison
    python benchmarks/bench_judge.py --no-readout    # skip the SmolLM2 readout judge
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lens_emotion.data import default_crowd_envent_path, load_crowd_envent
from lens_emotion.io import write_json_atomic
from lens_emotion.judge import SentenceEmbedder, embedder_folder, load_judge
from lens_emotion.manifest import run_manifest

HEADLINE = (
    "accuracy",
    "accuracy_masked",
    "accuracy_raw",
    "macro_f1",
    "majority_baseline",
    "chance",
    "n_train",
    "n_test",
    "accuracy_without_emotion_word",
    "n_test_without_emotion_word",
    "share_test_naming_emotion",
    "accuracy_on_texts_naming_emotion",
)


FRESH_PROCESS = """
import json, sys, time
t0 = time.perf_counter()
import torch
torch.set_num_threads(1)
from lens_emotion.judge import load_judge
t1 = time.perf_counter()
judge = load_judge("crowd-envent", data_path=sys.argv[1], progress=False)
assert judge.from_cache
t2 = time.perf_counter()
judge.predict(["I missed the last train home."])
t3 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "load_from_cache_s": t2 - t1,
                  "first_predict_incl_embedder_load_s": t3 - t2}))
"""


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def readout_accuracy(path: Path, args: argparse.Namespace) -> tuple[dict, dict]:
    """SmolLM2's label readout on the SEV judge's held-out rows, masked, per calibration."""
    from lens_emotion.data import SEV_EMOTIONS
    from lens_emotion.inference import recalibrate
    from lens_emotion.judge import CROWD_TO_SEV, ReadoutJudge
    from lens_emotion.models import load_model

    rows = load_crowd_envent(path, text_column="generated_text")
    rows = rows.filter([lab in CROWD_TO_SEV for lab in rows.labels])
    rows = rows.with_labels([CROWD_TO_SEV[x] for x in rows.labels], SEV_EMOTIONS)
    _, test = rows.split(test_size=0.2, seed=args.seed, stratify=True)
    model = load_model(args.readout_model, device="cpu")
    readout = ReadoutJudge(model, labels="sev", calibrate=None)
    start = time.perf_counter()
    result = readout.infer(list(test.texts))
    seconds = time.perf_counter() - start
    gold = list(test.labels)
    out: dict = {"n_test": len(test), "template": "emotion-list", "seconds": seconds}
    for mode in (None, "content-free", "mean"):
        scored = recalibrate(result, mode, model=model, template=readout.template)
        acc = sum(p == g for p, g in zip(scored.predictions, gold, strict=True)) / len(gold)
        out[f"accuracy_{mode or 'raw'}"] = acc
    return out, model.describe()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-speed", type=int, default=320, help="texts for the speed comparison")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/judge.json"))
    parser.add_argument("--no-readout", action="store_true", help="skip the readout judge")
    parser.add_argument("--readout-model", default="smollm2-135m-instruct")
    args = parser.parse_args()
    torch.set_num_threads(1)
    path = default_crowd_envent_path()
    results: dict = {"threads": torch.get_num_threads()}

    user_cache = os.environ.get("LENS_EMOTION_CACHE")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["LENS_EMOTION_CACHE"] = tmp
        for label_set in ("crowd-envent", "sev"):
            judge, first_s = timed(
                lambda ls=label_set: load_judge(ls, data_path=path, seed=args.seed, progress=False)
            )
            assert not judge.from_cache
            again, cached_s = timed(
                lambda ls=label_set: load_judge(ls, data_path=path, seed=args.seed, progress=False)
            )
            assert again.from_cache
            _, first_predict_s = timed(lambda j=again: j.predict(["I missed the last train home."]))
            results[label_set] = {
                "first_load_s": first_s,
                "timings": judge.timings,
                "embeddings_from_cache": judge.training["embeddings_from_cache"],
                "cache_load_s": cached_s,
                "first_predict_after_cache_load_s": first_predict_s,
                "validation": {k: judge.validation.get(k) for k in HEADLINE},
                "per_class_recall": judge.validation["per_class_recall"],
            }
            print(label_set, {k: round(v, 3) for k, v in results[label_set]["validation"].items()})
            print(f"  first load {first_s:.1f} s, from cache {cached_s:.2f} s", judge.timings)
            unmasked = load_judge(
                label_set, data_path=path, seed=args.seed, progress=False, mask=False
            )
            results[label_set]["unmasked_judge"] = {k: unmasked.validation.get(k) for k in HEADLINE}
            print("  unmasked judge", results[label_set]["unmasked_judge"])
        # A fresh process: import, load from the cache, load the embedder, first predict.
        child = subprocess.run(
            [sys.executable, "-c", FRESH_PROCESS, str(path)],
            capture_output=True,
            text=True,
            check=True,
            env=os.environ | {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        )
        results["fresh_process"] = json.loads(child.stdout.strip().splitlines()[-1])
        print("fresh process", results["fresh_process"])
    # The readout model and later loads use the user's cache again, not the deleted temp one.
    if user_cache is None:
        os.environ.pop("LENS_EMOTION_CACHE", None)
    else:
        os.environ["LENS_EMOTION_CACHE"] = user_cache

    from sentence_transformers import SentenceTransformer

    texts = list(load_crowd_envent(path, text_column="generated_text").sample(args.n_speed).texts)
    ours = SentenceEmbedder()
    ours.embed(texts[:8])
    st = SentenceTransformer(str(embedder_folder()), device="cpu", local_files_only=True)
    st.encode(texts[:8])
    speed: dict[str, list[float]] = {}
    for _ in range(args.repeats):
        for bs in (16, 64):
            _, s = timed(lambda b=bs: ours.embed(texts, batch_size=b))
            speed.setdefault(f"ours_bs{bs}", []).append(len(texts) / s)
            _, s = timed(lambda b=bs: st.encode(texts, batch_size=b))
            speed.setdefault(f"sentence_transformers_bs{bs}", []).append(len(texts) / s)
    results["embedding_texts_per_s"] = {k: statistics.median(v) for k, v in speed.items()}
    results["embedding_texts_per_s_raw"] = speed
    results["n_speed"] = len(texts)
    print({k: round(v, 1) for k, v in results["embedding_texts_per_s"].items()})
    extra = {"embedder": ours.describe()}
    if not args.no_readout:
        results["readout"], extra["readout_model"] = readout_accuracy(path, args)
        print("readout", results["readout"])
    results["manifest"] = run_manifest(seed=args.seed, extra=extra)
    write_json_atomic(args.out, results)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
