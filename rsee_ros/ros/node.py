"""ROS 2 node ``rsee_node``: RSEE action recognition on one or more camera topics.

A thin layer over the pipeline library (:mod:`rsee_ros.pipeline`), which does the work and is
shared with ``rsee eval-bag``, the demo and the benchmarks:

* subscription callbacks hand each image to a :class:`~rsee_ros.pipeline.worker.
  RecognitionWorker` and return at once: per-camera queues (``queue_size`` frames each, the
  oldest of that camera dropped and counted when full) served round robin by one inference
  thread, which converts the image, runs windowing + inference and calls back here to publish
  ``rsee_ros/ActionRecognition`` on ``~/actions``;
* parameters (:data:`PARAMETERS`, docs/node.md) become the user's
  :class:`~rsee_ros.pipeline.runner.PipelineSettings` in a
  :class:`~rsee_ros.pipeline.control.SettingsControl`, which applies them from the next frame,
  and with ``target_fps`` > 0 lets its controller lower ``exit_threshold`` and
  ``max_resolution`` within them; invalid values are refused with the reason;
* ``~/label_info`` (``LabelInfo``, transient local) describes the model once; ``~/status``
  (``RseeStatus``) and ``/diagnostics`` publish a
  :class:`~rsee_ros.pipeline.status.StatusSnapshot` every ``diagnostics_period_s``;
  ``~/actions_array`` (published only while someone subscribes) holds the latest result of every
  camera after each new result.

Frame stamps are the images' header stamps (the node's clock at arrival when a stamp is zero).
Windows cut when the node stops are not published.

Run: ``ros2 run rsee_ros rsee_node --ros-args -p image_topics:="['/camera/image_raw']"``, or
without the ``ros2`` command line ``python -m rsee_ros.ros.node --ros-args ...``.

Over 400 lines because of its parameter table (PARAMETERS, about 150 lines: every parameter's
type, default, range and description, the source of config/rsee.yaml and docs/node.md).
"""

from __future__ import annotations

from rsee_ros.ros.lifecycle import exit_status, process_stop_request, run_node

if __name__ == "__main__":
    # Run as a program (python -m): signals become a stop request before the imports below,
    # which take seconds (torch), so a stop during start-up is a clean exit as well.
    process_stop_request()

import math
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import CompressedImage, Image

from rsee_ros.data.image_conversion import (
    DEFAULT_MAX_PIXELS,
    ImageConversionError,
    compressed_to_rgb,
    image_to_rgb,
)
from rsee_ros.data.stamps import stamp_ns
from rsee_ros.engine import load_engine
from rsee_ros.engine.export import ExportError
from rsee_ros.model import CheckpointError, resolve_device
from rsee_ros.msg import ActionRecognition, ActionRecognitionArray, LabelInfo, RseeStatus
from rsee_ros.pipeline.control import SettingsControl
from rsee_ros.pipeline.rejects import RejectCounter
from rsee_ros.pipeline.runner import PipelineSettings, RecognitionPipeline, WindowResult
from rsee_ros.pipeline.status import StatusReporter
from rsee_ros.pipeline.worker import Arrival, DecodedFrame, RecognitionWorker
from rsee_ros.resources import DEFAULT_CHECKPOINT
from rsee_ros.ros import qos
from rsee_ros.ros.cameras import CameraSubscriptions
from rsee_ros.ros.messages import (
    to_action_recognition,
    to_action_recognition_array,
    to_diagnostic_array,
    to_label_info,
    to_rsee_status,
)
from rsee_ros.ros.params import ParamSpec, check_number, declare_parameters, refuse

NODE_NAME = "rsee_node"
QOS_CHOICES = ("best_effort", "reliable", "auto")
CAMERA_REFRESH_S = 0.5  # how often subscriptions follow publishers and listeners


class StartupError(RuntimeError):
    """The node cannot start (bad checkpoint, device or parameters): one clear line, exit 1."""


# Live parameters are applied from the next frame; the others are read-only (restart the node).
PARAMETERS: tuple[ParamSpec, ...] = (
    ParamSpec(
        "image_topics",
        ["/camera/image_raw"],
        "Camera topics; sensor_msgs/Image, or sensor_msgs/CompressedImage (jpeg, png) for topics "
        "ending in /compressed. Each camera has its own windows.",
        constraints="non-empty list of topic names",
    ),
    ParamSpec(
        "checkpoint",
        "",
        "Model checkpoint file or export directory (rsee export); empty: the packaged default "
        "model (rsee_synthetic.pt).",
    ),
    ParamSpec("device", "auto", "Device: cpu or cuda (torch engines' device; with onnxruntime "
              "the CUDA provider).",
              constraints="auto (cuda if available), cpu, cuda or cuda:N"),
    ParamSpec(
        "engine",
        "auto",
        "Inference engine: torch (eager), torch-fused, onnxruntime (the model exported to ONNX, "
        "CPU or with device cuda the CUDA provider), tensorrt (ONNX Runtime's TensorRT "
        "provider); auto: onnxruntime when it is installed, else torch. checkpoint may also "
        "be an export directory (rsee export).",
        constraints="auto, torch, torch-fused, onnxruntime or tensorrt",
    ),
    ParamSpec(
        "engine_cache_dir",
        "",
        "Where a checkpoint's ONNX export and TensorRT engines are kept (made on first use); "
        "empty: $RSEE_ENGINE_CACHE or ~/.cache/rsee_ros/engines.",
    ),
    ParamSpec("num_threads", 1, "Torch CPU threads (batch-1 streaming gains nothing from more; "
              "on a busy machine they spin against each other); 0: torch's default.",
              int_range=(0, 256)),
    ParamSpec(
        "qos_reliability",
        "best_effort",
        "Reliability of the image subscriptions: best_effort (sensor-data QoS, matches every "
        "publisher), reliable, or auto (reliable while every publisher on the topic is; decided "
        "again when publishers come and go).",
        constraints="best_effort, reliable or auto",
    ),
    ParamSpec("qos_depth", 5, "History depth of the image subscriptions.", int_range=(1, 1000)),
    ParamSpec(
        "lazy_subscription",
        False,
        "Subscribe to the cameras only while someone subscribes to ~/actions or "
        "~/actions_array (off: always, as a recording robot wants).",
    ),
    ParamSpec(
        "max_input_pixels",
        DEFAULT_MAX_PIXELS,
        "Largest image (width x height) the node accepts; larger ones, and images whose sides "
        "differ more than 10x, are refused before any pixel is read (checked from the header of "
        "compressed images): one message cannot take the computer down.",
        int_range=(1, 2**31 - 1),
    ),
    ParamSpec(
        "queue_size",
        2,
        "Frames per camera waiting for inference; when full, that camera's oldest is dropped. "
        "Cameras are served in turn.",
        int_range=(1, 1000),
    ),
    ParamSpec("window_size", 16, "Frames per window.", dynamic=True, int_range=(1, 1024)),
    ParamSpec(
        "stride",
        0,
        "Frames between window starts; smaller than window_size gives sliding windows; "
        "0: tumbling (= window_size).",
        dynamic=True,
        int_range=(0, 1024),
    ),
    ParamSpec(
        "frame_step",
        1,
        "Use every n-th frame of a camera (subsampling of a faster camera).",
        dynamic=True,
        int_range=(1, 1000),
    ),
    ParamSpec(
        "max_gap_s",
        1.0,
        "A longer gap between stamps (or a stamp going back) ends the windows and starts a new "
        "video; 0: no gap detection.",
        dynamic=True,
        float_range=(0.0, 3600.0),
    ),
    ParamSpec(
        "exit_threshold",
        0.9,
        "Confidence at which a window exits early; 1.0: never (every window gets all its "
        "frames). Default: the model's operating point (rsee calibrate) when it has one, "
        "else 0.9.",
        dynamic=True,
        float_range=(0.0, 1.0),
    ),
    ParamSpec(
        "max_resolution",
        0,
        "Highest input resolution the selector may choose (pixels); 0: the model's highest.",
        dynamic=True,
        int_range=(0, 4096),
    ),
    # allowed_resolutions is declared after the model is loaded (default: all of its resolutions),
    # and so is exit_threshold (its default: the model's operating point when it has one).
    ParamSpec("skip_enabled", True, "Let the selector skip frames.", dynamic=True),
    ParamSpec(
        "policy",
        "learned",
        "learned: the selector picks a resolution or a skip per frame; uniform: every frame at "
        "the highest allowed resolution, no selector (the Uniform baseline, for comparisons).",
        dynamic=True,
        constraints="learned or uniform",
    ),
    ParamSpec(
        "gate",
        "",
        "Exit rule: empty for the model's own, confidence (the prediction's top probability) "
        "or learned (the model's exit gate network).",
        dynamic=True,
        constraints="'', confidence or learned",
    ),
    ParamSpec("top_k", 5, "Labels and scores per result.", dynamic=True, int_range=(1, 1000)),
    ParamSpec(
        "min_confidence",
        0.0,
        "Results less confident than this are published as label 'unknown', class_id -1 (the "
        "top-k still lists the model's guesses); 0: off. See docs/node.md for what a confidence "
        "threshold cannot catch.",
        dynamic=True,
        float_range=(0.0, 1.0),
    ),
    ParamSpec(
        "target_fps",
        0.0,
        "Frame rate to sustain; > 0 lets the node lower exit_threshold and max_resolution itself "
        "(within the parameters' values) to reach it. 0: off.",
        dynamic=True,
        float_range=(0.0, 10000.0),
    ),
    ParamSpec(
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
_SPECS = {spec.name: spec for spec in PARAMETERS}
_AFTER_MODEL = ("exit_threshold",)
"""Parameters of :data:`PARAMETERS` declared once the model is loaded (defaults from it)."""
# The parameters that are PipelineSettings fields (the others configure the node itself).
_PIPELINE_PARAMS = frozenset(
    {"window_size", "stride", "frame_step", "max_gap_s", "exit_threshold", "max_resolution",
     "allowed_resolutions", "skip_enabled", "top_k", "min_confidence", "policy", "gate"}
)


def _one_line(text: str, limit: int = 300) -> str:
    """The first line of ``text``, cut to ``limit`` characters (start-up errors are one line)."""
    line = text.strip().splitlines()[0] if text.strip() else text
    return line if len(line) <= limit else line[: limit - 3] + "..."


class RseeNode(Node):
    """The RSEE action recognition node; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        try:
            p = declare_parameters(self, [s for s in PARAMETERS if s.name not in _AFTER_MODEL])
        except ValueError as exc:
            raise StartupError(f"invalid parameters: {exc}") from None
        engine = self._load_engine(p)
        self.resolutions = list(engine.config.resolutions)
        self.pipeline = RecognitionPipeline(engine)
        try:
            self.control = SettingsControl(
                self.pipeline, self._user_settings(p, engine.metadata),
                target_fps=p["target_fps"]
            )
        except ValueError as exc:
            raise StartupError(f"invalid parameters: {exc}") from None
        self._pending: tuple[PipelineSettings, float] | None = None
        self._max_pixels: int = p["max_input_pixels"]

        self._actions_pub = self.create_publisher(ActionRecognition, "~/actions", 10)
        self._array_pub = self.create_publisher(ActionRecognitionArray, "~/actions_array", 10)
        self._label_pub = self.create_publisher(LabelInfo, "~/label_info", qos.latched())
        self._status_pub = self.create_publisher(RseeStatus, "~/status", 10)
        self._diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._label_pub.publish(to_label_info(
            engine.class_names, self.resolutions, stamp=self.get_clock().now().to_msg(),
            model_name=str(engine.metadata.get("name", "rsee")),
            backbone=engine.config.backbone, checkpoint=str(self.checkpoint_path),
        ))
        self._latest: dict[str, ActionRecognition] = {}

        self.worker = RecognitionWorker(
            self.pipeline, self.control, self._decode, self._publish,
            queue_depth=p["queue_size"], reject_errors=(ImageConversionError,),
            rejects=RejectCounter(self.get_logger(), period_s=5.0),
            drops=RejectCounter(self.get_logger(), period_s=5.0, what="frame"),
            restarts=RejectCounter(self.get_logger(), period_s=5.0, what="video",
                                   verb="restarted"),
        )
        self.status = StatusReporter(self.worker)
        self.cameras = CameraSubscriptions(
            self, p["image_topics"], self._on_image, reliability=p["qos_reliability"],
            depth=p["qos_depth"], lazy=p["lazy_subscription"], listeners=self._listeners,
        )
        self._refresh_timer = self.create_timer(CAMERA_REFRESH_S, self.cameras.refresh)
        self._timer = self.create_timer(p["diagnostics_period_s"], self._report)
        self.add_on_set_parameters_callback(self._check_parameters)
        if hasattr(self, "add_post_set_parameters_callback"):  # Jazzy and later
            self.add_post_set_parameters_callback(lambda _params: self._apply_pending())
        self.get_logger().info(
            f"{engine.config.num_classes} classes, resolutions {self.resolutions}, engine "
            f"{engine.describe()} ({self.checkpoint_path.name}); {self.exit_threshold_source}; "
            + ("subscribing while results are listened to: " if p["lazy_subscription"] else
               "listening on ") + self.cameras.describe()
        )

    # Setup ------------------------------------------------------------------------------------

    def _load_engine(self, p: dict[str, Any]) -> Any:
        """The model on the engine and device asked for (StartupError with one line
        otherwise)."""
        if p["qos_reliability"] not in QOS_CHOICES:
            raise StartupError(
                f"qos_reliability must be one of {QOS_CHOICES}, got {p['qos_reliability']!r}"
            )
        topics = [str(t).strip() for t in p["image_topics"] or []]
        if not topics or not all(topics):
            raise StartupError(f"image_topics must be a non-empty list of topics, got {topics}")
        p["image_topics"] = topics
        if p["num_threads"]:
            import torch

            torch.set_num_threads(p["num_threads"])
        self.checkpoint_path = self._checkpoint_path(p["checkpoint"])
        try:
            device = str(resolve_device(p["device"]))
            engine = load_engine(self.checkpoint_path, p["engine"], device=device,
                                 threads=max(1, p["num_threads"]),
                                 cache_dir=p["engine_cache_dir"] or None)
        except CheckpointError as exc:
            raise StartupError(_one_line(f"cannot load checkpoint {exc}")) from None
        except ExportError as exc:
            raise StartupError(_one_line(f"engine {p['engine']}: {exc}")) from None
        except (RuntimeError, ValueError) as exc:
            raise StartupError(_one_line(f"device or engine: {exc}")) from None
        self.device = device
        self.engine_name = engine.name
        return engine

    def _user_settings(self, p: dict[str, Any], metadata: dict[str, Any]) -> PipelineSettings:
        """The user's pipeline settings from the start-up parameter values (declaring those
        whose defaults come from the model, with its ``metadata``)."""
        self.declare_parameter("allowed_resolutions", self.resolutions, ParameterDescriptor(
            description=ALLOWED_RESOLUTIONS_DESCRIPTION, dynamic_typing=False,
            additional_constraints=f"subset of {self.resolutions}",
        ))
        p["allowed_resolutions"] = self.get_parameter("allowed_resolutions").value
        self._declare_exit_threshold(p, _operating_threshold(metadata))
        return PipelineSettings(**{
            name: self._setting(name, p[name]) for name in _PIPELINE_PARAMS
        })

    def _declare_exit_threshold(self, p: dict[str, Any], point: float | None) -> None:
        """Declare ``exit_threshold`` with the model's operating ``point`` as its default (when
        it has one; a value given still wins) and say which in :attr:`exit_threshold_source`."""
        spec = _SPECS["exit_threshold"]
        p.update(declare_parameters(self, [spec if point is None
                                           else replace(spec, default=point)]))
        value = p["exit_threshold"]
        if point is None:
            given = "the default" if value == spec.default else "given"
            source = f"{given}; the model has no operating point (rsee calibrate)"
        elif value == point:
            source = "the model's operating point"
        else:
            source = f"given; the model's operating point is {point:g}"
        self.exit_threshold_source = f"exit_threshold {value:g} ({source})"

    def _setting(self, name: str, value: Any) -> Any:
        """A parameter value as the pipeline setting of the same name (ValueError if bad)."""
        if name == "allowed_resolutions":
            if not value:
                raise ValueError("allowed_resolutions must be a non-empty list of the model's "
                                 f"resolutions {self.resolutions} (leave it out for all)")
            value = tuple(value)
            return () if sorted(value) == sorted(self.resolutions) else value  # () = all
        spec = _SPECS[name]
        return check_number(spec, value) if spec.is_number else value

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

    def _on_image(self, topic: str, msg: Image | CompressedImage) -> None:
        self.worker.submit(topic, msg, self.get_clock().now().nanoseconds,
                           stamp_ns(msg.header.stamp))

    # Parameters -------------------------------------------------------------------------------

    def _check_parameters(self, params: list[Parameter]) -> SetParametersResult:
        """Validate a parameter change (applied after it was accepted: _apply_pending)."""
        changes: dict[str, Any] = {}
        target = self.control.target_fps
        try:
            for param in params:
                if not param.name:  # rclpy lets an empty name through to the callbacks
                    raise ValueError("a parameter name must not be empty")
                if param.name in _PIPELINE_PARAMS:
                    changes[param.name] = self._setting(param.name, param.value)
                elif param.name == "target_fps":
                    target = check_number(_SPECS["target_fps"], param.value)
            user = self.control.check(**changes)
        except ValueError as exc:
            return refuse(self, [p.name for p in params], str(exc))
        self._pending = (user, target)
        if not hasattr(self, "add_post_set_parameters_callback"):  # Humble: apply now
            self._apply_pending()
        return SetParametersResult(successful=True)

    def _apply_pending(self) -> None:
        if self._pending is not None:
            user, target = self._pending
            self._pending = None
            self.control.apply(user, target_fps=target)

    # Frames and results -----------------------------------------------------------------------

    def _decode(self, arrival: Arrival) -> DecodedFrame:
        msg = arrival.payload
        convert = compressed_to_rgb if isinstance(msg, CompressedImage) else image_to_rgb
        rgb = convert(msg, max_pixels=self._max_pixels)
        return DecodedFrame(rgb, stamp_ns(msg.header.stamp), msg.header.frame_id)

    def _publish(self, results: list[WindowResult], arrival: Arrival) -> None:
        for result in results:
            out = to_action_recognition(result, latency_s=time.monotonic() - arrival.received)
            self._actions_pub.publish(out)
            self._latest[result.source] = out
            if self._array_pub.get_subscription_count():
                self._array_pub.publish(to_action_recognition_array(
                    list(self._latest.values()), self.get_clock().now().to_msg()
                ))

    def _listeners(self) -> int:
        return self._actions_pub.get_subscription_count() + (
            self._array_pub.get_subscription_count())

    def _report(self) -> None:
        snapshot = self.status.snapshot()
        stamp = self.get_clock().now().to_msg()
        self._status_pub.publish(to_rsee_status(snapshot, stamp, self.device))
        self._diag_pub.publish(to_diagnostic_array(
            snapshot, stamp, f"{self.get_fully_qualified_name()}: action recognition",
            self.device, self.cameras.problems,
        ))

    # Introspection (tests, tools) ---------------------------------------------------------------

    @property
    def frames_received(self) -> int:
        """Images received on all topics."""
        return self.worker.frames_received

    @property
    def frames_handled(self) -> int:
        """Images converted and pushed into the pipeline."""
        return self.worker.frames_handled

    @property
    def queue_length(self) -> int:
        """Images waiting in the queues now."""
        return len(self.worker.queue)

    @property
    def results_published(self) -> int:
        """ActionRecognition messages published."""
        return self.worker.results_published

    @property
    def rejects(self) -> RejectCounter:
        """Images refused (conversion failed, inference error), per reason."""
        return self.worker.rejects

    @property
    def drops(self) -> RejectCounter:
        """Images dropped from a full queue, per camera."""
        return self.worker.drops

    def idle(self) -> bool:
        """True when every received image has been handled, rejected or dropped."""
        return self.worker.idle()

    # Shutdown ---------------------------------------------------------------------------------

    def destroy_node(self) -> None:
        if hasattr(self, "worker"):
            self.worker.stop()
        if hasattr(self, "cameras"):
            self.cameras.close()
        super().destroy_node()


def _operating_threshold(metadata: dict[str, Any] | None) -> float | None:
    """The exit threshold of a model's operating point (``metadata["operating_point"]``, written
    by ``rsee calibrate``), or None."""
    value = ((metadata or {}).get("operating_point") or {}).get("threshold")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0.0 <= value <= 1.0 else None


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run rsee_ros rsee_node``; returns the exit status."""
    stop = process_stop_request()
    return run_node(NODE_NAME, RseeNode, args=args, stop=stop, startup_errors=(StartupError,))


if __name__ == "__main__":
    sys.exit(exit_status(main()))

