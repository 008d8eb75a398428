"""Checkpoints: one file with weights, configuration, labels, resolutions and FLOPs table.

Files are written with ``torch.save`` holding only tensors and plain data, and read with
``torch.load(weights_only=True)``, so loading never executes pickled code.
"""

from __future__ import annotations

import pickle
import pickletools
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rsee_ros.model.build import build_rsee
from rsee_ros.model.config import RSEEConfig
from rsee_ros.model.flops import FlopsTable
from rsee_ros.model.rsee import RSEEModel

FORMAT = "rsee_ros.checkpoint"
FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, unreadable, unsafe, foreign or inconsistent."""

    def __init__(self, path: str | Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = Path(path)
        self.problem = problem


@dataclass
class Checkpoint:
    """A loaded checkpoint."""

    model: RSEEModel
    class_names: list[str]
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def config(self) -> RSEEConfig:
        """The model's configuration."""
        return self.model.config


def save_checkpoint(
    path: str | Path,
    model: RSEEModel,
    class_names: list[str],
    metadata: dict[str, Any] | None = None,
    *,
    half: bool = False,
) -> Path:
    """Write ``model`` with its labels; ``half`` stores float weights as float16 (half the size;
    they are restored to float32 on load)."""
    if len(class_names) != model.config.num_classes:
        raise ValueError(
            f"{len(class_names)} class names for a model with {model.config.num_classes} classes"
        )
    state = {
        key: (value.half() if half and value.is_floating_point() else value).detach().cpu()
        for key, value in model.state_dict().items()
    }
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": model.config.to_dict(),
        "class_names": list(class_names),
        "resolutions": list(model.config.resolutions),
        "flops": model.flops.to_dict(),
        "metadata": dict(metadata or {}),
        "state_dict": state,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return path


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__


# Globals a checkpoint's pickle may name: torch's tensor rebuilding and plain containers.
_DATA_MODULES = ("torch", "collections", "builtins", "_codecs", "numpy")


def _foreign_globals(path: Path) -> list[str]:
    """The globals (``module.name``) other than torch's and plain containers' that the pickle
    inside a torch zip archive references, read with :mod:`pickletools` (which decodes opcodes
    and runs nothing): what the refusal names."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if n.endswith("data.pkl"))
            data = archive.read(name)
        strings: list[str] = []
        found: list[str] = []
        for opcode, arg, _ in pickletools.genops(data):
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
                strings = [*strings[-1:], str(arg)]
            elif opcode.name in ("GLOBAL", "INST"):
                found.append(str(arg).replace(" ", "."))
            elif opcode.name == "STACK_GLOBAL" and len(strings) == 2:
                found.append(".".join(strings))
    except (OSError, StopIteration, ValueError, zipfile.BadZipFile, pickle.PickleError):
        return []
    return [g for g in dict.fromkeys(found) if g.split(".")[0] not in _DATA_MODULES]


def _read(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise CheckpointError(path, "file not found")
    if not path.is_file():
        raise CheckpointError(path, "not a file")
    if path.stat().st_size == 0:
        raise CheckpointError(path, "file is empty")
    try:
        with warnings.catch_warnings():  # torch's own warnings about the pickle protocol
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if path.read_bytes()[:2] != b"PK":  # not a torch zip archive at all
            raise CheckpointError(
                path, "truncated or corrupt: not a torch zip archive (raw pickles are refused)"
            ) from error
        blocked = _foreign_globals(path)
        what = (f"a pickled reference to {blocked[0]}" if blocked
                else "pickled objects other than data")
        raise CheckpointError(
            path, f"refused: it holds {what}, which loading would run; only plain data "
            "(weights, numbers, strings) is loaded"
        ) from error
    except Exception as error:  # torch raises many types (KeyError, EOFError, ...) on junk
        raise CheckpointError(path, f"truncated or corrupt ({_first_line(error)})") from error
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(path, "not an rsee_ros checkpoint (no rsee_ros format marker)")
    if payload.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            path, f"format version {payload.get('format_version')} is not {FORMAT_VERSION}"
        )
    return payload


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu") -> Checkpoint:
    """Load a checkpoint; every problem is one :class:`CheckpointError` naming the file."""
    path = Path(path)
    payload = _read(path)
    try:
        config = RSEEConfig.from_dict(payload["config"])
        class_names = [str(name) for name in payload["class_names"]]
        flops = FlopsTable.from_dict(payload["flops"])
        state = payload["state_dict"]
    except (KeyError, TypeError, ValueError) as error:
        raise CheckpointError(path, f"inconsistent contents ({error})") from error
    if len(class_names) != config.num_classes:
        raise CheckpointError(
            path, f"{len(class_names)} class names but {config.num_classes} classes in config"
        )
    if list(payload.get("resolutions", config.resolutions)) != list(config.resolutions):
        raise CheckpointError(path, "resolutions do not match the configuration")
    model = build_rsee(config)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(
            path,
            "weights do not match the model configuration "
            f"(missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {unexpected[:3]}{'...' if len(unexpected) > 3 else ''})",
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                path, f"weight {key} has shape {tuple(value.shape)}, expected "
                f"{tuple(own[key].shape)}",
            )
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise CheckpointError(path, f"weight {key} holds NaN or infinite values")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})
    model.flops = flops
    model.eval()
    model.to(resolve_device(device))
    return Checkpoint(model=model, class_names=class_names,
                      metadata=dict(payload.get("metadata", {})), path=path)


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is a clear error."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError("device 'cuda' requested but CUDA is not available")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be cpu, cuda or auto, got {device!r}")
    return torch.device(device)
