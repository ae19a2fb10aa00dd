"""RuView ``.rvne`` weight blobs (DESIGN.md section 4): read (with every check) and write.

Layout, little-endian::

    0   u32  magic 0x52564E45 ("RVNE")        16  u16  n_layers (must be 1 here)
    4   u16  version (1)                      18  u16  n_classes
    6   u8   flags, bit 0: fp16 weights        20  u32  weights_len (bytes)
    7   u8   reserved                          24  ...  weights
    8   u16  input_dim   10 u16 q_heads        end-4 u32 CRC32-IEEE of every byte before it
    12  u16  kv_heads    14 u16 head_dim

Weight order inside the blob. RuView's own format defines the header and CRC but, at the time of
writing, not the order of the tensors ("flat per-layer arrays in the order the kernel reads them";
its firmware forward is still a stub), so edge-aether fixes it: ``wq, bq, wk, bk, wv, bv, wo, bo,
wc, bc``, each row-major with the shapes of ``HeadWeights`` (``W @ x + b`` convention, W
[out, in]), fp32 or fp16 as the flag says. A trainer exporting for edge-aether writes that order.
RuView requires n_classes >= 2; edge-aether also accepts 0 (no classifier).
"""
from __future__ import annotations

import struct
import zlib
from typing import NamedTuple

import numpy as np

from .errors import ModelError
from .onnx_graph import WEIGHT_NAMES, weight_shapes

MAGIC = 0x52564E45
VERSION = 1
FLAG_FP16 = 0x01
_HEADER = struct.Struct("<IHBBHHHHHHI")  # 24 bytes
HEADER_LEN = _HEADER.size
FOOTER_LEN = 4
MIN_LEN = HEADER_LEN + FOOTER_LEN


class RvneBlob(NamedTuple):
    """A parsed blob: header fields and the weights (name -> float32 array, HeadWeights shapes)."""

    input_dim: int
    q_heads: int
    kv_heads: int
    head_dim: int
    n_layers: int
    n_classes: int
    fp16: bool
    weights: dict


def crc32_ieee(data: bytes) -> int:
    """CRC-32 IEEE 802.3 (the polynomial RuView's writer and firmware use; zlib's)."""
    return zlib.crc32(data) & 0xFFFFFFFF


def parse_rvne(data: bytes, source: str = "blob") -> RvneBlob:
    """Parse and check a blob: length, magic, version, size, CRC, then dimensions.

    Raises ModelError saying what was found and what was expected.
    """
    data = bytes(data)
    if len(data) < MIN_LEN:
        raise ModelError(f"{source}: truncated: {len(data)} bytes, a .rvne blob has at least {MIN_LEN} "
                         "(24-byte header + 4-byte CRC)")
    magic, version, flags, _reserved, in_dim, hq, hkv, d, n_layers, n_classes, wlen = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise ModelError(f"{source}: bad magic 0x{magic:08X}, expected 0x{MAGIC:08X} ('RVNE'); not a RuView "
                         "weight blob")
    if version != VERSION:
        raise ModelError(f"{source}: unsupported .rvne version {version}, this edge-aether reads version {VERSION}")
    expected_len = HEADER_LEN + wlen + FOOTER_LEN
    if len(data) != expected_len:
        what = "truncated" if len(data) < expected_len else "trailing bytes"
        raise ModelError(f"{source}: size mismatch ({what}): header weights_len={wlen} makes a "
                         f"{expected_len}-byte blob, found {len(data)} bytes")
    stored = struct.unpack_from("<I", data, len(data) - 4)[0]
    computed = crc32_ieee(data[:-4])
    if stored != computed:
        raise ModelError(f"{source}: CRC32 mismatch: stored 0x{stored:08X}, computed 0x{computed:08X}; "
                         "the blob is corrupted")
    for name, v in (("input_dim", in_dim), ("q_heads", hq), ("kv_heads", hkv), ("head_dim", d)):
        if v == 0:
            raise ModelError(f"{source}: header {name} is 0, expected >= 1")
    if hq % hkv:
        raise ModelError(f"{source}: header q_heads={hq} is not a multiple of kv_heads={hkv}")
    if n_layers != 1:
        raise ModelError(f"{source}: header n_layers={n_layers}; edge-aether runs one temporal head "
                         "layer (n_layers 1) only")
    fp16 = bool(flags & FLAG_FP16)
    dtype = np.dtype("<f2") if fp16 else np.dtype("<f4")
    shapes = weight_shapes(in_dim, hq, hkv, d, n_classes)
    n_values = sum(int(np.prod(shapes[n])) for n in WEIGHT_NAMES)
    if wlen != n_values * dtype.itemsize:
        raise ModelError(f"{source}: size mismatch: weights_len={wlen} bytes, but the header's dimensions "
                         f"(input_dim={in_dim}, q_heads={hq}, kv_heads={hkv}, head_dim={d}, "
                         f"n_classes={n_classes}) need {n_values} {'fp16' if fp16 else 'fp32'} values = "
                         f"{n_values * dtype.itemsize} bytes")
    flat = np.frombuffer(data, dtype, n_values, HEADER_LEN).astype(np.float32)
    weights, off = {}, 0
    for name in WEIGHT_NAMES:
        size = int(np.prod(shapes[name]))
        weights[name] = flat[off:off + size].reshape(shapes[name]).copy()
        off += size
    for name, a in weights.items():
        if not np.all(np.isfinite(a)):
            raise ModelError(f"{source}: weight {name!r} holds NaN or inf")
    return RvneBlob(in_dim, hq, hkv, d, n_layers, n_classes, fp16, weights)


def read_rvne(path) -> RvneBlob:
    with open(path, "rb") as f:
        return parse_rvne(f.read(), str(path))


def write_rvne(weights, q_heads, kv_heads, head_dim, fp16=False, n_layers=1) -> bytes:
    """Serialise weights (HeadWeights or name -> array) into a blob (for tests and trainers)."""
    get = (lambda n: weights[n]) if isinstance(weights, dict) else (lambda n: getattr(weights, n))
    in_dim = int(np.shape(get("wq"))[1])
    n_classes = int(np.shape(get("wc"))[0])
    dtype = "<f2" if fp16 else "<f4"
    body = b"".join(np.ascontiguousarray(get(n), dtype).tobytes() for n in WEIGHT_NAMES)
    head = _HEADER.pack(MAGIC, VERSION, FLAG_FP16 if fp16 else 0, 0, in_dim, q_heads, kv_heads,
                        head_dim, n_layers, n_classes, len(body))
    blob = head + body
    return blob + struct.pack("<I", crc32_ieee(blob))


def head_from_rvne(blob: RvneBlob, pattern=None, class_names=None, feature_recipe=None):
    """A TemporalHead from a parsed blob; the pattern defaults to AETHER's with horizon 1024."""
    from .head import HeadWeights, TemporalHead
    from .pattern import SparsePattern

    if class_names is None:
        class_names = tuple(f"class_{i}" for i in range(blob.n_classes))
    if len(class_names) != blob.n_classes:
        raise ModelError(f"class names: {len(class_names)} given, the blob has n_classes={blob.n_classes}")
    pattern = SparsePattern(horizon=1024) if pattern is None else pattern
    return TemporalHead(blob.input_dim, blob.q_heads, blob.kv_heads, blob.head_dim, pattern,
                        HeadWeights(**blob.weights), tuple(class_names), feature_recipe)
