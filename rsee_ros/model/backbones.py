"""2D CNN backbones from torchvision, with resolution-specific BatchNorm.

A registry maps names to factories; each factory returns a feature extractor mapping
``(N, 3, H, W)`` to pooled ``(N, D)`` features. :class:`SwitchableBatchNorm2d` keeps one set of
BatchNorm statistics and affine parameters per resolution while all convolutions are shared,
which is RSEE's single-backbone design.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice

import torch
from torch import nn
from torchvision import models

from rsee_ros.model.config import BACKBONE_NAMES
from rsee_ros.model.temporal import ShiftInput, TemporalShift, install_shifts


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone: its factory and the size of its pooled features."""

    name: str
    factory: Callable[[], nn.Module]
    feature_dim: int
    pretrained_available: bool


class _PooledFeatures(nn.Module):
    """Convolutional trunk followed by global average pooling and flattening."""

    def __init__(self, trunk: nn.Module) -> None:
        super().__init__()
        self.trunk = trunk
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(x, 0)

    def feature_map(self, x: torch.Tensor) -> torch.Tensor:
        """The trunk's last feature map ``(N, D, h, w)`` before pooling."""
        return self.trunk(x)

    def partial(self, x: torch.Tensor, blocks: int) -> torch.Tensor:
        """The feature map after the trunk's first ``blocks`` blocks."""
        # islice, not trunk[:blocks]: slicing builds a new Sequential on every call (hot path)
        for block in islice(self.trunk, blocks):
            x = block(x)
        return x

    def finish(self, partial: torch.Tensor, blocks: int) -> torch.Tensor:
        """Pooled features from a map that went through the first ``blocks`` blocks."""
        for block in islice(self.trunk, blocks, None):
            partial = block(partial)
        return torch.flatten(self.pool(partial), 1)

    def channels_after(self, blocks: int) -> int:
        """Channels of the map after the first ``blocks`` blocks (the last convolution's)."""
        if not 1 <= blocks < len(self.trunk):
            raise ValueError(f"blocks must be between 1 and {len(self.trunk) - 1}, got {blocks}")
        convs = [m for m in self.trunk[:blocks].modules() if isinstance(m, nn.Conv2d)]
        return convs[-1].out_channels


class GridPool(nn.Module):
    """Average pooling of ``(N, C, h, w)`` maps to ``(N, C, g, g)``, with the bins of
    ``nn.AdaptiveAvgPool2d(g)``, written as two small matrix products.

    Hand-written because the frozen ``torch-fused`` engine's MKLDNN kernels refuse adaptive
    pooling whenever ``h`` or ``w`` is not a multiple of ``g`` (the lowest resolutions' 2x2 maps
    into a 3x3 grid), and products export to ONNX as plain ``MatMul``; the tests compare it
    with ``nn.AdaptiveAvgPool2d``.
    """

    def __init__(self, grid: int) -> None:
        super().__init__()
        self.grid = grid
        self._bins: dict[tuple[int, torch.dtype, torch.device], torch.Tensor] = {}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.bins(x.shape[-2], x)
        columns = self.bins(x.shape[-1], x)
        return torch.matmul(torch.matmul(rows, x), columns.transpose(0, 1))

    def bins(self, size: int, like: torch.Tensor) -> torch.Tensor:
        """``(g, size)``: row ``i`` averages adaptive pooling's bin ``i`` (made once per size,
        dtype and device: the streaming step calls it on every frame)."""
        key = (size, like.dtype, like.device)
        if key in self._bins:
            return self._bins[key]
        g = self.grid
        weights = torch.zeros(g, size, dtype=like.dtype, device=like.device)
        for i in range(g):
            start, end = (i * size) // g, -(-((i + 1) * size) // g)
            weights[i, start:end] = 1.0 / (end - start)
        if type(like) is torch.Tensor:  # not while the ONNX exporter traces with fake tensors
            self._bins[key] = weights
        return weights


def _mobilenet_v2() -> nn.Module:
    return _PooledFeatures(models.mobilenet_v2(weights=None).features)


def _resnet(builder: Callable[..., models.ResNet]) -> Callable[[], nn.Module]:
    def factory() -> nn.Module:
        net = builder(weights=None)
        trunk = nn.Sequential(
            net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3,
            net.layer4,
        )
        return _PooledFeatures(trunk)

    return factory


BACKBONES: dict[str, BackboneSpec] = {
    "mobilenet_v2": BackboneSpec("mobilenet_v2", _mobilenet_v2, 1280, True),
    "resnet18": BackboneSpec("resnet18", _resnet(models.resnet18), 512, False),
    "resnet34": BackboneSpec("resnet34", _resnet(models.resnet34), 512, False),
    "resnet50": BackboneSpec("resnet50", _resnet(models.resnet50), 2048, False),
}
assert tuple(BACKBONES) == BACKBONE_NAMES, "register a backbone in both places"


def backbone_spec(name: str) -> BackboneSpec:
    """Look up a registered backbone, with a clear error for unknown names."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"unknown backbone {name!r}; choose from {sorted(BACKBONES)}") from None


class SwitchableBatchNorm2d(nn.Module):
    """BatchNorm2d with one independent branch per resolution; ``active`` picks the branch."""

    def __init__(self, branches: list[nn.BatchNorm2d]) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.active = 0

    @classmethod
    def from_batchnorm(cls, bn: nn.BatchNorm2d, num_branches: int) -> SwitchableBatchNorm2d:
        """Start every branch as a copy of ``bn`` (e.g. its ImageNet statistics)."""
        return cls([copy.deepcopy(bn) for _ in range(num_branches)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.branches[self.active](x)


def _replace_batchnorms(module: nn.Module, num_branches: int) -> list[SwitchableBatchNorm2d]:
    switches: list[SwitchableBatchNorm2d] = []
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            switch = SwitchableBatchNorm2d.from_batchnorm(child, num_branches)
            setattr(module, name, switch)
            switches.append(switch)
        else:
            switches.extend(_replace_batchnorms(child, num_branches))
    return switches


class MultiResolutionBackbone(nn.Module):
    """One CNN shared by all resolutions, with resolution-specific BatchNorm branches; with
    ``temporal_shift`` > 0, the online temporal shift at ``shift_blocks`` (``None``: every
    residual block from trunk index ``first_shift_block`` on; :mod:`rsee_ros.model.temporal`);
    ``grid`` > 1 pools each frame to a ``grid x grid`` map instead of one vector."""

    def __init__(self, name: str, num_resolutions: int, *, temporal_shift: float = 0.0,
                 shift_blocks: Sequence[int] | None = None, first_shift_block: int = 0,
                 grid: int = 1) -> None:
        super().__init__()
        spec = backbone_spec(name)
        self.name = name
        self.feature_dim = spec.feature_dim * grid * grid
        self.num_resolutions = num_resolutions
        self.net = spec.factory()
        if grid > 1:  # a grid x grid map per frame, flattened channel-major (spatial accumulator)
            self.net.pool = GridPool(grid)
        self._switches = _replace_batchnorms(self.net, num_resolutions)
        self.shifts: list[TemporalShift] = (
            install_shifts(self.net.trunk, shift_blocks, temporal_shift, first_shift_block)
            if temporal_shift else [])

    @contextmanager
    def shifting(self, source: ShiftInput | None) -> Iterator[None]:
        """Calls inside take their shifted channels from ``source`` (``None``: zeros) and leave
        their own in ``source.presents``."""
        for shift in self.shifts:
            shift.source = source
        try:
            yield
        finally:
            for shift in self.shifts:
                shift.source = None

    def forward(self, x: torch.Tensor, resolution_index: int) -> torch.Tensor:
        """Features ``(N, D)`` of frames already resized to resolution ``resolution_index``."""
        self._select(resolution_index)
        return self.net(x)

    def feature_map(self, x: torch.Tensor, resolution_index: int) -> torch.Tensor:
        """Unpooled feature map ``(N, D, h, w)`` (for feature-map distillation)."""
        self._select(resolution_index)
        return self.net.feature_map(x)

    def partial(self, x: torch.Tensor, resolution_index: int, blocks: int) -> torch.Tensor:
        """Feature map after the first ``blocks`` blocks (the shared selector's cheap look)."""
        self._select(resolution_index)
        return self.net.partial(x, blocks)

    def finish(self, partial: torch.Tensor, resolution_index: int, blocks: int) -> torch.Tensor:
        """Pooled features ``(N, D)``, continuing a :meth:`partial` map through the rest."""
        self._select(resolution_index)
        return self.net.finish(partial, blocks)

    def _select(self, resolution_index: int) -> None:
        if not 0 <= resolution_index < self.num_resolutions:
            raise IndexError(f"resolution index {resolution_index} out of range")
        for switch in self._switches:
            switch.active = resolution_index

    def load_plain_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load weights of the plain (single-BatchNorm) network into every branch."""
        own = self.net.state_dict()
        mapped: dict[str, torch.Tensor] = {}
        for key in own:
            parts = key.split(".")
            if "branches" in parts:
                at = parts.index("branches")
                plain_key = ".".join(parts[:at] + parts[at + 2 :])
            else:
                plain_key = key
            # a temporal shift wraps a residual branch: the plain network has no ".branch"
            plain_key = ".".join(p for p in plain_key.split(".") if p != "branch")
            if plain_key not in state:
                raise KeyError(f"pretrained weights lack {plain_key!r}")
            mapped[key] = state[plain_key]
        self.net.load_state_dict(mapped)


class PerResolutionBackbones(nn.Module):
    """AR-Net's variant: an independent backbone per resolution, projected to a common size."""

    def __init__(self, names: tuple[str, ...]) -> None:
        super().__init__()
        specs = [backbone_spec(name) for name in names]
        self.names = names
        self.num_resolutions = len(names)
        self.feature_dim = specs[0].feature_dim
        self.nets = nn.ModuleList(spec.factory() for spec in specs)
        self.projections = nn.ModuleList(
            nn.Identity() if spec.feature_dim == self.feature_dim
            else nn.Linear(spec.feature_dim, self.feature_dim)
            for spec in specs
        )
        self.shifts: list[TemporalShift] = []  # no temporal shift across separate networks

    @contextmanager
    def shifting(self, source: ShiftInput | None) -> Iterator[None]:
        """No shifted blocks: calls are unaffected (the interface of the shared backbone)."""
        yield

    def forward(self, x: torch.Tensor, resolution_index: int) -> torch.Tensor:
        """Features ``(N, D)`` from the backbone assigned to ``resolution_index``."""
        return self.projections[resolution_index](self.nets[resolution_index](x))

    def feature_map(self, x: torch.Tensor, resolution_index: int) -> torch.Tensor:
        """Unpooled feature map of the backbone assigned to ``resolution_index``."""
        return self.nets[resolution_index].feature_map(x)


Backbone = MultiResolutionBackbone | PerResolutionBackbones
"""The backbones an RSEE model can have: shared with switchable BatchNorm, or one per resolution."""


def plain_feature_extractor(name: str) -> nn.Module:
    """A single-resolution pooled feature extractor (used by the selector)."""
    return backbone_spec(name).factory()
