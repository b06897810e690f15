"""Pair drawing: reproducible, different human labels, only pairs with differing predictions."""

import numpy as np
import pytest

from lens_emotion.inference import infer_emotions
from lens_emotion.patching.pairs import PatchingError, PatchPairs, draw_pairs


@pytest.fixture(scope="module")
def inference(tiny_llama, sample_dataset):
    return infer_emotions(tiny_llama, sample_dataset, "emotion-list", progress=False)


def _draw(model, data, inference, **kwargs):
    kwargs = {"n_pairs": 12, "seed": 0, "progress": False, "inference": inference, **kwargs}
    return draw_pairs(model, data, **kwargs)


def test_pairs_are_reproducible_and_keep_only_differing_predictions(
    tiny_llama, sample_dataset, inference
):
    a = _draw(tiny_llama, sample_dataset, inference, agreeing_only=False, seed=3)
    b = _draw(tiny_llama, sample_dataset, inference, agreeing_only=False, seed=3)
    c = _draw(tiny_llama, sample_dataset, inference, agreeing_only=False, seed=4)
    assert isinstance(a, PatchPairs) and len(a) == 12
    assert a.source_ids == b.source_ids and a.target_ids == b.target_ids
    assert (a.source_ids, a.target_ids) != (c.source_ids, c.target_ids)
    assert all(s != t for s, t in zip(a.source_human, a.target_human, strict=True))
    assert (a.source_label_idx != a.target_label_idx).all()
    labels = np.asarray(a.labels)
    assert tuple(labels[a.source_label_idx]) == a.source_prediction
    assert tuple(labels[a.target_label_idx]) == a.target_prediction
    assert a.n_kept == 12 and a.n_candidates >= a.n_kept and a.n_eligible_rows == 130
    # the readout is calibrated as asked, and the same offset is recorded for patched runs
    assert a.calibration == "mean"
    np.testing.assert_allclose(a.calibration_offset, inference.logprobs.mean(axis=0), rtol=1e-6)
    info = a.describe()
    assert info["n_kept"] == 12 and info["kept_fraction"] == pytest.approx(
        a.kept_fraction, abs=1e-4
    )


def test_agreeing_pairs_predict_their_human_labels(tiny_llama, sample_dataset, inference):
    pairs = _draw(tiny_llama, sample_dataset, inference, agreeing_only=True, n_pairs=5)
    assert pairs.source_prediction == pairs.source_human
    assert pairs.target_prediction == pairs.target_human
    assert pairs.n_candidates == pairs.n_kept == len(pairs)
    calibrated = infer_emotions(
        tiny_llama, sample_dataset, "emotion-list", calibrate="mean", progress=False
    )
    assert pairs.n_eligible_rows == int(calibrated.correct.sum())
    assert set(pairs.source_ids) | set(pairs.target_ids) <= set(
        np.asarray(sample_dataset.ids)[calibrated.correct]
    )


def test_scoring_inside_equals_passing_an_inference(tiny_llama, sample_dataset, inference):
    rows = sample_dataset.sample(40, seed=1)
    inside = draw_pairs(tiny_llama, rows, n_pairs=4, seed=2, agreeing_only=False, progress=False)
    given = draw_pairs(
        tiny_llama,
        rows,
        n_pairs=4,
        seed=2,
        agreeing_only=False,
        progress=False,
        inference=infer_emotions(tiny_llama, rows, "emotion-list", progress=False),
    )
    assert inside.source_ids == given.source_ids and inside.target_ids == given.target_ids
    with pytest.raises(PatchingError, match="other rows"):
        draw_pairs(tiny_llama, rows, n_pairs=2, inference=inference, progress=False)


def test_bad_requests_are_clear_errors(tiny_llama, sample_dataset, inference):
    with pytest.raises(PatchingError, match="n_pairs"):
        _draw(tiny_llama, sample_dataset, inference, n_pairs=0)
    one_label = sample_dataset.filter(np.asarray(sample_dataset.labels) == "joy")
    with pytest.raises(PatchingError, match="No source/target pair"):
        draw_pairs(tiny_llama, one_label, n_pairs=2, agreeing_only=False, progress=False)


def test_subset_and_frame(tiny_llama, sample_dataset, inference):
    pairs = _draw(tiny_llama, sample_dataset, inference, agreeing_only=False)
    part = pairs.subset([2, 0])
    assert part.source_ids == (pairs.source_ids[2], pairs.source_ids[0])
    assert list(part.target_label_idx) == [pairs.target_label_idx[2], pairs.target_label_idx[0]]
    frame = pairs.to_frame()
    assert len(frame) == 12 and (frame.source_human != frame.target_human).all()


@pytest.mark.integration
def test_smollm2_control_pairs_skip_real_rows_with_digit_first_words(smollm2, crowd_envent):
    from lens_emotion.data.dataset import DroppedRowsWarning

    # Real crowd-enVENT rows whose first word starts with a digit ("16th sept 2020 ...") have
    # a whitespace-only first token on SmolLM2; the control task drops them, not crashes.
    digit = [i for i, t in enumerate(crowd_envent.texts) if t.strip()[:1].isdigit()]
    assert digit
    rows = crowd_envent.subset(sorted({*digit, *range(40)}))
    with pytest.warns(DroppedRowsWarning, match=f"dropped {len(digit)} of {len(rows)}"):
        pairs = draw_pairs(
            smollm2, rows, n_pairs=10, seed=0, template="control-first-word", progress=False
        )
    skipped = {crowd_envent.ids[i] for i in digit}
    assert len(pairs) > 0
    assert not skipped & {*pairs.source_ids, *pairs.target_ids}
    assert pairs.n_rows == len(rows) - len(digit)
