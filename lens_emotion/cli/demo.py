"""``lens-emotion demo``: every available analysis on one model, written as OUT/index.html."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lens_emotion.cli.common import add_progress_args

HELP = "run every available analysis and write OUT/index.html"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``demo``."""
    p = sub.add_parser("demo", help=HELP, description=HELP)
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--model", default=None, help="model spec (default: offline SmolLM2)")
    p.add_argument(
        "--data-path",
        default=None,
        type=Path,
        help="folder with crowd-envent/enVent_gen_Data.csv and sev/sev.jsonl (a data root, "
        "as `lens-emotion data list` shows it); without it the built-in sample sets are used",
    )
    p.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None)
    add_progress_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``demo``."""
    from lens_emotion.demo import run_demo

    run_demo(
        out=args.out,
        model_spec=args.model,
        data_root=args.data_path,
        quick=args.quick,
        seed=args.seed,
        device=args.device,
        progress=not args.quiet,
    )
    return 0
