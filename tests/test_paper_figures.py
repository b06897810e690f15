import json

import pytest

from lens_emotion.paper_figures import (
    ANALYSES,
    FiguresConfigError,
    load_figures_config,
    make_figures,
)

GOOD = """
title = "smoke"
seed = 3
formats = ["html", "svg"]

[data]
n_rows = 40

[probing]
sites = ["resid_post"]
n_folds = 2
"""


def _write(tmp_path, text, name="c.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_shipped_configs_are_valid():
    from pathlib import Path

    # Figure-set configs; configs/sweep-*.toml are sweep configs (tests/sweep checks them).
    root = Path(__file__).resolve().parents[1].joinpath("configs")
    configs = sorted(p for p in root.glob("*.toml") if not p.name.startswith("sweep-"))
    assert {p.name for p in configs} >= {"tak2025.toml", "wang2025.toml"}
    for path in configs:
        config = load_figures_config(path)
        assert config.analyses and set(config.analyses) <= set(ANALYSES)
    tak = load_figures_config(configs[0].parent / "tak2025.toml")
    assert {"probing", "patching", "steering", "attention"} <= set(tak.analyses)
    assert set(tak.formats) == {"html", "png", "svg", "pdf"}


def test_config_is_parsed_with_hash(tmp_path):
    config = load_figures_config(_write(tmp_path, GOOD))
    assert config.seed == 3 and config.formats == ("html", "svg")
    assert config.analyses == {"probing": {"sites": ["resid_post"], "n_folds": 2}}
    assert len(config.sha256) == 64 and config.describe()["data"] == {"n_rows": 40}


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("[probing]\nsitez = ['x']\n", "sitez"),
        ("[probng]\n", "probng"),
        ("formats = ['gif']\n[probing]\n", "gif"),
        ("title = 'nothing'\n", "at least one analysis"),
        ("[data]\nrows = 3\n[probing]\n", "rows"),
        ("[probing\n", "TOML"),
    ],
)
def test_bad_configs_fail_clearly(tmp_path, text, needle):
    with pytest.raises(FiguresConfigError, match=needle):
        load_figures_config(_write(tmp_path, text))


def test_missing_config_names_the_fix(tmp_path):
    with pytest.raises(FiguresConfigError, match="configs/"):
        load_figures_config(tmp_path / "nope.toml")


@pytest.mark.integration
def test_smoke_config_writes_styled_figures_and_manifest(smollm2, crowd_envent_path, tmp_path):
    text = GOOD.replace("[data]\n", f"[data]\ncrowd_envent = '{crowd_envent_path}'\n")
    text += "\n[attention]\nrows = 4\nlayers = [0, 14, 29]\n"
    out = tmp_path / "figs"
    outputs = make_figures(load_figures_config(_write(tmp_path, text)), out, model=smollm2)
    assert set(outputs.files) == {"probing", "attention"}
    html = [p for v in outputs.files.values() for p in v if p.suffix == ".html"]
    assert any(p.name.startswith("probing_") for p in html)
    assert any(p.name.startswith("attention_") for p in html)
    svg = [p for v in outputs.files.values() for p in v if p.suffix == ".svg"]
    # static export needs kaleido + Chromium (./run setup-static); otherwise a note says so
    assert svg or any("static export unavailable" in n for n in outputs.notes)
    for path in svg:
        assert path.read_text().lstrip().startswith("<svg")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["sha256"] == load_figures_config(tmp_path / "c.toml").sha256
    assert manifest["seed"] == 3 and manifest["model"]["weight_sha256"]
    assert manifest["data"]["n"] == 40
    assert any((out / "runs" / "probing").glob("*.csv"))


@pytest.mark.integration
def test_a_failing_analysis_does_not_lose_the_others(tiny_llama, crowd_envent_path, tmp_path):
    from lens_emotion.cli import main

    text = (
        f"title = 'partial'\nformats = ['html']\n[data]\ncrowd_envent = '{crowd_envent_path}'\n"
        "n_rows = 26\n[patching]\nn_pairs = 0\n[attention]\nrows = 2\nlayers = [0, 1]\n"
    )
    config = _write(tmp_path, text)
    outputs = make_figures(load_figures_config(config), tmp_path / "a", model=tiny_llama)
    assert set(outputs.failed) == {"patching"}
    assert "PatchingError" in outputs.failed["patching"] and "n_pairs" in outputs.failed["patching"]
    assert set(outputs.files) == {"attention"} and outputs.files["attention"]
    manifest = json.loads((tmp_path / "a" / "manifest.json").read_text())
    assert manifest["failed"] == outputs.failed
    # The command reports the failure and exits non-zero after writing the rest.
    assert main(["figures", "--config", str(config), "--out", str(tmp_path / "b")]) == 1
    assert (tmp_path / "b" / "manifest.json").is_file()
