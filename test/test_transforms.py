"""Tests of the clip transforms and the single-frame preprocessing they share."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rsee_ros.data import ClipTransform, TrainAugment, eval_transform, train_transform
from rsee_ros.model.preprocess import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    frame_to_tensor,
    short_side_for,
)


def clip(t: int = 5, h: int = 120, w: int = 160, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, h, w, 3), dtype=np.uint8)


@pytest.mark.parametrize("size", [224, 112, 84])
def test_test_transform_shape_and_frame_to_tensor_agree(size: int) -> None:
    frames = clip()
    out = eval_transform(frames, size)
    assert out.shape == (5, 3, size, size) and out.dtype == torch.float32
    for i in range(len(frames)):
        assert torch.equal(frame_to_tensor(frames[i], size), out[i])
    assert torch.equal(frame_to_tensor(torch.from_numpy(frames[2]), size), out[2])


def test_short_side_and_normalisation() -> None:
    assert short_side_for(224) == 256 and short_side_for(112) == 128
    rgb = np.zeros((50, 70, 3), np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 128, 0
    x = frame_to_tensor(rgb, 32)
    expected = [
        (v / 255 - m) / s
        for v, m, s in zip((255, 128, 0), IMAGENET_MEAN, IMAGENET_STD, strict=True)
    ]
    assert torch.allclose(x.mean(dim=(1, 2)), torch.tensor(expected), atol=1e-5)


def test_centre_crop_of_a_wide_frame() -> None:
    rgb = np.zeros((100, 300, 3), np.uint8)
    rgb[:, 140:160] = 255  # a white stripe in the middle survives the centre crop
    x = frame_to_tensor(rgb, 56)
    assert x.shape == (3, 56, 56) and x[0, :, 28].min() > 2.0 and x[0, :, 0].max() < -2.0


def test_rejects_bad_input() -> None:
    with pytest.raises(ValueError):
        frame_to_tensor(np.zeros((10, 10, 3), np.float32), 8)
    with pytest.raises(ValueError):
        frame_to_tensor(np.zeros((5, 10, 10, 3), np.uint8), 8)


def test_train_transform_shapes_seed_and_flip() -> None:
    frames = clip()
    a = train_transform(frames, 64, np.random.default_rng(1))
    b = train_transform(frames, 64, np.random.default_rng(1))
    assert a.shape == (5, 3, 64, 64) and torch.equal(a, b)
    # flip off (default): never mirrored; a symmetric frame tells mirror from not
    ramp = np.tile(np.linspace(0, 255, 160).astype(np.uint8)[None, :, None], (120, 1, 3))[None]
    full = TrainAugment(scales=(1.0,), flip=False)
    for seed in range(8):
        x = train_transform(ramp, 64, np.random.default_rng(seed), full)
        assert x[0, 0, 32, 0] < x[0, 0, 32, -1]
    flipped = [
        train_transform(ramp, 64, np.random.default_rng(s), TrainAugment((1.0,), flip=True))
        for s in range(16)
    ]
    left_gt_right = [bool(x[0, 0, 32, 0] > x[0, 0, 32, -1]) for x in flipped]
    assert any(left_gt_right) and not all(left_gt_right)


def test_clip_transform_modes() -> None:
    frames = clip()
    assert torch.equal(ClipTransform(48)(frames), eval_transform(frames, 48))
    out = ClipTransform(48, train=True)(frames, np.random.default_rng(0))
    assert out.shape == (5, 3, 48, 48)
