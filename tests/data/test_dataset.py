import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from lens_emotion.data import EmotionDataset, stratified_indices
from lens_emotion.errors import DataError

LABELS = ("a", "b", "c")


def make(n: int = 60, with_appraisals: bool = True, **overrides) -> EmotionDataset:
    labels = tuple(LABELS[i % 3] if i < 54 else "a" for i in range(n))
    kwargs = dict(
        name="toy",
        ids=tuple(f"id{i}" for i in range(n)),
        texts=tuple(f"text number {i}" for i in range(n)),
        labels=labels,
        label_names=LABELS,
        appraisals=np.arange(n * 2, dtype=np.float64).reshape(n, 2) if with_appraisals else None,
        appraisal_names=("x", "y") if with_appraisals else (),
        metadata=pd.DataFrame({"group": [f"g{i // 4}" for i in range(n)], "pos": range(n)}),
        source="builtin",
    )
    kwargs.update(overrides)
    return EmotionDataset(**kwargs)


# ----------------------------------------------------------------- validation


def test_valid_dataset_basics():
    ds = make()
    assert len(ds) == 60
    assert ds.appraisals.dtype == np.float32
    assert not ds.appraisals.flags.writeable
    assert ds.label_counts() == {"a": 24, "b": 18, "c": 18}
    assert ds.label_ids.tolist()[:4] == [0, 1, 2, 0]
    assert list(ds.metadata.index) == list(range(60))
    assert "toy" in repr(ds)


def test_lists_are_converted_to_tuples_and_metadata_defaults():
    ds = EmotionDataset(
        name="t", ids=["1", "2"], texts=["x", "y"], labels=["p", "q"], label_names=["p", "q"]
    )
    assert ds.ids == ("1", "2") and ds.label_names == ("p", "q")
    assert ds.metadata.shape == (2, 0)
    assert ds.appraisals is None and ds.dropped_rows == 0


def test_label_counts_includes_zero_counts():
    ds = make().filter(np.array(make().labels) != "c")
    assert ds.label_counts()["c"] == 0
    assert ds.label_names == LABELS


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"texts": ("x",) * 59}, "same length"),
        ({"labels": ("a",) * 61}, "same length"),
        ({"ids": tuple(f"id{i % 30}" for i in range(60))}, "duplicate id"),
        ({"labels": ("zzz",) * 60}, "not in label_names"),
        ({"label_names": ()}, "label_names is empty"),
        ({"label_names": ("a", "b", "c", "a")}, "duplicate label_names"),
        ({"appraisals": np.zeros((60, 3))}, r"shape \(60, 3\)"),
        ({"appraisals": np.full((60, 2), np.nan)}, "NaN"),
        ({"appraisals": None}, "appraisal_names given"),
        ({"appraisal_names": ("x", "x")}, "duplicate appraisal_names"),
        ({"metadata": pd.DataFrame({"m": range(59)})}, "metadata has 59 rows"),
        ({"metadata": pd.DataFrame({"text": range(60)})}, "clash"),
        ({"metadata": pd.DataFrame({"x": range(60)})}, "clash"),
        ({"name": ""}, "name"),
        ({"texts": tuple(range(60))}, "must all be str"),
        ({"dropped_rows": -1}, "dropped_rows"),
    ],
)
def test_validation_errors(overrides, match):
    with pytest.raises(DataError, match=match):
        make(**overrides)


def test_metadata_index_is_reset():
    meta = pd.DataFrame({"m": range(60)}, index=range(100, 160))
    assert list(make(metadata=meta).metadata.index) == list(range(60))


# ----------------------------------------------------------------- subsets


def test_subset_keeps_order_label_names_and_appraisals():
    ds = make()
    sub = ds.subset([5, 1, -1])
    assert sub.ids == ("id5", "id1", "id59")
    assert sub.label_names == LABELS
    np.testing.assert_array_equal(sub.appraisals, ds.appraisals[[5, 1, 59]])
    assert sub.metadata["pos"].tolist() == [5, 1, 59]
    assert list(sub.metadata.index) == [0, 1, 2]
    assert len(ds.subset([])) == 0


def test_subset_rejects_bad_indices():
    ds = make()
    with pytest.raises(IndexError):
        ds.subset([60])
    with pytest.raises(TypeError, match="filter"):
        ds.subset(np.ones(60, dtype=bool))
    with pytest.raises(DataError, match="duplicates"):
        ds.subset([1, 1])


def test_filter():
    ds = make()
    mask = np.array(ds.labels) == "b"
    sub = ds.filter(mask)
    assert set(sub.labels) == {"b"} and len(sub) == 18
    assert ds.filter(pd.Series(mask)).ids == sub.ids
    with pytest.raises(DataError, match="one boolean per row"):
        ds.filter(mask[:10])
    with pytest.raises(DataError, match="one boolean per row"):
        ds.filter(np.arange(60))


def test_sample_is_deterministic_and_stratified():
    ds = make()
    a, b, c = ds.sample(15, seed=1), ds.sample(15, seed=1), ds.sample(15, seed=2)
    assert a.ids == b.ids and a.ids != c.ids
    assert len(a) == 15
    assert a.label_counts() == {"a": 6, "b": 5, "c": 4}  # 1 each + 12 shared 23:17:17
    assert list(a.ids) == sorted(a.ids, key=lambda s: int(s[2:]))  # original order kept


def test_sample_keeps_all_labels_even_when_tiny():
    ds = make(labels=("a",) * 58 + ("b", "c"))
    assert set(ds.sample(3, seed=0).labels) == {"a", "b", "c"}
    assert len(ds.sample(2, seed=0)) == 2


def test_sample_unstratified_and_edge_cases():
    ds = make()
    u1, u2 = ds.sample(10, seed=3, stratify=False), ds.sample(10, seed=3, stratify=False)
    assert u1.ids == u2.ids and len(u1) == 10
    full = ds.sample(1000)
    assert full is not ds and full.fingerprint() == ds.fingerprint()
    with pytest.raises(DataError, match="n >= 1"):
        ds.sample(0)


def test_stratified_indices_validates_n():
    with pytest.raises(ValueError):
        stratified_indices(["a", "b"], 3, seed=0)


def test_split_deterministic_disjoint_stratified():
    ds = make()
    tr, te = ds.split(0.25, seed=0)
    tr2, te2 = ds.split(0.25, seed=0)
    _, te3 = ds.split(0.25, seed=5)
    assert tr.ids == tr2.ids and te.ids == te2.ids and te.ids != te3.ids
    assert len(te) == 15 and len(tr) == 45
    assert not set(tr.ids) & set(te.ids)
    assert set(te.labels) == set(tr.labels) == set(LABELS)
    _, te_n = ds.split(6, seed=0)
    assert len(te_n) == 6 and set(te_n.labels) == set(LABELS)
    tr_u, te_u = ds.split(0.5, seed=0, stratify=False)
    assert len(te_u) == 30 and not set(tr_u.ids) & set(te_u.ids)


@pytest.mark.parametrize("test_size", [0.0, 1.0, 0, 60, -0.2])
def test_split_rejects_bad_sizes(test_size):
    with pytest.raises(DataError):
        make().split(test_size)


def test_grouped_split_has_no_group_overlap():
    ds = make()
    tr, te = ds.split(0.3, seed=0, groups="group")
    assert not set(tr.metadata["group"]) & set(te.metadata["group"])
    assert len(tr) + len(te) == len(ds)
    assert ds.split(0.3, seed=0, groups="group")[1].ids == te.ids
    with pytest.raises(DataError, match="not a metadata column"):
        ds.split(0.3, groups="nope")
    one_group = make(metadata=pd.DataFrame({"g": ["same"] * 60}))
    with pytest.raises(DataError, match="2 distinct groups"):
        one_group.split(0.3, groups="g")


def test_kfold():
    ds = make()
    folds = ds.kfold(3, seed=0)
    assert len(folds) == 3
    all_test = np.concatenate([te for _, te in folds])
    assert sorted(all_test.tolist()) == list(range(60))
    for tr, te in folds:
        assert not set(tr) & set(te)
        assert set(np.array(ds.labels)[te]) == set(LABELS)
    again = ds.kfold(3, seed=0)
    assert all((a[1] == b[1]).all() for a, b in zip(folds, again, strict=True))
    for tr, te in ds.kfold(3, seed=0, groups="group"):
        groups = ds.metadata["group"].to_numpy()
        assert not set(groups[tr]) & set(groups[te])
    with pytest.raises(DataError, match="2 <= k"):
        ds.kfold(1)
    with pytest.raises(DataError, match="kfold"):
        make(labels=("a",) * 59 + ("b",)).kfold(70)


# ----------------------------------------------------------------- fingerprint & views


def test_fingerprint_stable_and_sensitive():
    ds = make()
    fp = ds.fingerprint()
    assert len(fp) == 64 and fp == make().fingerprint()
    texts = list(ds.texts)
    texts[3] = texts[3] + "!"
    assert make(texts=tuple(texts)).fingerprint() != fp
    assert make(with_appraisals=False).fingerprint() != fp
    app = ds.appraisals.copy()
    app[0, 0] += 1
    assert make(appraisals=app).fingerprint() != fp
    assert make(label_names=("a", "b", "c", "d")).fingerprint() != fp
    # metadata and name are not part of the fingerprint
    assert make(name="other", metadata=pd.DataFrame(index=range(60))).fingerprint() == fp


_SMALL = (
    "import numpy as np\n"
    "from lens_emotion.data import EmotionDataset\n"
    "ds = EmotionDataset(name='t', ids=('1', '2'), texts=('caf\\u00e9', 'b'), labels=('x', 'y'),\n"
    "    label_names=('x', 'y'), appraisals=np.array([[1.5], [2.0]]), appraisal_names=('v',))\n"
)


def test_fingerprint_stable_across_processes():
    # Run twice in fresh interpreters with different hash seeds; both must agree with this one.
    namespace: dict = {}
    exec(_SMALL, namespace)
    expected = namespace["ds"].fingerprint()
    for seed in ("123",):
        out = subprocess.run(
            [sys.executable, "-c", _SMALL + "print(ds.fingerprint())"],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
        )
        assert out.stdout.strip() == expected


def test_to_frame():
    frame = make().to_frame()
    assert list(frame.columns) == ["id", "text", "label", "x", "y", "group", "pos"]
    assert len(frame) == 60 and frame.loc[2, "label"] == "c"
    assert list(make(with_appraisals=False).to_frame().columns) == [
        "id",
        "text",
        "label",
        "group",
        "pos",
    ]


def test_with_labels_control_task():
    ds = make()
    ctrl = ds.with_labels(["u" if i % 2 else "v" for i in range(60)])
    assert ctrl.label_names == ("u", "v") and ctrl.ids == ds.ids and ctrl.texts == ds.texts
    assert ds.labels[0] == "a"  # original untouched
    explicit = ds.with_labels(["u"] * 60, ["v", "u"])
    assert explicit.label_names == ("v", "u") and explicit.label_ids[0] == 1
    with pytest.raises(DataError):
        ds.with_labels(["u"] * 59)
    with pytest.raises(DataError, match="not in label_names"):
        ds.with_labels(["u"] * 60, ["v"])


def test_frozen():
    ds = make()
    with pytest.raises(AttributeError):
        ds.name = "x"
