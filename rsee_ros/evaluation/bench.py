"""``rsee bench`` as a library: RSEE against Uniform, Resolution-only and Exit-only, measured in
one run with the same weights on the same machine.

Two ways of running each method:

* **streaming**: frames fed one at a time as the node does, through the node's
  :class:`~rsee_ros.pipeline.runner.RecognitionPipeline` (one tumbling window of T frames per
  video; preprocessing of each frame included) when that module is importable, else through a
  :class:`~rsee_ros.model.StreamingSession` with the same per-frame preprocessing. A video's time
  runs from its first pushed frame to its result (the exit, or the last frame); frames after the
  exit are not pushed, as the node would not process them.
* **batched**: ``infer_batch`` on batches of preprocessed clips (only the call is timed).

Videos are decoded a chunk at a time before any timing. Within a chunk the methods alternate
round-robin (the order rotates from video to video and from batch to batch), so machine noise
affects them alike; ``warmup`` videos go through every method before the first timed one and are
not timed. Nothing is printed here.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsee_ros.evaluation.common import GFLOPS_UNIT, NEVER, parse_threshold, threshold_json
from rsee_ros.evaluation.evaluate import data_config, machine_info, settings_json, spread_indices
from rsee_ros.model import InferenceSettings, RSEEModel, StreamingSession
from rsee_ros.model.preprocess import frame_to_tensor, frames_to_tensor

METHODS = ("rsee", "uniform", "resolution_only", "exit_only")
SOURCE = "bench"
FRAME_PERIOD_S = 1.0 / 30.0  # stamps of the fed frames (the windowing only needs them to grow)

TARGET_GFLOPS_REDUCTION = 0.85
TARGET_MAX_ACCURACY_DROP = 1.0
TARGET_THROUGHPUT_RATIO = 3.5

Wrap = Callable[[Iterable[Any]], Iterable[Any]]


@dataclass(frozen=True)
class BenchMethod:
    """A benchmarked method: a name and the inference settings it runs with."""

    name: str
    settings: InferenceSettings


def bench_methods(model: RSEEModel, threshold: float) -> list[BenchMethod]:
    """RSEE (selector + gate at ``threshold``), Uniform (every frame at the highest resolution,
    no exit), Resolution-only (selector, no exit) and Exit-only (highest resolution + gate)."""
    top = model.config.max_resolution
    uniform = InferenceSettings(policy="uniform", fixed_resolution=top, exit_threshold=NEVER)
    return [
        BenchMethod("rsee", InferenceSettings(policy="learned", exit_threshold=threshold)),
        BenchMethod("uniform", uniform),
        BenchMethod("resolution_only", InferenceSettings(policy="learned", exit_threshold=NEVER)),
        BenchMethod("exit_only", uniform.with_changes(exit_threshold=threshold)),
    ]


@dataclass
class VideoOutcome:
    """One streamed video: prediction, cost, frames and time."""

    prediction: int
    gflops: float
    frames_pushed: int
    frames_processed: int
    exited_early: bool
    seconds: float
    resolutions: list[int] = field(default_factory=list)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StreamRunner:
    """Feeds videos frame by frame with one method's settings, the way the node does.

    ``backend`` is ``"pipeline"`` (the node's RecognitionPipeline) or ``"session"`` (a bare
    StreamingSession with the same per-frame preprocessing; used when the pipeline module is
    missing, or when asked).
    """

    def __init__(
        self,
        model: RSEEModel,
        class_names: Sequence[str],
        frames: int,
        settings: InferenceSettings,
        backend: str | None = None,
    ) -> None:
        self.model = model
        self.settings = settings
        self.size = model.config.max_resolution
        self._stamp = 0.0
        self.pipeline = None
        if backend in (None, "pipeline"):
            self.pipeline = _make_pipeline(model, class_names, frames, settings,
                                           required=backend == "pipeline")
        self.backend = "pipeline" if self.pipeline is not None else "session"

    def run(self, clip: np.ndarray) -> VideoOutcome:
        """Stream one ``(T, H, W, 3)`` uint8 RGB clip to its result."""
        if self.pipeline is not None:
            return self._run_pipeline(clip)
        return self._run_session(clip)

    def _run_pipeline(self, clip: np.ndarray) -> VideoOutcome:
        pipe = self.pipeline
        results: list[Any] = []
        pushed = 0
        device = self.model.device
        _sync(device)
        start = time.perf_counter()
        for frame in clip:
            self._stamp += FRAME_PERIOD_S
            results = pipe.push(SOURCE, self._stamp, frame)
            pushed += 1
            if results:
                break
        _sync(device)
        seconds = time.perf_counter() - start
        pipe.close(SOURCE)  # ends this video (untimed): the next clip opens a fresh window
        if len(results) != 1:
            raise RuntimeError(f"expected one window result per video, got {len(results)}")
        r = results[0]
        return VideoOutcome(
            prediction=r.class_id, gflops=r.gflops, frames_pushed=pushed,
            frames_processed=r.frames_processed, exited_early=r.exited_early, seconds=seconds,
            resolutions=list(r.resolutions),
        )

    def _run_session(self, clip: np.ndarray) -> VideoOutcome:
        device = self.model.device
        resolutions: list[int] = []
        exited = False
        _sync(device)
        start = time.perf_counter()
        session = StreamingSession(self.model, self.settings)
        for frame in clip:
            step = session.push(frame_to_tensor(frame, self.size).to(device))
            resolutions.append(step.resolution)
            if step.exited:
                exited = True
                break
        prediction = int(session.probabilities.argmax())
        _sync(device)
        seconds = time.perf_counter() - start
        return VideoOutcome(
            prediction=prediction, gflops=session.gmacs, frames_pushed=len(resolutions),
            frames_processed=session.frames_processed,
            exited_early=exited and len(resolutions) < len(clip), seconds=seconds,
            resolutions=resolutions,
        )


def _make_pipeline(
    model: RSEEModel,
    class_names: Sequence[str],
    frames: int,
    settings: InferenceSettings,
    *,
    required: bool = False,
) -> Any:
    """The node's pipeline with one tumbling window of ``frames`` per video, or None when the
    pipeline module is not there."""
    try:
        from rsee_ros.pipeline.runner import PipelineSettings, RecognitionPipeline
    except ImportError:
        if required:
            raise
        return None
    threshold = settings.exit_threshold
    pipe_settings = PipelineSettings(
        window_size=frames, stride=0, frame_step=1, max_gap_s=0.0,
        exit_threshold=min(max(threshold, 0.0), 1.0), skip_enabled=settings.skip_enabled,
        allowed_resolutions=tuple(settings.allowed_resolutions or ()), top_k=1,
    )
    derived = pipe_settings.inference_settings(model.config.resolutions)
    # PipelineSettings (the node's parameters) has no policy and caps the threshold at 1; the
    # baselines (uniform policy, never exiting) go in as the pipeline's inference overrides.
    overrides = {
        f.name: getattr(settings, f.name) for f in fields(InferenceSettings)
        if getattr(settings, f.name) != getattr(derived, f.name)
    }
    pipe = RecognitionPipeline(model, list(class_names), pipe_settings,
                               inference_overrides=overrides or None)
    if pipe.inference_settings != settings:
        raise RuntimeError(f"pipeline runs with {pipe.inference_settings}, wanted {settings}")
    return pipe


# ------------------------------------------------------------------------------ aggregation


@dataclass
class _Stream:
    outcomes: list[VideoOutcome] = field(default_factory=list)
    seconds: float = 0.0
    timed_videos: int = 0
    timed_pushed: int = 0
    latencies: list[float] = field(default_factory=list)


@dataclass
class _Batched:
    predictions: list[np.ndarray] = field(default_factory=list)
    gflops: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0
    timed_videos: int = 0


def _resolution_histogram(outcomes: Sequence[VideoOutcome], resolutions: Sequence[int]
                          ) -> dict[str, int]:
    hist = {str(r): 0 for r in resolutions}
    hist["not_processed"] = 0
    for o in outcomes:
        for r in o.resolutions:
            hist[str(r) if r else "not_processed"] += 1
    return hist


def _stream_summary(s: _Stream, labels: np.ndarray, frames: int,
                    resolutions: Sequence[int]) -> dict[str, Any]:
    preds = np.array([o.prediction for o in s.outcomes])
    n = len(preds)
    return {
        "num_videos": n,
        "top1": float(100 * np.mean(preds == labels)) if n else math.nan,
        "gflops_per_video": float(np.mean([o.gflops for o in s.outcomes])) if n else math.nan,
        "frames_pushed": float(np.mean([o.frames_pushed for o in s.outcomes])) if n else math.nan,
        "frames_processed": float(np.mean([o.frames_processed for o in s.outcomes]))
        if n else math.nan,
        "exited_early_fraction": float(np.mean([o.exited_early for o in s.outcomes]))
        if n else math.nan,
        "resolution_histogram": _resolution_histogram(s.outcomes, resolutions),
        "timed_videos": s.timed_videos,
        "seconds": s.seconds,
        "videos_per_s": s.timed_videos / s.seconds if s.seconds > 0 else math.nan,
        "frames_per_s": frames * s.timed_videos / s.seconds if s.seconds > 0 else math.nan,
        "pushed_frames_per_s": s.timed_pushed / s.seconds if s.seconds > 0 else math.nan,
        "latency_ms_mean": 1e3 * statistics.fmean(s.latencies) if s.latencies else math.nan,
        "latency_ms_median": 1e3 * statistics.median(s.latencies) if s.latencies else math.nan,
    }


def _batched_summary(b: _Batched, labels: np.ndarray, frames: int) -> dict[str, Any]:
    preds = np.concatenate(b.predictions) if b.predictions else np.zeros(0)
    gflops = np.concatenate(b.gflops) if b.gflops else np.zeros(0)
    n = len(preds)
    return {
        "num_videos": n,
        "top1": float(100 * np.mean(preds == labels)) if n else math.nan,
        "gflops_per_video": float(gflops.mean()) if n else math.nan,
        "timed_videos": b.timed_videos,
        "seconds": b.seconds,
        "videos_per_s": b.timed_videos / b.seconds if b.seconds > 0 else math.nan,
        "frames_per_s": frames * b.timed_videos / b.seconds if b.seconds > 0 else math.nan,
    }


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(a) and not math.isnan(b) else math.nan


def ratios_vs_uniform(streaming: Mapping[str, dict], batched: Mapping[str, dict]
                      ) -> dict[str, dict[str, float]]:
    """Per method (not Uniform): GFLOPs reduction, throughput ratio and top-1 delta (points)
    against Uniform, all from this run."""
    out = {}
    uni, uni_b = streaming["uniform"], batched.get("uniform", {})
    for name, s in streaming.items():
        if name == "uniform":
            continue
        b = batched.get(name, {})
        out[name] = {
            "gflops_reduction_vs_uniform": 1.0 - _ratio(s["gflops_per_video"],
                                                        uni["gflops_per_video"]),
            "throughput_ratio_vs_uniform": _ratio(s["videos_per_s"], uni["videos_per_s"]),
            "accuracy_delta_points": s["top1"] - uni["top1"],
            "batched_throughput_ratio_vs_uniform": _ratio(b.get("videos_per_s", math.nan),
                                                          uni_b.get("videos_per_s", math.nan)),
            "batched_accuracy_delta_points": b.get("top1", math.nan) - uni_b.get("top1", math.nan),
        }
    return out


def check_targets(streaming: Mapping[str, dict], ratios: Mapping[str, dict]) -> list[dict]:
    """The issue's targets, each with its value and whether this run meets it (streaming)."""
    r = ratios["rsee"]
    rsee = streaming["rsee"]
    targets = [
        {"name": "gflops_reduction_vs_uniform", "target": f">= {TARGET_GFLOPS_REDUCTION}",
         "value": r["gflops_reduction_vs_uniform"],
         "passed": r["gflops_reduction_vs_uniform"] >= TARGET_GFLOPS_REDUCTION},
        {"name": "accuracy_drop_vs_uniform_points", "target": f"<= {TARGET_MAX_ACCURACY_DROP}",
         "value": 0.0 - r["accuracy_delta_points"],
         "passed": 0.0 - r["accuracy_delta_points"] <= TARGET_MAX_ACCURACY_DROP},
        {"name": "throughput_ratio_vs_uniform", "target": f">= {TARGET_THROUGHPUT_RATIO}",
         "value": r["throughput_ratio_vs_uniform"],
         "passed": r["throughput_ratio_vs_uniform"] >= TARGET_THROUGHPUT_RATIO},
    ]
    for other in ("resolution_only", "exit_only"):
        o = streaming[other]
        targets.append({
            "name": f"ahead_of_{other}",
            "target": "fewer GFLOPs at equal-or-better top-1",
            "value": {"rsee_gflops": rsee["gflops_per_video"], f"{other}_gflops":
                      o["gflops_per_video"], "rsee_top1": rsee["top1"], f"{other}_top1": o["top1"]},
            "passed": bool(rsee["gflops_per_video"] < o["gflops_per_video"]
                           and rsee["top1"] >= o["top1"]),
        })
    return targets


# ----------------------------------------------------------------------------------- running


def _rotated(items: Sequence[Any], shift: int) -> list[Any]:
    shift %= max(len(items), 1)
    return list(items[shift:]) + list(items[:shift])


def run_bench(
    model: RSEEModel,
    class_names: Sequence[str],
    clips: Iterable[tuple[list[np.ndarray], list[int]]],
    *,
    frames: int,
    threshold: float,
    warmup: int = 2,
    passes: int = 1,
    batch_size: int = 8,
    backend: str | None = None,
    wrap: Wrap | None = None,
) -> dict[str, Any]:
    """Benchmark the :func:`bench_methods` on chunks of ``(uint8 clips, labels)``.

    Returns ``{"streaming", "batched", "ratios", "targets", "agreement", "backend"}``.
    """
    methods = bench_methods(model, threshold)
    runners = {m.name: StreamRunner(model, class_names, frames, m.settings, backend)
               for m in methods}
    device = model.device
    size = model.config.max_resolution
    stream = {m.name: _Stream() for m in methods}
    batched = {m.name: _Batched() for m in methods}
    labels: list[int] = []
    warmed = warmup <= 0
    video_counter = 0
    batch_counter = 0
    chunks = wrap(clips) if wrap is not None else clips
    for chunk, chunk_labels in chunks:
        if not chunk:
            continue
        labels += chunk_labels
        tensors = [frames_to_tensor(c, size) for c in chunk]  # batched input (untimed)
        if not warmed:
            for m in methods:
                for clip in chunk[:warmup]:
                    runners[m.name].run(clip)
                with torch.no_grad():
                    model.infer_batch(torch.stack(tensors[:batch_size]).to(device), m.settings)
            warmed = True
        for p in range(passes):
            for i, clip in enumerate(chunk):
                for m in _rotated(methods, video_counter + i + p):
                    outcome = runners[m.name].run(clip)
                    s = stream[m.name]
                    if p == 0:
                        s.outcomes.append(outcome)
                    s.seconds += outcome.seconds
                    s.timed_videos += 1
                    s.timed_pushed += outcome.frames_pushed
                    s.latencies.append(outcome.seconds)
            for start in range(0, len(chunk), batch_size):
                batch = torch.stack(tensors[start:start + batch_size]).to(device)
                for m in _rotated(methods, batch_counter + p):
                    _sync(device)
                    t0 = time.perf_counter()
                    out = model.infer_batch(batch, m.settings)
                    _sync(device)
                    b = batched[m.name]
                    b.seconds += time.perf_counter() - t0
                    b.timed_videos += len(batch)
                    if p == 0:
                        b.predictions.append(out.probabilities.argmax(-1).cpu().numpy())
                        b.gflops.append(out.gmacs.cpu().numpy())
                batch_counter += 1
        video_counter += len(chunk)
    label_array = np.asarray(labels)
    resolutions = model.config.resolutions
    streaming_summary = {n: _stream_summary(s, label_array, frames, resolutions)
                         for n, s in stream.items()}
    batched_summary = {n: _batched_summary(b, label_array, frames) for n, b in batched.items()}
    for m in methods:
        streaming_summary[m.name]["settings"] = settings_json(m.settings)
        batched_summary[m.name]["settings"] = settings_json(m.settings)
    agreement = {}
    for n in stream:
        s_pred = np.array([o.prediction for o in stream[n].outcomes])
        s_gf = np.array([o.gflops for o in stream[n].outcomes])
        b_pred = np.concatenate(batched[n].predictions) if batched[n].predictions else s_pred
        b_gf = np.concatenate(batched[n].gflops) if batched[n].gflops else s_gf
        same = (s_pred == b_pred) & np.isclose(s_gf, b_gf, rtol=1e-5, atol=1e-9)
        agreement[n] = float(same.mean()) if len(same) else math.nan
    ratios = ratios_vs_uniform(streaming_summary, batched_summary)
    return {
        "backend": runners["rsee"].backend,
        "streaming": streaming_summary,
        "batched": batched_summary,
        "ratios": ratios,
        "targets": check_targets(streaming_summary, ratios),
        "agreement": agreement,
        "num_videos": len(labels),
    }


def default_threshold(metadata: Mapping[str, Any]) -> float:
    """The exit threshold the checkpoint was evaluated with in training, else 0.9."""
    value = (((metadata or {}).get("train_config") or {}).get("train") or {}).get(
        "eval_threshold")
    return float(value) if value is not None else 0.9


class ClipChunks:
    """Decoded ``(T, H, W, 3)`` uint8 clips (test sampling) and their labels, ``chunk`` videos
    at a time (sized, for progress bars); videos that fail to decode are left out."""

    def __init__(self, dataset: Any, indices: Sequence[int], chunk: int) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.chunk = max(int(chunk), 1)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.chunk)

    def __iter__(self) -> Iterator[tuple[list[np.ndarray], list[int]]]:
        from rsee_ros.data import VideoDecodeError

        for start in range(0, len(self.indices), self.chunk):
            clips, labels = [], []
            for i in self.indices[start:start + self.chunk]:
                try:
                    clips.append(np.ascontiguousarray(self.dataset.read_clip(i)))
                except VideoDecodeError:
                    continue
                labels.append(int(self.dataset.records[i].label))
            yield clips, labels


def bench(
    checkpoint: str | Path,
    data: str | Path,
    *,
    kind: str | None = None,
    split: str = "test",
    frames: int = 16,
    threshold: float | str | None = None,
    max_videos: int | None = None,
    warmup: int = 2,
    passes: int = 1,
    batch_size: int = 8,
    device: str = "cpu",
    backend: str | None = None,
    options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    wrap: Wrap | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Load a checkpoint and data set and benchmark them; returns the JSON report."""
    from rsee_ros.model import load_checkpoint, resolve_device
    from rsee_ros.training.data import build_dataset

    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint, device=dev)
    thr = default_threshold(ckpt.metadata) if threshold is None else parse_threshold(threshold)
    data_cfg = data_config(data, kind=kind, frames=frames, metadata=ckpt.metadata,
                           options=options, cache_dir=cache_dir)
    bundle = build_dataset(data_cfg, subset=split, size=ckpt.config.max_resolution, train=False,
                           progress=progress)
    if bundle.classes != ckpt.class_names:
        raise ValueError(f"{data}: data set classes differ from the checkpoint's")
    indices = spread_indices(len(bundle.dataset), max_videos)
    clips = ClipChunks(bundle.dataset, indices, chunk=max(batch_size, 1) * 4)
    result = run_bench(ckpt.model, ckpt.class_names, clips, frames=frames, threshold=thr,
                       warmup=warmup, passes=passes, batch_size=batch_size, backend=backend,
                       wrap=wrap)
    table = ckpt.model.flops
    return {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "kind": data_cfg["kind"],
        "split": split,
        "frames": frames,
        "classes": list(ckpt.class_names),
        "machine": machine_info(dev),
        "threshold": threshold_json(thr),
        "warmup_videos": warmup,
        "passes": passes,
        "batch_size": batch_size,
        "order": "round-robin: method order rotates per video (streaming) and per batch",
        "timing": "streaming: first pushed frame to the result, frame preprocessing included, "
                  "frames after the exit not pushed; batched: infer_batch only",
        "gflops_unit": GFLOPS_UNIT,
        "uniform_gflops_per_video": table.uniform_video(ckpt.config.max_resolution, frames),
        **result,
    }


__all__ = [
    "METHODS",
    "BenchMethod",
    "ClipChunks",
    "StreamRunner",
    "VideoOutcome",
    "bench",
    "bench_methods",
    "check_targets",
    "default_threshold",
        "ratios_vs_uniform",
    "run_bench",
]
