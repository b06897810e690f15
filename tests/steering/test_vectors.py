import numpy as np
import pytest
import torch

from lens_emotion.steering.vectors import (
    AppraisalCombo,
    SteeringError,
    appraisal_matrix,
    appraisal_readout,
    combo_vector,
    layer_window,
    min_norm_readout_vector,
    random_direction,
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


def test_layer_window_is_centred_and_odd():
    assert layer_window(5, 1) == [5]
    assert layer_window(5, 3) == [4, 5, 6]
    with pytest.raises(SteeringError, match="odd"):
        layer_window(5, 2)


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
