"""What the RSEE model's entry points carry and return.

``looked_at`` means the same in all of them: the frame was looked at, i.e. it was neither inside
a skip nor after the video's exit, so the policy decided on it (for the learned policy: the
selector ran on it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from rsee_ros.model.accumulator import AccumulatorState
from rsee_ros.model.selector import SelectorState
from rsee_ros.model.temporal import ShiftCache


@dataclass
class VideoState:
    """Per-video inference state for a batch of ``B`` videos (all tensors have B rows);
    ``shift``: the temporal shift's cache, when the backbone has one."""

    selector: SelectorState
    accumulator: AccumulatorState
    skip_left: torch.Tensor
    exited: torch.Tensor
    processed: torch.Tensor
    gmacs: torch.Tensor
    logits: torch.Tensor
    step: int = 0
    generator: torch.Generator | None = None
    shift: ShiftCache | None = None


@dataclass
class StepResult:
    """What happened to frame ``step`` of each video in the batch (:meth:`RSEEModel.advance`):
    ``action`` is the index of the action taken (resolutions, then skips; -1: not looked at)."""

    step: int
    looked_at: torch.Tensor
    action: torch.Tensor
    resolution: torch.Tensor
    processed: torch.Tensor
    exited: torch.Tensor
    logits: torch.Tensor
    gmacs: torch.Tensor


@dataclass
class BatchInference:
    """Result of :meth:`RSEEModel.infer_batch` for ``B`` videos of ``T`` frames (``actions``
    ``(B, T)`` as :attr:`StepResult.action`)."""

    resolutions: torch.Tensor
    looked_at: torch.Tensor
    actions: torch.Tensor
    probabilities: torch.Tensor
    exit_step: torch.Tensor
    exited_early: torch.Tensor
    frames_processed: torch.Tensor
    gmacs: torch.Tensor
    step_logits: torch.Tensor = field(repr=False)


@dataclass
class TrainOutput:
    """Differentiable outputs of :meth:`RSEEModel.forward_train` for ``B`` videos, ``T`` steps.

    ``decisions`` ``(B, T, A)`` are the (straight-through) one-hot actions, zero where the frame
    was not looked at; ``processed`` ``(B, T)`` their resolution part (1 for a processed frame);
    ``representations`` the accumulated representation after each step and ``exit_logits`` the
    learned gate's logit there; ``step_gmacs`` ``(B, T)`` the differentiable cost of each step
    and ``gmacs`` ``(B,)`` their sum, the cost of each video without exits.
    """

    step_logits: torch.Tensor
    decisions: torch.Tensor
    looked_at: torch.Tensor
    processed: torch.Tensor
    representations: torch.Tensor
    exit_logits: torch.Tensor
    gmacs: torch.Tensor
    features: torch.Tensor
    step_gmacs: torch.Tensor
