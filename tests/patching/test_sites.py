"""Windowed patching over sites and center layers, and its shared helpers.

The scientific checks run on the real SmolLM2-135M-Instruct with real crowd-enVENT rows; the
fast last-position path is checked against the slow per-pair reference (batch size 1, one
full-sequence forward pass per pair per window, bridge hooks overwriting the last position).
"""

import json

import numpy as np
import pandas as pd
import pytest

from lens_emotion.patching import (
    TABLE_COLUMNS,
    PatchingError,
    bootstrap_ci,
    patch_sites,
    windows,
)
from lens_emotion.patching.engines import clean_activations
from lens_emotion.results import AnalysisResult

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


def test_site_result_follows_the_protocol(tiny_llama, tiny_pairs, tmp_path):
    res = patch_sites(tiny_llama, tiny_pairs, layers=[1], span=1, n_boot=50, progress=False)
    assert isinstance(res, AnalysisResult)
    assert res.to_frame() is not res.table
    pd.testing.assert_frame_equal(res.to_frame(), res.table)
    paths = res.save(tmp_path / "out")
    assert [p.name for p in paths] == ["patching.csv", "patching_per_pair.csv", "pairs.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(paths[0]), res.table, check_dtype=False)
    assert len(pd.read_csv(paths[1])) == len(res.per_pair)
    assert len(pd.read_csv(paths[2])) == len(tiny_pairs)
    summary = res.summary()
    json.dumps(summary)
    assert summary == res.describe() and summary["n_pairs"] == len(tiny_pairs)
    assert [p["site"] for p in summary["peaks"]] == ["attn_out", "mlp_out", "resid_post"]
    assert len(res.figure().data) == 2 * 3  # a band and a line per site


# --------------------------------------------------------------------------- real SmolLM2


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
