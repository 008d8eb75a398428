"""``rsee flops``: the per-frame FLOPs table of a backbone (or of a checkpoint's model)."""

from __future__ import annotations

import argparse
import json

from rsee_ros.model.config import BACKBONE_NAMES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rsee flops``."""
    parser.add_argument("--backbone", default="mobilenet_v2", choices=BACKBONE_NAMES)
    parser.add_argument(
        "--resolutions", type=int, nargs="+", default=[224, 168, 112, 84], metavar="PX",
        help="resolutions in pixels, highest first (default: 224 168 112 84)",
    )
    parser.add_argument(
        "--checkpoint", default=None, help="report the table stored in this checkpoint instead"
    )
    parser.add_argument("--frames", type=int, default=16, help="frames per video for the "
                        "Uniform cost column (default: 16)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def run(args: argparse.Namespace) -> int:
    """Count (or read) the table and print it."""
    from rsee_ros.model import RSEEConfig, build_rsee, load_checkpoint

    if args.checkpoint:
        model = load_checkpoint(args.checkpoint).model
    else:
        resolutions = sorted(set(args.resolutions), reverse=True)
        config = RSEEConfig(num_classes=2, backbone=args.backbone, resolutions=tuple(resolutions))
        model = build_rsee(config)
    table = model.flops
    config = model.config
    report = {
        "backbone": config.backbone_names()[0] if len(set(config.backbone_names())) == 1
        else list(config.backbone_names()),
        "unit": "GMAC (1e9 multiply-accumulates, the papers' 'GFLOPs')",
        "counted_with": "torch.utils.flop_counter.FlopCounterMode (FLOPs / 2)",
        "backbone_per_frame": {str(r): round(v, 4) for r, v in table.backbone.items()},
        "uniform_per_video": {
            str(r): round(table.uniform_video(r, args.frames), 4) for r in table.backbone
        },
        "frames_per_video": args.frames,
        "selector_per_frame": round(table.selector, 4),
        "selector_parts": {k: round(v, 4) for k, v in table.details.items()},
        "head_per_frame": round(table.head, 5),
    }
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"backbone: {report['backbone']}   unit: {report['unit']}")
    print(f"{'resolution':>10} {'per frame':>10} {'Uniform/video':>14}")
    for r in table.backbone:
        print(f"{r:>10} {table.backbone[r]:>10.4f} {table.uniform_video(r, args.frames):>14.3f}")
    print(f"selector per looked-at frame: {table.selector:.4f} "
          f"(CNN {table.details.get('selector_cnn', 0):.4f} + RNN "
          f"{table.details.get('selector_rnn', 0):.4f}); head per processed frame: "
          f"{table.head:.5f}")
    return 0
