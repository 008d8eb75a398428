"""FLOPs accounting: a lookup table per module and resolution.

Counts come from ``torch.utils.flop_counter.FlopCounterMode`` run once on a single frame; they are
stored in multiply-accumulates (FLOPs / 2) and reported as "GFLOPs" the way the papers do.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

if TYPE_CHECKING:
    from rsee_ros.model.rsee import RSEEModel


def count_gmacs(fn: Callable[[], Any]) -> float:
    """Multiply-accumulates (in units of 1e9) that ``fn`` performs, counted by torch."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2 / 1e9


def module_gmacs(module: nn.Module, *inputs: torch.Tensor) -> float:
    """GMACs of one forward of ``module`` on ``inputs`` (in eval mode, restored afterwards)."""
    was_training = module.training
    module.eval()
    try:
        return count_gmacs(lambda: module(*inputs))
    finally:
        module.train(was_training)


@dataclass
class FlopsTable:
    """Per-frame GMACs of each part of an RSEE model.

    ``backbone`` maps resolution to the backbone's cost on one frame at that resolution;
    ``selector`` is paid on every frame the selector looks at (its CNN at the lowest resolution
    plus one recurrent step); ``head`` is paid on every processed frame (accumulator update,
    classifier and exit gate). When the selector looks through the backbone, processing a frame
    at the lowest resolution reuses its pass: ``reused_gmacs`` of that resolution's cost is
    already paid (``None``: all of it, the selector ran the whole backbone).
    """

    backbone: dict[int, float]
    selector: float
    head: float
    selector_reuses_backbone: bool = False
    details: dict[str, float] = field(default_factory=dict)
    reused_gmacs: float | None = None

    def backbone_cost(self, resolution: int, *, reused: bool = False) -> float:
        """Cost of processing one frame at ``resolution``, less the selector's pass when it is
        reused for it."""
        full = self.backbone[int(resolution)]
        if not reused:
            return full
        return 0.0 if self.reused_gmacs is None else full - self.reused_gmacs

    def uniform_video(self, resolution: int, frames: int, *, head: bool = True) -> float:
        """Cost of the Uniform baseline: every one of ``frames`` at ``resolution``."""
        return frames * (self.backbone[int(resolution)] + (self.head if head else 0.0))

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form for checkpoints and JSON."""
        return {
            "unit": "GMAC per frame",
            "backbone": {str(r): v for r, v in self.backbone.items()},
            "selector": self.selector,
            "head": self.head,
            "selector_reuses_backbone": self.selector_reuses_backbone,
            "reused_gmacs": self.reused_gmacs,
            "details": dict(self.details),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FlopsTable:
        """Inverse of :meth:`to_dict`."""
        return cls(
            backbone={int(r): float(v) for r, v in data["backbone"].items()},
            selector=float(data["selector"]),
            head=float(data["head"]),
            selector_reuses_backbone=bool(data.get("selector_reuses_backbone", False)),
            details={k: float(v) for k, v in data.get("details", {}).items()},
            reused_gmacs=(None if data.get("reused_gmacs") is None
                          else float(data["reused_gmacs"])),
        )


def backbone_gmacs(
    name: str, resolutions: tuple[int, ...], *, blocks: int | None = None
) -> dict[int, float]:
    """GMACs of a registered backbone on one frame at each resolution (no model needed); with
    ``blocks``, of its first ``blocks`` blocks only."""
    from rsee_ros.model.backbones import plain_feature_extractor

    net = plain_feature_extractor(name)
    part = net if blocks is None else net.trunk[:blocks]
    return {r: module_gmacs(part, torch.zeros(1, 3, r, r)) for r in resolutions}


def count_model_flops(model: RSEEModel) -> FlopsTable:
    """Count every part's GMACs per frame of an RSEE model with torch's flop counter.

    Counting runs on fresh CPU copies of the parts (costs do not depend on weights), so the
    model itself is left where it is.
    """
    from rsee_ros.model.backbones import PerResolutionBackbones

    cfg = model.config
    names = cfg.backbone_names()
    if cfg.backbone_mode == "shared":
        backbone = backbone_gmacs(cfg.backbone, cfg.resolutions)
    else:
        assert isinstance(model.backbone, PerResolutionBackbones)
        backbone = {
            r: backbone_gmacs(name, (r,))[r]
            for r, name in zip(cfg.resolutions, names, strict=True)
        }
        for index, r in enumerate(cfg.resolutions):
            projection = model.backbone.projections[index]
            if isinstance(projection, nn.Linear):
                backbone[r] += module_gmacs(
                    copy.deepcopy(projection).cpu(), torch.zeros(1, projection.in_features)
                )
    low = cfg.selector_resolution
    reused_gmacs = None
    if cfg.selector_blocks is not None:
        selector_cnn = backbone_gmacs(cfg.backbone, (low,), blocks=cfg.selector_blocks)[low]
        reused_gmacs = selector_cnn
    elif cfg.selector_shares_backbone:
        selector_cnn = backbone[low]
    else:
        selector_cnn = backbone_gmacs(cfg.selector_backbone, (low,))[low]
    cpu = torch.device("cpu")
    selector = copy.deepcopy(model.selector).cpu().eval()
    sel_state = selector.initial_state(1, cpu)
    feature = torch.zeros(1, selector.rnn.input_size)
    selector_rnn = count_gmacs(lambda: selector.step(feature, sel_state))
    accumulator = copy.deepcopy(model.accumulator).cpu().eval()
    gate = copy.deepcopy(model.exit_gate).cpu().eval()
    acc_state = accumulator.initial_state(1, cpu)
    features = torch.zeros(1, model.backbone.feature_dim)

    def head_step() -> None:
        new = accumulator.update(acc_state, features, torch.ones(1))
        accumulator.classify(new)
        representation = accumulator.readout(new)
        gate(representation, representation)

    return FlopsTable(
        backbone=backbone,
        selector=selector_cnn + selector_rnn,
        head=count_gmacs(head_step),
        selector_reuses_backbone=cfg.selector_shares_backbone,
        details={"selector_cnn": selector_cnn, "selector_rnn": selector_rnn},
        reused_gmacs=reused_gmacs,
    )
