r"""``lens-emotion steer``: appraisal unique-effect steering (Tak et al., step 3).

Example::

lens-emotion steer --model smollm2-135m-instruct --dataset crowd-envent \
        --appraisal pleasantness,other_responsblt --signs +,+ --layer 12 \
        --betas -8,-4,0,4,8 --seed 0 --out steer_out
"""

from __future__ import annotations

import argparse
from typing import Any

from lens_emotion.cli.common import (
    add_data_args,
    add_model_args,
    add_progress_and_out_args,
    check_layers,
    choice_list,
    float_list,
    formats_arg,
    layer_list,
    load_data_from_args,
    load_model_from_args,
    positive_int,
    run_workflow,
    string_list,
)
from lens_emotion.errors import LensEmotionError
from lens_emotion.steering.workflow import SteeringSettings

HELP = "appraisal steering: readout + judged generation vs beta, theory checks"
_DEFAULTS = SteeringSettings()
DEFAULT_BETAS = ",".join(f"{b:g}" for b in _DEFAULTS.betas)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``steer``."""
    p = sub.add_parser("steer", help=HELP, description=HELP)
    add_model_args(p)
    add_data_args(p)
    p.add_argument(
        "--appraisal",
        required=True,
        type=string_list("pleasantness or pleasantness,other_responsblt"),
        help="appraisal(s) to steer together, e.g. pleasantness or pleasantness,other_responsblt",
    )
    p.add_argument(
        "--signs",
        type=choice_list(("+", "-"), "+,-"),
        default=None,
        help="one sign per appraisal, e.g. +,+ (default +)",
    )
    p.add_argument(
        "--layer", required=True, type=layer_list, help="centre layer(s), e.g. 12 or 8,12"
    )
    p.add_argument(
        "--betas",
        type=float_list(DEFAULT_BETAS),
        default=float_list(DEFAULT_BETAS)(DEFAULT_BETAS),
        help=f"steering strengths, e.g. --betas {DEFAULT_BETAS} (default)",
    )
    p.add_argument(
        "--gen-betas",
        type=float_list("-8,0,8"),
        default=None,
        help="strengths for generation, e.g. --gen-betas -8,0,8 (default: --betas)",
    )
    p.add_argument(
        "--scale",
        default=_DEFAULTS.scale,
        choices=["rms", "none"],
        help="rms: beta in units of the residual RMS at each position (default); none: raw",
    )
    p.add_argument(
        "--positions",
        default=_DEFAULTS.gen_positions,
        choices=["all", "last"],
        help="positions steered during generation (default all; the readout steers the last "
        "prompt token)",
    )
    p.add_argument(
        "--span",
        type=positive_int,
        default=_DEFAULTS.span,
        help="layers hooked around each centre",
    )
    p.add_argument(
        "--method",
        type=choice_list(("unique", "raw"), "unique,raw"),
        default=_DEFAULTS.methods,
        help="unique (unique-effect vectors), raw (unprojected probe weights) or unique,raw",
    )
    p.add_argument(
        "--fix",
        type=string_list("pleasantness,control"),
        default=None,
        help="appraisals held fixed by the unique vectors (default: all other appraisals)",
    )
    p.add_argument(
        "--n", type=positive_int, default=_DEFAULTS.n, help=f"steered texts (default {_DEFAULTS.n})"
    )
    p.add_argument(
        "--n-probe",
        type=positive_int,
        default=_DEFAULTS.n_probe,
        help=f"probe rows (default {_DEFAULTS.n_probe})",
    )
    p.add_argument(
        "--max-new-tokens",
        type=positive_int,
        default=_DEFAULTS.max_new_tokens,
        help="tokens per generation",
    )
    p.add_argument(
        "--controls",
        type=positive_int,
        default=_DEFAULTS.n_controls,
        help=f"random directions per theory cell (default {_DEFAULTS.n_controls}; at least 2)",
    )
    p.add_argument(
        "--theory-cell",
        type=float_list("15,8"),
        default=None,
        help="test each prediction at this one (layer, beta) cell, fixed before the run, e.g. "
        "--theory-cell 15,8 (default: every cell, Holm-corrected)",
    )
    p.add_argument(
        "--gen-controls",
        type=positive_int,
        default=None,
        help="random directions per generation cell (default: --controls)",
    )
    p.add_argument(
        "--promote-controls",
        type=positive_int,
        default=None,
        help="random directions of the promotion check (default: --controls)",
    )
    p.add_argument(
        "--no-second-judge",
        action="store_true",
        help="skip the second judge (the unsteered model's readout of the masked reply)",
    )
    p.add_argument(
        "--no-generate", action="store_true", help="readout only (no generation, no judge)"
    )
    p.add_argument(
        "--theory-generation",
        action="store_true",
        help="also generate for the theory-check combos (slow on a CPU)",
    )
    p.add_argument("--no-theory", action="store_true", help="skip the appraisal-theory checks")
    p.add_argument(
        "--promote",
        type=string_list("joy or joy,pride"),
        default=(),
        help="emotions to promote with emotion-probe weights, e.g. joy",
    )
    p.add_argument("--template", default=_DEFAULTS.template, help="inference prompt template")
    p.add_argument("--store", default=None, help="activation store folder (default: cache)")
    p.add_argument("--batch-size", type=positive_int, default=_DEFAULTS.batch_size)
    formats_arg(p, ",".join(_DEFAULTS.formats))
    add_progress_and_out_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``steer``; prints the judge's accuracy and the theory verdicts."""
    from lens_emotion.data import CROWD_ENVENT_EMOTIONS
    from lens_emotion.prompts import get_template
    from lens_emotion.steering.vectors import AppraisalCombo
    from lens_emotion.steering.workflow import check_appraisal_names, run_steering

    get_template(args.template)
    if args.signs is not None and len(args.signs) != len(args.appraisal):
        raise LensEmotionError(
            f"--signs needs one sign per appraisal ({len(args.appraisal)}), got "
            f"{','.join(args.signs)}; e.g. --appraisal {','.join(args.appraisal)} "
            f"--signs {','.join('+' * len(args.appraisal))}."
        )
    unknown = [e for e in args.promote if e not in CROWD_ENVENT_EMOTIONS]
    if unknown:
        raise LensEmotionError(
            f"--promote: unknown emotion(s) {', '.join(unknown)}; choose from "
            f"{', '.join(CROWD_ENVENT_EMOTIONS)}."
        )
    combo = AppraisalCombo.parse(args.appraisal, args.signs)
    if args.controls < 2 and not args.no_theory:
        raise LensEmotionError("--controls must be at least 2 for the theory checks, e.g. 10.")
    theory_cell = None
    if args.theory_cell is not None:
        if len(args.theory_cell) != 2 or args.theory_cell[0] != int(args.theory_cell[0]):
            raise LensEmotionError(
                f"--theory-cell takes LAYER,BETA such as 15,8, got {args.theory_cell}."
            )
        theory_cell = (int(args.theory_cell[0]), float(args.theory_cell[1]))
        if theory_cell[0] not in args.layer or theory_cell[1] not in args.betas:
            raise LensEmotionError(
                f"--theory-cell {theory_cell[0]},{theory_cell[1]:g} is not among the --layer and "
                "--betas of the run; fix the cell to one you steer."
            )
    dataset = load_data_from_args(args)
    if dataset.appraisals is None:
        raise LensEmotionError(
            f"dataset {dataset.name!r} has no appraisal ratings; use --dataset crowd-envent."
        )
    fixed = list(args.fix) if args.fix else None
    check_appraisal_names(dataset, [combo], fixed)
    model = load_model_from_args(args)
    check_layers(args.layer, model.n_layers, "--layer")
    settings = SteeringSettings(
        combos=(combo.name,),
        layers=tuple(args.layer),
        betas=tuple(args.betas),
        gen_betas=tuple(args.gen_betas) if args.gen_betas else None,
        n=args.n,
        n_probe=args.n_probe,
        span=args.span,
        scale=args.scale,
        gen_positions=args.positions,
        methods=tuple(args.method),
        fixed=tuple(fixed) if fixed else None,
        n_controls=args.controls,
        theory_cell=theory_cell,
        gen_controls=args.gen_controls,
        promote_controls=args.promote_controls,
        second_judge=not args.no_second_judge,
        theory=not args.no_theory,
        theory_generation=args.theory_generation,
        generate=not args.no_generate,
        judge_data_path=args.data_path if args.dataset == "crowd-envent" else None,
        max_new_tokens=args.max_new_tokens,
        promote=tuple(args.promote),
        template=args.template,
        store_dir=args.store,
        batch_size=args.batch_size,
        formats=tuple(args.formats),
        seed=args.seed,
    )
    outputs = run_workflow(run_steering, model, dataset, args, settings, store=args.store)
    if outputs.judge is not None:
        validation = outputs.judge["validation"]
        acc = validation.get("accuracy_masked", validation.get("accuracy"))
        print(f"judge held-out accuracy {acc:.3f} on real crowd-enVENT rows")
    if not outputs.theory_summary.empty:
        for row in outputs.theory_summary.itertuples():
            print(
                f"[{row.outcome}/{row.method}] {row.description}: {row.verdict} "
                f"({row.rule}; {row.cells_passed}/{row.cells} cells pass uncorrected, "
                f"smallest Holm-adjusted p {row.min_p_holm:.3g})"
            )
    print(f"wrote {len(outputs.files)} files to {args.out}")
    return 0
