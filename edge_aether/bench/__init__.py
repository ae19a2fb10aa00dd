"""``edge-aether bench``: the one command that says whether a device keeps up.

Sections are modules with ``run(ctx: BenchContext) -> dict`` returning flat JSON-able numbers; they
are imported lazily so one section's dependencies never slow another. Results are grouped by section
in the JSON (``{"env": {...}, "kernels": {...}, ...}``); key names are stable.
"""
from __future__ import annotations

import argparse
import importlib
import json
import sys
from dataclasses import dataclass, field
from typing import Callable

#: section name -> module path (each defines ``run(ctx) -> dict``)
SECTIONS: dict[str, str] = {
    "kernels": "edge_aether.bench.kernels",
    "bridge": "firmware_bridge.bench",
    "features": "edge_aether.bench.features",
}


@dataclass
class BenchContext:
    """What every section gets: the quick flag, a progress callback and the model to use."""

    quick: bool = False
    model: str | None = None
    progress: Callable[[str], None] = field(default=lambda msg: None)


def configure_bench(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only this section (repeatable)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (about a minute in all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object and nothing else on stdout")
    parser.add_argument("--out", metavar="FILE", help="also write the JSON to FILE")
    parser.add_argument("--model", metavar="MODEL.onnx", help="model file (default: the shipped model)")


def main_bench(args: argparse.Namespace) -> int:
    names = args.only or list(SECTIONS)
    show = sys.stderr.isatty() and not args.json

    def progress(msg: str) -> None:
        if show:
            print(f"  {msg}", file=sys.stderr, flush=True)

    ctx = BenchContext(quick=args.quick, model=args.model, progress=progress)
    result: dict[str, dict] = {}
    for name in names:
        progress(f"[{name}]")
        result[name] = importlib.import_module(SECTIONS[name]).run(ctx)
    text = json.dumps(result, indent=2, sort_keys=True)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            f.write(text + "\n")
    print(text)
    return 0
