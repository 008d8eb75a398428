"""Streaming recognition of frame streams: windowing + RSEE inference, frame by frame.

:class:`RecognitionPipeline` is the one implementation used by the ROS node, ``rsee eval-bag``,
the demo and the benchmarks (pure Python + torch; never imports rclpy).

Per pushed frame (:meth:`RecognitionPipeline.push`):

1. Pending setting changes (:meth:`RecognitionPipeline.update`) are applied.
2. The frame goes through :class:`~rsee_ros.pipeline.windowing.MultiSourceWindowing` (per source:
   gap / backwards-stamp video splitting, ``frame_step`` subsampling, ``window_size`` /
   ``stride`` windows). Frames of different sources never mix.
3. Each window has its own streaming session on the pipeline's engine
   (:class:`~rsee_ros.engine.base.EngineSession`; sliding windows overlap, so one frame may feed
   several sessions). The frame is preprocessed once (``frame_to_tensor`` at the model's highest
   resolution), and only when at least one window will look at it: frames dropped by
   ``frame_step``, outside every window, inside a multi-frame skip of every window holding them
   or arriving after every such window exited cost nothing.
4. A window whose session exits is marked exited (it gets no more frames) and its result is
   returned at once, with ``exited_early`` set when frames of the window were left: the decision
   does not wait for the rest of the window.

Results (:class:`WindowResult`), one per window at most:

* ``end_reason="exit"``: the exit gate stopped the window (published at that frame).
* ``end_reason="complete"``: the window got all ``window_size`` frames without exiting (also
  when the selector skipped every one: ``frames_processed`` is then 0 and the prediction is the
  model's prior; a consumer can ignore such results).
* a window cut short by the end of its video (``"gap"``, ``"backwards"``, ``"end_of_stream"``
  from :meth:`close` / :meth:`flush`) gives a result, with ``complete=False`` and
  ``window_length`` = the frames it got, **if at least one of its frames went through the
  backbone**; otherwise there is no prediction and it is only counted
  (``stats.windows_without_result``).

``window_length`` is the window's size for complete and exited windows (the exit decides for the
whole window) and the frames received for cut windows; ``uniform_gflops`` is what the Uniform
baseline (every one of those frames at the model's highest resolution) would cost, and
``resolutions`` has one entry per frame the window was fed, in order (0: not processed).

Confidences: with a calibrated model (``metadata["calibration"]["temperature"]`` ``T`` of the
engine, from ``rsee calibrate``), ``confidence``, ``top_k`` and ``probabilities`` are
``softmax(log(p) / T)`` of the session's probabilities ``p``, and ``min_confidence`` compares
that calibrated confidence; the exit decisions are not changed by it: the exit rule is part of
the model's compute (its threshold, the operating point, was chosen for the uncalibrated
scores).
``latency_s`` runs from ``received_at`` of the frame that produced the result (its last frame, or
for a cut window the frame that revealed the cut) to the moment the result was made.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsee_ros.engine import engine_for_model, load_engine
from rsee_ros.engine.base import Engine, EngineSession
from rsee_ros.model import InferenceSettings, RSEEModel
from rsee_ros.model.preprocess import frame_to_tensor
from rsee_ros.pipeline.percentiles import percentile
from rsee_ros.pipeline.results import (
    AFTER_EXIT,
    BETWEEN_WINDOWS,
    EXIT,
    FRAME_OUTCOMES,
    LATE,
    MODEL_OUTCOMES,
    NOT_KEPT,
    PROCESSED,
    SKIPPED,
    FrameReport,
    PipelineStats,
    RecentResult,
    WindowResult,
)
from rsee_ros.pipeline.settings import UNKNOWN, PipelineSettings
from rsee_ros.pipeline.windowing import (
    COMPLETE,
    END_OF_STREAM,
    MultiSourceWindowing,
    Window,
)
from rsee_ros.training.temperature import apply_temperature, metadata_temperature

__all__ = [
    "AFTER_EXIT",
    "BETWEEN_WINDOWS",
    "EXIT",
    "FRAME_OUTCOMES",
    "LATE",
    "MODEL_OUTCOMES",
    "NOT_KEPT",
    "PROCESSED",
    "UNKNOWN",
    "SKIPPED",
    "FrameReport",
    "PipelineSettings",
    "PipelineStats",
    "RecentResult",
    "RecognitionPipeline",
    "WindowResult",
    "percentile",
]

@dataclass
class _Track:
    """Inference state of one open window."""

    session: EngineSession
    resolutions: list[int] = field(default_factory=list)
    last_stamp: float = 0.0
    last_stamp_ns: int = 0
    frame_id: str = ""
    first_stamp_ns: int = 0
    done: bool = False  # a result was returned (exit)


class RecognitionPipeline:
    """Windowing + streaming RSEE inference over one or more frame sources.

    ``model`` is an :class:`~rsee_ros.engine.base.Engine`, an :class:`RSEEModel` (with
    ``class_names``; run on the ``torch`` engine), or a checkpoint file or export directory
    (loaded with :func:`rsee_ros.engine.load_engine` on ``engine``, default ``torch``, and
    ``device``; class names from the file unless given). :attr:`temperature` (the engine's
    calibration, None without one) applies to the reported confidences, not to the exits (see
    the module docstring). ``clock`` (seconds, monotonic) is used
    for latencies and ``busy_s``. Not re-entrant: call
    :meth:`process` / :meth:`push` / :meth:`close` from one thread; :meth:`update`,
    :attr:`settings` and :meth:`stats` may be called from any thread.
    """

    def __init__(
        self,
        model: Engine | RSEEModel | str | Path,
        class_names: Sequence[str] | None = None,
        settings: PipelineSettings | None = None,
        *,
        engine: str = "torch",
        device: str = "cpu",
        clock: Callable[[], float] = time.monotonic,
        recent: int = 512,
    ) -> None:
        if isinstance(model, RSEEModel):
            if class_names is None:
                raise ValueError("class_names are required with a model")
            model = engine_for_model(model.eval(), list(class_names), engine)
        elif not isinstance(model, Engine):
            model = load_engine(model, engine, device=device)
        class_names = model.class_names if class_names is None else class_names
        if len(class_names) != model.config.num_classes:
            raise ValueError(
                f"{len(class_names)} class names for a model with {model.config.num_classes} "
                "classes"
            )
        self.engine = model
        self.temperature = metadata_temperature(getattr(model, "metadata", None))
        self.class_names = [str(c) for c in class_names]
        self.resolutions = tuple(model.config.resolutions)
        self.input_size = model.config.max_resolution
        self._clock = clock
        settings = settings or PipelineSettings()
        self._inference = self._derive(settings)  # validates
        self._settings = settings
        self._requested = settings
        self._update_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._stats = PipelineStats()
        self._recent: deque[RecentResult] = deque(maxlen=recent)
        self._windowing = MultiSourceWindowing(settings.window_settings())
        self._tracks: dict[int, _Track] = {}
        self.flops = model.flops

    # Settings ---------------------------------------------------------------------------------

    @property
    def settings(self) -> PipelineSettings:
        """The latest settings (those given to :meth:`update` apply from the next frame)."""
        with self._update_lock:
            return self._requested

    def check(self, **changes: Any) -> PipelineSettings:
        """The settings ``changes`` would give; ``ValueError`` (with the reason) if invalid."""
        return self._change(changes, apply=False)

    def update(self, **changes: Any) -> PipelineSettings:
        """Change live settings (any :class:`PipelineSettings` field); validated at once
        (``ValueError`` with the reason, settings unchanged) and applied from the next frame."""
        return self._change(changes, apply=True)

    def _change(self, changes: dict[str, Any], apply: bool) -> PipelineSettings:
        unknown = set(changes) - {f.name for f in fields(PipelineSettings)}
        if unknown:
            raise ValueError(f"unknown settings {sorted(unknown)}")
        with self._update_lock:
            new = replace(self._requested, **changes)
            new.inference_settings(self.resolutions)
            if apply:
                self._requested = new
        return new

    def _derive(self, settings: PipelineSettings) -> InferenceSettings:
        return settings.inference_settings(self.resolutions)

    @property
    def inference_settings(self) -> InferenceSettings:
        """The model settings the windows run with now."""
        return self._inference

    def _apply_pending(self) -> None:
        with self._update_lock:
            new = self._requested
        if new is self._settings:
            return
        self._settings = new
        self._windowing.update(**asdict(new.window_settings()))
        self._inference = self._derive(new)
        for track in self._tracks.values():
            track.session.settings = self._inference

    # Frames -----------------------------------------------------------------------------------

    def push(
        self,
        source: str,
        stamp_s: float,
        rgb: np.ndarray,
        *,
        stamp_ns: int | None = None,
        frame_id: str = "",
        received_at: float | None = None,
    ) -> list[WindowResult]:
        """Feed one ``(H, W, 3)`` uint8 RGB frame of ``source``; returns the results it made."""
        return self.process(
            source, stamp_s, rgb, stamp_ns=stamp_ns, frame_id=frame_id, received_at=received_at
        ).results

    def process(
        self,
        source: str,
        stamp_s: float,
        rgb: np.ndarray,
        *,
        stamp_ns: int | None = None,
        frame_id: str = "",
        received_at: float | None = None,
    ) -> FrameReport:
        """:meth:`push` with the frame's outcome. ``stamp_ns`` (exact integer stamp, default from
        ``stamp_s``) and ``frame_id`` are carried into the results; ``received_at`` (on the
        pipeline's clock; default now) is where latencies start."""
        start = self._clock()
        received = start if received_at is None else received_at
        if stamp_ns is None:
            stamp_ns = round(float(stamp_s) * 1e9)
        self._apply_pending()
        event = self._windowing.push(source, stamp_s, None)
        results = [r for w in event.ended if (r := self._cut(w, received)) is not None]
        for w in event.opened:
            self._tracks[w.id] = _Track(
                self.engine.session(self._inference), first_stamp_ns=stamp_ns
            )
        active = event.active
        histogram: Counter[int] = Counter()
        if event.late:
            outcome = LATE
        elif not event.kept:
            outcome = NOT_KEPT
        elif not event.windows:
            outcome = BETWEEN_WINDOWS
        elif not active:
            outcome = AFTER_EXIT
        else:
            tensor = None
            if any(self._tracks[w.id].session.needs_frame for w in active):
                if isinstance(rgb, np.ndarray) and not rgb.flags.writeable:
                    rgb = rgb.copy()  # torch warns on read-only arrays (rosbags, bytes buffers)
                tensor = frame_to_tensor(rgb, self.input_size)
            outcome = SKIPPED
            for w in active:
                track = self._tracks[w.id]
                step = track.session.push(tensor)
                track.resolutions.append(step.resolution)
                track.last_stamp, track.last_stamp_ns, track.frame_id = stamp_s, stamp_ns, frame_id
                histogram[step.resolution] += 1
                if step.resolution:
                    outcome = PROCESSED
                if step.exited:
                    self._windowing.mark_exited(w)
                    track.done = True
                    early = w.num_frames < w.size
                    results.append(self._result(w, track, EXIT if early else COMPLETE, received))
        for w in event.completed:
            track = self._tracks.pop(w.id)
            if not track.done:
                results.append(self._result(w, track, COMPLETE, received))
        self._account(outcome, histogram, len(event.opened), results, start, event.restart)
        return FrameReport(results, outcome, event)

    def close(self, source: str | None = None, reason: str = END_OF_STREAM) -> list[WindowResult]:
        """End the current video of ``source`` (all sources when None): results of its cut
        windows (the next frame of the source starts a new video)."""
        start = self._clock()
        self._apply_pending()
        cut = self._windowing.close(source, reason)
        results = [r for w in cut if (r := self._cut(w, start)) is not None]
        self._account(None, Counter(), 0, results, start)
        return results

    def flush(self) -> list[WindowResult]:
        """End every source's current video (end of a bag, shutdown): see :meth:`close`."""
        return self.close(None, END_OF_STREAM)

    def remove(self, source: str) -> list[WindowResult]:
        """Forget ``source`` (a camera that went away), returning the results of its cut windows."""
        start = self._clock()
        cut = self._windowing.remove(source)
        results = [r for w in cut if (r := self._cut(w, start)) is not None]
        self._account(None, Counter(), 0, results, start)
        return results

    @property
    def open_windows(self) -> int:
        """Windows currently open over all sources (exited ones included until they end)."""
        return len(self._tracks)

    # Results ----------------------------------------------------------------------------------

    def _cut(self, window: Window, received: float) -> WindowResult | None:
        track = self._tracks.pop(window.id, None)
        if track is None or track.done:
            return None
        if track.session.frames_processed == 0:
            with self._stats_lock:
                self._stats.windows_without_result += 1
            return None
        return self._result(window, track, window.end_reason or END_OF_STREAM, received)

    def _result(
        self, window: Window, track: _Track, reason: str, received: float
    ) -> WindowResult:
        session = track.session
        probabilities = apply_temperature(session.probabilities.detach().float().cpu(),
                                          self.temperature)
        k = min(self._settings.top_k, len(self.class_names))
        scores, indices = torch.topk(probabilities, k)
        class_id = int(indices[0])
        unknown = float(scores[0]) < self._settings.min_confidence
        complete = reason in (EXIT, COMPLETE)
        length = window.size if complete else window.num_frames
        return WindowResult(
            source=window.source,
            window_id=window.id,
            video=window.video,
            label=UNKNOWN if unknown else self.class_names[class_id],
            class_id=-1 if unknown else class_id,
            confidence=float(scores[0]),
            top_k=[(self.class_names[int(i)], float(s)) for s, i in zip(scores, indices)],
            first_stamp=window.first_stamp,
            last_stamp=track.last_stamp,
            first_stamp_ns=track.first_stamp_ns,
            last_stamp_ns=track.last_stamp_ns,
            frame_id=track.frame_id,
            resolutions=list(track.resolutions),
            frames_processed=session.frames_processed,
            window_length=length,
            exited_early=reason == EXIT,
            complete=complete,
            end_reason=reason,
            gflops=session.gmacs,
            uniform_gflops=self.flops.uniform_video(self.input_size, length),
            latency_s=max(0.0, self._clock() - received),
            probabilities=[float(p) for p in probabilities],
        )

    # Statistics -------------------------------------------------------------------------------

    def _account(
        self,
        outcome: str | None,
        histogram: Counter[int],
        opened: int,
        results: list[WindowResult],
        start: float,
        restart: str | None = None,
    ) -> None:
        busy = self._clock() - start
        with self._stats_lock:
            s = self._stats
            if restart is not None:
                s.restarts[restart] = s.restarts.get(restart, 0) + 1
            if outcome is not None:
                s.frames += 1
                s.outcomes[outcome] += 1
            hist = s.resolution_histogram
            for resolution, count in histogram.items():
                hist[resolution] = hist.get(resolution, 0) + count
                if resolution:
                    s.backbone_frames += count
            s.windows_opened += opened
            s.busy_s += busy
            for r in results:
                s.results += 1
                s.exited_early += r.exited_early
                s.unknown += r.class_id < 0
                s.gflops += r.gflops
                s.uniform_gflops += r.uniform_gflops
                self._recent.append(RecentResult(r.latency_s, r.gflops, r.uniform_gflops))

    def stats(self) -> PipelineStats:
        """A consistent copy of the counters (thread-safe)."""
        with self._stats_lock:
            s = self._stats
            return replace(
                s, outcomes=dict(s.outcomes), resolution_histogram=dict(s.resolution_histogram),
                restarts=dict(s.restarts),
            )

    def recent_results(self) -> list[RecentResult]:
        """Latency and compute of the most recent results (``recent`` of them), oldest first."""
        with self._stats_lock:
            return list(self._recent)
