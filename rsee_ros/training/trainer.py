"""The staged trainer: warm-up, joint training, fine-tuning, then exit-gate training.

Each stage writes ``<out_dir>/<stage>/state.pt`` after every epoch (weights, optimiser, epoch;
plain data only, loaded with ``weights_only=True``) and ``<out_dir>/<stage>/model.pt`` (an
rsee_ros checkpoint) when it completes. A stage starts from the previous stage's ``model.pt``
(or ``init``), resumes from its own ``state.pt`` and is skipped when its ``model.pt`` exists.
Runs on CPU or CUDA (mixed precision on CUDA, ``train.amp``), and under ``torchrun`` with
DistributedDataParallel by the same command.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from rsee_ros.model import (
    NEVER_EXIT,
    RSEEConfig,
    RSEEModel,
    TrainOutput,
    build_rsee,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
)
from rsee_ros.training import losses
from rsee_ros.training.config import STAGES, TrainConfig
from rsee_ros.training.data import build_dataset

log = logging.getLogger(__name__)


def amp_dtype(setting: bool | str | None, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp``: ``true`` is float16 on CUDA and off on CPU (whose
    float16 kernels are slow), ``"bfloat16"`` autocasts to bfloat16 on any device (CPUs with
    bfloat16 support; also how the tests exercise mixed precision without a GPU), ``false`` or
    ``null`` is off."""
    if setting in (None, False):
        return None
    if setting is True or setting == "float16":
        return torch.float16 if device.type == "cuda" else None
    if setting == "bfloat16":
        return torch.bfloat16
    raise ValueError(f"train.amp must be true, false, 'float16' or 'bfloat16', got {setting!r}")


def frozen_block_parameters(model: RSEEModel, blocks: int) -> list[nn.Parameter]:
    """Parameters of the first ``blocks`` children of each backbone trunk (convolutions and
    BatchNorm affine parameters). Their BatchNorm statistics still adapt per resolution, and
    backpropagation stops before them, which makes CPU training much cheaper."""
    if blocks <= 0:
        return []
    backbone = model.backbone
    nets = [backbone.net] if hasattr(backbone, "net") else list(backbone.nets)
    params: list[nn.Parameter] = []
    for net in nets:
        for child in list(net.trunk.children())[:blocks]:
            params.extend(child.parameters())
    return params


class _StageForward(nn.Module):
    """Gives each stage's computation a ``forward`` so DistributedDataParallel can wrap it."""

    def __init__(self, model: RSEEModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, mode: str, frames: torch.Tensor, **kwargs: Any) -> Any:
        if mode == "warmup":
            # Every pass of a warm-up step in one forward: DistributedDataParallel allows one
            # forward per backward (a parameter must not be marked ready twice).
            flat = frames.flatten(0, 1)
            return {
                "logits": [self.model.uniform_step_logits(frames, index)
                           for index in kwargs["resolution_indices"]],
                "feature_maps": [self.model.frame_feature_map(flat, index)
                                 for index in kwargs.get("distill_indices", ())],
            }
        if mode == "gate":
            with torch.no_grad():
                out = self.model.forward_train(frames, temperature=None)
            previous = torch.cat([torch.zeros_like(out.representations[:, :1]),
                                  out.representations[:, :-1]], 1)
            result = dict(vars(out))
            result["exit_logits"] = self.model.exit_gate(out.representations, previous)
            return result
        # a plain dict, which DistributedDataParallel knows how to search for tensors
        return dict(vars(self.model.forward_train(frames, **kwargs)))


@dataclass
class EpochStats:
    """Running sums for one epoch's log line."""

    loss: float = 0.0
    parts: dict[str, float] | None = None
    correct: int = 0
    seen: int = 0
    gmacs: float = 0.0
    usage: torch.Tensor | None = None
    batches: int = 0

    counts: dict[str, int] | None = None

    def add_parts(self, parts: dict[str, float]) -> None:
        self.parts = self.parts or {}
        self.counts = self.counts or {}
        for key, value in parts.items():
            self.parts[key] = self.parts.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1

    def mean_parts(self) -> dict[str, float]:
        """Each loss part averaged over the batches that computed it."""
        return {k: round(v / (self.counts or {})[k], 4) for k, v in (self.parts or {}).items()}


class Trainer:
    """Runs the stages of one training configuration."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        init: str | None = None,
        progress: bool = True,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.config = config
        self.init = init
        self.progress = progress
        self.echo = echo
        self.world_size = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        self.distributed = self.world_size > 1
        if self.distributed and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend)
        if config["threads"]:
            torch.set_num_threads(int(config["threads"]))
        device = resolve_device(config["device"])
        if device.type == "cuda" and self.distributed:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        self.device = device
        self.amp_dtype = amp_dtype(config["train"]["amp"], device)
        self._datasets: dict[str, Any] = {}
        self.classes: list[str] = []

    # --------------------------------------------------------------- plumbing
    @property
    def is_main(self) -> bool:
        """Only the first process writes files and logs."""
        return self.rank == 0

    def say(self, text: str) -> None:
        """Log a line (first process only)."""
        if self.is_main:
            self.echo(text)

    def _seed(self, offset: int) -> None:
        seed = int(self.config["seed"]) + offset + 1000 * self.rank
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)

    def dataset(self, subset: str) -> Any:
        """The train or test data set (built once)."""
        if subset not in self._datasets:
            size = self._model_config_preview().max_resolution
            bundle = build_dataset(self.config["data"], subset=subset, size=size,
                                   train=subset == "train", progress=self.progress)
            self._datasets[subset] = bundle.dataset
            self.classes = bundle.classes
        return self._datasets[subset]

    def _model_config_preview(self) -> RSEEConfig:
        return RSEEConfig(num_classes=2, **self.config["model"])

    def loader(self, subset: str, *, shuffle: bool, batch_size: int, epoch: int = 0) -> DataLoader:
        """A data loader over ``subset`` (sharded across processes when distributed)."""
        dataset = self.dataset(subset)
        sampler = None
        if self.distributed:
            sampler = DistributedSampler(dataset, shuffle=shuffle, seed=int(self.config["seed"]))
            sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(int(self.config["seed"]) + epoch)
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
            num_workers=int(self.config["data"].get("workers", 0)), generator=generator,
            drop_last=shuffle and len(dataset) > batch_size,
        )

    def stage_dir(self, stage: str) -> Path:
        """Where a stage keeps its files."""
        return self.config.out_dir / stage

    def final_checkpoint(self) -> Path:
        """The last stage's model, the result of a full run."""
        return self.stage_dir(STAGES[-1]) / "model.pt"

    # ------------------------------------------------------------------ model
    def _starting_model(self, stage: str) -> RSEEModel:
        index = STAGES.index(stage)
        if self.init:
            checkpoint = load_checkpoint(self.init)
            self.classes = checkpoint.class_names
            return checkpoint.model
        if index > 0:
            previous = self.stage_dir(STAGES[index - 1]) / "model.pt"
            if not previous.is_file():
                raise FileNotFoundError(
                    f"{previous}: stage {stage!r} starts from the {STAGES[index - 1]!r} stage's "
                    "model; run that stage first or pass --init CHECKPOINT"
                )
            checkpoint = load_checkpoint(previous)
            self.classes = checkpoint.class_names
            return checkpoint.model
        self.dataset("train")
        model_config = RSEEConfig(num_classes=len(self.classes), **self.config["model"])
        pretrained = self.config["pretrained"]
        return build_rsee(model_config, pretrained=pretrained)

    def _parameters(self, model: RSEEModel, stage: str, lr: float) -> list[dict[str, Any]]:
        """Trainable parameter groups of a stage; everything else is frozen."""
        selector = list(model.selector.parameters())
        gate = list(model.exit_gate.parameters())
        excluded = {id(p) for p in selector + gate}
        body = [p for p in model.parameters() if id(p) not in excluded]
        groups = {
            "warmup": [{"params": body, "lr": lr}],
            "finetune": [{"params": body, "lr": lr}],
            "gate": [{"params": gate, "lr": lr}],
            "joint": [{"params": body, "lr": lr}, {
                "params": selector,
                "lr": lr * float(self.config["stages"]["joint"].get("selector_lr_scale", 1.0)),
            }],
        }[stage]
        frozen = {id(p) for p in frozen_block_parameters(
            model, int(self.config["train"].get("freeze_blocks") or 0))}
        groups = [{**g, "params": [p for p in g["params"] if id(p) not in frozen]}
                  for g in groups]
        trainable = {id(p) for group in groups for p in group["params"]}
        for p in model.parameters():
            p.requires_grad_(id(p) in trainable)
        return groups

    # ------------------------------------------------------------------- runs
    def run(self, stages: list[str] | None = None, *, force: bool = False) -> Path:
        """Run the given stages (default: all, in order); returns the last model's path."""
        chosen = stages or list(STAGES)
        for stage in chosen:
            if stage not in STAGES:
                raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
        result = self.final_checkpoint()
        for stage in STAGES:
            if stage in chosen:
                result = self.run_stage(stage, force=force)
        return result

    def run_stage(self, stage: str, *, force: bool = False) -> Path:
        """Run (or resume, or skip when done) one stage."""
        folder = self.stage_dir(stage)
        final = folder / "model.pt"
        if final.is_file() and not force:
            self.say(f"[{stage}] already complete: {final}")
            return final
        settings = self.config["stages"][stage]
        epochs = int(settings["epochs"])
        model = self._starting_model(stage).to(self.device)
        params = self._parameters(model, stage, float(settings["lr"]))
        optimizer = torch.optim.SGD(
            params, lr=float(settings["lr"]), momentum=0.9, nesterov=True,
            weight_decay=float(self.config["train"]["weight_decay"]),
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs, 1))
        start_epoch = 0
        state_file = folder / "state.pt"
        if state_file.is_file() and not force:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            start_epoch = int(state["epoch"]) + 1
            self.say(f"[{stage}] resuming after epoch {start_epoch} from {state_file}")
        if stage == "joint" and start_epoch == 0:
            skip_bias = settings.get("skip_bias_init")
            if skip_bias is not None:  # start from a policy that mostly looks at frames
                with torch.no_grad():
                    model.selector.policy.bias[model.config.num_resolutions:] = float(skip_bias)
        self.dataset("train")
        wrapped: nn.Module = _StageForward(model)
        if self.distributed:
            wrapped = nn.parallel.DistributedDataParallel(
                wrapped, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        # loss scaling guards float16 gradients; bfloat16 has float32's range and needs none
        scaler = torch.amp.GradScaler(
            "cuda", enabled=self.device.type == "cuda" and self.amp_dtype == torch.float16
        )
        teacher = self._teacher(model) if stage == "warmup" else None
        for epoch in range(start_epoch, epochs):
            self._seed(epoch + 100 * STAGES.index(stage))
            started = time.perf_counter()
            stats = self._train_epoch(stage, epoch, model, wrapped, optimizer, scaler, teacher)
            scheduler.step()
            self._log_epoch(stage, epoch, epochs, stats, time.perf_counter() - started, model)
            if self.is_main:
                folder.mkdir(parents=True, exist_ok=True)
                torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(), "epoch": epoch},
                           folder / "state.pt.tmp")
                (folder / "state.pt.tmp").replace(state_file)
        if self.is_main:
            metadata = {"stage": stage, "epochs": epochs, "train_config": self.config.to_dict()}
            evaluation = self._quick_eval(model)
            metadata["test"] = evaluation
            self.say(f"[{stage}] test: " + ", ".join(f"{k} {v}" for k, v in evaluation.items()))
            save_checkpoint(final, model.cpu(), self.classes, metadata)
            model.to(self.device)
        if self.distributed:
            dist.barrier()
        return final

    # ---------------------------------------------------------------- epochs
    def _batches(self, stage: str, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batch_size = int(self.config["train"]["batch_size"])
        loader = self.loader("train", shuffle=True, batch_size=batch_size, epoch=epoch)
        limit = self.config["train"].get("max_batches_per_epoch")
        total = min(len(loader), int(limit)) if limit else len(loader)
        bar = tqdm(loader, total=total, desc=f"{stage} {epoch + 1}", leave=False,
                   disable=not (self.progress and self.is_main))
        for index, (frames, labels, _) in enumerate(bar):
            if limit and index >= int(limit):
                break
            yield frames.to(self.device, non_blocking=True), labels.to(self.device)
        bar.close()

    def _train_epoch(
        self,
        stage: str,
        epoch: int,
        model: RSEEModel,
        wrapped: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
        teacher: RSEEModel | None,
    ) -> EpochStats:
        model.train()
        if stage in ("warmup", "finetune", "gate"):
            model.selector.eval()
        if stage == "gate":
            model.eval()
        stats = EpochStats()
        train_cfg = self.config["train"]
        stage_cfg = self.config["stages"][stage]
        if stage in ("joint", "finetune") and not self._exact_estimator(stage):
            # Only the rows whose policy chose a resolution go through its BatchNorm branch, often
            # one or two videos of a batch: their batch statistics are too noisy to normalise
            # with or to update the running ones (measured: Uniform at 56 px fell from 59% to
            # 22% top-1 in one such fine-tuning). The statistics from warm-up stay; the affine
            # parameters still train.
            for module in model.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        uniform = model.flops.uniform_video(model.config.max_resolution,
                                            int(self.config["data"]["frames"]))
        for frames, labels in self._batches(stage, epoch):
            autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype)
                        if self.amp_dtype is not None else nullcontext())
            with autocast:
                loss, parts, logits, extra = self._stage_loss(
                    stage, epoch, model, wrapped, frames, labels, stage_cfg, train_cfg,
                    uniform, teacher,
                )
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]],
                float(train_cfg["grad_clip"]),
            )
            scaler.step(optimizer)
            scaler.update()
            stats.loss += float(loss.detach())
            stats.add_parts(parts)
            stats.correct += int((logits.argmax(-1) == labels).sum())
            stats.seen += len(labels)
            stats.batches += 1
            if "gmacs" in extra:
                stats.gmacs += float(extra["gmacs"].sum())
            if "usage" in extra:
                stats.usage = extra["usage"] if stats.usage is None else stats.usage + extra[
                    "usage"]
        return stats

    def _stage_loss(
        self,
        stage: str,
        epoch: int,
        model: RSEEModel,
        wrapped: nn.Module,
        frames: torch.Tensor,
        labels: torch.Tensor,
        stage_cfg: dict[str, Any],
        train_cfg: dict[str, Any],
        uniform: float,
        teacher: RSEEModel | None,
    ) -> tuple[torch.Tensor, dict[str, float], torch.Tensor, dict[str, torch.Tensor]]:
        step_weight = float(train_cfg["step_loss_weight"])
        steps = frames.shape[1]
        if stage == "warmup":
            total = frames.new_zeros(())
            parts: dict[str, float] = {}
            seen = torch.ones(frames.shape[0], steps, dtype=torch.bool, device=frames.device)
            final_logits = None
            indices = self._warmup_resolutions(model)
            distilling = bool(self.config["distill"].get("enabled"))
            out = wrapped("warmup", frames, resolution_indices=indices, distill_indices=(
                range(1, model.config.num_resolutions) if distilling else ()))
            for index, step_logits in zip(indices, out["logits"], strict=True):
                resolution = model.config.resolutions[index]
                ce = losses.accuracy_loss(step_logits, labels, seen, step_weight)
                total = total + ce
                parts[f"ce{resolution}"] = float(ce.detach())
                if index == 0:
                    final_logits = step_logits[:, -1]
            if distilling:
                distill = self._distillation(model, teacher, frames, out["feature_maps"])
                total = total + float(self.config["distill"]["feature_weight"]) * distill
                parts["distill"] = float(distill.detach())
            total = total / len([k for k in parts if k.startswith("ce")])
            assert final_logits is not None
            return total, parts, final_logits.detach(), {
                "gmacs": torch.full((len(labels),), uniform, device=frames.device)}
        if stage == "gate":
            out = TrainOutput(**wrapped("gate", frames))
            targets = losses.exit_pseudo_labels(
                out.step_logits, labels, float(stage_cfg["base_loss"]),
                float(stage_cfg["cost_per_step"]),
            )
            loss = losses.exit_gate_loss(out.exit_logits, targets, out.processed)
            return loss, {"gate_bce": float(loss.detach()), "exit_pos": float(targets.mean())}, \
                out.step_logits[:, -1].detach(), {"gmacs": out.gmacs.detach()}
        temperature, noise = None, 1.0
        if stage == "joint":
            temperature = losses.gumbel_temperature(
                float(stage_cfg["tau0"]), float(stage_cfg["tau_decay"]), epoch)
            noise = losses.noise_scale(float(stage_cfg["noise_final"]), epoch,
                                       int(stage_cfg["epochs"]))
        out = TrainOutput(**wrapped(
            "train", frames, temperature=temperature, noise_scale=noise,
            compute_all_resolutions=self._exact_estimator(stage)))
        seen = out.processed.cumsum(1) > 0
        ce = losses.accuracy_loss(out.step_logits, labels, seen, step_weight)
        parts = {"ce": float(ce.detach())}
        loss = ce
        if stage == "joint":
            alpha, beta = float(stage_cfg["alpha"]), float(stage_cfg["beta"])
            target = stage_cfg["flops_target"]
            flops = losses.efficiency_loss(
                out.gmacs, uniform, None if target is None else float(target))
            balance = losses.usage_balance_loss(out.decisions, out.looked_at)
            loss = (1 - alpha) * ce + alpha * flops + beta * balance
            parts.update({"flops": float(flops.detach()), "balance": float(balance.detach()),
                          "tau": temperature or 0.0, "noise": noise})
        usage = (out.decisions.detach() * out.looked_at.unsqueeze(-1)).sum((0, 1))
        return loss, parts, out.step_logits[:, -1].detach(), {
            "gmacs": out.gmacs.detach(), "usage": usage}

    def _exact_estimator(self, stage: str) -> bool:
        """Whether ``stage`` runs every resolution for every frame (AR-Net's exact estimator):
        only while the selector learns (joint stage), when ``train.compute_all_resolutions``."""
        return stage == "joint" and bool(self.config["train"]["compute_all_resolutions"])

    def _warmup_resolutions(self, model: RSEEModel) -> list[int]:
        """Resolution indices a warm-up batch trains: all of them, or the highest plus a random
        sample of the others (``train.warmup_resolutions_per_batch``) to save time."""
        count = self.config["train"].get("warmup_resolutions_per_batch")
        indices = list(range(model.config.num_resolutions))
        if not count or int(count) >= len(indices):
            return indices
        others = random.sample(indices[1:], max(int(count) - 1, 0))
        return [0, *sorted(others)]

    # ---------------------------------------------------------- distillation
    def _teacher(self, model: RSEEModel) -> RSEEModel | None:
        distill = self.config["distill"]
        if not distill.get("enabled"):
            return None
        if distill.get("teacher", "self") == "self":
            return None  # the model's own full-resolution pass, detached
        checkpoint = load_checkpoint(distill["teacher"])
        teacher = checkpoint.model.to(self.device).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
        return teacher

    def _distillation(
        self, model: RSEEModel, teacher: RSEEModel | None, frames: torch.Tensor,
        students: list[torch.Tensor],
    ) -> torch.Tensor:
        """ResKD's feature-map term: the lower resolutions' maps (``students``, resolution 1
        onwards) against the full-resolution map of the teacher (or of the model itself)."""
        with torch.no_grad():
            source = teacher or model
            target = source.frame_feature_map(frames.flatten(0, 1), 0)
        total = frames.new_zeros(())
        for student in students:
            total = total + losses.feature_map_distillation(student, target)
        return total / max(len(students), 1)

    # -------------------------------------------------------------- reports
    def _log_epoch(self, stage: str, epoch: int, epochs: int, stats: EpochStats, seconds: float,
                   model: RSEEModel) -> None:
        if not self.is_main or stats.batches == 0:
            return
        batches = stats.batches
        parts = stats.mean_parts()
        record: dict[str, Any] = {
            "stage": stage, "epoch": epoch + 1, "epochs": epochs,
            "loss": round(stats.loss / batches, 4), **parts,
            "train_acc": round(100 * stats.correct / max(stats.seen, 1), 2),
            "gflops_per_video": round(stats.gmacs / max(stats.seen, 1), 4),
            "seconds": round(seconds, 1),
        }
        if stats.usage is not None:
            names = [str(r) for r in model.config.resolutions] + [
                f"skip{s}" for s in model.config.skip_steps]
            total = float(stats.usage.sum()) or 1.0
            record["usage"] = {n: round(float(u) / total, 3)
                               for n, u in zip(names, stats.usage, strict=True)}
        line = " ".join(
            f"{k}={v}" for k, v in record.items() if k not in ("stage", "epoch", "epochs"))
        self.say(f"[{stage}] epoch {epoch + 1}/{epochs} {line}")
        folder = self.stage_dir(stage)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    @torch.no_grad()
    def _quick_eval(self, model: RSEEModel) -> dict[str, float]:
        """Top-1 and GFLOPs on the test subset at the configured exit threshold."""
        model.eval()
        threshold = float(self.config["train"]["eval_threshold"])
        correct = correct_full = seen = 0
        gmacs = 0.0
        loader = self.loader("test", shuffle=False,
                             batch_size=int(self.config["train"]["eval_batch_size"]))
        for frames, labels, _ in loader:
            frames, labels = frames.to(self.device), labels.to(self.device)
            out = model.infer_batch(frames, exit_threshold=threshold)
            full = model.infer_batch(frames, exit_threshold=NEVER_EXIT)
            correct += int((out.probabilities.argmax(-1) == labels).sum())
            correct_full += int((full.probabilities.argmax(-1) == labels).sum())
            gmacs += float(out.gmacs.sum())
            seen += len(labels)
        seen = max(seen, 1)
        return {"top1": round(100 * correct / seen, 2),
                "top1_no_exit": round(100 * correct_full / seen, 2),
                "gflops_per_video": round(gmacs / seen, 4), "threshold": threshold}
