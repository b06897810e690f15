"""What every ``lens-emotion`` command shares: option parsers, argument groups, errors.

One option parser per kind of value, the model / data / progress / calibration argument
groups, a settings-dataclass-to-options helper, and one-line errors.

Every list-valued option is parsed here, at argument-parsing time, so a bad value fails
within a second (exit status 2, one line naming the option and a valid example) before any
data is read or any model is loaded. Signed lists such as ``--betas -8,0,8`` are accepted as
typed: :func:`join_signed_values` glues such a value to its option before argparse sees it.
"""

from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from lens_emotion.errors import LensEmotionError

__all__ = [
    "CALIBRATIONS",
    "FIGURE_FORMATS",
    "OneLineParser",
    "SIGNED_LIST_OPTIONS",
    "add_calibrate_arg",
    "add_data_args",
    "add_model_args",
    "add_progress_args",
    "choice_list",
    "command_string",
    "float_list",
    "int_list",
    "join_signed_values",
    "layer_list",
    "load_data_from_args",
    "load_model_from_args",
    "nonnegative_int",
    "positive_float",
    "positive_int",
    "string_list",
]

#: Figure formats every command can write (static ones need ``./run setup-static``).
FIGURE_FORMATS: tuple[str, ...] = ("html", "png", "svg", "pdf")

#: Values of ``--calibrate``, one meaning in every command (see
#: :func:`lens_emotion.inference.resolve_calibration` for what ``auto`` picks).
CALIBRATIONS: tuple[str, ...] = ("auto", "none", "mean", "content-free", "mean-heldout")

#: Options whose values may be negative numbers (``--betas -8,0,8``).
SIGNED_LIST_OPTIONS: frozenset[str] = frozenset(
    {"--betas", "--gen-betas", "--gamma-grid", "--beta-grid", "--strengths"}
)

_SIGNED_VALUE = re.compile(r"^-\d|^-\.\d")

#: Options whose values may start with ``-`` for another reason (``--signs -,+``,
#: ``--appraisal -pleasantness``): any next word not starting with ``--`` is their value.
SIGNED_WORD_OPTIONS: frozenset[str] = frozenset({"--signs", "--appraisal"})


class OneLineParser(argparse.ArgumentParser):
    """An argparse parser whose errors are one line (plus a pointer to ``--help``)."""

    def error(self, message: str) -> NoReturn:
        """Print ``lens-emotion CMD: error: MESSAGE`` on one line and exit with status 2."""
        print(
            f"{self.prog}: error: {message} (see {self.prog} --help)", file=sys.stderr, flush=True
        )
        raise SystemExit(2)


def join_signed_values(argv: Sequence[str]) -> list[str]:
    """Glue a negative value to its option: ``["--betas", "-8,0,8"]`` -> ``["--betas=-8,0,8"]``.

    argparse reads ``-8,0,8`` as an option name; the ``--betas=-8,0,8`` form works, but the help
    shows ``-8,-4,0,4,8`` and users type it after a space. Only the options in
    :data:`SIGNED_LIST_OPTIONS` are touched, and only when the next word starts like a
    negative number.
    """
    out: list[str] = []
    items = list(argv)
    i = 0
    while i < len(items):
        word = items[i]
        nxt = items[i + 1] if i + 1 < len(items) else ""
        signed = word in SIGNED_LIST_OPTIONS and _SIGNED_VALUE.match(nxt)
        worded = word in SIGNED_WORD_OPTIONS and nxt.startswith("-") and not nxt.startswith("--")
        if signed or worded:
            out.append(f"{word}={nxt}")
            i += 2
            continue
        out.append(word)
        i += 1
    return out


def _split(text: str) -> list[str]:
    return [part.strip() for part in str(text).split(",") if part.strip()]


def string_list(example: str) -> Callable[[str], tuple[str, ...]]:
    """A parser of a non-empty comma-separated list of words."""

    def parse(text: str) -> tuple[str, ...]:
        parts = _split(text)
        if not parts:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list such as {example}")
        return tuple(parts)

    return parse


def choice_list(
    choices: Sequence[str], example: str | None = None
) -> Callable[[str], tuple[str, ...]]:
    """A parser of a non-empty comma-separated list whose items come from ``choices``."""
    allowed = tuple(choices)
    example = example or ",".join(allowed[:2])

    def parse(text: str) -> tuple[str, ...]:
        parts = tuple(p.lower() for p in _split(text))
        bad = [p for p in parts if p not in allowed]
        if not parts or bad:
            what = f"unknown {', '.join(map(repr, bad))}; " if bad else ""
            raise argparse.ArgumentTypeError(
                f"{what}expected a comma-separated list of {', '.join(allowed)} (e.g. {example})"
            )
        return parts

    return parse


def float_list(
    example: str, *, positive: bool = False, allow_empty: bool = False
) -> Callable[[str], tuple[float, ...]]:
    """A parser of comma-separated finite numbers (``positive``: each > 0)."""

    def parse(text: str) -> tuple[float, ...]:
        try:
            values = tuple(float(p) for p in _split(text))
        except ValueError:
            values = None
        ok = values is not None and (values or allow_empty)
        ok = ok and all(math.isfinite(v) and (v > 0 or not positive) for v in values or ())
        if not ok:
            kind = "positive numbers" if positive else "numbers"
            raise argparse.ArgumentTypeError(
                f"expected comma-separated {kind} such as {example}, got {text!r}"
            )
        return values  # type: ignore[return-value]

    return parse


def int_list(example: str, *, minimum: int = 0) -> Callable[[str], tuple[int, ...]]:
    """A parser of a non-empty comma-separated list of integers >= ``minimum``."""

    def parse(text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(p) for p in _split(text))
        except ValueError:
            values = ()
        if not values or any(v < minimum for v in values):
            raise argparse.ArgumentTypeError(
                f"expected comma-separated integers >= {minimum} such as {example}, got {text!r}"
            )
        return values

    return parse


def layer_list(text: str) -> tuple[int, ...]:
    """Layers: ``12``, ``8,12`` or ranges ``10-19`` (inclusive), all >= 0."""
    values: list[int] = []
    try:
        for part in _split(text):
            if re.fullmatch(r"\d+-\d+", part):
                lo, hi = (int(x) for x in part.split("-"))
                if hi < lo:
                    raise ValueError(part)
                values.extend(range(lo, hi + 1))
            else:
                values.append(int(part))
    except ValueError:
        values = []
    if not values or min(values) < 0:
        raise argparse.ArgumentTypeError(
            f"expected layer numbers such as 12, 8,12 or 10-19, got {text!r}"
        )
    return tuple(values)


def _int_at_least(minimum: int, what: str, example: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what} such as {example}, got {text!r}")
        return value

    parse.__doc__ = f"An integer >= {minimum}."
    return parse


positive_int = _int_at_least(1, "a positive integer", 16)
nonnegative_int = _int_at_least(0, "an integer >= 0", 0)


def positive_float(text: str) -> float:
    """A finite number > 0."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a positive number such as 1.0, got {text!r}")
    return value


def formats_arg(parser: argparse.ArgumentParser, default: str = "html") -> None:
    """Add ``--formats`` (validated against :data:`FIGURE_FORMATS`)."""
    parser.add_argument(
        "--formats",
        type=choice_list(FIGURE_FORMATS, "html,png"),
        default=choice_list(FIGURE_FORMATS)(default),
        help=f"figure formats, any of {','.join(FIGURE_FORMATS)} (default: {default}; static "
        "ones need ./run setup-static and are skipped with a note if it is missing)",
    )


_DEVICE_RE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def device_arg(text: str) -> str:
    """``--device``: auto, cpu, cuda, cuda:N or mps (availability is checked before loading)."""
    value = text.strip().lower()
    if not _DEVICE_RE.match(value):
        raise argparse.ArgumentTypeError(
            f"expected auto, cpu, cuda, cuda:N or mps (e.g. cuda:1), not {text!r}"
        )
    return value


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """Add the model options: where and in which precision to load it, and its batch bound.

    ``--model``, ``--device``, ``--dtype``, ``--device-map``, ``--n-devices``, ``--max-tokens``
    and ``--trust-remote-code``; every value is checked before data or model is read.
    """
    from lens_emotion.models import DEFAULT_MODEL, DEVICE_MAPS, DTYPES

    group = parser.add_argument_group("model")
    group.add_argument(
        "--model",
        default=DEFAULT_MODEL,
        help="zoo alias, local HF folder, .gguf file or hub id "
        f"(default: {DEFAULT_MODEL}, offline)",
    )
    group.add_argument(
        "--device",
        default="auto",
        type=device_arg,
        help="auto (CUDA when visible, else CPU), cpu, cuda, cuda:N or mps (default: auto)",
    )
    group.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *DTYPES],
        metavar="{auto,float32,bfloat16,float16}",
        help="weights dtype: auto = bfloat16 on a GPU that supports it, float32 on CPU; "
        "analyses compute in float32 either way (default: auto)",
    )
    group.add_argument(
        "--device-map",
        default=None,
        choices=list(DEVICE_MAPS),
        help="spread a model too large for one GPU over all visible GPUs (accelerate); "
        "leave --device at auto",
    )
    group.add_argument(
        "--n-devices",
        default=None,
        type=positive_int,
        help="split the model over this many GPUs (instead of --device-map)",
    )
    group.add_argument(
        "--max-tokens",
        default=4096,
        type=positive_int,
        help="padded tokens per batch (batch x longest prompt): bounds activation memory; "
        "checked against free memory before loading (default: 4096)",
    )
    group.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="allow hub model code to run (off by default)",
    )


def add_data_args(
    parser: argparse.ArgumentParser, default: str = "crowd-envent", limit: int | None = None
) -> None:
    """Add ``--dataset``, ``--data-path``, ``--text-column``, ``--limit`` and ``--seed``."""
    group = parser.add_argument_group("data")
    group.add_argument(
        "--dataset",
        default=default,
        choices=["crowd-envent", "sev", "sample", "sev-sample"],
        help=f"which dataset (default: {default}; see `lens-emotion data list`)",
    )
    group.add_argument(
        "--data-path",
        default=None,
        type=Path,
        help="the dataset file (default: under $LENS_EMOTION_DATA, else "
        "~/.cache/lens-emotion/data; `lens-emotion data add` puts it there)",
    )
    group.add_argument(
        "--text-column",
        default="hidden_emo_text",
        choices=["hidden_emo_text", "generated_text"],
        help="crowd-enVENT text column (default: hidden_emo_text)",
    )
    group.add_argument(
        "--limit",
        type=positive_int,
        default=limit,
        help="stratified random subset of this many rows"
        + (f" (default: {limit})" if limit else " (default: all)"),
    )
    group.add_argument("--seed", type=int, default=0, help="seed of subsets and runs (default: 0)")


def add_pairs_args(parser: argparse.ArgumentParser, n_pairs: int, method_help: str) -> None:
    """Options of the commands that draw source/target pairs (``patch``, ``attribute``)."""
    from lens_emotion.prompts import TEMPLATES

    parser.add_argument(
        "--pairs",
        type=positive_int,
        default=n_pairs,
        help=f"source/target pairs (default {n_pairs})",
    )
    parser.add_argument("--template", default="emotion-list", choices=sorted(TEMPLATES))
    parser.add_argument(
        "--all-rows",
        action="store_true",
        help="draw pairs among all rows (kept only if clean predictions differ), not only "
        "agreeing rows",
    )
    add_calibrate_arg(parser, "the clean predictions (the control task is never calibrated)")
    parser.add_argument(
        "--method",
        default="auto",
        choices=["auto", "fast", "bridge", "reference"],
        help=method_help,
    )


def pairs_run_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The workflow arguments :func:`add_pairs_args` options (and the shared ones) map to."""
    from lens_emotion.inference import resolve_calibration

    calibration = resolve_calibration(args.template, args.calibrate)  # fails early if bad
    return {
        "n_pairs": args.pairs,
        "seed": args.seed,
        "template": args.template,
        "agreeing_only": not args.all_rows,
        # "auto" stays "auto": the control task inside the workflow is never calibrated
        "calibrate": "auto" if args.calibrate == "auto" else calibration,
        "sites": list(args.sites),
        "heads": not args.no_heads,
        "method": args.method,
        "formats": list(args.formats),
        "batch_size": args.batch_size,
    }


def add_progress_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--quiet`` (progress bars and step lines are on by default)."""
    parser.add_argument(
        "--quiet", action="store_true", help="no progress bars or per-step lines (on by default)"
    )


def add_progress_and_out_args(parser: argparse.ArgumentParser) -> None:
    """Add ``--quiet`` (:func:`add_progress_args`) and the required ``--out`` folder."""
    add_progress_args(parser)
    parser.add_argument("--out", required=True, help="output folder")


def add_calibrate_arg(parser: argparse.ArgumentParser, what: str) -> None:
    """Add ``--calibrate`` with the one meaning every command shares."""
    parser.add_argument(
        "--calibrate",
        default="auto",
        choices=list(CALIBRATIONS),
        help=f"calibration of {what}: auto (the method BENCHMARKS.md shows works best for "
        "the template; printed), none, mean (fitted on the scored rows), content-free, or "
        "mean-heldout (fitted on a held-out half, applied to the other) (default: auto)",
    )


def command_string(argv: Sequence[str] | None = None) -> str:
    """The command line as typed, for manifests."""
    return shlex.join(["lens-emotion", *(sys.argv[1:] if argv is None else argv)])


def load_data_from_args(args: argparse.Namespace) -> Any:
    """Load the dataset a command asks for (``--dataset``, ``--data-path``, ``--limit``)."""
    from lens_emotion.data import load_dataset

    kwargs = {}
    if args.dataset in {"crowd-envent", "sample"}:
        kwargs["text_column"] = args.text_column
    dataset = load_dataset(args.dataset, path=args.data_path, **kwargs)
    if getattr(args, "limit", None) is not None:
        dataset = dataset.sample(args.limit, seed=args.seed)
    return dataset


def load_model_from_args(args: argparse.Namespace) -> Any:
    """Load the model a command asks for (the :func:`add_model_args` options)."""
    from lens_emotion.models import load_model

    return load_model(
        args.model,
        device=args.device,
        dtype=args.dtype,
        trust_remote_code=args.trust_remote_code,
        device_map=args.device_map,
        n_devices=args.n_devices,
        batch_size=getattr(args, "batch_size", None) or 16,
        max_tokens=args.max_tokens,
    )


def check_layers(layers: Sequence[int] | None, n_layers: int, option: str) -> None:
    """Fail with a one-line error if a layer is past the model's last one."""
    if layers and max(layers) >= n_layers:
        raise LensEmotionError(
            f"{option} {max(layers)} is past the model's last layer; use 0-{n_layers - 1}."
        )


def store_hint(store: str | Path | None) -> str:
    """The rerun hint appended to an error raised after the activations were extracted."""
    from lens_emotion.models import cache_root

    where = Path(store) if store else cache_root() / "activations"
    return f" (activations are cached in {where}; rerun with a fixed option to continue)"


_NO_STORE = object()


def run_workflow(
    run: Callable[..., Any],
    model: Any,
    data: Any,
    args: argparse.Namespace,
    settings: Any,
    *extra: Any,
    store: Any = _NO_STORE,
    **kwargs: Any,
) -> Any:
    """Call a ``run_<x>`` workflow with the output folder, progress and command line of ``args``.

    Args:
        run: The workflow, ``run(model, data, out, settings, *extra, progress=..., command=...)``.
        model: The loaded model.
        data: The dataset (or SEV prompts) it runs on.
        args: The parsed options (``--out``, ``--quiet``).
        settings: The workflow's settings.
        *extra: Further positional arguments of ``run``, after ``settings``.
        store: The activation store folder; when given (even ``None``, the cache), an error
            of the run gets the :func:`store_hint` rerun hint appended.
        **kwargs: Further keyword arguments of ``run``.

    Returns:
        What ``run`` returns (its ``…Outputs``).
    """
    kwargs.update(progress=not args.quiet, command=command_string())
    if store is _NO_STORE:
        return run(model, data, args.out, settings, *extra, **kwargs)
    try:
        return run(model, data, args.out, settings, *extra, **kwargs)
    except (LensEmotionError, ValueError) as exc:
        raise LensEmotionError(f"{exc}{store_hint(store)}") from exc


def _attribute_docs(cls: type) -> dict[str, str]:
    """``{field: description}`` from a Google-style ``Attributes:`` block."""
    doc = inspect.getdoc(cls) or ""
    docs: dict[str, str] = {}
    inside = False
    current = None
    for line in doc.splitlines():
        if line.strip() == "Attributes:":
            inside = True
            continue
        if inside:
            match = re.match(r"^    (\w+): (.*)$", line)
            if match:
                current = match.group(1)
                docs[current] = match.group(2).strip()
            elif line.startswith("        ") and current:
                docs[current] += " " + line.strip()
            elif line and not line.startswith(" "):
                inside = False
    return {name: text.replace("``", "").rstrip(".") for name, text in docs.items()}


def _windows(text: str) -> tuple[tuple[int, ...], ...]:
    windows = []
    for part in _split(text):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        lo, hi = (int(match.group(1)), int(match.group(2) or match.group(1))) if match else (1, 0)
        if hi < lo:
            raise argparse.ArgumentTypeError(
                f"expected layer windows such as 10-19,20-29, got {text!r}"
            )
        windows.append(tuple(range(lo, hi + 1)))
    if not windows:
        raise argparse.ArgumentTypeError(
            f"expected layer windows such as 10-19,20-29, got {text!r}"
        )
    return tuple(windows)


def _one_of(allowed: Sequence[str]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in allowed:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(allowed)}, got {text!r}")
        return text

    return parse


def _layers_or_all(text: str) -> tuple[int, ...] | None:
    return None if text.strip().lower() == "all" else layer_list(text)


def _or_auto(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse_or_auto(text: str) -> Any:
        return "auto" if text.strip().lower() == "auto" else parse(text)

    return parse_or_auto


def _setting_parser(name: str, default: Any) -> tuple[Callable[[str], Any], str] | None:
    """The value parser and metavar-style example of one settings field (None: not exposed).

    A layer field (``*_layers``, ``*_windows``) whose default is ``"auto"`` (chosen for the
    model at run time) takes ``auto`` or layers.
    """
    if isinstance(default, bool) or isinstance(default, dict):
        return None
    if default == "auto" and name.endswith("_windows"):
        return _or_auto(_windows), "auto"
    if default == "auto" and name.endswith("_layers"):
        return _or_auto(_layers_or_all), "auto"
    if isinstance(default, int):
        return (positive_int if default >= 1 else nonnegative_int), str(default)
    if isinstance(default, float):
        return positive_float, str(default)
    if isinstance(default, str):
        return str, default
    if isinstance(default, tuple):
        if default and isinstance(default[0], tuple):
            return _windows, ",".join(f"{w[0]}-{w[-1]}" for w in default)
        example = ",".join(str(x) for x in default)
        if name.endswith("layers"):
            return _layers_or_all, example or "all"
        if default and isinstance(default[0], float):
            return float_list(example), example
        if default and isinstance(default[0], int):
            return int_list(example), example
        return string_list(example or "a,b"), example
    return None


def add_settings_args(
    parser: argparse.ArgumentParser,
    settings_cls: type,
    title: str = "settings",
    skip: Sequence[str] = (),
    choices: dict[str, Sequence[str]] | None = None,
    zero_ok: Sequence[str] = (),
) -> None:
    """Add one option per field of a frozen settings dataclass, defaults read from it.

    ``int`` fields take positive integers, ``float`` fields positive numbers, tuples
    comma-separated lists (``10-19,20-29`` for layer windows, ``all`` for ``*_layers``), and a
    ``bool`` field defaulting to ``True`` becomes ``--no-<field>``. Help comes from the class's
    ``Attributes:`` docstring, so each default and description is written once. ``choices``
    restricts a ``str`` field, or the items of a ``tuple[str, ...]`` field, to given values;
    ``int`` fields named in ``zero_ok`` also take 0.
    """
    choices = dict(choices or {})
    group = parser.add_argument_group(title)
    docs = _attribute_docs(settings_cls)
    defaults = settings_cls()
    for f in dataclasses.fields(settings_cls):
        if f.name in skip:
            continue
        default = getattr(defaults, f.name)
        flag = "--" + f.name.replace("_", "-")
        text = docs.get(f.name, f.name.replace("_", " "))
        if isinstance(default, bool):
            if default:
                group.add_argument(
                    f"--no-{f.name.replace('_', '-')}",
                    dest=f.name,
                    action="store_false",
                    help=f"turn off: {text}",
                )
            else:
                group.add_argument(flag, dest=f.name, action="store_true", help=text)
            continue
        spec = _setting_parser(f.name, default)
        if spec is None:
            continue
        parse, example = spec
        if f.name in zero_ok:
            parse = nonnegative_int
        if f.name in choices:
            allowed = tuple(choices[f.name])
            parse = (
                choice_list(allowed, example) if isinstance(default, tuple) else _one_of(allowed)
            )
            text = f"{text}; any of {','.join(allowed)}"
        group.add_argument(
            flag, dest=f.name, type=parse, default=default, help=f"{text} (default: {example})"
        )


def settings_from_args(args: argparse.Namespace, settings_cls: type, **overrides: Any) -> Any:
    """Build ``settings_cls`` from the options :func:`add_settings_args` added."""
    names = {f.name for f in dataclasses.fields(settings_cls)}
    values = {k: v for k, v in vars(args).items() if k in names}
    values.update(overrides)
    return settings_cls(**values)
