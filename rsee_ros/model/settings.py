"""Runtime settings of inference: none of them is baked into the weights."""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace

import torch

from rsee_ros.model.config import GATES, RSEEConfig
from rsee_ros.model.gate import NEVER_EXIT

POLICIES = ("learned", "uniform", "random")


@dataclass(frozen=True)
class InferenceSettings:
    """Runtime knobs of :meth:`RSEEModel.infer_batch`, :meth:`RSEEModel.advance` and streaming.

    ``exit_threshold`` (0..1): exit once the gate's score (max softmax for the confidence rule,
    exit probability for the learned gate) reaches it; 0 exits after the first processed frame,
    :data:`~rsee_ros.model.gate.NEVER_EXIT` (1.0) never exits early. ``gate`` overrides the
    model's exit rule (``None``: the configured one). ``allowed_resolutions`` restricts the
    selector (None: all); ``skip_enabled=False`` takes the skips away from it. ``policy``:
    ``learned`` (the selector), ``uniform`` (every frame at ``fixed_resolution``, default the
    highest; no selector cost) or ``random`` (uniformly random allowed actions; ``seed``).
    """

    exit_threshold: float = 0.9
    allowed_resolutions: tuple[int, ...] | None = None
    skip_enabled: bool = True
    gate: str | None = None
    policy: str = "learned"
    fixed_resolution: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        threshold = self.exit_threshold
        valid = isinstance(threshold, numbers.Real) and not isinstance(threshold, bool)
        if not (valid and 0.0 <= threshold <= NEVER_EXIT):  # NaN fails the comparison too
            raise ValueError(
                f"exit_threshold must be between 0 and {NEVER_EXIT} ({NEVER_EXIT} never exits "
                f"early), got {threshold!r}"
            )
        if self.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {self.policy!r}")
        if self.gate is not None and self.gate not in GATES:
            raise ValueError(f"gate must be one of {GATES} or None, got {self.gate!r}")

    def with_changes(self, **changes: object) -> InferenceSettings:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)


def allowed_actions(config: RSEEConfig, settings: InferenceSettings) -> torch.Tensor:
    """Boolean ``(A,)`` mask (CPU) of the actions ``settings`` allow a model of ``config``:
    resolutions, then skips; at least one resolution (``ValueError`` otherwise)."""
    allowed = torch.ones(config.num_actions, dtype=torch.bool)
    if settings.allowed_resolutions is not None:
        wanted = set(settings.allowed_resolutions)
        unknown = wanted - set(config.resolutions)
        if unknown:
            raise ValueError(
                f"resolutions {sorted(unknown)} are not among the model's {config.resolutions}"
            )
        for index, r in enumerate(config.resolutions):
            allowed[index] = r in wanted
        if not allowed[: config.num_resolutions].any():
            raise ValueError("allowed_resolutions must keep at least one resolution")
    if not settings.skip_enabled:
        allowed[config.num_resolutions:] = False
    return allowed


def fixed_index(config: RSEEConfig, settings: InferenceSettings) -> int:
    """Resolution index of the ``uniform`` policy (``ValueError`` for one the model lacks)."""
    fixed = settings.fixed_resolution or config.max_resolution
    if fixed not in config.resolutions:
        raise ValueError(f"fixed_resolution {fixed} is not one of the model's")
    return config.resolutions.index(fixed)
