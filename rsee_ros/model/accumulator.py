"""Accumulators: fold the features of the frames processed so far into one video state.

``mean``, ``max`` and ``gru`` fold globally pooled frame features (one vector per frame).
``conv_gru`` is the spatial accumulator: the backbone keeps a small ``grid x grid`` map of each
frame (adaptive average pooling, flattened), which a 1x1 convolution projects and a
convolutional GRU cell (3x3 gates) folds into a spatial state, so where things are, and how
that changes from frame to frame, survives into the video state. Its state is kept flat
(``hidden * grid * grid``), which every consumer of the state (classifier, exit gate, the
selector's view of the state, the exported graphs) takes as it takes the other kinds'.
"""

from __future__ import annotations

import torch
from torch import nn

AccumulatorState = tuple[torch.Tensor, torch.Tensor]
"""``(summary, count)`` of the frames folded in so far."""


class ConvGRUCell(nn.Module):
    """A convolutional GRU cell on ``(N, C, g, g)`` inputs and ``(N, H, g, g)`` states."""

    def __init__(self, input_channels: int, hidden_channels: int) -> None:
        super().__init__()
        self.hidden_channels = hidden_channels
        self.project = nn.Conv2d(input_channels, hidden_channels, 1)
        both = 2 * hidden_channels
        self.gates = nn.Conv2d(both, both, 3, padding=1)
        self.candidate = nn.Conv2d(both, hidden_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.project(x))
        update, reset = torch.sigmoid(self.gates(torch.cat([x, h], 1))).chunk(2, 1)
        candidate = torch.tanh(self.candidate(torch.cat([x, reset * h], 1)))
        return (1 - update) * h + update * candidate


class FeatureAccumulator(nn.Module):
    """Running mean, running max, a GRU over per-frame features, or a convolutional GRU over
    per-frame feature grids (``conv_gru``, ``grid``), with a classifier head.

    State is a tuple ``(summary, count)``; ``update`` takes a per-row weight in [0, 1] (1 for a
    processed frame, 0 for a skipped one; fractional straight-through values in training).
    """

    def __init__(
        self, *, kind: str, feature_dim: int, hidden_size: int, num_classes: int, dropout: float,
        grid: int = 1,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.grid = grid if kind == "conv_gru" else 1
        self.state_dim = self.state_size(kind, feature_dim, hidden_size, self.grid)
        self.gru = nn.GRUCell(feature_dim, hidden_size) if kind == "gru" else None
        self.conv_gru = (ConvGRUCell(feature_dim // self.grid**2, hidden_size)
                         if kind == "conv_gru" else None)
        self.feature_dim = feature_dim
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.state_dim, num_classes))

    @staticmethod
    def state_size(kind: str, feature_dim: int, hidden_size: int, grid: int = 1) -> int:
        """Size of the video representation an accumulator of ``kind`` reads out."""
        if kind == "conv_gru":
            return hidden_size * grid * grid
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
        elif self.kind == "conv_gru":
            assert self.conv_gru is not None
            g, rows = self.grid, features.shape[0]
            updated = self.conv_gru(
                features.reshape(rows, -1, g, g),
                summary.reshape(rows, self.conv_gru.hidden_channels, g, g)).reshape(rows, -1)
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
