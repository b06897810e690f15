"""run_inference: the files, the manifest, the settings, and the CLI printout built on it."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from lens_emotion.cli import main
from lens_emotion.errors import TemplateError
from lens_emotion.inference import (
    CalibrationError,
    InferenceError,
    InferenceSettings,
    infer_emotions,
    run_inference,
)


@pytest.fixture(scope="module")
def rows(sample_dataset):
    return sample_dataset.sample(26, seed=1)


def test_run_inference_writes_predictions_metrics_figure_and_manifest(tiny_llama, rows, tmp_path):
    settings = InferenceSettings(batch_size=8, seed=3)  # calibrate "auto": mean on emotion-list
    outputs = run_inference(tiny_llama, rows, tmp_path, settings, progress=False, command="x")
    names = [p.name for p in outputs.files]
    assert names == ["predictions.csv", "metrics.json", "confusion.html", "manifest.json"]
    assert all(p.is_file() and p.parent == tmp_path for p in outputs.files)
    assert outputs.calibration == "mean" and outputs.result.calibration == "mean"

    frame = pd.read_csv(tmp_path / "predictions.csv")
    pd.testing.assert_frame_equal(frame, outputs.result.table, check_dtype=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["calibration"] == "mean" and metrics["n"] == 26
    assert set(metrics["accuracy_by_calibration"]) == {
        "none",
        "content-free",
        "mean",
        "mean-heldout",
    }
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert metrics["manifest"] == manifest == outputs.manifest
    assert manifest["command"] == "x" and manifest["seed"] == 3
    assert manifest["settings"]["calibrate"] == "auto"
    assert manifest["settings"]["calibration"] == "mean"
    assert manifest["settings"]["batch_size"] == 8 and manifest["settings"]["formats"] == ["html"]
    assert manifest["template"]["name"] == "emotion-list" and manifest["data"]["n"] == 26
    assert {"inference", "figures", "total"} <= set(manifest["timings_s"])
    assert set(outputs.figures) == {"confusion"}


def test_run_inference_scores_exactly_what_infer_emotions_scores(tiny_llama, rows, tmp_path):
    settings = InferenceSettings(calibrate="mean-heldout", heldout_fraction=0.25, seed=5)
    outputs = run_inference(tiny_llama, rows, tmp_path, settings, progress=False)
    direct = infer_emotions(
        tiny_llama, rows, "emotion-list", calibrate="mean-heldout", heldout_fraction=0.25, seed=5,
        progress=False,
    )  # fmt: skip
    np.testing.assert_array_equal(outputs.result.logprobs, direct.logprobs)
    assert outputs.result.predictions == direct.predictions
    assert outputs.result.n_scored == direct.n_scored == 26 - round(0.25 * 26)


def test_summary_holds_the_headline_numbers(tiny_llama, rows, tmp_path):
    outputs = run_inference(
        tiny_llama, rows, tmp_path, InferenceSettings(calibrate="none"), progress=False
    )
    summary = outputs.summary()
    result = outputs.result
    assert summary["n"] == 26 and summary["calibration"] == "none"
    assert summary["calibrate"] == "none" and result.calibration is None
    assert summary["accuracy"] == pytest.approx(result.accuracy)
    assert summary["macro_f1"] == pytest.approx(result.macro_f1)
    assert summary["accuracy_by_calibration"]["none"] == pytest.approx(result.accuracy)
    assert summary["prompts_per_second"] == pytest.approx(26 / result.seconds)
    assert summary["files"] == [str(p) for p in outputs.files[:-1]]
    assert summary["manifest"] == str(tmp_path / "manifest.json")
    json.dumps(summary)  # JSON-ready


def test_settings_are_checked_when_made():
    with pytest.raises(InferenceError, match="heldout_fraction"):
        InferenceSettings(heldout_fraction=1.0)
    with pytest.raises(InferenceError, match="batch_size"):
        InferenceSettings(batch_size=0)
    with pytest.raises(InferenceError, match="engine"):
        InferenceSettings(engine="fast")
    with pytest.raises(InferenceError, match="formats"):
        InferenceSettings(formats=("gif",))
    with pytest.raises(CalibrationError, match="calibrate must be one of"):
        InferenceSettings(calibrate="median")
    with pytest.raises(TemplateError):
        InferenceSettings(template="no-such-template")
    # TOML arrays arrive as lists and become tuples; bools mean what infer_emotions says
    settings = InferenceSettings(formats=["html", "svg"], label_names=["joy", "anger"])
    assert settings.formats == ("html", "svg") and settings.label_names == ("joy", "anger")
    assert InferenceSettings(formats="png").formats == ("png",)
    assert InferenceSettings(calibrate=True).calibration == "content-free"
    assert InferenceSettings(template="control-first-word").calibration == "none"
    assert dataclasses.is_dataclass(settings) and dataclasses.fields(settings)


def test_cli_defaults_are_the_settings_defaults():
    from lens_emotion.cli.main import build_parser

    args = build_parser().parse_args(["infer", "--out", "o"])
    defaults = InferenceSettings()
    for name in ("template", "calibrate", "heldout_fraction", "batch_size", "seed"):
        assert getattr(args, name) == getattr(defaults, name), name


def test_cli_prints_the_summary_as_before(tiny_llama_dir, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["infer", "--model", str(tiny_llama_dir), "--dataset", "sample", "--limit", "26"]
    assert main([*argv, "--calibrate", "content-free", "--out", str(out), "--quiet"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    metrics = json.loads((out / "metrics.json").read_text())
    by = metrics["accuracy_by_calibration"]
    assert lines[0].startswith(
        f"n=26  accuracy={metrics['accuracy']:.3f}  macro_f1={metrics['macro_f1']:.3f}  "
        "calibration=content-free (--calibrate content-free)  ("
    )
    assert lines[0].endswith(" prompts/s)") and float(lines[0].split("(")[-1].split()[0]) > 0
    assert lines[1] == "accuracy by calibration, same forward pass: " + "  ".join(
        f"{k}={v:.3f}" for k, v in by.items()
    )
    assert lines[2] == f"wrote {out / 'predictions.csv'}, {out / 'metrics.json'}, " + str(
        out / "confusion.html"
    )
    assert len(lines) == 3


def test_cli_control_task_prints_na_for_calibrations_that_do_not_apply(
    tiny_llama_dir, tmp_path, capsys
):
    # the control task has no content-free comparison (its labels are the texts' first
    # words): the printout used to fail formatting None
    argv = ["infer", "--model", str(tiny_llama_dir), "--dataset", "sample", "--limit", "26"]
    argv += ["--template", "control-first-word", "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "calibration=none (--calibrate auto)" in out and "content-free=n/a" in out


def test_paper_figures_inference_section_runs_the_workflow(tiny_llama, crowd_envent_path, tmp_path):
    from lens_emotion.paper_figures import load_figures_config, make_figures

    config = tmp_path / "c.toml"
    config.write_text(
        f"title = 'inference'\nformats = ['html']\nseed = 2\n[data]\n"
        f"crowd_envent = '{crowd_envent_path}'\nn_rows = 26\n"
        "[inference]\ntemplate = 'paper'\ncalibrate = 'none'\nbatch_size = 8\n"
    )
    outputs = make_figures(load_figures_config(config), tmp_path / "f", model=tiny_llama)
    assert not outputs.failed
    run = tmp_path / "f" / "runs" / "inference"
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["settings"]["template"] == "paper" and manifest["seed"] == 2
    assert manifest["settings"]["calibration"] == "none"
    assert len(pd.read_csv(run / "predictions.csv")) == 26
    assert (tmp_path / "f" / "inference_confusion.html").is_file()
