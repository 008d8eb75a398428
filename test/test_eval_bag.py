"""``rsee eval-bag``: sqlite3 and mcap bags written here, replayed through the node's pipeline;
and the same frames through the live node give the same results."""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import yaml

from rsee_ros.cli import main as rsee_main
from rsee_ros.commands.eval_bag import node_parameters, topic_name_problem
from rsee_ros.data.bag import Bag, BagError, load_bag_labels
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


def _write_images(path: Path, storage: str, frames: np.ndarray, stamps: list[float], *,
                  encoding: Callable[[int], str] = lambda i: "rgb8",
                  png: Callable[[int, bytes], bytes] | None = None, zstd: bool = False) -> Path:
    """A bag of ``frames`` on TOPIC, received 1 ms after their header ``stamps``: Image messages
    (``encoding(i)``), or with ``png`` CompressedImage PNGs (``png(i, data)`` may break them);
    ``zstd``: zstd-compressed chunks (mcap)."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.rosbag2.enums import CompressionFormat, CompressionMode
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.LATEST)
    img_t, header_t = ts.types["sensor_msgs/msg/Image"], ts.types["std_msgs/msg/Header"]
    png_t = ts.types["sensor_msgs/msg/CompressedImage"]
    time_t = ts.types["builtin_interfaces/msg/Time"]
    msgtype = (png_t if png else img_t).__msgtype__
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    writer = Writer(path, version=9, storage_plugin=plugin)
    if zstd:
        writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
    with writer:
        conn = writer.add_connection(TOPIC, msgtype, typestore=ts)
        for i, (rgb, t) in enumerate(zip(frames, stamps, strict=True)):
            ns = round(t * 1e9)
            header = header_t(stamp=time_t(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="cam")
            h, w = rgb.shape[:2]
            if png:
                encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))[1]
                data = png(i, encoded.tobytes())
                msg = png_t(header=header, format="png", data=np.frombuffer(data, np.uint8))
            else:
                msg = img_t(header=header, height=h, width=w, encoding=encoding(i),
                            is_bigendian=0, step=w * 3, data=rgb.reshape(-1))
            writer.write(conn, ns + 1_000_000, ts.serialize_cdr(msg, msgtype))
    return path


def _write_bag(path: Path, storage: str) -> Path:
    return _write_images(path, storage, _frames(), _stamps(),
                         encoding=lambda i: "bayer_rggb8" if i == BAD else "rgb8")


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


# Bad input: one line on stderr, exit status 2, before the run --------------------------------


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_bag(tmp_path_factory.mktemp("small") / "bag", "mcap")


def _cli(checkpoint: Path, bag: Path, *options: object) -> int:
    return rsee_main(["eval-bag", str(bag), "--checkpoint", str(checkpoint), "--window-size", "4",
                      "--stride", "2", "--exit-threshold", "0.405", "--max-gap-s", "0.5",
                      "--skip-enabled", "false", "--quiet", *map(str, options)])


def _refused(capsys: pytest.CaptureFixture, checkpoint: Path, bag: Path, *options: object) -> str:
    """Run eval-bag expecting bad input: status 2, one line on stderr and nothing on stdout (the
    run never started); that line."""
    assert _cli(checkpoint, bag, *options) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.startswith("rsee eval-bag: ") and err.count("\n") == 1, (out, err)
    return err


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def _random_frames(n: int, h: int = 96, w: int = 128) -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (n, h, w, 3), dtype=np.uint8)


def test_truncated_mcap_is_evaluated_up_to_the_cut_with_one_warning(
        checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frames, stamps = _random_frames(72), [T0 + 0.1 * i for i in range(72)]  # three 1 MiB chunks
    bag = _write_images(tmp_path / "cut", "mcap", frames, stamps)
    (storage,) = bag.glob("*.mcap")
    storage.write_bytes(storage.read_bytes()[: storage.stat().st_size // 2])
    with pytest.raises(BagError, match=r"cut\.mcap is truncated \(no MCAP footer"):
        Bag(bag)  # not partial: the data set readers refuse it
    out_json = tmp_path / "out.json"
    assert _cli(checkpoint, bag, "--no-labels", "--json", out_json) == 0
    (warning,) = _warnings(caplog)
    match = re.search(r"cut\.mcap is truncated .*: (\d+) of the 72 messages of its metadata.yaml "
                      r"could be read, the other (\d+) \(the last \d+ of its \d+ bytes\)", warning)
    assert match, warning
    read = int(match[1])
    assert 0 < read < 72 and read + int(match[2]) == 72
    doc = json.loads(out_json.read_text())
    assert doc["unreadable"] == warning and doc["frames"][TOPIC]["total"] == read
    pipe = RecognitionPipeline(checkpoint, settings=PipelineSettings(**SETTINGS))
    expected = [r for rgb, t in zip(frames[:read], stamps[:read], strict=True)
                for r in pipe.push(TOPIC, t, rgb, stamp_ns=round(t * 1e9))] + pipe.flush()
    assert len(expected) >= 5  # what could be read is evaluated as a whole bag of it would be
    assert [(w["label"], w["last_stamp_ns"]) for w in doc["windows"]] == [
        (r.label, r.last_stamp_ns) for r in expected]


def _break_chunk_checksum(bag: Path) -> None:
    """Give the second of the three chunks of ``bag``'s MCAP file a wrong CRC."""
    (storage,) = bag.glob("*.mcap")
    data = bytearray(storage.read_bytes())
    pos, chunks = 8, []  # MCAP records: opcode byte, uint64 length, content
    while pos < len(data) - 8:
        opcode, length = data[pos], int.from_bytes(data[pos + 1:pos + 9], "little")
        chunks += [pos] if opcode == 0x06 else []
        pos += 9 + length
    assert len(chunks) == 3
    crc = chunks[1] + 9 + 24  # after opcode, length, start and end times, uncompressed size
    data[crc:crc + 4] = (1).to_bytes(4, "little")
    storage.write_bytes(bytes(data))


def _lose_rows(bag: Path) -> None:
    """Delete rows of ``bag``'s sqlite3 file (metadata.yaml still lists them)."""
    (storage,) = bag.glob("*.db3")
    with sqlite3.connect(storage) as db:
        db.execute("DELETE FROM messages WHERE id > 30")


@pytest.mark.parametrize(("storage", "damage", "problem"), [
    ("mcap", _break_chunk_checksum, r"the messages after the first (\d+) of 72 on /cam/image_raw "
     r"could not be read: Chunk checksum mismatch"),
    ("sqlite3", _lose_rows, r"only (\d+) of the 72 messages on /cam/image_raw could be read"),
], ids=["mcap-chunk-checksum", "sqlite-rows-lost"])
def test_damaged_bag_is_evaluated_up_to_the_damage_with_one_warning(
        checkpoint: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, storage: str,
        damage: Callable[[Path], None], problem: str) -> None:
    frames = np.repeat(np.arange(72, dtype=np.uint8), 96 * 128 * 3).reshape(72, 96, 128, 3)
    bag = _write_images(tmp_path / "bag", storage, frames, [T0 + 0.1 * i for i in range(72)])
    damage(bag)
    out_json = tmp_path / "out.json"
    assert _cli(checkpoint, bag, "--no-labels", "--json", out_json) == 0
    (warning,) = _warnings(caplog)
    match = re.search(problem, warning)
    assert match, warning
    assert 0 < int(match[1]) < 72
    assert json.loads(out_json.read_text())["frames"][TOPIC]["total"] == int(match[1])
    with pytest.raises(BagError, match=problem), Bag(bag) as b:
        list(b.frames([TOPIC]))  # not partial: the data set readers refuse it


def test_truncated_db3_is_refused_in_one_line(checkpoint: Path, tmp_path: Path, capsys) -> None:
    bag = _write_bag(tmp_path / "cut", "sqlite3")
    (storage,) = bag.glob("*.db3")
    size = storage.stat().st_size
    storage.write_bytes(storage.read_bytes()[: size // 2])
    err = _refused(capsys, checkpoint, bag, "--no-labels")
    assert f"cut.db3 is truncated ({size // 2} of its {size} bytes: an interrupted recording?)" \
        in err


@pytest.mark.parametrize(("metadata", "problem"), [
    ("rosbag2_bagfile_information: [unclosed\n  : - {", r"metadata.yaml is not valid YAML"),
    ("- a\n- b\n", r"metadata.yaml is not rosbag2 metadata: no rosbag2_bagfile_information"),
    ("rosbag2_bagfile_information:\n  version: 9\n",
     r"metadata.yaml is not rosbag2 metadata: it lacks storage_identifier, relative_file_paths"),
])
def test_broken_metadata_is_refused_in_one_line(checkpoint: Path, small_bag: Path,
                                                tmp_path: Path, capsys, metadata: str,
                                                problem: str) -> None:
    bag = tmp_path / "bag"
    shutil.copytree(small_bag, bag)
    (bag / "metadata.yaml").write_text(metadata)
    assert re.search(re.escape(str(bag)) + "/" + problem,
                     _refused(capsys, checkpoint, bag, "--no-labels"))


@pytest.mark.parametrize(("make", "problem"), [
    (lambda p: p.with_suffix(".txt").write_text("hello") and p.with_suffix(".txt"),
     "a file that is neither .mcap nor .db3"),
    (lambda p: p.mkdir() or p, "not a rosbag2 recording: an empty folder"),
    (lambda p: p.mkdir() or (p / "a.txt").write_text("a") and (p / "b.csv").write_text("b") and p,
     "not a rosbag2 recording: none of its 2 entries"),
    (lambda p: p.with_suffix(".mcap").write_text("hello") and p.with_suffix(".mcap"),
     "is not an MCAP file"),
])
def test_paths_that_are_not_bags_are_refused_in_one_line(checkpoint: Path, tmp_path: Path,
                                                         capsys, make, problem: str) -> None:
    path = make(tmp_path / "thing")
    err = _refused(capsys, checkpoint, path, "--no-labels")
    assert f"cannot open rosbag {str(path)!r}: " in err and problem in err


def test_a_folder_with_a_storage_file_but_no_metadata_points_to_the_file(
        checkpoint: Path, small_bag: Path, tmp_path: Path, capsys) -> None:
    bag = tmp_path / "bag"
    shutil.copytree(small_bag, bag)
    (bag / "metadata.yaml").unlink()
    assert "no metadata.yaml beside bag.mcap (an interrupted recording? give the storage file " \
        "itself" in _refused(capsys, checkpoint, bag, "--no-labels")
    assert _cli(checkpoint, bag / "bag.mcap", "--no-labels") == 0


def test_write_bag_onto_an_existing_folder_is_refused_before_the_run(
        small_bag: Path, tmp_path: Path, capsys) -> None:
    existing = tmp_path / "results"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    out_json = tmp_path / "out.json"
    err = _refused(capsys, tmp_path / "no_model.pt", small_bag, "--no-labels", "--write-bag",
                   existing, "--json", out_json)  # refused before the model is even looked for
    assert f"--write-bag {existing} exists already (not overwritten)" in err
    assert [p.name for p in existing.iterdir()] == ["keep.txt"] and not out_json.exists()


@pytest.mark.parametrize("where", ["a directory", "under a file", "in /proc"])
def test_unwritable_json_is_refused_before_the_run(small_bag: Path, tmp_path: Path, capsys,
                                                   where: str) -> None:
    (tmp_path / "file").write_text("x")
    out_json, problem = {
        "a directory": (tmp_path, "is a directory"),
        "under a file": (tmp_path / "file" / "sub" / "out.json", f"{tmp_path / 'file'} is not a"),
        "in /proc": (Path("/proc/rsee_no_such_dir/out.json"), "cannot write in /proc"),
    }[where]
    if where == "in /proc" and not Path("/proc/self").exists():
        pytest.skip("no /proc")
    err = _refused(capsys, tmp_path / "no_model.pt", small_bag, "--no-labels", "--json",
                   out_json, "--write-bag", tmp_path / "results")  # before the model is loaded
    assert f"--json {out_json}" in err and problem in err
    assert not (tmp_path / "results").exists()  # nothing written: the run never started


@pytest.mark.parametrize(("name", "text", "problem"), [
    ("l.yaml", "segments: 5\n", "segments must be a list of {start, end, label} mappings, got 5"),
    ("l.yaml", "segments:\n  - {start: 1.0, end: abc, label: wave}\n",
     "segment 1: end must be a finite number of seconds, got 'abc'"),
    ("l.yaml", "segments:\n  - {start: 1.0, end: 2.0}\n", "segment 1: segment without a label"),
    ("l.yaml", "segments:\n  - {start: 0, end: 1, label: wave}\n  - {start: 3, end: 2, label: "
     "clap}\n", "segment 2: end 2 is not after start 3"),
    ("l.yaml", "segments:\n  - {start: 0, end: 2, label: wave}\n  - {start: 1.5, label: clap}\n",
     "segment 1 and segment 2 overlap"),
    ("l.yaml", "label: wave\nsegments:\n  - {start: 0, end: 2, label: clap}\n",
     "give `label` (the whole bag) or `segments`, not both"),
    ("l.yaml", "segments: [\n", "not valid YAML"),
    ("l.csv", "start,end,label\n0,1,wave\n1,x,clap\n", "line 3: end must be a finite number"),
    ("l.csv", "start,end\n0,1\n", "no label column"),
])
def test_label_file_errors_name_the_file(checkpoint: Path, small_bag: Path, tmp_path: Path,
                                         capsys, name: str, text: str, problem: str) -> None:
    labels = tmp_path / name
    labels.write_text(text)
    err = _refused(capsys, checkpoint, small_bag, "--labels", labels)
    assert err.startswith(f"rsee eval-bag: {labels}") and problem in err, err


NAMES = ["/a", "/rsee_node/actions", "/_a/b_1", "/a__b", "/" + "a" * 246, "/" + "a" * 247, "",
         "/", "a", "rsee_node/actions", "/a/", "//a", "/a//b", "/1a", "/a/2b", "/~a", "~/a",
         "/a b", "not a topic!", "/{node}/a", "/ä", "/a-b", "/a.b"]


def test_output_topic_must_be_a_ros_topic_name(checkpoint: Path, small_bag: Path, capsys) -> None:
    err = _refused(capsys, checkpoint, small_bag, "--no-labels", "--output-topic", "not a topic!")
    assert "--output-topic 'not a topic!' is not a ROS 2 topic name: ' ' at index 3" in err
    assert "say '/actions'" in _refused(capsys, checkpoint, small_bag, "--output-topic", "actions")
    valid = {n for n in NAMES if topic_name_problem(n) is None}
    assert valid == {"/a", "/rsee_node/actions", "/_a/b_1", "/a__b", "/" + "a" * 246}


@pytest.mark.ros
def test_topic_name_rules_are_rclpys() -> None:
    validate = pytest.importorskip("rclpy.validate_full_topic_name").validate_full_topic_name
    for name in NAMES:
        try:
            validate(name)
            rclpy_ok = True
        except Exception:  # noqa: BLE001 - rclpy raises InvalidTopicNameException (or others)
            rclpy_ok = False
        assert (topic_name_problem(name) is None) == rclpy_ok, name


def test_json_is_strict_when_the_model_gives_nan(small_bag: Path, tmp_path: Path, checkpoint,
                                                 caplog: pytest.LogCaptureFixture,
                                                 monkeypatch) -> None:
    # A checkpoint with NaN weights is refused on loading (one line, exit 2); NaN that still
    # comes out of a model (overflowing activations) must not break the JSON.
    torch.manual_seed(5)
    model = build_rsee(CONFIG)
    with torch.no_grad():
        dict(model.named_parameters())["accumulator.head.1.bias"][0] = float("nan")
    refused = save_checkpoint(tmp_path / "nan.pt", model, CLASSES)
    assert _cli(refused, small_bag, "--no-labels") == 2
    from dataclasses import replace

    from rsee_ros.pipeline.runner import RecognitionPipeline

    original = RecognitionPipeline._result
    monkeypatch.setattr(RecognitionPipeline, "_result", lambda self, *a: replace(
        original(self, *a), confidence=float("nan")))
    out_json = tmp_path / "out.json"
    assert _cli(checkpoint, small_bag, "--no-labels", "--json", out_json) == 0

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} in the JSON")

    doc = json.loads(out_json.read_text(), parse_constant=refuse)
    confidences = [w["confidence"] for w in doc["windows"]]
    assert confidences and set(confidences) == {None}
    assert doc["non_finite_as_null"] >= len(confidences)
    (warning,) = [w for w in _warnings(caplog) if "non-finite" in w]
    assert f"{doc['non_finite_as_null']} non-finite numbers" in warning
    assert "windows[0].confidence" in warning


def test_threads_option_sets_torch_threads_and_is_documented(checkpoint: Path, small_bag: Path,
                                                             capsys) -> None:
    try:
        assert _cli(checkpoint, small_bag, "--no-labels", "--threads", "2") == 0
        assert torch.get_num_threads() == 2
        assert _cli(checkpoint, small_bag, "--no-labels") == 0
        assert torch.get_num_threads() == 1  # the default
    finally:
        torch.set_num_threads(1)
    capsys.readouterr()
    with pytest.raises(SystemExit):
        rsee_main(["eval-bag", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--threads N torch CPU threads (default: --params' num_threads, else 1" in help_text
    assert "16x slower" in help_text and "--threads" in (REPO / "docs" / "node.md").read_text()


def _break_png(i: int, data: bytes) -> bytes:
    """Frames 1, 4, 7, ...: cut in half; 2, 5, 8, ...: a byte of the image data flipped."""
    if i % 3 == 1:
        return data[: len(data) // 2]
    if i % 3 == 2:
        at = data.index(b"IDAT") + 100
        return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]
    return data


def test_broken_pngs_give_only_the_reject_lines(checkpoint: Path, tmp_path: Path, capfd,
                                                caplog: pytest.LogCaptureFixture) -> None:
    bag = _write_images(tmp_path / "png", "mcap", _random_frames(12, 48, 64),
                        [T0 + 0.1 * i for i in range(12)], png=_break_png)
    out_json = tmp_path / "out.json"
    assert _cli(checkpoint, bag, "--no-labels", "--json", out_json) == 0
    rejected = json.loads(out_json.read_text())["frames"][TOPIC]["rejected"]
    assert rejected == {"decode_failed": 8}
    (warning,) = _warnings(caplog)  # the first reject, then only counted
    assert "rejected image (decode_failed): decode_failed: PNG of" in warning
    assert capfd.readouterr().err == ""  # nothing from libpng or OpenCV's logger


def test_max_input_pixels_rejects_larger_images(checkpoint: Path, small_bag: Path,
                                                tmp_path: Path) -> None:
    out_json = tmp_path / "out.json"
    assert _cli(checkpoint, small_bag, "--no-labels", "--json", out_json,
                "--max-input-pixels", 48 * 64 - 1) == 0
    doc = json.loads(out_json.read_text())
    assert doc["frames"][TOPIC]["rejected"] == {"too_large": N - 1, "unsupported_encoding": 1}
    assert doc["windows"] == []
    assert _cli(checkpoint, small_bag, "--no-labels", "--json", out_json,
                "--max-input-pixels", 48 * 64) == 0
    assert json.loads(out_json.read_text())["frames"][TOPIC]["rejected"] == {
        "unsupported_encoding": 1}
