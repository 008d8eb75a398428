"""ROS 2 programs as child processes, the loopback DDS environment and ROS domain ids.

Used by the demo, ``rsee bench-node`` and the tests; rclpy-free (it only starts processes).
Every process started from here keeps DDS on the loopback interface (a rule of this project and
a courtesy on a robot's network): ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST`` (Jazzy and later),
``ROS_LOCALHOST_ONLY=1`` (older distros) and ``ROS_STATIC_PEERS=127.0.0.1`` (discovery in well
under a second).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "LOOPBACK_ENV",
    "MAX_DOMAIN_ID",
    "RosProcess",
    "domain_block",
    "keep_dds_on_loopback",
    "loopback_environment",
    "ros_param_args",
    "taskset_prefix",
    "temporary_environment",
]

LOOPBACK_ENV: dict[str, str] = {
    "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST",
    "ROS_LOCALHOST_ONLY": "1",
    "ROS_STATIC_PEERS": "127.0.0.1",
}
"""The DDS settings every process of this project runs with."""

STOP_TIMEOUT_S = 60.0
"""Grace after SIGINT before SIGKILL. A node stops its ROS side in milliseconds, but the Python
interpreter's exit (unloading torch and ONNX Runtime) took 2-6 s on a loaded 2-core machine; the
wait ends as soon as the process does."""

MAX_DOMAIN_ID = 232
"""The largest ROS domain id Fast DDS accepts with its default port mapping."""


def keep_dds_on_loopback() -> None:
    """Put :data:`LOOPBACK_ENV` into this process's environment (inherited by its children)."""
    os.environ.update(LOOPBACK_ENV)


def loopback_environment(
    base: Mapping[str, str] | None = None, *, domain_id: int | None = None, **extra: str
) -> dict[str, str]:
    """An environment for a child ROS process: ``base`` (default: this process's) with DDS on
    loopback, ``ROS_DOMAIN_ID`` when given, unbuffered Python output and ``extra``."""
    env = dict(os.environ if base is None else base)
    env.update(LOOPBACK_ENV, PYTHONUNBUFFERED="1")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(check_domain_id(domain_id))
    env.update(extra)
    return env


def check_domain_id(domain_id: int) -> int:
    """``domain_id`` when it is a usable ROS domain id, else ``ValueError``."""
    if isinstance(domain_id, bool) or not isinstance(domain_id, int):
        raise ValueError(f"a ROS domain id must be an integer, got {domain_id!r}")
    if not 0 <= domain_id <= MAX_DOMAIN_ID:
        raise ValueError(f"a ROS domain id must be in 0..{MAX_DOMAIN_ID}, got {domain_id}")
    return domain_id


def domain_block(size: int = 1, *, pid: int | None = None) -> range:
    """``size`` consecutive ROS domain ids (1..232) picked from a process id (default: this
    process's). The one scheme for runs that must not see each other: concurrent processes
    get different blocks unless their pids collide modulo the number of blocks; 0, the default
    domain, is left to manual experiments."""
    if not 1 <= size <= MAX_DOMAIN_ID:
        raise ValueError(f"size must be in 1..{MAX_DOMAIN_ID}, got {size}")
    blocks = MAX_DOMAIN_ID // size
    start = 1 + ((os.getpid() if pid is None else pid) % blocks) * size
    return range(start, start + size)


@contextmanager
def temporary_environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for the duration of the block (an in-process participant)."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _ros_value(value: Any) -> str:
    """A ``-p name:=value`` value, written as YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(json.dumps(str(v)) for v in value) + "]"
    return json.dumps(str(value))


def ros_param_args(params: Mapping[str, Any]) -> list[str]:
    """``-p name:=value`` arguments (after ``--ros-args``) for ``params``."""
    args: list[str] = []
    for key, value in params.items():
        args += ["-p", f"{key}:={_ros_value(value)}"]
    return args


def taskset_prefix(cpus: Iterable[int]) -> list[str]:
    """``taskset --cpu-list ...``: a command after it runs on ``cpus`` only (its threads too);
    ``ValueError`` for CPUs this process may not use, ``FileNotFoundError`` without taskset.

    A prefix rather than ``os.sched_setaffinity`` in ``preexec_fn``: ``rsee bench-node`` starts
    processes while DDS and spin threads run, and Python code between fork and exec is unsafe in
    a threaded process (see ``subprocess``); taskset sets the affinity and execs the program, so
    the pid stays the program's."""
    wanted = sorted({int(cpu) for cpu in cpus})
    allowed = os.sched_getaffinity(0)
    if not wanted or not set(wanted) <= allowed:
        raise ValueError(f"cpus must be a non-empty subset of {sorted(allowed)}, got {wanted}")
    taskset = shutil.which("taskset")
    if taskset is None:
        raise FileNotFoundError("taskset (util-linux) is needed to pin a process to CPUs")
    return [taskset, "--cpu-list", ",".join(map(str, wanted))]


class RosProcess:
    """A ROS 2 Python program in its own session (process group), output to a log file.

    ``python -m module --ros-args [-r __node:=name] -p ...``, pinned to ``cpus`` when given
    (:func:`taskset_prefix`); stopped with SIGINT to the group (as Ctrl-C would) and SIGKILL
    when that does not end it in time.
    """

    def __init__(
        self,
        name: str,
        module: str,
        params: Mapping[str, Any],
        *,
        env: Mapping[str, str],
        log_path: str | Path,
        rename: bool = False,
        cpus: Iterable[int] | None = None,
    ) -> None:
        cmd = [sys.executable, "-m", module, "--ros-args"]
        if rename:
            cmd += ["-r", f"__node:={name}"]
        cmd += ros_param_args(params)
        self.cpus = None if cpus is None else sorted(set(cpus))
        if self.cpus is not None:
            cmd = taskset_prefix(self.cpus) + cmd
        self.name = name
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.popen = subprocess.Popen(
                cmd, env=dict(env), stdout=self._log, stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL, start_new_session=True,
            )
        except OSError:
            self._log.close()
            raise
        self._interrupted = False

    @property
    def pid(self) -> int:
        """The process id (also its process group id)."""
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        """The exit status, None while it runs."""
        return self.popen.poll()

    def alive(self) -> bool:
        """True while the process runs."""
        return self.popen.poll() is None

    def output(self) -> str:
        """Everything it printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines of its output, each prefixed with its name."""
        return "\n".join(f"  [{self.name}] {line}"
                         for line in self.output().strip().splitlines()[-lines:])

    def interrupt(self) -> None:
        """SIGINT to the process group, once."""
        if self._interrupted or self.popen.poll() is not None:
            return
        self._interrupted = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGINT)  # the leader is not reaped yet: pgid is ours

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> int | None:
        """SIGINT to the process group, SIGKILL after ``timeout_s``; returns the exit status."""
        self.interrupt()
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5.0)
        if not self._log.closed:
            self._log.close()
        return self.popen.poll()

    def info(self) -> dict[str, Any]:
        """Name, pid, exit status and CPUs (None: not pinned), for reports."""
        return {"name": self.name, "pid": self.pid, "returncode": self.popen.poll(),
                "cpus": self.cpus}
