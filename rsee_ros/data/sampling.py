"""Uniform (segment-based) sampling of T frame indices from a video of N frames.

The video is cut into T equal segments. Test mode takes the centre of each segment; train mode
takes a uniformly random position inside each segment. With N < T segments are shorter than one
frame, so indices repeat (each frame is used about T / N times, in order).
"""

from __future__ import annotations

import numpy as np


def sample_indices(
    num_frames: int,
    num_samples: int,
    *,
    train: bool = False,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Return ``num_samples`` sorted frame indices in ``[0, num_frames)`` as int64.

    ``rng`` drives the train-mode offsets (a fresh unseeded generator when None).
    """
    if num_frames <= 0:
        raise ValueError(f"num_frames must be positive, got {num_frames}")
    if num_samples <= 0:
        raise ValueError(f"num_samples must be positive, got {num_samples}")
    if train:
        gen = rng if rng is not None else np.random.default_rng()
        offsets = gen.random(num_samples)
    else:
        offsets = np.full(num_samples, 0.5)
    positions = (np.arange(num_samples) + offsets) * (num_frames / num_samples)
    return np.minimum(np.floor(positions).astype(np.int64), num_frames - 1)
