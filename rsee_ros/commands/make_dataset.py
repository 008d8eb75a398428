"""``rsee make-dataset``: write a data set to disk (the synthetic action set)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rsee make-dataset``."""
    from rsee_ros.data import synthetic, synthetic_set

    parser.add_argument("kind", choices=["synthetic"], help="which data set to write")
    parser.add_argument("--out", required=True, help="output folder (class-folder layout)")
    # The default model's set (128 px, for its 112 px resolution), not the generator's 224.
    synthetic_set.add_arguments(parser, size=synthetic.DEFAULT_MODEL_FRAME_SIZE)


def run(args: argparse.Namespace) -> int:
    """Generate the data set and print a one-line summary."""
    from rsee_ros.data.synthetic_set import make_from_arguments

    info = make_from_arguments(args.out, args)
    state = "reused" if info.reused else f"written in {info.seconds:.1f} s"
    print(f"{len(info.train)} train + {len(info.test)} test videos, {len(info.classes)} classes "
          f"in {info.out_dir} ({state})")
    return 0
