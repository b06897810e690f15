"""Offline CircuitsVis views: the bundle is embedded, no network, input errors, rendering."""

from __future__ import annotations

import re
import socket
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from lens_emotion.viz.circuitsvis import (
    CircuitsVisError,
    OfflineView,
    attention_heads_view,
    colored_tokens_view,
    offline_fragment,
    write_views,
)


def _bundle_head() -> str:
    import circuitsvis

    bundle = Path(circuitsvis.__file__).parent / "dist" / "cdn" / "iife.js"
    return bundle.read_text(encoding="utf-8")[:2000]


def _assert_offline(page: str) -> None:
    assert not re.search(r"<script[^>]*\bsrc\s*=", page, re.IGNORECASE)
    assert "unpkg" not in page
    assert not re.search(r"""import[^;]*from\s*["'](https?:)?//""", page)
    assert "sourceMappingURL" not in page


def test_offline_views_embed_the_bundle(tmp_path):
    tokens = ["<s>", "I", " felt", " </script>", " sad"]
    pattern = np.tril(np.ones((2, 5, 5))) / np.arange(1, 6)[None, :, None]
    heads = attention_heads_view(tokens, pattern, ["L0H0", "L0H1"])
    colored = colored_tokens_view(tokens, [0.1, -0.2, 0.3, 0.0, 0.5])
    for view in (heads, colored):
        _assert_offline(view.html)
        assert _bundle_head() in view.html
        assert "</div>" in view.html.split("<script", 1)[0]  # mount div closed properly
        page = view.save(tmp_path / "view.html").read_text()
        _assert_offline(page)
        assert page.count("</script>") == 1  # token text cannot close the script early
    two = write_views(tmp_path / "two.html", [heads, colored], "two").read_text()
    _assert_offline(two)
    assert two.count(_bundle_head()) == 1  # one copy of the bundle for both views
    assert two.count("CircuitsVis.render(") >= 2


def test_offline_view_repr_makes_no_network_call(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    view = colored_tokens_view(["a", "b"], [1.0, -1.0])
    assert view._repr_html_() == view.html
    assert view.local_src == view.html
    assert isinstance(OfflineView.from_rendered(view.html), OfflineView)


def test_offline_view_input_errors():
    with pytest.raises(CircuitsVisError, match="one value per token"):
        colored_tokens_view(["a", "b"], [1.0])
    with pytest.raises(CircuitsVisError, match="shape"):
        attention_heads_view(["a", "b"], np.ones((1, 2, 3)))
    with pytest.raises(CircuitsVisError, match="RenderedHTML"):
        offline_fragment(42)
    with pytest.raises(CircuitsVisError):
        write_views("unused.html", [], "none")


def test_circuitsvis_views_render_offline(offline_page, tmp_path):
    tokens = ["<s>", "When", " my", " dog", " died", " I", " cried"]
    n = len(tokens)
    pattern = np.tril(np.random.default_rng(0).random((3, n, n)))
    pattern /= pattern.sum(-1, keepdims=True)
    heads = attention_heads_view(tokens, pattern, [f"L0H{h}" for h in range(3)], title="heads")
    colored = colored_tokens_view(tokens, np.linspace(-1, 1, n), title="saliency")
    cases = {
        "heads": ([heads], ["Head Selector", "L0H2"]),
        "tokens": ([colored], ["dog", "cried"]),
        "both": ([heads, colored], ["L0H2", "dog"]),
    }
    for name, (views, expected) in cases.items():
        path = write_views(tmp_path / f"{name}.html", views, name)
        offline_page.page.goto(path.as_uri())
        roots = offline_page.page.locator("div[id^='circuits-vis-']")
        assert roots.count() == len(views)
        for k in range(len(views)):
            roots.nth(k).locator("*").first.wait_for(timeout=15_000)  # React mounted content
        text = offline_page.page.inner_text("body")
        assert all(word in text for word in expected), text
    assert offline_page.requests == []
    assert offline_page.errors == []
