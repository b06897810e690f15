"""One self-contained, offline HTML report page for an analysis run.

A :class:`Report` collects sections (text, key-number tables, Plotly figures, raw HTML such as
CircuitsVis views, links to CSV/JSON outputs) plus a run manifest, and writes a single HTML file
that opens without a network: plotly.js is embedded once, CSS is inline, and raw HTML that would
fetch anything from the network is refused. Built with plain strings and :mod:`html`.

Example::

    report = Report("Emotion probe, SmolLM2-135M")
    report.add_section("Accuracy", "Held-out split.", metrics={"accuracy": 0.81},
                       figures=[confusion_figure(cm, labels)],
                       links={"predictions": "predictions.csv"})
    report.set_manifest(manifest)
    report.write("out/report.html")
"""

from __future__ import annotations

import datetime as _dt
import html
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from numbers import Integral, Real
from pathlib import Path, PurePath
from typing import Protocol, no_type_check, runtime_checkable
from urllib.parse import quote

import numpy as np
import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from lens_emotion import __version__
from lens_emotion.errors import LensEmotionError
from lens_emotion.io import write_text_atomic
from lens_emotion.viz import figure_html_fragment

__all__ = ["HtmlFragment", "Report", "ReportError", "SupportsLocalSrc", "format_value"]


class ReportError(LensEmotionError, ValueError):
    """Content handed to a :class:`Report` cannot go into an offline, self-contained page."""


@runtime_checkable
class SupportsLocalSrc(Protocol):
    """An object carrying offline HTML in ``local_src``, like CircuitsVis' ``RenderedHTML``."""

    local_src: str


#: A raw HTML fragment: a string, or an object such as CircuitsVis' ``RenderedHTML`` whose
#: ``local_src`` (the offline variant with its JavaScript inlined) is used.
HtmlFragment = str | SupportsLocalSrc

# Anything in raw HTML that makes the browser fetch from another host: attributes pointing at
# an absolute or protocol-relative URL, ES module imports from a URL, CSS url()/@import.
_EXTERNAL_REF_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(
        r"""\b(?:src|href|srcset|action|poster|data|formaction|background)\s*=\s*["']?\s*"""
        r"""(?:[a-z][a-z0-9+.\-]*:)?//""",
        re.IGNORECASE,
    ),
    re.compile(r"""\bimport\s*(?:[\w*{}\s,$]+\bfrom\s*)?["']\s*(?:https?:)?//""", re.IGNORECASE),
    re.compile(r"""\bimport\s*\(\s*["']\s*(?:https?:)?//""", re.IGNORECASE),
    re.compile(r"""\burl\(\s*["']?\s*(?:https?:)?//""", re.IGNORECASE),
    re.compile(r"""@import\s+["']\s*(?:https?:)?//""", re.IGNORECASE),
)
_SCHEME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.\-]*:")


@dataclass
class _Link:
    label: str
    path: str  # POSIX-style relative path, as given


@dataclass
class _Section:
    title: str
    anchor: str
    text: str
    metrics: list[tuple[str, str]]
    figure_fragments: list[str]
    html_fragments: list[str]
    links: list[_Link] = field(default_factory=list)


def _slug(text: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:40].rstrip("-")


def format_value(value: object) -> str:
    """Format a metric value for a key-number table.

    Args:
        value: A number, string, bool, ``None``, numpy scalar/array or a JSON-able container.

    Returns:
        Plain text (not yet HTML-escaped): floats rounded to 4 decimals (or 4 significant
        digits when very small or large), ints as-is, containers as compact JSON.
    """
    if value is None:
        return "\u2014"
    if isinstance(value, bool | np.bool_):
        return "true" if value else "false"
    if isinstance(value, Integral):
        return str(int(value))
    if isinstance(value, Real):
        number = float(value)
        if not math.isfinite(number):
            return str(number)
        if number == 0:
            return "0"
        if 1e-3 <= abs(number) < 1e6:
            text = f"{number:.4f}".rstrip("0").rstrip(".")
            return text if text not in ("", "-0") else "0"
        return f"{number:.4g}"
    if isinstance(value, str):
        return value
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_default(obj: object) -> object:
    """Make numpy, paths, dates, sets and other objects JSON-serialisable."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, PurePath):
        return obj.as_posix()
    if isinstance(obj, _dt.datetime | _dt.date | _dt.time):
        return obj.isoformat()
    if isinstance(obj, set | frozenset):
        return sorted(obj, key=repr)
    if isinstance(obj, Mapping):
        return dict(obj)
    if isinstance(obj, Sequence) and not isinstance(obj, str | bytes):
        return list(obj)
    return repr(obj)


def _paragraphs(text: str) -> str:
    blocks = [b.strip("\n") for b in re.split(r"\n\s*\n", text) if b.strip()]
    return "\n".join(
        "<p>" + "<br>\n".join(html.escape(line) for line in block.split("\n")) + "</p>"
        for block in blocks
    )


def _check_offline(fragment: str, where: str) -> None:
    for pattern in _EXTERNAL_REF_PATTERNS:
        match = pattern.search(fragment)
        if match:
            start = max(match.start() - 40, 0)
            snippet = fragment[start : match.end() + 60].replace("\n", " ")
            raise ReportError(
                f"{where} loads something from the network ({snippet!r}); the report must "
                "open offline. Inline the resource instead. For CircuitsVis, pass the "
                "RenderedHTML object itself (its offline `local_src` is used), not "
                "str(view), which imports from a CDN."
            )


def _link_href(label: str, target: str | os.PathLike[str]) -> str:
    path = Path(target).as_posix() if isinstance(target, os.PathLike) else str(target)
    if not path:
        raise ReportError(f"link {label!r} has an empty path; give a path such as 'preds.csv'.")
    if _SCHEME_RE.match(path) or path.startswith(("/", "\\")):
        raise ReportError(
            f"link {label!r} -> {path!r} is not a relative path; links must point at files "
            "next to the report, e.g. os.path.relpath(csv_path, report_dir)."
        )
    return path.replace("\\", "/")


_CSS = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --bg-soft: #f6f8fa; --accent: #0b5cad; }
* { box-sizing: border-box; }
html { scroll-behavior: smooth; }
body { margin: 0; color: var(--fg); background: #fff; line-height: 1.5;
  font: 16px/1.55 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, "Liberation Sans",
  sans-serif; }
main { max-width: 1180px; margin: 0 auto; padding: 24px 32px 64px; }
h1 { font-size: 1.9rem; margin: 0.4em 0 0.2em; }
h2 { font-size: 1.4rem; margin: 2em 0 0.6em; padding-bottom: 0.25em;
  border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin: 1.2em 0 0.4em; color: var(--muted); }
a { color: var(--accent); }
p { max-width: 80ch; }
.meta { color: var(--muted); font-size: 0.9rem; margin: 0; }
nav.toc { background: var(--bg-soft); border: 1px solid var(--line); border-radius: 6px;
  padding: 10px 20px; margin: 20px 0; }
nav.toc h2 { border: 0; margin: 0.3em 0; font-size: 1.05rem; }
nav.toc ol { margin: 0.3em 0; padding-left: 1.4em; }
table.metrics { border-collapse: collapse; margin: 0.6em 0 1em; font-size: 0.95rem; }
table.metrics th, table.metrics td { border: 1px solid var(--line); padding: 4px 12px;
  text-align: left; vertical-align: top; }
table.metrics th { background: var(--bg-soft); font-weight: 600; }
table.metrics td.num { text-align: right; font-variant-numeric: tabular-nums;
  font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; }
.figure { margin: 1em 0 1.5em; border: 1px solid var(--line); border-radius: 6px; padding: 6px;
  overflow-x: auto; }
.raw-html { margin: 1em 0; overflow-x: auto; }
ul.links { padding-left: 1.3em; }
ul.links code { color: var(--muted); font-size: 0.85rem; }
.missing { color: #b42318; font-size: 0.85rem; font-weight: 600; margin-left: 0.5em; }
details.manifest { border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px;
  background: var(--bg-soft); }
details.manifest summary { cursor: pointer; font-weight: 600; }
details.manifest pre { overflow: auto; max-height: 70vh; font-size: 0.85rem; margin: 0.6em 0;
  font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, "Liberation Mono", monospace; }
footer { margin-top: 3em; color: var(--muted); font-size: 0.85rem; }
@media print { nav.toc { display: none; } .figure { break-inside: avoid; } }
""".strip()


class Report:
    """Builder for one self-contained offline HTML report page.

    Add sections in display order with :meth:`add_section`, attach the run manifest with
    :meth:`set_manifest`, then :meth:`write` the file (or :meth:`render` the string).

    Args:
        title: Page title, shown as the heading and in the browser tab.
    """

    def __init__(self, title: str) -> None:
        self.title = str(title)
        self._sections: list[_Section] = []
        self._manifest: Mapping[str, object] | None = None
        self._manifest_json: str | None = None

    @property
    def n_sections(self) -> int:
        """Number of sections added so far."""
        return len(self._sections)

    @no_type_check  # validates its input itself, with clear errors
    def add_section(
        self,
        title: str,
        text: str = "",
        metrics: Mapping[str, object] | None = None,
        figures: Sequence[go.Figure] = (),
        html: Sequence[HtmlFragment] = (),
        links: Mapping[str, str | os.PathLike[str]] | None = None,
    ) -> None:
        """Append a section.

        Args:
            title: Section heading (plain text; escaped).
            text: Plain text (escaped); blank lines separate paragraphs.
            metrics: Key numbers shown as a two-column table, e.g. ``{"accuracy": 0.81}``.
            figures: Plotly figures, rendered in order. Each is snapshotted now, so later
                changes to the figure object do not reach the report.
            html: Raw HTML fragments inserted as-is (trusted content, e.g. CircuitsVis views).
                A CircuitsVis ``RenderedHTML`` may be passed directly; its offline
                ``local_src`` is used. Fragments that fetch from the network are refused.
            links: Label -> path of an output file (CSV, JSON, ...) relative to the report's
                folder. Files missing when the report is written are flagged.

        Raises:
            ReportError: If a figure is not a Plotly figure, a fragment would load anything
                from the network, or a link is not a relative path.
        """
        index = len(self._sections) + 1
        slug = _slug(str(title))
        anchor = f"s{index}-{slug}" if slug else f"s{index}"

        metric_rows = [(str(k), format_value(v)) for k, v in (metrics or {}).items()]

        fragments: list[str] = []
        for k, fig in enumerate(figures, start=1):
            if not isinstance(fig, go.Figure):
                raise ReportError(
                    f"section {title!r}: figure {k} is a {type(fig).__name__}, not a "
                    "plotly.graph_objects.Figure; wrap dicts with go.Figure(...)."
                )
            fragments.append(figure_html_fragment(fig, div_id=f"fig-{index}-{k}"))

        raw: list[str] = []
        for k, item in enumerate(html, start=1):
            if isinstance(item, str):
                fragment = item
            elif isinstance(item, SupportsLocalSrc) and isinstance(item.local_src, str):
                fragment = item.local_src
            else:
                raise ReportError(
                    f"section {title!r}: html item {k} is a {type(item).__name__}; pass an "
                    "HTML string or a CircuitsVis RenderedHTML."
                )
            _check_offline(fragment, f"section {title!r}: html item {k}")
            raw.append(fragment)

        link_list = [
            _Link(label=str(label), path=_link_href(str(label), target))
            for label, target in (links or {}).items()
        ]

        self._sections.append(
            _Section(
                title=str(title),
                anchor=anchor,
                text=str(text),
                metrics=metric_rows,
                figure_fragments=fragments,
                html_fragments=raw,
                links=link_list,
            )
        )

    @no_type_check  # validates its input itself, with a clear error
    def set_manifest(self, manifest: Mapping[str, object]) -> None:
        """Attach the run manifest (model, data hash, seed, versions, timings, ...).

        It is shown at the end of the page as a collapsible, pretty-printed JSON block, with
        its top-level scalar entries also in a small table. Values that JSON cannot hold
        (numpy scalars/arrays, paths, dates, sets) are converted; anything else is shown via
        ``repr``. Calling again replaces the manifest.

        Args:
            manifest: Mapping of manifest entries.

        Raises:
            ReportError: If ``manifest`` is not a mapping.
        """
        if not isinstance(manifest, Mapping):
            raise ReportError(
                f"manifest must be a mapping (dict), got {type(manifest).__name__}; pass the "
                "run's manifest dict."
            )
        self._manifest = dict(manifest)
        self._manifest_json = json.dumps(
            self._manifest, indent=2, ensure_ascii=False, default=_json_default
        )

    # ---------------------------------------------------------------------------------------
    # Rendering
    # ---------------------------------------------------------------------------------------

    def _render_section(self, section: _Section, base_dir: Path | None) -> str:
        parts = [f'<section id="{section.anchor}">', f"<h2>{html.escape(section.title)}</h2>"]
        if section.text.strip():
            parts.append(_paragraphs(section.text))
        if section.metrics:
            rows = "\n".join(
                f'<tr><th scope="row">{html.escape(key)}</th>'
                f"<td{_num_class(value)}>{html.escape(value)}</td></tr>"
                for key, value in section.metrics
            )
            parts.append(
                '<table class="metrics">\n<thead><tr><th scope="col">metric</th>'
                f'<th scope="col">value</th></tr></thead>\n<tbody>\n{rows}\n</tbody>\n</table>'
            )
        for fragment in section.figure_fragments:
            parts.append(f'<div class="figure">\n{fragment}\n</div>')
        for fragment in section.html_fragments:
            # The wrapper closes any element a fragment leaves open (CircuitsVis emits <div/>).
            parts.append(f'<div class="raw-html">\n{fragment}\n</div>')
        if section.links:
            items = []
            for link in section.links:
                href = html.escape(quote(link.path, safe="/"), quote=True)
                missing = ""
                if base_dir is not None and not (base_dir / link.path).exists():
                    missing = '<span class="missing">(missing)</span>'
                items.append(
                    f'<li><a href="{href}">{html.escape(link.label)}</a> '
                    f"<code>{html.escape(link.path)}</code>{missing}</li>"
                )
            parts.append('<h3>Outputs</h3>\n<ul class="links">\n' + "\n".join(items) + "\n</ul>")
        parts.append("</section>")
        return "\n".join(parts)

    def _render_manifest(self) -> str:
        assert self._manifest is not None and self._manifest_json is not None
        scalars = [
            (str(k), format_value(v))
            for k, v in self._manifest.items()
            if v is None or isinstance(v, str | Real | bool | np.generic)
        ]
        table = ""
        if scalars:
            rows = "\n".join(
                f'<tr><th scope="row">{html.escape(k)}</th>'
                f"<td{_num_class(v)}>{html.escape(v)}</td></tr>"
                for k, v in scalars
            )
            table = f'<table class="metrics">\n<tbody>\n{rows}\n</tbody>\n</table>\n'
        return (
            '<section id="manifest">\n<h2>Run manifest</h2>\n'
            f"{table}"
            '<details class="manifest">\n<summary>Full manifest (JSON)</summary>\n'
            f'<pre><code class="language-json">{html.escape(self._manifest_json)}</code></pre>\n'
            "</details>\n</section>"
        )

    def render(self, base_dir: str | Path | None = None) -> str:
        """Build the complete HTML page.

        Args:
            base_dir: Folder the page will live in; when given, linked files that do not
                exist there are flagged as missing.

        Returns:
            The HTML document as a string.
        """
        base = Path(base_dir) if base_dir is not None else None
        title = html.escape(self.title)
        has_figures = any(s.figure_fragments for s in self._sections)

        head = [
            "<!DOCTYPE html>",
            '<html lang="en">',
            "<head>",
            '<meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f'<meta name="generator" content="lens_emotion {html.escape(__version__)}">',
            f"<title>{title}</title>",
            f"<style>\n{_CSS}\n</style>",
        ]
        if has_figures:
            # plotly.js exactly once, inline; figures are fragments without it.
            head.append("<script>window.PlotlyConfig = {MathJaxConfig: 'local'};</script>")
            head.append(f'<script type="text/javascript">\n{get_plotlyjs()}\n</script>')
        head.append("</head>")

        toc_items = [
            f'<li><a href="#{s.anchor}">{html.escape(s.title)}</a></li>' for s in self._sections
        ]
        if self._manifest is not None:
            toc_items.append('<li><a href="#manifest">Run manifest</a></li>')

        body = ["<body>", "<main>", "<header>", f"<h1>{title}</h1>"]
        body.append(
            f'<p class="meta">{len(self._sections)} section(s). '
            "This page is self-contained and works offline.</p>"
        )
        body.append("</header>")
        if toc_items:
            body.append(
                '<nav class="toc" aria-label="Contents">\n<h2>Contents</h2>\n<ol>\n'
                + "\n".join(toc_items)
                + "\n</ol>\n</nav>"
            )
        body.extend(self._render_section(s, base) for s in self._sections)
        if self._manifest is not None:
            body.append(self._render_manifest())
        body.append(f"<footer>Generated by lens_emotion {html.escape(__version__)}.</footer>")
        body.extend(["</main>", "</body>", "</html>", ""])
        return "\n".join(head + body)

    def write(self, path: str | Path) -> Path:
        """Write the report as one self-contained HTML file, atomically.

        Parent folders are created. Link targets are checked relative to the file's folder.

        Args:
            path: Destination, conventionally ending in ``.html``.

        Returns:
            The written path.
        """
        target = Path(path)
        return write_text_atomic(target, self.render(base_dir=target.parent))


def _num_class(value: str) -> str:
    try:
        float(value.replace(",", ""))
    except ValueError:
        return ""
    return ' class="num"'
