r"""The ``lens-emotion steer`` sub-command (argument parsing and the call to the workflow).

Kept apart from :mod:`lens_emotion.cli` so the shared CLI module only registers it::

    lens-emotion steer --model smollm2-135m-instruct --dataset crowd-envent \\
        --data-path ../shared/data/crowd-envent/enVent_gen_Data.csv \\
        --appraisal pleasantness,other_responsblt --signs +,+ --layer 12 \\
        --betas -8,-4,0,4,8 --seed 0 --out steer_out
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from typing import Any

from lens_emotion.errors import LensEmotionError

__all__ = ["add_steer_parser", "parse_floats", "parse_ints", "run_steer_command"]


def parse_floats(text: str, what: str) -> list[float]:
    """``"-8,-4,0,4,8"`` -> floats.

    Raises:
        LensEmotionError: A value that is not a number.
    """
    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise LensEmotionError(
            f"{what} must be comma-separated numbers such as -8,-4,0,4,8, got {text!r}."
        ) from exc


def parse_ints(text: str, what: str) -> list[int]:
    """``"8,12"`` -> ints.

    Raises:
        LensEmotionError: A value that is not an integer.
    """
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise LensEmotionError(
            f"{what} must be comma-separated integers such as 12 or 8,12, got {text!r}."
        ) from exc


def add_steer_parser(
    sub: Any,
    add_model_args: Callable[[argparse.ArgumentParser], None],
    add_data_args: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    """Register ``steer`` on an argparse sub-parser collection."""
    steer = sub.add_parser(
        "steer",
        help="appraisal steering: readout + judged generation vs beta, theory checks",
    )
    add_model_args(steer)
    add_data_args(steer)
    steer.add_argument(
        "--appraisal",
        required=True,
        help="appraisal(s) to steer together, e.g. pleasantness or pleasantness,other_responsblt",
    )
    steer.add_argument("--signs", default=None, help="one sign per appraisal, e.g. +,+ (default +)")
    steer.add_argument("--layer", required=True, help="centre layer(s), e.g. 12 or 8,12")
    steer.add_argument(
        "--betas", default="-8,-4,0,4,8", help="steering strengths (default -8,-4,0,4,8)"
    )
    steer.add_argument(
        "--gen-betas", default=None, help="strengths for generation (default: --betas)"
    )
    steer.add_argument(
        "--scale",
        default="rms",
        choices=["rms", "none"],
        help="rms: beta in units of the residual RMS at each position (default); none: raw",
    )
    steer.add_argument(
        "--positions",
        default="all",
        choices=["all", "last"],
        help="positions steered during generation (default all; the readout steers the last "
        "prompt token)",
    )
    steer.add_argument("--span", type=int, default=1, help="layers hooked around each centre")
    steer.add_argument(
        "--method",
        default="unique",
        help="unique (unique-effect vectors), raw (unprojected probe weights) or unique,raw",
    )
    steer.add_argument(
        "--fix",
        default=None,
        help="appraisals held fixed by the unique vectors (default: all other appraisals)",
    )
    steer.add_argument("--n", type=int, default=60, help="steered texts (default 60)")
    steer.add_argument("--n-probe", type=int, default=400, help="probe rows (default 400)")
    steer.add_argument("--max-new-tokens", type=int, default=24, help="tokens per generation")
    steer.add_argument("--controls", type=int, default=3, help="random directions per cell")
    steer.add_argument(
        "--no-generate", action="store_true", help="readout only (no generation, no judge)"
    )
    steer.add_argument(
        "--theory-generation",
        action="store_true",
        help="also generate for the theory-check combos (slow on a CPU)",
    )
    steer.add_argument("--no-theory", action="store_true", help="skip the appraisal-theory checks")
    steer.add_argument(
        "--promote", default="", help="emotions to promote with emotion-probe weights, e.g. joy"
    )
    steer.add_argument("--template", default="emotion-list", help="inference prompt template")
    steer.add_argument("--store", default=None, help="activation store folder (default: cache)")
    steer.add_argument("--batch-size", type=int, default=16)
    steer.add_argument("--formats", default="html", help="figure formats, e.g. html,png")
    steer.add_argument("--out", required=True, help="output folder")
    return steer


def run_steer_command(args: argparse.Namespace, load_data: Callable[[Any], Any]) -> int:
    """Run ``steer`` with parsed arguments; prints a short summary.

    Raises:
        LensEmotionError: Bad arguments or data (the CLI turns it into exit status 2).
    """
    from lens_emotion.models import load_model
    from lens_emotion.steering import AppraisalCombo
    from lens_emotion.steering_workflow import check_appraisal_names, run_steering

    combo = AppraisalCombo.parse(args.appraisal, args.signs)
    layers = parse_ints(args.layer, "--layer")
    betas = parse_floats(args.betas, "--betas")
    gen_betas = parse_floats(args.gen_betas, "--gen-betas") if args.gen_betas else None
    methods = [m.strip() for m in args.method.split(",") if m.strip()]
    fixed = [a.strip() for a in args.fix.split(",") if a.strip()] if args.fix else None
    promote = [e.strip() for e in args.promote.split(",") if e.strip()]
    for name, value in (("--n", args.n), ("--max-new-tokens", args.max_new_tokens)):
        if value < 1:
            raise LensEmotionError(f"{name} must be at least 1, got {value}.")
    if args.controls < 1 and not args.no_theory:
        raise LensEmotionError("--controls must be at least 1 for the theory checks.")
    dataset = load_data(args)
    if dataset.appraisals is None:
        raise LensEmotionError(
            f"dataset {dataset.name!r} has no appraisal ratings; use --dataset crowd-envent."
        )
    check_appraisal_names(dataset, [combo], fixed)
    model = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    outputs = run_steering(
        model,
        dataset,
        args.out,
        [combo],
        layers,
        betas,
        gen_betas=gen_betas,
        n=args.n,
        n_probe=args.n_probe,
        span=args.span,
        scale=args.scale,
        gen_positions=args.positions,
        methods=methods,
        fixed=fixed,
        n_controls=args.controls,
        theory=not args.no_theory,
        theory_generation=args.theory_generation,
        generate=not args.no_generate,
        judge_data_path=args.data_path if args.dataset == "crowd-envent" else None,
        max_new_tokens=args.max_new_tokens,
        promote=promote,
        template=args.template,
        store_dir=args.store,
        batch_size=args.batch_size,
        formats=[f.strip() for f in args.formats.split(",") if f.strip()],
        seed=args.seed,
        command=shlex.join(["lens-emotion", *sys.argv[1:]]),
    )
    if outputs.judge is not None:
        acc = outputs.judge["validation"].get("accuracy")
        print(f"judge held-out accuracy {acc:.3f} on real crowd-enVENT rows")
    if not outputs.summary.empty:
        for row in outputs.summary.itertuples():
            print(
                f"[{row.outcome}/{row.method}] {row.description}: passed in "
                f"{row.cells_passed}/{row.cells} (layer, beta) cells -> {row.verdict}"
            )
    print(f"wrote {len(outputs.files)} files to {args.out}")
    return 0
