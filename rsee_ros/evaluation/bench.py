"""``rsee bench`` as a library: RSEE against Uniform, Resolution-only and Exit-only
(:data:`~rsee_ros.evaluation.methods.BENCH_METHODS`), measured in one run with the same weights on
the same machine.

Two ways of running each method:

* **streaming**: frames fed one at a time as the node does, through the node's
  :class:`~rsee_ros.pipeline.runner.RecognitionPipeline` (one tumbling window of T frames per
  video; preprocessing of each frame included; :mod:`~rsee_ros.evaluation.streaming`). A video's
  time runs from its first pushed frame to its result (the exit, or the last frame); frames after
  the exit are not pushed, as the node would not process them.
* **batched**: ``infer_batch`` on batches of preprocessed clips (only the call is timed).

Videos are decoded a chunk at a time before any timing. Within a chunk the methods alternate
round-robin (the order rotates from video to video and from batch to batch), so machine noise
affects them alike; ``warmup`` videos go through every method before the first timed one and are
not timed. Nothing is printed here.

A little over 400 lines: the engines' summary and targets (``engines_summary``,
``check_engine_targets``) stay beside the run whose figures they read.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsee_ros.engine import engine_for_model
from rsee_ros.engine.base import Engine
from rsee_ros.evaluation.clock import machine_info, stopwatch
from rsee_ros.evaluation.common import GFLOPS_UNIT, parse_threshold, threshold_json
from rsee_ros.evaluation.data import ClipChunks, load_split, spread_indices
from rsee_ros.evaluation.methods import MAIN, Method, bench_methods, settings_json
from rsee_ros.evaluation.streaming import BACKEND, StreamRunner, VideoOutcome
from rsee_ros.model import RSEEModel
from rsee_ros.model.preprocess import frames_to_tensor

__all__ = [
    "agreement",
    "bench",
    "check_targets",
    "default_threshold",
    "ratios_vs_uniform",
    "run_bench",
]

TARGET_GFLOPS_REDUCTION = 0.85
TARGET_MAX_ACCURACY_DROP = 1.0
TARGET_THROUGHPUT_RATIO = 3.5
TARGET_ENGINE_SPEEDUP = 5.0
TARGET_COST_FOLLOWS_FLOPS = 0.8

Wrap = Callable[[Iterable[Any]], Iterable[Any]]


# ------------------------------------------------------------------------------ aggregation


@dataclass
class _Stream:
    outcomes: list[VideoOutcome] = field(default_factory=list)
    seconds: float = 0.0
    timed_videos: int = 0
    timed_pushed: int = 0
    latencies: list[float] = field(default_factory=list)

    def add(self, outcome: VideoOutcome, keep: bool) -> None:
        """Count one timed video; ``keep`` its outcome (the first pass) for the figures."""
        if keep:
            self.outcomes.append(outcome)
        self.seconds += outcome.seconds
        self.timed_videos += 1
        self.timed_pushed += outcome.frames_pushed
        self.latencies.append(outcome.seconds)


@dataclass
class _Batched:
    predictions: list[np.ndarray] = field(default_factory=list)
    gflops: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0
    timed_videos: int = 0

    def add(self, out: Any, videos: int, seconds: float, keep: bool) -> None:
        """Count one timed batch; ``keep`` its predictions and cost (the first pass)."""
        self.seconds += seconds
        self.timed_videos += videos
        if keep:
            self.predictions.append(out.probabilities.argmax(-1).cpu().numpy())
            self.gflops.append(out.gmacs.cpu().numpy())


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


def agreement(s: _Stream, b: _Batched) -> float:
    """Fraction of the videos on which streaming and batched inference gave the same prediction
    and GFLOPs (NaN without videos)."""
    s_pred = np.array([o.prediction for o in s.outcomes])
    s_gf = np.array([o.gflops for o in s.outcomes])
    b_pred = np.concatenate(b.predictions) if b.predictions else s_pred
    b_gf = np.concatenate(b.gflops) if b.gflops else s_gf
    same = (s_pred == b_pred) & np.isclose(s_gf, b_gf, rtol=1e-5, atol=1e-9)
    return float(same.mean()) if len(same) else math.nan


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


class _BenchRun:
    """The runners and the figures collected so far of one :func:`run_bench`: per engine and
    method a streaming runner, per method the batched figures (torch)."""

    def __init__(self, models: Mapping[str, RSEEModel],
                 engines: Mapping[str, Mapping[str, Engine]], frames: int,
                 methods: Sequence[Method], batch_size: int) -> None:
        self.models = models
        self.model = models[MAIN]
        self.methods = list(methods)
        self.batch_size = batch_size
        self.pairs = [(e, m) for e in engines[MAIN] for m in methods]
        self.runners = {}
        for e, m in self.pairs:
            engine = engines[m.model][e]
            self.runners[(e, m.group)] = StreamRunner(engine, engine.class_names, frames,
                                                      m.settings)
        self.stream = {(e, m.group): _Stream() for e, m in self.pairs}
        self.batched = {m.group: _Batched() for m in methods}
        self.videos = 0  # videos of the earlier chunks (the streaming rotation)
        self.batches = 0  # batches timed so far (the batched rotation)

    def warm_up(self, chunk: Sequence[np.ndarray], tensors: Sequence[torch.Tensor],
                warmup: int) -> None:
        """Untimed: the first ``warmup`` videos through every engine and method, one batch
        through every method."""
        for runner in self.runners.values():
            for clip in chunk[:warmup]:
                runner.run(clip)
        for m in self.methods:
            with torch.no_grad():
                self.models[m.model].infer_batch(torch.stack(tensors[:self.batch_size])
                                                 .to(self.model.device), m.settings)

    def stream_pass(self, chunk: Sequence[np.ndarray], p: int) -> None:
        """Pass ``p`` of the chunk's videos, streamed, the (engine, method) order rotating per
        video."""
        for i, clip in enumerate(chunk):
            for e, m in _rotated(self.pairs, self.videos + i + p):
                self.stream[(e, m.group)].add(self.runners[(e, m.group)].run(clip),
                                              keep=p == 0)

    def batched_pass(self, tensors: Sequence[torch.Tensor], p: int) -> None:
        """Pass ``p`` of the chunk's clips in batches, the method order rotating per batch."""
        device = self.model.device
        for start in range(0, len(tensors), self.batch_size):
            batch = torch.stack(tensors[start:start + self.batch_size]).to(device)
            for m in _rotated(self.methods, self.batches + p):
                with stopwatch(device) as span:
                    out = self.models[m.model].infer_batch(batch, m.settings)
                self.batched[m.group].add(out, len(batch), span.seconds, keep=p == 0)
            self.batches += 1


COMPARE = "compare"
"""The key of ``rsee bench --compare``'s checkpoint in the models of a run."""


def compare_summary(engines: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per engine: this checkpoint's streaming step over the compared one's (ms per pushed
    frame; Uniform and RSEE), the figure of "costs at most x% more" claims."""
    out: dict[str, dict[str, float]] = {}
    for engine, entry in engines.items():
        if "compare_uniform" not in entry:
            continue
        out[engine] = {f"{method}_step_ratio": _ratio(entry[method]["ms_per_step"],
                                                      entry[f"compare_{method}"]["ms_per_step"])
                       for method in ("uniform", "rsee")}
    return out


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
    wrap: Wrap | None = None,
    engines: Mapping[str, Engine] | None = None,
    compare: tuple[RSEEModel, Mapping[str, Engine]] | None = None,
) -> dict[str, Any]:
    """Benchmark the :func:`~rsee_ros.evaluation.methods.bench_methods` on chunks of
    ``(uint8 clips, labels)``, streamed on each of ``engines`` (name -> engine; default the
    torch engine) in one interleaved run; ``streaming``, ``ratios`` and ``targets`` are the
    torch engine's (the first engine's without one). ``compare``: another checkpoint's model
    and engines (the same names), whose Uniform and RSEE run in the same rotation as
    ``compare_uniform`` and ``compare_rsee``.

    Returns ``{"backend", "streaming", "batched", "ratios", "targets", "agreement",
    "engines", "num_videos"}``. A little over 60 lines: the interleaving of methods, engines
    and passes is read best in one place.
    """
    methods = bench_methods(model.config, threshold)
    engines = dict(engines or {"torch": engine_for_model(model, list(class_names))})
    reference = "torch" if "torch" in engines else next(iter(engines))
    models, by_model = {MAIN: model}, {MAIN: engines}
    if compare is not None:
        models[COMPARE], by_model[COMPARE] = compare[0], dict(compare[1])
        methods += [Method(f"compare_{m.group}", COMPARE, m.settings)
                    for m in bench_methods(compare[0].config, threshold)
                    if m.group in ("uniform", "rsee")]
    run = _BenchRun(models, by_model, frames, methods, batch_size)
    size = model.config.max_resolution
    labels: list[int] = []
    warmed = warmup <= 0
    for chunk, chunk_labels in wrap(clips) if wrap is not None else clips:
        if not chunk:
            continue
        labels += chunk_labels
        tensors = [frames_to_tensor(c, size) for c in chunk]  # batched input (untimed)
        if not warmed:
            run.warm_up(chunk, tensors, warmup)
            warmed = True
        for p in range(passes):
            run.stream_pass(chunk, p)
            run.batched_pass(tensors, p)
        run.videos += len(chunk)
    label_array = np.asarray(labels)
    resolutions = model.config.resolutions
    per_engine = {e: {m.group: _stream_summary(run.stream[(e, m.group)], label_array, frames,
                                               resolutions) for m in methods} for e in engines}
    streaming = per_engine[reference]
    batched = {n: _batched_summary(b, label_array, frames) for n, b in run.batched.items()}
    for m in methods:
        streaming[m.group]["settings"] = settings_json(m.settings)
        batched[m.group]["settings"] = settings_json(m.settings)
    ratios = ratios_vs_uniform(streaming, batched)
    engine_report = engines_summary(per_engine, run.stream, reference)
    return {
        "backend": BACKEND,
        "streaming": streaming,
        "batched": batched,
        "ratios": ratios,
        "targets": check_targets(streaming, ratios) + check_engine_targets(engine_report),
        "agreement": {n: agreement(run.stream[(reference, n)], run.batched[n])
                      for n in run.batched},
        "engines": engine_report,
        "engine_reference": reference,
        "compare": compare_summary(engine_report),
        "num_videos": len(labels),
    }


def engines_summary(per_engine: Mapping[str, Mapping[str, dict]],
                    streams: Mapping[tuple[str, str], _Stream], reference: str
                    ) -> dict[str, dict[str, Any]]:
    """Per engine and method: ms per streaming step (per pushed frame), videos/s, GFLOPs and
    top-1; per engine the fraction of (method, video) runs whose decisions (resolution of every
    frame, prediction) equal the reference engine's."""
    out: dict[str, dict[str, Any]] = {}
    for engine, methods in per_engine.items():
        entry: dict[str, Any] = {}
        same = total = 0
        for method, summary in methods.items():
            stream = streams[(engine, method)]
            entry[method] = {
                "ms_per_step": 1e3 * stream.seconds / stream.timed_pushed
                if stream.timed_pushed else math.nan,
                "videos_per_s": summary["videos_per_s"],
                "gflops_per_video": summary["gflops_per_video"],
                "top1": summary["top1"],
            }
            mine, theirs = stream.outcomes, streams[(reference, method)].outcomes
            same += sum(a.prediction == b.prediction and a.resolutions == b.resolutions
                        for a, b in zip(mine, theirs, strict=True))
            total += len(mine)
        entry["same_decisions_fraction"] = same / total if total else math.nan
        out[engine] = entry
    return out


def check_engine_targets(report: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """The engine issue's targets: onnxruntime's step at least 5x faster than the eager step
    (RSEE and Uniform), the same decisions on every engine, and on every engine RSEE's
    throughput over Uniform at least 0.8 of its FLOPs ratio (cost follows FLOPs)."""
    targets: list[dict] = []
    if "onnxruntime" in report and "torch" in report:
        for method in ("rsee", "uniform"):
            speedup = _ratio(report["torch"][method]["ms_per_step"],
                             report["onnxruntime"][method]["ms_per_step"])
            targets.append({"name": f"onnxruntime_step_speedup_{method}",
                            "target": f">= {TARGET_ENGINE_SPEEDUP}", "value": speedup,
                            "passed": speedup >= TARGET_ENGINE_SPEEDUP})
    for engine, entry in report.items():
        fraction = entry["same_decisions_fraction"]
        targets.append({"name": f"same_decisions_{engine}", "target": "== 1.0",
                        "value": fraction, "passed": fraction == 1.0})
        rsee, uniform = entry["rsee"], entry["uniform"]
        flops_ratio = _ratio(uniform["gflops_per_video"], rsee["gflops_per_video"])
        throughput = _ratio(rsee["videos_per_s"], uniform["videos_per_s"])
        share = _ratio(throughput, flops_ratio)
        targets.append({"name": f"cost_follows_flops_{engine}",
                        "target": f">= {TARGET_COST_FOLLOWS_FLOPS} (throughput ratio / FLOPs "
                        "ratio, RSEE over Uniform)",
                        "value": {"throughput_ratio": throughput, "flops_ratio": flops_ratio,
                                  "share": share},
                        "passed": share >= TARGET_COST_FOLLOWS_FLOPS})
    return targets


def default_threshold(metadata: Mapping[str, Any]) -> float:
    """The checkpoint's exit threshold: its operating point (``rsee calibrate``), else the one
    it was tested with in training (``train.eval_threshold``), else 0.9."""
    point = ((metadata or {}).get("operating_point") or {}).get("threshold")
    if point is not None:
        return float(point)
    value = (((metadata or {}).get("train_config") or {}).get("train") or {}).get(
        "eval_threshold")
    return float(value) if value is not None else 0.9


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
    options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    wrap: Wrap | None = None,
    progress: bool = False,
    engines: Sequence[str] = ("torch",),
    compare: str | Path | None = None,
) -> dict[str, Any]:
    """Load a checkpoint and data set and benchmark them on ``engines`` (with ``compare``,
    another checkpoint's Uniform and RSEE in the same run); returns the JSON report."""
    from rsee_ros.engine import load_engine
    from rsee_ros.model import load_checkpoint, resolve_device

    dev = resolve_device(device)
    ckpt = load_checkpoint(checkpoint, device=dev)

    def engines_of(path: str | Path, loaded_checkpoint: Any) -> dict[str, Engine]:
        return {name: engine_for_model(loaded_checkpoint.model, loaded_checkpoint.class_names,
                                       name)
                if name in ("torch", "torch-fused") else load_engine(path, name, device=device)
                for name in dict.fromkeys(engines)}

    loaded = engines_of(checkpoint, ckpt)
    other = None
    if compare is not None:
        compared = load_checkpoint(compare, device=dev)
        if compared.config.max_resolution != ckpt.config.max_resolution:
            raise ValueError(f"--compare {compare}: its frames enter at "
                             f"{compared.config.max_resolution} px, not "
                             f"{ckpt.config.max_resolution}")
        other = (compared.model, engines_of(compare, compared))
    thr = default_threshold(ckpt.metadata) if threshold is None else parse_threshold(threshold)
    data_cfg, bundle = load_split(ckpt, data, kind=kind, split=split, frames=frames,
                                  options=options, cache_dir=cache_dir, progress=progress)
    indices = spread_indices(len(bundle.dataset), max_videos)
    clips = ClipChunks(bundle.dataset, indices, chunk=max(batch_size, 1) * 4)
    result = run_bench(ckpt.model, ckpt.class_names, clips, frames=frames, threshold=thr,
                       warmup=warmup, passes=passes, batch_size=batch_size, wrap=wrap,
                       engines=loaded, compare=other)
    table = ckpt.model.flops
    return {
        "checkpoint": str(checkpoint),
        "compare_checkpoint": str(compare) if compare is not None else None,
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
