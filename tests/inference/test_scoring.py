import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from lens_emotion.inference import agreeing, infer_emotions, label_logprobs
from lens_emotion.prompts import build_prompts


def _alone_vs_padded(model, dataset, engine):
    """Label log-probs of each prompt run alone and inside one left-padded batch."""
    texts = list(dataset.texts[:6]) + ["Short.", dataset.texts[0] + " " + dataset.texts[1]]
    labels = [dataset.labels[0]] * len(texts)
    prompt_set = build_prompts(model, texts, labels, dataset.label_names, "emotion-list")
    assert len(set(prompt_set.lengths)) > 3  # really different lengths, so real padding
    batched = label_logprobs(model, prompt_set, len(texts), progress=False, engine=engine)
    alone = label_logprobs(model, prompt_set, 1, progress=False, engine=engine)
    return batched, alone


@pytest.mark.parametrize("engine", ["bridge", "plain"])
@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_left_padding_does_not_change_label_logprobs(fixture, engine, request, sample_dataset):
    model = request.getfixturevalue(fixture)
    batched, alone = _alone_vs_padded(model, sample_dataset, engine)
    np.testing.assert_allclose(batched, alone, atol=1e-4)


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_gpt2"])
def test_plain_and_bridge_engines_agree(fixture, request, sample_dataset):
    model = request.getfixturevalue(fixture)
    rows = sample_dataset.sample(26, seed=2)
    prompt_set = build_prompts(model, rows.texts, rows.labels, rows.label_names, "paper")
    plain = label_logprobs(model, prompt_set, 8, progress=False, engine="plain")
    bridge = label_logprobs(model, prompt_set, 8, progress=False, engine="bridge")
    np.testing.assert_allclose(plain, bridge, atol=1e-4)
    with pytest.raises(ValueError, match="engine"):
        label_logprobs(model, prompt_set, 8, progress=False, engine="fast")


def test_padding_without_position_ids_would_differ_for_gpt2(tiny_gpt2, sample_dataset):
    """Guard that the test above can fail: GPT-2 with naive positions gives other numbers."""
    texts = ["Short.", sample_dataset.texts[0]]
    prompt_set = build_prompts(
        tiny_gpt2, texts, [sample_dataset.labels[0]] * 2, sample_dataset.label_names, "emotion-list"
    )
    input_ids, mask = tiny_gpt2.pad(prompt_set.token_ids)
    hf = tiny_gpt2.bridge.original_model
    with torch.no_grad():
        naive = hf(
            input_ids=input_ids,
            attention_mask=mask,
            position_ids=torch.arange(input_ids.shape[1])[None].expand_as(input_ids),
        )
        ours = tiny_gpt2.last_logits(input_ids, mask)
    assert (naive.logits[0, -1] - ours[0]).abs().max() > 1e-3


def test_infer_emotions_result_is_consistent(tiny_llama, sample_dataset):
    result = infer_emotions(
        tiny_llama, sample_dataset, "emotion-list", batch_size=8, progress=False
    )
    n, n_labels = len(sample_dataset), len(sample_dataset.label_names)
    assert result.logprobs.shape == (n, n_labels)
    assert np.all(result.logprobs <= 0)
    assert result.ids == sample_dataset.ids and result.labels == sample_dataset.labels
    argmax = [result.label_names[j] for j in result.scores.argmax(1)]
    assert list(result.predictions) == argmax
    assert result.confusion.sum() == n
    assert np.trace(result.confusion) == result.correct.sum()
    assert result.accuracy == pytest.approx(result.correct.mean())
    assert 0.0 <= result.macro_f1 <= 1.0
    counts = result.counts()
    assert sum(c["predicted"] for c in counts.values()) == n
    np.testing.assert_allclose(result.probabilities.sum(1), 1.0, rtol=1e-5)


def test_batch_size_does_not_change_results(tiny_llama, sample_dataset):
    small = sample_dataset.sample(26, seed=1)
    a = infer_emotions(tiny_llama, small, batch_size=1, progress=False)
    b = infer_emotions(tiny_llama, small, batch_size=13, progress=False)
    np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)


def test_mean_calibration_centres_scores(tiny_llama, sample_dataset):
    result = infer_emotions(tiny_llama, sample_dataset, calibrate="mean", progress=False)
    np.testing.assert_allclose(result.scores.mean(0), 0.0, atol=1e-4)
    assert result.calibration == "mean"


def test_content_free_calibration_offsets_are_log_probs(tiny_llama, sample_dataset):
    result = infer_emotions(tiny_llama, sample_dataset, calibrate=True, progress=False)
    assert result.calibration == "content-free"
    assert np.exp(result.calibration_offset).sum() == pytest.approx(1.0, rel=1e-4)
    np.testing.assert_allclose(
        result.scores, result.logprobs - result.calibration_offset, rtol=1e-6
    )
    with pytest.raises(ValueError, match="calibrate"):
        infer_emotions(tiny_llama, sample_dataset, calibrate="bogus", progress=False)


def test_agreeing_subset(tiny_llama, sample_dataset):
    result = infer_emotions(tiny_llama, sample_dataset, progress=False)
    subset = agreeing(result, sample_dataset)
    assert len(subset) == int(result.correct.sum())
    keep = set(np.asarray(result.ids)[result.correct])
    assert set(subset.ids) == keep
    with pytest.raises(ValueError, match="different ids"):
        agreeing(result, sample_dataset.subset(np.arange(5)))


def test_save_writes_predictions_and_metrics(tiny_llama, sample_dataset, tmp_path):
    result = infer_emotions(tiny_llama, sample_dataset, progress=False)
    result.save(tmp_path, manifest={"seed": 3})
    frame = pd.read_csv(tmp_path / "predictions.csv")
    assert list(frame.columns[:3]) == ["id", "label", "prediction"]
    assert [c for c in frame.columns if c.startswith("logprob_")] == [
        f"logprob_{lab}" for lab in sample_dataset.label_names
    ]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["n"] == len(sample_dataset)
    assert metrics["accuracy"] == pytest.approx(result.accuracy)
    assert len(metrics["confusion"]) == len(sample_dataset.label_names)
    assert metrics["manifest"]["seed"] == 3
    assert set(metrics["per_label"]) == set(sample_dataset.label_names)


def test_control_task_runs(tiny_llama, sample_dataset):
    result = infer_emotions(tiny_llama, sample_dataset, "control-first-word", progress=False)
    first = {t.split()[0] for t in sample_dataset.texts}
    assert all(any(w.startswith(lab) for w in first) for lab in result.label_names)


def test_control_task_drops_unscorable_first_words_with_a_warning(tiny_llama, sample_dataset):
    from lens_emotion.data.dataset import DroppedRowsWarning
    from lens_emotion.inference import control_rows

    rows = sample_dataset.subset(range(6))
    texts = ("16th May: " + rows.texts[0], "3 friends: " + rows.texts[1], *rows.texts[2:])
    digits = dataclasses.replace(rows, texts=texts)
    # Emotion templates never filter.
    assert control_rows(tiny_llama, digits, "emotion-list") is digits
    with pytest.warns(DroppedRowsWarning, match=r"dropped 2 of 6 .*'16th'"):
        result = infer_emotions(tiny_llama, digits, "control-first-word", progress=False)
    assert result.ids == tuple(digits.ids[2:])
    assert len(result.predictions) == 4


@pytest.mark.integration
def test_smollm2_infers_emotions_above_chance_on_real_rows(smollm2, crowd_envent):
    subset = crowd_envent.sample(130, seed=0)
    plain = infer_emotions(smollm2, subset, "emotion-list", batch_size=16, progress=False)
    calibrated = infer_emotions(
        smollm2, subset, "emotion-list", batch_size=16, calibrate="mean", progress=False
    )
    chance = 1 / 13
    assert plain.accuracy > 1.5 * chance
    assert calibrated.accuracy > 1.5 * chance
    # fitted on one half, scored on the other: still above chance, and every calibration's
    # accuracy is in the metrics of the same pass
    from lens_emotion.inference import recalibrate

    held = recalibrate(plain, "mean-heldout")
    assert held.n_scored == 65 and held.accuracy > 1.5 * chance
    by = held.metrics()["accuracy_by_calibration"]
    assert by["mean"] == pytest.approx(calibrated.accuracy)
    assert by["none"] == pytest.approx(plain.accuracy)
    assert by["mean-heldout"] == pytest.approx(held.accuracy)
    # Calibration spreads predictions over more labels than the raw, biased readout.
    assert len(set(calibrated.predictions)) >= len(set(plain.predictions))


@pytest.mark.integration
def test_smollm2_engines_agree_on_real_rows(smollm2, crowd_envent):
    rows = crowd_envent.sample(26, seed=4)
    prompt_set = build_prompts(smollm2, rows.texts, rows.labels, rows.label_names, "emotion-list")
    plain = label_logprobs(smollm2, prompt_set, 13, progress=False, engine="plain")
    bridge = label_logprobs(smollm2, prompt_set, 13, progress=False, engine="bridge")
    assert np.abs(plain - bridge).max() < 1e-3
    assert (plain.argmax(1) == bridge.argmax(1)).all()


@pytest.mark.integration
def test_smollm2_control_task_is_easy(smollm2, crowd_envent):
    subset = crowd_envent.sample(48, seed=0)
    result = infer_emotions(smollm2, subset, "control-first-word", progress=False)
    assert result.accuracy > 0.8


def test_recalibrate_matches_direct_calibration(tiny_llama, sample_dataset):
    from lens_emotion.inference import recalibrate

    raw = infer_emotions(tiny_llama, sample_dataset, progress=False)
    for mode in ("mean", "content-free"):
        direct = infer_emotions(tiny_llama, sample_dataset, calibrate=mode, progress=False)
        again = recalibrate(raw, mode, model=tiny_llama)
        np.testing.assert_allclose(again.scores, direct.scores, atol=1e-5)
        assert again.predictions == direct.predictions
    back = recalibrate(again, None)
    assert back.predictions == raw.predictions
    # the content-free offset computed by infer_emotions is reused without the model ...
    reused = recalibrate(raw, "content-free")
    np.testing.assert_allclose(
        reused.calibration_offset,
        infer_emotions(
            tiny_llama, sample_dataset, calibrate="content-free", progress=False
        ).calibration_offset,
        atol=1e-5,
    )
    # ... but without a stored offset, content-free needs the model
    bare = infer_emotions(tiny_llama, sample_dataset, progress=False, compare_calibrations=False)
    with pytest.raises(ValueError, match="pass model"):
        recalibrate(bare, "content-free")


def test_mean_heldout_fits_on_one_split_and_scores_the_other(tiny_llama, sample_dataset, tmp_path):
    from lens_emotion.inference import heldout_split, recalibrate

    raw = infer_emotions(tiny_llama, sample_dataset, progress=False, seed=4)
    held = recalibrate(raw, "mean-heldout")
    cal = heldout_split(len(raw), 0.5, 4)
    assert held.calibration == "mean-heldout" and held.calibration_seed == 4
    assert cal.sum() == round(len(raw) / 2) and (held.scored_mask == ~cal).all()
    np.testing.assert_allclose(held.calibration_offset, raw.logprobs[cal].mean(0), rtol=1e-5)
    assert not np.allclose(held.calibration_offset, raw.logprobs.mean(0))
    # accuracy, confusion and the agreeing filter see the scored rows only
    gold, pred = np.asarray(held.labels), np.asarray(held.predictions)
    assert held.accuracy == pytest.approx(np.mean((gold == pred)[~cal]))
    assert held.confusion.sum() == held.n_scored == int((~cal).sum())
    assert not held.correct[cal].any()
    assert set(agreeing(held, sample_dataset).ids) <= set(np.asarray(held.ids)[~cal])
    # seeded: same seed, same split; another seed, another split
    assert (heldout_split(len(raw), 0.5, 4) == cal).all()
    assert not (heldout_split(len(raw), 0.5, 5) == cal).all()
    direct = infer_emotions(
        tiny_llama, sample_dataset, calibrate="mean-heldout", seed=4, progress=False
    )
    assert direct.predictions == held.predictions
    held.save(tmp_path)
    frame = pd.read_csv(tmp_path / "predictions.csv")
    assert frame["scored"].tolist() == list(~cal)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["calibration"] == "mean-heldout" and metrics["n_scored"] == int((~cal).sum())
    assert "held-out" in metrics["calibration_rows"]
    with pytest.raises(ValueError, match="at least 2 rows"):
        heldout_split(1)
    with pytest.raises(ValueError, match="heldout_fraction"):
        heldout_split(10, 1.0)


def test_metrics_report_every_calibration_from_one_pass(tiny_llama, sample_dataset, tmp_path):
    from lens_emotion.inference import recalibrate

    raw = infer_emotions(tiny_llama, sample_dataset, progress=False)
    chosen = recalibrate(raw, "mean")
    metrics = chosen.metrics()
    assert metrics["calibration"] == "mean" and "rows it scores" in metrics["calibration_rows"]
    by = metrics["accuracy_by_calibration"]
    assert set(by) == {"none", "content-free", "mean", "mean-heldout"}
    for mode in ("none", "content-free", "mean", "mean-heldout"):
        again = recalibrate(raw, mode, model=tiny_llama)
        assert by[mode] == pytest.approx(again.accuracy), mode
    table = metrics["calibrations"]
    assert table["mean"]["fitted_on"].startswith("the scored rows")
    same = recalibrate(raw, "mean-heldout")
    mask = same.scored_mask
    gold = np.asarray(raw.labels)
    raw_same = np.mean(np.asarray(raw.predictions)[mask] == gold[mask])
    assert table["mean-heldout"]["accuracy_none_same_rows"] == pytest.approx(raw_same)
    assert metrics["accuracy"] == pytest.approx(by["mean"])
    # the control task has no content-free comparison (its labels are first words)
    control = infer_emotions(tiny_llama, sample_dataset, "control-first-word", progress=False)
    assert control.metrics()["accuracy_by_calibration"]["content-free"] is None


def test_resolve_calibration_table_and_auto(tiny_llama, sample_dataset):
    from lens_emotion.inference import AUTO_CALIBRATION, CalibrationError, resolve_calibration

    assert resolve_calibration("emotion-list", "auto") == "mean"
    assert resolve_calibration("paper", "auto") == "mean"
    assert resolve_calibration("control-first-word", "auto") == "none"
    assert resolve_calibration("zero-shot", "auto") == "mean"  # fallback by task
    assert resolve_calibration("paper", False) == "none"
    assert resolve_calibration("paper", None) == "none"
    assert resolve_calibration("paper", True) == "content-free"
    for mode in ("none", "mean", "content-free", "mean-heldout"):
        assert resolve_calibration("paper", mode) == mode
    with pytest.raises(CalibrationError, match="calibrate must be one of"):
        resolve_calibration("paper", "median")
    assert set(AUTO_CALIBRATION.values()) <= {"none", "mean", "content-free", "mean-heldout"}
    result = infer_emotions(tiny_llama, sample_dataset, calibrate="auto", progress=False)
    assert result.calibration == "mean"


def test_auto_calibration_is_the_best_measured_one():
    """The auto table must agree with the committed real-model accuracy files."""
    from pathlib import Path

    from lens_emotion.inference import AUTO_CALIBRATION

    root = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    checked = 0
    for name in ("inference.json", "inference_calibration.json", "inference_full.json"):
        path = root / name
        if not path.is_file():
            continue
        accuracy = json.loads(path.read_text())["accuracy"]
        for template, chosen in AUTO_CALIBRATION.items():
            measured = {
                key.split("/", 1)[1]: value["accuracy"]
                for key, value in accuracy.items()
                if key.split("/", 1)[0] == template
                and key.split("/", 1)[1] in ("raw", "content-free", "mean")
            }
            if not measured:
                continue
            best = max(measured, key=measured.get)
            assert {"raw": "none"}.get(best, best) == chosen, (name, template, measured)
            checked += 1
    assert checked >= 2
