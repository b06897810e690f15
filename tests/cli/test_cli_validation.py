"""Every bad option fails within a second, before any data is read or a model is loaded."""

from __future__ import annotations

import pytest

from lens_emotion.cli import main


@pytest.fixture
def no_model(monkeypatch):
    """Make loading a model (or reading a dataset) fail loudly if a command tries."""
    import lens_emotion.data
    import lens_emotion.models

    def refuse(*args, **kwargs):
        raise AssertionError("the command loaded a model or data before validating its options")

    monkeypatch.setattr(lens_emotion.models, "load_model", refuse)
    monkeypatch.setattr(lens_emotion.data, "load_dataset", refuse)
    monkeypatch.setattr(lens_emotion.data, "load_sev", refuse)


BAD = [
    (["probe", "--alpha", "1,x"], "--alpha"),
    (["probe", "--alpha", "0"], "--alpha"),
    (["probe", "--sites", "attn,mlp_out"], "--sites"),
    (["probe", "--formats", "html,gif"], "--formats"),
    (["probe", "--limit", "0"], "--limit"),
    (["probe", "--folds", "1"], "--folds"),
    (["probe", "--layers", "x"], "--layers"),
    (["patch", "--layers", "1,a"], "--layers"),
    (["patch", "--sites", "resid_mid"], "--sites"),
    (["patch", "--pairs", "0"], "--pairs"),
    (["attribute", "--sites", "nope"], "--sites"),
    (["infer", "--calibrate", "always"], "--calibrate"),
    (["steer", "--appraisal", "pleasantness", "--layer", "12", "--betas", "-8,x"], "--betas"),
    (["steer", "--appraisal", "pleasantness", "--layer", "a"], "--layer"),
    (["steer", "--appraisal", "pleasantness", "--layer", "12", "--formats", "jpg"], "--formats"),
    (["steer", "--appraisal", "a,b", "--signs", "+", "--layer", "12"], "--signs"),
    (["steer", "--appraisal", "pleasantness", "--layer", "12", "--promote", "glee"], "--promote"),
    (["steer", "--appraisal", "pleasantness", "--layer", "12", "--controls", "1"], "--controls"),
    (["steer", "--appraisal", "pleasantness", "--layer", "12", "--theory-cell", "9,8"], "--theory"),
    (["infer", "--calibrate", "mean-heldout", "--heldout-fraction", "1.5"], "--heldout-fraction"),
    (["circuits", "--gamma-grid", "1,x"], "--gamma-grid"),
    (["circuits", "--gamma-grid", "1,2"], "tuning budgets"),
    (["circuits", "--max-degenerate", "3"], "max_degenerate"),
    (["circuits", "--n-scenarios", "0"], "--n-scenarios"),
    (["circuits", "--steer-windows", "9-3"], "--steer-windows"),
    (["circuits", "--positions", "first"], "--positions"),
    (["circuits", "--eval-fraction", "1.5"], "--eval-fraction"),
    (["figures", "--config", "c.toml", "--only", "probng"], "--only"),
]


@pytest.mark.parametrize(("argv", "option"), BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_option_fails_before_any_work(no_model, tmp_path, capsys, argv, option):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert option in err and "error" in err
    assert not (tmp_path / "out").exists()


def test_negative_betas_typed_as_the_help_shows_them_parse(no_model, tmp_path, capsys):
    # Parsing succeeds (the refusing loader is what stops it, after validation)
    argv = ["steer", "--dataset", "sample", "--appraisal", "pleasantness", "--layer", "12"]
    with pytest.raises(AssertionError, match="before validating"):
        main([*argv, "--betas", "-8,-4,0,4,8", "--gen-betas", "-8,0,8", "--out", str(tmp_path)])
    assert "expected one argument" not in capsys.readouterr().err


def test_help_of_every_command_renders(capsys):
    from lens_emotion.cli import COMMANDS

    for command in COMMANDS:
        assert main([command, "--help"]) == 0
    assert "--quiet" in capsys.readouterr().out


def test_an_error_after_extraction_says_the_rerun_reuses_the_store(monkeypatch, tmp_path, capsys):
    import lens_emotion.models
    import lens_emotion.probing.workflow

    class _Model:
        n_layers = 4

    def fail_after_extraction(*args, **kwargs):
        raise ValueError("something went wrong after the activations were stored")

    monkeypatch.setattr(lens_emotion.models, "load_model", lambda *a, **k: _Model())
    monkeypatch.setattr(lens_emotion.probing.workflow, "run_probing", fail_after_extraction)
    store = tmp_path / "store"
    argv = ["probe", "--dataset", "sample", "--store", str(store), "--alpha", "1000"]
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"activations are cached in {store}; rerun with a fixed option to continue" in err
