"""``rsee bench-node`` as a library: ``rsee_node`` measured as a real process over DDS against the
in-process :class:`~rsee_ros.pipeline.runner.RecognitionPipeline`, in one run on one machine.

Phases (one :func:`run_node_bench` call):

1. **In-process**: the pipeline, with the node's default settings, over the same ``frames`` frames
   the publisher will send (the demo clip or the synthetic clips, looped as ``video_source``
   loops them), fed as fast as possible after a short untimed warm-up: frames/s and results/s.
   The same with the fastest settings ``target_fps`` can reach (exit threshold 0.5, lowest
   resolution) bounds the set points of phase 4.

Then two ``rsee_node`` and two ``video_source`` processes are started side by side (each in its
own session), the publishers paused (one frame an hour) until their phase sets ``fps`` through
their ``set_parameters`` service, so no start-up overlaps a measurement:

2. **Throughput** (``rsee_node``, ``video_source``): exactly those frames, reliable, at 1.5x the
   in-process frame rate, so the node always has frames waiting; its queue and QoS depths hold
   the whole run, so nothing is dropped (drops and transport losses are counted anyway). The
   results received on ``~/actions`` give results/s over the steady state (first 10% of the
   results left out, the in-process figure is computed the same way) -> ratio (target >= 95%)
   against the mean of phase 1 and the same in-process run repeated right after this phase.
   The results are also compared with the in-process ones, label by label.
3. **Camera rate** (``rsee_node_camera``, ``video_source_camera``; the node with its default
   queue and QoS depth, reliable), ``rate`` Hz (30) for ``duration_s``: latency = receive time
   minus ``header.stamp`` (stamp of the last frame used) of each result after the warm-up ->
   p50/p99; the node's utime+stime and VmRSS from ``/proc`` every second -> mean CPU (% of one
   core), RSS at the end of the warm-up / at the end / max, and the memory growth between them.
4. **target_fps tracking**, on that node right after phase 3: per set point the node's
   ``target_fps`` and the publisher's rate (1.5x the set point, at least ``rate``) are set; after
   ``settle_s`` the node's ``processed_fps`` (``~/status``) is averaged over ``measure_s`` and
   compared with the set point (target: within 10%). The node never slows down below what it
   can do, so a set point only tests the controller where it has to act: ``auto`` set points lie
   between the in-process frame rates at full accuracy and at the fastest settings.

Every process has ``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, ``ROS_LOCALHOST_ONLY=1`` and the
run's own ``ROS_DOMAIN_ID``; with ``fastdds_profile`` (default) all of them, this one included, use
a Fast DDS profile with shared memory plus UDP restricted to 127.0.0.1 (image latency, no
losses). Processes are stopped with SIGINT to their process group, then SIGKILL after a timeout,
also on errors and Ctrl-C (KeyboardInterrupt). Nothing is printed here (``log`` gets progress).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "FASTDDS_PROFILE_XML",
    "TARGET_RESULTS_RATIO",
    "TARGET_TRACKING_ERROR",
    "BenchNodeConfig",
    "BenchNodeError",
    "ProcSampler",
    "bench_frames",
    "check_targets",
    "parse_targets",
    "run_node_bench",
    "steady_rate",
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

# Fast DDS profile (docs: the ROS 2-from-PyPI notes): shared memory with a 16 MB segment plus UDPv4
# restricted to 127.0.0.1, builtin transports off. Fixes the 64 KB fragmentation latency of
# images and keeps every packet on loopback.
FASTDDS_PROFILE_XML = """\
<?xml version="1.0" encoding="UTF-8" ?>
<profiles xmlns="http://www.eprosima.com">
  <transport_descriptors>
    <transport_descriptor>
      <transport_id>rsee_bench_shm</transport_id>
      <type>SHM</type>
      <segment_size>16777216</segment_size>
      <maxMessageSize>4194304</maxMessageSize>
    </transport_descriptor>
    <transport_descriptor>
      <transport_id>rsee_bench_udp</transport_id>
      <type>UDPv4</type>
      <interfaceWhiteList>
        <address>127.0.0.1</address>
      </interfaceWhiteList>
    </transport_descriptor>
  </transport_descriptors>
  <participant profile_name="rsee_bench_participant" is_default_profile="true">
    <rtps>
      <userTransports>
        <transport_id>rsee_bench_shm</transport_id>
        <transport_id>rsee_bench_udp</transport_id>
      </userTransports>
      <useBuiltinTransports>false</useBuiltinTransports>
    </rtps>
  </participant>
</profiles>
"""

Log = Callable[[str], None]


class BenchNodeError(RuntimeError):
    """The benchmark cannot run or a process failed (one line, with a log tail where useful)."""


@dataclass
class BenchNodeConfig:
    """What :func:`run_node_bench` measures and how; :meth:`quick_config` gives the short run."""

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
    """ROS_DOMAIN_ID of every process (default 101 + pid % 100)."""
    fastdds_profile: bool = True
    startup_timeout_s: float = 90.0
    keep_logs: bool = False
    """Keep the processes' logs (always kept when the run fails)."""
    quick: bool = False

    @classmethod
    def quick_config(cls, checkpoint: str | Path, **overrides: Any) -> BenchNodeConfig:
        """Short durations (a test run, a few tens of seconds); ``overrides`` win."""
        values: dict[str, Any] = dict(
            duration_s=5.0, frames=128, settle_s=3.0, measure_s=2.0, warmup_s=2.0,
            diagnostics_period_s=0.5, quick=True,
        )
        values.update(overrides)
        return cls(checkpoint, **values)

    @property
    def warmup(self) -> float:
        if self.warmup_s is not None:
            return max(0.0, min(self.warmup_s, self.duration_s / 2))
        return min(30.0, max(2.0, 0.1 * self.duration_s))


# ------------------------------------------------------------------------------- small parts


def steady_rate(times: Sequence[float], skip_fraction: float = 0.1) -> float:
    """Events per second over the steady state: the first ``skip_fraction`` of the events
    (at least one) are start-up; the rate is counted from the last of them to the last event."""
    n = len(times)
    if n < 3:
        return math.nan
    k = max(1, int(n * skip_fraction))
    k = min(k, n - 2)
    span = times[-1] - times[k]
    return (n - 1 - k) / span if span > 0 else math.nan


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


def _resolve_targets(
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


def bench_frames(source: str, count: int) -> list[np.ndarray]:
    """The first ``count`` frames ``video_source`` publishes for ``source:=<source>`` with
    ``loop:=true`` (defaults otherwise), as (H, W, 3) uint8 RGB."""
    from rsee_ros.data.sources import SyntheticClips, VideoFileSource

    if source == "demo":
        from rsee_ros.resources import DEMO_LABELS, load_clip_labels

        clips = load_clip_labels(DEMO_LABELS)
        src: Any = VideoFileSource(clips.video, clips)
    elif source == "synthetic":
        src = SyntheticClips()
    else:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    frames: list[np.ndarray] = []
    while len(frames) < count:
        before = len(frames)
        for frame in src.frames():
            frames.append(np.ascontiguousarray(frame.rgb))
            if len(frames) == count:
                break
        if len(frames) == before:
            raise BenchNodeError(f"source {source!r} has no frames")
    src.close()
    return frames


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

    def sample(self) -> tuple[float, float, float]:
        """(monotonic time, CPU seconds, RSS MiB)."""
        return time.monotonic(), self.cpu_seconds(), self.rss_mb()


class _Proc:
    """A ROS process in its own session (process group), output to a log file."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        try:
            self.popen = subprocess.Popen(
                cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError:
            self._log.close()
            raise
        self.returncode: int | None = None
        self._interrupted = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def interrupt(self) -> None:
        """SIGINT to the process group, once (a second one would cut rclpy's clean shutdown)."""
        if self._interrupted or self.popen.poll() is not None:
            return
        self._interrupted = True
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, signal.SIGINT)  # the leader is not reaped yet: pgid is ours

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGINT to the process group, SIGKILL after ``timeout_s``; returns the exit status."""
        self.interrupt()
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(5.0)
        self.returncode = self.popen.poll()
        if not self._log.closed:
            self._log.close()
        return self.returncode

    def info(self) -> dict[str, Any]:
        return {"name": self.name, "pid": self.pid, "returncode": self.popen.poll()}


def _ros_value(value: Any) -> str:
    """A ``-p name:=value`` value (YAML)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(json.dumps(str(v)) for v in value) + "]"
    return json.dumps(str(value))


@contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the duration (the benchmark's own DDS participant)."""
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


# ---------------------------------------------------------------------------------- in-process


def _inprocess(
    model: Any,
    class_names: Sequence[str],
    frames: Sequence[np.ndarray],
    settings: Any,
    rate: float,
) -> dict[str, Any]:
    """The pipeline over ``frames`` as fast as possible (after an untimed warm-up)."""
    from rsee_ros.pipeline.runner import RecognitionPipeline

    pipe = RecognitionPipeline(model, list(class_names), settings)
    for i, frame in enumerate(frames[:WARMUP_FRAMES]):
        pipe.push("warmup", i / rate, frame)
    pipe.close("warmup")
    pipe = RecognitionPipeline(model, list(class_names), settings)
    times: list[float] = []
    class_ids: list[int] = []
    start = time.perf_counter()
    for i, frame in enumerate(frames):
        for result in pipe.push("bench", i / rate, frame):
            times.append(time.perf_counter())
            class_ids.append(result.class_id)
    seconds = time.perf_counter() - start
    stats = pipe.stats()
    return {
        "frames": len(frames),
        "results": len(times),
        "seconds": seconds,
        "frames_per_s": len(frames) / seconds if seconds > 0 else math.nan,
        "results_per_s": len(times) / seconds if seconds > 0 else math.nan,
        "steady_results_per_s": steady_rate(times),
        "frame_outcomes": dict(stats.outcomes),
        "settings": settings.to_dict(),
        "_class_ids": class_ids,
    }


# ------------------------------------------------------------------------------- ROS listener


class _Watch:
    """What the listener received from one rsee_node, with monotonic receive times."""

    def __init__(self) -> None:
        self.results: list[tuple[float, int, int, int, float]] = []
        """(monotonic, wall ns at receipt, header stamp ns, class_id, node latency_ms)"""
        self.status: list[tuple[float, Any]] = []
        self.diagnostics: list[tuple[float, dict[str, str]]] = []
        self.labels = 0


class _Listener:
    """The benchmark's own node: results, status and diagnostics of the rsee_nodes with receive
    times, and ``set_parameters`` clients; spun by a background thread."""

    def __init__(self, context: Any) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        self.node = rclpy.create_node("rsee_bench_node_listener", context=context)
        self._lock = threading.Lock()
        self._watches: dict[str, _Watch] = {}
        self._clients: dict[str, Any] = {}
        reliable = QoSProfile(depth=MAX_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                      reliable)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._stop = False
        self._thread = threading.Thread(target=self._spin, name="rsee_bench_spin", daemon=True)
        self._thread.start()

    def watch(self, name: str) -> None:
        """Subscribe to the results, status and label info of the rsee_node named ``name``."""
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        from rsee_ros.msg import ActionRecognition, LabelInfo, RseeStatus

        watch = _Watch()
        with self._lock:
            self._watches[name] = watch
        reliable = QoSProfile(depth=MAX_DEPTH, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)

        def on_result(msg: Any) -> None:
            now_ns = time.time_ns()
            stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
            with self._lock:
                watch.results.append((time.monotonic(), now_ns, stamp, int(msg.class_id),
                                      float(msg.latency_ms)))

        def on_status(msg: Any) -> None:
            with self._lock:
                watch.status.append((time.monotonic(), msg))

        def on_label(msg: Any) -> None:
            with self._lock:
                watch.labels += 1

        self.node.create_subscription(ActionRecognition, f"/{name}/actions", on_result, reliable)
        self.node.create_subscription(RseeStatus, f"/{name}/status", on_status, reliable)
        self.node.create_subscription(LabelInfo, f"/{name}/label_info", on_label, latched)

    def _spin(self) -> None:
        while not self._stop and self.executor.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - the context was shut down under us
                if self._stop or not self.executor.context.ok():
                    return
                raise

    def _on_diagnostics(self, msg: Any) -> None:
        now = time.monotonic()
        for status in msg.status:
            name = status.name.split(":", 1)[0].lstrip("/")  # "/rsee_node: action recognition"
            with self._lock:
                watch = self._watches.get(name)
                if watch is not None:
                    watch.diagnostics.append((now, {kv.key: kv.value for kv in status.values}))

    def snapshot(self, name: str) -> tuple[list, list, list]:
        """Copies of (results, status, diagnostics) received from node ``name``."""
        with self._lock:
            w = self._watches[name]
            return list(w.results), list(w.status), list(w.diagnostics)

    def node_ready(self, name: str) -> bool:
        """The node published its label info and its result publisher is in the graph."""
        with self._lock:
            labels = self._watches[name].labels
        return labels > 0 and self.node.count_publishers(f"/{name}/actions") > 0

    def set_parameters(self, node: str, values: dict[str, Any], timeout_s: float = 30.0) -> None:
        """Set parameters of another node through its ``set_parameters`` service."""
        from rcl_interfaces.srv import SetParameters
        from rclpy.parameter import Parameter

        client = self._clients.get(node)
        if client is None:
            client = self._clients[node] = self.node.create_client(
                SetParameters, f"/{node}/set_parameters"
            )
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise BenchNodeError(f"/{node}/set_parameters is not available")
        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        )
        future = client.call_async(request)
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not future.done():
            raise BenchNodeError(f"/{node}/set_parameters did not answer in {timeout_s:g} s")
        for name, result in zip(values, future.result().results):
            if not result.successful:
                raise BenchNodeError(f"{node} refused {name}={values[name]!r}: {result.reason}")

    def close(self) -> None:
        self._stop = True
        self._thread.join(2.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()


# ---------------------------------------------------------------------------------- the runner


class _Bench:
    """The processes of one benchmark run and the phases that use them."""

    def __init__(self, config: BenchNodeConfig, log: Log, workdir: Path) -> None:
        self.config = config
        self.log = log
        self.workdir = workdir
        self.procs: list[_Proc] = []
        self.finished: list[dict[str, Any]] = []
        self.env = dict(os.environ)
        self.env.update(
            ROS_DOMAIN_ID=str(config.domain_id),
            ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
            ROS_LOCALHOST_ONLY="1",
            PYTHONUNBUFFERED="1",
            OMP_NUM_THREADS=str(config.threads),
        )
        self.env.setdefault("ROS_STATIC_PEERS", "127.0.0.1")
        if config.fastdds_profile:
            profile = workdir / "fastdds_loopback.xml"
            profile.write_text(FASTDDS_PROFILE_XML)
            self.env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(profile)
        self.listener: _Listener | None = None

    # processes --------------------------------------------------------------------------------

    def start(self, name: str, module: str, params: dict[str, Any]) -> _Proc:
        """Start ``python -m module`` as node ``name`` with parameters ``params``."""
        cmd = [sys.executable, "-m", module, "--ros-args", "-r", f"__node:={name}"]
        for key, value in params.items():
            cmd += ["-p", f"{key}:={_ros_value(value)}"]
        proc = _Proc(name, cmd, self.env, self.workdir / f"{name}.log")
        self.procs.append(proc)
        return proc

    def stop(self, *procs: _Proc) -> None:
        """Stop processes (SIGINT to all first, so they shut down side by side)."""
        for proc in procs:
            proc.interrupt()
        for proc in procs:
            proc.stop()
            if proc in self.procs:
                self.procs.remove(proc)
                self.finished.append(proc.info())

    def stop_all(self) -> None:
        self.stop(*reversed(self.procs))

    def check_alive(self, *procs: _Proc) -> None:
        for proc in procs:
            if not proc.alive():
                raise BenchNodeError(
                    f"{proc.name} exited with status {proc.popen.returncode}; its log "
                    f"({proc.log_path}) ends with:\n{proc.tail()}"
                )

    def node_params(self, settings: Any, topic: str, **extra: Any) -> dict[str, Any]:
        c = self.config
        return {
            "checkpoint": str(Path(c.checkpoint).expanduser().resolve()),
            "device": c.device,
            "num_threads": c.threads,
            "image_topics": [topic],
            "qos_reliability": "reliable",
            "window_size": settings.window_size,
            "stride": settings.stride,
            "frame_step": settings.frame_step,
            "max_gap_s": float(settings.max_gap_s),
            "exit_threshold": float(settings.exit_threshold),
            "skip_enabled": settings.skip_enabled,
            "diagnostics_period_s": float(c.diagnostics_period_s),
            **extra,
        }

    def source_params(self, topic: str, **extra: Any) -> dict[str, Any]:
        # Started paused (one frame every IDLE_PERIOD_S): the rate is set when a phase begins.
        return {
            "source": self.config.source,
            "topic": topic,
            "fps": 1.0 / IDLE_PERIOD_S,
            "loop": True,
            "qos_reliability": "reliable",
            "wait_for_subscribers": True,
            **extra,
        }

    def start_all(self, settings: Any, frames: int) -> None:
        """Start both nodes and both (paused) publishers side by side; wait for the nodes."""
        assert self.listener is not None
        depth = min(MAX_DEPTH, frames)
        self.depth = depth
        for name in (THROUGHPUT_NODE, CAMERA_NODE):
            self.listener.watch(name)
        procs = [
            self.start(THROUGHPUT_NODE, "rsee_ros.ros.node", self.node_params(
                settings, THROUGHPUT_TOPIC, queue_size=depth, qos_depth=depth,
                diagnostics_period_s=THROUGHPUT_PERIOD_S)),
            self.start(CAMERA_NODE, "rsee_ros.ros.node", self.node_params(settings, CAMERA_TOPIC)),
            self.start(THROUGHPUT_SOURCE, "rsee_ros.ros.video_source", self.source_params(
                THROUGHPUT_TOPIC, max_frames=frames, qos_depth=depth)),
            self.start(CAMERA_SOURCE, "rsee_ros.ros.video_source",
                       self.source_params(CAMERA_TOPIC)),
        ]
        deadline = time.monotonic() + self.config.startup_timeout_s
        for name in (THROUGHPUT_NODE, CAMERA_NODE):
            while not self.listener.node_ready(name):
                self.check_alive(*procs)
                if time.monotonic() > deadline:
                    raise BenchNodeError(
                        f"{name} not ready after {self.config.startup_timeout_s:g} s; its log "
                        f"ends with:\n{self.proc(name).tail()}"
                    )
                time.sleep(0.05)

    def proc(self, name: str) -> _Proc:
        return next(p for p in self.procs if p.name == name)

    def wait_for_frames(self, name: str, source: _Proc) -> float:
        """Wait until node ``name`` reports frames arriving; returns the monotonic time."""
        assert self.listener is not None
        deadline = time.monotonic() + self.config.startup_timeout_s
        while True:
            results, status, _ = self.listener.snapshot(name)
            if results or any(s.input_fps > 0 for _, s in status):
                return time.monotonic()
            self.check_alive(self.proc(name), source)
            if time.monotonic() > deadline:
                raise BenchNodeError(f"no frames reached {name}; {source.name} log:\n"
                                     f"{source.tail()}")
            time.sleep(0.02)

    # phase 2 ----------------------------------------------------------------------------------

    def throughput(
        self, inproc: dict[str, Any], reference: Sequence[int]
    ) -> dict[str, Any]:
        assert self.listener is not None
        c = self.config
        n = c.frames
        node, source = self.proc(THROUGHPUT_NODE), self.proc(THROUGHPUT_SOURCE)
        publish_rate = round(min(5000.0, max(c.rate, FEED_FACTOR * inproc["frames_per_s"])), 1)
        self.log(f"throughput: {n} frames at {publish_rate:g} Hz (reliable, queue {self.depth})")
        self.listener.set_parameters(THROUGHPUT_SOURCE, {"fps": float(publish_rate)})
        expected = inproc["results"]
        # A generous limit: the node at a tenth of the in-process rate, plus start-up.
        limit = time.monotonic() + c.startup_timeout_s + 10 * n / max(inproc["frames_per_s"], 1)
        source_done = False
        idle_reports = 0
        seen_status = 0
        while time.monotonic() < limit:
            results, status, diags = self.listener.snapshot(THROUGHPUT_NODE)
            if len(results) >= expected > 0:
                break
            if not source_done and not source.alive():
                if source.popen.returncode != 0:
                    raise BenchNodeError(f"{source.name} failed:\n{source.tail()}")
                source_done = True
            self.check_alive(node)
            received = int(diags[-1][1].get("frames_received", 0)) if diags else 0
            for _, s in status[seen_status:]:
                idle = received >= n and s.processed_fps == 0 and s.input_fps == 0
                idle_reports = idle_reports + 1 if idle else 0
            seen_status = len(status)
            if source_done and idle_reports >= 2:
                break  # every frame arrived and the node has had nothing to do for two periods
            time.sleep(0.02)
        else:
            raise BenchNodeError(f"throughput run did not finish; {node.name} log:\n{node.tail()}")
        time.sleep(0.6)  # one more status / diagnostics report
        results, status, diags = self.listener.snapshot(THROUGHPUT_NODE)
        self.stop(source, node)
        last = diags[-1][1] if diags else {}
        received = int(last.get("frames_received", 0))
        times = [r[0] for r in results]
        rate = steady_rate(times)
        # The node's frame rate over the same steady span: its status reports (one every
        # THROUGHPUT_PERIOD_S) that lie wholly inside the span.
        span = (times[max(1, int(len(times) * 0.1))], times[-1]) if len(times) >= 3 else None
        processed = [s.processed_fps for t, s in status
                     if span and span[0] <= t - THROUGHPUT_PERIOD_S and t <= span[1]]
        arriving = [s.input_fps for _, s in status if s.input_fps > 0][1:-1]
        input_fps = statistics.fmean(arriving) if arriving else math.nan
        ids = [r[3] for r in results]
        common = min(len(ids), len(reference))
        agree = (sum(a == b for a, b in zip(ids, reference)) / common) if common else math.nan
        return {
            "publish_rate_hz": publish_rate,
            "queue_size": self.depth,
            "qos_depth": self.depth,
            "frames_published": n,
            "frames_received": received,
            "frames_lost_in_transport": n - received,
            "frames_dropped": int(last.get("frames_dropped", 0)),
            "results": len(results),
            "results_expected": expected,
            "label_agreement": agree,
            "results_per_s": rate,
            "frames_per_s": statistics.fmean(processed) if processed else math.nan,
            "input_fps": input_fps,
            # The publisher did not outpace the in-process rate: the node could not show its own.
            "input_limited": bool(input_fps < inproc["frames_per_s"]) if arriving else None,
            # Frames per second of time spent inside the node's pipeline (its capacity_fps):
            # near frames_per_s when the node's overhead around the pipeline is small.
            "node_pipeline_fps": float(status[-1][1].capacity_fps) if status else math.nan,
        }

    # phases 3 and 4 ---------------------------------------------------------------------------

    def camera_rate(self) -> tuple[dict[str, Any], dict[str, Any]]:
        assert self.listener is not None
        c = self.config
        node, source = self.proc(CAMERA_NODE), self.proc(CAMERA_SOURCE)
        node_sampler, source_sampler = ProcSampler(node.pid), ProcSampler(source.pid)
        self.listener.set_parameters(CAMERA_SOURCE, {"fps": float(c.rate)})
        start = self.wait_for_frames(CAMERA_NODE, source)
        self.log(f"camera rate: {c.rate:g} Hz for {c.duration_s:g} s "
                 f"(warm-up {c.warmup:g} s), sampling /proc every second")
        samples: list[tuple[float, float, float]] = [node_sampler.sample()]
        source_samples = [source_sampler.sample()]
        end = start + c.duration_s
        next_at = time.monotonic() + 1.0
        while True:
            now = time.monotonic()
            if now >= end:
                break
            time.sleep(max(0.0, min(next_at, end) - now))
            self.check_alive(node, source)
            samples.append(node_sampler.sample())
            source_samples.append(source_sampler.sample())
            next_at += 1.0
        results, status, diags = self.listener.snapshot(CAMERA_NODE)
        return (self._latency(results, status, diags, start),
                self._resources(samples, source_samples, start))

    def _latency(self, results: list, status: list, diags: list, start: float) -> dict[str, Any]:
        c = self.config
        warm = start + c.warmup
        after = [r for r in results if r[0] >= warm] or results[1:] or results
        lat = sorted((r[1] - r[2]) / 1e6 for r in after)
        node_lat = sorted(r[4] for r in after)
        last = diags[-1][1] if diags else {}
        at_warm = next((d for t, d in diags if t >= warm), last)
        processed = [s.processed_fps for t, s in status if t >= warm]
        arriving = [s.input_fps for t, s in status if t >= warm]
        return {
            "rate_hz": c.rate,
            "results": len(lat),
            "p50_ms": _pct(lat, 50),
            "p99_ms": _pct(lat, 99),
            "mean_ms": statistics.fmean(lat) if lat else math.nan,
            "max_ms": lat[-1] if lat else math.nan,
            "node_latency_p50_ms": _pct(node_lat, 50),
            "node_latency_p99_ms": _pct(node_lat, 99),
            "input_fps": statistics.fmean(arriving) if arriving else math.nan,
            "processed_fps": statistics.fmean(processed) if processed else math.nan,
            "frames_received": int(last.get("frames_received", 0)),
            "frames_dropped": int(last.get("frames_dropped", 0)),
            "frames_dropped_after_warmup": int(last.get("frames_dropped", 0))
            - int(at_warm.get("frames_dropped", 0)),
        }

    def _resources(self, samples: list, source_samples: list, start: float) -> dict[str, Any]:
        c = self.config
        t0 = samples[0][0]
        series = []
        for (t1, cpu1, _), (t2, cpu2, rss2) in zip(samples, samples[1:]):
            cpu = 100 * (cpu2 - cpu1) / (t2 - t1) if t2 > t1 else math.nan
            series.append([round(t2 - t0, 2), round(cpu, 2), round(rss2, 2)])
        warm = [s for s in samples if s[0] >= start + c.warmup] or samples[-1:]
        first, last = warm[0], samples[-1]
        span = last[0] - first[0]
        src_first = next((s for s in source_samples if s[0] >= start + c.warmup),
                         source_samples[-1])
        src_last = source_samples[-1]
        src_span = src_last[0] - src_first[0]
        return {
            "duration_s": round(samples[-1][0] - samples[0][0], 2),
            "warmup_s": c.warmup,
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

    def tracking(self, targets: list[float], full_fps: float) -> list[dict[str, Any]]:
        assert self.listener is not None
        c = self.config
        out = []
        for target in targets:
            feed = round(max(c.rate, FEED_FACTOR * target), 1)
            self.log(f"target_fps {target:g}: feeding at {feed:g} Hz, settling {c.settle_s:g} s, "
                     f"measuring {c.measure_s:g} s")
            self.listener.set_parameters(CAMERA_SOURCE, {"fps": float(feed)})
            self.listener.set_parameters(CAMERA_NODE, {"target_fps": float(target)})
            begin = time.monotonic() + c.settle_s
            time.sleep(c.settle_s + c.measure_s + 0.1)
            self.check_alive(self.proc(CAMERA_NODE), self.proc(CAMERA_SOURCE))
            _, status, _ = self.listener.snapshot(CAMERA_NODE)
            set_at = begin - c.settle_s
            reports = [
                [round(t - set_at, 2), round(s.input_fps, 2), round(s.processed_fps, 2),
                 round(s.capacity_fps, 2), round(float(s.exit_threshold), 4),
                 int(s.max_resolution), int(s.frames_dropped)]
                for t, s in status if t >= set_at
            ]
            window = [s for t, s in status if begin <= t <= begin + c.measure_s + 0.1]
            if not window:
                raise BenchNodeError("no ~/status from rsee_node while measuring target_fps")
            processed = statistics.fmean(s.processed_fps for s in window)
            capacity = statistics.fmean(s.capacity_fps for s in window)
            arriving = statistics.fmean(s.input_fps for s in window)
            dropped = int(window[-1].frames_dropped - window[0].frames_dropped)
            error = abs(processed - target) / target
            out.append({
                "target_fps": target,
                "feed_hz": feed,
                "above_full_accuracy_rate": bool(target > full_fps),
                "settle_s": c.settle_s,
                "measure_s": c.measure_s,
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
                "status_columns": ["t_s", "input_fps", "processed_fps", "capacity_fps",
                                   "exit_threshold", "max_resolution", "frames_dropped"],
                "status": reports,
            })
        return out


def _pct(values: Sequence[float], q: float) -> float:
    from rsee_ros.pipeline.runner import percentile

    return percentile(values, q) if values else math.nan


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


def _add_throughput_ratios(
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


def run_node_bench(config: BenchNodeConfig, log: Log | None = None) -> dict[str, Any]:
    """Run the four phases (module docstring); returns the JSON report (NaN where unmeasured)."""
    log = log or (lambda line: None)
    if config.source not in SOURCES:
        raise BenchNodeError(f"source must be one of {SOURCES}, got {config.source!r}")
    if config.domain_id is None:
        config.domain_id = 101 + os.getpid() % 100
    if not 0 <= config.domain_id <= 232:
        raise BenchNodeError(f"ROS domain id must be in 0..232, got {config.domain_id}")
    if config.frames < 3 or config.duration_s <= 0 or config.rate <= 0:
        raise BenchNodeError("need frames >= 3, duration > 0 and rate > 0")
    if config.frames > MAX_FRAMES:
        raise BenchNodeError(f"at most {MAX_FRAMES} frames (the node's queue holds "
                             f"{MAX_DEPTH}, the backlog grows to a third of the frames)")
    targets = parse_targets(config.targets)
    try:
        import rclpy
        from rclpy.signals import SignalHandlerOptions

        import rsee_ros.msg  # noqa: F401 - the node's messages must be built
    except ImportError as exc:
        raise BenchNodeError(f"needs rclpy and the built rsee_ros messages: {exc}") from None
    import torch

    from rsee_ros.evaluation.evaluate import machine_info
    from rsee_ros.model import load_checkpoint, resolve_device
    from rsee_ros.pipeline.runner import PipelineSettings

    torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    checkpoint = load_checkpoint(config.checkpoint, device=device)
    settings = PipelineSettings()  # the node's defaults
    report: dict[str, Any] = {
        "checkpoint": str(config.checkpoint),
        "source": config.source,
        "quick": config.quick,
        "frames": config.frames,
        "rate_hz": config.rate,
        "duration_s": config.duration_s,
        "threads": config.threads,
        "domain_id": config.domain_id,
        "fastdds_profile": config.fastdds_profile,
        "machine": machine_info(device),
        "classes": list(checkpoint.class_names),
        "resolutions": list(checkpoint.config.resolutions),
        "settings": settings.to_dict(),
    }

    # Phase 1: in-process.
    log(f"in-process: decoding {config.frames} frames of the {config.source} source")
    frames = bench_frames(config.source, config.frames)
    inproc = _inprocess(checkpoint.model, checkpoint.class_names, frames, settings, config.rate)
    lowest = min(checkpoint.config.resolutions)
    fastest_settings = PipelineSettings(
        exit_threshold=min(0.5, settings.exit_threshold), max_resolution=lowest
    )
    fastest = _inprocess(checkpoint.model, checkpoint.class_names, frames[:192],
                         fastest_settings, config.rate)
    log(f"in-process: {inproc['frames_per_s']:.1f} frames/s, {inproc['results_per_s']:.2f} "
        f"results/s; fastest settings {fastest['frames_per_s']:.1f} frames/s")
    class_ids = inproc.pop("_class_ids")
    fastest.pop("_class_ids")
    report["in_process"] = {**inproc, "fastest": fastest}
    setpoints = _resolve_targets(targets, inproc["frames_per_s"], fastest["frames_per_s"],
                                 config.quick)

    workdir = Path(tempfile.mkdtemp(prefix="rsee_bench_node_"))
    bench = _Bench(config, log, workdir)
    env = {k: bench.env[k] for k in ("ROS_AUTOMATIC_DISCOVERY_RANGE", "ROS_LOCALHOST_ONLY",
                                     "ROS_DOMAIN_ID", "ROS_STATIC_PEERS")}
    if config.fastdds_profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = bench.env["FASTDDS_DEFAULT_PROFILES_FILE"]
    context = None
    keep = config.keep_logs
    try:
        with _environment(env):
            context = rclpy.Context()
            rclpy.init(context=context, domain_id=config.domain_id,
                       signal_handler_options=SignalHandlerOptions.NO)
            bench.listener = _Listener(context)
            log("starting rsee_node x2 and video_source x2 (publishers paused)")
            bench.start_all(settings, config.frames)
            # Phase 2: throughput against the in-process figure.
            report["throughput"] = bench.throughput(inproc, class_ids)
            # The in-process run again right after (the nodes idle): the reference is the mean
            # of the runs before and after, so a drift in machine speed between the phases
            # does not land on the node.
            again = _inprocess(checkpoint.model, checkpoint.class_names, frames, settings,
                               config.rate)
            again.pop("_class_ids")
            del frames
            report["in_process"]["after_node"] = again
            t = report["throughput"]
            _add_throughput_ratios(t, inproc, again)
            log(f"in-process again: {again['frames_per_s']:.1f} frames/s; node: "
                f"{t['results_per_s']:.2f} results/s (x{t['ratio_results_per_s']:.3f} of the "
                f"in-process mean), {t['frames_dropped']} dropped")
            # Phases 3 and 4 on the second node.
            report["latency"], report["resources"] = bench.camera_rate()
            report["tracking"] = {
                "full_accuracy_fps": inproc["frames_per_s"],
                "fastest_fps": fastest["frames_per_s"],
                "feed_factor": FEED_FACTOR,
                "setpoints": bench.tracking(setpoints, inproc["frames_per_s"]),
            }
            bench.stop_all()
    except BenchNodeError as exc:
        keep = True
        raise BenchNodeError(f"{exc}\n(process logs kept in {workdir})") from None
    finally:
        bench.stop_all()
        if bench.listener is not None:
            bench.listener.close()
        if context is not None:
            context.try_shutdown()
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    report["processes"] = bench.finished
    report["logs"] = str(workdir) if config.keep_logs else None
    report["targets"] = check_targets(report)
    return report
