"""Running sums of one training epoch, for its log line."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from rsee_ros.training.stages import BatchLoss

__all__ = ["EpochStats"]


@dataclass
class EpochStats:
    """Running sums for one epoch's log line."""

    loss: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    correct: int = 0
    seen: int = 0
    gmacs: float = 0.0
    usage: torch.Tensor | None = None
    batches: int = 0

    def add(self, batch: BatchLoss, labels: torch.Tensor) -> None:
        """Count one batch in."""
        self.loss += float(batch.loss.detach())
        for key, value in batch.parts.items():
            self.parts[key] = self.parts.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1
        self.correct += int((batch.logits.argmax(-1) == labels).sum())
        self.seen += len(labels)
        self.batches += 1
        self.gmacs += float(batch.gmacs.sum())
        if batch.usage is not None:
            self.usage = batch.usage if self.usage is None else self.usage + batch.usage

    def means(self) -> dict[str, Any]:
        """The epoch's loss and its parts (each over the batches that computed it), train
        accuracy and GFLOPs per video."""
        return {
            "loss": round(self.loss / self.batches, 4),
            **{k: round(v / self.counts[k], 4) for k, v in self.parts.items()},
            "train_acc": round(100 * self.correct / max(self.seen, 1), 2),
            "gflops_per_video": round(self.gmacs / max(self.seen, 1), 4),
        }

    def usage_shares(self, action_names: list[str]) -> dict[str, float] | None:
        """The share of each action among the looked-at frames (policy stages only)."""
        if self.usage is None:
            return None
        total = float(self.usage.sum()) or 1.0
        return {n: round(float(u) / total, 3)
                for n, u in zip(action_names, self.usage, strict=True)}
