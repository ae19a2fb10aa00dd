"""edge_aether: CSI frames -> features -> streaming temporal sparse attention -> outputs."""
from __future__ import annotations

__version__ = "0.1.0"

from .errors import ConfigError, EdgeAetherError, InputError, ModelError  # noqa: E402

__all__ = ["ConfigError", "EdgeAetherError", "InputError", "ModelError", "__version__"]
