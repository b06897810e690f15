import pytest

from lens_emotion.circuits.errors import CircuitError
from lens_emotion.circuits.sev_prompts import (
    EMOTION_SYSTEM,
    NEUTRAL_SYSTEM,
    build_sev_prompts,
    one_valence_per_scenario,
    render_sev_prompt,
    split_scenarios,
)
from lens_emotion.data import SEV_EMOTIONS

pytestmark = pytest.mark.integration


def test_prompts_cross_items_with_emotions_in_the_chat_template(smollm2, sev_items):
    items = sev_items.subset([0, 1, 2])
    prompts = build_sev_prompts(smollm2, items, [*SEV_EMOTIONS, None])
    assert len(prompts) == 3 * 7
    assert prompts.emotion[:7] == (*SEV_EMOTIONS, None)
    for prompt, emotion, text in zip(prompts.prompts, prompts.emotion, prompts.text, strict=True):
        assert text in prompt
        if emotion is None:
            assert NEUTRAL_SYSTEM in prompt and "Always reply in" not in prompt
        else:
            assert EMOTION_SYSTEM.format(emotion=emotion) in prompt
    # Every prompt ends with the assistant header; tokens are the model's own, no extra BOS.
    tail = smollm2.tokenizer.convert_ids_to_tokens(list(prompts.token_ids[0][-4:]))
    assert "".join(tail).startswith("<|im_start|>assistant")
    assert prompts.token_ids[0] == tuple(smollm2.encode([prompts.prompts[0]], False)[0])
    assert len(set(prompts.group)) == 3
    assert prompts.where("fear").emotion == ("fear",) * 3


def test_split_is_grouped_by_skeleton_and_seeded(sev_items):
    disc, held = split_scenarios(sev_items, seed=3)
    ids_d, ids_h = set(disc.metadata.skeleton_id), set(held.metadata.skeleton_id)
    assert not ids_d & ids_h
    assert len(ids_d) + len(ids_h) == 160
    assert len(held) == 3 * len(ids_h)  # every valence of a held-out scenario
    again = split_scenarios(sev_items, seed=3)[1]
    assert set(again.metadata.skeleton_id) == ids_h
    other = split_scenarios(sev_items, seed=4)[1]
    assert set(other.metadata.skeleton_id) != ids_h
    # Subsetting draws from the same held-out part.
    small_d, small_h = split_scenarios(sev_items, seed=3, n_discovery=5, n_evaluation=4)
    assert set(small_h.metadata.skeleton_id) <= ids_h
    assert set(small_d.metadata.skeleton_id) <= ids_d
    assert len(set(small_d.metadata.skeleton_id)) == 5
    assert len(set(small_h.metadata.skeleton_id)) == 4


def test_one_valence_per_scenario_is_balanced(sev_items):
    items = split_scenarios(sev_items, seed=0, n_evaluation=12)[1]
    one = one_valence_per_scenario(items, seed=1)
    assert len(one) == 12
    assert len(set(one.metadata.skeleton_id)) == 12
    assert sorted(one.metadata.valence.value_counts().tolist()) == [4, 4, 4]


def test_bad_inputs_raise(smollm2, sev_items):
    from lens_emotion.data import load_sev

    crossed = load_sev(sev_items.source, cross_emotions=True)
    with pytest.raises(CircuitError, match="without emotion crossing"):
        build_sev_prompts(smollm2, crossed.subset([0]))

    class NoTemplate:  # a base model's tokenizer: the plain-text format, with a warning
        chat_template = None
        bos_token = "<bos>"

    from lens_emotion.prompts import PlainPromptWarning

    with pytest.warns(PlainPromptWarning, match="no chat template"):
        plain = render_sev_prompt(NoTemplate(), "text", "anger")
    assert (
        plain == "<bos>Instructions: Always reply in anger. Keep the reply to at most two "
        "sentences.\n\nUser: text\n\nReply:"
    )
