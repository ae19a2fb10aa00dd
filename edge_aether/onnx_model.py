"""Model files: the AETHER head as ONNX (DESIGN.md section 4). Export, load, validate.

A model is two files side by side, written together by ``save_onnx``:

* ``NAME.onnx`` - the PREFILL graph (``x [N, T, in_dim] -> y``, ``logits``), with the weights as
  initializers and the pattern's non-window keys as the integer table ``extra_keys``
  (``edge_aether.onnx_graph``). This file alone is enough for the Numba backend.
* ``NAME.step.onnx`` - the STREAMING STEP graph with the stream state as explicit inputs/outputs,
  the same weights and metadata. The onnxruntime backend streams with it (and rebuilds it in memory
  from the prefill file's weights when it is absent).

Both record the configuration as ``metadata_props`` (keys ``edge_aether.*``, values JSON) and the
producer in the standard ``producer_name``/``producer_version`` fields. Loading checks everything
before any tensor is used, and every failure is a ``ModelError`` naming the tensor or key: unknown
format version, missing or unparseable metadata, missing or extra initializers, shapes or dtypes
that disagree with the metadata, non-finite weights, a pattern table that disagrees with the
pattern, external-data references that leave the model's folder. No pickle anywhere: ONNX is
protobuf, and no object is ever unpickled.
"""
from __future__ import annotations

import json
import os
import pathlib
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import numpy_helper

from . import __version__
from .errors import InputError, ModelError
from .onnx_graph import (OPSET, TABLE_NAME, build_prefill, build_step, extra_keys_table,
                         graph_weight_names, weight_shapes)
from .model_store import _REPO_MODELS, DEFAULT_MODEL_NAME, default_model_path, file_sha256  # noqa: F401
from .pattern import SparsePattern

#: Version of the metadata layout this edge-aether reads and writes.
FORMAT_VERSION = "1"
#: Longest sequence the prefill graph of a new file accepts (the table has one row per position).
DEFAULT_MAX_SEQ = 4096

_P = "edge_aether."
#: metadata key -> what it holds (all JSON)
METADATA_KEYS = {
    "format_version": "layout version of these keys (a string)",
    "graph": '"prefill" or "step"',
    "in_dim": "feature vector length",
    "q_heads": "query heads",
    "kv_heads": "key/value heads",
    "head_dim": "per-head width",
    "n_classes": "classifier outputs (0: none)",
    "class_names": "list of class labels",
    "pattern": "SparsePattern.to_dict(): window, block_size, global_tokens, log_stride, landmarks, horizon",
    "max_seq": "longest sequence the prefill graph accepts",
    "feature_recipe": "the feature recipe the weights expect (dict) or null",
}

#: The shipped default model: file name, seed, classifier labels.
DEFAULT_SEED = 0
DEFAULT_CLASS_NAMES = ("untrained_0", "untrained_1", "untrained_2", "untrained_3")
DEFAULT_HORIZON = 1024



@dataclass(frozen=True)
class HeadConfig:
    """Configuration of a head as a model file records it."""

    in_dim: int
    q_heads: int
    kv_heads: int
    head_dim: int
    n_classes: int
    class_names: tuple
    pattern: SparsePattern
    max_seq: int
    feature_recipe: dict | None

    @classmethod
    def of(cls, head, max_seq=DEFAULT_MAX_SEQ) -> "HeadConfig":
        return cls(head.in_dim, head.q_heads, head.kv_heads, head.head_dim, head.n_classes,
                   tuple(head.class_names), head.pattern, int(max_seq), head.feature_recipe)

    def metadata(self, graph: str) -> dict:
        values = {"format_version": FORMAT_VERSION, "graph": graph, "in_dim": self.in_dim,
                  "q_heads": self.q_heads, "kv_heads": self.kv_heads, "head_dim": self.head_dim,
                  "n_classes": self.n_classes, "class_names": list(self.class_names),
                  "pattern": self.pattern.to_dict(), "max_seq": self.max_seq,
                  "feature_recipe": self.feature_recipe}
        return {_P + k: json.dumps(v, sort_keys=True, separators=(",", ":")) for k, v in values.items()}

    @property
    def n_params(self) -> int:
        shapes = weight_shapes(self.in_dim, self.q_heads, self.kv_heads, self.head_dim, self.n_classes)
        return int(sum(np.prod(s) for s in shapes.values()))


@dataclass
class ModelFile:
    """A validated model file: its configuration, weights (name -> float32 array) and proto."""

    path: pathlib.Path
    config: HeadConfig
    weights: dict
    proto: onnx.ModelProto
    graph: str

    def sha256(self) -> str:
        return file_sha256(self.path)


def step_path(path) -> pathlib.Path:
    """The step graph's file beside a prefill file: ``NAME.onnx`` -> ``NAME.step.onnx``."""
    p = pathlib.Path(path)
    return p.with_name(p.name[:-5] + ".step.onnx" if p.name.endswith(".onnx") else p.name + ".step.onnx")


# --------------------------------------------------------------------------------------------
# Export
# --------------------------------------------------------------------------------------------
def build_models(head, max_seq=DEFAULT_MAX_SEQ) -> tuple:
    """(prefill ModelProto, step ModelProto) of a head, in memory."""
    if isinstance(max_seq, bool) or not isinstance(max_seq, (int, np.integer)) or max_seq < 1:
        raise InputError(f"max_seq: expected an integer >= 1, found {max_seq!r}")
    cfg = HeadConfig.of(head, max_seq)
    table = extra_keys_table(cfg.pattern, cfg.max_seq)
    prefill = build_prefill(cfg, head.weights, table, cfg.metadata("prefill"), __version__)
    step = build_step(cfg, head.weights, cfg.metadata("step"), __version__)
    return prefill, step


def _write_atomic(path: pathlib.Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def save_onnx(head, path, max_seq=DEFAULT_MAX_SEQ, step=True) -> pathlib.Path:
    """Write ``head`` to ``path`` (prefill graph) and, if ``step``, ``NAME.step.onnx`` beside it.

    Parameters
    ----------
    head : TemporalHead (or anything with its attributes)
    path : str or Path, should end in ``.onnx``
    max_seq : int
        Longest sequence the prefill graph will accept (the pattern table has one row per
        position: about ``max_seq * 2 * M`` bytes, M the most non-window keys of one query).
    step : bool
        Also write the streaming step graph.

    Returns
    -------
    The path of the prefill file. Output is deterministic: the same head gives the same bytes.
    """
    path = pathlib.Path(path)
    prefill, step_model = build_models(head, max_seq)
    for m in (prefill, step_model):
        onnx.checker.check_model(m)
    _write_atomic(path, prefill.SerializeToString())
    if step:
        _write_atomic(step_path(path), step_model.SerializeToString())
    return path


# --------------------------------------------------------------------------------------------
# Load and validate
# --------------------------------------------------------------------------------------------
def _metadata(model: onnx.ModelProto, path) -> dict:
    props = {p.key: p.value for p in model.metadata_props}
    key = _P + "format_version"
    if key not in props:
        raise ModelError(f"{path}: metadata key {key!r} is missing; this is not an edge-aether model "
                         "file (import weights with `edge-aether import-rvne` or TemporalHead.to_onnx)")
    try:
        version = json.loads(props[key])
    except ValueError:
        version = props[key]
    if version != FORMAT_VERSION:
        raise ModelError(f"{path}: metadata key {key!r} is {version!r}, this edge-aether reads version "
                         f"{FORMAT_VERSION!r} only; upgrade edge-aether or re-export the model")
    out = {}
    for k in METADATA_KEYS:
        if _P + k not in props:
            raise ModelError(f"{path}: metadata key {_P + k!r} ({METADATA_KEYS[k]}) is missing")
        try:
            out[k] = json.loads(props[_P + k])
        except ValueError as e:
            raise ModelError(f"{path}: metadata key {_P + k!r} is not valid JSON ({e}): {props[_P + k]!r}") from None
    unknown = sorted(k for k in props if k.startswith(_P) and k[len(_P):] not in METADATA_KEYS)
    if unknown:
        raise ModelError(f"{path}: unknown metadata keys {unknown} for format version {FORMAT_VERSION}; "
                         f"expected only {sorted(_P + k for k in METADATA_KEYS)}")
    return out


def _config(meta: dict, path) -> HeadConfig:
    def whole(key, minimum):
        v = meta[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise ModelError(f"{path}: metadata key {_P + key!r}: expected an integer >= {minimum}, found {v!r}")
        return v

    dims = {k: whole(k, 1) for k in ("in_dim", "q_heads", "kv_heads", "head_dim", "max_seq")}
    n_classes = whole("n_classes", 0)
    if dims["q_heads"] % dims["kv_heads"]:
        raise ModelError(f"{path}: metadata q_heads={dims['q_heads']} is not a multiple of "
                         f"kv_heads={dims['kv_heads']}")
    names = meta["class_names"]
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names) or len(names) != n_classes:
        raise ModelError(f"{path}: metadata key {_P + 'class_names'!r}: expected a list of {n_classes} "
                         f"strings (n_classes), found {names!r}")
    if not isinstance(meta["pattern"], dict):
        raise ModelError(f"{path}: metadata key {_P + 'pattern'!r}: expected an object, found {meta['pattern']!r}")
    try:
        pattern = SparsePattern.from_dict(meta["pattern"])
    except (InputError, TypeError) as e:
        raise ModelError(f"{path}: metadata key {_P + 'pattern'!r}: {e}") from None
    recipe = meta["feature_recipe"]
    if recipe is not None and not isinstance(recipe, dict):
        raise ModelError(f"{path}: metadata key {_P + 'feature_recipe'!r}: expected an object or null, "
                         f"found {recipe!r}")
    if meta["graph"] not in ("prefill", "step"):
        raise ModelError(f"{path}: metadata key {_P + 'graph'!r}: expected \"prefill\" or \"step\", "
                         f"found {meta['graph']!r}")
    return HeadConfig(dims["in_dim"], dims["q_heads"], dims["kv_heads"], dims["head_dim"], n_classes,
                      tuple(names), pattern, dims["max_seq"], recipe)


def _check_external_data(model: onnx.ModelProto, folder: pathlib.Path, path) -> None:
    root = folder.resolve()
    for t in model.graph.initializer:
        if t.data_location != onnx.TensorProto.EXTERNAL:
            continue
        info = {e.key: e.value for e in t.external_data}
        loc = info.get("location", "")
        target = (root / loc).resolve()
        if not loc or os.path.isabs(loc) or os.path.commonpath([root, target]) != str(root):
            raise ModelError(f"{path}: initializer {t.name!r} refers to external data {loc!r} outside the "
                             f"model's folder {str(root)!r}; external data must lie beside the model")
        if not target.is_file():
            raise ModelError(f"{path}: initializer {t.name!r}: external data file {loc!r} is missing")


def read_model(path, expect_graph: str | None = "prefill") -> ModelFile:
    """Read and validate one model file (see module doc). Raises ModelError naming what is wrong."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise ModelError(f"model file {str(path)!r} does not exist (the shipped default is at "
                         "edge_aether.onnx_model.default_model_path())")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf decode errors have no stable type
        raise ModelError(f"{path}: not a readable ONNX file ({type(e).__name__}: {e})") from None
    meta = _metadata(model, path)
    cfg = _config(meta, path)
    graph = meta["graph"]
    if expect_graph is not None and graph != expect_graph:
        raise ModelError(f"{path}: metadata key {_P + 'graph'!r} is {graph!r}, expected {expect_graph!r}"
                         + (f" (pass the prefill file, not the {graph} file)" if graph == "step" else ""))
    opsets = {o.domain: o.version for o in model.opset_import}
    if set(opsets) - {"", "ai.onnx"} or opsets.get("", opsets.get("ai.onnx")) != OPSET:
        raise ModelError(f"{path}: opset imports {opsets}: expected the standard domain at opset {OPSET} only")
    _check_external_data(model, path.parent, path)
    try:
        onnx.load_external_data_for_model(model, str(path.parent))
    except Exception as e:
        raise ModelError(f"{path}: external data could not be read ({e})") from None

    inits = {t.name: t for t in model.graph.initializer}
    expected = list(graph_weight_names(cfg.n_classes))
    table = None
    if graph == "prefill":
        table = extra_keys_table(cfg.pattern, cfg.max_seq)
        if table.shape[1]:
            expected.append(TABLE_NAME)
    missing = [n for n in expected if n not in inits]
    if missing:
        raise ModelError(f"{path}: initializer(s) {missing} missing; a {graph} graph with n_classes="
                         f"{cfg.n_classes} holds {expected}")
    extra = sorted(set(inits) - set(expected))
    if extra:
        raise ModelError(f"{path}: unexpected initializer(s) {extra}; a {graph} graph with n_classes="
                         f"{cfg.n_classes} holds exactly {expected}")
    shapes = weight_shapes(cfg.in_dim, cfg.q_heads, cfg.kv_heads, cfg.head_dim, cfg.n_classes)
    weights = {}
    for name in graph_weight_names(cfg.n_classes):
        t = inits[name]
        if t.data_type != onnx.TensorProto.FLOAT:
            raise ModelError(f"{path}: initializer {name!r}: expected float32, found "
                             f"{onnx.helper.tensor_dtype_to_np_dtype(t.data_type)}")
        if tuple(t.dims) != shapes[name]:
            raise ModelError(f"{path}: initializer {name!r} has shape {tuple(t.dims)}, but the metadata "
                             f"(in_dim={cfg.in_dim}, q_heads={cfg.q_heads}, kv_heads={cfg.kv_heads}, "
                             f"head_dim={cfg.head_dim}, n_classes={cfg.n_classes}) requires {shapes[name]}")
        try:
            a = numpy_helper.to_array(t)
        except Exception as e:
            raise ModelError(f"{path}: initializer {name!r} could not be read ({e})") from None
        if a.shape != shapes[name]:
            raise ModelError(f"{path}: initializer {name!r}: data holds {a.size} values, expected "
                             f"shape {shapes[name]}")
        if not np.all(np.isfinite(a)):
            raise ModelError(f"{path}: initializer {name!r} holds NaN or inf")
        weights[name] = np.ascontiguousarray(a, np.float32)
    if not cfg.n_classes:
        weights["wc"] = np.zeros(shapes["wc"], np.float32)
        weights["bc"] = np.zeros(shapes["bc"], np.float32)
    if table is not None and table.shape[1]:
        found = numpy_helper.to_array(inits[TABLE_NAME])
        if found.shape != table.shape or found.dtype != table.dtype or not np.array_equal(found, table):
            raise ModelError(f"{path}: initializer {TABLE_NAME!r} ({found.dtype} {found.shape}) does not "
                             f"match the pattern and max_seq in the metadata ({table.dtype} {table.shape}); "
                             "re-export the model")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as e:
        raise ModelError(f"{path}: fails onnx.checker: {e}") from None
    return ModelFile(path, cfg, weights, model, graph)


def read_step_model(path, prefill: ModelFile) -> ModelFile | None:
    """The step file beside ``path``, validated and checked to match ``prefill``; None if absent."""
    sp = step_path(path)
    if not sp.is_file():
        return None
    step = read_model(sp, expect_graph="step")
    a, b = prefill.config, step.config
    if (a.in_dim, a.q_heads, a.kv_heads, a.head_dim, a.n_classes, a.class_names, a.pattern) != \
            (b.in_dim, b.q_heads, b.kv_heads, b.head_dim, b.n_classes, b.class_names, b.pattern):
        raise ModelError(f"{sp}: its configuration disagrees with {path}; regenerate both with to_onnx")
    for name, w in prefill.weights.items():
        if not np.array_equal(w, step.weights[name]):
            raise ModelError(f"{sp}: initializer {name!r} differs from the one in {path}; the step file "
                             "belongs to another model (regenerate both with to_onnx)")
    return step


def head_from_file(mf: ModelFile):
    """A Numba ``TemporalHead`` from a validated model file."""
    from .head import HeadWeights, TemporalHead

    c = mf.config
    w = HeadWeights(**{k: mf.weights[k] for k in HeadWeights._fields})
    return TemporalHead(c.in_dim, c.q_heads, c.kv_heads, c.head_dim, c.pattern, w, c.class_names,
                        c.feature_recipe)


def load_onnx(path, backend="numba"):
    """Load a model file.

    Parameters
    ----------
    path : str or Path of the prefill file (``NAME.onnx``)
    backend : {"numba", "onnxruntime"}
        "numba": a ``TemporalHead``. "onnxruntime": an ``OrtTemporalHead`` running the file's
        graphs (the step graph from ``NAME.step.onnx``, rebuilt from the weights if absent).
    """
    if backend not in ("numba", "onnxruntime"):
        raise InputError(f"backend: expected 'numba' or 'onnxruntime', found {backend!r}")
    mf = read_model(path)
    if backend == "numba":
        return head_from_file(mf)
    from .ort_backend import OrtTemporalHead

    return OrtTemporalHead.from_model_file(mf, read_step_model(path, mf))


# --------------------------------------------------------------------------------------------
# The shipped default model
# --------------------------------------------------------------------------------------------
def make_default_head():
    """The default head: in_dim 112, AETHER defaults, horizon 1024, seeded (UNTRAINED) weights."""
    from .features.recipe import DEFAULT_RECIPE
    from .head import TemporalHead

    return TemporalHead.random(DEFAULT_RECIPE.in_dim, seed=DEFAULT_SEED,
                               pattern=SparsePattern(horizon=DEFAULT_HORIZON),
                               class_names=DEFAULT_CLASS_NAMES, feature_recipe=DEFAULT_RECIPE.to_dict())
