"""Tests of the video_source node (rsee_ros.ros.video_source); its frame sources (no ROS):
test_sources.py."""

from __future__ import annotations

import os

# Keep DDS on loopback; set before rclpy is imported (a rule of this project).
os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] = "LOCALHOST"
os.environ["ROS_LOCALHOST_ONLY"] = "1"

import itertools  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy  # noqa: E402
from rclpy.signals import SignalHandlerOptions  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from std_msgs.msg import String  # noqa: E402

from rsee_ros.data.image_conversion import image_to_rgb  # noqa: E402
from rsee_ros.data.sources import SourceError, SyntheticClips  # noqa: E402
from rsee_ros.data.synthetic import CLASS_NAMES  # noqa: E402
from rsee_ros.ros.video_source import (  # noqa: E402
    VideoSource,
    resize_frame,
    resize_to_width,
)

REPO = Path(__file__).resolve().parents[1]
_DOMAINS = itertools.count(100 + (os.getpid() % 25) * 4)  # 4 ids per test process, 100..199
# Waits end as soon as their event happened; the deadline only bounds a failure, and is generous
# because a loaded 2-core machine can take many seconds to start a Python process with torch.
DEADLINE_S = 120.0


def _domain() -> int:
    return next(_DOMAINS)


def _topic(name: str) -> str:
    return f"/rsee_test_{os.getpid()}/{name}"


# A bag to replay ---------------------------------------------------------------------------------


def _frame(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (i * 40) % 256
    img[: h // 2, : w // 2, 1] = 200
    return img


@pytest.fixture(scope="module")
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """/cam/compressed: 3 PNGs stamped 10.0, 10.5 and 11.0 s, then a broken one."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    path = tmp_path_factory.mktemp("media") / "bag"
    ts = get_typestore(Stores.LATEST)
    comp_t, header_t = ts.types["sensor_msgs/msg/CompressedImage"], ts.types["std_msgs/msg/Header"]
    time_t = ts.types["builtin_interfaces/msg/Time"]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        comp = writer.add_connection("/cam/compressed", comp_t.__msgtype__, typestore=ts)
        for i in range(4):
            sec, nsec = 10 + i // 2, (i % 2) * 500_000_000
            bgr = cv2.cvtColor(_frame(i), cv2.COLOR_RGB2BGR)
            png = cv2.imencode(".png", bgr)[1].reshape(-1) if i < 3 else np.frombuffer(
                b"not a png", np.uint8)
            header = header_t(stamp=time_t(sec=sec, nanosec=nsec), frame_id="bag_cam")
            msg = comp_t(header=header, format="png", data=png)
            writer.write(comp, sec * 10**9 + nsec, ts.serialize_cdr(msg, comp_t.__msgtype__))
    return path


def test_resize_to_width() -> None:
    img = _frame(0, 64, 48)
    assert resize_to_width(img, 0) is img and resize_to_width(img, 64) is img
    assert resize_to_width(img, 32).shape == (24, 32, 3)
    assert resize_to_width(img, 100).shape == (75, 100, 3)


def test_resize_frame_to_a_height() -> None:
    img = _frame(0, 64, 48)
    assert resize_frame(img, 0, 0) is img and resize_frame(img, 64, 48) is img
    assert resize_frame(img, 0, 24).shape == (24, 32, 3)  # width follows the height's scale
    assert resize_frame(img, 640, 0).shape == (480, 640, 3)
    square = _frame(0, 128, 128)
    assert resize_frame(square, 640, 480).shape == (480, 640, 3)  # both: exactly that size


@pytest.mark.ros
def test_node_publishes_at_resize_width_and_height(ctx: rclpy.Context) -> None:
    topic = _topic("resize")
    sink = _Sink(ctx, topic)
    node = _source(ctx, topic=topic, synthetic_size=32, synthetic_clip_frames=4, fps=200,
                   resize_width=64, resize_height=40, wait_for_subscribers=True)
    try:
        assert not node.set_parameters([Parameter("resize_height", value=-1)])[0].successful
        assert _run(ctx, [node, sink.node], lambda: len(sink.images) >= 3)
        # Live: back to 0, the height follows the width's scale again (32x32 -> 64x64).
        assert node.set_parameters([Parameter("resize_height", value=0)])[0].successful
        before = node.published
        assert _run(ctx, [node, sink.node], lambda: len(sink.images) >= before + 3)
        sizes = [(m.width, m.height, len(m.data)) for m in sink.images]
        assert set(sizes[:before]) == {(64, 40, 64 * 40 * 3)}
        assert set(sizes[before:]) == {(64, 64, 64 * 64 * 3)}
    finally:
        node.destroy_node()
        sink.node.destroy_node()


# The node in an isolated context ----------------------------------------------------------------


@pytest.fixture
def ctx() -> Iterator[rclpy.Context]:
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=_domain(), signal_handler_options=SignalHandlerOptions.NO)
    yield context
    context.try_shutdown()


class _Sink:
    """Images and ground-truth labels received by a subscriber node."""

    def __init__(self, ctx: rclpy.Context, topic: str) -> None:
        self.node = rclpy.create_node("test_sink", context=ctx)
        self.images: list[Image] = []
        self.labels: list[str] = []
        reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, topic, self.images.append, reliable)
        latched = QoSProfile(
            depth=10,
            reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL,
        )
        self.node.create_subscription(
            String, "/video_source/ground_truth", lambda m: self.labels.append(m.data), latched
        )


def _run(
    ctx: rclpy.Context, nodes: list, until: Callable[[], bool], timeout: float = DEADLINE_S
) -> bool:
    """Spin ``nodes`` until ``until()`` holds (True) or ``timeout`` passed (False)."""
    executor = SingleThreadedExecutor(context=ctx)
    for node in nodes:
        executor.add_node(node)
    end = time.monotonic() + timeout
    try:
        while not until() and time.monotonic() < end:
            executor.spin_once(timeout_sec=0.05)
        return until()
    finally:
        executor.shutdown()


def _finished(node: VideoSource, sink: _Sink, images: int, labels: int) -> Callable[[], bool]:
    """The node stopped by itself and the sink got that many images and labels."""
    return lambda: node.done.done() and len(sink.images) >= images and len(sink.labels) >= labels


def _source(ctx: rclpy.Context, **params: object) -> VideoSource:
    return VideoSource(
        context=ctx, parameter_overrides=[Parameter(k, value=v) for k, v in params.items()]
    )


def _stamps(images: list[Image]) -> list[float]:
    return [m.header.stamp.sec + m.header.stamp.nanosec * 1e-9 for m in images]


@pytest.mark.ros
def test_node_publishes_synthetic_frames(ctx: rclpy.Context) -> None:
    topic = _topic("synthetic")
    sink = _Sink(ctx, topic)
    node = _source(
        ctx,
        topic=topic,
        synthetic_size=32,
        synthetic_clip_frames=4,
        fps=200,  # an integer is accepted for a seconds/rate parameter
        max_frames=10,
        frame_id="cam_test",
        wait_for_subscribers=True,
    )
    try:
        assert _run(ctx, [node, sink.node], _finished(node, sink, images=10, labels=3))
        assert node.published == 10 and node.done.result().startswith("published max_frames")
        assert len(sink.images) == 10
        for msg in sink.images:
            assert (msg.width, msg.height, msg.encoding, msg.step) == (32, 32, "rgb8", 96)
            assert msg.header.frame_id == "cam_test" and len(msg.data) == 32 * 32 * 3
        stamps = _stamps(sink.images)
        assert all(b > a for a, b in itertools.pairwise(stamps))
        expected = SyntheticClips(32, clip_frames=4).render(CLASS_NAMES[0])[1]
        np.testing.assert_array_equal(image_to_rgb(sink.images[1]), expected)
        assert sink.labels == list(CLASS_NAMES[:3])  # clips start at frames 0, 4 and 8
    finally:
        node.destroy_node()
        sink.node.destroy_node()


@pytest.mark.ros
def test_node_waits_for_a_ground_truth_subscriber_when_asked(ctx: rclpy.Context) -> None:
    topic = _topic("wait_labels")
    images: list[Image] = []
    viewer = rclpy.create_node("test_viewer", context=ctx)
    viewer.create_subscription(Image, topic, images.append, 10)
    node = _source(ctx, topic=topic, synthetic_size=32, synthetic_clip_frames=4, fps=200,
                   max_frames=6, wait_for_subscribers=True, wait_for_label_subscriber=True)
    sink = None
    try:
        assert not _run(ctx, [node, viewer], lambda: node.published > 0, timeout=1.5)
        assert images == []  # an image subscriber alone is not enough
        sink = _Sink(ctx, topic)
        assert _run(ctx, [node, viewer, sink.node], _finished(node, sink, images=6, labels=2))
        assert sink.labels == list(CLASS_NAMES[:2])  # the first clip's label is not lost
    finally:
        node.destroy_node()
        viewer.destroy_node()
        if sink is not None:
            sink.node.destroy_node()


@pytest.mark.ros
def test_node_parameters(ctx: rclpy.Context) -> None:
    node = _source(ctx, topic=_topic("params"), fps=5.0)
    try:
        assert node.fps == 5.0
        ok = node.set_parameters([Parameter("fps", value=40), Parameter("loop", value=True)])
        assert all(r.successful for r in ok) and node.fps == 40.0 and node._loop
        assert node.get_parameter("fps").value == 40
        for bad in (Parameter("fps", value=-1.0), Parameter("fps", value="fast")):
            result = node.set_parameters([bad])[0]
            assert not result.successful and "fps" in result.reason
        assert not node.set_parameters([Parameter("topic", value="/other")])[0].successful
        assert not node.set_parameters([Parameter("resize_width", value=-2)])[0].successful
        assert node.set_parameters([Parameter("resize_width", value=32)])[0].successful
        descriptor = node.describe_parameter("qos_reliability")
        assert descriptor.read_only and "best_effort" in descriptor.additional_constraints
        assert node._image_pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    finally:
        node.destroy_node()
    node = _source(ctx, topic=_topic("params"), qos_reliability="best_effort", qos_depth=2,
                   duration_s=2, clip_pause_s=1)  # integers for the seconds parameters
    try:
        qos = node._image_pub.qos_profile
        assert (qos.reliability, qos.depth) == (ReliabilityPolicy.BEST_EFFORT, 2)
        assert (node._duration_s, node._clip_pause_s) == (2.0, 1.0)
        assert isinstance(node._duration_s, float) and isinstance(node._clip_pause_s, float)
        latched = node._label_pub.qos_profile
        assert (latched.durability, latched.depth) == (DurabilityPolicy.TRANSIENT_LOCAL, 1)
    finally:
        node.destroy_node()
    with pytest.raises(SourceError):
        _source(ctx, topic=_topic("params"), qos_reliability="sometimes")
    for name in ("duration_s", "clip_pause_s"):
        with pytest.raises(SourceError, match=name):
            _source(ctx, topic=_topic("params"), **{name: -1})


@pytest.mark.ros
def test_node_stops_after_duration(ctx: rclpy.Context) -> None:
    node = _source(ctx, topic=_topic("duration"), duration_s=0.2, fps=50, synthetic_size=32)
    try:
        assert _run(ctx, [node], node.done.done)
        assert node.done.result() == "ran for duration_s=0.2" and node.published >= 2
        # stopped by the clock, long before the end of the (192-frame) source
        assert node.published < 192
    finally:
        node.destroy_node()


@pytest.mark.ros
def test_node_loops_with_pause_and_repeats_label(ctx: rclpy.Context) -> None:
    topic = _topic("loop")
    sink = _Sink(ctx, topic)
    node = _source(
        ctx,
        topic=topic,
        synthetic_size=32,
        synthetic_clip_frames=4,
        synthetic_action="grow",
        label="",
        loop=True,
        clip_pause_s=0.5,  # far above the 10 ms frame period, even on a loaded machine
        fps=100.0,
        max_frames=9,
        wait_for_subscribers=True,
    )
    try:
        assert _run(ctx, [node, sink.node], _finished(node, sink, images=9, labels=3))
        gaps = np.diff(_stamps(sink.images))
        assert gaps[3] >= 0.5 and gaps[7] >= 0.5  # the pause before each new clip
        assert max(gaps[[0, 1, 2, 4, 5, 6]]) < 0.5
        assert sink.labels == ["grow"] * 3  # re-published at each clip start
    finally:
        node.destroy_node()
        sink.node.destroy_node()


@pytest.mark.ros
def test_node_replays_rosbag_with_original_stamps(ctx: rclpy.Context, bag: Path) -> None:
    topic = _topic("bag")
    sink = _Sink(ctx, topic)
    node = _source(
        ctx,
        topic=topic,
        source=str(bag),
        bag_topic="/cam/compressed",
        use_original_stamps=True,
        resize_width=32,
        label="wave",
        fps=100.0,
        wait_for_subscribers=True,
    )
    try:
        assert _run(ctx, [node, sink.node], _finished(node, sink, images=3, labels=1))
        assert node.done.result() == "end of source" and not node.failed
        assert _stamps(sink.images) == [10.0, 10.5, 11.0]
        assert all((m.width, m.height) == (32, 24) for m in sink.images)
        assert node.rejects.counts == {"decode_failed": 1}
        assert sink.labels == ["wave"]
    finally:
        node.destroy_node()
        sink.node.destroy_node()


# The node as a separate process -----------------------------------------------------------------


def _spawn(domain: int, *ros_args: str) -> subprocess.Popen:
    env = dict(os.environ)
    env.update(
        ROS_DOMAIN_ID=str(domain),
        ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
        ROS_LOCALHOST_ONLY="1",
        PYTHONUNBUFFERED="1",
    )
    cmd = [sys.executable, "-m", "rsee_ros.ros.video_source", "--ros-args"]
    for arg in ros_args:
        cmd += ["-p", arg]
    return subprocess.Popen(
        cmd,
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # rclpy installs its SIGINT handler even where a shell started the tests ignoring SIGINT


@pytest.mark.ros
def test_subprocess_publishes_and_stops_cleanly_on_sigint() -> None:
    domain = _domain()
    topic = _topic("subprocess")
    small = ("synthetic_size:=32",)
    proc = _spawn(domain, f"topic:={topic}", "fps:=30", *small)
    # Started alongside: a run that stops by itself, and one with a bad source.
    done = _spawn(_domain(), f"topic:={topic}_done", "max_frames:=5", "fps:=100", *small)
    bad = _spawn(_domain(), "source:=/no/such/video.mp4")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain, signal_handler_options=SignalHandlerOptions.NO)
    sink = _Sink(ctx, topic)
    try:

        def got() -> bool:
            return (len(sink.images) >= 5 and bool(sink.labels)) or proc.poll() is not None

        assert _run(ctx, [sink.node], got)
        assert proc.poll() is None, proc.communicate()[1]
        assert all((m.width, m.height, m.encoding) == (32, 32, "rgb8") for m in sink.images)
        assert all(b > a for a, b in itertools.pairwise(_stamps(sink.images)))
        assert sink.labels and sink.labels[0] in CLASS_NAMES  # latched: the clip playing now
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, err = proc.communicate(timeout=DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        sink.node.destroy_node()
        ctx.try_shutdown()
        for other in (done, bad):
            if other.poll() is None and sys.exc_info()[0] is not None:
                other.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err, err

    _, err = done.communicate(timeout=DEADLINE_S)
    assert done.returncode == 0 and "Traceback" not in err, err
    assert "5 frames published" in err
    _, err = bad.communicate(timeout=DEADLINE_S)
    assert bad.returncode == 1 and "Traceback" not in err, err
    assert "does not exist" in err
