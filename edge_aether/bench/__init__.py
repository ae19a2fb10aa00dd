"""``edge-aether bench``: the one command that says whether a device keeps up.

Sections are modules with ``run(ctx: BenchContext) -> dict`` returning flat JSON-able numbers; they
are imported lazily so one section's dependencies never slow another. Results are grouped by section
in the JSON (``{"env": {...}, "kernels": {...}, ...}``); key names are stable, so two runs can be
compared by a script. Speed is only ever measured here, never asserted in tests.
"""
from __future__ import annotations

import argparse
import importlib
import json
import math
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

#: section name -> module path (each defines ``run(ctx) -> dict``), in run order
SECTIONS: dict[str, str] = {
    "kernels": "edge_aether.bench.kernels",
    "bridge": "firmware_bridge.bench",
    "features": "edge_aether.bench.features",
    "soak": "edge_aether.bench.soak",
    "e2e": "edge_aether.bench.e2e",
}

#: (section, key, label, unit, target text) rows of the Markdown summary
SUMMARY = [
    ("kernels", "step_us_p50", "Numba step p50 (1 stream, horizon 1024)", "us", "<= 15"),
    ("kernels", "step_us_p99", "Numba step p99", "us", ""),
    ("kernels", "ort_step_us_p50", "onnxruntime step p50", "us", ""),
    ("kernels", "step_speedup_vs_ort", "step speed-up vs onnxruntime", "x", ">= 3"),
    ("kernels", "batch8_step_us_per_stream_p50", "Numba step, 8 streams/call, per stream", "us", ""),
    ("kernels", "prefill_ms", "sparse prefill T=1024", "ms", ""),
    ("kernels", "prefill_ms_4096", "sparse prefill T=4096", "ms", ""),
    ("kernels", "dense_ms_4096", "dense prefill T=4096", "ms", ""),
    ("kernels", "speedup_4096", "sparse vs dense at T=4096", "x", ">= 10"),
    ("kernels", "ort_prefill_ms", "onnxruntime prefill T=1024", "ms", ""),
    ("bridge", "text_fps", "text decode (384 values)", "frames/s", ">= 20000"),
    ("bridge", "binary_fps", "binary decode", "frames/s", ">= 100000"),
    ("features", "features_us_p50", "features, one frame", "us", "<= 20"),
    ("features", "features_batch_us_per_frame", "features, batched", "us/frame", ""),
    ("e2e", "e2e_cpu_us_per_frame", "end to end CPU per frame", "us", "<= 100"),
    ("e2e", "e2e_latency_us_p50", "end to end latency p50", "us", ""),
    ("e2e", "e2e_latency_us_p99", "end to end latency p99", "us", ""),
    ("e2e", "e2e_drops", "end to end drops", "frames", "0"),
    ("e2e", "max_nodes_100hz", "nodes sustained at 100 Hz", "nodes", ">= 16"),
    ("e2e", "rss_mb", "service RSS", "MB", "< 200"),
    ("e2e", "cold_start_s", "cold start (empty numba cache)", "s", ""),
    ("e2e", "warm_start_s", "warm start", "s", "< 3"),
    ("soak", "soak_rss_growth_mb", "soak RSS growth", "MB", "< 1"),
    ("soak", "soak_max_err", "soak max error vs prefill check", "", "<= 1e-5"),
]


@dataclass
class BenchContext:
    """What every section gets: the quick flag, a progress callback, the model, and a place for
    raw latency samples (name -> array of microseconds) that ``--plot`` draws."""

    quick: bool = False
    model: str | None = None
    soak: int | None = None
    progress: Callable[[str], None] = field(default=lambda msg: None)
    samples: dict = field(default_factory=dict)


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS),
                        help="run only this section (repeatable); default: all")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (under a minute in all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    parser.add_argument("--out", metavar="FILE", help="also write the JSON to FILE")
    parser.add_argument("--plot", metavar="FILE.png", help="draw latency CDFs (needs matplotlib: pip install '.[plot]')")
    parser.add_argument("--model", metavar="MODEL.onnx", help="model file (default: the shipped model)")
    parser.add_argument("--soak", type=int, metavar="N", help="frames for the soak section (1000000 for a release)")


def _finite(obj):
    """Replace non-finite floats by None so the JSON stays standard."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def markdown(result: dict) -> str:
    """A Markdown table of the headline figures of a bench result."""
    env = result.get("env", {})
    lines = [f"edge-aether bench on {env.get('cpu_model', '?')} ({env.get('arch', '?')}, "
             f"{env.get('cpus_usable', '?')} CPUs), Python {env.get('python', '?')}, numba "
             f"{env.get('numba', '?')}, onnxruntime {env.get('onnxruntime', '?')}", "",
             "| figure | value | unit | target |", "|---|---:|---|---|"]
    for section, key, label, unit, target in SUMMARY:
        value = result.get(section, {}).get(key)
        if value is None:
            continue
        text = f"{value:.3g}" if isinstance(value, float) else str(value)
        lines.append(f"| {label} | {text} | {unit} | {target} |")
    return "\n".join(lines)


def plot_cdf(samples: dict, path: str) -> None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("edge-aether bench --plot: matplotlib is not installed; pip install 'edge-aether[plot]'")
    import numpy as np
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, us in samples.items():
        a = np.sort(np.asarray(us, dtype=float))
        ax.plot(a, np.arange(1, a.size + 1) / a.size, label=f"{name} (p50 {np.median(a):.1f} us)")
    ax.set_xscale("log")
    ax.set_xlabel("latency (microseconds, log scale)")
    ax.set_ylabel("fraction of frames")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title("edge-aether per-frame latency CDF")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main_bench(args: argparse.Namespace) -> int:
    from . import env as env_mod

    names = args.only or list(SECTIONS)
    show = sys.stderr.isatty() and not args.json
    started = time.perf_counter()

    def progress(msg: str) -> None:
        if show:
            print(f"  [{time.perf_counter() - started:6.1f}s] {msg}", file=sys.stderr, flush=True)

    if args.soak is not None and args.soak < 1:
        print(f"edge-aether bench: --soak expects a positive frame count, found {args.soak}", file=sys.stderr)
        return 2
    from ..errors import ModelError
    from ..model_store import default_model_path
    try:
        model = args.model or str(default_model_path())
    except ModelError as e:
        print(f"edge-aether bench: {e}", file=sys.stderr)
        return 2
    ctx = BenchContext(quick=args.quick, model=model, soak=args.soak, progress=progress)
    result: dict[str, dict] = {"env": env_mod.collect(model)}
    for name in names:
        progress(f"section {name}")
        t0 = time.perf_counter()
        result[name] = importlib.import_module(SECTIONS[name]).run(ctx)
        result[name]["section_s"] = time.perf_counter() - t0
    result["env"]["bench_s"] = time.perf_counter() - started
    result["env"]["quick"] = bool(args.quick)
    result = _finite(result)
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    if args.plot:
        if not ctx.samples:
            print("edge-aether bench --plot: no latency samples in these sections", file=sys.stderr)
        else:
            plot_cdf(ctx.samples, args.plot)
    print(text if args.json else markdown(result))
    return 0
