"""firmware_bridge: bytes from ESP32 boards (serial, UDP, files) into clean CSI frames.

This package never imports edge_aether. Public entry points:

- :func:`open_source` (``firmware_bridge.sources``): frame sources by URL;
- :class:`StreamDecoder` / :class:`DatagramDecoder` (``firmware_bridge.framing``): pure decoders;
- :class:`NodeTracker` (``firmware_bridge.nodes``): lost frames, reboots, timestamp unwrap;
- :class:`RecordWriter` / :class:`RecordReader` (``firmware_bridge.capture``): crash-safe captures;
- :class:`Simulator`, :func:`encode`, :class:`PtySimWriter` (``firmware_bridge.sim``).
"""
from .capture import RecordReader, RecordWriter
from .errors import BridgeError, CaptureError, SourceError
from .frame import CsiFrame
from .framing import DatagramDecoder, StreamDecoder
from .nodes import NodeTracker
from .sim import PtySimWriter, Simulator, encode
from .sources import open_source

__all__ = [
    "BridgeError", "CaptureError", "CsiFrame", "DatagramDecoder", "NodeTracker", "PtySimWriter",
    "RecordReader", "RecordWriter", "Simulator", "SourceError", "StreamDecoder", "encode", "open_source",
]
