from __future__ import annotations

import importlib
import inspect
import sys
from pathlib import Path

import pytest

from lens_emotion.sweep import (
    ANALYSES,
    SweepConfigError,
    check_model_spec,
    expand_jobs,
    load_config,
    parse_config,
    run_sweep,
)


def _config(**changes):
    raw = {
        "templates": ["paper", "emotion-list"],
        "analyses": ["infer", "probe"],
        "seeds": [0, 1],
        "data": {"name": "sample"},
        "models": [{"spec": "smollm2-135m-instruct"}, {"spec": "gemma-3-270m", "name": "g"}],
    }
    raw.update(changes)
    return raw


def test_cross_product_with_per_entry_overrides():
    raw = _config()
    raw["settings"] = {"probe": {"n_folds": 3}}
    raw["models"][1] |= {"templates": ["zero-shot"], "settings": {"probe": {"n_folds": 4}}}
    config = parse_config(raw)
    jobs = expand_jobs(config)
    first = [j for j in jobs if j.model == "smollm2-135m-instruct"]
    second = [j for j in jobs if j.model == "g"]
    assert len(first) == 2 * 2 * 2 and len(second) == 1 * 2 * 2
    assert {j.template for j in second} == {"zero-shot"}
    assert {j.fields.get("n_folds") for j in first if j.analysis == "probe"} == {3}
    assert {j.fields.get("n_folds") for j in second if j.analysis == "probe"} == {4}
    settings = second[-1].settings("OUT")
    assert settings.n_folds == 4 and settings.template == "zero-shot" and settings.seed == 1
    assert str(settings.store_dir).endswith("stores/g__zero-shot__probe__s1")
    assert len({j.job_id for j in jobs}) == len(jobs)


def test_sweep_defaults_and_forced_settings():
    raw = _config(analyses=["patch", "steer"])
    jobs = expand_jobs(parse_config(raw))
    patch = next(j for j in jobs if j.analysis == "patch").settings("o")
    steer = next(j for j in jobs if j.analysis == "steer").settings("o")
    assert patch.formats == ("html",)  # the workflow's own default would ask for png too
    assert steer.generate is False and steer.theory_generation is False


def test_every_bad_field_is_named_on_its_own_line():
    raw = _config(templates=["paper", "no-such-template"], analyses=["probe", "dance"])
    raw["settings"] = {"probe": {"n_fold": 3, "C": "big", "seed": 4}, "patch": {"heads": 1}}
    raw["data"] = {"name": "sample", "limit": -5}
    raw["colour"] = "blue"
    with pytest.raises(SweepConfigError) as info:
        parse_config(raw)
    lines = str(info.value).splitlines()
    text = str(info.value)
    assert "templates: unknown template(s) ['no-such-template']" in text
    assert "analyses: unknown analysis ['dance']" in text
    assert "settings.probe.n_fold: not a field of ProbingSettings" in text
    assert "settings.probe.C = 'big': must be a number" in text
    assert "settings.probe.seed: not settable in a sweep (use the sweep's `seeds` list)" in text
    assert "settings.patch.heads = 1: must be true or false" in text
    assert "data.limit = -5" in text and "colour: unknown key" in text
    assert len(lines) >= 8


def test_settings_class_errors_are_reported_per_field():
    raw = _config(analyses=["infer"])
    raw["settings"] = {"infer": {"engine": "warp"}}
    with pytest.raises(SweepConfigError, match=r"settings\.infer: engine must be one of"):
        parse_config(raw)
    raw["settings"] = {"steer": {"generate": True}}
    raw["analyses"] = ["steer"]
    with pytest.raises(SweepConfigError, match="runs steer with generate = False"):
        parse_config(raw)


def test_missing_models_duplicate_names_and_circuits_without_sev():
    with pytest.raises(SweepConfigError, match="at least one"):
        parse_config({"data": {"name": "sample"}})
    raw = _config()
    raw["models"] = [{"spec": "a/b", "name": "x"}, {"spec": "c/d", "name": "x"}]
    with pytest.raises(SweepConfigError, match="two entries are named 'x'"):
        parse_config(raw)
    with pytest.raises(SweepConfigError, match=r"circuits needs SEV items"):
        parse_config(_config(analyses=["circuits"]))


def test_load_config_refuses_missing_and_broken_files(tmp_path):
    with pytest.raises(SweepConfigError, match="no sweep config"):
        load_config(tmp_path / "none.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("templates = [paper")
    with pytest.raises(SweepConfigError, match="not valid TOML"):
        load_config(bad)


def test_unreachable_models_are_found_without_downloading(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert check_model_spec("smollm2-135m-instruct") is None
    assert "not found" in check_model_spec(str(tmp_path / "missing.gguf"))
    assert "does not exist" in check_model_spec(str(tmp_path / "no-such-folder"))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert "config.json" in check_model_spec(str(empty))
    assert "HF_HUB_OFFLINE" in check_model_spec("nobody-here/not-a-model-xyz")


def test_bad_config_or_unreachable_model_fails_before_any_work(tmp_path, monkeypatch):
    import lens_emotion.sweep.workflow as workflow

    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(workflow, "plan_sweep", no_work)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    raw = _config()
    raw["models"] = [
        {"spec": "smollm2-135m-instruct"},
        {"spec": "nobody-here/not-a-model-xyz", "name": "ghost"},
    ]
    with pytest.raises(SweepConfigError, match=r"models\[ghost\]\.spec"):
        run_sweep(parse_config(raw), out, progress=False)
    assert not out.exists()
    bad = tmp_path / "bad.toml"
    bad.write_text(
        'analyses = ["probe"]\n[[models]]\nspec = "smollm2-135m-instruct"\n'
        "[settings.probe]\nn_folds = 'five'\n"
    )
    with pytest.raises(SweepConfigError, match="n_folds = 'five': must be an integer"):
        run_sweep(bad, out, progress=False)
    assert not out.exists()


@pytest.mark.parametrize(
    "path",
    sorted((Path(__file__).resolve().parents[2] / "configs").glob("sweep-*.toml")),
    ids=lambda p: p.name,
)
def test_shipped_sweep_configs_load_and_build_every_job_settings(path):
    jobs = expand_jobs(load_config(path))
    assert jobs
    for job in jobs:
        settings = job.settings("OUT")
        assert settings.seed == job.seed


@pytest.mark.parametrize("analysis", sorted(ANALYSES))
def test_every_sweepable_workflow_returns_outputs_with_a_summary(analysis):
    # A job's record stores outputs.summary(); a workflow without one fails every job.
    spec = ANALYSES[analysis]
    module = importlib.import_module(f"lens_emotion.{spec.package}")
    runner = getattr(module, spec.runner)
    returned = inspect.signature(runner).return_annotation
    outputs_cls = getattr(sys.modules[runner.__module__], str(returned))
    assert callable(getattr(outputs_cls, "summary", None)), f"{outputs_cls.__name__}.summary"
