"""The demo's geometry step on the tiny model: reuses the probing store, reports, is fast."""

from __future__ import annotations

from lens_emotion.demo.config import DemoConfig
from lens_emotion.demo.context import StepContext


def test_geometry_step_reuses_the_probing_store(tiny_llama, sample_dataset, tmp_path, monkeypatch):
    import lens_emotion.activations as activations
    from lens_emotion.activations import extract_activations
    from lens_emotion.demo.geometry_step import geometry_step
    from lens_emotion.prompts import build_prompts
    from lens_emotion.viz.report import Report

    config = DemoConfig.quick()
    prompts = build_prompts(
        tiny_llama, sample_dataset.texts, sample_dataset.labels, sample_dataset.label_names
    )
    extract_activations(  # what the probing step extracted
        tiny_llama, prompts, sites=list(config.probe_sites), positions=1, dataset=sample_dataset,
        batch_size=config.batch_size, seed=0, progress=False,
    )  # fmt: skip

    def no_forward(*args, **kwargs):
        raise AssertionError("the geometry step ran a forward pass")

    monkeypatch.setattr(activations, "_capture", no_forward)
    report = Report("t")
    summary = geometry_step(
        StepContext(tiny_llama, sample_dataset, config, tmp_path, report, False, 0)
    )
    assert {"peak_valence_r", "peak_valence_layer", "peak_rsa_rho"} <= set(summary)
    assert "crosspaper_peak_diag_cos" not in summary  # no circuits step ran here
    assert (tmp_path / "geometry" / "geometry.csv").is_file()
    html = report.write(tmp_path / "index.html").read_text()
    assert "Emotion geometry" in html and "PC1 ~ human valence" in html
