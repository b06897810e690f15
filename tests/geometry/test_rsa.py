import numpy as np
import pytest
from scipy.stats import binom, spearmanr

from lens_emotion.geometry import (
    GeometryError,
    appraisal_similarity,
    cosine_similarity_matrix,
    emotion_vectors,
    representational_similarity,
    rsa_test,
)

from .conftest import EMOTIONS, planted


def _random_sim(rng, k=13, d=8):
    return cosine_similarity_matrix(rng.normal(size=(k, d)))


def test_rho_is_spearman_over_the_upper_triangle():
    rng = np.random.default_rng(0)
    a, b = _random_sim(rng), _random_sim(rng)
    i, j = np.triu_indices(13, 1)
    rho, p = rsa_test(a, b, n_perm=0)
    assert rho == pytest.approx(spearmanr(a[i, j], b[i, j])[0])
    assert np.isnan(p)


def test_permutation_p_is_calibrated_under_the_null():
    """Independent model and human geometries: P(p <= 0.05) must be about 0.05."""
    rng = np.random.default_rng(123)
    n_sims, n_perm = 400, 199
    pvalues = np.array(
        [rsa_test(_random_sim(rng), _random_sim(rng), n_perm, seed=s)[1] for s in range(n_sims)]
    )
    rate = np.mean(pvalues <= 0.05)
    low, high = binom.ppf([0.0005, 0.9995], n_sims, 0.05) / n_sims  # 99.9% binomial band
    assert low <= rate <= high, rate
    # and p is roughly uniform elsewhere too
    assert 0.4 <= np.mean(pvalues <= 0.5) <= 0.6


def test_permutation_p_detects_a_shared_geometry():
    rng = np.random.default_rng(1)
    base = rng.normal(size=(13, 8))
    model = cosine_similarity_matrix(base + 0.3 * rng.normal(size=base.shape))
    human = cosine_similarity_matrix(base)
    rho, p = rsa_test(model, human, 499, seed=0)
    assert rho > 0.6 and p <= 0.01


def test_rsa_is_invariant_to_emotion_order():
    acts, labels, ratings, *_ = planted(strength=(0.0, 1.0, 2.0))
    rng = np.random.default_rng(0)
    profiles = rng.uniform(1, 5, (13, 21))
    profiles[:, 0] = ratings.emotion_valence()  # a profile that shares the valence axis
    vec = emotion_vectors(acts, labels, EMOTIONS, [0, 1, 2])
    base = representational_similarity(vec, profiles, n_perm=199, seed=3)
    order = list(rng.permutation(13))
    shuffled_emotions = [EMOTIONS[i] for i in order]
    vec2 = emotion_vectors(acts, labels, shuffled_emotions, [0, 1, 2])
    again = representational_similarity(
        vec2, profiles[order], n_perm=199, seed=3, emotions=shuffled_emotions
    )
    np.testing.assert_array_equal(base.table.value.to_numpy(), again.table.value.to_numpy())
    assert base.emotions == again.emotions == tuple(sorted(EMOTIONS))


def test_appraisal_similarity_ignores_an_appraisal_constant_over_emotions():
    rng = np.random.default_rng(0)
    profiles = rng.normal(size=(5, 4))
    shifted = profiles.copy()
    shifted[:, 2] += 10.0
    np.testing.assert_allclose(appraisal_similarity(profiles), appraisal_similarity(shifted))


def test_rsa_result_protocol_and_errors(tmp_path):
    acts, labels, ratings, *_ = planted()
    vec = emotion_vectors(acts, labels, EMOTIONS, [0, 1, 2])
    result = representational_similarity(vec, ratings.appraisal_profiles(), n_perm=49)
    assert set(result.table.measure) == {"rsa_rho", "rsa_p"}
    assert [p.name for p in result.save(tmp_path)] == ["rsa_mean.csv", "rsa_human_similarity.csv"]
    assert len(result.figure().data) == 1
    assert 0 <= result.summary()["peak_rsa_layer"] <= 2
    with pytest.raises(GeometryError, match="profile"):
        representational_similarity(vec, ratings.appraisal_profiles()[:5])
