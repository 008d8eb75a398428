"""Training configuration: typed sections, from a YAML file plus ``key=value`` overrides.

Every section is a dataclass whose defaults are the only ones; ``model`` stays a free mapping of
:class:`~rsee_ros.model.config.RSEEConfig` fields (validated when the model is built) and
``data.options`` one of reader options. Loading refuses an unknown key anywhere, naming it
with its dotted path and the closest known one. Checkpoints keep :meth:`TrainConfig.to_dict`
(plain data, ``metadata["train_config"]``) and :meth:`TrainConfig.from_dict` reads it back.
"""

from __future__ import annotations

import copy
import difflib
import types
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Union

import yaml

from rsee_ros.data.build import DataConfig
from rsee_ros.model.config import RSEEConfig
from rsee_ros.training.stage_names import STAGES

MODEL_KEYS = tuple(f.name for f in fields(RSEEConfig) if f.name != "num_classes")


@dataclass
class TrainSettings:
    """The ``train`` section: what every stage shares (one attribute docstring per key:
    docs/training.md is generated from them)."""

    batch_size: int = 8
    """Videos per training batch (per process under torchrun)."""
    eval_batch_size: int = 16
    """Videos per batch of the test after each stage and of the calibration."""
    amp: bool | str | None = True
    """Mixed precision: ``true`` float16 autocast on CUDA only (off on CPU); ``"bfloat16"`` on
    any device; ``false``/``null`` off."""
    step_loss_weight: float = 0.5
    """Share of the loss on the predictions after every step (what early exits read), the rest
    on the final prediction."""
    grad_clip: float = 5.0
    """Largest gradient norm (clipped above it)."""
    weight_decay: float = 1e-4
    """SGD weight decay of every stage."""
    compute_all_resolutions: bool = False
    """AR-Net's exact estimator in the joint stage: every resolution runs for every frame and
    the straight-through decision mixes them (L times the cost, unbiased gradients)."""
    eval_threshold: float = 0.9
    """Exit threshold of the test after each stage after warm-up (until ``rsee calibrate``
    stores an operating point, also what ``rsee eval`` and ``rsee bench`` run at)."""
    max_batches_per_epoch: int | None = None
    """Stop an epoch after this many batches (``null``: the whole training subset)."""
    freeze_blocks: int = 0
    """First backbone blocks kept frozen (their ImageNet convolutions; BatchNorm statistics still
    adapt): cheaper and steadier on small data sets."""
    warmup_resolutions_per_batch: int | None = None
    """Resolutions a warm-up batch trains: the highest plus a random sample of the others
    (``null``: every resolution in every batch)."""
    calibration_tolerance: float = 1.0
    """With ``data.val_fraction`` > 0: the top-1 points on val the operating point (the exit
    threshold ``rsee calibrate`` stores) may lose against Uniform (``rsee calibrate
    --tolerance``)."""


@dataclass
class WarmupSettings:
    """``stages.warmup``: backbone and classifier at every resolution, no selector."""

    epochs: int = 5
    """Epochs of the stage."""
    lr: float = 0.01
    """Learning rate (SGD, Nesterov momentum 0.9, cosine schedule over the stage's epochs)."""


@dataclass
class JointSettings:
    """``stages.joint``: selector and backbone together (Gumbel-softmax)."""

    epochs: int = 8
    """Epochs of the stage."""
    lr: float = 0.001
    """Learning rate of backbone and classifier."""
    alpha: float = 0.1
    """Weight of the FLOPs term (the accuracy term gets ``1 - alpha``)."""
    beta: float = 0.3
    """Weight of the usage-balance term (every action used alike)."""
    tau0: float = 5.0
    """Initial Gumbel temperature; epoch ``e`` uses ``tau0 * exp(-tau_decay * e)``."""
    tau_decay: float = 0.045
    """Decay of the Gumbel temperature per epoch."""
    selector_lr_scale: float = 10.0
    """The selector's learning rate relative to ``lr``."""
    skip_bias_init: float | None = None
    """Initial policy bias of the skip actions (negative: start by looking at most frames);
    ``null``: as initialised."""
    flops_target: float | None = None
    """A FLOPs budget, a fraction of Uniform's cost: only the cost above it is penalised
    (``null``: a plain penalty on all of it)."""
    noise_final: float = 1.0
    """Gumbel noise scale of the last epoch, from 1 in the first (0: the last epoch trains the
    argmax policy that inference runs)."""
    flops_target_start: float | None = None
    """The budget of the first epoch, lowered linearly to ``flops_target`` in the last
    (``null``: ``flops_target`` throughout)."""
    exit_in_loop: bool = False
    """Train with the exit in the loop: the FLOPs term is the cost expected under a soft version
    of the exit rule (a step's cost weighted by the probability that the video is still running)
    and ``exit_loss_weight`` of the accuracy term is the cross-entropy of the prediction reported
    at the (soft) exit (``false``: AR-Net's terms, every frame paid)."""
    exit_gate: str = "model"
    """The exit rule in the loop: ``confidence``, ``learned`` (the gate then trains with the
    selector, a differentiable exit) or ``model`` (the model's ``gate``)."""
    exit_threshold: float | None = None
    """The threshold of the exit rule in the loop (``null``: ``train.eval_threshold``)."""
    exit_temperature: float = 0.05
    """Softness of the exit in the loop: P(exit) = sigmoid((score - threshold) / temperature)."""
    exit_loss_weight: float = 0.5
    """With ``exit_in_loop``: the share of the accuracy term that is the expected cross-entropy
    at the exit (the rest: the per-step term of ``train.step_loss_weight``)."""


@dataclass
class FinetuneSettings:
    """``stages.finetune``: backbone and classifier under the frozen selector's decisions."""

    epochs: int = 4
    """Epochs of the stage."""
    lr: float = 0.0005
    """Learning rate."""


@dataclass
class GateSettings:
    """``stages.gate``: the learned exit gate on FrameExit-style pseudo labels (exiting at a
    step is right when its loss is below ``base_loss + cost_per_step * step``)."""

    epochs: int = 3
    """Epochs of the stage."""
    lr: float = 0.001
    """Learning rate of the gate."""
    base_loss: float = 0.1
    """Loss below which exiting at the first step counts as right."""
    cost_per_step: float = 0.05
    """How much more loss each later step tolerates."""


StageSettings = WarmupSettings | JointSettings | FinetuneSettings | GateSettings


@dataclass
class StagesConfig:
    """The ``stages`` section, one entry per stage, in the order they run."""

    warmup: WarmupSettings = field(default_factory=WarmupSettings)
    joint: JointSettings = field(default_factory=JointSettings)
    finetune: FinetuneSettings = field(default_factory=FinetuneSettings)
    gate: GateSettings = field(default_factory=GateSettings)

    def of(self, stage: str) -> StageSettings:
        """The settings of the stage named ``stage``."""
        if stage not in STAGES:
            raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
        return getattr(self, stage)


assert tuple(f.name for f in fields(StagesConfig)) == STAGES


@dataclass
class DistillConfig:
    """The ``distill`` section: ResKD's feature-map distillation in warm-up."""

    enabled: bool = False
    """Distil the full-resolution feature map into the lower resolutions' in warm-up."""
    teacher: str = "self"
    """``"self"`` (the model's own full-resolution pass, detached) or a checkpoint path."""
    feature_weight: float = 1.0
    """Weight of the distillation term."""


@dataclass
class TrainConfig:
    """A resolved training configuration; ``source`` is the YAML file it came from."""

    name: str = "rsee"
    """Name of the model (stored in the checkpoints, shown by the node's ``label_info``)."""
    out_dir: str = "runs/rsee"
    """Where each stage keeps ``<stage>/state.pt`` (every epoch), ``log.jsonl`` and
    ``model.pt`` (when complete); the result is ``<out_dir>/gate/model.pt``."""
    seed: int = 0
    """Seed of the new parts' initial weights, the sampling and the augmentation."""
    device: str = "auto"
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``."""
    threads: int | None = None
    """Torch CPU threads (``null``: torch's default, one per core)."""
    pretrained: bool | str = True
    """ImageNet backbone weights: ``true`` (the installed ones), ``false`` (random) or a
    weights file."""
    model: dict[str, Any] = field(default_factory=dict, metadata={"keys": MODEL_KEYS})
    """The architecture: :class:`~rsee_ros.model.config.RSEEConfig` keys (table below)."""
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainSettings = field(default_factory=TrainSettings)
    stages: StagesConfig = field(default_factory=StagesConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    source: str | None = field(default=None, compare=False, metadata={"config": False})

    def model_config(self, num_classes: int) -> RSEEConfig:
        """The model's architecture for ``num_classes`` classes."""
        return RSEEConfig(num_classes=num_classes, **self.model)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested data (what checkpoints store as ``metadata["train_config"]``)."""
        data = asdict(self)
        del data["source"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict` (keys left out keep their defaults)."""
        config = cls()
        merge(config, data)
        return config


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b.c=value``; the value is parsed as YAML (numbers, lists, booleans)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} is not KEY=VALUE")
    key, raw = text.split("=", 1)
    return key.strip().split("."), yaml.safe_load(raw)


def load_train_config(path: str | Path | None, overrides: list[str] | None = None) -> TrainConfig:
    """Defaults, then the YAML file, then the overrides; unknown keys are errors."""
    config = TrainConfig(source=str(path) if path is not None else None)
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: training configuration not found")
        loaded = yaml.safe_load(path.read_text()) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        merge(config, loaded)
    for text in overrides or []:
        keys, value = parse_override(text)
        update: dict[str, Any] = {keys[-1]: value}
        for key in reversed(keys[:-1]):
            update = {key: update}
        merge(config, update)
    config.model_config(num_classes=2)  # architecture errors now, not after building data
    config.data.check()
    return config


# ------------------------------------------------------------------ loading
def merge(section: Any, update: Mapping[str, Any], where: str = "") -> None:
    """Set the values of ``update`` (nested mappings) on the dataclass ``section`` in place,
    checking every key and value; ``where`` is the section's dotted path."""
    if not isinstance(update, Mapping):
        raise ValueError(f"configuration key {where.rstrip('.')!r} is a section: expected a "
                         f"mapping, got {update!r}")
    hints = typing.get_type_hints(type(section))
    known = {f.name: f for f in fields(section) if f.metadata.get("config", True)}
    for key, value in update.items():
        dotted = f"{where}{key}"
        if key not in known:
            raise ValueError(_unknown(where, key, list(known)))
        current = getattr(section, key)
        if is_dataclass(current):
            merge(current, value, dotted + ".")
        else:
            keys = known[key].metadata.get("keys")
            setattr(section, key, _checked(value, hints[key], current, dotted, keys))


def _unknown(where: str, key: str, known: list[str]) -> str:
    """The message for ``key`` of the section at ``where``: the closest of its ``known`` keys
    (compared without the shared prefix), else all of them."""
    close = difflib.get_close_matches(key, known, n=1)
    hint = (f"did you mean {where + close[0]!r}?" if close
            else "known here: " + ", ".join(where + k for k in known))
    return f"unknown configuration key {where + key!r} ({hint})"


def _checked(value: Any, hint: Any, current: Any, dotted: str,
             keys: tuple[str, ...] | None) -> Any:
    """``value`` as the field's type ``hint`` wants it (free mappings merge into ``current``);
    a ``ValueError`` naming ``dotted`` otherwise."""
    union = typing.get_origin(hint) in (Union, types.UnionType)
    options = typing.get_args(hint) if union else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        base = typing.get_origin(option) or option
        if base is dict and isinstance(value, Mapping):
            merged = copy.deepcopy(current) if isinstance(current, dict) else {}
            for key in value:
                if keys is not None and key not in keys:
                    raise ValueError(_unknown(f"{dotted}.", key, list(keys)))
            _merge_free(merged, value)
            return merged
        if base is bool and isinstance(value, bool):
            return value
        if isinstance(value, bool):
            continue
        if base is int and (isinstance(value, int) or
                            (isinstance(value, float) and value.is_integer())):
            return int(value)
        if base is float and isinstance(value, (int, float, str)):
            try:  # YAML 1.1 reads 1e-3 (no dot) as a string
                return float(value)
            except ValueError:
                continue
        if base is str and isinstance(value, str):
            return value
    wanted = " or ".join("null" if o is type(None) else getattr(o, "__name__", str(o))
                         for o in options)
    raise ValueError(f"configuration key {dotted!r} must be {wanted}, got {value!r}")


def _merge_free(base: dict[str, Any], update: Mapping[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge_free(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


__all__ = [
    "STAGES",
    "DataConfig",
    "DistillConfig",
    "FinetuneSettings",
    "GateSettings",
    "JointSettings",
    "StageSettings",
    "StagesConfig",
    "TrainConfig",
    "TrainSettings",
    "WarmupSettings",
    "load_train_config",
    "parse_override",
]
