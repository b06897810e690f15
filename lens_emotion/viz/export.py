"""Offline-safe figure export: stand-alone HTML, page fragments, and PNG/SVG/PDF via kaleido.

Nothing written here loads anything from the network: plotly.js is embedded and MathJax is
never requested.
"""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import plotly.graph_objects as go
import plotly.io as pio

from lens_emotion.io import write_bytes_atomic
from lens_emotion.viz.style import PLOTLY_CONFIG, PlotInputError, StaticExportError

__all__ = ["STATIC_FORMATS", "figure_html_fragment", "write_figure", "write_figure_or_html"]


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
    :class:`lens_emotion.viz.report.Report` does).

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
