"""The classifier's temperature: calibrated confidences from a model's probabilities.

``rsee calibrate`` (and ``rsee train`` with ``data.val_fraction``) stores one scalar ``T`` as
``metadata["calibration"]["temperature"]``; a reported distribution is then
``softmax(log(p) / T)`` of the model's probabilities ``p``, which is ``softmax(logits / T)``: the
same ranking, the confidences made to match the accuracy on the validation videos. Imports only
torch, so the pipeline can use it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch

__all__ = ["apply_temperature", "metadata_temperature"]


def metadata_temperature(metadata: Mapping[str, Any] | None) -> float | None:
    """The temperature a checkpoint's (or an export's) ``metadata`` holds, or None (not
    calibrated, or not a positive finite number)."""
    calibration = (metadata or {}).get("calibration")
    if not isinstance(calibration, Mapping):
        return None
    value = calibration.get("temperature")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value > 0 else None


def apply_temperature(probabilities: torch.Tensor, temperature: float | None) -> torch.Tensor:
    """``softmax(log(p) / T)`` over the last dimension of ``probabilities`` (``p`` itself when
    ``temperature`` is None or 1)."""
    if temperature is None or temperature == 1.0:
        return probabilities
    tiny = torch.finfo(probabilities.dtype).tiny
    return torch.softmax(torch.log(probabilities.clamp_min(tiny)) / temperature, -1)
