"""The one exception root of firmware_bridge.

Decoders never raise on bad input: they count a rejection and move on. These exceptions are for
misuse (bad arguments, a URL we cannot open) and for a source that has ended for good.
"""


class BridgeError(Exception):
    """Root of every error raised by firmware_bridge."""


class SourceError(BridgeError):
    """A source could not be opened or has failed for good (the reason says which)."""


class CaptureError(BridgeError):
    """A capture file is not one of ours or cannot be written."""
