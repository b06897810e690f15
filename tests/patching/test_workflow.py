"""``lens-emotion patch`` and run_patching end to end: settings on tiny models, a small real run."""

import json

import pandas as pd
import pytest

from lens_emotion import cli
from lens_emotion.patching import TABLE_COLUMNS


@pytest.fixture
def reuse_loaded_model(monkeypatch, smollm2):
    """The CLI loads its model by name; hand it the session's already loaded SmolLM2."""
    import lens_emotion.models

    monkeypatch.setattr(lens_emotion.models, "load_model", lambda *args, **kwargs: smollm2)


@pytest.mark.integration
def test_patch_cli_writes_tables_figures_and_manifest(
    reuse_loaded_model, crowd_envent_path, tmp_path, capsys
):
    out = tmp_path / "patch"
    argv = ["patch", "--dataset", "crowd-envent", "--data-path", str(crowd_envent_path)]
    argv += ["--limit", "24", "--pairs", "2", "--span", "3", "--layers", "0,14,29"]
    argv += ["--seed", "0", "--formats", "html", "--out", str(out)]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "pairs kept" in printed and "attn_out" in printed

    table = pd.read_csv(out / "patching.csv")
    assert tuple(table.columns) == TABLE_COLUMNS
    assert sorted(table.center_layer.unique()) == [0, 14, 29] and (table.span == 3).all()
    assert len(table) == 9
    heads = pd.read_csv(out / "heads.csv")
    assert len(heads) == 3 * 9 and set(heads["head"]) == set(range(9))
    ablations = pd.read_csv(out / "ablations.csv")
    assert set(ablations["mode"]) == {"zero", "mean", "random"} and len(ablations) == 27
    control = pd.read_csv(out / "control_patching.csv")
    assert tuple(control.columns) == TABLE_COLUMNS
    comparison = pd.read_csv(out / "control_comparison.csv")
    assert list(comparison.site) == ["attn_out", "mlp_out", "resid_post"]
    control_heads = pd.read_csv(out / "control_heads.csv")
    assert len(control_heads) == len(heads)
    pairs = pd.read_csv(out / "pairs.csv")
    assert (pairs.source_human != pairs.target_human).all()
    for name in ("transfer", "heads", "ablations", "control", "control_heads"):
        html = (out / "figures" / f"{name}.html").read_text()
        assert "plotly" in html.lower()

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["model"]["n_layers"] == 30
    assert manifest["pairs"]["n_kept"] == 2 and manifest["pairs"]["agreeing_only"] is True
    assert manifest["pairs"]["calibration"] == "mean"
    assert manifest["control"]["pairs"]["template"] == "control-first-word"
    head_overlap = manifest["control"]["heads"]
    assert -1 <= head_overlap["pearson"] <= 1 and 0 <= head_overlap["overlap"] <= 10
    assert manifest["parameters"]["method"] == "fast"
    assert set(manifest["files"]) >= {"patching.csv", "heads.csv", "ablations.csv"}


@pytest.mark.integration
def test_patch_cli_bad_request_exits_2(reuse_loaded_model, crowd_envent_path, tmp_path, capsys):
    argv = ["patch", "--data-path", str(crowd_envent_path), "--limit", "20", "--pairs", "0"]
    assert cli.main([*argv, "--out", str(tmp_path / "x")]) == 2
    assert "argument --pairs: expected a positive integer" in capsys.readouterr().err


# --------------------------------------------------------------------------- tiny model


def test_settings_are_the_cli_defaults():
    from lens_emotion.cli.main import build_parser
    from lens_emotion.patching import PatchingSettings

    defaults = PatchingSettings()
    args = build_parser().parse_args(["patch", "--out", "x"])
    assert tuple(args.formats) == defaults.formats == ("html", "png")
    assert (args.pairs, args.span, args.batch_size) == (
        defaults.n_pairs,
        defaults.span,
        defaults.batch_size,
    )
    assert tuple(args.sites) == defaults.sites and args.layers is defaults.layers
    assert (args.no_heads, args.no_ablations, args.no_control) == (False, False, False)
    assert defaults.heads and defaults.ablations and defaults.control


def test_run_patching_writes_what_its_results_save(tiny_llama, sample_dataset, tmp_path):
    from lens_emotion.patching import PatchingSettings, run_patching

    settings = PatchingSettings(
        n_pairs=3, layers=(0, 1), formats=("html",), seed=1, agreeing_only=False, control=False
    )  # a random tiny model predicts one first word for every text: no control pairs
    outputs = run_patching(tiny_llama, sample_dataset, tmp_path, settings, progress=False)
    expected = {"patching.csv", "patching_per_pair.csv", "pairs.csv", "heads.csv"}
    expected |= {"ablations.csv", "manifest.json"}
    assert expected <= set(outputs.files)
    assert {f"figures/{n}.html" for n in outputs.figures} <= set(outputs.files)
    assert set(outputs.figures) == {"transfer", "heads", "ablations"}
    table = pd.read_csv(tmp_path / "patching.csv")
    assert tuple(table.columns) == TABLE_COLUMNS and sorted(table.center_layer.unique()) == [0, 1]
    heads = pd.read_csv(tmp_path / "heads.csv")
    pd.testing.assert_frame_equal(heads, outputs.heads.to_frame(), check_dtype=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest == outputs.manifest
    assert manifest["settings"]["layers"] == [0, 1] and manifest["settings"]["seed"] == 1
    assert manifest["settings"]["formats"] == ["html"]
    assert manifest["parameters"]["layers"] == [0, 1] and manifest["seed"] == 1
    assert set(manifest["timings"]) == {"pairs_s", "patching_s", "heads_s", "ablations_s"}
    assert "total" in manifest["timings_s"]
    summary = outputs.summary()
    json.dumps(summary)  # JSON-ready
    assert summary["pairs"] == len(outputs.sites.pairs) and summary["method"] in {"fast", "bridge"}
    assert {p["site"] for p in summary["peaks"]} == {"attn_out", "mlp_out", "resid_post"}
    assert summary["heads"]["n_heads"] == tiny_llama.n_heads and "control" not in summary


def test_run_patching_skips_what_settings_turn_off(tiny_llama, sample_dataset, tmp_path):
    from lens_emotion.patching import PatchingSettings, run_patching

    settings = PatchingSettings(
        n_pairs=2,
        layers=(1,),
        heads=False,
        ablations=False,
        control=False,
        formats=("html",),
        agreeing_only=False,
    )
    outputs = run_patching(tiny_llama, sample_dataset, tmp_path, settings, progress=False)
    assert outputs.heads is outputs.ablations is outputs.control is None
    assert set(outputs.figures) == {"transfer"}
    assert not (tmp_path / "heads.csv").exists() and not (tmp_path / "ablations.csv").exists()
    assert set(outputs.summary()) == {
        "pairs",
        "n_candidates",
        "n_eligible_rows",
        "n_rows",
        "calibration",
        "method",
        "peaks",
    }
