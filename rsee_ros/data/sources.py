"""Frame sources: synthetic clips, a video file, an image folder, a rosbag2 image topic.

Every source has the small interface of :class:`FrameSource` (``fps``, ``describe()``,
``frames()`` yielding :class:`SourceFrame`, ``close()``); ``video_source`` publishes one and the
node benchmark replays their frames. Plain Python, no ROS: decoding is
:mod:`rsee_ros.data.video`'s (PyAV, then OpenCV), bags are read by :mod:`rsee_ros.data.bag`.
A source that cannot be opened raises :class:`SourceError`; images that cannot be decoded are
counted per reason in a :class:`~rsee_ros.pipeline.rejects.RejectCounter` and skipped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from rsee_ros.data.bag import BAG_SUFFIXES, Bag, BagError
from rsee_ros.data.image_conversion import DECODE_FAILED
from rsee_ros.data.synthetic import (
    CLASS_NAMES,
    DEFAULT_MODEL_FRAME_SIZE,
    MIN_CLASSES,
    SyntheticConfig,
    render_video,
)
from rsee_ros.data.video import (
    IMAGE_EXTENSIONS,
    VideoDecodeError,
    iter_frames,
    list_frame_files,
    probe_video,
    read_image,
)
from rsee_ros.pipeline.rejects import RejectCounter
from rsee_ros.resources import ClipLabels

__all__ = [
    "SOURCE_TYPES",
    "CameraSource",
    "FrameSource",
    "ImageFolderSource",
    "RosbagSource",
    "SourceError",
    "SourceFrame",
    "SyntheticClips",
    "VideoFileSource",
    "detect_source_type",
]

SOURCE_TYPES = ("auto", "synthetic", "video", "images", "rosbag")
"""Kinds of source; ``auto``: :func:`detect_source_type`."""


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


@runtime_checkable
class FrameSource(Protocol):
    """What every frame source offers."""

    fps: float | None
    """The source's frame rate; None when it has none."""

    def describe(self) -> str:
        """A short description for logs."""
        ...

    def frames(self) -> Iterator[SourceFrame]:
        """One pass over the source's frames; each call starts a new pass."""
        ...

    def close(self) -> None:
        """Release files and decoders."""
        ...


class SyntheticClips:
    """Clips of the synthetic action data set (:mod:`rsee_ros.data.synthetic`), the classes the
    default model knows, rendered on the fly and labelled with their class name.

    ``action`` is one of the first ``num_classes`` of :data:`CLASS_NAMES` or ``"cycle"`` (one clip
    of each class, in label order, per pass). Clip ``i`` of class ``c`` is rendered from
    ``SeedSequence([seed, c, i])``, the data set generator's seeding, so seed ``s`` shows the
    videos of the data set made with seed ``s`` (pass ``i`` of a loop shows video ``i``).
    Defaults: the default model's set (``size`` 128 px, see :data:`DEFAULT_MODEL_FRAME_SIZE`).
    """

    fps: float | None = None

    def __init__(
        self,
        size: int = DEFAULT_MODEL_FRAME_SIZE,
        clip_frames: int = SyntheticConfig.frames_per_video,
        action: str = "cycle",
        seed: int = SyntheticConfig.seed,
        num_classes: int = SyntheticConfig.num_classes,
    ) -> None:
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
    """Frames of a video file, decoded by :mod:`rsee_ros.data.video` (PyAV, then OpenCV).

    ``clips`` (a clip label file's content, :func:`rsee_ros.resources.load_clip_labels`) labels
    the frames and marks where each clip starts.
    """

    def __init__(self, path: str | Path, clips: ClipLabels | None = None) -> None:
        self.path = Path(path)
        self.clips = clips
        if not self.path.is_file():
            raise SourceError(f"no video file {str(self.path)!r}")
        try:
            self.fps: float | None = probe_video(self.path, count_frames=False).fps
        except VideoDecodeError as exc:
            raise SourceError(str(exc)) from None

    def describe(self) -> str:
        clips = f", {len(self.clips.clips)} labelled clips" if self.clips else ""
        return f"video {str(self.path)!r}{clips}"

    def frames(self) -> Iterator[SourceFrame]:
        starts = {c.start for c in self.clips.clips} if self.clips else set()
        for i, rgb in enumerate(iter_frames(self.path)):
            label = self.clips.label_at(i) if self.clips else None
            yield SourceFrame(rgb, label=label, new_clip=i == 0 or i in starts)

    def close(self) -> None:
        pass


class ImageFolderSource:
    """The images of a folder, in the order of :func:`rsee_ros.data.video.list_frame_files`
    (by name, numbers compared numerically), or a single image file. Unreadable images are
    counted as ``decode_failed`` rejects and skipped."""

    fps: float | None = None

    def __init__(self, path: str | Path, rejects: RejectCounter | None = None) -> None:
        self.path = Path(path)
        if self.path.is_dir():
            self.files = list_frame_files(self.path)
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
            try:
                rgb = read_image(path)
            except VideoDecodeError:
                self.rejects.reject(DECODE_FAILED, str(path))
                continue
            yield SourceFrame(rgb, new_clip=first)
            first = False

    def close(self) -> None:
        pass


class RosbagSource:
    """Image or CompressedImage messages of one topic of a rosbag2 (:class:`~.bag.Bag`).

    ``topic`` empty: the bag's only image topic (the first by name when there are several).
    ``fps`` is the topic's mean rate over the bag's duration. Frames are stamped with their
    header stamps (the recording time when a stamp is zero); messages that cannot be decoded are
    counted in ``rejects`` by reason and skipped.
    """

    def __init__(
        self, path: str | Path, topic: str = "", rejects: RejectCounter | None = None
    ) -> None:
        self.path = Path(path)
        self.rejects = rejects or RejectCounter(None)
        try:
            self._bag = Bag(self.path)
        except BagError as exc:
            raise SourceError(str(exc)) from None
        try:
            self.topic = self._bag.choose_topic(topic or None, first_by_name=True)
        except BagError as exc:
            self.close()
            raise SourceError(str(exc)) from None
        self.image_topics = sorted(self._bag.image_topics)
        count = self._bag.message_count(self.topic)
        duration_s = self._bag.duration_ns * 1e-9
        self.fps = (count - 1) / duration_s if count > 1 and duration_s > 0 else None

    def describe(self) -> str:
        return f"rosbag {str(self.path)!r} topic {self.topic}"

    def frames(self) -> Iterator[SourceFrame]:
        first = True
        for frame in self._bag.frames([self.topic]):
            if frame.error is not None:
                self.rejects.reject(frame.error.reason, frame.error.detail)
                continue
            yield SourceFrame(frame.rgb, stamp_ns=frame.stamp_ns, new_clip=first)
            first = False

    def close(self) -> None:
        self._bag.close()


class CameraSource:
    """Frames of a camera device (OpenCV ``VideoCapture(index)``), until it stops delivering.

    Frames are stamped with the wall clock at capture (the device gives no stamps of its own).
    """

    def __init__(self, index: int) -> None:
        import cv2

        self.index = index
        self._cap = cv2.VideoCapture(index)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"cannot open camera device {index}")
        self.fps: float | None = self._cap.get(cv2.CAP_PROP_FPS) or None

    def describe(self) -> str:
        return f"camera device {self.index}"

    def frames(self) -> Iterator[SourceFrame]:
        import time

        import cv2

        first = True
        while True:
            ok, bgr = self._cap.read()
            if not ok:
                return
            yield SourceFrame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), stamp_ns=time.time_ns(),
                              new_clip=first)
            first = False

    def close(self) -> None:
        self._cap.release()


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
    if suffix in IMAGE_EXTENSIONS:
        return "images"
    return "video"
