"""Inference throughput and accuracy on SmolLM2-135M-Instruct over real crowd-enVENT texts.

Side by side in one process, on the same length-sorted, left-padded batches:
  * ours: lens_emotion.inference.label_logprobs (TransformerBridge, compatibility mode,
    last-position logits only);
  * floor: a plain transformers forward pass of the same weights with logits_to_keep=1.
The two are interleaved (A B B A ...) to spread machine noise evenly.

Then the accuracy of each template x calibration (one forward pass per template; raw,
content-free, mean and mean-heldout, all from that pass). ``mean`` is fitted on the rows it
scores; ``mean-heldout`` is fitted on a seeded half of the rows and scores the other half
(``calibrations`` in the output also gives raw and mean accuracy on that same half).

    python benchmarks/bench_inference.py --n 320            # throughput + accuracy
    OMP_NUM_THREADS=1 python benchmarks/bench_inference.py --n 6600 --no-speed \
        --out benchmarks/results/inference_full.json         # accuracy on all texts
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

from lens_emotion.batching import iter_batches
from lens_emotion.data import default_crowd_envent_path, load_crowd_envent
from lens_emotion.inference import CALIBRATION_MODES, infer_emotions, label_logprobs, recalibrate
from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import run_manifest
from lens_emotion.models import load_model
from lens_emotion.prompts import build_prompts


def time_ours(model, prompt_set, batch_size, engine):
    start = time.perf_counter()
    label_logprobs(model, prompt_set, batch_size, progress=False, engine=engine)
    return time.perf_counter() - start


@torch.inference_mode()
def time_hf(hf, model, prompt_set, batch_size):
    start = time.perf_counter()
    for _, tokens in iter_batches(prompt_set.token_ids, batch_size):
        ids, mask = model.pad(tokens)
        hf(input_ids=ids, attention_mask=mask, logits_to_keep=1).logits[:, -1].log_softmax(-1)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--data-path", default=None)
    parser.add_argument("--n", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-speed", action="store_true")
    parser.add_argument("--templates", default="paper,emotion-list")
    parser.add_argument("--out", default="benchmarks/results/inference.json")
    args = parser.parse_args()

    model = load_model(args.model, device="cpu")
    data = load_crowd_envent(args.data_path or default_crowd_envent_path())
    if args.n < len(data):
        data = data.sample(args.n, seed=args.seed)
    results = {"n": len(data), "batch_size": args.batch_size, "threads": torch.get_num_threads()}

    if not args.no_speed:
        hf = AutoModelForCausalLM.from_pretrained(model.path, dtype=torch.float32).eval()
        prompt_set = build_prompts(model, data.texts, data.labels, data.label_names, "emotion-list")
        results["mean_prompt_tokens"] = sum(prompt_set.lengths) / len(prompt_set)
        times = {"ours_plain": [], "ours_bridge": [], "transformers_floor": []}
        runs = {
            "ours_plain": lambda: time_ours(model, prompt_set, args.batch_size, "plain"),
            "ours_bridge": lambda: time_ours(model, prompt_set, args.batch_size, "bridge"),
            "transformers_floor": lambda: time_hf(hf, model, prompt_set, args.batch_size),
        }
        order = list(runs)
        for r in range(args.repeats):
            for name in order if r % 2 == 0 else order[::-1]:
                secs = runs[name]()
                times[name].append(secs)
                print(f"repeat {r} {name}: {secs:.1f} s ({len(data) / secs:.2f} prompts/s)")
        median = {name: statistics.median(values) for name, values in times.items()}
        results["speed"] = {
            "seconds": times,
            "prompts_per_s": {name: len(data) / secs for name, secs in median.items()},
            "ratio_vs_floor": {
                name: median["transformers_floor"] / secs for name, secs in median.items()
            },
        }
        del hf

    accuracy = {}
    calibrations = {}
    for template in args.templates.split(","):
        started = time.perf_counter()
        raw = infer_emotions(model, data, template, batch_size=args.batch_size, seed=args.seed)
        calibrations[template] = raw.calibration_table()
        calibrations[template]["seconds"] = round(time.perf_counter() - started, 1)
        for mode in CALIBRATION_MODES:
            res = recalibrate(raw, mode)
            key = f"{template}/{'raw' if mode == 'none' else mode}"
            top = max(res.counts().items(), key=lambda kv: kv[1]["predicted"])
            accuracy[key] = {
                "accuracy": res.accuracy,
                "macro_f1": res.macro_f1,
                "most_predicted": top[0],
                "most_predicted_share": top[1]["predicted"] / res.n_scored,
                "n_scored": res.n_scored,
            }
            print(
                f"{key:<28} acc {res.accuracy:.3f}  macro-F1 {res.macro_f1:.3f}  "
                f"most predicted {top[0]} ({top[1]['predicted'] / res.n_scored:.0%}) "
                f"n={res.n_scored}"
            )
        # written after every template, so a long run keeps what it finished
        results["accuracy"] = accuracy
        results["calibrations"] = calibrations
        results["note"] = (
            "mean: offset fitted on the rows it scores (transductive); mean-heldout: offset "
            f"fitted on a seeded half of the rows (seed {args.seed}), accuracy on the other half"
        )
        results["manifest"] = run_manifest(seed=args.seed, model=model, dataset=data)
        write_json_atomic(Path(args.out), results)
    results["manifest"] = run_manifest(seed=args.seed, model=model, dataset=data)
    write_json_atomic(Path(args.out), results)
    print(json.dumps(results.get("speed", {}), indent=2))


if __name__ == "__main__":
    main()
