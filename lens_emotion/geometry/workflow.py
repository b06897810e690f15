"""The end-to-end emotion-geometry run behind ``lens-emotion geometry`` and notebook 08.

Steps (every one seeded):

1. a stratified subset of crowd-enVENT (``n_rows``) and its prompts (``template``);
2. last-token activations from the activation store
   (:func:`lens_emotion.activations.extract_activations`): an existing store for the same
   request is reused without any forward pass (``store_dir``, or the cache by request
   hash; the default sites request the same store as ``lens-emotion probe``);
3. rows: all, or the agreeing subset (the model's calibrated prediction equals the human
   label); the keyword-free subset: rows whose ``hidden_emo_text`` contains none of the
   emotion word forms (:func:`lens_emotion.lexicon.names_any_emotion`);
4. emotion vectors per site and layer (:mod:`.vectors`: class mean minus grand mean, and the
   probe's weights in raw space);
5. PCA and its correlation with human valence and arousal, with bootstrap CIs over texts
   (:mod:`.pca`), repeated on the keyword-free rows;
6. RSA against the human appraisal profiles with a label-permutation p-value (:mod:`.rsa`);
7. with SEV: the context-agnostic directions of the circuits analysis
   (:func:`lens_emotion.circuits.compute_directions` on the discovery scenarios that
   ``lens-emotion circuits`` would use with the same seed) and the cross-paper comparison
   (:mod:`.crosspaper`);
8. ``geometry.csv`` (site, layer, measure, value, ci_low, ci_high), the per-analysis tables,
   the figures, ``geometry_summary.json`` and ``manifest.json``.

Measures in ``geometry.csv`` are named ``{kind}.{measure}`` (``mean.pc1_valence_r``,
``probe.rsa_rho``, ``mean.diag_cos`` ...), keyword-free ones ``{kind}.keyword_free.{measure}``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lens_emotion.geometry.crosspaper import CrossPaperResult, cross_paper
from lens_emotion.geometry.errors import GeometryError
from lens_emotion.geometry.pca import GEOMETRY_COLUMNS, PCAResult, valence_geometry
from lens_emotion.geometry.ratings import human_ratings
from lens_emotion.geometry.rsa import RSAResult, representational_similarity
from lens_emotion.geometry.vectors import (
    VECTOR_KINDS,
    EmotionVectorsResult,
    emotion_vectors,
    probe_vectors,
)
from lens_emotion.io import write_json_atomic, write_text_atomic
from lens_emotion.manifest import StepTimer, override_seed_formats, run_manifest, start_run

if TYPE_CHECKING:
    from lens_emotion.data import EmotionDataset
    from lens_emotion.models import EmotionModel

__all__ = ["ROW_CHOICES", "SITE_CHOICES", "GeometryOutputs", "GeometrySettings", "run_geometry"]

#: Which rows the vectors come from.
ROW_CHOICES: tuple[str, ...] = ("all", "agreeing")
#: Sites the analysis can use (the cross-paper part needs resid_mid or resid_post).
SITE_CHOICES: tuple[str, ...] = ("resid_pre", "attn_out", "mlp_out", "resid_mid", "resid_post")
#: The sites ``lens-emotion probe`` extracts: asking for a subset requests the same store.
_PROBE_SITES: tuple[str, ...] = ("attn_out", "mlp_out", "resid_post")


@dataclass(frozen=True)
class GeometrySettings:
    """Sizes and choices of a geometry run (all recorded in the manifest).

    Attributes:
        n_rows: Stratified crowd-enVENT rows (a number at or above the data size keeps all).
        template: Prompt template whose last token is read.
        sites: Sites analysed
        layers: Layers analysed (empty or all: every layer).
        rows: Rows the vectors come from (agreeing: the model's prediction = human label)
        calibrate: Calibration of the agreeing filter
        vectors: Vector kinds: mean (class mean - grand mean), probe (probe weights)
        probe_c: Inverse L2 strength of the probe vectors.
        keyword_control: Repeat the valence analysis on rows naming no emotion word.
        n_sev_scenarios: SEV discovery scenarios for the context-agnostic directions.
        n_boot: Bootstrap resamples over texts of every interval.
        n_perm: Label permutations of the RSA p-value.
        n_random: Random direction sets of the cross-paper baseline.
        figure_layer: Layer of the PC1 x PC2 and cross-paper figures (a number, or peak).
        batch_size: Prompts per forward pass.
        store_dir: Activation store folder to use or reuse (empty: the cache, by request).
        seed: Seed of the subset, bootstrap, permutations and SEV scenario split.
        formats: Figure formats.

    Raises:
        GeometryError: An unknown choice or an out-of-range size.
    """

    n_rows: int = 1300
    template: str = "emotion-list"
    sites: tuple[str, ...] = ("resid_post",)
    layers: tuple[int, ...] = ()
    rows: str = "all"
    calibrate: str = "auto"
    vectors: tuple[str, ...] = ("mean", "probe")
    probe_c: float = 1.0
    keyword_control: bool = True
    n_sev_scenarios: int = 20
    n_boot: int = 1000
    n_perm: int = 999
    n_random: int = 1000
    figure_layer: str = "peak"
    batch_size: int = 16
    store_dir: str = ""
    seed: int = 0
    formats: tuple[str, ...] = ("html",)

    def __post_init__(self) -> None:
        if self.rows not in ROW_CHOICES:
            raise GeometryError(f"rows must be one of {ROW_CHOICES}, got {self.rows!r}.")
        bad = [v for v in self.vectors if v not in VECTOR_KINDS]
        if bad or not self.vectors:
            raise GeometryError(
                f"vectors must be a non-empty subset of {VECTOR_KINDS}, got {self.vectors}."
            )
        bad = [s for s in self.sites if s not in SITE_CHOICES]
        if bad or not self.sites:
            raise GeometryError(f"sites must come from {SITE_CHOICES}, got {self.sites}.")
        if self.figure_layer != "peak" and not str(self.figure_layer).isdigit():
            raise GeometryError(
                f"figure_layer must be a layer number or 'peak', got {self.figure_layer!r}."
            )
        for name in ("n_rows", "n_sev_scenarios", "batch_size"):
            if getattr(self, name) < 1:
                raise GeometryError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("n_boot", "n_perm", "n_random"):
            if getattr(self, name) < 0:
                raise GeometryError(f"{name} must be >= 0, got {getattr(self, name)}.")

    def describe(self) -> dict[str, Any]:
        """JSON-ready settings."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


@dataclass(frozen=True, eq=False)
class GeometryOutputs:
    """Everything :func:`run_geometry` computed (also written to files).

    Attributes:
        table: ``geometry.csv``: site, layer, measure, value, ci_low, ci_high.
        vectors: ``{kind: EmotionVectorsResult}``.
        pca: ``{kind: PCAResult}`` on the chosen rows.
        pca_keyword_free: ``{kind: PCAResult}`` on the keyword-free rows (``"mean"`` only).
        rsa: ``{kind: RSAResult}``.
        crosspaper: ``{kind: CrossPaperResult}`` (empty without SEV).
        figures: Plotly figures by name.
        files: Written files, relative to the output folder.
        timings: Seconds per step.
        notes: What was skipped and why.
        store_root: The activation store used.
    """

    table: pd.DataFrame
    vectors: Mapping[str, EmotionVectorsResult]
    pca: Mapping[str, PCAResult]
    pca_keyword_free: Mapping[str, PCAResult]
    rsa: Mapping[str, RSAResult]
    crosspaper: Mapping[str, CrossPaperResult]
    figures: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    store_root: str = ""

    def summary(self) -> dict[str, Any]:
        """Headline numbers for printouts, the demo and a cross-model sweep.

        ``peak_valence_r`` / ``peak_valence_layer`` / ``peak_valence_relative_depth`` (PC1~valence
        of the mean vectors on the chosen rows), the keyword-free peak, ``peak_rsa_rho`` (and
        its p and layer), and the cross-paper peak with its baselines; per kind under
        ``by_kind``.
        """
        out: dict[str, Any] = {"by_kind": {}}
        for kind, result in self.pca.items():
            entry: dict[str, Any] = {"pca": result.summary()}
            if kind in self.pca_keyword_free:
                entry["pca_keyword_free"] = self.pca_keyword_free[kind].summary()
            if kind in self.rsa:
                entry["rsa"] = self.rsa[kind].summary()
            if kind in self.crosspaper:
                entry["crosspaper"] = self.crosspaper[kind].summary()
            out["by_kind"][kind] = entry
        head = "mean" if "mean" in self.pca else next(iter(self.pca))
        peak = self.pca[head].peak("pc1_valence_r")
        out.update(
            kind=head,
            peak_valence_r=peak["value"],
            peak_valence_ci=[peak.get("ci_low"), peak.get("ci_high")],
            peak_valence_layer=peak["layer"],
            peak_valence_relative_depth=peak["relative_depth"],
            peak_arousal_r=self.pca[head].peak("pc2_arousal_r")["value"],
            peak_text_pleasantness_rho=self.pca[head].peak("text_pc1_pleasantness_rho")["value"],
        )
        if head in self.pca_keyword_free:
            kw = self.pca_keyword_free[head].peak("pc1_valence_r")
            out.update(
                peak_valence_r_keyword_free=kw["value"],
                peak_valence_layer_keyword_free=kw["layer"],
            )
        if head in self.rsa:
            r = self.rsa[head].summary()
            out.update(
                peak_rsa_rho=r["peak_rsa_rho"],
                peak_rsa_p=r.get("peak_rsa_p"),
                peak_rsa_layer=r.get("peak_rsa_layer"),
                peak_rsa_relative_depth=r.get("peak_rsa_relative_depth"),
            )
        if head in self.crosspaper:
            c = self.crosspaper[head].summary()
            out.update(
                crosspaper_peak_diag_cos=c["peak_diag_cos"],
                crosspaper_peak_layer=c["peak_layer"],
                crosspaper_perm_p_at_peak=c["perm_p_at_peak"],
                crosspaper_layers_beating_permutation=c["layers_beating_permutation"],
                crosspaper_n_layers=c["n_layers"],
            )
        return out


def _prefixed(table: pd.DataFrame, prefix: str) -> pd.DataFrame:
    out = table.copy()
    out["measure"] = prefix + out["measure"]
    return out


def _load_acts(
    store: Any, sites: Sequence[str], layers: Sequence[int], ids: Sequence[str]
) -> dict[str, np.ndarray]:
    """``{site: [layer, n, d]}`` for the dataset's rows, in dataset order."""
    where = {i: k for k, i in enumerate(store.ids)}
    missing = [i for i in ids if i not in where]
    if missing:
        raise GeometryError(
            f"{len(missing)} rows (e.g. {missing[0]!r}) are not in the activation store "
            f"{store.root}; extract it from this dataset or leave store_dir empty."
        )
    rows = np.asarray([where[i] for i in ids])
    return {site: np.stack([store.get(site, layer)[rows] for layer in layers]) for site in sites}


def _keyword_free(dataset: Any) -> np.ndarray:
    from lens_emotion.lexicon import names_any_emotion

    if getattr(dataset, "text_column", "hidden_emo_text") == "hidden_emo_text":
        texts = list(dataset.texts)
    elif "hidden_emo_text" in dataset.metadata:
        texts = [str(t) for t in dataset.metadata["hidden_emo_text"]]
    else:
        texts = list(dataset.texts)
    return np.asarray([not names_any_emotion(t) for t in texts])


def _sev_directions(
    model: Any, sev: Any, sites: Sequence[str], settings: GeometrySettings, seed: int,
    progress: bool,
) -> tuple[Any, Any, Any, dict[str, Any]]:  # fmt: skip
    """SEV context-agnostic directions (and the prompts' activations) via the circuits code."""
    from lens_emotion.circuits import (
        EmotionDirections,
        build_sev_prompts,
        capture_last_token,
        compute_directions,
        split_scenarios,
    )

    if isinstance(sev, EmotionDirections):
        return sev, None, None, {"source": "given directions", "n_groups": sev.n_groups}
    if isinstance(sev, str | Path) and str(sev).endswith(".safetensors"):
        d = EmotionDirections.load(sev)
        return d, None, None, {"source": str(sev), "n_groups": d.n_groups}
    if isinstance(sev, str | Path):
        from lens_emotion.data import load_sev

        sev = load_sev(sev)
    discovery, _ = split_scenarios(sev, 0.25, seed, settings.n_sev_scenarios, None)
    prompts = build_sev_prompts(model, discovery)
    acts = capture_last_token(model, prompts.token_ids, tuple(sites), settings.batch_size, progress)
    directions = compute_directions(acts, prompts.emotion, prompts.group, sites=tuple(sites))
    info = {
        "source": getattr(sev, "source", ""),
        "n_scenarios": len(set(discovery.metadata["skeleton_id"])),
        "n_prompts": len(prompts),
        "n_groups": directions.n_groups,
        "split": "discovery scenarios of split_scenarios(sev, 0.25, seed), as in circuits",
    }
    return directions, acts, prompts.emotion, info


def run_geometry(
    model: EmotionModel,
    data: EmotionDataset,
    out: str | Path,
    settings: GeometrySettings | None = None,
    sev: Any | None = None,
    *,
    progress: bool = True,
    command: str | None = None,
    store: Any | None = None,
    seed: int | None = None,
    formats: Sequence[str] | None = None,
) -> GeometryOutputs:
    """Run the emotion-geometry analysis and write its files to ``out``.

    Args:
        model: An :class:`~lens_emotion.models.EmotionModel`.
        data: A crowd-enVENT-like :class:`~lens_emotion.data.EmotionDataset` (appraisals and
            ``intensity``), subsampled to ``settings.n_rows``.
        out: Output folder.
        settings: Sizes and choices (default :class:`GeometrySettings`).
        sev: SEV items, the path of an SEV file, or ready directions
            (:class:`~lens_emotion.circuits.EmotionDirections` or a ``directions.safetensors``
            written by ``lens-emotion circuits``: no SEV forward pass, no SEV->crowd
            transfer); ``None``: no cross-paper part.
        progress: Progress bars and one line per finished step.
        command: Command line for the manifest.
        store: An :class:`~lens_emotion.activations.ActivationStore` (or its folder) holding
            the dataset's rows; used as is, without forward passes.
        seed: Overrides ``settings.seed`` (kept for older calls).
        formats: Overrides ``settings.formats`` (kept for older calls).

    Returns:
        The :class:`GeometryOutputs`.

    Raises:
        GeometryError: Bad settings, too few rows, or a store without the needed rows.
    """
    from lens_emotion.activations import ActivationStore, extract_activations
    from lens_emotion.geometry import figures as figs
    from lens_emotion.prompts import build_prompts
    from lens_emotion.viz import write_figure

    settings = settings or GeometrySettings()
    settings = override_seed_formats(settings, seed, formats)
    seed, formats = settings.seed, settings.formats
    out = start_run(seed, out)
    timer = StepTimer("geometry", verbose=progress)
    files: list[str] = []
    notes: list[str] = []

    def keep(paths: Sequence[Path]) -> None:
        for p in paths:
            name = str(Path(p).relative_to(out))
            if name not in files:
                files.append(name)

    if settings.n_rows < len(data):
        data = data.sample(settings.n_rows, seed=seed)
    emotions = tuple(data.label_names)
    labels = list(data.labels)
    layers = list(settings.layers or range(model.n_layers))
    if max(layers) >= model.n_layers:
        raise GeometryError(
            f"layer {max(layers)} is past the model's last layer; use 0-{model.n_layers - 1}."
        )
    if settings.figure_layer != "peak" and int(settings.figure_layer) not in layers:
        raise GeometryError(
            f"figure_layer {settings.figure_layer} is not among the analysed layers; pick one "
            "of them or 'peak'."
        )
    n_layers = model.n_layers

    with timer.step("activations"):
        prompts = build_prompts(model, data.texts, data.labels, data.label_names, settings.template)
        if store is not None:
            store = store if isinstance(store, ActivationStore) else ActivationStore.open(store)
        else:
            wanted = set(settings.sites)
            sites = list(_PROBE_SITES) if wanted <= set(_PROBE_SITES) else list(settings.sites)
            store = extract_activations(
                model,
                prompts,
                sites=sites,
                positions=1,
                out_dir=settings.store_dir or None,
                dataset=data,
                batch_size=settings.batch_size,
                seed=seed,
                progress=progress,
            )
        acts = _load_acts(store, settings.sites, layers, data.ids)

    with timer.step("rows"):
        mask = np.ones(len(data), dtype=bool)
        if settings.rows == "agreeing":
            from lens_emotion.inference import infer_emotions, resolve_calibration

            calibrate = resolve_calibration(settings.template, settings.calibrate)
            result = infer_emotions(
                model, data, settings.template, batch_size=settings.batch_size,
                calibrate=calibrate, progress=progress, seed=seed,
            )  # fmt: skip
            mask = np.asarray(result.correct, dtype=bool)
            notes.append(f"agreeing rows: {int(mask.sum())} of {len(mask)} ({calibrate})")
        rows = np.flatnonzero(mask)
        kw_rows = np.flatnonzero(mask & _keyword_free(data))
        ratings_all = human_ratings(data, emotions)
        ratings = ratings_all.subset(rows)

    vectors: dict[str, EmotionVectorsResult] = {}
    with timer.step("vectors"):
        for kind in settings.vectors:
            if kind == "mean":
                vectors[kind] = emotion_vectors(acts, labels, emotions, layers, mask)
            else:
                vectors[kind] = probe_vectors(
                    acts, labels, emotions, layers, mask, C=settings.probe_c
                )
            keep(vectors[kind].save(out))

    pca: dict[str, PCAResult] = {}
    pca_kw: dict[str, PCAResult] = {}
    with timer.step("pca"):
        for kind, vec in vectors.items():
            pca[kind] = valence_geometry(
                vec, ratings, acts, rows, settings.n_boot, seed, settings.rows, n_layers
            )
            keep(pca[kind].save(out))
        if settings.keyword_control and "mean" in vectors:
            kw_mask = np.zeros(len(data), dtype=bool)
            kw_mask[kw_rows] = True
            try:
                kw_vec = emotion_vectors(acts, labels, emotions, layers, kw_mask)
            except GeometryError as exc:
                notes.append(f"keyword control skipped: {exc}")
            else:
                pca_kw["mean"] = valence_geometry(
                    kw_vec, ratings_all.subset(kw_rows), acts, kw_rows, settings.n_boot, seed,
                    "keyword-free", n_layers,
                )  # fmt: skip
                keep(pca_kw["mean"].save(out))
                notes.append(
                    f"keyword-free rows: {len(kw_rows)} of {len(rows)} (no emotion word form "
                    "in hidden_emo_text)"
                )

    rsa: dict[str, RSAResult] = {}
    with timer.step("rsa"):
        profiles = ratings.appraisal_profiles()
        for kind, vec in vectors.items():
            rsa[kind] = representational_similarity(
                vec, profiles, settings.n_perm, seed, n_layers, emotions
            )
            keep(rsa[kind].save(out))

    cross: dict[str, CrossPaperResult] = {}
    sev_info: dict[str, Any] = {}
    if sev is not None:
        from lens_emotion.circuits.directions import DIRECTION_SITES

        sev_sites = [s for s in settings.sites if s in DIRECTION_SITES]
        if not sev_sites:
            notes.append(
                f"cross-paper part skipped: SEV directions exist at {DIRECTION_SITES}, the "
                f"analysed sites are {settings.sites}"
            )
        else:
            with timer.step("sev directions"):
                directions, sev_acts, sev_emotions, sev_info = _sev_directions(
                    model, sev, sev_sites, settings, seed, progress
                )
                directions.save(out / "sev_directions.safetensors")
                files.append("sev_directions.safetensors")
            with timer.step("cross-paper"):
                for kind, vec in vectors.items():
                    cross[kind] = cross_paper(
                        vec, directions, crowd_acts=acts, rows=rows,
                        crowd_labels=[labels[i] for i in rows], sev_acts=sev_acts,
                        sev_emotions=sev_emotions, n_boot=settings.n_boot,
                        n_random=settings.n_random, seed=seed, n_model_layers=n_layers,
                    )  # fmt: skip
                    keep(cross[kind].save(out))

    tables = []
    for kind in vectors:
        tables.append(_prefixed(pca[kind].table, f"{kind}."))
        if kind in pca_kw:
            tables.append(_prefixed(pca_kw[kind].table, f"{kind}.keyword_free."))
        tables.append(_prefixed(rsa[kind].table, f"{kind}."))
        if kind in cross:
            tables.append(_prefixed(cross[kind].table, f"{kind}."))
    table = pd.concat(tables, ignore_index=True)[list(GEOMETRY_COLUMNS)]
    write_text_atomic(out / "geometry.csv", table.to_csv(index=False))
    files.append("geometry.csv")

    outputs = GeometryOutputs(
        table=table, vectors=vectors, pca=pca, pca_keyword_free=pca_kw, rsa=rsa,
        crosspaper=cross, files=files, timings=timer.timings, notes=notes,
        store_root=str(store.root),
    )  # fmt: skip
    with timer.step("figures"):
        head = "mean" if "mean" in pca else next(iter(pca))
        site = settings.sites[0]
        if settings.figure_layer == "peak":
            layer = pca[head].peak("pc1_valence_r", site)["layer"]
        else:
            layer = int(settings.figure_layer)
        figures = outputs.figures
        figures["pc_scatter"] = figs.pc_scatter_figure(pca[head], site, layer)
        figures["valence_arousal"] = figs.correlation_figure(pca[head], site)
        if head in pca_kw:
            figures["valence_arousal_keyword_free"] = figs.correlation_figure(pca_kw[head], site)
        for kind in rsa:
            figures[f"rsa_{kind}"] = figs.rsa_figure(rsa[kind])
        if head in cross:
            c = cross[head]
            cross_site = site if site in c.sites else c.sites[0]
            cross_layer = c.peak_layer(cross_site) if settings.figure_layer == "peak" else layer
            figures["crosspaper"] = figs.crosspaper_figure(c, cross_site, cross_layer)
        for name, fig in figures.items():
            keep(write_figure(fig, out / "figures" / name, formats))
    timer.total()
    summary = outputs.summary()
    keep([write_json_atomic(out / "geometry_summary.json", summary)])
    manifest = run_manifest(
        seed=seed,
        model=model,
        dataset=data,
        command=command,
        extra={
            "analysis": "geometry",
            "settings": settings.describe(),
            "activation_store": {"root": str(store.root),
                                 "request_sha256": store.manifest.get("request_sha256")},
            "n_rows": int(len(rows)),
            "n_keyword_free": int(len(kw_rows)),
            "sev": sev_info,
            "notes": notes,
            "timings_s": timer.timings,
            "summary": summary,
            "files": files,
        },
    )  # fmt: skip
    write_json_atomic(out / "manifest.json", manifest)
    files.append("manifest.json")
    return outputs
