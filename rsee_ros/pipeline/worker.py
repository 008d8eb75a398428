"""Running a :class:`RecognitionPipeline` on a thread of its own, fed from callbacks.

The ROS node's subscription callbacks only :meth:`RecognitionWorker.submit` a frame and return:
no callback ever waits for the model. Frames wait in a :class:`~rsee_ros.pipeline.scheduler.
FairQueue` (per camera, drop-oldest, served round robin); one worker thread takes them, decodes
them (``decode``: raw message to RGB, done here so that dropped frames are never decoded),
pushes them into the pipeline, hands the results to ``publish`` and tells the
:class:`~rsee_ros.pipeline.control.SettingsControl` how long the frame took (``target_fps``).
Undecodable frames and inference errors are counted per reason (throttled warnings), dropped
frames per camera. Pure Python + the pipeline: no ROS.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rsee_ros.pipeline.cadence import CadenceMonitor
from rsee_ros.pipeline.control import SettingsControl
from rsee_ros.pipeline.rejects import RejectCounter
from rsee_ros.pipeline.runner import (
    LATE,
    MODEL_OUTCOMES,
    RecognitionPipeline,
    WindowResult,
)
from rsee_ros.pipeline.scheduler import FairQueue
from rsee_ros.pipeline.windowing import BACKWARDS

__all__ = ["Arrival", "DecodedFrame", "RecognitionWorker"]

INFERENCE_ERROR = "inference_error"
LATE_STAMP = "late_stamp"
STALLED = "stalled"
"""``end_reason`` of a window cut because its camera sent nothing for ``max_gap_s``."""


@dataclass(frozen=True)
class Arrival:
    """A frame as it arrived, not decoded yet."""

    source: str
    payload: Any
    received: float
    """``time.monotonic()`` at arrival (latencies start here)."""
    arrival_ns: int
    """The node's clock at arrival, in ns (the stamp of frames that carry none)."""


@dataclass(frozen=True)
class DecodedFrame:
    """What ``decode`` makes of a payload."""

    rgb: np.ndarray
    stamp_ns: int
    """The frame's stamp; 0 means none (the arrival time is used)."""
    frame_id: str = ""


Decode = Callable[[Arrival], DecodedFrame]
Publish = Callable[[list[WindowResult], Arrival], None]


class RecognitionWorker:
    """One inference thread behind per-camera queues; see the module docstring.

    ``reject_errors``: exceptions of ``decode`` that reject a frame (counted under their
    ``reason`` attribute, else ``decode_failed``). ``rejects`` and ``drops`` count and warn
    (pass counters with a logger to see warnings), ``restarts`` counts streams whose stamps went
    back and started a new video. Frames that arrive with a stamp before the previous one
    (within ``max_gap_s``) are rejected as ``late_stamp``. A camera that sends nothing for
    ``max_gap_s`` has its open windows cut (``end_reason`` ``stalled``) and published.

    The ``target_fps`` controller is told the time spent on frames that went to the model:
    frames after a window's exit, or dropped by ``frame_step``, cost almost nothing and would
    make the node look far faster than it is when windows start (every camera's next window
    needs full-cost frames at the camera's rate).
    """

    def __init__(
        self,
        pipeline: RecognitionPipeline,
        control: SettingsControl,
        decode: Decode,
        publish: Publish,
        *,
        queue_depth: int = 2,
        reject_errors: tuple[type[Exception], ...] = (ValueError,),
        rejects: RejectCounter | None = None,
        drops: RejectCounter | None = None,
        restarts: RejectCounter | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.control = control
        self._decode = decode
        self._publish = publish
        self._reject_errors = reject_errors
        self.rejects = rejects or RejectCounter(None)
        self.drops = drops or RejectCounter(None, what="frame")
        self.restarts = restarts or RejectCounter(None, what="video", verb="restarted")
        self._last_seen: dict[str, float] = {}  # source -> monotonic time of its last frame
        self.cadence = CadenceMonitor()
        self.queue: FairQueue[Arrival] = FairQueue(queue_depth)
        self._lock = threading.Lock()
        self._received = 0
        self._received_per_source: dict[str, int] = {}
        self._handled = 0
        self._finished = 0  # taken off the queue and done with (handled, rejected or failed)
        self._results = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="rsee_inference", daemon=True)
        self._thread.start()

    # Callback side ----------------------------------------------------------------------------

    def submit(self, source: str, payload: Any, arrival_ns: int, stamp_ns: int = 0) -> None:
        """Queue a frame of ``source`` (never blocks; a full queue drops that camera's oldest).

        ``stamp_ns``, the frame's own stamp when it is cheap to read here, feeds the estimate of
        frames lost before they arrived (:attr:`cadence`)."""
        arrival = Arrival(source, payload, time.monotonic(), arrival_ns)
        if stamp_ns:
            self.cadence.observe(source, stamp_ns, self.pipeline.settings.max_gap_s)
        with self._lock:
            self._received += 1
            self._received_per_source[source] = self._received_per_source.get(source, 0) + 1
        if self.queue.put(source, arrival):
            self.drops.reject(f"{source}: queue full, inference slower than the camera")

    # Worker side ------------------------------------------------------------------------------

    def _run(self) -> None:
        drops_then = 0
        while True:
            got = self.queue.get(timeout_s=self._poll_s())
            if self._stopping:
                return
            self._flush_stalled()
            if got is None:
                continue
            _, arrival = got
            start = time.monotonic()
            model_frames = 0
            try:
                model_frames = self._handle(arrival)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the worker
                if self._stopping:
                    return
                self.rejects.reject(INFERENCE_ERROR, f"{arrival.source}: {exc!r}")
            finally:
                with self._lock:
                    self._finished += 1
            busy = time.monotonic() - start if model_frames else 0.0
            drops_now = self.queue.dropped
            self.control.record(model_frames, busy, drops_now - drops_then)
            drops_then = drops_now

    def _handle(self, arrival: Arrival) -> int:
        """Decode and process one frame; returns 1 when it went to the model, else 0."""
        try:
            frame = self._decode(arrival)
        except self._reject_errors as exc:
            reason = getattr(exc, "reason", "decode_failed")
            detail = getattr(exc, "detail", str(exc))
            self.rejects.reject(reason, f"{arrival.source}: {detail}")
            return 0
        stamp_ns = frame.stamp_ns or arrival.arrival_ns
        report = self.pipeline.process(
            arrival.source, stamp_ns * 1e-9, frame.rgb, stamp_ns=stamp_ns,
            frame_id=frame.frame_id, received_at=arrival.received,
        )
        self._last_seen[arrival.source] = time.monotonic()
        if report.outcome == LATE:
            self.rejects.reject(LATE_STAMP, f"{arrival.source}: stamp {stamp_ns * 1e-9:.3f} s is "
                                "before the previous frame's")
        elif report.event.restart == BACKWARDS:
            self.restarts.reject("stamps went back", f"{arrival.source}: new video at "
                                 f"{stamp_ns * 1e-9:.3f} s")
        with self._lock:
            self._handled += 1
        self._deliver(report.results, arrival)
        return int(report.outcome in MODEL_OUTCOMES)

    def _deliver(self, results: list[WindowResult], arrival: Arrival) -> None:
        if results:
            self._publish(results, arrival)
            with self._lock:
                self._results += len(results)

    def _poll_s(self) -> float:
        gap = self.pipeline.settings.max_gap_s
        return min(0.5, gap / 2) if gap > 0 else 0.5

    def _flush_stalled(self) -> None:
        """Cut and publish the windows of cameras silent for longer than ``max_gap_s``."""
        gap = self.pipeline.settings.max_gap_s
        if not gap > 0:
            return
        now = time.monotonic()
        for source, seen in list(self._last_seen.items()):
            if now - seen > gap:
                del self._last_seen[source]
                results = self.pipeline.close(source, STALLED)
                self._deliver(results, Arrival(source, None, now, 0))

    # State ------------------------------------------------------------------------------------

    @property
    def frames_received(self) -> int:
        """Frames submitted."""
        with self._lock:
            return self._received

    def received_per_source(self) -> dict[str, int]:
        """Frames submitted, per camera."""
        with self._lock:
            return dict(self._received_per_source)

    @property
    def frames_handled(self) -> int:
        """Frames decoded and pushed into the pipeline."""
        with self._lock:
            return self._handled

    @property
    def results_published(self) -> int:
        """Results handed to ``publish``."""
        with self._lock:
            return self._results

    def idle(self) -> bool:
        """True when every submitted frame is accounted for: finished (handled, rejected or
        failed) or dropped; none is queued or in hand."""
        with self._lock:
            return self._received == self._finished + self.queue.dropped

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread (the frame in hand is finished first); queued frames are dropped."""
        self._stopping = True
        self.queue.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)
