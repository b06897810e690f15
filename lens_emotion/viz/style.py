"""Shared Plotly style of the suite: emotion colours, the paper style, bands and errors.

Every figure goes through :func:`apply_style`, and every emotion has one colour everywhere
(:func:`emotion_color`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from lens_emotion.data.crowd_envent import CROWD_ENVENT_EMOTIONS
from lens_emotion.errors import LensEmotionError

__all__ = [
    "EMOTION_COLORS",
    "EMOTION_ORDER",
    "LabelCounts",
    "PLOTLY_CONFIG",
    "PlotInputError",
    "StaticExportError",
    "SITE_COLORS",
    "apply_style",
    "ci_band",
    "emotion_color",
    "rgba",
    "site_color",
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
    axis_style: dict[str, Any] = {
        "title_font": {"size": _BASE_FONT_SIZE + 1},
        "tickfont": {"size": _BASE_FONT_SIZE - 1},
        "showline": True,
        "linecolor": "#444444",
        "ticks": "outside",
        "automargin": True,
    }
    fig.update_xaxes(**axis_style)
    fig.update_yaxes(**axis_style)
    if title is not None:
        fig.update_layout(title_text=title)
    return fig


def rgba(hex_color: str, alpha: float) -> str:
    """A ``#RRGGBB`` colour as a CSS ``rgba(r,g,b,alpha)`` string (for bands and fills)."""
    h = hex_color.lstrip("#")
    r, g, b = (int(h[i : i + 2], 16) for i in (0, 2, 4))
    return f"rgba({r},{g},{b},{alpha})"


def ci_band(
    x: Sequence[Any] | np.ndarray | pd.Series,
    low: Sequence[float] | np.ndarray | pd.Series,
    high: Sequence[float] | np.ndarray | pd.Series,
    color: str,
    name: str,
    alpha: float = 0.15,
) -> go.Scatter:
    """A filled confidence band between ``low`` and ``high`` over ``x``, hidden from the legend.

    It shares ``legendgroup=name`` with the line it belongs to, so toggling that line in the
    legend toggles its band too.
    """
    x = list(x)
    return go.Scatter(
        x=x + x[::-1],
        y=list(np.asarray(high, dtype=float)) + list(np.asarray(low, dtype=float)[::-1]),
        fill="toself",
        fillcolor=rgba(color, alpha),
        line={"width": 0},
        hoverinfo="skip",
        showlegend=False,
        legendgroup=name,
    )


#: One colour per model site in every analysis' figures (Okabe-Ito): MHSA blue, FFN orange,
#: hidden state green, per-head outputs (``z``) light blue.
SITE_COLORS: dict[str, str] = {
    "resid_pre": "#999999",
    "attn_out": "#0072B2",
    "mlp_out": "#E69F00",
    "resid_mid": "#CC79A7",
    "resid_post": "#009E73",
    "z": "#56B4E9",
}
_EXTRA_SITE_COLORS: tuple[str, ...] = ("#D55E00", "#882255", "#44AA99", "#999933", "#332288")


def site_color(site: str, index: int = 0) -> str:
    """The colour of a site (:data:`SITE_COLORS`); other sites take the ``index``-th extra one."""
    return SITE_COLORS.get(site, _EXTRA_SITE_COLORS[index % len(_EXTRA_SITE_COLORS)])
