"""Activation extraction into an on-disk :class:`ActivationStore`.

``extract_activations(model, prompts, sites, layers, positions)`` runs the prompts in
length-sorted, left-padded batches and keeps, for each requested TransformerLens site and
layer, only the requested positions (negative offsets from the last prompt token). Nothing
else is cached: the hooks slice positions as the activations go by, the forward pass is
aborted right after the last needed layer (so the final norm and unembedding never run), and
results are written to safetensors shards.

**Store layout** (``root/``)::

    manifest.json              request (model id + weight hash, data and prompt hashes,
                               template, sites, layers, positions, dtype), versions, seed,
                               ids, and "complete"
    shard_00000.safetensors    one tensor per "site.layer": [rows, n_positions, *shape],
    shard_00001.safetensors    plus "row_index" (rows' positions in dataset order)
    ...

Every shard is written to a temporary name and renamed into place, so a shard that exists is
complete; each carries the request hash in its metadata, so shards from another request are
never trusted. An interrupted run resumes from the shards it finished. The same request
twice reuses the store; a request that differs in any field is recomputed.

**Engines.** ``engine="bridge"`` reads the TransformerLens hook points of the bridge
(``blocks.{l}.hook_attn_out`` ...). ``engine="plain"`` attaches PyTorch hooks at the same
points of the plain transformers modules, found by the family adapter of
:mod:`lens_emotion.architecture` (decoder-layer input/output = ``resid_pre``/``resid_post``,
attention output - after Gemma's and OLMo 2's post-attention norm - = ``attn_out``, MLP output
= ``mlp_out``, pre-MLP norm input = ``resid_mid``, output-projection input = ``z``), and is
about 25% faster on CPU because the bridge re-implements attention step by step. It covers
Llama, Mistral, Qwen2/3, Gemma 2/3, Phi-3, OLMo 2, GPT-2 and GPT-NeoX (GPT-NeoX's parallel
residual has no ``resid_mid``); LayerNorm families' values are converted to the bridge's
centred convention. It is checked against the bridge on a probe prompt before first use
(``engine="auto"`` falls back to the bridge if they disagree, or where the architecture has
no adapter). The tests compare both on every family.
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import json
import os
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from jaxtyping import Float
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor
from tqdm.auto import tqdm

from lens_emotion.architecture import (
    SUPPORTED_ARCHITECTURES,
    ArchitectureError,
    architecture,
    unsupported_reason,
)
from lens_emotion.batching import length_batches
from lens_emotion.early_stop import StopForward, stop_forward, stoppable
from lens_emotion.errors import LensEmotionError
from lens_emotion.io import write_json_atomic
from lens_emotion.manifest import package_versions
from lens_emotion.models import release_freed_memory

STORE_SITES: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out", "resid_mid", "resid_post", "z")

#: On-disk dtypes of a store (values are always read back as float32).
STORE_DTYPES: tuple[str, ...] = ("float32", "float16")
"""Sites an :class:`ActivationStore` can hold."""

DEFAULT_SITES: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post")
#: Default cap on padded tokens per batch (16 prompts of 256 tokens); see ``extract_activations``.
DEFAULT_MAX_TOKENS = 4096
"""MHSA output, FFN output and hidden state: the three sites of Tak et al."""

PLAIN_ARCHITECTURES = SUPPORTED_ARCHITECTURES
"""Architectures the plain engine covers (every family of :mod:`lens_emotion.architecture`)."""

_FORMAT_VERSION = 1


class ActivationStoreError(LensEmotionError, ValueError):
    """A store request or an on-disk store is invalid."""


_StopForward = StopForward
"""Former private name of :class:`lens_emotion.early_stop.StopForward` (kept as an alias)."""


def _hash_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class ActivationStore:
    """Read access to a complete on-disk activation store.

    Attributes:
        root: The store folder.
        manifest: The parsed ``manifest.json``.
    """

    root: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, root: str | Path) -> ActivationStore:
        """Open a complete store.

        Raises:
            ActivationStoreError: No manifest, or the store is incomplete.
        """
        root = Path(root)
        try:
            manifest = json.loads((root / "manifest.json").read_text())
        except (OSError, ValueError) as exc:
            raise ActivationStoreError(
                f"{root} is not an activation store (no readable manifest.json); create one "
                "with lens_emotion.activations.extract_activations()."
            ) from exc
        if not manifest.get("complete"):
            raise ActivationStoreError(
                f"The activation store in {root} is incomplete (an interrupted run); call "
                "extract_activations() with the same arguments to resume it."
            )
        return cls(root, manifest)

    @property
    def ids(self) -> tuple[str, ...]:
        """Row ids, in dataset order."""
        return tuple(self.manifest["ids"])

    @property
    def sites(self) -> tuple[str, ...]:
        """Stored sites."""
        return tuple(self.manifest["request"]["sites"])

    @property
    def layers(self) -> tuple[int, ...]:
        """Stored layers."""
        return tuple(self.manifest["request"]["layers"])

    @property
    def positions(self) -> tuple[int, ...]:
        """Stored positions, as negative offsets from the last prompt token (-1 = last)."""
        return tuple(self.manifest["request"]["positions"])

    def __len__(self) -> int:
        return len(self.manifest["ids"])

    def _shards(self) -> list[Path]:
        return [self.root / name for name in self.manifest["shards"]]

    def get(self, site: str, layer: int, position: int = -1) -> np.ndarray:
        """Activations of one site, layer and position for every row, in dataset order.

        Returns:
            float32 array ``(n, d_model)``; for ``z`` it is ``(n, n_heads, d_head)``.

        Raises:
            ActivationStoreError: The site, layer or position was not extracted.
        """
        for name, value, stored in (
            ("site", site, self.sites),
            ("layer", layer, self.layers),
            ("position", position, self.positions),
        ):
            if value not in stored:
                raise ActivationStoreError(
                    f"{name} {value!r} is not in this store (it holds {list(stored)}); "
                    "extract it with extract_activations(...)."
                )
        p = self.positions.index(position)
        key = f"{site}.{layer}"
        out: np.ndarray | None = None
        for shard in self._shards():
            with safe_open(shard, framework="pt") as handle:
                rows = handle.get_tensor("row_index").numpy()
                values = handle.get_slice(key)[:, p].float().numpy()
            if out is None:
                out = np.empty((len(self), *values.shape[1:]), dtype=np.float32)
            out[rows] = values
        assert out is not None
        return out

    def stack(self, site: str, position: int = -1) -> np.ndarray:
        """All stored layers of a site: ``(n_layers_stored, n, ...)``."""
        return np.stack([self.get(site, layer, position) for layer in self.layers])


# --------------------------------------------------------------------------- engines


def _plain_blocks(model: Any) -> Any:
    return architecture(model).layers


_MMAP_THRESHOLD = 4 << 20
_heap_bounded = False


def bound_heap_growth() -> None:
    """Serve allocations of 4 MiB or more with ``mmap`` so that freeing returns them at once.

    glibc raises its mmap threshold as large blocks are freed, after which per-batch buffers
    (attention scores, MLP activations) come from the heap and stay resident as fragments:
    extracting all 6,600 crowd-enVENT prompts grew the resident size by ~1.5 GB that way.
    Fixing the threshold keeps extraction within the model size + ~0.9 GB (BENCHMARKS.md) at
    no measurable speed cost. It is a process-wide glibc setting, applied once; a no-op on
    other C libraries.
    """
    global _heap_bounded
    if _heap_bounded:
        return
    _heap_bounded = True
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(-3, _MMAP_THRESHOLD)  # -3 = M_MMAP_THRESHOLD


def _own(act: Tensor) -> Tensor:
    """A float32 CPU copy of a slice that owns its memory.

    ``.float().cpu()`` is a no-op on float32 CPU tensors, so a sliced view would keep the whole
    full-sequence activation alive until the batch is done (hundreds of MB for 90 hook points on
    long batches); ``clone`` keeps only the sliced positions.
    """
    return act.detach().to(device="cpu", dtype=torch.float32).clone()


def _first(output: Any) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


@contextlib.contextmanager
def _plain_hooks(
    model: Any, wanted: dict[tuple[str, int], list], positions: int, last_layer: int
) -> Iterator[None]:
    """Attach PyTorch hooks to the plain model that append sliced activations to ``wanted``.

    The modules come from the family adapter (:mod:`lens_emotion.architecture`); values are
    converted to the bridge's convention (``Architecture.to_bridge``).
    """
    arch = architecture(model)
    handles = []

    def keep(site: str, layer: int, act: Tensor) -> None:
        if (site, layer) in wanted:
            value = act[:, -positions:]
            if site == "z":
                value = value.reshape(*value.shape[:2], arch.n_heads, -1)
            wanted[(site, layer)].append(_own(arch.to_bridge(site, layer, value)))

    def input_of(args: tuple, kwargs: dict) -> Tensor:
        return kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]

    for layer in range(last_layer + 1):
        for site in ("resid_pre", "resid_mid", "z"):
            if (site, layer) not in wanted:
                continue
            try:
                module, _ = arch.site_module(site, layer)
            except ArchitectureError as exc:
                raise ActivationStoreError(str(exc)) from exc

            def pre(mod, args, kwargs, site=site, layer=layer):
                keep(site, layer, input_of(args, kwargs))

            handles.append(module.register_forward_pre_hook(pre, with_kwargs=True))
        for site in ("attn_out", "mlp_out"):
            if (site, layer) in wanted:
                module, _ = arch.site_module(site, layer)

                def post(mod, args, output, site=site, layer=layer):
                    keep(site, layer, _first(output))

                handles.append(module.register_forward_hook(post))

        def post_block(module, args, output, layer=layer):
            keep("resid_post", layer, _first(output))
            if layer == last_layer:
                stop_forward()

        handles.append(arch.layer(layer).register_forward_hook(post_block))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _run_plain(model: Any, input_ids: Tensor, mask: Tensor) -> None:
    positions_ids = (mask.long().cumsum(-1) - 1).clamp(min=0)
    with stoppable():
        architecture(model).base(
            input_ids=input_ids, attention_mask=mask, position_ids=positions_ids, use_cache=False
        )


def _run_bridge(
    model: Any,
    input_ids: Tensor,
    mask: Tensor,
    wanted: dict[tuple[str, int], list],
    positions: int,
    last_layer: int,
) -> None:
    hooks = []
    for site, layer in wanted:

        def keep(act, hook, key=(site, layer)):
            wanted[key].append(_own(act[:, -positions:]))
            return act

        hooks.append((model.hook_name(site, layer), keep))

    def stop(act, hook):
        stop_forward()

    hooks.append((model.hook_name("resid_post", last_layer), stop))
    with stoppable():
        model.bridge.run_with_hooks(
            input_ids, attention_mask=mask, fwd_hooks=hooks, return_type=None
        )


def _capture(
    model: Any,
    engine: str,
    input_ids: Tensor,
    mask: Tensor,
    sites: Sequence[str],
    layers: Sequence[int],
    positions: int,
) -> dict[tuple[str, int], Tensor]:
    wanted: dict[tuple[str, int], list] = {(s, layer): [] for s in sites for layer in layers}
    last_layer = max(layers)
    with torch.inference_mode():
        if engine == "plain":
            with _plain_hooks(model, wanted, positions, last_layer):
                _run_plain(model, input_ids, mask)
        else:
            _run_bridge(model, input_ids, mask, wanted, positions, last_layer)
    return {key: torch.cat(chunks) for key, chunks in wanted.items()}


def values_agree(
    a: Float[Tensor, "*batch d"], b: Float[Tensor, "*batch d"], atol: float, rtol: float
) -> bool:
    """Whether ``a`` matches ``b`` up to float rounding, judged per vector (last dimension).

    Every element must lie within ``atol + rtol * max|b|`` of ``b``, the max taken over its own
    vector: a residual stream whose largest entries are ~3e4 (Gemma 3's late layers) carries
    fp32 rounding of ~4e-3 in every entry, which an element-wise relative test would reject
    for the entries near zero.
    """
    scale = b.abs().amax(dim=-1, keepdim=True)
    return bool(((a - b).abs() <= atol + rtol * scale).all())


def plain_engine_matches(model: Any, atol: float = 1e-3, rtol: float = 1e-4) -> bool:
    """Check once per model that the plain engine reproduces the bridge's hook values.

    Values are compared per vector (:func:`values_agree`). The verdict is cached on the model
    object (``_plain_engine_verified``).
    """
    verdict = getattr(model, "_plain_engine_verified", None)
    if verdict is None:
        ids, mask = model.pad(model.encode(["I felt calm when the rain stopped.", "Hi there"]))
        layers = sorted({0, model.n_layers // 2, model.n_layers - 1})
        sites = [s for s in STORE_SITES if s != "resid_mid" or not architecture(model).parallel]
        plain = _capture(model, "plain", ids, mask, sites, layers, 2)
        bridge = _capture(model, "bridge", ids, mask, sites, layers, 2)
        verdict = all(values_agree(plain[k], bridge[k], atol, rtol) for k in plain)
        model._plain_engine_verified = verdict
    return verdict


def resolve_engine(model: Any, engine: str) -> str:
    """Pick ``"plain"`` or ``"bridge"`` for a model (``"auto"`` prefers a verified plain one).

    Raises:
        ActivationStoreError: Unknown engine, or ``"plain"`` on an unsupported architecture.
    """
    if engine not in {"auto", "plain", "bridge"}:
        raise ActivationStoreError(f"engine must be 'auto', 'plain' or 'bridge', not {engine!r}.")
    reason = unsupported_reason(model)
    if engine == "plain" and reason is not None:
        raise ActivationStoreError(
            f"The plain engine cannot run this model: {reason}; use engine='bridge'."
        )
    if engine == "auto":
        if reason is None and plain_engine_matches(model):
            return "plain"
        why = reason or "its values disagree with the bridge's hook values"
        warnings.warn(f"extraction falls back to the bridge engine: {why}", stacklevel=2)
        return "bridge"
    return engine


# --------------------------------------------------------------------------- extraction


def _positions_tuple(positions: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(positions, int):
        if positions < 1:
            raise ActivationStoreError(f"positions={positions}: pass k >= 1 for the last k tokens.")
        return tuple(range(-positions, 0))
    out = tuple(sorted({int(p) for p in positions}))
    if not out or any(p >= 0 for p in out):
        raise ActivationStoreError(
            f"positions {list(positions)} must be negative offsets from the last token "
            "(-1 = last token, -2 = the one before ...)."
        )
    return out


def _request(
    model: Any,
    prompts: Any,
    dataset: Any | None,
    sites: Sequence[str],
    layers: Sequence[int],
    positions: tuple[int, ...],
    dtype: str,
    shard_size: int,
    batch_size: int,
    max_tokens: int | None,
) -> dict[str, Any]:
    token_hash = hashlib.sha256()
    for ids in prompts.token_ids:
        token_hash.update(np.asarray(ids, dtype=np.int64).tobytes())
        token_hash.update(b"|")
    return {
        "format": _FORMAT_VERSION,
        "model_id": model.model_id,
        "weight_sha256": model.weight_hash,
        "data_sha256": dataset.fingerprint() if dataset is not None else None,
        "prompt_tokens_sha256": token_hash.hexdigest(),
        "template": prompts.template.describe(),
        "sites": list(sites),
        "layers": list(layers),
        "positions": list(positions),
        "dtype": dtype,
        "shard_size": shard_size,
        "batch_size": batch_size,
        "max_tokens": max_tokens,
    }


def _shard_plan(
    lengths: Sequence[int], batch_size: int, shard_size: int, max_tokens: int | None = None
) -> list[list[np.ndarray]]:
    """Length-sorted batches (at most ``max_tokens`` padded tokens) grouped into shards."""
    shards: list[list[np.ndarray]] = [[]]
    count = 0
    for batch in length_batches(lengths, batch_size, max_tokens):
        if count >= shard_size:
            shards.append([])
            count = 0
        shards[-1].append(batch)
        count += len(batch)
    return shards


def _shard_is_valid(path: Path, request_hash: str, rows: np.ndarray) -> bool:
    try:
        with safe_open(path, framework="pt") as handle:
            meta = handle.metadata() or {}
            stored = handle.get_tensor("row_index").numpy()
    except Exception:  # noqa: BLE001 - unreadable = not trusted
        return False
    return meta.get("request") == request_hash and np.array_equal(stored, rows)


def extract_activations(
    model: Any,
    prompts: Any,
    sites: Sequence[str] = DEFAULT_SITES,
    layers: Sequence[int] | None = None,
    positions: int | Sequence[int] = 1,
    out_dir: str | Path | None = None,
    dataset: Any | None = None,
    dtype: str = "float32",
    batch_size: int = 16,
    shard_size: int = 512,
    seed: int = 0,
    engine: str = "auto",
    progress: bool = True,
    max_tokens: int | None | Literal["model"] = "model",
) -> ActivationStore:
    """Extract activations at the last token(s) into an on-disk store (or reuse/resume one).

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        prompts: A :class:`~lens_emotion.prompts.PromptSet` (from ``build_prompts``).
        sites: Any of :data:`STORE_SITES`.
        layers: Layers to keep (default: all).
        positions: ``k`` for the last ``k`` tokens (default 1: the last token), or explicit
            negative offsets such as ``(-1, -3)``.
        out_dir: Store folder (default: a folder under the cache named by the request hash).
        dataset: The dataset the prompts were built from (its hash goes in the manifest).
        dtype: ``"float32"`` or ``"float16"`` on disk.
        batch_size: Prompts per forward pass (length-bucketed).
        shard_size: Rows per shard (the unit of resumption).
        seed: Recorded in the manifest (extraction itself is deterministic).
        engine: ``"auto"``, ``"plain"`` or ``"bridge"`` (see the module docstring).
        progress: Show a progress bar.
        max_tokens: Cap on padded tokens per batch (``batch x longest prompt``): long prompts
            go in smaller batches, which bounds the attention scores' memory (they grow with
            ``batch x length²``). ``None`` disables the cap; ``"model"`` (default) takes the
            cap ``load_model(max_tokens=...)`` checked memory for (``--max-tokens``), else
            :data:`DEFAULT_MAX_TOKENS`.

    Returns:
        The complete :class:`ActivationStore`.

    Raises:
        ActivationStoreError: Bad sites, layers, positions or dtype; a prompt shorter than
            the requested positions; or an ``out_dir`` that holds something else.
    """
    bad = [s for s in sites if s not in STORE_SITES]
    if bad or not sites:
        raise ActivationStoreError(f"Unknown sites {bad}; choose from {list(STORE_SITES)}.")
    layers = list(range(model.n_layers)) if layers is None else sorted({int(x) for x in layers})
    if not layers or layers[0] < 0 or layers[-1] >= model.n_layers:
        raise ActivationStoreError(
            f"layers must lie in 0..{model.n_layers - 1} for this model, got {layers}."
        )
    if dtype not in STORE_DTYPES:
        raise ActivationStoreError(f"dtype must be one of {list(STORE_DTYPES)}, not {dtype!r}.")
    pos = _positions_tuple(positions)
    k = -pos[0]
    too_short = [i for i, n in enumerate(prompts.lengths) if n < k]
    if too_short:
        raise ActivationStoreError(
            f"{len(too_short)} prompt(s) have fewer than {k} tokens (e.g. row {too_short[0]}); "
            "ask for fewer positions."
        )
    if dataset is not None and len(dataset) != len(prompts):
        raise ActivationStoreError(
            f"dataset has {len(dataset)} rows but prompts has {len(prompts)}; build the prompts "
            "from this dataset."
        )
    if max_tokens == "model":
        max_tokens = int(getattr(model, "max_tokens", DEFAULT_MAX_TOKENS))
    request = _request(
        model, prompts, dataset, sites, layers, pos, dtype, shard_size, batch_size, max_tokens
    )
    request_hash = _hash_json(request)
    if out_dir is None:
        from lens_emotion.models import cache_root

        out_dir = cache_root() / "activations" / request_hash[:16]
    root = Path(out_dir)
    manifest_path = root / "manifest.json"
    if root.exists():
        try:
            old = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            old = None
        if old is None and any(root.iterdir()):
            raise ActivationStoreError(
                f"{root} exists and is not an activation store; pass an empty or new out_dir."
            )
        if old is not None and old.get("request_sha256") == request_hash:
            if old.get("complete"):
                return ActivationStore(root, old)
        elif old is not None:  # another request: recompute from scratch
            shutil.rmtree(root)
    root.mkdir(parents=True, exist_ok=True)

    ids = [str(i) for i in range(len(prompts))] if dataset is None else list(dataset.ids)
    plan = _shard_plan(prompts.lengths, batch_size, shard_size, max_tokens)
    manifest = {
        "request": request,
        "request_sha256": request_hash,
        "complete": False,
        "ids": ids,
        "n": len(prompts),
        "shards": [f"shard_{i:05d}.safetensors" for i in range(len(plan))],
        "seed": seed,
        "versions": package_versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    write_json_atomic(manifest_path, manifest)
    for stale in root.glob(".*.tmp"):
        stale.unlink()

    bound_heap_growth()
    chosen = resolve_engine(model, engine)
    torch_dtype = torch.float32 if dtype == "float32" else torch.float16
    started = time.perf_counter()
    bar = tqdm(
        total=len(prompts), desc=f"activations ({chosen})", disable=not progress, unit="prompt"
    )
    for index, batches in enumerate(plan):
        path = root / manifest["shards"][index]
        rows = np.concatenate(batches)
        if path.exists() and _shard_is_valid(path, request_hash, rows):
            bar.update(len(rows))
            continue
        chunks: dict[tuple[str, int], list[Tensor]] = {}
        for batch in batches:
            input_ids, mask = model.pad([prompts.token_ids[i] for i in batch])
            captured = _capture(model, chosen, input_ids, mask, sites, layers, k)
            for key, value in captured.items():
                chunks.setdefault(key, []).append(value[:, [k + p for p in pos]])
            bar.update(len(batch))
        tensors = {
            f"{s}.{layer}": torch.cat(v).to(torch_dtype).contiguous()
            for (s, layer), v in chunks.items()
        }
        tensors["row_index"] = torch.from_numpy(rows.astype(np.int64))
        tmp = root / f".{path.name}.tmp"
        save_file(tensors, str(tmp), metadata={"request": request_hash})
        os.replace(tmp, path)
        del tensors, chunks
        release_freed_memory()  # glibc keeps freed batch buffers otherwise
    bar.close()
    manifest.update(
        complete=True, engine=chosen, extraction_seconds=round(time.perf_counter() - started, 2)
    )
    write_json_atomic(manifest_path, manifest)
    return ActivationStore(root, manifest)


def last_token_activations(
    model: Any, prompts: Any, site: str, layer: int, batch_size: int = 16, engine: str = "auto"
) -> Float[np.ndarray, "n d"]:
    """In-memory convenience: one site and layer at the last token, no store on disk."""
    chosen = resolve_engine(model, engine)
    out = None
    for batch in length_batches(prompts.lengths, batch_size):
        input_ids, mask = model.pad([prompts.token_ids[i] for i in batch])
        value = _capture(model, chosen, input_ids, mask, [site], [layer], 1)[(site, layer)]
        value = value[:, 0].numpy()
        if out is None:
            out = np.empty((len(prompts), *value.shape[1:]), dtype=np.float32)
        out[batch] = value
    assert out is not None
    return out
