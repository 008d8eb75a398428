"""Training: the stages run, lower the loss, resume, and distillation works (tiny and fast)."""

from __future__ import annotations

import json
import math
import os
import random
import re
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import MISSING
from pathlib import Path

import pytest
import torch

from rsee_ros.cli import build_parser, parse_train_arguments
from rsee_ros.cli import main as cli_main
from rsee_ros.data import make_synthetic_dataset
from rsee_ros.data.build import DataConfig, build_dataset, split_validation
from rsee_ros.data.records import VideoRecord
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
    # warm-up trains Uniform (no selector yet): its test says so and measures that
    warmup = load_checkpoint(tmp_path / "run" / "warmup" / "model.pt").metadata["test"]
    assert warmup["method"] == "uniform" and warmup["resolution"] == 64
    assert warmup["gflops_per_video"] == pytest.approx(
        checkpoint.model.flops.uniform_video(64, 4), abs=1e-4)
    assert any(line.startswith("[warmup] test (Uniform: every frame at 64 px, no exit): top1 ")
               for line in lines), lines
    assert any(line.startswith("[gate] test: top1 ") and "threshold 0.9" in line
               for line in lines), lines
    assert "calibration" not in checkpoint.metadata  # no val subset: nothing to calibrate on


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


ADDED_KEYS = {
    "data": {"val_fraction": 0.0}, "train": {"calibration_tolerance": 1.0},
    "stages.joint": {"flops_target_start": None, "exit_in_loop": False, "exit_gate": "model",
                     "exit_threshold": None, "exit_temperature": 0.05, "exit_loss_weight": 0.5},
}
"""Keys added after the packaged model was trained, and their defaults (which keep its recipe)."""


def test_the_shipped_configuration_and_checkpoint_metadata_read_the_same() -> None:
    """The packaged model's ``train_config`` (written by the untyped configuration) reads back
    as what the YAML file gives today, and is written out unchanged."""
    from rsee_ros.resources import DEFAULT_CHECKPOINT

    stored = load_checkpoint(DEFAULT_CHECKPOINT).metadata["train_config"]
    config = load_train_config(Path("config/train_synthetic.yaml"),
                               ["out_dir=runs/v3b", "threads=1"])
    written = config.to_dict()
    for section, keys in ADDED_KEYS.items():  # newer keys, at the defaults of the old recipe
        part = written
        for name in section.split("."):
            part = part[name]
        for key, value in keys.items():
            assert part.pop(key) == value, (section, key)
    assert written == stored
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


TEMPORAL = ("model.selector_blocks=7", "model.temporal_shift=0.25", "model.accumulator=conv_gru",
            "model.accumulator_grid=2")
"""A tiny model with both temporal parts: the shift after a partial look, the spatial
accumulator."""


def test_all_stages_train_a_temporal_model(tmp_path: Path, tiny_data: Path) -> None:
    """Both temporal parts through every stage, with distillation; the result keeps them and
    streams what it decides in a batch."""
    from rsee_ros.model import InferenceSettings, StreamingSession

    config = tiny_config(tmp_path, tiny_data, *TEMPORAL, "distill.enabled=true")
    final = Trainer(config, progress=False, echo=lambda _: None).run()
    assert "distill" in read_log(tmp_path / "run" / "warmup")[0]
    model = load_checkpoint(final).model.eval()
    assert model.config.temporal_shift == 0.25 and model.config.accumulator == "conv_gru"
    assert len(model.backbone.shifts) == 7
    frames = torch.randn(1, 4, 3, 64, 64)
    batched = model.infer_batch(frames, InferenceSettings(exit_threshold=1.0))
    session = StreamingSession(model, exit_threshold=1.0)
    assert [session.push(f).resolution for f in frames[0]] == batched.resolutions[0].tolist()
    assert torch.allclose(session.probabilities, batched.probabilities[0], atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("model", [(), TEMPORAL], ids=["default", "temporal"])
def test_distributed_training_with_torchrun(tmp_path: Path, tiny_data: Path, model: tuple
                                            ) -> None:
    """The same command under torchrun: two CPU processes (gloo), DistributedDataParallel."""
    torchrun = Path(sys.executable).with_name("torchrun")
    overrides = tiny_overrides(tmp_path, tiny_data, "distill.enabled=true", *model)
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


# ------------------------------------------------------------------ validation split
def _records(counts: dict[int, int], root: str = "/videos") -> list[VideoRecord]:
    return [VideoRecord(f"{root}/{label}/v{i}.mp4", label, f"class{label}_v{i}")
            for label, n in counts.items() for i in range(n)]


def test_the_validation_split_is_per_class_deterministic_and_disjoint() -> None:
    records = _records({0: 10, 1: 20, 2: 2, 3: 1})
    train, val = split_validation(records, 0.2)

    def names(chosen: list[VideoRecord]) -> list[str]:
        return [r.name for r in chosen]

    assert not set(names(train)) & set(names(val))
    assert sorted(names(train) + names(val)) == sorted(names(records))
    # 20% of each class, at least one of a class with two videos, never a class's only one
    assert Counter(r.label for r in val) == {0: 2, 1: 4, 2: 1}
    assert names(train) == [n for n in names(records) if n not in set(names(val))]  # order kept
    # the same videos in another order, or under another root, give the same choice
    shuffled = random.Random(1).sample(records, len(records))
    assert set(names(split_validation(shuffled, 0.2)[1])) == set(names(val))
    assert set(names(split_validation(_records({0: 10, 1: 20, 2: 2, 3: 1}, "/elsewhere"),
                                      0.2)[1])) == set(names(val))
    assert split_validation(records, 0.0) == (records, [])
    other = split_validation(records, 0.5)[1]
    assert Counter(r.label for r in other) == {0: 5, 1: 10, 2: 1}


@pytest.fixture(scope="module")
def data4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """10 classes of 4 videos (3 train, 1 test each)."""
    root = tmp_path_factory.mktemp("synthetic4")
    make_synthetic_dataset(root, seed=5, num_classes=10, videos_per_class=4, frames_per_video=6,
                           size=72, progress=False)
    return root


def test_the_val_subset_is_held_out_of_train_and_never_from_test(data4: Path) -> None:
    def names(fraction: float, subset: str) -> list[str]:
        config = DataConfig(root=str(data4), frames=4, val_fraction=fraction)
        bundle = build_dataset(config, subset=subset, size=64, train=False, progress=False)
        return [r.name for r in bundle.dataset.records]

    train, val, test = names(0.34, "train"), names(0.34, "val"), names(0.34, "test")
    assert len(val) == 10 and len(train) == 20 and len(test) == 10  # one of 3 per class
    assert not set(train) & set(val) and not set(test) & (set(train) | set(val))
    assert sorted(train + val) == sorted(names(0.0, "train"))
    assert test == names(0.0, "test")
    assert val == names(0.34, "val")  # deterministic
    with pytest.raises(ValueError, match="data.val_fraction"):
        names(0.0, "val")
    with pytest.raises(ValueError, match=r"data.val_fraction must be in \[0, 1\)"):
        names(1.0, "val")
    with pytest.raises(ValueError, match="data.val_fraction must be in"):
        load_train_config(None, ["data.val_fraction=-0.1"])


# ------------------------------------------------------------------ rsee train, the command
def test_train_overrides_go_anywhere_on_the_line() -> None:
    parser = build_parser(["train"])
    args = parse_train_arguments(parser, [
        "train", "a=1", "--config", "c.yaml", "b.c=2", "--stage", "joint", "d=3", "--stage",
        "gate", "e=[1, 2]", "--force"])
    assert args.overrides == ["a=1", "b.c=2", "d=3", "e=[1, 2]"]
    assert args.stages == ["joint", "gate"] and args.force and args.config == "c.yaml"


def _train_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    try:
        status = cli_main(["train", *argv])
    except SystemExit as exit_:  # argparse's errors
        status = int(exit_.code or 0)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    return status, [line for line in err.splitlines() if line.startswith("rsee train:")]


@pytest.mark.parametrize(("case", "message"), [
    ("no config option", "the following arguments are required: --config"),
    ("missing config", "training configuration not found"),
    ("unknown key", "did you mean 'train.batch_size'?"),
    ("no layout", "no UCF101 layout found"),
    ("no root", "data.root not found"),
    ("empty subset", "the test subset of this folder data set is empty"),
    ("empty val", "the val subset of this synthetic data set is empty"),
    ("stage first", "stage 'joint' starts from the 'warmup' stage's model; run that stage first"),
    ("bad checkpoint", "junk.pt: "),
    ("stray word", "unrecognized arguments: stray (overrides are KEY=VALUE"),
    ("bad stage", "argument --stage: invalid choice: 'bogus'"),
])
def test_train_user_errors_are_one_line_and_exit_2(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str], case: str, message: str
) -> None:
    config = ["--config", "config/train_synthetic.yaml", "--no-progress",
              *tiny_overrides(tmp_path, tiny_data)]
    folder = tmp_path / "folder"
    for name in (tiny_data / "classes.txt").read_text().split()[:2]:  # every video in train
        (folder / name).mkdir(parents=True)
        video = next((tiny_data / name).glob("*.mp4"))
        (folder / name / video.name).symlink_to(video)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    argv = {
        "no config option": ["--no-progress"],
        "missing config": ["--config", str(tmp_path / "none.yaml")],
        "unknown key": [*config, "train.batch_sise=2"],
        "no layout": [*config, "data.kind=ucf101"],
        "no root": [*config, f"data.root={tmp_path / 'nowhere'}"],
        "empty subset": [*config, "data.kind=folder", f"data.root={folder}",
                         "data.options={train_fraction: 1.0}"],
        "empty val": [*config, "data.val_fraction=0.5"],  # one training video per class
        "stage first": [*config, "--stage", "joint"],
        "bad checkpoint": [*config, "--init", str(tmp_path / "junk.pt")],
        "stray word": [*config, "stray"],
        "bad stage": [*config, "--stage", "bogus"],
    }[case]
    status, lines = _train_errors(argv, capsys)
    assert status == 2 and len(lines) == 1 and message in lines[0], (status, lines)
    assert not (tmp_path / "run" / "warmup" / "state.pt").exists()  # nothing trained


def _wait_for(path: Path, text: str, proc: subprocess.Popen, timeout: float = 300.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if path.is_file() and text in path.read_text():
            return
        time.sleep(0.1)
    raise AssertionError(f"{text!r} not in the output: {path.read_text()[-2000:]}")


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_says_what_is_saved_and_the_same_command_resumes(
    tmp_path: Path, tiny_data: Path, capsys: pytest.CaptureFixture[str], signum: int
) -> None:
    argv = ["train", "--config", "config/train_synthetic.yaml",
            *tiny_overrides(tmp_path, tiny_data), "--stage", "warmup", "stages.warmup.epochs=6",
            "--no-progress", "train.max_batches_per_epoch=1"]  # overrides after --stage count
    out, err = tmp_path / "stdout.txt", tmp_path / "stderr.txt"
    with open(out, "w") as stdout, open(err, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "rsee_ros.cli", *argv, "--force"],
                                stdout=stdout, stderr=stderr, env=dict(os.environ))
        try:
            _wait_for(out, "[warmup] epoch 2/6", proc)
            proc.send_signal(signum)
            status = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert status == 130, err.read_text()[-2000:]
    lines = [line for line in err.read_text().splitlines() if line.startswith("rsee train:")]
    assert len(lines) == 1, err.read_text()[-2000:]
    match = re.fullmatch(r"rsee train: interrupted in stage warmup, epoch (\d)/6; saved: warmup "
                         r"after epoch (\d)/6 in (\S+); resume with: (.+)", lines[0])
    assert match, lines[0]
    saved, state = int(match[2]), Path(match[3])
    assert 2 <= saved < 6 and int(match[1]) in (saved, saved + 1)
    assert state == tmp_path / "run" / "warmup" / "state.pt"
    assert torch.load(state, weights_only=True)["epoch"] + 1 == saved  # the file is what it says
    assert match[4] == "rsee " + shlex.join(argv)  # the same line, less --force
    assert [r["epoch"] for r in read_log(tmp_path / "run" / "warmup")] == list(range(1, saved + 1))
    if signum == signal.SIGTERM:
        return
    assert cli_main(shlex.split(match[4])[1:]) == 0
    assert f"[warmup] resuming after epoch {saved}" in capsys.readouterr().out
    assert [r["epoch"] for r in read_log(tmp_path / "run" / "warmup")] == list(range(1, 7))
    assert load_checkpoint(tmp_path / "run" / "warmup" / "model.pt").metadata["epochs"] == 6


# ------------------------------------------------------------------ docs/training.md
def test_docs_training_lists_every_key_with_its_current_default() -> None:
    """The table of docs/training.md is the one the configuration generates (so every key and
    default in it is current), and every key has its meaning written."""
    from dataclasses import fields, is_dataclass

    from rsee_ros.data.transforms import TrainAugment
    from rsee_ros.model.config import RSEEConfig
    from rsee_ros.training import config_docs
    from rsee_ros.training.config import (
        DistillConfig,
        FinetuneSettings,
        GateSettings,
        JointSettings,
        TrainSettings,
        WarmupSettings,
    )

    text = Path("docs/training.md").read_text()
    table = text[text.index(config_docs.BEGIN):text.index(config_docs.END) + len(config_docs.END)]
    assert table == config_docs.config_reference(), (
        "docs/training.md is stale: python -m rsee_ros.training.config_docs docs/training.md")
    for cls in (TrainConfig, DataConfig, TrainSettings, WarmupSettings, JointSettings,
                FinetuneSettings, GateSettings, DistillConfig):
        docs = config_docs.field_docs(cls)
        for item in fields(cls):
            if item.metadata.get("config", True) and not (
                    item.default_factory is not MISSING and is_dataclass(item.default_factory)):
                assert docs.get(item.name), f"{cls.__name__}.{item.name} has no docstring"
    assert set(config_docs.MODEL_KEY_DOCS) == {f.name for f in fields(RSEEConfig)} - {
        "num_classes"}
    assert set(config_docs.AUGMENT_KEY_DOCS) == {f.name for f in fields(TrainAugment)}
    assert "| `data.val_fraction` | `0.0` |" in table and "| `train.batch_size` | `8` |" in table
    readme = Path("README.md").read_text()
    assert "docs/training.md" in readme and "docs/walkthrough.md" in readme


# ------------------------------------------------ joint training with the exit in the loop
LOOP = ["stages.joint.exit_in_loop=true", "stages.joint.exit_threshold=0.5"]


def test_exit_distribution_and_expected_cost_by_hand() -> None:
    hazard = torch.tensor([[0.5, 0.5, 0.9]], requires_grad=True)
    cost = torch.tensor([[1.0, 2.0, 4.0]], requires_grad=True)
    survival, mass = losses.exit_distribution(hazard)
    assert survival[0].tolist() == [1.0, 0.5, 0.25]
    # exit at 0 with 0.5, at 1 with 0.25, and what still runs at the last step reports there
    assert mass[0].tolist() == pytest.approx([0.5, 0.25, 0.25])
    expected = losses.expected_cost(cost, survival)
    assert float(expected.detach()) == pytest.approx(1 + 2 * 0.5 + 4 * 0.25)
    expected.sum().backward()
    # d/dh0 (c0 + c1 (1 - h0) + c2 (1 - h0)(1 - h1)) = -c1 - c2 (1 - h1) = -4; d/dh1 = -c2 (1 - h0)
    assert hazard.grad is not None and hazard.grad[0].tolist() == pytest.approx([-4.0, -2.0, 0.0])
    assert cost.grad is not None and cost.grad[0].tolist() == pytest.approx([1.0, 0.5, 0.25])


def test_a_step_without_a_processed_frame_cannot_exit() -> None:
    scores = torch.tensor([[0.9, 0.9, 0.5]])
    processed = torch.tensor([[1.0, 0.0, 1.0]])
    hazard = losses.soft_exit_hazard(scores, processed, threshold=0.5, temperature=0.1)
    assert hazard[0, 1] == 0 and float(hazard[0, 2]) == pytest.approx(0.5)
    assert float(hazard[0, 0]) == pytest.approx(1 / (1 + math.exp(-4.0)))


def test_the_loss_at_the_exit_weights_each_step_by_its_exit_mass() -> None:
    # two classes; step 0 predicts class 0 surely, step 1 is undecided: CE ln 2
    step_logits = torch.tensor([[[10.0, -10.0], [0.0, 0.0]]], requires_grad=True)
    labels = torch.tensor([0])
    mass = torch.tensor([[0.75, 0.25]])
    loss = losses.expected_exit_loss(step_logits, labels, mass)
    assert float(loss) == pytest.approx(0.75 * math.log1p(math.exp(-20.0)) + 0.25 * math.log(2))
    loss.backward()
    assert step_logits.grad is not None and float(step_logits.grad[0, 1, 0]) == pytest.approx(
        0.25 * -0.5)


def test_the_budget_is_lowered_linearly_over_the_stage() -> None:
    assert [losses.scheduled_budget(0.8, 0.3, e, 3) for e in range(3)] == pytest.approx(
        [0.8, 0.55, 0.3])
    assert losses.scheduled_budget(None, 0.3, 0, 3) == 0.3
    assert losses.scheduled_budget(0.8, 0.3, 0, 1) == 0.3
    assert losses.scheduled_budget(0.8, None, 1, 3) is None


def test_an_unknown_exit_rule_is_refused(tmp_path: Path, tiny_data: Path) -> None:
    config = tiny_config(tmp_path, tiny_data, *LOOP, "stages.joint.exit_gate=sometimes")
    trainer = Trainer(config, progress=False, echo=lambda _: None)
    trainer.run(["warmup"])
    with pytest.raises(ValueError, match="stages.joint.exit_gate must be one of"):
        trainer.run_stage("joint")


def _joint_stage_on_one_batch(tmp_path: Path, tiny_data: Path, gate: str):
    from rsee_ros.model.build import build_rsee
    from rsee_ros.training.stages import JointStage
    from rsee_ros.training.trainer import _StageForward

    config = tiny_config(tmp_path, tiny_data, *LOOP, f"stages.joint.exit_gate={gate}",
                         "stages.joint.epochs=2", "stages.joint.flops_target=0.2",
                         "train.freeze_blocks=0")
    torch.manual_seed(0)
    model = build_rsee(config.model_config(num_classes=3))
    stage = JointStage(config, model)
    return stage, _StageForward(model, stage)


@pytest.mark.parametrize("gate", ["confidence", "learned"])
def test_the_joint_loss_with_the_exit_in_the_loop_falls_on_a_batch(
    tmp_path: Path, tiny_data: Path, gate: str
) -> None:
    stage, wrapped = _joint_stage_on_one_batch(tmp_path, tiny_data, gate)
    optimizer = torch.optim.SGD(stage.parameter_groups(), lr=0.05, momentum=0.9)
    stage.begin_epoch(1)  # the last of two epochs: the argmax policy, no Gumbel noise
    generator = torch.Generator().manual_seed(1)
    frames = torch.rand(6, 4, 3, 72, 72, generator=generator)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    history = []
    for _ in range(25):
        batch = stage.batch_loss(wrapped, frames, labels)
        optimizer.zero_grad()
        batch.loss.backward()
        optimizer.step()
        history.append(float(batch.loss.detach()))
    assert {"ce_exit", "expected_gflops", "flops", "budget"} <= set(batch.parts)
    assert batch.parts["expected_gflops"] <= float(batch.gmacs.mean()) + 1e-6
    assert sum(history[-5:]) < sum(history[:5]) * 0.8, history


@pytest.mark.parametrize(("gate", "gate_trains"), [("confidence", False), ("learned", True)])
def test_the_joint_stage_with_the_exit_in_the_loop_resumes_and_lowers_its_budget(
    tmp_path: Path, tiny_data: Path, gate: str, gate_trains: bool
) -> None:
    extra = [*LOOP, f"stages.joint.exit_gate={gate}", "stages.joint.flops_target=0.3",
             "stages.joint.flops_target_start=0.9"]
    trainer = Trainer(tiny_config(tmp_path, tiny_data, *extra), progress=False,
                      echo=lambda _: None)
    trainer.run(["warmup"])
    before = load_checkpoint(tmp_path / "run" / "warmup" / "model.pt").model.exit_gate
    trainer.run_stage("joint")
    (tmp_path / "run" / "joint" / "model.pt").unlink()  # as if stopped after epoch 1
    longer = tiny_config(tmp_path, tiny_data, *extra, "stages.joint.epochs=3")
    lines: list[str] = []
    Trainer(longer, progress=False, echo=lines.append).run_stage("joint")
    assert any("resuming after epoch 1" in line for line in lines)
    log = read_log(tmp_path / "run" / "joint")
    assert [r["epoch"] for r in log] == [1, 2, 3]
    # the first epoch ran as a one-epoch stage (its budget the final one); the resumed stage
    # lowers it from 0.9 to 0.3 over three epochs
    assert [r["budget"] for r in log] == pytest.approx([0.3, 0.6, 0.3])
    # the expected cost counts exits: never above the cost of running every frame
    assert all(r["expected_gflops"] <= r["gflops_per_video"] + 1e-6 for r in log)
    after = load_checkpoint(tmp_path / "run" / "joint" / "model.pt").model.exit_gate
    changed = any(not torch.equal(a, b) for a, b in zip(
        before.state_dict().values(), after.state_dict().values(), strict=True))
    assert changed == gate_trains
