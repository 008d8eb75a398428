"""``rsee predict``: the demo clip labelled by the packaged model, the same windows as
``rsee eval-bag`` on a bag of the same frames, the annotated video, unknown results, user
errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from rsee_ros.cli import main as rsee_main
from rsee_ros.data.video import read_video
from rsee_ros.evaluation.bag_eval import evaluate_bag
from rsee_ros.model import load_checkpoint
from rsee_ros.pipeline.runner import PipelineSettings, RecognitionPipeline
from rsee_ros.resources import DEFAULT_CHECKPOINT, DEMO_LABELS, load_clip_labels

TOPIC = "/camera/image_raw"


@pytest.fixture(scope="module")
def demo() -> tuple[Path, list[str]]:
    torch.set_num_threads(1)
    clips = load_clip_labels(DEMO_LABELS)
    return clips.video, [c.label for c in clips.clips]


def test_the_demo_clip_gets_one_window_per_clip_mostly_right(demo, tmp_path: Path) -> None:
    video, labels = demo
    out, table, annotated = tmp_path / "p.json", tmp_path / "p.csv", tmp_path / "p.mp4"
    assert rsee_main(["predict", str(video), "--json", str(out), "--csv", str(table),
                      "--annotate", str(annotated), "--quiet"]) == 0
    doc = json.loads(out.read_text())
    windows = doc["windows"]
    assert len(windows) == len(labels) == 12  # 16-frame clips, tumbling 16-frame windows
    assert [w["first_frame"] for w in windows] == [16 * i for i in range(12)]
    right = sum(w["label"] == truth for w, truth in zip(windows, labels, strict=True))
    assert right >= 9, [w["label"] for w in windows]
    assert doc["summary"]["windows"] == 12 and doc["summary"]["frames"] == 192
    assert 0 < doc["summary"]["mean_gflops"] < doc["summary"]["mean_uniform_gflops"]
    for w in windows:
        assert w["first_frame"] <= w["last_frame"] < w["first_frame"] + 16
        assert len(w["resolutions"]) == w["last_frame"] - w["first_frame"] + 1
    with table.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["label"] for r in rows] == [w["label"] for w in windows]
    assert len(read_video(annotated)) == 192  # as many frames as the input, decodable


def _write_bag(path: Path, frames: np.ndarray, fps: float) -> Path:
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    ts = get_typestore(Stores.LATEST)
    img_t, header_t = ts.types["sensor_msgs/msg/Image"], ts.types["std_msgs/msg/Header"]
    time_t = ts.types["builtin_interfaces/msg/Time"]
    with Writer(path, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        conn = writer.add_connection(TOPIC, img_t.__msgtype__, typestore=ts)
        for i, rgb in enumerate(frames):
            ns = round(i * 1e9 / fps)
            header = header_t(stamp=time_t(sec=ns // 10**9, nanosec=ns % 10**9), frame_id="cam")
            h, w = rgb.shape[:2]
            msg = img_t(header=header, height=h, width=w, encoding="rgb8", is_bigendian=0,
                        step=w * 3, data=rgb.reshape(-1))
            writer.write(conn, ns + 1, ts.serialize_cdr(msg, img_t.__msgtype__))
    return path


def test_the_same_windows_as_eval_bag_on_a_bag_of_the_same_frames(demo, tmp_path: Path) -> None:
    video, _ = demo
    frames = read_video(video)[:64]
    bag = _write_bag(tmp_path / "demo_bag", frames, fps=16.0)
    out = tmp_path / "p.json"
    assert rsee_main(["predict", str(bag), "--json", str(out), "--quiet",
                      "--engine", "torch"]) == 0  # the engine evaluate_bag runs below
    predicted = json.loads(out.read_text())["windows"]
    checkpoint = load_checkpoint(DEFAULT_CHECKPOINT)
    pipeline = RecognitionPipeline(checkpoint.model, checkpoint.class_names, PipelineSettings())
    replayed = evaluate_bag(bag, pipeline, [TOPIC], None, None).windows
    assert len(predicted) == len(replayed) == 4
    for p, r in zip(predicted, replayed, strict=True):
        assert (p["label"], p["resolutions"]) == (r["label"], r["resolutions"])
        assert p["confidence"] == pytest.approx(r["confidence"], abs=1e-6)


def test_min_confidence_gives_unknown(demo, tmp_path: Path) -> None:
    video, _ = demo
    out = tmp_path / "p.json"
    assert rsee_main(["predict", str(video), "--json", str(out), "--quiet", "--max-frames", "48",
                      "--min-confidence", "0.999", "--exit-threshold", "1.0"]) == 0
    windows = json.loads(out.read_text())["windows"]
    assert len(windows) == 3
    assert all((w["label"], w["class_id"]) == ("unknown", -1) for w in windows)
    assert all(w["top_k"][0][1] < 0.999 for w in windows)  # the model's guesses are kept


def test_user_errors_are_one_line(demo, tmp_path: Path, capsys) -> None:
    video, _ = demo
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("a.mp4", "b.mp4"):
        (folder / name).write_bytes(video.read_bytes())
    cases = [
        (["predict", str(tmp_path / "absent.mp4")], "does not exist"),
        (["predict", str(video), "--json", str(tmp_path)], "is a directory"),
        (["predict", str(video), "--csv", str(tmp_path / "no" / "x.csv")], "does not exist"),
        (["predict", str(folder), "--annotate", str(tmp_path / "x.mp4")], "one video"),
        (["predict", str(video), "--topic", "/x"], "for rosbags"),
        (["predict", str(video), "--exit-threshold", "2"], "exit_threshold"),
    ]
    for argv, words in cases:
        assert rsee_main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and words in err, (argv, err)


class _FakeCapture:
    """cv2.VideoCapture of a camera that delivers the demo clip's frames (BGR), then stops."""

    frames: list[np.ndarray] = []

    def __init__(self, index: int) -> None:
        self.index, self._left = index, list(self.frames)

    def isOpened(self) -> bool:  # noqa: N802 - OpenCV's name
        return self.index == 0

    def get(self, prop: int) -> float:
        return 30.0

    def read(self) -> tuple[bool, np.ndarray | None]:
        return (True, self._left.pop(0)) if self._left else (False, None)

    def release(self) -> None:
        self._left = []


def test_a_camera_device_index_is_a_source(demo, tmp_path: Path, monkeypatch, capsys) -> None:
    import cv2

    video, labels = demo
    rgb = read_video(video)[:64]
    _FakeCapture.frames = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in rgb]
    monkeypatch.setattr(cv2, "VideoCapture", _FakeCapture)
    out = tmp_path / "camera.json"
    assert rsee_main(["predict", "0", "--json", str(out), "--quiet"]) == 0
    windows = json.loads(out.read_text())["windows"]
    assert len(windows) == 4 and windows[0]["source"] == "camera:0"
    # the camera's frames are the clip's: the same labels as predicting the file's first 64
    assert rsee_main(["predict", str(video), "--max-frames", "64", "--json",
                      str(tmp_path / "file.json"), "--quiet"]) == 0
    from_file = json.loads((tmp_path / "file.json").read_text())["windows"]
    assert [w["label"] for w in windows] == [w["label"] for w in from_file]
    capsys.readouterr()
    assert rsee_main(["predict", "7"]) == 2  # no such device: one line
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot open camera device 7" in err
