"""The confusion-matrix figure of an inference result (pure: result in, figure out)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from lens_emotion.inference import confusion_matrix_figure, infer_emotions, recalibrate


def test_confusion_figure_shows_the_scored_rows(tiny_llama, sample_dataset):
    rows = sample_dataset.sample(26, seed=1)
    result = recalibrate(infer_emotions(tiny_llama, rows, progress=False), "mean-heldout")
    fig = confusion_matrix_figure(result, normalize=False)
    assert isinstance(fig, go.Figure)
    heat = fig.data[0]
    assert list(heat.x) == list(result.label_names) == list(heat.y)
    np.testing.assert_array_equal(np.asarray(heat.z), result.confusion)
    assert np.asarray(heat.z).sum() == result.n_scored < len(result)
    title = fig.layout.title.text
    assert title.startswith("emotion-list prompt, mean-heldout: accuracy ")
    assert f"(n={len(result)})" in title
    # Result.figure() delegates to it; normalised rows sum to 1 where a label occurs
    same = result.figure(normalize=False)
    np.testing.assert_array_equal(np.asarray(same.data[0].z), np.asarray(heat.z))
    shares = np.asarray(result.figure().data[0].z, dtype=float)
    occurs = result.confusion.sum(axis=1) > 0
    np.testing.assert_allclose(shares[occurs].sum(axis=1), 1.0)
    assert (
        "uncalibrated"
        in infer_emotions(tiny_llama, rows, progress=False).figure().layout.title.text
    )
