"""The RSEE model: resolution selector, backbone, accumulator and exit gate.

Inference advances a batch of videos one time step at a time with :meth:`RSEEModel.advance`;
the streaming API (:class:`rsee_ros.model.streaming.StreamingSession`) calls it with a batch of
one, and :meth:`RSEEModel.infer_batch` calls it for each of the T steps, so both make the same
decisions by construction.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import nn

from rsee_ros.model.accumulator import FeatureAccumulator
from rsee_ros.model.backbones import (
    MultiResolutionBackbone,
    PerResolutionBackbones,
    backbone_spec,
    plain_feature_extractor,
)
from rsee_ros.model.config import RSEEConfig
from rsee_ros.model.flops import FlopsTable, backbone_gmacs, count_gmacs, module_gmacs
from rsee_ros.model.gate import LearnedExitGate, confidence_exit_score, should_exit
from rsee_ros.model.selector import (
    ResolutionSelector,
    SelectorState,
    gumbel_decision,
    masked_argmax,
)

POLICIES = ("learned", "uniform", "random")


def resize_frames(frames: torch.Tensor, resolution: int) -> torch.Tensor:
    """Resize ``(N, 3, S, S)`` frames to ``resolution`` (bilinear with antialiasing)."""
    if frames.shape[-1] == resolution and frames.shape[-2] == resolution:
        return frames
    return F.interpolate(
        frames, size=(resolution, resolution), mode="bilinear", align_corners=False,
        antialias=True,
    )


@dataclass(frozen=True)
class InferenceSettings:
    """Runtime knobs; none of them is baked into the weights.

    ``exit_threshold``: exit once the gate's score (max softmax for the confidence rule, exit
    probability for the learned gate) reaches it; 0 exits after the first processed frame, any
    value above 1 never exits early. ``allowed_resolutions`` restricts the selector (None: all).
    ``policy``: ``learned`` (the selector), ``uniform`` (every frame at ``fixed_resolution``, no
    selector cost) or ``random`` (uniformly random allowed actions; ``seed``).
    """

    exit_threshold: float = 0.9
    allowed_resolutions: tuple[int, ...] | None = None
    skip_enabled: bool = True
    gate: str | None = None
    policy: str = "learned"
    fixed_resolution: int | None = None
    seed: int = 0

    def with_changes(self, **changes: object) -> InferenceSettings:
        """A copy with some fields replaced."""
        return replace(self, **changes)


@dataclass
class VideoState:
    """Per-video inference state for a batch of ``B`` videos (all tensors have B rows)."""

    selector: SelectorState
    accumulator: tuple[torch.Tensor, torch.Tensor]
    skip_left: torch.Tensor
    exited: torch.Tensor
    processed: torch.Tensor
    gmacs: torch.Tensor
    logits: torch.Tensor
    step: int = 0
    generator: torch.Generator | None = None


@dataclass
class StepResult:
    """What happened to frame ``step`` of each video in the batch."""

    step: int
    looked_at: torch.Tensor
    resolution: torch.Tensor
    processed: torch.Tensor
    exited: torch.Tensor
    logits: torch.Tensor
    gmacs: torch.Tensor


@dataclass
class BatchInference:
    """Result of :meth:`RSEEModel.infer_batch` for ``B`` videos of ``T`` frames."""

    resolutions: torch.Tensor
    looked_at: torch.Tensor
    probabilities: torch.Tensor
    exit_step: torch.Tensor
    exited_early: torch.Tensor
    frames_processed: torch.Tensor
    gmacs: torch.Tensor
    step_logits: torch.Tensor = field(repr=False)


@dataclass
class TrainOutput:
    """Differentiable outputs of :meth:`RSEEModel.forward_train` for ``B`` videos, ``T`` steps."""

    step_logits: torch.Tensor
    decisions: torch.Tensor
    looked_at: torch.Tensor
    processed: torch.Tensor
    representations: torch.Tensor
    exit_logits: torch.Tensor
    gmacs: torch.Tensor
    features: torch.Tensor


class RSEEModel(nn.Module):
    """Adaptive resolution selection with conditional early exiting over a 2D CNN backbone."""

    def __init__(self, config: RSEEConfig) -> None:
        super().__init__()
        self.config = config
        names = config.backbone_names()
        if config.backbone_mode == "shared":
            self.backbone: nn.Module = MultiResolutionBackbone(names[0], config.num_resolutions)
        else:
            self.backbone = PerResolutionBackbones(names)
        feature_dim = self.backbone.feature_dim
        if config.selector_blocks is not None:
            selector_cnn = None
            selector_dim = self.backbone.net.channels_after(config.selector_blocks)
        elif config.selector_shares_backbone:
            selector_cnn, selector_dim = None, feature_dim
        else:
            selector_cnn = plain_feature_extractor(config.selector_backbone)
            selector_dim = backbone_spec(config.selector_backbone).feature_dim
        if config.selector_sees_state:
            selector_dim += FeatureAccumulator.state_size(
                config.accumulator, feature_dim, config.accumulator_hidden
            )
        self.selector = ResolutionSelector(
            cnn=selector_cnn, feature_dim=selector_dim, hidden_size=config.selector_hidden,
            num_actions=config.num_actions, rnn=config.selector_rnn,
        )
        self.accumulator = FeatureAccumulator(
            kind=config.accumulator, feature_dim=feature_dim,
            hidden_size=config.accumulator_hidden, num_classes=config.num_classes,
            dropout=config.dropout,
        )
        self.exit_gate = LearnedExitGate(self.accumulator.state_dim, config.gate_hidden)
        self.register_buffer(
            "skip_steps", torch.tensor(config.skip_steps or (1,), dtype=torch.long),
            persistent=False,
        )
        self._flops: FlopsTable | None = None

    # ----------------------------------------------------------------- basics
    @property
    def device(self) -> torch.device:
        """Device of the model's parameters."""
        return next(self.parameters()).device

    @property
    def flops(self) -> FlopsTable:
        """The FLOPs lookup table (counted once, on first use, unless set from a checkpoint)."""
        if self._flops is None:
            self._flops = self.count_flops()
        return self._flops

    @flops.setter
    def flops(self, table: FlopsTable) -> None:
        self._flops = table

    def count_flops(self) -> FlopsTable:
        """Count every module's GMACs per frame with torch's flop counter.

        Counting runs on fresh CPU copies of the parts (costs do not depend on weights), so the
        model itself is left where it is.
        """
        cfg = self.config
        names = cfg.backbone_names()
        if cfg.backbone_mode == "shared":
            backbone = backbone_gmacs(cfg.backbone, cfg.resolutions)
        else:
            backbone = {
                r: backbone_gmacs(name, (r,))[r]
                for r, name in zip(cfg.resolutions, names, strict=True)
            }
            for index, r in enumerate(cfg.resolutions):
                projection = self.backbone.projections[index]
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
        selector = copy.deepcopy(self.selector).cpu().eval()
        sel_state = selector.initial_state(1, cpu)
        feature = torch.zeros(1, selector.rnn.input_size)
        selector_rnn = count_gmacs(lambda: selector.step(feature, sel_state))
        accumulator = copy.deepcopy(self.accumulator).cpu().eval()
        gate = copy.deepcopy(self.exit_gate).cpu().eval()
        acc_state = accumulator.initial_state(1, cpu)
        features = torch.zeros(1, self.backbone.feature_dim)

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

    def frame_features(self, frames: torch.Tensor, resolution_index: int) -> torch.Tensor:
        """Backbone features ``(N, D)`` of ``(N, 3, S, S)`` frames at one of the resolutions."""
        resolution = self.config.resolutions[resolution_index]
        return self.backbone(resize_frames(frames, resolution), resolution_index)

    def frame_feature_map(self, frames: torch.Tensor, resolution_index: int) -> torch.Tensor:
        """Unpooled backbone feature map of ``(N, 3, S, S)`` frames at one resolution."""
        resolution = self.config.resolutions[resolution_index]
        return self.backbone.feature_map(resize_frames(frames, resolution), resolution_index)

    def selector_look(
        self, frames: torch.Tensor, representation: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """What the selector sees of ``(N, 3, S, S)`` frames, and what the lowest resolution
        can reuse of that look.

        The selector looks at the frames at the lowest resolution (through its own CNN, the
        whole backbone, or the backbone's first ``selector_blocks``), plus the accumulated
        ``representation`` when ``selector_sees_state`` (``None`` otherwise; it is not
        read). The reusable part (``None`` for a
        separate selector CNN) goes to :meth:`reuse_features`.
        """
        cfg = self.config
        low = resize_frames(frames, cfg.selector_resolution)
        low_index = cfg.num_resolutions - 1
        reusable: torch.Tensor | None
        if cfg.selector_blocks is not None:
            reusable = self.backbone.partial(low, low_index, cfg.selector_blocks)
            seen = reusable.mean(dim=(2, 3))
        elif cfg.selector_shares_backbone:
            reusable = seen = self.backbone(low, low_index)
        else:
            reusable, seen = None, self.selector.features(low)
        if cfg.selector_sees_state:
            assert representation is not None, "selector_sees_state needs the representation"
            seen = torch.cat([seen, representation.detach()], 1)
        return seen, reusable

    def reuse_features(self, reusable: torch.Tensor) -> torch.Tensor:
        """Lowest-resolution backbone features from the selector's look at the same frames."""
        cfg = self.config
        if cfg.selector_blocks is None:
            return reusable
        return self.backbone.finish(reusable, cfg.num_resolutions - 1, cfg.selector_blocks)

    def action_mask(self, settings: InferenceSettings) -> torch.Tensor:
        """Boolean ``(A,)`` mask of the actions the settings allow (at least one resolution)."""
        cfg = self.config
        allowed = torch.ones(cfg.num_actions, dtype=torch.bool)
        if settings.allowed_resolutions is not None:
            wanted = set(settings.allowed_resolutions)
            unknown = wanted - set(cfg.resolutions)
            if unknown:
                raise ValueError(
                    f"resolutions {sorted(unknown)} are not among the model's {cfg.resolutions}"
                )
            for index, r in enumerate(cfg.resolutions):
                allowed[index] = r in wanted
            if not allowed[: cfg.num_resolutions].any():
                raise ValueError("allowed_resolutions must keep at least one resolution")
        if not settings.skip_enabled:
            allowed[cfg.num_resolutions:] = False
        return allowed.to(self.device)

    def _check_settings(self, settings: InferenceSettings) -> None:
        if settings.policy not in POLICIES:
            raise ValueError(f"policy must be one of {POLICIES}, got {settings.policy!r}")
        if settings.gate not in (None, "confidence", "learned"):
            raise ValueError(f"gate must be 'confidence' or 'learned', got {settings.gate!r}")
        if settings.policy == "uniform":
            fixed = settings.fixed_resolution or self.config.max_resolution
            if fixed not in self.config.resolutions:
                raise ValueError(f"fixed_resolution {fixed} is not one of the model's")

    # -------------------------------------------------------------- inference
    def initial_state(self, batch: int, settings: InferenceSettings) -> VideoState:
        """Fresh state for ``batch`` videos."""
        self._check_settings(settings)
        device = self.device
        generator = None
        if settings.policy == "random":
            generator = torch.Generator(device="cpu").manual_seed(settings.seed)
        return VideoState(
            selector=self.selector.initial_state(batch, device),
            accumulator=self.accumulator.initial_state(batch, device),
            skip_left=torch.zeros(batch, dtype=torch.long, device=device),
            exited=torch.zeros(batch, dtype=torch.bool, device=device),
            processed=torch.zeros(batch, dtype=torch.long, device=device),
            gmacs=torch.zeros(batch, dtype=torch.float64, device=device),
            logits=self.accumulator.classify(self.accumulator.initial_state(batch, device)),
            generator=generator,
        )

    @torch.no_grad()
    def advance(
        self,
        state: VideoState,
        frames: torch.Tensor,
        settings: InferenceSettings,
        action_mask: torch.Tensor | None = None,
    ) -> StepResult:
        """Feed frame ``state.step`` of each video: select, process, accumulate, decide to exit.

        ``frames`` is ``(B, 3, S, S)``; ``state`` is updated in place. Videos that exited, or are
        inside a skip, are not looked at and cost nothing.
        """
        cfg = self.config
        num_res = cfg.num_resolutions
        device = frames.device
        allowed = self.action_mask(settings) if action_mask is None else action_mask
        batch = frames.shape[0]
        look = (state.skip_left == 0) & ~state.exited
        actions = torch.full((batch,), -1, dtype=torch.long, device=device)
        gmacs = torch.zeros(batch, dtype=torch.float64, device=device)
        reusable: torch.Tensor | None = None
        rows = look.nonzero().squeeze(1)
        if rows.numel():
            if settings.policy == "learned":
                representation = (self.accumulator.readout(state.accumulator)[rows]
                                  if cfg.selector_sees_state else None)
                seen, looked = self.selector_look(frames[rows], representation)
                sel_state = tuple(s[rows] for s in state.selector)
                logits, new_sel = self.selector.step(seen, sel_state)
                for full, new in zip(state.selector, new_sel, strict=True):
                    full[rows] = new
                actions[rows] = masked_argmax(logits, allowed.unsqueeze(0))
                gmacs[rows] += self.flops.selector
                if looked is not None and rows.numel() == batch:
                    reusable = looked  # every video looked (one stream): no scatter copy
                elif looked is not None:
                    reusable = looked.new_zeros(batch, *looked.shape[1:])
                    reusable[rows] = looked
            elif settings.policy == "uniform":
                fixed = settings.fixed_resolution or cfg.max_resolution
                actions[rows] = cfg.resolutions.index(fixed)
            else:
                choices = allowed.nonzero().squeeze(1).cpu()
                draw = torch.randint(len(choices), (rows.numel(),), generator=state.generator)
                actions[rows] = choices[draw].to(device)
        is_skip = look & (actions >= num_res)
        skip_len = self.skip_steps[(actions - num_res).clamp(0, len(self.skip_steps) - 1)]
        state.skip_left = torch.where(
            look, torch.where(is_skip, skip_len - 1, 0), (state.skip_left - 1).clamp_min(0)
        )
        processed = look & (actions >= 0) & (actions < num_res)
        features = torch.zeros(batch, self.backbone.feature_dim, device=device)
        for index in range(num_res):
            chosen = (processed & (actions == index)).nonzero().squeeze(1)
            if not chosen.numel():
                continue
            reuse = reusable is not None and index == num_res - 1
            if reuse:
                features[chosen] = self.reuse_features(reusable[chosen])
            else:
                features[chosen] = self.frame_features(frames[chosen], index)
            cost = self.flops.backbone_cost(cfg.resolutions[index], reused=reuse)
            gmacs[chosen] += cost + self.flops.head
        exited_now = torch.zeros(batch, dtype=torch.bool, device=device)
        if processed.any():
            previous = self.accumulator.readout(state.accumulator)
            new_acc = self.accumulator.update(state.accumulator, features, processed.float())
            logits = self.accumulator.classify(new_acc)
            current = self.accumulator.readout(new_acc)
            if (settings.gate or cfg.gate) == "learned":
                score = torch.sigmoid(self.exit_gate(current, previous))
            else:
                score = confidence_exit_score(logits)
            keep = processed.unsqueeze(1)
            state.accumulator = tuple(
                torch.where(keep, new, old)
                for new, old in zip(new_acc, state.accumulator, strict=True)
            )
            state.logits = torch.where(keep, logits, state.logits)
            exited_now = processed & should_exit(score, settings.exit_threshold)
        state.exited |= exited_now
        state.processed += processed.long()
        state.gmacs += gmacs
        resolution_table = torch.tensor(cfg.resolutions + (0,), device=device)
        resolution = torch.where(processed, resolution_table[actions.clamp(0, num_res)], 0)
        result = StepResult(
            step=state.step, looked_at=look, resolution=resolution, processed=processed,
            exited=exited_now, logits=state.logits.clone(), gmacs=gmacs,
        )
        state.step += 1
        return result

    @torch.no_grad()
    def infer_batch(
        self, frames: torch.Tensor, settings: InferenceSettings | None = None, **overrides: object
    ) -> BatchInference:
        """Run ``(B, T, 3, S, S)`` videos to their exit (or their end) with hard decisions."""
        settings = (settings or InferenceSettings()).with_changes(**overrides)
        batch, steps = frames.shape[:2]
        frames = frames.to(self.device)
        state = self.initial_state(batch, settings)
        mask = self.action_mask(settings)
        exit_step = torch.full((batch,), steps - 1, dtype=torch.long, device=self.device)
        resolutions, looked, step_logits = [], [], []
        for t in range(steps):
            result = self.advance(state, frames[:, t], settings, mask)
            exit_step = torch.where(result.exited, t, exit_step)
            resolutions.append(result.resolution)
            looked.append(result.looked_at)
            step_logits.append(result.logits)
            if bool(state.exited.all()):
                remaining = steps - t - 1
                zeros = torch.zeros(batch, dtype=torch.long, device=self.device)
                resolutions.extend([zeros] * remaining)
                looked.extend([zeros.bool()] * remaining)
                step_logits.extend([state.logits] * remaining)
                break
        return BatchInference(
            resolutions=torch.stack(resolutions, 1),
            looked_at=torch.stack(looked, 1),
            probabilities=torch.softmax(state.logits, -1),
            exit_step=exit_step,
            exited_early=state.exited,
            frames_processed=state.processed,
            gmacs=state.gmacs,
            step_logits=torch.stack(step_logits, 1),
        )

    # --------------------------------------------------------------- training
    def forward_train(
        self,
        frames: torch.Tensor,
        *,
        temperature: float | None,
        skip_enabled: bool = True,
        compute_all_resolutions: bool = False,
        noise_scale: float = 1.0,
    ) -> TrainOutput:
        """Differentiable pass over ``(B, T, 3, S, S)`` videos for joint training.

        ``temperature`` set: actions are hard Gumbel-softmax samples with straight-through
        gradients; ``None``: deterministic argmax (frozen selector). Skips are hard: the frames a
        skip covers are not looked at. ``compute_all_resolutions`` runs the backbone at every
        resolution and mixes by the one-hot sample (AR-Net's exact estimator, L times the cost);
        by default only the chosen resolution runs and carries the straight-through weight.
        ``noise_scale`` scales the Gumbel noise (0: the argmax policy, still differentiable).
        No early exit here: ``step_logits`` are the predictions after every step.
        """
        cfg = self.config
        num_res = cfg.num_resolutions
        batch, steps = frames.shape[:2]
        device = frames.device
        allowed = torch.ones(cfg.num_actions, dtype=torch.bool, device=device)
        if not skip_enabled:
            allowed[num_res:] = False
        sel_state = self.selector.initial_state(batch, device)
        acc_state = self.accumulator.initial_state(batch, device)
        skip_left = torch.zeros(batch, dtype=torch.long, device=device)
        previous = self.accumulator.readout(acc_state)
        table = self.flops
        action_cost = torch.tensor(
            [table.backbone_cost(r, reused=cfg.selector_shares_backbone and i == num_res - 1)
             + table.head for i, r in enumerate(cfg.resolutions)]
            + [0.0] * len(cfg.skip_steps),
            device=device,
        )
        outs: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("logits", "decisions", "looked", "processed", "reps", "exit", "feats")
        }
        gmacs = torch.zeros(batch, device=device)
        for t in range(steps):
            frame = frames[:, t]
            look = skip_left == 0
            seen, looked = self.selector_look(frame, previous)
            logits, new_sel = self.selector.step(seen, sel_state)
            sel_state = tuple(
                torch.where(look.unsqueeze(1), new, old)
                for new, old in zip(new_sel, sel_state, strict=True)
            )
            if temperature is None:
                index = masked_argmax(logits, allowed.unsqueeze(0))
                decision = F.one_hot(index, cfg.num_actions).float()
            else:
                decision = gumbel_decision(logits, allowed.unsqueeze(0), temperature,
                                           noise_scale)
            decision = decision * look.unsqueeze(1).float()
            action = decision.argmax(1)
            is_skip = look & (action >= num_res)
            skip_len = self.skip_steps[(action - num_res).clamp(0, len(self.skip_steps) - 1)]
            skip_left = torch.where(
                look, torch.where(is_skip, skip_len - 1, 0), (skip_left - 1).clamp_min(0)
            )
            features = torch.zeros(batch, self.backbone.feature_dim, device=device)
            for index in range(num_res):
                weight = decision[:, index]
                rows = (
                    torch.arange(batch, device=device) if compute_all_resolutions
                    else (action == index).logical_and(look).nonzero().squeeze(1)
                )
                if not rows.numel():
                    continue
                if looked is not None and index == num_res - 1:
                    part = self.reuse_features(looked[rows])
                else:
                    part = self.frame_features(frame[rows], index)
                features = features.index_add(0, rows, part * weight[rows].unsqueeze(1))
            processed = decision[:, :num_res].sum(1)
            acc_state = self.accumulator.update(acc_state, features, processed)
            current = self.accumulator.readout(acc_state)
            outs["logits"].append(self.accumulator.classify(acc_state))
            outs["exit"].append(self.exit_gate(current, previous))
            previous = current
            outs["decisions"].append(decision)
            outs["looked"].append(look)
            outs["processed"].append(processed)
            outs["reps"].append(current)
            outs["feats"].append(features)
            gmacs = gmacs + look.float() * table.selector + decision @ action_cost
        return TrainOutput(
            step_logits=torch.stack(outs["logits"], 1),
            decisions=torch.stack(outs["decisions"], 1),
            looked_at=torch.stack(outs["looked"], 1),
            processed=torch.stack(outs["processed"], 1),
            representations=torch.stack(outs["reps"], 1),
            exit_logits=torch.stack(outs["exit"], 1),
            gmacs=gmacs,
            features=torch.stack(outs["feats"], 1),
        )

    def uniform_step_logits(self, frames: torch.Tensor, resolution_index: int) -> torch.Tensor:
        """Predictions ``(B, T, C)`` after each frame when every frame is processed at one
        resolution (warm-up training and the Uniform baselines)."""
        batch, steps = frames.shape[:2]
        features = self.frame_features(frames.flatten(0, 1), resolution_index)
        features = features.view(batch, steps, -1)
        state = self.accumulator.initial_state(batch, frames.device)
        ones = torch.ones(batch, device=frames.device)
        logits = []
        for t in range(steps):
            state = self.accumulator.update(state, features[:, t], ones)
            logits.append(self.accumulator.classify(state))
        return torch.stack(logits, 1)


def build_rsee(
    config: RSEEConfig, *, pretrained: bool | str = False
) -> RSEEModel:
    """Build an RSEE model; ``pretrained=True`` loads the ImageNet MobileNetV2 weights into every
    MobileNetV2 part (backbone and selector CNN); a path loads a torchvision state dict into the
    backbone instead (e.g. ResNet weights you have)."""
    from rsee_ros.model.pretrained import (
        default_mobilenet_v2_weights,
        load_state_dict_file,
        torchvision_to_trunk,
    )

    model = RSEEModel(config)
    if pretrained is False:
        return model
    if pretrained is True:
        if "mobilenet_v2" not in (*config.backbone_names(), config.selector_backbone):
            return model
        source = load_state_dict_file(default_mobilenet_v2_weights())
        trunk = torchvision_to_trunk("mobilenet_v2", source)
        names = config.backbone_names()
    else:
        source = load_state_dict_file(pretrained)
        names = config.backbone_names()
        trunk = torchvision_to_trunk(names[0], source)
    _load_backbone_weights(model, names, trunk)
    if (
        pretrained is True
        and model.selector.cnn is not None
        and config.selector_backbone == "mobilenet_v2"
    ):
        model.selector.cnn.load_state_dict(trunk, strict=False)
    return model


def _load_backbone_weights(
    model: RSEEModel, names: Sequence[str], trunk: dict[str, torch.Tensor]
) -> None:
    backbone = model.backbone
    if isinstance(backbone, MultiResolutionBackbone):
        backbone.load_plain_state_dict(trunk)
        return
    assert isinstance(backbone, PerResolutionBackbones)
    wanted = names[0] if len(set(names)) == 1 else "mobilenet_v2"
    for name, net in zip(names, backbone.nets, strict=True):
        if name == wanted:
            net.load_state_dict(trunk, strict=False)
