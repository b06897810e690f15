"""Ablations and the control task's comparisons: tiny-model plumbing, real SmolLM2 checks."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from lens_emotion.patching import (
    AblationResult,
    PatchingError,
    ablate_sites,
    compare_control,
    compare_heads,
    draw_pairs,
    patch_heads,
    patch_sites,
)
from lens_emotion.results import AnalysisResult

# --------------------------------------------------------------------------- tiny model


def test_ablation_result_follows_the_protocol(tiny_llama, tiny_pairs, tmp_path):
    res = ablate_sites(
        tiny_llama, tiny_pairs, sites=("mlp_out",), layers=[0, 1], n_boot=50, progress=False
    )
    assert isinstance(res, AnalysisResult) and isinstance(res, AblationResult)
    assert len(res.table) == 3 * 2
    assert list(res.table["mode"].unique()) == ["zero", "mean", "random"]
    assert res.to_frame() is not res.table
    pd.testing.assert_frame_equal(res.to_frame(), res.table)
    (path,) = res.save(tmp_path)
    assert path.name == "ablations.csv" and len(pd.read_csv(path)) == len(res.table)
    summary = res.summary()
    json.dumps(summary)
    assert summary["n_prompts"] == res.n_prompts and len(summary["lowest_kept"]) == 3
    for row in summary["lowest_kept"]:
        rows = res.table[(res.table["mode"] == row["mode"]) & (res.table.site == row["site"])]
        assert row["kept"] == rows.kept.min()
    with pytest.raises(PatchingError, match="ablation modes"):
        ablate_sites(tiny_llama, tiny_pairs, modes=("noise",), progress=False)


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
