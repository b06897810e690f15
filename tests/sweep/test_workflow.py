"""In-process sweeps on two tiny random models: table, skips, selective recompute, interruption."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd

from lens_emotion.sweep import TABLE_COLUMNS, run_sweep
from lens_emotion.sweep.jobs import FAULT_ENV


def test_in_process_sweep_writes_one_long_table(baseline):
    _, out, outputs = baseline
    table = pd.read_parquet(out / "results.parquet")
    assert list(table.columns) == list(TABLE_COLUMNS)
    assert len(outputs.jobs) == 6 and len(outputs.computed) == 6 and not outputs.failed
    csv = pd.read_csv(out / "results.csv")
    assert list(csv.columns) == list(TABLE_COLUMNS) and len(csv) == len(table)
    assert np.allclose(csv["value"], table["value"], equal_nan=True)
    assert set(table["model"]) == {"a", "b"} and set(table["status"]) == {"done"}
    assert table.groupby("model")["n_layers"].first().to_dict() == {"a": 2, "b": 3}
    probe = table[(table.analysis == "probe") & (table.metric == "accuracy")]
    deep = probe[probe.site == "resid_post"]
    assert sorted(deep[deep.model == "b"]["relative_depth"]) == [0.0, 0.5, 1.0]
    fitted = probe[probe.site != "embedding"]  # the embedding baseline has no interval
    assert (fitted["ci_low"] <= fitted["value"]).all()
    assert (fitted["value"] <= fitted["ci_high"]).all()
    assert fitted["ci_low"].between(0, 1).all() and fitted["ci_high"].between(0, 1).all()
    transfer = table[(table.analysis == "patch") & (table.metric == "transfer")]
    assert set(transfer["site"]) == {"attn_out", "mlp_out"}
    assert transfer["value"].between(0, 1).all()
    assert (table[table.analysis == "infer"]["site"] == "readout").all()
    # each (model, template, analysis, seed, site, layer, metric) appears once
    key = ["model", "template", "analysis", "seed", "site", "layer", "metric"]
    assert not table.duplicated(key).any()
    for name in ("summary.md", "summary.html", "sweep.json"):
        assert (out / name).is_file()
    figures = sorted(p.name for p in (out / "figures").iterdir())
    assert "probe_accuracy_by_depth.html" in figures
    assert "template_robustness.html" not in figures  # one template: nothing to compare
    record = json.loads((out / "jobs" / "a__paper__probe__s0" / "job.json").read_text())
    assert record["status"] == "done" and record["model"]["family"] == "llama"
    assert (out / "stores" / "a__paper__probe__s0" / "manifest.json").is_file()


def test_rerun_skips_finished_jobs_and_rebuilds_the_same_table(baseline):
    config, out, outputs = baseline
    again = run_sweep(config, out, progress=False)
    assert again.computed == () and len(again.skipped) == 6
    pd.testing.assert_frame_equal(again.table, outputs.table)


def test_a_changed_field_recomputes_only_the_jobs_it_affects(tmp_path, tiny_pair, make_config):
    config = make_config(tmp_path / "s.toml", tiny_pair, analyses=("infer", "patch"))
    first = run_sweep(config, tmp_path / "out", progress=False)
    assert len(first.computed) == 4
    changed = make_config(
        tmp_path / "s.toml",
        tiny_pair,
        analyses=("infer", "patch"),
        model_extra={"b": "[models.settings.patch]\nn_pairs = 5"},
    )
    second = run_sweep(changed, tmp_path / "out", progress=False)
    assert second.computed == ("b__paper__patch__s0",)
    assert len(second.skipped) == 3
    pairs = json.loads((tmp_path / "out/jobs/b__paper__patch__s0/manifest.json").read_text())
    assert pairs["settings"]["n_pairs"] == 5


def test_a_rerun_after_an_interruption_computes_only_the_missing_jobs(
    tmp_path, tiny_pair, baseline, make_config
):
    config = make_config(tmp_path / "s.toml", tiny_pair)
    out = tmp_path / "out"
    marker = tmp_path / "killed"
    env = {**os.environ, FAULT_ENV: f"{marker}:b__paper__probe", "OMP_NUM_THREADS": "1"}
    code = f"from lens_emotion.sweep import run_sweep; run_sweep({str(config)!r}, {str(out)!r})"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 17, done.stderr[-2000:]  # the process died mid-sweep
    assert marker.is_file() and not (out / "results.parquet").exists()
    assert (out / "jobs/b__paper__probe__s0/manifest.json").is_file()  # files, but no record
    assert not (out / "jobs/b__paper__probe__s0/job.json").exists()
    resumed = run_sweep(config, out, progress=False)
    assert set(resumed.computed) == {"b__paper__probe__s0", "b__paper__patch__s0"}
    assert len(resumed.skipped) == 4
    pd.testing.assert_frame_equal(resumed.table, baseline[2].table)


def test_a_model_that_fails_to_load_is_reported_and_the_others_run(
    tmp_path, tiny_pair, make_config
):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "llama", "num_hidden_layers": 2}')
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    config = make_config(
        tmp_path / "s.toml", [tiny_pair[0], ("broken", str(broken))], analyses=("infer",)
    )
    outputs = run_sweep(config, tmp_path / "out", progress=False)
    assert outputs.failed == ("broken__paper__infer__s0",)
    table = outputs.table
    bad = table[table.model == "broken"]
    assert len(bad) == 1 and bad["status"].iloc[0] == "failed" and bad["error"].iloc[0]
    assert (table[table.model == "a"]["status"] == "done").all()
    assert "Failed jobs" in (tmp_path / "out" / "summary.md").read_text()


def test_geometry_attention_attribution_and_steering_land_in_the_table(
    tmp_path, tiny_pair, make_config
):
    extra = """
[settings.geometry]
n_boot = 20
n_perm = 19
n_random = 10
keyword_control = false

[settings.attention]
rows = 8
n_boot = 20

[settings.attribute]
n_pairs = 4
agreeing_only = false
heads = false

[settings.steer]
n = 10
n_probe = 28
n_folds = 2
n_boot = 20
theory = false
n_controls = 2
layers = [1]
"""
    config = make_config(
        tmp_path / "s.toml",
        tiny_pair[:1],
        analyses=("geometry", "attention", "attribute", "steer"),
        extra=extra,
    )
    outputs = run_sweep(config, tmp_path / "out", progress=False)
    assert not outputs.failed
    table = outputs.table
    valence = table[(table.analysis == "geometry") & (table.metric == "peak_valence_r")]
    assert len(valence) == 1 and valence["layer"].notna().all()
    assert valence["relative_depth"].between(0, 1).all()
    assert valence["ci_low"].iloc[0] <= valence["value"].iloc[0] <= valence["ci_high"].iloc[0]
    assert table[table.analysis == "attention"]["metric"].str.startswith("mass_").all()
    assert set(table[table.analysis == "attribute"]["metric"]) >= {"atp_effect"}
    steer = table[table.analysis == "steer"]
    assert len(steer) and (steer["layer"] == 1).all()
