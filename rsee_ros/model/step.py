"""One time step of RSEE: the plan that inference and training both follow.

For the frame of each video in a batch, :meth:`RSEEModel.advance` (inference) and
:meth:`RSEEModel.forward_train` (training) run the same steps, from this module:

1. **look** (:func:`look`) at the frames that are *looked at* (``looked_at``: not inside a skip,
   not after the exit): the selector's view of them at the lowest resolution;
2. **decide**, the one part that differs: inference takes the masked argmax (or a baseline
   policy's action), training a straight-through Gumbel-softmax sample;
3. **skip bookkeeping** (:func:`next_skip_left`);
4. **process** (:func:`process`) the chosen resolution; the lowest one continues the look's
   backbone pass instead of starting again, by the one reuse rule (:func:`reuses_look`), which
   also prices the actions (:func:`action_costs`);
5. **accumulate** (:func:`fold`): fold the features in, read the prediction; the exit score
   comes from what :func:`fold` returns (:func:`rsee_ros.model.gate.exit_score`).

The callers differ in which rows they compute (inference: only the looked-at ones; training:
every row, masked afterwards, so BatchNorm sees the whole batch) and in what they record.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from rsee_ros.model.accumulator import AccumulatorState, FeatureAccumulator
from rsee_ros.model.backbones import Backbone, MultiResolutionBackbone, backbone_spec
from rsee_ros.model.config import RSEEConfig
from rsee_ros.model.preprocess import resize_frames
from rsee_ros.model.temporal import ShiftCache

if TYPE_CHECKING:
    from rsee_ros.model.rsee import RSEEModel


@dataclass
class Look:
    """What the selector's look at some frames produced.

    ``seen`` ``(N, D)``: the selector's input. ``backbone_pass``: when the selector looks
    through the backbone, its work on the frames at the lowest resolution, which processing them
    at that resolution continues (:func:`finish_look`): the feature map after the backbone's
    first ``selector_blocks`` blocks, or the finished features when the look ran the whole
    backbone; ``None`` when the selector has a CNN of its own.
    """

    seen: torch.Tensor
    backbone_pass: torch.Tensor | None


def look_size(config: RSEEConfig, backbone: Backbone) -> int:
    """Size of what the selector sees of a frame (``Look.seen``), the input of its RNN."""
    if config.selector_blocks is not None:
        assert isinstance(backbone, MultiResolutionBackbone)
        size = backbone.net.channels_after(config.selector_blocks)
    elif config.selector_shares_backbone:
        size = backbone.feature_dim
    else:
        size = backbone_spec(config.selector_backbone).feature_dim
    if config.selector_sees_state:
        size += FeatureAccumulator.state_size(
            config.accumulator, backbone.feature_dim, config.accumulator_hidden,
            config.feature_grid)
    return size


def look(model: RSEEModel, frames: torch.Tensor, representation: torch.Tensor | None) -> Look:
    """The selector's look at ``(N, 3, S, S)`` frames.

    The selector sees the frames at the lowest resolution (through its own CNN, the whole
    backbone, or the backbone's first ``selector_blocks``), plus the accumulated
    ``representation`` (detached) when ``selector_sees_state``; otherwise it is not read and
    may be ``None``.
    """
    cfg = model.config
    low = resize_frames(frames, cfg.selector_resolution)
    low_index = cfg.num_resolutions - 1
    backbone_pass: torch.Tensor | None
    if cfg.selector_blocks is not None:
        backbone_pass = model.backbone.partial(low, low_index, cfg.selector_blocks)
        seen = backbone_pass.mean(dim=(2, 3))
    elif cfg.selector_shares_backbone:
        backbone_pass = seen = model.backbone(low, low_index)
    else:
        backbone_pass, seen = None, model.selector.features(low)
    if cfg.selector_sees_state:
        assert representation is not None, "selector_sees_state needs the representation"
        seen = torch.cat([seen, representation.detach()], 1)
    return Look(seen=seen, backbone_pass=backbone_pass)


def finish_look(model: RSEEModel, backbone_pass: torch.Tensor) -> torch.Tensor:
    """Lowest-resolution backbone features ``(N, D)`` from the look's backbone pass."""
    cfg = model.config
    if cfg.selector_blocks is None:
        return backbone_pass  # the look ran the whole backbone
    return model.backbone.finish(backbone_pass, cfg.num_resolutions - 1, cfg.selector_blocks)


def reuses_look(config: RSEEConfig, index: int, has_backbone_pass: bool) -> bool:
    """The reuse rule: resolution ``index`` continues the look's backbone pass (instead of
    running the backbone on the frame again) when it is the lowest resolution and the look
    made a backbone pass (``selector_shares_backbone`` and the selector looked)."""
    return has_backbone_pass and index == config.num_resolutions - 1


def spread_rows(values: torch.Tensor | None, rows: torch.Tensor, batch: int
                ) -> torch.Tensor | None:
    """``values`` of the ``rows`` of a batch of ``batch`` as a batch-sized tensor (zeros in the
    other rows; ``values`` itself when every row is there)."""
    if values is None or rows.numel() == batch:
        return values
    spread = values.new_zeros(batch, *values.shape[1:])
    spread[rows] = values
    return spread


def next_skip_left(
    skip_left: torch.Tensor,
    looked_at: torch.Tensor,
    action: torch.Tensor,
    skip_steps: torch.Tensor,
    num_resolutions: int,
) -> torch.Tensor:
    """Skip bookkeeping: frames still to skip after this one. A looked-at frame whose action is
    the skip of ``n`` frames starts a skip over the next ``n - 1``; a frame inside a skip counts
    it down."""
    is_skip = looked_at & (action >= num_resolutions)
    skip_len = skip_steps[(action - num_resolutions).clamp(0, len(skip_steps) - 1)]
    return torch.where(
        looked_at, torch.where(is_skip, skip_len - 1, 0), (skip_left - 1).clamp_min(0)
    )


def process(
    model: RSEEModel,
    frames: torch.Tensor,
    action: torch.Tensor,
    looked_at: torch.Tensor,
    backbone_pass: torch.Tensor | None,
    weights: torch.Tensor | None = None,
    *,
    every_row: bool = False,
    shift_cache: ShiftCache | None = None,
) -> torch.Tensor:
    """Backbone features ``(B, D)`` of ``(B, 3, S, S)`` frames at their chosen resolutions
    (zeros where no resolution was chosen).

    ``action`` ``(B,)``: the chosen action of each looked-at row; ``backbone_pass``: the look's,
    batch-aligned (or ``None``). ``weights`` ``(B, A)``: the straight-through decision the
    features are scaled by (training); ``None``: hard decisions (inference). ``every_row`` runs
    every resolution on every row and mixes them by ``weights`` (AR-Net's exact estimator).
    ``shift_cache``: the temporal shift's past of every row, read by every pass and, once all
    have read it, given the rows' own maps at their chosen resolution.
    """
    batch = frames.shape[0]
    features = torch.zeros(batch, model.backbone.feature_dim, device=frames.device)
    writes: list[tuple[torch.Tensor, int, list[torch.Tensor]]] = []
    for index in range(model.config.num_resolutions):
        chosen = (action == index) & looked_at
        rows = (torch.arange(batch, device=frames.device) if every_row
                else chosen.nonzero().squeeze(1))
        if not rows.numel():
            continue
        source = shift_cache.read(rows) if shift_cache is not None else None
        with model.backbone.shifting(source):
            if reuses_look(model.config, index, backbone_pass is not None):
                assert backbone_pass is not None
                part = finish_look(model, backbone_pass[rows])
            else:
                part = model.frame_features(frames[rows], index)
        if source is not None:
            kept = chosen[rows].nonzero().squeeze(1)
            if kept.numel():
                writes.append((rows[kept], index, [m[kept] for m in source.present_maps()]))
        if weights is None:
            features[rows] = part
        else:
            features = features.index_add(0, rows, part * weights[rows, index].unsqueeze(1))
    for rows, index, presents in writes:
        assert shift_cache is not None
        shift_cache.write(rows, index, presents)
    return features


def action_costs(
    model: RSEEModel, *, looks_through_backbone: bool, dtype: torch.dtype, device: torch.device
) -> torch.Tensor:
    """GMACs ``(A,)`` of each action beyond the look: a resolution costs its backbone pass
    (less the look's, by the reuse rule) and the head; a skip costs nothing."""
    table, cfg = model.flops, model.config
    return torch.tensor(
        [table.backbone_cost(r, reused=reuses_look(cfg, i, looks_through_backbone)) + table.head
         for i, r in enumerate(cfg.resolutions)] + [0.0] * len(cfg.skip_steps),
        dtype=dtype, device=device,
    )


@dataclass
class Folded:
    """The accumulator after folding one step in: its ``state``, the prediction ``logits``, and
    the representation after (``current``) and before (``previous``) the step."""

    state: AccumulatorState
    logits: torch.Tensor
    current: torch.Tensor
    previous: torch.Tensor


def fold(
    accumulator: FeatureAccumulator,
    state: AccumulatorState,
    features: torch.Tensor,
    weight: torch.Tensor,
) -> Folded:
    """Fold one step's ``features`` in with a per-row ``weight`` (1: processed, 0: not,
    fractional: straight-through)."""
    previous = accumulator.readout(state)
    new = accumulator.update(state, features, weight)
    return Folded(state=new, logits=accumulator.classify(new),
                  current=accumulator.readout(new), previous=previous)
