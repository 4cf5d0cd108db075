"""`python -m export` commands of the LSTM-MoE: train-moe, build-moe, flops."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge.errors import EdgeError


def register(sub) -> None:
    """Add the LSTM-MoE subcommands to the `python -m export` parser."""
    p = sub.add_parser("train-moe", help="train the LSTM-MoE on synthetic, E-DAIC or session data")
    p.add_argument("--data", choices=("synthetic", "edaic", "sessions"), default="synthetic")
    p.add_argument("--dir", type=Path, help="E-DAIC root or session folder (for --data edaic/sessions)")
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, required=True, help="where to write the weights (.npz)")
    p.add_argument("--report", type=Path, help="the evaluation report on the held-out split (JSON; default: "
                   "OUT with .report.json)")
    p.add_argument("--min-visits", type=int, default=None, metavar="N",
                   help="fewer visits than this keep 'demo weights' on every output (default 200)")
    p.add_argument("--batches", type=int, default=20, metavar="N", help="batches per epoch (default 20)")
    p.set_defaults(func=train_command)

    p = sub.add_parser("build-moe", help="export every file from the shipped weights (or --retrain on synthetic "
                       "data first), parity, manifest")
    default_dir = Path(__file__).resolve().parent.parent / "edge" / "models"
    p.add_argument("--models-dir", type=Path, default=default_dir)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--retrain", action="store_true",
                   help="train the weights again (not reproducible across CPUs) instead of reusing the .npz")
    p.set_defaults(func=build_shipped)

    p = sub.add_parser("flops", help="MACs/FLOPs by fvcore and from the ONNX graph")
    p.add_argument("model", choices=("lstm_moe", "mini_xception"))
    p.add_argument("--json", action="store_true", help="print the full counts as JSON")
    p.set_defaults(func=flops_command)


def build_shipped(args: argparse.Namespace) -> None:
    """Rebuild edge/models/lstm_moe (or args.models_dir/lstm_moe)."""
    from export.convert.lstm_build import build_moe

    path = build_moe(Path(args.models_dir), epochs=getattr(args, "epochs", 25), seed=getattr(args, "seed", 0),
                     retrain=getattr(args, "retrain", False))
    print(f"wrote {path}")


def train_command(args: argparse.Namespace) -> None:
    from export.convert.lstm_build import save_weights
    from export.data.sequences import split
    from export.models.lstm_moe import build_model, count_parameters
    from export.train.evaluation import DEFAULT_MIN_VISITS, evaluation_report, report_text
    from export.train.lstm_moe import TrainConfig, mean_baseline, predict, train

    if args.data == "synthetic":
        from export.data.synthetic import synthetic_sessions

        train_set, val_set, test_set = split(synthetic_sessions(400, seed=args.seed), (0.15, 0.15), args.seed)
        config_name = "edge"
    elif args.dir is None:
        raise EdgeError(f"--data {args.data} needs --dir")
    elif args.data == "edaic":
        from export.data.edaic import load_edaic

        loaded = load_edaic(args.dir)
        train_set, val_set, test_set = loaded["train"], loaded["dev"], loaded["test"]
        config_name = "paper"
    else:
        from export.data.sessions import load_sessions

        train_set, val_set, test_set = split(load_sessions(args.dir), (0.15, 0.15), args.seed)
        config_name = "edge"
    model = build_model(config_name, seed=args.seed)
    width = len(train_set[0].features[0])
    if width != model.config.feature_size:
        raise EdgeError(f"the data has {width} features a step; the {config_name} config expects "
                        f"{model.config.feature_size}")
    print(f"{config_name} config, {count_parameters(model):,} parameters")
    steps = min(100, min(len(s.features) for s in train_set))
    train(model, train_set, val_set, TrainConfig(max_epochs=args.epochs, seed=args.seed, chunk_steps=steps,
                                                 batches_per_epoch=args.batches))
    save_weights(model, args.out)
    visits = {"train": len(train_set), "val": len(val_set), "test": len(test_set)}
    min_visits = DEFAULT_MIN_VISITS if args.min_visits is None else args.min_visits
    if test_set:
        predicted = predict(model, test_set)
        report = evaluation_report(predicted, test_set, visits, min_visits, args.data,
                                   mean_baseline(train_set, test_set))
        if args.data == "synthetic":  # synthetic sessions are never people: always demo weights
            report["demo_weights"], report["note"] = True, "demo weights, not for screening: synthetic data"
        path = args.report or args.out.with_suffix(".report.json")
        path.write_text(json.dumps(report, indent=2))
        print(report_text(report))
        demo = report["demo_weights"]
        print(f"wrote {path}" + (" (demo weights, not for screening)" if demo else ""))
    else:
        demo = True
    print(f"wrote {args.out}" + (" (demo weights, not for screening)" if demo else ""))


def _print_counts(label: str, counts: dict) -> None:
    print(f"  {label:<34} MACs fvcore {counts['macs_fvcore']:>13,}  ONNX {counts['macs_onnx']:>13,}  "
          f"FLOPs {counts['flops_fvcore']:>14,}  diff {100 * counts['fvcore_vs_onnx_rel_diff']:.2f} %")


def flops_command(args: argparse.Namespace) -> None:
    print("convention: MACs = multiply-accumulates, FLOPs = 2 x MACs")
    if args.model == "lstm_moe":
        from export.convert.lstm_build import flops_summary
        from export.models.lstm_moe import CONFIGS, build_model, count_parameters

        for name in CONFIGS:
            summary = flops_summary(name)
            print(f"lstm_moe/{name}: {count_parameters(build_model(name)):,} parameters")
            _print_counts("per tick (1 step)", summary["per_tick"])
            _print_counts("per second (10 ticks of 100 ms)", summary["per_second"])
            _print_counts("paper case (one 5000-step chunk)", summary["paper_chunk"])
            if args.json:
                print(json.dumps(summary, indent=2))
        return
    import tempfile

    import torch

    from export.flops import fvcore_macs, onnx_macs
    from export.models.mini_xception import MiniXception

    model = MiniXception().eval()
    face = torch.zeros(1, 1, 64, 64)
    counted = fvcore_macs(model, (face,))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "mini_xception.onnx"
        torch.onnx.export(model, (face,), str(path), dynamo=False, opset_version=17)
        graph = onnx_macs(str(path))
    conv = counted["by_operator"].get("conv", counted["macs"])
    diff = abs(conv - graph["total"]) / float(conv)
    print("mini_xception per 64x64 face:")
    print(f"  MACs fvcore (conv) {conv:,}  ONNX {graph['total']:,}  FLOPs {2 * conv:,}  "
          f"diff {100 * diff:.2f} %")
    print(f"  fvcore total incl. batch norm {counted['macs']:,} "
          "(ONNX folds batch norm into the convolutions)")
    print(f"  per second at 10 faces/s (one per tick): {10 * conv:,} MACs, {20 * conv:,} FLOPs")
    if args.json:
        print(json.dumps({"fvcore": counted, "onnx": graph}, indent=2, default=str))
