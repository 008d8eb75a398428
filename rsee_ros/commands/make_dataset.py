"""``rsee make-dataset``: write a data set to disk (the synthetic action set)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rsee make-dataset``."""
    parser.add_argument("kind", choices=["synthetic"], help="which data set to write")
    parser.add_argument("--out", required=True, help="output folder (class-folder layout)")
    parser.add_argument("--seed", type=int, default=0, help="same seed, same videos (default 0)")
    parser.add_argument("--num-classes", type=int, default=12, help="10 to 14 (default 12)")
    parser.add_argument("--videos-per-class", type=int, default=60)
    parser.add_argument("--frames-per-video", type=int, default=16)
    parser.add_argument("--size", type=int, default=128, help="frame side in pixels; use the "
                        "model's largest resolution x 256/224 (default 128, for 112 px models)")
    parser.add_argument("--fps", type=int, default=8)
    parser.add_argument("--train-fraction", type=float, default=0.75)
    parser.add_argument("--background-video", default=None,
                        help="optional video whose frames serve as backgrounds")
    parser.add_argument("--workers", type=int, default=0, help="render in this many processes")
    parser.add_argument("--force", action="store_true", help="rewrite an existing set")


def run(args: argparse.Namespace) -> int:
    """Generate the data set and print a one-line summary."""
    from rsee_ros.data import make_synthetic_dataset

    info = make_synthetic_dataset(
        args.out, args.seed, args.num_classes, args.videos_per_class, args.frames_per_video,
        args.size, fps=args.fps, train_fraction=args.train_fraction,
        background_video=args.background_video, workers=args.workers, force=args.force,
    )
    state = "reused" if info.reused else f"written in {info.seconds:.1f} s"
    print(f"{len(info.train)} train + {len(info.test)} test videos, {len(info.classes)} classes "
          f"in {info.out_dir} ({state})")
    return 0
