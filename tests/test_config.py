"""Settings: defaults, TOML file, flag overrides, and a clear error naming the key for each mistake."""
from __future__ import annotations

import pytest

from edge_aether import config as C
from edge_aether.errors import ConfigError


def _file(tmp_path, text):
    p = tmp_path / "config.toml"
    p.write_text(text)
    return str(p)


def test_no_file_no_sources_is_the_demo():
    s = C.build(None, {}, use_default_path=False)
    assert s["input.sources"] == [C.DEMO_SOURCE] and s.demo
    assert s["model.backend"] == "numba" and s["output.file"] == ""


def test_file_then_flags(tmp_path):
    path = _file(tmp_path, '[input]\nsources = ["udp://0.0.0.0:5005"]\nreset_gap_s = 2\n'
                           '[output]\nfile = "/tmp/x.jsonl"\nrotate_mb = 1\n[features]\nhold_max = 3\n')
    s = C.build(path, {"output.file": "/tmp/y.jsonl", "model.horizon": None})
    assert s["input.sources"] == ["udp://0.0.0.0:5005"] and s["input.reset_gap_s"] == 2.0
    assert s["output.file"] == "/tmp/y.jsonl" and s["output.rotate_mb"] == 1.0
    assert s.recipe_overrides() == {"hold_max": 3} and not s.demo


@pytest.mark.parametrize("text, needle", [
    ('[inputs]\nsources = ["sim://"]\n', "unknown section or key 'inputs'"),
    ('[input]\nsources = ["sim://"]\nbaud = 1\n', "unknown key 'input.baud'"),
    ('[input]\nsources = "sim://"\nqueue_size = "big"\n', "input.queue_size: found 'big' (string), expected an integer"),
    ('[input]\nsources = ["sim://"]\nwait_for_port = 1\n', "input.wait_for_port: found 1 (integer), expected true or false"),
    ('[input]\nsources = ["sim://"]\nqueue_size = 0\n', "input.queue_size: found 0"),
    ('[input]\nsources = []\n', "input.sources: found []"),
    ('[model]\nbackend = "tensorrt"\n', "model.backend: found 'tensorrt'"),
    ('[output]\ndigits = 12\n', "output.digits"),
    ('[features]\nnormalise = 1.5\n', "features.normalise"),
    ('[model]\npath = ""\n', "input.sources: missing"),
    ('input = 3\n', "input: found 3 (integer), expected a table"),
    ('[input\n', "not valid TOML"),
])
def test_each_mistake_names_its_key(tmp_path, text, needle):
    path = _file(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        C.build(path)
    msg = str(e.value)
    assert needle in msg and path in msg and "\n" not in msg


def test_missing_file_and_bad_flag_value(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        C.build(str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="service.max_frames: found -1"):
        C.build(None, {"service.max_frames": -1}, use_default_path=False)


def test_default_path_is_used_when_present(tmp_path, monkeypatch):
    path = _file(tmp_path, '[input]\nsources = ["sim://?nodes=1"]\n')
    monkeypatch.setattr(C, "DEFAULT_CONFIG_PATH", path)
    assert C.build()["input.sources"] == ["sim://?nodes=1"]
    assert C.build(use_default_path=False).demo


def test_reference_lists_every_key():
    ref = C.reference()
    assert all(f"`{k}`" in ref for k in C.KEYS)
