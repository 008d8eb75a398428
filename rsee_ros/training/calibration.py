"""Calibration on the validation videos: the classifier's temperature and the operating point.

Both come from the checkpoint's ``val`` subset (``data.val_fraction`` of the training videos,
:func:`rsee_ros.data.build.split_validation`), never from the test split, and from one pass of
the model over it with exits switched off (:func:`record_steps`): for every video and step, the
prediction, whether the frame went through the backbone, the exit score there (what
:func:`rsee_ros.model.gate.exit_score` compares with the threshold: the confidence rule's top
probability or the learned gate's exit probability) and the GMACs spent so far
(:class:`StepTable`). An exit only stops a video: nothing before it changes and nothing after it
is processed (frames inside a skip score nothing), so the outcome at every threshold follows from
that table (:meth:`StepTable.outcome`): the video exits at its first processed step whose score
reaches the threshold (:func:`~rsee_ros.model.gate.should_exit`), with that step's prediction and
cost, or runs to its end.

* **temperature**: one scalar ``T`` minimising the negative log-likelihood of the final
  predictions (``logits / T``; golden-section search on ``log T`` in
  :data:`TEMPERATURE_BOUNDS`), with the ECE before and after
  (:func:`~rsee_ros.evaluation.metrics.expected_calibration_error`);
* **operating point**: of the thresholds :data:`GRID`, the one with the fewest GMACs per video
  whose val top-1 is within ``tolerance`` points of the same model's Uniform (every frame at its
  highest resolution, no exit) on the same videos; among equal costs the higher top-1, then the
  higher threshold (the same val outcome, fewer exits on new footage). When none is within,
  the most accurate one, with ``within_tolerance`` false.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from rsee_ros.evaluation.metrics import expected_calibration_error, top1_accuracy
from rsee_ros.model import InferenceSettings, RSEEModel
from rsee_ros.model.gate import NEVER_EXIT, exit_score, should_exit
from rsee_ros.training.temperature import apply_temperature

__all__ = [
    "DEFAULT_TOLERANCE", "GRID", "TEMPERATURE_BOUNDS", "CalibrationError", "Outcome", "StepTable",
    "calibrate_checkpoint", "calibrate_file", "calibrate_model", "choose_operating_point",
    "describe_calibration", "fit_temperature", "measure", "record_steps", "save_calibrated",
    "sweep", "validation_data",
]

GRID: tuple[float, ...] = (*(round(0.30 + 0.01 * i, 2) for i in range(70)), NEVER_EXIT)
"""The thresholds the operating point is chosen from: 0.30 to 0.99 in steps of 0.01, and 1.0
(never exit)."""
TEMPERATURE_BOUNDS = (0.05, 20.0)
DEFAULT_TOLERANCE = 1.0
Wrap = Callable[[Iterable[Any]], Iterable[Any]]


class CalibrationError(ValueError):
    """A checkpoint or data set that cannot be calibrated (one line saying why)."""


@dataclass
class Outcome:
    """Each video's result at one threshold: ``exit_step`` (the last step used), ``exited``
    (early), the ``logits`` of its prediction and the GMACs spent."""

    exit_step: np.ndarray
    exited: np.ndarray
    logits: np.ndarray
    gmacs: np.ndarray


@dataclass
class StepTable:
    """One pass without exits over ``N`` videos of ``T`` steps: the prediction after each step
    (``logits`` ``(N, T, C)``), whether the step went through the backbone (``processed``), its
    exit score (``scores``, read where processed), the GMACs spent up to and including it
    (``gmacs``, cumulative) and the videos' ``labels``."""

    logits: np.ndarray
    processed: np.ndarray
    scores: np.ndarray
    gmacs: np.ndarray
    labels: np.ndarray

    @classmethod
    def concat(cls, parts: Sequence[StepTable]) -> StepTable:
        """The tables of several batches as one."""
        return cls(*(np.concatenate([getattr(p, name) for p in parts])
                     for name in ("logits", "processed", "scores", "gmacs", "labels")))

    @property
    def final_logits(self) -> np.ndarray:
        """The prediction after every frame ``(N, C)`` (no exit)."""
        return self.logits[:, -1]

    def outcome(self, threshold: float) -> Outcome:
        """What each video gives when run with ``threshold``."""
        exits = self.processed & should_exit(torch.from_numpy(self.scores), threshold).numpy()
        exited = exits.any(1)
        step = np.where(exited, exits.argmax(1), self.logits.shape[1] - 1)
        rows = np.arange(len(step))
        return Outcome(step, exited, self.logits[rows, step], self.gmacs[rows, step])

    def point(self, threshold: float) -> dict[str, float]:
        """``threshold``, val ``top1`` (%) and ``gflops_per_video`` (mean GMACs)."""
        out = self.outcome(threshold)
        return {"threshold": float(threshold), "top1": top1_accuracy(out.logits, self.labels),
                "gflops_per_video": float(out.gmacs.mean())}


@torch.no_grad()
def record_steps(model: RSEEModel, frames: torch.Tensor, labels: torch.Tensor,
                 settings: InferenceSettings | None = None) -> StepTable:
    """The :class:`StepTable` of a batch ``(B, T, 3, S, S)``: the model's own steps
    (:meth:`RSEEModel.advance`) with exits off, and the exit score of each step from the
    accumulator's representation before and after it, as ``advance`` computes it."""
    settings = (settings or InferenceSettings()).with_changes(exit_threshold=NEVER_EXIT)
    frames = frames.to(model.device)
    state = model.initial_state(frames.shape[0], settings)
    mask = model.action_mask(settings)
    kind = settings.gate or model.config.gate
    columns: dict[str, list[torch.Tensor]] = {"logits": [], "processed": [], "scores": [],
                                              "gmacs": []}
    for t in range(frames.shape[1]):
        previous = model.accumulator.readout(state.accumulator)
        result = model.advance(state, frames[:, t], settings, mask)
        current = model.accumulator.readout(state.accumulator)
        score = exit_score(kind, model.exit_gate, result.logits, current, previous)
        for name, value in (("logits", result.logits), ("processed", result.processed),
                            ("scores", score), ("gmacs", result.gmacs)):
            columns[name].append(value.detach().cpu())
    stacked = {name: torch.stack(values, 1).numpy() for name, values in columns.items()}
    return StepTable(stacked["logits"].astype(np.float32), stacked["processed"].astype(bool),
                     stacked["scores"].astype(np.float64),
                     np.cumsum(stacked["gmacs"].astype(np.float64), axis=1),
                     np.asarray(labels).astype(np.int64))


def measure(model: RSEEModel, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
            wrap: Wrap | None = None) -> tuple[StepTable, dict[str, float]]:
    """The :class:`StepTable` of every batch and the same videos' Uniform ``top1`` and
    ``gflops_per_video`` (every frame at the highest resolution, no exit)."""
    model.eval()
    uniform = InferenceSettings(policy="uniform", exit_threshold=NEVER_EXIT)
    parts, probabilities, labels_seen, gmacs = [], [], [], []
    for frames, labels in (wrap(batches) if wrap else batches):
        parts.append(record_steps(model, frames, labels))
        out = model.infer_batch(frames.to(model.device), uniform)
        probabilities.append(out.probabilities.float().cpu().numpy())
        labels_seen.append(np.asarray(labels))
        gmacs.append(out.gmacs.cpu().numpy())
    if not parts:
        raise CalibrationError("no validation videos could be read")
    return StepTable.concat(parts), {
        "top1": top1_accuracy(np.concatenate(probabilities), np.concatenate(labels_seen)),
        "gflops_per_video": float(np.concatenate(gmacs).mean())}


def fit_temperature(logits: np.ndarray, labels: np.ndarray,
                    bounds: tuple[float, float] = TEMPERATURE_BOUNDS, steps: int = 80) -> float:
    """The ``T`` in ``bounds`` minimising the mean NLL of ``softmax(logits / T)``: golden-section
    search on ``log T`` (the NLL is convex in ``1 / T``, so it has one minimum there)."""
    z = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    y = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    def nll(log_t: float) -> float:
        return float(F.cross_entropy(z / math.exp(log_t), y))

    lo, hi = math.log(bounds[0]), math.log(bounds[1])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = nll(a), nll(b)
    for _ in range(steps):
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = nll(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = nll(b)
    return math.exp((lo + hi) / 2.0)


def sweep(table: StepTable, thresholds: Sequence[float] = GRID) -> list[dict[str, float]]:
    """:meth:`StepTable.point` at every threshold."""
    return [table.point(t) for t in thresholds]


def choose_operating_point(points: Sequence[Mapping[str, float]], uniform_top1: float,
                           tolerance: float) -> tuple[dict[str, float], bool]:
    """The cheapest point whose ``top1`` is at least ``uniform_top1 - tolerance`` (ties: higher
    top-1, then higher threshold) and True; when none is, the most accurate (then cheapest)
    point and False (ties, there: the higher threshold)."""
    floor = uniform_top1 - tolerance - 1e-9
    within = [p for p in points if p["top1"] >= floor]
    if within:
        return dict(min(within, key=lambda p: (p["gflops_per_video"], -p["top1"],
                                               -p["threshold"]))), True
    return dict(max(points, key=lambda p: (p["top1"], -p["gflops_per_video"],
                                           p["threshold"]))), False


def calibrate_model(model: RSEEModel, batches: Iterable[tuple[torch.Tensor, torch.Tensor]], *,
                    tolerance: float = DEFAULT_TOLERANCE, wrap: Wrap | None = None
                    ) -> dict[str, Any]:
    """``calibration``, ``operating_point`` (the checkpoint metadata entries) and ``sweep`` (every
    threshold of :data:`GRID`) of a model on validation ``batches``."""
    if not (isinstance(tolerance, int | float) and math.isfinite(tolerance) and tolerance >= 0):
        raise CalibrationError(f"tolerance must be a number of top-1 points >= 0, got "
                               f"{tolerance!r}")
    table, uniform = measure(model, batches, wrap)
    videos = len(table.labels)
    final = torch.softmax(torch.from_numpy(table.final_logits).double(), -1)
    temperature = fit_temperature(table.final_logits, table.labels)
    calibration = {
        "temperature": temperature,
        "ece_before": expected_calibration_error(final.numpy(), table.labels),
        "ece_after": expected_calibration_error(
            apply_temperature(final, temperature).numpy(), table.labels),
        "videos": videos,
    }
    points = sweep(table)
    best, within = choose_operating_point(points, uniform["top1"], float(tolerance))
    operating_point = {
        "threshold": best["threshold"], "top1": best["top1"],
        "gflops_per_video": best["gflops_per_video"], "uniform_top1": uniform["top1"],
        "uniform_gflops_per_video": uniform["gflops_per_video"], "tolerance": float(tolerance),
        "videos": videos, "split": "val", "within_tolerance": within,
    }
    return {"calibration": calibration, "operating_point": operating_point, "sweep": points}


def validation_data(checkpoint: Any, data: str | Path, *, frames: int | None = None,
                    cache_dir: str | None = None, workers: int = 0, progress: bool = False
                    ) -> Any:
    """The ``val`` subset of the data set at ``data`` as the checkpoint was trained on it (its
    training data section's kind, options and ``val_fraction``; ``frames``: its ``data.frames``
    unless given); :class:`CalibrationError` for a checkpoint trained without one."""
    from rsee_ros.data.build import build_dataset
    from rsee_ros.evaluation.data import data_config

    trained = dict((checkpoint.metadata.get("train_config") or {}).get("data") or {})
    fraction = float(trained.get("val_fraction") or 0.0)
    if fraction <= 0:
        raise CalibrationError(
            f"{checkpoint.path}: trained without a validation subset; train with "
            "data.val_fraction (e.g. data.val_fraction=0.15) to hold out a share of the training "
            "videos (calibration never uses the test split)")
    section = data_config(data, kind=None, frames=int(frames or trained.get("frames") or 16),
                          metadata=checkpoint.metadata, cache_dir=cache_dir, workers=workers)
    section["val_fraction"] = fraction
    bundle = build_dataset(section, subset="val", size=checkpoint.config.max_resolution,
                           train=False, progress=progress)
    if bundle.classes != checkpoint.class_names:
        raise CalibrationError(f"{data}: data set classes {bundle.classes[:5]}... differ from the "
                               f"checkpoint's {checkpoint.class_names[:5]}...")
    return bundle.dataset


def _stored_half(path: Path) -> bool:
    """Whether a checkpoint file stores its float weights as float16."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        return any(v.dtype == torch.float16 for v in payload["state_dict"].values())
    except Exception:  # noqa: BLE001 - any failure: store float32, which always round-trips
        return False


def save_calibrated(checkpoint: Any, source: str | Path, out: str | Path | None,
                    result: Mapping[str, Any]) -> Path:
    """Write ``checkpoint`` with ``result``'s ``calibration`` and ``operating_point`` in its
    metadata to ``out`` (default: over ``source``, through a temporary file), its weights as
    stored in ``source`` (float16 stays float16)."""
    from rsee_ros.model import save_checkpoint

    metadata = dict(checkpoint.metadata)
    metadata["calibration"] = dict(result["calibration"])
    metadata["operating_point"] = dict(result["operating_point"])
    target = Path(out) if out else Path(source)
    return save_checkpoint(target, checkpoint.model.cpu(), checkpoint.class_names, metadata,
                           half=_stored_half(Path(source)))


def calibrate_file(checkpoint: Any, dataset: Any, *, tolerance: float = DEFAULT_TOLERANCE,
                   batch_size: int = 8, workers: int = 0, out: str | Path | None = None,
                   wrap: Wrap | None = None,
                   saving: Callable[[], AbstractContextManager[Any]] = nullcontext
                   ) -> dict[str, Any]:
    """Calibrate a loaded checkpoint on its validation ``dataset`` and write it (to ``out``,
    default over its file; inside ``saving()``, e.g. a section signals do not cut); returns
    :func:`calibrate_model`'s result with ``checkpoint`` (the file written)."""
    from rsee_ros.evaluation.data import Batches

    batches = Batches(dataset, range(len(dataset)), batch_size=batch_size, workers=workers)
    result = calibrate_model(checkpoint.model, batches, tolerance=tolerance, wrap=wrap)
    with saving():
        result["checkpoint"] = str(save_calibrated(checkpoint, checkpoint.path, out, result))
    return result


def calibrate_checkpoint(path: str | Path, data: str | Path, *,
                         tolerance: float = DEFAULT_TOLERANCE, out: str | Path | None = None,
                         batch_size: int = 8, device: str = "cpu", frames: int | None = None,
                         cache_dir: str | None = None, workers: int = 0, wrap: Wrap | None = None,
                         progress: bool = False) -> dict[str, Any]:
    """Calibrate the checkpoint file ``path`` on its ``val`` subset of the data set at ``data``
    (:func:`validation_data`) and write it: :func:`calibrate_file`."""
    from rsee_ros.model import load_checkpoint, resolve_device

    checkpoint = load_checkpoint(path, device=resolve_device(device))
    dataset = validation_data(checkpoint, data, frames=frames, cache_dir=cache_dir,
                              workers=workers, progress=progress)
    return calibrate_file(checkpoint, dataset, tolerance=tolerance, batch_size=batch_size,
                          workers=workers, out=out, wrap=wrap)

def describe_calibration(result: dict[str, Any]) -> str:
    """One line: the temperature with the ECE it gives, and the operating point."""
    c, p = result["calibration"], result["operating_point"]
    within = ("" if p["within_tolerance"] else
              f" (none within {p['tolerance']:g} points of Uniform: the most accurate)")
    return (f"{c['videos']} val videos: temperature {c['temperature']:.3f} (ECE "
            f"{c['ece_before']:.2f}% -> {c['ece_after']:.2f}%); operating point: exit threshold "
            f"{p['threshold']:g}, val top-1 {p['top1']:.2f}% at {p['gflops_per_video']:.4g} "
            f"GFLOPs/video, Uniform {p['uniform_top1']:.2f}% at "
            f"{p['uniform_gflops_per_video']:.4g}{within}")
