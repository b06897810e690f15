import json
from pathlib import Path

import numpy as np
import pytest

from lens_emotion import io
from lens_emotion.io import write_json_atomic, write_text_atomic


def test_write_text_atomic_keeps_old_file_on_failure(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "out.html"
    write_text_atomic(target, "old")
    assert oct(target.stat().st_mode & 0o777) == oct(0o644)

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(io.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.html"]


def test_write_json_converts_numpy_and_paths(tmp_path: Path) -> None:
    path = write_json_atomic(
        tmp_path / "a" / "m.json", {"x": np.float32(0.5), "v": np.arange(3), "p": Path("/q")}
    )
    assert json.loads(path.read_text()) == {"x": 0.5, "v": [0, 1, 2], "p": "/q"}
    with pytest.raises(TypeError, match="Not JSON serialisable"):
        write_json_atomic(tmp_path / "b.json", {"o": object()})
    assert not (tmp_path / "b.json").exists()
