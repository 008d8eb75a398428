"""``rsee bench-node``: rsee_node as a real process over DDS against the in-process pipeline.

    rsee bench-node [--checkpoint model.pt] [--duration 300] [--rate 30] [--threads N]
                    [--json out.json] [--quick]
    rsee bench-node --cameras 8 [--engines onnxruntime torch] [--policies learned uniform]
                    [--sweep-duration 20] [--json out.json] [--quick]
    rsee bench-node --soak 600 [--soak-cameras 2] [--engines onnxruntime] [--json out.json]

One run on one machine: node results/s against the in-process RecognitionPipeline on the same
frames (target >= 95%), latency from frame stamp to result at the camera rate, target_fps
tracking (target: within 10%), and the node's CPU and memory over ``--duration`` seconds. With
``--cameras`` only the cameras-per-core sweep runs: 1..N 640x480 streams at ``--rate`` into one
node pinned to one core, per engine and policy the most cameras it held without drops (targets:
>= 4 for onnxruntime RSEE, RSEE >= 1.5x Uniform). With ``--soak`` only the synchronised
multi-camera soak runs (targets: results per camera within 10%, RSS growth < 5%, every frame
accounted). Prints a summary with PASS/MISS for the
targets. See rsee_ros/evaluation/node_bench/.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import time
from typing import Any

from rsee_ros.evaluation.common import jsonable, write_json_report
from rsee_ros.evaluation.formatting import Column, number, percent, table, target_line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rsee bench-node``."""
    parser.add_argument("--checkpoint", default=None,
                        help="the RSEE checkpoint (default: the packaged default model)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds of the camera-rate run that measures latency, CPU and "
                        "memory (default 300; --quick: 5)")
    parser.add_argument("--rate", type=float, default=30.0,
                        help="camera rate in Hz of that run (default 30)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads of the node and of the in-process pipeline "
                        "(default: all cores)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--source", choices=("demo", "synthetic"), default="demo",
                        help="frames: the embedded demo clip or synthetic clips (default demo)")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames of the in-process and node throughput runs, at most 3000 "
                        "(default 960; --quick: 128)")
    parser.add_argument("--targets", nargs="+", default=["auto"], metavar="FPS",
                        help="target_fps set points: auto (inside the range the controller can "
                        "reach, measured in-process), <f>x (f times the in-process frame rate) "
                        "or a frame rate (default auto)")
    parser.add_argument("--settle", type=float, default=None,
                        help="seconds before measuring each set point (default 15; --quick: 3)")
    parser.add_argument("--measure", type=float, default=None,
                        help="seconds measured per set point (default 10; --quick: 2)")
    parser.add_argument("--domain-id", type=int, default=None,
                        help="ROS_DOMAIN_ID of every process, 0..232 (default: one in 1..232 "
                        "picked from the process id)")
    parser.add_argument("--no-fastdds-profile", action="store_true",
                        help="use Fast DDS's default transports instead of the benchmark's "
                        "shared-memory + UDP-on-127.0.0.1 profile")
    parser.add_argument("--keep-logs", action="store_true",
                        help="keep the nodes' logs (printed path; always kept when a run fails)")
    parser.add_argument("--cameras", type=int, default=None, metavar="N",
                        help="run only the cameras-per-core sweep: 1..N streams of 640x480 "
                        "frames at --rate into one rsee_node pinned to one core, until a level "
                        "is not held")
    parser.add_argument("--engines", nargs="+", default=["onnxruntime"], metavar="ENGINE",
                        help="engines of the node (the default run uses the first, in process "
                        "and in the node; the sweep each): torch, torch-fused, onnxruntime, "
                        "tensorrt (default onnxruntime)")
    parser.add_argument("--policies", nargs="+", default=["learned", "uniform"],
                        metavar="POLICY", help="policies of the sweep's node: learned (RSEE), "
                        "uniform (the Uniform baseline) (default both)")
    parser.add_argument("--sweep-duration", type=float, default=None, metavar="S",
                        help="seconds measured per sweep level after the warm-up (default 20; "
                        "--quick: 3)")
    parser.add_argument("--soak", type=float, default=None, metavar="S",
                        help="run only the soak: --soak-cameras 640x480 cameras published in "
                        "sync at --rate into one rsee_node pinned to one core for S seconds "
                        "(results per camera, RSS, every frame accounted)")
    parser.add_argument("--soak-cameras", type=int, default=2, metavar="N",
                        help="cameras of the soak (default 2)")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the report here")
    parser.add_argument("--quick", action="store_true",
                        help="short durations (a test run of a few tens of seconds)")


LEVEL_COLUMNS = (
    Column("engine", 12, text=True), Column("method", 8, text=True), Column("cameras", 7),
    Column("fps/cam", 7), Column("dropped", 7), Column("missing", 7), Column("processed", 9),
    Column("results/cam", 11), Column("node CPU%", 9), Column("pub CPU%", 8),
    Column("held", 4, text=True),
)


def format_cameras(report: dict[str, Any]) -> str:
    """The cameras-per-core sweep and its targets as text."""
    n, c = number, report["cameras"]
    rows = []
    for sweep in c["sweeps"]:
        for lv in sweep["levels"]:
            counts = list(lv["results_per_camera"].values())
            rows.append([sweep["engine"], sweep["method"], str(lv["cameras"]),
                         n(lv["input_fps_per_camera"], ".1f"), str(lv["frames_dropped"]),
                         str(lv["frames_missing"]), n(lv["processed_fps"], ".1f"),
                         f"{min(counts)}..{max(counts)}", n(lv["node_cpu_percent"], ".0f"),
                         n(lv["publisher_cpu_percent"], ".0f"), "yes" if lv["held"] else "no"])
    lines = [f"cameras per core: {c['width']}x{c['height']} {c['source']} frames at "
             f"{n(c['rate_hz'], 'g')} fps per camera, {n(c['sweep_duration_s'], 'g')} s per level "
             f"after {n(c['warmup_s'], 'g')} s; rsee_node on CPU {c['node_cpu']}, "
             f"{c['publisher']} on CPUs {c['publisher_cpus']}", *table(LEVEL_COLUMNS, rows)]
    for sweep in c["sweeps"]:
        stop = (f"; stopped at {sweep['stopped_at']}: {'; '.join(sweep['stop_reasons'])}"
                if sweep["stopped_at"] else " (every level asked for: a lower bound)")
        lines.append(f"{sweep['engine']} {sweep['method']}: {sweep['cameras_held']} cameras held "
                     f"on one core (node CPU {n(sweep['node_cpu_percent_at_held'], '.0f')}% "
                     f"there){stop}")
    lines += [target_line(target) for target in report["targets"]]
    load = ", ".join(n(x, ".2f") for x in c["load_average_before"] + c["load_average_after"])
    m = report["machine"]
    lines.append(f"{m['cpu']} ({m['cores']} cores); load average (1, 5, 15 min) before, after: "
                 f"{load}; ROS domain {report['domain_id']}"
                 + (", quick run" if report["quick"] else ""))
    return "\n".join(lines)


def format_soak(report: dict[str, Any]) -> str:
    """The soak and its targets as text."""
    s = report["soak"]
    lines = [f"soak: {s['cameras']} synchronised {s['width']}x{s['height']} cameras at "
             f"{number(s['rate_hz'], 'g')} fps, {number(s['soak_s'], '.0f')} s, {s['engine']}"]
    for topic, cam in s["per_camera"].items():
        lines.append(f"  {topic}: {cam['published']} published, {cam['received']} received, "
                     f"{cam['missing_estimate']} estimated missing, {cam['dropped']} dropped, "
                     f"{cam['results']} results in the soak")
    lines.append(f"node: {s['frames_received']} received = {s['frames_handled']} handled + "
                 f"{s['frames_dropped']} dropped + {s['frames_rejected']} rejected "
                 f"({s['unaccounted_in_node']} unaccounted); RSS {s['rss_mb_start']:.0f} -> "
                 f"{s['rss_mb_end']:.0f} MiB (peak {s['rss_mb_max']:.0f})")
    lines += [target_line(target) for target in report["targets"]]
    m = report["machine"]
    lines.append(f"{m['cpu']} ({m['cores']} cores); ROS domain {report['domain_id']}"
                 + (", quick run" if report["quick"] else ""))
    return "\n".join(lines)


def format_report(report: dict[str, Any]) -> str:
    """The figures and the targets as text."""
    if "cameras" in report:
        return format_cameras(report)
    if "soak" in report:
        return format_soak(report)
    n = number
    p, t, lat, r = (report[k] for k in ("in_process", "throughput", "latency", "resources"))
    limited = " (input-limited: the publisher did not outpace the node)" if t[
        "input_limited"] else ""
    lines = [
        f"in-process: {p['frames']} frames, {n(p['frames_per_s'], '.1f')} frames/s, "
        f"{n(p['steady_results_per_s'], '.2f')} results/s ({p['results']} results); "
        f"fastest settings {n(p['fastest']['frames_per_s'], '.1f')} frames/s",
        f"node:       {t['frames_published']} frames at {n(t['publish_rate_hz'], 'g')} Hz, "
        f"{t['frames_received']} received, {t['frames_dropped']} dropped; {t['results']} results "
        f"({t['results_expected']} in-process, labels agree "
        f"{percent(t['label_agreement'], '.0f')}%); {n(t['results_per_s'], '.2f')} results/s, "
        f"{n(t['frames_per_s'], '.1f')} frames/s (inside its pipeline "
        f"{n(t['node_pipeline_fps'], '.1f')}){limited}",
        f"latency at {n(lat['rate_hz'], 'g')} Hz (frame stamp to result received): p50 "
        f"{n(lat['p50_ms'], '.1f')} ms, p99 {n(lat['p99_ms'], '.1f')} ms over {lat['results']} "
        f"results (node's own arrival-to-publish p50 {n(lat['node_latency_p50_ms'], '.1f')} "
        f"ms); {lat['frames_dropped']} frames dropped",
        f"node over {n(r['duration_s'], '.0f')} s (warm-up {n(r['warmup_s'], 'g')} s): CPU "
        f"{n(r['cpu_percent_mean'], '.1f')}% of one core (max {n(r['cpu_percent_max'], '.0f')}"
        f"%), RSS {n(r['rss_mb_start'], '.1f')} -> {n(r['rss_mb_end'], '.1f')} MiB (max "
        f"{n(r['rss_mb_max'], '.1f')}), memory growth {n(r['memory_growth_mb'], '+.1f')} MiB; "
        f"publisher CPU {n(r['publisher_cpu_percent_mean'], '.1f')}%",
    ]
    for s in report["tracking"]["setpoints"]:
        note = " (input-limited)" if s["input_limited"] else ""
        lines.append(
            f"target_fps {n(s['target_fps'], 'g')} (fed at {n(s['feed_hz'], 'g')} Hz): "
            f"processed {n(s['processed_fps'], '.1f')} fps, capacity "
            f"{n(s['capacity_fps'], '.1f')} fps, error {percent(s['tracking_error'], '.1f')}% "
            f"(exit threshold {n(s['exit_threshold'], 'g')}, max resolution "
            f"{s['max_resolution']}){note}"
        )
    lines += [target_line(target) for target in report["targets"]]
    m = report["machine"]
    lines.append(f"{m['device']}, {report['threads']} threads, {m['cpu']} ({m['cores']} cores); "
                 f"ROS domain {report['domain_id']}"
                 + (", quick run" if report["quick"] else ""))
    return "\n".join(lines)


def _on_sigterm(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _config(args: argparse.Namespace, checkpoint: str) -> Any:
    """The run's :class:`~rsee_ros.evaluation.node_bench.BenchNodeConfig` from the options
    (``ValueError`` for a bad one)."""
    from rsee_ros.evaluation.common import default_threads
    from rsee_ros.evaluation.node_bench import BenchNodeConfig, parse_targets

    targets = parse_targets(args.targets)
    for name in ("duration", "frames", "settle", "measure", "cameras", "sweep_duration", "soak",
                 "soak_cameras"):
        value = getattr(args, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise ValueError(f"--{name.replace('_', '-')} must be > 0")
    overrides: dict[str, Any] = {
        key: value for key, value in (
            ("duration_s", args.duration), ("frames", args.frames), ("settle_s", args.settle),
            ("measure_s", args.measure), ("sweep_duration_s", args.sweep_duration),
        ) if value is not None
    }
    # The sweep's node runs one thread on its one core (and the processes' OpenMP with it).
    threads = args.threads or (1 if args.cameras or args.soak else default_threads())
    common = dict(rate=args.rate, threads=threads, device=args.device,
                  source=args.source, targets=targets, domain_id=args.domain_id,
                  fastdds_profile=not args.no_fastdds_profile, keep_logs=args.keep_logs,
                  cameras=args.cameras or 0, soak_s=args.soak or 0.0,
                  soak_cameras=args.soak_cameras, engines=tuple(args.engines),
                  policies=tuple(args.policies))
    if args.quick:
        return BenchNodeConfig.quick_config(checkpoint, **common, **overrides)
    return BenchNodeConfig(checkpoint, **common, **overrides)


def run(args: argparse.Namespace) -> int:
    """Benchmark, print, write the JSON."""
    from rsee_ros.evaluation.node_bench import BenchNodeError, run_node_bench
    from rsee_ros.model import CheckpointError
    from rsee_ros.resources import DEFAULT_CHECKPOINT

    checkpoint = args.checkpoint
    if checkpoint is None:
        if not DEFAULT_CHECKPOINT.is_file():
            print(f"rsee bench-node: the default model {DEFAULT_CHECKPOINT} is not installed; "
                  "pass --checkpoint", file=sys.stderr)
            return 2
        checkpoint = str(DEFAULT_CHECKPOINT)
    try:
        config = _config(args, checkpoint)
    except ValueError as error:
        print(f"rsee bench-node: {error}", file=sys.stderr)
        return 2
    started = time.monotonic()

    def log(line: str) -> None:
        print(f"[bench-node {time.monotonic() - started:5.1f} s] {line}", file=sys.stderr,
              flush=True)

    previous = signal.signal(signal.SIGTERM, _on_sigterm)  # clean up the nodes on SIGTERM too
    try:
        report = run_node_bench(config, log=log)
    except (BenchNodeError, CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"rsee bench-node: {error}", file=sys.stderr)
        return 2
    finally:
        signal.signal(signal.SIGTERM, previous)
    report = jsonable(report)
    print(format_report(report))
    if args.json:
        write_json_report(args.json, report)
        print(f"wrote {args.json}")
    return 0
