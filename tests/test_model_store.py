"""The validated model cache: warm starts without import onnx, never admitting a bad file."""
import shutil

import numpy as np
import pytest

from edge_aether import model_store
from edge_aether.errors import ModelError
from edge_aether.onnx_model import default_model_path


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGE_AETHER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "models"


def _same(a, b):
    assert a.config() == b.config()
    for wa, wb in zip(a.weights, b.weights):
        np.testing.assert_array_equal(wa, wb)


def test_second_load_comes_from_cache_and_equals_the_file(cache, tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(default_model_path(), model)
    first = model_store.load_head(model)
    entries = sorted(p.name for p in cache.iterdir())
    assert len(entries) == 2 and entries[0].endswith(".json") and entries[1].endswith(".npz")
    second = model_store.load_head(model)
    _same(first, second)
    _same(first, model_store.load_head(model, use_cache=False))


def test_changed_file_is_validated_again(cache, tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(default_model_path(), model)
    model_store.load_head(model)
    model.write_bytes(model.read_bytes()[:-100])  # truncated: a new hash, so the full loader sees it
    with pytest.raises(ModelError):
        model_store.load_head(model)
    assert len(list(cache.iterdir())) == 2  # nothing cached for the bad file


def test_damaged_cache_entry_is_ignored(cache, tmp_path):
    model = tmp_path / "m.onnx"
    shutil.copy(default_model_path(), model)
    good = model_store.load_head(model)
    for p in cache.glob("*.npz"):
        p.write_bytes(b"not an npz")
    _same(good, model_store.load_head(model))


def test_unwritable_cache_still_loads(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("EDGE_AETHER_CACHE_DIR", str(blocker / "sub"))
    assert model_store.cache_dir() is None
    assert model_store.load_head(default_model_path()).in_dim == 112


def test_missing_default_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setattr(model_store, "_REPO_MODELS", tmp_path)
    monkeypatch.setattr(model_store, "__file__", str(tmp_path / "x" / "model_store.py"))
    with pytest.raises(ModelError, match="make-default-model"):
        model_store.default_model_path()
