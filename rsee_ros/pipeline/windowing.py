"""Cutting timestamped frame streams into windows (clips) for action recognition.

The one windowing implementation shared by the ROS node, ``rsee eval-bag`` and the benchmarks.
Pure Python (no rclpy, no torch): frames are opaque payloads.

Model, per source (camera, bag topic):

* The incoming stream is split into *videos*. A new video starts when a frame's stamp goes back
  in time by more than ``max_gap_s`` (``"backwards"``: the stream restarted, e.g. a replayed
  recording) or comes more than ``max_gap_s`` after the previous frame (``"gap"``), and after
  :meth:`WindowAssembler.close`. Ending a video ends every open window. A frame whose stamp is
  at most ``max_gap_s`` *before* the previous frame's is *late* (out of order, e.g. a second
  publisher with another clock): it is dropped (``FrameEvent.late``) and the video goes on, so a
  single late frame never cuts a window. With gap detection off (``max_gap_s`` 0 or inf) every
  step back starts a new video.
* Within a video, every ``frame_step``-th incoming frame is *kept* (the first frame of a video is
  always kept); kept frames are numbered 0, 1, 2, ... (``FrameEvent.index``).
* Windows open at kept indices 0, stride, 2*stride, ...; a window takes the next ``size`` kept
  frames and then completes. ``stride == window_size`` gives tumbling windows, a smaller stride
  overlapping (sliding) ones, a larger one leaves frames out of every window.
  ``stride = 0`` means "tumbling": the next window opens when the previous one has taken all its
  frames (follows ``window_size`` changes without overlap or holes).
* A window cut by the end of its video is *ended incomplete* with a reason (``"gap"``,
  ``"backwards"``, or the reason given to ``close``); the caller decides to publish or drop it.

Live settings changes (:meth:`WindowAssembler.update`) apply from the next pushed frame:

* ``window_size``: windows opened after the change; open windows keep the size they opened with.
* ``stride``: the next window opens ``stride`` kept frames after the last opened one (at once if
  that point has passed); already open windows are unaffected.
* ``frame_step``: counted from the last kept frame (the next kept frame is the first one at least
  ``frame_step`` incoming frames after it).
* ``max_gap_s``: checked on the next frame against the previous incoming frame's stamp.

Early exit: a caller whose model stopped early on a window calls ``mark_exited(window)``. The
window then no longer appears in ``FrameEvent.active`` (frames to feed), but still counts its
frames and completes or is cut exactly as it would have, so bookkeeping stays honest.

Typical use::

    windows = MultiSourceWindowing(WindowSettings(window_size=16, stride=8))
    ev = windows.push("cam0", stamp_s, frame)
    for w in ev.ended:      # cut windows of the previous video (incomplete): publish or drop
        ...
    for w in ev.active:     # windows this frame is fed to (w.num_frames already counts it)
        ...
    for w in ev.completed:  # windows that took their last frame with this one
        ...
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

__all__ = [
    "BACKWARDS",
    "COMPLETE",
    "END_OF_STREAM",
    "GAP",
    "FrameEvent",
    "MultiSourceWindowing",
    "Window",
    "WindowAssembler",
    "WindowSettings",
]

# Window.end_reason values (``close`` takes any string, END_OF_STREAM by default).
COMPLETE = "complete"
GAP = "gap"
BACKWARDS = "backwards"
END_OF_STREAM = "end_of_stream"


@dataclass(frozen=True)
class WindowSettings:
    """Windowing settings; validated on construction.

    window_size: kept frames per window (>= 1).
    stride: kept frames between window starts (>= 1), or 0 for tumbling windows.
    frame_step: keep every n-th incoming frame (>= 1).
    max_gap_s: a larger stamp gap between incoming frames starts a new video; 0 or inf disables
        gap detection (a backwards stamp always starts a new video).
    """

    window_size: int = 16
    stride: int = 0
    frame_step: int = 1
    max_gap_s: float = 1.0

    def __post_init__(self) -> None:
        for name in ("window_size", "stride", "frame_step"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{name} must be an int, got {value!r}")
        if self.window_size < 1:
            raise ValueError(f"window_size must be >= 1, got {self.window_size}")
        if self.stride < 0:
            raise ValueError(f"stride must be >= 0 (0 = window_size), got {self.stride}")
        if self.frame_step < 1:
            raise ValueError(f"frame_step must be >= 1, got {self.frame_step}")
        if math.isnan(self.max_gap_s) or self.max_gap_s < 0:
            raise ValueError(f"max_gap_s must be >= 0 (0 = off), got {self.max_gap_s}")


@dataclass(eq=False)
class Window:
    """One window. Owned and updated by its assembler: read it, do not modify it."""

    id: int
    """Unique within the assembler (and across a MultiSourceWindowing)."""
    source: str
    video: int
    """Index of the video (gap-free stretch of the stream) the window belongs to."""
    start_index: int
    """Kept-frame index, within its video, of the window's first frame."""
    size: int
    """Frames needed to complete (window_size when it opened)."""
    first_stamp: float
    last_stamp: float
    num_frames: int = 0
    exited: bool = False
    """Marked by the caller (early exit): no longer in FrameEvent.active."""
    end_reason: str | None = None
    """None while open, COMPLETE, or why it was cut (GAP, BACKWARDS, close's reason)."""
    frames: list[Any] = field(default_factory=list)
    """The frames, only when the assembler keeps them (keep_frames=True)."""

    @property
    def is_open(self) -> bool:
        return self.end_reason is None

    @property
    def complete(self) -> bool:
        return self.end_reason == COMPLETE


@dataclass(frozen=True)
class FrameEvent:
    """What one pushed frame did. Handle ``ended``, then ``active``, then ``completed``."""

    stamp: float
    frame: Any
    video: int
    kept: bool
    """False when frame_step dropped the frame, or it was late (then ``windows`` and
    ``completed`` are empty)."""
    index: int | None
    """Kept-frame index within the video, None when not kept."""
    windows: tuple[Window, ...] = ()
    """Windows this frame belongs to (opened ones included), oldest first."""
    opened: tuple[Window, ...] = ()
    """Windows opened by this frame (its first frame)."""
    completed: tuple[Window, ...] = ()
    """Windows that reached their size with this frame (also in ``windows``)."""
    ended: tuple[Window, ...] = ()
    """Windows cut, before this frame, because this frame starts a new video."""
    late: bool = False
    """The frame's stamp is before the previous frame's, within ``max_gap_s``: dropped."""
    restart: str | None = None
    """``GAP`` or ``BACKWARDS`` when this frame's stamp started a new video, else None."""

    @property
    def active(self) -> tuple[Window, ...]:
        """Windows to feed this frame to: ``windows`` minus those marked exited."""
        return tuple(w for w in self.windows if not w.exited)


class WindowAssembler:
    """Windows of one source. Not thread-safe: push from one thread (or hold a lock)."""

    def __init__(
        self,
        settings: WindowSettings | None = None,
        source: str = "",
        keep_frames: bool = False,
        _ids: Iterator[int] | None = None,
    ) -> None:
        self._settings = settings or WindowSettings()
        self.source = source
        self.keep_frames = keep_frames
        self._ids = _ids if _ids is not None else itertools.count()
        self._open: list[Window] = []
        self._video = -1
        self._last_stamp: float | None = None
        self._since_kept = 0  # incoming frames since the last kept one
        self._next_index = 0  # kept index the next kept frame gets
        self._next_open: int | None = None  # kept index of the next window start (None: now)
        self._last_opened: Window | None = None
        self._video_started = False

    # Settings -------------------------------------------------------------------------------

    @property
    def settings(self) -> WindowSettings:
        return self._settings

    @settings.setter
    def settings(self, settings: WindowSettings) -> None:
        self._settings = settings

    def update(self, **changes: Any) -> WindowSettings:
        """Change settings (validated; ValueError leaves them unchanged), from the next frame."""
        self._settings = replace(self._settings, **changes)
        return self._settings

    # State ----------------------------------------------------------------------------------

    @property
    def open_windows(self) -> tuple[Window, ...]:
        return tuple(self._open)

    @property
    def video(self) -> int:
        """Index of the current video (-1 before the first frame)."""
        return self._video

    def mark_exited(self, window: Window | int) -> None:
        """Stop handing ``window`` frames (early exit); it still completes or is cut as usual.

        Marking a window that has already ended is harmless; an unknown id raises KeyError.
        """
        if isinstance(window, Window):
            window.exited = True
            return
        for w in self._open:
            if w.id == window:
                w.exited = True
                return
        raise KeyError(f"no open window {window} for source {self.source!r}")

    def close(self, reason: str = END_OF_STREAM) -> tuple[Window, ...]:
        """End the current video now: cut and return its open windows (end of a bag, reset)."""
        ended = tuple(self._open)
        for w in ended:
            w.end_reason = reason
        self._open.clear()
        self._video_started = False
        self._last_stamp = None
        return ended

    # Frames ---------------------------------------------------------------------------------

    def push(self, stamp_s: float, frame: Any = None) -> FrameEvent:
        """Feed one incoming frame with its stamp in seconds.

        One step of the source's state machine: late or restarting stamps, ``frame_step``,
        opening windows, membership and completion. Kept in one piece (a little over 60 lines)
        so that the order of these rules reads top to bottom.
        """
        stamp = float(stamp_s)
        if not math.isfinite(stamp):
            raise ValueError(f"stamp must be finite, got {stamp_s!r}")
        s = self._settings
        ended: tuple[Window, ...] = ()
        restart: str | None = None
        last = self._last_stamp
        gap_detection = 0 < s.max_gap_s < math.inf
        if last is not None:
            if stamp < last:
                if gap_detection and last - stamp <= s.max_gap_s:
                    return FrameEvent(stamp, frame, self._video, False, None, late=True)
                ended, restart = self.close(BACKWARDS), BACKWARDS
            elif gap_detection and stamp - last > s.max_gap_s:
                ended, restart = self.close(GAP), GAP
        self._last_stamp = stamp

        if not self._video_started:
            self._video_started = True
            self._video += 1
            self._next_index = 0
            self._next_open = None
            self._last_opened = None
        else:
            self._since_kept += 1
            if self._since_kept < s.frame_step:
                return FrameEvent(stamp, frame, self._video, False, None, ended=ended,
                                  restart=restart)
        self._since_kept = 0
        index = self._next_index
        self._next_index += 1

        opened: tuple[Window, ...] = ()
        if self._should_open(index):
            w = Window(
                id=next(self._ids),
                source=self.source,
                video=self._video,
                start_index=index,
                size=s.window_size,
                first_stamp=stamp,
                last_stamp=stamp,
            )
            self._open.append(w)
            self._last_opened = w
            opened = (w,)

        members = tuple(self._open)
        completed = []
        for w in members:
            w.num_frames += 1
            w.last_stamp = stamp
            if self.keep_frames:
                w.frames.append(frame)
            if w.num_frames >= w.size:
                w.end_reason = COMPLETE
                completed.append(w)
        if completed:
            self._open = [w for w in self._open if w.is_open]
        return FrameEvent(
            stamp, frame, self._video, True, index, members, opened, tuple(completed), ended,
            restart=restart,
        )

    def _should_open(self, index: int) -> bool:
        last = self._last_opened
        if last is None:
            return True
        stride = self._settings.stride
        if stride == 0:  # tumbling: open once the last opened window has all its frames
            return last.num_frames >= last.size
        return index - last.start_index >= stride


class MultiSourceWindowing:
    """One :class:`WindowAssembler` per source name, created on first use; windows never mix.

    Settings are shared: :meth:`update` applies to every source, present and future.
    """

    def __init__(self, settings: WindowSettings | None = None, keep_frames: bool = False) -> None:
        self._settings = settings or WindowSettings()
        self.keep_frames = keep_frames
        self._ids = itertools.count()
        self._assemblers: dict[str, WindowAssembler] = {}

    @property
    def settings(self) -> WindowSettings:
        return self._settings

    def update(self, **changes: Any) -> WindowSettings:
        """Change settings for all sources (validated first), from each source's next frame."""
        self._settings = replace(self._settings, **changes)
        for a in self._assemblers.values():
            a.settings = self._settings
        return self._settings

    def assembler(self, source: str) -> WindowAssembler:
        """The assembler of ``source``, created if needed."""
        a = self._assemblers.get(source)
        if a is None:
            a = WindowAssembler(self._settings, source, self.keep_frames, _ids=self._ids)
            self._assemblers[source] = a
        return a

    @property
    def sources(self) -> tuple[str, ...]:
        return tuple(self._assemblers)

    def push(self, source: str, stamp_s: float, frame: Any = None) -> FrameEvent:
        """Feed one frame of ``source``."""
        return self.assembler(source).push(stamp_s, frame)

    def mark_exited(self, window: Window) -> None:
        """See :meth:`WindowAssembler.mark_exited`."""
        window.exited = True

    def close(self, source: str | None = None, reason: str = END_OF_STREAM) -> tuple[Window, ...]:
        """Cut the open windows of ``source`` (all sources when None) and return them."""
        names = list(self._assemblers) if source is None else [source]
        ended: list[Window] = []
        for name in names:
            a = self._assemblers.get(name)
            if a is not None:
                ended.extend(a.close(reason))
        return tuple(ended)

    def remove(self, source: str, reason: str = END_OF_STREAM) -> tuple[Window, ...]:
        """Forget ``source`` (e.g. a camera that went away); returns its cut windows."""
        a = self._assemblers.pop(source, None)
        return a.close(reason) if a is not None else ()
