"""Training configuration: a YAML file (``config/<name>.yaml``) plus ``key=value`` overrides."""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

STAGES = ("warmup", "joint", "finetune", "gate")

DEFAULTS: dict[str, Any] = {
    "name": "rsee",
    "out_dir": "runs/rsee",
    "seed": 0,
    "device": "auto",
    "threads": None,
    "pretrained": True,
    "model": {},
    "data": {
        "kind": "synthetic",
        "root": "data/synthetic",
        "split": 1,
        "frames": 16,
        "cache_dir": None,
        "workers": 0,
        "options": {},
        "augment": None,
    },
    "train": {
        "batch_size": 8,
        "eval_batch_size": 16,
        "amp": True,
        "step_loss_weight": 0.5,
        "grad_clip": 5.0,
        "weight_decay": 1e-4,
        "compute_all_resolutions": False,
        "eval_threshold": 0.9,
        "max_batches_per_epoch": None,
        "freeze_blocks": 0,
        "warmup_resolutions_per_batch": None,
    },
    "stages": {
        "warmup": {"epochs": 5, "lr": 0.01},
        "joint": {"epochs": 8, "lr": 0.001, "alpha": 0.1, "beta": 0.3, "tau0": 5.0,
                  "tau_decay": 0.045, "selector_lr_scale": 10.0, "skip_bias_init": None,
                  "flops_target": None, "noise_final": 1.0},
        "finetune": {"epochs": 4, "lr": 0.0005},
        "gate": {"epochs": 3, "lr": 0.001, "base_loss": 0.1, "cost_per_step": 0.05},
    },
    "distill": {"enabled": False, "teacher": "self", "feature_weight": 1.0},
}


@dataclass
class TrainConfig:
    """A resolved training configuration (nested dicts; see ``DEFAULTS`` for every key)."""

    values: dict[str, Any] = field(default_factory=lambda: copy.deepcopy(DEFAULTS))
    source: str | None = None

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def get(self, dotted: str) -> Any:
        """Value at a dotted path such as ``stages.joint.alpha``."""
        node: Any = self.values
        for part in dotted.split("."):
            node = node[part]
        return node

    @property
    def out_dir(self) -> Path:
        """Folder for the stages' checkpoints and logs."""
        return Path(self.values["out_dir"])

    def to_dict(self) -> dict[str, Any]:
        """A deep copy, safe to store in checkpoints."""
        return copy.deepcopy(self.values)


def _merge(base: dict[str, Any], update: dict[str, Any], where: str = "") -> None:
    for key, value in update.items():
        path = f"{where}{key}"
        if key not in base and where not in ("model.", "data.options."):
            raise ValueError(f"unknown configuration key {path!r}")
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value, path + ".")
        else:
            base[key] = value


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value``; the value is parsed as YAML (numbers, lists, booleans)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} is not KEY=VALUE")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file, then the overrides; unknown keys are errors."""
    values = copy.deepcopy(DEFAULTS)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: training configuration not found")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        _merge(values, loaded)
    for text in overrides or []:
        keys, value = parse_override(text)
        update: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            update = {key: update}
        _merge(values, update)
    return TrainConfig(values=values, source=str(path) if path else None)
