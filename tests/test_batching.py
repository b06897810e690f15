import numpy as np
import pytest

from lens_emotion.batching import iter_batches, length_batches


def test_length_batches_cover_every_index_once_and_sort_by_length():
    lengths = [5, 1, 9, 3, 3, 7, 2, 8]
    batches = length_batches(lengths, batch_size=3)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(len(lengths)))
    assert [len(b) for b in batches] == [3, 3, 2]
    ordered = [lengths[i] for i in flat]
    assert ordered == sorted(lengths)


def test_length_batches_respect_token_budget():
    lengths = [10] * 6
    batches = length_batches(lengths, batch_size=100, max_tokens=25)
    assert all(len(b) * 10 <= 25 for b in batches)
    assert sum(len(b) for b in batches) == 6


def test_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size"):
        length_batches([1, 2], batch_size=0)


def test_iter_batches_returns_matching_tokens():
    tokens = [[1, 2, 3], [4], [5, 6]]
    for indices, toks in iter_batches(tokens, batch_size=2):
        assert [tokens[i] for i in indices] == toks
