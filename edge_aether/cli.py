"""The ``edge-aether`` command line.

Each subcommand lives in the module that owns its concern; this file only routes. A command's module
defines ``configure_<name>(parser)`` and ``main_<name>(args) -> int`` (dashes become underscores)
and is imported only when that command runs, so ``edge-aether parse`` never pays for numba.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__

#: name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("edge_aether.service", "run the service: ESP32 sources -> features -> head -> sinks"),
    "bench": ("edge_aether.bench", "measure latency and throughput on this machine"),
    "parse": ("firmware_bridge.cli", "decode a capture (text, binary or record file) and report"),
    "record": ("firmware_bridge.cli", "record raw bytes from a source to a crash-safe record file"),
    "sim": ("firmware_bridge.cli", "start simulated ESP32 nodes (optionally on a pseudo-terminal)"),
    "inspect": ("edge_aether.model_cli", "print a model file's configuration and checksum"),
    "import-rvne": ("edge_aether.model_cli", "convert a RuView .rvne weight blob into a model file"),
    "make-default-model": ("edge_aether.model_cli", "regenerate the shipped default model file"),
}


def _top_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="edge-aether",
        description="Edge runtime for WiFi sensing with ESP32 CSI and a temporal sparse-attention head.",
    )
    p.add_argument("--version", action="version", version=f"edge-aether {__version__}")
    p.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name, (_, help_) in COMMANDS.items():
        sub.add_parser(name, help=help_, add_help=False)
    return p


def _setup_logging(verbosity: int) -> None:
    level = logging.WARNING - 10 * min(verbosity, 2)
    logging.basicConfig(
        level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    # Global options come before the command; the command's own parser takes the rest.
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] not in ("-h", "--help", "--version"):
        i += 1
    if i >= len(argv) or argv[i] not in COMMANDS:
        top.parse_args(argv)  # prints help / version / the error for an unknown command
        top.print_help()
        return 2
    ns_top = top.parse_args(argv[:i])
    name = argv[i]
    module_name, help_ = COMMANDS[name]
    module = importlib.import_module(module_name)
    attr = name.replace("-", "_")
    parser = argparse.ArgumentParser(prog=f"edge-aether {name}", description=help_)
    getattr(module, f"configure_{attr}")(parser)
    args = parser.parse_args(argv[i + 1:])
    _setup_logging(ns_top.verbose)
    try:
        return int(getattr(module, f"main_{attr}")(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `edge-aether parse ... | head`
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
