"""The environment block of a bench run: what machine, which software, which model."""
from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_model() -> str:
    info = _read("/proc/cpuinfo") or ""
    for key in ("model name", "Model", "Hardware", "CPU part"):
        for line in info.splitlines():
            if line.split(":")[0].strip() == key and ":" in line:
                return line.split(":", 1)[1].strip()
    dt = _read("/proc/device-tree/model")  # Raspberry Pi, Jetson
    return (dt or platform.processor() or "unknown").rstrip("\x00")


def pi_throttled() -> str | None:
    """``vcgencmd get_throttled`` on a Raspberry Pi (0x0 = never throttled); None elsewhere."""
    tool = shutil.which("vcgencmd")
    if not tool:
        return None
    try:
        out = subprocess.run([tool, "get_throttled"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().split("=")[-1] or None


def collect(model_path: str | None) -> dict:
    import numba
    import numpy
    import onnxruntime

    env = {
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "arch": platform.machine(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "numpy": numpy.__version__,
        "numba": numba.__version__,
        "numba_threads": numba.get_num_threads(),
        "onnxruntime": onnxruntime.__version__,
        "governor": _read("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"),
        "cpu_max_mhz": None,
        "pi_throttled": pi_throttled(),
        "model": model_path,
        "model_sha256": None,
    }
    khz = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq")
    if khz and khz.isdigit():
        env["cpu_max_mhz"] = int(khz) // 1000
    if model_path:
        from ..model_store import file_sha256
        env["model_sha256"] = file_sha256(model_path)
    return env
