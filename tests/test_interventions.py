import numpy as np
import pytest
import torch

from lens_emotion.batching import length_batches
from lens_emotion.inference import label_logprobs
from lens_emotion.interventions import (
    DirectionHook,
    InterventionError,
    ResidMidError,
    ResidMidHook,
    ResidPreCapture,
    direction_hook,
    generate_with_hooks,
    parse_hook_name,
    readout_many,
    readout_with_hooks,
    residual_hooks,
    resolve_intervention_engine,
    steering_hooks,
)
from lens_emotion.prompts import build_prompts


@pytest.fixture(scope="module")
def rows(sample_dataset):
    return sample_dataset.sample(12, seed=3)


@pytest.fixture(scope="module")
def tiny_prompts(tiny_llama, rows):
    return build_prompts(tiny_llama, rows.texts, rows.labels, rows.label_names, "emotion-list")


def _direction(d: int, seed: int) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed))


# --------------------------------------------------------------------------- the hook itself


def test_direction_hook_adds_beta_times_unit_at_the_chosen_positions():
    d = torch.tensor([3.0, 4.0, 0.0])
    act = torch.arange(2 * 4 * 3, dtype=torch.float32).reshape(2, 4, 3)
    last = direction_hook(d, 5.0, positions="last")
    assert isinstance(last, DirectionHook) and last.norm == pytest.approx(5.0)
    out = last(act, None)
    np.testing.assert_allclose(out[:, -1] - act[:, -1], [[3.0, 4.0, 0.0]] * 2, atol=1e-6)
    assert torch.equal(out[:, :-1], act[:, :-1])
    every = direction_hook(d.numpy(), -2.0, positions="all")(act, None)
    np.testing.assert_allclose(
        (every - act).numpy(), np.broadcast_to([-1.2, -1.6, 0.0], (2, 4, 3)), atol=1e-5
    )
    assert torch.equal(direction_hook(d, 0.0)(act, None), act)


def test_rms_scaling_uses_each_positions_own_rms():
    act = torch.tensor([[[1.0, 1.0, 1.0, 1.0], [2.0, -2.0, 2.0, -2.0]]])  # rms 1 and 2
    unit = torch.tensor([0.0, 1.0, 0.0, 0.0])
    out = direction_hook(unit * 7, 3.0, scale="rms", positions="all")(act, None)
    np.testing.assert_allclose((out - act)[0, :, 1].numpy(), [3.0, 6.0], atol=1e-6)
    assert torch.equal((out - act)[0, :, [0, 2, 3]], torch.zeros(2, 3))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"direction": torch.zeros(4), "beta": 1.0},
        {"direction": torch.tensor([1.0, float("nan")]), "beta": 1.0},
        {"direction": torch.ones(2, 3), "beta": 1.0},
        {"direction": torch.ones(4), "beta": float("inf")},
        {"direction": torch.ones(4), "beta": 1.0, "scale": "l2"},
        {"direction": torch.ones(4), "beta": 1.0, "positions": "first"},
    ],
)
def test_bad_hook_arguments_raise_with_a_fix(kwargs):
    with pytest.raises(InterventionError):
        direction_hook(**kwargs)


def test_steering_hooks_name_every_layer_of_a_window(tiny_llama):
    hooks = steering_hooks(tiny_llama, _direction(64, 0), 2.0, [0, 1], site="mlp_out")
    assert [name for name, _ in hooks] == ["blocks.0.hook_mlp_out", "blocks.1.hook_mlp_out"]
    assert parse_hook_name("blocks.12.hook_resid_post") == ("resid_post", 12)
    assert parse_hook_name("blocks.3.attn.hook_z") == ("z", 3)
    assert parse_hook_name("hook_embed") is None
    with pytest.raises(InterventionError, match="outside"):
        steering_hooks(tiny_llama, _direction(64, 0), 1.0, 2)
    with pytest.raises(InterventionError, match="width"):
        steering_hooks(tiny_llama, _direction(65, 0), 1.0, 0)
    with pytest.raises(InterventionError, match="site"):
        steering_hooks(tiny_llama, _direction(64, 0), 1.0, 0, site="z")


# --------------------------------------------------------------------------- readout


def test_readout_without_hooks_equals_label_logprobs(tiny_llama, tiny_prompts):
    ref = label_logprobs(tiny_llama, tiny_prompts, batch_size=5, progress=False)
    for engine in ("plain", "bridge"):
        got = readout_with_hooks(tiny_llama, tiny_prompts, [], 5, engine, progress=False)
        np.testing.assert_allclose(got, ref, atol=1e-4)


@pytest.mark.parametrize("site", ["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out"])
def test_plain_and_bridge_readouts_agree_under_hooks(tiny_llama, tiny_prompts, site):
    hooks = steering_hooks(
        tiny_llama, _direction(64, 1), 3.0, [0, 1], site=site, scale="rms", positions="all"
    )
    plain = readout_with_hooks(tiny_llama, tiny_prompts, hooks, 5, "plain", progress=False)
    bridge = readout_with_hooks(tiny_llama, tiny_prompts, hooks, 5, "bridge", progress=False)
    clean = readout_with_hooks(tiny_llama, tiny_prompts, [], 5, "plain", progress=False)
    np.testing.assert_allclose(plain, bridge, atol=1e-4)
    assert np.abs(plain - clean).max() > 1e-2  # the hook did something


def test_readout_many_fast_path_equals_one_readout_per_set(tiny_llama, tiny_prompts):
    d = _direction(64, 2)
    sets = [
        [],
        steering_hooks(tiny_llama, d, 4.0, 0),
        steering_hooks(tiny_llama, -d, 2.0, [0, 1], scale="rms"),
        steering_hooks(tiny_llama, d, 5.0, 1, site="attn_out"),
        steering_hooks(tiny_llama, d, 3.0, [0, 1], site="resid_mid", scale="rms"),
    ]
    fast = readout_many(tiny_llama, tiny_prompts, sets, batch_size=5, progress=False)
    slow = readout_many(
        tiny_llama, tiny_prompts, sets, batch_size=5, engine="plain", progress=False
    )
    assert fast.shape == (5, len(tiny_prompts), len(tiny_prompts.label_tokens.labels))
    np.testing.assert_allclose(fast, slow, atol=1e-4)
    assert np.abs(fast[1] - fast[0]).max() > 1e-2


def test_unsupported_hook_names_use_the_bridge(tiny_llama, tiny_prompts):
    def zero_head(z, hook):
        z = z.clone()
        z[:, :, 0] = 0.0
        return z

    hooks = [("blocks.1.attn.hook_z", zero_head)]
    assert resolve_intervention_engine(tiny_llama, hooks) == "bridge"
    with pytest.raises(InterventionError, match="plain engine"):
        resolve_intervention_engine(tiny_llama, hooks, "plain")
    out = readout_many(tiny_llama, tiny_prompts, [[], hooks], batch_size=6, progress=False)
    assert np.abs(out[1] - out[0]).max() > 0


def test_gpt2_models_run_on_the_bridge(tiny_gpt2, rows):
    prompts = build_prompts(tiny_gpt2, rows.texts, rows.labels, rows.label_names, "emotion-list")
    hooks = steering_hooks(tiny_gpt2, _direction(64, 3), 3.0, 1)
    assert resolve_intervention_engine(tiny_gpt2, hooks) == "plain"  # GPT-2 has an adapter
    got = readout_many(tiny_gpt2, prompts, [[], hooks], batch_size=6, progress=False)
    np.testing.assert_allclose(got[0], label_logprobs(tiny_gpt2, prompts, 6, False), atol=1e-4)
    text = generate_with_hooks(tiny_gpt2, rows.texts[:2], hooks, 3, progress=False)
    assert len(text) == 2


# --------------------------------------------------------------------------- resid_mid


def _keep(store, key):
    def hook(act, hook=None):
        store[key] = act.detach().clone()

    return hook


def _resid_mid_edit_check(model, prompts, layer, delta, engine):
    """Edit resid_mid by delta at every position; return (observed, expected, alias) resid_post.

    ``expected`` is computed explicitly: the captured clean resid_mid plus delta, plus the
    layer's MLP (the plain transformers modules: post-attention norm, then MLP) applied to it.
    ``alias`` is what the bridge's own ``hook_resid_mid`` edit gives (the MLP input only).
    """
    mid_name, post_name = model.hook_name("resid_mid", layer), model.hook_name("resid_post", layer)
    got = {}
    clean = [(mid_name, _keep(got, "mid")), (post_name, _keep(got, "clean_post"))]
    readout_with_hooks(model, prompts, clean, len(prompts), engine, progress=False)
    hooks = steering_hooks(model, delta, float(delta.norm()), layer, "resid_mid", positions="all")
    readout_with_hooks(
        model, prompts, hooks + [(post_name, _keep(got, "post"))], len(prompts), engine, False
    )

    def add(act, hook=None):
        return act + delta.to(act.dtype)

    # The bridge's own hook_resid_mid, run directly (the runners here would rewrite it).
    (order,) = length_batches(prompts.lengths, len(prompts))  # the runners' batch order
    ids, mask = model.pad([prompts.token_ids[i] for i in order])
    with torch.inference_mode():
        model.bridge.run_with_hooks(
            ids, attention_mask=mask, fwd_hooks=[(mid_name, add), (post_name, _keep(got, "alias"))]
        )
    block = model.plain_model.model.layers[layer]
    with torch.no_grad():
        edited = got["mid"] + delta
        expected = edited + block.mlp(block.post_attention_layernorm(edited))
    return got["post"], expected, got["alias"], got["clean_post"]


@pytest.mark.parametrize("engine", ["bridge", "plain"])
def test_resid_mid_edit_moves_the_residual_stream(tiny_llama, tiny_prompts, engine):
    """An edit of delta at resid_mid of layer l reaches resid_post of layer l as delta plus the
    MLP's response (explicit computation); the bridge's own alias misses the delta itself."""
    prompts = tiny_prompts
    for layer in range(tiny_llama.n_layers):
        delta = 0.5 * _direction(64, 20 + layer)
        observed, expected, alias, clean = _resid_mid_edit_check(
            tiny_llama, prompts, layer, delta, engine
        )
        np.testing.assert_allclose(observed, expected, atol=1e-4)
        assert (observed - clean).abs().max() > 0.1  # the edit did something
        # the alias edits only the MLP's input: it is off by the delta itself
        assert (alias - expected).abs().max() > 0.5 * float(delta.abs().max())
        np.testing.assert_allclose(alias + delta, expected, atol=1e-4)


def test_resid_mid_hooks_are_rewritten_once_and_read_the_true_value(tiny_llama, tiny_prompts):
    seen = {}

    def reader(act, hook=None):
        seen["name"] = hook.name
        seen["mid"] = act.detach().clone()

    hooks = residual_hooks(tiny_llama, [("blocks.1.hook_resid_mid", reader)])
    assert [name for name, _ in hooks] == ["blocks.1.hook_resid_pre", "blocks.1.hook_attn_out"]
    assert isinstance(hooks[0][1], ResidPreCapture) and isinstance(hooks[1][1], ResidMidHook)
    assert residual_hooks(tiny_llama, hooks) == hooks  # idempotent
    got = {}
    readout_with_hooks(
        tiny_llama,
        tiny_prompts,
        hooks + [("blocks.1.hook_resid_mid", _keep(got, "mid"))],
        len(tiny_prompts),
        "bridge",
        False,
    )
    assert seen["name"] == "blocks.1.hook_resid_mid"
    np.testing.assert_allclose(seen["mid"], got["mid"], atol=1e-6)  # captured values unchanged
    steer = steering_hooks(tiny_llama, _direction(64, 0), 1.0, [0, 1], site="resid_mid")
    assert [name for name, _ in steer] == [
        "blocks.0.hook_resid_pre",
        "blocks.0.hook_attn_out",
        "blocks.1.hook_resid_pre",
        "blocks.1.hook_attn_out",
    ]


def test_resid_mid_is_refused_where_it_is_not_resid_pre_plus_attn_out(tiny_llama, monkeypatch):
    monkeypatch.setitem(tiny_llama.__dict__, "_resid_mid_error", 0.3)
    with pytest.raises(ResidMidError, match="resid_mid = resid_pre \\+ attn_out"):
        steering_hooks(tiny_llama, _direction(64, 0), 1.0, 0, site="resid_mid")
    steering_hooks(tiny_llama, _direction(64, 0), 1.0, 0, site="resid_post")  # others still work


def test_gpt2_resid_mid_edit_reaches_resid_post(tiny_gpt2, rows):
    """GPT-2 blocks (LayerNorm, absolute positions) on the bridge: same residual semantics."""
    prompts = build_prompts(
        tiny_gpt2, rows.texts[:3], rows.labels[:3], rows.label_names, "emotion-list"
    )
    got = {}
    name = tiny_gpt2.hook_name
    delta = 0.5 * _direction(64, 30)
    readout_with_hooks(
        tiny_gpt2, prompts, [(name("resid_mid", 1), _keep(got, "mid"))], 3, "bridge", False
    )
    hooks = steering_hooks(tiny_gpt2, delta, float(delta.norm()), 1, "resid_mid", positions="all")
    readout_with_hooks(
        tiny_gpt2,
        prompts,
        hooks + [(name("resid_post", 1), _keep(got, "post"))],
        3,
        "bridge",
        False,
    )
    reads = [
        (name("resid_mid", 1), _keep(got, "mid_edited")),
        (name("mlp_out", 1), _keep(got, "mlp")),
    ]
    readout_with_hooks(tiny_gpt2, prompts, hooks + reads, 3, "bridge", False)
    np.testing.assert_allclose(got["mid_edited"], got["mid"] + delta, atol=1e-4)
    np.testing.assert_allclose(got["post"], got["mid"] + delta + got["mlp"], atol=1e-4)


# --------------------------------------------------------------------------- generation


@pytest.mark.parametrize(
    ("positions", "scale", "site"),
    [
        ("last", "none", "resid_post"),
        ("all", "none", "resid_post"),
        ("all", "rms", "resid_post"),
        ("last", "rms", "resid_mid"),
        ("all", "rms", "resid_mid"),
    ],
)
def test_cached_generation_equals_the_uncached_bridge_reference(
    tiny_llama, rows, positions, scale, site
):
    hooks = steering_hooks(
        tiny_llama, _direction(64, 4), 2.0, [0, 1], site, positions=positions, scale=scale
    )
    # sampling (same seed) spreads the random model's output over its vocabulary
    kwargs = dict(max_new_tokens=6, batch_size=4, progress=False, do_sample=True, seed=1)
    plain = generate_with_hooks(tiny_llama, rows.texts[:7], hooks, engine="plain", **kwargs)
    bridge = generate_with_hooks(tiny_llama, rows.texts[:7], hooks, engine="bridge", **kwargs)
    clean = generate_with_hooks(tiny_llama, rows.texts[:7], [], engine="plain", **kwargs)
    assert plain == bridge
    assert plain != clean  # the steering changed at least one continuation


def test_last_position_hooks_do_not_touch_generated_tokens(tiny_llama, rows):
    seen: list[int] = []

    class Counting(DirectionHook):
        def __call__(self, activation, hook=None):
            seen.append(activation.shape[1])
            return super().__call__(activation, hook)

    base = direction_hook(_direction(64, 5), 1.0, positions="last")
    hook = Counting(base.unit, base.beta, base.scale, "last", base.norm)
    generate_with_hooks(
        tiny_llama, rows.texts[:2], [("blocks.0.hook_resid_post", hook)], 5, progress=False
    )
    assert len(seen) == 1 and seen[0] > 1  # the prompt pass only, never a one-token step
    seen.clear()
    every = Counting(base.unit, base.beta, base.scale, "all", base.norm)
    generate_with_hooks(
        tiny_llama, rows.texts[:2], [("blocks.0.hook_resid_post", every)], 5, progress=False
    )
    assert seen[0] > 1 and seen[1:] == [1] * (len(seen) - 1) and len(seen) >= 2


def test_sampling_is_seeded_and_arguments_are_checked(tiny_llama, rows):
    kwargs = dict(max_new_tokens=5, do_sample=True, progress=False)
    a = generate_with_hooks(tiny_llama, rows.texts[:4], [], seed=7, **kwargs)
    b = generate_with_hooks(tiny_llama, rows.texts[:4], [], seed=7, **kwargs)
    c = generate_with_hooks(tiny_llama, rows.texts[:4], [], seed=8, **kwargs)
    assert a == b and a != c
    with pytest.raises(InterventionError, match="max_new_tokens"):
        generate_with_hooks(tiny_llama, rows.texts[:1], [], max_new_tokens=0)
    with pytest.raises(InterventionError, match="temperature"):
        generate_with_hooks(tiny_llama, rows.texts[:1], [], do_sample=True, temperature=0.0)


# --------------------------------------------------------------------------- real SmolLM2


@pytest.fixture(scope="module")
def real_rows(crowd_envent):
    return crowd_envent.sample(6, seed=11)


@pytest.mark.integration
def test_smollm2_hooked_readouts_agree_across_engines_on_real_rows(smollm2, real_rows):
    prompts = build_prompts(
        smollm2, real_rows.texts, real_rows.labels, real_rows.label_names, "emotion-list"
    )
    d = _direction(smollm2.d_model, 6)
    hooked = steering_hooks(smollm2, d, 8.0, 12) + steering_hooks(smollm2, d, -1.0, 20, scale="rms")
    sets = [[], hooked]
    fast = readout_many(smollm2, prompts, sets, batch_size=5, progress=False)
    bridge = readout_many(smollm2, prompts, sets, batch_size=5, engine="bridge", progress=False)
    np.testing.assert_allclose(fast, bridge, atol=2e-3)
    np.testing.assert_allclose(fast[0], label_logprobs(smollm2, prompts, 5, False), atol=1e-4)
    assert np.abs(fast[1] - fast[0]).max() > 0.05


@pytest.mark.integration
def test_smollm2_generation_matches_transformers_and_the_bridge(smollm2, real_rows):
    tok = smollm2.tokenizer
    prompts = [
        tok.apply_chat_template(
            [{"role": "user", "content": f"Describe how you felt when this happened: {t}"}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for t in real_rows.texts[:2]
    ]
    kwargs = dict(max_new_tokens=8, add_special_tokens=False, progress=False)
    ours = generate_with_hooks(smollm2, prompts, [], batch_size=2, **kwargs)
    # transformers' own greedy generate, on the original checkpoint (unfolded weights), same
    # left-padded batch: independent code and weights
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(smollm2.path, dtype=torch.float32).eval()
    ids, mask = smollm2.pad(smollm2.encode(prompts, add_special_tokens=False))
    with torch.inference_mode():
        ref = hf.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    del hf
    decoded = [tok.decode(row[ids.shape[1] :], skip_special_tokens=True) for row in ref]
    assert ours == decoded
    hooks = steering_hooks(
        smollm2, _direction(smollm2.d_model, 7), 0.5, [8, 9], scale="rms", positions="all"
    )
    plain = generate_with_hooks(smollm2, prompts, hooks, engine="plain", **kwargs)
    bridge = generate_with_hooks(smollm2, prompts, hooks, engine="bridge", **kwargs)
    assert plain == bridge and plain != ours


@pytest.mark.integration
def test_smollm2_resid_mid_edit_moves_the_residual_stream(smollm2, real_rows):
    """On SmolLM2, both engines: an edit at resid_mid of layer 14 reaches resid_post of layer 14
    as delta plus the MLP's response (explicit computation), unlike the bridge's alias."""
    prompts = build_prompts(
        smollm2, real_rows.texts[:2], real_rows.labels[:2], real_rows.label_names, "emotion-list"
    )
    delta = 2.0 * _direction(smollm2.d_model, 40)
    for engine in ("bridge", "plain"):
        observed, expected, alias, clean = _resid_mid_edit_check(
            smollm2, prompts, 14, delta, engine
        )
        scale = float(expected.abs().max())
        np.testing.assert_allclose(observed, expected, atol=1e-4 * scale)
        assert (alias - expected).abs().max() > 0.5 * float(delta.abs().max())
        assert (observed - clean).abs().max() > 0.5 * float(delta.abs().max())
