"""Shared Plotly styling, standard figures and offline-safe export for the whole suite.

Every figure the suite makes goes through :func:`apply_style` so that paper figures look alike,
and is written with :func:`write_figure` (stand-alone HTML, optionally PNG/SVG/PDF via kaleido)
or embedded in a report with :func:`figure_html_fragment`. Nothing written here ever loads
anything from the network: plotly.js is embedded and MathJax is never requested.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import math
import os
import re
import shutil
from collections.abc import Iterator, Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from lens_emotion.data.crowd_envent import CROWD_ENVENT_EMOTIONS
from lens_emotion.errors import LensEmotionError
from lens_emotion.io import write_bytes_atomic

__all__ = [
    "EMOTION_COLORS",
    "EMOTION_ORDER",
    "LabelCounts",
    "PLOTLY_CONFIG",
    "STATIC_FORMATS",
    "PlotInputError",
    "StaticExportError",
    "apply_style",
    "confusion_figure",
    "emotion_color",
    "figure_html_fragment",
    "label_distribution_figure",
    "write_figure",
]


class PlotInputError(LensEmotionError, ValueError):
    """Data handed to a figure builder or writer has the wrong shape, values or options."""


class StaticExportError(LensEmotionError, RuntimeError):
    """Static image export (PNG/SVG/PDF) is impossible: kaleido or a Chromium browser is missing."""


# --------------------------------------------------------------------------------------------
# Colours
# --------------------------------------------------------------------------------------------

#: The 13 crowd-enVENT emotion labels, in the order figures use by default.
EMOTION_ORDER: tuple[str, ...] = CROWD_ENVENT_EMOTIONS

# Drawn from the Okabe-Ito and Paul Tol "muted" palettes, both designed to stay distinguishable
# under the common colour-vision deficiencies; hues loosely follow emotion conventions.
EMOTION_COLORS: dict[str, str] = {
    "anger": "#D55E00",  # vermillion
    "boredom": "#999933",  # olive
    "disgust": "#117733",  # green
    "fear": "#332288",  # indigo
    "guilt": "#882255",  # wine
    "joy": "#E69F00",  # orange
    "happiness": "#E69F00",  # SEV's name for joy: same colour on purpose
    "neutral": "#BBBBBB",  # grey
    "pride": "#AA4499",  # purple
    "relief": "#88CCEE",  # cyan
    "sadness": "#0072B2",  # blue
    "shame": "#CC6677",  # rose
    "surprise": "#DDCC77",  # sand
    "trust": "#44AA99",  # teal
}
"""Fixed colour per emotion label (lower-case keys); ``happiness`` shares ``joy``'s colour."""

# Fallback colours for labels outside EMOTION_COLORS (Paul Tol "dark"/"light" tones that do not
# repeat an emotion colour). The choice is a stable hash of the label, not Python's salted hash().
_FALLBACK_PALETTE: tuple[str, ...] = (
    "#222255",
    "#225555",
    "#225522",
    "#666633",
    "#663333",
    "#555555",
    "#77AADD",
    "#EE8866",
    "#EEDD88",
    "#FFAABB",
    "#99DDFF",
    "#AAAA00",
)


#: Counts per label: ``{label: count}`` or a :class:`pandas.Series` indexed by label.
LabelCounts = Mapping[str, float] | pd.Series


def _normalize_label(label: str) -> str:
    return str(label).strip().lower()


def emotion_color(label: str) -> str:
    """Return the colour for an emotion label.

    Known labels (case- and whitespace-insensitive) get their :data:`EMOTION_COLORS` entry;
    any other label gets a colour from a fallback palette chosen by a stable hash of the
    label, so it is the same in every run and process.

    Args:
        label: Emotion label, e.g. ``"joy"`` or ``"Happiness"``.

    Returns:
        A ``#RRGGBB`` colour string.
    """
    key = _normalize_label(label)
    if key in EMOTION_COLORS:
        return EMOTION_COLORS[key]
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return _FALLBACK_PALETTE[int.from_bytes(digest[:4], "big") % len(_FALLBACK_PALETTE)]


# --------------------------------------------------------------------------------------------
# Style
# --------------------------------------------------------------------------------------------

_FONT_FAMILY = "Arial, Helvetica, 'Liberation Sans', sans-serif"  # system fonts only, no web fonts
_BASE_FONT_SIZE = 14
_TITLE_FONT_SIZE = 18

#: Plotly.js config used for every HTML output: no logo, no cloud link, no MathJax typesetting,
#: and the camera button saves SVG so a vector figure can be had without kaleido.
PLOTLY_CONFIG: dict[str, Any] = {
    "displaylogo": False,
    "showSendToCloud": False,
    "typesetMath": False,
    "responsive": True,
    "toImageButtonOptions": {"format": "svg", "scale": 1},
}


def apply_style(fig: go.Figure, title: str | None = None) -> go.Figure:
    """Apply the suite's paper style to a figure, in place.

    White template, system sans-serif fonts at readable sizes, compact margins and a
    horizontal legend above the plot. Safe to call more than once.

    Args:
        fig: Figure to style; it is modified in place.
        title: New title text; ``None`` keeps the figure's current title.

    Returns:
        The same figure, for chaining.
    """
    fig.update_layout(
        template="plotly_white",
        font={"family": _FONT_FAMILY, "size": _BASE_FONT_SIZE, "color": "#222222"},
        title={"font": {"size": _TITLE_FONT_SIZE}, "x": 0.0, "xanchor": "left", "xref": "paper"},
        margin={"l": 80, "r": 30, "t": 80, "b": 70},
        legend={
            "orientation": "h",
            "yanchor": "bottom",
            "y": 1.02,
            "xanchor": "right",
            "x": 1.0,
            "font": {"size": _BASE_FONT_SIZE - 1},
        },
        hoverlabel={"font": {"family": _FONT_FAMILY, "size": _BASE_FONT_SIZE - 1}},
        paper_bgcolor="white",
        plot_bgcolor="white",
    )
    fig.update_xaxes(
        title_font={"size": _BASE_FONT_SIZE + 1},
        tickfont={"size": _BASE_FONT_SIZE - 1},
        showline=True,
        linecolor="#444444",
        ticks="outside",
        automargin=True,
    )
    fig.update_yaxes(
        title_font={"size": _BASE_FONT_SIZE + 1},
        tickfont={"size": _BASE_FONT_SIZE - 1},
        showline=True,
        linecolor="#444444",
        ticks="outside",
        automargin=True,
    )
    if title is not None:
        fig.update_layout(title_text=title)
    return fig


# --------------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------------


def confusion_figure(
    confusion: np.ndarray,
    label_names: Sequence[str],
    normalize: bool = True,
    title: str | None = None,
) -> go.Figure:
    """Heatmap of a confusion matrix: rows are human labels, columns are predictions.

    With ``normalize=True`` the colour is each row's share (rows sum to 1; an all-zero row
    stays all zero rather than becoming NaN) and each cell shows the share and the raw count.
    Hover text always gives the human label, the prediction, the count, the row share and the
    row total.

    Args:
        confusion: Square ``(n, n)`` array of non-negative counts; ``confusion[i, j]`` is the
            number of items with human label ``i`` predicted as ``j``.
        label_names: The ``n`` label names, in row/column order.
        normalize: Colour by row share (``True``) or by raw count (``False``).
        title: Figure title.

    Returns:
        The styled heatmap figure.

    Raises:
        PlotInputError: If the matrix is not square, does not match ``label_names``, or holds
            negative or non-finite values.
    """
    counts = np.asarray(confusion)
    labels = [str(name) for name in label_names]
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1]:
        raise PlotInputError(
            f"confusion matrix must be square 2-D (n, n), got shape {counts.shape}; pass the "
            "output of sklearn.metrics.confusion_matrix or an equivalent counts array."
        )
    if counts.shape[0] != len(labels):
        raise PlotInputError(
            f"confusion matrix is {counts.shape[0]}x{counts.shape[1]} but {len(labels)} label "
            "names were given; pass one name per row/column, in the matrix's order."
        )
    if counts.shape[0] == 0:
        raise PlotInputError("confusion matrix is empty; pass at least one label.")
    if len(set(labels)) != len(labels):
        raise PlotInputError(
            f"label names repeat: {labels}; pass each label once, in the matrix's order."
        )
    if counts.dtype == np.bool_ or not np.issubdtype(counts.dtype, np.number):
        raise PlotInputError(
            f"confusion matrix must hold numbers, got dtype {counts.dtype}; pass counts."
        )
    if np.iscomplexobj(counts):
        raise PlotInputError("confusion matrix holds complex numbers; pass real counts.")
    counts = counts.astype(float)
    if not np.all(np.isfinite(counts)) or np.any(counts < 0):
        raise PlotInputError(
            "confusion matrix holds negative, NaN or infinite values; pass non-negative counts."
        )

    row_totals = counts.sum(axis=1, keepdims=True)
    shares = np.divide(counts, row_totals, out=np.zeros_like(counts), where=row_totals > 0)
    z = shares if normalize else counts

    integral = bool(np.all(counts == np.round(counts)))
    count_text = (
        [[f"{int(v):d}" for v in row] for row in counts]
        if integral
        else [[f"{v:.4g}" for v in row] for row in counts]
    )
    if normalize:
        cell_text = [
            [f"{share:.2f}<br>({count})" for share, count in zip(srow, crow, strict=True)]
            for srow, crow in zip(shares, count_text, strict=True)
        ]
    else:
        cell_text = count_text

    n = len(labels)
    customdata = np.empty((n, n, 3), dtype=object)
    for i in range(n):
        total = row_totals[i, 0]
        total_text = f"{int(total):d}" if integral else f"{total:.4g}"
        for j in range(n):
            customdata[i, j] = (count_text[i][j], f"{shares[i, j]:.1%}", total_text)

    cell_font_size = 12 if n <= 8 else 10 if n <= 14 else 8
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=labels,
            y=labels,
            text=cell_text,
            texttemplate="%{text}",
            textfont={"size": cell_font_size},
            customdata=customdata,
            hovertemplate=(
                "human: %{y}<br>predicted: %{x}<br>count: %{customdata[0]}"
                "<br>share of row: %{customdata[1]}<br>row total: %{customdata[2]}<extra></extra>"
            ),
            colorscale="Blues",
            zmin=0.0,
            zmax=1.0 if normalize else max(float(counts.max()), 1.0),
            colorbar={"title": {"text": "row share" if normalize else "count"}},
            xgap=1,
            ygap=1,
        )
    )
    apply_style(fig, title=title)
    side = int(min(max(60 * n + 220, 420), 1100))
    fig.update_layout(width=side + 90, height=side)
    fig.update_xaxes(
        title_text="Predicted label",
        type="category",
        tickangle=-45,
        showline=False,
        showgrid=False,
        ticks="",
    )
    fig.update_yaxes(
        title_text="Human label",
        type="category",
        autorange="reversed",
        scaleanchor="x",
        scaleratio=1,
        showline=False,
        showgrid=False,
        ticks="",
    )
    return fig


_SERIES_PATTERNS: tuple[str, ...] = ("", "/", "x", ".", "\\", "+", "-", "|")
_SERIES_OPACITY: tuple[float, ...] = (1.0, 0.75)


def _as_counts(name: str, counts: object) -> dict[str, float]:
    if isinstance(counts, pd.Series):
        items = list(counts.items())
    elif isinstance(counts, Mapping):
        items = list(counts.items())
    else:
        raise PlotInputError(
            f"counts for {name!r} must be a mapping label -> count or a pandas Series, got "
            f"{type(counts).__name__}; e.g. pass df['label'].value_counts()."
        )
    out: dict[str, float] = {}
    for label, value in items:
        if isinstance(value, bool) or not isinstance(value, Real):
            raise PlotInputError(
                f"count for label {label!r} in {name!r} is {value!r}, not a number; pass counts."
            )
        value = float(value)
        if not math.isfinite(value) or value < 0:
            raise PlotInputError(
                f"count for label {label!r} in {name!r} is {value!r}; counts must be finite "
                "and non-negative."
            )
        key = str(label)
        out[key] = out.get(key, 0.0) + value
    return out


def _is_count_container(value: object) -> bool:
    return isinstance(value, pd.Series | Mapping)


def label_distribution_figure(
    counts_by_label: LabelCounts | Mapping[str, LabelCounts],
    title: str | None = None,
    *,
    normalize: bool = False,
    label_order: Sequence[str] | None = None,
) -> go.Figure:
    """Bar chart of how often each label occurs, coloured by :data:`EMOTION_COLORS`.

    Pass one set of counts for a single distribution, or a mapping of series name to counts
    to compare several side by side (grouped bars), e.g. human labels vs model predictions::

        label_distribution_figure({"human": df.label.value_counts(),
                                   "predicted": df.prediction.value_counts()}, normalize=True)

    Bars keep their emotion colour in every series; series are told apart by fill pattern
    (the first is solid) and by a legend entry each.

    Args:
        counts_by_label: ``{label: count}`` or a :class:`pandas.Series` indexed by label, or
            ``{series_name: {label: count} | Series}`` for several series.
        title: Figure title.
        normalize: Plot each series' share (each series sums to 1) instead of raw counts;
            useful when series have different totals. Hover shows both either way.
        label_order: Order of the bars. Defaults to the 13 crowd-enVENT labels in
            :data:`EMOTION_ORDER` order (those present), then any other labels alphabetically.
            Labels listed here but absent from the data are shown with zero height.

    Returns:
        The styled bar chart.

    Raises:
        PlotInputError: If the input is empty, mixes counts and series, or holds non-numeric,
            negative or non-finite counts.
    """
    if isinstance(counts_by_label, pd.Series):
        series = {"count": _as_counts("count", counts_by_label)}
        single = True
    elif isinstance(counts_by_label, Mapping):
        if not counts_by_label:
            raise PlotInputError("no counts given; pass at least one label with its count.")
        values = list(counts_by_label.values())
        nested = [_is_count_container(v) for v in values]
        if all(nested):
            series = {str(k): _as_counts(str(k), v) for k, v in counts_by_label.items()}
            single = False
        elif not any(nested):
            series = {"count": _as_counts("count", counts_by_label)}
            single = True
        else:
            raise PlotInputError(
                "counts mix plain numbers and nested series; pass either {label: count} or "
                "{series_name: {label: count}} (e.g. {'human': ..., 'predicted': ...})."
            )
    else:
        raise PlotInputError(
            f"counts must be a mapping or pandas Series, got {type(counts_by_label).__name__}."
        )

    present = {label for s in series.values() for label in s}
    if not present:
        raise PlotInputError("no labels in the counts; pass at least one label with its count.")
    if label_order is None:
        canonical = [label for label in EMOTION_ORDER if label in present]
        order = canonical + sorted(present - set(canonical))
    else:
        order = [str(label) for label in label_order]
        if len(set(order)) != len(order):
            raise PlotInputError("label_order lists a label twice; list each label once.")
        missing = sorted(present - set(order))
        if missing:
            raise PlotInputError(
                f"label_order leaves out labels present in the data: {missing}; add them to "
                "label_order or drop them from the counts."
            )

    colors = [emotion_color(label) for label in order]
    fig = go.Figure()
    for k, (name, counts) in enumerate(series.items()):
        raw = np.array([counts.get(label, 0.0) for label in order], dtype=float)
        total = raw.sum()
        shares = raw / total if total > 0 else np.zeros_like(raw)
        y = shares if normalize else raw
        raw_text = [f"{int(v):d}" if v == round(v) else f"{v:.4g}" for v in raw]
        customdata = np.array(
            [(t, f"{s:.1%}") for t, s in zip(raw_text, shares, strict=True)], dtype=object
        )
        pattern = _SERIES_PATTERNS[k % len(_SERIES_PATTERNS)]
        prefix = "" if single else f"{html.escape(name)}<br>"
        fig.add_trace(
            go.Bar(
                x=order,
                y=y,
                name=name,
                customdata=customdata,
                hovertemplate=(
                    prefix + "%{x}<br>count: %{customdata[0]}<br>share: %{customdata[1]}"
                    "<extra></extra>"
                ),
                marker={
                    "color": colors,
                    "line": {"color": "#333333", "width": 0.8},
                    "pattern": {"shape": pattern, "fgcolor": "#333333", "solidity": 0.25},
                    "opacity": _SERIES_OPACITY[min(k, len(_SERIES_OPACITY) - 1)],
                },
                legendgroup=f"series-{k}",
                showlegend=False,
            )
        )
        if not single:
            # Legend-only swatch in neutral grey, so the legend explains the pattern rather
            # than showing the colour of whichever emotion happens to come first.
            fig.add_trace(
                go.Bar(
                    x=[None],
                    y=[None],
                    name=name,
                    marker={
                        "color": "#DDDDDD",
                        "line": {"color": "#333333", "width": 0.8},
                        "pattern": {"shape": pattern, "fgcolor": "#333333", "solidity": 0.25},
                    },
                    legendgroup=f"series-{k}",
                    showlegend=True,
                    hoverinfo="skip",
                )
            )

    apply_style(fig, title=title)
    fig.update_layout(barmode="group", bargap=0.2, bargroupgap=0.05, height=450)
    fig.update_xaxes(
        title_text="Label", type="category", categoryorder="array", categoryarray=order
    )
    fig.update_yaxes(
        title_text="Share" if normalize else "Count",
        tickformat=".0%" if normalize else None,
        rangemode="tozero",
    )
    return fig


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

#: Formats :func:`write_figure` can export through kaleido.
STATIC_FORMATS: tuple[str, ...] = ("png", "svg", "pdf")
_ALL_FORMATS: tuple[str, ...] = ("html", *STATIC_FORMATS)

_STATIC_FIX = (
    "To export PNG/SVG/PDF: `pip install kaleido` (v1 or later) and install a Chromium "
    "browser (Debian/Ubuntu: `apt-get install chromium`); if Chromium is installed somewhere "
    "unusual, set BROWSER_PATH to it (e.g. `export BROWSER_PATH=/usr/bin/chromium`). "
    "Or write formats=('html',) only: its camera button saves an SVG."
)

_DIV_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_\-:.]*$")


def figure_html_fragment(
    fig: go.Figure,
    include_plotlyjs: bool | str = False,
    div_id: str | None = None,
) -> str:
    """Render a figure as an HTML ``<div>`` fragment for embedding in a page.

    The fragment never requests MathJax and uses :data:`PLOTLY_CONFIG`. With the default
    ``include_plotlyjs=False`` the page must load plotly.js itself, once (as
    :class:`lens_emotion.report.Report` does).

    Args:
        fig: Figure to render.
        include_plotlyjs: ``False`` (page provides plotly.js), ``True`` (embed the full
            plotly.js in this fragment, offline), or one of plotly's string modes such as
            ``"cdn"`` or a path ending in ``.js`` (these load from elsewhere; avoid them for
            offline outputs).
        div_id: HTML id of the plot's ``<div>``; a random one if ``None``. Give stable ids
            for reproducible output.

    Returns:
        The HTML fragment (no ``<html>``/``<body>``).

    Raises:
        PlotInputError: If ``div_id`` is not a plain HTML id (letter first, then letters,
            digits, ``_ - : .``).
    """
    if div_id is not None and not _DIV_ID_RE.match(div_id):
        raise PlotInputError(
            f"div_id {div_id!r} is not a plain HTML id; use a letter followed by letters, "
            "digits, '_', '-', ':' or '.'."
        )
    has_height = fig.layout.height is not None
    return pio.to_html(
        fig,
        config=PLOTLY_CONFIG,
        include_plotlyjs=include_plotlyjs,
        include_mathjax=False,
        full_html=False,
        div_id=div_id,
        default_width="100%",
        default_height="100%" if has_height else "480px",
    )


def _standalone_page(fig: go.Figure, page_title: str) -> str:
    body = figure_html_fragment(fig, include_plotlyjs=True, div_id="figure")
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(page_title)}</title>\n"
        "<style>html, body {margin: 0; padding: 8px; background: #fff;}</style>\n"
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _find_browser() -> str | None:
    """Locate a Chromium/Chrome executable for kaleido, or return ``None``."""
    configured = os.environ.get("BROWSER_PATH")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    if os.access("/usr/bin/chromium", os.X_OK):
        return "/usr/bin/chromium"
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    try:  # a browser fetched by `kaleido_get_chrome` lives in choreographer's own folder
        from choreographer.browsers.chromium import Chromium

        found = Chromium.find_browser(skip_local=False)
    except Exception:  # noqa: BLE001 - best effort; private API of an optional dependency
        return None
    return str(found) if found else None


def _import_kaleido() -> Any:
    """Import kaleido v1+, or raise :class:`StaticExportError` with the fix."""
    try:
        import kaleido
    except ImportError as err:
        raise StaticExportError(f"kaleido is not installed. {_STATIC_FIX}") from err
    if not hasattr(kaleido, "calc_fig_sync"):
        version = getattr(kaleido, "__version__", "unknown")
        raise StaticExportError(
            f"kaleido {version} is too old (v1 or later is needed). {_STATIC_FIX}"
        )
    return kaleido


def _prepare_static_export() -> tuple[Any, str]:
    """Return kaleido and the browser path, or raise :class:`StaticExportError`."""
    kaleido = _import_kaleido()
    browser = _find_browser()
    if browser is None:
        configured = os.environ.get("BROWSER_PATH")
        where = (
            f"BROWSER_PATH={configured!r} is not an executable file"
            if configured
            else "no Chromium/Chrome browser was found (looked at /usr/bin/chromium and PATH)"
        )
        raise StaticExportError(f"{where}. {_STATIC_FIX}")
    return kaleido, browser


@contextlib.contextmanager
def _browser_path_env(browser: str) -> Iterator[None]:
    """Point kaleido (choreographer) at ``browser`` via BROWSER_PATH, restoring it afterwards."""
    previous = os.environ.get("BROWSER_PATH")
    os.environ["BROWSER_PATH"] = browser
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("BROWSER_PATH", None)
        else:
            os.environ["BROWSER_PATH"] = previous


def _static_bytes(kaleido: Any, browser: str, fig: go.Figure, fmt: str, scale: float) -> bytes:
    layout = fig.layout
    opts = {
        "format": fmt,
        "width": int(layout.width) if layout.width is not None else 900,
        "height": int(layout.height) if layout.height is not None else 600,
        "scale": scale,
    }
    # mathjax=False: kaleido would otherwise load MathJax from a CDN, which hangs offline.
    # plotly.js itself comes from the local plotly package (kaleido's default).
    try:
        with _browser_path_env(browser):
            data = kaleido.calc_fig_sync(fig.to_dict(), opts=opts, kopts={"mathjax": False})
    except Exception as err:  # kaleido raises several unrelated types
        if type(err).__name__ in {"ChromeNotFoundError", "BrowserFailedError"}:
            raise StaticExportError(
                f"kaleido could not start the browser at {browser!r}: {err}. {_STATIC_FIX}"
            ) from err
        raise StaticExportError(
            f"kaleido failed to export {fmt}: {type(err).__name__}: {err}. Check that the "
            f"browser works (`{browser} --headless --version`) and that the figure renders "
            "in the HTML output."
        ) from err
    if isinstance(data, str):
        data = data.encode("utf-8")
    return bytes(data)


def write_figure(
    fig: go.Figure,
    path_stem: str | Path,
    formats: Sequence[str] = ("html",),
    *,
    scale: float = 2.0,
) -> list[Path]:
    """Write a figure to ``<path_stem>.<format>`` for each requested format.

    ``html`` is a self-contained page that works offline (plotly.js embedded, no MathJax, no
    CDN). ``png``, ``svg`` and ``pdf`` are rendered by kaleido (v1+) with a Chromium browser;
    Chromium is looked up in ``BROWSER_PATH``, ``/usr/bin/chromium``, ``PATH`` and kaleido's
    own download folder, and ``BROWSER_PATH`` is set to it for kaleido during the export (and
    restored after). All outputs are rendered before any is written, so a failure writes
    nothing. Every file is written atomically; parent folders are created.

    Args:
        fig: Figure to write.
        path_stem: Output path without extension, e.g. ``"figures/confusion_layer12"``. A
            trailing ``.html``/``.png``/``.svg``/``.pdf`` is dropped.
        formats: Any of ``"html"``, ``"png"``, ``"svg"``, ``"pdf"``.
        scale: Pixel scale for static exports (PNG resolution); layout size defaults to
            900x600 when the figure sets none.

    Returns:
        The written paths, in the order of ``formats``.

    Raises:
        PlotInputError: If a format is unknown or none is given.
        StaticExportError: If a static format is requested but kaleido or Chromium is missing
            or fails; the message says how to install them.
    """
    fmts = [str(f).lower().lstrip(".") for f in formats]
    if isinstance(formats, str) or not fmts:
        raise PlotInputError(
            f"formats must be a non-empty sequence such as ('html', 'png'), got {formats!r}."
        )
    unknown = [f for f in fmts if f not in _ALL_FORMATS]
    if unknown:
        raise PlotInputError(
            f"unknown figure format(s) {unknown}; use any of {list(_ALL_FORMATS)}."
        )
    fmts = list(dict.fromkeys(fmts))
    stem = Path(path_stem)
    if stem.suffix.lower().lstrip(".") in _ALL_FORMATS:
        stem = stem.with_suffix("")

    static = _prepare_static_export() if any(f in STATIC_FORMATS for f in fmts) else None

    # Render everything first, so a failing export leaves no partial set of files behind.
    outputs: list[tuple[Path, bytes]] = []
    for fmt in fmts:
        target = stem.parent / f"{stem.name}.{fmt}"
        if fmt == "html":
            title = fig.layout.title.text or stem.name
            data = _standalone_page(fig, str(title)).encode("utf-8")
        else:
            assert static is not None
            data = _static_bytes(static[0], static[1], fig, fmt, scale)
        outputs.append((target, data))
    return [write_bytes_atomic(target, data) for target, data in outputs]


def write_figure_or_html(
    fig: go.Figure, stem: str | Path, formats: Sequence[str] = ("html",), scale: float = 2.0
) -> tuple[list[Path], str | None]:
    """:func:`write_figure`, falling back to HTML only when static export is not set up.

    Workflows use this so that a missing kaleido/Chromium never loses a run's results.

    Returns:
        The written paths, and ``None`` or a note saying which formats were skipped and why.
    """
    try:
        return write_figure(fig, stem, formats=formats, scale=scale), None
    except StaticExportError as exc:
        note = f"static export unavailable, wrote HTML only: {exc}"
        return write_figure(fig, stem, formats=("html",), scale=scale), note
