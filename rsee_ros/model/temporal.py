"""Online temporal shift (TSM's uni-directional form) inside the backbone.

At each shifted block, the first ``fold`` channels of the residual branch's input are replaced by
the same channels of the *previous processed frame* of the same video; the identity path keeps
the frame's own channels (TSM's residual shift). The shift adds no multiply-accumulates: it moves
memory, so the FLOPs table is unchanged by it.

Where the past comes from is set on the backbone for each call (:class:`ShiftInput`):

* nothing (``None``): a video's first frame, or a frame on its own: the past is zeros;
* ``clip_steps=T``: the rows are ``B`` whole clips of ``T`` frames flattened, all processed at
  one resolution (warm-up, Uniform): frame ``t`` takes frame ``t - 1``'s channels;
* ``past``: per shifted block the past maps of the rows (a streaming step): resampled to the
  block's map size when the previous processed frame had another resolution.

After a call the :class:`ShiftInput` holds the frame's own channels (``presents``), which the
caller keeps in a :class:`ShiftCache` for the video's next processed frame. Skipped frames and
frames after the exit write nothing, so the cache always holds the last processed frame's maps;
a new window starts with an empty cache (zeros).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual
from torchvision.models.resnet import BasicBlock, Bottleneck

__all__ = ["ShiftCache", "ShiftInput", "TemporalShift", "install_shifts", "resample",
           "shiftable_blocks"]


def resample(past: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """``past`` ``(N, c, h, w)`` at spatial ``size`` (bilinear; unchanged when it already is)."""
    if tuple(past.shape[-2:]) == tuple(size):
        return past
    return F.interpolate(past, size=tuple(size), mode="bilinear", align_corners=False)


@dataclass
class ShiftInput:
    """Where a backbone call's shifted channels come from (see the module docstring), and
    where the call leaves its own: ``presents[k]`` is the frame's channels at shifted block
    ``k``, for the caller to keep.

    ``past``: one entry per shifted block, a list of ``(positions, maps)`` groups: the rows at
    ``positions`` (of the call's rows; ``None``: all of them) take ``maps`` (resampled); rows in
    no group, and every row when neither ``past`` nor ``clip_steps`` is given, take zeros.
    """

    clip_steps: int | None = None
    past: list[list[tuple[torch.Tensor | None, torch.Tensor]]] | None = None
    presents: dict[int, torch.Tensor] = field(default_factory=dict)

    @classmethod
    def of_maps(cls, maps: Sequence[torch.Tensor]) -> ShiftInput:
        """Every row's past is ``maps`` (one per shifted block; a batch-1 streaming step)."""
        return cls(past=[[(None, m)] for m in maps])

    def present_maps(self) -> list[torch.Tensor]:
        """The call's own channels at every shifted block, in order."""
        return [self.presents[k] for k in range(len(self.presents))]


class TemporalShift(nn.Module):
    """A residual branch whose input's first ``fold`` channels come from the past frame."""

    def __init__(self, branch: nn.Module, fold: int) -> None:
        super().__init__()
        self.branch = branch
        self.fold = fold
        self.block_index = -1  # the position in the backbone's list of shifted blocks
        self.source: ShiftInput | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fold = self.fold
        own = x[:, :fold]
        if self.source is not None:
            self.source.presents[self.block_index] = own
        return self.branch(torch.cat([self._past(own), x[:, fold:]], 1))

    def _past(self, own: torch.Tensor) -> torch.Tensor:
        source = self.source
        if source is None or (source.clip_steps is None and source.past is None):
            return torch.zeros_like(own)
        if source.clip_steps is not None:
            clips = own.reshape(-1, source.clip_steps, *own.shape[1:])
            shifted = torch.cat([torch.zeros_like(clips[:, :1]), clips[:, :-1]], 1)
            return shifted.reshape(own.shape)
        assert source.past is not None
        past = torch.zeros_like(own)
        for positions, maps in source.past[self.block_index]:
            if positions is None:  # every row, one source
                return resample(maps, own.shape[-2:]).to(own.dtype)
            past = past.index_put((positions,), resample(maps, own.shape[-2:]).to(own.dtype))
        return past


def _residual_branch(block: nn.Module) -> str | None:
    """Attribute name of a block's residual branch input module, or ``None`` when the block has
    no identity path to keep the frame's own channels."""
    if isinstance(block, InvertedResidual):
        return "conv" if block.use_res_connect else None
    if isinstance(block, BasicBlock | Bottleneck):
        return "conv1"
    return None


def shiftable_blocks(trunk: nn.Sequential) -> list[tuple[int, int, nn.Module]]:
    """The trunk's residual blocks as ``(number, trunk_index, block)``.

    Blocks are numbered over the trunk with ResNet's stages (plain ``nn.Sequential``) opened:
    for MobileNetV2 the number is the trunk index (as ``selector_blocks`` counts), for a ResNet
    the stem's four modules are 0-3 and its blocks follow in order. ``trunk_index`` is the
    top-level position holding the block.
    """
    found: list[tuple[int, int, nn.Module]] = []
    number = 0
    for trunk_index, module in enumerate(trunk):
        children = list(module) if type(module) is nn.Sequential else [module]
        for child in children:
            if _residual_branch(child) is not None:
                found.append((number, trunk_index, child))
            number += 1
    return found


def install_shifts(trunk: nn.Sequential, blocks: Sequence[int] | None, fraction: float,
                   first_block: int = 0) -> list[TemporalShift]:
    """Wrap the residual branches of the trunk's ``blocks`` (numbers as
    :func:`shiftable_blocks` gives them; ``None``: every residual block at or after trunk index
    ``first_block``) in :class:`TemporalShift` with ``fraction`` of the channels; returns the
    shifts in order. ``ValueError`` names a block that cannot be shifted."""
    available = {number: (trunk_index, block)
                 for number, trunk_index, block in shiftable_blocks(trunk)}
    wanted = (sorted(n for n, (at, _) in available.items() if at >= first_block)
              if blocks is None else list(blocks))
    shifts: list[TemporalShift] = []
    for number in wanted:
        if number not in available:
            raise ValueError(
                f"temporal_shift_blocks: block {number} has no residual path to shift; the "
                f"residual blocks are {sorted(available)}")
        trunk_index, block = available[number]
        if trunk_index < first_block:
            raise ValueError(
                f"temporal_shift_blocks: block {number} is inside the selector's look (the "
                f"first {first_block} blocks), which sees single frames")
        name = _residual_branch(block)
        assert name is not None
        branch = getattr(block, name)
        shift = TemporalShift(branch, max(1, int(round(_in_channels(branch) * fraction))))
        shift.block_index = len(shifts)
        setattr(block, name, shift)
        shifts.append(shift)
    if not shifts:
        raise ValueError("temporal_shift is set but no block is shifted: the selector's look "
                         f"covers every residual block (first {first_block} blocks)")
    return shifts


def _in_channels(module: nn.Module) -> int:
    first = next(m for m in module.modules() if isinstance(m, nn.Conv2d))
    return first.in_channels


@dataclass
class ShiftCache:
    """The last processed frame's shifted channels of ``B`` videos, per shifted block.

    ``maps[k][r]`` ``(B, fold_k, h, w)`` holds block ``k``'s channels of the rows whose last
    processed frame had resolution index ``r`` (``source``; -1: none yet, the past is zeros).
    """

    source: torch.Tensor
    maps: list[dict[int, torch.Tensor]] = field(default_factory=list)

    @classmethod
    def empty(cls, batch: int, blocks: int, device: torch.device) -> ShiftCache:
        """The cache of ``batch`` new videos (every past is zeros)."""
        return cls(source=torch.full((batch,), -1, dtype=torch.long, device=device),
                   maps=[{} for _ in range(blocks)])

    def read(self, rows: torch.Tensor) -> ShiftInput:
        """The past of ``rows`` (indices into the batch) for a backbone call on them."""
        sources = self.source[rows]
        groups: list[list[tuple[torch.Tensor | None, torch.Tensor]]] = [[] for _ in self.maps]
        present = sources.unique().tolist()
        for resolution_index in present:
            if resolution_index < 0:
                continue
            chosen = (sources == resolution_index).nonzero().squeeze(1)
            positions = None if len(present) == 1 else chosen  # None: every row
            for block, stored in enumerate(self.maps):
                groups[block].append((positions, stored[resolution_index][rows[chosen]]))
        return ShiftInput(past=groups)

    def write(self, rows: torch.Tensor, resolution_index: int,
              presents: Sequence[torch.Tensor]) -> None:
        """Keep the ``presents`` of ``rows`` (their frame at ``resolution_index`` was processed);
        out of place, so training can backpropagate through the past."""
        batch = self.source.shape[0]
        for stored, present in zip(self.maps, presents, strict=True):
            old = stored.get(resolution_index)
            if old is None:
                old = present.new_zeros(batch, *present.shape[1:])
            stored[resolution_index] = old.index_copy(0, rows, present.to(old.dtype))
        self.source = self.source.index_fill(0, rows, resolution_index)
