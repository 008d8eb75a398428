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

from rsee_ros.pipeline.runner import WindowResult

if TYPE_CHECKING:
    from builtin_interfaces.msg import Time

    from rsee_ros.msg import ActionRecognition, ActionRecognitionArray, LabelInfo

__all__ = [
    "action_fields",
    "split_ns",
    "to_action_recognition",
    "to_action_recognition_array",
    "to_label_info",
    "to_time",
]


def split_ns(stamp_ns: int) -> tuple[int, int]:
    """Nanoseconds -> (sec, nanosec) as in ``builtin_interfaces/Time``."""
    sec, nanosec = divmod(int(stamp_ns), 10**9)
    return sec, nanosec


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
