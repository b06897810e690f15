"""``lens-emotion circuits``: emotion circuits on SEV (Wang et al. 2025).

Every field of :class:`~lens_emotion.circuits.workflow.CircuitSettings` is an option with the
dataclass's default (``--n-scenarios``, ``--gamma-grid`` ...), so a default is written once.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from lens_emotion.cli.common import (
    add_model_args,
    add_progress_args,
    add_settings_args,
    formats_arg,
    load_model_from_args,
    run_workflow,
    settings_from_args,
)
from lens_emotion.errors import LensEmotionError

HELP = (
    "emotion circuits on SEV (Wang et al. 2025): directions, heads, neurons, ablation, "
    "influence, circuits, modulation vs prompting vs steering"
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``circuits``."""
    from lens_emotion.circuits.modulation import SELECTION_METRICS
    from lens_emotion.circuits.workflow import CircuitSettings

    p = sub.add_parser("circuits", help=HELP, description=HELP)
    add_model_args(p)
    p.add_argument(
        "--sev-path",
        type=Path,
        default=None,
        help="SEV file (default: sev/sev.jsonl under $LENS_EMOTION_DATA, else "
        "~/.cache/lens-emotion/data; `lens-emotion data add sev FILE` puts it there)",
    )
    p.add_argument(
        "--eval-sev-path",
        type=Path,
        default=None,
        help="a second SEV-format file: discover on --sev-path, evaluate on this one "
        "(default: held-out scenarios of --sev-path)",
    )
    p.add_argument(
        "--seed", type=int, default=CircuitSettings.seed, help="seed of split, controls, bootstrap"
    )
    p.add_argument("--out", required=True, help="output folder")
    add_settings_args(
        p,
        CircuitSettings,
        choices={
            "positions": ("last", "all"),
            "interventions": ("zero", "mean", "scale"),
            "gen_ablation_intervention": ("zero", "mean", "scale"),
            "selection_metric": SELECTION_METRICS,
        },
        skip=("seed", "formats"),
        zero_ok=("total_effect_heads", "total_effect_neurons"),
    )
    p.add_argument(
        "--no-generation", dest="generate", action="store_false", help="same as --no-generate"
    )
    formats_arg(p, default=",".join(CircuitSettings.formats))
    add_progress_args(p)
    p.add_argument("--progress", action="store_true", help=argparse.SUPPRESS)  # now the default
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``circuits``; prints the decomposition check, directions and the control."""
    from lens_emotion.circuits.errors import CircuitError
    from lens_emotion.circuits.workflow import CircuitSettings, run_circuits
    from lens_emotion.data import load_sev

    if not 0.0 < args.eval_fraction < 1.0:
        raise LensEmotionError(
            f"--eval-fraction must be between 0 and 1 (e.g. 0.25), got {args.eval_fraction}."
        )
    settings = settings_from_args(args, CircuitSettings, formats=tuple(args.formats))
    sev = load_sev(args.sev_path)
    extra: dict[str, Any] = {}
    if args.eval_sev_path is not None:
        extra["eval_sev"] = load_sev(args.eval_sev_path)
    model = load_model_from_args(args)
    try:
        settings = settings.for_model(model.n_layers)  # "auto" layers, and range checks
    except CircuitError as exc:
        raise LensEmotionError(
            str(exc)
            .replace("check_layers", "--check-layers")
            .replace("steering window", "--steer-windows")
        ) from exc
    outputs = run_workflow(run_circuits, model, sev, args, settings, **extra)
    check = outputs.head_check
    print(
        f"head decomposition vs ablation (a consistency check): max |diff| "
        f"{check['max_abs_difference']:.2e} over {check['n_heads']} heads x "
        f"{check['n_prompts']} prompts"
    )
    consistency = outputs.consistency
    best = consistency.loc[consistency.heldout_accuracy.idxmax()]
    print(
        f"directions: held-out projection accuracy {best.heldout_accuracy:.3f} at "
        f"{best.site} layer {int(best.layer)} (chance {best.chance:.3f})"
    )
    if (
        "heldout_accuracy_described" in consistency
        and consistency.heldout_accuracy_described.notna().any()
    ):
        described = consistency.loc[consistency.heldout_accuracy_described.idxmax()]
        print(
            f"            prompts that describe the emotion without naming it: "
            f"{described.heldout_accuracy_described:.3f} at layer {int(described.layer)}"
        )
    if outputs.control is not None:
        meaning = outputs.chosen.get("circuit_gamma_meaning")
        if meaning:
            print(f"tuned on discovery scenarios: {meaning}")
        pooled = outputs.control[outputs.control.emotion == "all"]
        print("judged_masked is primary (emotion words masked); raw, word share, 2nd judge:")
        for row in pooled.to_dict("records"):
            print(
                f"  {row['method']:<10} judged_masked {row['judged_masked']:.3f} "
                f"[{row['ci_low']:.3f}, {row['ci_high']:.3f}]  raw {row['judged_raw']:.3f}  "
                f"names emotion {row['names_emotion']:.2f}  readout {row['readout']:.3f}  "
                f"kappa {row['kappa']:.2f} ({row['judges_note']})  n={row['n']}"
            )
    print(f"wrote {len(outputs.files)} files to {args.out}")
    return 0
