"""Option parsing shared by every command: lists, signed values, settings-to-options."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from lens_emotion.cli.common import (
    add_settings_args,
    choice_list,
    float_list,
    join_signed_values,
    layer_list,
    run_workflow,
    settings_from_args,
)
from lens_emotion.errors import LensEmotionError


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["steer", "--betas", "-8,-4,0,4,8"], ["steer", "--betas=-8,-4,0,4,8"]),
        (["steer", "--gen-betas", "-8,0,8"], ["steer", "--gen-betas=-8,0,8"]),
        (["circuits", "--beta-grid", "-.5,1"], ["circuits", "--beta-grid=-.5,1"]),
        (["steer", "--signs", "-,+"], ["steer", "--signs=-,+"]),
        (["steer", "--appraisal", "-pleasantness"], ["steer", "--appraisal=-pleasantness"]),
        # untouched: positive values, other options, and a following option name
        (["steer", "--betas", "8,16"], ["steer", "--betas", "8,16"]),
        (["probe", "--seed", "-1"], ["probe", "--seed", "-1"]),
        (["steer", "--betas", "--quiet"], ["steer", "--betas", "--quiet"]),
    ],
)
def test_negative_values_are_glued_to_their_option(argv, expected):
    assert join_signed_values(argv) == expected


def test_list_parsers_accept_the_documented_forms_and_reject_others():
    assert float_list("1,10", positive=True)("1,10,100,1000,10000") == (1, 10, 100, 1000, 10000)
    assert float_list("1000", positive=True)("1000") == (1000.0,)
    assert float_list("-8,0,8")("-8, 0 ,8") == (-8.0, 0.0, 8.0)
    for bad in ("", "1,x", "0", "-1", "nan"):
        with pytest.raises(argparse.ArgumentTypeError):
            float_list("1,10", positive=True)(bad)
    assert layer_list("8,12") == (8, 12) and layer_list("10-12") == (10, 11, 12)
    for bad in ("", "-1", "a", "5-3"):
        with pytest.raises(argparse.ArgumentTypeError):
            layer_list(bad)
    assert choice_list(("html", "png"))("HTML,png") == ("html", "png")
    with pytest.raises(argparse.ArgumentTypeError, match="'gif'"):
        choice_list(("html", "png"))("html,gif")


@dataclass(frozen=True)
class _Settings:
    """Demo settings.

    Attributes:
        n_items: How many items.
        grid: Strengths tried.
        windows: Layer windows.
        check_layers: Layers checked (None: all).
        mode: Which mode.
        generate: Generate replies.
    """

    n_items: int = 4
    grid: tuple[float, ...] = (1.0, 2.0)
    windows: tuple[tuple[int, ...], ...] = ((1, 2),)
    check_layers: tuple[int, ...] | None = (0,)
    mode: str = "last"
    generate: bool = True


def test_settings_dataclass_becomes_options_with_its_defaults():
    parser = argparse.ArgumentParser()
    add_settings_args(parser, _Settings, choices={"mode": ("last", "all")})
    assert settings_from_args(parser.parse_args([]), _Settings) == _Settings()
    args = parser.parse_args(
        ["--n-items", "7", "--grid=-1,3", "--windows", "3-5,7", "--check-layers", "all"]
        + ["--mode", "all", "--no-generate"]
    )
    got = settings_from_args(args, _Settings)
    assert got == _Settings(7, (-1.0, 3.0), ((3, 4, 5), (7,)), None, "all", False)
    assert (
        "How many items. (default: 4)" in parser.format_help().replace("\n", " ").replace("  ", " ")
        or "How many items" in parser.format_help()
    )
    for bad in (["--n-items", "0"], ["--mode", "first"], ["--windows", "5-3"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_run_workflow_passes_out_progress_command_and_adds_the_store_hint(tmp_path):
    calls = []

    def run(model, data, out, settings, *extra, progress, command, **kwargs):
        calls.append((model, data, out, settings, extra, progress, command, kwargs))
        if settings == "bad":
            raise ValueError("bad settings")
        return "outputs"

    args = argparse.Namespace(out="outdir", quiet=True)
    assert run_workflow(run, "m", "d", args, "s", "sev", eval_dataset="e") == "outputs"
    model, data, out, settings, extra, progress, command, kwargs = calls[0]
    assert (model, data, out, settings, extra) == ("m", "d", "outdir", "s", ("sev",))
    assert progress is False and command.startswith("lens-emotion")
    assert kwargs == {"eval_dataset": "e"}
    with pytest.raises(ValueError, match="^bad settings$"):
        run_workflow(run, "m", "d", args, "bad")
    with pytest.raises(LensEmotionError, match=f"bad settings .*{tmp_path.name}"):
        run_workflow(run, "m", "d", args, "bad", store=tmp_path)
