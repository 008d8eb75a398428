"""Tests of the video_source node (rsee_ros.ros.video_source) and its frame sources."""

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
from rsee_ros.data.synthetic import CLASS_NAMES  # noqa: E402
from rsee_ros.pipeline.rejects import RejectCounter  # noqa: E402
from rsee_ros.resources import DEMO_LABELS, load_clip_labels  # noqa: E402
from rsee_ros.ros.video_source import (  # noqa: E402
    ImageFolderSource,
    RosbagSource,
    SourceError,
    SyntheticClips,
    VideoFileSource,
    VideoSource,
    detect_source_type,
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


# Fixtures: files of each source kind -------------------------------------------------------------


def _frame(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = (i * 40) % 256
    img[: h // 2, : w // 2, 1] = 200
    return img


def _write_video(path: Path, n: int = 10, fps: int = 25) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(_frame(i), format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def _write_bag(path: Path) -> Path:
    """A bag with /cam/raw (3 rgb8 Images) and /cam/compressed (3 PNGs and 1 broken one)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.LATEST)
    img_t, comp_t = ts.types["sensor_msgs/msg/Image"], ts.types["sensor_msgs/msg/CompressedImage"]
    header_t, time_t = ts.types["std_msgs/msg/Header"], ts.types["builtin_interfaces/msg/Time"]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        raw = writer.add_connection("/cam/raw", img_t.__msgtype__, typestore=ts)
        comp = writer.add_connection("/cam/compressed", comp_t.__msgtype__, typestore=ts)
        for i in range(4):
            sec, nsec = 10 + i // 2, (i % 2) * 500_000_000
            header = header_t(stamp=time_t(sec=sec, nanosec=nsec), frame_id="bag_cam")
            t_ns = sec * 10**9 + nsec
            if i < 3:
                rgb = _frame(i)
                msg = img_t(
                    header=header,
                    height=48,
                    width=64,
                    encoding="rgb8",
                    is_bigendian=0,
                    step=64 * 3,
                    data=rgb.reshape(-1),
                )
                writer.write(raw, t_ns, ts.serialize_cdr(msg, img_t.__msgtype__))
                png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1].reshape(-1)
            else:
                png = np.frombuffer(b"not a png", np.uint8)  # rejected, skipped
            cmsg = comp_t(header=header, format="png", data=png)
            writer.write(comp, t_ns + 1, ts.serialize_cdr(cmsg, comp_t.__msgtype__))
    return path


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("media")
    images = root / "images"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"{i:03d}.png"), cv2.cvtColor(_frame(i), cv2.COLOR_RGB2BGR))
    (images / "002b.jpg").write_bytes(b"broken")  # sorted between 002 and nothing: skipped
    (images / "notes.txt").write_text("not an image")
    return {
        "video": _write_video(root / "clip.mp4"),
        "images": images,
        "bag": _write_bag(root / "bag"),
    }


# Frame sources without ROS -----------------------------------------------------------------------


def test_synthetic_clips() -> None:
    src = SyntheticClips(32, clip_frames=4)
    frames = list(src.frames())
    assert len(frames) == 4 * 12
    assert [f.label for f in frames[::4]] == list(CLASS_NAMES[:12])
    assert [f.new_clip for f in frames[:5]] == [True, False, False, False, True]
    assert all(f.rgb.shape == (32, 32, 3) and f.rgb.dtype == np.uint8 for f in frames)
    # The data set generator's frames: video 0 of each class with the same seed.
    from rsee_ros.data.synthetic import SyntheticConfig, render_video

    cfg = SyntheticConfig(seed=0, frames_per_video=4, size=32)
    rng = np.random.default_rng(np.random.SeedSequence([0, 3, 0]))
    np.testing.assert_array_equal(frames[12].rgb, render_video(CLASS_NAMES[3], rng, cfg)[0][0])
    # A second pass (a loop) shows the next video of each class.
    again = list(src.frames())
    assert not np.array_equal(again[0].rgb, frames[0].rgb)
    np.testing.assert_array_equal(SyntheticClips(32, 4).render("grow", 1), np.stack(
        [f.rgb for f in again[:4]]))
    one = SyntheticClips(32, clip_frames=4, action="shrink", num_classes=10)
    assert [f.label for f in one.frames()] == ["shrink"] * 4
    with pytest.raises(SourceError):
        SyntheticClips(action="jump")
    with pytest.raises(SourceError):
        SyntheticClips(action="rotate_cw", num_classes=12)  # class 13 of 14
    with pytest.raises(SourceError):
        SyntheticClips(16)


def test_synthetic_class_range_matches_the_generator() -> None:
    from rsee_ros.data.synthetic import MIN_CLASSES
    from rsee_ros.ros.video_source import SYNTHETIC_CLASS_RANGE

    assert SYNTHETIC_CLASS_RANGE == (MIN_CLASSES, len(CLASS_NAMES))


def test_demo_clip_with_labels() -> None:
    labels = load_clip_labels(DEMO_LABELS)
    assert detect_source_type("demo") == "video"
    src = VideoFileSource(labels.video, labels)
    frames = list(src.frames())
    assert len(frames) == labels.clips[-1].end == 192 and src.fps == 8.0
    assert frames[0].rgb.shape == (128, 128, 3)
    starts = [i for i, f in enumerate(frames) if f.new_clip]
    assert starts == [c.start for c in labels.clips]
    assert [frames[c.start].label for c in labels.clips] == [c.label for c in labels.clips]
    assert {c.label for c in labels.clips} == set(labels.classes)
    # The clip shows the classes of the packaged default model, in its label order.
    from rsee_ros.model import load_checkpoint
    from rsee_ros.resources import DEFAULT_CHECKPOINT

    assert list(labels.classes) == load_checkpoint(DEFAULT_CHECKPOINT).class_names
    assert DEMO_LABELS.stat().st_size + labels.video.stat().st_size < 300_000


def test_default_model_recognises_the_held_out_demo_clips() -> None:
    """The packaged model through the node's pipeline (default settings), clip by clip: the
    clips are held out from training (another seed), so this checks the shipped weights."""
    from rsee_ros.pipeline.runner import RecognitionPipeline
    from rsee_ros.resources import DEFAULT_CHECKPOINT

    labels = load_clip_labels(DEMO_LABELS)
    frames = list(VideoFileSource(labels.video, labels).frames())
    pipeline = RecognitionPipeline(DEFAULT_CHECKPOINT, device="cpu")
    predicted, truth = [], []
    for number, clip in enumerate(labels.clips):
        for index in range(clip.start, clip.end):
            # a 2 s pause between clips (max_gap_s is 1 s): every clip is its own video
            stamp = index / labels.fps + 2.0 * number
            for result in pipeline.push("demo", stamp, frames[index].rgb):
                predicted.append(result.label)
                truth.append(clip.label)
        predicted += [r.label for r in pipeline.flush()]
        truth += [clip.label] * (len(predicted) - len(truth))
    assert len(predicted) == len(labels.clips)  # one window per clip
    correct = sum(p == t for p, t in zip(predicted, truth, strict=True))
    assert correct >= 9, list(zip(truth, predicted, strict=True))  # 12 clips; test split: 89%


def test_video_file_source(media: dict[str, Path], tmp_path: Path) -> None:
    src = VideoFileSource(media["video"])
    assert src.fps == 25.0
    frames = list(src.frames())
    assert len(frames) == 10 and [f.new_clip for f in frames[:2]] == [True, False]
    assert frames[0].rgb.shape == (48, 64, 3)
    assert abs(int(frames[3].rgb[40, 60, 0]) - 120) < 12  # red ramp survives the codec
    src._av = None  # the OpenCV fallback reads the same frames
    cv_frames = list(src.frames())
    assert len(cv_frames) == 10 and cv_frames[0].new_clip
    assert np.abs(cv_frames[3].rgb.astype(int) - frames[3].rgb).mean() < 4
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"garbage" * 50)
    for path in (bad, tmp_path / "missing.mp4"):
        with pytest.raises(SourceError):
            VideoFileSource(path)


def test_image_folder_source(media: dict[str, Path]) -> None:
    rejects = RejectCounter(None)
    src = ImageFolderSource(media["images"], rejects)
    frames = list(src.frames())
    assert len(frames) == 3 and rejects.counts == {"decode_failed": 1}
    np.testing.assert_array_equal(frames[1].rgb, _frame(1))
    assert frames[0].new_clip and not frames[1].new_clip and src.fps is None
    single = ImageFolderSource(media["images"] / "001.png")
    assert len(list(single.frames())) == 1
    with pytest.raises(SourceError):
        ImageFolderSource(media["video"].parent / "nothing_here")


def test_rosbag_source(media: dict[str, Path]) -> None:
    rejects = RejectCounter(None)
    src = RosbagSource(media["bag"], rejects=rejects)  # first image topic by name
    assert src.topic == "/cam/compressed" and src.image_topics == ["/cam/compressed", "/cam/raw"]
    frames = list(src.frames())
    assert len(frames) == 3 and rejects.counts == {"decode_failed": 1}
    assert [f.stamp_ns for f in frames] == [10_000_000_000, 10_500_000_000, 11_000_000_000]
    np.testing.assert_array_equal(frames[2].rgb, _frame(2))
    src.close()
    raw = RosbagSource(next(media["bag"].glob("*.mcap")), topic="/cam/raw")  # the file itself
    frames = list(raw.frames())
    assert len(frames) == 3 and frames[0].new_clip
    np.testing.assert_array_equal(frames[1].rgb, _frame(1))
    # The mean rate over the bag's duration (1.5 s here, set by the other topic's last message).
    assert raw.fps == pytest.approx(2 / 1.5, rel=1e-3)
    raw.close()
    with pytest.raises(SourceError, match="no image topic"):
        RosbagSource(media["bag"], topic="/nope")


def test_detect_source_type_and_resize(media: dict[str, Path]) -> None:
    assert detect_source_type("synthetic") == detect_source_type("") == "synthetic"
    assert detect_source_type(str(media["video"])) == "video"
    assert detect_source_type(str(media["images"])) == "images"
    assert detect_source_type(str(media["images"] / "000.png")) == "images"
    assert detect_source_type(str(media["bag"])) == "rosbag"
    assert detect_source_type(str(next(media["bag"].glob("*.mcap")))) == "rosbag"
    with pytest.raises(SourceError):
        detect_source_type("/no/such/file.mp4")
    img = _frame(0, 64, 48)
    assert resize_to_width(img, 0) is img and resize_to_width(img, 64) is img
    assert resize_to_width(img, 32).shape == (24, 32, 3)
    assert resize_to_width(img, 100).shape == (75, 100, 3)


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
    node = _source(ctx, topic=_topic("params"), qos_reliability="best_effort", qos_depth=2)
    try:
        qos = node._image_pub.qos_profile
        assert (qos.reliability, qos.depth) == (ReliabilityPolicy.BEST_EFFORT, 2)
    finally:
        node.destroy_node()
    with pytest.raises(SourceError):
        _source(ctx, topic=_topic("params"), qos_reliability="sometimes")
    with pytest.raises(SourceError):
        _source(ctx, topic=_topic("params"), duration_s=-1)


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
def test_node_replays_rosbag_with_original_stamps(ctx: rclpy.Context, media: dict) -> None:
    topic = _topic("bag")
    sink = _Sink(ctx, topic)
    node = _source(
        ctx,
        topic=topic,
        source=str(media["bag"]),
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
