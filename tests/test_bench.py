"""edge-aether bench: the JSON contract (keys and types), never timings."""
import json
import math
import subprocess
import sys

import pytest

from edge_aether.bench import SUMMARY, markdown

#: Every key the issues name, by the section that reports it.
REQUIRED = {
    "kernels": ["step_us_p50", "step_us_p99", "prefill_ms", "dense_ms", "prefill_ms_4096", "dense_ms_4096",
                "speedup_4096", "ort_step_us_p50", "ort_prefill_ms", "step_speedup_vs_ort"],
    "bridge": ["text_fps", "binary_fps"],
    "features": ["features_us_p50", "features_batch_us_per_frame"],
    "e2e": ["e2e_cpu_us_per_frame", "e2e_latency_us_p50", "e2e_latency_us_p99", "e2e_drops",
            "max_nodes_100hz", "rss_mb", "cold_start_s", "warm_start_s"],
    "soak": ["soak_rss_growth_mb", "soak_max_err"],
}


@pytest.mark.slow
def test_quick_json_holds_every_key_as_a_finite_number(tmp_path):
    out = tmp_path / "bench.json"
    proc = subprocess.run([sys.executable, "-m", "edge_aether.cli", "bench", "--quick", "--json", "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)  # stdout is exactly one JSON object
    assert json.loads(out.read_text()) == result
    for section, keys in REQUIRED.items():
        for key in keys:
            value = result[section][key]
            assert isinstance(value, (int, float)) and not isinstance(value, bool), (section, key, value)
            assert math.isfinite(value), (section, key, value)
    env = result["env"]
    for key in ("cpu_model", "cpu_count", "arch", "python", "numpy", "numba", "onnxruntime", "model_sha256"):
        assert env[key], key


def test_markdown_summary():
    named = {(s, k) for s, k, *_ in SUMMARY}
    assert {("kernels", "step_us_p50"), ("e2e", "e2e_cpu_us_per_frame"), ("soak", "soak_max_err")} <= named
    md = markdown({"env": {"cpu_model": "X", "arch": "aarch64"}, "kernels": {"step_us_p50": 9.5},
                   "e2e": {"e2e_drops": 0}})
    assert "| Numba step p50 (1 stream, horizon 1024) | 9.5 | us | <= 15 |" in md
    assert "| end to end drops | 0 | frames | 0 |" in md
    assert "aarch64" in md


def test_bad_soak_count_is_refused():
    proc = subprocess.run([sys.executable, "-m", "edge_aether.cli", "bench", "--only", "soak", "--soak", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "--soak expects a positive frame count, found 0" in proc.stderr


def test_plot_without_matplotlib_says_how_to_get_it(monkeypatch):
    import builtins

    from edge_aether.bench import plot_cdf

    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(SystemExit, match="edge-aether\\[plot\\]"):
        plot_cdf({"x": [1.0, 2.0]}, "/nonexistent/plot.png")
