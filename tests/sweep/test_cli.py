"""``lens-emotion sweep``: its defaults (no optional flag) and options checked before any work.

This is the sweep's defaults test (tests/cli/test_cli_defaults.py's ``COVERED`` names it).
"""

from __future__ import annotations

import pandas as pd

from lens_emotion.cli import main


def test_sweep_defaults_run_in_process(tmp_path, tiny_pair, make_config, capsys):
    config = make_config(tmp_path / "s.toml", tiny_pair[:1], analyses=("infer",))
    out = tmp_path / "out"
    assert main(["sweep", "--config", str(config), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "sweep tiny: 1 jobs (1 run, 0 already finished, 0 failed) on in-process" in printed
    assert "summary:" in printed
    table = pd.read_parquet(out / "results.parquet")
    assert set(table["analysis"]) == {"infer"} and (table["status"] == "done").all()
    assert main(["sweep", "--config", str(config), "--out", str(out), "--dry-run"]) == 0
    assert "a__paper__infer__s0: finished" in capsys.readouterr().out


def test_bad_options_fail_with_one_line_before_any_work(tmp_path, monkeypatch, capsys):
    import lens_emotion.sweep.workflow as workflow

    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(workflow, "plan_sweep", no_work)
    out = tmp_path / "out"
    assert main(["sweep", "--config", str(tmp_path / "none.toml"), "--out", str(out)]) == 2
    assert "no config file at" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'analyses = ["probe"]\n[[models]]\nspec = "smollm2-135m-instruct"\n'
        "[settings.probe]\nfolds = 3\n"
    )
    assert main(["sweep", "--config", str(bad), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "settings.probe.folds: not a field of ProbingSettings" in err
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert main(["sweep", "--config", str(bad), "--out", str(a_file)]) == 2
    assert "is a file" in capsys.readouterr().err
    assert not out.exists()
