"""The cameras-per-core sweep of ``rsee bench-node --cameras``, on running processes.

One ``camera_rig`` (:mod:`rsee_ros.ros.camera_rig`), pinned to the CPUs other than the node's,
publishes the cameras' 640x480 frames at the camera rate. For each engine and policy, and each level
N = 1, 2, ... (:func:`~rsee_ros.evaluation.node_bench.cameras.next_level`), a fresh ``rsee_node`` on
the first N camera topics (``num_threads`` 1, reliable, its default ``queue_size``) is started
pinned to one CPU; once ready the rig feeds those N cameras; after every camera's first result and
``sweep_warmup_s``, the node's ``/diagnostics`` reports and results are recorded for
``sweep_duration_s`` (from one report to the first report that far on) with its and the rig's CPU
time; then the rig pauses and the node is stopped. The figures are
:mod:`~rsee_ros.evaluation.node_bench.cameras`'. """

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rsee_ros.evaluation.node_bench.cameras import (
    camera_targets,
    level_figures,
    next_level,
    sweep_summary,
)
from rsee_ros.evaluation.node_bench.config import (
    CAMERA_HEIGHT,
    CAMERA_RIG,
    CAMERA_WIDTH,
    SWEEP_TOPIC,
    BenchNodeConfig,
    BenchNodeError,
    Log,
)
from rsee_ros.evaluation.node_bench.metrics import ProcSampler
from rsee_ros.evaluation.node_bench.phases import wait_for_nodes
from rsee_ros.evaluation.node_bench.processes import BenchProcesses
from rsee_ros.ros.processes import RosProcess

if TYPE_CHECKING:  # the listener needs rclpy; these modules do not
    from rsee_ros.evaluation.node_bench.listener import Listener

__all__ = ["CameraSweep", "split_cpus"]

RIG_MODULE = "rsee_ros.ros.camera_rig"


def split_cpus(node_cpu: int | None = None) -> tuple[int, list[int]]:
    """(the node's CPU, the publisher's CPUs) among those this process may use: ``node_cpu``
    (default the last) and the others (the node's own when it is the only one)."""
    allowed = sorted(os.sched_getaffinity(0))
    cpu = allowed[-1] if node_cpu is None else node_cpu
    if cpu not in allowed:
        raise BenchNodeError(f"node CPU {cpu} is not one of this process's CPUs {allowed}")
    return cpu, [c for c in allowed if c != cpu] or [cpu]


class CameraSweep:
    """The sweep over the engines, policies and levels of one run (module docstring)."""

    def __init__(self, config: BenchNodeConfig, log: Log, procs: BenchProcesses,
                 listener: Listener) -> None:
        self.config = config
        self.log = log
        self.procs = procs
        self.listener = listener
        self.node_cpu, self.rig_cpus = split_cpus(config.node_cpu)
        self.topics = [SWEEP_TOPIC.format(index=i) for i in range(config.cameras)]
        self.rig: RosProcess | None = None

    def run(self, settings: Any) -> dict[str, Any]:
        """Every engine and policy, level by level; returns the report's ``cameras``."""
        c = self.config
        load_before = os.getloadavg()
        self._start_rig()
        sweeps = []
        for engine in c.engines:
            for policy in c.policies:
                levels: list[dict[str, Any]] = []
                while (n := next_level(levels, c.cameras)) is not None:
                    levels.append(self.level(settings, engine, policy, n))
                summary = sweep_summary(engine, policy, levels, c.cameras)
                self.log(f"{engine} {policy}: {summary['cameras_held']} cameras held"
                         + (f", not {summary['stopped_at']}" if summary["stopped_at"] else ""))
                sweeps.append(summary)
        assert self.rig is not None
        self.procs.stop(self.rig)
        return {
            "max_cameras": c.cameras, "rate_hz": c.rate, "width": CAMERA_WIDTH,
            "height": CAMERA_HEIGHT, "source": c.source, "engines": list(c.engines),
            "policies": list(c.policies), "sweep_duration_s": c.sweep_duration_s,
            "warmup_s": c.sweep_warmup_s, "node_cpu": self.node_cpu,
            "publisher_cpus": self.rig_cpus, "publisher": f"{CAMERA_RIG} (one process, all topics)",
            "stop_rule": "first level not held", "load_average_before": list(load_before),
            "load_average_after": list(os.getloadavg()), "sweeps": sweeps,
            "targets": camera_targets(sweeps),
        }

    def _start_rig(self) -> None:
        """Start the rig (paused) and wait until its publishers are in the graph."""
        c = self.config
        self.log(f"starting {CAMERA_RIG} ({c.cameras} topics of {CAMERA_WIDTH}x{CAMERA_HEIGHT} "
                 f"at {c.rate:g} fps) on CPUs {self.rig_cpus}; rsee_node on CPU {self.node_cpu}")
        rig = self.rig = self.procs.start(CAMERA_RIG, RIG_MODULE,
                                          self.procs.rig_params(self.topics), cpus=self.rig_cpus)
        self._wait(lambda: self.listener.node.count_publishers(self.topics[-1]) > 0, [rig],
                   f"{CAMERA_RIG} publishers", rig)

    def level(self, settings: Any, engine: str, policy: str, n: int) -> dict[str, Any]:
        """One level: a node on the first ``n`` cameras, fed, warmed up, measured, stopped."""
        c, procs, listener = self.config, self.procs, self.listener
        assert self.rig is not None
        name = f"rsee_node_cameras_{engine.replace('-', '_')}_{policy}_{n}"
        topics = self.topics[:n]
        listener.watch(name)
        node = procs.start(name, "rsee_ros.ros.node", procs.node_params(
            settings, *topics, engine=engine, policy=policy, num_threads=1),
            cpus=[self.node_cpu])
        wait_for_nodes(listener, procs, [name], [node, self.rig], c.startup_timeout_s)
        listener.set_parameters(CAMERA_RIG, {"active": n})

        def every_camera_has_results() -> bool:
            results = listener.snapshot(name)[0]
            return set(topics) <= {r.source for r in results}

        self._wait(every_camera_has_results, [node, self.rig], f"results of every camera of "
                   f"{name}", node)
        time.sleep(c.sweep_warmup_s)
        reports, node_cpu, rig_cpu = self._measure(name, node)
        listener.set_parameters(CAMERA_RIG, {"active": 0})
        procs.stop(node)
        results = listener.snapshot(name)[0]
        listener.unwatch(name)
        level = level_figures(topics, rate=c.rate, reports=reports, results=results,
                              node_cpu_percent=node_cpu, publisher_cpu_percent=rig_cpu)
        counts = "/".join(str(v) for v in level["results_per_camera"].values())
        self.log(f"{engine} {policy}, {n} cameras: {level['input_fps']:.1f} frames/s in, "
                 f"{level['frames_dropped']} dropped, {level['frames_missing']} missing, "
                 f"results {counts}, node CPU {node_cpu:.0f}% -> "
                 + ("held" if level["held"] else "not held: " + "; ".join(level["reasons"])))
        return level

    def _measure(self, name: str, node: RosProcess) -> tuple[list, float, float]:
        """The node's reports from the first one after now to the first one
        ``sweep_duration_s`` later, and the node's and the rig's CPU (% of one core) between."""
        assert self.rig is not None
        samplers = ProcSampler(node.pid), ProcSampler(self.rig.pid)
        begin = self._next_report(name, time.monotonic(), node)
        before = [s.sample() for s in samplers]
        end = self._next_report(name, begin + self.config.sweep_duration_s, node)
        after = [s.sample() for s in samplers]
        node_cpu, rig_cpu = (100 * (b[1] - a[1]) / (b[0] - a[0]) for a, b in zip(before, after))
        reports = [r for r in self.listener.snapshot(name)[2] if begin <= r[0] <= end]
        return reports, node_cpu, rig_cpu

    def _next_report(self, name: str, after: float, node: RosProcess) -> float:
        """The receive time of the node's first ``/diagnostics`` report after ``after``."""
        found: list[float] = []

        def arrived() -> bool:
            found[:] = [t for t, _ in self.listener.snapshot(name)[2] if t > after][:1]
            return bool(found)

        assert self.rig is not None
        self._wait(arrived, [node, self.rig], f"a /diagnostics report of {name}", node,
                   timeout_s=max(0.0, after - time.monotonic()) + self.config.startup_timeout_s)
        return found[0]

    def _wait(self, condition: Callable[[], bool], procs: list[RosProcess], what: str,
              culprit: RosProcess, timeout_s: float | None = None) -> None:
        """Until ``condition()``; ``BenchNodeError`` when one of ``procs`` exits or after the
        timeout (default: the start-up timeout), with ``culprit``'s log tail."""
        timeout_s = self.config.startup_timeout_s if timeout_s is None else timeout_s
        deadline = time.monotonic() + timeout_s
        while not condition():
            self.procs.check_alive(*procs)
            if time.monotonic() > deadline:
                raise BenchNodeError(f"no {what} after {timeout_s:g} s; {culprit.name} log:\n"
                                     f"{culprit.tail()}")
            time.sleep(0.02)
