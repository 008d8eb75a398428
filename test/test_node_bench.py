"""``rsee bench-node``: the helpers, the camera rig, and ``--quick`` runs end to end (the four
phases: two rsee_nodes and two video_sources; the cameras-per-core sweep: the rig and a node per
level) as real processes over DDS on loopback, with a tiny randomly initialised model."""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rsee_ros.evaluation.node_bench import (
    BenchNodeConfig,
    BenchNodeError,
    ProcSampler,
    check_targets,
    parse_targets,
    resolve_targets,
    steady_rate,
)
from rsee_ros.evaluation.node_bench.cameras import (
    camera_targets,
    cameras_held,
    level_figures,
    next_level,
    results_balanced,
    sweep_summary,
)
from rsee_ros.evaluation.node_bench.metrics import (
    Received,
    add_throughput_ratios,
    latency_figures,
    resource_figures,
    setpoint_figures,
    throughput_figures,
)
from rsee_ros.evaluation.node_bench.run import check_config
from rsee_ros.ros.processes import RosProcess, domain_block, taskset_prefix

REPO = Path(__file__).resolve().parents[1]


def test_steady_rate_skips_the_start() -> None:
    times = [0.0, 5.0] + [5.0 + 0.5 * i for i in range(1, 19)]  # a slow start, then 2/s
    assert steady_rate(times) == pytest.approx(2.0)
    assert math.isnan(steady_rate([1.0, 2.0]))


def test_targets() -> None:
    assert parse_targets(["auto", "0.6x,40"]) == ["auto", "0.6x", "40"]
    for bad in (["fast"], ["-1"], ["0x"], []):
        with pytest.raises(ValueError):
            parse_targets(bad)
    # auto: low inside [full, fastest], geometrically; 0.6x of full when there is no range.
    assert resolve_targets(["auto"], 10.0, 160.0, quick=False) == [20.0, 40.0]
    assert resolve_targets(["auto"], 10.0, 27.0, quick=True) == [13.92]
    assert resolve_targets(["auto", "2x", "25"], 10.0, 10.5, quick=False) == [6.0, 20.0, 25.0]


def test_proc_sampler_reads_proc() -> None:
    sampler = ProcSampler(os.getpid())
    t0, cpu0, rss = sampler.sample()
    # the resident set holds what this process has just written, less what the kernel may have
    # reclaimed meanwhile of its older pages (a busy machine's proactive reclaim took 9 MB of
    # such pages between two samples around a 64 MB ballast): 256 MB written, 128 MB asserted
    ballast = b"\x01" * (256 * 1024 * 1024)
    assert sampler.rss_mb() >= rss + 128
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:  # burn CPU time in this process
        pass
    t1, cpu1, _ = sampler.sample()
    assert t1 > t0 and cpu1 - cpu0 >= 0.2
    del ballast


STUBBORN = """\
import signal, subprocess, sys
signal.signal(signal.SIGINT, signal.SIG_IGN)
child = subprocess.Popen(["sleep", "600"])
print("ready", flush=True)
child.wait()
"""


def test_process_group_killed_when_sigint_is_ignored(tmp_path: Path) -> None:
    """The bench's processes (RosProcess) that ignore SIGINT are killed with their whole
    process group."""
    (tmp_path / "stubborn.py").write_text(STUBBORN)
    log = tmp_path / "stubborn.log"
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = RosProcess("stubborn", "stubborn", {}, env=env, log_path=log)
    deadline = time.monotonic() + 120
    while "ready" not in proc.output() and time.monotonic() < deadline:
        time.sleep(0.01)  # SIGINT before the handler is set would end it by the signal
    assert "ready" in proc.output()
    assert proc.stop(timeout_s=0.5) == -9
    # the whole group was killed, the sleep included (once reaped, the group no longer exists)
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.01)
    with pytest.raises(ProcessLookupError):
        os.killpg(proc.pid, 0)


AFFINITY = """\
import os, threading
seen = []
thread = threading.Thread(target=lambda: seen.append(sorted(os.sched_getaffinity(0))))
thread.start()
thread.join()
print("main", sorted(os.sched_getaffinity(0)), "thread", seen[0], flush=True)
"""


def test_process_pinned_to_cpus(tmp_path: Path) -> None:
    """RosProcess(cpus=...) runs the program, and the threads it starts, on those CPUs only."""
    (tmp_path / "affinity.py").write_text(AFFINITY)
    cpu = max(os.sched_getaffinity(0))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    proc = RosProcess("affinity", "affinity", {}, env=env, log_path=tmp_path / "a.log",
                      cpus=[cpu])
    assert proc.popen.wait(120) == 0  # it exits by itself
    proc.stop()
    assert f"main [{cpu}] thread [{cpu}]" in proc.output(), proc.output()
    assert proc.info()["cpus"] == [cpu]
    with pytest.raises(ValueError):
        taskset_prefix([max(os.sched_getaffinity(0)) + 1])
    with pytest.raises(ValueError):
        taskset_prefix([])


def test_check_config(tmp_path: Path) -> None:
    config = BenchNodeConfig(tmp_path / "model.pt", targets=["auto", "2x"])
    assert check_config(config) == ["auto", "2x"]
    assert config.domain_id == domain_block(1)[0] and 1 <= config.domain_id <= 232
    for bad in (dict(domain_id=233), dict(frames=3001), dict(frames=2), dict(source="camera"),
                dict(rate=0.0), dict(targets=[])):
        with pytest.raises((BenchNodeError, ValueError)):
            check_config(BenchNodeConfig(tmp_path / "model.pt", **bad))


@dataclass
class _Status:
    """A stand-in for an RseeStatus message."""

    input_fps: float
    processed_fps: float
    capacity_fps: float = 50.0
    frames_dropped: int = 0
    exit_threshold: float = 0.5
    max_resolution: int = 84


def test_throughput_figures() -> None:
    # 10 results, one every 0.5 s after a slow first one, labels 0..9 against 0..7 + 9 + 9
    times = [0.0] + [2.0 + 0.5 * k for k in range(9)]
    results = [Received(t, 0, 0, i, 1.0) for i, t in enumerate(times)]
    status = [(2.0 + 0.5 * k, _Status(30.0, 20.0 + k)) for k in range(10)]
    diags = [(6.0, {"frames_received": "126", "frames_dropped": "1"})]
    out = throughput_figures(results, status, diags, frames=128,
                             in_process={"results": 10, "frames_per_s": 40.0},
                             reference=[0, 1, 2, 3, 4, 5, 6, 7, 9, 9], publish_rate=60.0,
                             depth=128)
    assert out["results_per_s"] == pytest.approx(2.0)  # the first (start-up) result left out
    assert out["label_agreement"] == pytest.approx(0.9)
    assert out["frames_lost_in_transport"] == 2 and out["frames_dropped"] == 1
    # status reports wholly inside [2.0, 6.0]: t - 0.5 >= 2.0 and t <= 6.0
    assert out["frames_per_s"] == pytest.approx(statistics.fmean(20.0 + k for k in range(1, 9)))
    assert out["input_fps"] == 30.0 and out["input_limited"] is True
    assert out["node_pipeline_fps"] == 50.0
    add_throughput_ratios(out, {"steady_results_per_s": 1.0, "frames_per_s": 30.0},
                          {"steady_results_per_s": 3.0, "frames_per_s": 50.0})
    assert out["ratio_results_per_s"] == pytest.approx(1.0)
    assert out["reference_frames_per_s"] == pytest.approx(40.0)


def test_latency_and_resource_figures() -> None:
    # results at t = 0..9 s; after the warm-up (t >= 2) their latencies are 10, 20, ... ms
    results = [Received(float(t), 10**9 * t + 10**7 * t, 10**9 * t, 0, 5.0) for t in range(10)]
    diags = [(1.0, {"frames_dropped": "3"}), (2.5, {"frames_dropped": "4"}),
             (9.0, {"frames_dropped": "6", "frames_received": "270"})]
    lat = latency_figures(results, [(3.0, _Status(30.0, 29.0))], diags, warm=2.0, rate=30.0)
    assert lat["results"] == 8 and lat["max_ms"] == pytest.approx(90.0)
    assert lat["mean_ms"] == pytest.approx(55.0) and lat["node_latency_p50_ms"] == 5.0
    assert lat["frames_dropped"] == 6 and lat["frames_dropped_after_warmup"] == 2
    # one sample a second: CPU 0.5 s per s, RSS 100 MiB growing 1 MiB per s
    samples = [(float(t), 0.5 * t, 100.0 + t) for t in range(6)]
    source = [(float(t), 0.1 * t, 50.0) for t in range(6)]
    res = resource_figures(samples, source, warm=2.0, warmup_s=2.0)
    assert res["cpu_percent_mean"] == pytest.approx(50.0)
    assert res["publisher_cpu_percent_mean"] == pytest.approx(10.0)
    assert res["rss_mb_start"] == 102.0 and res["rss_mb_end"] == 105.0
    assert res["memory_growth_mb"] == 3.0 and res["memory_growth_mb_per_hour"] == 3600.0
    assert len(res["series"]) == 5 and res["series"][0] == [1.0, 50.0, 101.0]


def test_setpoint_figures_and_targets() -> None:
    status = [(10.0 + t, _Status(45.0, 27.0 + t % 2, 40.0)) for t in range(8)]
    point = setpoint_figures(status, target=30.0, feed=45.0, full_fps=20.0, set_at=10.0,
                             settle_s=3.0, measure_s=2.0)
    assert point["reports"] == 3  # t = 13, 14, 15
    assert point["processed_fps"] == pytest.approx((28 + 27 + 28) / 3)
    assert point["tracking_error"] == pytest.approx(abs(point["processed_fps"] - 30) / 30)
    assert point["passed"] is True and point["above_full_accuracy_rate"] is True
    with pytest.raises(BenchNodeError):
        setpoint_figures(status, target=30.0, feed=45.0, full_fps=20.0, set_at=100.0,
                         settle_s=3.0, measure_s=2.0)
    report = {"throughput": {"ratio_results_per_s": math.nan},
              "tracking": {"setpoints": [point, dict(point, tracking_error=0.2, passed=False)]}}
    ratio, tracking = check_targets(report)
    assert ratio["passed"] is False  # unmeasured is a miss
    assert tracking["value"] == 0.2 and tracking["passed"] is False


CAMS = ["/c0", "/c1"]


def _diag(received: int, dropped: tuple[int, int] = (0, 0), missing: tuple[int, int] = (0, 0),
          processed: float = 60.0) -> dict[str, str]:
    """The node's /diagnostics values (totals since start) for the two cameras CAMS."""
    values = {"frames_received": str(received), "frames_dropped": str(sum(dropped)),
              "frames_missing_estimate": str(sum(missing)), "processed_fps": str(processed)}
    values.update({f"dropped {t}": str(n) for t, n in zip(CAMS, dropped) if n})
    values.update({f"missing {t}": str(n) for t, n in zip(CAMS, missing) if n})
    return values


def _results(counts: tuple[int, int], start: float = 10.0, end: float = 20.0) -> list[Received]:
    """``counts`` results per camera spread over (start, end], plus one either side."""
    out = [Received(start - 0.5, 0, 0, 0, 1.0, t) for t in CAMS]  # before the window
    for topic, count in zip(CAMS, counts):
        out += [Received(start + (end - start) * (k + 1) / count, 0, 0, 0, 1.0, topic)
                for k in range(count)]
    return out + [Received(end + 0.1, 0, 0, 0, 1.0, CAMS[0])]  # after it


def _level(counts: tuple[int, int] = (19, 19), **end: Any) -> dict[str, Any]:
    """Two cameras at 30 fps measured from t = 10 to 20 s (10 reports a second apart)."""
    begin = _diag(1000, dropped=(3, 0), missing=(1, 0))
    last = dict(received=1600, dropped=(3, 0), missing=(1, 0), processed=60.0)
    last.update(end)
    reports = [(10.0, begin)] + [(10.0 + k, _diag(1000 + 60 * k, (3, 0), (1, 0), 50.0 + k))
                                 for k in range(1, 10)] + [(20.0, _diag(**last))]
    return level_figures(CAMS, rate=30.0, reports=reports, results=_results(counts),
                         node_cpu_percent=80.0, publisher_cpu_percent=9.0)


def test_results_balanced() -> None:
    assert results_balanced([10, 10]) and results_balanced([20, 18])  # within 10% of 20
    assert not results_balanced([20, 17])
    assert results_balanced([5, 4]) and not results_balanced([5, 3])  # one result of slack
    assert not results_balanced([0, 0]) and not results_balanced([7, 0])
    assert not results_balanced([])


def test_level_figures_and_the_held_rule() -> None:
    held = _level()
    # Totals differenced from the first report to the last: the drops before the window do not
    # count; frames/s averaged over the periods after the first report.
    assert held["frames_received"] == 600 and held["window_s"] == 10.0
    assert held["input_fps"] == 60.0 and held["input_fps_per_camera"] == 30.0
    assert held["frames_dropped"] == 0 and held["dropped_per_camera"] == {"/c0": 0, "/c1": 0}
    assert held["frames_missing"] == 0
    assert held["processed_fps"] == pytest.approx(statistics.fmean([*range(51, 60), 60]))
    assert held["results_per_camera"] == {"/c0": 19, "/c1": 19} and held["results"] == 38
    assert held["publishers_kept_up"] is True and held["node_cpu_percent"] == 80.0
    assert held["held"] is True and held["reasons"] == []

    dropped = _level(dropped=(3, 2))
    assert dropped["frames_dropped"] == 2 and dropped["dropped_per_camera"]["/c1"] == 2
    assert dropped["held"] is False and dropped["reasons"] == ["2 frames dropped"]
    missing = _level(missing=(2, 1))
    assert missing["frames_missing"] == 2 and missing["missing_per_camera"] == {"/c0": 1,
                                                                                "/c1": 1}
    assert missing["reasons"] == ["2 frames missing"]
    unbalanced = _level(counts=(19, 16))
    assert not unbalanced["held"] and unbalanced["reasons"][0].startswith(
        "results per camera 16..19")
    slow = _level(received=1560)  # 56 frames/s: under 95% of 2 x 30
    assert slow["publishers_kept_up"] is False and not slow["held"]
    assert "publishers did not keep up" in slow["reasons"][0]
    with pytest.raises(ValueError):
        level_figures(CAMS, rate=30.0, reports=[(10.0, _diag(0))], results=[],
                      node_cpu_percent=0.0, publisher_cpu_percent=0.0)


def _lv(cameras: int, held: bool, cpu: float = 50.0) -> dict[str, Any]:
    return {"cameras": cameras, "held": held, "reasons": [] if held else ["1 frames dropped"],
            "node_cpu_percent": cpu, "input_fps_per_camera": 30.0}


def test_sweep_stopping_rule() -> None:
    assert next_level([], 8) == 1 and next_level([], 0) is None
    assert next_level([_lv(1, True)], 8) == 2
    assert next_level([_lv(1, True), _lv(2, False)], 8) is None  # the first level not held
    assert next_level([_lv(1, True), _lv(2, True)], 2) is None  # every level asked for
    assert cameras_held([_lv(1, True), _lv(2, True), _lv(3, False)]) == 2
    assert cameras_held([_lv(1, False)]) == 0 and cameras_held([]) == 0
    assert cameras_held([_lv(2, True)]) == 0  # a level counts only above held ones


def test_sweep_summary_and_camera_targets() -> None:
    levels = [_lv(1, True, 20.0), _lv(2, True, 45.0), _lv(3, False, 99.0)]
    onnx = sweep_summary("onnxruntime", "learned", levels, 8)
    assert onnx["method"] == "rsee" and onnx["cameras_held"] == 2
    assert onnx["stopped_at"] == 3 and onnx["stop_reasons"] == ["1 frames dropped"]
    assert onnx["node_cpu_percent_at_held"] == 45.0 and onnx["capped"] is False
    capped = sweep_summary("onnxruntime", "learned", levels[:2], 2)
    assert capped["capped"] is True and capped["stopped_at"] is None

    def summary(engine: str, policy: str, held: int) -> dict[str, Any]:
        return sweep_summary(engine, policy, [_lv(n, True) for n in range(1, held + 1)]
                             + [_lv(held + 1, False)], 8)

    four = [summary("onnxruntime", "learned", 4), summary("onnxruntime", "uniform", 2)]
    per_core, ratio = camera_targets(four)
    assert per_core["value"] == 4 and per_core["passed"] is True
    assert ratio["value"] == {"onnxruntime": 2.0} and ratio["passed"] is True
    # torch holds as many with either policy: the ratio misses for every engine together
    per_core, ratio = camera_targets(four + [summary("torch", "learned", 2),
                                             summary("torch", "uniform", 2)])
    assert ratio["value"]["torch"] == 1.0 and ratio["passed"] is False
    # Uniform held none: no ratio, but RSEE holding one camera is more than 1.5x none
    _, ratio = camera_targets([summary("torch", "learned", 1), summary("torch", "uniform", 0)])
    assert math.isnan(ratio["value"]["torch"]) and ratio["passed"] is True
    # onnxruntime not measured, no uniform: both are misses
    per_core, ratio = camera_targets([summary("torch", "learned", 5)])
    assert per_core["value"] is None and per_core["passed"] is False
    assert ratio["value"] is None and ratio["passed"] is False


def test_check_sweep_config(tmp_path: Path) -> None:
    from rsee_ros.evaluation.node_bench.sweep import split_cpus

    ok = BenchNodeConfig(tmp_path / "model.pt", cameras=8, engines=("onnxruntime", "torch"))
    check_config(ok)
    for bad in (dict(cameras=65), dict(engines=("auto",)), dict(engines=()),
                dict(policies=("greedy",)), dict(sweep_duration_s=0.0)):
        with pytest.raises(BenchNodeError):
            check_config(BenchNodeConfig(tmp_path / "model.pt", **{"cameras": 2, **bad}))
    cpus = sorted(os.sched_getaffinity(0))
    node, publishers = split_cpus()
    assert node == cpus[-1] and publishers == (cpus[:-1] or cpus)
    with pytest.raises(BenchNodeError):
        split_cpus(cpus[-1] + 1)


def test_missing_default_model_is_one_line(monkeypatch, tmp_path, capsys) -> None:
    import rsee_ros.resources
    from rsee_ros.cli import main

    monkeypatch.setattr(rsee_ros.resources, "DEFAULT_CHECKPOINT", tmp_path / "absent.pt")
    assert main(["bench-node", "--quick"]) == 2
    assert "pass --checkpoint" in capsys.readouterr().err


def test_bad_options_are_one_line(tmp_path, capsys) -> None:
    from rsee_ros.cli import main

    checkpoint = str(tmp_path / "model.pt")
    for option, message in ((["--duration", "0"], "--duration must be > 0"),
                            (["--targets", "fast"], "bad target 'fast'"),
                            (["--domain-id", "233"], "0..232"),
                            (["--cameras", "0"], "--cameras must be > 0"),
                            (["--cameras", "2", "--sweep-duration", "-1"],
                             "--sweep-duration must be > 0"),
                            (["--cameras", "2", "--engines", "auto"], "engines must be")):
        assert main(["bench-node", "--quick", "--checkpoint", checkpoint, *option]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.ros
def test_camera_rig_publishes_the_active_cameras_on_schedule(ros_context: Any) -> None:
    """The rig: only the first ``active`` topics, each camera's stamps one period apart (the
    schedule, not the publish time), camera 1 half a period after camera 0 and further into the
    frames, every frame at width x height; ``active`` 0 pauses it."""
    pytest.importorskip("rclpy")
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from sensor_msgs.msg import Image

    from rsee_ros.data.image_conversion import image_to_rgb
    from rsee_ros.ros.camera_rig import CameraRig
    from rsee_ros.ros.qos import stream

    topics = [f"/rsee_test_{os.getpid()}/rig{i}" for i in range(3)]
    params = dict(topics=topics, source="demo", frames=8, width=64, height=48, fps=50.0)
    rig = CameraRig(context=ros_context,
                    parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    sink = rclpy.create_node("rig_sink", context=ros_context)
    got: dict[str, list[Image]] = {t: [] for t in topics}
    for topic in topics:
        sink.create_subscription(Image, topic, got[topic].append, stream("reliable", 100))
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(rig)
    executor.add_node(sink)

    def spin_until(condition: Any, timeout_s: float = 120.0) -> bool:
        deadline = time.monotonic() + timeout_s
        while not condition() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        return condition()

    try:
        # Paused (active 0 by default) until the sink is matched, so that no frame is lost.
        assert spin_until(lambda: all(sink.count_publishers(t) and rig._publishers[i]
                                      .get_subscription_count() for i, t in enumerate(topics)))
        assert not any(got.values())
        assert rig.set_parameters([Parameter("active", value=2)])[0].successful
        assert spin_until(lambda: min(len(got[t]) for t in topics[:2]) >= 6)
        assert rig.set_parameters([Parameter("active", value=0)])[0].successful
        spin_until(lambda: False, timeout_s=0.5)  # what was in flight arrives
        counts = [len(got[t]) for t in topics]
        spin_until(lambda: False, timeout_s=0.5)
        assert [len(got[t]) for t in topics] == counts  # paused
        assert counts[2] == 0 and rig.published[2] == 0
        stamps = [[m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in got[t]]
                  for t in topics[:2]]
        for camera in stamps:
            assert {b - a for a, b in zip(camera, camera[1:])} <= {20_000_000 + d
                                                                    for d in (-1, 0, 1)}
        assert abs(stamps[1][0] - stamps[0][0] - 10_000_000) <= 1
        assert all((m.width, m.height) == (64, 48) for t in topics[:2] for m in got[t])
        # camera 1 of 3 starts 8 // 3 = 2 frames into the clip
        first = image_to_rgb(got[topics[1]][0])
        assert (first == image_to_rgb(got[topics[0]][2])).all()
        assert not (first == image_to_rgb(got[topics[0]][0])).all()
    finally:
        executor.shutdown()
        rig.destroy_node()
        sink.destroy_node()


@pytest.mark.ros
@pytest.mark.slow
def test_quick_run_end_to_end(bench_node_quick) -> None:
    start = time.monotonic()
    run, report = bench_node_quick("--threads", "1", "--engines", "torch", timeout=180)
    print(f"bench-node --quick took {time.monotonic() - start:.1f} s")

    for key in ("checkpoint", "source", "frames", "rate_hz", "duration_s", "threads",
                "domain_id", "machine", "settings", "in_process", "throughput", "latency",
                "resources", "tracking", "targets", "processes"):
        assert key in report, key
    assert report["quick"] is True and report["threads"] == 1 and report["engine"] == "torch"
    assert 1 <= report["domain_id"] <= 232  # domain_block(1) of the bench-node process

    inproc = report["in_process"]
    assert inproc["frames"] == report["frames"] and inproc["results"] > 0
    assert inproc["frames_per_s"] > 0 and inproc["fastest"]["frames_per_s"] > 0

    t = report["throughput"]
    for key in ("publish_rate_hz", "frames_published", "frames_received", "frames_dropped",
                "frames_lost_in_transport", "results", "results_expected", "label_agreement",
                "results_per_s", "frames_per_s", "input_fps", "input_limited",
                "ratio_results_per_s", "ratio_frames_per_s"):
        assert key in t, key
    # Reliable QoS and a queue holding the run: every frame arrives and none is dropped, so the
    # node gives the in-process results, in the same order.
    assert t["frames_received"] == t["frames_published"] == report["frames"]
    assert t["frames_dropped"] == 0 and t["frames_lost_in_transport"] == 0
    assert t["results"] == t["results_expected"] and t["label_agreement"] == 1.0
    assert t["results_per_s"] > 0 and t["ratio_results_per_s"] > 0
    # the reference is the mean of the in-process runs before and after the node's
    after = inproc["after_node"]
    assert after["results"] == inproc["results"] and after["frames_per_s"] > 0
    assert t["reference_results_per_s"] == pytest.approx(
        (inproc["steady_results_per_s"] + after["steady_results_per_s"]) / 2)
    assert t["ratio_results_per_s"] == pytest.approx(
        t["results_per_s"] / t["reference_results_per_s"])

    lat = report["latency"]
    for key in ("p50_ms", "p99_ms", "mean_ms", "max_ms", "node_latency_p50_ms",
                "node_latency_p99_ms", "frames_dropped", "frames_dropped_after_warmup"):
        assert key in lat, key
    assert lat["results"] > 0 and 0 < lat["p50_ms"] <= lat["p99_ms"] < 5000
    assert lat["input_fps"] == pytest.approx(report["rate_hz"], rel=0.3)

    res = report["resources"]
    for key in ("cpu_percent_mean", "cpu_percent_max", "rss_mb_start", "rss_mb_end",
                "rss_mb_max", "memory_growth_mb", "publisher_cpu_percent_mean", "series"):
        assert key in res, key
    assert res["samples"] >= report["duration_s"]
    assert 0 < res["cpu_percent_mean"] < 400 and res["rss_mb_start"] > 50
    assert res["rss_mb_max"] >= max(res["rss_mb_start"], res["rss_mb_end"])
    assert res["memory_growth_mb"] == pytest.approx(res["rss_mb_end"] - res["rss_mb_start"])

    (setpoint,) = report["tracking"]["setpoints"]
    for key in ("target_fps", "feed_hz", "processed_fps", "capacity_fps", "input_fps",
                "tracking_error", "exit_threshold", "max_resolution", "passed", "status"):
        assert key in setpoint, key
    assert setpoint["target_fps"] > 0 and setpoint["processed_fps"] > 0

    names = [target["name"] for target in report["targets"]]
    assert names == ["node_results_per_s_vs_in_process", "target_fps_tracking_error"]
    for name in names:
        assert any(line.split()[1].rstrip(":") == name for line in run.stdout.splitlines()
                   if line.startswith(("PASS", "MISS")))

    # Both nodes and both publishers stopped cleanly on SIGINT and are gone.
    assert sorted(p["name"] for p in report["processes"]) == [
        "rsee_node", "rsee_node_camera", "video_source", "video_source_camera"]
    for proc in report["processes"]:
        assert proc["returncode"] == 0, proc
        cmdline = Path(f"/proc/{proc['pid']}/cmdline")
        assert not cmdline.exists() or b"rsee_ros.ros" not in cmdline.read_bytes()
    assert report["logs"] is None


@pytest.mark.ros
@pytest.mark.slow
def test_quick_camera_sweep_end_to_end(bench_node_quick) -> None:
    """``--cameras 2`` at ``--quick`` with one engine and both policies: the JSON's structure,
    levels from 1 up to the first not held (speed is not asserted), and every process (the
    rig, one node per level) pinned and stopped cleanly."""
    run, report = bench_node_quick("--cameras", "2", "--engines", "torch", "--policies",
                                   "learned", "uniform")
    assert "throughput" not in report and "in_process" not in report  # the sweep only
    cams = report["cameras"]
    assert (cams["max_cameras"], cams["width"], cams["height"]) == (2, 640, 480)
    assert cams["rate_hz"] == 30.0 and cams["engines"] == ["torch"]
    assert report["threads"] == 1 and report["quick"] is True
    assert cams["node_cpu"] not in cams["publisher_cpus"] or len(os.sched_getaffinity(0)) == 1
    assert [(s["engine"], s["policy"], s["method"]) for s in cams["sweeps"]] == [
        ("torch", "learned", "rsee"), ("torch", "uniform", "uniform")]
    nodes = []
    for sweep in cams["sweeps"]:
        levels = sweep["levels"]
        assert [lv["cameras"] for lv in levels] == list(range(1, len(levels) + 1))
        assert 1 <= len(levels) <= 2 and all(lv["held"] for lv in levels[:-1])
        assert sweep["cameras_held"] == sum(lv["held"] for lv in levels)
        for lv in levels:
            for key in ("window_s", "frames_received", "input_fps", "input_fps_per_camera",
                        "publishers_kept_up", "frames_dropped", "dropped_per_camera",
                        "frames_missing", "missing_per_camera", "processed_fps", "results",
                        "node_cpu_percent", "publisher_cpu_percent", "reasons"):
                assert key in lv, key
            assert sorted(lv["results_per_camera"]) == [
                f"/rsee_bench/cameras/cam{i}/image_raw" for i in range(lv["cameras"])]
            assert lv["frames_received"] > 0 and lv["window_s"] >= cams["sweep_duration_s"]
            assert 0 < lv["node_cpu_percent"] <= 110  # one thread on one core
            assert lv["held"] == (lv["reasons"] == [])
            nodes.append(f"rsee_node_cameras_torch_{sweep['policy']}_{lv['cameras']}")
    names = [t["name"] for t in report["targets"]]
    assert names == ["cameras_per_core_onnxruntime_rsee", "rsee_cameras_over_uniform_cameras"]
    assert report["targets"] == cams["targets"]
    assert report["targets"][0]["value"] is None  # onnxruntime was not swept
    assert set(report["targets"][1]["value"]) == {"torch"}
    for name in names:
        assert any(line.split()[1].rstrip(":") == name for line in run.stdout.splitlines()
                   if line.startswith(("PASS", "MISS")))
    procs = {p["name"]: p for p in report["processes"]}
    assert sorted(procs) == sorted([*nodes, "camera_rig"])
    for proc in report["processes"]:
        assert proc["returncode"] == 0, proc
        assert proc["cpus"] == ([cams["node_cpu"]] if proc["name"] in nodes
                                else cams["publisher_cpus"])
        cmdline = Path(f"/proc/{proc['pid']}/cmdline")
        assert not cmdline.exists() or b"rsee_ros" not in cmdline.read_bytes()
