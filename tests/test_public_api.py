"""Every name the README and the notebooks import resolves from its documented path."""

from __future__ import annotations

import ast
import importlib
import json
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _sources() -> list[tuple[str, str]]:
    sources = []
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for i, block in enumerate(re.findall(r"```python\n(.*?)```", readme, flags=re.S)):
        sources.append((f"README.md block {i + 1}", block))
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
        for i, cell in enumerate(cells):
            if cell["cell_type"] == "code":
                code = "".join(cell["source"])
                code = "\n".join(
                    line for line in code.splitlines() if not line.lstrip().startswith(("%", "!"))
                )
                sources.append((f"{path.name} cell {i}", code))
    return sources


def _imports() -> list[tuple[str, str, str | None]]:
    """``(where, module, name)`` for every lens_emotion import (name None: ``import m``)."""
    found = []
    for where, code in _sources():
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("lens_emotion"):
                found += [(where, node.module, alias.name) for alias in node.names]
            elif isinstance(node, ast.Import):
                found += [
                    (where, alias.name, None)
                    for alias in node.names
                    if alias.name.startswith("lens_emotion")
                ]
    return found


IMPORTS = _imports()


def test_the_docs_import_something():
    assert len(IMPORTS) > 20
    assert {where.split()[0] for where, _, _ in IMPORTS} >= {"README.md", "02_probing.ipynb"}


@pytest.mark.parametrize(
    ("where", "module", "name"), IMPORTS, ids=[f"{w}:{m}.{n}" for w, m, n in IMPORTS]
)
def test_documented_import_resolves_without_deprecation(where, module, name):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        mod = importlib.import_module(module)
    assert not hasattr(mod, "__moved_to__"), (
        f"{where} imports {module}, an old path (moved to {getattr(mod, '__moved_to__', '')}); "
        "import from the new path"
    )
    if name is not None:
        assert hasattr(mod, name), f"{where}: {module} has no {name}"
