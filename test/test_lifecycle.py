"""Signals and shutdown of the node programs (rsee_ros.ros.lifecycle)."""

from __future__ import annotations

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
