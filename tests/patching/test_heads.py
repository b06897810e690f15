"""Head patching (hook_z, one query head at a time): tiny-model plumbing, real SmolLM2 checks."""

import json

import numpy as np
import pandas as pd
import pytest

from lens_emotion.patching import HEAD_COLUMNS, HeadPatchingResult, patch_heads
from lens_emotion.results import AnalysisResult

# --------------------------------------------------------------------------- tiny model


def test_head_result_follows_the_protocol(tiny_llama, tiny_pairs, tmp_path):
    heads = patch_heads(tiny_llama, tiny_pairs, layers=[0, 1], n_boot=50, progress=False)
    assert isinstance(heads, AnalysisResult) and isinstance(heads, HeadPatchingResult)
    assert heads.table is heads.table  # computed once
    assert tuple(heads.table.columns) == HEAD_COLUMNS
    assert len(heads.table) == 2 * tiny_llama.n_heads
    np.testing.assert_allclose(heads.table.mean_logit_diff_change, heads.effects.reshape(-1))
    assert (heads.table.ci_low <= heads.table.mean_logit_diff_change + 1e-9).all()
    frame = heads.to_frame()
    frame.loc[0, "layer"] = -1  # a copy: the result's table is untouched
    assert heads.table.layer.iloc[0] == 0
    (path,) = heads.save(tmp_path)
    assert path.name == "heads.csv"
    pd.testing.assert_frame_equal(pd.read_csv(path), heads.table, check_dtype=False)
    summary = heads.summary()
    json.dumps(summary)
    best = heads.top(1).iloc[0]
    assert summary["top_head"] == f"{int(best.layer)}.{int(best['head'])}"
    assert summary["n_heads"] == tiny_llama.n_heads and summary["n_pairs"] == len(tiny_pairs)
    assert heads.figure().data[0].type == "heatmap"


# --------------------------------------------------------------------------- real SmolLM2


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
