"""RecognitionPipeline: windowing + streaming inference, the implementation shared by the node,
eval-bag and the demo (no ROS here)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsee_ros.model import RSEEConfig, build_rsee, save_checkpoint
from rsee_ros.model.preprocess import frames_to_tensor
from rsee_ros.pipeline.runner import (
    AFTER_EXIT,
    BETWEEN_WINDOWS,
    FRAME_OUTCOMES,
    NOT_KEPT,
    PipelineSettings,
    RecognitionPipeline,
    percentile,
)

CONFIG = RSEEConfig(num_classes=3, resolutions=(64, 32), selector_hidden=16,
                    accumulator_hidden=16, selector_shares_backbone=True)
CLASSES = ["wave", "clap", "jump"]
NEVER = 1.0  # NEVER_EXIT: no early exit


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)  # tiny model on a shared CPU: threads only add contention
    torch.manual_seed(0)
    return build_rsee(CONFIG).eval()


def _frames(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 60, 80, 3), dtype=np.uint8)


def _pipeline(model, **settings) -> RecognitionPipeline:
    return RecognitionPipeline(model, CLASSES, PipelineSettings(**settings))


def _feed(pipe: RecognitionPipeline, frames: np.ndarray, source: str = "cam", t0: float = 0.0,
          dt: float = 0.1) -> list:
    results = []
    for i, frame in enumerate(frames):
        results += pipe.push(source, t0 + i * dt, frame, frame_id="cam_frame")
    return results


def test_windows_match_batch_inference(model) -> None:
    """Frame-by-frame results equal infer_batch on the same windows (same decisions)."""
    frames = _frames(12)
    pipe = _pipeline(model, window_size=4, exit_threshold=NEVER)
    results = _feed(pipe, frames)
    assert [r.window_id for r in results] == [0, 1, 2]
    batch = frames_to_tensor(frames, 64).view(3, 4, 3, 64, 64)
    expected = model.infer_batch(batch, exit_threshold=NEVER)
    for i, r in enumerate(results):
        assert r.resolutions == expected.resolutions[i].tolist()
        assert r.frames_processed == int(expected.frames_processed[i])
        assert r.probabilities == pytest.approx(expected.probabilities[i].tolist(), abs=1e-5)
        assert r.gflops == pytest.approx(float(expected.gmacs[i]))
        assert r.class_id == int(expected.probabilities[i].argmax())
        assert r.label == CLASSES[r.class_id]
        assert (r.complete, r.exited_early, r.end_reason) == (True, False, "complete")
        assert r.window_length == 4 and r.source == "cam" and r.frame_id == "cam_frame"
        assert r.first_stamp == pytest.approx(0.4 * i) and r.last_stamp == pytest.approx(0.4 * i
                                                                                         + 0.3)
        assert r.last_stamp_ns == round((0.4 * i + 0.3) * 1e9)
        assert r.uniform_gflops == pytest.approx(model.flops.uniform_video(64, 4))
        assert [label for label, _ in r.top_k] == [CLASSES[j] for j in
                                                   np.argsort(r.probabilities)[::-1]]
        assert r.latency_s >= 0
    stats = pipe.stats()
    assert stats.frames == 12 and sum(stats.outcomes.values()) == 12
    assert stats.results == 3 and stats.windows_opened == 3
    assert sum(stats.resolution_histogram.values()) == 12
    assert stats.backbone_frames == sum(r.frames_processed for r in results)
    assert stats.mean_gflops == pytest.approx(np.mean([r.gflops for r in results]))


def test_early_exit_publishes_at_once_and_frees_the_rest(model) -> None:
    pipe = _pipeline(model, window_size=5, exit_threshold=0.0, skip_enabled=False)
    frames = _frames(10)
    per_frame = [pipe.process("cam", i * 0.1, f) for i, f in enumerate(frames)]
    # Threshold 0: every window exits on its first processed frame (its first frame here).
    assert [len(p.results) for p in per_frame] == [1, 0, 0, 0, 0, 1, 0, 0, 0, 0]
    first = per_frame[0].results[0]
    assert first.exited_early and first.complete and first.end_reason == "exit"
    assert first.frames_processed == 1 and first.resolutions == [64]
    assert first.window_length == 5 and first.last_stamp == first.first_stamp == 0.0
    assert [p.outcome for p in per_frame[1:5]] == [AFTER_EXIT] * 4  # not looked at: no compute
    flops = model.flops
    assert first.gflops == pytest.approx(flops.selector + flops.backbone[64] + flops.head)
    assert pipe.stats().exited_early == 2


def test_sliding_windows_overlap(model) -> None:
    pipe = _pipeline(model, window_size=4, stride=2, exit_threshold=NEVER, skip_enabled=False)
    results = _feed(pipe, _frames(10))
    # Windows start at 0, 2, 4, 6 (8 opens but is incomplete at the end of the stream).
    assert [r.first_stamp for r in results] == pytest.approx([0.0, 0.2, 0.4, 0.6])
    assert [r.last_stamp for r in results] == pytest.approx([0.3, 0.5, 0.7, 0.9])
    assert all(r.frames_processed == 4 for r in results)
    # An overlapping window sees the same frame at the same resolution as a fresh session would.
    alone = _pipeline(model, window_size=4, exit_threshold=NEVER, skip_enabled=False)
    again = _feed(alone, _frames(10)[2:6])
    assert again[0].probabilities == pytest.approx(results[1].probabilities, abs=1e-5)
    tail = pipe.flush()
    assert len(tail) == 1 and tail[0].end_reason == "end_of_stream" and not tail[0].complete
    assert tail[0].window_length == 2 and tail[0].uniform_gflops == pytest.approx(
        model.flops.uniform_video(64, 2))


def test_gap_and_backwards_stamps_cut_windows(model) -> None:
    pipe = _pipeline(model, window_size=4, exit_threshold=NEVER, skip_enabled=False, max_gap_s=0.5)
    frames = _frames(10)
    results = _feed(pipe, frames[:3])  # a window with 3 of its 4 frames
    assert results == []
    cut = pipe.push("cam", 5.0, frames[3])  # 4.8 s later: a new video
    assert len(cut) == 1
    r = cut[0]
    assert (r.complete, r.end_reason, r.window_length, r.frames_processed) == (False, "gap", 3, 3)
    assert r.last_stamp == pytest.approx(0.2) and r.video == 0
    cut = pipe.push("cam", 4.0, frames[4])  # back in time
    assert [x.end_reason for x in cut] == ["backwards"] and cut[0].window_length == 1
    results = _feed(pipe, frames[5:9], t0=4.1)
    assert len(results) == 1 and results[0].video == 2 and results[0].complete


def test_sources_never_mix(model) -> None:
    a, b = _frames(8, seed=1), _frames(8, seed=2)
    settings = dict(window_size=4, exit_threshold=NEVER)
    mixed = _pipeline(model, **settings)
    results: list = []
    for i in range(8):
        results += mixed.push("/a", i * 0.1, a[i])
        results += mixed.push("/b", i * 0.1 + 0.05, b[i])
    for name, frames in (("/a", a), ("/b", b)):
        alone = _feed(_pipeline(model, **settings), frames, source=name)
        mine = [r for r in results if r.source == name]
        assert [r.resolutions for r in mine] == [r.resolutions for r in alone]
        for x, y in zip(mine, alone, strict=True):
            assert x.probabilities == pytest.approx(y.probabilities, abs=1e-5)


def test_live_updates_apply_from_the_next_frame(model) -> None:
    pipe = _pipeline(model, window_size=6, exit_threshold=NEVER, skip_enabled=False)
    frames = _frames(20)
    assert _feed(pipe, frames[:2]) == []
    pipe.update(exit_threshold=0.0)  # the next processed frame exits
    out = pipe.push("cam", 0.2, frames[2])
    assert len(out) == 1 and out[0].exited_early and out[0].frames_processed == 3
    pipe.update(exit_threshold=NEVER, max_resolution=40)  # cap: only 32 is left
    rest = [pipe.process("cam", 0.3 + i * 0.1, f) for i, f in enumerate(frames[3:6])]
    assert [(r.outcome, r.results) for r in rest] == [(AFTER_EXIT, [])] * 3
    results = _feed(pipe, frames[6:18], t0=0.6)
    assert len(results) == 2 and all(set(r.resolutions) == {32} for r in results)
    pipe.update(max_resolution=0, allowed_resolutions=(64,), window_size=3, top_k=1)
    results = _feed(pipe, frames[:3], t0=1.8)
    assert len(results) == 1 and results[0].resolutions == [64, 64, 64]
    assert len(results[0].top_k) == 1
    before = pipe.settings
    for bad, match in (
        (dict(max_resolution=20), "no resolution left"),
        (dict(allowed_resolutions=(48,)), "not among the model's"),
        (dict(window_size=0), "window_size"),
        (dict(exit_threshold=1.5), "exit_threshold"),
        (dict(frame_step=1.5), "frame_step"),
        (dict(top_k=0), "top_k"),
        (dict(color="red"), "unknown"),
    ):
        with pytest.raises(ValueError, match=match):
            pipe.update(**bad)
        assert pipe.settings == before
    assert pipe.check(window_size=8).window_size == 8 and pipe.settings == before


def test_frame_step_and_stride_outcomes_account_for_every_frame(model) -> None:
    pipe = _pipeline(model, window_size=2, stride=4, frame_step=2, exit_threshold=NEVER)
    reports = [pipe.process("cam", i * 0.05, f) for i, f in enumerate(_frames(16))]
    outcomes = [r.outcome for r in reports]
    assert outcomes[1::2] == [NOT_KEPT] * 8
    # Kept frames 0..7: windows at 0-1 and 4-5, kept frames 2, 3, 6, 7 are between windows.
    assert [outcomes[i] for i in (4, 6, 12, 14)] == [BETWEEN_WINDOWS] * 4
    stats = pipe.stats()
    assert set(stats.outcomes) == set(FRAME_OUTCOMES) and sum(stats.outcomes.values()) == 16
    assert stats.results == 2


def test_checkpoint_path_and_validation(model, tmp_path) -> None:
    path = save_checkpoint(tmp_path / "tiny.pt", model, CLASSES)
    pipe = RecognitionPipeline(path, settings=PipelineSettings(window_size=2, exit_threshold=NEVER))
    assert pipe.class_names == CLASSES and pipe.input_size == 64
    assert len(_feed(pipe, _frames(4))) == 2
    with pytest.raises(ValueError, match="class names"):
        RecognitionPipeline(model, ["a"])
    with pytest.raises(ValueError, match="no resolution left"):
        RecognitionPipeline(model, CLASSES, PipelineSettings(max_resolution=16))


def test_the_uniform_policy_and_the_gate_are_settings(model) -> None:
    uniform = RecognitionPipeline(model, CLASSES, PipelineSettings(
        window_size=3, policy="uniform", exit_threshold=1.0))
    results = _feed(uniform, _frames(3))
    assert results[0].resolutions == [64, 64, 64] and not results[0].exited_early
    assert results[0].gflops == pytest.approx(model.flops.uniform_video(64, 3))  # no selector
    uniform.update(top_k=2, max_resolution=32)  # the uniform policy takes the highest one left
    results = _feed(uniform, _frames(3), t0=0.3)
    assert results[0].resolutions == [32, 32, 32] and len(results[0].top_k) == 2
    assert uniform.inference_settings.policy == "uniform"
    learned = RecognitionPipeline(model, CLASSES, PipelineSettings(gate="learned"))
    assert learned.inference_settings.gate == "learned"
    for bad in (dict(policy="random"), dict(gate="sometimes")):
        with pytest.raises(ValueError):
            PipelineSettings(**bad)


def test_percentile() -> None:
    assert percentile([3, 1, 2, 4], 50) == 2 and percentile([3, 1, 2, 4], 99) == 4
    assert np.isnan(percentile([], 50))


def test_min_confidence_turns_unsure_results_into_unknown(model) -> None:
    frames = _frames(8)
    sure = _feed(_pipeline(model, window_size=4, exit_threshold=1.0, min_confidence=0.0), frames)
    pipe = _pipeline(model, window_size=4, exit_threshold=1.0, min_confidence=0.99)
    unsure = _feed(pipe, frames)
    assert len(sure) == len(unsure) == 2
    for a, b in zip(sure, unsure, strict=True):
        assert a.confidence < 0.99 and a.class_id >= 0  # this tiny model is never that sure
        assert (b.label, b.class_id) == ("unknown", -1)
        assert b.top_k == a.top_k and b.confidence == a.confidence
    assert pipe.stats().unknown == 2
    with pytest.raises(ValueError, match="min_confidence"):
        PipelineSettings(min_confidence=1.5)
