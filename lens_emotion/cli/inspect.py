"""``lens-emotion inspect``: the offline HTML attention inspector."""

from __future__ import annotations

import argparse
from typing import Any

from lens_emotion.cli.common import (
    add_data_args,
    add_model_args,
    add_progress_and_out_args,
    command_string,
    load_data_from_args,
    load_model_from_args,
)

HELP = "offline HTML attention inspector (OUT/index.html)"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``inspect``."""
    from lens_emotion.attention.inspector import DEFAULT_LIMIT
    from lens_emotion.attention.workflow import AttentionSettings
    from lens_emotion.prompts import TEMPLATES

    p = sub.add_parser("inspect", help=HELP, description=HELP)
    add_model_args(p)
    add_data_args(p, limit=DEFAULT_LIMIT)
    p.add_argument("--template", default=AttentionSettings.template, choices=sorted(TEMPLATES))
    add_progress_and_out_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``inspect``; prints the page's path."""
    from lens_emotion.attention.inspector import build_inspector

    limit, args.limit = args.limit, None  # the inspector draws its own stratified sample
    dataset = load_data_from_args(args)
    model = load_model_from_args(args)
    path = build_inspector(
        model,
        dataset,
        template=args.template,
        limit=limit,
        out_dir=args.out,
        seed=args.seed,
        progress=not args.quiet,
        command=command_string(),
    )
    print(f"wrote {path} (self-contained, works offline: open it in a browser)")
    return 0
