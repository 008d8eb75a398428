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
* a video file (PyAV; OpenCV when PyAV is missing), labelled per clip by ``clip_labels``;
* a folder of images (sorted by name; also a single image file);
* a rosbag2 folder or ``.mcap``/``.db3`` file, read with ``rosbags`` (no ROS installation needed):
  the ``sensor_msgs/Image`` or ``CompressedImage`` messages of ``bag_topic`` are decoded to rgb8.

The frame sources are plain Python classes (no rclpy) with a ``frames()`` iterator.
"""

from __future__ import annotations

from rsee_ros.ros.lifecycle import process_stop_request, run_node

if __name__ == "__main__":
    # Run as a program (python -m): signals become a stop request before the imports below,
    # which take seconds (torch), so a stop during start-up is a clean exit as well.
    process_stop_request()

import math
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
from builtin_interfaces.msg import Time
from rcl_interfaces.msg import IntegerRange, ParameterDescriptor, SetParametersResult
from rclpy.duration import Duration
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.task import Future
from sensor_msgs.msg import Image
from std_msgs.msg import Header, String

from rsee_ros.data.image_conversion import (
    ImageConversionError,
    compressed_to_rgb,
    image_to_rgb,
    rgb_to_image_msg,
)
from rsee_ros.pipeline.rejects import RejectCounter
from rsee_ros.resources import DEMO_LABELS, ClipLabels, load_clip_labels

NODE_NAME = "video_source"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm"})
BAG_SUFFIXES = frozenset({".mcap", ".db3"})
BAG_IMAGE_TYPES = frozenset({"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"})
SOURCE_TYPES = ("auto", "synthetic", "video", "images", "rosbag")
# Range of synthetic_num_classes: rsee_ros.data.synthetic's MIN_CLASSES..len(CLASS_NAMES) (that
# module is imported only when synthetic clips are rendered: it loads the whole data stack).
SYNTHETIC_CLASS_RANGE = (10, 14)
DEFAULT_FPS = 30.0  # for sources without a frame rate (synthetic, image folders)


class SourceError(RuntimeError):
    """A source that cannot be opened or read (reported without a traceback)."""


class SourceFrame(NamedTuple):
    """One frame of a source."""

    rgb: np.ndarray
    """(H, W, 3) uint8 RGB."""
    stamp_ns: int | None = None
    """Original stamp (rosbag header stamp), None when the source has none."""
    label: str | None = None
    """Clip label of labelled sources."""
    new_clip: bool = False
    """First frame of a clip (of each pass through a file source)."""


# Frame sources (no rclpy) ------------------------------------------------------------------------


class SyntheticClips:
    """Clips of the synthetic action data set (:mod:`rsee_ros.data.synthetic`), the classes the
    default model knows, rendered on the fly and labelled with their class name.

    ``action`` is one of the first ``num_classes`` of :data:`CLASS_NAMES` or ``"cycle"`` (one clip
    of each class, in label order, per pass). Clip ``i`` of class ``c`` is rendered from
    ``SeedSequence([seed, c, i])``, the data set generator's seeding, so seed ``s`` shows the
    videos of the data set made with seed ``s`` (pass ``i`` of a loop shows video ``i``).
    """

    fps: float | None = None

    def __init__(
        self,
        size: int = 128,
        clip_frames: int = 16,
        action: str = "cycle",
        seed: int = 0,
        num_classes: int = 12,
    ) -> None:
        from rsee_ros.data.synthetic import CLASS_NAMES, MIN_CLASSES, SyntheticConfig

        if size < 32 or clip_frames < 4:
            raise SourceError("synthetic clips need size >= 32 and clip_frames >= 4")
        if not MIN_CLASSES <= num_classes <= len(CLASS_NAMES):
            raise SourceError(f"synthetic_num_classes must be in {MIN_CLASSES}..{len(CLASS_NAMES)}")
        classes = CLASS_NAMES[:num_classes]
        if action != "cycle" and action not in classes:
            raise SourceError(f"unknown synthetic action {action!r}; use cycle or {classes}")
        self.size, self.clip_frames, self.seed = size, clip_frames, seed
        self.actions = classes if action == "cycle" else (action,)
        self._config = SyntheticConfig(
            seed=seed, num_classes=num_classes, frames_per_video=clip_frames, size=size
        )
        self._passes = 0

    def describe(self) -> str:
        what = self.actions[0] if len(self.actions) == 1 else f"{len(self.actions)} classes"
        return f"synthetic action clips {self.size}x{self.size} ({what})"

    def render(self, action: str, index: int = 0) -> np.ndarray:
        """Clip ``index`` of ``action``: (clip_frames, size, size, 3) uint8 RGB."""
        from rsee_ros.data.synthetic import CLASS_NAMES, render_video

        label = CLASS_NAMES.index(action)
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, label, index]))
        frames, _ = render_video(action, rng, self._config)
        return frames

    def frames(self) -> Iterator[SourceFrame]:
        index = self._passes
        self._passes += 1
        for action in self.actions:
            for i, rgb in enumerate(self.render(action, index)):
                yield SourceFrame(rgb, label=action, new_clip=i == 0)

    def close(self) -> None:
        pass


class VideoFileSource:
    """Frames of a video file, decoded with PyAV (OpenCV when PyAV is not installed).

    ``clips`` (a clip label file's content, :func:`rsee_ros.resources.load_clip_labels`) labels
    the frames and marks where each clip starts.
    """

    def __init__(self, path: str | Path, clips: ClipLabels | None = None) -> None:
        self.path = Path(path)
        self.clips = clips
        if not self.path.is_file():
            raise SourceError(f"no video file {str(self.path)!r}")
        self.fps: float | None = None
        try:
            import av
        except ImportError:
            self._av = None
            cap = cv2.VideoCapture(str(self.path))
            ok = cap.isOpened()
            self.fps = cap.get(cv2.CAP_PROP_FPS) or None
            cap.release()
            if not ok:
                raise SourceError(f"OpenCV cannot open {str(self.path)!r}") from None
            return
        self._av = av
        try:
            container = av.open(str(self.path))
        except Exception as exc:  # av.FFmpegError subclasses; its name varies across versions
            raise SourceError(f"cannot open {str(self.path)!r}: {exc}") from None
        with container:
            if not container.streams.video:
                raise SourceError(f"no video stream in {str(self.path)!r}")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate
            self.fps = float(rate) if rate else None

    def describe(self) -> str:
        clips = f", {len(self.clips.clips)} labelled clips" if self.clips else ""
        return f"video {str(self.path)!r}{clips}"

    def frames(self) -> Iterator[SourceFrame]:
        decoded = self._frames_pyav() if self._av is not None else self._frames_opencv()
        starts = {c.start for c in self.clips.clips} if self.clips else set()
        for i, rgb in enumerate(decoded):
            label = self.clips.label_at(i) if self.clips else None
            yield SourceFrame(rgb, label=label, new_clip=i == 0 or i in starts)

    def _frames_pyav(self) -> Iterator[np.ndarray]:
        with self._av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for frame in container.decode(stream):
                yield frame.to_ndarray(format="rgb24")

    def _frames_opencv(self) -> Iterator[np.ndarray]:
        cap = cv2.VideoCapture(str(self.path))
        try:
            while True:
                ok, bgr = cap.read()
                if not ok:
                    return
                yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        finally:
            cap.release()

    def close(self) -> None:
        pass


class ImageFolderSource:
    """The images of a folder, in name order (or a single image file)."""

    fps: float | None = None

    def __init__(self, path: str | Path, rejects: RejectCounter | None = None) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.files = sorted(
                p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
            )
        else:
            self.files = [self.path] if self.path.is_file() else []
        if not self.files:
            raise SourceError(f"no images in {str(self.path)!r}")
        self.rejects = rejects or RejectCounter(None)

    def describe(self) -> str:
        return f"{len(self.files)} images in {str(self.path)!r}"

    def frames(self) -> Iterator[SourceFrame]:
        first = True
        for path in self.files:
            bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if bgr is None:
                self.rejects.reject("decode_failed", str(path))
                continue
            yield SourceFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), new_clip=first)
            first = False

    def close(self) -> None:
        pass


class RosbagSource:
    """Image or CompressedImage messages of one topic of a rosbag2, read with ``rosbags``.

    ``topic`` empty: the bag's only image topic (the first by name when there are several).
    ``fps`` is the topic's mean rate over the bag's duration.
    """

    def __init__(
        self, path: str | Path, topic: str = "", rejects: RejectCounter | None = None
    ) -> None:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        self.path = Path(path)
        bag = self.path
        if bag.is_file() and (bag.parent / "metadata.yaml").is_file():
            bag = bag.parent
        self.rejects = rejects or RejectCounter(None)
        try:
            # The default typestore is only used for bags that do not store their definitions.
            self._reader = AnyReader([bag], default_typestore=get_typestore(Stores.LATEST))
            self._reader.open()
        except Exception as exc:  # rosbags raises several unrelated error types
            raise SourceError(f"cannot open rosbag {str(self.path)!r}: {exc}") from None
        images = sorted({c.topic for c in self._reader.connections if c.msgtype in BAG_IMAGE_TYPES})
        if not topic:
            if not images:
                self.close()
                raise SourceError(f"no Image/CompressedImage topic in {str(self.path)!r}")
            topic = images[0]
        elif topic not in images:
            self.close()
            raise SourceError(f"no image topic {topic!r} in {str(self.path)!r}; has {images}")
        self.topic = topic
        self.image_topics = images
        self._connections = [c for c in self._reader.connections if c.topic == topic]
        count = sum(c.msgcount for c in self._connections)
        duration_s = self._reader.duration * 1e-9
        self.fps = (count - 1) / duration_s if count > 1 and duration_s > 0 else None

    def describe(self) -> str:
        return f"rosbag {str(self.path)!r} topic {self.topic}"

    def frames(self) -> Iterator[SourceFrame]:
        first = True
        for conn, bag_ns, raw in self._reader.messages(connections=self._connections):
            try:
                msg = self._reader.deserialize(raw, conn.msgtype)
                if conn.msgtype.endswith("/CompressedImage"):
                    rgb = compressed_to_rgb(msg)
                else:
                    rgb = image_to_rgb(msg)
            except ImageConversionError as exc:
                self.rejects.reject(exc.reason, exc.detail)
                continue
            stamp_ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
            yield SourceFrame(rgb, stamp_ns=stamp_ns or bag_ns, new_clip=first)
            first = False

    def close(self) -> None:
        self._reader.close()


FrameSource = SyntheticClips | VideoFileSource | ImageFolderSource | RosbagSource


def detect_source_type(source: str) -> str:
    """Guess the kind of ``source``: one of :data:`SOURCE_TYPES` other than auto."""
    if source in ("", "synthetic"):
        return "synthetic"
    if source == "demo":
        return "video"
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"source {source!r} does not exist")
    if path.is_dir():
        if (path / "metadata.yaml").is_file() or any(
            p.suffix in BAG_SUFFIXES for p in path.iterdir()
        ):
            return "rosbag"
        return "images"
    suffix = path.suffix.lower()
    if suffix in BAG_SUFFIXES:
        return "rosbag"
    if suffix in IMAGE_SUFFIXES:
        return "images"
    return "video"


def resize_to_width(rgb: np.ndarray, width: int) -> np.ndarray:
    """Resize to ``width`` keeping the aspect ratio (no-op for 0 or the same width)."""
    h, w = rgb.shape[:2]
    if width <= 0 or width == w:
        return rgb
    height = max(1, round(h * width / w))
    interp = cv2.INTER_AREA if width < w else cv2.INTER_LINEAR
    return cv2.resize(rgb, (width, height), interpolation=interp)


# The node --------------------------------------------------------------------------------------


class _Param(NamedTuple):
    name: str
    default: Any
    description: str
    dynamic: bool = False
    """Changeable at run time (the others are read-only once the node runs)."""
    int_range: tuple[int, int] | None = None
    constraints: str = ""


PARAMETERS = (
    _Param(
        "source",
        "synthetic",
        "'synthetic', 'demo' (the embedded demo clip), a video file, a folder of images or a "
        "rosbag2 (folder, .mcap, .db3).",
    ),
    _Param(
        "source_type",
        "auto",
        "Kind of source; auto guesses it from the path.",
        constraints="one of " + ", ".join(SOURCE_TYPES),
    ),
    _Param("topic", "/camera/image_raw", "Topic of the published images."),
    _Param("bag_topic", "", "Image topic read from a rosbag; empty: the bag's first one."),
    _Param(
        "fps",
        0.0,
        "Publishing rate in Hz; 0: the source's rate (30 when it has none).",
        dynamic=True,
        constraints=">= 0",
    ),
    _Param("loop", False, "Start again at the end of the source.", dynamic=True),
    _Param("frame_id", "camera", "header.frame_id of the images.", dynamic=True),
    _Param("use_original_stamps", False, "Stamp with a rosbag's header stamps, not the time now."),
    _Param(
        "resize_width",
        0,
        "Resize frames to this width, keeping the aspect ratio; 0: no resizing.",
        dynamic=True,
        int_range=(0, 8192),
    ),
    _Param(
        "max_frames",
        0,
        "Stop after publishing this many frames; 0: no limit.",
        int_range=(0, 2**31 - 1),
    ),
    _Param(
        "duration_s",
        0.0,
        "Stop this many seconds after the first frame; 0: no limit.",
        constraints=">= 0",
    ),
    _Param(
        "label",
        "",
        "Ground-truth label published on ~/ground_truth; empty: the source's own labels "
        "(synthetic clips) or none.",
    ),
    _Param(
        "clip_pause_s",
        0.0,
        "Pause between clips and between loops (longer than a consumer's gap threshold: each "
        "clip starts a new video there).",
        constraints=">= 0",
    ),
    _Param(
        "qos_reliability",
        "reliable",
        "Reliability of the image publisher.",
        constraints="reliable or best_effort",
    ),
    _Param("qos_depth", 10, "History depth of the image publisher.", int_range=(1, 1000)),
    _Param("wait_for_subscribers", False, "Publish nothing until the topic has a subscriber."),
    _Param(
        "wait_for_label_subscriber",
        False,
        "With wait_for_subscribers: also wait for a subscriber on ~/ground_truth, so a listener "
        "that scores results receives each label when its clip starts.",
    ),
    _Param(
        "clip_labels",
        "",
        "Clip label file (YAML, frame ranges) of a video source; labels go to ~/ground_truth. "
        "Default for source demo: the demo clip's.",
    ),
    _Param("synthetic_size", 128, "Side of the square synthetic clips.", int_range=(32, 4096)),
    _Param("synthetic_clip_frames", 16, "Frames per synthetic clip.", int_range=(4, 100000)),
    _Param(
        "synthetic_action",
        "cycle",
        "Class of the synthetic clips.",
        constraints="cycle (one clip of each class in turn) or a class of the synthetic set "
        "(grow, shrink, split, ...: rsee_ros.data.synthetic.CLASS_NAMES)",
    ),
    _Param(
        "synthetic_num_classes",
        12,
        "Classes of the synthetic set in the cycle (the default model knows 12).",
        int_range=SYNTHETIC_CLASS_RANGE,
    ),
    _Param("synthetic_seed", 0, "Seed of the synthetic clips.", int_range=(0, 2**31 - 1)),
)
"""The node's parameters."""


# Seconds-valued parameters: declared with dynamic typing so that `-p fps:=10` (an integer on the
# command line) is accepted as well as `fps:=10.0`; checked by _check_number.
_NUMBER_PARAMS = ("fps", "duration_s", "clip_pause_s")


def _check_number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return float(value)


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

        qos = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=p["qos_depth"],
            reliability=ReliabilityPolicy.RELIABLE
            if p["qos_reliability"] == "reliable"
            else ReliabilityPolicy.BEST_EFFORT,
        )
        self._image_pub = self.create_publisher(Image, p["topic"], qos)
        latched = QoSProfile(
            history=HistoryPolicy.KEEP_LAST,
            depth=1,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self._label_pub = self.create_publisher(String, "~/ground_truth", latched)

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
        for spec in PARAMETERS:
            descriptor = ParameterDescriptor(
                description=spec.description,
                read_only=not spec.dynamic,
                additional_constraints=spec.constraints,
                dynamic_typing=spec.name in _NUMBER_PARAMS,
            )
            if spec.int_range is not None:
                lo, hi = spec.int_range
                descriptor.integer_range = [IntegerRange(from_value=lo, to_value=hi, step=1)]
            self.declare_parameter(spec.name, spec.default, descriptor)
        values = {spec.name: self.get_parameter(spec.name).value for spec in PARAMETERS}
        try:
            for name in _NUMBER_PARAMS:
                values[name] = _check_number(name, values[name])
        except ValueError as exc:
            raise SourceError(str(exc)) from None
        if values["qos_reliability"] not in ("reliable", "best_effort"):
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
                p.name: _check_number(p.name, p.value) if p.name in _NUMBER_PARAMS else p.value
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
            header.stamp = Time(sec=frame.stamp_ns // 10**9, nanosec=frame.stamp_ns % 10**9)
        else:
            header.stamp = self.get_clock().now().to_msg()
        rgb = resize_to_width(frame.rgb, self._resize_width)
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
    sys.exit(main())
