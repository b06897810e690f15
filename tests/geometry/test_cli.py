from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from lens_emotion.cli import main
from lens_emotion.cli.main import build_parser
from lens_emotion.geometry import GeometrySettings


def test_options_default_to_the_settings_dataclass():
    args = build_parser().parse_args(["geometry", "--out", "x"])
    defaults = GeometrySettings()
    for f in dataclasses.fields(GeometrySettings):
        value = getattr(args, f.name)
        expected = getattr(defaults, f.name)
        assert value == expected or (f.name == "layers" and not value and not expected), f.name
    assert args.model == "smollm2-135m-instruct" and args.sev_path is None


def test_bad_options_fail_before_any_model_load(monkeypatch, capsys, tmp_path):
    import lens_emotion.cli.geometry as command

    def no_model(args):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(command, "load_model_from_args", no_model)
    assert main(["geometry", "--out", str(tmp_path), "--rows", "most"]) == 2
    assert main(["geometry", "--out", str(tmp_path), "--figure-layer", "middle"]) == 2
    assert "figure_layer" in capsys.readouterr().err
    missing = tmp_path / "none.csv"
    assert main(["geometry", "--out", str(tmp_path), "--data-path", str(missing)]) == 2
    assert "not found" in capsys.readouterr().err


@pytest.mark.integration
def test_geometry_defaults_on_smollm2(smollm2, crowd_envent_path, sev_path, tmp_path, capsys):
    argv = ["geometry", "--data-path", str(crowd_envent_path), "--sev-path", str(sev_path)]
    argv += ["--n-rows", "39", "--n-boot", "50", "--n-perm", "99", "--n-random", "100"]
    argv += ["--n-sev-scenarios", "1", "--out", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "PC1 ~ human valence" in captured.out and "RSA vs appraisal profiles" in captured.out
    assert "crowd-enVENT vs SEV" in captured.out
    assert "[geometry] activations" in captured.err  # one line per step, on by default
    table = pd.read_csv(tmp_path / "geometry.csv")
    assert set(table.layer) == set(range(30)) and set(table.site) == {"resid_post"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["settings"]["vectors"] == ["mean", "probe"]
    assert manifest["sev"]["n_prompts"] == 18 and manifest["n_rows"] == 39
    assert manifest["model"]["model_id"] == "smollm2-135m-instruct"
