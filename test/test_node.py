"""rsee_node over real DDS on loopback: results, live parameters, cameras, gaps, overload, bad
images, start-up errors and clean shutdown. A tiny randomly initialised checkpoint stands in for
the default model."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

pytestmark = pytest.mark.ros

rclpy = pytest.importorskip("rclpy")
pytest.importorskip("rsee_ros.msg", reason="rsee_ros messages not built (make setup)")

import torch  # noqa: E402
from builtin_interfaces.msg import Time  # noqa: E402
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus  # noqa: E402
from rcl_interfaces.msg import Parameter as ParameterMsg  # noqa: E402
from rcl_interfaces.msg import ParameterType  # noqa: E402
from rcl_interfaces.srv import SetParameters  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header, String  # noqa: E402

from rsee_ros.data.image_conversion import rgb_to_image_msg  # noqa: E402
from rsee_ros.model import RSEEConfig, build_rsee, save_checkpoint  # noqa: E402
from rsee_ros.msg import ActionRecognition, LabelInfo, RseeStatus  # noqa: E402
from rsee_ros.pipeline.runner import PipelineSettings, RecognitionPipeline  # noqa: E402
from rsee_ros.resources import DEMO_LABELS, load_clip_labels  # noqa: E402
from rsee_ros.ros.node import RseeNode, StartupError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["wave", "clap", "jump"]
CONFIG = RSEEConfig(num_classes=3, resolutions=(64, 32), selector_hidden=16,
                    accumulator_hidden=16, selector_shares_backbone=True)
NEVER = 1.0
# Waits end as soon as their event happened; the deadline only bounds a failure (generous: a
# loaded 2-core machine can take many seconds to start a process that imports torch).
TIMEOUT = 120.0


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    torch.manual_seed(3)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", build_rsee(CONFIG),
                           CLASSES)


def _frames(n: int, seed: int = 0, h: int = 48, w: int = 64) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def _stamp(t: float) -> Time:
    ns = round(t * 1e9)
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


def _wait(until: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    end = time.monotonic() + timeout
    while not until() and time.monotonic() < end:
        time.sleep(0.005)
    return until()


class Harness:
    """An RseeNode and a test node (camera publishers, result subscribers) on one executor
    spinning in a background thread."""

    def __init__(self, ctx, checkpoint: Path, cameras: dict[str, type], **params) -> None:
        params = {"checkpoint": str(checkpoint), "image_topics": list(cameras),
                  "qos_reliability": "reliable", "qos_depth": 100, "queue_size": 100,
                  "diagnostics_period_s": 0.2, "engine": "torch", **params}
        self.node = RseeNode(
            context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
        )
        self.io = rclpy.create_node("rsee_test_io", context=ctx)
        reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
        self.pubs = {t: self.io.create_publisher(kind, t, reliable) for t, kind in cameras.items()}
        self.results: list[ActionRecognition] = []
        self.status: list[RseeStatus] = []
        self.diagnostics: list[DiagnosticArray] = []
        self.io.create_subscription(ActionRecognition, "/rsee_node/actions",
                                    self.results.append, reliable)
        self.io.create_subscription(RseeStatus, "/rsee_node/status", self.status.append, 10)
        self.io.create_subscription(DiagnosticArray, "/diagnostics", self.diagnostics.append, 10)
        self.set_client = self.io.create_client(SetParameters, "/rsee_node/set_parameters")
        self.executor = SingleThreadedExecutor(context=ctx)
        self.executor.add_node(self.node)
        self.executor.add_node(self.io)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        assert _wait(lambda: all(p.get_subscription_count() for p in self.pubs.values())
                     and self.node._actions_pub.get_subscription_count() > 0)

    def _spin(self) -> None:
        while self.executor.context.ok() and not self._stop:
            self.executor.spin_once(timeout_sec=0.05)

    _stop = False

    def publish(self, topic: str, rgb: np.ndarray, t: float, frame_id: str = "cam",
                wait: bool = True) -> None:
        header = Header(stamp=_stamp(t), frame_id=frame_id)
        if self.pubs[topic].msg_type is CompressedImage:
            ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            msg = CompressedImage(header=header, format="png", data=png.tobytes())
        else:
            msg = rgb_to_image_msg(rgb, "rgb8", header)
        self.publish_msg(topic, msg, wait)

    def publish_msg(self, topic: str, msg, wait: bool = True) -> None:
        before = self.node.frames_received
        self.pubs[topic].publish(msg)
        if wait:  # the next frame only after this one went through and its results arrived
            assert _wait(lambda: self.node.frames_received > before and self.node.idle()
                         and len(self.results) == self.node.results_published)

    def set_params(self, **values) -> list:
        assert self.set_client.wait_for_service(timeout_sec=TIMEOUT)
        request = SetParameters.Request(parameters=[
            ParameterMsg(name=k, value=Parameter(k, value=v).get_parameter_value())
            for k, v in values.items()
        ])
        future = self.set_client.call_async(request)
        assert _wait(future.done)
        return future.result().results

    def close(self) -> None:
        self._stop = True
        self._thread.join(5)
        self.executor.shutdown()
        self.node.destroy_node()
        self.io.destroy_node()


@pytest.fixture
def harness(ros_context, checkpoint) -> Iterator[Callable[..., Harness]]:
    made: list[Harness] = []

    def make(cameras: dict[str, type] | None = None, **params) -> Harness:
        h = Harness(ros_context, checkpoint, cameras or {"/cam0/image_raw": Image}, **params)
        made.append(h)
        return h

    yield make
    for h in made:
        h.close()


def _expected(checkpoint: Path, feed: list[tuple[str, float, np.ndarray]], **settings) -> list:
    pipe = RecognitionPipeline(checkpoint, settings=PipelineSettings(**settings))
    out = []
    for source, t, rgb in feed:
        out += pipe.push(source, t, rgb)
    return out


def _same(msg: ActionRecognition, r) -> None:
    assert msg.source_topic == r.source and msg.label == r.label and msg.class_id == r.class_id
    assert list(msg.resolutions) == r.resolutions
    assert msg.confidence == pytest.approx(r.confidence, abs=1e-4)
    assert (msg.frames_processed, msg.window_length) == (r.frames_processed, r.window_length)
    assert (msg.exited_early, msg.window_complete) == (r.exited_early, r.complete)
    assert msg.gflops == pytest.approx(r.gflops, rel=1e-5)
    assert msg.uniform_gflops == pytest.approx(r.uniform_gflops, rel=1e-5)
    assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == r.last_stamp_ns
    assert msg.window_start.sec * 10**9 + msg.window_start.nanosec == r.first_stamp_ns


def test_publishes_results_label_info_and_diagnostics(ros_context, harness, checkpoint) -> None:
    h = harness(window_size=4, exit_threshold=NEVER)
    frames = _frames(8)
    feed = [("/cam0/image_raw", 100.0 + 0.05 * i, f) for i, f in enumerate(frames)]
    for _, t, rgb in feed:
        h.publish("/cam0/image_raw", rgb, t, frame_id="cam0_optical")
    assert _wait(lambda: len(h.results) == 2)
    expected = _expected(checkpoint, feed, window_size=4, exit_threshold=NEVER)
    for msg, r in zip(h.results, expected, strict=True):
        _same(msg, r)
        assert msg.header.frame_id == "cam0_optical"
        assert list(msg.top_k_labels)[0] == msg.label and len(msg.top_k_labels) == 3
        assert 0 < msg.latency_ms < 5000
    # LabelInfo is latched: a subscriber that comes late still gets it.
    infos: list[LabelInfo] = []
    latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.TRANSIENT_LOCAL)
    h.io.create_subscription(LabelInfo, "/rsee_node/label_info", infos.append, latched)
    assert _wait(lambda: infos)
    assert list(infos[0].class_names) == CLASSES and list(infos[0].resolutions) == [64, 32]
    assert list(infos[0].class_ids) == [0, 1, 2] and infos[0].checkpoint == str(checkpoint)
    assert _wait(lambda: any(s.results_published == 2 for s in h.status))
    status = h.status[-1]
    assert status.device == "cpu" and status.max_resolution == 64 and status.frames_dropped == 0
    assert status.exit_threshold == pytest.approx(1.0) and status.latency_p50_ms > 0
    assert _wait(lambda: h.diagnostics)
    values = {kv.key: kv.value for kv in h.diagnostics[-1].status[0].values}
    for key in ("input_fps", "processed_fps", "frames_dropped", "frames_rejected",
                "latency_p50_ms", "latency_p99_ms", "mean_gflops_per_window", "device"):
        assert key in values
    assert int(values["resolution 64"]) + int(values.get("resolution 32", 0)) + int(
        values.get("resolution skipped", 0)) == 8


def test_parameters_apply_on_the_next_frame_and_bad_values_are_refused(harness) -> None:
    h = harness(window_size=3, exit_threshold=NEVER, skip_enabled=False)
    frames = _frames(40)
    t = iter(100.0 + 0.05 * i for i in range(100))
    cam = "/cam0/image_raw"
    h.publish(cam, frames[0], next(t))
    # Live: exit_threshold 0 exits at the next (processed) frame, mid-window.
    assert all(r.successful for r in h.set_params(exit_threshold=0.0))
    h.publish(cam, frames[1], next(t))
    assert len(h.results) == 1 and h.results[0].exited_early
    assert h.results[0].frames_processed == 2 and h.results[0].window_length == 3
    h.publish(cam, frames[2], next(t))  # the exited window's last frame: no second result
    assert len(h.results) == 1
    # An int for a double parameter is accepted (`ros2 param set ... exit_threshold 1`).
    results = h.set_params(exit_threshold=1, max_resolution=32, window_size=2)
    assert all(r.successful for r in results), [r.reason for r in results]
    assert h.node.get_parameter("window_size").value == 2
    for rgb in frames[3:7]:
        h.publish(cam, rgb, next(t))
    assert [list(m.resolutions) for m in h.results[1:]] == [[32, 32], [32, 32]]
    assert all(m.window_length == 2 for m in h.results[1:])
    # Refused, with the reason; the previous values stay.
    for bad, reason in (
        (dict(max_resolution=16), "no resolution left"),
        (dict(allowed_resolutions=[48]), "not among the model's"),
        (dict(exit_threshold=1.5), "exit_threshold"),
        (dict(window_size=0), ""),
        (dict(max_gap_s=-1.0), "max_gap_s"),
        (dict(device="cuda"), "read-only"),
        (dict(checkpoint="/other.pt"), "read-only"),
    ):
        result = h.set_params(**bad)[0]
        assert not result.successful and reason in result.reason, (bad, result.reason)
    assert h.node.get_parameter("max_resolution").value == 32
    assert h.node.get_parameter("exit_threshold").value == 1
    assert h.node.pipeline.settings.window_size == 2
    # The service applies parameters one by one (cap first, else [64] is above the cap 32).
    assert [r.successful for r in h.set_params(max_resolution=0, allowed_resolutions=[64])] == [
        True, True]
    for rgb in frames[7:9]:
        h.publish(cam, rgb, next(t))
    assert list(h.results[-1].resolutions) == [64, 64]
    # frame_step and top_k, live.
    assert all(r.successful for r in h.set_params(frame_step=2, top_k=1))
    for rgb in frames[9:13]:
        h.publish(cam, rgb, next(t))
    assert len(h.results) == 5 and len(h.results[-1].top_k_labels) == 1
    assert h.results[-1].window_end.nanosec - h.results[-1].window_start.nanosec == pytest.approx(
        0.1e9, abs=1e3)  # frames 1 and 3 of the 4 (every second one)


def test_target_fps_steers_threshold_and_resolution(harness) -> None:
    h = harness(window_size=4, exit_threshold=0.95)
    assert h.set_params(target_fps=10000.0)[0].successful  # unreachable: cheapest settings
    controller = h.node.control.controller
    assert controller is not None
    controller.period_s = 0.05
    frames = _frames(30)
    for i, rgb in enumerate(frames):
        h.publish("/cam0/image_raw", rgb, 100 + 0.05 * i)
    settings = h.node.pipeline.settings
    assert settings.max_resolution == 32 and settings.exit_threshold < 0.95
    assert h.node.get_parameter("exit_threshold").value == 0.95  # the user's value is kept
    assert h.set_params(target_fps=0.0)[0].successful
    settings = h.node.pipeline.settings
    assert (settings.exit_threshold, settings.max_resolution) == (0.95, 0)


@pytest.mark.parametrize("engine", ["torch-fused", "onnxruntime"])
def test_the_node_runs_on_each_engine(harness, checkpoint, engine: str) -> None:
    """The same results as the in-process pipeline on the torch engine (decisions equal;
    confidences within the engines' tolerance)."""
    if engine == "onnxruntime":
        pytest.importorskip("onnxruntime")
    h = harness(window_size=4, exit_threshold=0.45, skip_enabled=False, engine=engine)
    frames = _frames(8, seed=4)
    feed = [("/cam0/image_raw", 200.0 + 0.05 * i, f) for i, f in enumerate(frames)]
    for _, t, rgb in feed:
        h.publish("/cam0/image_raw", rgb, t)
    expected = _expected(checkpoint, feed, window_size=4, exit_threshold=0.45,
                         skip_enabled=False)
    assert _wait(lambda: len(h.results) == len(expected))
    assert h.node.engine_name == engine
    for msg, r in zip(h.results, expected, strict=True):
        assert (msg.label, list(msg.resolutions), msg.exited_early) == (
            r.label, r.resolutions, r.exited_early)
        assert msg.confidence == pytest.approx(r.confidence, abs=1e-4)


def test_two_cameras_do_not_mix(harness, checkpoint) -> None:
    cams = {"/cam0/image_raw": Image, "/cam1/image_raw/compressed": CompressedImage}
    h = harness(cams, window_size=3, exit_threshold=NEVER)
    a, b = _frames(6, seed=1), _frames(6, seed=2)
    feed = []
    for i in range(6):
        feed += [("/cam0/image_raw", 10.0 + 0.1 * i, a[i]),
                 ("/cam1/image_raw/compressed", 10.03 + 0.1 * i, b[i])]
    for topic, t, rgb in feed:
        h.publish(topic, rgb, t)
    assert _wait(lambda: len(h.results) == 4)
    for topic in cams:
        mine = [m for m in h.results if m.source_topic == topic]
        alone = _expected(checkpoint, [f for f in feed if f[0] == topic], window_size=3,
                          exit_threshold=NEVER)
        assert len(mine) == len(alone) == 2
        for msg, r in zip(mine, alone, strict=True):
            _same(msg, r)  # PNG is lossless: the same pixels as the raw camera would give


def test_gap_ends_the_window_and_starts_a_new_video(harness) -> None:
    h = harness(window_size=4, exit_threshold=NEVER, max_gap_s=0.5, skip_enabled=False)
    frames = _frames(8)
    for i in range(3):
        h.publish("/cam0/image_raw", frames[i], 50.0 + 0.1 * i)
    assert h.results == []
    h.publish("/cam0/image_raw", frames[3], 52.0)  # 1.8 s gap
    assert len(h.results) == 1
    cut = h.results[0]
    assert not cut.window_complete and cut.window_length == 3 and cut.frames_processed == 3
    assert (cut.window_end.sec, cut.window_end.nanosec) == (50, 200_000_000)
    for i in range(4, 7):
        h.publish("/cam0/image_raw", frames[i], 52.0 + 0.1 * (i - 3))
    assert len(h.results) == 2 and h.results[1].window_complete
    assert (h.results[1].window_start.sec, h.results[1].window_start.nanosec) == (52, 0)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def test_overload_drops_oldest_frames_without_memory_growth(harness) -> None:
    # Sliding windows (8 sessions per frame) on 320x240 frames: far slower than the burst.
    h = harness(window_size=8, stride=1, exit_threshold=NEVER, queue_size=2)
    msgs = [rgb_to_image_msg(f, "rgb8", Header(frame_id="cam")) for f in _frames(20, h=240,
                                                                                 w=320)]
    rss = []
    for burst in range(3):
        for i in range(150):
            msg = msgs[i % len(msgs)]
            msg.header.stamp = _stamp(1000 + 0.001 * (burst * 150 + i))
            h.publish_msg("/cam0/image_raw", msg, wait=False)
        assert _settled(h.node)
        rss.append(_rss_mb())
        assert h.node.queue_length == 0
    node = h.node
    # DDS may lose some of a burst before the callback (keep-last history); what the node
    # received is accounted for: handled, or dropped from its queue.
    assert node.drops.total > 50 and node.frames_handled + node.drops.total == node.frames_received
    assert node.rejects.total == 0
    assert rss[2] - rss[0] < 25, rss  # bounded queue: memory does not grow with the backlog
    assert _wait(lambda: any(s.frames_dropped == node.drops.total for s in h.status))


def _settled(node: RseeNode, quiet_s: float = 0.5, timeout: float = TIMEOUT) -> bool:
    """Wait until no frame arrived for quiet_s and the worker is idle."""
    end = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < end:
        now = node.frames_received
        if now != last:
            last, since = now, time.monotonic()
        elif node.idle() and time.monotonic() - since > quiet_s:
            return True
        time.sleep(0.02)
    return False


def test_bad_images_are_counted_and_the_node_keeps_running(harness) -> None:
    cams = {"/cam0/image_raw": Image, "/cam0/image_raw/compressed": CompressedImage}
    h = harness(cams, window_size=2, exit_threshold=NEVER)
    good = rgb_to_image_msg(_frames(1)[0], "rgb8", Header(stamp=_stamp(5.0)))

    def image(**fields) -> Image:
        msg = Image(header=Header(stamp=_stamp(5.0)), height=48, width=64, encoding="rgb8",
                    step=192, data=bytes(good.data))
        for k, v in fields.items():
            setattr(msg, k, v)
        return msg

    bad_images = [
        (image(encoding="bayer_rggb8"), "unsupported_encoding"),
        (image(step=100), "size_mismatch"),
        (image(data=bytes(good.data)[:1000]), "size_mismatch"),  # truncated
        (image(height=0, width=0, step=0, data=b""), "empty"),
        (image(encoding="yuv422", step=128 - 1, width=63), "size_mismatch"),
        (image(height=1, width=1000, step=3000, data=bytes(3000)), "degenerate"),
    ]
    bad_compressed = [
        (CompressedImage(format="jpeg", data=b"\xff\xd8 not really a jpeg"), "decode_failed"),
        (CompressedImage(format="png", data=b""), "empty"),
        (CompressedImage(format="png; compressedDepth", data=b"\x00" * 20), "unsupported_encoding"),
    ]
    expected: dict[str, int] = {}
    for msg, reason in bad_images:
        h.publish_msg("/cam0/image_raw", msg)
        expected[reason] = expected.get(reason, 0) + 1
    for msg, reason in bad_compressed:
        h.publish_msg("/cam0/image_raw/compressed", msg)
        expected[reason] = expected.get(reason, 0) + 1
    assert h.node.rejects.counts == expected
    for i in range(2):  # still running: good frames give a result
        h.publish("/cam0/image_raw", _frames(2)[i], 6.0 + 0.1 * i)
    assert len(h.results) == 1
    total = sum(expected.values())
    assert _wait(lambda: any(s.frames_rejected == total for s in h.status))


def test_startup_errors_are_one_clear_line(ros_context, tmp_path: Path, checkpoint,
                                          monkeypatch) -> None:
    monkeypatch.setattr("rsee_ros.ros.node.DEFAULT_CHECKPOINT", tmp_path / "rsee_synthetic.pt")
    with pytest.raises(StartupError, match="no checkpoint given and the default model .*"
                       "rsee_synthetic.pt is not installed; set the checkpoint parameter"):
        RseeNode(context=ros_context)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    for path, words in ((tmp_path / "missing.pt", "file not found"),
                        (junk, "junk.pt: (refused|truncated or corrupt)")):
        with pytest.raises(StartupError, match=words) as info:
            RseeNode(context=ros_context, parameter_overrides=[
                Parameter("checkpoint", value=str(path))])
        assert "\n" not in str(info.value) and len(str(info.value)) <= 300
    with pytest.raises(StartupError, match="max_resolution"):
        RseeNode(context=ros_context, parameter_overrides=[
            Parameter("checkpoint", value=str(checkpoint)), Parameter("max_resolution", value=8)])
    with pytest.raises(StartupError, match="qos_reliability"):
        RseeNode(context=ros_context, parameter_overrides=[
            Parameter("checkpoint", value=str(checkpoint)),
            Parameter("qos_reliability", value="sometimes")])


def _spawn(*ros_args: str) -> subprocess.Popen:
    env = dict(os.environ, PYTHONUNBUFFERED="1", ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               ROS_LOCALHOST_ONLY="1")
    return subprocess.Popen(
        [sys.executable, "-m", "rsee_ros.ros.node", "--ros-args", *ros_args],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_process_errors_and_clean_shutdown(tmp_path: Path, checkpoint) -> None:
    missing = _spawn("-p", f"checkpoint:={tmp_path / 'nope.pt'}")
    running = _spawn("--params-file", str(REPO / "config" / "rsee.yaml"),
                     "-p", f"checkpoint:={checkpoint}", "-p", "num_threads:=1",
                     "-p", "engine:=torch")  # engines: test_the_node_runs_on_each_engine
    try:
        _, err = missing.communicate(timeout=TIMEOUT)
        assert missing.returncode == 1 and "Traceback" not in err, err
        # One line from the node (Jazzy's rcl adds warnings about ROS_LOCALHOST_ONLY, which this
        # project sets on purpose).
        lines = [line for line in err.splitlines() if line.strip() and "[rcl]" not in line]
        assert len(lines) == 1 and "nope.pt: file not found" in lines[0], err
        deadline = time.monotonic() + TIMEOUT
        out = ""
        while "listening on" not in out and time.monotonic() < deadline:
            line = running.stderr.readline()
            if not line:
                break
            out += line
        assert "listening on /camera/image_raw" in out, out
        running.send_signal(signal.SIGTERM)
        _, err = running.communicate(timeout=TIMEOUT)
        assert running.returncode == 0, err
        assert "Traceback" not in err, err
    finally:
        for proc in (missing, running):
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


@pytest.mark.slow
def test_demo_runs_the_two_nodes_and_summarises(checkpoint: Path) -> None:
    """`make demo` in short: two clips through rsee_node and video_source (two processes)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.run(
        [sys.executable, "-m", "rsee_ros.demo", "--checkpoint", str(checkpoint), "--clips", "2",
         "--fps", "40", "--num-threads", "1", "--timeout", str(TIMEOUT), "--engine", "torch"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT + 60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert f"ROS_DOMAIN_ID={os.environ['ROS_DOMAIN_ID']}" in out
    rows = [line for line in out.splitlines() if "truth" in line]
    # One window per clip (the pause between clips splits them), none lost: video_source starts
    # only after the demo's listener discovered rsee_node, and waits for its ground-truth reader.
    assert len(rows) == 2, out
    labels = [c.label for c in load_clip_labels(DEMO_LABELS).clips[:2]]
    assert [row.split("truth")[1].split()[0] for row in rows] == labels, out
    for words in (f"windows: {len(rows)}",
                  f"accuracy against the clips' true labels: 0/{len(rows)}",
                  "GFLOPs per window", "latency p50", "0 frames dropped"):
        assert words in out, out
    assert "Traceback" not in proc.stderr, proc.stderr


def test_edge_parameter_values_are_refused_with_their_type_kept(harness) -> None:
    h = harness(window_size=4, exit_threshold=NEVER)
    for bad, words in ((dict(exit_threshold="fast"), "exit_threshold"),
                       (dict(max_gap_s=float("nan")), "max_gap_s")):
        result = h.set_params(**bad)[0]
        assert not result.successful and words in result.reason, (bad, result.reason)
    empty = Parameter("allowed_resolutions", Parameter.Type.INTEGER_ARRAY, [])
    result = h.node.set_parameters([empty])[0]
    assert not result.successful and "non-empty" in result.reason  # [] does not mean "all"
    # the refused string did not change how exit_threshold is described
    assert h.node.describe_parameter("exit_threshold").type == ParameterType.PARAMETER_DOUBLE
    assert h.node.get_parameter("exit_threshold").value == NEVER
    request = SetParameters.Request(parameters=[
        ParameterMsg(name="", value=Parameter("x", value=1.0).get_parameter_value())])
    future = h.set_client.call_async(request)
    assert _wait(future.done)
    assert not future.result().results[0].successful


def test_late_stamps_and_lost_frames_are_counted_and_reported(harness) -> None:
    h = harness(window_size=8, exit_threshold=NEVER, max_gap_s=1.0)
    frames = _frames(12)
    stamps = [10.0 + 0.1 * i for i in range(12)]
    stamps[5] = stamps[4] - 0.05  # out of order: a late frame
    del stamps[8:10]  # two frames lost on the way: a hole in the 10 Hz cadence
    for t, rgb in zip(stamps, frames, strict=False):
        h.publish("/cam0/image_raw", rgb, t)
    assert h.node.rejects.counts == {"late_stamp": 1}
    assert _wait(lambda: any(s.frames_missing == 2 for s in h.status))

    def warned() -> bool:
        return any(d.status[0].level == DiagnosticStatus.WARN and "missing" in d.status[0].message
                   for d in h.diagnostics)

    assert _wait(warned)


def test_a_topic_with_another_type_is_reported(harness, ros_domain_id: int) -> None:
    h = harness(window_size=4)
    # Another participant: DDS refuses two types on one topic within one participant.
    other = rclpy.Context()
    rclpy.init(context=other, domain_id=ros_domain_id,
               signal_handler_options=SignalHandlerOptions.NO)
    talker = rclpy.create_node("rsee_wrong_type", context=other)
    talker.create_publisher(String, "/cam0/image_raw", 10)

    def reported() -> bool:
        for d in h.diagnostics:
            values = {kv.key: kv.value for kv in d.status[0].values}
            if "std_msgs/msg/String" in values.get("topic /cam0/image_raw", ""):
                return d.status[0].level == DiagnosticStatus.WARN
        return False

    try:
        assert _wait(reported)
    finally:
        talker.destroy_node()
        other.try_shutdown()


def test_lazy_subscription_follows_the_result_listeners(ros_context, checkpoint) -> None:
    node = RseeNode(context=ros_context, parameter_overrides=[
        Parameter("checkpoint", value=str(checkpoint)),
        Parameter("lazy_subscription", value=True)])
    io = rclpy.create_node("rsee_lazy_io", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(io)

    def spin_until(until) -> bool:
        end = time.monotonic() + TIMEOUT
        while not until() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        return bool(until())

    try:
        assert not node.cameras.active
        sub = io.create_subscription(ActionRecognition, "/rsee_node/actions", lambda m: None, 10)
        assert spin_until(lambda: node.cameras.active)
        io.destroy_subscription(sub)
        assert spin_until(lambda: not node.cameras.active)
    finally:
        executor.shutdown()
        node.destroy_node()
        io.destroy_node()


def test_auto_qos_follows_a_publisher_that_appears_later(ros_context, checkpoint) -> None:
    node = RseeNode(context=ros_context, parameter_overrides=[
        Parameter("checkpoint", value=str(checkpoint)),
        Parameter("image_topics", value=["/auto_cam/image_raw"]),
        Parameter("qos_reliability", value="auto")])
    io = rclpy.create_node("rsee_auto_io", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(io)

    def reliability() -> ReliabilityPolicy:
        (info,) = node.get_subscriptions_info_by_topic("/auto_cam/image_raw")
        return info.qos_profile.reliability

    try:
        assert reliability() == ReliabilityPolicy.BEST_EFFORT  # nobody publishes yet
        io.create_publisher(Image, "/auto_cam/image_raw",
                            QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        end = time.monotonic() + TIMEOUT
        while reliability() != ReliabilityPolicy.RELIABLE and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        assert reliability() == ReliabilityPolicy.RELIABLE
    finally:
        executor.shutdown()
        node.destroy_node()
        io.destroy_node()


def test_the_parameter_file_lists_every_parameter_with_its_default() -> None:
    import yaml

    from rsee_ros.ros.node import PARAMETERS

    values = yaml.safe_load((REPO / "config" / "rsee.yaml").read_text())["/**"]["ros__parameters"]
    assert values == {spec.name: spec.default for spec in PARAMETERS}
    text = (REPO / "docs" / "node.md").read_text()
    for spec in PARAMETERS:
        assert f"| `{spec.name}` |" in text, spec.name
