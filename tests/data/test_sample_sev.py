import fnmatch
import json
import re
import tomllib
from collections import Counter
from importlib import resources
from pathlib import Path

import pandas as pd
import pytest

from lens_emotion.data import SEV_EMOTIONS, VALENCES, load_dataset, load_sev, load_sev_sample
from lens_emotion.data.sample import SEV_SAMPLE_FILE
from lens_emotion.errors import DataError

_REPO = Path(__file__).resolve().parents[2]


def _records() -> list[dict]:
    text = resources.files("lens_emotion.data").joinpath(SEV_SAMPLE_FILE).read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _strings(records: list[dict]) -> list[str]:
    out = []
    for rec in records:
        out += [rec["scenario"], *(rec["event"][v] for v in VALENCES)]
    return out


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def test_sev_sample_items_and_labels():
    records = _records()
    ds = load_sev_sample()
    assert ds.name == "sev-sample" and ds.source == "builtin" and ds.appraisals is None
    assert len(ds) == len(records) * len(VALENCES) and len(records) == 36
    assert ds.label_names == VALENCES
    assert ds.label_counts() == dict.fromkeys(VALENCES, len(records))
    assert len(set(ds.ids)) == len(ds) and len(set(ds.texts)) == len(ds)
    first = records[0]
    assert ds.ids[0] == f"{first['skeleton_id']}:positive"
    assert ds.texts[0] == f"{first['scenario']}. {first['event']['positive']}"
    assert ds.metadata["emotion"].isna().all()


def test_sev_sample_crossed():
    ds = load_sev_sample(cross_emotions=True)
    n_items = len(load_sev_sample())
    assert len(ds) == n_items * len(SEV_EMOTIONS) and ds.label_names == SEV_EMOTIONS
    assert ds.label_counts() == dict.fromkeys(SEV_EMOTIONS, n_items)
    assert (ds.metadata["emotion"] == list(ds.labels)).all()
    assert len(set(ds.texts)) == n_items
    two = load_sev_sample(emotions=["fear", "anger"], cross_emotions=True)
    assert len(two) == 2 * n_items and two.label_names == ("fear", "anger")


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"cross_emotions": True}, {"emotions": ["disgust", "happiness"], "cross_emotions": True}],
)
def test_sev_sample_is_load_sev_of_packaged_file(kwargs):
    ours = load_sev_sample(**kwargs)
    with resources.as_file(resources.files("lens_emotion.data") / SEV_SAMPLE_FILE) as path:
        ref = load_sev(path, **kwargs)
    assert ref.name == "sev" and ours.name != ref.name
    assert ours.fingerprint() == ref.fingerprint()
    assert ours.ids == ref.ids and ours.texts == ref.texts and ours.labels == ref.labels
    pd.testing.assert_frame_equal(ours.metadata, ref.metadata)
    for attr in ("label_names", "appraisal_names", "text_column", "dropped_rows"):
        assert getattr(ours, attr) == getattr(ref, attr)


def test_sev_sample_file_schema():
    records = _records()
    ids = [r["skeleton_id"] for r in records]
    assert len(set(ids)) == len(ids)
    for rec in records:
        assert set(rec) == {"theme", "scenario", "event", "skeleton_id"}
        assert set(rec["event"]) == set(VALENCES)
        assert re.fullmatch(r"sample_[a-z]+_\d{2}", rec["skeleton_id"])
        assert rec["scenario"].startswith("I ") and not rec["scenario"].endswith(".")
        events = [rec["event"][v] for v in VALENCES]
        assert len(set(events)) == len(VALENCES)
        assert all(e.strip() == e and e.endswith(".") for e in events)
    strings = _strings(records)
    assert len(set(strings)) == len(strings)


def test_sev_sample_themes_balanced():
    records = _records()
    counts = Counter(r["theme"] for r in records)
    assert max(counts.values()) - min(counts.values()) <= 1
    keys_per_theme = {
        theme: {r["skeleton_id"].rsplit("_", 1)[0] for r in records if r["theme"] == theme}
        for theme in counts
    }
    assert all(len(keys) == 1 for keys in keys_per_theme.values())
    assert len({next(iter(k)) for k in keys_per_theme.values()}) == len(counts)


def test_sev_sample_dispatch_and_errors():
    assert load_dataset("sev_sample").fingerprint() == load_sev_sample().fingerprint()
    crossed = load_dataset("SEV-sample", cross_emotions=True)
    assert crossed.fingerprint() == load_sev_sample(cross_emotions=True).fingerprint()
    with pytest.raises(DataError, match="built in"):
        load_dataset("sev-sample", path="x.jsonl")
    with pytest.raises(DataError, match="unknown SEV emotion"):
        load_sev_sample(emotions=["joy"], cross_emotions=True)
    with pytest.raises(DataError, match="cross_emotions=True"):
        load_sev_sample(emotions=["fear"])


def test_sev_sample_shipped_as_package_data():
    config = tomllib.loads((_REPO / "pyproject.toml").read_text("utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["lens_emotion"]
    assert any(fnmatch.fnmatch(f"data/{SEV_SAMPLE_FILE}", p) for p in patterns)


@pytest.mark.integration
def test_sev_sample_covers_real_themes_and_id_scheme(sev_path):
    real = [json.loads(line) for line in sev_path.read_text("utf-8").splitlines() if line]
    real_theme_of_key = {r["skeleton_id"].rsplit("_", 1)[0]: r["theme"] for r in real}
    records = _records()
    assert {r["theme"] for r in records} == {r["theme"] for r in real}
    for rec in records:
        key = rec["skeleton_id"].removeprefix("sample_").rsplit("_", 1)[0]
        assert real_theme_of_key[key] == rec["theme"]
    assert not {r["skeleton_id"] for r in records} & {r["skeleton_id"] for r in real}


def _word_runs(text: str, n: int) -> set[tuple[str, ...]]:
    words = re.findall(r"[a-z']+", text)
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


@pytest.mark.integration
def test_sev_sample_not_copied_from_real_sev(sev_path):
    real = [json.loads(line) for line in sev_path.read_text("utf-8").splitlines() if line]
    theirs = [_norm(s) for s in _strings(real)]
    ours = [_norm(s) for s in _strings(_records())]
    assert not set(ours) & set(theirs)
    theirs_blob, ours_blob = "\n".join(theirs), "\n".join(ours)
    assert not [s for s in ours if s in theirs_blob]
    assert not [s for s in theirs if len(s) >= 20 and s in ours_blob]
    # no run of six words in a row shared with any SEV scenario or event
    their_runs = set().union(*(_word_runs(s, 6) for s in theirs))
    assert not [s for s in ours if _word_runs(s, 6) & their_runs]
