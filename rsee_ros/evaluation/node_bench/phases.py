"""Phases 2 to 4 of ``rsee bench-node``, on the running processes: start-up, throughput, the
camera-rate run and ``target_fps`` tracking. Each phase drives the processes and the listener,
waits, and hands what was recorded to :mod:`~rsee_ros.evaluation.node_bench.metrics`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rsee_ros.evaluation.node_bench.config import (
    CAMERA_NODE,
    CAMERA_SOURCE,
    CAMERA_TOPIC,
    FEED_FACTOR,
    MAX_DEPTH,
    THROUGHPUT_NODE,
    THROUGHPUT_PERIOD_S,
    THROUGHPUT_SOURCE,
    THROUGHPUT_TOPIC,
    BenchNodeConfig,
    BenchNodeError,
    Log,
)
from rsee_ros.evaluation.node_bench.metrics import (
    ProcSampler,
    Sample,
    latency_figures,
    resource_figures,
    setpoint_figures,
    throughput_figures,
)
from rsee_ros.evaluation.node_bench.processes import BenchProcesses
from rsee_ros.ros.processes import RosProcess

if TYPE_CHECKING:  # the listener needs rclpy; these modules do not
    from rsee_ros.evaluation.node_bench.listener import Listener

__all__ = ["NodePhases", "wait_for_nodes"]


def wait_for_nodes(listener: Listener, procs: BenchProcesses, names: Sequence[str],
                   started: Sequence[RosProcess], timeout_s: float) -> None:
    """Wait until the rsee_nodes ``names`` are ready (:meth:`Listener.node_ready`);
    ``BenchNodeError`` when one of ``started`` exits or after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    for name in names:
        while not listener.node_ready(name):
            procs.check_alive(*started)
            if time.monotonic() > deadline:
                raise BenchNodeError(f"{name} not ready after {timeout_s:g} s; its log ends "
                                     f"with:\n{procs.get(name).tail()}")
            time.sleep(0.05)


class NodePhases:
    """The phases that use the processes of one run (module docstring)."""

    def __init__(self, config: BenchNodeConfig, log: Log, procs: BenchProcesses,
                 listener: Listener) -> None:
        self.config = config
        self.log = log
        self.procs = procs
        self.listener = listener
        self.depth = 0

    def start_all(self, settings: Any, frames: int) -> None:
        """Start both nodes and both (paused) publishers side by side; wait for the nodes."""
        p = self.procs
        self.depth = depth = min(MAX_DEPTH, frames)
        for name in (THROUGHPUT_NODE, CAMERA_NODE):
            self.listener.watch(name)
        started = [
            p.start(THROUGHPUT_NODE, "rsee_ros.ros.node", p.node_params(
                settings, THROUGHPUT_TOPIC, queue_size=depth, qos_depth=depth,
                diagnostics_period_s=THROUGHPUT_PERIOD_S)),
            p.start(CAMERA_NODE, "rsee_ros.ros.node", p.node_params(settings, CAMERA_TOPIC)),
            p.start(THROUGHPUT_SOURCE, "rsee_ros.ros.video_source", p.source_params(
                THROUGHPUT_TOPIC, max_frames=frames, qos_depth=depth)),
            p.start(CAMERA_SOURCE, "rsee_ros.ros.video_source", p.source_params(CAMERA_TOPIC)),
        ]
        wait_for_nodes(self.listener, p, (THROUGHPUT_NODE, CAMERA_NODE), started,
                       self.config.startup_timeout_s)

    def _wait_for_frames(self, name: str, source: RosProcess) -> float:
        """Wait until node ``name`` reports frames arriving; returns the monotonic time."""
        deadline = time.monotonic() + self.config.startup_timeout_s
        while True:
            results, status, _ = self.listener.snapshot(name)
            if results or any(s.input_fps > 0 for _, s in status):
                return time.monotonic()
            self.procs.check_alive(self.procs.get(name), source)
            if time.monotonic() > deadline:
                raise BenchNodeError(f"no frames reached {name}; {source.name} log:\n"
                                     f"{source.tail()}")
            time.sleep(0.02)

    # phase 2 ----------------------------------------------------------------------------------

    def throughput(self, in_process: dict[str, Any], reference: Sequence[int]) -> dict[str, Any]:
        """Exactly ``config.frames`` frames, reliable, at FEED_FACTOR x the in-process frame rate
        into the throughput node; its figures against ``reference`` (in-process class ids)."""
        c = self.config
        node, source = self.procs.get(THROUGHPUT_NODE), self.procs.get(THROUGHPUT_SOURCE)
        rate = round(min(5000.0, max(c.rate, FEED_FACTOR * in_process["frames_per_s"])), 1)
        self.log(f"throughput: {c.frames} frames at {rate:g} Hz (reliable, queue {self.depth})")
        self.listener.set_parameters(THROUGHPUT_SOURCE, {"fps": float(rate)})
        self._wait_for_throughput(node, source, in_process)
        time.sleep(0.6)  # one more status / diagnostics report
        results, status, diags = self.listener.snapshot(THROUGHPUT_NODE)
        self.procs.stop(source, node)
        return throughput_figures(results, status, diags, frames=c.frames, in_process=in_process,
                                  reference=reference, publish_rate=rate, depth=self.depth)

    def _wait_for_throughput(self, node: RosProcess, source: RosProcess,
                             in_process: dict[str, Any]) -> None:
        """Until the node returned as many results as in-process, or every frame arrived and the
        node has had nothing to do for two status periods."""
        n, expected = self.config.frames, in_process["results"]
        # A generous limit: the node at a tenth of the in-process rate, plus start-up.
        limit = (time.monotonic() + self.config.startup_timeout_s
                 + 10 * n / max(in_process["frames_per_s"], 1))
        source_done = False
        idle_reports = 0
        seen_status = 0
        while time.monotonic() < limit:
            results, status, diags = self.listener.snapshot(THROUGHPUT_NODE)
            if len(results) >= expected > 0:
                return
            if not source_done and not source.alive():
                if source.returncode != 0:
                    raise BenchNodeError(f"{source.name} failed:\n{source.tail()}")
                source_done = True
            self.procs.check_alive(node)
            received = int(diags[-1][1].get("frames_received", 0)) if diags else 0
            for _, s in status[seen_status:]:
                idle = received >= n and s.processed_fps == 0 and s.input_fps == 0
                idle_reports = idle_reports + 1 if idle else 0
            seen_status = len(status)
            if source_done and idle_reports >= 2:
                return
            time.sleep(0.02)
        raise BenchNodeError(f"throughput run did not finish; {node.name} log:\n{node.tail()}")

    # phases 3 and 4 ---------------------------------------------------------------------------

    def camera_rate(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """``config.rate`` Hz for ``config.duration_s`` into the camera node, sampling its (and
        the publisher's) ``/proc`` every second; returns (latency, resources)."""
        c = self.config
        node, source = self.procs.get(CAMERA_NODE), self.procs.get(CAMERA_SOURCE)
        node_sampler, source_sampler = ProcSampler(node.pid), ProcSampler(source.pid)
        self.listener.set_parameters(CAMERA_SOURCE, {"fps": float(c.rate)})
        start = self._wait_for_frames(CAMERA_NODE, source)
        self.log(f"camera rate: {c.rate:g} Hz for {c.duration_s:g} s "
                 f"(warm-up {c.warmup:g} s), sampling /proc every second")
        samples: list[Sample] = [node_sampler.sample()]
        source_samples = [source_sampler.sample()]
        end = start + c.duration_s
        next_at = time.monotonic() + 1.0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            time.sleep(max(0.0, min(next_at, end) - now))
            self.procs.check_alive(node, source)
            samples.append(node_sampler.sample())
            source_samples.append(source_sampler.sample())
            next_at += 1.0
        results, status, diags = self.listener.snapshot(CAMERA_NODE)
        warm = start + c.warmup
        return (latency_figures(results, status, diags, warm=warm, rate=c.rate),
                resource_figures(samples, source_samples, warm=warm, warmup_s=c.warmup))

    def tracking(self, targets: Sequence[float], full_fps: float) -> list[dict[str, Any]]:
        """Per set point: the camera node's ``target_fps`` and the publisher's rate (FEED_FACTOR x
        the set point, at least ``config.rate``) set, then settle and measure."""
        c = self.config
        out = []
        for target in targets:
            feed = round(max(c.rate, FEED_FACTOR * target), 1)
            self.log(f"target_fps {target:g}: feeding at {feed:g} Hz, settling {c.settle_s:g} s, "
                     f"measuring {c.measure_s:g} s")
            self.listener.set_parameters(CAMERA_SOURCE, {"fps": float(feed)})
            self.listener.set_parameters(CAMERA_NODE, {"target_fps": float(target)})
            set_at = time.monotonic()
            time.sleep(c.settle_s + c.measure_s + 0.1)
            self.procs.check_alive(self.procs.get(CAMERA_NODE), self.procs.get(CAMERA_SOURCE))
            _, status, _ = self.listener.snapshot(CAMERA_NODE)
            out.append(setpoint_figures(status, target=target, feed=feed, full_fps=full_fps,
                                        set_at=set_at, settle_s=c.settle_s,
                                        measure_s=c.measure_s))
        return out
