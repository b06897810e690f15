"""The offline inspector page, loaded in headless Chromium.

The browser tests need Playwright (``pip install playwright``) and Debian's Chromium at
/usr/bin/chromium; Playwright's own browser downloads are never used. They skip otherwise.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest

from lens_emotion.attention.inspector import MAX_SAMPLES, InspectorError, build_inspector


@pytest.fixture(scope="module")
def inspector_page(tiny_llama, sample_dataset, tmp_path_factory):
    out = tmp_path_factory.mktemp("inspector")
    return build_inspector(tiny_llama, sample_dataset, limit=5, out_dir=out, progress=False)


def _rendered(page, state: str) -> None:
    # A selector wait needs no eval(), which the page's Content-Security-Policy forbids.
    page.wait_for_selector(f'body[data-rendered="{state}"]', state="attached", timeout=15_000)


def test_inspector_page_works_offline(inspector_page, offline_page, tmp_path):
    page = offline_page.page
    page.goto(inspector_page.as_uri())
    page.wait_for_selector("body[data-rendered]")
    assert page.get_attribute("body", "data-rendered") == "0/1/-1"  # sample 0, middle layer
    assert page.locator("#sample option").count() == 5
    assert page.locator("#head option").count() == 4 + 1  # query heads + mean
    attention_before = page.inner_html("#attn-tokens")
    grid_before = page.inner_html("#grid")

    page.select_option("#layer", "0")
    _rendered(page, "0/0/-1")
    assert page.get_attribute("#attn-tokens", "data-layer") == "0"
    assert page.inner_html("#attn-tokens") != attention_before
    assert page.inner_html("#grid") != grid_before  # selected cell moved

    page.select_option("#head", "2")
    _rendered(page, "0/0/2")
    assert "head 2" in page.inner_text("#attn-title")

    text_before = page.inner_text("#text")
    page.select_option("#sample", "3")
    _rendered(page, "3/0/2")
    assert page.inner_text("#text") != text_before
    assert page.locator("#saliency .tok").count() > 0
    assert page.locator("#probs rect").count() == 13

    page.locator("#grid rect.cell").nth(3).click()  # layer 0, head 2 (column 0 is the mean)
    _rendered(page, "3/0/2")
    page.locator("#grid rect.cell").nth(5).click()  # layer 1, mean of heads
    _rendered(page, "3/1/-1")
    assert page.locator("#matrix").is_visible()  # layer 1 has a stored full matrix

    assert offline_page.requests == []
    assert offline_page.errors == []
    shot = tmp_path / "inspector.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    shutil.copyfile(shot, "/tmp/inspector.png")


def test_inspector_page_is_self_contained(inspector_page):
    page = inspector_page.read_text()
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    assert not re.search(r"<script[^>]*\bsrc\s*=", page)
    assert not re.search(r"""(href|src)\s*=\s*["']?(https?:)?//""", page)
    blocks = re.findall(r'<script type="application/json" id="sample-(\d+)">', page)
    assert blocks == [str(i) for i in range(5)]
    meta = json.loads(re.search(r'id="meta">(.*?)</script>', page).group(1))
    assert meta["matrixLayers"] == [0, 1] and meta["heads"] == [0, 1, 2, 3]
    assert meta["manifest"]["model"]["n_heads"] == 4


def test_inspector_refuses_too_many_samples(tiny_llama, sample_dataset, tmp_path):
    assert MAX_SAMPLES == 200
    with pytest.raises(InspectorError, match="max_samples") as info:
        build_inspector(tiny_llama, sample_dataset, limit=5, max_samples=4, out_dir=tmp_path)
    assert "--limit 4 or less" in str(info.value)
    with pytest.raises(InspectorError, match="at least 1"):
        build_inspector(tiny_llama, sample_dataset, limit=0, out_dir=tmp_path)
    with pytest.raises(InspectorError, match="matrix_layers"):
        build_inspector(
            tiny_llama, sample_dataset, limit=2, layers=[0], matrix_layers=[1], out_dir=tmp_path
        )
    assert not (tmp_path / "index.html").exists()


def test_inspector_script_and_style_are_package_data(inspector_page):
    from importlib import resources

    assets = resources.files("lens_emotion.viz").joinpath("assets")
    js = assets.joinpath("inspector.js").read_text(encoding="utf-8")
    css = assets.joinpath("inspector.css").read_text(encoding="utf-8")
    assert js.startswith('"use strict";') and "function renderMatrix" in js
    assert "#grid rect.cell" in css
    page = inspector_page.read_text()
    assert js in page and css in page
