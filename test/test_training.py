"""Training: the stages run, lower the loss, resume, and distillation works (tiny and fast)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rsee_ros.data import make_synthetic_dataset
from rsee_ros.model import load_checkpoint
from rsee_ros.model.selector import gumbel_decision
from rsee_ros.training import STAGES, losses
from rsee_ros.training.config import TrainConfig, load_train_config
from rsee_ros.training.trainer import Trainer, amp_dtype

TINY_MODEL = [
    "model.resolutions=[64, 48, 40]", "model.selector_hidden=16", "model.accumulator_hidden=16",
    "model.selector_shares_backbone=true", "pretrained=false",
]


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    make_synthetic_dataset(root, seed=3, num_classes=10, videos_per_class=2, frames_per_video=6,
                           size=72, progress=False)
    return root


def tiny_overrides(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return [
        f"out_dir={tmp_path / 'run'}", f"data.root={data}", "data.frames=4",
        f"data.cache_dir={tmp_path / 'cache'}", "train.batch_size=4", "train.eval_batch_size=8",
        *TINY_MODEL,
        "stages.warmup.epochs=1", "stages.joint.epochs=1", "stages.finetune.epochs=1",
        "stages.gate.epochs=1", *extra,
    ]


def tiny_config(tmp_path: Path, data: Path, *extra: str):
    return load_train_config(Path("config/train_synthetic.yaml"),
                             tiny_overrides(tmp_path, data, *extra))


def read_log(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "log.jsonl").read_text().splitlines()]


def test_all_stages_run_and_write_checkpoints(tmp_path: Path, tiny_data: Path) -> None:
    config = tiny_config(tmp_path, tiny_data)
    lines: list[str] = []
    final = Trainer(config, progress=False, echo=lines.append).run()
    assert final == tmp_path / "run" / "gate" / "model.pt"
    for stage in STAGES:
        assert (tmp_path / "run" / stage / "model.pt").is_file()
        record = read_log(tmp_path / "run" / stage)[0]
        assert record["stage"] == stage and "train_acc" in record
        assert "gflops_per_video" in record
    joint = read_log(tmp_path / "run" / "joint")[0]
    assert {"ce", "flops", "balance", "tau", "usage"} <= set(joint)
    checkpoint = load_checkpoint(final)
    assert len(checkpoint.class_names) == 10
    assert checkpoint.metadata["stage"] == "gate"
    assert "top1" in checkpoint.metadata["test"]
    assert any(line.startswith("[joint] epoch 1/1") for line in lines)


def test_a_tiny_training_run_lowers_the_loss(tmp_path: Path, tiny_data: Path) -> None:
    config = tiny_config(tmp_path, tiny_data, "stages.warmup.epochs=15", "stages.warmup.lr=0.1",
                         "train.step_loss_weight=0")
    Trainer(config, progress=False, echo=lambda _: None).run(["warmup"])
    losses = [r["loss"] for r in read_log(tmp_path / "run" / "warmup")]
    assert len(losses) == 15
    assert losses[-1] < losses[0] * 0.9, losses


@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_resumes_after_an_interruption(
    tmp_path: Path, tiny_data: Path, stage: str
) -> None:
    config = tiny_config(tmp_path, tiny_data)
    trainer = Trainer(config, progress=False, echo=lambda _: None)
    index = STAGES.index(stage)
    if index:
        trainer.run(list(STAGES[:index]))
    trainer.run_stage(stage)
    (tmp_path / "run" / stage / "model.pt").unlink()  # as if stopped before finishing
    longer = tiny_config(tmp_path, tiny_data, f"stages.{stage}.epochs=2")
    lines: list[str] = []
    Trainer(longer, progress=False, echo=lines.append).run_stage(stage)
    assert any("resuming after epoch 1" in line for line in lines)
    assert [r["epoch"] for r in read_log(tmp_path / "run" / stage)] == [1, 2]
    again: list[str] = []
    Trainer(longer, progress=False, echo=again.append).run_stage(stage)
    assert any("already complete" in line for line in again)


@pytest.mark.parametrize(("stage", "exact", "trained", "train_mode"), [
    ("warmup", False, {"backbone", "accumulator"},
     {"backbone", "backbone-bn", "accumulator", "exit_gate"}),
    ("joint", True, {"backbone", "accumulator", "selector"},
     {"backbone", "backbone-bn", "accumulator", "selector", "exit_gate"}),
    ("joint", False, {"backbone", "accumulator", "selector"},
     {"backbone", "accumulator", "selector", "exit_gate"}),
    ("finetune", True, {"backbone", "accumulator"}, {"backbone", "accumulator", "exit_gate"}),
    ("gate", False, {"exit_gate"}, set()),
])
def test_each_stage_trains_its_parts_in_its_modes(
    stage: str, exact: bool, trained: set[str], train_mode: set[str]
) -> None:
    """What a stage class trains (``requires_grad``) and which modules it puts in train mode;
    the policy stages keep BatchNorm statistics frozen unless every resolution runs (joint with
    the exact estimator only)."""
    from rsee_ros.model import RSEEConfig, build_rsee
    from rsee_ros.training.stages import STAGE_CLASSES

    config = load_train_config(None, [*TINY_MODEL, "train.freeze_blocks=2",
                                      f"train.compute_all_resolutions={str(exact).lower()}"])
    model = build_rsee(RSEEConfig(num_classes=3, **config.model))
    runner = STAGE_CLASSES[stage](config, model)
    groups = runner.parameter_groups()
    runner.begin_epoch(0)
    frozen = {id(p) for child in list(model.backbone.net.trunk.children())[:2]
              for p in child.parameters()}
    grouped = {id(p) for g in groups for p in g["params"]}
    for name, p in model.named_parameters():
        part = name.split(".")[0]
        expected = part in trained and id(p) not in frozen
        assert p.requires_grad == expected == (id(p) in grouped), name
    for name, module in model.named_modules():
        if name and not list(module.children()):
            kind = name.split(".")[0]
            if kind == "backbone" and isinstance(module, torch.nn.BatchNorm2d):
                kind = "backbone-bn"
            assert module.training == (kind in train_mode), name
    if stage == "joint":
        assert groups[1]["lr"] == groups[0]["lr"] * config.stages.joint.selector_lr_scale


def test_the_commands_parse_arguments_without_torch() -> None:
    """``rsee train`` and ``rsee flops`` import torch only when they run."""
    script = ("import argparse, sys\n"
              "from rsee_ros.commands import flops, train\n"
              "for module in (flops, train):\n"
              "    module.add_arguments(argparse.ArgumentParser())\n"
              "assert 'torch' not in sys.modules, sorted(sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=120, env=dict(os.environ, PYTHONPATH=os.getcwd()))
    assert result.returncode == 0, result.stderr


def test_a_stage_alone_needs_the_previous_stage(tmp_path: Path, tiny_data: Path) -> None:
    config = tiny_config(tmp_path, tiny_data)
    with pytest.raises(FileNotFoundError, match="run that stage first"):
        Trainer(config, progress=False).run(["joint"])


def test_distillation_runs(tmp_path: Path, tiny_data: Path) -> None:
    config = tiny_config(tmp_path, tiny_data, "distill.enabled=true")
    Trainer(config, progress=False, echo=lambda _: None).run(["warmup"])
    record = read_log(tmp_path / "run" / "warmup")[0]
    assert record["distill"] > 0


def test_mixed_precision_runs_every_stage(
    tmp_path: Path, tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bfloat16 autocast on CPU takes the same code path as float16 on CUDA (no GPU here)."""
    real_autocast, used = torch.autocast, []

    def recording_autocast(device_type: str, dtype: torch.dtype, **kwargs):
        used.append((device_type, dtype))
        return real_autocast(device_type, dtype=dtype, **kwargs)

    monkeypatch.setattr(torch, "autocast", recording_autocast)
    config = tiny_config(tmp_path, tiny_data, "train.amp=bfloat16", "distill.enabled=true")
    final = Trainer(config, progress=False, echo=lambda _: None).run()
    assert set(used) == {("cpu", torch.bfloat16)}
    assert torch.isfinite(torch.tensor([r["loss"] for stage in STAGES
                                        for r in read_log(tmp_path / "run" / stage)])).all()
    model = load_checkpoint(final).model
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.parametrize(("setting", "device", "expected"), [
    (True, "cpu", None), (True, "cuda", torch.float16), (False, "cuda", None),
    ("bfloat16", "cpu", torch.bfloat16), ("float16", "cuda", torch.float16),
])
def test_amp_setting(setting: object, device: str, expected: torch.dtype | None) -> None:
    assert amp_dtype(setting, torch.device(device)) == expected
    with pytest.raises(ValueError, match="train.amp"):
        amp_dtype("fp8", torch.device(device))


@pytest.mark.parametrize(("override", "message"), [
    ("stages.joint.alhpa=1", "unknown configuration key 'stages.joint.alhpa' "
                             "(did you mean 'stages.joint.alpha'?)"),
    ("train.batch_sise=2", "'train.batch_sise' (did you mean 'train.batch_size'?)"),
    ("seeed=1", "'seeed' (did you mean 'seed'?)"),
    ("model.selector_hiden=8", "'model.selector_hiden' (did you mean 'model.selector_hidden'?)"),
    ("data.augment.flp=true", "'data.augment.flp' (did you mean 'data.augment.flip'?)"),
    ("distill.enabled.x=1", "configuration key 'distill.enabled' must be bool"),
    ("train.nope=1", "unknown configuration key 'train.nope' (known here: train.batch_size"),
])
def test_unknown_keys_are_refused_with_the_closest_known_one(override: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        load_train_config(Path("config/train_synthetic.yaml"), [override])


def test_unknown_key_in_the_yaml_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("stages:\n  finetune: {epochs: 2, lr: 0.001, lr_scale: 2}\n")
    with pytest.raises(ValueError, match="'stages.finetune.lr_scale'"):
        load_train_config(path)


def test_values_are_typed_and_checked() -> None:
    config = load_train_config(None, [
        "stages.warmup.lr=1e-3", "stages.joint.epochs=3.0", "train.amp=bfloat16",
        "stages.joint.flops_target=null", "model.resolutions=[64, 48]", "data.augment.flip=true",
        "data.options={fps: 5}", "data.options.step=2"])
    assert config.stages.warmup.lr == 0.001  # YAML reads 1e-3 as a string
    assert config.stages.joint.epochs == 3 and isinstance(config.stages.joint.epochs, int)
    assert config.train.amp == "bfloat16" and config.stages.joint.flops_target is None
    assert config.model == {"resolutions": [64, 48]}
    assert config.data.augment == {"flip": True}
    assert config.data.options == {"fps": 5, "step": 2}
    for bad, message in [("stages.joint.epochs=abc", "'stages.joint.epochs' must be int"),
                         ("stages.joint.epochs=2.5", "'stages.joint.epochs' must be int"),
                         ("train.compute_all_resolutions=1", "must be bool"),
                         ("threads=[1]", "'threads' must be int or null"),
                         ("stages.joint=3", "'stages.joint' is a section"),
                         ("model.resolutions=[84, 224]", "descending")]:
        with pytest.raises(ValueError, match=re.escape(message)):
            load_train_config(None, [bad])


def test_the_shipped_configuration_and_checkpoint_metadata_read_the_same() -> None:
    """The packaged model's ``train_config`` (written by the untyped configuration) reads back
    as what the YAML file gives today, and is written out unchanged."""
    from rsee_ros.resources import DEFAULT_CHECKPOINT

    stored = load_checkpoint(DEFAULT_CHECKPOINT).metadata["train_config"]
    config = load_train_config(Path("config/train_synthetic.yaml"),
                               ["out_dir=runs/v3b", "threads=1"])
    assert config.to_dict() == stored
    assert TrainConfig.from_dict(stored) == config
    assert config.source == "config/train_synthetic.yaml"
    assert config.stages.of("joint").alpha == 0.3 and config.data.cache_dir == \
        "data/cache/synthetic"


def test_flops_budget_penalises_only_the_cost_above_the_target() -> None:
    gmacs = torch.tensor([0.2, 0.6, 1.0], requires_grad=True)
    plain = losses.efficiency_loss(gmacs, 1.0)
    assert float(plain.detach()) == pytest.approx(0.6)
    budget = losses.efficiency_loss(gmacs, 1.0, target=0.5)
    assert float(budget.detach()) == pytest.approx((0.1 + 0.5) / 3)
    budget.backward()
    # a video already under budget gets no push towards skipping more
    assert gmacs.grad is not None and gmacs.grad.tolist() == pytest.approx([0.0, 1 / 3, 1 / 3])


def test_joint_stage_with_exact_estimator_and_flops_budget(tmp_path: Path, tiny_data: Path) -> None:
    config = tiny_config(tmp_path, tiny_data, "train.compute_all_resolutions=true",
                         "stages.joint.flops_target=0.3", "stages.joint.epochs=2",
                         "stages.joint.noise_final=0.0")
    Trainer(config, progress=False, echo=lambda _: None).run(["warmup", "joint"])
    first, last = read_log(tmp_path / "run" / "joint")[:2]
    assert (first["noise"], last["noise"]) == (1.0, 0.0)
    # the budget: mean(relu(f - 0.3)) of the cost fractions f, between mean(f) - 0.3 and (as
    # every video pays at least its selector looks) below the plain penalty mean(f)
    table = load_checkpoint(tmp_path / "run" / "joint" / "model.pt").model.flops
    fraction = last["gflops_per_video"] / table.uniform_video(64, 4)
    assert fraction - 0.3 - 1e-3 <= last["flops"] < fraction - 1e-4


def test_noise_scale_anneals_the_joint_policy_to_its_argmax() -> None:
    assert losses.noise_scale(0.0, 0, 3) == 1.0 and losses.noise_scale(0.0, 2, 3) == 0.0
    assert losses.noise_scale(0.0, 1, 3) == pytest.approx(0.5)
    assert losses.noise_scale(0.0, 0, 1) == 1.0
    logits = torch.tensor([[0.1, 2.0, -1.0, 0.5]] * 64, requires_grad=True)
    allowed = torch.tensor([True, True, True, False])
    decision = gumbel_decision(logits, allowed, temperature=1.0, noise_scale=0.0)
    assert torch.equal(decision.detach().argmax(-1), torch.ones(64, dtype=torch.long))
    (decision * torch.tensor([1.0, -1.0, 0.0, 0.0])).sum().backward()
    assert logits.grad is not None and logits.grad[:, 1].lt(0).all()  # straight-through
    assert logits.grad[:, 3].eq(0).all()  # a masked action gets nothing
    sampled = gumbel_decision(logits.detach(), allowed, temperature=1.0, noise_scale=1.0)
    assert sampled[:, 3].eq(0).all() and sampled.argmax(-1).unique().numel() > 1


def test_finetune_keeps_the_batchnorm_statistics_of_warmup(tmp_path: Path, tiny_data: Path
                                                           ) -> None:
    config = tiny_config(tmp_path, tiny_data)
    Trainer(config, progress=False, echo=lambda _: None).run(["warmup", "joint", "finetune"])

    def running_stats(stage: str) -> dict[str, torch.Tensor]:
        state = load_checkpoint(tmp_path / "run" / stage / "model.pt").model.state_dict()
        return {k: v.float() for k, v in state.items() if k.endswith("running_mean")}

    joint, finetuned = running_stats("joint"), running_stats("finetune")
    assert joint and joint.keys() == finetuned.keys()
    assert all(torch.equal(joint[k], finetuned[k]) for k in joint)


@pytest.mark.slow
def test_distributed_training_with_torchrun(tmp_path: Path, tiny_data: Path) -> None:
    """The same command under torchrun: two CPU processes (gloo), DistributedDataParallel."""
    torchrun = Path(sys.executable).with_name("torchrun")
    overrides = tiny_overrides(tmp_path, tiny_data, "distill.enabled=true")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "rsee_ros.cli", "train",
         "--config", "config/train_synthetic.yaml", "--no-progress", *overrides],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for stage in STAGES:
        assert (tmp_path / "run" / stage / "model.pt").is_file()
        assert len(read_log(tmp_path / "run" / stage)) == 1  # one log line per epoch (rank 0)
    assert "distill" in read_log(tmp_path / "run" / "warmup")[0]
    assert len(load_checkpoint(tmp_path / "run" / "gate" / "model.pt").class_names) == 10
