"""ROS 2 node ``rsee_node``: RSEE action recognition on one or more camera topics.

A thin layer over :class:`rsee_ros.pipeline.runner.RecognitionPipeline` (windowing and inference
live there, shared with ``rsee eval-bag`` and the demo):

* Subscriptions (``image_topics``; ``sensor_msgs/Image``, or ``CompressedImage`` for topics ending
  in ``/compressed``) only put the message into a bounded queue (``queue_size``, all cameras
  together) and return: no callback ever waits for the model. When the queue is full the oldest
  frame is dropped and counted.
* One worker thread takes frames off the queue, converts them (``image_conversion``: unsupported
  or broken images are counted and warned about, throttled), pushes them into the pipeline and
  publishes every result as ``rsee_ros/ActionRecognition`` on ``~/actions``. Conversion happens
  there, not in the callback, so frames that are dropped are never decoded.
* Parameters (see :data:`PARAMETERS` and docs/node.md) are declared with descriptors; the live
  ones go through :meth:`RecognitionPipeline.update` and apply from the next frame, invalid values
  are refused with the reason and the previous value stays.
* ``target_fps`` > 0 hands ``exit_threshold`` and ``max_resolution`` to a
  :class:`~rsee_ros.pipeline.target_fps.TargetFpsController` (the parameters become its upper
  limits) to keep the frame rate the node can sustain at or above the target.
* ``~/label_info`` (``LabelInfo``, transient local) describes the model once; ``~/status``
  (``RseeStatus``) and ``/diagnostics`` report rates, drops, rejects, latency and compute every
  ``diagnostics_period_s``; ``~/actions_array`` (``ActionRecognitionArray``, published only while
  someone subscribes) holds the latest result of every camera after each new result.

Frame stamps are the images' header stamps (the node's clock at arrival when a stamp is zero).
Windows cut when the node stops are not published.

Run: ``ros2 run rsee_ros rsee_node --ros-args -p image_topics:="['/camera/image_raw']"``, or
without the ``ros2`` command line ``python -m rsee_ros.ros.node --ros-args ...``.
"""

from __future__ import annotations

from rsee_ros.ros.lifecycle import process_stop_request, run_node

if __name__ == "__main__":
    # Run as a program (python -m): signals become a stop request before the imports below,
    # which take seconds (torch), so a stop during start-up is a clean exit as well.
    process_stop_request()

import math
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import torch
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (
    FloatingPointRange,
    IntegerRange,
    ParameterDescriptor,
    SetParametersResult,
)
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
    qos_profile_sensor_data,
)
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header

from rsee_ros.model import CheckpointError, load_checkpoint, resolve_device
from rsee_ros.msg import ActionRecognition, ActionRecognitionArray, LabelInfo, RseeStatus
from rsee_ros.pipeline.rejects import RejectCounter
from rsee_ros.pipeline.runner import PipelineSettings, RecognitionPipeline, percentile
from rsee_ros.pipeline.target_fps import TargetFpsController
from rsee_ros.resources import DEFAULT_CHECKPOINT
from rsee_ros.ros.image_conversion import ImageConversionError, compressed_to_rgb, image_to_rgb
from rsee_ros.ros.messages import (
    to_action_recognition,
    to_action_recognition_array,
    to_label_info,
)

NODE_NAME = "rsee_node"
QOS_CHOICES = ("best_effort", "reliable", "auto")
DEVICES = ("auto", "cpu", "cuda")


class StartupError(RuntimeError):
    """The node cannot start (bad checkpoint, device or parameters): one clear line, exit 1."""


@dataclass(frozen=True)
class _Param:
    name: str
    default: Any
    description: str
    dynamic: bool = False
    constraints: str = ""
    int_range: tuple[int, int] | None = None
    float_range: tuple[float, float] | None = None


# Live parameters are applied from the next frame; the others are read-only (restart the node).
PARAMETERS: tuple[_Param, ...] = (
    _Param(
        "image_topics",
        ["/camera/image_raw"],
        "Camera topics; sensor_msgs/Image, or sensor_msgs/CompressedImage (jpeg, png) for topics "
        "ending in /compressed. Each camera has its own windows.",
        constraints="non-empty list of topic names",
    ),
    _Param(
        "checkpoint",
        "",
        "Model checkpoint file; empty: the packaged default model (rsee_synthetic.pt).",
    ),
    _Param("device", "auto", "Torch device.", constraints="auto (cuda if available), cpu or cuda"),
    _Param(
        "num_threads", 0, "Torch CPU threads; 0: torch's default.", int_range=(0, 256)
    ),
    _Param(
        "qos_reliability",
        "best_effort",
        "Reliability of the image subscriptions: best_effort (sensor-data QoS, matches every "
        "publisher), reliable, or auto (reliable when every publisher found at start is).",
        constraints="best_effort, reliable or auto",
    ),
    _Param("qos_depth", 5, "History depth of the image subscriptions.", int_range=(1, 1000)),
    _Param(
        "queue_size",
        2,
        "Frames (all cameras) waiting for inference; when full, the oldest is dropped.",
        int_range=(1, 1000),
    ),
    _Param("window_size", 16, "Frames per window.", dynamic=True, int_range=(1, 1024)),
    _Param(
        "stride",
        0,
        "Frames between window starts; smaller than window_size gives sliding windows; "
        "0: tumbling (= window_size).",
        dynamic=True,
        int_range=(0, 1024),
    ),
    _Param(
        "frame_step",
        1,
        "Use every n-th frame of a camera (subsampling of a faster camera).",
        dynamic=True,
        int_range=(1, 1000),
    ),
    _Param(
        "max_gap_s",
        1.0,
        "A longer gap between stamps (or a stamp going back) ends the windows and starts a new "
        "video; 0: no gap detection.",
        dynamic=True,
        float_range=(0.0, 3600.0),
    ),
    _Param(
        "exit_threshold",
        0.9,
        "Confidence at which a window exits early; 1.0: practically never.",
        dynamic=True,
        float_range=(0.0, 1.0),
    ),
    _Param(
        "max_resolution",
        0,
        "Highest input resolution the selector may choose (pixels); 0: the model's highest.",
        dynamic=True,
        int_range=(0, 4096),
    ),
    # allowed_resolutions is declared after the model is loaded (default: all of its resolutions).
    _Param("skip_enabled", True, "Let the selector skip frames.", dynamic=True),
    _Param("top_k", 5, "Labels and scores per result.", dynamic=True, int_range=(1, 1000)),
    _Param(
        "target_fps",
        0.0,
        "Frame rate to sustain; > 0 lets the node lower exit_threshold and max_resolution itself "
        "(within the parameters' values) to reach it. 0: off.",
        dynamic=True,
        float_range=(0.0, 10000.0),
    ),
    _Param(
        "diagnostics_period_s",
        1.0,
        "Period of ~/status and /diagnostics.",
        float_range=(0.05, 3600.0),
    ),
)
"""The node's parameters (allowed_resolutions is added with the model's resolutions)."""

ALLOWED_RESOLUTIONS_DESCRIPTION = (
    "Resolutions the selector may choose (a subset of the model's); default: all of them."
)
# Parameters that are pipeline settings, and those the target_fps controller takes over.
_PIPELINE_PARAMS = frozenset(
    {"window_size", "stride", "frame_step", "max_gap_s", "exit_threshold", "max_resolution",
     "allowed_resolutions", "skip_enabled", "top_k"}
)
_FLOAT_PARAMS = {p.name: p for p in PARAMETERS if p.float_range is not None}


def _check_float(name: str, value: Any) -> float:
    """Accept ints for double parameters (``-p max_gap_s:=2``), within the declared range."""
    if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    lo, hi = _FLOAT_PARAMS[name].float_range  # type: ignore[misc]
    if not lo <= value <= hi:
        raise ValueError(f"{name} must be in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def _one_line(text: str, limit: int = 300) -> str:
    """The first line of ``text``, cut to ``limit`` characters (start-up errors are one line)."""
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[: limit - 3] + "..."


class _Queued(NamedTuple):
    topic: str
    msg: Image | CompressedImage
    received: float  # time.monotonic() at arrival
    arrival_ns: int  # node clock at arrival (stamp of unstamped images)


class RseeNode(Node):
    """The RSEE action recognition node; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        p = self._declare_parameters()
        if p["num_threads"]:
            torch.set_num_threads(p["num_threads"])
        self.checkpoint_path = self._checkpoint_path(p["checkpoint"])
        try:
            device = resolve_device(p["device"])
            checkpoint = load_checkpoint(self.checkpoint_path, device=device)
        except CheckpointError as exc:
            raise StartupError(_one_line(f"cannot load checkpoint {exc}")) from None
        except (RuntimeError, ValueError) as exc:
            raise StartupError(_one_line(f"device: {exc}")) from None
        self.device = str(device)
        resolutions = list(checkpoint.config.resolutions)
        self.declare_parameter(
            "allowed_resolutions",
            resolutions,
            ParameterDescriptor(
                description=ALLOWED_RESOLUTIONS_DESCRIPTION,
                dynamic_typing=False,
                additional_constraints=f"subset of {resolutions}",
            ),
        )
        allowed = tuple(self.get_parameter("allowed_resolutions").value)
        try:
            self._user = PipelineSettings(
                window_size=p["window_size"],
                stride=p["stride"],
                frame_step=p["frame_step"],
                max_gap_s=p["max_gap_s"],
                exit_threshold=p["exit_threshold"],
                allowed_resolutions=() if sorted(allowed) == sorted(resolutions) else allowed,
                max_resolution=p["max_resolution"],
                skip_enabled=p["skip_enabled"],
                top_k=p["top_k"],
            )
            self._user.resolutions_for(resolutions)
        except ValueError as exc:
            raise StartupError(f"invalid parameters: {exc}") from None
        self._target_fps: float = p["target_fps"]
        self._control_lock = threading.Lock()
        self._controller: TargetFpsController | None = None
        self.pipeline = RecognitionPipeline(
            checkpoint.model, checkpoint.class_names, self._effective(self._user)
        )

        # Publishers.
        latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self._actions_pub = self.create_publisher(ActionRecognition, "~/actions", 10)
        self._array_pub = self.create_publisher(ActionRecognitionArray, "~/actions_array", 10)
        self._label_pub = self.create_publisher(LabelInfo, "~/label_info", latched)
        self._status_pub = self.create_publisher(RseeStatus, "~/status", 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._label_pub.publish(
            to_label_info(
                checkpoint.class_names,
                resolutions,
                stamp=self.get_clock().now().to_msg(),
                model_name=str(checkpoint.metadata.get("name", "rsee")),
                backbone=checkpoint.config.backbone,
                checkpoint=str(self.checkpoint_path),
            )
        )

        # Inference queue and worker.
        self.rejects = RejectCounter(self.get_logger(), period_s=5.0)
        self.drops = RejectCounter(self.get_logger(), period_s=5.0, what="frame")
        self._queue: deque[_Queued] = deque(maxlen=p["queue_size"])
        self._cond = threading.Condition()
        self._stopping = False
        self._received = 0
        self._handled = 0
        self._published = 0
        self._latest: dict[str, ActionRecognition] = {}
        self._recent_gflops: deque[float] = deque(maxlen=200)
        self._last_report = (time.monotonic(), 0, 0)
        self._dropped_at_report = self._rejected_at_report = 0
        with self._control_lock:
            self._apply_target(self._target_fps)

        # Subscriptions.
        self._subs = []
        for topic in dict.fromkeys(p["image_topics"]):
            self._subs.append(self._subscribe(topic, p["qos_reliability"], p["qos_depth"]))

        self._worker = threading.Thread(target=self._work, name="rsee_inference", daemon=True)
        self._worker.start()
        self._timer = self.create_timer(p["diagnostics_period_s"], self._report)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f"{checkpoint.config.num_classes} classes, resolutions {resolutions} on {self.device}"
            f" ({self.checkpoint_path.name}); listening on "
            + ", ".join(f"{s.topic_name} ({s.msg_type.__name__})" for s in self._subs)
        )

    # Setup ------------------------------------------------------------------------------------

    def _declare_parameters(self) -> dict[str, Any]:
        for spec in PARAMETERS:
            descriptor = ParameterDescriptor(
                description=spec.description,
                read_only=not spec.dynamic,
                additional_constraints=spec.constraints,
                # Doubles also take integers (`-p max_gap_s:=2`); checked by _check_float.
                dynamic_typing=spec.float_range is not None,
            )
            if spec.int_range is not None:
                lo, hi = spec.int_range
                descriptor.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
            if spec.float_range is not None:
                lo, hi = spec.float_range
                descriptor.floating_point_range = [
                    FloatingPointRange(from_value=lo, to_value=hi, step=0.0)
                ]
            self.declare_parameter(spec.name, spec.default, descriptor)
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        try:
            for name in _FLOAT_PARAMS:
                values[name] = _check_float(name, values[name])
        except ValueError as exc:
            raise StartupError(f"invalid parameters: {exc}") from None
        if values["qos_reliability"] not in QOS_CHOICES:
            raise StartupError(
                f"qos_reliability must be one of {QOS_CHOICES}, got {values['qos_reliability']!r}"
            )
        if values["device"] not in DEVICES and not str(values["device"]).startswith("cuda:"):
            raise StartupError(f"device must be auto, cpu or cuda, got {values['device']!r}")
        topics = [str(t).strip() for t in values["image_topics"] or []]
        if not topics or not all(topics):
            raise StartupError(f"image_topics must be a non-empty list of topics, got {topics}")
        values["image_topics"] = topics
        return values

    @staticmethod
    def _checkpoint_path(value: str) -> Path:
        if value:
            return Path(value).expanduser()
        if not DEFAULT_CHECKPOINT.is_file():
            raise StartupError(
                f"no checkpoint given and the default model {DEFAULT_CHECKPOINT} is not installed;"
                " set the checkpoint parameter"
            )
        return DEFAULT_CHECKPOINT

    def _subscribe(self, topic: str, reliability: str, depth: int) -> Any:
        compressed = topic.rstrip("/").endswith("/compressed")
        msg_type = CompressedImage if compressed else Image
        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=depth,
            reliability=qos_profile_sensor_data.reliability,
            durability=DurabilityPolicy.VOLATILE,
        )
        if reliability == "reliable":
            qos.reliability = ReliabilityPolicy.RELIABLE
        elif reliability == "auto":
            resolve = getattr(self, "resolve_topic_name", None)  # not in Humble's rclpy
            infos = self.get_publishers_info_by_topic(resolve(topic) if resolve else topic)
            if infos and all(
                i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos
            ):
                qos.reliability = ReliabilityPolicy.RELIABLE
        name = [topic]  # replaced by the resolved name once the subscription exists
        sub = self.create_subscription(
            msg_type, topic, lambda msg: self._on_image(msg, name[0]), qos
        )
        name[0] = sub.topic_name
        return sub

    # Settings ---------------------------------------------------------------------------------

    def _effective(self, user: PipelineSettings) -> PipelineSettings:
        """The pipeline settings: the user's, with the controller's threshold and cap."""
        if self._controller is None:
            return user
        out = self._controller.output
        return replace(user, exit_threshold=out.exit_threshold, max_resolution=out.max_resolution)

    def _apply_target(self, target_fps: float) -> None:
        """(Re)configure the controller for the user settings; caller holds _control_lock."""
        if target_fps > 0:
            allowed = self._user.resolutions_for(self.pipeline.resolutions)
            if self._controller is None:
                self._controller = TargetFpsController(
                    target_fps, allowed, self._user.exit_threshold
                )
            else:
                self._controller.set_target(target_fps)
                self._controller.set_limits(allowed, self._user.exit_threshold)
        else:
            self._controller = None
        self._target_fps = target_fps
        self.pipeline.update(**asdict(self._effective(self._user)))

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        changes: dict[str, Any] = {}
        target = None
        try:
            for param in params:
                value = param.value
                if param.name in _FLOAT_PARAMS:
                    value = _check_float(param.name, value)
                if param.name == "allowed_resolutions":
                    if value is None:
                        raise ValueError("allowed_resolutions must be a list of integers")
                    value = tuple(value)
                    if sorted(value) == sorted(self.pipeline.resolutions):
                        value = ()
                if param.name in _PIPELINE_PARAMS:
                    changes[param.name] = value
                elif param.name == "target_fps":
                    target = value
            with self._control_lock:
                user = replace(self._user, **changes)
                user.resolutions_for(self.pipeline.resolutions)
                self.pipeline.check(**asdict(user))
                self._user = user
                self._apply_target(self._target_fps if target is None else target)
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        return SetParametersResult(successful=True)

    # Frames -----------------------------------------------------------------------------------

    def _on_image(self, msg: Image | CompressedImage, topic: str) -> None:
        item = _Queued(topic, msg, time.monotonic(), self.get_clock().now().nanoseconds)
        with self._cond:
            full = len(self._queue) == self._queue.maxlen
            self._queue.append(item)  # a full deque drops its oldest item
            self._received += 1
            self._cond.notify()
        if full:
            self.drops.reject("queue full: inference slower than the cameras")

    def _work(self) -> None:
        drops_then = self.drops.total  # the target_fps controller also learns of the drops
        while True:
            with self._cond:
                while not self._queue and not self._stopping:
                    self._cond.wait(0.5)
                if self._stopping:
                    return
                item = self._queue.popleft()
            start = time.monotonic()
            try:
                self._handle(item)
            except Exception as exc:  # noqa: BLE001 - keep running on one bad frame
                if self._stopping or not self.context.ok():
                    return
                self.rejects.reject("inference_error", f"{item.topic}: {exc!r}")
            busy = time.monotonic() - start
            drops = self.drops.total
            dropped, drops_then = drops - drops_then, drops
            with self._control_lock:
                if self._controller is not None and self._controller.record(1, busy, dropped):
                    self.pipeline.update(**asdict(self._effective(self._user)))

    def _handle(self, item: _Queued) -> None:
        msg = item.msg
        try:
            rgb = compressed_to_rgb(msg) if isinstance(msg, CompressedImage) else image_to_rgb(msg)
        except ImageConversionError as exc:
            self.rejects.reject(exc.reason, f"{item.topic}: {exc.detail}")
            return
        stamp_ns = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        if stamp_ns == 0:
            stamp_ns = item.arrival_ns
        results = self.pipeline.push(
            item.topic,
            stamp_ns * 1e-9,
            rgb,
            stamp_ns=stamp_ns,
            frame_id=msg.header.frame_id,
            received_at=item.received,
        )
        with self._cond:
            self._handled += 1
        for result in results:
            out = to_action_recognition(result, latency_s=time.monotonic() - item.received)
            self._actions_pub.publish(out)
            self._published += 1
            self._recent_gflops.append(result.gflops)
            self._latest[result.source] = out
            if self._array_pub.get_subscription_count():
                self._array_pub.publish(
                    to_action_recognition_array(
                        list(self._latest.values()), self.get_clock().now().to_msg()
                    )
                )

    # Reports ----------------------------------------------------------------------------------

    def _report(self) -> None:
        now = time.monotonic()
        with self._cond:
            received, handled = self._received, self._handled
        then, received0, handled0 = self._last_report
        self._last_report = (now, received, handled)
        elapsed = max(now - then, 1e-9)
        input_fps = (received - received0) / elapsed
        processed_fps = (handled - handled0) / elapsed
        stats = self.pipeline.stats()
        latencies = self.pipeline.recent_latencies()
        p50 = percentile(latencies, 50) * 1e3 if latencies else 0.0
        p99 = percentile(latencies, 99) * 1e3 if latencies else 0.0
        gflops = list(self._recent_gflops)
        mean_gflops = sum(gflops) / len(gflops) if gflops else 0.0
        settings = self.pipeline.settings
        max_res = max(settings.resolutions_for(self.pipeline.resolutions))
        with self._control_lock:
            capacity = self._controller.capacity_fps if self._controller else math.nan
        if math.isnan(capacity):
            capacity = stats.frames / stats.busy_s if stats.busy_s > 0 else 0.0
        dropped, rejected = self.drops.total, self.rejects.total
        stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(
            RseeStatus(
                header=Header(stamp=stamp),
                input_fps=float(input_fps),
                processed_fps=float(processed_fps),
                frames_dropped=dropped,
                frames_rejected=rejected,
                latency_p50_ms=float(p50),
                latency_p99_ms=float(p99),
                mean_gflops=float(mean_gflops),
                exit_threshold=float(settings.exit_threshold),
                max_resolution=int(max_res),
                capacity_fps=float(capacity),
                target_fps=float(self._target_fps),
                results_published=self._published,
                device=self.device,
            )
        )
        values = {
            "input_fps": f"{input_fps:.2f}",
            "processed_fps": f"{processed_fps:.2f}",
            "capacity_fps": f"{capacity:.2f}",
            "target_fps": f"{self._target_fps:g}",
            "frames_received": str(received),
            "frames_dropped": str(dropped),
            "frames_rejected": str(rejected),
            **{f"rejected {reason}": str(n) for reason, n in sorted(self.rejects.counts.items())},
            "results_published": str(self._published),
            "latency_p50_ms": f"{p50:.2f}",
            "latency_p99_ms": f"{p99:.2f}",
            "mean_gflops_per_window": f"{mean_gflops:.4f}",
            "mean_uniform_gflops_per_window": f"{stats.mean_uniform_gflops:.4f}",
            "exit_threshold": f"{settings.exit_threshold:g}",
            "max_resolution": str(max_res),
            **{
                f"resolution {r or 'skipped'}": str(n)
                for r, n in sorted(stats.resolution_histogram.items(), reverse=True)
            },
            "device": self.device,
        }
        recent_drops = dropped - self._dropped_at_report
        recent_rejects = rejected - self._rejected_at_report
        self._dropped_at_report, self._rejected_at_report = dropped, rejected
        level, message = DiagnosticStatus.OK, "running"
        if recent_drops or recent_rejects:
            level = DiagnosticStatus.WARN
            message = f"{recent_drops} frames dropped, {recent_rejects} rejected in the last period"
        elif received == received0:
            message = "no images"
        self._diag_pub.publish(
            DiagnosticArray(
                header=Header(stamp=stamp),
                status=[
                    DiagnosticStatus(
                        level=level,
                        name=f"{self.get_fully_qualified_name()}: action recognition",
                        message=message,
                        hardware_id=self.device,
                        values=[KeyValue(key=k, value=v) for k, v in values.items()],
                    )
                ],
            )
        )

    # Introspection (tests, tools) ---------------------------------------------------------------

    @property
    def frames_received(self) -> int:
        """Images received on all topics."""
        with self._cond:
            return self._received

    @property
    def frames_handled(self) -> int:
        """Images taken off the queue and pushed into the pipeline (not rejected)."""
        with self._cond:
            return self._handled

    @property
    def queue_length(self) -> int:
        """Images waiting in the queue now."""
        with self._cond:
            return len(self._queue)

    @property
    def results_published(self) -> int:
        """ActionRecognition messages published."""
        return self._published

    def idle(self) -> bool:
        """True when the queue is empty and the worker is not handling a frame."""
        with self._cond:
            return not self._queue and self._received == self._handled + self.rejects.total + (
                self.drops.total
            )

    # Shutdown ---------------------------------------------------------------------------------

    def stop_worker(self, timeout_s: float = 5.0) -> None:
        """Stop the inference thread (the frame it is on is finished first)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._worker.is_alive() and self._worker is not threading.current_thread():
            self._worker.join(timeout_s)

    def destroy_node(self) -> None:
        if hasattr(self, "_worker"):
            self.stop_worker()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run rsee_ros rsee_node``; returns the exit status."""
    stop = process_stop_request()
    return run_node(NODE_NAME, RseeNode, args=args, stop=stop, startup_errors=(StartupError,))


if __name__ == "__main__":
    sys.exit(main())
