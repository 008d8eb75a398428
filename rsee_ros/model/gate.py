"""Exit gates: decide after each processed frame whether the video has been seen enough.

The exit threshold means the same everywhere (model, pipeline, node): a value in [0, 1]; the
gate exits once its score reaches it, 0 exits after the first processed frame and
:data:`NEVER_EXIT` (1.0) never exits early.
"""

from __future__ import annotations

import torch
from torch import nn

NEVER_EXIT = 1.0
"""The exit threshold that never exits early (the largest allowed one)."""


def confidence_exit_score(logits: torch.Tensor) -> torch.Tensor:
    """The confidence rule's score: the largest softmax probability of the prediction so far."""
    return torch.softmax(logits, dim=-1).amax(dim=-1)


class LearnedExitGate(nn.Module):
    """A small network in the manner of FrameExit: P(exit) from the accumulated representation
    after the current and the previous processed frame."""

    def __init__(self, state_dim: int, hidden_size: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(2 * state_dim, hidden_size), nn.ReLU(inplace=True), nn.Linear(hidden_size, 1)
        )

    @property
    def state_dim(self) -> int:
        """Size of the video representation the gate reads."""
        return self.net[0].in_features // 2

    def forward(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Exit logit ``(N,)``; apply a sigmoid for the probability."""
        return self.net(torch.cat([current, previous], dim=-1)).squeeze(-1)


def exit_score(
    kind: str,
    gate: LearnedExitGate,
    logits: torch.Tensor,
    current: torch.Tensor,
    previous: torch.Tensor,
) -> torch.Tensor:
    """The score compared with the exit threshold: P(exit) of the learned gate (``kind``
    ``"learned"``) or the confidence of the prediction ``logits`` (``"confidence"``)."""
    if kind == "learned":
        return torch.sigmoid(gate(current, previous))
    return confidence_exit_score(logits)


def should_exit(score: torch.Tensor | float, threshold: float) -> torch.Tensor | bool:
    """The exit decision for a runtime threshold in [0, 1]: ``score >= threshold``, except that
    :data:`NEVER_EXIT` (or above) never exits, however saturated the score. ``score`` is a
    tensor (a batch) or a number (one video)."""
    if threshold >= NEVER_EXIT:
        if isinstance(score, torch.Tensor):
            return torch.zeros_like(score, dtype=torch.bool)
        return False
    return score >= threshold
