"""Signals and shutdown of the node programs (rsee_ros.ros.lifecycle)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsee_ros.ros.lifecycle import StopRequest

REPO = Path(__file__).resolve().parents[1]
DEADLINE_S = 120.0  # bounds a failure only; a loaded machine can take long to start torch


def test_stop_request_records_the_signal_and_never_raises() -> None:
    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        stop = StopRequest().install()
        assert not stop.requested and stop.signal is None
        os.kill(os.getpid(), signal.SIGTERM)  # handled in this (the main) thread
        os.kill(os.getpid(), signal.SIGINT)  # a second signal is just recorded too
        assert stop.requested and stop.signal == signal.SIGINT
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _caught_signals(pid: int) -> int:
    """The process's mask of caught signals (``SigCgt`` in /proc/PID/status)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigCgt:"):
            return int(line.split()[1], 16)
    return 0


def _spawn(module: str, *ros_args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOCALHOST_ONLY="1")
    return subprocess.Popen(
        [sys.executable, "-m", module, "--ros-args", *ros_args], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )


@pytest.mark.ros
@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize(
    ("module", "ros_args"),
    [("rsee_ros.ros.node", ("-p", "num_threads:=1", "-p", "engine:=torch")),
     ("rsee_ros.ros.video_source", ("-p", "synthetic_size:=32"))],
    ids=["rsee_node", "video_source"],
)
def test_a_signal_during_startup_is_a_clean_stop(module: str, ros_args: tuple[str, ...],
                                                 number: int) -> None:
    proc = _spawn(module, *ros_args)
    try:
        # Python itself catches SIGINT from the start; SIGTERM is caught once the program's stop
        # request is installed, which happens before its heavy imports (rclpy, torch).
        sigterm_bit = 1 << (signal.SIGTERM - 1)
        deadline = time.monotonic() + DEADLINE_S
        while proc.poll() is None and time.monotonic() < deadline:
            if _caught_signals(proc.pid) & sigterm_bit:
                break
            time.sleep(0.002)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(number)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Traceback" not in out + err, err


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_the_program_exits_is_a_clean_exit(number: int, tmp_path: Path) -> None:
    """A node program that ends on its own (a source at the end of its video) can be asked to
    stop while the interpreter finalises, when Python's handlers are gone; signals land here
    every half millisecond until the process is gone (without exit_status it dies of the
    signal)."""
    ready = tmp_path / "ready"
    program = (
        "import sys, time\n"
        "from rsee_ros.ros.lifecycle import exit_status, process_stop_request\n"
        "process_stop_request()\n"
        "import numpy, json, asyncio  # some modules to finalise\n"
        f"open({str(ready)!r}, 'w').close()\n"
        "time.sleep(0.2)\n"
        "sys.exit(exit_status(0))\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", program], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not ready.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        assert ready.exists(), proc.communicate()
        signals = 0
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, number)
                signals += 1
            time.sleep(0.0005)
        out, err = proc.communicate(timeout=DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert signals > 0
    assert proc.returncode == 0, (proc.returncode, err)
    assert "Traceback" not in out + err, err
