"""The attribution workflow: its settings, a tiny run, and the ``attribute`` command on a small
real run checked against real single-layer patching."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from lens_emotion.attribution import (
    ATP_SITES,
    HEAD_SITE,
    AttributionError,
    AttributionSettings,
    run_attribution,
)


def test_settings_hold_the_cli_defaults():
    """One default, stated once: ``attribute`` with no options gives AttributionSettings()."""
    from lens_emotion.cli.main import build_parser

    args = build_parser().parse_args(["attribute", "--out", "x"])
    defaults = AttributionSettings()
    assert args.pairs == defaults.n_pairs and args.seed == defaults.seed
    assert tuple(args.sites) == defaults.sites == ATP_SITES
    assert tuple(args.formats) == defaults.formats == ("html",)
    assert args.batch_size == defaults.batch_size
    assert args.template == defaults.template and args.method == defaults.method
    assert args.calibrate == defaults.calibrate
    assert (not args.all_rows, not args.no_heads, not args.no_compare) == (
        defaults.agreeing_only,
        defaults.heads,
        defaults.compare,
    )


def test_settings_take_lists_and_refuse_bad_values():
    settings = AttributionSettings(sites=["attn_out", "mlp_out"], formats=["html", "png"])
    assert settings.sites == ("attn_out", "mlp_out") and settings.formats == ("html", "png")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.n_pairs = 3  # type: ignore[misc]
    for kwargs, message in [
        ({"sites": ("attn_out", "bogus")}, "Unknown AtP site"),
        ({"sites": ("mlp_out", "mlp_out")}, "repeat"),
        ({"n_pairs": 0}, "n_pairs"),
        ({"batch_size": 0}, "batch_size"),
        ({"formats": ()}, "formats"),
    ]:
        with pytest.raises(AttributionError, match=message):
            AttributionSettings(**kwargs)


def test_tiny_run_writes_tables_figures_and_manifest(tiny_llama, sample_dataset, tmp_path):
    settings = AttributionSettings(n_pairs=3, sites=("attn_out", "resid_mid"), batch_size=2)
    outputs = run_attribution(
        tiny_llama, sample_dataset, tmp_path, settings, progress=False, command="test"
    )
    assert outputs.settings is settings and outputs.atp.n_pairs == 3
    assert [p.name for p in outputs.files] == [
        "attribution.csv",
        "attribution_per_pair.csv",
        "pairs.csv",
        "attribution.html",
        "attribution_vs_patching.json",
        "attribution_vs_patching.csv",
        "attribution_vs_patching.html",
        "manifest.json",
    ]
    assert all(p.is_file() and p.stat().st_size > 0 for p in outputs.files)
    assert set(outputs.figures) == {"estimates", "vs_patching"}
    table = pd.read_csv(tmp_path / "attribution.csv")
    assert list(table.columns) == [*outputs.atp.table.columns, "patch_effect"]
    # real patching has attn_out (and heads), not resid_mid
    assert table[table.site.isin(["attn_out", HEAD_SITE])].patch_effect.notna().all()
    assert table[table.site == "resid_mid"].patch_effect.isna().all()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["command"] == "test" and manifest["seed"] == 0
    assert manifest["settings"]["sites"] == ["attn_out", "resid_mid"]
    assert manifest["settings"]["n_pairs"] == 3 and manifest["settings"]["formats"] == ["html"]
    assert manifest["parameters"]["sites"] == ["attn_out", "resid_mid"]
    assert manifest["pairs"]["n_kept"] == 3
    assert {"pairs", "attribution patching", "real patching", "total"} <= set(manifest["timings_s"])
    assert manifest["cost"] == json.loads(json.dumps(outputs.comparison.cost))
    report = json.loads((tmp_path / "attribution_vs_patching.json").read_text())
    assert report["manifest"]["settings"] == manifest["settings"]
    summary = outputs.summary()
    assert json.loads(json.dumps(summary)) == summary
    assert summary["atp"]["n_pairs"] == 3 and "sites" in summary["comparison"]["correlations"]


def test_tiny_run_without_comparison(tiny_llama, sample_dataset, tmp_path):
    settings = AttributionSettings(n_pairs=2, heads=False, compare=False)
    outputs = run_attribution(tiny_llama, sample_dataset, tmp_path, settings, progress=False)
    assert outputs.comparison is None and set(outputs.figures) == {"estimates"}
    assert [p.name for p in outputs.files] == [
        "attribution.csv",
        "attribution_per_pair.csv",
        "pairs.csv",
        "attribution.html",
        "manifest.json",
    ]
    table = pd.read_csv(tmp_path / "attribution.csv")
    assert "patch_effect" not in table.columns and set(table.site) == set(ATP_SITES)
    assert "comparison" not in outputs.summary()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["cost"]["atp_backward_passes"] == 2
    assert manifest["settings"]["compare"] is False


@pytest.mark.parametrize(
    ("extra", "message"),
    [(["--sites", "attn_out,bogus"], "unknown 'bogus'"), (["--pairs", "0"], "--pairs")],
)
def test_cli_attribute_bad_options(tmp_path, capsys, extra, message):
    from lens_emotion.cli import main

    assert main(["attribute", "--dataset", "sample", "--out", str(tmp_path), *extra]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.integration
def test_cli_attribute_real_run_correlates_with_real_patching(
    smollm2, crowd_envent_path, tmp_path, monkeypatch
):
    import lens_emotion.models

    requested = []

    def reuse_loaded(spec, **kwargs):  # the session's real SmolLM2, not a second copy
        requested.append(spec)
        return smollm2

    monkeypatch.setattr(lens_emotion.models, "load_model", reuse_loaded)
    from lens_emotion.cli import main

    out = tmp_path / "atp"
    argv = ["attribute", "--model", "smollm2-135m-instruct", "--dataset", "crowd-envent"]
    argv += ["--data-path", str(crowd_envent_path), "--limit", "40", "--pairs", "3"]
    argv += ["--seed", "0", "--out", str(out)]
    assert main(argv) == 0
    assert requested == ["smollm2-135m-instruct"]

    table = pd.read_csv(out / "attribution.csv")
    assert list(table.columns[:4]) == ["site", "layer", "head", "atp_effect"]
    assert set(table.site) == {*ATP_SITES, HEAD_SITE}
    assert table[table.site != HEAD_SITE]["head"].isna().all()
    assert table[table.site == HEAD_SITE]["head"].notna().all()
    assert len(table) == len(ATP_SITES) * 30 + 30 * 9
    # Real effects are there for the three patched sites and the heads, not resid_pre/mid.
    patched = table.site.isin(["attn_out", "mlp_out", "resid_post", HEAD_SITE])
    assert table[patched].patch_effect.notna().all()
    assert table[~patched].patch_effect.isna().all()

    report = json.loads((out / "attribution_vs_patching.json").read_text())
    corr = report["correlations"]
    assert set(corr) == {"attn_out", "mlp_out", "resid_post", "sites", HEAD_SITE}
    for key in ("attn_out", "mlp_out", "resid_post"):
        assert corr[key]["pearson"] > 0 and corr[key]["spearman"] > 0, key
    assert corr["sites"]["per_pair"]["pearson"] > 0.5
    assert corr["sites"]["per_pair"]["spearman"] > 0.5
    assert corr[HEAD_SITE]["per_pair"]["pearson"] > 0.5
    assert corr[HEAD_SITE]["n"] == 30 * 9
    cost = report["cost"]
    assert cost["n_pairs"] == 3 and cost["atp_backward_passes"] == 3
    assert cost["patching_fpe"] == 3 * (2 + 3 * 30 + 30 * 9)
    assert len(report["disagreements"]) == 15

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 0 and manifest["pairs"]["n_kept"] == 3
    assert manifest["model"]["n_kv_heads"] == 3
    for name in ("attribution.html", "attribution_vs_patching.html", "pairs.csv"):
        assert (out / name).stat().st_size > 0
