"""Shared pieces of the sweep tests: two tiny random models, small configs, one Ray session."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Settings that keep one tiny job to a few seconds.
SMALL = """
[settings.probe]
sites = ["resid_post"]
n_folds = 2
alpha = 1.0

[settings.patch]
n_pairs = 6
heads = false
ablations = false
control = false
agreeing_only = false
sites = ["attn_out", "mlp_out"]
"""


def write_config(
    path: Path,
    models: list[tuple[str, str]],
    *,
    templates: tuple[str, ...] = ("paper",),
    analyses: tuple[str, ...] = ("infer", "probe", "patch"),
    extra: str = "",
    model_extra: dict[str, str] | None = None,
) -> Path:
    """A sweep TOML over ``models`` ((name, spec) pairs) on the built-in sample rows."""
    lines = [
        'name = "tiny"',
        f"templates = {list(templates)!r}".replace("'", '"'),
        f"analyses = {list(analyses)!r}".replace("'", '"'),
        "seeds = [0]",
        'device = "cpu"',
        "",
        "[data]",
        'name = "sample"',
        "limit = 40",
        SMALL,
        extra,
    ]
    for name, spec in models:
        lines += ["[[models]]", f'spec = "{spec}"', f'name = "{name}"']
        if model_extra and name in model_extra:
            lines.append(model_extra[name])
        lines.append("")
    path.write_text("\n".join(lines))
    return path


@pytest.fixture(scope="session")
def make_config():
    """:func:`write_config`, for the tests."""
    return write_config


@pytest.fixture(scope="session")
def tiny_pair(tmp_path_factory) -> list[tuple[str, str]]:
    """Two tiny random llama folders of different depth: (name, path) pairs."""
    from lens_emotion.testing import make_tiny_model

    root = tmp_path_factory.mktemp("sweep-models")
    a = make_tiny_model(root / "tiny-a", arch="llama", seed=0, n_layers=2)
    b = make_tiny_model(root / "tiny-b", arch="llama", seed=1, n_layers=3)
    return [("a", str(a)), ("b", str(b))]


@pytest.fixture(scope="session")
def baseline(tmp_path_factory, tiny_pair):
    """The in-process run of the two-model config, shared by the comparisons."""
    from lens_emotion.sweep import run_sweep

    root = tmp_path_factory.mktemp("sweep-baseline")
    config = write_config(root / "sweep.toml", tiny_pair)
    outputs = run_sweep(config, root / "out", progress=False)
    return config, root / "out", outputs


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray for every Ray test: 2 CPUs, no dashboard, small object store."""
    ray = pytest.importorskip("ray")
    from lens_emotion.sweep.ray_runner import init_ray

    started = init_ray(num_cpus=2)
    yield ray
    if started:
        ray.shutdown()
