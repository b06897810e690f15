"""``probe --eval-data-path`` and ``--layers`` reach the workflow (tiny model, real rows)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from lens_emotion.cli import main


@pytest.mark.integration
def test_probe_external_evaluation_file_and_layer_subset(
    tiny_llama_dir, crowd_envent_path, tmp_path
):
    frame = pd.read_csv(crowd_envent_path, encoding="cp1252")
    held = tmp_path / "held" / "enVent_gen_Data.csv"
    held.parent.mkdir()
    frame.groupby("emotion").head(6).to_csv(held, index=False, encoding="cp1252")
    argv = ["probe", "--model", str(tiny_llama_dir), "--data-path", str(crowd_envent_path)]
    argv += ["--limit", "130", "--eval-data-path", str(held), "--layers", "1", "--folds", "2"]
    argv += ["--sites", "resid_post", "--quiet", "--out", str(tmp_path / "out")]
    assert main(argv) == 0
    evaluated = pd.read_csv(tmp_path / "out" / "probe_emotions_eval.csv")
    assert set(evaluated.layer) == {1}
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["eval_data"]["n"] == len(frame.groupby("emotion").head(6))
