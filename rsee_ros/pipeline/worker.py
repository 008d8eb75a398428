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

from rsee_ros.pipeline.control import SettingsControl
from rsee_ros.pipeline.rejects import RejectCounter
from rsee_ros.pipeline.runner import RecognitionPipeline, WindowResult
from rsee_ros.pipeline.scheduler import FairQueue

__all__ = ["Arrival", "DecodedFrame", "RecognitionWorker"]

INFERENCE_ERROR = "inference_error"


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
    (pass counters with a logger to see warnings).
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
    ) -> None:
        self.pipeline = pipeline
        self.control = control
        self._decode = decode
        self._publish = publish
        self._reject_errors = reject_errors
        self.rejects = rejects or RejectCounter(None)
        self.drops = drops or RejectCounter(None, what="frame")
        self.queue: FairQueue[Arrival] = FairQueue(queue_depth)
        self._lock = threading.Lock()
        self._received = 0
        self._handled = 0
        self._finished = 0  # taken off the queue and done with (handled, rejected or failed)
        self._results = 0
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="rsee_inference", daemon=True)
        self._thread.start()

    # Callback side ----------------------------------------------------------------------------

    def submit(self, source: str, payload: Any, arrival_ns: int) -> None:
        """Queue a frame of ``source`` (never blocks; a full queue drops that camera's oldest)."""
        arrival = Arrival(source, payload, time.monotonic(), arrival_ns)
        with self._lock:
            self._received += 1
        if self.queue.put(source, arrival):
            self.drops.reject(f"{source}: queue full, inference slower than the camera")

    # Worker side ------------------------------------------------------------------------------

    def _run(self) -> None:
        drops_then = 0
        while True:
            got = self.queue.get(timeout_s=0.5)
            if self._stopping:
                return
            if got is None:
                continue
            _, arrival = got
            start = time.monotonic()
            try:
                self._handle(arrival)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not stop the worker
                if self._stopping:
                    return
                self.rejects.reject(INFERENCE_ERROR, f"{arrival.source}: {exc!r}")
            finally:
                with self._lock:
                    self._finished += 1
            busy = time.monotonic() - start
            drops_now = self.queue.dropped
            self.control.record(1, busy, drops_now - drops_then)
            drops_then = drops_now

    def _handle(self, arrival: Arrival) -> None:
        try:
            frame = self._decode(arrival)
        except self._reject_errors as exc:
            reason = getattr(exc, "reason", "decode_failed")
            detail = getattr(exc, "detail", str(exc))
            self.rejects.reject(reason, f"{arrival.source}: {detail}")
            return
        stamp_ns = frame.stamp_ns or arrival.arrival_ns
        results = self.pipeline.push(
            arrival.source, stamp_ns * 1e-9, frame.rgb, stamp_ns=stamp_ns,
            frame_id=frame.frame_id, received_at=arrival.received,
        )
        with self._lock:
            self._handled += 1
        if results:
            self._publish(results, arrival)
            with self._lock:
                self._results += len(results)

    # State ------------------------------------------------------------------------------------

    @property
    def frames_received(self) -> int:
        """Frames submitted."""
        with self._lock:
            return self._received

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
