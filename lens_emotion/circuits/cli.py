"""The ``lens-emotion circuits`` sub-command (parser and handler)."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from lens_emotion.circuits.errors import CircuitError

__all__ = ["add_circuits_parser", "run_circuits_command"]


def _floats(text: str) -> tuple[float, ...]:
    try:
        values = tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from exc
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def add_circuits_parser(
    sub: argparse._SubParsersAction,
    add_model_args: Callable[[argparse.ArgumentParser], None],
) -> argparse.ArgumentParser:
    """Add ``circuits`` to the sub-command parsers and return its parser."""
    from lens_emotion.circuits.workflow import CircuitSettings

    d = CircuitSettings()
    p = sub.add_parser(
        "circuits",
        help="emotion circuits on SEV (Wang et al. 2025): directions, heads, neurons, "
        "ablation, influence, circuits, modulation vs prompting vs steering",
    )
    add_model_args(p)
    p.add_argument(
        "--sev-path", type=Path, default=None, help="sev.jsonl (default: ../shared/data/sev)"
    )
    p.add_argument("--seed", type=int, default=0, help="seed of split, controls, bootstrap")
    p.add_argument("--out", required=True, help="output folder")
    size = p.add_argument_group("sizes")
    size.add_argument(
        "--n-scenarios",
        type=int,
        default=d.n_scenarios,
        help=f"discovery scenarios (default {d.n_scenarios})",
    )
    size.add_argument(
        "--n-eval-scenarios",
        type=int,
        default=d.n_eval_scenarios,
        help=f"held-out scenarios (default {d.n_eval_scenarios})",
    )
    size.add_argument(
        "--eval-fraction",
        type=float,
        default=d.eval_fraction,
        help=f"share of scenarios held out (default {d.eval_fraction})",
    )
    size.add_argument(
        "--n-ablation-prompts",
        type=int,
        default=d.n_ablation_prompts,
        help="held-out prompts per emotion for ablation and influence",
    )
    size.add_argument("--max-k-heads", type=int, default=d.max_k_heads)
    size.add_argument("--max-k-neurons", type=int, default=d.max_k_neurons)
    size.add_argument("--n-random", type=int, default=d.n_random, help="random-k draws")
    size.add_argument(
        "--scale-factor",
        type=float,
        default=d.scale_factor,
        help="factor of the 'scale' intervention (about the mean)",
    )
    size.add_argument(
        "--check-prompts",
        type=int,
        default=d.check_prompts,
        help="prompts of the decomposition-vs-ablation check",
    )
    size.add_argument(
        "--check-layers",
        default=",".join(str(x) for x in d.check_layers or ()),
        help="layers of that check, e.g. 0,14,29 ('all': every layer)",
    )
    size.add_argument(
        "--interventions",
        default=",".join(d.interventions),
        help="ablation interventions: any of zero,mean,scale",
    )
    size.add_argument(
        "--alpha", type=float, default=d.alpha, help="influence injection (RMS units)"
    )
    size.add_argument("--circuit-heads", type=int, default=d.circuit_heads)
    size.add_argument("--circuit-neurons", type=int, default=d.circuit_neurons)
    gen = p.add_argument_group("generation")
    gen.add_argument(
        "--no-generation", action="store_true", help="skip the judged parts (no control.csv)"
    )
    gen.add_argument("--max-new-tokens", type=int, default=d.max_new_tokens)
    gen.add_argument(
        "--gen-ablation-prompts",
        type=int,
        default=d.gen_ablation_prompts,
        help="prompts per emotion for the judged ablation",
    )
    gen.add_argument(
        "--n-tune-scenarios",
        type=int,
        default=d.n_tune_scenarios,
        help="discovery scenarios used to pick gamma and beta",
    )
    gen.add_argument(
        "--gamma-grid",
        type=_floats,
        default=d.gamma_grid,
        help="circuit-modulation strengths, e.g. 8,16,32,64",
    )
    gen.add_argument(
        "--beta-grid",
        type=_floats,
        default=d.beta_grid,
        help="steering strengths per layer (RMS units), e.g. 8,32",
    )
    gen.add_argument(
        "--steer-windows",
        default=",".join(f"{w[0]}-{w[-1]}" for w in d.steer_windows),
        help="steering layer windows, e.g. 10-19,20-29",
    )
    gen.add_argument(
        "--positions",
        choices=["last", "all"],
        default=d.positions,
        help="steer/modulate the last prompt token only, or every position",
    )
    gen.add_argument(
        "--min-distinct",
        type=float,
        default=d.min_distinct,
        help="replies with a lower distinct-bigram ratio count as degenerate",
    )
    gen.add_argument(
        "--min-words",
        type=int,
        default=d.min_words,
        help="replies with fewer words count as degenerate (e.g. a bare emotion word)",
    )
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--formats", default="html", help="figure formats, e.g. html,png")
    p.add_argument("--progress", action="store_true", help="show progress bars")
    return p


def run_circuits_command(args: argparse.Namespace) -> int:
    """Handle ``lens-emotion circuits``."""
    from lens_emotion.circuits.workflow import CircuitSettings, parse_windows, run_circuits
    from lens_emotion.data import load_sev
    from lens_emotion.models import load_model

    for name in (
        "n_scenarios",
        "n_eval_scenarios",
        "n_ablation_prompts",
        "max_k_heads",
        "max_k_neurons",
        "n_random",
        "check_prompts",
        "max_new_tokens",
        "batch_size",
    ):
        if getattr(args, name) < 1:
            raise CircuitError(f"--{name.replace('_', '-')} must be at least 1.")
    try:
        check_layers = (
            None
            if args.check_layers.strip() == "all"
            else tuple(int(x) for x in args.check_layers.split(",") if x.strip())
        )
    except ValueError as exc:
        raise CircuitError(
            f"--check-layers must be comma-separated layer numbers or 'all', got "
            f"{args.check_layers!r}."
        ) from exc
    interventions = tuple(x.strip() for x in args.interventions.split(",") if x.strip())
    settings = CircuitSettings(
        n_scenarios=args.n_scenarios,
        n_eval_scenarios=args.n_eval_scenarios,
        eval_fraction=args.eval_fraction,
        n_ablation_prompts=args.n_ablation_prompts,
        max_k_heads=args.max_k_heads,
        max_k_neurons=args.max_k_neurons,
        n_random=args.n_random,
        scale_factor=args.scale_factor,
        check_prompts=args.check_prompts,
        check_layers=check_layers,
        interventions=interventions,
        alpha=args.alpha,
        circuit_heads=args.circuit_heads,
        circuit_neurons=args.circuit_neurons,
        generate=not args.no_generation,
        gen_ablation_prompts=args.gen_ablation_prompts,
        n_tune_scenarios=args.n_tune_scenarios,
        gamma_grid=tuple(args.gamma_grid),
        beta_grid=tuple(args.beta_grid),
        steer_windows=tuple(parse_windows(args.steer_windows)),
        positions=args.positions,
        min_distinct=args.min_distinct,
        min_words=args.min_words,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
    )
    sev = load_sev(args.sev_path)
    model = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    bad = [w for w in settings.steer_windows if w[-1] >= model.n_layers]
    if bad or (settings.check_layers and max(settings.check_layers) >= model.n_layers):
        settings = CircuitSettings(
            **{
                **settings.__dict__,
                "steer_windows": tuple(w for w in settings.steer_windows if w[-1] < model.n_layers),
                "check_layers": tuple(x for x in settings.check_layers or () if x < model.n_layers)
                or (0,),
            }
        )
        if not settings.steer_windows:
            raise CircuitError(
                f"every --steer-windows window reaches past the model's {model.n_layers} layers; "
                f"pass windows within 0-{model.n_layers - 1}."
            )
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    outputs = run_circuits(
        model,
        sev,
        args.out,
        seed=args.seed,
        settings=settings,
        formats=formats,
        progress=args.progress,
        command=shlex.join(["lens-emotion", *sys.argv[1:]]),
    )
    check = outputs.head_check
    print(
        f"head decomposition vs ablation: max |diff| {check['max_abs_difference']:.2e} over "
        f"{check['n_heads']} heads x {check['n_prompts']} prompts"
    )
    best = outputs.consistency.loc[outputs.consistency.heldout_accuracy.idxmax()]
    print(
        f"directions: held-out projection accuracy {best.heldout_accuracy:.3f} at "
        f"{best.site} layer {int(best.layer)} (chance {best.chance:.3f})"
    )
    if outputs.control is not None:
        pooled = outputs.control[outputs.control.emotion == "all"]
        for row in pooled.itertuples():
            print(
                f"{row.method:<10} accuracy {row.accuracy:.3f} "
                f"[{row.ci_low:.3f}, {row.ci_high:.3f}]  (n={row.n})"
            )
    print(f"wrote {len(outputs.files)} files to {args.out}")
    return 0
