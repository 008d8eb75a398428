"""The factory of RSEE models: the parts an :class:`RSEEConfig` describes, assembled.

Checkpoints are rebuilt with :func:`build_rsee` too, so the parts (and with them the state-dict
keys) are the same however a model comes about.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from rsee_ros.model.accumulator import FeatureAccumulator
from rsee_ros.model.backbones import (
    Backbone,
    MultiResolutionBackbone,
    PerResolutionBackbones,
    plain_feature_extractor,
)
from rsee_ros.model.config import RSEEConfig
from rsee_ros.model.gate import LearnedExitGate
from rsee_ros.model.rsee import RSEEModel
from rsee_ros.model.selector import ResolutionSelector
from rsee_ros.model.step import look_size


def build_backbone(config: RSEEConfig) -> Backbone:
    """The backbone: shared with resolution-specific BatchNorm, or one network per resolution."""
    names = config.backbone_names()
    if config.backbone_mode == "shared":
        return MultiResolutionBackbone(
            names[0], config.num_resolutions, temporal_shift=config.temporal_shift,
            shift_blocks=config.temporal_shift_blocks,
            first_shift_block=config.first_shiftable_block, grid=config.feature_grid)
    return PerResolutionBackbones(names)


def build_selector(config: RSEEConfig, backbone: Backbone) -> ResolutionSelector:
    """The resolution selector; it has a CNN of its own unless it looks through ``backbone``."""
    size = look_size(config, backbone)  # checks selector_blocks against the backbone first
    cnn = None if config.selector_shares_backbone else plain_feature_extractor(
        config.selector_backbone)
    return ResolutionSelector(
        cnn=cnn, feature_dim=size, hidden_size=config.selector_hidden,
        num_actions=config.num_actions, rnn=config.selector_rnn,
    )


def build_rsee(config: RSEEConfig, *, pretrained: bool | str = False) -> RSEEModel:
    """Build an RSEE model from its configuration (parts in a fixed order: backbone, selector,
    accumulator, exit gate, so a seeded build always draws the same initial weights).

    ``pretrained=True`` loads the ImageNet MobileNetV2 weights into every MobileNetV2 part
    (backbone and selector CNN); a path loads a torchvision state dict into the backbone instead
    (e.g. ResNet weights you have).
    """
    backbone = build_backbone(config)
    selector = build_selector(config, backbone)
    accumulator = FeatureAccumulator(
        kind=config.accumulator, feature_dim=backbone.feature_dim,
        hidden_size=config.accumulator_hidden, num_classes=config.num_classes,
        dropout=config.dropout, grid=config.feature_grid,
    )
    exit_gate = LearnedExitGate(accumulator.state_dim, config.gate_hidden)
    model = RSEEModel(config, backbone=backbone, selector=selector, accumulator=accumulator,
                      exit_gate=exit_gate)
    if pretrained is not False:
        load_pretrained(model, pretrained)
    return model


def load_pretrained(model: RSEEModel, pretrained: bool | str) -> None:
    """Initialise ``model`` from ImageNet weights (``True``) or a torchvision state dict file."""
    from rsee_ros.model.pretrained import (
        default_mobilenet_v2_weights,
        load_state_dict_file,
        torchvision_to_trunk,
    )

    config = model.config
    names = config.backbone_names()
    if pretrained is True:
        if "mobilenet_v2" not in (*names, config.selector_backbone):
            return
        trunk = torchvision_to_trunk(
            "mobilenet_v2", load_state_dict_file(default_mobilenet_v2_weights()))
    else:
        trunk = torchvision_to_trunk(names[0], load_state_dict_file(pretrained))
    _load_backbone_weights(model.backbone, names, trunk)
    if (
        pretrained is True
        and model.selector.cnn is not None
        and config.selector_backbone == "mobilenet_v2"
    ):
        model.selector.cnn.load_state_dict(trunk, strict=False)


def _load_backbone_weights(
    backbone: Backbone, names: Sequence[str], trunk: dict[str, torch.Tensor]
) -> None:
    if isinstance(backbone, MultiResolutionBackbone):
        backbone.load_plain_state_dict(trunk)
        return
    wanted = names[0] if len(set(names)) == 1 else "mobilenet_v2"
    for name, net in zip(names, backbone.nets, strict=True):
        if name == wanted:
            net.load_state_dict(trunk, strict=False)
