"""The RSEE model: resolution selector, backbone, accumulator and exit gate, assembled.

:func:`rsee_ros.model.build.build_rsee` builds the parts from an :class:`RSEEConfig` and hands
them to :class:`RSEEModel`. Both entry points follow the per-step plan of
:mod:`rsee_ros.model.step` and differ only in how the decision is made and what they record:
:meth:`RSEEModel.advance` (inference, hard decisions) advances a batch of videos one time step;
the streaming API (:class:`rsee_ros.model.streaming.StreamingSession`) calls it with a batch of
one and :meth:`RSEEModel.infer_batch` for each of the T steps, so both make the same decisions
by construction. :meth:`RSEEModel.forward_train` runs whole clips with straight-through
Gumbel-softmax decisions.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from rsee_ros.model import step
from rsee_ros.model.accumulator import FeatureAccumulator
from rsee_ros.model.backbones import Backbone
from rsee_ros.model.config import RSEEConfig
from rsee_ros.model.flops import FlopsTable, count_model_flops
from rsee_ros.model.gate import LearnedExitGate, exit_score, should_exit
from rsee_ros.model.outputs import BatchInference, StepResult, TrainOutput, VideoState
from rsee_ros.model.preprocess import resize_frames
from rsee_ros.model.selector import ResolutionSelector, gumbel_decision, masked_argmax
from rsee_ros.model.settings import InferenceSettings, allowed_actions, fixed_index
from rsee_ros.model.temporal import ShiftCache, ShiftInput


class RSEEModel(nn.Module):
    """Adaptive resolution selection with conditional early exiting over a 2D CNN backbone.

    The parts are built by :func:`~rsee_ros.model.build.build_rsee` (or by hand, for
    experiments) and checked against ``config``; their attribute names are the state-dict
    prefixes (``backbone.``, ``selector.``, ``accumulator.``, ``exit_gate.``).
    """

    def __init__(
        self,
        config: RSEEConfig,
        *,
        backbone: Backbone,
        selector: ResolutionSelector,
        accumulator: FeatureAccumulator,
        exit_gate: LearnedExitGate,
    ) -> None:
        super().__init__()
        _check_parts(config, backbone, selector, accumulator, exit_gate)
        self.config = config
        self.backbone = backbone
        self.selector = selector
        self.accumulator = accumulator
        self.exit_gate = exit_gate
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
        """Count every part's GMACs per frame (:func:`rsee_ros.model.flops.count_model_flops`)."""
        return count_model_flops(self)

    def frame_features(self, frames: torch.Tensor, resolution_index: int, *,
                       clip_steps: int | None = None) -> torch.Tensor:
        """Backbone features ``(N, D)`` of ``(N, 3, S, S)`` frames at one of the resolutions.

        ``clip_steps=T``: the frames are whole clips of ``T`` frames, flattened, each frame's
        temporal shift coming from the one before it; otherwise from the backbone's current
        :meth:`~rsee_ros.model.backbones.MultiResolutionBackbone.shifting` source (zeros when
        none is set)."""
        resolution = self.config.resolutions[resolution_index]
        with self._clip_shift(clip_steps):
            return self.backbone(resize_frames(frames, resolution), resolution_index)

    def frame_feature_map(self, frames: torch.Tensor, resolution_index: int, *,
                          clip_steps: int | None = None) -> torch.Tensor:
        """Unpooled backbone feature map of ``(N, 3, S, S)`` frames at one resolution
        (``clip_steps`` as in :meth:`frame_features`)."""
        resolution = self.config.resolutions[resolution_index]
        with self._clip_shift(clip_steps):
            return self.backbone.feature_map(resize_frames(frames, resolution), resolution_index)

    def _clip_shift(self, clip_steps: int | None) -> AbstractContextManager[object]:
        if clip_steps is None:
            return nullcontext()
        return self.backbone.shifting(ShiftInput(clip_steps=clip_steps))

    def new_shift_cache(self, batch: int, device: torch.device) -> ShiftCache | None:
        """An empty temporal-shift cache for ``batch`` videos (``None`` without the shift)."""
        shifts = len(self.backbone.shifts)
        return ShiftCache.empty(batch, shifts, device) if shifts else None

    def action_mask(self, settings: InferenceSettings) -> torch.Tensor:
        """Boolean ``(A,)`` mask of the actions the settings allow (at least one resolution)."""
        return allowed_actions(self.config, settings).to(self.device)

    def _fixed_index(self, settings: InferenceSettings) -> int:
        """Resolution index of the ``uniform`` policy."""
        return fixed_index(self.config, settings)

    # -------------------------------------------------------------- inference
    def initial_state(self, batch: int, settings: InferenceSettings) -> VideoState:
        """Fresh state for ``batch`` videos."""
        if settings.policy == "uniform":
            self._fixed_index(settings)  # refuse a resolution the model lacks up front
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
            shift=self.new_shift_cache(batch, device),
        )

    @torch.no_grad()
    def advance(
        self,
        state: VideoState,
        frames: torch.Tensor,
        settings: InferenceSettings,
        action_mask: torch.Tensor | None = None,
    ) -> StepResult:
        """Feed frame ``state.step`` of each video: look, decide, process, accumulate, exit.

        ``frames`` is ``(B, 3, S, S)``; ``state`` is updated in place. Videos that exited, or are
        inside a skip, are not looked at and cost nothing. Only the looked-at rows are computed.
        """
        cfg = self.config
        num_res = cfg.num_resolutions
        allowed = self.action_mask(settings) if action_mask is None else action_mask
        looked_at = (state.skip_left == 0) & ~state.exited
        actions, backbone_pass = self._decide(state, frames, looked_at, settings, allowed)
        state.skip_left = step.next_skip_left(
            state.skip_left, looked_at, actions, self.skip_steps, num_res)
        processed = looked_at & (actions < num_res)
        features = step.process(self, frames, actions, looked_at, backbone_pass,
                                shift_cache=state.shift)
        learned = settings.policy == "learned"  # only the learned policy looks through a CNN
        costs = step.action_costs(
            self, looks_through_backbone=learned and cfg.selector_shares_backbone,
            dtype=torch.float64, device=frames.device)
        gmacs = (looked_at.double() * (self.flops.selector if learned else 0.0)
                 + torch.where(processed, costs[actions.clamp_min(0)], 0.0))
        exited_now = torch.zeros_like(processed)
        if processed.any():
            folded = step.fold(self.accumulator, state.accumulator, features, processed.float())
            score = exit_score(settings.gate or cfg.gate, self.exit_gate, folded.logits,
                               folded.current, folded.previous)
            keep = processed.unsqueeze(1)
            state.accumulator = tuple(
                torch.where(keep, new, old)
                for new, old in zip(folded.state, state.accumulator, strict=True)
            )
            state.logits = torch.where(keep, folded.logits, state.logits)
            exited_now = processed & should_exit(score, settings.exit_threshold)
        state.exited |= exited_now
        state.processed += processed.long()
        state.gmacs += gmacs
        resolution_table = torch.tensor(cfg.resolutions + (0,), device=frames.device)
        resolution = torch.where(processed, resolution_table[actions.clamp(0, num_res)], 0)
        result = StepResult(
            step=state.step, looked_at=looked_at, action=torch.where(looked_at, actions, -1),
            resolution=resolution, processed=processed,
            exited=exited_now, logits=state.logits.clone(), gmacs=gmacs,
        )
        state.step += 1
        return result

    def _decide(
        self,
        state: VideoState,
        frames: torch.Tensor,
        looked_at: torch.Tensor,
        settings: InferenceSettings,
        allowed: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Inference decision: the action ``(B,)`` of each looked-at row (-1 elsewhere) and the
        look's backbone pass (batch-aligned; ``None`` without one). The learned policy looks
        and takes the best allowed action, advancing the selector state of those rows."""
        batch = frames.shape[0]
        actions = torch.full((batch,), -1, dtype=torch.long, device=frames.device)
        rows = looked_at.nonzero().squeeze(1)
        if not rows.numel():
            return actions, None
        if settings.policy == "uniform":
            actions[rows] = self._fixed_index(settings)
            return actions, None
        if settings.policy == "random":
            choices = allowed.nonzero().squeeze(1).cpu()
            draw = torch.randint(len(choices), (rows.numel(),), generator=state.generator)
            actions[rows] = choices[draw].to(frames.device)
            return actions, None
        representation = (self.accumulator.readout(state.accumulator)[rows]
                          if self.config.selector_sees_state else None)
        look = step.look(self, frames[rows], representation)
        logits, new_selector = self.selector.step(
            look.seen, tuple(s[rows] for s in state.selector))
        for full, new in zip(state.selector, new_selector, strict=True):
            full[rows] = new
        actions[rows] = masked_argmax(logits, allowed.unsqueeze(0))
        return actions, step.spread_rows(look.backbone_pass, rows, batch)

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
        resolutions, looked_at, actions, step_logits = [], [], [], []
        for t in range(steps):
            result = self.advance(state, frames[:, t], settings, mask)
            exit_step = torch.where(result.exited, t, exit_step)
            resolutions.append(result.resolution)
            looked_at.append(result.looked_at)
            actions.append(result.action)
            step_logits.append(result.logits)
            if bool(state.exited.all()):
                remaining = steps - t - 1
                zeros = torch.zeros(batch, dtype=torch.long, device=self.device)
                resolutions.extend([zeros] * remaining)
                looked_at.extend([zeros.bool()] * remaining)
                actions.extend([zeros - 1] * remaining)
                step_logits.extend([state.logits] * remaining)
                break
        return BatchInference(
            resolutions=torch.stack(resolutions, 1),
            looked_at=torch.stack(looked_at, 1),
            actions=torch.stack(actions, 1),
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
        No early exit here: ``step_logits`` are the predictions after every step. Every row is
        computed at every step (BatchNorm sees the whole batch) and masked by ``looked_at``.
        The loop over the plan's steps stays in one piece (hence its 66 lines), to be read
        against :meth:`advance`.
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
        shift_cache = self.new_shift_cache(batch, device)
        previous = self.accumulator.readout(acc_state)
        costs = step.action_costs(self, looks_through_backbone=cfg.selector_shares_backbone,
                                  dtype=torch.float32, device=device)
        steps_out: dict[str, list[torch.Tensor]] = {
            k: [] for k in ("step_logits", "decisions", "looked_at", "processed",
                            "representations", "exit_logits", "features", "step_gmacs")
        }
        for t in range(steps):
            frame = frames[:, t]
            looked_at = skip_left == 0
            look = step.look(self, frame, previous)
            logits, new_sel = self.selector.step(look.seen, sel_state)
            sel_state = tuple(
                torch.where(looked_at.unsqueeze(1), new, old)
                for new, old in zip(new_sel, sel_state, strict=True)
            )
            decision = _train_decision(logits, allowed, temperature, noise_scale)
            decision = decision * looked_at.unsqueeze(1).float()
            action = decision.argmax(1)
            skip_left = step.next_skip_left(skip_left, looked_at, action, self.skip_steps, num_res)
            features = step.process(self, frame, action, looked_at, look.backbone_pass, decision,
                                    every_row=compute_all_resolutions, shift_cache=shift_cache)
            processed = decision[:, :num_res].sum(1)
            folded = step.fold(self.accumulator, acc_state, features, processed)
            acc_state, previous = folded.state, folded.current
            for key, value in (
                ("step_logits", folded.logits),
                ("exit_logits", self.exit_gate(folded.current, folded.previous)),
                ("decisions", decision), ("looked_at", looked_at), ("processed", processed),
                ("representations", folded.current), ("features", features),
                ("step_gmacs", looked_at.float() * self.flops.selector + decision @ costs),
            ):
                steps_out[key].append(value)
        out = {k: torch.stack(v, 1) for k, v in steps_out.items()}
        return TrainOutput(gmacs=out["step_gmacs"].sum(1), **out)

    def uniform_step_logits(self, frames: torch.Tensor, resolution_index: int) -> torch.Tensor:
        """Predictions ``(B, T, C)`` after each frame when every frame is processed at one
        resolution (warm-up training and the Uniform baselines)."""
        batch, steps = frames.shape[:2]
        features = self.frame_features(frames.flatten(0, 1), resolution_index, clip_steps=steps)
        features = features.view(batch, steps, -1)
        state = self.accumulator.initial_state(batch, frames.device)
        ones = torch.ones(batch, device=frames.device)
        logits = []
        for t in range(steps):
            state = self.accumulator.update(state, features[:, t], ones)
            logits.append(self.accumulator.classify(state))
        return torch.stack(logits, 1)


def _train_decision(
    logits: torch.Tensor, allowed: torch.Tensor, temperature: float | None, noise_scale: float
) -> torch.Tensor:
    """Training decision ``(B, A)``: a straight-through Gumbel-softmax sample, or with no
    ``temperature`` the one-hot argmax (frozen selector)."""
    if temperature is None:
        return F.one_hot(masked_argmax(logits, allowed.unsqueeze(0)), logits.shape[-1]).float()
    return gumbel_decision(logits, allowed.unsqueeze(0), temperature, noise_scale)


def _check_parts(
    config: RSEEConfig,
    backbone: Backbone,
    selector: ResolutionSelector,
    accumulator: FeatureAccumulator,
    exit_gate: LearnedExitGate,
) -> None:
    """Refuse parts that do not fit ``config`` or each other (a ``ValueError`` naming each)."""
    accumulator_input = accumulator.feature_dim
    checks = {
        "backbone resolutions": (backbone.num_resolutions, config.num_resolutions),
        "selector input": (selector.rnn.input_size, step.look_size(config, backbone)),
        "selector actions": (selector.policy.out_features, config.num_actions),
        "selector has its own CNN": (selector.cnn is not None,
                                     not config.selector_shares_backbone),
        "accumulator kind": (accumulator.kind, config.accumulator),
        "accumulator input": (accumulator_input, backbone.feature_dim),
        "classes": (accumulator.head[-1].out_features, config.num_classes),
        "exit gate input": (exit_gate.state_dim, accumulator.state_dim),
    }
    wrong = [f"{name} {got!r}, expected {want!r}"
             for name, (got, want) in checks.items() if got != want]
    if wrong:
        raise ValueError("RSEEModel parts do not match the configuration: " + "; ".join(wrong))
