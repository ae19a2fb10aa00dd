"""Model-file commands: ``edge-aether inspect``, ``import-rvne`` and ``make-default-model``."""
from __future__ import annotations

import argparse
import json
import pathlib
import sys

from .errors import EdgeAetherError


def _fail(msg: str) -> int:
    print(f"edge-aether: {msg}", file=sys.stderr)
    return 1


# --------------------------------------------------------------------------------------------
# inspect
# --------------------------------------------------------------------------------------------
def configure_inspect(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", metavar="MODEL.onnx",
                        help="model file (default: the shipped default model)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")


def describe(path) -> dict:
    """Configuration, parameter count and checksums of a model file (validated first)."""
    from .onnx_model import read_model, read_step_model, step_path

    mf = read_model(path)
    c = mf.config
    step = read_step_model(path, mf)
    return {
        "file": str(mf.path), "sha256": mf.sha256(), "bytes": mf.path.stat().st_size,
        "producer": f"{mf.proto.producer_name} {mf.proto.producer_version}".strip(),
        "opset": {o.domain or "ai.onnx": o.version for o in mf.proto.opset_import},
        "in_dim": c.in_dim, "q_heads": c.q_heads, "kv_heads": c.kv_heads, "head_dim": c.head_dim,
        "pattern": c.pattern.to_dict(), "max_seq": c.max_seq, "n_classes": c.n_classes,
        "class_names": list(c.class_names), "feature_recipe": c.feature_recipe,
        "parameters": c.n_params,
        "step_file": None if step is None else str(step_path(path)),
        "step_sha256": None if step is None else step.sha256(),
    }


def main_inspect(args: argparse.Namespace) -> int:
    from .onnx_model import default_model_path

    try:
        info = describe(args.model or default_model_path())
    except (EdgeAetherError, OSError) as e:
        return _fail(str(e))
    if args.json:
        print(json.dumps(info, indent=2, sort_keys=True))
        return 0
    p = info["pattern"]
    recipe = info["feature_recipe"]
    lines = [
        f"file          {info['file']}",
        f"sha256        {info['sha256']}",
        f"size          {info['bytes']} bytes",
        f"producer      {info['producer']}  (opset {info['opset']})",
        f"head          in_dim {info['in_dim']}, q_heads {info['q_heads']}, kv_heads {info['kv_heads']}, "
        f"head_dim {info['head_dim']}",
        f"pattern       window {p['window']}, block {p['block_size']}, globals {p['global_tokens']}, "
        f"log-stride {'on' if p['log_stride'] else 'off'}, landmarks {'on' if p['landmarks'] else 'off'}, "
        f"horizon {p['horizon'] if p['horizon'] is not None else 'unbounded'}",
        f"prefill       sequences up to max_seq {info['max_seq']}",
        f"classifier    {info['n_classes']} classes {info['class_names']}" if info["n_classes"]
        else "classifier    none",
        "features      " + (recipe.get("id", json.dumps(recipe, sort_keys=True)) if isinstance(recipe, dict)
                            else "not recorded"),
        f"parameters    {info['parameters']}",
        (f"step graph    {info['step_file']}  sha256 {info['step_sha256']}" if info["step_file"]
         else "step graph    absent (the onnxruntime backend rebuilds it from the weights)"),
    ]
    print("\n".join(lines))
    return 0


# --------------------------------------------------------------------------------------------
# import-rvne
# --------------------------------------------------------------------------------------------
def configure_import_rvne(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("blob", metavar="BLOB.rvne", help="RuView temporal-head weight blob")
    parser.add_argument("--out", required=True, metavar="MODEL.onnx", help="model file to write "
                        "(MODEL.step.onnx is written beside it)")
    parser.add_argument("--horizon", type=int, default=1024, help="pattern horizon in frames (default 1024)")
    parser.add_argument("--window", type=int, default=32, help="attention window W (default 32)")
    parser.add_argument("--block-size", type=int, default=16, help="landmark block size B (default 16)")
    parser.add_argument("--class-names", metavar="A,B,...", help="classifier labels, comma-separated "
                        "(default class_0, class_1, ...)")
    parser.add_argument("--recipe", metavar="ID", help="feature recipe id the weights were trained on, e.g. "
                        "ht20-56-ampphase-iqre-v1 for features made like RuView's host code (default: none "
                        "recorded)")
    parser.add_argument("--max-seq", type=int, default=4096, help="longest prefill sequence (default 4096)")


def main_import_rvne(args: argparse.Namespace) -> int:
    from .pattern import SparsePattern
    from .rvne import head_from_rvne, read_rvne

    try:
        blob = read_rvne(args.blob)
        recipe = None
        if args.recipe:
            from .features.recipe import FeatureRecipe

            recipe = FeatureRecipe.from_id(args.recipe).to_dict()
        names = None if args.class_names is None else tuple(s.strip() for s in args.class_names.split(",") if s.strip())
        pattern = SparsePattern(window=args.window, block_size=args.block_size, horizon=args.horizon)
        head = head_from_rvne(blob, pattern, names, recipe)
        out = head.to_onnx(args.out, max_seq=args.max_seq)
    except (EdgeAetherError, OSError) as e:
        return _fail(str(e))
    print(f"wrote {out} ({blob.input_dim} in, {blob.q_heads}/{blob.kv_heads} heads x {blob.head_dim}, "
          f"{blob.n_classes} classes, {'fp16' if blob.fp16 else 'fp32'} blob)")
    if recipe is None:
        print("note: no feature recipe recorded; pass --recipe ID so the service can check its features",
              file=sys.stderr)
    return 0


# --------------------------------------------------------------------------------------------
# make-default-model
# --------------------------------------------------------------------------------------------
def configure_make_default_model(parser: argparse.ArgumentParser) -> None:
    from .onnx_model import _REPO_MODELS, DEFAULT_MODEL_NAME

    parser.add_argument("--out", default=str(_REPO_MODELS / DEFAULT_MODEL_NAME), metavar="MODEL.onnx",
                        help="where to write (default: models/aether-default.onnx of the checkout)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 unless the files at --out regenerate byte for byte")


def default_model_bytes() -> tuple:
    """(prefill bytes, step bytes) of the default model, generated from its seed."""
    from .onnx_model import build_models, make_default_head

    prefill, step = build_models(make_default_head())
    return prefill.SerializeToString(), step.SerializeToString()


def main_make_default_model(args: argparse.Namespace) -> int:
    from .onnx_model import save_onnx, make_default_head, step_path

    out = pathlib.Path(args.out)
    if args.check:
        want = default_model_bytes()
        for path, data in zip((out, step_path(out)), want):
            if not path.is_file() or path.read_bytes() != data:
                return _fail(f"{path} does not match the default model generated from its seed; "
                             "regenerate with `edge-aether make-default-model`")
        print(f"{out} and {step_path(out)} regenerate byte for byte")
        return 0
    out.parent.mkdir(parents=True, exist_ok=True)
    save_onnx(make_default_head(), out)
    print(f"wrote {out} and {step_path(out)}")
    return 0
