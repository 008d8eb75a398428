"""docs/walkthrough.md end to end: record (a rosbag2 written with rosbags), label (labels.yaml
of time segments), train (``data.kind: rosbag`` with ``data.val_fraction``), calibrate, export,
run the node on the export (onnxruntime) and evaluate a held-out recording (``rsee eval-bag``).

A tiny model on three synthetic classes keeps it to minutes on a loaded 2-core machine; waits
end on their event, their deadlines only bound a failure."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from rsee_ros.cli import main as rsee
from rsee_ros.data.sources import SyntheticClips
from rsee_ros.model import load_checkpoint

pytestmark = pytest.mark.slow

TOPIC = "/camera/image_raw"
ACTIONS = ("grow", "shrink", "slide_striped")
CLIP = 8  # frames per clip (two windows of 4)
FPS = 10.0
START_NS = 1_700_000_000 * 10**9  # recordings carry wall-clock stamps
TINY = ["model.resolutions=[64, 48, 40]", "model.selector_hidden=16", "model.accumulator_hidden=16",
        "model.selector_shares_backbone=true", "pretrained=false"]
TIMEOUT = 180.0


def _record(path: Path, clips: int, first: int, train: int) -> np.ndarray:
    """What ``ros2 bag record`` would give: ``clips`` clips of each action in turn on TOPIC at
    FPS, and the labels.yaml a user writes beside it (one time segment per clip; the first
    ``train`` of each action for training). Returns the frames."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    source = SyntheticClips(size=64, clip_frames=CLIP)
    order = [(k, a) for k in range(clips) for a in ACTIONS]
    frames = np.concatenate([source.render(a, first + k) for k, a in order])
    ts = get_typestore(Stores.LATEST)
    img_t, header_t = ts.types["sensor_msgs/msg/Image"], ts.types["std_msgs/msg/Header"]
    time_t = ts.types["builtin_interfaces/msg/Time"]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(TOPIC, img_t.__msgtype__, typestore=ts)
        for i, rgb in enumerate(frames):
            ns = START_NS + round(i * 1e9 / FPS)
            header = header_t(stamp=time_t(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="cam")
            msg = img_t(header=header, height=64, width=64, encoding="rgb8", is_bigendian=0,
                        step=64 * 3, data=rgb.reshape(-1))
            writer.write(conn, ns, ts.serialize_cdr(msg, img_t.__msgtype__))
    seconds = CLIP / FPS
    (path / "labels.yaml").write_text(yaml.safe_dump({
        "topic": TOPIC, "classes": list(ACTIONS),
        "segments": [{"start": round(j * seconds, 3), "end": round((j + 1) * seconds, 3),
                      "label": a, "split": "train" if k < train else "test"}
                     for j, (k, a) in enumerate(order)],
    }, sort_keys=False))
    return frames


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Record, label, train, calibrate and export, as docs/walkthrough.md does."""
    for module in ("rosbags", "onnxscript", "onnxruntime"):  # make setup installs them
        pytest.importorskip(module)
    root = tmp_path_factory.mktemp("walkthrough")
    bag, heldout = root / "session1", root / "session2"
    _record(bag, clips=4, first=0, train=3)
    frames = _record(heldout, clips=1, first=10, train=0)
    train = ["train", "--config", "config/train_synthetic.yaml", "--no-progress",
             f"out_dir={root / 'runs'}", "data.kind=rosbag", f"data.root={bag}", "data.frames=4",
             "data.options={window: 4}", "data.val_fraction=0.34",
             f"data.cache_dir={root / 'cache'}", "train.batch_size=4", "train.eval_batch_size=8",
             *TINY, *(f"stages.{s}.epochs=1" for s in ("warmup", "joint", "finetune", "gate"))]
    assert rsee(train) == 0
    trained = root / "runs" / "gate" / "model.pt"
    calibrated = root / "model.pt"
    assert rsee(["calibrate", "--checkpoint", str(trained), "--data", str(bag), "--out",
                 str(calibrated), "--no-progress"]) == 0
    export = root / "model_onnx"
    assert rsee(["export", "--checkpoint", str(calibrated), "--out", str(export)]) == 0
    return {"bag": bag, "heldout": heldout, "frames": frames, "checkpoint": calibrated,
            "export": export, "metadata": load_checkpoint(calibrated).metadata}


def test_training_on_the_recording_holds_out_val_and_calibrates(walkthrough) -> None:
    metadata = walkthrough["metadata"]
    checkpoint = load_checkpoint(walkthrough["checkpoint"])
    assert checkpoint.class_names == list(ACTIONS)
    assert metadata["train_config"]["data"]["kind"] == "rosbag"
    # 3 training clips of 2 windows per action: 2 of each action's 6 held out
    assert metadata["calibration"]["videos"] == 6 and metadata["operating_point"]["videos"] == 6
    manifest = json.loads((walkthrough["export"] / "manifest.json").read_text())
    assert manifest["class_names"] == list(ACTIONS)
    assert manifest["metadata"]["operating_point"] == metadata["operating_point"]
    assert manifest["metadata"]["calibration"] == metadata["calibration"]


def test_eval_bag_on_a_held_out_recording(walkthrough, tmp_path) -> None:
    out = tmp_path / "session2.json"
    threshold = walkthrough["metadata"]["operating_point"]["threshold"]
    assert rsee(["eval-bag", str(walkthrough["heldout"]), "--checkpoint",
                 str(walkthrough["export"]), "--engine", "onnxruntime", "--window-size", "4",
                 "--exit-threshold", str(threshold), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    windows = report["windows"]
    assert len(windows) == 6 and all(w["label"] in (*ACTIONS, "unknown") for w in windows)
    assert [w["true_label"] for w in windows] == [a for a in ACTIONS for _ in range(2)]


def _wait(until: Callable[[], bool], timeout: float = TIMEOUT) -> bool:
    end = time.monotonic() + timeout
    while not until() and time.monotonic() < end:
        time.sleep(0.01)
    return until()


@pytest.mark.ros
def test_the_node_runs_the_export_at_its_operating_point(walkthrough, request) -> None:
    rclpy = pytest.importorskip("rclpy")
    pytest.importorskip("rsee_ros.msg", reason="rsee_ros messages not built (make setup)")
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image

    from rsee_ros.data.image_conversion import rgb_to_image_msg
    from rsee_ros.msg import ActionRecognition
    from rsee_ros.ros.node import RseeNode

    context = request.getfixturevalue("ros_context")
    params = {"checkpoint": str(walkthrough["export"]), "engine": "onnxruntime",
              "image_topics": [TOPIC], "window_size": 4, "qos_reliability": "reliable",
              "queue_size": 100, "qos_depth": 100}
    node = RseeNode(context=context,
                    parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    io = rclpy.create_node("walkthrough_camera", context=context)
    reliable = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    camera = io.create_publisher(Image, TOPIC, reliable)
    results: list[ActionRecognition] = []
    io.create_subscription(ActionRecognition, "/rsee_node/actions", results.append, reliable)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(io)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set() and context.ok():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        point = walkthrough["metadata"]["operating_point"]["threshold"]
        assert node.engine_name == "onnxruntime"
        assert node.get_parameter("exit_threshold").value == pytest.approx(point)
        assert "the model's operating point" in node.exit_threshold_source
        assert node.pipeline.temperature == pytest.approx(
            walkthrough["metadata"]["calibration"]["temperature"])
        assert _wait(lambda: camera.get_subscription_count() > 0
                     and node._actions_pub.get_subscription_count() > 0)
        frames = walkthrough["frames"]
        for i, rgb in enumerate(frames):
            ns = START_NS + round(i * 1e9 / FPS)
            msg = rgb_to_image_msg(rgb, "rgb8")
            msg.header.stamp.sec, msg.header.stamp.nanosec = ns // 10**9, ns % 10**9
            before = node.frames_received
            camera.publish(msg)
            assert _wait(lambda before=before: node.frames_received > before and node.idle())
        assert _wait(lambda: len(results) == node.results_published >= len(frames) // 4)
    finally:
        stop.set()
        spinner.join(5)
        executor.shutdown()
        node.destroy_node()
        io.destroy_node()
    assert all(m.label in ACTIONS or (m.label == "unknown" and m.class_id == -1)
               for m in results)
    assert all(m.source_topic == TOPIC and m.window_length == 4 for m in results)
