"""The figures of ``rsee bench-node``, computed from what was recorded: pure functions of the
listener's receipts, the ``/proc`` samples and the in-process figures (no ROS), plus the
``/proc`` sampler itself."""

from __future__ import annotations

import math
import os
import statistics
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from rsee_ros.evaluation.node_bench.config import (
    STEADY_SKIP_FRACTION,
    TARGET_RESULTS_RATIO,
    TARGET_TRACKING_ERROR,
    THROUGHPUT_PERIOD_S,
    BenchNodeError,
)

__all__ = [
    "ProcSampler",
    "Received",
    "add_throughput_ratios",
    "check_targets",
    "latency_figures",
    "resource_figures",
    "setpoint_figures",
    "steady_rate",
    "throughput_figures",
]

Sample = tuple[float, float, float]
"""(monotonic time, CPU seconds, RSS MiB) of one process."""
STATUS_COLUMNS = ["t_s", "input_fps", "processed_fps", "capacity_fps", "exit_threshold",
                  "max_resolution", "frames_dropped"]


class Received(NamedTuple):
    """One result received from an rsee_node."""

    monotonic: float
    wall_ns: int
    """time.time_ns() at receipt (the clock of the frames' stamps)."""
    stamp_ns: int
    """header.stamp: the stamp of the last frame the result used."""
    class_id: int
    latency_ms: float
    """The node's own latency_ms: frame arrival to publication."""
    source: str = ""
    """source_topic: the camera the result is for."""


def steady_rate(times: Sequence[float], skip_fraction: float = STEADY_SKIP_FRACTION) -> float:
    """Events per second over the steady state: the first ``skip_fraction`` of the events
    (at least one) are start-up; the rate is counted from the last of them to the last event."""
    n = len(times)
    if n < 3:
        return math.nan
    k = max(1, int(n * skip_fraction))
    k = min(k, n - 2)
    span = times[-1] - times[k]
    return (n - 1 - k) / span if span > 0 else math.nan


def _percentile(values: Sequence[float], q: float) -> float:
    from rsee_ros.pipeline.runner import percentile

    return percentile(values, q) if values else math.nan


class ProcSampler:
    """CPU time and RSS of one process from ``/proc`` (Linux; no psutil)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._tick = os.sysconf("SC_CLK_TCK")

    def cpu_seconds(self) -> float:
        """utime + stime of the process (threads included), in seconds."""
        text = Path(f"/proc/{self.pid}/stat").read_text()
        fields = text[text.rindex(")") + 2:].split()  # after "pid (comm) "
        return (int(fields[11]) + int(fields[12])) / self._tick

    def rss_mb(self) -> float:
        """VmRSS in MiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return math.nan

    def sample(self) -> Sample:
        """(monotonic time, CPU seconds, RSS MiB)."""
        return time.monotonic(), self.cpu_seconds(), self.rss_mb()


def throughput_figures(
    results: Sequence[Received], status: Sequence[tuple[float, Any]],
    diagnostics: Sequence[tuple[float, dict[str, str]]], *, frames: int,
    in_process: dict[str, Any], reference: Sequence[int], publish_rate: float, depth: int,
) -> dict[str, Any]:
    """Phase 2's figures: what the throughput node received, dropped and returned, its
    steady results/s and frames/s, and its labels against the in-process ``reference``."""
    last = diagnostics[-1][1] if diagnostics else {}
    times = [r.monotonic for r in results]
    # The node's frame rate over the same steady span: its status reports (one every
    # THROUGHPUT_PERIOD_S) that lie wholly inside the span.
    span = ((times[max(1, int(len(times) * STEADY_SKIP_FRACTION))], times[-1])
            if len(times) >= 3 else None)
    processed = [s.processed_fps for t, s in status
                 if span and span[0] <= t - THROUGHPUT_PERIOD_S and t <= span[1]]
    arriving = [s.input_fps for _, s in status if s.input_fps > 0][1:-1]
    input_fps = statistics.fmean(arriving) if arriving else math.nan
    ids = [r.class_id for r in results]
    common = min(len(ids), len(reference))
    agree = (sum(a == b for a, b in zip(ids, reference)) / common) if common else math.nan
    received = int(last.get("frames_received", 0))
    return {
        "publish_rate_hz": publish_rate,
        "queue_size": depth,
        "qos_depth": depth,
        "frames_published": frames,
        "frames_received": received,
        "frames_lost_in_transport": frames - received,
        "frames_dropped": int(last.get("frames_dropped", 0)),
        "results": len(results),
        "results_expected": in_process["results"],
        "label_agreement": agree,
        "results_per_s": steady_rate(times),
        "frames_per_s": statistics.fmean(processed) if processed else math.nan,
        "input_fps": input_fps,
        # The publisher did not outpace the in-process rate: the node could not show its own.
        "input_limited": bool(input_fps < in_process["frames_per_s"]) if arriving else None,
        # Frames per second of time spent inside the node's pipeline (its capacity_fps):
        # near frames_per_s when the node's overhead around the pipeline is small.
        "node_pipeline_fps": float(status[-1][1].capacity_fps) if status else math.nan,
    }


def add_throughput_ratios(
    throughput: dict[str, Any], before: dict[str, Any], after: dict[str, Any]
) -> None:
    """Ratios of the node's throughput against the mean of the in-process runs before and
    after it (``reference_results_per_s`` / ``reference_frames_per_s``)."""
    results = statistics.fmean([before["steady_results_per_s"], after["steady_results_per_s"]])
    frames = statistics.fmean([before["frames_per_s"], after["frames_per_s"]])
    throughput["reference_results_per_s"] = results
    throughput["reference_frames_per_s"] = frames
    throughput["ratio_results_per_s"] = (
        throughput["results_per_s"] / results if results else math.nan)
    throughput["ratio_frames_per_s"] = throughput["frames_per_s"] / frames if frames else math.nan


def latency_figures(
    results: Sequence[Received], status: Sequence[tuple[float, Any]],
    diagnostics: Sequence[tuple[float, dict[str, str]]], *, warm: float, rate: float,
) -> dict[str, Any]:
    """Phase 3's latency: receive time minus header stamp of every result after the warm-up
    (monotonic time ``warm``), the node's own latency, rates and drops."""
    after = [r for r in results if r.monotonic >= warm] or list(results[1:]) or list(results)
    lat = sorted((r.wall_ns - r.stamp_ns) / 1e6 for r in after)
    node_lat = sorted(r.latency_ms for r in after)
    last = diagnostics[-1][1] if diagnostics else {}
    at_warm = next((d for t, d in diagnostics if t >= warm), last)
    processed = [s.processed_fps for t, s in status if t >= warm]
    arriving = [s.input_fps for t, s in status if t >= warm]
    return {
        "rate_hz": rate,
        "results": len(lat),
        "p50_ms": _percentile(lat, 50),
        "p99_ms": _percentile(lat, 99),
        "mean_ms": statistics.fmean(lat) if lat else math.nan,
        "max_ms": lat[-1] if lat else math.nan,
        "node_latency_p50_ms": _percentile(node_lat, 50),
        "node_latency_p99_ms": _percentile(node_lat, 99),
        "input_fps": statistics.fmean(arriving) if arriving else math.nan,
        "processed_fps": statistics.fmean(processed) if processed else math.nan,
        "frames_received": int(last.get("frames_received", 0)),
        "frames_dropped": int(last.get("frames_dropped", 0)),
        "frames_dropped_after_warmup": int(last.get("frames_dropped", 0))
        - int(at_warm.get("frames_dropped", 0)),
    }


def resource_figures(
    samples: Sequence[Sample], source_samples: Sequence[Sample], *, warm: float,
    warmup_s: float,
) -> dict[str, Any]:
    """Phase 3's CPU and memory of the node (and the publisher's CPU) from their ``/proc``
    samples, counted from the first sample after the warm-up (monotonic time ``warm``)."""
    t0 = samples[0][0]
    series = []
    for (t1, cpu1, _), (t2, cpu2, rss2) in zip(samples, samples[1:]):
        cpu = 100 * (cpu2 - cpu1) / (t2 - t1) if t2 > t1 else math.nan
        series.append([round(t2 - t0, 2), round(cpu, 2), round(rss2, 2)])
    first = next((s for s in samples if s[0] >= warm), samples[-1])
    last = samples[-1]
    span = last[0] - first[0]
    src_first = next((s for s in source_samples if s[0] >= warm), source_samples[-1])
    src_last = source_samples[-1]
    src_span = src_last[0] - src_first[0]
    return {
        "duration_s": round(samples[-1][0] - samples[0][0], 2),
        "warmup_s": warmup_s,
        "samples": len(samples),
        "cpu_percent_mean": 100 * (last[1] - first[1]) / span if span > 0 else math.nan,
        "cpu_percent_max": max((s[1] for s in series if s[0] >= first[0] - t0),
                               default=math.nan),
        "rss_mb_at_first_frame": samples[0][2],
        "rss_mb_start": first[2],
        "rss_mb_end": last[2],
        "rss_mb_max": max(s[2] for s in samples),
        "memory_growth_mb": last[2] - first[2],
        "memory_growth_mb_per_hour": (last[2] - first[2]) * 3600 / span if span > 0
        else math.nan,
        "publisher_cpu_percent_mean": 100 * (src_last[1] - src_first[1]) / src_span
        if src_span > 0 else math.nan,
        "series_columns": ["t_s", "cpu_percent", "rss_mb"],
        "series": series,
    }


def setpoint_figures(
    status: Sequence[tuple[float, Any]], *, target: float, feed: float, full_fps: float,
    set_at: float, settle_s: float, measure_s: float,
) -> dict[str, Any]:
    """Phase 4's figures of one set point: the node's status reports from ``set_at`` (monotonic
    time of the change) on, averaged over ``measure_s`` after ``settle_s``."""
    begin = set_at + settle_s
    reports = [
        [round(t - set_at, 2), round(s.input_fps, 2), round(s.processed_fps, 2),
         round(s.capacity_fps, 2), round(float(s.exit_threshold), 4),
         int(s.max_resolution), int(s.frames_dropped)]
        for t, s in status if t >= set_at
    ]
    window = [s for t, s in status if begin <= t <= begin + measure_s + 0.1]
    if not window:
        raise BenchNodeError("no ~/status from rsee_node while measuring target_fps")
    processed = statistics.fmean(s.processed_fps for s in window)
    capacity = statistics.fmean(s.capacity_fps for s in window)
    arriving = statistics.fmean(s.input_fps for s in window)
    dropped = int(window[-1].frames_dropped - window[0].frames_dropped)
    error = abs(processed - target) / target
    return {
        "target_fps": target,
        "feed_hz": feed,
        "above_full_accuracy_rate": bool(target > full_fps),
        "settle_s": settle_s,
        "measure_s": measure_s,
        "reports": len(window),
        "processed_fps": processed,
        "capacity_fps": capacity,
        "input_fps": arriving,
        "frames_dropped": dropped,
        "exit_threshold": float(window[-1].exit_threshold),
        "max_resolution": int(window[-1].max_resolution),
        "tracking_error": error,
        "capacity_error": abs(capacity - target) / target,
        # Every frame that arrived was handled: the publisher, not the node, set the pace.
        "input_limited": bool(dropped == 0 and arriving < 1.05 * processed),
        "passed": bool(error <= TARGET_TRACKING_ERROR),
        "status_columns": list(STATUS_COLUMNS),
        "status": reports,
    }


def check_targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets with their values and whether this run meets them."""
    ratio = report["throughput"]["ratio_results_per_s"]
    targets = [{
        "name": "node_results_per_s_vs_in_process",
        "target": f">= {TARGET_RESULTS_RATIO}",
        "value": ratio,
        "passed": bool(ratio >= TARGET_RESULTS_RATIO) if not math.isnan(ratio) else False,
    }]
    errors = [s["tracking_error"] for s in report["tracking"]["setpoints"]]
    worst = max(errors) if errors else math.nan
    targets.append({
        "name": "target_fps_tracking_error",
        "target": f"<= {TARGET_TRACKING_ERROR}",
        "value": worst,
        "passed": bool(errors) and all(s["passed"] for s in report["tracking"]["setpoints"]),
    })
    return targets
