"""The data registry: where each dataset comes from, what it is, and where the loaders look.

The loaders read files under the **data root**: ``$LENS_EMOTION_DATA`` if set, else
``~/.cache/lens-emotion/data``. Neither dataset is redistributed with lens-emotion; fetch each
from its official source and place it with ``lens-emotion data add NAME FILE_OR_URL``, which
copies (or, for a URL, explicitly downloads) the file, checks it, and renames it into place::

    lens-emotion data list
    lens-emotion data add crowd-envent ~/Downloads/enVent_gen_Data.csv
    lens-emotion data add sev https://example.org/path/to/sev.jsonl

A file is checked twice: against the sha256 of the release we tested (where the file is
fixed) and by loading it with its loader (columns, labels, encoding). A half-downloaded or
half-copied file is never left where the loaders look: it is written beside the target under
a temporary name and renamed only after both checks pass.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lens_emotion.errors import DataError

__all__ = [
    "DATASETS",
    "DatasetInfo",
    "DatasetFile",
    "add_dataset",
    "dataset_status",
    "default_data_root",
    "sha256_file",
]


def default_data_root() -> Path:
    """``$LENS_EMOTION_DATA`` if set and non-empty, else ``~/.cache/lens-emotion/data``."""
    env = os.environ.get("LENS_EMOTION_DATA", "").strip()
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "lens-emotion" / "data"


@dataclass(frozen=True)
class DatasetFile:
    """One file a dataset may be given as.

    Attributes:
        name: File name under the dataset's folder.
        sha256: Checksum of the release we tested, or ``None`` where the file is not fixed.
        description: What the file is.
    """

    name: str
    sha256: str | None
    description: str


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset the loaders know.

    Attributes:
        name: Registry name (also the ``--dataset`` value).
        folder: Folder under the data root.
        description: What it is.
        licence: Its terms, as far as we know them.
        citation: What to cite.
        source: The official source page.
        files: Accepted files, preferred first (the loaders read the first that exists).
    """

    name: str
    folder: str
    description: str
    licence: str
    citation: str
    source: str
    files: tuple[DatasetFile, ...]


DATASETS: dict[str, DatasetInfo] = {
    "crowd-envent": DatasetInfo(
        name="crowd-envent",
        folder="crowd-envent",
        description="crowd-enVENT: 6,600 English event descriptions written by the people who "
        "lived them, each with its emotion (13 labels) and the writer's own ratings of 21 "
        "appraisals (Tak et al. 2025 use it).",
        licence="research use under the corpus authors' terms (see the source page); not "
        "redistributed with lens-emotion",
        citation="Troiano, E., Oberländer, L. and Klinger, R. (2023). Dimensional Modeling of "
        "Emotions in Text with Appraisal Theories: Corpus Creation, Annotation Reliability, and "
        "Prediction. Computational Linguistics 49(1).",
        source="https://www.ims.uni-stuttgart.de/data/appraisalemotion (the corpus authors' "
        "data page)",
        files=(
            DatasetFile(
                "enVent_gen_Data.csv",
                "941683c991923cdecf2953c4c945227bbbd3678b96139564c7ed68cb432c5a2c",
                "generation corpus as a cp1252 CSV (6,600 rows x 61 columns)",
            ),
            DatasetFile(
                "crowd-enVent_generation.tsv",
                None,
                "generation corpus from the official zip (the zip itself is accepted too)",
            ),
        ),
    ),
    "sev": DatasetInfo(
        name="sev",
        folder="sev",
        description="SEV (Scenario-Event with Valence): 160 everyday scenarios (8 themes x 20), "
        "each with a positive, neutral and negative event; crossed with 6 emotions they give "
        "the 2,880 prompts of Wang et al. 2025.",
        licence="as published with the paper's code (see the source repository); not "
        "redistributed with lens-emotion",
        citation='Wang et al. (2025). Do LLMs "Feel"? Emotion Circuits Discovery and Control.',
        source="the paper's code repository (EmotionCircuits-LLM, data/sev.jsonl)",
        files=(
            DatasetFile(
                "sev.jsonl",
                "7b5313524f54b285c77d31c880b51939cfbcb2db12986bd409da0daae2807a86",
                "one JSON object per scenario: theme, scenario, event{positive,neutral,"
                "negative}, skeleton_id",
            ),
        ),
    ),
}


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """The sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def _info(name: str) -> DatasetInfo:
    key = str(name).strip().lower().replace("_", "-")
    if key not in DATASETS:
        raise DataError(
            f"unknown dataset {name!r}; `lens-emotion data list` shows {', '.join(DATASETS)}"
        )
    return DATASETS[key]


def dataset_status(name: str, root: str | Path | None = None) -> dict[str, Any]:
    """Which of a dataset's files are present under the data root, and whether they check out.

    Returns:
        ``{"name", "folder", "present": path or None, "checksum": "ok" | "differs" | "not fixed"
        | None}``.
    """
    info = _info(name)
    folder = Path(root) if root is not None else default_data_root()
    folder = folder / info.folder
    for spec in info.files:
        path = folder / spec.name
        if path.is_file():
            if spec.sha256 is None:
                state = "not fixed"
            else:
                state = "ok" if sha256_file(path) == spec.sha256 else "differs"
            return {
                "name": info.name,
                "folder": str(folder),
                "present": str(path),
                "checksum": state,
            }
    return {"name": info.name, "folder": str(folder), "present": None, "checksum": None}


def _fetch(source: str, into: Path, progress: bool) -> Path:
    """Copy a local file, or download an http(s)/file URL, into the folder ``into``."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("http", "https", "file"):
        name = Path(urllib.parse.unquote(parsed.path)).name or "download"
        target = into / name
        try:
            with urllib.request.urlopen(source, timeout=60) as response, open(target, "wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                from tqdm.auto import tqdm

                bar = tqdm(total=total, unit="B", unit_scale=True, desc=name, disable=not progress)
                for block in iter(lambda: response.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
                bar.close()
        except (OSError, ValueError) as exc:
            raise DataError(
                f"could not download {source}: {exc}; check the address, or download it in a "
                "browser and pass the local file instead"
            ) from exc
        return target
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(
            f"{source} is neither an existing file nor an http(s) URL; pass a path or URL"
        )
    target = into / path.name
    shutil.copyfile(path, target)
    return target


def _unzip_tsv(path: Path, wanted: str) -> Path:
    """Extract ``wanted`` from the official crowd-enVENT zip (any folder inside it)."""
    with zipfile.ZipFile(path) as archive:
        members = [m for m in archive.namelist() if Path(m).name == wanted]
        if not members:
            raise DataError(
                f"{path.name} holds no {wanted}; pass the crowd-enVENT zip, the TSV or the CSV"
            )
        (path.parent / "unzipped").mkdir()
        target = path.parent / "unzipped" / wanted
        with archive.open(members[0]) as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
    return target


def _loader(name: str) -> Callable[[Path], Any]:
    from lens_emotion.data.crowd_envent import load_crowd_envent
    from lens_emotion.data.sev import load_sev

    return {"crowd-envent": load_crowd_envent, "sev": load_sev}[name]


def add_dataset(
    name: str,
    source: str | Path,
    root: str | Path | None = None,
    *,
    allow_checksum_mismatch: bool = False,
    progress: bool = True,
) -> Path:
    """Copy or download a dataset file, check it, and place it where the loaders look.

    Args:
        name: Registry name (``crowd-envent`` or ``sev``).
        source: A local file, or an ``http(s)://`` / ``file://`` URL (downloading happens only
            here, when asked for). For crowd-enVENT the official zip is accepted too.
        root: Data root (default: :func:`default_data_root`).
        allow_checksum_mismatch: Keep a file whose sha256 differs from the tested release (it
            must still load).
        progress: Show a download progress bar.

    Returns:
        The placed file.

    Raises:
        DataError: Unknown name, unreadable source, unexpected file name, checksum mismatch,
            or a file its loader rejects.
    """
    info = _info(name)
    folder = (Path(root) if root is not None else default_data_root()) / info.folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder, prefix=".incoming-") as tmp:
        fetched = _fetch(str(source), Path(tmp), progress)
        if zipfile.is_zipfile(fetched) and info.name == "crowd-envent":
            wanted = info.files[1].name
            fetched, final_name = _unzip_tsv(fetched, wanted), wanted
        else:
            final_name = fetched.name
        specs = {spec.name: spec for spec in info.files}
        if final_name not in specs:
            raise DataError(
                f"{info.name} expects a file named {' or '.join(specs)}, got {final_name!r}; "
                "rename it (or pass the official file)"
            )
        expected = specs[final_name].sha256
        actual = sha256_file(fetched)
        if expected is not None and actual != expected and not allow_checksum_mismatch:
            raise DataError(
                f"{final_name} has sha256 {actual[:12]}..., not the tested release's "
                f"{expected[:12]}...; check the download, or pass --allow-checksum-mismatch"
            )
        try:
            _loader(info.name)(fetched)
        except DataError as exc:
            raise DataError(f"{final_name} does not load as {info.name}: {exc}") from exc
        target = folder / final_name
        os.replace(fetched, target)
    return target
