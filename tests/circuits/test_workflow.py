"""The circuit workflow on a tiny random model: split hygiene, separate files, tuning rule."""

import json
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest

from lens_emotion.circuits import workflow as wf
from lens_emotion.circuits.capture import LastTokenActivations
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.modulation import select_setting
from lens_emotion.circuits.sev_prompts import SevPrompts
from lens_emotion.circuits.workflow import CircuitSettings, gamma_meaning, run_circuits
from lens_emotion.demo.runner import _print_summary
from lens_emotion.sweep.tables import circuits_rows
from tests.circuits.conftest import tiny_settings

#: Functions that choose directions, components, circuits, means or strengths.
DISCOVERY_SIDE = (
    "compute_directions",
    "score_components",
    "sublayer_influence",
    "residual_rms",
    "emotion_means",
    "tune_strength",
    "head_ablation_effects",
)
#: Functions that only measure (they must see held-out scenarios).
EVALUATION_SIDE = ("ablation_sweep", "total_effects", "judged_ablation", "control_comparison")


class _Recorder:
    """Wraps workflow functions and records the scenario ids of the data each receives."""

    def __init__(self, monkeypatch):
        self.skeleton_of: dict[tuple[int, ...], str] = {}
        self.seen: dict[str, set[str]] = defaultdict(set)
        self.calls: dict[str, int] = defaultdict(int)
        real_build = wf.build_sev_prompts
        real_capture = wf.capture_last_token
        real_scorer = wf.LastTokenScorer
        recorder = self

        def build(model, dataset, *args, **kwargs):
            prompts = real_build(model, dataset, *args, **kwargs)
            for ids, skeleton in zip(prompts.token_ids, prompts.skeleton_id, strict=True):
                self.skeleton_of[tuple(ids)] = skeleton
            return prompts

        def capture(model, token_ids, *args, **kwargs):
            acts = real_capture(model, token_ids, *args, **kwargs)
            object.__setattr__(acts, "_skeletons", self._ids(token_ids))
            return acts

        class Scorer(real_scorer):
            def __init__(self, model, token_ids, *args, **kwargs):
                super().__init__(model, token_ids, *args, **kwargs)
                self._skeletons = recorder._ids(token_ids)

        class Means(wf.ComponentMeans):
            @classmethod
            def from_activations(cls, acts, *args, **kwargs):
                recorder._record("ComponentMeans", (acts,), {})
                return super().from_activations(acts, *args, **kwargs)

            @classmethod
            def from_position_means(cls, acts):
                recorder._record("ComponentMeans", (acts,), {})
                return super().from_position_means(acts)

        monkeypatch.setattr(wf, "build_sev_prompts", build)
        monkeypatch.setattr(wf, "capture_last_token", capture)
        monkeypatch.setattr(wf, "LastTokenScorer", Scorer)
        monkeypatch.setattr(wf, "ComponentMeans", Means)
        for name in DISCOVERY_SIDE + EVALUATION_SIDE:
            monkeypatch.setattr(wf, name, self._wrap(name, getattr(wf, name)))

    def _ids(self, token_ids) -> set[str]:
        return {self.skeleton_of[tuple(ids)] for ids in token_ids}

    def _tags(self, value) -> set[str]:
        if isinstance(value, LastTokenActivations):
            return set(getattr(value, "_skeletons", set()))
        if isinstance(value, SevPrompts):
            return set(value.skeleton_id)
        if hasattr(value, "_skeletons"):
            return set(value._skeletons)
        if isinstance(value, dict):
            return set().union(*(self._tags(v) for v in value.values())) if value else set()
        if isinstance(value, list | tuple) and value and isinstance(value[0], tuple | list):
            if all(isinstance(x, int) for x in value[0]):
                return {
                    self.skeleton_of[tuple(ids)] for ids in value if tuple(ids) in self.skeleton_of
                }
        return set()

    def _record(self, name, args, kwargs):
        self.calls[name] += 1
        for value in (*args, *kwargs.values()):
            self.seen[name] |= self._tags(value)

    def _wrap(self, name, fn):
        def wrapper(*args, **kwargs):
            self._record(name, args, kwargs)
            return fn(*args, **kwargs)

        return wrapper


def test_heldout_scenarios_never_reach_discovery_side_functions(
    tiny_llama, sev_sample, fake_judge, tmp_path, monkeypatch
):
    recorder = _Recorder(monkeypatch)
    out = run_circuits(
        tiny_llama, sev_sample, tmp_path, seed=0, settings=tiny_settings(), judge=fake_judge
    )
    split = json.loads((tmp_path / "manifest.json").read_text())["split"]
    discovery, heldout = set(split["discovery_scenarios"]), set(split["heldout_scenarios"])
    assert discovery and heldout and not discovery & heldout
    for name in (*DISCOVERY_SIDE, "ComponentMeans"):
        assert recorder.calls[name] > 0, f"{name} was never called"
        assert recorder.seen[name], f"no scenario ids recorded for {name}"
        leaked = recorder.seen[name] & heldout
        assert not leaked, f"held-out scenarios {sorted(leaked)} reached {name}"
        assert recorder.seen[name] <= discovery
    # The instrumentation does see held-out ids where they belong.
    for name in EVALUATION_SIDE:
        assert recorder.seen[name] and recorder.seen[name] <= heldout, name
    assert out.control is not None


def test_run_writes_masked_judge_tables_and_the_tuning_rule(
    tiny_llama, sev_sample, fake_judge, tmp_path, capsys
):
    settings = tiny_settings()
    out = run_circuits(tiny_llama, sev_sample, tmp_path, settings=settings, judge=fake_judge)
    for name in ("control.csv", "tuning.csv", "ablation_generation.csv"):
        table = pd.read_csv(tmp_path / name)
        columns = list(table.columns)
        assert {"judged_masked", "judged_raw", "names_emotion", "fluency", "readout"} <= set(
            columns
        )
        assert {"kappa", "judges_note", "ci_low", "ci_high"} <= set(columns)
    gens = pd.read_csv(tmp_path / "generations.csv", keep_default_na=False)
    assert {"masked_reply", "judged_masked", "judged_raw", "names_emotion"} <= set(gens.columns)
    consistency = pd.read_csv(tmp_path / "consistency.csv")
    assert "heldout_accuracy_group_centered" not in consistency
    assert consistency.heldout_accuracy_described.notna().all()
    assert set(pd.read_csv(tmp_path / "ablation_generation.csv").ablation_means) >= {
        "all positions"
    }
    assert set(pd.read_csv(tmp_path / "ablation.csv").ablation_means) <= {
        "last token",
        "none (zero)",
    }
    summary = pd.read_csv(tmp_path / "total_effect_summary.csv")
    assert {"spearman", "top_overlap", "ranked_among"} <= set(summary.columns)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["head_check"]["label"] == "consistency check, not a causal test"
    tuning = manifest["tuning"]
    assert tuning["rule"] == settings.selection_rule and tuning["fixed_before_run"]
    assert tuning["budget"]["circuit"]["strengths"] == tuning["budget"]["steering"]["strengths"]
    assert len(tuning["table"]) == 2 + 2 * 2 and {"ci_low", "ci_high"} <= set(tuning["table"][0])
    chosen = manifest["chosen"]
    assert chosen["circuit_gamma"] in settings.gamma_grid
    assert "gamma = 1 is the emotion-conditioned state" in chosen["circuit_gamma_meaning"]
    assert out.chosen == chosen
    table = out.tables["tuning"]
    assert table.chosen.sum() == 2
    # The chosen rows follow the rule recomputed from the table.
    for method in ("circuit", "steering"):
        rows = table[table.method == method].drop(columns="chosen")
        row, _ = select_setting(rows, settings.selection_metric, settings.max_degenerate)
        picked = table[(table.method == method) & table.chosen].iloc[0]
        assert (row.strength, row.window) == (picked.strength, picked.window)
    # Tuning ran on discovery scenarios only.
    gens = pd.read_csv(tmp_path / "tuning_generations.csv", keep_default_na=False)
    assert set(gens.skeleton_id.astype(str)) <= set(manifest["split"]["discovery_scenarios"])
    # The demo's end-of-run summary prints the pooled control rows of a real run.
    pooled_rows = out.control[out.control.emotion == "all"].to_dict(orient="records")
    _print_summary({"circuits": {"control": pooled_rows}}, {}, {"total": 1.0}, tmp_path)
    printed = capsys.readouterr().err
    assert printed.count("judged (emotion words masked)") == len(pooled_rows) > 0
    # The headline numbers (what a sweep's circuits rows read) come from these tables.
    headline = out.summary()
    json.dumps(headline)
    best = consistency.loc[consistency.heldout_accuracy.idxmax()]
    assert headline["directions"]["heldout_accuracy"] == best.heldout_accuracy
    assert headline["directions"]["layer"] == best.layer
    assert headline["head_check"]["max_abs_difference"] == out.head_check["max_abs_difference"]
    assert set(headline["ablation"]) == {"intervention", *out.ablation.component_type}
    first = out.ablation[out.ablation.intervention == headline["ablation"]["intervention"]]
    heads = first[(first.component_type == "head") & (first.k == first.k.min())]
    k = f"k{int(first.k.min())}"
    expected = ((heads.baseline - heads.score) / heads.baseline.abs()).mean()
    assert headline["ablation"]["head"][k]["rel_drop"] == pytest.approx(expected)
    assert set(headline["total_effect"]) == set(summary.component_type)
    pooled = out.control[out.control.emotion == "all"].set_index("method")
    assert set(headline["control"]) == set(pooled.index)
    assert (
        headline["control"]["prompting"]["judged_masked"]
        == pooled.loc["prompting", "judged_masked"]
    )
    rows = pd.DataFrame(circuits_rows(tmp_path, {"summary": headline})).set_index("metric")
    assert rows.loc["directions.heldout_accuracy", "layer"] == best.layer
    assert (
        rows.loc["control.prompting.judged_masked", "ci_low"] == pooled.loc["prompting", "ci_low"]
    )


def test_separate_evaluation_file(tiny_llama, sev_sample, tmp_path):
    ids = sorted(set(sev_sample.metadata.skeleton_id))
    first = sev_sample.filter(sev_sample.metadata.skeleton_id.isin(ids[:18]).to_numpy())
    second = sev_sample.filter(sev_sample.metadata.skeleton_id.isin(ids[18:]).to_numpy())
    settings = tiny_settings(generate=False, n_scenarios=2, n_eval_scenarios=2)
    run_circuits(tiny_llama, first, tmp_path, settings=settings, eval_sev=second)
    split = json.loads((tmp_path / "manifest.json").read_text())["split"]
    assert set(split["discovery_scenarios"]) <= set(ids[:18])
    assert set(split["heldout_scenarios"]) <= set(ids[18:])
    assert len(split["heldout_scenarios"]) == 2
    with pytest.raises(CircuitError, match="in both the discovery and the evaluation file"):
        run_circuits(tiny_llama, first, tmp_path / "x", settings=settings, eval_sev=first)


def test_settings_fix_equal_budgets_and_the_rule():
    with pytest.raises(CircuitError, match="unequal tuning budgets"):
        CircuitSettings(gamma_grid=(8.0, 16.0, 32.0, 64.0), beta_grid=(8.0, 32.0))  # the old one
    CircuitSettings(generate=False, gamma_grid=(1.0,))  # no tuning without generation
    with pytest.raises(CircuitError, match="selection_metric"):
        CircuitSettings(selection_metric="accuracy")
    with pytest.raises(CircuitError, match="max_degenerate"):
        CircuitSettings(max_degenerate=1.5)
    d = CircuitSettings()
    assert len(d.gamma_grid) == len(d.beta_grid)
    assert min(d.gamma_grid) <= 1 and min(d.beta_grid) <= 1  # small strengths are tried
    described = d.describe()
    assert "judged_masked" in described["selection_rule"] and "0.2" in described["selection_rule"]


def test_auto_layer_choices_fit_every_depth_and_explicit_ones_are_range_checked():
    auto = CircuitSettings()
    assert auto.check_layers == "auto" and auto.steer_windows == "auto"
    smol = auto.for_model(30)  # the choices written for SmolLM2 before they were relative
    assert smol.check_layers == (0, 14, 29)
    assert smol.steer_windows == (tuple(range(10, 20)), tuple(range(20, 30)))
    gemma = auto.for_model(18)
    assert gemma.check_layers == (0, 8, 17)
    assert gemma.steer_windows == (tuple(range(6, 12)), tuple(range(12, 18)))
    assert auto.for_model(2).steer_windows == ((0,), (1,))
    assert gemma.describe()["steer_windows"] == ["6-11", "12-17"]
    assert CircuitSettings(check_layers=None).for_model(18).check_layers is None  # all
    with pytest.raises(CircuitError, match="check_layers 29 is past the model's last layer 17"):
        CircuitSettings(check_layers=(0, 29)).for_model(18)
    with pytest.raises(CircuitError, match="steering window 20-29 reaches past"):
        CircuitSettings(steer_windows=(tuple(range(20, 30)),)).for_model(18)
    with pytest.raises(CircuitError, match="must be layers or 'auto'"):
        CircuitSettings(steer_windows="late")


def test_select_setting_applies_the_rule():
    table = pd.DataFrame(
        {
            "strength": [1.0, 2.0, 4.0, 8.0],
            "judged_masked": [0.2, 0.4, 0.4, 0.9],
            "fluent_judged_masked": [0.2, 0.3, 0.4, 0.1],
            "judged_raw": [0.2, 0.4, 0.5, 0.95],
            "degenerate_rate": [0.0, 0.1, 0.2, 0.6],
        }
    )
    row, note = select_setting(table, "judged_masked", 0.2)
    assert row.strength == 2.0 and "rule met" in note  # 8 is too degenerate; tie -> smaller
    assert select_setting(table, "fluent_judged_masked", 0.2)[0].strength == 4.0
    assert select_setting(table, "judged_raw", 1.0)[0].strength == 8.0
    row, note = select_setting(
        table.assign(degenerate_rate=[0.5, 0.3, 0.9, 0.9]), max_degenerate=0.2
    )
    assert row.strength == 2.0 and "no setting" in note
    with pytest.raises(CircuitError, match="unknown selection metric"):
        select_setting(table, "accuracy")


def test_gamma_meaning_says_gamma_one_is_the_conditioned_state():
    assert "exactly to their emotion-conditioned state" in gamma_meaning(1.0)
    assert "32 times as far" in gamma_meaning(32.0) and "overshoot" in gamma_meaning(32.0)
    assert "0.5 of the way" in gamma_meaning(0.5)
    assert np.isfinite(len(gamma_meaning(2.0)))
