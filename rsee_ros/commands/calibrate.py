"""``rsee calibrate``: the classifier's temperature and the operating point, on validation videos.

    rsee calibrate --checkpoint runs/x/gate/model.pt --data data/x [--tolerance 1.0] [--out C2]

Uses only the checkpoint's ``val`` subset (the share ``data.val_fraction`` of its training videos
held out in training; the test split is never read) of the data set at ``--data``, read as the
checkpoint was trained (its kind, reader options, frames per video). Stores
``metadata["calibration"]`` (temperature, ECE before and after) and
``metadata["operating_point"]`` (the cheapest exit threshold within ``--tolerance`` top-1 points
of Uniform on val) in the checkpoint, in place or in ``--out``; the node, ``rsee bench`` and
``rsee eval`` then use them (docs/training.md). The logic: :mod:`rsee_ros.training.calibration`.
Exit status 0, or 2 with one line (a checkpoint without a val subset, a bad checkpoint or data
set).
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rsee calibrate``."""
    parser.add_argument("--checkpoint", required=True, help="checkpoint trained with "
                        "data.val_fraction > 0")
    parser.add_argument("--data", required=True, help="the data set's root (as in training)")
    parser.add_argument("--tolerance", type=float, default=1.0, metavar="POINTS",
                        help="top-1 points on val the operating point may lose against Uniform "
                        "(every frame at the highest resolution, no exit); default 1.0")
    parser.add_argument("--out", default=None, help="write the calibrated checkpoint here "
                        "(default: over --checkpoint)")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per video (default: the training's data.frames)")
    parser.add_argument("--cache-dir", default=None, help="decode the videos once into this "
                        "frame cache")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="data loader processes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: all cores)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--json", default=None, metavar="OUT",
                        help="write the result (and the whole threshold sweep) here")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    """Calibrate, write the checkpoint, print what was found."""
    import torch
    from tqdm import tqdm

    from rsee_ros.evaluation.common import default_threads, jsonable, write_json_report
    from rsee_ros.model import CheckpointError, resolve_device
    from rsee_ros.training.calibration import calibrate_checkpoint, describe_calibration

    torch.set_num_threads(args.threads or default_threads())
    try:
        resolve_device(args.device)
    except (RuntimeError, ValueError) as error:
        print(f"rsee calibrate: {error}", file=sys.stderr)
        return 2

    def wrap(batches):
        return tqdm(batches, desc="val batches", unit="batch", disable=args.no_progress)

    try:
        result = calibrate_checkpoint(
            args.checkpoint, args.data, tolerance=args.tolerance, out=args.out,
            batch_size=args.batch_size, device=args.device, frames=args.frames,
            cache_dir=args.cache_dir, workers=args.workers, wrap=wrap,
            progress=not args.no_progress)
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        lines = str(error).strip().splitlines()
        print(f"rsee calibrate: {lines[0] if lines else type(error).__name__}", file=sys.stderr)
        return 2
    print(describe_calibration(result))
    print(f"wrote {result['checkpoint']}")
    if args.json:
        write_json_report(args.json, jsonable(result))
        print(f"wrote {args.json}")
    return 0

