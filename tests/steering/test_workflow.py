import json

import numpy as np
import pandas as pd
import pytest

from lens_emotion.cli import main
from lens_emotion.data import CROWD_ENVENT_EMOTIONS
from lens_emotion.steering.sweeps import GENERATION_COLUMNS, STEERING_COLUMNS
from lens_emotion.steering.theory import THEORY_CHECK_FILE_COLUMNS, THEORY_SUMMARY_COLUMNS
from lens_emotion.steering.vectors import AppraisalCombo, SteeringError
from lens_emotion.steering.workflow import (
    SteeringOutputs,
    SteeringSettings,
    run_steering,
    split_rows,
)


class _LengthJudge:
    """Plumbing stand-in for the judge on tiny random models (whose text is noise)."""

    labels = CROWD_ENVENT_EMOTIONS
    label_set = "crowd-envent"
    mask_token = "[MASK]"

    def predict(self, texts, batch_size=16, progress=False, mask=True):
        return [self.labels[len(t) % 13] for t in texts]

    def describe(self):
        return {"kind": "length judge (tests)", "validation": {"accuracy": float("nan")}}


def test_split_rows_are_disjoint_stratified_and_checked(sample_dataset):
    probe, steer = split_rows(sample_dataset, 26, 52, seed=3)
    assert len(probe) == 52 and len(steer) == 26
    assert not set(probe.ids) & set(steer.ids)
    assert set(steer.labels) == set(sample_dataset.labels)  # stratified: every label kept
    with pytest.raises(SteeringError, match="lower --n"):
        split_rows(sample_dataset, 100, 100)
    with pytest.raises(SteeringError, match="n_probe >= 10"):
        split_rows(sample_dataset, 5, 4)


def test_tiny_run_writes_every_output(tiny_llama, sample_dataset, tmp_path):
    out = tmp_path / "run"
    settings = SteeringSettings(
        combos=("+pleasantness,+other_responsblt",),
        layers=(1,),
        betas=(-4.0, 0.0, 4.0),
        n=10,
        n_probe=40,
        n_controls=2,
        methods=("unique", "raw"),
        max_new_tokens=3,
        n_boot=50,
        store_dir=tmp_path / "store",
    )
    outputs = run_steering(
        tiny_llama, sample_dataset, out, settings, judge=_LengthJudge(), progress=False
    )
    for name in (
        "steering.csv",
        "readout.csv",
        "theory_checks.csv",
        "theory_summary.csv",
        "generations.jsonl",
        "directions.json",
        "manifest.json",
    ):
        assert (out / name).is_file(), name
    steering = pd.read_csv(out / "steering.csv")
    assert tuple(steering.columns) == GENERATION_COLUMNS
    assert set(steering["appraisal_combo"]) == {"+pleasantness,+other_responsblt"}
    assert set(steering["beta"]) == {-4.0, 0.0, 4.0} and set(steering["control"]) == {True, False}
    readout = pd.read_csv(out / "readout.csv")
    assert {"+pleasantness", "+other_responsblt", "raw:+pleasantness"} <= set(
        readout["appraisal_combo"]
    )
    checks = pd.read_csv(out / "theory_checks.csv")
    assert tuple(checks.columns) == THEORY_CHECK_FILE_COLUMNS
    assert set(checks["prediction"]) >= {"pleasantness+", "other_responsblt-"}
    assert set(checks["method"]) == {"unique", "raw"}
    assert (checks["n_controls"] == 2).all() and set(checks["verdict"]) <= {"pass", "fail"}
    summary = pd.read_csv(out / "theory_summary.csv")
    assert tuple(summary.columns) == THEORY_SUMMARY_COLUMNS
    assert summary["rule"].str.startswith("Holm over").all()
    assert (summary["min_p_holm"] >= summary["min_p"]).all()
    lines = (out / "generations.jsonl").read_text().splitlines()
    assert len(lines) == len(outputs.generation.conditions) * 10
    assert {"combo", "beta", "control", "event", "generation", "judged", "judged_raw"} <= set(
        json.loads(lines[0])
    )
    # the second judge (the tiny model's own readout of the masked reply) is on every row
    assert all(json.loads(x)["readout_label"] in CROWD_ENVENT_EMOTIONS for x in lines)
    assert steering["kappa"].notna().any() or steering["judges_note"].str.contains("kappa").all()
    assert {"judged_raw", "names_emotion", "fluency", "readout"} <= set(steering.columns)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["model"]["weight_sha256"]
    assert manifest["analysis"] == "steering" and manifest["n_steered"] == 10
    assert manifest["scale"] == "rms" and manifest["judge"]["kind"].startswith("length")
    assert any(k.startswith("figures/generation_sankey") for k in outputs.files)
    assert any(k.startswith("figures/readout_bars") for k in outputs.files)
    for k in outputs.files:
        assert (out / outputs.files[k]).is_file()
    directions = json.loads((out / "directions.json").read_text())
    change = directions["+pleasantness,+other_responsblt"]["1"]["readout_change_per_unit_step"]
    assert set(list(change)[:2]) == {"pleasantness", "other_responsblt"}
    # the settings are in the manifest; the outputs' tables are the written files
    assert manifest["settings"]["combos"] == ["+pleasantness,+other_responsblt"]
    assert manifest["settings"]["n_controls"] == 2 and manifest["settings"]["n_boot"] == 50
    assert {"extraction_s", "appraisal_probes_s", "readout_sweep_s", "total_s"} <= set(
        manifest["timings_s"]
    )
    pd.testing.assert_frame_equal(outputs.generation.table, outputs.steering_table)
    pd.testing.assert_frame_equal(
        pd.read_csv(out / "readout.csv"), outputs.readout_table, check_dtype=False
    )
    summary = outputs.summary()
    json.dumps(summary)  # JSON-ready
    assert summary["combos"] == ["+pleasantness,+other_responsblt"]
    assert summary["n_steered"] == 10 and summary["files"] == len(outputs.files)
    assert {t["prediction"] for t in summary["theory"]} == set(outputs.theory_summary["prediction"])
    assert summary["generation"]["outcome"] == "generation"


def test_settings_parse_combos_and_keep_the_cli_defaults():
    combo = AppraisalCombo.parse("pleasantness,other_responsblt", "+,-")
    settings = SteeringSettings(combos=(combo.name,), layers=(3,))
    assert settings.combos == ("+pleasantness,-other_responsblt",)
    assert [c.name for c in settings.appraisal_combos()] == ["+pleasantness,-other_responsblt"]
    defaults = SteeringSettings()
    assert defaults.betas == (-8.0, -4.0, 0.0, 4.0, 8.0) and defaults.formats == ("html",)
    assert defaults.n == 60 and defaults.n_probe == 400 and defaults.n_controls == 10
    assert defaults.scale == "rms" and defaults.gen_positions == "all"
    assert "summary" not in {f for f in SteeringOutputs.__dataclass_fields__}


def test_default_layer_is_the_middle_one(tiny_llama, sample_dataset, tmp_path):
    settings = SteeringSettings(
        betas=(-4.0, 0.0, 4.0),
        n=6,
        n_probe=30,
        n_controls=2,
        n_boot=20,
        theory=False,
        generate=False,
        store_dir=tmp_path / "store",
    )
    outputs = run_steering(tiny_llama, sample_dataset, tmp_path / "mid", settings, progress=False)
    assert outputs.readout.layers() == [tiny_llama.n_layers // 2]
    assert set(outputs.readout_table["appraisal_combo"]) == {"+pleasantness"}
    assert outputs.theory_summary.empty and outputs.generation is None


def test_bad_requests_fail_before_model_work(tiny_llama, sample_dataset, tmp_path):
    with pytest.raises(SteeringError, match="unknown appraisal"):
        run_steering(
            tiny_llama,
            sample_dataset,
            tmp_path,
            SteeringSettings(combos=("joyness",), layers=(1,)),
        )
    with pytest.raises(SteeringError, match="reach outside"):
        run_steering(
            tiny_llama,
            sample_dataset,
            tmp_path,
            SteeringSettings(combos=("effort",), layers=(5,)),
        )
    with pytest.raises(SteeringError, match="not in the swept grid"):
        run_steering(
            tiny_llama,
            sample_dataset,
            tmp_path,
            SteeringSettings(
                combos=("effort",), layers=(1,), betas=(-4.0, 0.0, 4.0), theory_cell=(1, 8.0)
            ),
        )
    with pytest.raises(SteeringError, match="at least 2 random directions"):
        run_steering(
            tiny_llama,
            sample_dataset,
            tmp_path,
            SteeringSettings(combos=("effort",), layers=(1,), n_controls=1),
        )
    with pytest.raises(SteeringError, match="methods"):
        run_steering(
            tiny_llama,
            sample_dataset,
            tmp_path,
            SteeringSettings(combos=("effort",), layers=(1,), methods=("sideways",)),
        )


@pytest.mark.integration
def test_smollm2_run_with_real_rows_and_the_real_judge(smollm2, crowd_envent, tmp_path):
    out = tmp_path / "steer"
    settings = SteeringSettings(
        combos=(AppraisalCombo.parse("pleasantness", "+").name,),
        layers=(12,),
        betas=(-8.0, 0.0, 8.0),
        gen_betas=(-4.0, 0.0, 4.0),
        n=6,
        n_probe=30,
        max_new_tokens=6,
        n_controls=2,
        n_boot=200,
        store_dir=tmp_path / "store",
        seed=1,
    )
    outputs = run_steering(smollm2, crowd_envent, out, settings, progress=False)
    steering = pd.read_csv(out / "steering.csv")
    assert tuple(steering.columns) == GENERATION_COLUMNS
    assert set(steering["beta"]) == {-4.0, 0.0, 4.0}
    sums = steering.groupby(["beta", "control"])["proportion"].sum()
    np.testing.assert_allclose(sums, 1.0)
    checks = pd.read_csv(out / "theory_checks.csv")
    assert set(checks["outcome"]) >= {"readout", "generation"}
    assert np.isfinite(checks[["delta", "excess"]].to_numpy()).all()
    records = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert len(records) == 7 * 6  # clean + 2 steered + 4 controls, 6 texts
    assert all(r["judged"] in _LengthJudge.labels for r in records)
    clean = [r["generation"] for r in records if r["combo"] == "clean"]
    steered = [r for r in records if r["combo"] == "+pleasantness" and r["beta"] == 4.0]
    assert [r["generation"] for r in steered] != clean
    # the recorded labels are the judge's reading of "I felt" + the generated text
    from lens_emotion.judge import load_judge

    judge = load_judge("crowd-envent", seed=1, progress=False)
    texts = [f"I felt{r['generation']}".strip() for r in steered]
    assert judge.predict(texts) == [r["judged"] for r in steered]
    assert outputs.judge["weights_sha256"] == judge.describe()["weights_sha256"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["judge"]["validation"]["accuracy"] > 1 / 13  # above chance, held-out rows
    assert manifest["seed"] == 1 and len(manifest["steered_ids"]) == 6
    assert manifest["n_probe"] == 30
    assert (out / "figures" / "generation_sankey_plus_pleasantness_L12.html").is_file()


def test_cli_steer_readout_only_on_a_tiny_model(tiny_llama_dir, tmp_path):
    out = tmp_path / "cli"
    code = main(
        [
            "steer",
            "--model",
            str(tiny_llama_dir),
            "--dataset",
            "sample",
            "--appraisal",
            "pleasantness,other_responsblt",
            "--signs",
            "+,-",
            "--layer",
            "0,1",
            "--betas=-4,0,4",
            "--n",
            "8",
            "--n-probe",
            "40",
            "--controls",
            "2",
            "--no-generate",
            "--store",
            str(tmp_path / "store"),
            "--seed",
            "2",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    steering = pd.read_csv(out / "steering.csv")  # the readout when generation is off
    assert tuple(steering.columns) == STEERING_COLUMNS
    assert set(steering["appraisal_combo"]) >= {"+pleasantness,-other_responsblt"}
    assert set(steering["layer"]) == {0, 1}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["judge"] is None and manifest["generation"] is None
    assert manifest["command"].startswith("lens-emotion")
    assert manifest["settings"]["layers"] == [0, 1] and manifest["settings"]["seed"] == 2
    assert not (out / "generations.jsonl").exists()


def test_cli_steer_rejects_bad_input_with_exit_2(sample_dataset, tmp_path, capsys):
    code = main(
        ["steer", "--dataset", "sample", "--appraisal", "joyness", "--layer", "1", "--out", "x"]
    )
    assert code == 2 and "unknown appraisal" in capsys.readouterr().err
    code = main(
        [
            "steer",
            "--dataset",
            "sample",
            "--appraisal",
            "pleasantness",
            "--layer",
            "a",
            "--out",
            "x",
        ]
    )
    assert code == 2 and "--layer" in capsys.readouterr().err
    code = main(
        [
            "steer",
            "--dataset",
            "sample",
            "--appraisal",
            "pleasantness,effort",
            "--signs",
            "+",
            "--layer",
            "1",
            "--out",
            "x",
        ]
    )
    assert code == 2 and "one sign per appraisal" in capsys.readouterr().err
