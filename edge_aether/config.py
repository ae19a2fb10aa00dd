"""Settings of ``edge-aether run``: a TOML file, overridden by command-line flags, validated at start.

Every key is declared once in :data:`KEYS` (section.key -> type, default, help); the loader rejects
unknown sections and keys, wrong types and out-of-range values with a :class:`ConfigError` whose
message names the key, what was found and what is expected. The README's configuration reference is
:func:`reference` rendered as a table.
"""
from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10 (Jetson JetPack 6)
    import tomli as tomllib

from .errors import ConfigError

#: Used when ``--config`` is not given and this file exists.
DEFAULT_CONFIG_PATH = "/etc/edge-aether/config.toml"
#: The embedded default source: simulated ESP32 nodes on a real pseudo-terminal.
DEMO_SOURCE = "pty-sim://?nodes=4&rate=100"


@dataclass(frozen=True)
class Key:
    kind: str                     # "str", "bool", "int", "float", "list[str]"
    default: Any
    help: str
    check: Optional[Callable[[Any], Optional[str]]] = None   # returns what is expected, or None if fine


def _positive(v) -> Optional[str]:
    return None if v > 0 else "a value > 0"


def _non_negative(v) -> Optional[str]:
    return None if v >= 0 else "a value >= 0"


def _one_of(*choices) -> Callable[[Any], Optional[str]]:
    return lambda v: None if v in choices else f"one of {list(choices)}"


def _digits(v) -> Optional[str]:
    return None if 1 <= v <= 9 else "an integer from 1 to 9"


def _sources(v) -> Optional[str]:
    return None if v and all(s.strip() for s in v) else "a non-empty list of source URLs"


def _unit_open(v) -> Optional[str]:
    return None if 0.0 < v < 1.0 else "a forgetting factor strictly between 0 and 1 (e.g. 0.99)"


#: Every setting: "section.key" -> Key. Defaults of None mean "decided at start" (see help).
KEYS: dict[str, Key] = {
    "input.sources": Key("list[str]", None, "source URLs: serial:///dev/esp32-csi-0?baud=921600, "
                         "udp://0.0.0.0:5005, replay://FILE, sim://?nodes=4, pty-sim://?nodes=4 "
                         f"(default without a config file: {DEMO_SOURCE!r})", _sources),
    "input.wait_for_port": Key("bool", False, "start even when a serial port is absent and wait for it "
                               "(otherwise an absent port is an error at start)"),
    "input.queue_size": Key("int", 4096, "frames buffered per source before the oldest is dropped", _positive),
    "input.max_seq_gap": Key("int", 10000, "a forward sequence gap above this many frames resets the "
                             "node's stream (smaller gaps count as lost frames)", _positive),
    "input.reset_gap_s": Key("float", 5.0, "a node silent for longer than this (seconds, host clock) "
                             "starts a new stream", _positive),
    "model.path": Key("str", "", "model file (.onnx); empty: the shipped default model"),
    "model.backend": Key("str", "numba", "numba (compiled kernels) or onnxruntime",
                         _one_of("numba", "onnxruntime")),
    "model.horizon": Key("int", 0, "frames of look-back kept per node stream; 0: the model's own "
                         "horizon", _non_negative),
    "features.iq_order": Key("str", None, "imag_first or real_first; default: the model's recipe",
                             _one_of("imag_first", "real_first")),
    "features.hampel": Key("bool", None, "Hampel filter over time; default: the model's recipe"),
    "features.normalise": Key("float", None, "running normalisation forgetting factor; default: the "
                              "model's recipe", _unit_open),
    "features.hold_max": Key("int", None, "lost frames filled by holding the last vector (so positions "
                             "track time); default: the model's recipe", _non_negative),
    "features.ht40": Key("str", None, "primary or decimate; default: the model's recipe",
                         _one_of("primary", "decimate")),
    "output.file": Key("str", "", "JSON-lines output file; empty or '-': standard output"),
    "output.rotate_mb": Key("float", 64.0, "rotate the output file when it exceeds this size (MB)", _positive),
    "output.keep": Key("int", 5, "rotated files kept (FILE.1 ... FILE.N)", _non_negative),
    "output.embedding": Key("bool", False, "include the head's output vector (in_dim floats) per frame"),
    "output.digits": Key("int", 6, "significant digits of output floats", _digits),
    "service.stats_interval_s": Key("float", 10.0, "seconds between stats lines in the log (and STATUS=)",
                                    _positive),
    "service.batch_ms": Key("float", 5.0, "gather frames for at least this long (ms) before processing "
                            "them as one batch: less CPU per frame, more latency", _non_negative),
    "service.max_frames": Key("int", 0, "stop after this many output lines; 0: never", _non_negative),
    "service.duration_s": Key("float", 0.0, "stop after this many seconds; 0: never", _non_negative),
    "service.log_level": Key("str", "info", "debug, info, warning or error",
                             _one_of("debug", "info", "warning", "error")),
}

_TYPE_NAMES = {str: "string", bool: "boolean", int: "integer", float: "number", list: "list",
               dict: "table"}


def _type_name(v: Any) -> str:
    return _TYPE_NAMES.get(type(v), type(v).__name__)


def _coerce(name: str, key: Key, value: Any, where: str) -> Any:
    """The value as the key's type, or ConfigError naming the key."""
    def bad(expected: str) -> ConfigError:
        return ConfigError(f"{where}{name}: found {value!r} ({_type_name(value)}), expected {expected}")

    k = key.kind
    if k == "str":
        if not isinstance(value, str):
            raise bad("a string")
    elif k == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
    elif k == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad("an integer")
    elif k == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad("a finite number")
        value = float(value)
    elif k == "list[str]":
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise bad("a list of strings")
    if key.check is not None:
        expected = key.check(value)
        if expected is not None:
            raise bad(expected)
    return value


@dataclass
class Settings:
    """Validated settings: ``values`` maps every key of :data:`KEYS` to its value."""

    values: dict
    config_path: Optional[str] = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def demo(self) -> bool:
        """True when running the embedded default (no config file, no source given)."""
        return self.values["input.sources"] == [DEMO_SOURCE] and self.config_path is None

    def recipe_overrides(self) -> dict:
        """The features.* keys that were set (the rest come from the model's recipe)."""
        return {k.split(".", 1)[1]: v for k, v in self.values.items()
                if k.startswith("features.") and v is not None}


def parse_table(data: Mapping[str, Any], where: str = "") -> dict:
    """Validate a parsed TOML document; return {section.key: value} of the keys it sets."""
    sections = sorted({k.split(".", 1)[0] for k in KEYS})
    out: dict = {}
    for sec, table in data.items():
        if sec not in sections:
            raise ConfigError(f"{where}unknown section or key {sec!r}; expected one of the sections "
                              f"{sections}, e.g. [input] sources = [\"serial:///dev/esp32-csi-0\"]")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}{sec}: found {table!r} ({_type_name(table)}), expected a table [{sec}]")
        for key, value in table.items():
            name = f"{sec}.{key}"
            if name not in KEYS:
                known = sorted(k.split(".", 1)[1] for k in KEYS if k.startswith(sec + "."))
                raise ConfigError(f"{where}unknown key {name!r}; keys of [{sec}]: {', '.join(known)}")
            out[name] = _coerce(name, KEYS[name], value, where)
    return out


def load_file(path: str) -> dict:
    """Read and validate a TOML config file; ConfigError with the path on any problem."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file {path}: not found (pass --config PATH, or --no-config)") from None
    except OSError as e:
        raise ConfigError(f"config file {path}: cannot read it: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"config file {path}: not valid TOML: {e}") from None
    return parse_table(data, where=f"{path}: ")


def build(config_path: Optional[str] = None, overrides: Optional[Mapping[str, Any]] = None,
          use_default_path: bool = True) -> Settings:
    """Settings from defaults, then the config file, then ``overrides`` ({section.key: value}).

    ``config_path`` None: :data:`DEFAULT_CONFIG_PATH` when it exists (and ``use_default_path``).
    Without any config file and without sources, the embedded default source is used.
    """
    values = {k: key.default for k, key in KEYS.items()}
    path = config_path
    if path is None and use_default_path and os.path.exists(DEFAULT_CONFIG_PATH):
        path = DEFAULT_CONFIG_PATH
    if path is not None:
        values.update(load_file(path))
    for name, value in (overrides or {}).items():
        if name not in KEYS:
            raise ConfigError(f"unknown setting {name!r}")
        if value is not None:
            values[name] = _coerce(name, KEYS[name], value, "")
    if values["input.sources"] is None:
        if path is not None:
            raise ConfigError(f"{path}: input.sources: missing; expected a list of source URLs, e.g. "
                              "sources = [\"serial:///dev/esp32-csi-0?baud=921600\"]")
        values["input.sources"] = [DEMO_SOURCE]
    return Settings(values, path)


def reference() -> str:
    """Markdown table of every key (for the README)."""
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for name, key in KEYS.items():
        default = "(see meaning)" if key.default is None else repr(key.default).replace("'", '"')
        rows.append(f"| `{name}` | {key.kind} | `{default}` | {key.help} |")
    return "\n".join(rows)


__all__ = ["DEFAULT_CONFIG_PATH", "DEMO_SOURCE", "KEYS", "Key", "Settings", "build", "load_file",
           "parse_table", "reference"]
