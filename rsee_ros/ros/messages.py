"""Building the rsee_ros messages from pipeline results.

:func:`action_fields` maps a :class:`~rsee_ros.pipeline.runner.WindowResult` to the fields of
``rsee_ros/msg/ActionRecognition`` as plain data; the node turns them into rclpy messages
(:func:`to_action_recognition`) and ``rsee eval-bag`` into ``rosbags`` messages, so both publish
the same values. The ROS message packages are imported inside the rclpy builders only: this module
loads without ROS (``rsee eval-bag`` needs no ROS installation).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from rsee_ros.data.stamps import split_ns
from rsee_ros.pipeline.runner import WindowResult

if TYPE_CHECKING:
    from builtin_interfaces.msg import Time
    from diagnostic_msgs.msg import DiagnosticArray

    from rsee_ros.msg import ActionRecognition, ActionRecognitionArray, LabelInfo, RseeStatus
    from rsee_ros.pipeline.status import StatusSnapshot

__all__ = [
    "action_fields",
    "split_ns",
    "to_action_recognition",
    "to_action_recognition_array",
    "to_diagnostic_array",
    "to_label_info",
    "to_rsee_status",
    "status_values",
    "to_time",
]


def action_fields(result: WindowResult, latency_s: float | None = None) -> dict[str, Any]:
    """The ActionRecognition fields of ``result`` as plain data.

    Stamps are ``(sec, nanosec)`` tuples, arrays are numpy arrays of the message's element type.
    ``latency_s`` overrides ``result.latency_s`` (the node measures up to publication).
    """
    latency = result.latency_s if latency_s is None else latency_s
    return {
        "header": {"stamp": split_ns(result.last_stamp_ns), "frame_id": result.frame_id},
        "source_topic": result.source,
        "label": result.label,
        "class_id": result.class_id,
        "confidence": float(result.confidence),
        "top_k_labels": [label for label, _ in result.top_k],
        "top_k_scores": np.array([score for _, score in result.top_k], np.float32),
        "window_start": split_ns(result.first_stamp_ns),
        "window_end": split_ns(result.last_stamp_ns),
        "resolutions": np.array(result.resolutions, np.uint16),
        "frames_processed": result.frames_processed,
        "window_length": result.window_length,
        "exited_early": bool(result.exited_early),
        "window_complete": bool(result.complete),
        "gflops": float(result.gflops),
        "uniform_gflops": float(result.uniform_gflops),
        "latency_ms": float(latency * 1e3),
    }


def to_time(stamp: tuple[int, int]) -> Time:
    """A ``builtin_interfaces/Time`` from ``(sec, nanosec)``."""
    from builtin_interfaces.msg import Time

    return Time(sec=int(stamp[0]), nanosec=int(stamp[1]))


def to_action_recognition(
    result: WindowResult, latency_s: float | None = None
) -> ActionRecognition:
    """An rclpy ``rsee_ros/ActionRecognition`` for ``result``."""
    from std_msgs.msg import Header

    from rsee_ros.msg import ActionRecognition

    f = action_fields(result, latency_s)
    msg = ActionRecognition()
    msg.header = Header(stamp=to_time(f["header"]["stamp"]), frame_id=f["header"]["frame_id"])
    msg.source_topic = f["source_topic"]
    msg.label = f["label"]
    msg.class_id = f["class_id"]
    msg.confidence = f["confidence"]
    msg.top_k_labels = f["top_k_labels"]
    msg.top_k_scores = f["top_k_scores"].tolist()
    msg.window_start = to_time(f["window_start"])
    msg.window_end = to_time(f["window_end"])
    msg.resolutions = f["resolutions"].tolist()
    msg.frames_processed = f["frames_processed"]
    msg.window_length = f["window_length"]
    msg.exited_early = f["exited_early"]
    msg.window_complete = f["window_complete"]
    msg.gflops = f["gflops"]
    msg.uniform_gflops = f["uniform_gflops"]
    msg.latency_ms = f["latency_ms"]
    return msg


def to_action_recognition_array(
    messages: Iterable[ActionRecognition], stamp: Time, frame_id: str = ""
) -> ActionRecognitionArray:
    """An ``ActionRecognitionArray`` holding ``messages``."""
    from std_msgs.msg import Header

    from rsee_ros.msg import ActionRecognitionArray

    return ActionRecognitionArray(
        header=Header(stamp=stamp, frame_id=frame_id), results=list(messages)
    )


def to_label_info(
    class_names: Sequence[str],
    resolutions: Sequence[int],
    *,
    stamp: Time,
    model_name: str,
    backbone: str,
    checkpoint: str,
) -> LabelInfo:
    """The latched ``LabelInfo`` describing the model."""
    from std_msgs.msg import Header

    from rsee_ros.msg import LabelInfo

    return LabelInfo(
        header=Header(stamp=stamp),
        class_names=[str(c) for c in class_names],
        class_ids=list(range(len(class_names))),
        model_name=model_name,
        backbone=backbone,
        resolutions=[int(r) for r in resolutions],
        checkpoint=checkpoint,
    )


def to_rsee_status(snapshot: StatusSnapshot, stamp: Time, device: str) -> RseeStatus:
    """The ``RseeStatus`` of a status snapshot."""
    from std_msgs.msg import Header

    from rsee_ros.msg import RseeStatus

    s = snapshot
    return RseeStatus(
        header=Header(stamp=stamp),
        input_fps=float(s.input_fps),
        processed_fps=float(s.processed_fps),
        frames_dropped=s.frames_dropped,
        frames_rejected=s.frames_rejected,
        frames_missing=s.frames_missing,
        latency_p50_ms=float(s.latency_p50_ms),
        latency_p99_ms=float(s.latency_p99_ms),
        mean_gflops=float(s.mean_gflops),
        exit_threshold=float(s.exit_threshold),
        max_resolution=int(s.max_resolution),
        capacity_fps=float(s.capacity_fps),
        target_fps=float(s.target_fps),
        results_published=s.results_published,
        device=device,
    )


def status_values(snapshot: StatusSnapshot, device: str) -> dict[str, str]:
    """The key/value pairs of the node's diagnostic status."""
    s = snapshot
    return {
        "input_fps": f"{s.input_fps:.2f}",
        "processed_fps": f"{s.processed_fps:.2f}",
        "capacity_fps": f"{s.capacity_fps:.2f}",
        "target_fps": f"{s.target_fps:g}",
        "frames_received": str(s.frames_received),
        **{f"received {source}": str(n) for source, n in sorted(s.received_per_source.items())},
        "frames_handled": str(s.frames_handled),
        "frames_dropped": str(s.frames_dropped),
        **{f"dropped {source}": str(n) for source, n in sorted(s.drops_per_source.items())},
        "frames_rejected": str(s.frames_rejected),
        "frames_missing_estimate": str(s.frames_missing),
        **{f"missing {source}": str(n) for source, n in sorted(s.missing_per_source.items())
           if n},
        **{f"rejected {reason}": str(n) for reason, n in sorted(s.rejects_per_reason.items())},
        "results_published": str(s.results_published),
        "results_unknown": str(s.results_unknown),
        "latency_p50_ms": f"{s.latency_p50_ms:.2f}",
        "latency_p99_ms": f"{s.latency_p99_ms:.2f}",
        "mean_gflops_per_window": f"{s.mean_gflops:.4f}",
        "mean_uniform_gflops_per_window": f"{s.mean_uniform_gflops:.4f}",
        "exit_threshold": f"{s.exit_threshold:g}",
        "max_resolution": str(s.max_resolution),
        **{
            f"resolution {r or 'skipped'}": str(n)
            for r, n in sorted(s.resolution_histogram.items(), reverse=True)
        },
        "device": device,
    }


def to_diagnostic_array(
    snapshot: StatusSnapshot, stamp: Time, name: str, device: str,
    problems: dict[str, str] | None = None,
) -> DiagnosticArray:
    """``/diagnostics`` for a status snapshot: WARN when frames were dropped, rejected or went
    missing in its period, or a ``problems`` entry (topic -> text) exists; OK otherwise."""
    from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
    from std_msgs.msg import Header

    s = snapshot
    level, message = DiagnosticStatus.OK, "running"
    if not s.healthy:
        level = DiagnosticStatus.WARN
        message = (f"{s.period_dropped} frames dropped, {s.period_rejected} rejected, about "
                   f"{s.period_missing} missing in the last period")
    elif problems:
        level, message = DiagnosticStatus.WARN, "; ".join(problems.values())
    elif s.period_frames == 0:
        message = "no images"
    values = {**status_values(s, device), **{f"topic {t}": p for t, p in (problems or {}).items()}}
    status = DiagnosticStatus(
        level=level, name=name, message=message, hardware_id=device,
        values=[KeyValue(key=k, value=v) for k, v in values.items()],
    )
    return DiagnosticArray(header=Header(stamp=stamp), status=[status])
