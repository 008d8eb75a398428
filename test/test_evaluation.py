"""``rsee eval`` / ``rsee bench`` end to end on a tiny random model and a tiny synthetic set, and
the metrics on hand-made cases."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread

from rsee_ros.cli import main
from rsee_ros.commands.eval import parse_baselines
from rsee_ros.data import make_synthetic_dataset
from rsee_ros.evaluation.common import NEVER, jsonable, parse_threshold, threshold_json
from rsee_ros.evaluation.comparisons import curve_comparisons
from rsee_ros.evaluation.data import spread_indices
from rsee_ros.evaluation.evaluate import operating_entry
from rsee_ros.evaluation.formatting import Column, number, percent, table, target_line, verdict
from rsee_ros.evaluation.methods import (
    BENCH_METHODS,
    bench_methods,
    builtin_groups,
    builtin_methods,
    checkpoint_methods,
)
from rsee_ros.evaluation.metrics import (
    average_precision,
    calibration_error,
    confusion_matrix,
    exit_step_histogram,
    expected_calibration_error,
    frame_accounting,
    mean_average_precision,
    per_class_table,
    resolution_histogram,
    top1_accuracy,
)
from rsee_ros.evaluation.streaming import StreamRunner
from rsee_ros.model import RSEEConfig, build_rsee, save_checkpoint

FRAMES = 8
RESOLUTIONS = (64, 48, 40)
CONFIG = RSEEConfig(num_classes=10, resolutions=RESOLUTIONS, selector_hidden=16,
                    accumulator_hidden=16, gate_hidden=8)
PER_ENTRY = {
    "method", "policy", "threshold", "num_videos", "top1", "map", "gflops_per_video",
    "frames_processed", "resolution_histogram", "exit_step_histogram", "frames_per_s",
    "videos_per_s", "seconds", "frame_accounting", "exited_early_fraction", "action_histogram",
}
BASELINES = {"uniform", "uniform_48", "uniform_40", "uniform_first_frame", "random",
             "resolution_only", "exit_only", "warm"}


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    torch.set_num_threads(1)  # tiny model on a shared CPU: more threads only add contention
    root = tmp_path_factory.mktemp("evaluation")
    info = make_synthetic_dataset(root / "synthetic", 0, num_classes=10, videos_per_class=2,
                                  frames_per_video=FRAMES, size=64, progress=False)
    torch.manual_seed(0)
    model = build_rsee(CONFIG).eval()
    train_config = {"data": {"kind": "synthetic", "options": {}},
                    "train": {"eval_threshold": 0.5}}
    ckpt = save_checkpoint(root / "rsee.pt", model, info.classes,
                           {"stage": "gate", "train_config": train_config})
    warm = save_checkpoint(root / "warm.pt", model, info.classes, {"stage": "warmup"})
    return {"root": root, "data": root / "synthetic", "ckpt": ckpt, "warm": warm}


# ----------------------------------------------------------------------------------- metrics


def test_average_precision_hand_made() -> None:
    # ranks 1 and 3 are positive: AP = 0.5 * 1 + 0.5 * 2/3
    assert average_precision([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0]) == pytest.approx(5 / 6)
    assert average_precision([0.1, 0.2, 0.3], [0, 0, 1]) == pytest.approx(1.0)
    # tied scores form one threshold: precision 1/2 at recall 1
    assert average_precision([0.5, 0.5], [1, 0]) == pytest.approx(0.5)
    assert math.isnan(average_precision([0.3, 0.2], [0, 0]))


def test_map_and_top1() -> None:
    scores = np.array([[0.9, 0.1, 0.0], [0.6, 0.4, 0.0], [0.2, 0.8, 0.0], [0.7, 0.3, 0.0]])
    labels = np.array([0, 1, 1, 0])
    assert top1_accuracy(scores, labels) == pytest.approx(75.0)
    # class 0: scores .9 .6 .2 .7 -> positives ranked 1, 2 -> AP 1; class 1: .1 .4 .8 .3 ->
    # positives ranked 1, 2 -> AP 1; class 2 has no positive and is left out
    assert mean_average_precision(scores, labels) == pytest.approx(100.0)
    labels = np.array([0, 1, 0, 1])
    ap0 = 0.5 * 1 + 0.5 * 2 / 4  # class 0 ranks .9(+) .7 .6 .2(+)
    ap1 = 0.5 * 1 / 2 + 0.5 * 2 / 3  # class 1 ranks .8 .4(+) .3(+) .1
    assert mean_average_precision(scores, labels) == pytest.approx(100 * (ap0 + ap1) / 2)


def test_histograms() -> None:
    resolutions = np.array([[64, 0, 40, 0], [48, 0, 0, 0]])
    looked = np.array([[True, True, True, False], [True, False, False, False]])
    exit_step = np.array([3, 0])
    exited = np.array([False, True])
    assert resolution_histogram(resolutions, looked, RESOLUTIONS) == {
        "64": 1, "48": 1, "40": 1, "skip": 1}
    assert frame_accounting(resolutions, looked, exit_step, exited) == {
        "processed": 3, "skipped": 1, "inside_skip": 1, "after_exit": 3}
    assert exit_step_histogram(exit_step, exited, 4) == {
        "0": 1, "1": 0, "2": 0, "3": 0, "none": 1}


def test_calibration_error_hand_made() -> None:
    # 15 bins of width 1/15: 0.95 lies in (14/15, 1], 0.55 in (8/15, 9/15]. The two videos at
    # 0.95 are half right (|0.5 - 0.95| = 0.45), the two at 0.55 both right (|1 - 0.55| = 0.45):
    # ECE = 2/4 * 0.45 + 2/4 * 0.45 = 45 points
    assert calibration_error([0.95, 0.95, 0.55, 0.55], [1, 0, 1, 1]) == pytest.approx(45.0)
    # a bin edge belongs to the bin below it, 0 to the first bin: 1/15 and 0 share bin 1 (both
    # right, mean confidence 1/30), 1.0 is alone in bin 15 and wrong
    expected = 100 * (2 / 3 * (1 - 1 / 30) + 1 / 3 * 1.0)
    assert calibration_error([1 / 15, 0.0, 1.0], [1, 1, 0]) == pytest.approx(expected)
    # all four at 0.75 (bin (11/15, 12/15]) and 3 of 4 right: calibrated, ECE 0
    assert calibration_error([0.75] * 4, [1, 1, 1, 0]) == pytest.approx(0.0)
    # one bin: |accuracy - mean confidence| over all videos
    assert calibration_error([0.9, 0.5], [1, 0], bins=1) == pytest.approx(100 * abs(0.5 - 0.7))
    # from probabilities: the top-1 confidence and whether it is the label
    probabilities = np.array([[0.95, 0.05], [0.05, 0.95], [0.45, 0.55], [0.55, 0.45]])
    assert expected_calibration_error(probabilities, [0, 0, 1, 0]) == pytest.approx(45.0)
    assert math.isnan(calibration_error([], []))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibration_error([1.5], [1])
    with pytest.raises(ValueError, match="2 confidences but 1"):
        calibration_error([0.5, 0.5], [1])


def test_per_class_table_and_confusion_matrix() -> None:
    predicted, labels = np.array([0, 1, 1, 0, 2]), np.array([0, 1, 0, 0, 1])
    frames, gflops = np.array([4, 8, 2, 6, 10]), np.array([0.4, 0.8, 0.2, 0.6, 1.0])
    table = per_class_table(predicted, labels, frames, gflops, ["a", "b", "c"])
    assert list(table) == ["a", "b", "c"]
    assert table["a"] == pytest.approx({"videos": 3, "top1": 200 / 3, "frames_processed": 4.0,
                                        "gflops_per_video": 0.4})
    assert table["b"] == pytest.approx({"videos": 2, "top1": 50.0, "frames_processed": 9.0,
                                        "gflops_per_video": 0.9})
    assert table["c"]["videos"] == 0 and math.isnan(table["c"]["top1"])
    assert confusion_matrix(predicted, labels, 3).tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 0]]


def test_helpers() -> None:
    assert parse_threshold("0.7") == 0.7 and parse_threshold(0.0) == 0.0
    for never in ("inf", "never", " Never ", "1", 1.0):
        assert parse_threshold(never) == NEVER == 1.0
    for bad in ("-1", "1.5", "nan", "2"):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            parse_threshold(bad)
    assert threshold_json(NEVER) == "inf" and threshold_json(0.9) == 0.9
    assert jsonable({"a": math.nan, "b": (math.inf, np.float32(1.5))}) == {
        "a": None, "b": ["inf", 1.5]}
    assert spread_indices(10, 3) == [0, 4, 9] and spread_indices(3, None) == [0, 1, 2]
    bases = parse_baselines(["x/u.pt"], ["fe=a/b.pt:exit", "ar=c.pt"])
    assert [(b.name, b.path, b.mode) for b in bases] == [
        ("u", "x/u.pt", None), ("fe", "a/b.pt", "exit"), ("ar", "c.pt", None)]


def test_never_is_the_models_never_exit() -> None:
    from rsee_ros.model.gate import NEVER_EXIT

    assert NEVER == NEVER_EXIT


def test_method_registry() -> None:
    methods = builtin_methods(CONFIG, (0.5, NEVER), seed=3)
    assert [(m.group, m.settings.exit_threshold) for m in methods] == [
        ("rsee", 0.5), ("rsee", NEVER), ("uniform", NEVER), ("uniform_48", NEVER),
        ("uniform_40", NEVER), ("uniform_first_frame", 0.0), ("random", 0.5), ("random", NEVER),
        ("resolution_only", NEVER), ("exit_only", 0.5), ("exit_only", NEVER)]
    assert list(dict.fromkeys(m.group for m in methods)) == builtin_groups(CONFIG)
    by_group = {m.group: m.settings for m in methods}
    assert by_group["uniform"].policy == "uniform" and by_group["uniform"].fixed_resolution == 64
    assert by_group["uniform_40"].fixed_resolution == 40
    assert by_group["random"].policy == "random" and by_group["random"].seed == 3
    assert by_group["resolution_only"].policy == by_group["rsee"].policy == "learned"
    assert by_group["exit_only"].policy == "uniform"
    assert all(m.sweep == (m.group in ("rsee", "random", "exit_only")) for m in methods)
    # rsee bench runs four of the same methods at one threshold, in its round-robin order
    bench = bench_methods(CONFIG, 0.7)
    assert [m.group for m in bench] == list(BENCH_METHODS)
    assert [m.settings for m in bench] == [
        m.settings for m in builtin_methods(CONFIG, (0.7,)) if m.group in BENCH_METHODS]
    warm = checkpoint_methods("warm", CONFIG, "uniform", (0.5,))
    assert [(m.group, m.model, m.settings) for m in warm] == [
        ("warm", "warm", by_group["uniform"])]
    with pytest.raises(ValueError):
        checkpoint_methods("x", CONFIG, "sometimes")


# ------------------------------------------------------------------------------- rsee eval


def test_eval_json_and_plot(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    out, png = setup["root"] / "eval.json", setup["root"] / "eval.png"
    status = main([
        "eval", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["data"]),
        "--frames", str(FRAMES), "--thresholds", "0.2", "inf", "--baseline",
        f"warm={setup['warm']}", "--max-videos", "5", "--batch-size", "5", "--threads", "1",
        "--json", str(out), "--plot", str(png), "--no-progress",
    ])
    assert status == 0
    printed = capsys.readouterr().out
    assert "uniform_first_frame" in printed
    report = json.loads(out.read_text())
    for key in ("checkpoint", "data", "split", "frames", "num_videos", "classes", "machine",
                "rsee", "baselines"):
        assert key in report
    assert report["kind"] == "synthetic"  # from the checkpoint's training config
    assert report["num_videos"] == 5 and report["frames"] == FRAMES
    assert {"cpu", "threads", "torch", "device"} <= set(report["machine"])
    assert [e["threshold"] for e in report["rsee"]] == [0.2, "inf"]
    assert set(report["baselines"]) == BASELINES
    entries = list(report["rsee"])
    for value in report["baselines"].values():
        entries += value if isinstance(value, list) else [value]
    for entry in entries:
        assert PER_ENTRY <= set(entry), PER_ENTRY - set(entry)
        assert entry["num_videos"] == 5 and entry["videos_per_s"] > 0
        assert sum(entry["exit_step_histogram"].values()) == 5
        # the actions split the resolution histogram's skips by their length
        actions, by_resolution = entry["action_histogram"], entry["resolution_histogram"]
        assert list(actions) == ["64", "48", "40", "skip 1", "skip 2", "skip 4"]
        assert all(actions[r] == by_resolution[r] for r in ("64", "48", "40"))
        assert sum(actions[f"skip {k}"] for k in (1, 2, 4)) == by_resolution["skip"]
        assert sum(actions.values()) == pytest.approx(5 * entry["frames_looked_at"])
    base = report["baselines"]
    uniform = base["uniform"]
    assert uniform["frames_processed"] == FRAMES
    assert uniform["resolution_histogram"] == {"64": 5 * FRAMES, "48": 0, "40": 0, "skip": 0}
    lines = printed.splitlines()
    at = lines.index("RSEE actions (share of looked-at frames) per threshold:")
    assert lines[at + 1].split() == ["thr", "frames", "64%", "48%", "40%", "skip", "1%", "skip",
                                     "2%", "skip", "4%"]
    assert [line.split()[0] for line in lines[at + 3:at + 5]] == ["0.20", "inf"]
    assert uniform["gflops_per_video"] == pytest.approx(
        report["uniform_gflops_per_video"]["64"])
    assert base["uniform_40"]["resolution_histogram"]["40"] == 5 * FRAMES
    first = base["uniform_first_frame"]
    assert first["frames_processed"] == 1
    assert first["gflops_per_video"] == pytest.approx(uniform["gflops_per_video"] / FRAMES)
    assert base["resolution_only"]["exited_early_fraction"] == 0
    assert isinstance(base["exit_only"], list) and isinstance(base["random"], list)
    assert base["warm"]["policy"] == "uniform"  # warm-up checkpoint -> Uniform by default
    assert report["baseline_checkpoints"]["warm"]["mode"] == "uniform"
    checks = report["data_set_checks"]
    first_gap = uniform["top1"] - first["top1"]
    low_gap = uniform["top1"] - base["uniform_40"]["top1"]
    assert checks["uniform_first_frame_gap_points"] == pytest.approx(first_gap)
    assert checks["uniform_lowest_gap_points"] == pytest.approx(low_gap)
    assert checks["passed"] is (first_gap >= 10 and low_gap >= 10)
    assert set(report["curve_comparisons"]) == set(base)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000


def _entries(report: dict) -> list[tuple[str, dict]]:
    out = [("rsee", e) for e in report["rsee"]]
    for name, value in report["baselines"].items():
        out += [(name, e) for e in (value if isinstance(value, list) else [value])]
    return out


def test_eval_per_class_per_video_calibration_and_confusion(
    setup: dict[str, Path], capsys: pytest.CaptureFixture
) -> None:
    out, png = setup["root"] / "eval_videos.json", setup["root"] / "confusion.png"
    status = main([
        "eval", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["data"]),
        "--frames", str(FRAMES), "--thresholds", "0.2", "inf", "--max-videos", "7",
        "--batch-size", "3", "--threads", "1", "--exclude", "random", "--json", str(out),
        "--confusion", str(png), "--no-progress",
    ])
    assert status == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    classes, n = report["classes"], report["num_videos"]
    # the checkpoint's eval_threshold 0.5 is not in the sweep: RSEE runs once more there
    point = report["operating_point"]
    assert point["threshold"] == 0.5 and point["rsee_index"] is None
    entry = operating_entry(report)
    assert entry is point["entry"] and entry["method"] == "rsee" and entry["threshold"] == 0.5
    assert [e["threshold"] for e in report["rsee"]] == [0.2, "inf"]  # the sweep as asked
    with_videos = [("rsee", e) for e in report["rsee"]] + [("uniform",
                                                            report["baselines"]["uniform"])]
    for name, e in [*_entries(report), ("operating point", entry)]:
        table = e["per_class"]
        assert list(table) == classes and sum(c["videos"] for c in table.values()) == n
        for field in ("top1", "frames_processed", "gflops_per_video"):
            weighted = sum(c["videos"] * c[field] for c in table.values() if c["videos"]) / n
            assert weighted == pytest.approx(e[field]), (name, field)
        assert ("videos" in e) == (name in ("rsee", "uniform", "operating point")), name
    for name, e in [*with_videos, ("operating point", entry)]:
        videos = e["videos"]
        assert len(videos) == n, name
        assert 100 * np.mean([v["correct"] for v in videos]) == pytest.approx(e["top1"]), name
        assert all(v["correct"] == (v["label"] == v["predicted"]) for v in videos)
        for v in videos:  # the data set's own video, its true class from its class folder
            assert Path(v["path"]).is_relative_to(setup["data"]) and Path(v["path"]).exists()
            assert Path(v["path"]).parent.name == v["label"] and Path(v["path"]).stem == v["video"]
            assert sum(r > 0 for r in v["resolutions"]) == v["frames_processed"]
            assert len(v["resolutions"]) == FRAMES and 0 < v["confidence"] <= 1
        assert np.mean([v["gflops"] for v in videos]) == pytest.approx(e["gflops_per_video"])
        exited = [v["exit_step"] is not None for v in videos]
        assert np.mean(exited) == pytest.approx(e["exited_early_fraction"])
        assert e["ece"] == pytest.approx(calibration_error(
            [v["confidence"] for v in videos], [v["correct"] for v in videos]), abs=1e-3)
    assert len({v["video"] for v in report["baselines"]["uniform"]["videos"]}) == n
    uniform = report["baselines"]["uniform"]["videos"]
    assert all(v["resolutions"] == [RESOLUTIONS[0]] * FRAMES for v in uniform)
    # the per-class table of the operating point is printed, one row per class
    assert "RSEE per class at its operating point (threshold 0.5)" in printed
    for name, row in entry["per_class"].items():
        assert any(line.split()[:2] == [name, str(row["videos"])] for line in printed.splitlines())
    image = imread(png)  # decodes (raises on a file that is no PNG)
    assert image.ndim == 3 and min(image.shape[:2]) > 300


def test_eval_layout_errors_and_confusion_without_rsee(
    setup: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    args = ["eval", "--checkpoint", str(setup["ckpt"]), "--no-progress", "--threads", "1"]
    assert main([*args, "--data", str(tmp_path), "--kind", "ucf101"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"rsee eval: {tmp_path}: no UCF101 layout found: looked for ")
    assert "Traceback" not in err
    assert main([*args, "--data", str(setup["data"]), "--exclude", "rsee", "--confusion",
                 str(tmp_path / "c.png")]) == 2
    assert "do not exclude rsee" in capsys.readouterr().err
    assert main([*args, "--data", str(setup["data"]), "--threshold", "2"]) == 2
    assert "[0, 1]" in capsys.readouterr().err


def test_eval_gate_override(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    out = setup["root"] / "eval_gate.json"
    args = ["eval", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["data"]),
            "--frames", str(FRAMES), "--thresholds", "0.5", "--max-videos", "3",
            "--batch-size", "3", "--threads", "1", "--exclude", "random", "uniform_first_frame",
            "--no-progress"]
    assert main([*args, "--gate", "learned", "--json", str(out)]) == 0
    assert "-> not run" in capsys.readouterr().out  # the check lacks a baseline
    report = json.loads(out.read_text())
    assert report["data_set_checks"]["passed"] is None
    # the operating point (the checkpoint's eval_threshold 0.5) is the sweep's only threshold
    assert report["operating_point"] == {"threshold": 0.5, "rsee_index": 0, "entry": None,
                                         "source": "training"}
    assert operating_entry(report) is report["rsee"][0]
    assert report["rsee"][0]["gate"] == "learned"
    assert report["baselines"]["exit_only"][0]["gate"] == "learned"
    with pytest.raises(SystemExit):
        main([*args, "--gate", "sometimes"])
    capsys.readouterr()


def test_eval_rejects_bad_baseline(setup: dict[str, Path], capsys: pytest.CaptureFixture
                                   ) -> None:
    status = main(["eval", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["data"]),
                   "--baseline", f"uniform={setup['warm']}", "--no-progress"])
    assert status == 2
    assert "already used" in capsys.readouterr().err


# ------------------------------------------------------------------------------ rsee bench


def test_bench_reports_ratios(setup: dict[str, Path], capsys: pytest.CaptureFixture) -> None:
    out = setup["root"] / "bench.json"
    status = main([
        "bench", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["data"]),
        "--frames", str(FRAMES), "--max-videos", "2", "--warmup", "1", "--batch-size", "2",
        "--threads", "1", "--json", str(out), "--no-progress",
    ])
    assert status == 0
    text = capsys.readouterr().out
    report = json.loads(out.read_text())
    assert report["threshold"] == 0.5  # the checkpoint's training eval_threshold
    assert report["backend"] == "pipeline"
    methods = {"rsee", "uniform", "resolution_only", "exit_only"}
    assert set(report["streaming"]) == methods == set(report["batched"])
    for mode in ("streaming", "batched"):
        for entry in report[mode].values():
            assert entry["num_videos"] == 2 and entry["videos_per_s"] > 0
            assert entry["frames_per_s"] > 0 and entry["gflops_per_video"] > 0
    assert report["streaming"]["uniform"]["frames_pushed"] == FRAMES
    assert report["streaming"]["uniform"]["gflops_per_video"] == pytest.approx(
        report["uniform_gflops_per_video"])
    uniform = report["streaming"]["uniform"]
    assert set(report["ratios"]) == {"rsee", "resolution_only", "exit_only"}
    for name, ratios in report["ratios"].items():
        entry = report["streaming"][name]
        assert ratios["gflops_reduction_vs_uniform"] == pytest.approx(
            1 - entry["gflops_per_video"] / uniform["gflops_per_video"])
        assert ratios["throughput_ratio_vs_uniform"] == pytest.approx(
            entry["videos_per_s"] / uniform["videos_per_s"])
        assert ratios["accuracy_delta_points"] == pytest.approx(entry["top1"] - uniform["top1"])
    names = [t["name"] for t in report["targets"]]
    assert names == ["gflops_reduction_vs_uniform", "accuracy_drop_vs_uniform_points",
                     "throughput_ratio_vs_uniform", "ahead_of_resolution_only",
                     "ahead_of_exit_only", "same_decisions_torch", "cost_follows_flops_torch"]
    assert report["engines"]["torch"]["same_decisions_fraction"] == 1.0  # its own reference
    for target in report["targets"]:  # printed with the verdict the report holds
        assert f"{'PASS' if target['passed'] else 'MISS'}  {target['name']}:" in text
    # streaming and batched inference are built to agree on every video
    assert report["agreement"] == {name: 1.0 for name in methods}


def test_bench_compares_another_checkpoint_in_the_same_run(setup: dict[str, Path]) -> None:
    """``--compare``: a temporal-shift version of the model streams Uniform and RSEE in the same
    rotation; its entries are its own (the shift changes predictions, not FLOPs) and the step
    ratios are this run's ms/step quotients."""
    torch.manual_seed(0)
    shifted = build_rsee(RSEEConfig(**{**CONFIG.to_dict(), "temporal_shift": 0.25})).eval()
    other = save_checkpoint(setup["root"] / "shifted.pt", shifted,
                            load_names(setup["ckpt"]), {"stage": "gate"})
    out = setup["root"] / "bench_compare.json"
    assert main([
        "bench", "--checkpoint", str(setup["ckpt"]), "--data", str(setup["data"]),
        "--frames", str(FRAMES), "--max-videos", "2", "--warmup", "1", "--batch-size", "2",
        "--threads", "1", "--compare", str(other), "--json", str(out), "--no-progress",
    ]) == 0
    report = json.loads(out.read_text())
    assert report["compare_checkpoint"] == str(other)
    streaming, engine = report["streaming"], report["engines"]["torch"]
    assert {"compare_uniform", "compare_rsee"} <= set(streaming)
    assert streaming["compare_uniform"]["gflops_per_video"] == pytest.approx(
        streaming["uniform"]["gflops_per_video"])
    ratios = report["compare"]["torch"]
    for method in ("uniform", "rsee"):
        assert ratios[f"{method}_step_ratio"] == pytest.approx(
            engine[method]["ms_per_step"] / engine[f"compare_{method}"]["ms_per_step"])
    assert report["agreement"]["compare_uniform"] == 1.0


def load_names(path: Path) -> list[str]:
    from rsee_ros.model import load_checkpoint

    return list(load_checkpoint(path).class_names)


def test_streaming_matches_batched(setup: dict[str, Path]) -> None:
    """Frames pushed one at a time through the node's pipeline give the decisions, cost and
    prediction of ``infer_batch`` on the whole clip, for every benchmarked method."""
    from rsee_ros.model import load_checkpoint
    from rsee_ros.model.preprocess import frames_to_tensor

    ckpt = load_checkpoint(setup["ckpt"])
    clip = np.random.default_rng(0).integers(0, 256, (FRAMES, 60, 80, 3), dtype=np.uint8)
    batch = frames_to_tensor(clip, ckpt.config.max_resolution)[None]
    for method in bench_methods(ckpt.config, 0.12):
        streamed = StreamRunner(ckpt.model, ckpt.class_names, FRAMES, method.settings).run(clip)
        out = ckpt.model.infer_batch(batch, method.settings)
        pushed = streamed.frames_pushed
        assert pushed == (int(out.exit_step[0]) + 1 if bool(out.exited_early[0]) else FRAMES)
        assert streamed.resolutions == out.resolutions[0, :pushed].tolist(), method.group
        assert streamed.frames_processed == int(out.frames_processed[0])
        assert streamed.gflops == pytest.approx(float(out.gmacs[0]))
        assert streamed.prediction == int(out.probabilities[0].argmax())


def test_curve_comparison_asks_for_fewer_gflops_at_equal_accuracy() -> None:
    def point(threshold: float, top1: float, gflops: float) -> dict:
        return {"threshold": threshold, "top1": top1, "gflops_per_video": gflops}

    rsee = [point(0.5, 80.0, 0.2), point(0.7, 85.0, 0.4), point(0.9, 86.0, 0.6)]
    exit_only = [point(0.5, 82.0, 0.3), point(0.7, 85.0, 0.5), point(0.9, 88.0, 0.55)]
    resolution_only = point("inf", 84.0, 0.9)
    result = curve_comparisons(rsee, {"exit_only": exit_only, "resolution_only": resolution_only})
    ex = result["exit_only"]
    # 80% costs exit-only 0.3 (its cheapest point with >= 80%), 85% 0.5, 86% only 0.55 < 0.6
    assert [p["exit_only_gflops"] for p in ex["points"]] == [0.3, 0.5, 0.55]
    assert [p["ahead"] for p in ex["points"]] == [True, True, False]
    assert ex["ahead_up_to_top1"] == 85.0 and not ex["ahead_everywhere"]
    res = result["resolution_only"]
    # resolution-only never reaches 85% or 86%: RSEE is ahead there by definition
    assert [p["resolution_only_gflops"] for p in res["points"]] == [0.9, None, None]
    assert res["ahead_everywhere"] and res["ahead_up_to_top1"] == 86.0


def test_formatting() -> None:
    assert number(1.23456, ".2f") == "1.23" and number(None, ".2f") == "-"
    assert number(True, ".2f") == "-" and number("inf", ".2f") == "-"
    assert percent(0.5, ".0f") == "50" and percent(None, ".0f") == "-"  # NaN is None in reports
    assert [verdict(v) for v in (True, False, None)] == ["PASS", "MISS", "not run"]
    assert target_line({"name": "x", "target": ">= 1", "value": 0.5, "passed": False}) == (
        "MISS  x: 0.500 (target >= 1)")
    assert target_line({"name": "y", "target": "t", "value": {"a": 1, "b": None},
                        "passed": True}) == "PASS  y: a 1.000, b - (target t)"
    assert table([Column("name", 6, text=True), Column("v", 4)], [("ab", "1.0")]) == [
        "name      v", "-----------", "ab      1.0"]


def test_the_plot_stars_the_operating_point() -> None:
    from matplotlib.figure import Figure

    from rsee_ros.evaluation.plot import _mark_operating_point

    entries = [{"gflops_per_video": 0.3, "top1": 80.0}, {"gflops_per_video": 0.6, "top1": 88.0}]
    for point, label in (
        ({"threshold": 0.9, "rsee_index": 1, "entry": None, "source": "calibrated"},
         "RSEE calibrated operating point (threshold 0.9)"),
        ({"threshold": 0.5, "rsee_index": None, "source": "training",
          "entry": {"gflops_per_video": 0.2, "top1": 70.0}},
         "RSEE operating point (threshold 0.5)"),
    ):
        ax = Figure().add_subplot(1, 1, 1)
        _mark_operating_point(ax, {"rsee": entries, "operating_point": point})
        (star,) = ax.collections
        assert star.get_label() == label
        expected = entries[1] if point["rsee_index"] == 1 else point["entry"]
        assert star.get_offsets().tolist() == [[expected["gflops_per_video"], expected["top1"]]]
    ax = Figure().add_subplot(1, 1, 1)
    _mark_operating_point(ax, {"rsee": [], "operating_point": {"threshold": 0.9}})
    assert not ax.collections  # RSEE not run: nothing to mark
