"""The parts of a streaming step as modules with plain tensor inputs and outputs.

An RSEE step on one frame is at most two calls:

* :class:`LookGraph` (learned policy only): the selector's look at the frame at the lowest
  resolution (with the accumulated representation when the selector sees it), its recurrent
  step and the action logits; also the look's backbone pass when the selector looks through
  the backbone, which the lowest resolution continues;
* :class:`ProcessGraph` for the chosen resolution: the backbone on the frame resized to it (or,
  for the lowest resolution after a look through the backbone, the rest of the look's pass),
  the accumulator update, the class logits and both exit scores (the prediction's confidence
  and the learned gate's probability); with the temporal shift, the past maps in and the
  frame's own maps out (:func:`shift_shapes`).

The graphs call the model's own code (:mod:`rsee_ros.model.step`), so the eager engine is the
model itself. :func:`resolution_model` makes the copy of a model whose resolution-specific
BatchNorm is fixed to one resolution (optionally folded into the convolutions): that is what the
fused and exported engines run, one copy per resolution.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from rsee_ros.model import step
from rsee_ros.model.backbones import MultiResolutionBackbone, SwitchableBatchNorm2d
from rsee_ros.model.gate import confidence_exit_score
from rsee_ros.model.preprocess import resize_frames
from rsee_ros.model.rsee import RSEEModel
from rsee_ros.model.temporal import ShiftInput

__all__ = ["LookGraph", "ProcessGraph", "fold_batchnorm", "resolution_model", "shift_shapes"]


def resolution_model(model: RSEEModel, index: int, *, fold: bool = False) -> RSEEModel:
    """A copy of ``model`` (eval mode) whose switchable BatchNorm layers are replaced by their
    branch for resolution ``index``; ``fold`` folds BatchNorm into the convolutions before it."""
    copied = copy.deepcopy(model).eval()

    def fix(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, SwitchableBatchNorm2d):
                setattr(module, name, child.branches[index])
            else:
                fix(child)

    fix(copied.backbone)
    if fold:
        fold_batchnorm(copied.backbone)
        if copied.selector.cnn is not None:
            fold_batchnorm(copied.selector.cnn)
    return copied


def fold_batchnorm(module: nn.Module) -> None:
    """Fold every BatchNorm2d registered right after a Conv2d into it (eval mode), in place.

    In torchvision's MobileNetV2 and ResNets a BatchNorm always follows the convolution
    registered just before it (``Sequential`` containers, ``convN``/``bnN`` pairs), which is
    what this relies on; the engines' validation against the eager model checks the result.
    """
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in module.children():
        fold_batchnorm(child)
    names = [name for name, _ in module.named_children()]
    for first, second in zip(names, names[1:]):
        conv, bn = getattr(module, first), getattr(module, second)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            setattr(module, first, fuse_conv_bn_eval(conv, bn))
            setattr(module, second, nn.Identity())


class LookGraph(nn.Module):
    """``(frame, summary, count, *selector_state) -> (action_logits, *selector_state, [pass])``.

    ``frame`` is ``(1, 3, S, S)`` at the model's input size; ``summary, count`` the accumulator
    state; the selector state is ``(h, c)`` for an LSTM selector and ``(h,)`` for a GRU. The
    look's backbone pass comes last when the selector looks through the backbone.
    """

    def __init__(self, model: RSEEModel) -> None:
        super().__init__()
        self.model = model
        self.reads_state = model.config.selector_sees_state
        self.has_pass = model.config.selector_shares_backbone

    def forward(self, frame: torch.Tensor, summary: torch.Tensor, count: torch.Tensor,
                *selector_state: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self.model
        representation = (model.accumulator.readout((summary, count)) if self.reads_state
                          else None)
        seen = step.look(model, frame, representation)
        logits, new_state = model.selector.step(seen.seen, tuple(selector_state))
        outputs = (logits, *new_state)
        return (*outputs, seen.backbone_pass) if self.has_pass else outputs


class ProcessGraph(nn.Module):
    """``(input, summary, count, *shift) -> (summary, count, logits, confidence,
    gate_probability, *shift)``.

    ``input`` is the ``(1, 3, S, S)`` frame, resized here to resolution ``index``, or with
    ``from_look`` the look's backbone pass (the lowest resolution continues it). With the
    temporal shift, ``shift`` is the past of every shifted block, already at this resolution's
    map sizes (:func:`shift_shapes`), and the outputs end with the frame's own maps there.
    """

    def __init__(self, model: RSEEModel, index: int, *, from_look: bool = False) -> None:
        super().__init__()
        self.model = model
        self.index = index
        self.from_look = from_look
        self.resolution = model.config.resolutions[index]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Backbone features of the input."""
        if self.from_look:
            return step.finish_look(self.model, x)
        return self.model.backbone(resize_frames(x, self.resolution), self.index)

    def forward(self, x: torch.Tensor, summary: torch.Tensor, count: torch.Tensor,
                *shift: torch.Tensor) -> tuple[torch.Tensor, ...]:
        model = self.model
        source = ShiftInput.of_maps(shift) if shift else None
        with model.backbone.shifting(source):
            features = self.features(x)
        folded = step.fold(model.accumulator, (summary, count), features,
                           torch.ones(x.shape[0], device=x.device))
        gate = torch.sigmoid(model.exit_gate(folded.current, folded.previous))
        new_summary, new_count = folded.state
        presents = tuple(source.present_maps()) if source is not None else ()
        return (new_summary, new_count, folded.logits, confidence_exit_score(folded.logits),
                gate, *presents)


def shift_shapes(model: RSEEModel, index: int) -> list[tuple[int, ...]]:
    """Shapes ``(1, fold, h, w)`` of the temporal shift's maps of one frame at resolution
    ``index``, per shifted block (empty without the shift); the processing graphs' ``shift``."""
    if not model.backbone.shifts:
        return []
    size = model.config.max_resolution
    source = ShiftInput()
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), model.backbone.shifting(source):
            model.frame_features(torch.zeros(1, 3, size, size, device=model.device), index)
    finally:
        model.train(was_training)
    return [tuple(m.shape) for m in source.present_maps()]


def uses_switchable_batchnorm(model: RSEEModel) -> bool:
    """True when the backbone is shared across resolutions with per-resolution BatchNorm."""
    return isinstance(model.backbone, MultiResolutionBackbone)
