"""``rsee train``: the staged RSEE training from a YAML configuration."""

from __future__ import annotations

import argparse
import logging

from rsee_ros.training.stage_names import STAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rsee train``."""
    parser.add_argument("--config", required=True, help="training configuration (YAML), e.g. "
                        "config/train_synthetic.yaml")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override configuration values, e.g. stages.joint.epochs=2 "
                        "data.root=/data/ucf101")
    parser.add_argument("--stage", action="append", choices=STAGES, dest="stages",
                        help="run only this stage (repeatable); default: all four in order")
    parser.add_argument("--init", default=None, help="start from this checkpoint instead of the "
                        "previous stage's model")
    parser.add_argument("--force", action="store_true", help="rerun stages that are complete "
                        "or have a saved state")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args: argparse.Namespace) -> int:
    """Train and print the final checkpoint's path."""
    from rsee_ros.training.config import load_train_config
    from rsee_ros.training.trainer import Trainer

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    config = load_train_config(args.config, args.overrides)
    trainer = Trainer(config, init=args.init, progress=not args.no_progress)
    result = trainer.run(args.stages, force=args.force)
    trainer.say(f"model: {result}")
    return 0
