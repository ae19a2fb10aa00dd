"""The model commands: inspect, import-rvne, make-default-model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from edge_aether.cli import main
from edge_aether.head import TemporalHead
from edge_aether.onnx_model import default_model_path, file_sha256, load_onnx, step_path
from edge_aether.rvne import write_rvne


def test_inspect_default(capsys):
    assert main(["inspect"]) == 0
    out = capsys.readouterr().out
    assert file_sha256(default_model_path()) in out
    assert "in_dim 112, q_heads 4, kv_heads 1, head_dim 32" in out
    assert "horizon 1024" in out and "parameters    36596" in out


def test_inspect_json(capsys):
    assert main(["inspect", str(default_model_path()), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["sha256"] == file_sha256(default_model_path())
    assert info["parameters"] == 36596 and info["pattern"]["window"] == 32
    assert info["step_sha256"] == file_sha256(step_path(default_model_path()))


def test_inspect_bad_file(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"nope")
    assert main(["inspect", str(bad)]) == 1
    assert "bad.onnx" in capsys.readouterr().err


def test_import_rvne(tmp_path, capsys):
    head = TemporalHead.random(12, seed=2, q_heads=4, kv_heads=2, head_dim=4, n_classes=2)
    blob = tmp_path / "w.rvne"
    blob.write_bytes(write_rvne(head.weights, 4, 2, 4))
    out = tmp_path / "w.onnx"
    assert main(["import-rvne", str(blob), "--out", str(out), "--class-names", "still,moving",
                 "--horizon", "256", "--max-seq", "128", "--recipe", "ht20-56-ampphase-iqre-v1"]) == 0
    back = load_onnx(out)
    assert back.class_names == ("still", "moving") and back.pattern.horizon == 256
    assert back.feature_recipe["iq_order"] == "real_first"
    for a, b in zip(head.weights, back.weights):
        assert np.array_equal(a, b)
    assert step_path(out).is_file()


def test_import_rvne_rejects_corrupt(tmp_path, capsys):
    head = TemporalHead.random(8, seed=2, q_heads=2, kv_heads=1, head_dim=4)
    data = bytearray(write_rvne(head.weights, 2, 1, 4))
    data[40] ^= 0x01
    blob = tmp_path / "bad.rvne"
    blob.write_bytes(bytes(data))
    assert main(["import-rvne", str(blob), "--out", str(tmp_path / "x.onnx")]) == 1
    assert "CRC32 mismatch" in capsys.readouterr().err
    assert not (tmp_path / "x.onnx").exists()
    blob.write_bytes(bytes(data[:-9]))
    assert main(["import-rvne", str(blob), "--out", str(tmp_path / "x.onnx")]) == 1
    assert "truncated" in capsys.readouterr().err


def test_make_default_model_check_and_write(tmp_path, capsys):
    assert main(["make-default-model", "--check"]) == 0
    out = tmp_path / "d.onnx"
    assert main(["make-default-model", "--out", str(out)]) == 0
    assert out.read_bytes() == default_model_path().read_bytes()
    assert step_path(out).read_bytes() == step_path(default_model_path()).read_bytes()
    out.write_bytes(out.read_bytes()[:-1])
    assert main(["make-default-model", "--out", str(out), "--check"]) == 1
    assert "regenerate" in capsys.readouterr().err
