"""Numba compilation flags, from one place.

Every kernel in the package is decorated with ``kernel`` (single-threaded, nogil, for per-step and
per-row work) or ``parallel_kernel`` (prange orchestrators for prefill). The fastmath subset allows
contraction and reassociation (vectorised dot products) but never ``nnan``/``ninf``: the softmax
relies on -inf and on NaN propagating to be caught by the wrappers' checks.
"""
from __future__ import annotations

import numba

#: LLVM fast-math flags allowed in kernels. No 'nnan', no 'ninf'.
FASTMATH = frozenset({"nsz", "arcp", "contract", "reassoc"})


def kernel(fn=None, **overrides):
    """``numba.njit`` with the package's flags: cached, nogil, fastmath subset, single-threaded."""
    opts = dict(cache=True, nogil=True, fastmath=set(FASTMATH))
    opts.update(overrides)
    if fn is None:
        return lambda f: numba.njit(**opts)(f)
    return numba.njit(**opts)(fn)


def parallel_kernel(fn=None, **overrides):
    """``kernel`` with ``parallel=True`` for prange orchestrators (prefill only, never streaming)."""
    overrides.setdefault("parallel", True)
    return kernel(fn, **overrides)
