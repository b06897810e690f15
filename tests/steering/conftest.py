"""Shared fixtures of the steering tests: appraisal and emotion probes on real SmolLM2 rows."""

import pytest


def first_prompts(prompts, n):
    """The first ``n`` prompts of a :class:`~lens_emotion.prompts.PromptSet`."""
    return prompts.__class__(
        prompts.template,
        prompts.prompts[:n],
        prompts.token_ids[:n],
        prompts.label_tokens,
        prompts.targets[:n],
    )


@pytest.fixture(scope="package")
def real_probes(smollm2, crowd_envent, tmp_path_factory):
    from lens_emotion.activations import extract_activations
    from lens_emotion.probing import probe_appraisals, probe_emotions
    from lens_emotion.prompts import build_prompts

    rows = crowd_envent.sample(40, seed=5)
    prompts = build_prompts(smollm2, rows.texts, rows.labels, rows.label_names, "emotion-list")
    store = extract_activations(
        smollm2,
        prompts,
        sites=["resid_post"],
        layers=[12],
        dataset=rows,
        out_dir=tmp_path_factory.mktemp("steer_store"),
        progress=False,
    )
    appraisal = probe_appraisals(
        store,
        rows.appraisals,
        rows.appraisal_names,
        alpha=[10.0, 100.0, 1000.0],
        n_folds=3,
        progress=False,
        num_threads=1,
    )
    emotion = probe_emotions(
        store, rows.labels, rows.label_names, n_folds=2, progress=False, num_threads=1
    )
    return rows, prompts, store, appraisal, emotion
