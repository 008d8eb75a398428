"""``rsee train``: the staged RSEE training from a YAML configuration.

    rsee train --config config/train_synthetic.yaml [KEY=VALUE ...] [--stage S ...] [--init C]

``KEY=VALUE`` overrides may come anywhere on the line (see :mod:`rsee_ros.cli`). The user's
mistakes (a missing or bad configuration, an unknown key, a data root in no known layout, an
empty subset, a stage before its predecessor, a bad checkpoint) are found before anything trains
and said in one line, exit status 2. Ctrl-C or SIGTERM stops the run: one line says which stage
and epoch is saved where and the command that resumes it (the same command line, less
``--force``), exit status 130. With ``data.val_fraction`` > 0 the final model is calibrated at
the end (``rsee calibrate``). docs/training.md describes every key and the stages.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from typing import Any

from rsee_ros.training.stage_names import STAGES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rsee train``."""
    parser.add_argument("--config", required=True, help="training configuration (YAML), e.g. "
                        "config/train_synthetic.yaml; every key: docs/training.md")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="override configuration values, anywhere on the line, e.g. "
                        "stages.joint.epochs=2 data.root=/data/ucf101 data.val_fraction=0.15")
    parser.add_argument("--stage", action="append", choices=STAGES, dest="stages",
                        help="run only this stage (repeatable); default: all four in order")
    parser.add_argument("--init", default=None, help="start from this checkpoint instead of the "
                        "previous stage's model")
    parser.add_argument("--force", action="store_true", help="rerun stages that are complete "
                        "or have a saved state")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def resume_command(args: argparse.Namespace) -> str:
    """The command line that continues this run: the same one, without ``--force`` (which
    would start the stages again)."""
    argv = list(getattr(args, "argv", None) or [
        "train", "--config", args.config, *args.overrides,
        *(f"--stage={s}" for s in args.stages or []),
        *(["--init", args.init] if args.init else []),
        *(["--no-progress"] if args.no_progress else [])])
    return "rsee " + shlex.join(a for a in argv if a != "--force")


def _say(text: str) -> None:
    """A line on stderr, from the first process only (under torchrun every process runs)."""
    if os.environ.get("RANK", "0") == "0":
        print(f"rsee train: {text}", file=sys.stderr, flush=True)


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def run(args: argparse.Namespace) -> int:
    """Train and print the final checkpoint's path; 2 for the user's mistakes, 130 when
    interrupted."""
    from rsee_ros.training.interrupts import SignalGuard

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    guard = SignalGuard()
    made: dict[str, Any] = {}
    try:
        with guard.installed():
            return _train(args, guard, made)
    except KeyboardInterrupt:
        trainer = made.get("trainer")
        where = (trainer.position.describe() if trainer is not None
                 else "interrupted before training started (nothing saved)")
        _say(f"{where}; resume with: {resume_command(args)}")
        return 130


def _train(args: argparse.Namespace, guard: Any, made: dict[str, Any]) -> int:
    """Load, check, train (``made["trainer"]``: the trainer, once there is one)."""
    from rsee_ros.data.readers import DatasetLayoutError
    from rsee_ros.model import CheckpointError
    from rsee_ros.model.pretrained import PretrainedWeightsError
    from rsee_ros.training.calibration import CalibrationError
    from rsee_ros.training.config import load_train_config
    from rsee_ros.training.trainer import Trainer

    try:
        config = load_train_config(args.config, args.overrides)
        trainer = Trainer(config, init=args.init, progress=not args.no_progress)
        trainer.guard = guard
        made["trainer"] = trainer
        trainer.check(args.stages, force=args.force)
    except (ValueError, OSError, CheckpointError, PretrainedWeightsError) as error:
        _say(_one_line(error))
        return 2
    try:
        result = trainer.run(args.stages, force=args.force)
    except (CheckpointError, PretrainedWeightsError, CalibrationError, DatasetLayoutError,
            FileNotFoundError) as error:
        _say(_one_line(error))
        return 2
    trainer.say(f"model: {result}")
    return 0
