import json
from importlib import resources

import pandas as pd
import pytest

from lens_emotion.cli import main
from lens_emotion.data.sample import SEV_SAMPLE_FILE


@pytest.mark.integration
def test_circuits_command_writes_every_file(tiny_llama, tiny_llama_dir, sev_path, tmp_path, capsys):
    # Plumbing of every non-default option and output file, on real SEV rows and the tiny model
    # (the zoo model's defaults run in tests/cli/test_cli_defaults.py::test_circuits_defaults).
    out = tmp_path / "circ"
    code = main(
        [
            "circuits",
            "--model",
            str(tiny_llama_dir),
            "--sev-path",
            str(sev_path),
            "--seed",
            "1",
            "--out",
            str(out),
            "--n-scenarios",
            "1",
            "--n-eval-scenarios",
            "1",
            "--n-ablation-prompts",
            "1",
            "--max-k-heads",
            "4",
            "--max-k-neurons",
            "8",
            "--n-random",
            "2",
            "--check-prompts",
            "1",
            "--circuit-heads",
            "3",
            "--circuit-neurons",
            "5",
            "--no-generation",
            "--device",
            "cpu",
            "--check-layers",
            "0,1",
            "--interventions",
            "mean,scale",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "head decomposition vs ablation" in printed
    names = {p.name for p in out.iterdir()}
    expected = {
        "directions.safetensors",
        "consistency.csv",
        "heads.csv",
        "neurons.csv",
        "ablation.csv",
        "sublayer_influence.csv",
        "overlap.csv",
        "manifest.json",
    } | {
        f"circuit_{e}.json"
        for e in ("anger", "sadness", "happiness", "fear", "surprise", "disgust")
    }
    assert expected <= names
    heads = pd.read_csv(out / "heads.csv")
    assert (
        list(heads.columns[:4]) == ["layer", "head", "emotion", "score"]
        and len(heads) == tiny_llama.n_layers * tiny_llama.n_heads * 6
    )
    ablation = pd.read_csv(out / "ablation.csv")
    assert list(ablation.columns[:6]) == [
        "emotion",
        "component_type",
        "k",
        "intervention",
        "factor",
        "score",
    ] or {"emotion", "component_type", "k", "intervention", "score", "control_score"} <= set(
        ablation.columns
    )
    assert set(ablation.k) == {1, 2, 4, 8}
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 1 and manifest["head_check"]["max_abs_difference"] < 1e-4
    assert not set(manifest["split"]["discovery_scenarios"]) & set(
        manifest["split"]["heldout_scenarios"]
    )
    circuit = json.loads((out / "circuit_fear.json").read_text())
    assert {"heads", "neurons", "sublayers", "meta"} <= set(circuit)
    assert (out / "figures" / "ablation.html").is_file()


def test_circuits_command_rejects_bad_sizes(tmp_path, capsys):
    code = main(["circuits", "--out", str(tmp_path), "--n-scenarios", "0"])
    assert code == 2
    assert "argument --n-scenarios: expected a positive integer" in capsys.readouterr().err


def test_circuits_command_names_the_option_of_an_out_of_range_window(
    tiny_llama_dir, tmp_path, capsys
):
    sample = resources.files("lens_emotion.data").joinpath(SEV_SAMPLE_FILE)
    args = ["circuits", "--model", str(tiny_llama_dir), "--sev-path", str(sample)]
    code = main([*args, "--steer-windows", "0-1,5-9", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "--steer-windows 5-9 reaches past the model's 2 layers" in err
    assert "Traceback" not in err
    code = main([*args, "--check-layers", "0,7", "--out", str(tmp_path)])
    assert code == 2 and "--check-layers 7 is past" in capsys.readouterr().err
