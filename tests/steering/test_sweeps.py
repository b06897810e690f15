import numpy as np
import pandas as pd
import pytest
import torch

from lens_emotion.stats import bootstrap_mean_ci as stats_bootstrap
from lens_emotion.steering import bootstrap_mean_ci
from lens_emotion.steering.sweeps import (
    GENERATION_COLUMNS,
    STEERING_COLUMNS,
    SteeringCondition,
    SweepOutcome,
    build_conditions,
    generation_prompts,
    generation_sweep,
    readout_sweep,
)
from lens_emotion.steering.vectors import AppraisalCombo, SteeringError, combo_vector

from .conftest import first_prompts


def test_bootstrap_ci_brackets_the_mean_and_shrinks_with_n():
    rng = np.random.default_rng(0)
    small = rng.normal(1.0, 1.0, size=(20, 2))
    big = rng.normal(1.0, 1.0, size=(2000, 2))
    m, lo, hi = bootstrap_mean_ci(small, 500, 0)
    np.testing.assert_allclose(m, small.mean(0))
    assert np.all(lo < m) and np.all(m < hi)
    _, lo2, hi2 = bootstrap_mean_ci(big, 500, 0)
    assert np.all(hi2 - lo2 < (hi - lo) / 3)
    _, lo3, hi3 = bootstrap_mean_ci(np.ones((10, 3)), 100, 0)
    np.testing.assert_array_equal(lo3, hi3)
    # the package's bootstrap is the shared one (same draws as lens_emotion.stats)
    assert bootstrap_mean_ci is stats_bootstrap


# --------------------------------------------------------------------------- conditions


def test_build_conditions_counts_windows_and_controls(tiny_llama):
    vecs = {name: {x: np.ones(8) * (x + 1) for x in range(5)} for name in ("+p", "+o")}
    conds = build_conditions(vecs, [1, 3], [-2.0, 0.0, 2.0], n_controls=2, seed=5, span=3)
    steered = [c for c in conds if not c.control and c.combo != "clean"]
    controls = [c for c in conds if c.control]
    assert conds[0].combo == "clean" and conds[0].hooks(tiny_llama) == []
    assert len(steered) == 2 * 2 * 2 and len(controls) == 2 * 2 * 2
    assert sorted(steered[0].vectors) == [0, 1, 2]
    assert {c.seed for c in controls} == {5, 6}
    norms = [np.linalg.norm(v) for v in controls[0].vectors.values()]
    np.testing.assert_allclose(norms, [np.linalg.norm(vecs["+p"][x]) for x in (0, 1, 2)])
    with pytest.raises(SteeringError, match="no direction at layer"):
        build_conditions(vecs, [4], [1.0], span=3)
    with pytest.raises(SteeringError, match="odd"):
        build_conditions(vecs, [2], [1.0], span=2)


def _synthetic_sweep() -> SweepOutcome:
    labels = ("joy", "sadness", "anger")
    conds = build_conditions({"+p": {0: np.ones(4)}}, [0], [-1.0, 1.0], n_controls=2)
    n = 10
    values = np.zeros((len(conds), n, 3))
    for k, c in enumerate(conds):
        if c.combo == "clean":
            values[k, :, 1] = 1.0  # everyone sad
        elif not c.control:
            hit = 0 if c.beta > 0 else 2
            values[k, : 6 if c.beta > 0 else 3, hit] = 1.0
            values[k, 6 if c.beta > 0 else 3 :, 1] = 1.0
        else:
            values[k, :, 1] = 1.0
            values[k, : 2 + c.seed, 2] = 1.0  # seeds 0, 1: 2 and 3 texts angry
            values[k, : 2 + c.seed, 1] = 0.0
    return SweepOutcome("generation", tuple(conds), values, labels, ids=tuple(map(str, range(n))))


def test_sweep_table_proportions_controls_and_clean_rows():
    sweep = _synthetic_sweep()
    table = sweep.proportions(n_boot=200)
    assert tuple(table.columns) == STEERING_COLUMNS
    get = table.set_index(["beta", "control", "emotion"])["proportion"]
    assert get[(1.0, False, "joy")] == pytest.approx(0.6)
    assert get[(-1.0, False, "anger")] == pytest.approx(0.3)
    assert get[(0.0, False, "sadness")] == pytest.approx(1.0)
    assert get[(0.0, True, "sadness")] == pytest.approx(1.0)  # beta 0: the clean run
    assert get[(1.0, True, "anger")] == pytest.approx(0.25)  # seeds pooled: (2 + 3) / 20
    sums = table.groupby(["beta", "control"])["proportion"].sum()
    np.testing.assert_allclose(sums, 1.0)
    assert (table["ci_low"] <= table["proportion"] + 1e-12).all()
    assert (table["ci_high"] >= table["proportion"] - 1e-12).all()
    moved = sweep.transitions("+p", 0, 1.0)
    assert (moved["clean"] == "sadness").all() and (moved["steered"] == "joy").sum() == 6


# --------------------------------------------------------------------------- tiny-model plumbing


class _Judge:
    """Labels a text by the length of its continuation (plumbing only; the real judge is tested
    in tests/steering/test_workflow.py on SmolLM2 output)."""

    labels = ("joy", "sadness", "anger")
    label_set = "test"
    mask_token = "[MASK]"

    def predict(self, texts, batch_size=16, progress=False, mask=True):
        return [self.labels[len(t) % 3] for t in texts]

    def describe(self):
        return {"kind": "length judge", "validation": {}}


class _WordJudge(_Judge):
    """Reads 'joy' wherever an emotion word is visible; the mask hides it."""

    def predict(self, texts, batch_size=16, progress=False, mask=True):
        from lens_emotion.lexicon import mask_emotion_words, names_emotion

        seen = [mask_emotion_words(t) if mask else t for t in texts]
        return ["joy" if names_emotion(t, "joy") else "sadness" for t in seen]


class _EchoReadout:
    """A second judge that gives the masked judge's label to every other reply."""

    def predict(self, texts):
        return ["sadness" if i % 2 == 0 else "anger" for i in range(len(texts))]


def test_generation_tables_report_masked_raw_named_fluency_and_kappa(monkeypatch, tiny_llama):
    import lens_emotion.steering.sweeps as steering_mod

    replies = {0: " so much joy, I was happy and glad it all worked out", 1: " fine"}

    def fake_generate(model, prompts, hooks, **kwargs):
        # clean: plain replies; steered / control: one names joy, one is degenerate
        return [
            replies[i % 2] if hooks else " calm and quiet all evening long"
            for i in range(len(prompts))
        ]

    monkeypatch.setattr(steering_mod, "generate_with_hooks", fake_generate)
    monkeypatch.setattr(
        steering_mod, "steering_hooks", lambda *a, **k: [("hook", lambda act, hook: None)]
    )
    monkeypatch.setattr(steering_mod, "generation_prompts", lambda m, t, i, p: (list(t), False))
    conds = build_conditions({"+p": {0: np.ones(4)}}, [0], [0.0, 1.0], n_controls=2)
    sweep = generation_sweep(
        tiny_llama,
        ["a", "b", "c", "d"],
        conds,
        _WordJudge(),
        progress=False,
        readout=_EchoReadout(),
    )
    assert sweep.replies is not None and len(sweep.replies) == len(conds) * 4
    full = sweep.proportions(n_boot=100)
    assert tuple(full.columns) == GENERATION_COLUMNS
    table = full.set_index(["beta", "control", "emotion"])
    joy = table.loc[(1.0, False, "joy")]
    assert joy["proportion"] == 0.0  # the masked judge no longer sees "joy" ...
    assert joy["judged_raw"] == pytest.approx(0.5)  # ... the raw reading does (2 of 4)
    assert joy["names_emotion"] == pytest.approx(0.5)
    assert joy["fluency"] == pytest.approx(0.5)  # " fine" is degenerate
    assert table.loc[(1.0, False, "sadness"), "proportion"] == 1.0
    assert table.loc[(1.0, False, "sadness"), "readout"] == pytest.approx(0.5)
    assert table.loc[(0.0, False, "sadness"), "fluency"] == 1.0  # the clean run
    assert table.loc[(1.0, True, "sadness"), "n"] == 8  # two random directions pooled
    kappa = table.loc[(1.0, False, "sadness"), "kappa"]
    assert np.isnan(kappa) or kappa < 0.2
    assert "kappa" in table.loc[(1.0, False, "sadness"), "judges_note"]
    assert (sweep.values.sum(-1) == 1).all()
    summary = sweep.reply_summary().set_index(["group_combo", "group_beta", "emotion"])
    assert summary.loc[("+p", 1.0, "sadness"), "judged_masked"] == 1.0


def test_readout_and_generation_sweeps_on_a_tiny_model(tiny_llama, sample_dataset):
    from lens_emotion.prompts import build_prompts

    rows = sample_dataset.sample(8, seed=2)
    prompts = build_prompts(tiny_llama, rows.texts, rows.labels, rows.label_names)
    d = torch.randn(64, generator=torch.Generator().manual_seed(0)).numpy()
    conds = build_conditions({"+p": {0: d, 1: d}}, [0, 1], [-4.0, 0.0, 4.0], n_controls=1)
    readout = readout_sweep(tiny_llama, prompts, conds, batch_size=4, progress=False)
    assert readout.values.shape == (len(conds), 8, 13)
    np.testing.assert_allclose(readout.values.sum(-1), 1.0, atol=1e-9)
    from lens_emotion.inference import label_logprobs

    clean = label_logprobs(tiny_llama, prompts, 4, False)
    expected = np.exp(clean - clean.max(1, keepdims=True))
    np.testing.assert_allclose(
        readout.values[0], expected / expected.sum(1, keepdims=True), atol=1e-5
    )
    gen = generation_sweep(
        tiny_llama, rows.texts[:3], conds[:3], _Judge(), max_new_tokens=3, progress=False
    )
    assert gen.values.shape == (3, 3, 3) and (gen.values.sum(-1) == 1).all()
    judged = gen.replies["judged_masked"].to_numpy().reshape(3, 3)
    assert (np.asarray(gen.label_names)[gen.values.argmax(-1)] == judged).all()
    assert gen.texts is not None and len(gen.texts[1]) == 3
    prompts_text, special = generation_prompts(tiny_llama, ["I lost my keys."])
    assert "Describe how you felt when this happened: I lost my keys." in prompts_text[0]
    assert prompts_text[0].endswith("I felt") and special is False  # chat template used
    with pytest.raises(SteeringError, match="placeholder"):
        generation_prompts(tiny_llama, ["x"], instruction="no slot")


# --------------------------------------------------------------------------- real SmolLM2


@pytest.mark.integration
def test_real_readout_sweep(smollm2, real_probes):
    rows, prompts, _, appraisal, emotion = real_probes
    sub = first_prompts(prompts, 6)
    v = combo_vector(appraisal, "resid_post", 12, AppraisalCombo.parse("pleasantness"))
    conds = build_conditions({"+pleasantness": {12: v}}, [12], [-8.0, 0.0, 8.0], n_controls=1)
    sweep = readout_sweep(smollm2, sub, conds, scale="rms", progress=False)
    assert isinstance(sweep.conditions[0], SteeringCondition)
    shift = np.abs(sweep.values[1:] - sweep.values[0]).max()
    assert shift > 0.01
    table = sweep.proportions(n_boot=100)
    assert isinstance(table, pd.DataFrame) and set(table["control"]) == {False, True}
    pd.testing.assert_frame_equal(sweep.table, sweep.proportions(1000, 0))
