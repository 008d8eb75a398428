"""Configuration of an RSEE model: everything needed to rebuild it, stored in checkpoints."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

BACKBONE_NAMES = ("mobilenet_v2", "resnet18", "resnet34", "resnet50")
"""The registered backbones (:data:`rsee_ros.model.backbones.BACKBONES`), named without torch."""
BACKBONE_MODES = ("shared", "per_resolution")
ACCUMULATORS = ("mean", "max", "gru", "conv_gru")
GATES = ("confidence", "learned")
RNN_TYPES = ("lstm", "gru")


@dataclass(frozen=True)
class RSEEConfig:
    """Architecture of an RSEE model.

    ``resolutions`` are the selector's resolution actions in descending order; ``skip_steps``
    its skip actions (skip the current frame and the following ``n - 1`` frames).
    ``backbone_mode="shared"`` is RSEE's single backbone with resolution-specific BatchNorm;
    ``"per_resolution"`` is AR-Net's one backbone per resolution (``per_resolution_backbones``,
    highest resolution first; default: ``backbone`` at every resolution).
    ``selector_shares_backbone`` makes the selector look through the backbone at the lowest
    resolution, so choosing that resolution reuses the selector's features (AR-Net's trick);
    ``selector_blocks`` limits that look to the backbone's first blocks (a cheaper selector whose
    partial pass the lowest resolution continues from), and ``selector_sees_state`` also feeds the
    selector the accumulated video representation (what has been seen so far).
    ``temporal_shift`` > 0 turns on the online temporal shift (:mod:`rsee_ros.model.temporal`):
    that fraction of the channels of each residual branch in ``temporal_shift_blocks`` (block
    numbers; ``None``: every residual block after the selector's look) comes from the video's
    previous processed frame. It needs ``backbone_mode="shared"`` and, when the selector looks
    through the backbone, a partial look (``selector_blocks``) that ends before those blocks.
    ``accumulator="conv_gru"`` keeps an ``accumulator_grid`` x ``accumulator_grid`` map of each
    frame (instead of one pooled vector) and folds it with a convolutional GRU of
    ``accumulator_hidden`` channels (:mod:`rsee_ros.model.accumulator`).
    """

    num_classes: int
    backbone: str = "mobilenet_v2"
    resolutions: tuple[int, ...] = (224, 168, 112, 84)
    skip_steps: tuple[int, ...] = (1, 2, 4)
    backbone_mode: str = "shared"
    per_resolution_backbones: tuple[str, ...] = ()
    selector_backbone: str = "mobilenet_v2"
    selector_shares_backbone: bool = False
    selector_blocks: int | None = None
    selector_sees_state: bool = False
    selector_rnn: str = "lstm"
    selector_hidden: int = 512
    accumulator: str = "gru"
    accumulator_hidden: int = 512
    accumulator_grid: int = 3
    gate: str = "confidence"
    gate_hidden: int = 64
    dropout: float = 0.2
    temporal_shift: float = 0.0
    temporal_shift_blocks: tuple[int, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "resolutions", tuple(int(r) for r in self.resolutions))
        object.__setattr__(self, "skip_steps", tuple(int(s) for s in self.skip_steps))
        object.__setattr__(
            self, "per_resolution_backbones", tuple(self.per_resolution_backbones)
        )
        if self.temporal_shift_blocks is not None:
            object.__setattr__(
                self, "temporal_shift_blocks", tuple(int(b) for b in self.temporal_shift_blocks))
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        if not self.resolutions:
            raise ValueError("resolutions must not be empty")
        if list(self.resolutions) != sorted(set(self.resolutions), reverse=True):
            raise ValueError(f"resolutions must be distinct and descending: {self.resolutions}")
        if min(self.resolutions) < 32:
            raise ValueError(f"resolutions must be >= 32 pixels: {self.resolutions}")
        if any(s < 1 for s in self.skip_steps) or len(set(self.skip_steps)) != len(
            self.skip_steps
        ):
            raise ValueError(f"skip_steps must be distinct positive integers: {self.skip_steps}")
        for name in (self.backbone, self.selector_backbone, *self.per_resolution_backbones):
            if name not in BACKBONE_NAMES:
                raise ValueError(f"unknown backbone {name!r}; choose from {list(BACKBONE_NAMES)}")
        if self.backbone_mode not in BACKBONE_MODES:
            raise ValueError(f"backbone_mode must be one of {BACKBONE_MODES}")
        if self.per_resolution_backbones and len(self.per_resolution_backbones) != len(
            self.resolutions
        ):
            raise ValueError("per_resolution_backbones needs one backbone per resolution")
        if self.accumulator not in ACCUMULATORS:
            raise ValueError(f"accumulator must be one of {ACCUMULATORS}")
        if self.accumulator_grid < 1:
            raise ValueError(f"accumulator_grid must be >= 1, got {self.accumulator_grid}")
        if self.accumulator == "conv_gru" and self.backbone_mode != "shared":
            raise ValueError("accumulator 'conv_gru' needs backbone_mode 'shared'")
        if self.gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}")
        if self.selector_blocks is not None:
            if not self.selector_shares_backbone or self.backbone_mode != "shared":
                raise ValueError(
                    "selector_blocks needs selector_shares_backbone and backbone_mode 'shared'"
                )
            if self.selector_blocks < 1:
                raise ValueError(f"selector_blocks must be >= 1, got {self.selector_blocks}")
        if not 0.0 <= self.temporal_shift < 1.0:
            raise ValueError(f"temporal_shift must be in [0, 1), got {self.temporal_shift}")
        if self.temporal_shift:
            if self.backbone_mode != "shared":
                raise ValueError("temporal_shift needs backbone_mode 'shared'")
            if self.selector_shares_backbone and self.selector_blocks is None:
                raise ValueError("temporal_shift needs selector_blocks when the selector looks "
                                 "through the backbone (the look sees single frames)")
        elif self.temporal_shift_blocks is not None:
            raise ValueError("temporal_shift_blocks needs temporal_shift > 0")
        if self.selector_rnn not in RNN_TYPES:
            raise ValueError(f"selector_rnn must be one of {RNN_TYPES}")

    @property
    def num_resolutions(self) -> int:
        """Number of resolution actions (L)."""
        return len(self.resolutions)

    @property
    def num_actions(self) -> int:
        """Size of the selector's action space: resolutions then skips."""
        return len(self.resolutions) + len(self.skip_steps)

    @property
    def max_resolution(self) -> int:
        """Resolution at which frames enter the model."""
        return self.resolutions[0]

    @property
    def selector_resolution(self) -> int:
        """The selector looks at every frame at the lowest resolution."""
        return self.resolutions[-1]

    @property
    def first_shiftable_block(self) -> int:
        """The first trunk block the temporal shift may use (after the selector's look)."""
        return self.selector_blocks if self.selector_shares_backbone and self.selector_blocks else 0

    @property
    def feature_grid(self) -> int:
        """Side of the feature grid the backbone gives per frame (1: globally pooled)."""
        return self.accumulator_grid if self.accumulator == "conv_gru" else 1

    def backbone_names(self) -> tuple[str, ...]:
        """Backbone architecture per resolution (one entry when shared)."""
        if self.backbone_mode == "shared":
            return (self.backbone,)
        return self.per_resolution_backbones or (self.backbone,) * len(self.resolutions)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form, safe for ``torch.save`` with ``weights_only`` loading and JSON."""
        data = asdict(self)
        data["resolutions"] = list(self.resolutions)
        data["skip_steps"] = list(self.skip_steps)
        data["per_resolution_backbones"] = list(self.per_resolution_backbones)
        if self.temporal_shift_blocks is not None:
            data["temporal_shift_blocks"] = list(self.temporal_shift_blocks)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RSEEConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
        return cls(**data)
