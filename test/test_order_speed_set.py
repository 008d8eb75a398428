"""scripts/make_order_speed_set.py: the order-and-speed set from a clip whose motion is known (a
square moving right), read back through the UCF101 reader."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from rsee_ros.data.readers import read_ucf101
from rsee_ros.data.synthetic_set import pick_codec, write_video
from rsee_ros.data.video import read_video

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "make_order_speed_set.py"
STEP = 2  # pixels the square moves right per frame


def _script():
    spec = importlib.util.spec_from_file_location("make_order_speed_set", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _moving_square(path: Path, frames: int = 64) -> None:
    video = np.zeros((frames, 64, 160, 3), np.uint8)
    for t in range(frames):
        video[t, 24:40, STEP * t:STEP * t + 16] = 255
    write_video(path, video, 25, pick_codec())


def _centres(video: np.ndarray) -> np.ndarray:
    """The square's horizontal centre in each frame (columns weighted by brightness)."""
    weight = video.mean(axis=(1, 3))
    return (weight * np.arange(video.shape[2])).sum(1) / weight.sum(1)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("order_speed")
    _moving_square(root / "moving-square.avi")
    module = _script()
    config = module.OrderSpeedConfig(length=8, height=32, test_every=2)
    return root / "set", module.build([root / "moving-square.avi"], root / "set", config)


def test_the_tree_reads_as_ucf101_with_whole_segments_in_one_split(built) -> None:
    out, manifest = built
    split = read_ucf101(out)
    assert split.classes == ["MovingSquareForward", "MovingSquareReversed", "MovingSquareFast"]
    # 64 frames: 4 segments of 16; every second one is a test segment; 3 versions x 2 mirrors
    assert (len(split.train), len(split.test)) == (12, 12) == (
        manifest["train_videos"], manifest["test_videos"])
    groups = {s: {Path(r.path).stem.split("_g")[1][:2] for r in getattr(split, s)}
              for s in ("train", "test")}
    assert groups == {"train": {"01", "03"}, "test": {"02", "04"}}
    for record in split.train + split.test:
        assert Path(record.path).parent.name == split.classes[record.label]


def test_each_version_moves_as_its_class_says(built) -> None:
    out, _ = built
    folder = out / "videos"
    # frames are resized to height 32 (half): the square moves STEP / 2 px per source frame
    step = STEP / 2
    forward = _centres(read_video(folder / "MovingSquareForward/v_MovingSquareForward_g02_c01.avi"))
    reversed_ = _centres(read_video(
        folder / "MovingSquareReversed/v_MovingSquareReversed_g02_c01.avi"))
    fast = _centres(read_video(folder / "MovingSquareFast/v_MovingSquareFast_g02_c01.avi"))
    mirrored = _centres(read_video(
        folder / "MovingSquareForward/v_MovingSquareForward_g02_c02.avi"))
    assert len(forward) == len(reversed_) == len(fast) == 8
    assert np.diff(forward) == pytest.approx(np.full(7, step), abs=0.35)
    assert reversed_ == pytest.approx(forward[::-1], abs=0.35)
    assert np.diff(fast) == pytest.approx(np.full(7, 2 * step), abs=0.35)
    assert fast[0] == pytest.approx(forward[0], abs=0.35)  # the same start, twice the speed
    width = 80  # 160 px at half the height
    assert mirrored == pytest.approx(width - 1 - forward, abs=0.35)
    # segment 2 starts 16 frames into the clip
    assert forward[0] == pytest.approx((STEP * 16 + 7.5) / 2, abs=1.0)


def test_a_clip_too_short_for_two_segments_is_one_line(tmp_path: Path, capsys) -> None:
    _moving_square(tmp_path / "short.avi", frames=20)
    module = _script()
    status = module.main(["--out", str(tmp_path / "set"), "--length", "8",
                          str(tmp_path / "short.avi")])
    assert status == 2
    err = capsys.readouterr().err
    assert "fewer than two segments" in err and "Traceback" not in err


def test_training_windows_overlap_but_never_reach_a_test_segment() -> None:
    module = _script()
    config = module.OrderSpeedConfig(length=4, test_every=3, train_step=2)
    train, test = module.segment_starts(7, config)  # segments of 8 frames; 2 and 5 are test
    assert test == [16, 40]
    assert train == [0, 2, 4, 6, 8, 24, 26, 28, 30, 32, 48]
    span = 2 * config.length
    for start in train:
        assert all(start + span <= t or start >= t + span for t in test)
    # without train_step: one window per training segment, as before
    assert module.segment_starts(7, module.OrderSpeedConfig(length=4, test_every=3)) == (
        [0, 8, 24, 32, 48], [16, 40])


def test_stride_and_overlapping_windows_in_a_built_set(tmp_path: Path) -> None:
    _moving_square(tmp_path / "moving-square.avi", frames=96)
    module = _script()
    config = module.OrderSpeedConfig(length=8, height=32, test_every=2, stride=2, train_step=4)
    manifest = module.build([tmp_path / "moving-square.avi"], tmp_path / "set", config)
    # 96 frames at stride 2: 48, three segments of 16 (the second is the test one); training
    # windows at 0 and 32 (a run of one segment each), the test window at 16
    clip = manifest["clips"]["MovingSquare"]
    assert (clip["segments"], clip["train_windows"], clip["test_windows"]) == (3, 2, 1)
    split = read_ucf101(tmp_path / "set")
    assert (len(split.train), len(split.test)) == (12, 6)
    test_video = tmp_path / "set/videos/MovingSquareForward/v_MovingSquareForward_g02_c01.avi"
    forward = _centres(read_video(test_video))
    # every second source frame at half the height: STEP px per written frame, starting at
    # source frame 32
    assert np.diff(forward) == pytest.approx(np.full(7, STEP), abs=0.35)
    assert forward[0] == pytest.approx((STEP * 32 + 7.5) / 2, abs=1.0)


def test_a_stride_of_zero_is_one_line(tmp_path: Path, capsys) -> None:
    _moving_square(tmp_path / "clip.avi", frames=20)
    status = _script().main(["--out", str(tmp_path / "set"), "--stride", "0",
                             str(tmp_path / "clip.avi")])
    assert status == 2
    err = capsys.readouterr().err
    assert "stride must be at least 1" in err and "Traceback" not in err
