"""``make demo`` / ``python -m rsee_ros.demo``: the node on the embedded demo clip, end to end.

Starts two ROS 2 nodes as two processes talking over DDS on the loopback interface:
``rsee_node`` with the default model (or ``--checkpoint``) and ``video_source`` playing the
embedded demo clip (``rsee_ros/resources/demo/``: 12 held-out synthetic clips, one per class) at
``--fps`` with a pause between clips longer than the node's ``max_gap_s``, so that every clip is
one video and one window. This process listens: it prints each ``ActionRecognition`` as it
arrives (label, confidence, resolutions, frames used, latency) against the clip's true label
(``/video_source/ground_truth``), then a summary (windows, accuracy, GFLOPs per window against
Uniform, frame rates) and exits 0.

DDS stays on loopback (``ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST``, ``ROS_LOCALHOST_ONLY=1``); the
ROS domain is ``ROS_DOMAIN_ID`` when set, else one picked from the process id (printed), so that
``ros2 topic echo /rsee_node/actions`` in another shell can watch with that domain.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsee_ros.pipeline.percentiles import percentile
from rsee_ros.resources import (
    DEFAULT_CHECKPOINT,
    DEMO_LABELS,
    FASTDDS_SHM_PROFILE,
    ClipLabels,
    load_clip_labels,
)
from rsee_ros.ros.processes import (
    RosProcess,
    domain_block,
    keep_dds_on_loopback,
    loopback_environment,
)

CAMERA_TOPIC = "/camera/image_raw"
# The node's max_gap_s in the demo (its default): a longer stamp gap starts a new video. It was
# 0.25 s, and a 2-core CI machine once stalled video_source for longer than that inside a clip,
# splitting the clip into two windows.
GAP_S = 1.0
PAUSE_S = 2.0  # video_source's pause between clips (> GAP_S: each clip is a new video)
QUEUE_SIZE = 64  # frames waiting for the node (a clip has 16)
LAST_RESULT_S = 60.0  # bound on waiting for the last window's result once the clip ended


def _configure_dds() -> int:
    """Loopback-only DDS for this process and its children, images through shared memory
    (the packaged Fast DDS profile, unless one is set); returns the domain id."""
    keep_dds_on_loopback()
    os.environ.setdefault("FASTDDS_DEFAULT_PROFILES_FILE", str(FASTDDS_SHM_PROFILE))
    if not os.environ.get("ROS_DOMAIN_ID"):
        os.environ["ROS_DOMAIN_ID"] = str(domain_block(1)[0])
    return int(os.environ["ROS_DOMAIN_ID"])


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m rsee_ros.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None,
                    help=f"model checkpoint (default: {DEFAULT_CHECKPOINT.name}, packaged)")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    ap.add_argument("--engine", default="auto",
                    choices=("auto", "torch", "torch-fused", "onnxruntime", "tensorrt"),
                    help="the node's inference engine (default auto: onnxruntime when "
                    "installed, else torch)")
    ap.add_argument("--fps", type=float, default=16.0, help="camera frame rate (default: 16)")
    ap.add_argument("--clips", type=int, default=0,
                    help="play only the first N clips (default: all 12)")
    ap.add_argument("--num-threads", type=int, default=0,
                    help="torch CPU threads of the node (default: torch's choice)")
    ap.add_argument("--exit-threshold", type=float, default=None,
                    help="the node's exit_threshold (default: the node's, 0.9)")
    ap.add_argument("--timeout", type=float, default=120.0,
                    help="give up after this many seconds (default: 120)")
    return ap.parse_args(argv)


@dataclass
class _Row:
    arrival: float
    msg: Any
    truth: str | None


class _DemoError(RuntimeError):
    def __init__(self, message: str, child: RosProcess) -> None:
        super().__init__(message)
        self.child = child


@dataclass
class _Listener:
    """The demo's own ROS node: results, status, the model's labels and the clips' truth."""

    node: Any
    executor: Any
    start: float = field(default_factory=time.monotonic)
    rows: list[_Row] = field(default_factory=list)
    truths: list[tuple[float, str]] = field(default_factory=list)  # (arrival, label)
    infos: list[Any] = field(default_factory=list)
    statuses: list[Any] = field(default_factory=list)

    @classmethod
    def create(cls) -> _Listener:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor
        from std_msgs.msg import String

        from rsee_ros.msg import ActionRecognition, LabelInfo, RseeStatus
        from rsee_ros.ros import qos

        node = rclpy.create_node("rsee_demo")
        listener = cls(node, SingleThreadedExecutor())
        node.create_subscription(ActionRecognition, "/rsee_node/actions", listener.on_result,
                                 qos.stream("reliable", 50))
        node.create_subscription(RseeStatus, "/rsee_node/status", listener.statuses.append, 10)
        node.create_subscription(LabelInfo, "/rsee_node/label_info", listener.infos.append,
                                 qos.latched())
        node.create_subscription(String, "/video_source/ground_truth",
                                 lambda m: listener.truths.append((listener.now_s(), m.data)),
                                 qos.latched())
        listener.executor.add_node(node)
        return listener

    def now_s(self) -> float:
        return self.node.get_clock().now().nanoseconds * 1e-9

    def truth_for(self, stamp_s: float) -> str | None:
        # The ground truth of a clip is published just before its first frame; allow for DDS
        # latency (well below the pause between clips). The first label can still arrive late
        # (this reader matched video_source's writer after it started; transient-local
        # durability delivers it then): a window that starts before any label arrived belongs
        # to the first clip.
        label = self.truths[0][1] if self.truths else None
        for arrival, value in self.truths:
            if arrival <= stamp_s + PAUSE_S / 2:
                label = value
        return label

    def on_result(self, msg: Any) -> None:
        row = _Row(time.monotonic() - self.start, msg, self.truth_for(_seconds(msg.window_start)))
        self.rows.append(row)
        print(_format_row(row), flush=True)

    def spin_until(self, done: Callable[[], Any], limit: float) -> bool:
        end = time.monotonic() + limit
        while not done() and time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.05)
        return bool(done())

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()


def main(argv: list[str] | None = None) -> int:
    """Run the demo; returns the exit status."""
    args = _parse(argv)
    domain = _configure_dds()
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if not checkpoint.is_file():
        print(f"rsee demo: no model at {checkpoint} (the default model is not installed; "
              "pass --checkpoint FILE)", file=sys.stderr)
        return 1
    clips = load_clip_labels(DEMO_LABELS)
    played = clips.clips[: args.clips] if args.clips > 0 else clips.clips

    import rclpy  # after the DDS environment is set
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    listener = _Listener.create()
    print(f"rsee demo: ROS_DOMAIN_ID={domain}, DDS on loopback; model {checkpoint}; "
          f"{len(played)} clips of {clips.video.name} at {args.fps:g} fps", flush=True)
    with tempfile.TemporaryDirectory(prefix="rsee_demo_") as logs:
        try:
            return _play(args, checkpoint, clips, len(played), played[-1].end, listener,
                         Path(logs))
        finally:
            listener.close()
            rclpy.try_shutdown()


def _play(args: argparse.Namespace, checkpoint: Path, clips: ClipLabels, count: int,
          frames: int, listener: _Listener, logs: Path) -> int:
    """Start both nodes, play ``count`` clips (``frames`` frames), print; the exit status.

    The demo's script from start to stop, with each way it can fail next to the step that
    detects it; kept in one piece (a little over 60 lines) so it reads as the demo runs.
    """
    node_params: dict[str, Any] = {
        "checkpoint": str(checkpoint), "device": args.device, "engine": args.engine,
        "image_topics": [CAMERA_TOPIC],
        # Reliable delivery and a queue that holds a whole clip: a stall of the node (a busy
        # machine) delays results instead of dropping frames, so every clip is one full window.
        "max_gap_s": GAP_S, "qos_reliability": "reliable", "queue_size": QUEUE_SIZE,
        "num_threads": args.num_threads,
    }
    if args.exit_threshold is not None:
        node_params["exit_threshold"] = float(args.exit_threshold)
    env = loopback_environment()
    rsee = RosProcess("rsee_node", "rsee_ros.ros.node", node_params, env=env,
                      log_path=logs / "rsee_node.log")
    source: RosProcess | None = None
    status = 1
    try:
        # video_source starts once this listener has discovered rsee_node's result topic, so the
        # first clip's result cannot be published before anyone here listens; it then waits for
        # rsee_node's image subscription and for this listener's ground-truth subscription.
        if not listener.spin_until(
            lambda: (listener.infos and listener.node.count_publishers("/rsee_node/actions") > 0)
            or not rsee.alive(),
            args.timeout,
        ):
            raise _DemoError("rsee_node did not start in time", rsee)
        if not listener.infos:
            raise _DemoError("rsee_node stopped", rsee)
        source = RosProcess("video_source", "rsee_ros.ros.video_source", {
            "source": "demo", "topic": CAMERA_TOPIC, "fps": float(args.fps),
            "clip_pause_s": PAUSE_S, "wait_for_subscribers": True,
            "wait_for_label_subscriber": True, "max_frames": frames,
        }, env=env, log_path=logs / "video_source.log")
        info = listener.infos[0]
        engine = next((line.split("engine ", 1)[1].split(" (")[0]
                       for line in rsee.output().splitlines() if "engine " in line), "?")
        print(f"rsee_node ready: {len(info.class_names)} classes, resolutions "
              f"{list(info.resolutions)}, engine {engine}; video_source is playing", flush=True)
        remaining = args.timeout - (time.monotonic() - listener.start)
        listener.spin_until(lambda: not source.alive() or not rsee.alive(), remaining)
        if not rsee.alive():
            raise _DemoError("rsee_node stopped", rsee)
        if source.alive():
            raise _DemoError("the demo timed out", source)
        if source.returncode != 0:
            raise _DemoError("video_source failed", source)
        listener.spin_until(lambda: len(listener.rows) >= count, LAST_RESULT_S)
        listener.spin_until(lambda: False, 0.3)  # a last status report
        if not listener.rows:
            raise _DemoError("no results arrived", rsee)
        _print_summary(listener.rows, listener.statuses, info,
                       time.monotonic() - listener.start)
        status = 0
    except _DemoError as exc:
        print(f"rsee demo: {exc}", file=sys.stderr)
        print(exc.child.tail(), file=sys.stderr)
    except KeyboardInterrupt:
        print("rsee demo: interrupted", file=sys.stderr)
        status = 130
    finally:
        for child in (source, rsee):
            if child is not None and child.stop() not in (0, None) and status == 0:
                print(f"rsee demo: {child.name} exited with {child.returncode}", file=sys.stderr)
                print(child.tail(), file=sys.stderr)
                status = 1
    return status


def _format_row(row: _Row) -> str:
    m = row.msg
    res = " ".join(str(r) if r else "-" for r in m.resolutions)
    how = "exit" if m.exited_early else ("full" if m.window_complete else "cut ")
    verdict = "" if row.truth is None else (
        f"  truth {row.truth:<14} {'ok' if row.truth == m.label else 'WRONG'}")
    return (f"{row.arrival:6.1f}s  {m.label:<14} {m.confidence:4.2f}  frames "
            f"{m.frames_processed:2d}/{m.window_length:<2d} {how}  res [{res}]  "
            f"{m.gflops:5.2f}/{m.uniform_gflops:4.2f} GFLOPs  {m.latency_ms:6.1f} ms{verdict}")


def _seconds(stamp: Any) -> float:
    return stamp.sec + stamp.nanosec * 1e-9


def _print_summary(rows: list[_Row], statuses: list[Any], info: Any, seconds: float) -> None:
    scored = [r for r in rows if r.truth is not None]
    correct = sum(r.truth == r.msg.label for r in scored)
    n = len(rows)
    gflops = sum(r.msg.gflops for r in rows) / n
    uniform = sum(r.msg.uniform_gflops for r in rows) / n
    latencies = [r.msg.latency_ms for r in rows]
    exited = sum(r.msg.exited_early for r in rows)
    frames = sum(r.msg.frames_processed for r in rows) / n
    print("-" * 72)
    acc = f"{correct}/{len(scored)} = {correct / len(scored):.0%}" if scored else "n/a"
    print(f"windows: {n} ({exited} exited early, {frames:.1f} frames processed on average)")
    print(f"accuracy against the clips' true labels: {acc}")
    if uniform:
        saved = 1 - gflops / uniform
        how = f"{saved:.0%} less" if saved >= 0 else f"{-saved:.0%} more"
        print(f"GFLOPs per window: {gflops:.3f} vs Uniform at {max(info.resolutions)} px "
              f"{uniform:.3f} ({how})")
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    line = f"latency p50 {p50:.1f} ms, p99 {p99:.1f} ms"
    # Camera rate from the stamps of the frames each window used (pauses between clips excluded).
    spans = [(len(r.msg.resolutions) - 1, _seconds(r.msg.window_end) - _seconds(r.msg.window_start))
             for r in rows if len(r.msg.resolutions) > 1]
    frames_spanned, seconds_spanned = sum(f for f, _ in spans), sum(t for _, t in spans)
    if seconds_spanned > 0:
        line += f"; camera {frames_spanned / seconds_spanned:.1f} fps"
    if statuses:
        s = statuses[-1]
        line += (f"; node capacity {s.capacity_fps:.0f} fps (frames/s of processing time), "
                 f"{s.frames_dropped} frames dropped, {s.frames_rejected} rejected; "
                 f"device {s.device}")
    print(line)
    print(f"done in {seconds:.1f} s")


if __name__ == "__main__":
    sys.exit(main())
