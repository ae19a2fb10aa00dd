"""RuView .rvne weight blobs: round trip, and every corruption rejected with what it is."""
from __future__ import annotations

import struct

import numpy as np
import pytest

from edge_aether.errors import ModelError
from edge_aether.head import TemporalHead
from edge_aether.rvne import HEADER_LEN, MAGIC, crc32_ieee, head_from_rvne, parse_rvne, write_rvne


@pytest.fixture(scope="module")
def head():
    return TemporalHead.random(12, seed=5, q_heads=4, kv_heads=2, head_dim=4, n_classes=3)


@pytest.fixture(scope="module")
def blob(head):
    return write_rvne(head.weights, 4, 2, 4)


def _reseal(data: bytes) -> bytes:
    """Recompute the CRC so that a structural fault is met by its own check."""
    return data[:-4] + struct.pack("<I", crc32_ieee(data[:-4]))


def test_layout(blob, head):
    magic, version, flags, reserved = struct.unpack_from("<IHBB", blob)
    assert (magic, version, flags, reserved) == (MAGIC, 1, 0, 0)
    assert blob[:4] == b"ENVR"  # 0x52564E45 little-endian
    assert struct.unpack_from("<HHHHHHI", blob, 8) == (12, 4, 2, 4, 1, 3, len(blob) - HEADER_LEN - 4)
    assert len(blob) == 28 + sum(w.nbytes for w in head.weights)
    assert crc32_ieee(b"123456789") == 0xCBF43926  # the IEEE 802.3 check value


def test_round_trip_fp32_is_exact(blob, head):
    parsed = parse_rvne(blob)
    assert (parsed.input_dim, parsed.q_heads, parsed.kv_heads, parsed.head_dim, parsed.n_classes) == (12, 4, 2, 4, 3)
    assert not parsed.fp16
    back = head_from_rvne(parsed)
    for name, a, b in zip(head.weights._fields, head.weights, back.weights):
        assert np.array_equal(a, b), name
    assert back.pattern.horizon == 1024 and back.class_names == ("class_0", "class_1", "class_2")


def test_fp16(head):
    parsed = parse_rvne(write_rvne(head.weights, 4, 2, 4, fp16=True))
    assert parsed.fp16
    for name in head.weights._fields:
        np.testing.assert_array_equal(parsed.weights[name], getattr(head.weights, name).astype(np.float16).astype(np.float32))


def test_weight_order_is_wq_bq_wk_bk_wv_bv_wo_bo_wc_bc(head, blob):
    flat = np.frombuffer(blob, "<f4", offset=HEADER_LEN, count=(len(blob) - 28) // 4)
    assert np.array_equal(flat[:16 * 12], head.weights.wq.ravel())
    assert np.array_equal(flat[16 * 12:16 * 12 + 16], head.weights.bq)
    assert np.array_equal(flat[-3:], head.weights.bc)


@pytest.mark.parametrize("cut", [0, 10, 27, 28, 100, -1])
def test_truncated_rejected(blob, cut):
    short = blob[:cut] if cut >= 0 else blob[:cut]
    with pytest.raises(ModelError, match="truncated"):
        parse_rvne(short)


def test_trailing_bytes_rejected(blob):
    with pytest.raises(ModelError, match="size mismatch.*trailing"):
        parse_rvne(blob + b"\x00")


def test_bit_flip_in_weights_is_a_crc_error(blob):
    bad = bytearray(blob)
    bad[HEADER_LEN + 37] ^= 0x10
    with pytest.raises(ModelError, match="CRC32 mismatch"):
        parse_rvne(bytes(bad))


def test_every_single_bit_flip_rejected(blob):
    rng = np.random.default_rng(0)
    for pos in list(range(0, 28)) + list(rng.integers(28, len(blob), 40)):
        bad = bytearray(blob)
        bad[int(pos)] ^= 1 << int(rng.integers(0, 8))
        with pytest.raises(ModelError):
            parse_rvne(bytes(bad))


def test_header_faults_named(blob, head):
    def patched(offset, fmt, value):
        b = bytearray(blob)
        struct.pack_into(fmt, b, offset, value)
        return _reseal(bytes(b))

    with pytest.raises(ModelError, match="bad magic"):
        parse_rvne(patched(0, "<I", 0x12345678))
    with pytest.raises(ModelError, match="unsupported .rvne version 2"):
        parse_rvne(patched(4, "<H", 2))
    with pytest.raises(ModelError, match="n_layers=2"):
        parse_rvne(patched(16, "<H", 2))
    with pytest.raises(ModelError, match="q_heads=4 is not a multiple of kv_heads=3"):
        parse_rvne(patched(12, "<H", 3))
    with pytest.raises(ModelError, match="size mismatch: weights_len"):
        parse_rvne(patched(8, "<H", 13))  # input_dim 13 needs more weights than the blob holds
    with pytest.raises(ModelError, match="header head_dim is 0"):
        parse_rvne(patched(14, "<H", 0))


def test_non_finite_weights_rejected(head):
    w = head.weights._replace(bo=np.full_like(head.weights.bo, np.inf))
    with pytest.raises(ModelError, match="'bo' holds NaN or inf"):
        parse_rvne(write_rvne(w, 4, 2, 4))
