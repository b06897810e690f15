import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lens_emotion.data import (
    APPRAISALS,
    CROWD_ENVENT_EMOTIONS,
    DroppedRowsWarning,
    default_crowd_envent_path,
    load_crowd_envent,
    load_dataset,
)
from lens_emotion.errors import DataError

C1 = "[\u0080-\u009f]"

# ----------------------------------------------------------------- real corpus


@pytest.mark.integration
def test_real_corpus_shape_and_labels(crowd_envent):
    ds = crowd_envent
    assert len(ds) == 6600 and ds.dropped_rows == 0
    assert ds.name == "crowd-envent" and ds.text_column == "hidden_emo_text"
    assert ds.label_names == CROWD_ENVENT_EMOTIONS
    assert set(ds.labels) == set(CROWD_ENVENT_EMOTIONS)
    assert "neutral" in ds.labels and "no-emotion" not in ds.labels
    counts = ds.label_counts()
    assert counts["guilt"] == counts["shame"] == 275
    assert all(counts[lab] == 550 for lab in CROWD_ENVENT_EMOTIONS if lab not in {"guilt", "shame"})
    assert len(set(ds.ids)) == 6600 and ds.ids[0] == "round-2_215"


@pytest.mark.integration
def test_real_corpus_appraisals(crowd_envent):
    ds = crowd_envent
    assert ds.appraisal_names == APPRAISALS and len(APPRAISALS) == 21
    assert "chance_responsblt" in ds.appraisal_names
    assert ds.appraisals.shape == (6600, 21) and ds.appraisals.dtype == np.float32
    assert ds.appraisals.min() == 1 and ds.appraisals.max() == 5
    assert np.array_equal(ds.appraisals, np.round(ds.appraisals))


@pytest.mark.integration
def test_real_corpus_decoding(crowd_envent):
    ds = crowd_envent
    texts = pd.Series(ds.texts)
    others = ds.metadata["generated_text"]
    assert not texts.str.contains(C1).any() and not others.str.contains(C1).any()
    row = ds.ids.index("round-2_29")
    assert "don\u2019t" in others[row]  # cp1252 byte 0x92 -> RIGHT SINGLE QUOTATION MARK
    assert texts.str.contains("\u2019").sum() > 100


@pytest.mark.integration
def test_real_corpus_latin1_is_rejected(crowd_envent_path):
    with pytest.raises(DataError, match="latin-1"):
        load_crowd_envent(crowd_envent_path, encoding="latin-1")


@pytest.mark.integration
def test_real_corpus_generated_text(crowd_envent_path, crowd_envent):
    gen = load_crowd_envent(crowd_envent_path, text_column="generated_text")
    assert gen.text_column == "generated_text" and gen.ids == crowd_envent.ids
    assert list(gen.metadata["hidden_emo_text"]) == list(crowd_envent.texts)
    assert sum(a != b for a, b in zip(gen.texts, crowd_envent.texts, strict=True)) > 1000
    assert {"row", "round_number", "text_id", "intensity", "confidence"} <= set(gen.metadata)


@pytest.mark.integration
def test_real_corpus_limit(crowd_envent_path):
    a = load_crowd_envent(crowd_envent_path, limit=130, seed=0)
    b = load_crowd_envent(crowd_envent_path, limit=130, seed=0)
    c = load_crowd_envent(crowd_envent_path, limit=130, seed=1)
    assert len(a) == 130 and a.ids == b.ids and a.ids != c.ids
    assert a.label_names == CROWD_ENVENT_EMOTIONS
    counts = a.label_counts()
    assert set(counts) == set(CROWD_ENVENT_EMOTIONS) and min(counts.values()) >= 5
    assert max(counts.values()) - min(counts.values()) <= 6


@pytest.mark.integration
def test_default_path_and_load_dataset(crowd_envent_path, monkeypatch):
    monkeypatch.setenv("LENS_EMOTION_DATA", str(crowd_envent_path.parents[1]))
    assert default_crowd_envent_path() == crowd_envent_path
    ds = load_dataset("crowd-envent", limit=26)
    assert len(ds) == 26 and ds.source == str(crowd_envent_path)


# ----------------------------------------------------------------- small synthetic files


def frame(n: int = 6) -> pd.DataFrame:
    emotions = ["anger", "no-emotion", "joy"]
    rows = []
    for i in range(n):
        row = {
            "round_number": "round-x",
            "emotion": emotions[i % 3],
            "text_id": str(i),
            "generated_text": f"I felt word when event {i} happened",
            "hidden_emo_text": f"I felt ... when event {i} happened",
            "intensity": 4,
            "confidence": 5,
        }
        row.update({a: (i % 5) + 1 for a in APPRAISALS})
        rows.append(row)
    return pd.DataFrame(rows)


def write(df: pd.DataFrame, path: Path, encoding: str = "utf-8") -> Path:
    sep = "\t" if path.suffix == ".tsv" else ","
    df.to_csv(path, index=False, sep=sep, encoding=encoding)
    return path


def test_small_csv_parses(tmp_path):
    ds = load_crowd_envent(write(frame(), tmp_path / "f.csv"))
    assert len(ds) == 6 and ds.ids[0] == "round-x_0"
    assert ds.labels[:3] == ("anger", "neutral", "joy")
    assert ds.texts[0] == "I felt ... when event 0 happened"
    assert ds.metadata["generated_text"][0] == "I felt word when event 0 happened"
    assert ds.metadata["intensity"].tolist() == [4] * 6
    assert ds.appraisals[:, 0].tolist() == [1, 2, 3, 4, 5, 1]


def test_tsv_utf8_and_cp1252(tmp_path):
    df = frame()
    df.loc[0, "hidden_emo_text"] = "I didn\u2019t think it would happen"
    assert load_crowd_envent(write(df, tmp_path / "u.tsv")).texts[0] == df.loc[0, "hidden_emo_text"]
    ds = load_crowd_envent(write(df, tmp_path / "w.tsv", encoding="cp1252"))
    assert ds.texts[0] == "I didn\u2019t think it would happen"
    assert load_crowd_envent(write(df, tmp_path / "w.csv", encoding="cp1252")).texts[0] == (
        "I didn\u2019t think it would happen"
    )


def test_text_is_stripped_and_na_strings_kept(tmp_path):
    df = frame()
    df.loc[0, "hidden_emo_text"] = "  padded  text \n"
    df.loc[1, "hidden_emo_text"] = "NA"
    ds = load_crowd_envent(write(df, tmp_path / "f.csv"))
    assert ds.texts[0] == "padded  text" and ds.texts[1] == "NA"


def test_missing_file_message(tmp_path):
    missing = tmp_path / "nope" / "enVent_gen_Data.csv"
    with pytest.raises(DataError) as err:
        load_crowd_envent(missing)
    msg = str(err.value)
    assert str(missing) in msg and "crowd-enVent_generation.tsv" in msg and ".csv" in msg
    assert "LENS_EMOTION_DATA" in msg


def test_missing_columns_are_all_listed(tmp_path):
    df = frame().drop(columns=["emotion", "chance_responsblt", "effort"])
    with pytest.raises(DataError, match="missing 3 required") as err:
        load_crowd_envent(write(df, tmp_path / "f.csv"))
    for col in ("emotion", "chance_responsblt", "effort"):
        assert col in str(err.value)


def test_unknown_labels_are_listed(tmp_path):
    df = frame()
    df.loc[0, "emotion"] = "happy"
    df.loc[1, "emotion"] = "angst"
    df.loc[2, "emotion"] = np.nan
    with pytest.raises(DataError, match="unknown emotion") as err:
        load_crowd_envent(write(df, tmp_path / "f.csv"))
    assert "'happy'" in str(err.value) and "'angst'" in str(err.value)
    assert "<empty>" in str(err.value)


def test_labels_are_case_insensitive(tmp_path):
    df = frame()
    df.loc[0, "emotion"] = " Anger "
    df.loc[1, "emotion"] = "neutral"
    assert load_crowd_envent(write(df, tmp_path / "f.csv")).labels[:2] == ("anger", "neutral")


def test_empty_texts_dropped_and_reported(tmp_path):
    df = frame(9)
    df.loc[1, "hidden_emo_text"] = np.nan
    df.loc[4, "hidden_emo_text"] = "   "
    df.loc[5, "generated_text"] = np.nan  # not the chosen column: kept
    path = write(df, tmp_path / "f.csv")
    with pytest.warns(DroppedRowsWarning, match="dropped 2 row"):
        ds = load_crowd_envent(path)
    assert len(ds) == 7 and ds.dropped_rows == 2
    assert "round-x_1" not in ds.ids and "round-x_4" not in ds.ids
    assert ds.metadata["row"].tolist() == [0, 2, 3, 5, 6, 7, 8]
    assert ds.subset([0, 1]).dropped_rows == 2
    with pytest.warns(DroppedRowsWarning, match="dropped 1 row.*generated_text"):
        assert load_crowd_envent(path, text_column="generated_text").dropped_rows == 1


def test_no_warning_when_nothing_dropped(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_crowd_envent(write(frame(), tmp_path / "f.csv")).dropped_rows == 0


@pytest.mark.parametrize("bad", ["0", "6", "x", "2.5", ""])
def test_appraisal_out_of_range(tmp_path, bad):
    df = frame().astype({"urgency": str, "effort": str})
    df.loc[0, "urgency"] = bad
    df.loc[[1, 2], "effort"] = bad
    with pytest.raises(DataError, match="integers 1-5") as err:
        load_crowd_envent(write(df, tmp_path / "f.csv"))
    msg = str(err.value)
    assert "urgency (1 bad" in msg and "effort (2 bad" in msg and "2 column(s)" in msg


def test_float_formatted_integers_accepted(tmp_path):
    df = frame().astype({"urgency": float})
    assert load_crowd_envent(write(df, tmp_path / "f.csv")).appraisals[:, 11].max() == 5


def test_bytes_invalid_in_cp1252(tmp_path):
    path = write(frame(), tmp_path / "f.csv")
    raw = path.read_bytes().replace(b"event 0", b"event \x81")
    path.write_bytes(raw)
    with pytest.raises(DataError, match="not valid utf-8 and cp1252") as err:
        load_crowd_envent(path)
    assert str(path) in str(err.value) and "0x81" in str(err.value)


def test_forced_encoding_mismatch(tmp_path):
    df = frame()
    df.loc[0, "hidden_emo_text"] = "it wasn\u2019t fair"
    path = write(df, tmp_path / "f.csv", encoding="cp1252")
    with pytest.raises(DataError, match="not valid utf-8") as err:
        load_crowd_envent(path, encoding="utf-8")
    assert str(path) in str(err.value) and "0x92" in str(err.value)
    assert load_crowd_envent(path, encoding="cp1252").texts[0] == "it wasn\u2019t fair"


def test_latin1_decoded_file_rejected(tmp_path):
    df = frame()
    df.loc[0, "generated_text"] = "it wasn\u0092t fair"  # what latin-1 makes of cp1252 0x92
    with pytest.raises(DataError, match="C1 control characters") as err:
        load_crowd_envent(write(df, tmp_path / "f.csv"))
    assert "latin-1" in str(err.value) and "generated_text" in str(err.value)


def test_wrong_text_column(tmp_path):
    path = write(frame(), tmp_path / "f.csv")
    with pytest.raises(DataError, match="hidden_emo_text"):
        load_crowd_envent(path, text_column="text")
    with pytest.raises(DataError, match="text_column"):
        load_crowd_envent(tmp_path / "does-not-matter.csv", text_column="emotion")


def test_unsupported_suffix_and_empty_file(tmp_path):
    path = tmp_path / "f.xlsx"
    path.write_bytes(b"abc")
    with pytest.raises(DataError, match="unsupported file type"):
        load_crowd_envent(path)
    empty = tmp_path / "e.csv"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="could not be parsed"):
        load_crowd_envent(empty)


def test_duplicate_ids_fall_back_to_row_index(tmp_path):
    df = frame()
    df["text_id"] = "1"
    ds = load_crowd_envent(write(df, tmp_path / "f.csv"))
    assert ds.ids == tuple(f"row-{i}" for i in range(6))


@pytest.mark.parametrize("limit", [0, -3, 2.5, True])
def test_bad_limit(tmp_path, limit):
    with pytest.raises(DataError, match="limit"):
        load_crowd_envent(write(frame(), tmp_path / "f.csv"), limit=limit)


def test_limit_on_small_file(tmp_path):
    path = write(frame(12), tmp_path / "f.csv")
    ds = load_crowd_envent(path, limit=6, seed=3)
    assert ds.label_counts() == {
        **dict.fromkeys(CROWD_ENVENT_EMOTIONS, 0),
        "anger": 2,
        "neutral": 2,
        "joy": 2,
    }
    assert len(load_crowd_envent(path, limit=100)) == 12


def test_load_dataset_dispatch(tmp_path):
    path = write(frame(), tmp_path / "f.csv")
    assert len(load_dataset("crowd-envent", path)) == 6
    assert len(load_dataset("Crowd_enVENT", path, text_column="generated_text")) == 6
    with pytest.raises(DataError, match="crowd-envent, sev, sample"):
        load_dataset("goemotions")
