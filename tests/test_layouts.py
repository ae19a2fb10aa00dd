"""firmware_bridge.layouts against the ESP-IDF sub-carrier tables and the real capture."""
from __future__ import annotations

import numpy as np
import pytest

from firmware_bridge.layouts import (C5C6_COUNTS, CLASSIC_COUNTS, first_block_data, known_value_counts,
                                     layout_for)

LEGACY = set(range(-26, 0)) | set(range(1, 27))
HT20 = set(range(-28, 0)) | set(range(1, 29))
HT40 = set(range(-58, -1)) | set(range(2, 59))
HE20 = set(range(-122, -1)) | set(range(2, 123))

# (n_values, sig_mode, bandwidth, secondary, stbc) -> expected (name, [(block, width, data set)])
CASES = [
    ((128, 0, 0, 0, 0), "classic/none/nonht", [("lltf", 64, LEGACY)]),
    ((256, 1, 0, 0, 0), "classic/none/ht20", [("lltf", 64, LEGACY), ("htltf", 64, HT20)]),
    ((384, 1, 0, 0, 1), "classic/none/ht20-stbc", [("lltf", 64, LEGACY), ("htltf", 64, HT20), ("stbc_htltf", 64, HT20)]),
    ((128, 0, 0, 2, 0), "classic/below/nonht", [("lltf", 64, LEGACY)]),
    ((256, 1, 0, 2, 0), "classic/below/ht20", [("lltf", 64, LEGACY), ("htltf", 64, HT20)]),
    ((380, 1, 0, 2, 1), "classic/below/ht20-stbc", [("lltf", 64, LEGACY), ("htltf", 63, HT20), ("stbc_htltf", 63, HT20)]),
    ((384, 1, 1, 2, 0), "classic/below/ht40", [("lltf", 64, LEGACY), ("htltf", 128, HT40)]),
    ((612, 1, 1, 2, 1), "classic/below/ht40-stbc", [("lltf", 64, LEGACY), ("htltf", 121, HT40), ("stbc_htltf", 121, HT40)]),
    ((128, 0, 0, 1, 0), "classic/above/nonht", [("lltf", 64, LEGACY)]),
    ((256, 1, 0, 1, 0), "classic/above/ht20", [("lltf", 64, LEGACY), ("htltf", 64, HT20)]),
    ((376, 1, 0, 1, 1), "classic/above/ht20-stbc", [("lltf", 64, LEGACY), ("htltf", 62, HT20), ("stbc_htltf", 62, HT20)]),
    ((384, 1, 1, 1, 0), "classic/above/ht40", [("lltf", 64, LEGACY), ("htltf", 128, HT40)]),
    ((612, 1, 1, 1, 1), "classic/above/ht40-stbc", [("lltf", 64, LEGACY), ("htltf", 121, HT40), ("stbc_htltf", 121, HT40)]),
    ((106, None, None, 0, None), "c5/none/nonht", [("lltf", 53, LEGACY)]),
    ((106, None, None, 1, None), "c5/above/nonht", [("lltf", 53, LEGACY)]),
    ((114, None, None, 0, None), "c5/none/ht20", [("htltf", 57, HT20)]),
    ((228, None, None, 2, None), "c5/below/ht20-stbc", [("htltf", 57, HT20), ("stbc_htltf", 57, HT20)]),
    ((234, None, None, 1, None), "c5/above/ht40", [("htltf", 117, HT40)]),
    ((468, None, None, 2, None), "c5/below/ht40-stbc", [("htltf", 117, HT40), ("stbc_htltf", 117, HT40)]),
    ((490, None, None, 0, None), "c5/none/he20", [("heltf", 245, HE20)]),
]


@pytest.mark.parametrize("args,name,blocks", CASES, ids=[c[1] for c in CASES])
def test_layout_table(args, name, blocks):
    lay = layout_for(*args)
    assert lay is not None and lay.name == name
    assert lay.n_values == args[0]
    assert [b.name for b in lay.blocks] == [b[0] for b in blocks]
    off = 0
    seen_pairs = []
    for blk, (bname, width, data) in zip(lay.blocks, blocks):
        assert blk.offset == off and blk.width == width
        off += width
        pairs, sc = blk.data_pairs()
        assert set(sc.tolist()) == data and len(sc) == len(data)     # every data subcarrier once
        assert np.all(np.diff(sc) > 0)
        assert np.array_equal(blk.subcarriers[pairs - blk.offset], sc)
        assert not blk.subcarriers.flags.writeable
        seen_pairs.append(pairs)
    assert 2 * off == args[0]
    allp = np.concatenate(seen_pairs)
    assert len(np.unique(allp)) == len(allp)


def test_every_known_count_has_a_layout_and_unknown_is_none():
    for n in known_value_counts():
        assert layout_for(n) is not None
    for n in (0, 2, 64, 100, 126, 130, 200, 383, 386, 1024):
        assert layout_for(n) is None
    assert CLASSIC_COUNTS.isdisjoint(C5C6_COUNTS)


def test_wrapped_order_of_no_secondary_block():
    # ESP-IDF: a 64-subcarrier block is stored 0..31 then -32..-1
    lay = layout_for(256, 1, 0, 0, 0)
    assert lay.blocks[1].subcarriers.tolist() == list(range(0, 32)) + list(range(-32, 0))
    c5 = layout_for(114, secondary_channel=0)
    assert c5.blocks[0].subcarriers.tolist() == list(range(0, 29)) + list(range(-28, 0))


def test_secondary_channel_blocks_are_relative_to_primary():
    above = layout_for(384, 1, 1, 1, 0)
    below = layout_for(384, 1, 1, 2, 0)
    for lay in (above, below):
        assert lay.blocks[0].subcarriers.tolist() == list(range(-32, 32))
    assert above.blocks[1].primary_center == -32 and below.blocks[1].primary_center == 32
    assert layout_for(376).blocks[1].subcarriers.tolist() == list(range(-30, 32))   # -62~-1 + 32
    assert layout_for(380).blocks[1].subcarriers.tolist() == list(range(-32, 31))   # 0~62 - 32


def test_ambiguous_384_resolution():
    assert layout_for(384).name == "classic/none/ht20-stbc"
    assert layout_for(384).assumed
    assert layout_for(384, bandwidth=1).name == "classic/above/ht40"
    assert layout_for(384, secondary_channel=2).name == "classic/below/ht40"
    assert layout_for(384, secondary_channel=0).name == "classic/none/ht20-stbc"
    assert layout_for(384, 1, 1, 1, 0).assumed == ()


def test_first_block_data_contract():
    pairs, sc = first_block_data(128, False)
    assert set(sc.tolist()) == LEGACY
    assert sc.min() >= -32 and sc.max() <= 31
    # 0..31,-32..-1 order: subcarrier k >= 0 sits at pair k, k < 0 at pair 64 + k
    assert np.array_equal(pairs, np.where(sc >= 0, sc, 64 + sc.astype(np.int64)))
    p2, s2 = first_block_data(128, True)
    assert 1 not in s2.tolist() and len(s2) == 51 and 0 not in p2 and 1 not in p2
    # with a secondary channel the first pairs are guards: nothing more is lost
    p3, s3 = first_block_data(384, True, secondary_channel=1, bandwidth=1)
    assert set(s3.tolist()) == LEGACY
    assert np.array_equal(p3, s3 + 32)
    p4, s4 = first_block_data(257, False)
    assert p4.size == 0 and s4.size == 0


def test_real_capture_nulls_fall_where_the_layout_says(csi_tool_frames):
    assert {f.n_values for f in csi_tool_frames} == {128, 384}
    for fr in csi_tool_frames:
        vals = fr.iq.astype(np.int16)
        lay = layout_for(fr.n_values, fr.sig_mode, fr.bandwidth, fr.secondary_channel, fr.stbc)
        assert lay is not None
        pairs = vals.reshape(-1, 2)
        energy = np.abs(pairs).sum(1)
        for blk in lay.blocks:
            p, sc = blk.data_pairs(first_word_invalid=True)
            # the LLTF's DC and guards are exact zeros in every real row; data pairs almost never
            if blk.name == "lltf":
                nulls = np.setdiff1d(np.arange(blk.offset + 2, blk.offset + blk.width), p)
                assert np.all(energy[nulls] == 0)
            assert np.mean(energy[p] == 0) < 0.05
