"""The training stages, one class each: what trains, in which modes, and the loss of a batch.

Warm-up trains backbone and classifier at every resolution; joint training adds the selector
(Gumbel-softmax, FLOPs and balance terms); fine-tuning trains backbone and classifier under the
frozen selector's decisions; the gate stage trains the learned exit gate alone. The
:class:`~rsee_ros.training.trainer.Trainer` runs any of them the same way.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from rsee_ros.model import RSEEModel, TrainOutput, load_checkpoint
from rsee_ros.model.backbones import MultiResolutionBackbone
from rsee_ros.model.gate import confidence_exit_score
from rsee_ros.training import losses
from rsee_ros.training.config import TrainConfig

ParamGroups = list[dict[str, Any]]


@dataclass
class BatchLoss:
    """One batch's loss, its logged parts, the final predictions and GMACs per video (both
    detached), and how often each action was taken (policy stages)."""

    loss: torch.Tensor
    parts: dict[str, float]
    logits: torch.Tensor
    gmacs: torch.Tensor
    usage: torch.Tensor | None = None


def frozen_block_parameters(model: RSEEModel, blocks: int) -> list[nn.Parameter]:
    """Parameters of the first ``blocks`` children of each backbone trunk (convolutions and
    BatchNorm affine parameters). Their BatchNorm statistics still adapt per resolution, and
    backpropagation stops before them, which makes CPU training much cheaper."""
    if blocks <= 0:
        return []
    backbone = model.backbone
    nets = [backbone.net] if isinstance(backbone, MultiResolutionBackbone) else list(backbone.nets)
    params: list[nn.Parameter] = []
    for net in nets:
        for child in list(net.trunk.children())[:blocks]:
            params.extend(child.parameters())
    return params


class Stage:
    """A training stage over ``model``; subclasses say what trains and how a batch is scored.

    The trainer calls :meth:`parameter_groups` once, :meth:`prepare` on a fresh (not resumed)
    start, :meth:`begin_epoch` after seeding each epoch and :meth:`batch_loss` per batch;
    :meth:`forward` is the differentiable part, run inside the (DistributedDataParallel)
    wrapper that :meth:`batch_loss` receives.
    """

    name: ClassVar[str]

    def __init__(self, config: TrainConfig, model: RSEEModel) -> None:
        self.config = config
        self.model = model
        self.epoch = 0
        self.uniform_gmacs = 0.0

    @property
    def settings(self) -> Any:
        """This stage's section of ``config.stages``."""
        return self.config.stages.of(self.name)

    def trained(self, body: list[nn.Parameter], selector: list[nn.Parameter],
                gate: list[nn.Parameter]) -> ParamGroups:
        """The parameter groups this stage trains, from the model's three kinds."""
        raise NotImplementedError

    def parameter_groups(self) -> ParamGroups:
        """Trainable parameter groups (less ``train.freeze_blocks``); everything else is
        frozen (``requires_grad`` off)."""
        model = self.model
        selector = list(model.selector.parameters())
        gate = list(model.exit_gate.parameters())
        excluded = {id(p) for p in selector + gate}
        body = [p for p in model.parameters() if id(p) not in excluded]
        frozen = {id(p) for p in frozen_block_parameters(model, self.config.train.freeze_blocks)}
        groups = [{**g, "params": [p for p in g["params"] if id(p) not in frozen]}
                  for g in self.trained(body, selector, gate)]
        trainable = {id(p) for group in groups for p in group["params"]}
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)
        return groups

    def prepare(self) -> None:
        """Before the first epoch of a fresh start (not when resuming)."""

    def set_modes(self) -> None:
        """Put the model's modules in train or eval mode for an epoch."""
        raise NotImplementedError

    def begin_epoch(self, epoch: int) -> None:
        """Modes and per-epoch values (the Uniform cost the FLOPs are measured against)."""
        self.epoch = epoch
        self.set_modes()
        self.uniform_gmacs = self.model.flops.uniform_video(
            self.model.config.max_resolution, self.config.data.frames)

    def forward(self, frames: torch.Tensor, **inputs: Any) -> dict[str, Any]:
        """The differentiable computation of a batch (a plain dict, which
        DistributedDataParallel knows how to search for tensors)."""
        raise NotImplementedError

    def batch_loss(self, wrapped: nn.Module, frames: torch.Tensor, labels: torch.Tensor
                   ) -> BatchLoss:
        """Run :meth:`forward` through ``wrapped`` and score it."""
        raise NotImplementedError


def freeze_batchnorm(model: nn.Module) -> None:
    """BatchNorm modules to eval mode: normalise with (and keep) their running statistics."""
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()


class WarmupStage(Stage):
    """Backbone and classifier at every resolution (every frame processed), optionally with
    ResKD's feature-map distillation from the full resolution."""

    name = "warmup"

    def __init__(self, config: TrainConfig, model: RSEEModel) -> None:
        super().__init__(config, model)
        self.teacher = self._teacher()

    def _teacher(self) -> RSEEModel | None:
        distill = self.config.distill
        if not distill.enabled or distill.teacher == "self":
            return None  # off, or the model's own full-resolution pass (detached)
        teacher = load_checkpoint(distill.teacher).model.to(self.model.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def trained(self, body: list[nn.Parameter], selector: list[nn.Parameter],
                gate: list[nn.Parameter]) -> ParamGroups:
        return [{"params": body, "lr": self.settings.lr}]

    def set_modes(self) -> None:
        self.model.train()
        self.model.selector.eval()

    def resolution_indices(self) -> list[int]:
        """Resolution indices a batch trains: all, or the highest plus a random sample of the
        others (``train.warmup_resolutions_per_batch``) to save time."""
        count = self.config.train.warmup_resolutions_per_batch
        indices = list(range(self.model.config.num_resolutions))
        if not count or count >= len(indices):
            return indices
        others = random.sample(indices[1:], max(count - 1, 0))
        return [0, *sorted(others)]

    def forward(self, frames: torch.Tensor, **inputs: Any) -> dict[str, Any]:
        # Every pass of a warm-up step in one forward: DistributedDataParallel allows one
        # forward per backward (a parameter must not be marked ready twice).
        flat = frames.flatten(0, 1)
        return {
            "logits": [self.model.uniform_step_logits(frames, index)
                       for index in inputs["resolution_indices"]],
            "feature_maps": [self.model.frame_feature_map(flat, index, clip_steps=frames.shape[1])
                             for index in inputs["distill_indices"]],
        }

    def batch_loss(self, wrapped: nn.Module, frames: torch.Tensor, labels: torch.Tensor
                   ) -> BatchLoss:
        model, train = self.model, self.config.train
        seen = torch.ones(frames.shape[:2], dtype=torch.bool, device=frames.device)
        indices = self.resolution_indices()
        distilling = self.config.distill.enabled
        out = wrapped(frames, resolution_indices=indices, distill_indices=(
            range(1, model.config.num_resolutions) if distilling else ()))
        total = frames.new_zeros(())
        parts: dict[str, float] = {}
        for index, step_logits in zip(indices, out["logits"], strict=True):
            ce = losses.accuracy_loss(step_logits, labels, seen, train.step_loss_weight)
            total = total + ce
            parts[f"ce{model.config.resolutions[index]}"] = float(ce.detach())
        if distilling:
            distill = self._distillation(frames, out["feature_maps"])
            total = total + self.config.distill.feature_weight * distill
            parts["distill"] = float(distill.detach())
        return BatchLoss(
            loss=total / len(indices), parts=parts, logits=out["logits"][0][:, -1].detach(),
            gmacs=torch.full((len(labels),), self.uniform_gmacs, device=frames.device),
        )

    def _distillation(self, frames: torch.Tensor, students: list[torch.Tensor]) -> torch.Tensor:
        """ResKD's feature-map term: the lower resolutions' maps (``students``, resolution 1
        onwards) against the full-resolution map of the teacher (or of the model itself)."""
        with torch.no_grad():
            target = (self.teacher or self.model).frame_feature_map(
                frames.flatten(0, 1), 0, clip_steps=frames.shape[1])
        total = frames.new_zeros(())
        for student in students:
            total = total + losses.feature_map_distillation(student, target)
        return total / max(len(students), 1)


class _PolicyStage(Stage):
    """Training through the selector's decisions (:meth:`RSEEModel.forward_train`)."""

    def exact_estimator(self) -> bool:
        """Whether every resolution runs for every frame (AR-Net's exact estimator)."""
        return False

    def decision(self) -> tuple[float | None, float]:
        """Gumbel temperature (``None``: the argmax) and noise scale of this epoch."""
        return None, 1.0

    def set_modes(self) -> None:
        self.model.train()
        if not self.exact_estimator():
            # Only the rows whose policy chose a resolution go through its BatchNorm branch,
            # often one or two videos of a batch: their batch statistics are too noisy to
            # normalise with or to update the running ones (measured: Uniform at 56 px fell from
            # 59% to 22% top-1 in one such fine-tuning). The statistics from warm-up stay; the
            # affine parameters still train.
            freeze_batchnorm(self.model)

    def forward(self, frames: torch.Tensor, **inputs: Any) -> dict[str, Any]:
        temperature, noise = self.decision()
        out = self.model.forward_train(frames, temperature=temperature, noise_scale=noise,
                                       compute_all_resolutions=self.exact_estimator())
        return dict(vars(out))

    def extra_terms(self, out: TrainOutput, labels: torch.Tensor, ce: torch.Tensor,
                    parts: dict[str, float]) -> torch.Tensor:
        """The loss from the accuracy term ``ce`` (logging further parts)."""
        return ce

    def batch_loss(self, wrapped: nn.Module, frames: torch.Tensor, labels: torch.Tensor
                   ) -> BatchLoss:
        out = TrainOutput(**wrapped(frames))
        seen = out.processed.cumsum(1) > 0
        ce = losses.accuracy_loss(out.step_logits, labels, seen,
                                  self.config.train.step_loss_weight)
        parts = {"ce": float(ce.detach())}
        loss = self.extra_terms(out, labels, ce, parts)
        usage = (out.decisions.detach() * out.looked_at.unsqueeze(-1)).sum((0, 1))
        return BatchLoss(loss=loss, parts=parts, logits=out.step_logits[:, -1].detach(),
                         gmacs=out.gmacs.detach(), usage=usage)


class JointStage(_PolicyStage):
    """Selector and backbone together: straight-through Gumbel-softmax decisions, with AR-Net's
    FLOPs (or budget) and usage-balance terms; with ``exit_in_loop`` the FLOPs term is the cost
    expected under a soft exit rule and part of the accuracy term the loss at that exit (with
    the learned gate, the gate trains here too: a differentiable exit)."""

    name = "joint"
    EXIT_GATES = ("confidence", "learned", "model")

    def __init__(self, config: TrainConfig, model: RSEEModel) -> None:
        super().__init__(config, model)
        if self.settings.exit_gate not in self.EXIT_GATES:
            raise ValueError(f"stages.joint.exit_gate must be one of {self.EXIT_GATES}, got "
                             f"{self.settings.exit_gate!r}")

    @property
    def loop_gate(self) -> str | None:
        """The exit rule in the loop (``confidence`` or ``learned``), ``None`` without one."""
        s = self.settings
        if not s.exit_in_loop:
            return None
        return self.model.config.gate if s.exit_gate == "model" else s.exit_gate

    def trained(self, body: list[nn.Parameter], selector: list[nn.Parameter],
                gate: list[nn.Parameter]) -> ParamGroups:
        lr = self.settings.lr
        groups = [{"params": body, "lr": lr},
                  {"params": selector, "lr": lr * self.settings.selector_lr_scale}]
        if self.loop_gate == "learned":
            groups.append({"params": gate, "lr": lr * self.settings.selector_lr_scale})
        return groups

    def prepare(self) -> None:
        skip_bias = self.settings.skip_bias_init
        if skip_bias is not None:  # start from a policy that mostly looks at frames
            with torch.no_grad():
                self.model.selector.policy.bias[self.model.config.num_resolutions:] = skip_bias

    def exact_estimator(self) -> bool:
        return self.config.train.compute_all_resolutions

    def decision(self) -> tuple[float | None, float]:
        s = self.settings
        return (losses.gumbel_temperature(s.tau0, s.tau_decay, self.epoch),
                losses.noise_scale(s.noise_final, self.epoch, s.epochs))

    def budget(self) -> float | None:
        """This epoch's FLOPs budget (``flops_target_start`` lowered towards ``flops_target``)."""
        s = self.settings
        return losses.scheduled_budget(s.flops_target_start, s.flops_target, self.epoch, s.epochs)

    def exit_hazard(self, out: TrainOutput) -> torch.Tensor:
        """Soft P(exit) ``(B, T)`` after each step under the exit rule in the loop."""
        s, gate = self.settings, self.loop_gate
        if gate == "learned":
            scores = torch.sigmoid(out.exit_logits)
        else:
            scores = confidence_exit_score(out.step_logits)
        threshold = self.config.train.eval_threshold if s.exit_threshold is None \
            else s.exit_threshold
        return losses.soft_exit_hazard(scores, out.processed, threshold, s.exit_temperature)

    def extra_terms(self, out: TrainOutput, labels: torch.Tensor, ce: torch.Tensor,
                    parts: dict[str, float]) -> torch.Tensor:
        s = self.settings
        gmacs = out.gmacs
        if self.loop_gate is not None:
            survival, mass = losses.exit_distribution(self.exit_hazard(out))
            gmacs = losses.expected_cost(out.step_gmacs, survival)
            at_exit = losses.expected_exit_loss(out.step_logits, labels, mass)
            ce = (1 - s.exit_loss_weight) * ce + s.exit_loss_weight * at_exit
            parts.update({"ce_exit": float(at_exit.detach()),
                          "expected_gflops": float(gmacs.detach().mean())})
        budget = self.budget()
        flops = losses.efficiency_loss(gmacs, self.uniform_gmacs, budget)
        balance = losses.usage_balance_loss(out.decisions, out.looked_at)
        temperature, noise = self.decision()
        parts.update({"flops": float(flops.detach()), "balance": float(balance.detach()),
                      "tau": temperature or 0.0, "noise": noise,
                      **({} if budget is None else {"budget": budget})})
        return (1 - s.alpha) * ce + s.alpha * flops + s.beta * balance


class FinetuneStage(_PolicyStage):
    """Backbone and classifier under the frozen selector's argmax decisions."""

    name = "finetune"

    def trained(self, body: list[nn.Parameter], selector: list[nn.Parameter],
                gate: list[nn.Parameter]) -> ParamGroups:
        return [{"params": body, "lr": self.settings.lr}]

    def set_modes(self) -> None:
        super().set_modes()
        self.model.selector.eval()


class GateStage(Stage):
    """The learned exit gate alone (everything else in eval mode), on FrameExit-style pseudo
    labels from the frozen model's predictions."""

    name = "gate"

    def trained(self, body: list[nn.Parameter], selector: list[nn.Parameter],
                gate: list[nn.Parameter]) -> ParamGroups:
        return [{"params": gate, "lr": self.settings.lr}]

    def set_modes(self) -> None:
        self.model.eval()

    def forward(self, frames: torch.Tensor, **inputs: Any) -> dict[str, Any]:
        with torch.no_grad():
            out = self.model.forward_train(frames, temperature=None)
        previous = torch.cat([torch.zeros_like(out.representations[:, :1]),
                              out.representations[:, :-1]], 1)
        result = dict(vars(out))
        result["exit_logits"] = self.model.exit_gate(out.representations, previous)
        return result

    def batch_loss(self, wrapped: nn.Module, frames: torch.Tensor, labels: torch.Tensor
                   ) -> BatchLoss:
        out = TrainOutput(**wrapped(frames))
        targets = losses.exit_pseudo_labels(out.step_logits, labels, self.settings.base_loss,
                                            self.settings.cost_per_step)
        loss = losses.exit_gate_loss(out.exit_logits, targets, out.processed)
        return BatchLoss(
            loss=loss, parts={"gate_bce": float(loss.detach()), "exit_pos": float(targets.mean())},
            logits=out.step_logits[:, -1].detach(), gmacs=out.gmacs.detach(),
        )


STAGE_CLASSES: dict[str, type[Stage]] = {
    cls.name: cls for cls in (WarmupStage, JointStage, FinetuneStage, GateStage)
}
