"""edge-aether run in process: simulated ESP32 nodes through a pseudo-terminal, parity with prefill,
bad settings, a port that vanishes."""
from __future__ import annotations

import argparse
import io
import json
import logging
import threading
import time

import numpy as np
import pytest

from edge_aether import config as cfgmod
from edge_aether.service import EXIT_CONFIG, EXIT_FAILURE, Service, configure_run, main_run
from edge_aether.sinks import JsonLinesSink


@pytest.fixture(scope="module")
def head():
    from edge_aether.onnx_model import default_model_path, load_onnx

    return load_onnx(default_model_path())


def _settings(**over):
    over = {k.replace("__", "."): v for k, v in over.items()}
    return cfgmod.build(None, over, use_default_path=False)


def _args(*argv):
    p = argparse.ArgumentParser()
    configure_run(p)
    return p.parse_args(["--no-config", *argv])


def _wait(cond, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)  # polling a condition with a deadline, not waiting for a thread by time


def _expected(head, lines, nodes, seed, count, horizon, recipe):
    """Featurise the simulator's frames that produced ``lines`` and prefill the head on them."""
    from firmware_bridge.nodes import NodeTracker
    from firmware_bridge.sim import Simulator
    from edge_aether.features import NodeFeaturiser

    got = {(d["node"], d["seq"]) for d in lines}
    tracker = NodeTracker()
    per_node: dict = {}
    for fr in Simulator(nodes=nodes, seed=seed).frames(count):
        tracker.update(fr)
        if (fr.node, fr.seq) not in got:
            continue
        feat, rows, seqs = per_node.setdefault(fr.node, (NodeFeaturiser(recipe), [], []))
        x = feat.push(fr)
        assert x.shape[0] == 1
        rows.append(x[0].copy())
        seqs.append(fr.seq)
    out = {}
    for node, (_, rows, seqs) in per_node.items():
        y = head.forward(np.ascontiguousarray(np.stack(rows)), horizon=horizon)
        z = head.logits(y)
        p = np.exp(z - z.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        for i, s in enumerate(seqs):
            out[(node, s)] = (y[i], p[i])
    return out


def test_pty_sim_outputs_equal_prefill(head):
    nodes, seed, count, horizon = 3, 7, 300, 40   # 100 frames per node: the ring of 41 wraps
    url = f"pty-sim://?nodes={nodes}&seed={seed}&count={count}&realtime=false"
    buf = io.StringIO()
    s = _settings(input__sources=[url], model__horizon=horizon, output__embedding=True, output__digits=9)
    svc = Service(s, head=head, sink=JsonLinesSink(stream=buf))
    assert svc.run() == 0
    src = svc.sources[0].stats()
    lines = [json.loads(t) for t in buf.getvalue().splitlines()]
    assert len(lines) == src["sim_frames_written"] - src["dropped_queue"] - svc.rejects
    assert len(lines) == svc.outputs and svc.frames_in == src["frames"] - src["dropped_queue"]
    assert len(lines) > 250
    want = _expected(head, lines, nodes, seed, count, horizon, svc.recipe)
    names = head.class_names
    for d in lines:
        y, p = want[(d["node"], d["seq"])]
        np.testing.assert_allclose(d["embedding"], y, atol=1e-5, rtol=1e-6)
        np.testing.assert_allclose([d["probs"][c] for c in names], p, atol=1e-6)
        assert d["class"] == names[int(np.argmax(p))]
        assert d["latency_us"] >= 0 and isinstance(d["device_time_us"], int)
    st = svc.stats()
    assert set(st["nodes"]) == {d["node"] for d in lines}


def test_node_reset_on_reboot_restarts_its_stream(head):
    """A node whose sequence restarts gets a fresh stream (and featuriser state)."""
    import dataclasses

    from firmware_bridge.nodes import NodeTracker
    from firmware_bridge.sim import Simulator

    frames = list(Simulator(nodes=2, seed=3, loss=0.0).frames(40))
    rebooted = [dataclasses.replace(f, extra={}) for f in frames[:10]]  # both nodes start over
    tracker = NodeTracker()
    fed = []
    for i, fr in enumerate(frames + rebooted):
        fr.host_time = 100.0 + 0.01 * i
        fed.append((0, tracker.update(fr)))
    buf = io.StringIO()
    svc = Service(_settings(input__sources=["sim://"], output__embedding=True, output__digits=9),
                  head=head, sink=JsonLinesSink(stream=buf), sources=[])
    svc.start()
    svc._process(fed)
    lines = [json.loads(t) for t in buf.getvalue().splitlines()]
    assert len(lines) == 50
    assert [n.resets for n in svc.node_list] == [1, 1]
    for k in range(10):  # after the reboot each node's outputs repeat its first ones
        assert lines[40 + k]["seq"] == lines[k]["seq"]
        np.testing.assert_allclose(lines[40 + k]["embedding"], lines[k]["embedding"], atol=1e-5)


def test_a_vanishing_port_does_not_stop_the_service(head):
    from firmware_bridge.sim import PtySimWriter, Simulator

    writer = PtySimWriter(Simulator(nodes=1, rate_hz=200.0, seed=1), realtime=True).start()
    buf = io.StringIO()
    svc = Service(_settings(input__sources=[f"serial://{writer.path}"]), head=head,
                  sink=JsonLinesSink(stream=buf))
    svc.start()
    result = {}
    t = threading.Thread(target=lambda: result.setdefault("rc", svc.run()), daemon=True)
    t.start()
    try:
        _wait(lambda: svc.outputs >= 20, what="outputs from the pty")
        writer.stop()   # USB unplugged
        serial = svc.sources[0]
        _wait(lambda: serial.stats()["disconnects"] >= 1, what="the port loss to be noticed")
        n = svc.outputs
        assert t.is_alive() and svc.failure is None and not svc.stopping
    finally:
        svc.stop("test")
        t.join(10)
    assert result["rc"] == 0 and svc.outputs >= n
    assert len(buf.getvalue().splitlines()) == svc.outputs


@pytest.mark.parametrize("argv, needle, rc", [
    (["--model", "/nonexistent/model.onnx"], "model.path", EXIT_CONFIG),
    (["--horizon", "-3"], "model.horizon", EXIT_CONFIG),
    (["--source", "bogus://x"], "input.sources[0]", EXIT_CONFIG),
    (["--source", "serial:///dev/edge-aether-no-such-port"], "cannot open serial port", EXIT_FAILURE),
])
def test_bad_settings_exit_non_zero_with_one_line(argv, needle, rc, caplog):
    caplog.set_level(logging.INFO)
    assert main_run(_args(*argv, "--max-frames", "1")) == rc
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and needle in errors[0].getMessage()
    assert "\n" not in errors[0].getMessage() and errors[0].exc_info is None


def test_bad_config_file_names_the_key(tmp_path, caplog):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[input]\nsources = ["sim://"]\n[output]\nrotate_mb = "big"\n')
    assert main_run(_args("--config", str(cfg))) == EXIT_CONFIG
    (err,) = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert "output.rotate_mb" in err and "'big'" in err and str(cfg) in err


def test_max_frames_through_main_run(tmp_path):
    out = tmp_path / "out.jsonl"
    rc = main_run(_args("--source", "sim://?nodes=2&realtime=false&seed=2", "--out", str(out),
                        "--max-frames", "57"))
    assert rc == 0
    lines = out.read_text().splitlines()
    assert len(lines) == 57 and all(json.loads(t)["node"].startswith("mac:") for t in lines)


def test_closed_output_pipe_is_a_normal_end():
    """`edge-aether run | head -2`: the reader going away ends the run with status 0, quietly."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "edge_aether.cli", "run", "--no-config", "--source",
                             "sim://?nodes=2&realtime=false&seed=3"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    assert json.loads(first)["node"]
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err[-2000:]
    assert "Traceback" not in err
    assert "output pipe closed" in err
