"""The per-analysis reshapers and the table rebuild, on job folders written by hand."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lens_emotion.sweep import TABLE_COLUMNS, build_table
from lens_emotion.sweep.jobs import Job
from lens_emotion.sweep.tables import geometry_rows, infer_rows, patch_rows, probe_rows

MODEL = {"family": "llama", "n_layers": 5}


def _job(analysis: str, model: str = "m") -> Job:
    return Job(model, "spec", "paper", analysis, 0, {})


def _record(folder, job, status="done", **extra):
    folder.mkdir(parents=True, exist_ok=True)
    record = {"job_id": job.job_id, "status": status, "model": MODEL, **extra}
    (folder / "job.json").write_text(json.dumps(record))
    return record


def _probe_files(folder):
    folder.mkdir(parents=True, exist_ok=True)
    rows, folds = [], []
    for layer in range(5):
        accs = [0.2 + 0.1 * layer, 0.3 + 0.1 * layer]
        rows.append(
            {"site": "resid_post", "layer": layer, "accuracy_mean": np.mean(accs),
             "accuracy_sd": np.std(accs, ddof=1), "macro_f1": 0.1, "majority_baseline": 0.08,
             "shuffled_control": 0.07, "selectivity": np.mean(accs) - 0.07, "n": 40,
             "converged": True, "n_iter": 10, "grad_max": 0.0}
        )  # fmt: skip
        folds += [{"site": "resid_post", "layer": layer, "fold": i, "accuracy": a}
                  for i, a in enumerate(accs)]  # fmt: skip
    pd.DataFrame(rows).to_csv(folder / "probe_emotions.csv", index=False)
    pd.DataFrame(folds).to_csv(folder / "probe_emotions_folds.csv", index=False)
    pd.DataFrame([{"accuracy_mean": 0.11}]).to_csv(
        folder / "probe_embedding_baseline.csv", index=False
    )


def test_probe_rows_carry_a_t_interval_over_folds(tmp_path):
    _probe_files(tmp_path)
    rows = pd.DataFrame(probe_rows(tmp_path, {}))
    acc = rows[(rows.metric == "accuracy") & (rows.site == "resid_post")].set_index("layer")
    assert acc.loc[2, "value"] == pytest.approx(0.45)
    half = 12.706204736 * 0.1 / np.sqrt(2) / np.sqrt(2)  # t(0.975, 1) * sd / sqrt(k)
    assert acc.loc[0, "ci_high"] == pytest.approx(min(1.0, 0.25 + half))
    assert acc.loc[0, "ci_low"] == 0.0  # clipped to [0, 1]
    emb = rows[rows.site == "embedding"]
    assert emb["layer"].tolist() == [0] and emb["value"].tolist() == [0.11]


def test_patch_and_infer_rows(tmp_path):
    pd.DataFrame(
        [{"site": "attn_out", "center_layer": 3, "span": 3, "transfer": 0.4, "remained": 0.5,
          "neither": 0.1, "transfer_ci_low": 0.2, "transfer_ci_high": 0.6,
          "mean_logit_diff_change": 0.3}]
    ).to_csv(tmp_path / "patching.csv", index=False)  # fmt: skip
    rows = pd.DataFrame(patch_rows(tmp_path, {}))
    transfer = rows[rows.metric == "transfer"].iloc[0]
    assert (transfer.layer, transfer.value, transfer.ci_low, transfer.ci_high) == (3, 0.4, 0.2, 0.6)
    assert set(rows.metric) == {"transfer", "remained", "neither", "mean_logit_diff_change"}
    metrics = {"accuracy": 0.5, "macro_f1": 0.4, "accuracy_by_calibration": {"none": 0.3}}
    (tmp_path / "metrics.json").write_text(json.dumps(metrics))
    pd.DataFrame({"correct": [True, False] * 20, "scored": True}).to_csv(
        tmp_path / "predictions.csv", index=False
    )
    rows = pd.DataFrame(infer_rows(tmp_path, {"seed": 0})).set_index("metric")
    assert rows.loc["accuracy", "value"] == 0.5
    assert rows.loc["accuracy", "ci_low"] < 0.5 < rows.loc["accuracy", "ci_high"]
    assert rows.loc["accuracy_none", "value"] == 0.3 and rows["layer"].isna().all()


def test_geometry_rows_put_the_valence_peak_at_its_layer(tmp_path):
    summary = {
        "peak_valence_r": 0.8, "peak_valence_ci": [0.6, 0.9], "peak_valence_layer": 3,
        "peak_valence_relative_depth": 0.75, "peak_arousal_r": 0.4, "peak_rsa_rho": 0.3,
        "peak_rsa_layer": 2, "peak_rsa_p": 0.01, "by_kind": {"mean": {}},
    }  # fmt: skip
    rows = pd.DataFrame(geometry_rows(tmp_path, {"summary": summary})).set_index("metric")
    assert rows.loc["peak_valence_r", ["layer", "ci_low", "ci_high"]].tolist() == [3, 0.6, 0.9]
    assert rows.loc["peak_rsa_rho", "layer"] == 2
    assert "peak_valence_layer" not in rows.index and "peak_rsa_p" not in rows.index
    summary |= {"peak_valence_r_keyword_free": 0.7, "peak_valence_layer_keyword_free": 4,
                "crosspaper_peak_diag_cos": 0.3, "crosspaper_peak_layer": 5}  # fmt: skip
    rows = pd.DataFrame(geometry_rows(tmp_path, {"summary": summary})).set_index("metric")
    assert rows.loc["peak_valence_r_keyword_free", "layer"] == 4
    assert rows.loc["crosspaper_peak_diag_cos", "layer"] == 5
    assert pd.isna(rows.loc["peak_arousal_r", "layer"])  # the summary names no arousal layer
    assert "peak_valence_layer_keyword_free" not in rows.index


def test_geometry_rows_carry_the_per_layer_curves_of_the_headline_kind(tmp_path):
    measures = ["pc1_valence_r", "pc1_var", "rsa_rho", "diag_cos"]
    lines = ["site,layer,measure,value,ci_low,ci_high"]
    for kind, offset in (("mean", 0.0), ("probe", 0.5)):
        for layer in range(3):
            for m in measures:
                v = offset + layer / 10
                lines.append(f"resid_post,{layer},{kind}.{m},{v},{v - 0.05},{v + 0.05}")
    (tmp_path / "geometry.csv").write_text("\n".join(lines) + "\n")
    summary = {"kind": "mean", "peak_valence_r": 0.2, "peak_valence_layer": 2}
    rows = pd.DataFrame(geometry_rows(tmp_path, {"summary": summary}))
    curve = rows[rows["metric"] == "pc1_valence_r"]
    assert curve["layer"].tolist() == [0, 1, 2]
    assert curve["value"].tolist() == pytest.approx([0.0, 0.1, 0.2])  # the mean kind only
    assert curve["ci_low"].tolist() == pytest.approx([-0.05, 0.05, 0.15])
    assert set(rows["metric"]) == {"peak_valence_r", "pc1_valence_r", "rsa_rho", "diag_cos"}


def test_build_table_is_rebuilt_not_appended_and_keeps_failed_jobs(tmp_path):
    probe, failed = _job("probe"), _job("patch", model="other")
    _probe_files(probe.folder(tmp_path))
    _record(probe.folder(tmp_path), probe)
    _record(failed.folder(tmp_path), failed, status="failed", error="ModelLoadError: gone")
    never = _job("infer")  # no record: left out
    first = build_table(tmp_path, [probe, failed, never])
    again = build_table(tmp_path, [probe, failed, never])
    pd.testing.assert_frame_equal(first, again)
    assert list(first.columns) == list(TABLE_COLUMNS)
    bad = first[first.status == "failed"]
    assert len(bad) == 1 and bad["error"].iloc[0] == "ModelLoadError: gone"
    done = first[first.status == "done"]
    assert set(done["analysis"]) == {"probe"}
    deep = done[(done.metric == "accuracy") & (done.site == "resid_post")]
    assert deep["relative_depth"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_attribute_attention_and_steer_rows(tmp_path):
    from lens_emotion.sweep.tables import attention_rows, attribute_rows, steer_rows

    pd.DataFrame(
        [{"site": "attn_out", "layer": 1, "head": None, "atp_effect": 0.2, "atp_std": 0.1,
          "atp_abs_mean": 0.2, "n_pairs": 4, "patch_effect": 0.25},
         {"site": "attn_out", "layer": 1, "head": 3, "atp_effect": 0.9, "atp_std": 0.1,
          "atp_abs_mean": 0.9, "n_pairs": 4, "patch_effect": None}]
    ).to_csv(tmp_path / "attribution.csv", index=False)  # fmt: skip
    rows = pd.DataFrame(attribute_rows(tmp_path, {})).set_index("metric")
    assert rows.loc["atp_effect", "value"] == 0.2  # the head row is left out
    assert rows.loc["atp_effect", "ci_high"] == pytest.approx(0.2 + 1.96 * 0.1 / 2)
    assert rows.loc["patch_effect", "value"] == 0.25
    pd.DataFrame(
        [{"layer": 2, "group": "context", "normalise": "total", "mean": 0.3, "ci_low": 0.2,
          "ci_high": 0.4, "n": 8}]
    ).to_csv(tmp_path / "attention_mass_layers.csv", index=False)  # fmt: skip
    (row,) = attention_rows(tmp_path, {})
    assert (row["metric"], row["layer"], row["ci_low"]) == ("mass_context_total", 2, 0.2)
    pd.DataFrame(
        [{"appraisal_combo": "+pleasantness", "layer": 4, "beta": 8.0, "emotion": "joy",
          "proportion": 0.5, "ci_low": 0.4, "ci_high": 0.6, "control": False},
         {"appraisal_combo": "random-0", "layer": 4, "beta": 8.0, "emotion": "joy",
          "proportion": 0.1, "ci_low": 0.0, "ci_high": 0.2, "control": True}]
    ).to_csv(tmp_path / "readout.csv", index=False)  # fmt: skip
    (row,) = steer_rows(tmp_path, {"settings": {"site": "resid_post"}})
    assert row["metric"] == "proportion[+pleasantness, beta=+8, joy]" and row["value"] == 0.5
