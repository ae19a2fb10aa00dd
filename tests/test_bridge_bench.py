"""firmware_bridge.bench: the section returns the documented keys (speed is measured, not tested)."""
from __future__ import annotations

from edge_aether.bench import BenchContext
from firmware_bridge import bench


def test_bench_section_reports_frame_rates(monkeypatch):
    monkeypatch.setattr(bench, "DISTINCT", 20)
    monkeypatch.setattr(bench, "_median_rate", lambda fn, n, repeats: float(fn() == n) * 1e6)
    out = bench.run(BenchContext(quick=True))
    assert out["text_fps"] > 0 and out["binary_fps"] > 0
    assert {"text_esp_csi_fps", "binary_stream_fps", "text_fps_target", "binary_fps_target"} <= set(out)
