"""Exit gates: decide after each processed frame whether the video has been seen enough."""

from __future__ import annotations

import torch
from torch import nn


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

    def forward(self, current: torch.Tensor, previous: torch.Tensor) -> torch.Tensor:
        """Exit logit ``(N,)``; apply a sigmoid for the probability."""
        return self.net(torch.cat([current, previous], dim=-1)).squeeze(-1)


def should_exit(score: torch.Tensor, threshold: float) -> torch.Tensor:
    """The exit decision for a runtime threshold: 0 exits at once, above 1 never exits."""
    return score >= threshold
