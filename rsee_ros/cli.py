"""The ``rsee`` command line: one subcommand per job, each defined next to its code.

Only the chosen subcommand's module is imported (to register its arguments and run it), so
``rsee --help`` imports none of them and ``rsee <command> --help`` only that one; a command
module imports torch and the data stack inside its ``run``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence

# subcommand -> (module with add_arguments and run, help text)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "flops": ("rsee_ros.commands.flops", "Print the FLOPs lookup table of a model configuration"),
    "make-dataset": ("rsee_ros.commands.make_dataset", "Write the synthetic action data set"),
    "train": ("rsee_ros.commands.train", "Train a model in stages from a YAML configuration"),
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
    return parser


def chosen_command(argv: Sequence[str]) -> str | None:
    """The subcommand named in ``argv`` (the first argument that is one; the top level has no
    option taking a value), or None."""
    return next((arg for arg in argv if arg in SUBCOMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rsee``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    command = chosen_command(argv)
    args = build_parser([] if command is None else [command]).parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
