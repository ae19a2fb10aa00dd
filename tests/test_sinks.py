"""JSON-line output: line contents, batching, size rotation, fsync on close, append on restart."""
from __future__ import annotations

import io
import json

import numpy as np

from edge_aether.sinks import JsonLinesSink, LineFormatter


def _batch(n, nc=3, dim=4, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random((n, nc))
    p /= p.sum(1, keepdims=True)
    return ([f"mac:00:{i:02x}" for i in range(n)], list(range(n)), [None] + list(range(1, n)),
            1.7e9 + rng.random(n), rng.integers(0, 5000, n), p, rng.standard_normal((n, dim)).astype(np.float32))


def test_lines_are_json_with_every_field():
    nodes, seqs, dev, host, lat, p, emb = _batch(5)
    f = LineFormatter(["walk", "sit", 'say "hi"'], digits=4, embedding=True)
    text = f.format(nodes, seqs, dev, host, lat, p, emb)
    objs = [json.loads(t) for t in text.splitlines()]
    assert len(objs) == 5 and text.endswith("\n")
    o = objs[1]
    assert o["node"] == "mac:00:01" and o["seq"] == 1 and o["device_time_us"] == 1
    assert objs[0]["device_time_us"] is None
    assert abs(o["host_time"] - host[1]) < 1e-6 and o["latency_us"] == lat[1]
    assert set(o["probs"]) == {"walk", "sit", 'say "hi"'}
    assert o["class"] == ["walk", "sit", 'say "hi"'][int(np.argmax(p[1]))]
    np.testing.assert_allclose([o["probs"][k] for k in ("walk", "sit", 'say "hi"')], p[1], rtol=1e-3)
    np.testing.assert_allclose(o["embedding"], emb[1], rtol=1e-3)


def test_no_classifier_no_embedding_keeps_lines_short():
    nodes, seqs, dev, host, lat, p, emb = _batch(2)
    text = LineFormatter([], embedding=False).format(nodes, seqs, dev, host, lat, None, emb)
    o = json.loads(text.splitlines()[0])
    assert "probs" not in o and "embedding" not in o and len(text.splitlines()[0]) < 120


def test_rotation_by_size_keeps_n_files(tmp_path):
    path = tmp_path / "out.jsonl"
    sink = JsonLinesSink(str(path), rotate_bytes=1000, keep=2)
    line = json.dumps({"x": "y" * 90}) + "\n"   # 100 bytes
    for _ in range(35):
        sink.write(line * 3, 3)
    sink.close()
    assert sink.rotations == 8 and sink.lines == 105  # 4 writes of 300 bytes per file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl", "out.jsonl.1", "out.jsonl.2"]
    for p in tmp_path.iterdir():
        assert all(json.loads(t) for t in p.read_text().splitlines())
    assert len((tmp_path / "out.jsonl.1").read_text().splitlines()) == 12


def test_append_on_restart_and_stdout_stream(tmp_path):
    path = tmp_path / "out.jsonl"
    for _ in range(2):
        s = JsonLinesSink(str(path))
        s.write('{"a":1}\n', 1)
        s.close()
    assert path.read_text() == '{"a":1}\n{"a":1}\n'
    buf = io.StringIO()
    s = JsonLinesSink("-", stream=buf)
    s.write('{"b":2}\n', 1)
    s.close()
    assert buf.getvalue() == '{"b":2}\n' and not buf.closed


def test_keep_zero_removes_the_full_file(tmp_path):
    path = tmp_path / "o.jsonl"
    s = JsonLinesSink(str(path), rotate_bytes=10, keep=0)
    s.write('{"abcdefgh":1}\n', 1)
    s.close()
    assert [p.name for p in tmp_path.iterdir()] == ["o.jsonl"] and path.read_text() == ""
