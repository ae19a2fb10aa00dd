"""Which subcarrier each int8 pair of an ESP32 CSI buffer belongs to.

An ESP32 CSI buffer is a run of int8 pairs, one per subcarrier, grouped by long training field
(LTF): LLTF, then HT-LTF, then the STBC HT-LTF, as far as they were captured. The buffer does not
say which fields it holds nor in which subcarrier order: that follows from the chip family, the
PPDU (``sig_mode``, bandwidth, STBC) and the secondary-channel position. This module turns what a
frame tells (the value count first, then the metadata where the format carries it) into a
``CsiLayout``: named blocks with their offset and the subcarrier index of every pair.

Sources
-------
Classic MAC (ESP32, ESP32-S2/S3, ESP32-C3): the sub-carrier index table of ESP-IDF's
*Wi-Fi Channel State Information* section (``docs/en/api-guides/wifi-driver/wifi-vendor-features.rst``,
``wifi_csi_info_t``)::

    secondary       none                  below                          above
    packet          nonHT  HT20   HT20s   nonHT HT20 HT20s HT40  HT40s   nonHT HT20  HT20s HT40  HT40s
    LLTF            0~31,-32~-1 (all 3)   0~63 (all 5)                   -64~-1 (all 5)
    HT-LTF          -    0~31,-32~-1 (2)  -     0~63 0~62  0~63,  0~60,  -     -64~-1 -62~-1 0~63, 0~60,
                                                           -64~-1 -60~-1                     -64~-1 -60~-1
    STBC-HT-LTF     -    -     0~31,-32~-1 -    -    0~62  -      0~60,  -     -     -62~-1 -     0~60,
                                                                  -60~-1                           -60~-1
    total bytes     128  256   384        128   256  380   384    612    128   256   376    384   612

With a secondary channel the table numbers 20 MHz blocks in the 40 MHz channel (0~63 is the upper
half, -64~-1 the lower half). Here every 20 MHz block is numbered relative to the centre of the
primary 20 MHz channel (-32..31), so ``0~63`` (below) and ``-64~-1`` (above) both become -32..31 in
ascending order; 40 MHz blocks keep the 40 MHz numbering (-64..63) and record where the primary
centre lies (``primary_center``: -32 when the secondary is above, +32 when below). The real capture
in ``../shared/data`` (HT40, secondary above) confirms it: the LLTF's guards sit at pairs 0..5 and
59..63 and its DC at pair 32; the HT40 HT-LTF's nulls at -1, 0, 1 and -64..-59, 59..63.

ESP32-C5 (and, by assumption, ESP32-C6, for which Espressif publishes no table): one field per PPDU,
transcribed from the ESP-IDF esp32c5 page as in csi-rs/esp-csi-rs ``src/lib/wire/layout.rs``:
LLTF 106 bytes (0~26,-26~-1 with no secondary; 53 ascending subcarriers with one), HT20 114 bytes
(0~28,-28~-1 / 57 ascending), HT20 STBC 228 (two HT-LTFs), HT40 234 (0~58,-58~-1), HT40 STBC 468,
HE20 SU 490 (0~122,-122~-1, HE subcarrier spacing 78.125 kHz, a quarter of HT's).

Data-carrying subcarriers (nulls, guards and DC dropped): legacy 20 MHz -26..-1, 1..26; HT20
-28..-1, 1..28; HT40 -58..-2, 2..58; HE20 -122..-2, 2..122 (pilots are kept: they are channel
estimates like any other).

When ``first_word_invalid`` is set the first four bytes (the first two pairs of the buffer) are
garbage; those pairs are dropped from whatever block they belong to.

This module never imports edge_aether (the parse CLI uses it too).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = [
    "CLASSIC_COUNTS",
    "C5C6_COUNTS",
    "CsiLayout",
    "LtfBlock",
    "first_block_data",
    "known_value_counts",
    "layout_for",
]

#: Value counts (int8 values per antenna) of the classic-MAC layouts.
CLASSIC_COUNTS = frozenset({128, 256, 376, 380, 384, 612})
#: Value counts of the ESP32-C5/C6 layouts.
C5C6_COUNTS = frozenset({106, 114, 228, 234, 468, 490})

#: Subcarrier spacing, kHz.
SPACING_HT_KHZ = 312.5
SPACING_HE_KHZ = 78.125

# Data-carrying range per kind of field: (lowest |k| kept, highest |k| kept).
_DATA_RANGE = {
    "legacy20": (1, 26),
    "ht20": (1, 28),
    "ht40": (2, 58),
    "he20": (2, 122),
}


@dataclass(frozen=True, eq=False)
class LtfBlock:
    """One long training field's run of pairs inside a CSI buffer.

    Attributes
    ----------
    name : str
        ``"lltf"``, ``"htltf"``, ``"stbc_htltf"`` (the second HT-LTF) or ``"heltf"``.
    offset : int
        Index of the block's first pair in the buffer (pairs, not values).
    subcarriers : numpy.ndarray
        int16 subcarrier index of every pair of the block, in buffer order (read-only).
        20 MHz blocks: relative to the primary channel's centre; 40 MHz blocks: 40 MHz numbering.
    data : numpy.ndarray
        bool per pair: True where the pair carries a data or pilot subcarrier (read-only).
    bandwidth_mhz : int
        20 or 40.
    spacing_khz : float
        Subcarrier spacing: 312.5 (legacy, HT) or 78.125 (HE).
    primary_center : int
        Subcarrier index (in this block's numbering) of the primary 20 MHz channel's centre:
        0 for 20 MHz blocks, -32 (secondary above) or +32 (secondary below) for 40 MHz blocks.
    kind : str
        ``"legacy20"``, ``"ht20"``, ``"ht40"`` or ``"he20"``: which null/guard pattern applies.
    """

    name: str
    offset: int
    subcarriers: np.ndarray
    data: np.ndarray
    bandwidth_mhz: int
    spacing_khz: float
    primary_center: int
    kind: str

    @property
    def width(self) -> int:
        """Number of pairs in the block."""
        return int(self.subcarriers.shape[0])

    def data_pairs(self, first_word_invalid: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Buffer pair indices and subcarrier indices of the block's usable pairs.

        Parameters
        ----------
        first_word_invalid : bool
            Drop buffer pairs 0 and 1 (the invalid first word) where they fall in this block.

        Returns
        -------
        (pairs, subcarriers) : (numpy.ndarray[int64], numpy.ndarray[int16])
            Sorted by ascending subcarrier index. ``pairs`` index the whole buffer's pairs
            (value ``2 * p`` and ``2 * p + 1``).
        """
        keep = self.data.copy()
        if first_word_invalid and self.offset < 2:
            keep[: 2 - self.offset] = False
        local = np.flatnonzero(keep)
        order = np.argsort(self.subcarriers[local], kind="stable")
        local = local[order]
        return (local + self.offset).astype(np.int64), self.subcarriers[local].astype(np.int16)


@dataclass(frozen=True, eq=False)
class CsiLayout:
    """What a CSI buffer of one kind holds.

    Attributes
    ----------
    name : str
        Stable identifier, e.g. ``"classic/above/ht40"``, ``"c5/none/ht20"``.
    n_values : int
        int8 values per antenna (two per pair).
    family : str
        ``"classic"`` (ESP32, -S2, -S3, -C3) or ``"c5c6"``.
    secondary_channel : int
        0 none, 1 above, 2 below (as assumed where the frame did not say).
    sig_mode : str
        ``"nonht"``, ``"ht"`` or ``"he"``.
    bandwidth_mhz : int
        Bandwidth of the PPDU: 20 or 40.
    stbc : bool
        Whether a second (STBC) HT-LTF is present.
    blocks : tuple of LtfBlock
        In buffer order.
    assumed : tuple of str
        Metadata the frame did not give and that was assumed to pick this layout (empty when the
        count and the metadata determined it).
    """

    name: str
    n_values: int
    family: str
    secondary_channel: int
    sig_mode: str
    bandwidth_mhz: int
    stbc: bool
    blocks: tuple
    assumed: tuple = ()

    @property
    def n_pairs(self) -> int:
        return self.n_values // 2

    def block(self, name: str) -> Optional[LtfBlock]:
        """The block called ``name``, or None when the buffer does not hold it."""
        for b in self.blocks:
            if b.name == name:
                return b
        return None


def _ro(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


def _runs(*ranges: tuple[int, int]) -> np.ndarray:
    """Concatenated inclusive ranges, as the ESP-IDF table writes them (``0~31,-32~-1``)."""
    return np.concatenate([np.arange(a, b + 1) for a, b in ranges]).astype(np.int16)


def _block(name: str, offset: int, table_index: np.ndarray, kind: str, shift: int = 0,
           primary_center: int = 0) -> LtfBlock:
    """Build a block from the table's index runs; ``shift`` re-centres 20 MHz blocks on the primary."""
    sc = (table_index + shift).astype(np.int16)
    lo, hi = _DATA_RANGE[kind]
    mag = np.abs(sc.astype(np.int32))
    data = (mag >= lo) & (mag <= hi)
    bw = 40 if kind == "ht40" else 20
    spacing = SPACING_HE_KHZ if kind == "he20" else SPACING_HT_KHZ
    return LtfBlock(name=name, offset=offset, subcarriers=_ro(sc), data=_ro(data), bandwidth_mhz=bw,
                    spacing_khz=spacing, primary_center=primary_center, kind=kind)


def _stack(specs) -> tuple:
    """Lay the blocks one after the other: specs are (name, table_index, kind, shift, primary_center)."""
    blocks, off = [], 0
    for name, idx, kind, shift, pc in specs:
        blocks.append(_block(name, off, idx, kind, shift, pc))
        off += idx.shape[0]
    return tuple(blocks), off


_SIDE = {0: "none", 1: "above", 2: "below"}


def _classic(n: int, secondary: int, ht: bool, forty: bool, stbc: bool, assumed: tuple) -> Optional[CsiLayout]:
    wrap64 = _runs((0, 31), (-32, -1))
    if secondary == 0:
        lltf = (wrap64, 0)
    elif secondary == 2:   # secondary below: primary is the upper half, table 0~63
        lltf = (_runs((0, 63)), -32)
    else:                  # secondary above: primary is the lower half, table -64~-1
        lltf = (_runs((-64, -1)), 32)
    pc40 = -32 if secondary == 1 else 32
    specs = [("lltf", lltf[0], "legacy20", lltf[1], 0)]
    if not ht:
        sig, bw, st = "nonht", 20, False
    elif not forty:
        sig, bw, st = "ht", 20, stbc
        if secondary == 0:
            ht1, ht2 = wrap64, wrap64
            shift = 0
        elif secondary == 2:
            ht1, ht2 = (_runs((0, 62)),) * 2 if stbc else (_runs((0, 63)), None)
            shift = -32
        else:
            ht1, ht2 = (_runs((-62, -1)),) * 2 if stbc else (_runs((-64, -1)), None)
            shift = 32
        specs.append(("htltf", ht1, "ht20", shift, 0))
        if stbc:
            specs.append(("stbc_htltf", ht2, "ht20", shift, 0))
    else:
        sig, bw, st = "ht", 40, stbc
        if stbc:
            idx = _runs((0, 60), (-60, -1))
            specs += [("htltf", idx, "ht40", 0, pc40), ("stbc_htltf", idx, "ht40", 0, pc40)]
        else:
            specs.append(("htltf", _runs((0, 63), (-64, -1)), "ht40", 0, pc40))
    blocks, pairs = _stack(specs)
    if 2 * pairs != n:
        return None
    kind = "nonht" if sig == "nonht" else f"ht{bw}" + ("-stbc" if st else "")
    return CsiLayout(name=f"classic/{_SIDE[secondary]}/{kind}", n_values=n, family="classic",
                     secondary_channel=secondary, sig_mode=sig, bandwidth_mhz=bw, stbc=st,
                     blocks=blocks, assumed=assumed)


def _c5c6(n: int, secondary: int, assumed: tuple) -> Optional[CsiLayout]:
    pc40 = -32 if secondary == 1 else 32
    if n == 106:
        idx = _runs((0, 26), (-26, -1)) if secondary == 0 else _runs((-26, 26))
        specs, sig, bw, st, kind = [("lltf", idx, "legacy20", 0, 0)], "nonht", 20, False, "nonht"
    elif n in (114, 228):
        idx = _runs((0, 28), (-28, -1)) if secondary == 0 else _runs((-28, 28))
        st = n == 228
        specs = [("htltf", idx, "ht20", 0, 0)] + ([("stbc_htltf", idx, "ht20", 0, 0)] if st else [])
        sig, bw, kind = "ht", 20, "ht20" + ("-stbc" if st else "")
    elif n in (234, 468):
        idx = _runs((0, 58), (-58, -1))
        st = n == 468
        specs = [("htltf", idx, "ht40", 0, pc40)] + ([("stbc_htltf", idx, "ht40", 0, pc40)] if st else [])
        sig, bw, kind = "ht", 40, "ht40" + ("-stbc" if st else "")
    elif n == 490:
        specs = [("heltf", _runs((0, 122), (-122, -1)), "he20", 0, 0)]
        sig, bw, st, kind = "he", 20, False, "he20"
    else:
        return None
    blocks, pairs = _stack(specs)
    assert 2 * pairs == n
    return CsiLayout(name=f"c5/{_SIDE[secondary]}/{kind}", n_values=n, family="c5c6",
                     secondary_channel=secondary, sig_mode=sig, bandwidth_mhz=bw, stbc=st,
                     blocks=blocks, assumed=assumed)


def known_value_counts() -> frozenset:
    """Every value count (per antenna) that maps to a layout."""
    return CLASSIC_COUNTS | C5C6_COUNTS


def _norm_secondary(v) -> Optional[int]:
    if v is None:
        return None
    v = int(v)
    return v if v in (0, 1, 2) else None


@functools.lru_cache(maxsize=256)
def layout_for(n_values: int, sig_mode: Optional[int] = None, bandwidth: Optional[int] = None,
               secondary_channel: Optional[int] = None, stbc: Optional[int] = None,
               chip: Optional[str] = None) -> Optional[CsiLayout]:
    """The layout of a CSI buffer, or None when the value count matches no known layout.

    The value count decides first (``len`` may disagree with the values printed: pass the count of
    values actually received, per antenna); metadata resolves what the count leaves open.

    Parameters
    ----------
    n_values : int
        int8 values in the buffer, per antenna.
    sig_mode : int, optional
        0 non-HT, 1 HT (classic ``sig_mode``); on the C5/C6 the count alone decides.
    bandwidth : int, optional
        0 20 MHz, 1 40 MHz (``cwb``).
    secondary_channel : int, optional
        0 none, 1 above, 2 below.
    stbc : int, optional
        Nonzero for an STBC PPDU.
    chip : str, optional
        ``"esp32"``, ``"esp32c5"``, ... Recorded only: the classic and C5/C6 value counts do not
        overlap, so the count picks the family.

    Returns
    -------
    CsiLayout or None
        Where the metadata is missing, these assumptions are made and listed in ``.assumed``:
        no secondary channel for 128/256/106/114/228 values; for 384 values HT40 when the frame
        says secondary above/below or 40 MHz, else HT20+STBC with no secondary; secondary above
        for 40 MHz layouts whose side is unknown (612, 234, 468, and 384 with bandwidth 40 MHz).
        376 and 380 values exist only for secondary above and below respectively.
    """
    del chip  # the count decides the family; kept in the signature for callers that know it
    n = int(n_values)
    sec = _norm_secondary(secondary_channel)
    assumed: list[str] = []
    if n in C5C6_COUNTS:
        if sec is None:
            if n in (234, 468):
                sec = 1
                assumed.append("secondary_channel=1 (above)")
            else:
                sec = 0
                if n != 490:
                    assumed.append("secondary_channel=0 (none)")
        return _c5c6(n, sec, tuple(assumed))
    if n not in CLASSIC_COUNTS:
        return None
    if n == 128:
        if sec is None:
            sec = 0
            assumed.append("secondary_channel=0 (none)")
        return _classic(n, sec, False, False, False, tuple(assumed))
    if n == 256:
        if sec is None:
            sec = 0
            assumed.append("secondary_channel=0 (none)")
        return _classic(n, sec, True, False, False, tuple(assumed))
    if n == 376:
        return _classic(n, 1, True, False, True, ())
    if n == 380:
        return _classic(n, 2, True, False, True, ())
    if n == 612:
        if sec not in (1, 2):
            sec = 1
            assumed.append("secondary_channel=1 (above)")
        return _classic(n, sec, True, True, True, tuple(assumed))
    # n == 384: HT20 + STBC with no secondary, or HT40 (LLTF + 128-wide HT-LTF).
    if sec in (1, 2):
        return _classic(n, sec, True, True, False, ())
    if sec == 0:
        return _classic(n, 0, True, False, True, ())
    if bandwidth is not None and int(bandwidth) == 1:
        return _classic(n, 1, True, True, False, ("secondary_channel=1 (above)",))
    if stbc is not None and int(stbc):
        return _classic(n, 0, True, False, True, ("secondary_channel=0 (none)",))
    return _classic(n, 0, True, False, True, ("secondary_channel=0 (none)", "stbc=1"))


def first_block_data(n_values: int, first_word_invalid: bool, *, secondary_channel: Optional[int] = None,
                     sig_mode: Optional[int] = None, bandwidth: Optional[int] = None,
                     stbc: Optional[int] = None, chip: Optional[str] = None) -> tuple[np.ndarray, np.ndarray]:
    """Data-carrying pairs of the first LTF block of a buffer.

    Parameters
    ----------
    n_values : int
        int8 values in the buffer, per antenna.
    first_word_invalid : bool
        Drop buffer pairs 0 and 1 (subcarriers 0 and 1 in the 0..31,-32..-1 order; guards anyway in
        the ascending order used with a secondary channel).
    secondary_channel, sig_mode, bandwidth, stbc, chip : optional
        As for ``layout_for``; without them the no-secondary-channel order (0..31, -32..-1) is assumed.

    Returns
    -------
    (pairs, subcarriers) : (numpy.ndarray[int64], numpy.ndarray[int16])
        Buffer pair indices (value ``2 * p`` and ``2 * p + 1``) and subcarrier indices, sorted by
        subcarrier. Classic and C5/C6 20 MHz blocks give indices in -32..31 (nulls, guards and DC
        dropped: -26..26 for an LLTF, -28..28 for an HT-LTF); the C5/C6 HT40 and HE20 layouts,
        whose first block is 40 MHz or HE-wide, give -58..58 and -122..122. Both arrays are empty
        when the value count matches no known layout.
    """
    lay = layout_for(int(n_values), sig_mode, bandwidth, secondary_channel, stbc, chip)
    if lay is None:
        return np.zeros(0, np.int64), np.zeros(0, np.int16)
    return lay.blocks[0].data_pairs(bool(first_word_invalid))
