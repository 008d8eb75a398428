"""``rsee bench-node``: the helpers, and a ``--quick`` run end to end (two rsee_nodes and two
video_sources as real processes over DDS on loopback) with a tiny randomly initialised model."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsee_ros.evaluation.node_bench import (
    ProcSampler,
    _Proc,
    _resolve_targets,
    parse_targets,
    steady_rate,
)

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
    assert _resolve_targets(["auto"], 10.0, 160.0, quick=False) == [20.0, 40.0]
    assert _resolve_targets(["auto"], 10.0, 27.0, quick=True) == [13.92]
    assert _resolve_targets(["auto", "2x", "25"], 10.0, 10.5, quick=False) == [6.0, 20.0, 25.0]


def test_proc_sampler_reads_proc() -> None:
    sampler = ProcSampler(os.getpid())
    t, cpu, rss = sampler.sample()
    assert t > 0 and cpu > 0 and rss > 1


def test_process_group_killed_when_sigint_is_ignored(tmp_path: Path) -> None:
    log = tmp_path / "stubborn.log"
    proc = _Proc("stubborn", ["sh", "-c", "trap '' INT; echo ready; sleep 600 & wait"],
                 dict(os.environ), log)
    deadline = time.monotonic() + 120
    while "ready" not in log.read_text() and time.monotonic() < deadline:
        time.sleep(0.01)  # SIGINT before the trap would end sh by the signal, not by the kill
    assert "ready" in log.read_text()
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


def test_missing_default_model_is_one_line(monkeypatch, tmp_path, capsys) -> None:
    import rsee_ros.resources
    from rsee_ros.cli import main

    monkeypatch.setattr(rsee_ros.resources, "DEFAULT_CHECKPOINT", tmp_path / "absent.pt")
    assert main(["bench-node", "--quick"]) == 2
    assert "pass --checkpoint" in capsys.readouterr().err


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
    assert 101 <= report["domain_id"] <= 200

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
