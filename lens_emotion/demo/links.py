"""Links from the demo page to the files an analysis wrote."""

from __future__ import annotations

from pathlib import Path


def output_links(folder: Path, out: Path) -> dict[str, str]:
    """Links to the CSV/JSON files a workflow wrote into ``folder``."""
    return {
        str(p.relative_to(folder)): str(p.relative_to(out))
        for p in sorted(folder.rglob("*"))
        if p.suffix in {".csv", ".json", ".jsonl"}
    }
