"""run_attention: one folder with the tables, figures and manifest; settings checked early."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lens_emotion.attention import AttentionError, AttentionSettings, run_attention


def test_run_attention_writes_tables_figures_and_manifest(tiny_llama, sample_dataset, tmp_path):
    settings = AttentionSettings(rows=4, layers=[0, 1], n_boot=50, seed=3)
    outputs = run_attention(tiny_llama, sample_dataset, tmp_path, settings, progress=False)
    names = {p.name for p in outputs.files}
    assert {
        "attention_mass_layers.csv",
        "attention_mass_bands.csv",
        "saliency.csv",
        "attention_mass.json",
        "attention_mass_by_layer.html",
        "attention_emotion_heatmap.html",
        "manifest.json",
    } <= names
    assert all(p.is_file() for p in outputs.files)
    assert set(outputs.figures) == {"mass", "emotion_heatmap"}
    assert len(outputs.result) == 4 and outputs.result.layers == (0, 1)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["seed"] == 3
    assert manifest["settings"]["rows"] == 4 and manifest["settings"]["layers"] == [0, 1]
    assert manifest["data"]["n"] == 4
    assert {"attention mass", "tables", "figures", "total"} <= set(manifest["timings_s"])
    summary = outputs.summary()
    assert summary["n_prompts"] == 4 and "manifest.json" in summary["files"]
    json.dumps(summary)  # JSON-ready
    layers = pd.read_csv(tmp_path / "attention_mass_layers.csv")
    pd.testing.assert_frame_equal(layers, outputs.result.to_frame(), check_dtype=False)


def test_run_attention_matches_attention_mass_on_the_same_rows(
    tiny_llama, sample_dataset, tmp_path
):
    from lens_emotion.attention import attention_mass

    settings = AttentionSettings(rows=3, layers=[1], n_boot=40, seed=2, formats=())
    outputs = run_attention(tiny_llama, sample_dataset, tmp_path, settings, progress=False)
    direct = attention_mass(
        tiny_llama, sample_dataset.sample(3, seed=2), layers=[1], n_boot=40, seed=2, progress=False
    )
    pd.testing.assert_frame_equal(outputs.result.table, direct.table)
    assert not list(tmp_path.glob("*.html"))  # formats=() writes no figure files


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"rows": 0}, "rows"), ({"formats": ("html", "gif")}, "gif")],
)
def test_settings_reject_bad_values(kwargs, match):
    with pytest.raises(AttentionError, match=match):
        AttentionSettings(**kwargs)


def test_settings_normalise_lists():
    settings = AttentionSettings(layers=[3, 1], formats=["html", "png"])
    assert settings.layers == (3, 1) and settings.formats == ("html", "png")
    assert AttentionSettings().rows == 48 and AttentionSettings().template == "emotion-list"
