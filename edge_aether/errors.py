"""The one exception root of edge_aether.

Validation errors also derive from ``ValueError`` so that callers catching the standard type work.
"""


class EdgeAetherError(Exception):
    """Root of every error raised by edge_aether."""


class InputError(EdgeAetherError, ValueError):
    """An argument has the wrong shape, dtype, layout or value (the message says found vs expected)."""


class ModelError(EdgeAetherError, ValueError):
    """A model file is malformed, inconsistent or not for this feature recipe."""


class ConfigError(EdgeAetherError, ValueError):
    """A configuration key is unknown or has a bad value (the message names the key)."""
