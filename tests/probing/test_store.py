"""lens_emotion.probing.store: the store protocol and the input checks' errors."""

from __future__ import annotations

import numpy as np
import pytest

from lens_emotion.errors import LensEmotionError
from lens_emotion.probing.appraisals import (
    appraisal_alignment,
    probe_appraisals,
)
from lens_emotion.probing.emotions import (
    EmotionProbeResult,
    probe_emotions,
)
from lens_emotion.probing.store import (
    ProbeError,
    SupportsActivations,
)
from tests.probing.conftest import (
    fake_results,
)


def test_store_fake_satisfies_protocol(store):
    assert isinstance(store, SupportsActivations)


def test_errors_are_informative(store):
    labels = store.label_names
    with pytest.raises(ProbeError, match="got 3 labels for 170 stored rows"):
        probe_emotions(store, labels[:3], progress=False)
    with pytest.raises(ProbeError, match=r"site\(s\) 'hook_z' not in the activation store"):
        probe_emotions(store, labels, sites=["hook_z"], progress=False)
    with pytest.raises(ProbeError, match=r"layer\(s\) 7 not in"):
        probe_emotions(store, labels, layers=[7], progress=False)
    with pytest.raises(ProbeError, match=r"position\(s\) -3 not in"):
        probe_emotions(store, labels, position=-3, progress=False)
    few = list(labels)
    for i in np.flatnonzero(np.asarray(store.labels) == 3)[3:]:
        few[i] = "anger"
    with pytest.raises(ProbeError, match=r"'sadness' has 3; use fewer folds"):
        probe_emotions(store, few, n_folds=5, progress=False)
    with pytest.raises(ProbeError, match="not in label_names"):
        probe_emotions(store, labels, label_names=["anger", "fear"], progress=False)
    with pytest.raises(ProbeError, match="mask must be a boolean array"):
        probe_emotions(store, labels, mask=np.ones(5, bool), progress=False)
    with pytest.raises(ProbeError, match="n_folds must be an int >= 2"):
        probe_emotions(store, labels, n_folds=1, progress=False)
    with pytest.raises(ProbeError, match="model must be"):
        probe_emotions(store, labels, model="svm", progress=False)
    with pytest.raises(ProbeError, match="at least 2 classes"):
        probe_emotions(store, ["joy"] * len(labels), progress=False)
    names = ["a", "b"]
    with pytest.raises(ProbeError, match=r"appraisals has shape \(170, 3\), expected \(170, 2\)"):
        probe_appraisals(store, np.zeros((170, 3)), names, progress=False)
    bad = np.zeros((170, 2))
    bad[4, 1] = np.nan
    with pytest.raises(ProbeError, match="NaN or inf in 1 selected rows"):
        probe_appraisals(store, bad, names, progress=False)
    with pytest.raises(ProbeError, match="alpha must be a positive number"):
        probe_appraisals(store, np.zeros((170, 2)), names, alpha=[1.0, -1.0], progress=False)
    emotion, appraisal = fake_results()
    with pytest.raises(ProbeError, match="no layer at site 'mlp_out'"):
        appraisal_alignment(emotion, appraisal, site="mlp_out")
    no_dirs = EmotionProbeResult(
        table=emotion.table, folds=emotion.folds, label_names=emotion.label_names,
        directions={}, intercepts={},
    )  # fmt: skip
    with pytest.raises(ProbeError, match="no directions"):
        appraisal_alignment(no_dirs, appraisal)
    assert issubclass(ProbeError, LensEmotionError) and issubclass(ProbeError, ValueError)
