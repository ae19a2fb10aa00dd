"""Golden outputs computed on x86_64, compared on every other machine (aarch64 above all).

Regenerate (only after an intended numerical change, on x86_64):

    python tests/golden.py

It writes tests/data/golden_x86.npz: seeded inputs, the shipped model's prefill and stream outputs,
and default-recipe features of seeded synthetic frames. No pickle: plain arrays only.
"""
from __future__ import annotations

import pathlib

import numpy as np

PATH = pathlib.Path(__file__).resolve().parent / "data" / "golden_x86.npz"
HORIZON = 64
T = 3 * (HORIZON + 1) + 11


def inputs():
    rng = np.random.default_rng(20261203)
    x = rng.standard_normal((T, 112)).astype(np.float32)
    iq = rng.integers(-90, 91, size=(24, 256)).astype(np.int8)  # HT20: LLTF + HT-LTF
    return x, iq


def compute():
    from edge_aether.features import DEFAULT_RECIPE, featurise_frames
    from edge_aether.onnx_model import default_model_path, load_onnx
    from firmware_bridge.frame import CsiFrame

    head = load_onnx(default_model_path(), backend="numba")
    x, iq = inputs()
    y = head.forward(x, horizon=HORIZON)
    s = head.stream(horizon=HORIZON)
    ys = np.stack([s.step(row).copy() for row in x])
    frames = [CsiFrame(node="golden", iq=row.copy(), fmt="esp-csi", sig_mode=1, bandwidth=0,
                       secondary_channel=0, stbc=0) for row in iq]
    feats, status = featurise_frames(frames, DEFAULT_RECIPE)
    return {"x": x, "iq": iq, "prefill": y, "stream": ys, "features": feats, "status": status}


if __name__ == "__main__":
    import platform
    if platform.machine() != "x86_64":
        raise SystemExit("golden outputs are recorded on x86_64 only")
    PATH.parent.mkdir(exist_ok=True)
    np.savez_compressed(PATH, **compute())
    print(f"wrote {PATH}")
