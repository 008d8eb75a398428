"""Clip transforms: (T, H, W, 3) uint8 RGB -> (T, 3, S, S) float32, ImageNet-normalised.

Test: resize the shorter side to ``S * 256 / 224``, centre crop S (the single-frame version is
:func:`rsee_ros.model.preprocess.frame_to_tensor`, which this calls, so they cannot disagree).
Train: the same resize, then a multi-scale crop (side lengths drawn from ``scales`` times the
shorter side, aspect distortion bounded by ``max_distort`` scale steps, random position), resized
to S x S, and an optional horizontal flip. One crop/flip is drawn per clip and applied to all
of its frames. Flip is off by default: the synthetic set has direction-dependent classes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F

from rsee_ros.model.preprocess import (
    frames_to_tensor,
    normalize_uint8,
    resize_short_side,
    short_side_for,
    uint8_frames_to_chw,
)

DEFAULT_SCALES = (1.0, 0.875, 0.75, 0.66)


@dataclass(frozen=True)
class TrainAugment:
    """Train-time augmentation settings."""

    scales: tuple[float, ...] = DEFAULT_SCALES
    max_distort: int = 1
    flip: bool = False


DEFAULT_AUGMENT = TrainAugment()


def eval_transform(frames: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Resize shorter side to ``size * 256 / 224``, centre crop ``size``, normalise."""
    return frames_to_tensor(frames, size)


def train_transform(
    frames: np.ndarray | torch.Tensor,
    size: int,
    rng: np.random.Generator,
    augment: TrainAugment = DEFAULT_AUGMENT,
) -> torch.Tensor:
    """Multi-scale random crop (+ optional flip) of a clip to ``size``, normalised."""
    x = resize_short_side(uint8_frames_to_chw(frames), short_side_for(size))
    h, w = x.shape[-2:]
    sides = [max(1, int(min(h, w) * s)) for s in augment.scales]
    pairs = [
        (ch, cw)
        for i, ch in enumerate(sides)
        for j, cw in enumerate(sides)
        if abs(i - j) <= augment.max_distort
    ]
    ch, cw = pairs[int(rng.integers(len(pairs)))]
    top = int(rng.integers(0, h - ch + 1))
    left = int(rng.integers(0, w - cw + 1))
    x = F.crop(x, top, left, ch, cw)
    x = F.resize(x, [size, size], antialias=True)
    if augment.flip and rng.random() < 0.5:
        x = F.horizontal_flip(x)
    return normalize_uint8(x)


@dataclass(frozen=True)
class ClipTransform:
    """The transform a data set applies: test or train mode at model resolution ``size``."""

    size: int
    train: bool = False
    augment: TrainAugment = DEFAULT_AUGMENT

    def __call__(
        self, frames: np.ndarray | torch.Tensor, rng: np.random.Generator | None = None
    ) -> torch.Tensor:
        """Transform one clip; ``rng`` drives the train-mode randomness."""
        if not self.train:
            return eval_transform(frames, self.size)
        return train_transform(
            frames, self.size, rng if rng is not None else np.random.default_rng(), self.augment
        )
