"""firmware_bridge: bytes from ESP32 boards (serial, UDP, files) into clean CSI frames.

This package never imports edge_aether.
"""
from .errors import BridgeError, CaptureError, SourceError
from .frame import CsiFrame

__all__ = ["BridgeError", "CaptureError", "CsiFrame", "SourceError"]
