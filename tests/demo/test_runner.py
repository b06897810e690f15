import json

import numpy as np
import pytest

from lens_emotion.demo import DemoConfig, run_demo
from lens_emotion.demo.runner import STEPS, _data_files, _load_demo_data


def test_demo_runs_every_step_and_reports_each(tiny_llama_dir, tmp_path):
    """Plumbing on a random tiny model: every step runs or is reported as skipped, with why."""
    index = run_demo(
        out=tmp_path / "demo", model_spec=str(tiny_llama_dir), quick=True, progress=False
    )
    html = index.read_text()
    manifest = json.loads((tmp_path / "demo" / "manifest.json").read_text())
    assert set(manifest["timings_s"]) >= {"load model", "load data", "total", *STEPS}
    assert "Emotion inference" in html and "Control task" in html
    assert "Probing" in html and "Attention" in html
    for name, reason in manifest["skipped"].items():
        assert name in STEPS and reason  # a skipped step says why, in the page too
        assert f"{name} (skipped)" in html
    ran = set(STEPS) - set(manifest["skipped"])
    assert {"inference", "control task", "probing", "attention"} <= ran
    assert (tmp_path / "demo" / "probing" / "probe_emotions.csv").is_file()
    assert html.count("<script") >= 1 and 'src="http' not in html
    assert manifest["data"]["name"] == "sample"
    assert manifest["sev"]["n"] > 0 and len(manifest["sev"]["sha256"]) == 64
    for run in ("paper", "emotion-list", "emotion-list_mean"):
        assert (tmp_path / "demo" / "inference" / run / "predictions.csv").is_file()


def test_data_root_resolves_both_corpora(tmp_path):
    assert _data_files(None) == (None, None)
    crowd, sev = _data_files(tmp_path)
    assert crowd == tmp_path / "crowd-envent" / "enVent_gen_Data.csv"
    assert sev == tmp_path / "sev" / "sev.jsonl"


def test_missing_real_data_fails_with_a_clear_error(tiny_llama_dir, tmp_path):
    from lens_emotion.errors import LensEmotionError

    with pytest.raises(LensEmotionError, match="not found"):
        run_demo(
            out=tmp_path / "demo",
            model_spec=str(tiny_llama_dir),
            data_root=tmp_path / "nowhere",
            config=DemoConfig.quick(),
            progress=False,
        )


def test_quick_sizes_take_a_stratified_part_of_the_sample_and_defaults_all_of_it():
    from lens_emotion.data import load_sample

    sample = load_sample()
    quick = _load_demo_data(None, DemoConfig.quick(), seed=0)
    assert len(quick) == 52 < len(sample)
    assert set(quick.ids) <= set(sample.ids)
    _, counts = np.unique(np.asarray(quick.labels), return_counts=True)
    assert len(counts) == 13 and counts.min() == counts.max() == 4  # 4 of each emotion
    assert len(_load_demo_data(None, DemoConfig(), seed=0)) == len(sample)
