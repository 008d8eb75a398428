"""Writing a video with the recognition drawn on it (``rsee predict --annotate OUT.mp4``).

Each frame shows the label and confidence of the newest window it belongs to that has a result,
and what that window did with the frame: the resolution it was processed at, ``skipped`` by the
selector, ``after exit`` (the window had already exited), or ``not used`` (``frame_step`` or no
window). A frame is written once every window holding it has ended, so at most a window's worth
of frames is buffered. Frames lower than :data:`MIN_HEIGHT` are enlarged so the text is legible.
Encoded with PyAV (H.264, MPEG-4 Part 2 where H.264 is missing).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rsee_ros.pipeline.runner import FrameReport, WindowResult

__all__ = ["Annotator"]

MIN_HEIGHT = 360
"""Frames lower than this are enlarged (nearest neighbour) before the text is drawn."""


@dataclass
class _Pending:
    rgb: np.ndarray
    windows: list[tuple[int, int]] = field(default_factory=list)
    """(window id, position of the frame in it), oldest window first."""


class Annotator:
    """Collects frames and results, writes the annotated video to ``path``."""

    def __init__(self, path: str | Path, fps: float = 30.0) -> None:
        import av

        self.path = Path(path)
        self.fps = fps
        self._av = av
        self._container = av.open(str(self.path), "w")
        self._stream = None
        self._size: tuple[int, int] | None = None
        self._pending: deque[_Pending] = deque()
        self._ended: set[int] = set()
        self._results: dict[int, WindowResult] = {}
        self.frames_written = 0

    def frame(self, rgb: np.ndarray, report: FrameReport) -> None:
        """One pushed frame and what the pipeline did with it."""
        event = report.event
        for result in report.results:  # results this frame produced: before the flush below
            self._results[result.window_id] = result
            self._ended.add(result.window_id)
        memberships = [(w.id, w.num_frames - 1) for w in event.windows] if event.kept else []
        self._ended.update(w.id for w in (*event.completed, *event.ended))
        self._pending.append(_Pending(np.ascontiguousarray(rgb), memberships))
        self._flush()

    def result(self, result: WindowResult) -> None:
        """A window's result made without a frame (the end of a source cut it)."""
        self._results[result.window_id] = result
        self._ended.add(result.window_id)
        self._flush()

    def end_of_source(self) -> None:
        """The source ended: every buffered frame is written."""
        self._flush(everything=True)

    def close(self) -> None:
        """Write what is left and finish the file."""
        self._flush(everything=True)
        if self._stream is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
        self._container.close()

    # ------------------------------------------------------------------------------------------

    def _flush(self, everything: bool = False) -> None:
        while self._pending and (everything or all(
                wid in self._ended for wid, _ in self._pending[0].windows)):
            self._write(self._draw(self._pending.popleft()))

    def _draw(self, pending: _Pending) -> np.ndarray:
        rgb = pending.rgb
        if rgb.shape[0] < MIN_HEIGHT:  # small frames are enlarged so that the text is legible
            factor = MIN_HEIGHT / rgb.shape[0]
            rgb = cv2.resize(rgb, (round(rgb.shape[1] * factor), MIN_HEIGHT),
                             interpolation=cv2.INTER_NEAREST)
        else:
            rgb = rgb.copy()
        label, status = "", "not used"
        for wid, position in reversed(pending.windows):  # the newest window with a result
            result = self._results.get(wid)
            if result is None:
                continue
            label = f"{result.label} {result.confidence:.2f}"
            if position < len(result.resolutions):
                resolution = result.resolutions[position]
                status = f"{resolution} px" if resolution else "skipped"
            else:
                status = "after exit"
            break
        scale = max(0.4, rgb.shape[0] / 480)
        for row, text in enumerate((label, status)):
            if text:
                origin = (8, int((22 + 26 * row) * scale))
                cv2.putText(rgb, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                            (0, 0, 0), int(4 * scale), cv2.LINE_AA)
                cv2.putText(rgb, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.6 * scale,
                            (255, 255, 255), max(1, int(1.5 * scale)), cv2.LINE_AA)
        return rgb

    def _write(self, rgb: np.ndarray) -> None:
        if self._stream is None:
            height, width = rgb.shape[:2]
            self._size = (width - width % 2, height - height % 2)  # yuv420p needs even sides
            codecs = self._av.codecs_available
            codec = "libx264" if "libx264" in codecs else "mpeg4"
            self._stream = self._container.add_stream(codec, rate=round(self.fps))
            self._stream.width, self._stream.height = self._size
            self._stream.pix_fmt = "yuv420p"
        width, height = self._size  # type: ignore[misc]
        if rgb.shape[1] < width or rgb.shape[0] < height:
            rgb = cv2.resize(rgb, (width, height))
        frame = self._av.VideoFrame.from_ndarray(
            np.ascontiguousarray(rgb[:height, :width]), format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1
