"""``rsee eval`` as a library: RSEE and its baselines on one data set, by the same code.

Every method is one :class:`Method`: a model (the evaluated checkpoint, or a separately trained
baseline checkpoint) and the :class:`~rsee_ros.model.InferenceSettings` it runs with. The
in-model baselines are policy overrides of the same weights:

* ``uniform``: all T frames at the highest resolution, no exit; ``uniform_<r>``: the same at
  each lower resolution r;
* ``uniform_first_frame``: only the first sampled frame, at the highest resolution (uniform
  policy with exit threshold 0: the gate stops after the first processed frame);
* ``random``: uniformly random resolution/skip actions with the exit gate (threshold sweep);
* ``resolution_only`` (AR-Net-like): the learned selector, never exiting;
* ``exit_only`` (FrameExit-like): every frame at the highest resolution with the exit gate
  (threshold sweep);
* ``rsee``: the learned selector with the exit gate (threshold sweep).

The methods run batch by batch over one pass of the data (their order rotating from batch to
batch, so machine noise hits them alike); only ``infer_batch`` is timed. Nothing is printed
here: functions return plain dicts (JSON-ready).
"""

from __future__ import annotations

import math
import os
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsee_ros.evaluation.common import (
    BASELINE_MODES,
    DATA_KINDS,
    DEFAULT_THRESHOLDS,
    GFLOPS_UNIT,
    NEVER,
    BaselineCheckpoint,
    jsonable,
    parse_threshold,
    threshold_json,
)
from rsee_ros.evaluation.metrics import (
    exit_step_histogram,
    frame_accounting,
    mean_average_precision,
    resolution_histogram,
    top1_accuracy,
)
from rsee_ros.model import InferenceSettings, RSEEConfig, RSEEModel, resize_frames

MAIN = "main"
BUILTIN_BASELINES = (
    "uniform", "uniform_first_frame", "random", "resolution_only", "exit_only",
)  # plus uniform_<r> for each lower resolution

Wrap = Callable[[Iterable[Any]], Iterable[Any]]


@dataclass(frozen=True)
class Method:
    """One evaluated configuration: ``group`` names the JSON entry (``rsee`` or a baseline),
    ``model`` the key of the model in the models mapping; ``sweep`` groups report a list."""

    group: str
    model: str
    settings: InferenceSettings
    sweep: bool = False


# ------------------------------------------------------------------------------------- methods


def builtin_methods(
    config: RSEEConfig,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    *,
    seed: int = 0,
    exclude: Sequence[str] = (),
    model: str = MAIN,
    gate: str | None = None,
) -> list[Method]:
    """RSEE and the in-model baselines (see the module docstring) for one checkpoint; ``gate``
    (``confidence`` or ``learned``) overrides the checkpoint's exit rule for every method."""
    top = config.max_resolution
    learned = InferenceSettings(policy="learned", gate=gate)
    uniform = InferenceSettings(policy="uniform", fixed_resolution=top, exit_threshold=NEVER,
                                gate=gate)
    methods = [Method("rsee", model, learned.with_changes(exit_threshold=t), True)
               for t in thresholds]
    methods.append(Method("uniform", model, uniform))
    for r in config.resolutions[1:]:
        methods.append(Method(f"uniform_{r}", model, uniform.with_changes(fixed_resolution=r)))
    methods.append(Method("uniform_first_frame", model, uniform.with_changes(exit_threshold=0.0)))
    methods += [
        Method("random", model,
               InferenceSettings(policy="random", exit_threshold=t, seed=seed, gate=gate), True)
        for t in thresholds
    ]
    methods.append(Method("resolution_only", model, learned.with_changes(exit_threshold=NEVER)))
    methods += [Method("exit_only", model, uniform.with_changes(exit_threshold=t), True)
                for t in thresholds]
    return [m for m in methods if m.group not in exclude]


def default_baseline_mode(metadata: Mapping[str, Any]) -> str:
    """How to run a separately trained baseline checkpoint when no mode is given: a warm-up
    checkpoint (no trained selector) as ``uniform``, anything else with its ``learned`` policy."""
    return "uniform" if metadata.get("stage") == "warmup" else "learned"


def checkpoint_methods(
    name: str, config: RSEEConfig, mode: str, thresholds: Sequence[float] = DEFAULT_THRESHOLDS
) -> list[Method]:
    """Methods for a separately trained baseline checkpoint registered as model ``name``:
    ``uniform`` (all frames at its highest resolution, no exit; one entry), ``learned`` (its
    selector and gate, threshold sweep) or ``exit`` (highest resolution + gate, sweep)."""
    top = config.max_resolution
    if mode == "uniform":
        return [Method(name, name, InferenceSettings(
            policy="uniform", fixed_resolution=top, exit_threshold=NEVER))]
    if mode == "learned":
        return [Method(name, name, InferenceSettings(exit_threshold=t), True) for t in thresholds]
    if mode == "exit":
        return [Method(name, name, InferenceSettings(
            policy="uniform", fixed_resolution=top, exit_threshold=t), True) for t in thresholds]
    raise ValueError(f"baseline mode must be one of {BASELINE_MODES}, got {mode!r}")


# ------------------------------------------------------------------------------------- running


@dataclass
class _Collected:
    """Per-video outputs of one method over the data, and its inference time."""

    probabilities: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    gmacs: list[np.ndarray] = field(default_factory=list)
    frames_processed: list[np.ndarray] = field(default_factory=list)
    resolutions: list[np.ndarray] = field(default_factory=list)
    looked_at: list[np.ndarray] = field(default_factory=list)
    exit_step: list[np.ndarray] = field(default_factory=list)
    exited_early: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0

    def cat(self, name: str) -> np.ndarray:
        return np.concatenate(getattr(self, name), axis=0)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _fit(frames: torch.Tensor, size: int) -> torch.Tensor:
    """Frames at a model's input size (only for baseline checkpoints of another size)."""
    if frames.shape[-1] == size:
        return frames
    batch, steps = frames.shape[:2]
    return resize_frames(frames.flatten(0, 1), size).view(batch, steps, 3, size, size)


def run_methods(
    models: Mapping[str, RSEEModel],
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    methods: Sequence[Method],
    *,
    wrap: Wrap | None = None,
) -> list[_Collected]:
    """Run every method on every ``(frames (B, T, 3, S, S), labels (B,))`` batch.

    The order of the methods rotates by one each batch; ``wrap`` (e.g. ``tqdm``) wraps the batch
    iterable. Returns one :class:`_Collected` per method, in the order of ``methods``.
    """
    collected = [_Collected() for _ in methods]
    iterable = wrap(batches) if wrap is not None else batches
    for index, (frames, labels) in enumerate(iterable):
        order = list(range(len(methods)))
        shift = index % max(len(order), 1)
        order = order[shift:] + order[:shift]
        inputs: dict[tuple[str, torch.device], torch.Tensor] = {}
        for i in order:
            method, out_c = methods[i], collected[i]
            model = models[method.model]
            device = model.device
            key = (method.model, device)
            if key not in inputs:
                inputs[key] = _fit(frames, model.config.max_resolution).to(device)
                _sync(device)
            start = time.perf_counter()
            out = model.infer_batch(inputs[key], method.settings)
            _sync(device)
            out_c.seconds += time.perf_counter() - start
            out_c.probabilities.append(out.probabilities.float().cpu().numpy())
            out_c.labels.append(np.asarray(labels))
            out_c.gmacs.append(out.gmacs.cpu().numpy())
            out_c.frames_processed.append(out.frames_processed.cpu().numpy())
            out_c.resolutions.append(out.resolutions.cpu().numpy())
            out_c.looked_at.append(out.looked_at.cpu().numpy())
            out_c.exit_step.append(out.exit_step.cpu().numpy())
            out_c.exited_early.append(out.exited_early.cpu().numpy())
    return collected


def settings_json(settings: InferenceSettings) -> dict[str, Any]:
    """The inference settings as plain data."""
    return {
        "policy": settings.policy,
        "threshold": threshold_json(settings.exit_threshold),
        "fixed_resolution": settings.fixed_resolution if settings.policy == "uniform" else None,
        "allowed_resolutions": (list(settings.allowed_resolutions)
                                if settings.allowed_resolutions is not None else None),
        "skip_enabled": settings.skip_enabled,
        "gate": settings.gate,
        "seed": settings.seed if settings.policy == "random" else None,
    }


def summarize(
    collected: _Collected, method: Method, model: RSEEModel, frames: int
) -> dict[str, Any]:
    """The reported figures of one method (see ``docs/benchmarks.md`` for each field)."""
    probabilities = collected.cat("probabilities")
    labels = collected.cat("labels")
    n = len(labels)
    gmacs = collected.cat("gmacs")
    processed = collected.cat("frames_processed")
    resolutions = collected.cat("resolutions")
    looked = collected.cat("looked_at")
    exit_step = collected.cat("exit_step")
    exited = collected.cat("exited_early")
    seconds = collected.seconds
    return {
        "method": method.group,
        "model": method.model,
        **settings_json(method.settings),
        "num_videos": n,
        "top1": top1_accuracy(probabilities, labels),
        "map": mean_average_precision(probabilities, labels, model.config.num_classes),
        "gflops_per_video": float(gmacs.mean()) if n else math.nan,
        "frames_processed": float(processed.mean()) if n else math.nan,
        "frames_looked_at": float(looked.sum(1).mean()) if n else math.nan,
        "exited_early_fraction": float(exited.mean()) if n else math.nan,
        "resolution_histogram": resolution_histogram(resolutions, looked,
                                                     model.config.resolutions),
        "frame_accounting": frame_accounting(resolutions, looked, exit_step, exited),
        "exit_step_histogram": exit_step_histogram(exit_step, exited, frames),
        "seconds": seconds,
        "frames_per_s": frames * n / seconds if seconds > 0 else math.nan,
        "videos_per_s": n / seconds if seconds > 0 else math.nan,
    }


def group_results(
    methods: Sequence[Method], summaries: Sequence[dict[str, Any]]
) -> dict[str, dict[str, Any] | list[dict[str, Any]]]:
    """Summaries by group: a list for sweep groups, one dict otherwise (method order kept)."""
    grouped: dict[str, Any] = {}
    for method, summary in zip(methods, summaries, strict=True):
        if method.sweep:
            grouped.setdefault(method.group, []).append(summary)
        else:
            grouped[method.group] = summary
    return grouped


# ------------------------------------------------------------------------------ data and report


def machine_info(device: torch.device | str) -> dict[str, Any]:
    """Where the figures were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    device = torch.device(device)
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "device": str(device),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def data_config(
    root: str | Path,
    *,
    kind: str | None,
    frames: int,
    metadata: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """The ``data`` section for :func:`rsee_ros.training.data.build_dataset`.

    ``kind`` defaults to the checkpoint's training data kind (``metadata["train_config"]
    ["data"]``), else ``folder``; that section's ``options`` and ``split`` are reused when the kind
    is the one trained on, and ``options`` given here override them.
    """
    trained = dict(((metadata or {}).get("train_config") or {}).get("data") or {})
    kind = kind or trained.get("kind") or "folder"
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data kind {kind!r}; one of {DATA_KINDS}")
    same = kind == trained.get("kind")
    merged = dict(trained.get("options") or {}) if same else {}
    merged.update(options or {})
    return {
        "kind": kind,
        "root": str(root),
        "split": trained.get("split", 1) if same else 1,
        "frames": int(frames),
        "options": merged,
        "cache_dir": cache_dir,
        "workers": workers,
    }


def spread_indices(total: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(total)`` (all when None): a subset that keeps
    every class of a class-ordered split."""
    if limit is None or limit >= total:
        return list(range(total))
    if limit <= 0:
        raise ValueError(f"need a positive number of videos, got {limit}")
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, limit)})


class _Batches:
    """``(frames, labels)`` batches of a data set's items (sized, so progress bars know the
    total)."""

    def __init__(self, loader: torch.utils.data.DataLoader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for frames, labels, _ in self.loader:
            yield frames, labels


def batches_from(
    dataset: torch.utils.data.Dataset,
    indices: Sequence[int],
    *,
    batch_size: int,
    workers: int = 0,
) -> _Batches:
    """``(frames, labels)`` batches of the data set's items ``indices`` (test order)."""
    subset = torch.utils.data.Subset(dataset, list(indices))
    return _Batches(torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False,
                                                num_workers=workers))


def _gap(report_baselines: Mapping[str, Any], name: str, reference: float) -> float | None:
    entry = report_baselines.get(name)
    return None if not isinstance(entry, dict) else reference - entry["top1"]


def data_set_checks(baselines: Mapping[str, Any], resolutions: Sequence[int]) -> dict[str, Any]:
    """The data-set requirement: Uniform at the first frame only and Uniform at the lowest
    resolution each lose at least 10 points of top-1 against Uniform at full resolution."""
    uniform = baselines.get("uniform")
    if not isinstance(uniform, dict):
        return {}
    lowest = f"uniform_{resolutions[-1]}" if len(resolutions) > 1 else None
    first_gap = _gap(baselines, "uniform_first_frame", uniform["top1"])
    low_gap = _gap(baselines, lowest, uniform["top1"]) if lowest else None
    gaps = [g for g in (first_gap, low_gap) if g is not None]
    return {
        "required_gap_points": 10.0,
        "uniform_first_frame_gap_points": first_gap,
        "uniform_lowest_resolution": resolutions[-1],
        "uniform_lowest_gap_points": low_gap,
        # None: a baseline the check needs was excluded, so it was not run
        "passed": bool(all(g >= 10.0 for g in gaps)) if len(gaps) == 2 else None,
    }


def _cheapest_reaching(points: Sequence[Mapping[str, Any]], top1: float) -> float | None:
    """Fewest GFLOPs per video among ``points`` with at least ``top1`` (None: none reach it)."""
    costs = [p["gflops_per_video"] for p in points if p["top1"] >= top1 - 1e-9]
    return min(costs) if costs else None


def curve_comparisons(
    rsee: Sequence[Mapping[str, Any]], baselines: Mapping[str, Any]
) -> dict[str, Any]:
    """RSEE's accuracy-versus-GFLOPs curve against every baseline's (one point or a sweep).

    For every RSEE operating point: the fewest GFLOPs the other method needs to reach the same
    top-1 on any of its points (its curve as a step function, no interpolation), and whether
    RSEE needs fewer ("ahead"; also when the other never reaches that accuracy).
    ``ahead_up_to_top1`` is the highest RSEE accuracy up to which RSEE is ahead at every point.
    """
    out: dict[str, Any] = {}
    if not rsee:
        return out
    for name, entry in baselines.items():
        others = entry if isinstance(entry, list) else [entry]
        points = []
        for point in sorted(rsee, key=lambda p: p["top1"]):
            needed = _cheapest_reaching(others, point["top1"])
            points.append({
                "threshold": point["threshold"], "top1": point["top1"],
                "rsee_gflops": point["gflops_per_video"], f"{name}_gflops": needed,
                "ahead": needed is None or point["gflops_per_video"] < needed,
            })
        ahead_up_to = None
        for point in points:
            if not point["ahead"]:
                break
            ahead_up_to = point["top1"]
        out[name] = {"points": points, "ahead_up_to_top1": ahead_up_to,
                     "ahead_everywhere": all(p["ahead"] for p in points)}
    return out


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    *,
    kind: str | None = None,
    split: str = "test",
    frames: int = 16,
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    baselines: Sequence[BaselineCheckpoint] = (),
    exclude: Sequence[str] = (),
    device: str = "cpu",
    batch_size: int = 8,
    workers: int = 0,
    max_videos: int | None = None,
    seed: int = 0,
    options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    wrap: Wrap | None = None,
    progress: bool = False,
    gate: str | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint and its baselines on a data set; returns the JSON report.

    ``wrap`` wraps the batch iterable (progress bar); ``progress`` lets data set probing show its
    own bar. See the module docstring for the methods.
    """
    from rsee_ros.model import load_checkpoint, resolve_device
    from rsee_ros.training.data import build_dataset

    dev = resolve_device(device)
    main = load_checkpoint(checkpoint, device=dev)
    thresholds = [parse_threshold(t) for t in thresholds]
    models: dict[str, RSEEModel] = {MAIN: main.model}
    known = {m.group for m in builtin_methods(main.config, thresholds)}
    unknown = sorted(set(exclude) - known)
    if unknown:
        raise ValueError(f"cannot exclude {unknown}: the in-model methods are {sorted(known)}")
    methods = builtin_methods(main.config, thresholds, seed=seed, exclude=exclude, gate=gate)
    taken = {m.group for m in methods} | {"rsee", MAIN, *BUILTIN_BASELINES}
    taken |= {f"uniform_{r}" for r in main.config.resolutions}
    external: dict[str, Any] = {}
    for base in baselines:
        if base.name in taken:
            raise ValueError(f"baseline name {base.name!r} is already used; pick another")
        loaded = load_checkpoint(base.path, device=dev)
        if loaded.class_names != main.class_names:
            raise ValueError(f"{base.path}: its classes differ from {checkpoint}'s")
        mode = base.mode or default_baseline_mode(loaded.metadata)
        models[base.name] = loaded.model
        methods += checkpoint_methods(base.name, loaded.config, mode, thresholds)
        taken.add(base.name)
        external[base.name] = {
            "path": str(base.path), "mode": mode, "stage": loaded.metadata.get("stage"),
            "resolutions": list(loaded.config.resolutions),
            "resized_input": loaded.config.max_resolution != main.config.max_resolution,
        }
    data_cfg = data_config(data, kind=kind, frames=frames, metadata=main.metadata,
                           options=options, cache_dir=cache_dir, workers=workers)
    bundle = build_dataset(data_cfg, subset=split, size=main.config.max_resolution, train=False,
                           progress=progress)
    if bundle.classes != main.class_names:
        raise ValueError(
            f"{data}: data set classes {bundle.classes[:5]}... differ from the checkpoint's "
            f"{main.class_names[:5]}..."
        )
    indices = spread_indices(len(bundle.dataset), max_videos)
    batches = batches_from(bundle.dataset, indices, batch_size=batch_size, workers=workers)
    collected = run_methods(models, batches, methods, wrap=wrap)
    summaries = [summarize(c, m, models[m.model], frames)
                 for c, m in zip(collected, methods, strict=True)]
    grouped = group_results(methods, summaries)
    rsee = grouped.pop("rsee", [])
    table = main.model.flops
    return {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "kind": data_cfg["kind"],
        "data_options": data_cfg["options"],
        "split": split,
        "frames": frames,
        "num_videos": len(indices),
        "classes": list(main.class_names),
        "skipped_videos": list(bundle.skipped),
        "machine": machine_info(dev),
        "batch_size": batch_size,
        "thresholds": [threshold_json(t) for t in thresholds],
        "resolutions": list(main.config.resolutions),
        "gflops_unit": GFLOPS_UNIT,
        "uniform_gflops_per_video": {
            str(r): table.uniform_video(r, frames) for r in main.config.resolutions
        },
        "flops_table": table.to_dict(),
        "baseline_checkpoints": external,
        "rsee": rsee,
        "baselines": grouped,
        "data_set_checks": data_set_checks(grouped, main.config.resolutions),
        "curve_comparisons": curve_comparisons(rsee, grouped),
    }


__all__ = [
    "BASELINE_MODES",
    "BUILTIN_BASELINES",
    "DATA_KINDS",
    "DEFAULT_THRESHOLDS",
    "BaselineCheckpoint",
    "Method",
    "batches_from",
    "builtin_methods",
    "checkpoint_methods",
    "curve_comparisons",
    "data_config",
    "data_set_checks",
    "default_baseline_mode",
    "evaluate",
    "group_results",
    "jsonable",
    "machine_info",
    "parse_threshold",
    "run_methods",
    "settings_json",
    "spread_indices",
    "summarize",
    "threshold_json",
]
