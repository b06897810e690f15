"""``lens-emotion attribute``: attribution patching (AtP) and its check against real patching."""

from __future__ import annotations

import argparse
from typing import Any

from lens_emotion.cli.common import (
    add_data_args,
    add_model_args,
    add_pairs_args,
    add_progress_and_out_args,
    choice_list,
    formats_arg,
    load_data_from_args,
    load_model_from_args,
    pairs_run_kwargs,
    positive_int,
    run_workflow,
)

HELP = "attribution patching (AtP) and its check against real patching"


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``attribute`` (defaults: :class:`~lens_emotion.attribution.AttributionSettings`)."""
    from lens_emotion.attribution import ATP_SITES, AttributionSettings

    defaults = AttributionSettings()
    p = sub.add_parser("attribute", help=HELP, description=HELP)
    add_model_args(p)
    add_data_args(p, limit=800)
    add_pairs_args(p, defaults.n_pairs, "engine of the real patching used for the comparison")
    p.add_argument(
        "--sites",
        type=choice_list(ATP_SITES, "attn_out,mlp_out"),
        default=defaults.sites,
        help=f"comma-separated AtP sites, any of {','.join(ATP_SITES)} (default: all)",
    )
    p.add_argument("--no-heads", action="store_true", help="skip per-head (hook_z) AtP")
    p.add_argument(
        "--no-compare", action="store_true", help="skip the real span-1 patching comparison"
    )
    formats_arg(p, default=",".join(defaults.formats))
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=defaults.batch_size,
        help=f"pairs per AtP pass (default: {defaults.batch_size})",
    )
    add_progress_and_out_args(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Run ``attribute``; prints its cost and its agreement with real patching."""
    from lens_emotion.attribution import AttributionSettings, run_attribution

    settings = AttributionSettings(compare=not args.no_compare, **pairs_run_kwargs(args))
    dataset = load_data_from_args(args)
    model = load_model_from_args(args)
    outputs = run_workflow(run_attribution, model, dataset, args, settings)
    summary = outputs.summary()
    atp = summary["atp"]
    print(
        f"AtP on {atp['n_pairs']} pairs: {atp['seconds']:.1f} s, "
        f"{atp['atp_fpe']:.0f} forward-pass equivalents "
        f"(one-forward-per-patch patching: {atp['patching_fpe']:.0f})"
    )
    for key, corr in summary.get("comparison", {}).get("correlations", {}).items():
        print(
            f"{key:<11} vs real span-1 patching: Pearson {_number(corr['pearson'])}, "
            f"Spearman {_number(corr['spearman'])} (n={corr['n']})"
        )
    print(f"wrote {len(outputs.files)} files to {args.out}")
    return 0


def _number(value: float | None) -> str:
    """A correlation to three decimals (``nan`` where the summary holds ``None``)."""
    return "nan" if value is None else f"{value:.3f}"
