"""``lens-emotion figures``: regenerate a paper's figure set from a TOML config."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lens_emotion.cli.common import add_progress_args, choice_list

HELP = "regenerate a paper's figure set from a TOML config (configs/*.toml)"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``figures``."""
    from lens_emotion.paper_figures import ANALYSES

    p = sub.add_parser("figures", help=HELP, description=HELP)
    p.add_argument("--config", required=True, type=Path, help="e.g. configs/tak2025.toml")
    p.add_argument("--out", default="figures", help="output folder (default: figures)")
    p.add_argument(
        "--only",
        type=choice_list(ANALYSES, ANALYSES[0]),
        default=None,
        help=f"comma-separated analyses of the config, any of {','.join(ANALYSES)}",
    )
    add_progress_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``figures``; exits 1 if an analysis failed (the others still run)."""
    from lens_emotion.paper_figures import load_figures_config, make_figures

    config = load_figures_config(args.config)
    only = list(args.only) if args.only else None
    outputs = make_figures(config, args.out, only=only, progress=not args.quiet)
    n = sum(len(v) for v in outputs.files.values())
    print(f"wrote {n} figure files to {args.out} ({outputs.timings['total']:.0f} s)")
    for note in outputs.notes:
        print(f"note: {note}")
    for name, message in outputs.failed.items():
        print(f"lens-emotion: error: analysis '{name}' failed: {message}", file=sys.stderr)
    return 1 if outputs.failed else 0
