"""The test after each training stage: top-1 and GFLOPs per video on the test subset."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from rsee_ros.model import NEVER_EXIT, InferenceSettings, RSEEModel

__all__ = ["quick_eval"]


@torch.no_grad()
def quick_eval(model: RSEEModel, loader: Iterable[Any], threshold: float, *,
               uniform: bool = False) -> dict[str, Any]:
    """Top-1 at the exit ``threshold`` and without exits, and GFLOPs at the threshold, of the
    model's own policy over ``loader``'s ``(frames, labels, index)`` batches; ``uniform``: of
    Uniform instead (every frame at the highest resolution, no exit: what warm-up trains,
    before there is a selector to speak of), with ``method`` and ``resolution``."""
    model.eval()
    device = model.device
    settings = InferenceSettings(policy="uniform", exit_threshold=NEVER_EXIT) if uniform else None
    correct = correct_full = seen = 0
    gmacs = 0.0
    for frames, labels, _ in loader:
        frames, labels = frames.to(device), labels.to(device)
        if uniform:
            out = full = model.infer_batch(frames, settings)
        else:
            out = model.infer_batch(frames, exit_threshold=threshold)
            full = model.infer_batch(frames, exit_threshold=NEVER_EXIT)
        correct += int((out.probabilities.argmax(-1) == labels).sum())
        correct_full += int((full.probabilities.argmax(-1) == labels).sum())
        gmacs += float(out.gmacs.sum())
        seen += len(labels)
    seen = max(seen, 1)
    top1, cost = round(100 * correct / seen, 2), round(gmacs / seen, 4)
    if uniform:
        return {"method": "uniform", "resolution": model.config.max_resolution, "top1": top1,
                "gflops_per_video": cost}
    return {"top1": top1, "top1_no_exit": round(100 * correct_full / seen, 2),
            "gflops_per_video": cost, "threshold": threshold}
