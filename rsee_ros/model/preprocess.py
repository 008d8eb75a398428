"""Frame preprocessing shared by training, evaluation and the ROS node.

The test-time transform of the papers: resize the shorter side to ``size * 256 / 224``, centre
crop ``size x size``, scale to [0, 1] and normalise with the ImageNet mean and std. It is done in
the other order, centre crop of the same region first and then one resize to ``size x size``:
the cost is bounded by the crop, not by the frame (a 640x480 frame resizes 420x420 pixels, not
all of them), and where no resize is needed (frames of ``size * 256 / 224`` pixels, as the
synthetic set's) the result is the same to the bit; elsewhere it differs from resize-then-crop by
the interpolation's rounding only. Also
:func:`resize_frames`, the model's own resizing of normalised frames to each resolution. Only
torch, numpy and torchvision are imported here, so the model and the ROS node can use it freely.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as nnf
from torchvision.transforms.v2 import functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def short_side_for(size: int) -> int:
    """Shorter-side length a frame is resized to before the centre crop of ``size``."""
    return int(round(size * 256 / 224))


def uint8_frames_to_chw(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) uint8 RGB array or tensor -> contiguous (T, 3, H, W) uint8 tensor."""
    x = torch.as_tensor(np.ascontiguousarray(frames)) if isinstance(frames, np.ndarray) else frames
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(
            f"expected (T, H, W, 3) uint8 RGB frames, got {tuple(x.shape)} {x.dtype}"
        )
    return x.permute(0, 3, 1, 2).contiguous()


def resize_short_side(x: torch.Tensor, short: int) -> torch.Tensor:
    """Resize (..., 3, H, W) so its shorter side is ``short`` (antialiased bilinear)."""
    h, w = x.shape[-2:]
    if min(h, w) == short:
        return x
    return F.resize(x, [short], antialias=True)


def normalize_uint8(x: torch.Tensor) -> torch.Tensor:
    """uint8 (..., 3, H, W) -> float32 scaled to [0, 1] and ImageNet-normalised."""
    x = F.to_dtype(x, torch.float32, scale=True)
    return F.normalize(x, list(IMAGENET_MEAN), list(IMAGENET_STD))


def centre_crop_box(height: int, width: int, size: int) -> tuple[int, int, int]:
    """``(top, left, side)`` of the square the test transform keeps of a ``height`` x ``width``
    frame: the centre ``size`` crop after resizing the shorter side to ``size * 256 / 224``,
    in the frame's own pixels (offsets rounded as torchvision's centre crop rounds them)."""
    side = max(1, round(min(height, width) * size / short_side_for(size)))
    return int(round((height - side) / 2.0)), int(round((width - side) / 2.0)), side


def frames_to_tensor(frames: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Test transform of a clip: (T, H, W, 3) uint8 RGB -> (T, 3, size, size) float32 (crop,
    then resize: see the module docstring)."""
    x = uint8_frames_to_chw(frames)
    top, left, side = centre_crop_box(x.shape[-2], x.shape[-1], size)
    x = x[..., top:top + side, left:left + side]
    if side != size:
        x = F.resize(x, [size, size], antialias=True)
    return normalize_uint8(x)


def frame_to_tensor(rgb: np.ndarray | torch.Tensor, size: int) -> torch.Tensor:
    """Test transform of one frame: (H, W, 3) uint8 RGB -> (3, size, size) float32."""
    if rgb.ndim != 3:
        raise ValueError(f"expected one (H, W, 3) frame, got shape {tuple(rgb.shape)}")
    return frames_to_tensor(rgb[None], size)[0]


def resize_frames(frames: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize normalised ``(N, 3, S, S)`` frames to ``resolution`` (bilinear with antialiasing),
    as the model does for each of its resolutions."""
    if frames.shape[-1] == resolution and frames.shape[-2] == resolution:
        return frames
    return nnf.interpolate(
        frames, size=(resolution, resolution), mode="bilinear", align_corners=False,
        antialias=True,
    )
