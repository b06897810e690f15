"""Unit tests of the issue-19 pieces on the tiny random model and synthetic data."""

import numpy as np
import pandas as pd
import pytest
import torch

from lens_emotion.circuits.ablation import ComponentMeans, ablation_sweep
from lens_emotion.circuits.capture import LastTokenActivations, capture_last_token
from lens_emotion.circuits.directions import EmotionDirections, direction_consistency
from lens_emotion.circuits.edits import ComponentEdit, ablation_edit, edit_hooks
from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.generation import judged_ablation
from lens_emotion.circuits.modulation import score_generations, summarise_generations
from lens_emotion.circuits.scoring import LastTokenScorer
from lens_emotion.circuits.sev_prompts import (
    DESCRIBED_EMOTIONS,
    build_sev_prompts,
    split_files,
    system_turn,
)
from lens_emotion.circuits.total_effect import total_effect_summary, total_effects
from lens_emotion.data import SEV_EMOTIONS
from lens_emotion.lexicon import EMOTION_WORD_FORMS, emotion_pattern, names_any_emotion


def test_described_instructions_name_no_emotion_of_the_lexicon():
    assert set(DESCRIBED_EMOTIONS) == set(SEV_EMOTIONS)
    every = emotion_pattern(None)
    for emotion in SEV_EMOTIONS:
        text = system_turn(emotion, "described")
        assert not names_any_emotion(text), (emotion, every.findall(text))
        words = {w.strip(".,").lower() for w in text.split()}
        for forms in EMOTION_WORD_FORMS.values():
            assert not words & {f.lower() for f in forms}
        # The named instruction does name it (the check is not vacuous).
        assert names_any_emotion(system_turn(emotion, "named"))
    with pytest.raises(CircuitError, match="instruction must be"):
        system_turn("anger", "hinted")
    with pytest.raises(CircuitError, match="no description"):
        system_turn("pride", "described")


def test_described_prompts_and_separate_files(tiny_llama, sev_sample):
    items = sev_sample.subset([0, 1])
    prompts = build_sev_prompts(tiny_llama, items, instruction="described")
    assert len(prompts) == 2 * 6
    for prompt, emotion in zip(prompts.prompts, prompts.emotion, strict=True):
        assert DESCRIBED_EMOTIONS[emotion] in prompt and "Always reply in" not in prompt
    ids = sorted(set(sev_sample.metadata.skeleton_id))
    a = sev_sample.filter(sev_sample.metadata.skeleton_id.isin(ids[:10]).to_numpy())
    b = sev_sample.filter(sev_sample.metadata.skeleton_id.isin(ids[10:]).to_numpy())
    disc, held = split_files(a, b, seed=0, n_discovery=4, n_evaluation=3)
    assert set(disc.metadata.skeleton_id) <= set(ids[:10])
    assert set(held.metadata.skeleton_id) <= set(ids[10:])
    assert len(set(held.metadata.skeleton_id)) == 3
    with pytest.raises(CircuitError, match="in both"):
        split_files(a, a.subset([0, 1]))


@torch.no_grad()
def test_position_means_average_every_real_position(tiny_llama, sev_sample):
    model = tiny_llama
    prompts = build_sev_prompts(model, sev_sample.subset([0, 5]), ["anger"])
    assert len(set(prompts.lengths)) == 2  # different lengths: left padding is exercised
    acts = capture_last_token(
        model, prompts.token_ids, ("z", "mlp_post"), batch_size=2, position_means=("z", "mlp_post")
    )
    z_sum, post_sum, n = 0.0, 0.0, 0
    for ids in prompts.token_ids:
        _, cache = model.bridge.run_with_cache(torch.tensor([ids]))
        z_sum = z_sum + torch.stack(
            [cache[f"blocks.{layer}.attn.hook_z"][0].double().sum(0) for layer in range(2)]
        )
        post_sum = post_sum + torch.stack(
            [cache[f"blocks.{layer}.mlp.hook_post"][0].double().sum(0) for layer in range(2)]
        )
        n += len(ids)
    assert acts.n_positions == n
    assert torch.allclose(acts.position_means["z"].double(), z_sum / n, atol=1e-4)
    assert torch.allclose(acts.position_means["mlp_post"].double(), post_sum / n, atol=1e-4)
    means = ComponentMeans.from_position_means(acts)
    assert means.positions == "all"
    # All-position means differ from last-token means (the fix is not a no-op).
    last = ComponentMeans.from_activations(acts)
    assert last.positions == "last" and not torch.allclose(last.head, means.head, atol=1e-3)
    with pytest.raises(CircuitError, match="position_means"):
        ComponentMeans.from_position_means(LastTokenActivations(z=acts.z, mlp_post=acts.mlp_post))
    with pytest.raises(CircuitError, match="among the captured sites"):
        capture_last_token(model, prompts.token_ids, ("z",), position_means=("mlp_post",))


def _tiny_pieces(model, sev_sample):
    from lens_emotion.circuits.components import (
        head_output_weights,
        mlp_output_weights,
        score_components,
    )
    from lens_emotion.circuits.directions import compute_directions

    prompts = build_sev_prompts(model, sev_sample.subset(list(range(6))))
    acts = capture_last_token(model, prompts.token_ids, batch_size=36)
    directions = compute_directions(acts, prompts.emotion, prompts.group)
    scores = score_components(
        acts,
        prompts.emotion,
        prompts.group,
        directions,
        head_output_weights(model),
        mlp_output_weights(model),
    )
    means = ComponentMeans.from_activations(acts, prompts.emotion, prompts.group, SEV_EMOTIONS)
    return prompts, directions, scores, means


@torch.no_grad()
def test_total_effects_equal_explicit_full_passes(tiny_llama, sev_sample):
    model = tiny_llama
    prompts, directions, scores, means = _tiny_pieces(model, sev_sample)
    rows = [i for i, e in enumerate(prompts.emotion) if e == "fear"][:3]
    token_ids = [prompts.token_ids[i] for i in rows]
    scorer = LastTokenScorer(model, token_ids)
    table = total_effects({"fear": scorer}, scores, directions, means, {"head": None, "neuron": 5})
    heads = table[table.component_type == "head"]
    assert len(heads) == 2 * 4 and set(heads.n_measured) == {8}
    assert len(table[table.component_type == "neuron"]) == 5
    assert sorted(heads.total_rank) == list(range(1, 9))
    readout = directions.vector("fear", "resid_post", -1).double()

    def final_score(edit):
        ids, mask = model.pad(token_ids)
        seen = {}

        def keep(act, hook):
            seen["x"] = act[:, -1].double()

        hooks = edit_hooks(model, edit, positions="last")
        hooks.append((model.hook_name("resid_post", 1), keep))
        model.bridge.run_with_hooks(ids, attention_mask=mask, fwd_hooks=hooks, return_type=None)
        return seen["x"] @ readout

    clean = final_score(ComponentEdit())
    assert table.total_effect.abs().max() > 1e-3  # the comparison below is not vacuous
    for row in table.sample(4, random_state=0).itertuples():
        edit = ablation_edit(
            row.component_type, [(row.layer, row.unit)], "mean", means.of(row.component_type)
        )
        expected = float((clean - final_score(edit)).mean())
        assert row.total_effect == pytest.approx(expected, abs=1e-4 + 1e-3 * abs(expected))
    with pytest.raises(CircuitError, match="last-token means"):
        total_effects(
            {"fear": scorer},
            scores,
            directions,
            ComponentMeans(means.head, means.neuron, "all"),
            {"head": 2},
        )


def test_total_effect_summary_compares_the_rankings():
    rows = []
    for unit in range(20):
        rows.append(
            {
                "emotion": "anger",
                "component_type": "head",
                "layer": 0,
                "unit": unit,
                "direct_rank": unit + 1,
                "direct_score": 20.0 - unit,
                "total_effect": float(unit),  # reversed: the direct top is the total bottom
                "n_components": 20,
            }
        )
    table = pd.DataFrame(rows)
    table["total_rank"] = table.total_effect.rank(ascending=False, method="first").astype(int)
    summary = total_effect_summary(table, top=4).iloc[0]
    assert summary.spearman == pytest.approx(-1.0)
    assert summary.top_overlap == 0 and summary.ranked_among == "all"
    same = table.assign(total_effect=table.direct_score)
    same["total_rank"] = same.direct_rank
    summary = total_effect_summary(same.assign(n_components=100), top=4).iloc[0]
    assert summary.spearman == pytest.approx(1.0) and summary.top_overlap == 4
    assert summary.ranked_among == "direct top-20"


def test_ablations_refuse_means_from_other_positions(tiny_llama, sev_sample, fake_judge):
    model = tiny_llama
    prompts, directions, scores, means = _tiny_pieces(model, sev_sample)
    scorer = LastTokenScorer(model, list(prompts.token_ids[:2]))
    everywhere = ComponentMeans(means.head, means.neuron, "all")
    with pytest.raises(CircuitError, match="last-token means"):
        ablation_sweep({"anger": scorer}, scores, directions, everywhere, {"head": [1]}, ("mean",))
    with pytest.raises(CircuitError, match="position-matched means"):
        judged_ablation(
            model, fake_judge, {"anger": prompts.subset([0])}, scores, means, {"head": 1}
        )
    table, gens = judged_ablation(
        model,
        fake_judge,
        {"anger": prompts.where("anger").subset([0, 1])},
        scores,
        everywhere,
        {"head": 1},
        max_new_tokens=3,
        n_boot=20,
    )
    edited = table[table.which != "none"]
    assert set(edited.ablation_means) == {"all positions"} and set(edited.edit_positions) == {"all"}
    assert set(table[table.which == "none"].edit_positions) == {"none (unedited)"}
    assert len(gens) == 3 * 2 and {"judged_masked", "judged_raw", "names_emotion"} <= set(gens)


def test_described_accuracy_can_fail():
    """Directions that encode only the instruction's word: named prompts 1.0, described chance."""
    rng = np.random.default_rng(0)
    d, n_layers = 32, 2
    words = torch.from_numpy(rng.normal(size=(6, d))).float() * 5
    emotions = [e for _ in range(8) for e in SEV_EMOTIONS]
    groups = [f"s{i}:neutral" for i in range(8) for _ in SEV_EMOTIONS]

    def acts(with_word):
        rows = []
        for e in emotions:
            x = torch.from_numpy(rng.normal(size=d)).float()
            if with_word:
                x = x + words[SEV_EMOTIONS.index(e)]
            rows.append(x)
        x = torch.stack(rows)[:, None].repeat(1, n_layers, 1)
        return LastTokenActivations(resid_mid=x, resid_post=x)

    discovery, named, described = acts(True), acts(True), acts(False)
    from lens_emotion.circuits.directions import compute_directions

    directions = compute_directions(discovery, emotions, groups)
    assert isinstance(directions, EmotionDirections)
    table = direction_consistency(
        discovery,
        emotions,
        groups,
        ["t"] * len(emotions),
        ["neutral"] * len(emotions),
        directions,
        named,
        emotions,
        described,
        emotions,
        min_groups=1,
    )
    assert (table.heldout_accuracy == 1.0).all()
    assert (table.heldout_accuracy_described < 0.45).all()
    assert "heldout_accuracy_group_centered" not in table


def test_summarise_generations_puts_the_masked_judge_first(fake_judge):
    replies = ["Anger! [x]", "I am so angry today, really.", "", "The sky is wide and blue."] * 2
    targets = ["anger"] * 8
    extra = {"method": ["a"] * 4 + ["b"] * 4, "skeleton_id": ["s1", "s1", "s2", "s2"] * 2}
    gens = score_generations(fake_judge, replies, targets, extra)
    assert gens.names_emotion.tolist()[:4] == [True, True, False, False]
    table = summarise_generations(gens, ["method"], n_boot=100, seed=0)
    assert list(table.columns[:5]) == ["method", "n", "judged_masked", "ci_low", "ci_high"]
    assert ((table.ci_low <= table.judged_masked) & (table.judged_masked <= table.ci_high)).all()
    assert (table.names_emotion == 0.5).all()
    assert set(table.judges_note) == {"no second judge"}
