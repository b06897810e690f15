"""Plumbing of run_geometry on the tiny random model (unit tier: seconds)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lens_emotion.geometry import GEOMETRY_COLUMNS, GeometryError, GeometrySettings, run_geometry

SMALL = {"n_boot": 20, "n_perm": 19, "n_random": 20, "n_sev_scenarios": 2}


@pytest.fixture(scope="module")
def sev_sample():
    from lens_emotion.data import load_sev_sample

    return load_sev_sample()


def test_run_writes_every_output(tiny_llama, sample_dataset, sev_sample, tmp_path):
    outputs = run_geometry(
        tiny_llama, sample_dataset, tmp_path, GeometrySettings(**SMALL), sev_sample, seed=1
    )
    table = pd.read_csv(tmp_path / "geometry.csv")
    assert tuple(table.columns) == GEOMETRY_COLUMNS
    measures = set(table.measure)
    for name in ("mean.pc1_valence_r", "probe.pc1_valence_r", "mean.keyword_free.pc1_valence_r",
                 "mean.rsa_rho", "mean.rsa_p", "mean.diag_cos", "mean.perm_p",
                 "mean.random_q95", "mean.transfer_sev_by_crowd", "probe.transfer_crowd_by_sev",
                 "mean.text_pc1_pleasantness_rho"):  # fmt: skip
        assert name in measures, name
    assert set(table.layer) == set(range(tiny_llama.n_layers))
    assert table.loc[table.measure == "mean.pc1_valence_r", "ci_low"].notna().all()
    for name in ("pc_scatter", "valence_arousal", "valence_arousal_keyword_free", "rsa_mean",
                 "crosspaper"):  # fmt: skip
        assert (tmp_path / "figures" / f"{name}.html").is_file()
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["settings"]["n_boot"] == 20 and manifest["seed"] == 1
    assert {"activations", "vectors", "pca", "rsa", "sev directions", "cross-paper"} <= set(
        manifest["timings_s"]
    )
    assert manifest["activation_store"]["root"] == outputs.store_root
    summary = json.loads((tmp_path / "geometry_summary.json").read_text())
    for key in ("peak_valence_r", "peak_valence_layer", "peak_valence_relative_depth",
                "peak_rsa_rho", "peak_rsa_layer", "crosspaper_perm_p_at_peak"):  # fmt: skip
        assert key in summary, key
    assert 0.0 <= summary["peak_valence_relative_depth"] <= 1.0
    for name in outputs.files:
        assert (tmp_path / name).is_file(), name


def test_existing_store_is_reused_without_forward_passes(
    tiny_llama, sample_dataset, tmp_path, monkeypatch
):
    import lens_emotion.activations as activations

    settings = GeometrySettings(vectors=("mean",), **SMALL)
    first = run_geometry(tiny_llama, sample_dataset, tmp_path / "a", settings)

    def no_forward(*args, **kwargs):
        raise AssertionError("a forward pass ran although the store exists")

    monkeypatch.setattr(activations, "_capture", no_forward)
    second = run_geometry(tiny_llama, sample_dataset, tmp_path / "b", settings)
    assert second.store_root == first.store_root
    pd.testing.assert_frame_equal(first.table, second.table)
    # an explicit store holding more rows than the data: its rows are picked by id
    third = run_geometry(
        tiny_llama, sample_dataset.sample(65, seed=0), tmp_path / "c", settings,
        store=first.store_root,
    )  # fmt: skip
    assert third.pca["mean"].table.query("measure == 'n_texts'").value.iloc[0] == 65


def test_store_without_the_rows_is_a_clear_error(tiny_llama, sample_dataset, tmp_path):
    settings = GeometrySettings(vectors=("mean",), **SMALL)
    small = run_geometry(tiny_llama, sample_dataset.sample(26, seed=0), tmp_path / "a", settings)
    with pytest.raises(GeometryError, match="not in the activation store"):
        run_geometry(tiny_llama, sample_dataset, tmp_path / "b", settings, store=small.store_root)


def test_sites_without_directions_skip_the_cross_paper_part(
    tiny_llama, sample_dataset, sev_sample, tmp_path
):
    settings = GeometrySettings(sites=("mlp_out",), vectors=("mean",), **SMALL)
    outputs = run_geometry(tiny_llama, sample_dataset, tmp_path, settings, sev_sample)
    assert outputs.crosspaper == {}
    assert any("cross-paper part skipped" in n for n in outputs.notes)
    assert set(outputs.table.site) == {"mlp_out"}


def test_directions_file_from_circuits_is_accepted(
    tiny_llama, sample_dataset, sev_sample, tmp_path
):
    settings = GeometrySettings(vectors=("mean",), **SMALL)
    first = run_geometry(tiny_llama, sample_dataset, tmp_path / "a", settings, sev_sample)
    path = tmp_path / "a" / "sev_directions.safetensors"
    second = run_geometry(tiny_llama, sample_dataset, tmp_path / "b", settings, path)
    a = first.crosspaper["mean"].measure("diag_cos").value.to_numpy()
    b = second.crosspaper["mean"].measure("diag_cos").value.to_numpy()
    np.testing.assert_allclose(a, b, atol=1e-6)
    # no SEV activations: no SEV -> crowd-enVENT transfer, the reverse is still there
    measures = set(second.crosspaper["mean"].table.measure)
    assert "transfer_sev_by_crowd" not in measures and "transfer_crowd_by_sev" in measures


def test_keyword_free_rows_exclude_texts_naming_an_emotion():
    from lens_emotion.data import EmotionDataset
    from lens_emotion.geometry.workflow import _keyword_free

    ds = EmotionDataset(
        name="t",
        ids=("a", "b", "c"),
        texts=("I was so angry at him", "We went to the park", "It filled me with joy"),
        labels=("anger", "joy", "joy"),
        label_names=("anger", "joy"),
    )
    np.testing.assert_array_equal(_keyword_free(ds), [False, True, False])


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("rows", "some", "rows must be"),
        ("vectors", ("mean", "pca"), "vectors must be"),
        ("sites", ("z",), "sites must come"),
        ("figure_layer", "middle", "figure_layer"),
        ("n_rows", 0, "n_rows"),
    ],
)
def test_bad_settings_fail_with_one_line(field, value, match):
    with pytest.raises(GeometryError, match=match):
        GeometrySettings(**{field: value})


def test_agreeing_rows_run_the_inference_filter(tiny_llama, sample_dataset, tmp_path):
    settings = GeometrySettings(rows="agreeing", vectors=("mean",), keyword_control=False, **SMALL)
    # a random tiny model agrees with few texts: some emotions have none, which is reported
    with pytest.raises(GeometryError, match="no rows of"):
        run_geometry(tiny_llama, sample_dataset, tmp_path, settings)


def test_agreeing_rows_are_the_ones_inference_gets_right(
    tiny_llama, sample_dataset, tmp_path, monkeypatch
):
    import lens_emotion.inference as inference

    correct = np.arange(len(sample_dataset)) % 3 != 0  # every emotion keeps rows
    calls = {}

    class Result:
        pass

    def fake_infer(model, data, template, **kwargs):
        calls.update(kwargs, template=template)
        result = Result()
        result.correct = correct
        return result

    monkeypatch.setattr(inference, "infer_emotions", fake_infer)
    settings = GeometrySettings(rows="agreeing", vectors=("mean",), keyword_control=False, **SMALL)
    outputs = run_geometry(tiny_llama, sample_dataset, tmp_path, settings)
    assert calls["calibrate"] == "mean" and calls["template"] == "emotion-list"  # auto
    assert outputs.vectors["mean"].n_rows == correct.sum()
    n_texts = outputs.pca["mean"].table.query("measure == 'n_texts'").value
    assert (n_texts == correct.sum()).all()
    assert any(note.startswith(f"agreeing rows: {correct.sum()} of 130") for note in outputs.notes)


def test_figure_layer_outside_the_analysed_layers_fails_before_any_work(
    tiny_llama, sample_dataset, tmp_path
):
    settings = GeometrySettings(layers=(0,), figure_layer="1", **SMALL)
    with pytest.raises(GeometryError, match="figure_layer 1"):
        run_geometry(tiny_llama, sample_dataset, tmp_path, settings)
    assert not (tmp_path / "geometry.csv").exists()
