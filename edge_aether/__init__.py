"""edge_aether: CSI frames -> features -> streaming temporal sparse attention -> outputs."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import ConfigError, EdgeAetherError, InputError, ModelError  # noqa: E402
from .pattern import SparsePattern  # noqa: E402
from .kernels import dense_attention, sparse_attention  # noqa: E402
from .head import HeadStream, HeadWeights, TemporalHead  # noqa: E402

__all__ = [
    "ConfigError", "EdgeAetherError", "HeadStream", "HeadWeights", "InputError", "ModelError",
    "SparsePattern", "TemporalHead", "__version__", "dense_attention", "sparse_attention",
]
