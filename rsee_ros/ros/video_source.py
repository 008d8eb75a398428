"""ROS 2 node ``video_source``: publish a video, an image folder, a rosbag or a synthetic clip.

Frames go out as ``sensor_msgs/Image`` ``rgb8`` on ``topic`` (default ``/camera/image_raw``), at
the source's frame rate or ``fps``. For labelled clips the label is published on
``~/ground_truth`` (``std_msgs/String``, transient local: late joiners get the current label)
just before the first frame of each clip, so a demo can score accuracy.

Run it with ``ros2 run rsee_ros video_source --ros-args -p source:=clip.mp4`` or, without the
``ros2`` command line, ``python -m rsee_ros.ros.video_source --ros-args -p source:=clip.mp4``.

Sources (``source``, kind guessed unless ``source_type`` is given):

* ``synthetic`` (default): clips of the synthetic action data set (the classes of the default
  model) rendered on the fly, labelled with their class; no files needed.
* ``demo``: the embedded demo clip (held-out synthetic clips, ``rsee_ros/resources/demo/``) with
  its per-clip labels;
* a video file (PyAV, then OpenCV), labelled per clip by ``clip_labels``;
* a folder of images (sorted by name, numbers compared numerically; also a single image file);
* a rosbag2 folder or ``.mcap``/``.db3`` file, read with ``rosbags`` (no ROS installation needed):
  the ``sensor_msgs/Image`` or ``CompressedImage`` messages of ``bag_topic`` are decoded to rgb8.

The frame sources are :mod:`rsee_ros.data.sources` (no rclpy); this module is the node.

Over 400 lines because of its parameter table (PARAMETERS, about 120 lines).
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
from collections.abc import Iterator
from typing import Any

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import SetParametersResult
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import ReliabilityPolicy
from rclpy.task import Future
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from rsee_ros.data.image_conversion import rgb_to_image_msg
from rsee_ros.data.sources import (
    SOURCE_TYPES,
    FrameSource,
    ImageFolderSource,
    RosbagSource,
    SourceError,
    SourceFrame,
    SyntheticClips,
    VideoFileSource,
    detect_source_type,
)
from rsee_ros.data.stamps import split_ns
from rsee_ros.data.synthetic import (
    CLASS_NAMES,
    DEFAULT_MODEL_FRAME_SIZE,
    MIN_CLASSES,
    SyntheticConfig,
)
from rsee_ros.pipeline.rejects import RejectCounter
from rsee_ros.resources import DEMO_LABELS, load_clip_labels
from rsee_ros.ros.params import ParamSpec, check_number, declare_parameters
from rsee_ros.ros.qos import RELIABILITY_CHOICES, latched, stream

NODE_NAME = "video_source"
DEFAULT_FPS = 30.0  # for sources without a frame rate (synthetic, image folders)


def resize_frame(rgb: np.ndarray, width: int, height: int = 0) -> np.ndarray:
    """Resize to ``width`` x ``height``; a side of 0 follows the other one's scale (keeps the
    aspect ratio), both 0 or the frame's own size: no-op."""
    h, w = rgb.shape[:2]
    width, height = max(0, width), max(0, height)
    if not width and not height:
        return rgb
    width = width or max(1, round(w * height / h))
    height = height or max(1, round(h * width / w))
    if (width, height) == (w, h):
        return rgb
    interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, height), interpolation=interp)


def resize_to_width(rgb: np.ndarray, width: int) -> np.ndarray:
    """Resize to ``width`` keeping the aspect ratio (no-op for 0 or the same width)."""
    return resize_frame(rgb, width)


# The node --------------------------------------------------------------------------------------


PARAMETERS = (
    ParamSpec(
        "source",
        "synthetic",
        "'synthetic', 'demo' (the embedded demo clip), a video file, a folder of images or a "
        "rosbag2 (folder, .mcap, .db3).",
    ),
    ParamSpec(
        "source_type",
        "auto",
        "Kind of source; auto guesses it from the path.",
        constraints="one of " + ", ".join(SOURCE_TYPES),
    ),
    ParamSpec("topic", "/camera/image_raw", "Topic of the published images."),
    ParamSpec("bag_topic", "", "Image topic read from a rosbag; empty: the bag's first one."),
    ParamSpec(
        "fps",
        0.0,
        "Publishing rate in Hz; 0: the source's rate (30 when it has none).",
        dynamic=True,
        constraints=">= 0",
        float_range=(0.0, math.inf),
    ),
    ParamSpec("loop", False, "Start again at the end of the source.", dynamic=True),
    ParamSpec("frame_id", "camera", "header.frame_id of the images.", dynamic=True),
    ParamSpec(
        "use_original_stamps", False, "Stamp with a rosbag's header stamps, not the time now."
    ),
    ParamSpec(
        "resize_width",
        0,
        "Resize frames to this width, keeping the aspect ratio; 0: no resizing.",
        dynamic=True,
        int_range=(0, 8192),
    ),
    ParamSpec(
        "resize_height",
        0,
        "Resize frames to this height (with resize_width: to exactly that size); 0: keep the "
        "aspect ratio (no resizing when resize_width is 0 too).",
        dynamic=True,
        int_range=(0, 8192),
    ),
    ParamSpec(
        "max_frames",
        0,
        "Stop after publishing this many frames; 0: no limit.",
        int_range=(0, 2**31 - 1),
    ),
    ParamSpec(
        "duration_s",
        0.0,
        "Stop this many seconds after the first frame; 0: no limit.",
        constraints=">= 0",
        float_range=(0.0, math.inf),
    ),
    ParamSpec(
        "label",
        "",
        "Ground-truth label published on ~/ground_truth; empty: the source's own labels "
        "(synthetic clips) or none.",
    ),
    ParamSpec(
        "clip_pause_s",
        0.0,
        "Pause between clips and between loops (longer than a consumer's gap threshold: each "
        "clip starts a new video there).",
        constraints=">= 0",
        float_range=(0.0, math.inf),
    ),
    ParamSpec(
        "qos_reliability",
        "reliable",
        "Reliability of the image publisher.",
        constraints="reliable or best_effort",
    ),
    ParamSpec("qos_depth", 10, "History depth of the image publisher.", int_range=(1, 1000)),
    ParamSpec("wait_for_subscribers", False, "Publish nothing until the topic has a subscriber."),
    ParamSpec(
        "wait_for_label_subscriber",
        False,
        "With wait_for_subscribers: also wait for a subscriber on ~/ground_truth, so a listener "
        "that scores results receives each label when its clip starts.",
    ),
    ParamSpec(
        "clip_labels",
        "",
        "Clip label file (YAML, frame ranges) of a video source; labels go to ~/ground_truth. "
        "Default for source demo: the demo clip's.",
    ),
    ParamSpec(
        "synthetic_size",
        DEFAULT_MODEL_FRAME_SIZE,  # the default model's set (128), not the generator's 224
        "Side of the square synthetic clips.",
        int_range=(32, 4096),
    ),
    ParamSpec(
        "synthetic_clip_frames",
        SyntheticConfig.frames_per_video,
        "Frames per synthetic clip.",
        int_range=(4, 100000),
    ),
    ParamSpec(
        "synthetic_action",
        "cycle",
        "Class of the synthetic clips.",
        constraints="cycle (one clip of each class in turn) or a class of the synthetic set "
        "(grow, shrink, split, ...: rsee_ros.data.synthetic.CLASS_NAMES)",
    ),
    ParamSpec(
        "synthetic_num_classes",
        SyntheticConfig.num_classes,
        "Classes of the synthetic set in the cycle (the default model knows 12).",
        int_range=(MIN_CLASSES, len(CLASS_NAMES)),
    ),
    ParamSpec(
        "synthetic_seed", SyntheticConfig.seed, "Seed of the synthetic clips.",
        int_range=(0, 2**31 - 1),
    ),
)
"""The node's parameters."""


# Seconds and rates: declared with dynamic typing, so `-p fps:=10` (an integer on the command line)
# is accepted as well as `fps:=10.0`; checked by check_number at start-up and when set.
_NUMBERS = {spec.name: spec for spec in PARAMETERS if spec.is_number}


class VideoSource(Node):
    """Publishes the frames of a source as rgb8 images; see the module docstring."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        p = self._declare_parameters()
        self.rejects = RejectCounter(self.get_logger(), period_s=5.0)
        self.source = self._open_source(p)
        self._label_param: str = p["label"]
        self._frame_id: str = p["frame_id"]
        self._loop: bool = p["loop"]
        self._resize_width: int = p["resize_width"]
        self._resize_height: int = p["resize_height"]
        self._max_frames: int = p["max_frames"]
        self._duration_s: float = p["duration_s"]
        self._clip_pause_s: float = p["clip_pause_s"]
        self._fps_param: float = p["fps"]
        self._original_stamps: bool = p["use_original_stamps"]
        self._wait_for_subscribers: bool = p["wait_for_subscribers"]
        self._wait_for_label_subscriber: bool = p["wait_for_label_subscriber"]
        if self._original_stamps and not isinstance(self.source, RosbagSource):
            self.get_logger().warning("use_original_stamps applies to rosbags only: using now")
            self._original_stamps = False

        self._image_pub = self.create_publisher(
            Image, p["topic"], stream(p["qos_reliability"], p["qos_depth"])
        )
        self._label_pub = self.create_publisher(String, "~/ground_truth", latched())

        self.done = Future()  # completed when the node stops by itself
        self.failed = False
        self.published = 0
        self._frames: Iterator[SourceFrame] | None = None
        self._pass_frames = 0
        self._pending: SourceFrame | None = None
        self._resume_at: float | None = None
        self._started_at: float | None = None
        self._label: str | None = None
        self._waiting_logged = False
        self._timer = self.create_timer(1.0 / self.fps, self._on_timer)
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self.get_logger().info(
            f"publishing {self.source.describe()} on {self._image_pub.topic_name} at "
            f"{self.fps:g} fps ({p['qos_reliability']}){', looping' if self._loop else ''}"
        )

    # Setup ------------------------------------------------------------------------------------

    def _declare_parameters(self) -> dict[str, Any]:
        try:
            values = declare_parameters(self, PARAMETERS)
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        if values["qos_reliability"] not in RELIABILITY_CHOICES:
            got = values["qos_reliability"]
            raise SourceError(f"qos_reliability must be reliable or best_effort, got {got!r}")
        if values["source_type"] not in SOURCE_TYPES:
            raise SourceError(f"source_type must be one of {SOURCE_TYPES}")
        return values

    def _open_source(self, p: dict[str, Any]) -> FrameSource:
        kind = p["source_type"]
        if kind == "auto":
            kind = detect_source_type(p["source"])
        if kind == "synthetic":
            return SyntheticClips(
                p["synthetic_size"],
                p["synthetic_clip_frames"],
                p["synthetic_action"],
                p["synthetic_seed"],
                p["synthetic_num_classes"],
            )
        if kind == "video":
            labels_file = p["clip_labels"] or (DEMO_LABELS if p["source"] == "demo" else "")
            clips = None
            if labels_file:
                try:
                    clips = load_clip_labels(labels_file)
                except (OSError, ValueError) as exc:
                    raise SourceError(f"clip_labels: {exc}") from None
            video = clips.video if p["source"] == "demo" and clips else p["source"]
            return VideoFileSource(video, clips)
        if kind == "images":
            return ImageFolderSource(p["source"], self.rejects)
        return RosbagSource(p["source"], p["bag_topic"], self.rejects)

    @property
    def fps(self) -> float:
        """The publishing rate in effect."""
        return self._fps_param or self.source.fps or DEFAULT_FPS

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        try:
            checked = {
                p.name: check_number(_NUMBERS[p.name], p.value) if p.name in _NUMBERS else p.value
                for p in params
            }
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        for name, value in checked.items():
            if name == "fps":
                self._fps_param = value
                if not self.done.done():
                    self.destroy_timer(self._timer)
                    self._timer = self.create_timer(1.0 / self.fps, self._on_timer)
            elif name == "loop":
                self._loop = value
            elif name == "frame_id":
                self._frame_id = value
            elif name == "resize_width":
                self._resize_width = value
            elif name == "resize_height":
                self._resize_height = value
        return SetParametersResult(successful=True)

    # Publishing -------------------------------------------------------------------------------

    def _subscribers_ready(self) -> bool:
        if self._image_pub.get_subscription_count() == 0:
            return False
        return not self._wait_for_label_subscriber or self._label_pub.get_subscription_count() > 0

    def _on_timer(self) -> None:
        if self.done.done():
            return
        if self._wait_for_subscribers and not self._subscribers_ready():
            if not self._waiting_logged:
                topics = [self._image_pub.topic_name]
                if self._wait_for_label_subscriber:
                    topics.append(self._label_pub.topic_name)
                self.get_logger().info(f"waiting for subscribers on {', '.join(topics)}")
                self._waiting_logged = True
            return
        now = time.monotonic()
        if self._resume_at is not None and now < self._resume_at:
            return
        frame = self._pending if self._pending is not None else self._next_frame()
        if frame is None:
            return
        if frame.new_clip and self._pending is None and self.published and self._clip_pause_s > 0:
            self._pending, self._resume_at = frame, now + self._clip_pause_s
            return
        self._pending = self._resume_at = None
        self._publish(frame)
        if self._started_at is None:
            self._started_at = now
        if self._max_frames and self.published >= self._max_frames:
            self._finish(f"published max_frames={self._max_frames}")
        elif self._duration_s and now - self._started_at >= self._duration_s:
            self._finish(f"ran for duration_s={self._duration_s:g}")

    def _next_frame(self) -> SourceFrame | None:
        """The next frame, starting a new pass when looping; None (and finish) at the end."""
        for _ in range(2):
            if self._frames is None:
                self._frames = self.source.frames()
                self._pass_frames = 0
            try:
                frame = next(self._frames)
            except StopIteration:
                self._frames = None
                if self._loop and self._pass_frames:
                    continue
                if not self._pass_frames:
                    self.failed = True
                self._finish("end of source" if self._pass_frames else "the source has no frames")
                return None
            except Exception as exc:  # a decoder failing half-way (corrupt file, I/O error)
                self.failed = True
                self._finish(f"reading the source failed: {exc}")
                return None
            self._pass_frames += 1
            return frame
        return None

    def _publish(self, frame: SourceFrame) -> None:
        label = self._label_param or frame.label
        if label and (label != self._label or frame.new_clip):
            self._label_pub.publish(String(data=label))
            self._label = label
        header = Header(frame_id=self._frame_id)
        if self._original_stamps and frame.stamp_ns is not None:
            sec, nanosec = split_ns(frame.stamp_ns)
            header.stamp = Time(sec=sec, nanosec=nanosec)
        else:
            header.stamp = self.get_clock().now().to_msg()
        rgb = resize_frame(frame.rgb, self._resize_width, self._resize_height)
        self._image_pub.publish(rgb_to_image_msg(rgb, "rgb8", header))
        self.published += 1

    def _finish(self, why: str) -> None:
        log = self.get_logger().error if self.failed else self.get_logger().info
        log(f"{why}; {self.published} frames published, stopping")
        self._timer.cancel()
        if not self.done.done():
            self.done.set_result(why)

    def wait_for_delivery(self, timeout_s: float = 1.0) -> bool:
        """Wait until reliable subscribers acknowledged every published frame."""
        if self._image_pub.qos_profile.reliability != ReliabilityPolicy.RELIABLE:
            return True
        return self._image_pub.wait_for_all_acked(Duration(nanoseconds=int(timeout_s * 1e9)))

    def destroy_node(self) -> None:
        close = getattr(self._frames, "close", None)
        if close is not None:
            close()  # end the generator now: closes its file / decoder
        self.source.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Entry point of ``ros2 run rsee_ros video_source``; returns the exit status."""
    stop = process_stop_request()
    return run_node(
        NODE_NAME, VideoSource, args=args, stop=stop, done=lambda node: node.done.done(),
        finish=_finish, startup_errors=(SourceError,),
    )


def _finish(node: VideoSource, stopped: bool) -> int:
    """Exit status once spinning ended; lets reliable subscribers get the last frames."""
    if node.failed:
        return 1
    if node.published:
        node.wait_for_delivery(1.0)
    return 0


if __name__ == "__main__":
    sys.exit(exit_status(main()))
