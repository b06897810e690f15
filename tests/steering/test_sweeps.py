import numpy as np
import pandas as pd
import pytest
import torch

from lens_emotion.steering import (
    GENERATION_COLUMNS,
    STEERING_COLUMNS,
    AppraisalCombo,
    SteeringCondition,
    SteeringError,
    SweepOutcome,
    appraisal_matrix,
    appraisal_readout,
    bootstrap_mean_ci,
    build_conditions,
    combo_vector,
    emotion_promotion,
    generation_prompts,
    generation_sweep,
    min_norm_readout_vector,
    random_direction,
    readout_sweep,
    unique_effect_vector,
)

# --------------------------------------------------------------------------- combos


def test_combo_parsing_from_cli_text():
    combo = AppraisalCombo.parse("pleasantness,other_responsblt", "+,-")
    assert combo.appraisals == ("pleasantness", "other_responsblt")
    assert combo.signs == (1, -1)
    assert combo.name == "+pleasantness,-other_responsblt"
    assert AppraisalCombo.parse(combo.name) == combo
    assert AppraisalCombo.parse(["pleasantness"]).signs == (1,)
    with pytest.raises(SteeringError, match="one sign per appraisal"):
        AppraisalCombo.parse("pleasantness,other_responsblt", "+")
    with pytest.raises(SteeringError, match="neither"):
        AppraisalCombo.parse("pleasantness", "up")
    with pytest.raises(SteeringError, match="repeated"):
        AppraisalCombo.parse("pleasantness,pleasantness")
    with pytest.raises(SteeringError, match="at least one"):
        AppraisalCombo.parse("")


# --------------------------------------------------------------------------- linear algebra


def _directions(seed: int = 0, a: int = 6, d: int = 40) -> np.ndarray:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((a, d))
    w[1] = -0.9 * w[0] + 0.2 * w[1]  # strongly anti-correlated pair, like (un)pleasantness
    return w


def test_unique_effect_vector_is_orthogonal_to_the_others_and_matches_qr():
    w = _directions()
    for index in range(len(w)):
        z = unique_effect_vector(w, index)
        others = np.delete(w, index, axis=0)
        cosines = others @ z / (np.linalg.norm(others, axis=1) * np.linalg.norm(z))
        assert np.abs(cosines).max() < 1e-10
        q, _ = np.linalg.qr(others.T)  # independent construction of (I - P_others) w_a
        np.testing.assert_allclose(z, w[index] - q @ (q.T @ w[index]), atol=1e-10)
    # rank-deficient "others" (a repeated row) are handled by lstsq
    w_dup = np.vstack([w, w[2]])
    z = unique_effect_vector(w_dup, 0)
    assert np.abs(w_dup[1:] @ z).max() < 1e-9 * np.linalg.norm(z) * np.abs(w_dup).max()


def test_min_norm_vector_moves_only_the_named_readouts():
    w = _directions(1)
    v = min_norm_readout_vector(w, np.array([1.0, 0, 0, -1.0, 0, 0]))
    np.testing.assert_allclose(w @ v, [1, 0, 0, -1, 0, 0], atol=1e-10)
    single = min_norm_readout_vector(w, np.eye(len(w))[2])
    z = unique_effect_vector(w, 2)
    np.testing.assert_allclose(single, z / (z @ z), atol=1e-10)  # parallel to z_a


class _FakeProbe:
    """Just the attributes of an AppraisalProbeResult that the direction code reads."""

    def __init__(self, w: np.ndarray, names: tuple[str, ...]):
        self.directions = {("resid_post", 3): w}
        self.intercepts = {("resid_post", 3): np.zeros(len(w))}
        self.appraisal_names = names


def test_combo_vectors_unique_raw_and_errors():
    names = ("pleasantness", "unpleasantness", "other_responsblt", "a", "b", "c")
    w = _directions(2)
    probe = _FakeProbe(w, names)
    combo = AppraisalCombo.parse("pleasantness,other_responsblt", "+,+")
    v = combo_vector(probe, "resid_post", 3, combo)
    np.testing.assert_allclose(w @ v, [1, 0, 1, 0, 0, 0], atol=1e-10)
    partial = combo_vector(probe, "resid_post", 3, combo, fixed=["a"])
    np.testing.assert_allclose(w[[0, 2, 3]] @ partial, [1, 1, 0], atol=1e-10)
    assert np.linalg.norm(partial) < np.linalg.norm(v)  # fewer constraints, shorter vector
    np.testing.assert_allclose(
        combo_vector(probe, "resid_post", 3, combo, method="raw"), w[0] + w[2]
    )
    with pytest.raises(SteeringError, match="spelling"):
        combo_vector(probe, "resid_post", 3, AppraisalCombo.parse("pleasantnes"))
    with pytest.raises(SteeringError, match="both steered and held fixed"):
        combo_vector(probe, "resid_post", 3, combo, fixed=["pleasantness"])
    with pytest.raises(SteeringError, match="no appraisal probe"):
        combo_vector(probe, "resid_post", 4, combo)
    degenerate = _FakeProbe(np.vstack([w[:5], 2 * w[0]]), names)
    with pytest.raises(SteeringError, match="cannot be moved"):
        combo_vector(degenerate, "resid_post", 3, AppraisalCombo.parse("pleasantness"))


def test_random_directions_are_seeded_per_layer():
    a = random_direction(64, 0, 5, norm=3.0)
    assert np.linalg.norm(a) == pytest.approx(3.0)
    np.testing.assert_array_equal(a, random_direction(64, 0, 5, norm=3.0))
    assert not np.allclose(a, random_direction(64, 1, 5, norm=3.0))
    assert not np.allclose(a, random_direction(64, 0, 6, norm=3.0))


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


# --------------------------------------------------------------------------- conditions


def test_build_conditions_counts_windows_and_controls():
    vecs = {name: {x: np.ones(8) * (x + 1) for x in range(5)} for name in ("+p", "+o")}
    conds = build_conditions(vecs, [1, 3], [-2, 0, 2], n_controls=2, seed=5, span=3)
    steered = [c for c in conds if not c.control and c.combo != "clean"]
    controls = [c for c in conds if c.control]
    assert conds[0].combo == "clean" and conds[0].hooks(None) == []
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
    conds = build_conditions({"+p": {0: np.ones(4)}}, [0], [-1, 1], n_controls=2)
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
    table = sweep.table(n_boot=200)
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
    in tests/test_steering_workflow.py on SmolLM2 output)."""

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


def test_generation_tables_report_masked_raw_named_fluency_and_kappa(monkeypatch):
    import lens_emotion.steering as steering_mod

    replies = {0: " so much joy, I was happy and glad it all worked out", 1: " fine"}

    def fake_generate(model, prompts, hooks, **kwargs):
        # clean: plain replies; steered / control: one names joy, one is degenerate
        return [
            replies[i % 2] if hooks else " calm and quiet all evening long"
            for i in range(len(prompts))
        ]

    monkeypatch.setattr(steering_mod, "generate_with_hooks", fake_generate)
    monkeypatch.setattr(steering_mod, "steering_hooks", lambda *a, **k: [("hook", None)])
    monkeypatch.setattr(steering_mod, "generation_prompts", lambda m, t, i, p: (list(t), False))
    conds = build_conditions({"+p": {0: np.ones(4)}}, [0], [0, 1], n_controls=2)
    sweep = generation_sweep(
        None, ["a", "b", "c", "d"], conds, _WordJudge(), progress=False, readout=_EchoReadout()
    )
    assert sweep.replies is not None and len(sweep.replies) == len(conds) * 4
    full = sweep.table(n_boot=100)
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
    conds = build_conditions({"+p": {0: d, 1: d}}, [0, 1], [-4, 0, 4], n_controls=1)
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


@pytest.fixture(scope="module")
def real_probes(smollm2, crowd_envent, tmp_path_factory):
    from lens_emotion.activations import extract_activations
    from lens_emotion.probing import probe_appraisals, probe_emotions
    from lens_emotion.prompts import build_prompts

    rows = crowd_envent.sample(40, seed=5)
    prompts = build_prompts(smollm2, rows.texts, rows.labels, rows.label_names, "emotion-list")
    store = extract_activations(
        smollm2,
        prompts,
        sites=["resid_post"],
        layers=[12],
        dataset=rows,
        out_dir=tmp_path_factory.mktemp("steer_store"),
        progress=False,
    )
    appraisal = probe_appraisals(
        store,
        rows.appraisals,
        rows.appraisal_names,
        alpha=[10.0, 100.0, 1000.0],
        n_folds=3,
        progress=False,
        num_threads=1,
    )
    emotion = probe_emotions(
        store, rows.labels, rows.label_names, n_folds=2, progress=False, num_threads=1
    )
    return rows, prompts, store, appraisal, emotion


@pytest.mark.integration
def test_raw_space_mapping_matches_an_independent_ridge_fit(real_probes):
    from sklearn.linear_model import Ridge
    from sklearn.preprocessing import StandardScaler

    rows, _, store, appraisal, _ = real_probes
    x = store.get("resid_post", 12)
    w, b, names = appraisal_matrix(appraisal, "resid_post", 12)
    ours = appraisal_readout(x, w, b)
    np.testing.assert_allclose(ours, appraisal.predict("resid_post", 12, x), atol=1e-8)
    xs = StandardScaler().fit_transform(x.astype(np.float64))
    alphas = appraisal.alphas[("resid_post", 12)]
    for j in (names.index("pleasantness"), names.index("other_responsblt")):
        ref = Ridge(alpha=float(alphas[j])).fit(xs, rows.appraisals[:, j]).predict(xs)
        np.testing.assert_allclose(ours[:, j], ref, atol=1e-4 * np.abs(ref).max())


@pytest.mark.integration
def test_unique_vector_moves_only_its_appraisal_through_the_model(smollm2, real_probes):
    rows, prompts, _, appraisal, _ = real_probes
    w, b, names = appraisal_matrix(appraisal, "resid_post", 12)
    a = names.index("pleasantness")
    z = unique_effect_vector(w, a)
    others = np.delete(np.arange(len(names)), a)
    cos = w[others] @ z / (np.linalg.norm(w[others], axis=1) * np.linalg.norm(z))
    assert np.abs(cos).max() < 1e-8

    ids, mask = smollm2.pad([prompts.token_ids[i] for i in range(4)])

    def resid_after(vec: np.ndarray | None) -> np.ndarray:
        """resid_pre of block 13 (= resid_post of block 12 after any steering hook)."""
        from lens_emotion.interventions import steering_hooks

        seen = {}

        def keep(act, hook):
            seen["x"] = act[:, -1].detach().double().numpy()

        hooks = [] if vec is None else steering_hooks(smollm2, vec, 6.0, 12, scale="rms")
        hooks.append((smollm2.hook_name("resid_pre", 13), keep))
        with torch.inference_mode():
            smollm2.bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks)
        return seen["x"]

    clean = appraisal_readout(resid_after(None), w, b)
    unique = appraisal_readout(resid_after(z), w, b) - clean
    raw = appraisal_readout(resid_after(w[a]), w, b) - clean
    assert np.all(unique[:, a] > 0)
    relative = np.abs(unique[:, others]).max(axis=1) / np.abs(unique[:, a])
    assert relative.max() < 1e-3  # the others stay put (float32 model arithmetic)
    raw_relative = np.abs(raw[:, others]).max(axis=1) / np.abs(raw[:, a])
    assert raw_relative.min() > 0.1  # the unprojected direction drags others along


@pytest.mark.integration
def test_real_readout_sweep_and_emotion_promotion(smollm2, real_probes):
    rows, prompts, _, appraisal, emotion = real_probes
    sub = prompts.__class__(
        prompts.template,
        prompts.prompts[:6],
        prompts.token_ids[:6],
        prompts.label_tokens,
        prompts.targets[:6],
    )
    v = combo_vector(appraisal, "resid_post", 12, AppraisalCombo.parse("pleasantness"))
    conds = build_conditions({"+pleasantness": {12: v}}, [12], [-8, 0, 8], n_controls=1)
    sweep = readout_sweep(smollm2, sub, conds, scale="rms", progress=False)
    assert isinstance(sweep.conditions[0], SteeringCondition)
    shift = np.abs(sweep.values[1:] - sweep.values[0]).max()
    assert shift > 0.01
    table = sweep.table(n_boot=100)
    assert isinstance(table, pd.DataFrame) and set(table["control"]) == {False, True}

    promo = emotion_promotion(
        smollm2, sub, emotion, ["joy"], [12], betas=[1e-6, 20.0], n_controls=1, progress=False
    )
    t = promo.table.set_index(["beta", "control"])
    # bookkeeping against an independent clean readout
    from lens_emotion.inference import label_logprobs

    lp = label_logprobs(smollm2, sub, 8, False)
    p = np.exp(lp - lp.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    j = sub.label_tokens.labels.index("joy")
    assert (t["n"] == 6).all()
    assert (t["n_eligible"] == int((p.argmax(1) != j).sum())).all()
    np.testing.assert_allclose(t["p_clean"], p[:, j].mean(), atol=1e-4)
    # a vanishing step changes nothing; a real one moves p(joy) (either way: w_e at the last
    # token is not guaranteed to promote joy in this small model, see BENCHMARKS.md)
    assert abs(t.loc[(1e-6, False), "delta_p"]) < 1e-4
    assert abs(t.loc[(20.0, False), "p_steered"] - t.loc[(20.0, False), "p_clean"]) > 1e-3
    assert ((t["success_rate"] >= 0) & (t["success_rate"] <= 1)).all()
    assert ((t["delta_p"] >= -1) & (t["delta_p"] <= 1)).all()
