"""The real demo (quick sizes, SmolLM2, built-in samples) opened in headless Chromium, offline."""

from __future__ import annotations

import json
import shutil

import pytest

from lens_emotion.demo.runner import STEPS


@pytest.fixture(scope="module")
def quick_demo(smollm2, tmp_path_factory):
    """The demo as a user runs it: ``lens-emotion demo --quick`` (its defaults otherwise)."""
    from lens_emotion.cli import main

    out = tmp_path_factory.mktemp("demo")
    assert main(["demo", "--quick", "--quiet", "--out", str(out)]) == 0
    return out / "index.html"


@pytest.mark.integration
def test_quick_demo_on_smollm2_runs_every_analysis(quick_demo):
    manifest = json.loads((quick_demo.parent / "manifest.json").read_text())
    assert manifest["skipped"] == {}  # every analysis ran on the real model
    assert set(manifest["summary"]) == set(STEPS)
    assert manifest["model"]["weight_sha256"] and manifest["seed"] == 0
    patching = manifest["summary"]["patching"]
    assert patching["pairs"] > 0
    assert {p["site"] for p in patching["peaks"]} == {"attn_out", "mlp_out", "resid_post"}
    # resid_post patched over the last layers carries the whole answer: transfer rises late
    late = next(p for p in patching["peaks"] if p["site"] == "resid_post")
    assert late["peak_transfer"] > 0.5
    html = quick_demo.read_text()
    for section in ("Causal localization", "Attribution patching", "Appraisal steering"):
        assert section in html
    assert "Emotion circuits" in html
    # every link in the page points at a file that exists
    import re

    for href in re.findall(r'href="([^"#:]+)"', html):
        assert (quick_demo.parent / href).exists(), href


@pytest.mark.integration
def test_quick_demo_page_renders_offline_in_chromium(quick_demo, offline_page):
    page = offline_page.page
    page.goto(quick_demo.as_uri())
    page.wait_for_load_state("load")
    page.wait_for_selector(".js-plotly-plot .main-svg", timeout=30_000)
    n_plots = page.locator(".js-plotly-plot").count()
    n_rendered = page.locator(".js-plotly-plot .main-svg").count()
    assert n_plots >= 10 and n_rendered >= n_plots  # every Plotly figure drew its SVG
    assert offline_page.errors == []  # no console errors
    assert offline_page.requests == []  # nothing tried to reach the network
    shot = quick_demo.parent / "demo_page.png"
    page.screenshot(path=str(shot), full_page=False)
    assert shot.stat().st_size > 10_000
    shutil.copyfile(shot, "/tmp/demo_page.png")
