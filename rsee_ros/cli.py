"""The ``rsee`` command line: one subcommand per job, each defined next to its code."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# subcommand -> "module:function" registering its arguments; imported lazily so that
# `rsee --help` and light subcommands do not pay for torch or the data stack.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "flops": ("rsee_ros.commands.flops", "Print the FLOPs lookup table of a model configuration"),
    "make-dataset": ("rsee_ros.commands.make_dataset", "Write the synthetic action data set"),
    "train": ("rsee_ros.commands.train", "Train a model in stages from a YAML configuration"),
    "eval-bag": ("rsee_ros.commands.eval_bag", "Run the node's recognition on a rosbag2 recording"),
    "eval": ("rsee_ros.commands.eval", "Accuracy, GFLOPs and speed of a checkpoint and baselines"),
    "bench": ("rsee_ros.commands.bench", "RSEE vs Uniform/Resolution-only/Exit-only, streamed"),
    "bench-node": ("rsee_ros.commands.bench_node", "rsee_node over DDS: throughput, latency, CPU"),
}


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="rsee",
        description="RSEE: adaptive resolution selection and early exiting for action recognition",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        module = importlib.import_module(module_name)
        command = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(command)
        command.set_defaults(handler=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``rsee``; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
