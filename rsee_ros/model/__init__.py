"""The RSEE model library: pure PyTorch, importable without ROS.

Names are imported on first use, so that importing a light module of the package (e.g.
``rsee_ros.model.config`` in the command line's argument parsers) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

# defining module -> the public names it gives the package
_EXPORTS: dict[str, tuple[str, ...]] = {
    "backbones": ("BACKBONES", "backbone_spec"),
    "build": ("build_rsee",),
    "checkpoint": ("Checkpoint", "CheckpointError", "load_checkpoint", "resolve_device",
                   "save_checkpoint"),
    "config": ("RSEEConfig",),
    "flops": ("FlopsTable",),
    "gate": ("NEVER_EXIT",),
    "outputs": ("BatchInference", "TrainOutput"),
    "preprocess": ("resize_frames",),
    "rsee": ("RSEEModel",),
    "settings": ("InferenceSettings",),
    "streaming": ("FrameStep", "StreamingSession"),
}
_HOME = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_HOME)


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_HOME[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
