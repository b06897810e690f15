from __future__ import annotations

import os
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from lens_emotion.data import CROWD_ENVENT_EMOTIONS
from lens_emotion.errors import LensEmotionError
from lens_emotion.viz import (
    EMOTION_COLORS,
    EMOTION_ORDER,
    PlotInputError,
    StaticExportError,
    apply_style,
    confusion_figure,
    emotion_color,
    figure_html_fragment,
    label_distribution_figure,
    write_figure,
)
from lens_emotion.viz import export as plots

CROWD_ENVENT = list(CROWD_ENVENT_EMOTIONS)

SCRIPT_OR_LINK_TAG = re.compile(r"<(?:script|link)\b[^>]*>", re.IGNORECASE)
URL_ATTR = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*([^"'\s>]+)""", re.IGNORECASE)


def external_tag_refs(page: str) -> list[str]:
    """src/href values of <script>/<link> tags that point at another host."""
    refs = []
    for tag in SCRIPT_OR_LINK_TAG.findall(page):
        for url in URL_ATTR.findall(tag):
            if re.match(r"(?:[a-z][a-z0-9+.\-]*:)?//", url, re.IGNORECASE):
                refs.append(url)
    return refs


# ------------------------------------------------------------------------------------ colours


def test_colors_cover_crowd_envent_and_are_unique() -> None:
    assert list(EMOTION_ORDER) == CROWD_ENVENT
    colors = [EMOTION_COLORS[label] for label in CROWD_ENVENT]
    assert len({c.upper() for c in colors}) == 13
    assert all(re.fullmatch(r"#[0-9A-Fa-f]{6}", c) for c in colors)


def test_happiness_is_joy() -> None:
    assert EMOTION_COLORS["happiness"] == EMOTION_COLORS["joy"]
    assert emotion_color("Happiness ") == emotion_color("joy")


def test_emotion_color_known_case_insensitive() -> None:
    assert emotion_color("ANGER") == EMOTION_COLORS["anger"]


def test_emotion_color_fallback_is_deterministic_and_distinct_from_emotions() -> None:
    a = emotion_color("curiosity")
    assert a == emotion_color("curiosity") == emotion_color(" Curiosity")
    assert re.fullmatch(r"#[0-9A-Fa-f]{6}", a)
    fallbacks = {emotion_color(f"label-{i}") for i in range(50)}
    assert fallbacks.isdisjoint({c.upper() for c in EMOTION_COLORS.values()})
    assert len(fallbacks) > 3  # the hash actually spreads over the palette


# ------------------------------------------------------------------------------------ style


def test_apply_style_sets_template_and_title_and_returns_same_figure() -> None:
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    out = apply_style(fig, title="Hello")
    assert out is fig
    assert fig.layout.title.text == "Hello"
    assert fig.layout.font.size >= 12
    assert fig.layout.template.layout.paper_bgcolor == "white"
    apply_style(fig)  # keeps the title
    assert fig.layout.title.text == "Hello"


# ------------------------------------------------------------------------------------ confusion


def test_confusion_rows_normalised() -> None:
    cm = np.array([[3, 1, 0], [0, 2, 2], [1, 1, 8]])
    fig = confusion_figure(cm, ["anger", "joy", "fear"])
    z = np.asarray(fig.data[0].z, dtype=float)
    expected = np.array([[0.75, 0.25, 0.0], [0.0, 0.5, 0.5], [0.1, 0.1, 0.8]])
    np.testing.assert_allclose(z, expected)
    np.testing.assert_allclose(z.sum(axis=1), 1.0)
    assert list(fig.data[0].x) == ["anger", "joy", "fear"]
    assert list(fig.data[0].y) == ["anger", "joy", "fear"]
    assert fig.layout.xaxis.title.text == "Predicted label"
    assert fig.layout.yaxis.title.text == "Human label"
    # counts in the cell text and in hover
    assert fig.data[0].text[0][0] == "0.75<br>(3)"
    assert "count: %{customdata[0]}" in fig.data[0].hovertemplate
    assert fig.data[0].customdata[2][2][0] == "8"
    assert fig.data[0].zmax == 1.0


def test_confusion_all_zero_row_has_no_nan() -> None:
    cm = np.array([[2, 2], [0, 0]])
    fig = confusion_figure(cm, ["joy", "sadness"], title="t")
    z = np.asarray(fig.data[0].z, dtype=float)
    assert not np.isnan(z).any()
    np.testing.assert_allclose(z, [[0.5, 0.5], [0.0, 0.0]])
    assert fig.layout.title.text == "t"
    as_json = fig.to_json()
    assert "NaN" not in as_json and "nan%" not in as_json


def test_confusion_unnormalised_shows_counts() -> None:
    cm = np.array([[5, 1], [2, 0]])
    fig = confusion_figure(cm, ["a", "b"], normalize=False)
    np.testing.assert_allclose(np.asarray(fig.data[0].z, dtype=float), cm)
    assert fig.data[0].text[0][0] == "5"
    assert fig.data[0].zmax == 5.0


@pytest.mark.parametrize(
    ("matrix", "labels", "needle"),
    [
        (np.zeros((2, 3)), ["a", "b"], "square"),
        (np.zeros((2, 2)), ["a", "b", "c"], "label"),
        (np.array([[1, -1], [0, 1]]), ["a", "b"], "negative"),
        (np.array([[1, np.nan], [0, 1]]), ["a", "b"], "NaN"),
        (np.zeros((2, 2)), ["a", "a"], "repeat"),
        (np.array([["x", "y"], ["z", "w"]]), ["a", "b"], "numbers"),
    ],
)
def test_confusion_bad_input(matrix: np.ndarray, labels: list[str], needle: str) -> None:
    with pytest.raises(PlotInputError, match=needle) as info:
        confusion_figure(matrix, labels)
    assert isinstance(info.value, LensEmotionError)


# ------------------------------------------------------------------------------------ distribution


def test_label_distribution_single_series_colours_and_order() -> None:
    fig = label_distribution_figure({"joy": 5, "anger": 2, "zzz": 1}, title="Predicted")
    assert len(fig.data) == 1
    bar = fig.data[0]
    assert list(bar.x) == ["anger", "joy", "zzz"]  # canonical emotions first, then others
    assert list(bar.y) == [2, 5, 1]
    assert list(bar.marker.color) == [
        EMOTION_COLORS["anger"],
        EMOTION_COLORS["joy"],
        emotion_color("zzz"),
    ]
    assert fig.layout.title.text == "Predicted"


def test_label_distribution_accepts_series() -> None:
    counts = pd.Series(["joy", "joy", "fear"]).value_counts()
    fig = label_distribution_figure(counts)
    assert dict(zip(fig.data[0].x, fig.data[0].y, strict=True)) == {"fear": 1, "joy": 2}


def test_label_distribution_human_vs_predicted() -> None:
    fig = label_distribution_figure(
        {"human": {"joy": 2, "fear": 2}, "predicted": pd.Series({"joy": 3, "anger": 1})},
        normalize=True,
    )
    data_traces = [t for t in fig.data if t.x is not None and t.x[0] is not None]
    legend_traces = [t for t in fig.data if t.showlegend]
    assert [t.name for t in data_traces] == ["human", "predicted"]
    assert [t.name for t in legend_traces] == ["human", "predicted"]
    human, predicted = data_traces
    assert list(human.x) == list(predicted.x) == ["anger", "fear", "joy"]
    np.testing.assert_allclose(human.y, [0.0, 0.5, 0.5])
    np.testing.assert_allclose(predicted.y, [0.25, 0.0, 0.75])
    assert human.marker.pattern.shape != predicted.marker.pattern.shape
    assert fig.layout.barmode == "group"
    assert fig.layout.yaxis.title.text == "Share"


def test_label_distribution_label_order() -> None:
    fig = label_distribution_figure({"joy": 1}, label_order=["trust", "joy"])
    assert list(fig.data[0].x) == ["trust", "joy"]
    assert list(fig.data[0].y) == [0, 1]
    with pytest.raises(PlotInputError, match="leaves out"):
        label_distribution_figure({"joy": 1, "fear": 1}, label_order=["joy"])


@pytest.mark.parametrize(
    "bad",
    [{}, {"joy": -1}, {"joy": "many"}, {"joy": float("inf")}, {"a": 1, "b": {"joy": 1}}, [1, 2]],
)
def test_label_distribution_bad_input(bad: object) -> None:
    with pytest.raises(PlotInputError):
        label_distribution_figure(bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ html output


def _small_fig() -> go.Figure:
    return confusion_figure(np.array([[1, 2], [3, 4]]), ["joy", "fear"], title="Small <b>fig</b>")


def test_write_figure_html_is_self_contained(tmp_path: Path) -> None:
    paths = write_figure(_small_fig(), tmp_path / "sub" / "conf")
    assert paths == [tmp_path / "sub" / "conf.html"]
    page = paths[0].read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")
    assert get_plotlyjs()[:300] in page  # plotly.js embedded
    assert page.count("plotly.js v") == 1
    assert external_tag_refs(page) == []
    assert not re.search(r"<script[^>]*\bsrc=", page, re.IGNORECASE)
    assert "mathjax/" not in page.lower()  # no MathJax loader URL injected by plotly.py
    assert '"typesetMath": false' in page
    assert "<title>Small &lt;b&gt;fig&lt;/b&gt;</title>" in page
    # no leftover temp files
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["conf.html"]


def test_write_figure_strips_known_suffix_and_dedups(tmp_path: Path) -> None:
    paths = write_figure(_small_fig(), str(tmp_path / "fig.html"), formats=["HTML", "html"])
    assert paths == [tmp_path / "fig.html"]
    # a dotted stem that is not a format suffix is kept
    paths = write_figure(_small_fig(), tmp_path / "layer3.5")
    assert paths == [tmp_path / "layer3.5.html"]


@pytest.mark.parametrize("formats", [("gif",), (), "html"])
def test_write_figure_rejects_bad_formats(tmp_path: Path, formats: object) -> None:
    with pytest.raises(PlotInputError):
        write_figure(_small_fig(), tmp_path / "x", formats=formats)  # type: ignore[arg-type]


def test_figure_html_fragment_is_a_div_without_plotlyjs() -> None:
    frag = figure_html_fragment(_small_fig(), div_id="fig-a")
    assert frag.lstrip().startswith("<div")
    assert "<html" not in frag.lower()
    assert 'id="fig-a"' in frag
    assert "plotly.js v" not in frag
    assert external_tag_refs(frag) == []
    with_js = figure_html_fragment(_small_fig(), include_plotlyjs=True)
    assert "plotly.js v" in with_js
    assert external_tag_refs(with_js) == []


def test_figure_html_fragment_rejects_unsafe_div_id() -> None:
    with pytest.raises(PlotInputError, match="div_id"):
        figure_html_fragment(_small_fig(), div_id='x"); alert(1); ("')


def test_fragment_without_height_gets_fixed_height() -> None:
    frag = figure_html_fragment(go.Figure(go.Bar(x=["a"], y=[1])))
    assert "height:480px" in frag


# ------------------------------------------------------------------------------------ static export


def test_static_export_without_kaleido_raises_with_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kaleido", None)  # makes `import kaleido` fail
    with pytest.raises(StaticExportError) as info:
        write_figure(_small_fig(), tmp_path / "fig", formats=("html", "png"))
    message = str(info.value)
    assert "pip install kaleido" in message
    assert "apt-get install chromium" in message
    assert "BROWSER_PATH" in message
    assert isinstance(info.value, LensEmotionError)
    assert list(tmp_path.iterdir()) == []  # checked before writing anything


def _fake_kaleido(calls: list[dict[str, object]]) -> types.ModuleType:
    module = types.ModuleType("kaleido")

    def calc_fig_sync(fig: dict, opts: dict, kopts: dict) -> bytes:
        calls.append(
            {"fig": fig, "opts": opts, "kopts": kopts, "env": os.environ.get("BROWSER_PATH")}
        )
        return f"fake-{opts['format']}".encode()

    module.calc_fig_sync = calc_fig_sync  # type: ignore[attr-defined]
    return module


def test_static_export_without_browser_raises_with_install_hint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kaleido", _fake_kaleido([]))
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setattr(plots, "_find_browser", lambda: None)
    with pytest.raises(StaticExportError) as info:
        write_figure(_small_fig(), tmp_path / "fig", formats=("svg",))
    message = str(info.value)
    assert "apt-get install chromium" in message
    assert "BROWSER_PATH" in message and "/usr/bin/chromium" in message
    assert list(tmp_path.iterdir()) == []


def test_static_export_bad_browser_path_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kaleido", _fake_kaleido([]))
    missing = str(tmp_path / "no-such-chromium")
    monkeypatch.setenv("BROWSER_PATH", missing)
    with pytest.raises(StaticExportError, match="no-such-chromium"):
        write_figure(_small_fig(), tmp_path / "fig", formats=("pdf",))


def test_static_export_old_kaleido_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = types.ModuleType("kaleido")
    old.__version__ = "0.2.1"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kaleido", old)
    with pytest.raises(StaticExportError, match="0.2.1 is too old"):
        write_figure(_small_fig(), tmp_path / "fig", formats=("png",))


def test_static_export_uses_found_browser_and_disables_mathjax(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[dict[str, object]] = []
    monkeypatch.setitem(sys.modules, "kaleido", _fake_kaleido(calls))
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    monkeypatch.setattr(plots, "_find_browser", lambda: "/opt/fake/chromium")
    paths = write_figure(_small_fig(), tmp_path / "fig", formats=("html", "png", "svg", "pdf"))
    assert [p.name for p in paths] == ["fig.html", "fig.png", "fig.svg", "fig.pdf"]
    assert all(call["env"] == "/opt/fake/chromium" for call in calls)
    assert "BROWSER_PATH" not in os.environ  # set for kaleido only, then restored
    assert (tmp_path / "fig.png").read_bytes() == b"fake-png"
    assert (tmp_path / "fig.pdf").read_bytes() == b"fake-pdf"
    assert len(calls) == 3
    assert all(call["kopts"] == {"mathjax": False} for call in calls)
    opts = calls[0]["opts"]
    assert isinstance(opts, dict) and opts["scale"] == 2.0 and opts["width"] > 0


def test_kaleido_failure_becomes_static_export_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = types.ModuleType("kaleido")

    class ChromeNotFoundError(RuntimeError):
        pass

    def calc_fig_sync(*args: object, **kwargs: object) -> bytes:
        raise ChromeNotFoundError("boom")

    module.calc_fig_sync = calc_fig_sync  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kaleido", module)
    monkeypatch.setattr(plots, "_find_browser", lambda: "/opt/fake/chromium")
    monkeypatch.delenv("BROWSER_PATH", raising=False)
    with pytest.raises(StaticExportError, match="could not start the browser"):
        write_figure(_small_fig(), tmp_path / "fig", formats=("html", "png"))
    assert list(tmp_path.iterdir()) == []  # all or nothing: the html was not written either
    assert "BROWSER_PATH" not in os.environ


def test_find_browser_prefers_browser_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    exe = tmp_path / "my-chromium"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    monkeypatch.setenv("BROWSER_PATH", str(exe))
    assert plots._find_browser() == str(exe)


def _real_static_export_available() -> bool:
    try:
        import kaleido  # noqa: F401
    except ImportError:
        return False
    return plots._find_browser() is not None


@pytest.mark.skipif(
    not _real_static_export_available(), reason="kaleido and a Chromium browser not installed"
)
def test_real_static_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BROWSER_PATH", os.environ.get("BROWSER_PATH") or plots._find_browser())
    png, svg = write_figure(_small_fig(), tmp_path / "fig", formats=("png", "svg"))
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "<svg" in svg.read_text(encoding="utf-8")[:500]


def test_chromium_lookup_is_not_required_for_html(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "kaleido", None)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert write_figure(_small_fig(), tmp_path / "f") == [tmp_path / "f.html"]
