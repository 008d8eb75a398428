"""Calibration on the validation videos (temperature, operating point) and where it is used:
``rsee train`` / ``rsee calibrate``, the pipeline's confidences, the node's exit threshold,
``rsee bench``'s default threshold and ``rsee eval``'s ``ece_calibrated``."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from rsee_ros.cli import main as cli_main
from rsee_ros.data import make_synthetic_dataset
from rsee_ros.data.sources import SyntheticClips
from rsee_ros.engine import engine_for_model
from rsee_ros.evaluation.bench import default_threshold
from rsee_ros.evaluation.metrics import expected_calibration_error
from rsee_ros.model import (
    InferenceSettings,
    RSEEConfig,
    build_rsee,
    load_checkpoint,
    save_checkpoint,
)
from rsee_ros.model.preprocess import frames_to_tensor
from rsee_ros.pipeline.runner import UNKNOWN, PipelineSettings, RecognitionPipeline
from rsee_ros.resources import DEFAULT_CHECKPOINT
from rsee_ros.training.calibration import (
    GRID,
    StepTable,
    calibrate_checkpoint,
    choose_operating_point,
    fit_temperature,
    record_steps,
    sweep,
    validation_data,
)
from rsee_ros.training.config import load_train_config
from rsee_ros.training.temperature import apply_temperature, metadata_temperature
from rsee_ros.training.trainer import Trainer

TINY = ["model.resolutions=[64, 48, 40]", "model.selector_hidden=16", "model.accumulator_hidden=16",
        "model.selector_shares_backbone=true", "pretrained=false"]
CALIBRATION_KEYS = {"temperature", "ece_before", "ece_after", "videos"}
OPERATING_KEYS = {"threshold", "top1", "gflops_per_video", "uniform_top1",
                  "uniform_gflops_per_video", "tolerance", "videos", "split"}


# ----------------------------------------------------------------------- the step table
def _hand_table() -> StepTable:
    """Four videos, three steps, two classes; worked by hand in the test below. Video B skips
    its step 1 (a score there, however high, is never read)."""
    one_hot = {0: [2.0, 0.0], 1: [0.0, 2.0]}
    predictions = [[1, 0, 0], [1, 1, 1], [1, 1, 0], [0, 1, 1]]
    return StepTable(
        logits=np.array([[one_hot[p] for p in row] for row in predictions], np.float32),
        processed=np.array([[1, 1, 1], [1, 0, 1], [1, 1, 1], [1, 1, 1]], bool),
        scores=np.array([[0.6, 0.8, 0.9], [0.5, 0.99, 0.7], [0.95, 0.96, 0.97],
                         [0.4, 0.45, 0.5]]),
        gmacs=np.array([[1, 2, 3], [1, 1.2, 2.2], [1, 2, 3], [1, 2, 3]], float),
        labels=np.array([0, 1, 0, 1]),
    )


# threshold -> (top-1 %, mean GMACs), worked out by hand from _hand_table
HAND = {1.0: (100, 2.8), 0.99: (100, 2.8), 0.97: (100, 2.8), 0.96: (75, 2.55), 0.9: (75, 2.3),
        0.85: (75, 2.3), 0.8: (75, 2.05), 0.7: (75, 2.05), 0.6: (50, 1.8), 0.5: (50, 1.5),
        0.45: (50, 1.25), 0.4: (25, 1.0), 0.3: (25, 1.0)}


def test_every_threshold_from_the_step_table_and_the_operating_point_by_hand() -> None:
    table = _hand_table()
    points = {p["threshold"]: p for p in sweep(table)}
    assert set(points) == set(GRID) and len(GRID) == 71 and GRID[0] == 0.3 and GRID[-1] == 1.0
    for threshold, (top1, gmacs) in HAND.items():
        assert points[threshold]["top1"] == pytest.approx(top1), threshold
        assert points[threshold]["gflops_per_video"] == pytest.approx(gmacs), threshold
    outcome = table.outcome(0.9)
    assert outcome.exit_step.tolist() == [2, 2, 0, 2]
    assert outcome.exited.tolist() == [True, False, True, False]
    # within 5 points of 80%: 75% at the least cost (2.05, thresholds 0.70 to 0.80): the highest
    best, within = choose_operating_point(list(points.values()), 80.0, 5.0)
    assert within and best["threshold"] == 0.8 and best["gflops_per_video"] == pytest.approx(2.05)
    # within 30 points: 50% at 1.25 (thresholds 0.41 to 0.45)
    best, within = choose_operating_point(list(points.values()), 80.0, 30.0)
    assert within and best["threshold"] == 0.45 and best["top1"] == pytest.approx(50)
    # no loss allowed against 100%: the cheapest of the 100% ones, 0.97 to 1.0 (all 2.8): 1.0
    assert choose_operating_point(list(points.values()), 100.0, 0.0) == (points[1.0], True)
    # nothing within: the most accurate, flagged
    best, within = choose_operating_point(list(points.values()), 120.0, 1.0)
    assert not within and best["top1"] == pytest.approx(100) and best["threshold"] == 1.0


@pytest.fixture(scope="module")
def packaged():
    """The packaged model, with its selector pushed towards skips (so skips are exercised), and
    a few synthetic clips of its classes."""
    torch.set_num_threads(1)
    checkpoint = load_checkpoint(DEFAULT_CHECKPOINT)
    with torch.no_grad():
        checkpoint.model.selector.policy.bias[checkpoint.config.num_resolutions:] += 2.0
    clips = SyntheticClips()
    frames = torch.stack([frames_to_tensor(clips.render(a, 1), checkpoint.config.max_resolution)
                          for a in clips.actions[:6]])
    return checkpoint, frames


@pytest.mark.parametrize("gate", ["confidence", "learned"])
def test_one_pass_gives_what_infer_batch_gives_at_every_threshold(packaged, gate: str) -> None:
    checkpoint, frames = packaged
    model, settings = checkpoint.model, InferenceSettings(gate=gate)
    table = record_steps(model, frames, torch.arange(6), settings)
    assert (~table.processed).any()  # some frames skipped
    exited = 0
    for threshold in (0.5, 0.62, 0.8, 0.9, 1.0):
        out = model.infer_batch(frames, settings, exit_threshold=threshold)
        mine = table.outcome(threshold)
        assert mine.exit_step.tolist() == out.exit_step.tolist(), threshold
        assert mine.exited.tolist() == out.exited_early.tolist(), threshold
        assert mine.gmacs == pytest.approx(out.gmacs.numpy(), rel=1e-9), threshold
        assert torch.softmax(torch.from_numpy(mine.logits), -1).numpy() == pytest.approx(
            out.probabilities.numpy(), abs=1e-5), threshold
        exited += int(out.exited_early.sum())
    assert exited > 0  # early exits were exercised


# ------------------------------------------------------------------------ temperature
def test_the_temperature_minimises_the_nll_and_recovers_a_known_one() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(4000, 5)) * 4.0
    true = 2.5
    probabilities = torch.softmax(torch.from_numpy(logits) / true, -1).numpy()
    labels = np.array([rng.choice(5, p=p) for p in probabilities])
    fitted = fit_temperature(logits, labels)
    assert fitted == pytest.approx(true, rel=0.1)

    def nll(t: float) -> float:
        return float(torch.nn.functional.cross_entropy(torch.from_numpy(logits) / t,
                                                       torch.from_numpy(labels)))

    assert nll(fitted) <= min(nll(fitted * 1.02), nll(fitted / 1.02))


def test_apply_temperature_is_softmax_of_the_scaled_logits() -> None:
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 3.0]])
    p = torch.softmax(logits, -1)
    assert apply_temperature(p, 2.0) == pytest.approx(torch.softmax(logits / 2.0, -1), abs=1e-6)
    assert apply_temperature(p, None) is p and apply_temperature(p, 1.0) is p
    assert torch.equal(apply_temperature(p, 0.3).argmax(-1), p.argmax(-1))
    assert metadata_temperature({"calibration": {"temperature": 1.7}}) == 1.7
    for bad in ({}, {"calibration": {"temperature": -1}}, {"calibration": {"temperature": "x"}},
                {"calibration": {"temperature": math.inf}}, None):
        assert metadata_temperature(bad) is None


# ---------------------------------------------------------------- training and the command
@pytest.fixture(scope="module")
def data4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic4")
    make_synthetic_dataset(root, seed=5, num_classes=10, videos_per_class=4, frames_per_video=6,
                           size=72, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, data4: Path) -> tuple[Path, list[str]]:
    """A tiny four-stage run with data.val_fraction (calibrated at its end) and its lines."""
    out = tmp_path_factory.mktemp("run")
    config = load_train_config(Path("config/train_synthetic.yaml"), [
        f"out_dir={out}", f"data.root={data4}", "data.frames=4", f"data.cache_dir={out}/cache",
        "data.val_fraction=0.34", "train.batch_size=4", "train.eval_batch_size=8", *TINY,
        *(f"stages.{s}.epochs=1" for s in ("warmup", "joint", "finetune", "gate"))])
    lines: list[str] = []
    final = Trainer(config, progress=False, echo=lines.append).run()
    return final, lines


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_training_with_val_fraction_calibrates_the_final_model_on_val(trained) -> None:
    final, lines = trained
    checkpoint = load_checkpoint(final)
    calibration, point = (checkpoint.metadata["calibration"],
                          checkpoint.metadata["operating_point"])
    assert set(calibration) == CALIBRATION_KEYS and calibration["videos"] == 10
    assert OPERATING_KEYS <= set(point) and point["split"] == "val" and point["videos"] == 10
    assert point["threshold"] in GRID and point["tolerance"] == 1.0
    assert any(line.startswith("[calibrate] 10 val videos: temperature ") for line in lines)
    # the figures are what the model gives on val at that threshold and as Uniform
    dataset = validation_data(checkpoint, checkpoint.metadata["train_config"]["data"]["root"])
    frames = torch.stack([dataset[i][0] for i in range(len(dataset))])
    labels = torch.tensor([dataset[i][1] for i in range(len(dataset))])
    out = checkpoint.model.infer_batch(frames, exit_threshold=point["threshold"])
    uniform = checkpoint.model.infer_batch(frames, policy="uniform", exit_threshold=1.0)
    assert point["top1"] == pytest.approx(
        100 * float((out.probabilities.argmax(-1) == labels).float().mean()))
    assert point["gflops_per_video"] == pytest.approx(float(out.gmacs.mean()), rel=1e-6)
    assert point["uniform_top1"] == pytest.approx(
        100 * float((uniform.probabilities.argmax(-1) == labels).float().mean()))
    final_probabilities = checkpoint.model.infer_batch(frames, exit_threshold=1.0).probabilities
    for key, temperature in (("ece_before", None), ("ece_after", calibration["temperature"])):
        calibrated = apply_temperature(final_probabilities, temperature)
        assert calibration[key] == pytest.approx(
            expected_calibration_error(calibrated.numpy(), labels.numpy()), abs=1e-4), key


def test_rsee_calibrate_writes_a_new_checkpoint_or_in_place(trained, data4, tmp_path,
                                                            capsys) -> None:
    final, _ = trained
    source = tmp_path / "model.pt"
    source.write_bytes(final.read_bytes())
    before = _sha(source)
    out = tmp_path / "calibrated.pt"
    assert cli_main(["calibrate", "--checkpoint", str(source), "--data", str(data4),
                     "--tolerance", "5", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "10 val videos: temperature" in printed and f"wrote {out}" in printed
    assert _sha(source) == before  # --out leaves the original alone
    assert load_checkpoint(out).metadata["operating_point"]["tolerance"] == 5.0
    assert cli_main(["calibrate", "--checkpoint", str(source), "--data", str(data4),
                     "--no-progress"]) == 0
    assert _sha(source) != before and not list(tmp_path.glob("*.tmp"))
    rewritten = load_checkpoint(source)
    assert rewritten.metadata["operating_point"]["tolerance"] == 1.0
    assert rewritten.metadata["train_config"] == load_checkpoint(final).metadata["train_config"]


def test_calibration_never_reads_the_test_split(trained, data4, tmp_path, monkeypatch) -> None:
    from rsee_ros.data import build, datasets

    real_split, real_count = build.load_split, datasets.record_frame_count
    test_names: set[str] = set()

    class NoTest:
        def __init__(self, split) -> None:
            self.split = split
            test_names.update(r.name for r in split.test)

        @property
        def classes(self):
            return self.split.classes

        def subset(self, name: str):
            assert name == "train", f"the {name} subset was read"
            return self.split.subset(name)

    def count(record) -> int:
        assert record.name not in test_names, f"test video {record.name} was read"
        return real_count(record)

    monkeypatch.setattr(build, "load_split", lambda *a, **k: NoTest(real_split(*a, **k)))
    monkeypatch.setattr(datasets, "record_frame_count", count)
    result = calibrate_checkpoint(trained[0], data4, out=tmp_path / "c.pt")
    assert result["calibration"]["videos"] == 10 and len(test_names) == 10


def test_a_checkpoint_without_a_val_subset_is_refused_in_one_line(data4, tmp_path,
                                                                  capsys) -> None:
    config = load_train_config(None, [f"data.root={data4}", "data.frames=4", *TINY])
    model = build_rsee(config.model_config(num_classes=10))
    path = save_checkpoint(tmp_path / "plain.pt", model, [f"c{i}" for i in range(10)],
                           {"train_config": config.to_dict()})
    status = cli_main(["calibrate", "--checkpoint", str(path), "--data", str(data4)])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and err[0].startswith("rsee calibrate: ")
    assert "data.val_fraction" in err[0] and "Traceback" not in err[0]


# ------------------------------------------------------------------------- using them
def test_the_pipeline_reports_calibrated_confidences_but_exits_as_before() -> None:
    checkpoint = load_checkpoint(DEFAULT_CHECKPOINT)
    names = checkpoint.class_names
    plain = engine_for_model(checkpoint.model, names)
    calibrated = engine_for_model(checkpoint.model, names, metadata={
        "calibration": {"temperature": 3.0}})
    clips = SyntheticClips()
    frames = np.concatenate([clips.render(a, 2) for a in clips.actions[:3]])

    def run(engine, **settings):
        pipe = RecognitionPipeline(engine, settings=PipelineSettings(
            window_size=8, exit_threshold=0.7, **settings))
        results = [r for i, f in enumerate(frames) for r in pipe.push("cam", 0.04 * i, f)]
        return pipe, results + pipe.flush()

    pipe, mine = run(calibrated)
    _, theirs = run(plain)
    assert pipe.temperature == 3.0 and RecognitionPipeline(plain).temperature is None
    assert len(mine) == len(theirs) > 1 and any(r.exited_early for r in theirs)
    for a, b in zip(mine, theirs, strict=True):
        assert (a.resolutions, a.exited_early, a.frames_processed, a.gflops) == (
            b.resolutions, b.exited_early, b.frames_processed, b.gflops)
        expected = apply_temperature(torch.tensor(b.probabilities), 3.0)
        assert a.probabilities == pytest.approx(expected.tolist(), abs=1e-6)
        assert a.confidence == pytest.approx(float(expected.max()), abs=1e-6)
        assert a.label == b.label and [n for n, _ in a.top_k] == [n for n, _ in b.top_k]
    # min_confidence compares the calibrated confidence
    a, b = mine[0], theirs[0]
    assert a.confidence < b.confidence
    middle = (a.confidence + b.confidence) / 2
    assert run(calibrated, min_confidence=middle)[1][0].label == UNKNOWN
    assert run(plain, min_confidence=middle)[1][0].label == b.label


def test_bench_and_eval_run_at_the_operating_point_first() -> None:
    train = {"train_config": {"train": {"eval_threshold": 0.8}}}
    assert default_threshold({}) == 0.9
    assert default_threshold(train) == 0.8
    assert default_threshold({**train, "operating_point": {"threshold": 0.55}}) == 0.55


def test_eval_reports_ece_calibrated_for_a_calibrated_checkpoint(trained, data4,
                                                                 tmp_path) -> None:
    from rsee_ros.evaluation.common import threshold_json
    from rsee_ros.evaluation.evaluate import evaluate

    checkpoint = load_checkpoint(trained[0])
    report = evaluate(trained[0], data4, frames=4, max_videos=4, batch_size=4,
                      thresholds=[0.5, 1.0])
    for entry in [*report["rsee"], report["baselines"]["uniform"]]:
        assert 0 <= entry["ece_calibrated"] <= 100 and "ece" in entry
    # its operating point is the calibrated one (rsee eval and rsee bench: default_threshold)
    assert report["operating_point"]["threshold"] == threshold_json(
        checkpoint.metadata["operating_point"]["threshold"])
    plain = tmp_path / "plain.pt"
    metadata = {k: v for k, v in checkpoint.metadata.items()
                if k not in ("calibration", "operating_point")}
    save_checkpoint(plain, checkpoint.model, checkpoint.class_names, metadata)
    report = evaluate(plain, data4, frames=4, max_videos=4, batch_size=4, thresholds=[0.5])
    assert report["rsee"] and all("ece_calibrated" not in e for e in report["rsee"])


@pytest.mark.ros
def test_the_node_defaults_to_the_operating_point(request, tmp_path) -> None:
    pytest.importorskip("rclpy")
    pytest.importorskip("rsee_ros.msg", reason="rsee_ros messages not built (make setup)")
    ros_context = request.getfixturevalue("ros_context")
    from rclpy.parameter import Parameter

    from rsee_ros.ros.node import RseeNode

    config = RSEEConfig(num_classes=3, resolutions=(64, 32), selector_hidden=16,
                        accumulator_hidden=16, selector_shares_backbone=True)
    model = build_rsee(config)
    point = save_checkpoint(tmp_path / "point.pt", model, ["a", "b", "c"],
                            {"operating_point": {"threshold": 0.42}})
    plain = save_checkpoint(tmp_path / "plain.pt", model, ["a", "b", "c"])
    for path, given, value, says in (
        (point, None, 0.42, "the model's operating point"),
        (point, 0.7, 0.7, "given; the model's operating point is 0.42"),
        (plain, None, 0.9, "the default; the model has no operating point"),
    ):
        overrides = [Parameter("checkpoint", value=str(path)), Parameter("engine", value="torch")]
        if given is not None:
            overrides.append(Parameter("exit_threshold", value=given))
        node = RseeNode(context=ros_context, parameter_overrides=overrides)
        try:
            assert node.get_parameter("exit_threshold").value == pytest.approx(value)
            assert node.pipeline.settings.exit_threshold == pytest.approx(value)
            assert node.exit_threshold_source == f"exit_threshold {value:g} ({says}" + (
                " (rsee calibrate))" if path == plain else ")")
        finally:
            node.destroy_node()
