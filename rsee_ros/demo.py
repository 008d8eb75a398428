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
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsee_ros.resources import DEFAULT_CHECKPOINT, DEMO_LABELS, load_clip_labels

CAMERA_TOPIC = "/camera/image_raw"
# The node's max_gap_s in the demo (its default): a longer stamp gap starts a new video. It was
# 0.25 s, and a 2-core CI machine once stalled video_source for longer than that inside a clip,
# splitting the clip into two windows.
GAP_S = 1.0
PAUSE_S = 2.0  # video_source's pause between clips (> GAP_S: each clip is a new video)


def _configure_dds() -> int:
    """Loopback-only DDS for this process and its children; returns the domain id."""
    os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
    os.environ["ROS_LOCALHOST_ONLY"] = "1"
    os.environ.setdefault("ROS_STATIC_PEERS", "127.0.0.1")
    if not os.environ.get("ROS_DOMAIN_ID"):
        os.environ["ROS_DOMAIN_ID"] = str(200 + os.getpid() % 32)  # 200..231
    return int(os.environ["ROS_DOMAIN_ID"])


def _parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m rsee_ros.demo", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", default=None,
                    help=f"model checkpoint (default: {DEFAULT_CHECKPOINT.name}, packaged)")
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
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


class _Child:
    """A node in its own process; its output is kept for the error report."""

    def __init__(self, name: str, module: str, params: dict[str, Any]) -> None:
        args = [sys.executable, "-m", module, "--ros-args"]
        for key, value in params.items():
            args += ["-p", f"{key}:={value}"]
        self.name = name
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env=dict(os.environ, PYTHONUNBUFFERED="1"), start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip())

    def stop(self, timeout: float = 10.0) -> int:
        """SIGINT (as Ctrl-C would), then kill after ``timeout``; returns the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(2)
        return self.proc.returncode

    def tail(self, n: int = 15) -> str:
        return "\n".join(f"  [{self.name}] {line}" for line in self.lines[-n:])


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
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
    from rclpy.signals import SignalHandlerOptions
    from std_msgs.msg import String

    from rsee_ros.msg import ActionRecognition, LabelInfo, RseeStatus

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("rsee_demo")
    rows: list[_Row] = []
    truths: list[tuple[float, str]] = []  # (arrival, label) of each clip start
    infos: list[Any] = []
    statuses: list[Any] = []
    start = time.monotonic()

    def now_s() -> float:
        return node.get_clock().now().nanoseconds * 1e-9

    def truth_for(stamp_s: float) -> str | None:
        # The ground truth of a clip is published just before its first frame; allow for DDS
        # latency (well below the pause between clips). The first label can still arrive late
        # (this reader matched video_source's writer after it started; transient-local
        # durability delivers it then): a window that starts before any label arrived belongs
        # to the first clip.
        label = truths[0][1] if truths else None
        for arrival, value in truths:
            if arrival <= stamp_s + PAUSE_S / 2:
                label = value
        return label

    def on_result(msg: Any) -> None:
        start_s = msg.window_start.sec + msg.window_start.nanosec * 1e-9
        row = _Row(time.monotonic() - start, msg, truth_for(start_s))
        rows.append(row)
        print(_format_row(row), flush=True)

    reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(ActionRecognition, "/rsee_node/actions", on_result, reliable)
    node.create_subscription(RseeStatus, "/rsee_node/status", statuses.append, 10)
    node.create_subscription(LabelInfo, "/rsee_node/label_info", infos.append, latched)
    node.create_subscription(String, "/video_source/ground_truth",
                             lambda m: truths.append((now_s(), m.data)), latched)
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin_until(done: Any, limit: float) -> bool:
        end = time.monotonic() + limit
        while not done() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        return bool(done())

    node_params: dict[str, Any] = {
        "checkpoint": checkpoint, "device": args.device, "image_topics": f"[{CAMERA_TOPIC}]",
        "max_gap_s": GAP_S, "qos_reliability": "reliable", "queue_size": 8,
        "num_threads": args.num_threads,
    }
    if args.exit_threshold is not None:
        node_params["exit_threshold"] = float(args.exit_threshold)
    print(f"rsee demo: ROS_DOMAIN_ID={domain}, DDS on loopback; model {checkpoint}; "
          f"{len(played)} clips of {clips.video.name} at {args.fps:g} fps", flush=True)
    rsee = _Child("rsee_node", "rsee_ros.ros.node", node_params)
    source: _Child | None = None
    status = 1
    try:
        # video_source starts once this listener has discovered rsee_node's result topic, so the
        # first clip's result cannot be published before anyone here listens; it then waits for
        # rsee_node's image subscription and for this listener's ground-truth subscription.
        if not spin_until(
            lambda: (infos and node.count_publishers("/rsee_node/actions") > 0)
            or rsee.proc.poll() is not None,
            args.timeout,
        ):
            raise _DemoError("rsee_node did not start in time", rsee)
        if not infos:
            raise _DemoError("rsee_node stopped", rsee)
        source = _Child("video_source", "rsee_ros.ros.video_source", {
            "source": "demo", "topic": CAMERA_TOPIC, "fps": float(args.fps),
            "clip_pause_s": PAUSE_S, "wait_for_subscribers": True,
            "wait_for_label_subscriber": True, "max_frames": played[-1].end,
        })
        print(f"rsee_node ready: {len(infos[0].class_names)} classes, resolutions "
              f"{list(infos[0].resolutions)}; video_source is playing", flush=True)
        remaining = args.timeout - (time.monotonic() - start)
        spin_until(lambda: source.proc.poll() is not None or rsee.proc.poll() is not None,
                   remaining)
        if rsee.proc.poll() is not None:
            raise _DemoError("rsee_node stopped", rsee)
        if source.proc.poll() is None:
            raise _DemoError("the demo timed out", source)
        if source.proc.returncode != 0:
            raise _DemoError("video_source failed", source)
        spin_until(lambda: len(rows) >= len(played), 3.0)  # the last window's result
        spin_until(lambda: False, 0.3)  # a last status report
        if not rows:
            raise _DemoError("no results arrived", rsee)
        _print_summary(rows, statuses, infos[0], time.monotonic() - start)
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
                print(f"rsee demo: {child.name} exited with {child.proc.returncode}",
                      file=sys.stderr)
                print(child.tail(), file=sys.stderr)
                status = 1
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return status


class _DemoError(RuntimeError):
    def __init__(self, message: str, child: _Child) -> None:
        super().__init__(message)
        self.child = child


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
    latencies = sorted(r.msg.latency_ms for r in rows)
    exited = sum(r.msg.exited_early for r in rows)
    frames = sum(r.msg.frames_processed for r in rows) / n
    print("-" * 72)
    acc = f"{correct}/{len(scored)} = {correct / len(scored):.0%}" if scored else "n/a"
    print(f"windows: {n} ({exited} exited early, {frames:.1f} frames processed on average)")
    print(f"accuracy against the clips' true labels: {acc}")
    print(f"GFLOPs per window: {gflops:.3f} vs Uniform at {max(info.resolutions)} px "
          f"{uniform:.3f} ({1 - gflops / uniform:.0%} less)" if uniform else "")
    p50 = latencies[len(latencies) // 2]
    p99 = latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]
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
