"""Shared pieces of the attribution tests: real-row pairs, one component's estimates, finite
differences, and the tiny-model pairs and AtP result."""

from __future__ import annotations

import numpy as np
import pytest

from lens_emotion.attribution import HEAD_SITE, attribution_patch, interpolation_patch
from lens_emotion.prompts import build_prompts


def pairs_from_rows(model, dataset, n_pairs, template="emotion-list", equal_length=False):
    """Source/target prompts from real rows with different human labels (metric: human labels).

    The shortest prompts are used (speed). With ``equal_length`` every pair's two prompts have
    the same number of tokens (what TransformerLens's ``attribution_patch`` requires).
    """
    prompts = build_prompts(model, dataset.texts, dataset.labels, dataset.label_names, template)
    token_ids = prompts.label_tokens.token_ids
    order = np.argsort([len(t) for t in prompts.token_ids], kind="stable")
    used: set[int] = set()
    pairs = []
    for a in order:
        for b in order:
            if len(pairs) == n_pairs:
                break
            if a == b or a in used or b in used:
                continue
            if prompts.targets[a] == prompts.targets[b]:
                continue
            if equal_length and len(prompts.token_ids[a]) != len(prompts.token_ids[b]):
                continue
            pairs.append((int(a), int(b)))
            used.update((int(a), int(b)))
    assert len(pairs) == n_pairs, "not enough rows to form the pairs"
    return {
        "source_tokens": [prompts.token_ids[a] for a, _ in pairs],
        "target_tokens": [prompts.token_ids[b] for _, b in pairs],
        "source_label_ids": [token_ids[prompts.targets[a]] for a, _ in pairs],
        "target_label_ids": [token_ids[prompts.targets[b]] for _, b in pairs],
    }


def component(result, site, layer, head=None):
    if site == HEAD_SITE:
        return result.head_effects[:, result.layers.index(layer), head]
    return result.site(site)[:, result.layers.index(layer)]


def central_difference(model, pairs, site, layer, head=None, h=1e-2):
    minus, plus = interpolation_patch(
        model, **pairs, site=site, layer=layer, head=head, alphas=(-h, h)
    )
    return (plus - minus) / (2 * h)


@pytest.fixture(scope="session")
def tiny_pairs(tiny_llama, sample_dataset):
    return pairs_from_rows(tiny_llama, sample_dataset.sample(24, seed=0), 3)


@pytest.fixture(scope="session")
def tiny_atp(tiny_llama, tiny_pairs):
    return attribution_patch(tiny_llama, **tiny_pairs, batch_size=2, progress=False)
