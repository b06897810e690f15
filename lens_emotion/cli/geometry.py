"""``lens-emotion geometry``: is the model's emotion space organised like human affect?

Every field of :class:`~lens_emotion.geometry.workflow.GeometrySettings` is an option with
the dataclass's default (``--n-rows``, ``--n-boot`` ...), so a default is written once.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lens_emotion.cli.common import (
    CALIBRATIONS,
    add_model_args,
    add_progress_args,
    add_settings_args,
    check_layers,
    formats_arg,
    load_model_from_args,
    run_workflow,
    settings_from_args,
)
from lens_emotion.errors import LensEmotionError

HELP = (
    "emotion geometry: PCA of the emotion vectors vs human valence/arousal, RSA vs appraisal "
    "profiles, crowd-enVENT vectors vs SEV directions"
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``geometry``."""
    from lens_emotion.geometry.vectors import VECTOR_KINDS
    from lens_emotion.geometry.workflow import ROW_CHOICES, SITE_CHOICES, GeometrySettings

    p = sub.add_parser("geometry", help=HELP, description=HELP)
    add_model_args(p)
    p.add_argument(
        "--data-path",
        type=Path,
        default=None,
        help="crowd-enVENT file (default: crowd-envent/ under $LENS_EMOTION_DATA, else "
        "~/.cache/lens-emotion/data; `lens-emotion data add crowd-envent FILE` puts it there)",
    )
    p.add_argument(
        "--sev-path",
        type=Path,
        default=None,
        help="SEV file, or the directions.safetensors of a `lens-emotion circuits` run, for "
        "the cross-paper part (default: sev/sev.jsonl under the data root when present)",
    )
    p.add_argument("--no-sev", action="store_true", help="skip the cross-paper part")
    p.add_argument(
        "--seed",
        type=int,
        default=GeometrySettings.seed,
        help="seed of subset, bootstrap, permutations",
    )
    p.add_argument("--out", required=True, help="output folder")
    add_settings_args(
        p,
        GeometrySettings,
        choices={
            "rows": ROW_CHOICES,
            "sites": SITE_CHOICES,
            "vectors": VECTOR_KINDS,
            "calibrate": CALIBRATIONS,
        },
        skip=("seed", "formats"),
    )
    formats_arg(p, default=",".join(GeometrySettings.formats))
    add_progress_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``geometry``; prints the valence peak, the RSA peak and the cross-paper test."""
    from lens_emotion.data import default_sev_path, load_crowd_envent, load_sev
    from lens_emotion.geometry.workflow import GeometrySettings, run_geometry

    settings = settings_from_args(args, GeometrySettings, formats=tuple(args.formats))
    data = load_crowd_envent(args.data_path)
    sev: Any = None
    if not args.no_sev:
        path = args.sev_path
        if path is None and default_sev_path().is_file():
            path = default_sev_path()
        if path is None:
            print("no SEV file (pass --sev-path); the cross-paper part is skipped")
        elif str(path).endswith(".safetensors"):
            if not Path(path).is_file():
                raise LensEmotionError(f"--sev-path {path} does not exist.")
            sev = Path(path)
        else:
            sev = load_sev(path)
    model = load_model_from_args(args)
    check_layers(settings.layers, model.n_layers, "--layers")
    if settings.figure_layer != "peak" and int(settings.figure_layer) >= model.n_layers:
        raise LensEmotionError(
            f"--figure-layer {settings.figure_layer} is past the model's last layer; use "
            f"0-{model.n_layers - 1} or peak."
        )
    outputs = run_workflow(run_geometry, model, data, args, settings, sev)
    s = outputs.summary()
    low, high = s["peak_valence_ci"]
    print(
        f"PC1 ~ human valence ({s['kind']} vectors): peak r {s['peak_valence_r']:.3f} "
        f"[{low:.3f}, {high:.3f}] at layer {s['peak_valence_layer']} (relative depth "
        f"{s['peak_valence_relative_depth']:.2f}); PC2 ~ arousal peak r {s['peak_arousal_r']:.3f}"
    )
    if "peak_valence_r_keyword_free" in s:
        print(
            f"keyword-free rows: peak r {s['peak_valence_r_keyword_free']:.3f} at layer "
            f"{s['peak_valence_layer_keyword_free']}"
        )
    if "peak_rsa_rho" in s:
        print(
            f"RSA vs appraisal profiles: peak rho {s['peak_rsa_rho']:.3f} (p {s['peak_rsa_p']:.3f})"
            f" at layer {s['peak_rsa_layer']}"
        )
    if "crosspaper_peak_diag_cos" in s:
        print(
            f"crowd-enVENT vs SEV: matched cosine {s['crosspaper_peak_diag_cos']:.3f} at layer "
            f"{s['crosspaper_peak_layer']} (permutation p {s['crosspaper_perm_p_at_peak']:.4f}); "
            f"{s['crosspaper_layers_beating_permutation']} of {s['crosspaper_n_layers']} layers "
            "beat the permutation baseline at p < 0.05"
        )
    for note in outputs.notes:
        print(f"note: {note}")
    print(f"wrote {len(outputs.files)} files to {args.out}")
    return 0
