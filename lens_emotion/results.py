"""The one result protocol every analysis result follows.

Every compute function of an analysis returns a frozen ``…Result`` that offers:

- ``table``: an attribute (not a method) holding the result's main tidy table;
- ``to_frame()``: that table as a fresh :class:`pandas.DataFrame` (a copy the caller may edit);
- ``save(out)``: writes the result's files into the folder ``out`` and returns their paths;
- ``figure()``: the result's main interactive figure (from the analysis's pure ``figures.py``);
- ``summary()``: a small JSON-ready dict of headline numbers; it feeds the CLI printout, the
  demo report and the paper figures.

``tests/test_results.py`` checks every ``…Result`` class in the package against
:class:`AnalysisResult`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

__all__ = ["AnalysisResult", "RESULT_MEMBERS"]

RESULT_MEMBERS: tuple[str, ...] = ("table", "to_frame", "save", "figure", "summary")
"""The members :class:`AnalysisResult` requires."""


@runtime_checkable
class AnalysisResult(Protocol):
    """What every analysis result offers (see the module docstring)."""

    table: pd.DataFrame

    def to_frame(self) -> pd.DataFrame:
        """The main table as a new DataFrame."""
        ...

    def save(self, out: str | Path) -> list[Path]:
        """Write the result's files into ``out``; return their paths."""
        ...

    def figure(self) -> go.Figure:
        """The result's main figure."""
        ...

    def summary(self) -> dict[str, Any]:
        """Headline numbers, JSON-ready."""
        ...
