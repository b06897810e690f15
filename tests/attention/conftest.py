"""Shared fixtures of the attention tests: a few sample rows, their prompts and token groups."""

from __future__ import annotations

import pytest

from lens_emotion.attention import token_groups
from lens_emotion.prompts import build_prompts


@pytest.fixture(scope="module")
def small_data(sample_dataset):
    return sample_dataset.sample(6, seed=1)


@pytest.fixture(scope="module")
def tiny_setup(tiny_llama, small_data):
    prompt_set = build_prompts(
        tiny_llama, small_data.texts, small_data.labels, small_data.label_names, "emotion-list"
    )
    return prompt_set, token_groups(tiny_llama, prompt_set, small_data.texts)


@pytest.fixture(scope="module")
def real_rows(crowd_envent):
    return crowd_envent.sample(4, seed=5)


@pytest.fixture(scope="module")
def real_setup(smollm2, real_rows):
    prompt_set = build_prompts(
        smollm2, real_rows.texts, real_rows.labels, real_rows.label_names, "emotion-list"
    )
    return prompt_set, token_groups(smollm2, prompt_set, real_rows.texts)
