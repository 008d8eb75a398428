"""Accumulators: fold the features of the frames processed so far into one video state."""

from __future__ import annotations

import torch
from torch import nn

AccumulatorState = tuple[torch.Tensor, torch.Tensor]
"""``(summary, count)`` of the frames folded in so far."""


class FeatureAccumulator(nn.Module):
    """Running mean, running max or a GRU over per-frame features, with a classifier head.

    State is a tuple ``(summary, count)``; ``update`` takes a per-row weight in [0, 1] (1 for a
    processed frame, 0 for a skipped one; fractional straight-through values in training).
    """

    def __init__(
        self, *, kind: str, feature_dim: int, hidden_size: int, num_classes: int, dropout: float
    ) -> None:
        super().__init__()
        self.kind = kind
        self.state_dim = self.state_size(kind, feature_dim, hidden_size)
        self.gru = nn.GRUCell(feature_dim, hidden_size) if kind == "gru" else None
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.state_dim, num_classes))

    @staticmethod
    def state_size(kind: str, feature_dim: int, hidden_size: int) -> int:
        """Size of the video representation an accumulator of ``kind`` reads out."""
        return hidden_size if kind == "gru" else feature_dim

    def initial_state(self, batch: int, device: torch.device) -> AccumulatorState:
        """Empty state: nothing processed yet."""
        summary = torch.zeros(batch, self.state_dim, device=device)
        if self.kind == "max":
            summary = torch.full_like(summary, -1e4)  # finite: 0 * inf would be NaN
        return summary, torch.zeros(batch, 1, device=device)

    def update(
        self,
        state: AccumulatorState,
        features: torch.Tensor,
        weight: torch.Tensor,
    ) -> AccumulatorState:
        """Fold in one frame's features for rows with ``weight`` > 0."""
        summary, count = state
        weight = weight.view(-1, 1).to(features.dtype)
        new_count = count + weight
        if self.kind == "mean":
            safe = new_count.clamp_min(1e-6)
            updated = summary + weight * (features - summary) / safe
        elif self.kind == "max":
            updated = torch.maximum(summary, features)
        else:
            assert self.gru is not None
            updated = self.gru(features, summary)
        summary = weight * updated + (1 - weight) * summary if self.kind != "mean" else updated
        return summary, new_count

    def readout(self, state: AccumulatorState) -> torch.Tensor:
        """The video representation so far (zeros before any frame)."""
        summary, count = state
        if self.kind == "max":
            return torch.where(count > 0, summary, torch.zeros_like(summary))
        return summary

    def classify(self, state: AccumulatorState) -> torch.Tensor:
        """Class logits from the accumulated state."""
        return self.head(self.readout(state))
