"""Finding and loading model files without paying for ``import onnx`` on every start.

``import onnx`` costs over a second on x86 (its ml_dtypes extension) and several on a Pi, and a
systemd service restarts often. ``load_head`` therefore keeps, per model file content (SHA-256),
a validated copy of the configuration (JSON) and weights (``.npz``, no pickle) in the cache
directory; a warm start reads those and rebuilds the head, which re-validates shapes and values.
Any file that was never loaded through the full checks of ``edge_aether.onnx_model`` has no
cache entry, and a changed file has a new hash, so the cache can never admit a file the loader
would reject. This module must not import onnx.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib

import numpy as np

from .errors import ModelError

log = logging.getLogger(__name__)

#: The shipped default model's file name.
DEFAULT_MODEL_NAME = "aether-default.onnx"
_REPO_MODELS = pathlib.Path(__file__).resolve().parents[1] / "models"
_CACHE_VERSION = 1


def default_model_path() -> pathlib.Path:
    """Path of the shipped default model file.

    Looked up, in order: the package resource ``edge_aether/models/aether-default.onnx`` (where a
    wheel that ships the model puts it), then ``models/aether-default.onnx`` of the source checkout
    (editable installs). Raises ModelError saying how to make it when neither exists.
    """
    candidates = [pathlib.Path(__file__).resolve().parent / "models" / DEFAULT_MODEL_NAME,
                  _REPO_MODELS / DEFAULT_MODEL_NAME]
    for c in candidates:
        if c.is_file():
            return c
    raise ModelError(f"the default model file is not installed (looked at {[str(c) for c in candidates]}); "
                     "generate it with `edge-aether make-default-model --out PATH` and pass --model PATH")


def file_sha256(path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> pathlib.Path | None:
    """Where validated model copies live: $EDGE_AETHER_CACHE_DIR, else $XDG_CACHE_HOME/edge-aether,
    else ~/.cache/edge-aether; None when none can be created (then nothing is cached)."""
    env = os.environ.get("EDGE_AETHER_CACHE_DIR")
    if env:
        base = pathlib.Path(env)
    else:
        xdg = os.environ.get("XDG_CACHE_HOME")
        base = pathlib.Path(xdg) / "edge-aether" if xdg else pathlib.Path.home() / ".cache" / "edge-aether"
    try:
        (base / "models").mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    return base / "models"


def _entry(folder: pathlib.Path, digest: str) -> tuple[pathlib.Path, pathlib.Path]:
    return folder / f"{digest}.v{_CACHE_VERSION}.json", folder / f"{digest}.v{_CACHE_VERSION}.npz"


def _load_cached(folder: pathlib.Path, digest: str):
    from .head import HeadWeights, TemporalHead
    from .pattern import SparsePattern

    meta_path, weights_path = _entry(folder, digest)
    if not (meta_path.is_file() and weights_path.is_file()):
        return None
    try:
        cfg = json.loads(meta_path.read_text(encoding="utf-8"))
        with np.load(weights_path, allow_pickle=False) as z:
            weights = HeadWeights(**{k: z[k] for k in HeadWeights._fields})
        return TemporalHead(cfg["in_dim"], cfg["q_heads"], cfg["kv_heads"], cfg["head_dim"],
                            SparsePattern.from_dict(cfg["pattern"]), weights, cfg["class_names"],
                            cfg["feature_recipe"])
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged entry: reload the file
        log.warning("ignoring damaged model cache entry %s: %s", meta_path, exc)
        return None


def _store(folder: pathlib.Path, digest: str, head) -> None:
    meta_path, weights_path = _entry(folder, digest)
    tmp_w = weights_path.with_suffix(f".tmp{os.getpid()}.npz")
    tmp_m = meta_path.with_suffix(f".tmp{os.getpid()}")
    try:
        np.savez(tmp_w, **head.weights._asdict())
        tmp_m.write_text(json.dumps(head.config(), sort_keys=True), encoding="utf-8")
        os.replace(tmp_w, weights_path)  # weights first: a JSON entry always has its weights
        os.replace(tmp_m, meta_path)
    except OSError as exc:
        log.info("model cache not written (%s): %s", folder, exc)
        for p in (tmp_w, tmp_m):
            try:
                p.unlink()
            except OSError:
                pass


def load_head(path=None, backend: str = "numba", use_cache: bool = True):
    """Load a model file (None: the shipped default) for ``backend`` "numba" or "onnxruntime".

    The numba backend is served from the validated cache when the file's content was loaded
    before; otherwise the file goes through ``edge_aether.onnx_model.load_onnx`` and its checks.
    """
    path = pathlib.Path(path) if path else default_model_path()
    folder = cache_dir() if (use_cache and backend == "numba") else None
    digest = file_sha256(path) if folder is not None else None
    if folder is not None:
        head = _load_cached(folder, digest)
        if head is not None:
            log.debug("model %s loaded from the validated cache %s", path, folder)
            return head
    from .onnx_model import load_onnx

    head = load_onnx(path, backend=backend)
    if folder is not None:
        _store(folder, digest, head)
    return head
