"""deploy/: the unit passes systemd-analyze verify, the udev rules and example config are sound, the
install script parses and does what it says in a dry run."""
from __future__ import annotations

import configparser
import os
import re
import shutil
import subprocess
import sys

import pytest

from edge_aether import config as C

DEPLOY = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "deploy")
UNIT = os.path.join(DEPLOY, "edge-aether.service")


def _unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str
    # repeated keys (DeviceAllow=) are legal in unit files: keep the last, enough for these checks
    with open(UNIT) as f:
        cp.read_string(f.read())
    return cp


def test_unit_has_notify_watchdog_restart_and_hardening():
    s = _unit()["Service"]
    assert s["Type"] == "notify" and int(s["WatchdogSec"]) > 0
    assert s["Restart"] == "on-failure" and s["RestartPreventExitStatus"] == "78"
    assert s["User"] == "edge-aether" and s["SupplementaryGroups"] == "dialout"
    assert s["StateDirectory"] == "edge-aether" and s["CacheDirectory"] == "edge-aether"
    text = open(UNIT).read()
    assert "Environment=NUMBA_CACHE_DIR=/var/cache/edge-aether/" in text
    assert s["ProtectSystem"] == "strict" and s["NoNewPrivileges"] == "yes"
    assert not re.search(r"^(PrivateDevices=yes|PrivateUsers=)", text, re.M)  # serial ports must open
    assert "\nMemoryDenyWriteExecute=" not in text                            # numba JIT
    assert re.search(r"^DeviceAllow=char-ttyUSB rw$", text, re.M)
    assert "run --config /etc/edge-aether/config.toml" in s["ExecStart"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_unit_passes_systemd_analyze_verify(tmp_path):
    # verify insists that ExecStart exists: point it at this interpreter in a copy
    text = open(UNIT).read().replace("/opt/edge-aether/venv/bin/edge-aether", sys.executable)
    unit = tmp_path / "edge-aether.service"
    unit.write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    problems = [ln for ln in (proc.stdout + proc.stderr).splitlines() if "edge-aether.service" in ln]
    assert proc.returncode == 0 and not problems, proc.stdout + proc.stderr


def test_udev_rules_cover_the_adapters():
    text = open(os.path.join(DEPLOY, "99-edge-aether-esp32.rules")).read()
    rules = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    for ln in rules:  # every rule is comma-separated KEY op "value" pairs
        for part in re.split(r",\s*", ln):
            assert re.fullmatch(r'[A-Z_]+(\{[^}]+\})?(==|!=|=|\+=|:=)"[^"]*"', part.strip()), part
    for vid in ("10c4", "1a86", "0403", "303a"):
        assert f'ATTRS{{idVendor}}=="{vid}"' in text
    assert 'ATTR{latency_timer}="1"' in text and 'GROUP="dialout"' in text
    assert text.count('GOTO="edge_aether_end"') >= 3 and 'LABEL="edge_aether_end"' in text


def test_example_config_is_valid():
    s = C.build(os.path.join(DEPLOY, "config.toml"))
    assert s["input.sources"] and s["output.file"].startswith("/var/lib/edge-aether/")


def test_install_script_dry_run():
    script = os.path.join(DEPLOY, "install.sh")
    assert subprocess.run(["bash", "-n", script]).returncode == 0
    proc = subprocess.run(["bash", script, "--dry-run", "--no-apt", "--no-warm", "--prefix", "/opt/ea-test"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "usermod -a -G dialout edge-aether" in out
    assert "-m venv /opt/ea-test/venv" in out and "pip install" in out
    assert "/etc/edge-aether/config.toml" in out and "systemctl enable --now edge-aether.service" in out
    assert proc.stderr == ""
