"""The staged trainer: warm-up, joint training, fine-tuning, then exit-gate training.

Each stage writes ``<out_dir>/<stage>/state.pt`` after every epoch (weights, optimiser, epoch;
plain data only, loaded with ``weights_only=True``) and ``<out_dir>/<stage>/model.pt`` (an
rsee_ros checkpoint, tested on the test subset) when it completes. A stage starts from the
previous stage's ``model.pt`` (or ``init``), resumes from its own ``state.pt`` and is skipped
when its ``model.pt`` exists. :meth:`Trainer.check` finds the user's mistakes (data, stages,
checkpoints) before anything trains; :attr:`Trainer.position` says what is saved where when a run
is stopped (files are written whole: :class:`~rsee_ros.training.interrupts.SignalGuard`). With
``data.val_fraction`` > 0 the final model is calibrated on the held-out videos
(:mod:`rsee_ros.training.calibration`) after the gate stage.
What a stage trains and how is its class in :mod:`rsee_ros.training.stages`; the trainer runs
any of them the same way. Runs on CPU or CUDA (mixed precision on CUDA, ``train.amp``), and
under ``torchrun`` with DistributedDataParallel by the same command.
"""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler
from tqdm import tqdm

from rsee_ros.data.build import build_dataset
from rsee_ros.model import (
    RSEEModel,
    build_rsee,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
)
from rsee_ros.training.config import TrainConfig
from rsee_ros.training.epoch_stats import EpochStats
from rsee_ros.training.interrupts import Progress, SignalGuard
from rsee_ros.training.quick_eval import quick_eval
from rsee_ros.training.stage_names import STAGES
from rsee_ros.training.stages import STAGE_CLASSES, Stage

__all__ = ["EpochStats", "Trainer", "amp_dtype"]

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


class _StageForward(nn.Module):
    """Gives a stage's computation a ``forward`` so DistributedDataParallel can wrap it."""

    def __init__(self, model: RSEEModel, stage: Stage) -> None:
        super().__init__()
        self.model = model
        self.stage = stage

    def forward(self, frames: torch.Tensor, **inputs: Any) -> dict[str, Any]:
        return self.stage.forward(frames, **inputs)


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
        if config.threads:
            torch.set_num_threads(config.threads)
        device = resolve_device(config.device)
        if device.type == "cuda" and self.distributed:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            device = torch.device("cuda", local)
        self.device = device
        self.amp_dtype = amp_dtype(config.train.amp, device)
        self._datasets: dict[str, Any] = {}
        self.classes: list[str] = []
        self.guard = SignalGuard()
        self.position = Progress(Path(config.out_dir))
        self.trained: set[str] = set()
        """The stages that trained (or tested and saved) in this trainer's runs."""

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
        seed = self.config.seed + offset + 1000 * self.rank
        random.seed(seed)
        np.random.seed(seed % (2**32))
        torch.manual_seed(seed)

    def dataset(self, subset: str) -> Any:
        """The train, val or test data set (built once)."""
        if subset not in self._datasets:
            size = self.config.model_config(num_classes=2).max_resolution
            bundle = build_dataset(self.config.data, subset=subset, size=size,
                                   train=subset == "train", progress=self.progress)
            self._datasets[subset] = bundle.dataset
            self.classes = bundle.classes
        return self._datasets[subset]

    def loader(self, subset: str, *, shuffle: bool, batch_size: int, epoch: int = 0) -> DataLoader:
        """A data loader over ``subset`` (sharded across processes when distributed)."""
        dataset = self.dataset(subset)
        sampler = None
        if self.distributed:
            sampler = DistributedSampler(dataset, shuffle=shuffle, seed=self.config.seed)
            sampler.set_epoch(epoch)
        generator = torch.Generator().manual_seed(self.config.seed + epoch)
        return DataLoader(
            dataset, batch_size=batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
            num_workers=self.config.data.workers, generator=generator,
            drop_last=shuffle and len(dataset) > batch_size,
        )

    def stage_dir(self, stage: str) -> Path:
        """Where a stage keeps its files."""
        return Path(self.config.out_dir) / stage

    def final_checkpoint(self) -> Path:
        """The last stage's model, the result of a full run."""
        return self.stage_dir(STAGES[-1]) / "model.pt"

    def _previous_model(self, stage: str) -> Path:
        """The model ``stage`` starts from: the previous stage's (``FileNotFoundError`` saying
        what to do when it is not there)."""
        previous_stage = STAGES[STAGES.index(stage) - 1]
        previous = self.stage_dir(previous_stage) / "model.pt"
        if not previous.is_file():
            raise FileNotFoundError(
                f"{previous}: stage {stage!r} starts from the {previous_stage!r} stage's "
                "model; run that stage first or pass --init CHECKPOINT"
            )
        return previous

    def _starting_model(self, stage: str) -> RSEEModel:
        index = STAGES.index(stage)
        if self.init:
            checkpoint = load_checkpoint(self.init)
            self.classes = checkpoint.class_names
            return checkpoint.model
        if index > 0:
            checkpoint = load_checkpoint(self._previous_model(stage))
            self.classes = checkpoint.class_names
            return checkpoint.model
        self.dataset("train")
        model_config = self.config.model_config(num_classes=len(self.classes))
        self._seed(-1)  # the new parts' initial weights follow the configuration's seed
        return build_rsee(model_config, pretrained=self.config.pretrained)

    # ------------------------------------------------------------------- runs
    @staticmethod
    def _chosen(stages: list[str] | None) -> list[str]:
        """The stages to run, in training order (``ValueError`` for an unknown one)."""
        chosen = stages or list(STAGES)
        for stage in chosen:
            if stage not in STAGES:
                raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
        return [s for s in STAGES if s in chosen]

    def check(self, stages: list[str] | None = None, *, force: bool = False) -> None:
        """Raise what a run of ``stages`` would fail on before training anything: an unknown
        stage, an unreadable ``init``, a stage whose predecessor has no model (nor runs
        before it), a data set that cannot be read or a subset that is empty (the ones the
        run reads: train, test, and val with ``data.val_fraction``), data classes that are
        not the starting checkpoint's."""
        chosen = self._chosen(stages)
        pending = [s for s in chosen if force or not (self.stage_dir(s) / "model.pt").is_file()]
        starts: list[Path] = [Path(self.init)] if self.init and pending else []
        for stage in pending if not self.init else []:
            index = STAGES.index(stage)
            if index and STAGES[index - 1] not in pending:
                starts.append(self._previous_model(stage))
        calibrate = self.config.data.val_fraction > 0 and STAGES[-1] in chosen
        root = Path(self.config.data.root)
        if (pending or calibrate) and not root.exists():
            raise FileNotFoundError(f"{root}: data.root not found (a {self.config.data.kind} "
                                    "data set)")
        subsets = (["train", "test"] if pending else []) + (["val"] if calibrate else [])
        for subset in subsets:
            self.dataset(subset)
        for start in starts:
            names = load_checkpoint(start).class_names
            if subsets and names != self.classes:
                raise ValueError(f"{self.config.data.root}: the data set's classes "
                                 f"{self.classes[:5]}... differ from {start}'s {names[:5]}...")

    def run(self, stages: list[str] | None = None, *, force: bool = False) -> Path:
        """Run the given stages (default: all, in order); returns the last model's path. When
        the gate stage is among them and ``data.val_fraction`` > 0, its model is calibrated
        (if it trained now or is not calibrated yet)."""
        chosen = self._chosen(stages)
        result = self.final_checkpoint()
        for stage in chosen:
            result = self.run_stage(stage, force=force)
        if self.config.data.val_fraction > 0 and STAGES[-1] in chosen and self.is_main:
            self.calibrate(result, again=STAGES[-1] in self.trained)
        return result

    def calibrate(self, path: Path, *, again: bool = True) -> dict[str, Any] | None:
        """Calibrate the checkpoint ``path`` on the val subset in place (skipped when it is
        calibrated already, unless ``again``); returns the result, None when skipped."""
        from rsee_ros.training.calibration import calibrate_file, describe_calibration

        checkpoint = load_checkpoint(path, device=self.device)
        if not again and "calibration" in checkpoint.metadata:
            self.say(f"[calibrate] already calibrated: {path}")
            return None
        self.position.calibrating = path
        result = calibrate_file(checkpoint, self.dataset("val"),
                                tolerance=self.config.train.calibration_tolerance,
                                batch_size=self.config.train.eval_batch_size,
                                workers=self.config.data.workers, saving=self.guard.deferred)
        self.position.calibrating = None
        self.say("[calibrate] " + describe_calibration(result))
        return result

    def run_stage(self, name: str, *, force: bool = False) -> Path:
        """Run (or resume, or skip when done) one stage."""
        folder = self.stage_dir(name)
        final = folder / "model.pt"
        if final.is_file() and not force:
            self.say(f"[{name}] already complete: {final}")
            return final
        epochs = self.config.stages.of(name).epochs
        model = self._starting_model(name).to(self.device)
        stage = STAGE_CLASSES[name](self.config, model)
        optimizer = torch.optim.SGD(
            stage.parameter_groups(), lr=self.config.stages.of(name).lr, momentum=0.9,
            nesterov=True, weight_decay=self.config.train.weight_decay,
        )
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, max(epochs, 1))
        start_epoch = self._resume(name, model, optimizer, scheduler, force=force)
        self.position.start_stage(name, epochs, folder / "state.pt" if start_epoch else None,
                                  start_epoch)
        if start_epoch == 0:
            stage.prepare()
        self.dataset("train")
        wrapped: nn.Module = _StageForward(model, stage)
        if self.distributed:
            wrapped = nn.parallel.DistributedDataParallel(
                wrapped, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True,
            )
        # loss scaling guards float16 gradients; bfloat16 has float32's range and needs none
        scaler = torch.amp.GradScaler(
            "cuda", enabled=self.device.type == "cuda" and self.amp_dtype == torch.float16
        )
        for epoch in range(start_epoch, epochs):
            self.position.epoch = epoch + 1
            self._seed(epoch + 100 * STAGES.index(name))
            started = time.perf_counter()
            stats = self._train_epoch(stage, epoch, wrapped, optimizer, scaler)
            scheduler.step()
            with self.guard.deferred():
                self._log_epoch(name, epoch, epochs, stats, time.perf_counter() - started, model)
                if self.is_main:
                    folder.mkdir(parents=True, exist_ok=True)
                    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                "scheduler": scheduler.state_dict(), "epoch": epoch},
                               folder / "state.pt.tmp")
                    (folder / "state.pt.tmp").replace(folder / "state.pt")
                self.position.saved, self.position.saved_epochs = folder / "state.pt", epoch + 1
        self.position.epoch = 0
        if self.is_main:
            self._save(name, epochs, model, final)
        self.trained.add(name)
        if self.distributed:
            dist.barrier()
        return final

    def _resume(self, name: str, model: RSEEModel, optimizer: torch.optim.Optimizer,
                scheduler: Any, *, force: bool) -> int:
        """Load the stage's saved state, if any (and not ``force``); the epoch to start at."""
        state_file = self.stage_dir(name) / "state.pt"
        if not state_file.is_file() or force:
            return 0
        state = torch.load(state_file, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"]) + 1
        self.say(f"[{name}] resuming after epoch {start_epoch} from {state_file}")
        return start_epoch

    def _save(self, name: str, epochs: int, model: RSEEModel, final: Path) -> None:
        """Test the stage's model and write its checkpoint (with the resolved configuration)."""
        metadata: dict[str, Any] = {"stage": name, "epochs": epochs,
                                    "train_config": self.config.to_dict()}
        evaluation = self._quick_eval(model, uniform=name == STAGES[0])
        metadata["test"] = evaluation
        label = ("test (Uniform: every frame at "
                 f"{model.config.max_resolution} px, no exit)" if name == STAGES[0] else "test")
        self.say(f"[{name}] {label}: " + ", ".join(
            f"{k} {v}" for k, v in evaluation.items() if k not in ("method", "resolution")))
        with self.guard.deferred():
            save_checkpoint(final, model.cpu(), self.classes, metadata)
            self.position.saved, self.position.saved_epochs = final, epochs
        model.to(self.device)

    # ---------------------------------------------------------------- epochs
    def _batches(self, stage: str, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        batch_size = self.config.train.batch_size
        loader = self.loader("train", shuffle=True, batch_size=batch_size, epoch=epoch)
        limit = self.config.train.max_batches_per_epoch
        total = min(len(loader), limit) if limit else len(loader)
        bar = tqdm(loader, total=total, desc=f"{stage} {epoch + 1}", leave=False,
                   disable=not (self.progress and self.is_main))
        for index, (frames, labels, _) in enumerate(bar):
            if limit and index >= limit:
                break
            yield frames.to(self.device, non_blocking=True), labels.to(self.device)
        bar.close()

    def _train_epoch(
        self,
        stage: Stage,
        epoch: int,
        wrapped: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler,
    ) -> EpochStats:
        stage.begin_epoch(epoch)
        stats = EpochStats()
        for frames, labels in self._batches(stage.name, epoch):
            autocast = (torch.autocast(self.device.type, dtype=self.amp_dtype)
                        if self.amp_dtype is not None else nullcontext())
            with autocast:
                batch = stage.batch_loss(wrapped, frames, labels)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(batch.loss).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(
                [p for g in optimizer.param_groups for p in g["params"]],
                self.config.train.grad_clip,
            )
            scaler.step(optimizer)
            scaler.update()
            stats.add(batch, labels)
        return stats

    # -------------------------------------------------------------- reports
    def _log_epoch(self, stage: str, epoch: int, epochs: int, stats: EpochStats, seconds: float,
                   model: RSEEModel) -> None:
        if not self.is_main or stats.batches == 0:
            return
        record: dict[str, Any] = {"stage": stage, "epoch": epoch + 1, "epochs": epochs,
                                  **stats.means(), "seconds": round(seconds, 1)}
        usage = stats.usage_shares([str(r) for r in model.config.resolutions]
                                   + [f"skip{s}" for s in model.config.skip_steps])
        if usage is not None:
            record["usage"] = usage
        line = " ".join(
            f"{k}={v}" for k, v in record.items() if k not in ("stage", "epoch", "epochs"))
        self.say(f"[{stage}] epoch {epoch + 1}/{epochs} {line}")
        folder = self.stage_dir(stage)
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / "log.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")

    def _quick_eval(self, model: RSEEModel, *, uniform: bool = False) -> dict[str, Any]:
        """The test after a stage (:func:`~rsee_ros.training.quick_eval.quick_eval`)."""
        loader = self.loader("test", shuffle=False, batch_size=self.config.train.eval_batch_size)
        return quick_eval(model, loader, self.config.train.eval_threshold, uniform=uniform)
