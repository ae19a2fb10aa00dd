"""firmware_bridge.cli: `edge-aether parse | record | sim`, run through the real router."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from edge_aether.cli import main
from firmware_bridge.cli import frame_subcarriers
from firmware_bridge.frame import CsiFrame
from firmware_bridge.sim import Simulator, encode


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_parse_real_capture_json(capsys, csi_tool_capture):
    code, out, _ = _run(capsys, "parse", str(csi_tool_capture), "--json")
    assert code == 0
    s = json.loads(out)
    assert s["records"] == 299 and s["lines"] == 300 and s["rejected"] == {"header": 1}
    assert s["nodes"] == {"mac:30:ae:a4:96:b7:00": 299}
    assert s["layouts"] == {"128": 20, "384": 279}


def test_parse_real_capture_frames(capsys, csi_tool_capture):
    code, out, _ = _run(capsys, "parse", str(csi_tool_capture), "--frames")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert len(rows) == 299
    r = rows[0]
    assert {"node", "seq", "rssi", "n_values", "subcarriers", "amplitude"} <= set(r)
    assert r["n_values"] == 384 and r["rssi"] == -62
    assert len(r["subcarriers"]) == len(r["amplitude"]) > 0
    assert all(-32 <= k <= 31 and k != 0 for k in r["subcarriers"])
    # HT40 with the secondary channel above: the buffer is in ascending order, so the invalid first
    # word (pairs 0 and 1) lands on guard subcarriers; the data block starts at -26.
    assert r["subcarriers"][0] == -26 and len(r["subcarriers"]) == 52
    assert all(a > 0 for a in r["amplitude"])


def test_first_word_invalid_drops_subcarriers_0_and_1_in_the_plain_order():
    f = next(Simulator(nodes=1, fmt="esp32-csi-tool", layout="ht20", seed=0).frames(1))
    assert f.first_word_invalid and f.secondary_channel == 0
    subc, amp = frame_subcarriers(f)
    assert 1 not in subc.tolist() and -1 in subc.tolist() and len(subc) == len(amp) == 51


def test_amplitude_uses_the_imaginary_first_pairs_of_data_subcarriers():
    iq = np.zeros(128, np.int8)
    iq[2 * 5], iq[2 * 5 + 1] = 3, 4             # subcarrier +5: imag 3, real 4
    iq[2 * 40], iq[2 * 40 + 1] = -6, 8          # pair 40 is subcarrier -24 (order 0..31, -32..-1)
    f = CsiFrame(node="x", iq=iq, fmt="esp-csi", sig_mode=0, bandwidth=0, secondary_channel=0)
    subc, amp = frame_subcarriers(f)
    got = dict(zip(subc.tolist(), amp.tolist()))
    assert got[5] == 5.0 and got[-24] == 10.0 and 0 not in got and 27 not in got and len(got) == 52


def test_parse_binary_and_record_files(capsys, tmp_path):
    frames = list(Simulator(nodes=3, fmt="ruview-binary", seed=2, loss=0.0).frames(30))
    raw = tmp_path / "cap.bin"
    raw.write_bytes(b"".join(encode(f) for f in frames))
    code, out, _ = _run(capsys, "parse", str(raw), "--json")
    s = json.loads(out)
    assert code == 0 and s["records"] == 30 and s["packets"] == 30 and s["layouts"] == {"256": 30}
    assert s["nodes"] == {"id:0": 10, "id:1": 10, "id:2": 10}

    rec = tmp_path / "cap.rec"
    code, _, _ = _run(capsys, "record", "sim://?nodes=2&rate=1000&count=25&realtime=false", "--out", str(rec),
                      "--no-fsync")
    assert code == 0
    code, out, _ = _run(capsys, "parse", str(rec), "--json")
    s = json.loads(out)
    assert code == 0 and s["kind"] == "record-file" and s["records"] == 25 and s["rejected"] == {}


def test_parse_missing_file_is_one_clear_line(capsys, tmp_path):
    code, out, err = _run(capsys, "parse", str(tmp_path / "nope.csv"))
    assert code == 2 and out == "" and err.strip().count("\n") == 0 and "no such file" in err


def test_record_bad_source_is_one_clear_line(capsys, tmp_path):
    code, _, err = _run(capsys, "record", "ftp://x", "--out", str(tmp_path / "x.rec"))
    assert code != 0 and "unknown source scheme" in err and err.strip().count("\n") == 0


def test_sim_writes_a_capture_that_parses(capsys, tmp_path):
    out_file = tmp_path / "sim.txt"
    code, _, _ = _run(capsys, "sim", "--out", str(out_file), "--count", "40", "--fast", "--fmt", "esp32-csi-tool",
                      "--header", "--seed", "3")
    assert code == 0
    code, out, _ = _run(capsys, "parse", str(out_file), "--json")
    s = json.loads(out)
    assert s["records"] == 40 and s["rejected"] == {"header": 1}


def test_sim_pty_prints_the_terminal_path_and_stops_by_itself():
    proc = subprocess.run(
        [sys.executable, "-m", "edge_aether.cli", "sim", "--pty", "--count", "5", "--fast"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith("/dev/")


def test_bad_sim_option(capsys):
    code, _, err = _run(capsys, "sim", "--fmt", "csv", "--count", "1")
    assert code == 2 and "expected one of" in err


@pytest.mark.parametrize("fmt", ["esp-csi", "esp-csi-c5c6"])
def test_frames_of_other_formats_have_subcarriers(fmt, capsys, tmp_path):
    p = tmp_path / "c.txt"
    p.write_bytes(b"".join(encode(f) for f in Simulator(nodes=1, fmt=fmt, seed=1).frames(3)))
    code, out, _ = _run(capsys, "parse", str(p), "--frames")
    rows = [json.loads(x) for x in out.splitlines()]
    assert code == 0 and len(rows) == 3 and all(len(r["subcarriers"]) >= 52 for r in rows)
