"""``rsee eval-bag``: sqlite3 and mcap bags written here, replayed through the node's pipeline;
and the same frames through the live node give the same results."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from rsee_ros.cli import main as rsee_main
from rsee_ros.commands.eval_bag import node_parameters
from rsee_ros.data.bag import load_bag_labels
from rsee_ros.evaluation.bag_eval import evaluate_bag
from rsee_ros.model import RSEEConfig, build_rsee, save_checkpoint
from rsee_ros.pipeline.runner import FRAME_OUTCOMES, PipelineSettings, RecognitionPipeline

REPO = Path(__file__).resolve().parents[1]
CLASSES = ["wave", "clap", "jump"]
CONFIG = RSEEConfig(num_classes=3, resolutions=(64, 32), selector_hidden=16,
                    accumulator_hidden=16, selector_shares_backbone=True)
TOPIC = "/cam/image_raw"
T0 = 1_700_000_000.0  # header stamps (s)
N = 14
BAD = 5  # index of the frame written with an unsupported encoding
SETTINGS = dict(window_size=4, stride=2, exit_threshold=0.405, max_gap_s=0.5,
                skip_enabled=False)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    torch.manual_seed(5)
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", build_rsee(CONFIG),
                           CLASSES)


def _frames() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (N, 48, 64, 3), dtype=np.uint8)


def _stamps() -> list[float]:
    """0.1 s apart, with a 2 s gap before frame 10 (a new video)."""
    return [T0 + 0.1 * i + (2.0 if i >= 10 else 0.0) for i in range(N)]


def _write_bag(path: Path, storage: str) -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.LATEST)
    img_t, header_t = ts.types["sensor_msgs/msg/Image"], ts.types["std_msgs/msg/Header"]
    time_t = ts.types["builtin_interfaces/msg/Time"]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        conn = writer.add_connection(TOPIC, img_t.__msgtype__, typestore=ts)
        for i, (rgb, t) in enumerate(zip(_frames(), _stamps(), strict=True)):
            ns = round(t * 1e9)
            header = header_t(stamp=time_t(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="cam")
            msg = img_t(header=header, height=48, width=64, encoding="bayer_rggb8" if i == BAD
                        else "rgb8", is_bigendian=0, step=192, data=rgb.reshape(-1))
            writer.write(conn, ns + 1_000_000, ts.serialize_cdr(msg, img_t.__msgtype__))
    return path


@pytest.fixture(scope="module", params=["sqlite3", "mcap"])
def bag(request, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = _write_bag(tmp_path_factory.mktemp("bags") / f"bag_{request.param}", request.param)
    # Bag label format of rsee_ros.data.bag: times from the bag start.
    (path / "labels.yaml").write_text(yaml.safe_dump({"segments": [
        {"start": 0.0, "end": 0.55, "label": "wave"},
        {"start": 0.55, "end": 1.0, "label": "clap"},
        {"start": 2.0, "label": "jump"},
    ]}))
    return path


def _in_process(checkpoint: Path) -> list:
    """The expected results: the good frames straight into a pipeline."""
    pipe = RecognitionPipeline(checkpoint, settings=PipelineSettings(**SETTINGS))
    out = []
    for i, (rgb, t) in enumerate(zip(_frames(), _stamps(), strict=True)):
        if i != BAD:
            out += pipe.push(TOPIC, t, rgb, stamp_ns=round(t * 1e9), frame_id="cam")
    return out + pipe.flush()


def test_every_frame_is_accounted_for_and_results_match(bag: Path, checkpoint: Path) -> None:
    pipe = RecognitionPipeline(checkpoint, settings=PipelineSettings(**SETTINGS))
    labels = load_bag_labels(bag / "labels.yaml")
    result = evaluate_bag(bag, pipe, labels=labels)  # the bag's only image topic
    counts = result.frames[TOPIC]
    assert counts["total"] == N and counts["rejected"] == {"unsupported_encoding": 1}
    assert sum(counts[k] for k in FRAME_OUTCOMES) + 1 == N
    expected = _in_process(checkpoint)
    assert len(result.windows) == len(expected) >= 5
    for w, r in zip(result.windows, expected, strict=True):
        assert (w["label"], w["resolutions"], w["end_reason"]) == (r.label, r.resolutions,
                                                                   r.end_reason)
        assert w["first_stamp_ns"] == r.first_stamp_ns and w["last_stamp_ns"] == r.last_stamp_ns
        assert w["confidence"] == pytest.approx(r.confidence, abs=1e-5)
    assert any(not w["complete"] and w["end_reason"] == "gap" for w in result.windows)
    # Scored against the segment holding the window's first and last frames.
    for w in result.windows:
        start = (w["first_log_time_ns"] - 1_000_000) * 1e-9 - T0
        end = (w["last_log_time_ns"] - 1_000_000) * 1e-9 - T0
        if end < 0.55:
            assert w["true_label"] == "wave"
        elif start >= 0.55 and end < 1.0:
            assert w["true_label"] == "clap"
        elif start >= 2.0:
            assert w["true_label"] == "jump"
        else:
            assert w["true_label"] is None  # across a boundary: not scored
        if w["true_label"] is not None:
            assert w["correct"] == (w["label"] == w["true_label"])
    summary = result.summary()
    scored = [w for w in result.windows if w["true_label"]]
    assert summary["accuracy"] == pytest.approx(np.mean([w["correct"] for w in scored]))
    assert summary["frames"] == N and summary["windows"] == len(expected)


def test_cli_writes_json_and_a_bag_of_results(bag: Path, checkpoint: Path,
                                              tmp_path: Path) -> None:
    from rosbags.highlevel import AnyReader

    out_json, out_bag = tmp_path / "out.json", tmp_path / "results"
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"/**": {"ros__parameters": {
        "window_size": 4, "stride": 2, "exit_threshold": 0.405, "skip_enabled": False,
        "image_topics": [TOPIC]}}}))
    status = rsee_main(["eval-bag", str(bag), "--checkpoint", str(checkpoint), "--params",
                        str(params), "--max-gap-s", "0.5", "--json", str(out_json),
                        "--write-bag", str(out_bag), "--write-storage", "mcap", "--quiet"])
    assert status == 0
    doc = json.loads(out_json.read_text())
    assert doc["settings"] == PipelineSettings(**SETTINGS).to_dict()
    assert doc["frames"][TOPIC]["total"] == N and doc["summary"]["accuracy"] is not None
    windows = doc["windows"]
    with AnyReader([out_bag]) as reader:  # the custom types come from the bag itself
        conns = {c.topic: c for c in reader.connections}
        assert conns["/rsee_node/actions"].msgtype == "rsee_ros/msg/ActionRecognition"
        msgs = [reader.deserialize(raw, c.msgtype)
                for c, _, raw in reader.messages([conns["/rsee_node/actions"]])]
        info = [reader.deserialize(raw, c.msgtype)
                for c, _, raw in reader.messages([conns["/rsee_node/label_info"]])]
    assert list(info[0].class_names) == CLASSES and list(info[0].resolutions) == [64, 32]
    assert len(msgs) == len(windows)
    for msg, w in zip(msgs, windows, strict=True):
        assert msg.label == w["label"] and msg.resolutions.tolist() == w["resolutions"]
        assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == w["last_stamp_ns"]
        assert msg.window_complete == w["complete"] and msg.source_topic == TOPIC


def test_cli_errors(tmp_path: Path, checkpoint: Path, bag: Path, capsys) -> None:
    assert rsee_main(["eval-bag", str(tmp_path / "nope")]) == 2
    assert rsee_main(["eval-bag", str(bag), "--checkpoint", str(tmp_path / "x.pt")]) == 2
    assert "cannot load the model" in capsys.readouterr().err
    assert rsee_main(["eval-bag", str(bag), "--checkpoint", str(checkpoint), "--topic",
                      "/other", "--no-labels", "--quiet"]) == 2
    assert "no image topic" in capsys.readouterr().err
    not_a_bag = tmp_path / "not_a_bag"
    not_a_bag.mkdir()
    assert rsee_main(["eval-bag", str(not_a_bag), "--checkpoint", str(checkpoint),
                      "--no-labels", "--quiet"]) == 2
    assert "cannot open rosbag" in capsys.readouterr().err
    assert rsee_main(["eval-bag", str(bag), "--checkpoint", str(checkpoint),
                      "--max-resolution", "8", "--quiet"]) == 2


def test_node_parameters_from_the_shipped_config() -> None:
    params = node_parameters(REPO / "config" / "rsee.yaml")
    assert params["window_size"] == 16 and params["image_topics"] == ["/camera/image_raw"]
    fields = set(PipelineSettings.__dataclass_fields__) - {"allowed_resolutions"}
    assert fields <= set(params)  # every pipeline setting is in the config file


def _spin_until(executor, until, timeout: float = 120.0) -> bool:
    """Spin until ``until()`` holds (True) or ``timeout`` passed (False: the failure bound)."""
    end = time.monotonic() + timeout
    while not until() and time.monotonic() < end:
        executor.spin_once(timeout_sec=0.05)
    return until()


@pytest.mark.ros
def test_live_node_gives_the_same_results(bag: Path, checkpoint: Path, ros_context) -> None:
    pytest.importorskip("rsee_ros.msg", reason="rsee_ros messages not built (make setup)")
    import rclpy
    from builtin_interfaces.msg import Time
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.parameter import Parameter
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import Image
    from std_msgs.msg import Header

    from rsee_ros.data.image_conversion import rgb_to_image_msg
    from rsee_ros.data.stamps import split_ns
    from rsee_ros.msg import ActionRecognition
    from rsee_ros.ros.node import RseeNode

    pipe = RecognitionPipeline(checkpoint, settings=PipelineSettings(**SETTINGS))
    from_bag = evaluate_bag(bag, pipe, [TOPIC]).windows
    params = {"checkpoint": str(checkpoint), "image_topics": [TOPIC], "qos_reliability": "reliable",
              "qos_depth": 100, "queue_size": 100, **SETTINGS}
    node = RseeNode(context=ros_context,
                    parameter_overrides=[Parameter(k, value=v) for k, v in params.items()])
    io = rclpy.create_node("rsee_test_io", context=ros_context)
    reliable = QoSProfile(depth=200, reliability=ReliabilityPolicy.RELIABLE)
    camera = io.create_publisher(Image, TOPIC, reliable)
    live: list = []
    results = io.create_subscription(ActionRecognition, "/rsee_node/actions", live.append,
                                     reliable)
    executor = SingleThreadedExecutor(context=ros_context)
    executor.add_node(node)
    executor.add_node(io)
    try:
        assert _spin_until(executor, lambda: camera.get_subscription_count() > 0
                           and results.get_publisher_count() > 0)
        for i, (rgb, t) in enumerate(zip(_frames(), _stamps(), strict=True)):
            sec, nanosec = split_ns(round(t * 1e9))
            header = Header(stamp=Time(sec=sec, nanosec=nanosec), frame_id="cam")
            msg = rgb_to_image_msg(rgb, "rgb8", header)
            if i == BAD:
                msg.encoding = "bayer_rggb8"
            camera.publish(msg)
            # the next frame only after this one went through and its results arrived
            assert _spin_until(executor, lambda n=i + 1: node.frames_received == n
                               and node.idle() and len(live) == node.results_published)
        assert node.rejects.counts == {"unsupported_encoding": 1}
        # The bag's last windows end at its end (flush); the live stream is still open.
        ended_live = [w for w in from_bag if w["end_reason"] != "end_of_stream"]
        assert len(live) == len(ended_live)
        for msg, w in zip(live, ended_live, strict=True):
            assert msg.label == w["label"] and list(msg.resolutions) == w["resolutions"]
            assert msg.confidence == pytest.approx(w["confidence"], abs=1e-5)
            assert (msg.exited_early, msg.window_complete) == (w["exited_early"], w["complete"])
            assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == w["last_stamp_ns"]
            assert msg.window_start.sec * 10**9 + msg.window_start.nanosec == w["first_stamp_ns"]
            assert msg.frames_processed == w["frames_processed"]
    finally:
        executor.shutdown()
        node.destroy_node()
        io.destroy_node()
