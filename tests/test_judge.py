"""The offline emotion judge: real all-MiniLM-L6-v2 embeddings, real crowd-enVENT rows."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from lens_emotion.data import CROWD_ENVENT_EMOTIONS, SEV_EMOTIONS, load_crowd_envent
from lens_emotion.data.crowd_envent import read_envent_bytes
from lens_emotion.errors import DataError, LensEmotionError
from lens_emotion.judge import (
    CROWD_TO_SEV,
    JUDGE_LABEL_SETS,
    EmotionJudge,
    JudgeDataError,
    JudgeInputError,
    ReadoutJudge,
    SentenceEmbedder,
    embedder_folder,
    load_judge,
    score_replies,
    summarise_replies,
)
from lens_emotion.lexicon import mask_emotion_words, names_any_emotion

pytestmark = pytest.mark.integration

TEXTS = [
    "My brother borrowed my car and crashed it, then lied to my face about it.",
    "I passed my driving test on the first attempt.",
    "Walking home alone at night I heard footsteps right behind me.",
]


@pytest.fixture(scope="module")
def embedder() -> SentenceEmbedder:
    return SentenceEmbedder()


@pytest.fixture(scope="module")
def crowd_judge(crowd_envent_path) -> EmotionJudge:
    """The full 13-label judge (default cache: trained once, then loaded)."""
    return load_judge("crowd-envent", data_path=crowd_envent_path, seed=0, progress=False)


@pytest.fixture(scope="module")
def sev_judge(crowd_envent_path) -> EmotionJudge:
    return load_judge("sev", data_path=crowd_envent_path, seed=0, progress=False)


@pytest.fixture(scope="module")
def small_csv(crowd_envent_path, tmp_path_factory) -> Path:
    """Real crowd-enVENT rows (20 per emotion) written as a TSV with the original header."""
    frame = read_envent_bytes(
        crowd_envent_path.read_bytes(), suffix=".csv", display=str(crowd_envent_path)
    )
    emotions = frame["emotion"].str.strip().str.lower()
    parts = [frame[emotions == e].iloc[:20] for e in sorted(emotions.unique())]
    subset = np.concatenate([p.index.to_numpy() for p in parts])
    path = tmp_path_factory.mktemp("judge-data") / "subset.tsv"
    frame.loc[np.sort(subset)].to_csv(path, sep="\t", index=False)
    return path


@pytest.fixture
def tmp_cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("LENS_EMOTION_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "judges"


# ------------------------------------------------------------------ embedder


def test_embedder_matches_sentence_transformers(embedder):
    sentence_transformers = pytest.importorskip("sentence_transformers")
    ours = embedder.embed(TEXTS + ["short"], batch_size=2)
    reference = sentence_transformers.SentenceTransformer(
        str(embedder_folder()), device="cpu", local_files_only=True
    ).encode(TEXTS + ["short"], normalize_embeddings=False)
    assert ours.shape == (4, 384) and ours.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(ours, reference, atol=1e-5)


def test_embedding_independent_of_batching(embedder):
    alone = np.stack([embedder.embed([t])[0] for t in TEXTS])
    batched = embedder.embed(TEXTS, batch_size=3)
    np.testing.assert_allclose(alone, batched, atol=1e-5)
    assert (
        embedder.weight_hash
        == hashlib.sha256((embedder_folder() / "model.safetensors").read_bytes()).hexdigest()
    )


def test_embedder_loads_and_runs_without_network(monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("the judge's embedder tried to open a network connection")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    emb = SentenceEmbedder().embed(TEXTS[:1])
    assert emb.shape == (1, 384)


# ------------------------------------------------------------------ accuracy on real rows


@pytest.mark.parametrize("label_set", ["crowd-envent", "sev"])
def test_heldout_accuracy_well_above_baselines(label_set, crowd_judge, sev_judge, crowd_envent):
    judge = crowd_judge if label_set == "crowd-envent" else sev_judge
    v = judge.validation
    assert judge.labels == JUDGE_LABEL_SETS[label_set]
    assert v["label_set"] == label_set
    kept = [
        lab for lab in crowd_envent.labels if label_set == "crowd-envent" or lab in CROWD_TO_SEV
    ]
    assert v["n_train"] + v["n_test"] == len(kept)
    assert v["n_test"] == int(np.ceil(0.2 * len(kept)))
    assert v["chance"] == pytest.approx(1 / len(judge.labels))
    baseline = max(v["majority_baseline"], v["chance"])
    # The judge as used reads masked text; masked and raw held-out accuracy are both reported.
    assert v["mask"] is True
    assert v["accuracy"] == v["accuracy_masked"]
    assert v["accuracy_masked"] > 3 * baseline
    assert 0 < v["accuracy_raw"] <= 1
    assert v["macro_f1"] > 3 * v["chance"]
    # Held-out rows without an explicit emotion word are harder but still far above chance.
    assert v["accuracy_without_emotion_word"] > 2 * baseline
    # About a third of crowd-enVENT texts name an emotion; masked, the judge still reads them.
    assert 0.2 < v["share_test_naming_emotion"] < 0.5
    assert v["accuracy_on_texts_naming_emotion"] > 2 * baseline
    assert set(v["per_class_recall"]) == set(judge.labels)
    assert all(r > v["chance"] for r in v["per_class_recall"].values())


def test_sev_validation_reproduced_through_predict(sev_judge, crowd_envent_path):
    """Held-out accuracy recomputed from scratch via the public predict() matches validation."""
    rows = load_crowd_envent(crowd_envent_path, text_column="generated_text")
    rows = rows.filter(np.array([lab in CROWD_TO_SEV for lab in rows.labels]))
    rows = rows.with_labels([CROWD_TO_SEV[x] for x in rows.labels], SEV_EMOTIONS)
    _, test = rows.split(test_size=0.2, seed=0, stratify=True)
    assert len(test) == sev_judge.validation["n_test"]
    for mask, key in ((True, "accuracy_masked"), (False, "accuracy_raw")):
        predicted = sev_judge.predict(list(test.texts), mask=mask)
        accuracy = float(np.mean([p == t for p, t in zip(predicted, test.labels, strict=True)]))
        # Batches hold other texts than in training; float rounding may flip a near-tie or two.
        assert abs(accuracy - sev_judge.validation[key]) <= 2 / len(test), key


NAMING = [
    "Anger is a powerful emotion that can be both a blessing and a curse.",
    "Surprise! I'm glad you came.",
    "Fearless.",
    "HAPPY FRIEND! See you soon.",
    "I felt so sad and disgusted when they left.",
]


def test_judge_never_sees_an_emotion_word(sev_judge, crowd_judge):
    masked = [mask_emotion_words(t) for t in NAMING]
    assert not any(names_any_emotion(t) for t in masked)
    for judge in (sev_judge, crowd_judge):
        # Reading a text and reading its masked version is the same event...
        np.testing.assert_array_equal(judge.predict_proba(NAMING), judge.predict_proba(masked))
        np.testing.assert_array_equal(judge.embed(NAMING), judge.embed(masked))
        assert judge.predict(NAMING) == judge.predict(masked)
        # ... and masking did something: with mask=False the judge reads the words.
        raw = judge.predict_proba(NAMING, mask=False)
        assert np.abs(raw - judge.predict_proba(NAMING)).max() > 0.05
    # Unmasked, the words decide; masked, "Fearless." is no longer read as fear.
    assert sev_judge.predict(["Fearless."], mask=False) == ["fear"]


def test_raw_trained_judge_is_another_cache_entry(small_csv, tmp_cache):
    masked = load_judge("sev", data_path=small_csv, seed=0, progress=False)
    raw = load_judge("sev", data_path=small_csv, seed=0, progress=False, mask=False)
    assert masked.mask and not raw.mask and not raw.from_cache
    assert masked.cache_dir != raw.cache_dir
    assert masked.training["mask"] is True and raw.training["mask"] is False
    assert not np.array_equal(masked.coef, raw.coef)
    assert raw.validation["accuracy"] == raw.validation["accuracy_raw"]
    assert masked.validation["accuracy"] == masked.validation["accuracy_masked"]
    # Same split, so the raw judge's masked accuracy and the masked judge's raw accuracy are
    # the same rows read the other way.
    assert raw.validation["n_test"] == masked.validation["n_test"]
    other = load_judge("sev", data_path=small_csv, seed=0, progress=False, mask_token="<x>")
    assert other.cache_dir not in (masked.cache_dir, raw.cache_dir)
    assert other.predict(["so angry"]) == other.predict(["so <x>"], mask=False)
    with pytest.raises(JudgeInputError, match="names an emotion"):
        load_judge("sev", data_path=small_csv, progress=False, mask_token="<sad>")


def test_readout_judge_and_scoring_on_smollm2(smollm2, sev_judge, crowd_envent):
    """Both judges on 24 real crowd-enVENT texts of the SEV emotions, emotion words included."""
    rows = crowd_envent.filter(np.array([lab in CROWD_TO_SEV for lab in crowd_envent.labels]))
    rows = rows.with_labels([CROWD_TO_SEV[x] for x in rows.labels], SEV_EMOTIONS)
    rows = rows.sample(24, seed=1)
    readout = ReadoutJudge(smollm2, labels="sev")
    texts = list(rows.texts)
    labels = readout.predict(texts)
    assert len(labels) == 24 and set(labels) <= set(SEV_EMOTIONS)
    assert labels == readout.predict([mask_emotion_words(t) for t in texts], mask=False)
    frame = score_replies(
        sev_judge, texts, list(rows.labels), readout_labels=labels, extra={"set": ["real"] * 24}
    )
    assert frame["readout_label"].tolist() == labels
    summary = summarise_replies(frame, by="set").iloc[0]
    assert summary["n"] == 24
    assert summary["judged_masked"] == frame["correct_masked"].mean()
    assert summary["readout"] == frame["correct_readout"].mean()
    assert -1 <= summary["kappa"] <= 1
    # The masked judge reads these texts far above chance (1/6).
    assert summary["judged_masked"] > 2 / 6


def test_predict_proba_shapes_and_labels(sev_judge, crowd_judge):
    for judge, names in ((sev_judge, SEV_EMOTIONS), (crowd_judge, CROWD_ENVENT_EMOTIONS)):
        proba = judge.predict_proba(TEXTS)
        assert proba.shape == (len(TEXTS), len(names))
        np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
        assert judge.predict(TEXTS) == [names[i] for i in proba.argmax(axis=1)]
        assert judge.embed(TEXTS).shape == (len(TEXTS), 384)


def test_describe_is_a_manifest(sev_judge, crowd_envent_path):
    d = sev_judge.describe()
    json.dumps(d)
    assert d["embedder"]["id"] == "sentence-transformers/all-MiniLM-L6-v2"
    assert d["embedder"]["weights_sha256"] == sev_judge.embedder.weight_hash
    full = load_crowd_envent(crowd_envent_path, text_column="generated_text")
    assert d["training"]["data_sha256"] == full.fingerprint()
    assert d["training"]["seed"] == 0
    assert d["validation"]["accuracy"] == sev_judge.validation["accuracy"]
    assert d["labels"] == list(SEV_EMOTIONS)


def test_judges_share_one_embedder(sev_judge, crowd_judge):
    assert sev_judge.embedder is crowd_judge.embedder


# ------------------------------------------------------------------ determinism and cache


def test_same_seed_same_judge_other_seed_other_split(small_csv, tmp_cache):
    a = load_judge("crowd-envent", data_path=small_csv, seed=3, progress=False, use_cache=False)
    assert not tmp_cache.exists()  # use_cache=False writes nothing
    b = load_judge("crowd-envent", data_path=small_csv, seed=3, progress=False)
    c = load_judge("crowd-envent", data_path=small_csv, seed=4, progress=False)
    assert not a.from_cache and not b.from_cache and not c.from_cache
    np.testing.assert_array_equal(a.coef, b.coef)
    assert a.validation == b.validation
    assert a.predict(TEXTS) == b.predict(TEXTS)
    np.testing.assert_array_equal(a.predict_proba(TEXTS), b.predict_proba(TEXTS))
    assert c.cache_dir != b.cache_dir
    assert not np.array_equal(a.coef, c.coef)


def test_cache_reused_then_corruption_recomputed(small_csv, tmp_cache):
    first = load_judge("sev", data_path=small_csv, seed=0, progress=False)
    assert not first.from_cache
    assert first.training["embeddings_from_cache"] is False
    second = load_judge("sev", data_path=small_csv, seed=0, progress=False)
    assert second.from_cache and second.cache_dir == first.cache_dir
    np.testing.assert_array_equal(first.coef, second.coef)
    assert second.validation == first.validation

    # Another label set reuses the cached corpus embeddings but trains its own classifier.
    other = load_judge("crowd-envent", data_path=small_csv, seed=0, progress=False)
    assert not other.from_cache and other.training["embeddings_from_cache"] is True
    assert other.cache_dir != first.cache_dir

    # Flipped bytes in the weights: the hash check fails, the judge is retrained and rewritten.
    weights = first.cache_dir / "classifier.safetensors"
    raw = bytearray(weights.read_bytes())
    raw[-8:] = bytes(8)
    weights.write_bytes(bytes(raw))
    third = load_judge("sev", data_path=small_csv, seed=0, progress=False)
    assert not third.from_cache
    np.testing.assert_array_equal(third.coef, first.coef)
    assert load_judge("sev", data_path=small_csv, seed=0, progress=False).from_cache

    # Truncated metadata JSON: retrained.
    meta = first.cache_dir / "judge.json"
    meta.write_text(meta.read_text()[:50])
    assert not load_judge("sev", data_path=small_csv, seed=0, progress=False).from_cache

    # Metadata of another key (a mismatched entry): retrained, never trusted.
    record = json.loads(meta.read_text())
    record["cache_key"] = "0" * 32
    meta.write_text(json.dumps(record))
    assert not load_judge("sev", data_path=small_csv, seed=0, progress=False).from_cache

    # Corrupt corpus embeddings: recomputed.
    for emb_file in (tmp_cache / "embeddings").glob("*.safetensors"):
        emb_file.write_bytes(emb_file.read_bytes()[:-100])
    meta.unlink()
    fourth = load_judge("sev", data_path=small_csv, seed=0, progress=False)
    assert fourth.training["embeddings_from_cache"] is False
    np.testing.assert_allclose(fourth.coef, first.coef, atol=1e-6)


# ------------------------------------------------------------------ bad input


def test_missing_data_names_path_and_fix(tmp_path, monkeypatch):
    missing = tmp_path / "nope" / "enVent_gen_Data.csv"
    with pytest.raises(JudgeDataError) as info:
        load_judge("sev", data_path=missing, progress=False)
    message = str(info.value)
    assert str(missing) in message and "data_path" in message
    assert "LENS_EMOTION_DATA" in message
    assert isinstance(info.value, DataError) and isinstance(info.value, LensEmotionError)

    monkeypatch.setenv("LENS_EMOTION_DATA", str(tmp_path / "empty-root"))
    with pytest.raises(JudgeDataError, match="empty-root"):
        load_judge("sev", progress=False)


@pytest.mark.parametrize(
    ("texts", "match"),
    [
        ([], "empty"),
        (["fine text", ""], "empty or whitespace"),
        (["   \n"], "empty or whitespace"),
        ("a bare string", "not one string"),
        (["ok", 3], "must all be strings"),
    ],
)
def test_bad_texts_raise_clear_errors(sev_judge, texts, match):
    with pytest.raises(JudgeInputError, match=match):
        sev_judge.predict(texts)
    with pytest.raises(JudgeInputError, match=match):
        sev_judge.embed(texts)


def test_bad_arguments(small_csv, sev_judge):
    with pytest.raises(JudgeInputError, match="unknown label_set"):
        load_judge("ekman", data_path=small_csv, progress=False)
    with pytest.raises(JudgeInputError, match="text_column"):
        load_judge("sev", data_path=small_csv, text_column="text", progress=False)
    with pytest.raises(JudgeInputError, match="shape"):
        sev_judge.proba_from_embeddings(np.zeros((2, 5)))
    with pytest.raises(JudgeInputError, match="batch_size"):
        sev_judge.embed(TEXTS, batch_size=0)
