"""The synchronised multi-camera soak of ``rsee bench-node --soak S``, on running processes.

One ``camera_rig`` (pinned to the CPUs other than the node's) publishes N (default 2) 640x480
cameras *in sync*: every period all cameras publish back to back with the same stamp, as a
stereo or multi-camera driver does (the case where one shared drop-oldest queue starved the
second camera). One ``rsee_node`` on all N topics (the run's first engine, ``num_threads`` 1,
reliable QoS, its default queue) is pinned to one CPU. After every camera's first result and a
warm-up, the node's ``/diagnostics`` and results are recorded for S seconds and its RSS sampled
every second; then the rig pauses, the node drains its queues and reports once more, and both
are stopped.

Figures (:func:`soak_figures`): results per camera over the soak, the node's RSS at the start
and end of the soak and its peak, and the account of every frame: per camera, what the rig
published (its exit line) against what the node received plus what it estimated missing; in the
node, received against handled + dropped + rejected (nothing may remain queued after the drain).
Targets (:func:`soak_targets`): results per camera within 10% of each other, RSS growth < 5%,
no frame unaccounted.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from rsee_ros.evaluation.node_bench.cameras import results_balanced
from rsee_ros.evaluation.node_bench.config import (
    CAMERA_HEIGHT,
    CAMERA_RIG,
    CAMERA_WIDTH,
    RESULTS_BALANCE,
    SWEEP_TOPIC,
    BenchNodeConfig,
    Log,
)
from rsee_ros.evaluation.node_bench.metrics import ProcSampler, Received
from rsee_ros.evaluation.node_bench.phases import wait_for_nodes
from rsee_ros.evaluation.node_bench.processes import BenchProcesses
from rsee_ros.evaluation.node_bench.sweep import RIG_MODULE, CameraSweep

if TYPE_CHECKING:  # the listener needs rclpy; these modules do not
    from rsee_ros.evaluation.node_bench.listener import Listener

__all__ = ["CameraSoak", "published_counts", "soak_figures", "soak_targets"]

SOAK_NODE = "rsee_node_soak"
RSS_GROWTH_LIMIT = 0.05
_PUBLISHED = re.compile(r"published \[([0-9, ]*)\] frames per camera")

Report = tuple[float, Mapping[str, str]]


def published_counts(log_text: str) -> list[int] | None:
    """The per-camera counts of the rig's exit line (the last one in ``log_text``), or None."""
    found = _PUBLISHED.findall(log_text)
    if not found:
        return None
    return [int(v) for v in found[-1].replace(" ", "").split(",") if v]


def _count(values: Mapping[str, str], key: str) -> int:
    return int(values.get(key, 0))


def soak_figures(
    topics: Sequence[str], *, rate: float, window: Sequence[Report], final: Mapping[str, str],
    results: Sequence[Received], rss_mb: Sequence[tuple[float, float]],
    published: Sequence[int] | None,
) -> dict[str, Any]:
    """The soak's figures: ``window`` the node's reports from the start to the end of the soak,
    ``final`` its report after the drain (totals since start), ``rss_mb`` (time, MiB) samples
    over the soak, ``published`` the rig's per-camera counts (None: not found)."""
    (t0, _), (t1, _) = window[0], window[-1]
    per_camera = {t: 0 for t in topics}
    for result in results:
        if t0 < result.monotonic <= t1 and result.source in per_camera:
            per_camera[result.source] += 1
    received = {t: _count(final, f"received {t}") for t in topics}
    missing = {t: _count(final, f"missing {t}") for t in topics}
    cameras: dict[str, Any] = {}
    for i, topic in enumerate(topics):
        sent = published[i] if published is not None and i < len(published) else None
        cameras[topic] = {
            "published": sent,
            "received": received[topic],
            "missing_estimate": missing[topic],
            "dropped": _count(final, f"dropped {topic}"),
            "results": per_camera[topic],
            "unaccounted": None if sent is None else sent - received[topic] - missing[topic],
        }
    rejected_late = _count(final, "rejected late_stamp")  # handled and counted as a reject
    in_node = (_count(final, "frames_received") - _count(final, "frames_handled")
               - _count(final, "frames_dropped")
               - (_count(final, "frames_rejected") - rejected_late))
    rss = [m for _, m in rss_mb]
    start, end = rss[0], rss[-1]
    return {
        "cameras": len(topics),
        "rate_hz": rate,
        "soak_s": t1 - t0,
        "results_per_camera": per_camera,
        "results_balanced": results_balanced(list(per_camera.values())),
        "per_camera": cameras,
        "frames_received": _count(final, "frames_received"),
        "frames_handled": _count(final, "frames_handled"),
        "frames_dropped": _count(final, "frames_dropped"),
        "frames_rejected": _count(final, "frames_rejected"),
        "frames_missing_estimate": _count(final, "frames_missing_estimate"),
        "unaccounted_in_node": in_node,
        "unaccounted_in_transport": (None if published is None
                                     else sum(c["unaccounted"] for c in cameras.values())),
        "rss_mb_start": start,
        "rss_mb_end": end,
        "rss_mb_max": max(rss),
        "rss_growth": (end - start) / start if start > 0 else float("nan"),
        "rss_series": [[round(t - rss_mb[0][0], 1), round(m, 1)] for t, m in rss_mb],
        "rss_series_columns": ["t_s", "rss_mb"],
    }


def soak_targets(figures: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The soak's targets (module docstring), each {name, target, value, passed}."""
    counts = list(figures["results_per_camera"].values())
    spread = (max(counts) - min(counts)) / max(counts) if counts and max(counts) else 1.0
    transport = figures["unaccounted_in_transport"]
    unaccounted = None if transport is None else abs(transport) + abs(
        figures["unaccounted_in_node"])
    return [
        {"name": "soak_results_per_camera_spread", "value": spread,
         "target": f"<= {RESULTS_BALANCE:.2f} of the largest (one result of slack)",
         "passed": figures["results_balanced"]},
        {"name": "soak_rss_growth", "value": figures["rss_growth"],
         "target": f"< {RSS_GROWTH_LIMIT:.2f}",
         "passed": bool(figures["rss_growth"] < RSS_GROWTH_LIMIT)},
        {"name": "soak_frames_unaccounted", "value": unaccounted,
         "target": "0 (published = received + estimated missing; received = handled + dropped "
                   "+ rejected)",
         "passed": unaccounted == 0},
    ]


class CameraSoak(CameraSweep):
    """One soak run (module docstring); the rig and waiting come from :class:`CameraSweep`."""

    def __init__(self, config: BenchNodeConfig, log: Log, procs: BenchProcesses,
                 listener: Listener) -> None:
        super().__init__(config, log, procs, listener)
        self.topics = [SWEEP_TOPIC.format(index=i) for i in range(config.soak_cameras)]

    def run(self, settings: Any) -> dict[str, Any]:
        """The soak; returns the report's ``soak``."""
        c, procs, listener = self.config, self.procs, self.listener
        engine = c.engines[0]
        self.log(f"soak: {CAMERA_RIG} with {len(self.topics)} synchronised cameras of "
                 f"{CAMERA_WIDTH}x{CAMERA_HEIGHT} at {c.rate:g} fps on CPUs {self.rig_cpus}; "
                 f"{SOAK_NODE} ({engine}) on CPU {self.node_cpu}; {c.soak_s:g} s")
        rig = self.rig = procs.start(CAMERA_RIG, RIG_MODULE,
                                     procs.rig_params(self.topics, stagger=False),
                                     cpus=self.rig_cpus)
        listener.watch(SOAK_NODE)
        node = procs.start(SOAK_NODE, "rsee_ros.ros.node", procs.node_params(
            settings, *self.topics, engine=engine, num_threads=1), cpus=[self.node_cpu])
        wait_for_nodes(listener, procs, [SOAK_NODE], [node, rig], c.startup_timeout_s)
        listener.set_parameters(CAMERA_RIG, {"active": len(self.topics)})
        self._wait(lambda: set(self.topics) <= {r.source for r in
                                                listener.snapshot(SOAK_NODE)[0]},
                   [node, rig], f"results of every camera of {SOAK_NODE}", node)
        time.sleep(c.sweep_warmup_s)
        sampler = ProcSampler(node.pid)
        begin = self._next_report(SOAK_NODE, time.monotonic(), node)
        rss = [(time.monotonic(), sampler.rss_mb())]
        end_at = begin + c.soak_s
        next_log = time.monotonic() + 60
        while time.monotonic() < end_at:
            procs.check_alive(node, rig)
            time.sleep(min(1.0, max(0.0, end_at - time.monotonic())))
            rss.append((time.monotonic(), sampler.rss_mb()))
            if time.monotonic() >= next_log:
                next_log += 60
                self.log(f"soak: {time.monotonic() - begin:.0f} s, node RSS {rss[-1][1]:.0f} MiB")
        end = self._next_report(SOAK_NODE, end_at, node)
        window = [r for r in listener.snapshot(SOAK_NODE)[2] if begin <= r[0] <= end]
        listener.set_parameters(CAMERA_RIG, {"active": 0})
        time.sleep(2.0 + 2 * c.diagnostics_period_s)  # the queues drain
        final_at = self._next_report(SOAK_NODE, time.monotonic(), node)
        final = next(v for t, v in listener.snapshot(SOAK_NODE)[2] if t == final_at)
        results = listener.snapshot(SOAK_NODE)[0]
        procs.stop(node, rig)
        listener.unwatch(SOAK_NODE)
        published = published_counts(rig.log_path.read_text(errors="replace"))
        figures = soak_figures(self.topics, rate=c.rate, window=window, final=final,
                               results=results, rss_mb=rss, published=published)
        figures.update(engine=engine, width=CAMERA_WIDTH, height=CAMERA_HEIGHT,
                       node_cpu=self.node_cpu, publisher_cpus=self.rig_cpus,
                       publisher=f"{CAMERA_RIG} (one process, cameras in sync)")
        figures["targets"] = soak_targets(figures)
        return figures
