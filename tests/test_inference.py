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
    with pytest.raises(ValueError, match="pass model"):
        recalibrate(raw, "content-free")
