"""``rsee --help`` and ``rsee <command> --help`` stay light: they must not import torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from rsee_ros.cli import SUBCOMMANDS, build_parser, chosen_command

REPO = Path(__file__).resolve().parents[1]

# Runs ``python -m rsee_ros.cli ARGS`` in this interpreter, then reports whether torch was
# imported; the exit status and output are the command's.
SCRIPT = """\
import runpy, sys
sys.argv = ["rsee", *sys.argv[1:]]
try:
    runpy.run_module("rsee_ros.cli", run_name="__main__")
except SystemExit as exit:
    status = exit.code
print("TORCH_IMPORTED" if "torch" in sys.modules else "TORCH_NOT_IMPORTED")
sys.exit(status)
"""

# Command modules that still import torch when imported (their owners are making them light).


def _help(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", SCRIPT, *args, "--help"], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


def test_top_level_help_does_not_import_torch() -> None:
    run = _help()
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip().endswith("TORCH_NOT_IMPORTED"), run.stdout
    for name in SUBCOMMANDS:
        assert name in run.stdout


@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_command_help_does_not_import_torch(command: str) -> None:
    run = _help(command)
    assert run.returncode == 0, run.stderr
    assert f"usage: rsee {command}" in run.stdout
    assert run.stdout.strip().endswith("TORCH_NOT_IMPORTED"), run.stdout


def test_only_the_chosen_command_is_registered() -> None:
    assert chosen_command(["bench", "--data", "eval"]) == "bench"
    assert chosen_command(["--help"]) is None
    parser = build_parser(["make-dataset"])
    args = parser.parse_args(["make-dataset", "synthetic", "--out", "x"])
    assert args.kind == "synthetic" and callable(args.handler)
    # a command whose arguments were not registered takes none
    with pytest.raises(SystemExit):
        parser.parse_args(["bench", "--json", "out.json"])
