import pytest

from lens_emotion.data import CROWD_ENVENT_EMOTIONS
from lens_emotion.errors import LabelTokenError, TemplateError
from lens_emotion.prompts import (
    TEMPLATES,
    PromptTemplate,
    build_prompts,
    first_word_labels,
    first_word_scorable,
    get_template,
    register_template,
    resolve_label_tokens,
)

CROWD_LABELS = list(CROWD_ENVENT_EMOTIONS)


def test_registry_has_required_templates():
    assert {"paper", "emotion-list", "zero-shot", "chat", "control-first-word"} <= set(TEMPLATES)


def test_paper_template_format():
    prompt = get_template("paper").render("My cat came back.", CROWD_LABELS)
    assert prompt.startswith("What are the inferred emotions in the following contexts?")
    assert "Answer: joy" in prompt and "Answer: sadness" in prompt
    assert prompt.endswith("Context: My cat came back.\nAnswer:")
    assert "anger" not in prompt  # the paper format does not list labels


def test_emotion_list_names_every_label():
    prompt = get_template("emotion-list").render("x y", CROWD_LABELS)
    assert ", ".join(CROWD_LABELS) in prompt


def test_register_and_errors():
    custom = PromptTemplate(name="test-custom", description="d", text="Q: {text}\nA:")
    register_template(custom)
    try:
        assert get_template("test-custom") is custom
        with pytest.raises(TemplateError, match="already exists"):
            register_template(custom)
    finally:
        TEMPLATES.pop("test-custom")
    with pytest.raises(TemplateError, match="no \\{text\\}"):
        register_template(PromptTemplate(name="bad", description="d", text="no slot"))
    with pytest.raises(TemplateError, match="Known templates"):
        get_template("nope")


def test_fingerprint_changes_with_text():
    a = PromptTemplate(name="a", description="d", text="Q: {text}")
    b = PromptTemplate(name="a", description="d", text="Q2: {text}")
    assert a.fingerprint() != b.fingerprint()


def test_chat_template_needs_tokenizer_chat_template(tiny_llama):
    chat = get_template("chat")
    prompt = chat.render("It rained.", CROWD_LABELS, tiny_llama.tokenizer)
    assert "It rained." in prompt and prompt.endswith("assistant\n")

    class NoChat:
        chat_template = None

    with pytest.raises(TemplateError, match="chat template"):
        chat.render("It rained.", CROWD_LABELS, NoChat())


def test_label_tokens_single_and_distinct(tiny_llama):
    tokens = resolve_label_tokens(tiny_llama.tokenizer, CROWD_LABELS)
    assert len(set(tokens.token_ids)) == len(CROWD_LABELS)
    for label, text in zip(CROWD_LABELS, tokens.token_strings, strict=True):
        assert text.strip() and label.startswith(text.strip())


def test_multi_token_labels_are_reported(tiny_llama):
    tokens = resolve_label_tokens(tiny_llama.tokenizer, ["joy", "xqzvw"])
    assert "xqzvw" in tokens.multi_token_labels
    assert "joy" not in tokens.multi_token_labels
    assert tokens.describe()["multi_token_labels"] == tokens.multi_token_labels


def test_colliding_labels_fail_clearly(tiny_llama):
    with pytest.raises(LabelTokenError, match="share their first token"):
        resolve_label_tokens(tiny_llama.tokenizer, ["joy", "joyxqzv"])
    with pytest.raises(LabelTokenError, match="Duplicate"):
        resolve_label_tokens(tiny_llama.tokenizer, ["joy", "joy"])
    with pytest.raises(LabelTokenError, match="empty"):
        resolve_label_tokens(tiny_llama.tokenizer, ["joy", " "])


def test_build_prompts_rejects_unknown_gold_label(tiny_llama):
    with pytest.raises(LabelTokenError, match="not among the candidate labels"):
        build_prompts(tiny_llama, ["a b"], ["rage"], CROWD_LABELS, "paper")


def test_control_task_uses_first_words(tiny_llama):
    texts = ["I lost my keys.", "My sister called.", "I won a prize."]
    labels = first_word_labels(texts, tiny_llama.tokenizer)
    assert labels[0] == labels[2]
    prompt_set = build_prompts(tiny_llama, texts, ["joy"] * 3, CROWD_LABELS, "control-first-word")
    assert prompt_set.label_tokens.labels == tuple(sorted(set(labels)))
    assert prompt_set.targets[0] == prompt_set.targets[2] != prompt_set.targets[1]


def test_digit_first_words_are_flagged_not_mislabelled(tiny_llama):
    # This tokenizer splits digits: " 16th" starts with a whitespace-only token.
    texts = ["16th of May was grim.", "I won a prize.", "2 friends left."]
    assert first_word_scorable(texts, tiny_llama.tokenizer) == [False, True, False]
    with pytest.raises(LabelTokenError, match="' 16th'.*control_rows"):
        first_word_labels(texts, tiny_llama.tokenizer)
    assert first_word_labels(texts[1:2], tiny_llama.tokenizer) == ["I"]


@pytest.mark.integration
def test_smollm2_crowd_labels_have_distinct_scored_tokens(smollm2):
    for template in ("paper", "chat"):
        tmpl = get_template(template)
        tokens = resolve_label_tokens(smollm2.tokenizer, CROWD_LABELS, tmpl.label_prefix)
        assert len(set(tokens.token_ids)) == 13
        # The scored token is the start of the label word itself.
        for label, text in zip(CROWD_LABELS, tokens.token_strings, strict=True):
            assert label.startswith(text.strip()) and text.strip()
