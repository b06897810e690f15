"""Windowed patching, head patching, ablations and the control task.

The scientific checks run on the real SmolLM2-135M-Instruct with real crowd-enVENT rows; the
fast last-position path is checked against the slow per-pair reference (batch size 1, one
full-sequence forward pass per pair per window, bridge hooks overwriting the last position).
"""

import dataclasses

import numpy as np
import pytest

from lens_emotion.inference import infer_emotions
from lens_emotion.patching import (
    TABLE_COLUMNS,
    PatchingError,
    ablate_sites,
    bootstrap_ci,
    compare_control,
    compare_heads,
    draw_pairs,
    patch_heads,
    patch_sites,
    windows,
)
from lens_emotion.patching.engines import clean_activations

# --------------------------------------------------------------------------- no model


def test_windows_are_clipped_and_validated():
    grid = windows(30, 3)
    assert len(grid) == 30
    assert grid[0] == (0, (0, 1)) and grid[14] == (14, (13, 14, 15)) and grid[29] == (29, (28, 29))
    assert windows(30, 5, [2])[0] == (2, (0, 1, 2, 3, 4))
    assert windows(30, 1, [7]) == [(7, (7,))]
    with pytest.raises(PatchingError, match="odd"):
        windows(30, 2)
    with pytest.raises(PatchingError, match="out of range"):
        windows(30, 3, [30])


def test_bootstrap_ci_is_seeded_and_brackets_the_mean():
    rng = np.random.default_rng(0)
    values = (rng.random((80, 3)) < [0.1, 0.5, 1.0]).astype(float)
    low, high = bootstrap_ci(values, n_boot=500, seed=1)
    again = bootstrap_ci(values, n_boot=500, seed=1)
    np.testing.assert_array_equal(low, again[0])
    means = values.mean(axis=0)
    assert (low <= means).all() and (means <= high).all()
    assert low[2] == high[2] == 1.0  # no spread when every pair transfers
    assert high[1] - low[1] > high[0] - low[0]  # a rate near 0.5 is the least certain


# --------------------------------------------------------------------------- tiny model plumbing


@pytest.fixture(scope="module")
def tiny_pairs(tiny_llama, sample_dataset):
    return draw_pairs(
        tiny_llama, sample_dataset, n_pairs=6, seed=0, agreeing_only=False, progress=False
    )


def test_table_has_the_documented_columns(tiny_llama, tiny_pairs):
    res = patch_sites(tiny_llama, tiny_pairs, span=1, n_boot=200, progress=False)
    assert tuple(res.table.columns) == TABLE_COLUMNS
    assert len(res.table) == 3 * tiny_llama.n_layers
    total = res.table.transfer + res.table.remained + res.table.neither
    np.testing.assert_allclose(total, 1.0)
    assert (res.table.transfer_ci_low <= res.table.transfer).all()
    assert (res.table.transfer <= res.table.transfer_ci_high).all()
    assert len(res.per_pair) == len(tiny_pairs) * len(res.table)
    assert set(res.per_pair.outcome) <= {"transfer", "remained", "neither"}
    mean_change = res.per_pair.groupby(["site", "center_layer"]).logit_diff_change.mean()
    merged = res.table.set_index(["site", "center_layer"]).mean_logit_diff_change
    np.testing.assert_allclose(mean_change.loc[merged.index], merged, rtol=1e-5, atol=1e-6)
    with pytest.raises(PatchingError, match="Unknown sites"):
        patch_sites(tiny_llama, tiny_pairs, sites=("attn",), progress=False)


def test_compare_heads_is_scale_free(tiny_llama, tiny_pairs):
    heads = patch_heads(tiny_llama, tiny_pairs, n_boot=50, progress=False)
    same = compare_heads(heads, heads, k=3)
    assert same["pearson"] == pytest.approx(1.0) and same["overlap"] == 3
    scaled = dataclasses.replace(heads, effects=heads.effects * 5, per_pair=heads.per_pair * 5)
    assert compare_heads(heads, scaled, k=3)["emotion_top"] == same["control_top"]
    one_layer = patch_heads(tiny_llama, tiny_pairs, layers=[0], n_boot=50, progress=False)
    with pytest.raises(PatchingError, match="same layers"):
        compare_heads(heads, one_layer)


# --------------------------------------------------------------------------- real SmolLM2


@pytest.fixture(scope="module")
def real_rows(crowd_envent):
    return crowd_envent.sample(36, seed=0)


@pytest.fixture(scope="module")
def real_pairs(smollm2, real_rows):
    result = infer_emotions(smollm2, real_rows, "emotion-list", progress=False)
    return draw_pairs(smollm2, real_rows, n_pairs=3, seed=0, inference=result, progress=False)


@pytest.fixture(scope="module")
def real_grid(smollm2, real_pairs):
    """Fast-path grid at a few center layers (span 3) on the real pairs."""
    return patch_sites(smollm2, real_pairs, layers=[0, 14, 29], span=3, progress=False)


@pytest.mark.integration
def test_real_pairs_come_from_agreeing_rows(real_pairs):
    assert len(real_pairs) == 3 and real_pairs.calibration == "mean"
    assert real_pairs.source_prediction == real_pairs.source_human
    assert real_pairs.target_prediction == real_pairs.target_human
    assert all(
        s != t for s, t in zip(real_pairs.source_human, real_pairs.target_human, strict=True)
    )
    assert real_pairs.n_kept == real_pairs.n_candidates == 3
    assert 3 <= real_pairs.n_eligible_rows < real_pairs.n_rows == 36


@pytest.mark.integration
def test_fast_path_matches_the_per_pair_reference_on_smollm2(smollm2, real_pairs, real_grid):
    pairs = real_pairs.subset([0, 1])
    slow = patch_sites(
        smollm2, pairs, layers=[14, 29], span=3, method="reference", n_boot=100, progress=False
    )
    assert real_grid.method == "fast" and slow.method == "reference"
    fast = real_grid.per_pair[
        real_grid.per_pair.pair.isin([0, 1]) & real_grid.per_pair.center_layer.isin([14, 29])
    ]
    fast = fast.sort_values(["pair", "site", "center_layer"])
    slow_rows = slow.per_pair.sort_values(["pair", "site", "center_layer"])
    assert len(fast) == len(slow_rows) == 2 * 3 * 2
    assert list(fast.outcome) == list(slow_rows.outcome)
    np.testing.assert_allclose(fast.logit_diff_change, slow_rows.logit_diff_change, atol=1e-4)
    np.testing.assert_allclose(real_grid.clean_logit_diff[:2], slow.clean_logit_diff, atol=1e-4)
    assert real_grid.n_clean_mismatch == 0


@pytest.mark.integration
def test_head_patching_is_per_query_head_and_matches_the_reference(smollm2, real_pairs):
    pairs = real_pairs.subset([0])
    fast = patch_heads(smollm2, pairs, layers=[20], method="fast", n_boot=50, progress=False)
    slow = patch_heads(smollm2, pairs, layers=[20], method="reference", n_boot=50, progress=False)
    assert fast.effects.shape == (1, smollm2.n_heads) == (1, 9)
    assert fast.per_pair_effects.shape == (1, 1, 9)
    np.testing.assert_allclose(fast.per_pair, slow.per_pair, atol=1e-4)
    # query heads that share a key/value head (3 groups of 3) still have their own effects
    assert len({round(float(e), 5) for e in fast.effects[0]}) == 9
    frame = fast.to_frame()
    assert list(frame.columns[:3]) == ["layer", "head", "mean_logit_diff_change"]
    assert len(frame) == 9 and (frame.layer == 20).all()


@pytest.mark.integration
def test_hidden_state_patch_effect_grows_with_depth(smollm2, real_pairs, real_grid):
    """The prompts end in the same tokens ("Answer:"): early last-token states barely differ,
    while the last hidden state carries the whole readout."""
    rows = real_grid.per_pair[real_grid.per_pair.site == "resid_post"]
    table = real_grid.curve("resid_post").set_index("center_layer")
    assert table.transfer[29] == 1.0 and table.transfer[0] < 1.0
    early = rows[rows.center_layer == 0].logit_diff_change.abs().mean()
    late = rows[rows.center_layer == 29].logit_diff_change.abs().mean()
    assert early < late
    # overwriting the final hidden state reproduces the source's own logit difference
    _, source_logits = clean_activations(
        smollm2, real_pairs.source_tokens, real_pairs.label_token_ids, "fast"
    )
    index = np.arange(len(real_pairs))
    src_logits = source_logits.numpy()
    src_diff = (
        src_logits[index, real_pairs.source_label_idx]
        - src_logits[index, real_pairs.target_label_idx]
    )
    patched = rows[rows.center_layer == 29].sort_values("pair").logit_diff.to_numpy()
    np.testing.assert_allclose(patched, src_diff, atol=1e-3)


@pytest.mark.integration
def test_ablations_on_real_prompts(smollm2, real_pairs):
    pairs = real_pairs.subset([0])
    kwargs = {"sites": ("attn_out",), "layers": [14], "span": 3, "n_boot": 50, "progress": False}
    fast = ablate_sites(smollm2, pairs, method="fast", **kwargs)
    slow = ablate_sites(smollm2, pairs, method="reference", **kwargs)
    assert fast.n_prompts == 2 and list(fast.table["mode"]) == ["zero", "mean", "random"]
    np.testing.assert_allclose(fast.table.kept, slow.table.kept)
    np.testing.assert_allclose(
        fast.table.mean_logit_change, slow.table.mean_logit_change, atol=1e-4
    )
    # zeroing the final hidden state leaves only the calibration offset: every prompt is then
    # read as the label with the smallest offset, so exactly those prompts keep their label
    zero = ablate_sites(
        smollm2,
        real_pairs,
        modes=("zero",),
        sites=("resid_post",),
        layers=[29],
        span=1,
        progress=False,
    )
    fallback = int(np.argmin(real_pairs.calibration_offset))
    predicted = np.concatenate([real_pairs.source_label_idx, real_pairs.target_label_idx])
    ids = np.concatenate([real_pairs.source_ids, real_pairs.target_ids])
    _, first = np.unique(ids, return_index=True)
    assert zero.table.kept.iloc[0] == pytest.approx(np.mean(predicted[first] == fallback))


@pytest.mark.integration
def test_control_task_patching_on_real_rows(smollm2, real_rows, real_grid):
    control_pairs = draw_pairs(
        smollm2,
        real_rows.sample(16, seed=1),
        n_pairs=2,
        seed=0,
        template="control-first-word",
        progress=False,
    )
    assert control_pairs.template.task == "control" and control_pairs.calibration is None
    for prompt, word in zip(control_pairs.source_prompts, control_pairs.source_human, strict=True):
        assert prompt.rsplit("Context: ", 1)[1].startswith(word)
    control = patch_sites(
        smollm2, control_pairs, layers=[0, 14, 29], span=3, n_boot=100, progress=False
    )
    late = control.table[(control.table.site == "resid_post") & (control.table.center_layer == 29)]
    assert late.transfer.iloc[0] == 1.0
    comparison = compare_control(real_grid, control)
    assert list(comparison.site) == ["attn_out", "mlp_out", "resid_post"]
    for row in comparison.itertuples():
        curve = control.curve(row.site).set_index("center_layer")
        assert row.control_transfer_at_emotion_peak == curve.transfer[row.emotion_peak_layer]
