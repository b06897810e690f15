import plotly.graph_objects as go

from lens_emotion.geometry import emotion_vectors, representational_similarity, valence_geometry
from lens_emotion.geometry import figures as figs

from .conftest import EMOTIONS, planted


def test_every_figure_is_built_from_a_result_alone():
    acts, labels, ratings, *_ = planted()
    vec = emotion_vectors(acts, labels, EMOTIONS, [0, 1, 2])
    pca = valence_geometry(vec, ratings, acts, n_boot=20)
    rsa = representational_similarity(vec, ratings.appraisal_profiles(), n_perm=9)
    scatter = figs.pc_scatter_figure(pca, "resid_post", 2)
    assert isinstance(scatter, go.Figure)
    assert list(scatter.data[0].text) == list(EMOTIONS)
    assert list(scatter.data[0].marker.color) == list(ratings.emotion_valence())
    curves = figs.correlation_figure(pca)
    names = [t.name for t in curves.data if t.showlegend is not False]
    assert any("valence" in n for n in names) and any("arousal" in n for n in names)
    assert any(t.fill == "toself" for t in curves.data)  # the CI bands
    assert len(figs.rsa_figure(rsa).data) == 1
    assert figs.vector_norms_figure(vec).data[0].type == "heatmap"
