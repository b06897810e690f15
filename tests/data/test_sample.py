import re

import numpy as np
import pytest

from lens_emotion.data import APPRAISALS, CROWD_ENVENT_EMOTIONS, load_dataset, load_sample
from lens_emotion.errors import DataError


def test_sample_labels_and_size(sample_dataset):
    ds = sample_dataset
    assert ds.name == "sample" and ds.source == "builtin" and ds.dropped_rows == 0
    assert ds.label_names == CROWD_ENVENT_EMOTIONS
    counts = ds.label_counts()
    assert set(counts) == set(CROWD_ENVENT_EMOTIONS) and min(counts.values()) >= 8
    assert len(ds) == 130 and ds.ids[0] == "sample_1"


def test_sample_appraisals_complete(sample_dataset):
    ds = sample_dataset
    assert ds.appraisal_names == APPRAISALS
    assert ds.appraisals.shape == (len(ds), 21)
    assert set(np.unique(ds.appraisals)) <= {1, 2, 3, 4, 5}
    assert ds.metadata["intensity"].between(1, 5).all()
    assert ds.metadata["confidence"].between(1, 5).all()


def test_sample_appraisals_are_plausible(sample_dataset):
    frame = sample_dataset.to_frame().groupby("label")[list(APPRAISALS)].mean()
    positive = ["joy", "pride", "relief", "trust"]
    negative = ["anger", "disgust", "fear", "guilt", "sadness", "shame"]
    assert frame.loc[positive, "pleasantness"].min() > frame.loc[negative, "pleasantness"].max()
    assert frame.loc["anger", "other_responsblt"] > frame.loc["anger", "self_responsblt"]
    assert frame.loc["guilt", "self_responsblt"] > frame.loc["guilt", "other_responsblt"]
    assert frame.loc["pride", "self_responsblt"] >= 4
    assert frame["suddenness"].idxmax() in {"surprise", "fear", "disgust"}


def test_sample_masking(sample_dataset):
    ds = sample_dataset
    for hidden, generated in zip(ds.texts, ds.metadata["generated_text"], strict=True):
        assert "..." in hidden and "..." not in generated
        prefix, suffix = hidden.split("...", 1)
        assert generated.startswith(prefix) and generated.endswith(suffix)
        assert len(generated) > len(hidden) - 3
    phrasings = {t.split("...")[0] for t in ds.texts}
    assert len(phrasings) > 60  # not all "I felt ... when"
    assert len(set(ds.texts)) == len(ds)


def test_sample_generated_text_and_dispatch():
    gen = load_sample(text_column="generated_text")
    assert gen.text_column == "generated_text" and "..." not in gen.texts[0]
    assert load_dataset("sample").fingerprint() == load_sample().fingerprint()
    with pytest.raises(DataError, match="built in"):
        load_dataset("sample", path="x.csv")
    with pytest.raises(DataError, match="text_column"):
        load_sample(text_column="text")


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


@pytest.mark.integration
def test_sample_not_copied_from_corpus(sample_dataset, crowd_envent):
    corpus = [_norm(t) for t in crowd_envent.metadata["generated_text"]]
    corpus += [_norm(t) for t in crowd_envent.texts]
    ours = [_norm(t) for t in sample_dataset.metadata["generated_text"]]
    ours += [_norm(t) for t in sample_dataset.texts]
    blob = "\n".join(corpus)
    assert not [t for t in ours if t in blob]
    # and no corpus text of 20+ characters appears inside one of ours
    ours_blob = "\n".join(ours)
    assert not [t for t in corpus if len(t) >= 20 and t in ours_blob]
