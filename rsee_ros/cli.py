"""The ``rsee`` command line: one subcommand per job, each defined next to its code.

Only the chosen subcommand's module is imported (to register its arguments and run it), so
``rsee --help`` imports none of them and ``rsee <command> --help`` only that one; a command
module imports torch and the data stack inside its ``run``.

``rsee train`` takes its ``KEY=VALUE`` overrides anywhere on the line (before, between and after
the options) and says what is wrong with its arguments in one line, exit status 2; every other
command keeps argparse's own errors.
"""

from __future__ import annotations

import argparse
import importlib
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import NoReturn

# subcommand -> (module with add_arguments and run, help text)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "flops": ("rsee_ros.commands.flops", "Print the FLOPs lookup table of a model configuration"),
    "make-dataset": ("rsee_ros.commands.make_dataset", "Write the synthetic action data set"),
    "train": ("rsee_ros.commands.train", "Train a model in stages from a YAML configuration"),
    "calibrate": ("rsee_ros.commands.calibrate",
                  "Fit the temperature and the exit threshold on the validation videos"),
    "eval-bag": ("rsee_ros.commands.eval_bag", "Run the node's recognition on a rosbag2 recording"),
    "predict": ("rsee_ros.commands.predict", "Label a video, folder, rosbag or camera"),
    "export": ("rsee_ros.commands.export", "Export a checkpoint to ONNX for onnxruntime/TensorRT"),
    "eval": ("rsee_ros.commands.eval", "Accuracy, GFLOPs and speed of a checkpoint and baselines"),
    "bench": ("rsee_ros.commands.bench", "RSEE vs Uniform/Resolution-only/Exit-only, streamed"),
    "bench-node": ("rsee_ros.commands.bench_node", "rsee_node over DDS: throughput, latency, CPU"),
}


def build_parser(commands: Iterable[str] | None = None) -> argparse.ArgumentParser:
    """The parser with every subcommand listed; the arguments of ``commands`` (default: all)
    are registered, which imports their modules."""
    wanted = set(SUBCOMMANDS if commands is None else commands)
    parser = argparse.ArgumentParser(
        prog="rsee",
        description="RSEE: adaptive resolution selection and early exiting for action recognition",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        command = sub.add_parser(name, help=help_text, description=help_text)
        if name in wanted:
            module = importlib.import_module(module_name)
            module.add_arguments(command)
            command.set_defaults(handler=module.run)
        if name in ONE_LINE_ERRORS:
            command.error = _one_line_error(name)  # type: ignore[method-assign]
    return parser


ONE_LINE_ERRORS = ("train",)
"""The commands whose argument errors are one line (no usage), as their run's errors are."""
_OVERRIDE = re.compile(r"^[A-Za-z_][\w.-]*=")


def _one_line_error(name: str) -> Callable[[str], NoReturn]:
    """An ``ArgumentParser.error`` printing ``rsee NAME: MESSAGE`` and exiting 2."""

    def error(message: str) -> NoReturn:
        print(f"rsee {name}: {message} (rsee {name} --help)", file=sys.stderr)
        raise SystemExit(2)

    return error


def parse_train_arguments(parser: argparse.ArgumentParser, argv: Sequence[str]
                          ) -> argparse.Namespace:
    """``rsee train``'s arguments: ``KEY=VALUE`` overrides may come anywhere (in command-line
    order); anything else left over is a one-line error (``SystemExit(2)``)."""
    args, extra = parser.parse_known_args(argv)
    overrides = [*args.overrides, *extra]
    unknown = [a for a in overrides if not _OVERRIDE.match(a)]
    if unknown:
        _one_line_error("train")(f"unrecognized arguments: {' '.join(unknown)} (overrides are "
                                 "KEY=VALUE, e.g. stages.joint.epochs=2)")
    args.overrides = overrides
    args.argv = list(argv)
    return args


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument that is one; the top level has no
    option taking a value), or None."""
    return next((arg for arg in argv if arg in SUBCOMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rsee``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = chosen_command(argv)
    parser = build_parser([] if command is None else [command])
    args = (parse_train_arguments(parser, argv) if command == "train"
            else parser.parse_args(argv))
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
