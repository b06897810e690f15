"""Attention mass by token group: sums, agreement with the patterns, frames, files, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from lens_emotion.attention import (
    MASS_GROUPS,
    AttentionError,
    attention_mass,
    bootstrap_ci,
    layer_bands,
)


@pytest.fixture(scope="module")
def tiny_mass(tiny_llama, small_data):
    return attention_mass(tiny_llama, small_data, n_boot=200, progress=False, keep_patterns=True)


def test_group_masses_sum_to_one(tiny_mass):
    mass = tiny_mass.mass
    assert mass.shape == (6, 2, 4, len(MASS_GROUPS))
    np.testing.assert_allclose(mass[..., :4].sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(mass[..., 4] + mass[..., 5], mass[..., 2], atol=1e-6)
    counts = tiny_mass.n_tokens
    assert np.all(counts[:, 0] == 1) and np.all(counts[:, 3] == 1)
    assert np.all(counts[:, 4] + counts[:, 5] == counts[:, 2])
    np.testing.assert_allclose(tiny_mass.per_token[..., 0], mass[..., 0])


def test_mass_agrees_with_the_kept_patterns(tiny_mass):
    pats, groups = tiny_mass.patterns, tiny_mass.groups
    for i in range(len(tiny_mass)):
        ctx = pats.pattern(i)[..., groups[i].groups == 2].sum(-1)
        np.testing.assert_allclose(tiny_mass.mass[i, ..., 2], ctx, atol=1e-6)


def test_mass_frames_figures_and_files(tiny_mass, tmp_path):
    frame = tiny_mass.to_frame()
    assert set(frame.normalise) == {"total", "per_token"}
    assert len(frame) == 2 * 2 * len(MASS_GROUPS)
    assert (frame.ci_low <= frame["mean"] + 1e-12).all() and (
        frame["mean"] <= frame.ci_high + 1e-12
    ).all()
    bands = tiny_mass.band_frame()
    assert "emotion_enrichment" in set(bands.group)
    assert len(tiny_mass.head_frame()) == 2 * 2 * 4 * len(MASS_GROUPS)
    fig = tiny_mass.figure("per_token")
    assert "per token" in fig.layout.title.text
    assert any(t.fill == "toself" for t in fig.data)  # CI bands
    assert "total" in tiny_mass.figure().layout.title.text
    heat = tiny_mass.heatmap("emotion")
    assert np.asarray(heat.data[0].z).shape == (2, 4)
    with pytest.raises(AttentionError):
        tiny_mass.figure("relative")
    paths = tiny_mass.save(tmp_path)
    names = {p.name for p in paths}
    assert {"attention_mass_layers.csv", "attention_mass.json", "saliency.csv"} <= names
    assert all(p.is_file() for p in paths)
    summary = tiny_mass.summary()
    assert summary["emotion_tokens"]["top_frac"] == 0.2


def test_bootstrap_is_seeded():
    values = np.random.default_rng(3).normal(size=(40, 3))
    a, b = bootstrap_ci(values, seed=7), bootstrap_ci(values, seed=7)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    mean, low, high = a
    assert np.all(low < mean) and np.all(mean < high)
    assert layer_bands(30) == {
        "early": tuple(range(10)),
        "middle": tuple(range(10, 20)),
        "late": tuple(range(20, 30)),
    }


@pytest.mark.integration
def test_smollm2_attention_mass(smollm2, real_rows):
    result = attention_mass(smollm2, real_rows, layers=[0, 14, 29], n_boot=100, progress=False)
    np.testing.assert_allclose(result.mass[..., :4].sum(-1), 1.0, atol=1e-4)
    assert result.mass.shape == (4, 3, 9, len(MASS_GROUPS))
    assert set(result.band_frame().band) == {"early", "middle", "late"}
