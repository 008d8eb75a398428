"""Decoding video files (PyAV, OpenCV as fallback) and folders of frame images to RGB uint8.

A "video" is either a video file or a directory of frame images (sorted by name, numbers
compared numerically). Frames come back as ``(N, H, W, 3)`` uint8 RGB arrays.

One decoder policy for every reader here: PyAV first; OpenCV when PyAV is not installed (it comes
from pip, there is no rosdep key), cannot open the file or decodes nothing from it.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

try:
    import av
except ImportError:  # OpenCV decodes alone (see the module docstring)
    av = None

log = logging.getLogger(__name__)

VIDEO_EXTENSIONS = frozenset(
    {".avi", ".mp4", ".mkv", ".webm", ".mov", ".mpg", ".mpeg", ".m4v", ".wmv", ".flv", ".ogv"}
)
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm"}
)


class VideoDecodeError(RuntimeError):
    """A video (file, frame folder or bag window) could not be decoded."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        self.reason = reason
        super().__init__(f"cannot decode video {self.path}: {reason}")


@dataclass(frozen=True)
class VideoInfo:
    """Basic stream facts: frame count (from the container when it has one), fps, size."""

    num_frames: int
    fps: float | None
    width: int
    height: int


def _natural_key(name: str) -> list[int | str]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def is_video_file(path: str | Path) -> bool:
    """True for a file with a known video extension."""
    p = Path(path)
    return p.suffix.lower() in VIDEO_EXTENSIONS and p.is_file()


def list_frame_files(folder: str | Path) -> list[Path]:
    """Image files of a frame folder, in natural order (``img_2`` before ``img_10``)."""
    files = [
        p for p in Path(folder).iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
    ]
    return sorted(files, key=lambda p: _natural_key(p.name))


def is_frame_folder(path: str | Path) -> bool:
    """True for a directory that directly holds at least one image file."""
    p = Path(path)
    return p.is_dir() and any(
        c.suffix.lower() in IMAGE_EXTENSIONS and c.is_file() for c in p.iterdir()
    )


# --------------------------------------------------------------------------- frame folders


def read_image(path: str | Path) -> np.ndarray:
    """One image file -> (H, W, 3) uint8 RGB; :class:`VideoDecodeError` when OpenCV cannot read
    it."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise VideoDecodeError(path, "unreadable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def _stack(frames: list[np.ndarray], path: str | Path) -> np.ndarray:
    shapes = {f.shape for f in frames}
    if len(shapes) != 1:
        raise VideoDecodeError(path, f"frames of different sizes {sorted(shapes)}")
    return np.stack(frames)


# --------------------------------------------------------------------------- PyAV / OpenCV


def _need_pyav() -> None:
    if av is None:
        raise RuntimeError("PyAV is not installed")


def _pyav_info(path: Path, count: bool = True) -> VideoInfo:
    _need_pyav()
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        stream = container.streams.video[0]
        n = int(stream.frames or 0)
        if n <= 0 and count:  # no count in the header: count packets (cheap, no decoding)
            n = sum(1 for pkt in container.demux(stream) if pkt.size)
        rate = stream.average_rate or stream.guessed_rate
        fps = float(rate) if rate else None
        return VideoInfo(n, fps, int(stream.codec_context.width), int(stream.codec_context.height))


def _cv2_info(path: Path, count: bool = True) -> VideoInfo:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoDecodeError(path, "OpenCV cannot open it")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        fps = cap.get(cv2.CAP_PROP_FPS) or None
        w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
    finally:
        cap.release()
    if w <= 0 or (count and n <= 0):
        raise VideoDecodeError(path, "OpenCV reports no frames")
    return VideoInfo(n, fps, w, h)


def _pyav_read(path: Path, wanted: set[int], last: int) -> dict[int, np.ndarray]:
    _need_pyav()
    out: dict[int, np.ndarray] = {}
    prev: av.VideoFrame | None = None
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        stream = container.streams.video[0]
        for i, frame in enumerate(container.decode(stream)):
            prev = frame
            if i in wanted:  # convert only the frames asked for
                out[i] = frame.to_ndarray(format="rgb24")
            if i >= last:
                break
        else:
            if prev is not None:  # fewer frames than the header said: clamp to the last one
                tail = prev.to_ndarray(format="rgb24")
                out.update({j: tail for j in wanted if j not in out})
    return out


def _cv2_read(path: Path, wanted: set[int], last: int) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoDecodeError(path, "OpenCV cannot open it")
        for i in range(last + 1):
            if not cap.grab():
                break
            if i in wanted:  # grab() skips the colour conversion of unwanted frames
                ok, bgr = cap.retrieve()
                if not ok:
                    break
                out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()
    if out and len(out) < len(wanted):  # stream ended early: clamp to the last frame read
        tail = out[max(out)]
        out.update({j: tail for j in wanted if j not in out})
    return out


def _pyav_iter(path: Path) -> Iterator[np.ndarray]:
    _need_pyav()
    with av.open(str(path)) as container:
        if not container.streams.video:
            raise VideoDecodeError(path, "no video stream")
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for frame in container.decode(stream):
            yield frame.to_ndarray(format="rgb24")


def _cv2_iter(path: Path) -> Iterator[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise VideoDecodeError(path, "OpenCV cannot open it")
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    finally:
        cap.release()


# --------------------------------------------------------------------------- public API


def probe_video(path: str | Path, *, count_frames: bool = True) -> VideoInfo:
    """Frame count, fps and size of a video file or frame folder (fps None for folders).

    ``count_frames=False`` skips counting the packets of a file whose container has no frame
    count (``num_frames`` is then 0: unknown), for callers that need only fps and size.
    """
    p = Path(path)
    if p.is_dir():
        files = list_frame_files(p)
        if not files:
            raise VideoDecodeError(p, "frame folder holds no images")
        h, w = read_image(files[0]).shape[:2]
        return VideoInfo(len(files), None, w, h)
    if not p.is_file():
        raise VideoDecodeError(p, "no such file")
    errors = []
    for probe in (_pyav_info, _cv2_info):
        try:
            info = probe(p, count_frames)
            if info.num_frames > 0 or not count_frames:
                return info
            errors.append(f"{probe.__name__}: no frames")
        except Exception as exc:  # noqa: BLE001 - any decoder failure falls through
            errors.append(f"{probe.__name__}: {exc}")
    raise VideoDecodeError(p, "; ".join(errors))


def count_frames(path: str | Path) -> int:
    """Number of frames of a video file (container count, else packets) or frame folder."""
    return probe_video(path).num_frames


def read_frames(path: str | Path, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Decode the frames at ``indices`` (any order, repeats allowed) -> (N, H, W, 3) uint8 RGB.

    Video files are decoded sequentially up to the largest index, converting only the frames
    asked for. Indices past the real end (a header that over-counts) give the last frame.
    """
    p = Path(path)
    idx = [int(i) for i in np.asarray(indices).reshape(-1)]
    if not idx:
        raise ValueError("read_frames needs at least one index")
    if min(idx) < 0:
        raise ValueError(f"negative frame index in {idx}")
    if p.is_dir():
        files = list_frame_files(p)
        if not files:
            raise VideoDecodeError(p, "frame folder holds no images")
        cache = {i: read_image(files[min(i, len(files) - 1)]) for i in set(idx)}
        return _stack([cache[i] for i in idx], p)
    if not p.is_file():
        raise VideoDecodeError(p, "no such file")
    wanted, last = set(idx), max(idx)
    errors = []
    for reader in (_pyav_read, _cv2_read):
        try:
            frames = reader(p, wanted, last)
        except Exception as exc:  # noqa: BLE001 - any decoder failure falls through
            errors.append(f"{reader.__name__}: {exc}")
            continue
        if len(frames) == len(wanted):
            return _stack([frames[i] for i in idx], p)
        errors.append(f"{reader.__name__}: decoded no frames")
    raise VideoDecodeError(p, "; ".join(errors))


def iter_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Yield every frame of a video file or frame folder as (H, W, 3) uint8 RGB.

    A decoder that fails before its first frame, or decodes none, hands over to the next (the
    module's policy); one failing after its first frame raises :class:`VideoDecodeError` (the
    frames so far were delivered).
    """
    p = Path(path)
    if p.is_dir():
        for f in list_frame_files(p):
            yield read_image(f)
        return
    if not p.is_file():
        raise VideoDecodeError(p, "no such file")
    errors = []
    for decoder in (_pyav_iter, _cv2_iter):
        frames, count = decoder(p), 0
        try:
            for rgb in frames:
                count += 1
                yield rgb
        except Exception as exc:  # noqa: BLE001 - any decoder failure falls through
            if count:
                raise VideoDecodeError(p, f"{decoder.__name__}, frame {count}: {exc}") from exc
            errors.append(f"{decoder.__name__}: {exc}")
            continue
        finally:
            frames.close()
        if count:
            return
        errors.append(f"{decoder.__name__}: decoded no frames")
    raise VideoDecodeError(p, "; ".join(errors))


def read_video(path: str | Path) -> np.ndarray:
    """All frames of a video file or frame folder -> (N, H, W, 3) uint8 RGB."""
    return read_frames(path, np.arange(count_frames(path)))
