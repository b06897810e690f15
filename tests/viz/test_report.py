from __future__ import annotations

import html
import json
import re
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs

from lens_emotion.errors import LensEmotionError
from lens_emotion.viz import confusion_figure, label_distribution_figure
from lens_emotion.viz.report import Report, ReportError, format_value

TAG = re.compile(r"<(script|link|img|iframe|source|a)\b[^>]*>", re.IGNORECASE)
URL_ATTR = re.compile(r"""\b(?:src|href)\s*=\s*["']?\s*([^"'\s>]+)""", re.IGNORECASE)


def tag_urls(page: str, tags: tuple[str, ...] = ("script", "link")) -> list[str]:
    urls = []
    for match in TAG.finditer(page):
        if match.group(1).lower() in tags:
            urls.extend(URL_ATTR.findall(match.group(0)))
    return urls


def build_report(tmp_path: Path) -> tuple[Report, Path]:
    (tmp_path / "report").mkdir(exist_ok=True)
    (tmp_path / "report" / "predictions.csv").write_text("id,label\n1,joy\n")
    report = Report("Emotion probe <SmolLM2> & friends")
    report.add_section(
        "Accuracy",
        text="Held-out split.\n<script>alert('x')</script>\n\nSecond paragraph & more.",
        metrics={"accuracy": 0.8123456, "n_items": 1200, "macro_f1": np.float32(0.5), "ok": True},
        figures=[confusion_figure(np.array([[3, 1], [0, 4]]), ["joy", "fear"], title="CM")],
        links={"predictions": "predictions.csv", "per-layer <stats>": "stats/layer 3.json"},
    )
    report.add_section(
        "Label distribution",
        figures=[label_distribution_figure({"human": {"joy": 3}, "predicted": {"fear": 2}})],
        html=['<div class="cv-view"><b>attention view</b></div>'],
    )
    report.set_manifest(
        {
            "model": "smollm2-135m",
            "data_sha256": "ab" * 32,
            "seed": 1234,
            "versions": {"torch": "2.13.0", "lens_emotion": "0.1.0"},
            "timings_s": {"load": 1.5, "score": np.float64(2.25)},
            "out_dir": Path("out/run1"),
        }
    )
    return report, tmp_path / "report" / "index.html"


def test_report_is_single_self_contained_file(tmp_path: Path) -> None:
    report, target = build_report(tmp_path)
    written = report.write(target)
    assert written == target
    # no temp leftovers
    assert sorted(p.name for p in target.parent.iterdir()) == ["index.html", "predictions.csv"]
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>")

    # plotly.js embedded exactly once, both figures present
    assert page.count(get_plotlyjs()[:400]) == 1
    assert page.count("plotly.js v") == 1
    assert page.count('class="plotly-graph-div"') == 2
    assert 'id="fig-1-1"' in page and 'id="fig-2-1"' in page

    # no network: no script/link/img/iframe src/href pointing anywhere outside the file
    urls = tag_urls(page, ("script", "link", "img", "iframe", "source"))
    assert all(not re.match(r"(?:[a-z]+:)?//", u, re.IGNORECASE) for u in urls), urls
    assert not any(u.lower().startswith(("http://", "https://")) for u in tag_urls(page))
    assert not re.search(r"<script[^>]*\bsrc=", page, re.IGNORECASE)
    assert not re.search(r"<link\b", page, re.IGNORECASE)
    assert "<style>" in page


def test_report_escapes_user_text(tmp_path: Path) -> None:
    report, target = build_report(tmp_path)
    page = report.write(target).read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in page
    assert "<script>alert('x')</script>" not in page
    assert "<title>Emotion probe &lt;SmolLM2&gt; &amp; friends</title>" in page
    assert "<h1>Emotion probe &lt;SmolLM2&gt; &amp; friends</h1>" in page
    assert "Second paragraph &amp; more." in page
    assert "per-layer &lt;stats&gt;" in page
    # raw html fragments go in as-is
    assert '<div class="cv-view"><b>attention view</b></div>' in page


def test_report_toc_metrics_links_manifest(tmp_path: Path) -> None:
    report, target = build_report(tmp_path)
    page = report.write(target).read_text(encoding="utf-8")

    # table of contents points at each section
    assert '<a href="#s1-accuracy">Accuracy</a>' in page
    assert '<a href="#s2-label-distribution">Label distribution</a>' in page
    assert '<section id="s1-accuracy">' in page
    assert '<a href="#manifest">Run manifest</a>' in page

    # key numbers
    assert '<th scope="row">accuracy</th><td class="num">0.8123</td>' in page
    assert '<th scope="row">n_items</th><td class="num">1200</td>' in page
    assert '<th scope="row">macro_f1</th><td class="num">0.5</td>' in page
    assert '<th scope="row">ok</th><td>true</td>' in page

    # links: relative, URL-quoted, and missing files flagged
    assert '<a href="predictions.csv">predictions</a>' in page
    assert 'href="stats/layer%203.json"' in page
    predictions_item = re.search(r"<li><a href=\"predictions.csv\".*?</li>", page)
    assert predictions_item and "missing" not in predictions_item.group(0)
    stats_item = re.search(r"<li><a href=\"stats/layer%203.json\".*?</li>", page)
    assert stats_item and "(missing)" in stats_item.group(0)

    # manifest: collapsible, pretty-printed JSON that parses back
    block = re.search(
        r'<details class="manifest">.*?<pre><code class="language-json">(.*?)</code></pre>',
        page,
        re.DOTALL,
    )
    assert block
    manifest = json.loads(html.unescape(block.group(1)))
    assert manifest["model"] == "smollm2-135m"
    assert manifest["seed"] == 1234
    assert manifest["timings_s"] == {"load": 1.5, "score": 2.25}
    assert manifest["out_dir"] == "out/run1"
    assert '\n  "versions": {' in html.unescape(block.group(1))  # pretty-printed
    assert '<th scope="row">seed</th><td class="num">1234</td>' in page


def test_report_without_figures_has_no_plotlyjs() -> None:
    report = Report("text only")
    report.add_section("Notes", "nothing plotted")
    page = report.render()
    assert "plotly.js v" not in page
    assert "Run manifest" not in page


def test_report_write_replaces_atomically(tmp_path: Path) -> None:
    target = tmp_path / "r.html"
    first = Report("first")
    first.write(target)
    second = Report("second")
    second.add_section("A")
    second.write(target)
    assert "<h1>second</h1>" in target.read_text(encoding="utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]


def test_report_render_is_deterministic(tmp_path: Path) -> None:
    a, _ = build_report(tmp_path)
    b, _ = build_report(tmp_path)
    assert a.render() == b.render()


def test_figure_snapshot_taken_at_add_time() -> None:
    fig = go.Figure(go.Bar(x=["joy"], y=[1]), layout_title_text="title-before-xyz")
    report = Report("r")
    report.add_section("s", figures=[fig])
    fig.update_layout(title_text="title-after-xyz")
    page = report.render()
    assert "title-before-xyz" in page and "title-after-xyz" not in page


@pytest.mark.parametrize(
    "fragment",
    [
        '<script src="https://cdn.example.org/x.js"></script>',
        '<link rel="stylesheet" href="http://example.org/s.css">',
        "<img src='//example.org/a.png'>",
        '<script type="module">import { render } from "https://unpkg.com/x/esm.js";</script>',
        "<style>@import 'https://fonts.example.org/f.css';</style>",
        '<div style="background: url(https://example.org/bg.png)"></div>',
    ],
)
def test_external_html_is_refused(fragment: str) -> None:
    report = Report("r")
    with pytest.raises(ReportError, match="network") as info:
        report.add_section("s", html=[fragment])
    assert "local_src" in str(info.value)
    assert isinstance(info.value, LensEmotionError)
    assert report.n_sections == 0


class FakeRenderedHTML:
    """Stand-in for circuitsvis.utils.render.RenderedHTML."""

    def __init__(self) -> None:
        self.local_src = '<div id="cv-1"></div><script type="module">/*inline*/</script>'
        self.cdn_src = '<script type="module">import {a} from "https://unpkg.com/cv";</script>'

    def __str__(self) -> str:
        return self.cdn_src


def test_circuitsvis_object_uses_offline_source() -> None:
    report = Report("r")
    report.add_section("attention", html=[FakeRenderedHTML()])
    page = report.render()
    assert '<div id="cv-1"></div>' in page
    assert "unpkg" not in page
    with pytest.raises(ReportError, match="str\\(view\\)"):
        report.add_section("attention", html=[str(FakeRenderedHTML())])


@pytest.mark.parametrize(
    "target", ["https://example.org/a.csv", "/abs/a.csv", "javascript:alert(1)", "C:/x.csv", ""]
)
def test_links_must_be_relative(target: str) -> None:
    with pytest.raises(ReportError, match="link"):
        Report("r").add_section("s", links={"bad": target})


def test_link_accepts_pathlike(tmp_path: Path) -> None:
    report = Report("r")
    report.add_section("s", links={"csv": Path("out") / "a.csv"})
    assert 'href="out/a.csv"' in report.render()


def test_bad_figure_and_manifest_types() -> None:
    report = Report("r")
    with pytest.raises(ReportError, match="go.Figure"):
        report.add_section("s", figures=[{"data": []}])  # type: ignore[list-item]
    with pytest.raises(ReportError, match="mapping"):
        report.set_manifest([("model", "x")])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "\u2014"),
        (True, "true"),
        (np.int64(7), "7"),
        (0.0, "0"),
        (0.5, "0.5"),
        (0.123456, "0.1235"),
        (1234.5, "1234.5"),
        (1.5e-7, "1.5e-07"),
        (float("nan"), "nan"),
        ([1, 2], "[1, 2]"),
        ("text", "text"),
    ],
)
def test_format_value(value: object, text: str) -> None:
    assert format_value(value) == text
