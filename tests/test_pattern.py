"""SparsePattern: keys(t) and edge_count against brute-force enumeration of DESIGN.md section 2."""
import itertools

import numpy as np
import pytest

from edge_aether import SparsePattern
from reference import pattern_args, ref_edge_count, ref_keys

WINDOWS = (0, 1, 3, 8)
BLOCKS = (1, 2, 5, 16)
GLOBALS = ((), (0,), (0, 7, 40), (500,))
FLAGS = ((True, True), (True, False), (False, True), (False, False))


def _horizons(window):
    return (None, window, window + 5, 64 if window <= 64 else None)


@pytest.mark.parametrize("window,block", list(itertools.product(WINDOWS, BLOCKS)))
def test_keys_match_brute_force(window, block):
    for glob, (log_stride, landmarks), horizon in itertools.product(GLOBALS, FLAGS, _horizons(window)):
        p = SparsePattern(window, block, glob, log_stride, landmarks, horizon)
        for t in range(0, 90):
            got = p.keys(t)
            want = ref_keys(t, *pattern_args(p))
            assert np.array_equal(got.tokens, want[0]), (p, t)
            assert np.array_equal(got.blocks, want[1]), (p, t)


@pytest.mark.parametrize("window,block,glob,horizon,seq_len", [
    (0, 1, (), None, 1), (0, 1, (), None, 50), (3, 2, (0,), None, 77), (8, 5, (0, 7, 40), 20, 120),
    (32, 16, (0,), None, 200), (32, 16, (0,), 32, 200), (4, 3, (500,), None, 60), (1, 1, (0, 1, 2), 1, 33),
])
def test_edge_count_matches_brute_force(window, block, glob, horizon, seq_len):
    for log_stride, landmarks in FLAGS:
        p = SparsePattern(window, block, glob, log_stride, landmarks, horizon)
        assert p.edge_count(seq_len) == ref_edge_count(seq_len, *pattern_args(p))
    assert p.edge_count(0) == 0


def test_design_example():
    p = SparsePattern(window=128, block_size=64, global_tokens=(0,))
    k = p.keys(1000)
    assert list(k.tokens) == [0, 488, 744] + list(range(872, 1001))
    assert list(k.blocks) == [6, 10, 12, 13, 14]


def test_dense_identity_edge_count():
    T = 300
    p = SparsePattern(window=T - 1, block_size=4, global_tokens=(0,), log_stride=False, landmarks=False)
    assert p.edge_count(T) == T * (T + 1) // 2


def test_sparse_edge_count_grows_slower_than_dense():
    p = SparsePattern()
    assert p.edge_count(4096) < 4096 * 4097 // 2 / 30


@pytest.mark.parametrize("kwargs,needle", [
    (dict(window=8, horizon=4), "horizon"),
    (dict(window=-1), "window"),
    (dict(block_size=0), "block_size"),
    (dict(window=2.5), "window"),
    (dict(global_tokens=(0, -3)), "global_tokens"),
    (dict(global_tokens=5), "global_tokens"),
    (dict(horizon=True), "horizon"),
])
def test_bad_pattern_is_a_clear_error(kwargs, needle):
    with pytest.raises(ValueError, match=needle):
        SparsePattern(**kwargs)


def test_bad_position():
    with pytest.raises(ValueError, match="t >= 0"):
        SparsePattern().keys(-1)
    with pytest.raises(ValueError, match="seq_len"):
        SparsePattern().edge_count(-5)


def test_globals_are_sorted_and_deduplicated_and_round_trip():
    p = SparsePattern(global_tokens=(9, 0, 9, np.int64(3)))
    assert p.global_tokens == (0, 3, 9)
    assert SparsePattern.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="unknown keys"):
        SparsePattern.from_dict({"windw": 3})
