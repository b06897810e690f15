"""Interactive attention inspector: one self-contained, offline HTML page.

:func:`build_inspector` runs the attention analysis of :mod:`lens_emotion.attention` on a few
samples and writes ``OUT/index.html``, where a researcher picks a sample, a layer and a head and
sees

* the prediction and the probability of every label (renormalised over the labels);
* the occlusion saliency of each event-text token, emotion-bearing tokens marked;
* the final token's attention over all prompt tokens at that layer and head, with the mass on
  each token group (sink, template, event text, emotion-bearing tokens, final token);
* a layer x head map of that mass (click a cell to select it) and its profile across layers;
* the full query x key matrix of the head for the event-text and answer queries, for the layers
  stored with ``matrix_layers``.

**Why a static page** (and not a Dash/Gradio/Jupyter server): it needs no server process and no
open port, opens from ``file://`` on any machine (also one with no Python), keeps working
years later, can be attached to a paper or an e-mail as one file, and cannot fetch anything: a
Content-Security-Policy in the page forbids every network request, and all JavaScript is the
page's own (vanilla JS drawing SVG and a canvas; no CDN, no framework). The script and the style
sheet are package data, ``lens_emotion/viz/assets/inspector.js`` and ``inspector.css``, inlined
into the page.

**Size.** Every sample's data is a separate ``<script type="application/json">`` block parsed
only when the sample is selected. Attention weights are stored as 8-bit codes of their square
root (``w = (code / 255)^2``: absolute error below 1e-4 for weights under 0.01 and below
0.004 near 1), group masses as 16-bit fixed point, and the bytes are zlib-compressed (the page
inflates them with the browser's ``DecompressionStream``). On SmolLM2 with the
``emotion-list`` prompt a sample takes about 100 kB (final-token rows of 30 layers x 9 heads
plus three full matrices; long texts more), so 50 samples make a ~5 MB page and the page is
capped at :data:`MAX_SAMPLES` samples (``max_samples=`` raises the cap).

**Computation.** Occlusion saliency dominates (about 1-3 s per sample for SmolLM2 on one CPU
core); the hooked pass reads the final query row of every layer plus the full rows of
``matrix_layers``, with the template prefix shared by all prompts run only once.
"""

from __future__ import annotations

import base64
import html
import json
import time
import zlib
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from jaxtyping import Float

from lens_emotion import __version__
from lens_emotion.attention.mass import group_masses
from lens_emotion.attention.patterns import check_layers, iter_patterns
from lens_emotion.attention.saliency import prompts_with_saliency
from lens_emotion.attention.tokens import (
    GROUP_COLORS,
    GROUP_LABELS,
    MASS_GROUPS,
    shared_prefix_length,
)
from lens_emotion.data import EmotionDataset
from lens_emotion.errors import LensEmotionError
from lens_emotion.io import write_text_atomic
from lens_emotion.models import EmotionModel
from lens_emotion.prompts import PromptTemplate, get_template
from lens_emotion.viz.style import emotion_color

__all__ = ["DEFAULT_LIMIT", "MAX_SAMPLES", "InspectorError", "build_inspector"]

MAX_SAMPLES = 200
"""Largest number of samples :func:`build_inspector` accepts unless ``max_samples`` is raised."""

DEFAULT_LIMIT = 50
"""Samples on the page unless ``limit`` says otherwise (also the ``inspect --limit`` default)."""


class InspectorError(LensEmotionError, ValueError):
    """The inspector cannot be built with these options (too many samples, bad layers)."""


def _pack(
    final: Float[np.ndarray, "layer head key"],
    mass: Float[np.ndarray, "layer head group"],
    matrix: Float[np.ndarray, "mlayer head query key"] | None,
) -> str:
    """One sample's arrays as base64 of zlib-deflated bytes.

    In order: final rows as square-root uint8 codes, group masses as little-endian uint16
    fixed point, matrices as square-root uint8 codes. The page inflates them with the
    browser's ``DecompressionStream``.
    """
    parts = [_sqrt_codes(final).tobytes()]
    parts.append(np.round(np.clip(mass, 0, 1) * 65535).astype("<u2").tobytes())
    if matrix is not None:
        parts.append(_sqrt_codes(matrix).tobytes())
    raw = b"".join(parts)
    return base64.b64encode(zlib.compress(raw, 6)).decode("ascii")


def _sqrt_codes(weights: np.ndarray) -> np.ndarray:
    """Attention weights as uint8 codes of their square root."""
    return np.round(np.sqrt(np.clip(weights, 0.0, 1.0)) * 255.0).astype(np.uint8)


def _json_block(element_id: str, obj: Any) -> str:
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>\n'


def _default_matrix_layers(layers: Sequence[int]) -> tuple[int, ...]:
    if len(layers) <= 3:
        return tuple(layers)
    picks = {layers[0], layers[len(layers) // 2], layers[-1]}
    return tuple(sorted(picks))


def build_inspector(
    model: EmotionModel,
    dataset: EmotionDataset,
    template: str | PromptTemplate = "emotion-list",
    limit: int | None = DEFAULT_LIMIT,
    layers: Sequence[int] | None = None,
    out_dir: str | Path = "inspector",
    *,
    seed: int = 0,
    matrix_layers: Sequence[int] | None = None,
    top_frac: float = 0.2,
    min_tokens: int = 1,
    batch_size: int = 8,
    max_samples: int = MAX_SAMPLES,
    title: str | None = None,
    command: str | None = None,
    progress: bool = True,
) -> Path:
    """Build the offline attention inspector page ``out_dir/index.html``.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        dataset: An :class:`~lens_emotion.data.EmotionDataset`.
        template: Prompt template name or object.
        limit: Number of samples; if smaller than the dataset, a stratified sample drawn with
            ``seed`` (:meth:`~lens_emotion.data.EmotionDataset.sample`). ``None``: all rows.
        layers: Layers to include (default all).
        out_dir: Output folder (created).
        seed: Seed of the sample draw.
        matrix_layers: Layers whose full query x key matrices are stored (queries from the
            first event-text token to the final token). Default: first, middle and last of
            ``layers``; ``()`` for none. They must be among ``layers``.
        top_frac: Fraction of event-text tokens marked emotion-bearing (occlusion saliency).
        min_tokens: At least this many emotion-bearing tokens per sample.
        batch_size: Prompts per hooked forward pass.
        max_samples: Refuse more samples than this (page size and load time grow with it).
        title: Page title (default names the model and template).
        command: Command line to record in the page's manifest.
        progress: Show progress bars.

    Returns:
        The path of ``index.html``.

    Raises:
        InspectorError: ``limit`` larger than ``max_samples`` or smaller than 1, empty dataset,
            or ``matrix_layers`` not among ``layers``.
        AttentionError: Bad layers or tokenizer (see :mod:`lens_emotion.attention`).
    """
    from lens_emotion.manifest import run_manifest

    started = time.perf_counter()
    if len(dataset) == 0:
        raise InspectorError("The dataset is empty; pass a dataset with at least one text.")
    n = len(dataset) if limit is None else int(limit)
    if n < 1:
        raise InspectorError(f"limit must be at least 1, got {limit}.")
    n = min(n, len(dataset))
    if n > max_samples:
        raise InspectorError(
            f"{n} samples requested but the inspector holds at most {max_samples}: each sample "
            "embeds its attention rows for every layer and head (about 100-200 kB on a "
            "30-layer model), so the page would grow to tens of MB and open slowly. Pass a "
            f"smaller limit (--limit {max_samples} or less), or, from Python, raise "
            "max_samples= if you accept a larger page."
        )
    data = dataset.sample(n, seed=seed) if n < len(dataset) else dataset
    tmpl = get_template(template)
    layer_t = check_layers(model, layers)
    matrix_t = _default_matrix_layers(layer_t) if matrix_layers is None else tuple(matrix_layers)
    missing = [layer for layer in matrix_t if layer not in layer_t]
    if missing:
        raise InspectorError(
            f"matrix_layers {missing} are not among the inspected layers {list(layer_t)}; pick "
            "matrix layers from layers= (or pass matrix_layers=() for none)."
        )
    prompt_set, groups, saliency = prompts_with_saliency(
        model, data, tmpl, top_frac=top_frac, min_tokens=min_tokens, progress=progress
    )
    ids = tuple(data.ids)
    token_lists = [list(t) for t in prompt_set.token_ids]
    starts = [g.context_start for g in groups]
    prefix = shared_prefix_length(token_lists, starts)
    heads = tuple(range(model.n_heads))
    label_names = tuple(prompt_set.label_tokens.labels)
    probs = saliency.probabilities
    blocks: list[str] = [""] * len(ids)
    for index, final, full in iter_patterns(
        model,
        token_lists,
        layer_t,
        heads,
        matrix_t,
        starts,
        batch_size,
        prefix,
        progress,
        "inspector",
    ):
        grp = groups[index]
        emotion = saliency.emotion_positions(index)
        mass = group_masses(final, grp.groups, emotion)
        gold = label_names[prompt_set.targets[index]]
        sample = {
            "id": ids[index],
            "text": data.texts[index].strip(),
            "label": gold,
            "prediction": saliency.predictions[index],
            "probs": [round(float(p), 5) for p in probs[index]],
            "tokens": list(grp.tokens),
            "groups": grp.groups.astype(int).tolist(),
            "emotion": emotion.astype(int).tolist(),
            "salPos": saliency.positions[index].astype(int).tolist(),
            "sal": [round(float(v), 4) for v in saliency.values[index]],
            "matrixFrom": int(starts[index]),
            "blob": _pack(final, mass, full),
        }
        blocks[index] = _json_block(f"sample-{index}", sample)
    manifest = run_manifest(
        seed=seed,
        model=model,
        dataset=data,
        template=tmpl,
        command=command,
        extra={
            "inspector": {
                "layers": list(layer_t),
                "matrix_layers": list(matrix_t),
                "emotion_tokens": saliency.describe(),
                "seconds": round(time.perf_counter() - started, 1),
            }
        },
    )
    model_id = str(getattr(model, "model_id", "model"))
    meta = {
        "title": title or f"Attention inspector: {model_id}, '{tmpl.name}' prompt",
        "model": model_id,
        "template": tmpl.name,
        "layers": list(layer_t),
        "heads": list(heads),
        "nKvHeads": int(model.n_kv_heads),
        "matrixLayers": list(matrix_t),
        "labels": list(label_names),
        "labelColors": [emotion_color(lab) for lab in label_names],
        "groups": list(MASS_GROUPS),
        "groupLabels": [GROUP_LABELS[g] for g in MASS_GROUPS],
        "groupColors": [GROUP_COLORS[g] for g in MASS_GROUPS],
        "emotionDefinition": saliency.describe()["emotion_bearing"],
        "samples": [
            {
                "id": ids[i],
                "label": label_names[prompt_set.targets[i]],
                "prediction": saliency.predictions[i],
                "preview": data.texts[i].strip()[:70],
            }
            for i in range(len(ids))
        ],
        "manifest": manifest,
        "version": __version__,
    }
    page = _render_page(meta, blocks)
    return write_text_atomic(Path(out_dir) / "index.html", page)


def _render_page(meta: dict[str, Any], blocks: Sequence[str]) -> str:
    title = html.escape(meta["title"])
    legend = (
        '<span class="tok g0">first token (sink)</span>, <span class="tok g3">final token'
        '</span>, <span class="tok g2">event text</span>, <span class="tok emo">'
        "emotion-bearing token</span>, no mark: template"
    )
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">\n"
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>\n{_asset('inspector.css')}</style>\n</head>\n<body>\n"
        f"<header><h1>{title}</h1>"
        '<p class="sub" id="subtitle"></p></header>\n'
        '<nav id="controls">'
        '<label>Sample <select id="sample"></select></label>'
        '<button id="prev-sample" title="previous sample (k)">&#9664;</button>'
        '<button id="next-sample" title="next sample (j)">&#9654;</button>'
        '<label>Layer <select id="layer"></select></label>'
        '<label>Head <select id="head"></select></label>'
        '<label><input type="checkbox" id="nosink" checked> colour scales ignore the sink'
        "</label>"
        '<span class="hint">keys: &larr;/&rarr; layer, &uarr;/&darr; head, j/k sample</span>'
        "</nav>\n"
        '<main>\n<section class="panel" id="panel-sample"><h2>Sample and prediction</h2>'
        '<div id="sample-info"></div><div id="text" class="text"></div>'
        '<svg id="probs" role="img" aria-label="label probabilities"></svg></section>\n'
        '<section class="panel" id="panel-saliency"><h2>Occlusion saliency of the event text'
        '</h2><p class="note" id="saliency-note"></p><div id="saliency" class="tokens"></div>'
        "</section>\n"
        '<section class="panel wide" id="panel-attention"><h2 id="attn-title">Attention</h2>'
        f'<p class="note">Background: weight of the final token\'s query on each key token '
        f"(darker = more). Marks: {legend}.</p>"
        '<div id="attn-tokens" class="tokens"></div>'
        '<svg id="attn-mass" role="img" aria-label="attention mass per group"></svg>'
        "</section>\n"
        '<section class="panel" id="panel-grid"><h2>Layer &times; head map</h2>'
        '<label>Mass on <select id="grid-group"></select></label> '
        '<label><select id="grid-norm"><option value="total">total</option>'
        '<option value="per_token">per token</option></select></label>'
        '<p class="note">Final-token attention of this sample. Click a cell to select '
        "the layer and head.</p>"
        '<svg id="grid" role="img" aria-label="layer by head map"></svg></section>\n'
        '<section class="panel" id="panel-profile"><h2>Across layers</h2>'
        '<p class="note" id="profile-note"></p>'
        '<svg id="profile" role="img" aria-label="mass across layers"></svg></section>\n'
        '<section class="panel wide" id="panel-matrix"><h2 id="matrix-title">Query &times; key'
        ' matrix</h2><p class="note" id="matrix-note"></p>'
        '<canvas id="matrix" width="10" height="10"></canvas>'
        '<div id="matrix-hover" class="note">&nbsp;</div></section>\n'
        '<section class="panel wide"><h2>How to read this page</h2><ul class="note">'
        "<li><b>Groups.</b> sink = the first token; final = the last token (its query reads "
        "the answer); event text = tokens overlapping the event description; template = the "
        "rest (instruction, examples, label list, answer cue).</li>"
        '<li><b>Emotion-bearing tokens</b> (<span id="emo-def"></span>) are ranked by '
        "occlusion saliency: the drop in log-probability of the predicted label when the "
        "token is hidden from attention in every layer (positions kept). Red = the token "
        "supports the prediction, blue = it argues against it.</li>"
        "<li><b>Heads.</b> One pattern per query head; under grouped-query attention "
        "several query heads share one key/value head.</li>"
        "<li><b>Precision.</b> Weights are stored as 8-bit codes of their square root (error "
        "&lt; 1e-4 for weights under 0.01); group masses are exact to 2e-5.</li>"
        '</ul><details><summary>Run manifest</summary><pre id="manifest"></pre></details>'
        "</section>\n</main>\n"
        f"{_json_block('meta', meta)}"
        f"{''.join(blocks)}"
        f"<script>\n\n{_asset('inspector.js')}\n</script>\n</body>\n</html>\n"
    )


def _asset(name: str) -> str:
    """The text of a package data file under ``lens_emotion/viz/assets/``."""
    return resources.files("lens_emotion.viz").joinpath("assets", name).read_text(encoding="utf-8")
