"""What ``rsee bench-node`` runs: its configuration, the names of its processes and topics, its
limits, and the ``target_fps`` set points."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "BenchNodeConfig",
    "BenchNodeError",
    "Log",
    "parse_targets",
    "resolve_targets",
]

TARGET_RESULTS_RATIO = 0.95
TARGET_TRACKING_ERROR = 0.10
FEED_FACTOR = 1.5  # publisher rate / node rate where the node must always have frames waiting
MAX_DEPTH = 1000  # the node's and the publisher's largest queue_size / qos_depth
MAX_FRAMES = 3 * MAX_DEPTH  # fed at FEED_FACTOR x, the node's backlog grows to a third of them
THROUGHPUT_NODE = "rsee_node"
THROUGHPUT_SOURCE = "video_source"
THROUGHPUT_TOPIC = "/rsee_bench/throughput/image_raw"
CAMERA_NODE = "rsee_node_camera"
CAMERA_SOURCE = "video_source_camera"
CAMERA_TOPIC = "/rsee_bench/camera/image_raw"
THROUGHPUT_PERIOD_S = 0.5  # status period of the throughput node
IDLE_PERIOD_S = 3600.0  # publishers start paused: one frame an hour until a phase sets the rate
SOURCES = ("demo", "synthetic")
WARMUP_FRAMES = 32  # untimed in-process frames before the timed ones
FASTEST_FRAMES = 192  # in-process frames at the fastest settings
STEADY_SKIP_FRACTION = 0.1  # the first 10% of the results are start-up
# The cameras-per-core sweep (--cameras): 640x480 streams at the camera rate into one rsee_node
# pinned to one core, fed by one camera_rig process on the other cores.
CAMERA_WIDTH, CAMERA_HEIGHT = 640, 480
CAMERA_RIG = "camera_rig"
SWEEP_TOPIC = "/rsee_bench/cameras/cam{index}/image_raw"
POLICY_METHODS = {"learned": "rsee", "uniform": "uniform"}  # node policy -> method
RESULTS_BALANCE = 0.10  # a held level: the cameras' result counts within 10% of each other
INPUT_TOLERANCE = 0.05  # the publishers kept up: input >= 95% of cameras x rate
TARGET_CAMERAS_PER_CORE = 4  # onnxruntime, RSEE
TARGET_RSEE_OVER_UNIFORM = 1.5  # cameras held by RSEE / by Uniform, same engine

Log = Callable[[str], None]


class BenchNodeError(RuntimeError):
    """The benchmark cannot run or a process failed (one line, with a log tail where useful)."""


@dataclass
class BenchNodeConfig:
    """What :func:`~rsee_ros.evaluation.node_bench.run_node_bench` measures and how;
    :meth:`quick_config` gives the short run."""

    checkpoint: str | Path
    duration_s: float = 300.0
    """Length of the camera-rate run (latency, CPU, memory)."""
    rate: float = 30.0
    """Camera rate (Hz) of the camera-rate run; tracking feeds at least this fast."""
    threads: int = 1
    """Torch threads of the node and of the in-process pipeline."""
    device: str = "cpu"
    source: str = "demo"
    frames: int = 960
    """Frames of the in-process and throughput runs."""
    targets: Sequence[str] = ("auto",)
    """target_fps set points: ``auto``, ``<f>x`` (times the in-process frame rate) or fps."""
    settle_s: float = 15.0
    measure_s: float = 10.0
    warmup_s: float | None = None
    """Warm-up of the camera-rate run (default 10% of the duration, 2 to 30 s)."""
    diagnostics_period_s: float = 1.0
    domain_id: int | None = None
    """ROS_DOMAIN_ID of every process (default: one in 1..232 picked from the process id, by
    :func:`rsee_ros.ros.processes.domain_block`)."""
    fastdds_profile: bool = True
    startup_timeout_s: float = 90.0
    keep_logs: bool = False
    """Keep the processes' logs (always kept when the run fails)."""
    cameras: int = 0
    """> 0: run the cameras-per-core sweep (1..cameras streams) instead of the four phases."""
    engines: Sequence[str] = ("onnxruntime",)
    """Engines of the sweep's node."""
    policies: Sequence[str] = tuple(POLICY_METHODS)
    """Policies of the sweep's node (learned = RSEE, uniform = the Uniform baseline)."""
    sweep_duration_s: float = 20.0
    """Seconds measured per sweep level, after the warm-up."""
    sweep_warmup_s: float = 5.0
    """Seconds per level between every camera's first result and the measurement."""
    soak_s: float = 0.0
    """> 0: run the synchronised multi-camera soak for this many seconds instead of the phases."""
    soak_cameras: int = 2
    """Cameras of the soak (published in sync by one rig)."""
    node_cpu: int | None = None
    """The CPU the sweep's node is pinned to (default: the last one this process may use)."""
    quick: bool = False

    @classmethod
    def quick_config(cls, checkpoint: str | Path, **overrides: Any) -> BenchNodeConfig:
        """Short durations (a test run, a few tens of seconds); ``overrides`` win."""
        values: dict[str, Any] = dict(
            duration_s=5.0, frames=128, settle_s=3.0, measure_s=2.0, warmup_s=2.0,
            diagnostics_period_s=0.5, sweep_duration_s=3.0, sweep_warmup_s=1.0, quick=True,
        )
        values.update(overrides)
        return cls(checkpoint, **values)

    @property
    def warmup(self) -> float:
        """Seconds of the camera-rate run before latency, CPU and memory count."""
        if self.warmup_s is not None:
            return max(0.0, min(self.warmup_s, self.duration_s / 2))
        return min(30.0, max(2.0, 0.1 * self.duration_s))


def parse_targets(items: Sequence[str]) -> list[str]:
    """Check ``target_fps`` set points (``auto``, ``0.6x``, ``25``); returns them normalised."""
    out = []
    for item in items:
        for part in str(item).replace(",", " ").split():
            part = part.strip().lower()
            if part == "auto":
                out.append(part)
                continue
            number = part[:-1] if part.endswith("x") else part
            try:
                value = float(number)
            except ValueError:
                raise ValueError(f"bad target {part!r}: use auto, <factor>x or fps") from None
            if not value > 0 or not math.isfinite(value):
                raise ValueError(f"bad target {part!r}: must be > 0")
            out.append(part)
    if not out:
        raise ValueError("no target_fps set point")
    return out


def resolve_targets(
    items: Sequence[str], full_fps: float, fastest_fps: float, quick: bool
) -> list[float]:
    """Set points in fps: ``auto`` = geometrically inside [full, fastest] (where the controller
    acts), or 0.6x the full-accuracy rate when the fastest settings are not faster."""
    out: list[float] = []
    for item in items:
        if item == "auto":
            if fastest_fps > 1.15 * full_fps:
                ratio = fastest_fps / full_fps
                # Low in the range: the node's per-frame overhead (DDS, conversion) weighs more
                # at the fastest settings, so it does not quite reach the in-process top rate.
                steps = (1 / 3,) if quick else (1 / 4, 1 / 2)
                out += [full_fps * ratio**s for s in steps]
            else:
                out.append(0.6 * full_fps)
        elif item.endswith("x"):
            out.append(float(item[:-1]) * full_fps)
        else:
            out.append(float(item))
    return [round(t, 2) for t in out]
