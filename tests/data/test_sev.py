import json
from pathlib import Path

import pytest

from lens_emotion.data import SEV_EMOTIONS, VALENCES, default_sev_path, load_dataset, load_sev
from lens_emotion.data.sev import join_scenario_event
from lens_emotion.errors import DataError

# ----------------------------------------------------------------- real SEV


@pytest.mark.integration
def test_real_sev_without_crossing(sev_path):
    ds = load_sev(sev_path)
    assert len(ds) == 480 and ds.name == "sev" and ds.appraisals is None
    assert ds.label_names == VALENCES
    assert ds.label_counts() == dict.fromkeys(VALENCES, 160)
    meta = ds.metadata
    assert meta["theme"].nunique() == 8 and meta["skeleton_id"].nunique() == 160
    assert sorted(meta["scenario_index"].unique()) == list(range(160))
    assert meta["emotion"].isna().all()
    assert list(meta.columns) == [
        "theme",
        "scenario",
        "event",
        "valence",
        "skeleton_id",
        "scenario_index",
        "emotion",
    ]
    assert ds.ids[:3] == ("work_00:positive", "work_00:neutral", "work_00:negative")
    assert ds.texts[0].startswith(meta["scenario"][0] + ". ")
    assert ds.texts[0].endswith(meta["event"][0])


@pytest.mark.integration
def test_real_sev_crossed(sev_path):
    ds = load_sev(sev_path, cross_emotions=True)
    assert len(ds) == 2880 and ds.label_names == SEV_EMOTIONS
    assert ds.label_counts() == dict.fromkeys(SEV_EMOTIONS, 480)
    assert ds.ids[0] == "work_00:positive:anger"
    assert (ds.metadata["emotion"] == list(ds.labels)).all()
    assert len(set(ds.texts)) == 480
    two = load_sev(sev_path, emotions=["fear", "anger"], cross_emotions=True)
    assert len(two) == 960 and two.label_names == ("fear", "anger")


@pytest.mark.integration
def test_real_sev_grouped_split(sev_path):
    ds = load_sev(sev_path, cross_emotions=True)
    train, test = ds.split(0.25, seed=0, groups="skeleton_id")
    tr, te = set(train.metadata["skeleton_id"]), set(test.metadata["skeleton_id"])
    assert not tr & te and len(tr) + len(te) == 160 and len(te) == 40
    assert len(test) == 40 * 18


@pytest.mark.integration
def test_default_sev_path(sev_path, monkeypatch):
    monkeypatch.setenv("LENS_EMOTION_DATA", str(sev_path.parents[1]))
    assert default_sev_path() == sev_path
    assert len(load_dataset("sev")) == 480
    assert len(load_dataset("sev", cross_emotions=True)) == 2880


# ----------------------------------------------------------------- small synthetic files


def record(i: int, **over) -> dict:
    rec = {
        "theme": "Work/Job" if i % 2 else "Travel",
        "scenario": f"I handed in report {i}",
        "event": {v: f"The {v} outcome {i} happened." for v in VALENCES},
        "skeleton_id": f"s_{i:02d}",
    }
    rec.update(over)
    return rec


def write_jsonl(path: Path, lines: list) -> Path:
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
        encoding="utf-8",
    )
    return path


def test_small_file(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [record(0), "", record(1)])
    ds = load_sev(path)
    assert len(ds) == 6 and ds.source == str(path)
    assert ds.texts[0] == "I handed in report 0. The positive outcome 0 happened."
    assert ds.metadata["scenario_index"].tolist() == [0, 0, 0, 1, 1, 1]
    crossed = load_sev(path, cross_emotions=True)
    assert len(crossed) == 36 and crossed.ids[-1] == "s_01:negative:disgust"


def test_join_scenario_event():
    assert join_scenario_event(" I left ", "It rained.") == "I left. It rained."
    assert join_scenario_event("I left!", "It rained.") == "I left! It rained."


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="SEV file not found") as err:
        load_sev(tmp_path / "sev.jsonl")
    assert str(tmp_path / "sev.jsonl") in str(err.value) and "JSON Lines" in str(err.value)


def test_invalid_json_line_names_line_number(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [record(0), record(1), '{"theme": "x",'])
    with pytest.raises(DataError, match="line 3: invalid JSON"):
        load_sev(path)


def test_non_object_line(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [record(0), "[1, 2]"])
    with pytest.raises(DataError, match="line 2: expected a JSON object"):
        load_sev(path)


def test_missing_keys_named(tmp_path):
    bad = record(1)
    del bad["scenario"], bad["skeleton_id"]
    path = write_jsonl(tmp_path / "s.jsonl", [record(0), bad])
    with pytest.raises(DataError, match="line 2: missing key") as err:
        load_sev(path)
    assert "scenario" in str(err.value) and "skeleton_id" in str(err.value)


def test_missing_valence_named(tmp_path):
    bad = record(0)
    del bad["event"]["neutral"]
    path = write_jsonl(tmp_path / "s.jsonl", [bad])
    with pytest.raises(DataError, match=r"line 1: missing key\(s\) event.neutral"):
        load_sev(path)


@pytest.mark.parametrize(
    "over, match",
    [
        ({"event": "text"}, "'event' must be an object"),
        ({"scenario": ""}, "scenario must be non-empty"),
        ({"theme": 3}, "theme must be non-empty"),
        ({"skeleton_id": "s_00"}, "already used on line 1"),
    ],
)
def test_bad_values(tmp_path, over, match):
    path = write_jsonl(tmp_path / "s.jsonl", [record(0), record(1, **over)])
    with pytest.raises(DataError, match=match):
        load_sev(path)


def test_empty_file(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [""])
    with pytest.raises(DataError, match="no SEV records"):
        load_sev(path)


@pytest.mark.parametrize(
    "emotions, cross, match",
    [
        (["anger", "joy"], True, "unknown SEV emotion"),
        ([], True, "emotions is empty"),
        (["fear", "fear"], True, "duplicates"),
        ("anger", True, "list of names"),
        (["anger"], False, "cross_emotions=True"),
    ],
)
def test_bad_emotions(tmp_path, emotions, cross, match):
    path = write_jsonl(tmp_path / "s.jsonl", [record(0)])
    with pytest.raises(DataError, match=match):
        load_sev(path, emotions=emotions, cross_emotions=cross)


def test_emotions_normalised(tmp_path):
    path = write_jsonl(tmp_path / "s.jsonl", [record(0)])
    ds = load_sev(path, emotions=[" Fear", "ANGER"], cross_emotions=True)
    assert ds.label_names == ("fear", "anger") and len(ds) == 6
