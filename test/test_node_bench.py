"""``rsee bench-node``: the helpers, and a ``--quick`` run end to end (two rsee_nodes and two
video_sources as real processes over DDS on loopback) with a tiny randomly initialised model."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

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
    # the resident set holds at least what this process allocated and touched
    ballast = bytearray(64 * 1024 * 1024)
    assert sampler.rss_mb() >= rss + 60
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
                            (["--domain-id", "233"], "0..232")):
        assert main(["bench-node", "--quick", "--checkpoint", checkpoint, *option]) == 2
        assert message in capsys.readouterr().err


@pytest.mark.ros
@pytest.mark.slow
def test_quick_run_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("rclpy")
    pytest.importorskip("rsee_ros.msg", reason="rsee_ros messages not built (make setup)")
    import torch

    from rsee_ros.model import RSEEConfig, build_rsee, save_checkpoint

    torch.manual_seed(0)
    config = RSEEConfig(num_classes=12, resolutions=(112, 84, 56, 42), selector_hidden=16,
                        accumulator_hidden=16)
    checkpoint = save_checkpoint(tmp_path / "tiny.pt", build_rsee(config, pretrained=False),
                                 [f"class_{i}" for i in range(12)])
    out = tmp_path / "bench_node.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOCALHOST_ONLY="1")
    start = time.monotonic()
    run = subprocess.run(
        [sys.executable, "-m", "rsee_ros.cli", "bench-node", "--quick", "--checkpoint",
         str(checkpoint), "--threads", "1", "--json", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=180,
    )
    elapsed = time.monotonic() - start
    assert run.returncode == 0, run.stderr[-3000:]
    print(f"bench-node --quick took {elapsed:.1f} s\n{run.stdout}")
    report = json.loads(out.read_text())

    for key in ("checkpoint", "source", "frames", "rate_hz", "duration_s", "threads",
                "domain_id", "machine", "settings", "in_process", "throughput", "latency",
                "resources", "tracking", "targets", "processes"):
        assert key in report, key
    assert report["quick"] is True and report["threads"] == 1
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
