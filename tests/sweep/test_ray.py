"""The Ray runner on a local 2-CPU Ray: same table as in-process, worker deaths, one session."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lens_emotion.sweep import run_sweep
from lens_emotion.sweep.jobs import FAULT_ENV


def test_ray_and_in_process_runs_give_identical_tables(ray_session, baseline, tmp_path):
    config, _, outputs = baseline
    on_ray = run_sweep(config, tmp_path / "out", ray=True, progress=False)
    assert on_ray.runner == "ray" and len(on_ray.computed) == 6 and not on_ray.failed
    pd.testing.assert_frame_equal(on_ray.table, outputs.table)
    assert ray_session.is_initialized()  # a session it did not start is left running


def test_a_worker_killed_mid_job_is_retried_and_resumes_from_its_store(
    ray_session, baseline, tmp_path, monkeypatch
):
    config, _, outputs = baseline
    out = tmp_path / "out"
    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"{marker}:a__paper__probe")
    on_ray = run_sweep(config, out, ray=True, progress=False)
    assert marker.is_file()  # the actor's process did die (os._exit) once
    assert not on_ray.failed and len(on_ray.computed) == 6
    pd.testing.assert_frame_equal(on_ray.table, outputs.table)
    # the retry reused the store the dead attempt had finished (same manifest, not rewritten)
    store = json.loads((out / "stores/a__paper__probe__s0/manifest.json").read_text())
    killed_at = marker.stat().st_mtime
    assert store["complete"]
    assert (out / "stores/a__paper__probe__s0/shard_00000.safetensors").stat().st_mtime < killed_at


def test_ray_is_refused_clearly_when_missing(monkeypatch, baseline, tmp_path):
    import builtins

    from lens_emotion.sweep import SweepError

    real = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray":
            raise ImportError("no ray")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(SweepError, match=r"lens-emotion\[distributed\]"):
        run_sweep(baseline[0], tmp_path / "out", ray=True, progress=False)
    assert not (tmp_path / "out").exists()
