"""Fair per-camera queues, the inference worker, settings control and status (no ROS)."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest
import torch

from rsee_ros.model import RSEEConfig, build_rsee
from rsee_ros.pipeline.control import SettingsControl
from rsee_ros.pipeline.runner import PipelineSettings, RecognitionPipeline
from rsee_ros.pipeline.scheduler import FairQueue
from rsee_ros.pipeline.status import StatusReporter
from rsee_ros.pipeline.worker import Arrival, DecodedFrame, RecognitionWorker

CONFIG = RSEEConfig(num_classes=3, resolutions=(64, 32), selector_hidden=16,
                    accumulator_hidden=16, selector_shares_backbone=True)
CLASSES = ["wave", "clap", "jump"]
DEADLINE_S = 120.0  # bounds a failure only


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    torch.manual_seed(0)
    return build_rsee(CONFIG).eval()


def _wait(until, timeout: float = DEADLINE_S) -> bool:
    end = time.monotonic() + timeout
    while not until() and time.monotonic() < end:
        time.sleep(0.005)
    return bool(until())


# FairQueue -------------------------------------------------------------------------------------


def test_a_full_camera_queue_drops_only_its_own_oldest_frame() -> None:
    queue: FairQueue[int] = FairQueue(depth=2)
    assert not queue.put("cam0", 1) and not queue.put("cam0", 2)
    assert not queue.put("cam1", 10)
    assert queue.put("cam0", 3)  # cam0 full: its frame 1 goes, cam1's frame stays
    assert queue.drops() == {"cam0": 1, "cam1": 0} and queue.dropped == 1 and len(queue) == 3
    taken = [queue.get(0) for _ in range(3)]
    assert sorted(taken) == [("cam0", 2), ("cam0", 3), ("cam1", 10)]
    assert queue.get(0) is None


def test_cameras_are_served_in_turn() -> None:
    queue: FairQueue[int] = FairQueue(depth=10)
    for i in range(3):
        for cam in ("a", "b", "c"):
            queue.put(cam, i)
    order = [queue.get(0)[0] for _ in range(9)]
    assert order == ["a", "b", "c"] * 3


def test_two_cameras_published_in_sync_get_equal_shares_under_overload() -> None:
    """One publisher sends cam0 and cam1 back to back, far faster than the consumer: with one
    shared drop-oldest queue cam1 was starved; per-camera queues served round robin split the
    work evenly."""
    queue: FairQueue[int] = FairQueue(depth=2)
    served: Counter[str] = Counter()
    for i in range(3000):
        queue.put("cam0", i)
        queue.put("cam1", i)
        if i % 3 == 0:  # the consumer handles one frame per three camera periods
            source, _ = queue.get(0)
            served[source] += 1
    assert served["cam0"] + served["cam1"] == 1000
    assert abs(served["cam0"] - served["cam1"]) <= 1
    drops = queue.drops()
    assert abs(drops["cam0"] - drops["cam1"]) <= 2


def test_close_wakes_a_waiting_consumer() -> None:
    queue: FairQueue[int] = FairQueue(depth=1)
    got: list[object] = []
    thread = threading.Thread(target=lambda: got.append(queue.get(None)))
    thread.start()
    queue.close()
    thread.join(DEADLINE_S)
    assert got == [None] and not thread.is_alive()
    with pytest.raises(ValueError):
        FairQueue(depth=0)


# Worker, control, status -------------------------------------------------------------------------


class _BadFrame(ValueError):
    reason = "broken"
    detail = "not an image"


def _decode(arrival: Arrival) -> DecodedFrame:
    stamp_ns, rgb = arrival.payload
    if rgb is None:
        raise _BadFrame()
    return DecodedFrame(rgb, stamp_ns, "cam_frame")


def _worker(model, **settings) -> tuple[RecognitionWorker, list]:
    pipe = RecognitionPipeline(model, CLASSES)
    control = SettingsControl(pipe, PipelineSettings(**settings))
    published: list = []
    worker = RecognitionWorker(pipe, control, _decode, lambda rs, _a: published.extend(rs),
                               queue_depth=100, reject_errors=(_BadFrame,))
    return worker, published


def test_worker_matches_the_pipeline_and_counts_rejects(model) -> None:
    frames = np.random.default_rng(0).integers(0, 256, (6, 48, 64, 3), dtype=np.uint8)
    worker, published = _worker(model, window_size=3, exit_threshold=1.0)
    try:
        for cam in ("cam0", "cam1"):
            for i, rgb in enumerate(frames):
                worker.submit(cam, (10**9 * (i + 1), rgb), arrival_ns=0)
        worker.submit("cam0", (10**9 * 9, None), arrival_ns=0)
        assert _wait(worker.idle)
    finally:
        worker.stop()
    reference = RecognitionPipeline(model, CLASSES, PipelineSettings(window_size=3,
                                                                     exit_threshold=1.0))
    for cam in ("cam0", "cam1"):
        mine = [r for r in published if r.source == cam]
        expected = []
        for i, rgb in enumerate(frames):
            expected += reference.push(cam, float(i + 1), rgb)
        assert [(r.class_id, r.resolutions) for r in mine] == [
            (r.class_id, r.resolutions) for r in expected]
        assert all(r.confidence == pytest.approx(e.confidence) for r, e in zip(mine, expected))
    assert worker.frames_received == 13 and worker.frames_handled == 12
    assert worker.rejects.counts == {"broken": 1} and worker.results_published == 4


def test_unstamped_frames_take_the_arrival_time(model) -> None:
    frame = np.zeros((48, 64, 3), np.uint8)
    worker, published = _worker(model, window_size=2, exit_threshold=1.0)
    try:
        worker.submit("cam", (0, frame), arrival_ns=5 * 10**9)
        worker.submit("cam", (0, frame), arrival_ns=6 * 10**9)
        assert _wait(lambda: len(published) == 1)
    finally:
        worker.stop()
    assert (published[0].first_stamp_ns, published[0].last_stamp_ns) == (5 * 10**9, 6 * 10**9)


def test_settings_control_keeps_the_user_limits(model) -> None:
    pipe = RecognitionPipeline(model, CLASSES)
    control = SettingsControl(pipe, PipelineSettings(exit_threshold=0.95))
    assert control.controller is None and pipe.settings.exit_threshold == 0.95
    control.apply(target_fps=1e6)  # unreachable: the controller cuts to its cheapest
    controller = control.controller
    assert controller is not None
    controller.period_s = 0.0
    controller.min_frames = 1
    for _ in range(50):
        control.record(1, 0.5)
    assert pipe.settings.max_resolution == 32 and pipe.settings.exit_threshold < 0.95
    assert control.user.exit_threshold == 0.95 and control.capacity_fps == pytest.approx(2.0)
    with pytest.raises(ValueError, match="no resolution left"):
        control.check(max_resolution=16)
    assert control.user.max_resolution == 0  # a refused change leaves everything as it was
    control.apply(target_fps=0.0)
    assert (pipe.settings.exit_threshold, pipe.settings.max_resolution) == (0.95, 0)


def test_status_snapshot_rates_and_counts(model) -> None:
    now = [100.0]
    frames = np.random.default_rng(1).integers(0, 256, (4, 48, 64, 3), dtype=np.uint8)
    worker, published = _worker(model, window_size=2, exit_threshold=1.0)
    reporter = StatusReporter(worker, clock=lambda: now[0])
    try:
        for i, rgb in enumerate(frames):
            worker.submit("cam0", (10**9 * (i + 1), rgb), arrival_ns=0)
        assert _wait(worker.idle)
        now[0] += 2.0
        snap = reporter.snapshot()
    finally:
        worker.stop()
    assert snap.frames_received == 4 and snap.period_frames == 4
    assert snap.input_fps == pytest.approx(2.0) and snap.processed_fps == pytest.approx(2.0)
    assert snap.results_published == 2 == len(published) and snap.healthy
    assert snap.mean_gflops == pytest.approx(sum(r.gflops for r in published) / 2)
    assert snap.latency_p50_ms > 0 and snap.max_resolution == 64 and snap.exit_threshold == 1.0
    assert sum(snap.resolution_histogram.values()) == 4
    now[0] += 1.0
    later = reporter.snapshot()
    assert later.period_frames == 0 and later.input_fps == 0.0 and later.frames_received == 4


def test_the_controller_is_told_only_the_frames_that_went_to_the_model(model) -> None:
    """Windows that exit after their first frame leave 15 nearly free frames each; counting
    them made capacity_fps read thousands of fps while full-cost frames could not keep up."""
    frames = np.random.default_rng(2).integers(0, 256, (32, 48, 64, 3), dtype=np.uint8)
    worker, published = _worker(model, window_size=16, exit_threshold=0.0, skip_enabled=False)
    recorded: list[tuple[int, float]] = []
    worker.control.record = lambda n, busy, dropped=0: recorded.append((n, busy))  # type: ignore
    try:
        for i, rgb in enumerate(frames):
            worker.submit("cam", (10**8 * (i + 1), rgb), arrival_ns=0)
        assert _wait(worker.idle)
    finally:
        worker.stop()
    assert len(published) == 2 and all(r.exited_early for r in published)
    assert [n for n, _ in recorded] == ([1] + [0] * 15) * 2
    assert all(busy > 0 for n, busy in recorded if n) and all(busy == 0 for n, busy in
                                                             recorded if not n)


def test_a_camera_that_stops_has_its_window_published_after_max_gap(model) -> None:
    frames = np.random.default_rng(3).integers(0, 256, (3, 48, 64, 3), dtype=np.uint8)
    worker, published = _worker(model, window_size=16, exit_threshold=1.0, max_gap_s=0.2,
                                skip_enabled=False)
    try:
        for i, rgb in enumerate(frames):
            worker.submit("cam", (10**8 * (i + 1), rgb), arrival_ns=0)
        assert _wait(lambda: len(published) == 1)  # no new frame arrives: cut when stalled
    finally:
        worker.stop()
    (result,) = published
    assert result.end_reason == "stalled" and not result.complete and result.window_length == 3


def test_late_frames_are_rejected_and_do_not_cut_the_window(model) -> None:
    frames = np.random.default_rng(4).integers(0, 256, (5, 48, 64, 3), dtype=np.uint8)
    worker, published = _worker(model, window_size=4, exit_threshold=1.0, max_gap_s=1.0,
                                skip_enabled=False)
    stamps = [1.0, 1.1, 1.05, 1.2, 1.3]  # the third frame is late (out of order)
    try:
        for t, rgb in zip(stamps, frames, strict=True):
            worker.submit("cam", (round(t * 1e9), rgb), arrival_ns=0)
        assert _wait(lambda: len(published) == 1)
    finally:
        worker.stop()
    assert published[0].complete and published[0].window_length == 4
    assert worker.rejects.counts == {"late_stamp": 1}
