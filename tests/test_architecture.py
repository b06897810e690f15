"""Family adapters: the plain engines read and write exactly the bridge's hook values.

Every family of :data:`lens_emotion.testing.TINY_FAMILIES` is built offline as a tiny
random-weight model (random norm gains, sliding windows shorter than the prompts, Gemma 2
soft-capping on) and checked against the TransformerLens bridge: plain extraction at every
site, steered readout and steered generation (plain, KV-cached) against the bridge reference,
and edited generation (head/neuron edits through the output weights) against hooks on ``z``
and ``mlp.hook_post``.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lens_emotion.activations import ActivationStoreError, extract_activations, resolve_engine
from lens_emotion.architecture import (
    FAMILIES,
    SUPPORTED_ARCHITECTURES,
    Architecture,
    ArchitectureError,
    architecture,
    unsupported_reason,
)
from lens_emotion.circuits.edits import ComponentEdit, edit_hooks
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.generation import plain_weight_edit
from lens_emotion.interventions import generate_with_hooks, readout_with_hooks, steering_hooks
from lens_emotion.prompts import build_prompts
from lens_emotion.testing import TINY_FAMILIES, make_tiny_family_model

ALL_SITES = ("resid_pre", "attn_out", "mlp_out", "resid_mid", "resid_post", "z")


@pytest.fixture(scope="module", params=TINY_FAMILIES)
def family_model(request, tmp_path_factory):
    from lens_emotion.models import load_model

    folder = make_tiny_family_model(tmp_path_factory.mktemp("fam") / request.param, request.param)
    return load_model(folder, device="cpu")


@pytest.fixture(scope="module")
def rows(sample_dataset):
    return sample_dataset.sample(10, seed=2)


def _sites(model) -> tuple[str, ...]:
    return tuple(s for s in ALL_SITES if s != "resid_mid" or not architecture(model).parallel)


def _close(a: np.ndarray, b: np.ndarray, rel: float = 1e-4) -> bool:
    return bool(np.abs(a - b).max() <= rel * max(1.0, float(np.abs(b).max())))


def test_every_tiny_family_has_an_adapter(family_model):
    arch = architecture(family_model)
    assert arch.family.name in FAMILIES
    assert type(family_model.plain_model).__name__ in SUPPORTED_ARCHITECTURES
    assert arch.n_layers == family_model.n_layers
    assert arch.n_heads * arch.d_head == family_model.n_heads * int(family_model.cfg.d_head)
    assert unsupported_reason(family_model) is None
    assert resolve_engine(family_model, "auto") == "plain"


def test_plain_engine_matches_the_bridge_at_every_site(family_model, rows, tmp_path):
    prompts = build_prompts(family_model, rows.texts, rows.labels, rows.label_names)
    assert max(prompts.lengths) > 12  # longer than the tiny sliding windows (6)
    kw = dict(sites=_sites(family_model), positions=3, dataset=rows, batch_size=4, progress=False)
    plain = extract_activations(family_model, prompts, out_dir=tmp_path / "p", engine="plain", **kw)
    bridge = extract_activations(
        family_model, prompts, out_dir=tmp_path / "b", engine="bridge", **kw
    )
    assert plain.manifest["engine"] == "plain"
    for site in _sites(family_model):
        for layer in range(family_model.n_layers):
            for pos in (-3, -2, -1):
                a, b = plain.get(site, layer, pos), bridge.get(site, layer, pos)
                assert _close(a, b), (site, layer, pos, np.abs(a - b).max())


def test_parallel_residual_has_no_resid_mid(tmp_path, rows):
    from lens_emotion.models import load_model

    model = load_model(make_tiny_family_model(tmp_path / "neox", "gpt_neox"), device="cpu")
    assert architecture(model).parallel
    with pytest.raises(ArchitectureError, match="parallel residual"):
        architecture(model).site_module("resid_mid", 0)
    prompts = build_prompts(model, rows.texts[:2], rows.labels[:2], rows.label_names)
    with pytest.raises(ActivationStoreError, match="parallel residual"):
        extract_activations(
            model,
            prompts,
            sites=("resid_mid",),
            out_dir=tmp_path / "s",
            engine="plain",
            progress=False,
        )


def test_unknown_architectures_get_a_one_line_reason(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["BertForMaskedLM"]}))
    fake = SimpleNamespace(path=tmp_path)
    reason = unsupported_reason(fake)
    assert reason is not None and "\n" not in reason and "BertForMaskedLM" in reason
    assert resolve_engine(fake, "auto") == "bridge"
    with pytest.raises(ActivationStoreError, match="no family adapter"):
        resolve_engine(fake, "plain")
    with pytest.raises(ArchitectureError, match="no family adapter"):
        Architecture(torch.nn.Linear(2, 2))


@pytest.mark.parametrize("site", ["resid_pre", "resid_mid", "attn_out", "mlp_out", "resid_post"])
def test_steered_readout_plain_matches_bridge(family_model, rows, site):
    if site == "resid_mid" and architecture(family_model).parallel:
        pytest.skip("GPT-NeoX's parallel residual has no resid_mid")
    prompts = build_prompts(family_model, rows.texts, rows.labels, rows.label_names)
    direction = torch.randn(family_model.d_model, generator=torch.Generator().manual_seed(1))
    layers = [0, family_model.n_layers - 1]
    hooks = steering_hooks(
        family_model, direction, 3.0, layers, site=site, scale="rms", positions="all"
    )
    plain = readout_with_hooks(family_model, prompts, hooks, 4, "plain", progress=False)
    bridge = readout_with_hooks(family_model, prompts, hooks, 4, "bridge", progress=False)
    clean = readout_with_hooks(family_model, prompts, [], 4, "plain", progress=False)
    np.testing.assert_allclose(plain, bridge, atol=1e-4)
    assert np.abs(plain - clean).max() > 1e-2  # the hook did something


@pytest.mark.parametrize("positions", ["last", "all"])
def test_steered_generation_cached_equals_uncached_reference(family_model, rows, positions):
    direction = torch.randn(family_model.d_model, generator=torch.Generator().manual_seed(4))
    hooks = steering_hooks(
        family_model, direction, 20.0, [0, 1], "resid_post", positions=positions, scale="rms"
    )
    kwargs = dict(max_new_tokens=5, batch_size=3, progress=False)  # greedy
    texts = rows.texts[:5]
    plain = generate_with_hooks(family_model, texts, hooks, engine="plain", **kwargs)
    bridge = generate_with_hooks(family_model, texts, hooks, engine="bridge", **kwargs)
    clean = generate_with_hooks(family_model, texts, [], engine="plain", **kwargs)
    assert plain == bridge
    assert plain != clean


def test_weight_edit_equals_bridge_hooks_on_z_and_post(family_model, rows):
    """Edited output columns (+ constants before any post-norm) == bridge hooks, all positions."""
    arch = architecture(family_model)
    prompts = build_prompts(family_model, rows.texts[:6], rows.labels[:6], rows.label_names)
    d_head = int(family_model.cfg.d_head)
    add = torch.randn(1, d_head, generator=torch.Generator().manual_seed(2))
    edit = ComponentEdit.heads([(1, 2)], 0.5, add=add) + ComponentEdit.neurons([(0, 5)], 3.0)
    edit = edit + ComponentEdit.heads([(0, 1)], 0.0)
    if arch.family.name in ("gpt2", "gpt_neox"):
        with pytest.raises(CircuitError, match="bias"), plain_weight_edit(family_model, edit):
            pass
        return
    ref = readout_with_hooks(
        family_model,
        prompts,
        edit_hooks(family_model, edit, positions="all"),
        3,
        "bridge",
        progress=False,
    )
    before = arch.out_proj(1).weight.clone()
    with plain_weight_edit(family_model, edit) as hooks:
        got = readout_with_hooks(family_model, prompts, hooks, 3, "plain", progress=False)
    clean = readout_with_hooks(family_model, prompts, [], 3, "plain", progress=False)
    np.testing.assert_allclose(got, ref, atol=2e-4)
    assert np.abs(ref - clean).max() > 1e-2
    assert torch.equal(arch.out_proj(1).weight, before)  # restored
    after = readout_with_hooks(family_model, prompts, [], 3, "plain", progress=False)
    np.testing.assert_allclose(after, clean, atol=1e-6)  # output hooks removed too
