"""The sparse attention pattern (DESIGN.md section 2), validated once, with compiled key generation.

Which keys query t sees is decided in one compiled function, ``gen_keys``, used by the pattern's
inspection methods, the prefill kernels and the streaming step alike. Duplicates are removed by rule,
never by a marker array: window tokens first; log-stride tokens only when left of the window; globals
only when neither in the window nor at a log-stride distance; landmark blocks P, P-1, P-2, P-4, ...
are distinct by construction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .errors import InputError
from .jit import kernel

#: Horizon used inside kernels for "unbounded" (no look-back limit).
UNBOUNDED = np.int64(1) << np.int64(62)

#: Upper bound on log-stride keys and landmark blocks per query (2^62 > any position).
MAX_LOG_KEYS = 63


@kernel
def gen_keys(t, window, block, glob, log_stride, landmarks, horizon, tok, gsel, blk):
    """Visible keys of query ``t``.

    Writes local token positions (window, then log-stride) to ``tok``, indices into ``glob`` of the
    global tokens seen only by the global rule to ``gsel``, and visible landmark block ids to ``blk``.
    Returns ``(n_tok, n_glob, n_blk)``. Buffers must hold window+1+MAX_LOG_KEYS, len(glob) and
    MAX_LOG_KEYS+1 entries.
    """
    lo = t - window
    if lo < 0:
        lo = 0
    n_tok = 0
    for j in range(lo, t + 1):
        tok[n_tok] = j
        n_tok += 1
    if log_stride:
        p = 1
        while p <= t and p <= horizon:
            j = t - p
            if j < lo:
                tok[n_tok] = j
                n_tok += 1
            p *= 2
    n_glob = 0
    for i in range(glob.shape[0]):
        g = glob[i]
        if g > t:
            break
        if g >= lo:
            continue
        d = t - g
        if log_stride and d <= horizon and (d & (d - 1)) == 0:
            continue
        gsel[n_glob] = i
        n_glob += 1
    n_blk = 0
    if landmarks and block > 0:
        last = (t + 1) // block - 1
        if last >= 0:
            floor_pos = t - horizon
            if last * block >= floor_pos:
                blk[n_blk] = last
                n_blk += 1
                p = 1
                while p <= last:
                    b = last - p
                    if b * block < floor_pos:
                        break
                    blk[n_blk] = b
                    n_blk += 1
                    p *= 2
    return n_tok, n_glob, n_blk


@kernel
def _edge_count(seq_len, window, block, glob, log_stride, landmarks, horizon):
    tok = np.empty(window + 1 + MAX_LOG_KEYS, np.int64)
    gsel = np.empty(max(glob.shape[0], 1), np.int64)
    blk = np.empty(MAX_LOG_KEYS + 1, np.int64)
    total = 0
    for t in range(seq_len):
        a, b, c = gen_keys(t, window, block, glob, log_stride, landmarks, horizon, tok, gsel, blk)
        total += a + b + c
    return total


class VisibleKeys(NamedTuple):
    """What one query sees: token positions (sorted) and landmark block ids (sorted)."""

    tokens: np.ndarray
    blocks: np.ndarray


@dataclass(frozen=True)
class SparsePattern:
    """Causal sparse attention pattern of the AETHER temporal head.

    Parameters
    ----------
    window : int
        W: query t sees tokens max(0, t-W)..t. 0 means the token itself only.
    block_size : int
        B: tokens per landmark block (>= 1).
    global_tokens : tuple of int
        Positions that every later query sees, never evicted.
    log_stride : bool
        Add tokens t - 2^k (2^k <= t, 2^k <= horizon).
    landmarks : bool
        Add the means of complete blocks P, P-1, P-2^k as extra keys.
    horizon : int or None
        H: maximum look-back in tokens (None: unbounded). Must be >= window. Streams keep H+1 tokens.
    """

    window: int = 32
    block_size: int = 16
    global_tokens: tuple = (0,)
    log_stride: bool = True
    landmarks: bool = True
    horizon: int | None = None

    def __post_init__(self):
        def whole(name, value, minimum):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise InputError(f"SparsePattern {name}: expected an integer, found {value!r}")
            if value < minimum:
                raise InputError(f"SparsePattern {name}: expected >= {minimum}, found {value}")
            return int(value)

        object.__setattr__(self, "window", whole("window", self.window, 0))
        object.__setattr__(self, "block_size", whole("block_size", self.block_size, 1))
        try:
            g = tuple(sorted({whole("global_tokens entry", int(x) if isinstance(x, np.integer) else x, 0)
                              for x in self.global_tokens}))
        except TypeError:
            raise InputError(
                f"SparsePattern global_tokens: expected a sequence of non-negative integers, found {self.global_tokens!r}"
            ) from None
        object.__setattr__(self, "global_tokens", g)
        object.__setattr__(self, "log_stride", bool(self.log_stride))
        object.__setattr__(self, "landmarks", bool(self.landmarks))
        if self.horizon is not None:
            h = whole("horizon", self.horizon, 0)
            if h < self.window:
                raise InputError(
                    f"SparsePattern horizon: expected horizon >= window ({self.window}), found {h}; "
                    "a horizon shorter than the window would evict window tokens"
                )
            object.__setattr__(self, "horizon", h)

    # -- compiled-kernel view -------------------------------------------------------------------
    @property
    def horizon_value(self) -> int:
        """The horizon as the kernels take it (UNBOUNDED for None)."""
        return int(UNBOUNDED) if self.horizon is None else self.horizon

    @property
    def globals_array(self) -> np.ndarray:
        return np.asarray(self.global_tokens, dtype=np.int64)

    def with_horizon(self, horizon: int | None) -> "SparsePattern":
        """The same pattern with another horizon."""
        return SparsePattern(self.window, self.block_size, self.global_tokens, self.log_stride,
                             self.landmarks, horizon)

    def max_keys(self) -> int:
        """Upper bound on the keys one query sees (sizes scratch buffers)."""
        return self.window + 1 + MAX_LOG_KEYS + len(self.global_tokens) + MAX_LOG_KEYS + 1

    # -- inspection -----------------------------------------------------------------------------
    def keys(self, t: int) -> VisibleKeys:
        """Token positions and landmark block ids that query ``t`` sees (both sorted)."""
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or t < 0:
            raise InputError(f"keys(t): expected a position t >= 0, found {t!r}")
        g = self.globals_array
        tok = np.empty(self.window + 1 + MAX_LOG_KEYS, np.int64)
        gsel = np.empty(max(len(g), 1), np.int64)
        blk = np.empty(MAX_LOG_KEYS + 1, np.int64)
        nt, ng, nb = gen_keys(np.int64(t), self.window, self.block_size, g, self.log_stride,
                              self.landmarks, self.horizon_value, tok, gsel, blk)
        tokens = np.sort(np.concatenate([tok[:nt], g[gsel[:ng]]]))
        return VisibleKeys(tokens, np.sort(blk[:nb]))

    def edge_count(self, seq_len: int) -> int:
        """Number of (query, key) pairs of a causal prefill over ``seq_len`` tokens, landmarks included."""
        if isinstance(seq_len, bool) or not isinstance(seq_len, (int, np.integer)) or seq_len < 0:
            raise InputError(f"edge_count: expected seq_len >= 0, found {seq_len!r}")
        return int(_edge_count(np.int64(seq_len), self.window, self.block_size, self.globals_array,
                               self.log_stride, self.landmarks, self.horizon_value))

    def to_dict(self) -> dict:
        return {"window": self.window, "block_size": self.block_size,
                "global_tokens": list(self.global_tokens), "log_stride": self.log_stride,
                "landmarks": self.landmarks, "horizon": self.horizon}

    @classmethod
    def from_dict(cls, d: dict) -> "SparsePattern":
        known = {"window", "block_size", "global_tokens", "log_stride", "landmarks", "horizon"}
        unknown = set(d) - known
        if unknown:
            raise InputError(f"SparsePattern: unknown keys {sorted(unknown)}; expected some of {sorted(known)}")
        return cls(**{k: (tuple(v) if k == "global_tokens" else v) for k, v in d.items()})
