"""The node's settings as command-line options, for the commands that run its pipeline offline
(``rsee predict``, ``rsee eval-bag``): defaults, then a ROS 2 parameter file's ``rsee_node``
entries (``--params``), then the options given."""

from __future__ import annotations

import argparse
from dataclasses import fields
from pathlib import Path
from typing import Any

__all__ = ["NODE_PARAMS", "add_engine_options", "add_node_settings", "load_pipeline_engine",
           "node_parameters", "pipeline_settings"]

NODE_PARAMS = (
    "window_size", "stride", "frame_step", "max_gap_s", "exit_threshold", "max_resolution",
    "allowed_resolutions", "skip_enabled", "top_k", "min_confidence", "policy", "gate",
)
"""The node parameters that are pipeline settings."""


def add_node_settings(parser: argparse.ArgumentParser) -> None:
    """Register ``--params`` and one option per node setting (see docs/node.md)."""
    parser.add_argument("--params", default=None, metavar="YAML",
                        help="ROS parameter file: use its rsee_node settings (e.g. "
                        "config/rsee.yaml)")
    group = parser.add_argument_group("node settings (override --params; see docs/node.md)")
    group.add_argument("--window-size", type=int)
    group.add_argument("--stride", type=int)
    group.add_argument("--frame-step", type=int)
    group.add_argument("--max-gap-s", type=float)
    group.add_argument("--exit-threshold", type=float)
    group.add_argument("--max-resolution", type=int)
    group.add_argument("--allowed-resolutions", type=int, nargs="+", metavar="PX")
    group.add_argument("--skip-enabled", choices=("true", "false"))
    group.add_argument("--top-k", type=int)
    group.add_argument("--min-confidence", type=float,
                       help="results below this confidence say 'unknown' (default 0: off)")
    group.add_argument("--policy", choices=("learned", "uniform"),
                       help="uniform: every frame at the highest allowed resolution (baseline)")
    group.add_argument("--gate", choices=("confidence", "learned"),
                       help="exit rule (default: the model's)")


def add_engine_options(parser: argparse.ArgumentParser) -> None:
    """Register ``--engine`` and ``--device`` (the node's ``engine`` and ``device``)."""
    from rsee_ros.engine import ENGINES

    parser.add_argument("--engine", choices=ENGINES, default=None,
                        help="inference engine (default: --params' engine, else auto: "
                        "onnxruntime when installed, else torch)")
    parser.add_argument("--device", default=None,
                        help="cpu, cuda or auto (default: --params' device, else cpu)")


def load_pipeline_engine(args: argparse.Namespace, params: dict[str, Any], checkpoint: str,
                         threads: int = 1) -> Any:
    """The engine the options and parameters ask for (errors: ``CheckpointError``,
    ``ExportError``, ``RuntimeError``, ``ValueError``)."""
    from rsee_ros.engine import load_engine

    return load_engine(checkpoint, args.engine or params.get("engine") or "auto",
                       device=args.device or params.get("device") or "cpu", threads=threads,
                       cache_dir=params.get("engine_cache_dir") or None)


def node_parameters(path: str | Path, node_name: str = "rsee_node") -> dict[str, Any]:
    """The ``ros__parameters`` that apply to ``node_name`` in a ROS 2 parameter file (entries
    ``/**``, ``node``, ``/node``, ``/ns/node`` and ``/**/node``; later entries win)."""
    import yaml

    try:
        doc = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {getattr(exc, 'problem', None) or exc}") \
            from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a ROS 2 parameter file")
    out: dict[str, Any] = {}
    for key, entry in doc.items():
        name = str(key)
        if name == "/**" or name.rstrip("/").split("/")[-1] == node_name:
            params = (entry or {}).get("ros__parameters") if isinstance(entry, dict) else None
            if isinstance(params, dict):
                out.update(params)
    return out


def pipeline_settings(args: argparse.Namespace, params: dict[str, Any]) -> Any:
    """:class:`PipelineSettings` from the defaults, ``params`` (a node's parameters), then the
    command-line options (``ValueError`` with the reason when they are not valid)."""
    from rsee_ros.pipeline.runner import PipelineSettings

    known = {f.name for f in fields(PipelineSettings)}
    values: dict[str, Any] = {k: v for k, v in params.items() if k in NODE_PARAMS and k in known}
    for name in NODE_PARAMS:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    if isinstance(values.get("skip_enabled"), str):
        values["skip_enabled"] = values["skip_enabled"] == "true"
    if "allowed_resolutions" in values:
        values["allowed_resolutions"] = tuple(values["allowed_resolutions"] or ())
    return PipelineSettings(**values)
