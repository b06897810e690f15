"""Throughput of extraction, the patching grid and head decomposition against transformers.

On the device it finds (``--device auto``: CUDA when visible, else CPU) and in the dtype asked
for (``--dtype auto``: bf16 on a GPU that supports it, fp32 on CPU), for the model given on the
command line, on the same length-sorted batches of real crowd-enVENT ``emotion-list`` prompts
(the packaged sample rows when the corpus is not there):

* **floor**: transformers' own forward (``AutoModelForCausalLM``, SDPA attention,
  ``logits_to_keep=1``) in the same dtype, prompts per second: the cost of one plain forward;
* **extraction**: :func:`lens_emotion.activations.extract_activations` of ``resid_post`` at
  every layer (engine recorded), prompts per second and the ratio to the floor;
* **patching grid**: :func:`lens_emotion.patching.patch_sites` over ``resid_post``,
  ``attn_out`` and ``mlp_out`` at every center layer (span 3, method ``auto``): patched
  (pair, window) runs per second, and that rate over the floor's prompts per second (how many
  plain forwards one patched run costs, inverted);
* **head decomposition**: :func:`lens_emotion.circuits.capture_last_token` of every head's
  ``z`` and every ``mlp_post`` at the last token, and each head's write ``z_h W_O^h`` into the
  residual stream, prompts per second and the ratio to the floor.

Each timing is the best of ``--repeats`` runs after one warm-up (CUDA synchronised). Raw numbers
go to ``benchmarks/results/gpu_<model>.json`` (``--out`` to change it).

    python benchmarks/bench_gpu.py --model smollm2-135m-instruct
    python benchmarks/bench_gpu.py --model gemma-3-270m --n 256 --batch-size 32
    # CPU smoke check on a tiny random model (writes nowhere under results/):
    OMP_NUM_THREADS=1 python benchmarks/bench_gpu.py --model tiny --n 16 --pairs 2 \\
        --out /tmp/gpu_tiny.json
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

RESULTS = Path(__file__).resolve().parent / "results"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_of(fn: Callable[[], Any], device: torch.device, repeats: int) -> tuple[float, Any]:
    """Run ``fn`` once to warm up, then ``repeats`` times; return the best seconds and a result."""
    out = fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        _sync(device)
        started = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - started)
    return min(times), out


def _rows(n: int) -> Any:
    from lens_emotion.data import default_crowd_envent_path, load_crowd_envent, load_dataset

    try:
        return load_crowd_envent(default_crowd_envent_path()).sample(n, seed=0), "crowd-enVENT"
    except Exception:  # noqa: BLE001 - no corpus here: the packaged sample rows
        data = load_dataset("sample")
        return data.sample(min(n, len(data)), seed=0), "packaged sample"


def _model(spec: str, device: str, dtype: str, tmp: Path) -> Any:
    from lens_emotion.models import load_model
    from lens_emotion.testing import make_tiny_model

    if spec == "tiny":
        spec = str(make_tiny_model(tmp / "tiny", arch="llama", n_layers=4, d_model=128))
    return load_model(spec, device=device, dtype=dtype)


def floor_forward(model: Any, batches: list[list[list[int]]]) -> Callable[[], None]:
    """transformers' plain forward over the batches (a separate SDPA model, same dtype)."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(
        model.path, dtype=model.dtype, attn_implementation="sdpa"
    )
    hf = hf.to(model.device).eval()
    padded = [model.pad(batch) for batch in batches]

    @torch.inference_mode()
    def run() -> None:
        for ids, mask in padded:
            positions = (mask.cumsum(-1) - 1).clamp(min=0)
            hf(input_ids=ids, attention_mask=mask, position_ids=positions, logits_to_keep=1)

    return run


def main() -> None:
    """Measure and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="zoo alias, folder, hub id, or 'tiny'")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--dtype", default="auto")
    parser.add_argument("--n", type=int, default=128, help="prompts (default 128)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--pairs", type=int, default=8, help="patching pairs (default 8)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from lens_emotion.activations import extract_activations
    from lens_emotion.batching import length_batches
    from lens_emotion.circuits import capture_last_token, head_output_weights
    from lens_emotion.patching import draw_pairs, patch_sites
    from lens_emotion.prompts import build_prompts

    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        model = _model(args.model, args.device, args.dtype, tmp)
        device = model.device
        rows, source = _rows(args.n)
        prompts = build_prompts(model, rows.texts, rows.labels, rows.label_names, "emotion-list")
        ids = [list(t) for t in prompts.token_ids]
        batches = [[ids[i] for i in b] for b in length_batches(prompts.lengths, args.batch_size)]
        n = len(ids)

        floor_s, _ = best_of(floor_forward(model, batches), device, args.repeats)
        floor_rate = n / floor_s

        layers = list(range(model.n_layers))
        counter = iter(range(1_000_000))

        def extract() -> Any:
            return extract_activations(
                model,
                prompts,
                sites=["resid_post"],
                layers=layers,
                out_dir=tmp / f"store{next(counter)}",  # a fresh store: no cache reuse
                batch_size=args.batch_size,
                progress=False,
            )

        extract_s, store = best_of(extract, device, args.repeats)

        # a random tiny model agrees with no human label: draw among all rows there
        agreeing = args.model != "tiny"
        pairs = draw_pairs(
            model, rows, n_pairs=args.pairs, seed=0, agreeing_only=agreeing, progress=False
        )

        def grid() -> Any:
            return patch_sites(
                model,
                pairs,
                sites=["resid_post", "attn_out", "mlp_out"],
                span=3,
                n_boot=10,
                batch_size=args.batch_size,
                progress=False,
            )

        grid_s, patched = best_of(grid, device, args.repeats)
        w_o = head_output_weights(model).to(device)

        def decompose() -> Any:
            acts = capture_last_token(model, ids, ("z", "mlp_post"), args.batch_size)
            z = acts.z.to(device=device, dtype=w_o.dtype)  # [n, layer, head, d_head]
            return torch.einsum("nlhd,lhdm->nlhm", z, w_o)

        decomp_s, _ = best_of(decompose, device, args.repeats)

        runs = patched.n_patched_runs or len(patched.per_pair)
        payload = {
            "command": "python benchmarks/bench_gpu.py "
            + " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v),
            "model": model.describe(),
            "device": str(device),
            "device_name": torch.cuda.get_device_name(device)
            if device.type == "cuda"
            else platform.processor() or platform.machine(),
            "torch_threads": torch.get_num_threads(),
            "dtype": str(model.dtype).removeprefix("torch."),
            "rows": f"{source}, {n} prompts (emotion-list), batches of {args.batch_size}, "
            "length-sorted",
            "mean_prompt_tokens": sum(prompts.lengths) / n,
            "repeats": args.repeats,
            "floor": {
                "what": "transformers forward, SDPA, logits_to_keep=1",
                "seconds": floor_s,
                "prompts_per_s": floor_rate,
            },
            "extraction": {
                "engine": store.manifest.get("engine"),
                "sites": "resid_post, every layer",
                "seconds": extract_s,
                "prompts_per_s": n / extract_s,
                "ratio_to_floor": (n / extract_s) / floor_rate,
            },
            "patching_grid": {
                "method": patched.method,
                "pairs": len(pairs),
                "patched_runs": runs,
                "seconds": grid_s,
                "runs_per_s": runs / grid_s,
                "ratio_to_floor": (runs / grid_s) / floor_rate,
            },
            "head_decomposition": {
                "what": "last-token z (every head) and mlp_post capture + z_h W_O^h per head",
                "seconds": decomp_s,
                "prompts_per_s": n / decomp_s,
                "ratio_to_floor": (n / decomp_s) / floor_rate,
            },
        }
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", args.model.rstrip("/").split("/")[-1])
    out = args.out or RESULTS / f"gpu_{name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2))
    for key in ("extraction", "patching_grid", "head_decomposition"):
        print(f"{key}: {payload[key]['ratio_to_floor']:.2f}x the transformers floor")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
