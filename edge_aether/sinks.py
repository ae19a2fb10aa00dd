"""Where results go: one JSON object per frame, as lines, to standard output or a rotating file.

``LineFormatter`` turns a batch of results into text (floats rounded to a few significant digits so
that lines stay short); ``JsonLinesSink`` writes a batch with one ``write`` and one flush, rotates
the file by size (fsync before the rename) and fsyncs on close, so a stop never loses a line that
was reported written.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import IO, Optional, Sequence

import numpy as np

log = logging.getLogger(__name__)


class LineFormatter:
    """Formats one output line per frame.

    Line fields: ``node``; ``seq`` (as sent, or null); ``device_time_us`` (unwrapped device clock, or
    null); ``host_time`` (Unix seconds when the frame's bytes arrived); ``latency_us`` (bytes
    arrived to output ready); ``class`` and ``probs`` (label -> probability) when the model has a
    classifier; ``embedding`` (the head's output vector) when asked for.

    Parameters
    ----------
    class_names : sequence of str
        The classifier's labels (empty: no classifier fields).
    digits : int
        Significant digits of the floats.
    embedding : bool
        Include ``embedding``.
    """

    def __init__(self, class_names: Sequence[str] = (), digits: int = 6, embedding: bool = False) -> None:
        self.class_names = tuple(class_names)
        self.digits = int(digits)
        self.embedding = bool(embedding)
        f = f"%.{self.digits}g"
        self._float = f
        self._probs = "{" + ",".join(f"{json.dumps(c)}:{f}" for c in self.class_names) + "}"
        self._labels = [json.dumps(c) for c in self.class_names]
        self._node_json: dict = {}

    def node_json(self, node: str) -> str:
        s = self._node_json.get(node)
        if s is None:
            s = self._node_json[node] = json.dumps(node)
        return s

    def format(self, nodes: Sequence[str], seqs: Sequence, dev_us: Sequence, host_s: np.ndarray,
               latency_us: np.ndarray, probs: Optional[np.ndarray], emb: Optional[np.ndarray]) -> str:
        """The text of a batch of ``len(nodes)`` lines (each ending in a newline)."""
        n = len(nodes)
        host = host_s.tolist()
        lat = latency_us.tolist()
        parts = []
        pr = probs.tolist() if probs is not None and self.class_names else None
        top = probs.argmax(axis=1).tolist() if pr is not None else None
        em = emb.tolist() if emb is not None and self.embedding else None
        ff = self._float
        for i in range(n):
            seq = seqs[i]
            dev = dev_us[i]
            line = (f'{{"node":{self.node_json(nodes[i])},"seq":{"null" if seq is None else seq},'
                    f'"device_time_us":{"null" if dev is None else dev},"host_time":{host[i]:.6f},'
                    f'"latency_us":{lat[i]}')
            if pr is not None:
                line += f',"class":{self._labels[top[i]]},"probs":' + (self._probs % tuple(pr[i]))
            if em is not None:
                line += ',"embedding":[' + ",".join([ff % v for v in em[i]]) + "]"
            parts.append(line + "}\n")
        return "".join(parts)


class JsonLinesSink:
    """JSON lines to standard output (``path`` None or ``"-"``) or to a file with size rotation.

    Parameters
    ----------
    path : str or None
        Output file, opened for appending (a restart continues the file).
    rotate_bytes : int
        When the file exceeds this after a batch it is fsynced and renamed ``path.1`` (older ones
        shift to ``path.2`` ... ``path.keep``, the oldest is removed) and a new file is started.
    keep : int
        Rotated files kept; 0 keeps none (the full file is removed at rotation).
    stream : text file, optional
        Where standard output goes (tests pass a buffer).
    """

    def __init__(self, path: Optional[str] = None, rotate_bytes: int = 64 << 20, keep: int = 5,
                 stream: Optional[IO[str]] = None) -> None:
        self.path = None if path in (None, "", "-") else os.fspath(path)
        self.rotate_bytes = int(rotate_bytes)
        self.keep = int(keep)
        self.lines = 0
        self.rotations = 0
        self._size = 0
        self._f: Optional[IO[str]] = None
        if self.path is None:
            self._f = stream if stream is not None else sys.stdout
        else:
            self._open()

    def _open(self) -> None:
        try:
            self._f = open(self.path, "a", encoding="utf-8", buffering=1 << 16)
        except OSError as e:
            from .errors import ConfigError
            raise ConfigError(f"output.file: cannot open {self.path} for appending: {e.strerror or e}") from None
        self._size = self._f.tell()

    def write(self, text: str, n_lines: int) -> None:
        """Write a batch of lines and flush it (rotating the file afterwards when it is full)."""
        if not text:
            return
        f = self._f
        f.write(text)
        f.flush()
        self.lines += n_lines
        if self.path is not None:
            self._size += len(text)  # ASCII: json.dumps escapes everything else
            if self._size >= self.rotate_bytes:
                self.rotate()

    def _fsync(self) -> None:
        try:
            os.fsync(self._f.fileno())
        except (OSError, ValueError, AttributeError):  # pipes, terminals, test buffers
            pass

    def rotate(self) -> None:
        """Close the current file durably, shift the rotated ones, start a new file."""
        if self.path is None:
            return
        self._f.flush()
        self._fsync()
        self._f.close()
        if self.keep > 0:
            for k in range(self.keep - 1, 0, -1):
                src = f"{self.path}.{k}"
                if os.path.exists(src):
                    os.replace(src, f"{self.path}.{k + 1}")
            os.replace(self.path, f"{self.path}.1")
        else:
            os.remove(self.path)
        self._sync_dir()
        self.rotations += 1
        self._open()

    def _sync_dir(self) -> None:
        try:
            fd = os.open(os.path.dirname(os.path.abspath(self.path)), os.O_RDONLY)
        except OSError:
            return
        try:
            os.fsync(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def close(self) -> None:
        """Flush and fsync (the file is closed; standard output is left open)."""
        if self._f is None:
            return
        try:
            self._f.flush()
        except (OSError, ValueError):
            pass
        self._fsync()
        if self.path is not None:
            self._f.close()
        self._f = None


__all__ = ["JsonLinesSink", "LineFormatter"]
