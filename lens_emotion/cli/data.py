"""``lens-emotion data``: where each dataset comes from, and placing it where the loaders look."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lens_emotion.cli.common import add_progress_args

HELP = "list the datasets (source, licence, citation, checksums) or add one"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``data list`` and ``data add NAME FILE_OR_URL``."""
    from lens_emotion.data.registry import DATASETS

    p = sub.add_parser("data", help=HELP, description=HELP)
    data_sub = p.add_subparsers(dest="data_cmd", required=True)
    listing = data_sub.add_parser("list", help="each dataset and whether it is present")
    listing.add_argument("--root", type=Path, default=None, help="data root (default: as loaders)")
    add = data_sub.add_parser(
        "add", help="copy or download a dataset file, check it, place it under the data root"
    )
    add.add_argument("name", choices=sorted(DATASETS))
    add.add_argument("source", help="a local file, or an http(s):// URL (downloaded now)")
    add.add_argument("--root", type=Path, default=None, help="data root (default: as loaders)")
    add.add_argument(
        "--allow-checksum-mismatch",
        action="store_true",
        help="keep a file whose sha256 differs from the tested release (it must still load)",
    )
    add_progress_args(add)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``data list`` or ``data add``."""
    from lens_emotion.data.registry import DATASETS, add_dataset, dataset_status, default_data_root

    root = args.root or default_data_root()
    if args.data_cmd == "add":
        path = add_dataset(
            args.name,
            args.source,
            root,
            allow_checksum_mismatch=args.allow_checksum_mismatch,
            progress=not args.quiet,
        )
        print(f"{args.name}: checked and placed at {path}")
        return 0
    print(f"data root: {root} (set LENS_EMOTION_DATA to change it)")
    for name, info in DATASETS.items():
        status = dataset_status(name, root)
        state = (
            f"present ({status['present']}, checksum {status['checksum']})"
            if status["present"]
            else f"missing: `lens-emotion data add {name} FILE_OR_URL`"
        )
        print(f"\n{name}: {state}")
        print(f"  what:     {info.description}")
        print(f"  licence:  {info.licence}")
        print(f"  cite:     {info.citation}")
        print(f"  source:   {info.source}")
        for spec in info.files:
            digest = spec.sha256 or "not fixed"
            print(f"  file:     {info.folder}/{spec.name}  sha256 {digest}  ({spec.description})")
    return 0
