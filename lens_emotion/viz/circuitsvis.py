"""CircuitsVis views that work offline: in Jupyter, in stand-alone HTML files and in reports.

CircuitsVis' ``RenderedHTML`` carries two renderings of every view: ``cdn_src`` imports the
JavaScript from unpkg.com (what ``str(html)`` and ``show_code()`` return), and ``local_src``
inlines the package's own JavaScript bundle (``circuitsvis/dist/cdn/iife.js``, ~1.3 MB). Its
``_repr_html_`` chooses between them by probing an internet host on *every* render, which
costs up to a second offline and sends a request when online.

This module only ever uses ``local_src``:

* :class:`OfflineView` wraps it; its ``_repr_html_`` returns the embedded-bundle HTML with no
  network probe, so notebooks render instantly and offline.
* :func:`attention_heads_view` and :func:`colored_tokens_view` build views from
  :func:`circuitsvis.attention.attention_heads` and :func:`circuitsvis.tokens.colored_tokens`.
* :meth:`OfflineView.save` and :func:`write_views` write stand-alone pages (one copy of the
  bundle per page, however many views it holds).

Two small repairs are applied to ``local_src``: CircuitsVis writes its mount point as a
self-closing ``<div .../>``, which HTML parses as an *open* ``div`` (so a second view on the
same page would be nested inside the first and wiped when the first renders); it is closed
properly. The bundle's ``//# sourceMappingURL`` comment (a file that is not shipped next to our
pages) is dropped, and ``</`` inside the view's data is escaped so token text cannot end the
script early.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float

from lens_emotion.errors import LensEmotionError
from lens_emotion.io import write_text_atomic

__all__ = [
    "CircuitsVisError",
    "OfflineView",
    "attention_heads_view",
    "colored_tokens_view",
    "offline_fragment",
    "write_views",
]


class CircuitsVisError(LensEmotionError, ValueError):
    """A CircuitsVis view cannot be built offline from the given input."""


_SELF_CLOSING_DIV = re.compile(r'<div id="(circuits-vis-[^"]+)"([^>]*?)\s*/>')
_SOURCE_MAP = re.compile(r"^//# sourceMappingURL=.*$", re.MULTILINE)
_SCRIPT_OPEN = re.compile(r"<script[^>]*>")
_RENDER_CALL = "CircuitsVis.render("


def offline_fragment(rendered: Any) -> str:
    """Return the offline (embedded-bundle) HTML of a CircuitsVis ``RenderedHTML``.

    Args:
        rendered: A ``RenderedHTML`` from any CircuitsVis function, or its ``local_src``.

    Returns:
        An HTML fragment: the mount ``<div>`` and one ``<script type="module">`` holding the
        CircuitsVis bundle and the render call. It loads nothing from the network.

    Raises:
        CircuitsVisError: If the object has no ``local_src`` string.
    """
    source = rendered if isinstance(rendered, str) else getattr(rendered, "local_src", None)
    if not isinstance(source, str):
        raise CircuitsVisError(
            f"Expected a CircuitsVis RenderedHTML (with local_src), got {type(rendered).__name__}"
            "; pass the object returned by e.g. circuitsvis.attention.attention_heads(...)."
        )
    source = _SELF_CLOSING_DIV.sub(r'<div id="\1"\2></div>', source, count=1)
    source = _SOURCE_MAP.sub("", source)
    cut = source.rfind(_RENDER_CALL)
    end = source.rfind("</script>")
    if 0 <= cut < end:  # escape "</" in the data passed to the render call (token text)
        source = source[:cut] + source[cut:end].replace("</", "<\\/") + source[end:]
    return source


def _split(fragment: str) -> tuple[str, str, str] | None:
    """Split an offline fragment into ``(mount div, bundle js, render call)``.

    Returns ``None`` if the fragment does not have the structure CircuitsVis 1.x writes.
    """
    script = _SCRIPT_OPEN.search(fragment)
    cut = fragment.rfind(_RENDER_CALL)
    end = fragment.rfind("</script>")
    if script is None or cut < script.end() or end < cut:
        return None
    return fragment[: script.start()], fragment[script.end() : cut], fragment[cut:end]


@dataclass(frozen=True)
class OfflineView:
    """A CircuitsVis view that displays offline, with no network probe.

    Attributes:
        html: The offline HTML fragment (mount ``<div>`` plus inline bundle and render call).
        title: Heading used when the view is written as a page.
    """

    html: str
    title: str = "CircuitsVis view"

    @classmethod
    def from_rendered(cls, rendered: Any, title: str = "CircuitsVis view") -> OfflineView:
        """Wrap a CircuitsVis ``RenderedHTML`` (its ``local_src`` is used)."""
        return cls(offline_fragment(rendered), title)

    def _repr_html_(self) -> str:
        """Jupyter representation: the embedded-bundle HTML, without any network access."""
        return self.html

    def __html__(self) -> str:
        """Same as :meth:`_repr_html_` (for tools that look for ``__html__``)."""
        return self.html

    @property
    def local_src(self) -> str:
        """The offline HTML, under the name CircuitsVis' ``RenderedHTML`` uses.

        So a view can be passed wherever a ``RenderedHTML`` is accepted, e.g.
        :meth:`lens_emotion.viz.report.Report.add_section`.
        """
        return self.html

    def page(self) -> str:
        """Return a complete, stand-alone HTML page showing this view."""
        return _page([self], self.title)

    def save(self, path: str | Path) -> Path:
        """Write the view as a stand-alone offline HTML page (atomically) and return the path."""
        return write_text_atomic(path, self.page())


def _page(views: Sequence[OfflineView], title: str) -> str:
    parts = [_split(view.html) for view in views]
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n"
        "<style>body{font-family:Arial,Helvetica,sans-serif;margin:16px;color:#222}"
        "h2{font-size:16px;margin:20px 0 4px}</style>\n</head>\n<body>\n"
        f"<h1 style='font-size:20px'>{html.escape(title)}</h1>\n"
    )
    bundles = {part[1] for part in parts if part is not None}
    if len(views) > 1 and all(part is not None for part in parts) and len(bundles) == 1:
        # One copy of the bundle, then every view's render call in the same module script.
        body = "".join(
            f"<h2>{html.escape(view.title)}</h2>\n{part[0]}\n"
            for view, part in zip(views, parts, strict=True)
            if part is not None
        )
        calls = "\n".join(part[2] for part in parts if part is not None)
        body += f'<script type="module">\n{bundles.pop()}\n{calls}\n</script>\n'
    else:
        body = "".join(f"<h2>{html.escape(view.title)}</h2>\n{view.html}\n" for view in views)
    return head + body + "</body>\n</html>\n"


def write_views(path: str | Path, views: Sequence[OfflineView], title: str) -> Path:
    """Write several views into one stand-alone offline page (the bundle is embedded once).

    Args:
        path: Output ``.html`` file (written atomically; parent folders are created).
        views: The views, shown in order, each under its own title.
        title: Page title.

    Returns:
        The written path.

    Raises:
        CircuitsVisError: If no view is given.
    """
    if not views:
        raise CircuitsVisError("write_views() got no views; pass at least one OfflineView.")
    return write_text_atomic(path, _page(list(views), title))


def _tokens(tokens: Sequence[str]) -> list[str]:
    out = [str(tok) for tok in tokens]
    if not out:
        raise CircuitsVisError("No tokens given; pass the prompt's tokens as strings.")
    return out


def attention_heads_view(
    tokens: Sequence[str],
    attention: Float[np.ndarray, "head query key"] | Float[np.ndarray, "head key"],
    head_names: Sequence[str] | None = None,
    *,
    title: str = "Attention heads",
    max_value: float | None = None,
    mask_upper_tri: bool = True,
) -> OfflineView:
    """All heads of one layer with :func:`circuitsvis.attention.attention_heads`, offline.

    Args:
        tokens: The prompt's tokens (real tokens only, no padding).
        attention: Patterns of shape ``(heads, query, key)``; query and key both span
            ``tokens``. A ``(heads, key)`` array (one query row) is shown as a 1-row pattern.
        head_names: One name per head (default ``"L?H0"``, ... is CircuitsVis' own).
        title: Heading when the view is written as a page.
        max_value: Colour-scale maximum (default: CircuitsVis' own).
        mask_upper_tri: Grey out the future (causal attention).

    Returns:
        The :class:`OfflineView`.

    Raises:
        CircuitsVisError: If the shapes do not match the tokens.
    """
    import circuitsvis.attention

    toks = _tokens(tokens)
    pattern = np.asarray(attention, dtype=np.float32)
    if pattern.ndim == 2:
        pattern = pattern[:, None, :]
    if pattern.ndim != 3 or pattern.shape[2] != len(toks) or pattern.shape[1] > len(toks):
        raise CircuitsVisError(
            f"attention must have shape (heads, query, key) with key = {len(toks)} tokens, got "
            f"{pattern.shape}; pass AttentionPatterns.pattern(i)[layer] for one layer."
        )
    if pattern.shape[1] != len(toks):  # CircuitsVis wants square patterns: pad earlier rows
        full = np.zeros((pattern.shape[0], len(toks), len(toks)), dtype=np.float32)
        full[:, len(toks) - pattern.shape[1] :, :] = pattern
        pattern = full
    names = [str(name) for name in head_names] if head_names is not None else None
    if names is not None and len(names) != pattern.shape[0]:
        raise CircuitsVisError(
            f"{len(names)} head names for {pattern.shape[0]} heads; pass one name per head."
        )
    rendered = circuitsvis.attention.attention_heads(
        attention=np.round(pattern, 4),
        tokens=toks,
        attention_head_names=names,
        max_value=max_value,
        mask_upper_tri=mask_upper_tri,
    )
    return OfflineView.from_rendered(rendered, title)


def colored_tokens_view(
    tokens: Sequence[str],
    values: Float[np.ndarray, " token"] | Sequence[float],
    *,
    title: str = "Token values",
    min_value: float | None = None,
    max_value: float | None = None,
    negative_color: str | None = None,
    positive_color: str | None = None,
) -> OfflineView:
    """Tokens coloured by a value each, with :func:`circuitsvis.tokens.colored_tokens`, offline.

    Args:
        tokens: Token strings.
        values: One value per token (e.g. occlusion saliency).
        title: Heading when the view is written as a page.
        min_value: Colour-scale minimum (default: symmetric around 0).
        max_value: Colour-scale maximum.
        negative_color: CSS colour of negative values.
        positive_color: CSS colour of positive values.

    Returns:
        The :class:`OfflineView`.

    Raises:
        CircuitsVisError: If the number of values differs from the number of tokens.
    """
    import circuitsvis.tokens

    toks = _tokens(tokens)
    vals = np.asarray(values, dtype=np.float64).reshape(-1)
    if len(vals) != len(toks):
        raise CircuitsVisError(
            f"{len(vals)} values for {len(toks)} tokens; pass exactly one value per token."
        )
    if not np.all(np.isfinite(vals)):
        raise CircuitsVisError("values hold NaN or infinity; pass finite numbers.")
    bound = float(np.abs(vals).max()) or 1.0
    rendered = circuitsvis.tokens.colored_tokens(
        tokens=toks,
        values=[round(float(v), 5) for v in vals],
        min_value=-bound if min_value is None else min_value,
        max_value=bound if max_value is None else max_value,
        negative_color=negative_color,
        positive_color=positive_color,
    )
    return OfflineView.from_rendered(rendered, title)
