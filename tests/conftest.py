"""Shared fixtures. Real ESP32 captures live in ../shared/data beside the checkout; tests that need
them skip cleanly where that folder is absent."""
from __future__ import annotations

import pathlib

import pytest

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> pathlib.Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real captures not available: {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def csi_tool_capture(shared_data) -> pathlib.Path:
    path = shared_data / "esp32-csi-tool_ap_ht40_sample.csv"
    if not path.is_file():
        pytest.skip(f"real capture not available: {path}")
    return path

import sys  # noqa: E402

# tests/reference.py is imported as a plain module by the test files.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


@pytest.fixture(scope="session")
def csi_tool_frames(csi_tool_capture) -> tuple:
    """The real capture decoded by firmware_bridge's own framer (read-only: shared by tests)."""
    from firmware_bridge.framing import StreamDecoder

    decoder = StreamDecoder(source=csi_tool_capture.name)
    return tuple(decoder.feed(csi_tool_capture.read_bytes()) + decoder.flush())
