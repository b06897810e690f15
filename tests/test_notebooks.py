"""Execute every notebook top to bottom (small size), so a notebook that stops running fails CI."""

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.integration
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("LENS_EMOTION_NOTEBOOK_N", "39")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook,
        timeout=600,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    ).execute()
    errors = [
        o
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    assert not errors
    # Figures are shown inline: at least one Plotly output exists.
    mimes = {
        k
        for c in notebook.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
        for k in o.get("data", {})
    }
    assert "application/vnd.plotly.v1+json" in mimes or "text/html" in mimes


def test_notebooks_exist():
    assert NOTEBOOKS, "notebooks/ has no notebooks"
