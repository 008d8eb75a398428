"""``rsee predict``: label video files, frame folders, bags or a camera with the node's pipeline.

The frames of each source go through one :class:`~rsee_ros.pipeline.runner.RecognitionPipeline`
(the node's windowing and inference, the same settings), one source after another (a folder of
videos: each video is a source of its own, so windows never span two videos). Frames are stamped
with the source's stamps (bags, cameras) or their index over the source's frame rate (files).
Every result becomes a :class:`PredictedWindow`: the pipeline's result plus where it lies in the
source (first and last frame index). rclpy-free.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rsee_ros.data.sources import (
    CameraSource,
    FrameSource,
    ImageFolderSource,
    RosbagSource,
    SourceError,
    VideoFileSource,
    detect_source_type,
)
from rsee_ros.data.video import is_video_file
from rsee_ros.evaluation.annotate import Annotator
from rsee_ros.pipeline.runner import RecognitionPipeline, WindowResult

__all__ = ["DEFAULT_FPS", "PredictedWindow", "open_sources", "predict"]

DEFAULT_FPS = 30.0
"""Frame rate assumed for sources without one (frame folders)."""
_INDEX_MEMORY = 65536  # stamps -> frame index kept per source (windows are far shorter)


@dataclass
class PredictedWindow:
    """One window's result and where it lies in its source."""

    name: str
    """The source: a video file, a frame folder, ``bag:topic``, ``camera:N``."""
    first_frame: int
    last_frame: int
    """Indices (0-based, in the source) of the window's first frame and the last frame used."""
    result: WindowResult

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON): the result's fields, without the probability vector."""
        data = {"source": self.name, "first_frame": self.first_frame,
                "last_frame": self.last_frame}
        result = self.result.to_dict()
        result.pop("probabilities", None)
        result.pop("source", None)
        return {**data, **result}


def open_sources(spec: str, *, topic: str | None = None) -> list[tuple[str, FrameSource]]:
    """The sources named by ``spec``: a camera device index, a video file, a folder of videos,
    a folder of frames (or one image), or a rosbag2 (``topic``: which image topic).

    Raises :class:`SourceError` with a clear message when ``spec`` is none of these.
    """
    if spec.isdigit():
        return [(f"camera:{spec}", CameraSource(int(spec)))]
    path = Path(spec).expanduser()
    if path.is_dir():
        videos = sorted(p for p in path.iterdir() if p.is_file() and is_video_file(p))
        if videos and not any((path / name).exists() for name in ("metadata.yaml",)):
            return [(str(v), VideoFileSource(v)) for v in videos]
    kind = detect_source_type(spec)
    if kind == "rosbag":
        source = RosbagSource(path, topic or "")
        return [(f"{path}:{source.topic}", source)]
    if topic:
        raise SourceError(f"--topic is for rosbags; {spec!r} is a {kind} source")
    if kind == "images":
        return [(str(path), ImageFolderSource(path))]
    if kind == "video":
        return [(str(path), VideoFileSource(path))]
    raise SourceError(f"{spec!r} is not a video, a folder of videos or frames, a bag or a camera")


def predict(
    pipeline: RecognitionPipeline,
    sources: list[tuple[str, FrameSource]],
    *,
    annotator: Annotator | None = None,
    max_frames: int = 0,
) -> Iterator[PredictedWindow]:
    """Run every source through ``pipeline``; yields each window's result as it is made.

    ``max_frames`` (> 0) stops each source after that many frames (a camera runs until it stops
    delivering frames or the caller stops iterating). ``annotator`` receives every frame and
    result (an annotated video of a single source).
    """
    for name, source in sources:
        try:
            yield from _one_source(pipeline, name, source, annotator, max_frames)
        finally:
            source.close()
    if annotator is not None:
        annotator.close()


def _one_source(
    pipeline: RecognitionPipeline, name: str, source: FrameSource,
    annotator: Annotator | None, max_frames: int,
) -> Iterator[PredictedWindow]:
    period_ns = 1e9 / (source.fps or DEFAULT_FPS)
    index_of: dict[int, int] = {}
    recent: deque[int] = deque()

    def placed(results: list[WindowResult]) -> Iterator[PredictedWindow]:
        for r in results:
            yield PredictedWindow(name, index_of.get(r.first_stamp_ns, -1),
                                  index_of.get(r.last_stamp_ns, -1), r)

    for index, frame in enumerate(source.frames()):
        if max_frames and index >= max_frames:
            break
        stamp_ns = frame.stamp_ns if frame.stamp_ns is not None else round(index * period_ns)
        index_of[stamp_ns] = index
        recent.append(stamp_ns)
        if len(recent) > _INDEX_MEMORY:
            index_of.pop(recent.popleft(), None)
        report = pipeline.process(name, stamp_ns * 1e-9, frame.rgb, stamp_ns=stamp_ns)
        if annotator is not None:
            annotator.frame(frame.rgb, report)
        yield from placed(report.results)
    cut = pipeline.close(name)
    if annotator is not None:
        for r in cut:
            annotator.result(r)
        annotator.end_of_source()
    yield from placed(cut)


def settings_dict(pipeline: RecognitionPipeline) -> dict[str, Any]:
    """The pipeline's settings, as plain data."""
    return asdict(pipeline.settings)
