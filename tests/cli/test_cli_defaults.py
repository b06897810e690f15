"""Every command, run as a new user would: its documented defaults, only sizes changed.

Real SmolLM2 and real crowd-enVENT / SEV rows. These are the runs that would have caught
``probe`` dying after its work was done (``--alpha`` passed on as a string).
"""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lens_emotion.cli import COMMANDS, main

pytestmark = pytest.mark.integration

#: Commands with a defaults test: here, except ``demo`` (tests/demo/test_report_page.py runs
#: ``lens-emotion demo --quick`` and opens the page) and ``geometry`` (tests/geometry/test_cli.py).
COVERED = {"models", "data", "infer", "probe", "inspect", "patch", "attribute", "steer"}
COVERED |= {"circuits", "figures", "demo", "geometry"}
COVERED |= {"geometry"}  # its defaults test: tests/geometry/test_cli.py
COVERED |= {"sweep"}  # its defaults test: tests/sweep/test_cli.py


def test_every_command_has_a_defaults_test():
    assert set(COMMANDS) == COVERED


def test_models_and_data_list_with_defaults(capsys):
    assert main(["models", "list"]) == 0
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "licence" in out
    assert "crowd-envent: present" in out and "sev: present" in out


def test_infer_defaults(smollm2, crowd_envent_path, tmp_path, capsys):
    assert main(["infer", "--limit", "39", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "calibration=mean (--calibrate auto)" in out
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics["accuracy_by_calibration"]) >= {"none", "content-free", "mean"}
    assert metrics["calibration"] == "mean"
    assert len(pd.read_csv(tmp_path / "predictions.csv")) == 39


def test_probe_defaults(smollm2, crowd_envent_path, tmp_path, capsys):
    # exactly the command, at a smaller --limit
    argv = ["probe", "--dataset", "crowd-envent", "--data-path", str(crowd_envent_path)]
    argv += ["--limit", "130", "--seed", "0", "--sites", "attn_out,mlp_out,resid_post"]
    assert main([*argv, "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "resid_post  best layer" in out and "embedding (resid_pre 0)" in out
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["alpha"] == [1.0, 10.0, 100.0, 1000.0, 10000.0]
    assert (tmp_path / "probe_appraisals.csv").is_file() or any(tmp_path.glob("*apprais*.csv"))


def test_patch_defaults(smollm2, crowd_envent_path, tmp_path, capsys):
    assert main(["patch", "--limit", "130", "--pairs", "3", "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "peak transfer" in captured.out and "calibration mean (--calibrate auto)" in captured.out
    assert "[patch]" in captured.err  # one line per finished step, progress on by default


def test_attribute_defaults(smollm2, crowd_envent_path, tmp_path, capsys):
    assert main(["attribute", "--limit", "130", "--pairs", "3", "--out", str(tmp_path)]) == 0
    assert "vs real span-1 patching" in capsys.readouterr().out


def test_inspect_defaults(smollm2, crowd_envent_path, tmp_path):
    assert main(["inspect", "--limit", "3", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "index.html").is_file()


def test_steer_defaults_with_negative_betas_as_the_help_shows(
    smollm2, crowd_envent_path, tmp_path, capsys
):
    argv = ["steer", "--appraisal", "pleasantness", "--layer", "15", "--betas", "-8,0,8"]
    argv += ["--n", "3", "--n-probe", "80", "--max-new-tokens", "4", "--out", str(tmp_path)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "wrote" in captured.out and "Holm" in captured.out
    assert "[steer] readout sweep:" in captured.err  # one line per finished step
    assert (tmp_path / "manifest.json").is_file()


def test_circuits_defaults(smollm2, sev_path, tmp_path, capsys):
    sizes = ["--n-scenarios", "2", "--n-eval-scenarios", "2", "--n-ablation-prompts", "2"]
    sizes += ["--max-k-heads", "2", "--max-k-neurons", "4", "--n-random", "1"]
    sizes += ["--check-prompts", "1", "--gen-ablation-prompts", "1", "--n-tune-scenarios", "1"]
    sizes += ["--max-new-tokens", "4"]
    assert main(["circuits", *sizes, "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "directions: held-out projection accuracy" in captured.out
    assert "[circuits]" in captured.err  # per-step lines by default
    assert (tmp_path / "manifest.json").is_file()


def test_figures_defaults(smollm2, crowd_envent_path, tmp_path, monkeypatch):
    config = tmp_path / "small.toml"
    config.write_text(
        "title = 'small'\nformats = ['html']\n[data]\nn_rows = 26\n"
        "[probing]\nsites = ['resid_post']\nn_folds = 2\n[attention]\nrows = 2\nlayers = [0, 29]\n"
    )
    monkeypatch.chdir(tmp_path)
    assert main(["figures", "--config", str(config)]) == 0  # --out defaults to ./figures
    assert (tmp_path / "figures" / "manifest.json").is_file()
