"""``rsee export``: a checkpoint as ONNX graphs plus a manifest, validated against the model.

    rsee export --checkpoint model.pt --out model_onnx/

The directory runs on the ``onnxruntime`` and ``tensorrt`` engines (node parameter
``checkpoint:=model_onnx/``, ``--checkpoint model_onnx/`` of the commands) without the training
code. See :mod:`rsee_ros.engine.export` for what it holds and how it is validated. Exit status 0,
or 2 with one line when the checkpoint, the target or the validation fails.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rsee export``."""
    parser.add_argument("--checkpoint", default=None,
                        help="the checkpoint to export (default: the packaged model)")
    parser.add_argument("--out", required=True, help="new folder for the export")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")


def run(args: argparse.Namespace) -> int:
    """Export and validate; prints the graphs and the validation's figures."""
    import torch

    from rsee_ros.engine.export import ExportError, export_checkpoint
    from rsee_ros.model import CheckpointError, load_checkpoint
    from rsee_ros.resources import DEFAULT_CHECKPOINT

    torch.set_num_threads(max(1, args.threads))
    path = args.checkpoint or DEFAULT_CHECKPOINT
    try:
        checkpoint = load_checkpoint(path)
        manifest = export_checkpoint(checkpoint, args.out, source=path,
                                     log=lambda text: print(text, flush=True))
    except (CheckpointError, ExportError) as exc:
        print(f"rsee export: {exc}", file=sys.stderr)
        return 2
    check = manifest["validation"]
    print(f"wrote {args.out}: {', '.join(manifest['graphs'])} (opset {manifest['opset']}); "
          f"validated on {check['videos']} runs: same decisions on {check['same_decisions']}, "
          f"probabilities within {check['max_difference']:.1e}")
    return 0
