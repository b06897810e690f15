"""Atomic file writes: a reader never sees a half-written file, and nothing partial is trusted.

Every file is written to a temporary name in the destination folder, flushed, and renamed
into place with :func:`os.replace` (atomic on POSIX); a failed write removes the temporary
file and leaves any earlier version intact.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write bytes atomically; parent folders are created. New files get mode 0644."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        mode = 0o644
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write UTF-8 text atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"Not JSON serialisable: {type(value).__name__}")


def write_json_atomic(path: str | Path, obj: Any) -> Path:
    """Write JSON (indented; NumPy scalars/arrays and paths converted) atomically."""
    return write_text_atomic(path, json.dumps(obj, indent=2, default=_jsonable))


def write_csv_atomic(path: str | Path, frame: Any, index: bool = False) -> Path:
    """Write a DataFrame as CSV atomically (a half-written table is never left behind)."""
    return write_text_atomic(path, frame.to_csv(index=index))
