"""One sweep on the real SmolLM2 and real crowd-enVENT rows, at tiny sizes."""

from __future__ import annotations

import numpy as np
import pytest

from lens_emotion.sweep import localisation, parse_config, run_sweep

pytestmark = pytest.mark.integration


def test_smollm2_sweep_matches_its_workflow_and_spans_the_depth(
    smollm2, crowd_envent_path, tmp_path
):
    from lens_emotion.data import load_crowd_envent
    from lens_emotion.inference import InferenceSettings, run_inference

    config = parse_config(
        {
            "name": "smollm2-tiny",
            "templates": ["emotion-list"],
            "analyses": ["infer", "probe", "patch"],
            "device": "cpu",
            "data": {"name": "crowd-envent", "path": str(crowd_envent_path), "limit": 26},
            "settings": {
                "infer": {"compare_calibrations": False},
                "probe": {
                    "sites": ["resid_post"], "n_folds": 2, "alpha": 1.0,
                    "layers": [0, 7, 14, 21, 29],
                },
                "patch": {
                    "n_pairs": 4, "sites": ["attn_out", "mlp_out"], "agreeing_only": False,
                    "heads": False, "ablations": False, "control": False,
                    "layers": [1, 14, 28],
                },
            },
            "models": [{"spec": "smollm2-135m-instruct", "name": "smollm2"}],
        }
    )  # fmt: skip
    outputs = run_sweep(config, tmp_path / "out", progress=False)
    assert not outputs.failed and len(outputs.computed) == 3
    table = outputs.table
    assert set(table["family"]) == {"llama"} and set(table["n_layers"]) == {30}
    probe = table[(table.analysis == "probe") & (table.metric == "accuracy")]
    depths = probe[probe.site == "resid_post"].sort_values("layer")["relative_depth"]
    assert np.allclose(depths, np.array([0, 7, 14, 21, 29]) / 29)
    transfer = table[(table.analysis == "patch") & (table.metric == "transfer")]
    assert sorted(set(transfer["relative_depth"])) == pytest.approx(
        [1 / 29, 14 / 29, 28 / 29], abs=1e-6
    )
    # the sweep runs the analysis's own workflow: the same call gives the same accuracy
    data = load_crowd_envent(crowd_envent_path, limit=26, seed=0)
    direct = run_inference(
        smollm2,
        data,
        tmp_path / "direct",
        InferenceSettings(template="emotion-list", compare_calibrations=False),
        progress=False,
    )
    infer = table[(table.analysis == "infer") & (table.metric == "accuracy")]
    assert infer["value"].iloc[0] == pytest.approx(direct.result.summary()["accuracy"])
    loc = localisation(table).iloc[0]
    assert 0 <= loc.probe_plateau_depth <= 1 and 0 <= loc.attn_peak_depth <= 1
    assert (tmp_path / "out" / "figures" / "mhsa_peak_vs_probe_plateau.html").is_file()
