"""Model files: lossless round trip, the default model regenerates, malformed files are rejected."""
from __future__ import annotations

import pathlib

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from edge_aether.errors import ModelError
from edge_aether.head import TemporalHead
from edge_aether.model_cli import default_model_bytes
from edge_aether.onnx_model import (DEFAULT_HORIZON, build_models, default_model_path, load_onnx,
                                    make_default_head, read_model, save_onnx, step_path)
from edge_aether.pattern import SparsePattern

REPO = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def small_head():
    return TemporalHead.random(10, seed=11, q_heads=4, kv_heads=2, head_dim=4,
                               pattern=SparsePattern(window=4, block_size=3, global_tokens=(0, 2), horizon=64),
                               class_names=("a", "b"), feature_recipe={"id": "test-recipe"})


@pytest.fixture
def saved(small_head, tmp_path):
    return save_onnx(small_head, tmp_path / "m.onnx", max_seq=64)


def test_round_trip_is_lossless(small_head, saved):
    onnx.checker.check_model(str(saved), full_check=True)
    onnx.checker.check_model(str(step_path(saved)), full_check=True)
    back = load_onnx(saved)
    for name, a, b in zip(small_head.weights._fields, small_head.weights, back.weights):
        assert a.dtype == b.dtype == np.float32 and np.array_equal(a, b), name
    for attr in ("in_dim", "q_heads", "kv_heads", "head_dim", "pattern", "n_classes", "class_names",
                 "feature_recipe"):
        assert getattr(back, attr) == getattr(small_head, attr), attr
    ort_head = TemporalHead.from_onnx(saved, backend="onnxruntime")
    assert ort_head.backend == "onnxruntime" and ort_head.max_seq == 64
    assert ort_head.class_names == ("a", "b")
    # exporting the loaded head again gives the same bytes
    again = save_onnx(back, saved.with_name("again.onnx"), max_seq=64)
    assert again.read_bytes() == saved.read_bytes()
    assert step_path(again).read_bytes() == step_path(saved).read_bytes()


def test_to_onnx_delegation_and_no_classifier(tmp_path):
    head = TemporalHead.random(6, seed=1, q_heads=2, kv_heads=1, head_dim=4,
                               pattern=SparsePattern(window=2, block_size=2))
    path = head.to_onnx(tmp_path / "nc.onnx", max_seq=32)
    back = TemporalHead.from_onnx(path)
    assert back.n_classes == 0 and back.weights.wc.shape == (0, 6) and back.pattern.horizon is None
    names = {t.name for t in onnx.load(str(path)).graph.initializer}
    assert "wc" not in names and "bc" not in names


def test_step_file_absent_is_rebuilt(small_head, saved):
    step_path(saved).unlink()
    ort_head = load_onnx(saved, backend="onnxruntime")
    x = np.random.default_rng(0).standard_normal((20, 10)).astype(np.float32)
    s = ort_head.stream(horizon=8)
    y = np.stack([s.step(r).copy() for r in x])
    np.testing.assert_allclose(y, small_head.forward(x, horizon=8), atol=1e-5, rtol=0)


def test_default_model_regenerates_byte_for_byte():
    path = default_model_path()
    assert path == REPO / "models" / "aether-default.onnx"
    shipped = read_model(path)
    fresh = make_default_head()
    for name, a in zip(fresh.weights._fields, fresh.weights):
        assert np.array_equal(shipped.weights[name], a), f"weight {name} differs: run edge-aether make-default-model"
    meta_shipped = {p.key: p.value for p in shipped.proto.metadata_props}
    meta_fresh = {p.key: p.value for p in build_models(fresh)[0].metadata_props}
    assert meta_shipped == meta_fresh, "metadata differs: run edge-aether make-default-model"
    prefill, step = default_model_bytes()
    assert path.read_bytes() == prefill, "models/aether-default.onnx is stale: run edge-aether make-default-model"
    assert step_path(path).read_bytes() == step, "aether-default.step.onnx is stale: run edge-aether make-default-model"


def test_default_model_configuration():
    mf = read_model(default_model_path())
    c = mf.config
    assert (c.in_dim, c.q_heads, c.kv_heads, c.head_dim) == (112, 4, 1, 32)
    assert c.pattern == SparsePattern(horizon=DEFAULT_HORIZON) and c.max_seq == 4096
    assert c.feature_recipe["in_dim"] == 112
    assert default_model_path().stat().st_size < 400_000


# ---- malformed files ----------------------------------------------------------------------------
def _mutate(src: pathlib.Path, dst: pathlib.Path, fn) -> pathlib.Path:
    m = onnx.load(str(src))
    fn(m)
    dst.write_bytes(m.SerializeToString())
    return dst


def _set_meta(m, key, value):
    for p in m.metadata_props:
        if p.key == key:
            p.value = value


def _drop_init(m, name):
    keep = [t for t in m.graph.initializer if t.name != name]
    del m.graph.initializer[:]
    m.graph.initializer.extend(keep)


def _replace_init(m, name, array):
    _drop_init(m, name)
    m.graph.initializer.append(numpy_helper.from_array(array, name))


def _drop_meta(m, key):
    keep = [p for p in m.metadata_props if p.key != key]
    del m.metadata_props[:]
    m.metadata_props.extend(keep)


def _external(m, name, location):
    t = next(t for t in m.graph.initializer if t.name == name)
    t.ClearField("raw_data")
    t.ClearField("float_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    e = t.external_data.add()
    e.key, e.value = "location", location


MALFORMED = {
    "missing initializer": (lambda m: _drop_init(m, "wk"), r"initializer\(s\) \['wk'\] missing"),
    "extra initializer": (lambda m: m.graph.initializer.append(numpy_helper.from_array(np.zeros(3, np.float32), "junk")),
                          r"unexpected initializer\(s\) \['junk'\]"),
    "shape disagrees": (lambda m: _replace_init(m, "wo", np.zeros((10, 15), np.float32)),
                        r"initializer 'wo' has shape \(10, 15\).*requires \(10, 16\)"),
    "metadata in_dim disagrees": (lambda m: _set_meta(m, "edge_aether.in_dim", "11"),
                                  r"initializer 'wq' has shape \(16, 10\).*in_dim=11"),
    "dtype": (lambda m: _replace_init(m, "bq", np.zeros(16, np.float64)), r"initializer 'bq': expected float32"),
    "non-finite": (lambda m: _replace_init(m, "bo", np.full(10, np.nan, np.float32)), r"'bo' holds NaN"),
    "unknown version": (lambda m: _set_meta(m, "edge_aether.format_version", '"2"'),
                        r"'edge_aether.format_version' is '2'"),
    "no version": (lambda m: _drop_meta(m, "edge_aether.format_version"),
                   r"'edge_aether.format_version' is missing"),
    "missing key": (lambda m: _drop_meta(m, "edge_aether.pattern"), r"'edge_aether.pattern'.*is missing"),
    "bad json": (lambda m: _set_meta(m, "edge_aether.class_names", "[a"), r"'edge_aether.class_names' is not valid JSON"),
    "unknown key": (lambda m: m.metadata_props.add(key="edge_aether.colour", value='"red"'),
                    r"unknown metadata keys \['edge_aether.colour'\]"),
    "class count": (lambda m: _set_meta(m, "edge_aether.class_names", '["a"]'), r"'edge_aether.class_names'"),
    "bad pattern": (lambda m: _set_meta(m, "edge_aether.pattern", '{"window": -1}'), r"'edge_aether.pattern'"),
    "tampered table": (lambda m: _replace_init(m, "extra_keys", np.zeros((64, 9), np.int16)),
                       r"initializer 'extra_keys'.*does not match the pattern"),
    "external data outside (..)": (lambda m: _external(m, "wq", "../secret.bin"),
                                   r"initializer 'wq' refers to external data '../secret.bin' outside"),
    "external data outside (absolute)": (lambda m: _external(m, "wv", "/etc/passwd"),
                                         r"initializer 'wv' refers to external data '/etc/passwd' outside"),
    "external data missing": (lambda m: _external(m, "wk", "weights.bin"), r"'wk': external data file 'weights.bin' is missing"),
    "wrong opset": (lambda m: setattr(m.opset_import[0], "version", 18), r"opset 17"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_rejected(saved, tmp_path, case):
    fn, message = MALFORMED[case]
    bad = _mutate(saved, tmp_path / "bad.onnx", fn)
    with pytest.raises(ModelError, match=message):
        load_onnx(bad)


def test_external_data_inside_folder_loads(small_head, saved, tmp_path):
    m = onnx.load(str(saved))
    onnx.save_model(m, str(tmp_path / "ext.onnx"), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="ext.data", size_threshold=0)
    back = load_onnx(tmp_path / "ext.onnx")
    assert np.array_equal(back.weights.wq, small_head.weights.wq)


def test_not_onnx_and_missing_file(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\x00\xffnot a model")
    with pytest.raises(ModelError, match="junk.onnx"):
        load_onnx(junk)
    with pytest.raises(ModelError, match="does not exist"):
        load_onnx(tmp_path / "absent.onnx")
    plain = onnx.helper.make_model(onnx.helper.make_graph([], "g", [], []))
    (tmp_path / "plain.onnx").write_bytes(plain.SerializeToString())
    with pytest.raises(ModelError, match="not an edge-aether model"):
        load_onnx(tmp_path / "plain.onnx")


def test_step_file_of_another_model_rejected(small_head, saved, tmp_path):
    other = TemporalHead.random(10, seed=12, q_heads=4, kv_heads=2, head_dim=4, pattern=small_head.pattern,
                                class_names=("a", "b"), feature_recipe={"id": "test-recipe"})
    save_onnx(other, tmp_path / "other.onnx", max_seq=64)
    step_path(saved).write_bytes(step_path(tmp_path / "other.onnx").read_bytes())
    with pytest.raises(ModelError, match="initializer 'wq' differs"):
        load_onnx(saved, backend="onnxruntime")
    with pytest.raises(ModelError, match="pass the prefill file"):
        load_onnx(step_path(saved))


def test_unknown_backend(saved):
    with pytest.raises(ValueError, match="backend"):
        load_onnx(saved, backend="tensorrt")


def test_no_pickle_in_package():
    for src in (REPO / "edge_aether").rglob("*.py"):
        text = src.read_text()
        assert "import pickle" not in text and "allow_pickle=True" not in text, src
