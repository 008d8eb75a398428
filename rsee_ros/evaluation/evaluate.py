"""``rsee eval`` as a library: RSEE and its baselines on one data set, by the same code.

The methods are those of :mod:`~rsee_ros.evaluation.methods` (the in-model ones and any
separately trained baseline checkpoints). They run batch by batch over one pass of the data
(their order rotating from batch to batch, so machine noise hits them alike); only
``infer_batch`` is timed. Every entry has per-class figures and its calibration error (and, for
a checkpoint calibrated by ``rsee calibrate``, ``ece_calibrated``: that of the confidences its
temperature gives, as the node reports them, for the methods of that model); RSEE (every
threshold, and the operating point) and Uniform also list every video (:data:`PER_VIDEO`). Nothing
is printed here: functions return plain dicts (JSON-ready).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsee_ros.evaluation.clock import machine_info, stopwatch
from rsee_ros.evaluation.common import (
    DEFAULT_THRESHOLDS,
    GFLOPS_UNIT,
    BaselineCheckpoint,
    operating_entry,
    parse_threshold,
    threshold_json,
)
from rsee_ros.evaluation.comparisons import curve_comparisons, data_set_checks
from rsee_ros.evaluation.data import Batches, load_split, spread_indices
from rsee_ros.evaluation.methods import (
    BUILTIN_BASELINES,
    MAIN,
    Method,
    builtin_groups,
    builtin_methods,
    checkpoint_methods,
    default_baseline_mode,
    settings_json,
)
from rsee_ros.evaluation.metrics import (
    action_histogram,
    exit_step_histogram,
    expected_calibration_error,
    frame_accounting,
    mean_average_precision,
    per_class_table,
    resolution_histogram,
    top1_accuracy,
)
from rsee_ros.model import RSEEModel, resize_frames
from rsee_ros.training.temperature import apply_temperature, metadata_temperature

__all__ = [
    "OPERATING_POINT", "PER_VIDEO", "evaluate", "group_results", "operating_entry", "run_methods",
    "summarize", "video_records",
]

Wrap = Callable[[Iterable[Any]], Iterable[Any]]

# the per-video outputs of infer_batch that a summary reads
_OUTPUTS = ("gmacs", "frames_processed", "resolutions", "looked_at", "actions", "exit_step",
            "exited_early")
OPERATING_POINT = "operating_point"
"""The group of the extra RSEE run at the operating threshold when the sweep lacks it."""
PER_VIDEO = ("rsee", "uniform", OPERATING_POINT)
"""The groups whose entries list every video (``videos``); the others only summarize."""


@dataclass
class _Collected:
    """Per-video outputs of one method over the data, and its inference time."""

    probabilities: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    gmacs: list[np.ndarray] = field(default_factory=list)
    frames_processed: list[np.ndarray] = field(default_factory=list)
    resolutions: list[np.ndarray] = field(default_factory=list)
    looked_at: list[np.ndarray] = field(default_factory=list)
    actions: list[np.ndarray] = field(default_factory=list)
    exit_step: list[np.ndarray] = field(default_factory=list)
    exited_early: list[np.ndarray] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, out: Any, labels: Any) -> None:
        """Keep one batch's ``infer_batch`` output (on the CPU) and its labels."""
        self.probabilities.append(out.probabilities.float().cpu().numpy())
        self.labels.append(np.asarray(labels))
        for name in _OUTPUTS:
            getattr(self, name).append(getattr(out, name).cpu().numpy())

    def cat(self, name: str) -> np.ndarray:
        return np.concatenate(getattr(self, name), axis=0)


class _SeenItems:
    """The batches of a :class:`Batches`, remembering the data set item behind each video (a
    video that fails to decode is replaced by the next one, so it is not always the one asked
    for)."""

    def __init__(self, batches: Batches) -> None:
        self.batches = batches
        self.items: list[int] = []

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for frames, labels, items in self.batches.loader:
            self.items += [int(i) for i in items]
            yield frames, labels


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
            method = methods[i]
            model = models[method.model]
            key = (method.model, model.device)
            if key not in inputs:
                inputs[key] = _fit(frames, model.config.max_resolution).to(model.device)
            with stopwatch(model.device) as span:
                out = model.infer_batch(inputs[key], method.settings)
            collected[i].seconds += span.seconds
            collected[i].add(out, labels)
    return collected


def summarize(
    collected: _Collected, method: Method, model: RSEEModel, frames: int,
    classes: Sequence[str] | None = None, temperature: float | None = None,
) -> dict[str, Any]:
    """The reported figures of one method (see ``docs/benchmarks.md`` for each field);
    ``classes`` names the labels of ``per_class`` (default: the label numbers); with the
    model's ``temperature``, ``ece_calibrated`` follows ``ece``."""
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
        "action_histogram": action_histogram(collected.cat("actions"), model.config.resolutions,
                                             model.config.skip_steps or ()),
        "frame_accounting": frame_accounting(resolutions, looked, exit_step, exited),
        "exit_step_histogram": exit_step_histogram(exit_step, exited, frames),
        "seconds": seconds,
        "frames_per_s": frames * n / seconds if seconds > 0 else math.nan,
        "videos_per_s": n / seconds if seconds > 0 else math.nan,
        "ece": expected_calibration_error(probabilities, labels),
        **({} if temperature is None else {"ece_calibrated": expected_calibration_error(
            apply_temperature(torch.from_numpy(probabilities), temperature).numpy(), labels)}),
        "per_class": per_class_table(
            probabilities.argmax(axis=1), labels, processed, gmacs,
            classes or [str(c) for c in range(model.config.num_classes)]),
    }


def video_records(collected: _Collected, records: Sequence[Any], classes: Sequence[str]
                  ) -> list[dict[str, Any]]:
    """One record per video of one method: the data set's ``video`` id and ``path``, true
    ``label`` and ``predicted`` class, ``confidence`` (top-1 probability), ``exit_step``
    (0-based; None: never exited), ``frames_processed``, ``resolutions`` (per frame, 0: not
    processed) and ``gflops``; ``records`` are the data set's, in the order of the videos."""
    probabilities = collected.cat("probabilities")
    labels, exited = collected.cat("labels"), collected.cat("exited_early")
    exit_step, processed = collected.cat("exit_step"), collected.cat("frames_processed")
    resolutions, gmacs = collected.cat("resolutions"), collected.cat("gmacs")
    out = []
    for i, record in enumerate(records):
        predicted = int(probabilities[i].argmax())
        out.append({
            "video": record.name, "path": record.path, "label": classes[int(labels[i])],
            "predicted": classes[predicted], "correct": predicted == int(labels[i]),
            "confidence": round(float(probabilities[i, predicted]), 6),
            "exit_step": int(exit_step[i]) if exited[i] else None,
            "frames_processed": int(processed[i]),
            "resolutions": [int(r) for r in resolutions[i]],
            "gflops": round(float(gmacs[i]), 6),
        })
    return out


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


def _add_baseline_checkpoints(
    main: Any,
    baselines: Sequence[BaselineCheckpoint],
    thresholds: Sequence[float],
    models: dict[str, RSEEModel],
    methods: list[Method],
    device: torch.device,
) -> dict[str, Any]:
    """Load the separately trained baselines into ``models`` and their methods into
    ``methods``; returns the report's ``baseline_checkpoints`` section."""
    from rsee_ros.model import load_checkpoint

    taken = {m.group for m in methods} | {"rsee", MAIN, OPERATING_POINT, *BUILTIN_BASELINES}
    taken |= {f"uniform_{r}" for r in main.config.resolutions}
    external: dict[str, Any] = {}
    for base in baselines:
        if base.name in taken:
            raise ValueError(f"baseline name {base.name!r} is already used; pick another")
        loaded = load_checkpoint(base.path, device=device)
        if loaded.class_names != main.class_names:
            raise ValueError(f"{base.path}: its classes differ from {main.path}'s")
        mode = base.mode or default_baseline_mode(loaded.metadata)
        models[base.name] = loaded.model
        methods += checkpoint_methods(base.name, loaded.config, mode, thresholds)
        taken.add(base.name)
        external[base.name] = {
            "path": str(base.path), "mode": mode, "stage": loaded.metadata.get("stage"),
            "resolutions": list(loaded.config.resolutions),
            "resized_input": loaded.config.max_resolution != main.config.max_resolution,
        }
    return external


def _operating_method(
    methods: Sequence[Method], thresholds: Sequence[float], threshold: float
) -> tuple[int | None, list[Method]]:
    """Where the operating threshold is in the RSEE sweep (its index), or None and the extra
    RSEE method (group :data:`OPERATING_POINT`) that runs at it; none when RSEE is excluded."""
    rsee = next((m for m in methods if m.group == "rsee"), None)
    if rsee is None:
        return None, []
    for index, value in enumerate(thresholds):
        if math.isclose(value, threshold, abs_tol=1e-9):
            return index, []
    settings = rsee.settings.with_changes(exit_threshold=threshold)
    return None, [Method(OPERATING_POINT, rsee.model, settings)]


def _operating_point(threshold: float, rsee_index: int | None, grouped: dict[str, Any],
                     source: str) -> dict[str, Any]:
    """The report's ``operating_point``; takes the extra RSEE run's entry out of ``grouped``.
    ``source`` says where the threshold came from (``given``, ``calibrated``, ``training``)."""
    entry = grouped.pop(OPERATING_POINT, None)
    if entry is not None:
        entry["method"] = "rsee"  # an RSEE entry, run apart from the sweep
    return {"threshold": threshold_json(threshold), "rsee_index": rsee_index, "entry": entry,
            "source": source}


def _summaries(
    collected: Sequence[_Collected], methods: Sequence[Method], models: Mapping[str, RSEEModel],
    frames: int, classes: Sequence[str], records: Sequence[Any],
    temperature: float | None = None,
) -> list[dict[str, Any]]:
    """Every method's summary; those of :data:`PER_VIDEO` with their ``videos``; the main
    model's with its ``temperature``."""
    out = []
    for c, m in zip(collected, methods, strict=True):
        summary = summarize(c, m, models[m.model], frames, classes,
                            temperature if m.model == MAIN else None)
        if m.group in PER_VIDEO:
            summary["videos"] = video_records(c, records, classes)
        out.append(summary)
    return out


def evaluate(
    checkpoint: str | Path,
    data: str | Path,
    *,
    kind: str | None = None,
    split: str = "test",
    frames: int = 16,
    thresholds: Sequence[float | str] = DEFAULT_THRESHOLDS,
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
    operating_threshold: float | str | None = None,
) -> dict[str, Any]:
    """Evaluate a checkpoint and its baselines on a data set; returns the JSON report.

    ``operating_threshold`` (default: the checkpoint's training ``eval_threshold``, else 0.9)
    is RSEE's operating point (per-class table, confusion matrix); it runs once more when the
    sweep lacks it. ``wrap`` wraps the batch iterable (progress bar); ``progress`` lets data set
    probing show its own bar. See :mod:`~rsee_ros.evaluation.methods` for the methods.
    """
    from rsee_ros.evaluation.bench import default_threshold
    from rsee_ros.model import load_checkpoint, resolve_device

    dev = resolve_device(device)
    main = load_checkpoint(checkpoint, device=dev)
    thresholds = [parse_threshold(t) for t in thresholds]
    operating = (default_threshold(main.metadata) if operating_threshold is None
                 else parse_threshold(operating_threshold))
    unknown = sorted(set(exclude) - set(builtin_groups(main.config)))
    if unknown:
        raise ValueError(f"cannot exclude {unknown}: the in-model methods are "
                         f"{sorted(builtin_groups(main.config))}")
    models: dict[str, RSEEModel] = {MAIN: main.model}
    methods = builtin_methods(main.config, thresholds, seed=seed, exclude=exclude, gate=gate)
    in_sweep, extra = _operating_method(methods, thresholds, operating)
    methods += extra
    external = _add_baseline_checkpoints(main, baselines, thresholds, models, methods, dev)
    data_cfg, bundle = load_split(main, data, kind=kind, split=split, frames=frames,
                                  options=options, cache_dir=cache_dir, workers=workers,
                                  progress=progress)
    indices = spread_indices(len(bundle.dataset), max_videos)
    batches = _SeenItems(Batches(bundle.dataset, indices, batch_size=batch_size,
                                 workers=workers))
    collected = run_methods(models, batches, methods, wrap=wrap)
    records = [bundle.dataset.records[i] for i in batches.items]
    summaries = _summaries(collected, methods, models, frames, main.class_names, records,
                           metadata_temperature(main.metadata))
    grouped = group_results(methods, summaries)
    rsee = grouped.pop("rsee", [])
    source = ("given" if operating_threshold is not None else
              "calibrated" if main.metadata.get("operating_point") else "training")
    operating_point = _operating_point(operating, in_sweep, grouped, source)
    return {
        **_report_header(checkpoint, data, split, frames, main, data_cfg, bundle,
                         num_videos=len(indices), batch_size=batch_size,
                         thresholds=thresholds, device=dev),
        "baseline_checkpoints": external,
        "rsee": rsee,
        "baselines": grouped,
        "data_set_checks": data_set_checks(grouped, main.config.resolutions),
        "curve_comparisons": curve_comparisons(rsee, grouped),
        "operating_point": operating_point,
    }


def _report_header(
    checkpoint: str | Path, data: str | Path, split: str, frames: int, main: Any,
    data_cfg: Mapping[str, Any], bundle: Any, *, num_videos: int, batch_size: int,
    thresholds: Sequence[float], device: torch.device,
) -> dict[str, Any]:
    """What was evaluated, where and how: the report's fields before the results."""
    table = main.model.flops
    return {
        "checkpoint": str(checkpoint),
        "data": str(data),
        "kind": data_cfg["kind"],
        "data_options": data_cfg["options"],
        "split": split,
        "frames": frames,
        "num_videos": num_videos,
        "classes": list(main.class_names),
        "skipped_videos": list(bundle.skipped),
        "machine": machine_info(device),
        "batch_size": batch_size,
        "thresholds": [threshold_json(t) for t in thresholds],
        "resolutions": list(main.config.resolutions),
        "gflops_unit": GFLOPS_UNIT,
        "uniform_gflops_per_video": {
            str(r): table.uniform_video(r, frames) for r in main.config.resolutions
        },
        "flops_table": table.to_dict(),
    }
