import json

from lens_emotion.demo import run_demo


def test_demo_writes_report_and_manifest(tiny_llama_dir, tmp_path):
    index = run_demo(
        out=tmp_path / "demo", model_spec=str(tiny_llama_dir), quick=True, progress=False
    )
    html = index.read_text()
    assert "Emotion inference" in html and "Control task" in html
    assert "Probing" in html and "Attention" in html
    assert (tmp_path / "demo" / "probing" / "probe_emotions.csv").is_file()
    assert (tmp_path / "demo" / "attention").is_dir()
    assert html.count("<script") >= 1 and 'src="http' not in html
    manifest = json.loads((tmp_path / "demo" / "manifest.json").read_text())
    assert manifest["data"]["name"] == "sample"
    assert set(manifest["timings_s"]) >= {
        "load model",
        "emotion inference",
        "probing",
        "attention",
        "total",
    }
    for run in ("paper", "emotion-list", "emotion-list_mean"):
        assert (tmp_path / "demo" / "inference" / run / "predictions.csv").is_file()
