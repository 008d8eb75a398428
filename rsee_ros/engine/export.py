"""``rsee export``: a checkpoint as ONNX graphs, one per part of a streaming step, and a manifest.

The directory holds ``look.onnx`` (learned policy: the selector's look, recurrent step and
action logits), ``process_<r>.onnx`` for each resolution ``r`` (resize, backbone with that
resolution's BatchNorm folded, pooling, accumulator update, classifier, exit scores; with the
temporal shift, its cache as inputs ``shift_<k>`` and outputs ``shift_<k>_out``),
``finish_<r>.onnx`` for the lowest resolution when it continues the look's backbone pass, and
``manifest.json`` (classes, configuration, resolutions, FLOPs table, preprocessing, initial
state, opset, the graphs' inputs and outputs with their SHA-256, the source checkpoint's SHA-256
and the validation's figures). Graphs are exported with torch's ONNX exporter (``dynamo=True``)
from :mod:`rsee_ros.engine.graphs`, batch 1.

Export validates itself: the exported engine runs the same videos as the eager model through the
same streaming step, at several exit thresholds, and must make identical decisions (resolution
and exit of every frame) with probabilities within :data:`TOLERANCE`; otherwise
:class:`ExportError` says so in one line and nothing is left in the directory.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rsee_ros.engine.base import Engine
from rsee_ros.engine.graphs import LookGraph, ProcessGraph, resolution_model, shift_shapes
from rsee_ros.model.checkpoint import Checkpoint
from rsee_ros.model.preprocess import IMAGENET_MEAN, IMAGENET_STD, short_side_for
from rsee_ros.model.settings import InferenceSettings

__all__ = ["FORMAT", "MANIFEST", "OPSET", "TOLERANCE", "ExportError", "export_checkpoint",
           "file_sha256", "compare_engines"]

FORMAT = "rsee_ros-onnx-export"
FORMAT_VERSION = 1
"""Raise it whenever the graphs' inputs, outputs or meaning change: cached exports of
checkpoints are keyed by it and made again."""
MANIFEST = "manifest.json"
OPSET = 18
TOLERANCE = 1e-4
"""Largest difference of a probability allowed between an exported engine and the model."""
VALIDATION_THRESHOLDS = (0.6, 0.9, 1.0)


class ExportError(RuntimeError):
    """An export that cannot be made, or made but not faithful to the model."""


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _state_names(rnn: str) -> list[str]:
    return ["selector_h", "selector_c"] if rnn == "lstm" else ["selector_h"]


def _graph_specs(checkpoint: Checkpoint) -> list[tuple[str, nn.Module, tuple, list, list]]:
    """(name, module, example inputs, input names, output names) of every graph."""
    model = checkpoint.model.eval().cpu()
    cfg = model.config
    last = cfg.num_resolutions - 1
    copies = [resolution_model(model, i, fold=True) for i in range(cfg.num_resolutions)]
    # Distinct example tensors for every input: torch.export merges inputs given as one tensor.
    size = cfg.max_resolution
    frame = torch.rand(1, 3, size, size)
    summary, count = (torch.rand(1, model.accumulator.state_dim), torch.ones(1, 1))
    selector = tuple(torch.rand(1, cfg.selector_hidden) for _ in _state_names(cfg.selector_rnn))
    fold_out = ["summary_out", "count_out", "logits", "confidence", "gate"]
    look_out = ["action_logits", *(f"{n}_out" for n in _state_names(cfg.selector_rnn))]
    if cfg.selector_shares_backbone:
        look_out.append("look_pass")
    # The temporal shift's cache as explicit inputs and outputs, one map per shifted block.
    shift = [[torch.rand(shape) for shape in shift_shapes(model, i)]
             for i in range(cfg.num_resolutions)]
    shift_in = [f"shift_{k}" for k in range(len(shift[0]))]
    shift_out = [f"{name}_out" for name in shift_in]
    specs: list[tuple[str, nn.Module, tuple, list, list]] = [
        ("look", LookGraph(copies[last]), (frame, summary, count, *selector),
         ["frame", "summary", "count", *_state_names(cfg.selector_rnn)], look_out),
    ]
    for index, r in enumerate(cfg.resolutions):
        specs.append((f"process_{r}", ProcessGraph(copies[index], index),
                      (frame, summary, count, *shift[index]),
                      ["frame", "summary", "count", *shift_in], fold_out + shift_out))
    if cfg.selector_shares_backbone:
        with torch.no_grad():
            look_pass = LookGraph(copies[last])(frame, summary, count, *selector)[-1]
        specs.append((f"finish_{cfg.resolutions[last]}",
                      ProcessGraph(copies[last], last, from_look=True),
                      (look_pass.clone(), summary, count, *shift[last]),
                      ["look_pass", "summary", "count", *shift_in], fold_out + shift_out))
    return specs


def _export_graph(module: nn.Module, example: tuple, inputs: list, outputs: list,
                  path: Path) -> None:
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's progress notes and deprecations
        program = torch.onnx.export(module.eval(), example, dynamo=True, opset_version=OPSET,
                                    input_names=inputs, output_names=outputs, verbose=False)
        program.save(str(path))


def export_checkpoint(
    checkpoint: Checkpoint,
    out_dir: str | Path,
    *,
    source: str | Path | None = None,
    sample_videos: Sequence[torch.Tensor] = (),
    log: Any = None,
) -> dict[str, Any]:
    """Export ``checkpoint`` into ``out_dir`` (created; must not hold an export) and validate
    it on ``sample_videos`` (``(T, 3, S, S)`` normalised clips; default: synthetic clips).
    Returns the manifest. Raises :class:`ExportError` with the reason."""
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExportError(f"{out} exists and is not an empty folder (remove it first)")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed into place: another process never sees half of it.
    with tempfile.TemporaryDirectory(prefix=".rsee_export_", dir=out.parent) as tmp:
        built = Path(tmp) / "export"
        built.mkdir()
        manifest = _manifest(checkpoint, _write_graphs(checkpoint, built, log), source)
        (built / MANIFEST).write_text(json.dumps(manifest, indent=1))
        from rsee_ros.engine.onnxruntime_engine import OnnxRuntimeEngine
        from rsee_ros.engine.torch_engine import TorchEngine

        videos = list(sample_videos) or _synthetic_videos(checkpoint.config.max_resolution)
        report = compare_engines(TorchEngine(checkpoint.model, checkpoint.class_names),
                                 OnnxRuntimeEngine(built), videos)
        if report["same_decisions"] != report["videos"] or report["max_difference"] > TOLERANCE:
            raise ExportError(
                f"the export does not reproduce the model: same decisions on "
                f"{report['same_decisions']} of {report['videos']} runs, probabilities up to "
                f"{report['max_difference']:.2g} apart (tolerance {TOLERANCE:g})")
        manifest["validation"] = report
        (built / MANIFEST).write_text(json.dumps(manifest, indent=1))
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        try:
            built.rename(out)
        except OSError as exc:  # another process finished the same export first
            if not (out / MANIFEST).is_file():
                raise ExportError(f"cannot move the export into {out}: {exc}") from exc
    return manifest


def _write_graphs(checkpoint: Checkpoint, folder: Path, log: Any) -> dict[str, Any]:
    """Export every graph into ``folder``; their manifest entries."""
    graphs: dict[str, Any] = {}
    for name, module, example, inputs, outputs in _graph_specs(checkpoint):
        if log:
            log(f"exporting {name}")
        path = folder / f"{name}.onnx"
        try:
            _export_graph(module, example, inputs, outputs, path)
        except Exception as exc:  # noqa: BLE001 - the exporter raises many kinds
            raise ExportError(f"exporting {name} failed: {_first_line(exc)}") from exc
        graphs[name] = {"file": path.name, "sha256": file_sha256(path), "inputs": inputs,
                        "outputs": outputs}
    return graphs


def _manifest(checkpoint: Checkpoint, graphs: dict[str, Any], source: str | Path | None
              ) -> dict[str, Any]:
    """The manifest of an export (without the validation's figures)."""
    model, cfg = checkpoint.model, checkpoint.config
    with torch.no_grad():
        initial = model.accumulator.initial_state(1, torch.device("cpu"))
        prior = model.accumulator.classify(initial)[0]
    return {
        "format": FORMAT, "format_version": FORMAT_VERSION, "opset": OPSET,
        "class_names": list(checkpoint.class_names), "config": cfg.to_dict(),
        "flops": model.flops.to_dict(), "metadata": dict(checkpoint.metadata),
        "preprocessing": {"input_size": cfg.max_resolution,
                          "short_side": short_side_for(cfg.max_resolution),
                          "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                          "layout": "NCHW float32 RGB, normalised"},
        "initial_state": {"summary": initial[0][0].tolist(), "prior_logits": prior.tolist()},
        "graphs": graphs,
        "source_checkpoint": {
            "path": str(source) if source else None,
            "sha256": file_sha256(source) if source and Path(source).is_file() else None,
        },
    }


def compare_engines(reference: Engine, other: Engine, videos: Sequence[torch.Tensor],
                    thresholds: Sequence[float] = VALIDATION_THRESHOLDS) -> dict[str, Any]:
    """Stream ``videos`` through both engines at each threshold: runs with identical decisions
    (resolution and exit of every frame) and the largest probability difference."""
    same, worst, runs = 0, 0.0, 0
    for threshold in thresholds:
        settings = InferenceSettings(exit_threshold=threshold)
        for video in videos:
            steps, probabilities = [], []
            for engine in (reference, other):
                session = engine.session(settings)
                decisions = []
                for frame in video:
                    result = session.push(frame)
                    decisions.append((result.resolution, result.skipped, result.exited))
                    if session.done:
                        break
                steps.append(decisions)
                probabilities.append(session.probabilities)
            runs += 1
            same += steps[0] == steps[1]
            worst = max(worst, float((probabilities[0] - probabilities[1]).abs().max()))
    return {"videos": runs, "same_decisions": same, "max_difference": worst,
            "thresholds": list(thresholds)}


def _synthetic_videos(size: int, count: int = 12) -> list[torch.Tensor]:
    """Sample clips for the validation: one clip of each synthetic class, preprocessed."""
    from rsee_ros.data.sources import SyntheticClips
    from rsee_ros.model.preprocess import frames_to_tensor

    clips = SyntheticClips()
    return [frames_to_tensor(clips.render(action, 0), size) for action in clips.actions[:count]]


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0][:300] if lines else type(error).__name__


def load_manifest(directory: str | Path) -> dict[str, Any]:
    """The manifest of an export directory (``ExportError`` naming the file when unusable)."""
    path = Path(directory) / MANIFEST
    if not path.is_file():
        raise ExportError(f"{path}: no export manifest (make one with rsee export)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ExportError(f"{path}: unreadable manifest ({_first_line(exc)})") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ExportError(f"{path}: not an rsee_ros export manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ExportError(f"{path}: export format {manifest.get('format_version')} is not "
                          f"{FORMAT_VERSION}")
    return manifest


def check_graph(directory: Path, name: str, entry: dict[str, Any]) -> Path:
    """The path of graph ``name`` after checking it exists and matches its checksum."""
    path = directory / str(entry.get("file", f"{name}.onnx"))
    if not path.is_file():
        raise ExportError(f"{path}: graph {name} of the export is missing")
    if file_sha256(path) != entry.get("sha256"):
        raise ExportError(f"{path}: checksum does not match the manifest (changed or from "
                          "another export)")
    return path


def as_numpy(value: Any) -> np.ndarray:
    """A float32 numpy array of a tensor or an array."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy().astype(np.float32, copy=False)
    return np.asarray(value, dtype=np.float32)
