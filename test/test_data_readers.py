"""Tests of rsee_ros.data: decoding, sampling, the data set readers, the data set and the cache.

Miniature UCF101 / HMDB51 trees in their official layouts, class folders and rosbag2 bags are
written by the tests themselves (tiny videos encoded with PyAV).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from rsee_ros.data import (
    BagWindow,
    VideoDataset,
    VideoDecodeError,
    VideoSplit,
    cache_dataset,
    count_frames,
    eval_transform,
    image_topics,
    iter_frames,
    load_bag_labels,
    load_split,
    probe_video,
    read_bag_frames,
    read_class_folders,
    read_frames,
    read_hmdb51,
    read_rosbag,
    read_ucf101,
    read_video,
    sample_indices,
)
from rsee_ros.data import video as video_mod
from rsee_ros.data.bag import DESERIALIZE_FAILED, Bag, BagError
from rsee_ros.data.cache import square_crop
from rsee_ros.data.readers import DatasetLayoutError
from rsee_ros.data.synthetic_set import write_video

REPO = Path(__file__).resolve().parents[1]
H, W, N = 24, 32, 10  # tiny videos: 32x24, 10 frames
SIZE, T = 32, 4  # model resolution and frames per clip in these tests


def frames_with_ids(n: int = N, h: int = H, w: int = W) -> np.ndarray:
    """Frames whose left half is grey level 20 * i (i = frame index): survives lossy coding."""
    f = np.zeros((n, h, w, 3), np.uint8)
    for i in range(n):
        f[i, :, : w // 2] = 20 * i
        f[i, :, w // 2 :] = (40, 200, 90)
    return f


def frame_id(frame: np.ndarray) -> int:
    return int(round(float(frame[4:-4, 2 : W // 2 - 2].mean()) / 20))


def write_clip(path: Path, n: int = N) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    codec = "mpeg4" if path.suffix == ".avi" else "libx264"
    write_video(path, frames_with_ids(n), fps=10, codec=codec)


# --------------------------------------------------------------------------- the package


def test_package_names_load_on_first_use() -> None:
    """A module of the package loads without the others; every exported name resolves."""
    code = (
        "import sys, rsee_ros.data as data, rsee_ros.data.video, rsee_ros.data.image_conversion\n"
        "assert 'torch' not in sys.modules, 'a light module loaded torch'\n"
        "names = {n: getattr(data, n) for n in data.__all__}\n"
        "assert names['VideoDataset'].__module__ == 'rsee_ros.data.datasets'\n"
        "assert 'torch' in sys.modules and set(names) <= set(dir(data))\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


# --------------------------------------------------------------------------- video decoding


def test_read_frames_any_order_with_repeats(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    write_clip(path)
    assert count_frames(path) == N
    got = read_frames(path, [7, 0, 7, 3])
    assert got.shape == (4, H, W, 3) and got.dtype == np.uint8
    assert [frame_id(f) for f in got] == [7, 0, 7, 3]
    assert len(read_video(path)) == N
    # indices past the end give the last frame
    assert frame_id(read_frames(path, [N + 5])[0]) == N - 1


def test_opencv_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(path)

    def broken(*_: object) -> None:
        raise RuntimeError("PyAV disabled for this test")

    monkeypatch.setattr(video_mod, "_pyav_read", broken)
    monkeypatch.setattr(video_mod, "_pyav_info", broken)
    assert count_frames(path) == N
    assert [frame_id(f) for f in read_frames(path, [2, 5])] == [2, 5]


def test_opencv_decodes_when_pyav_is_missing(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "clip.mp4"
    write_clip(path)
    with_pyav = list(iter_frames(path))
    monkeypatch.setattr(video_mod, "av", None)  # as on a ROS install without `pip install av`
    info = probe_video(path, count_frames=False)
    assert (info.fps, info.width, info.height) == (10.0, W, H)
    assert count_frames(path) == N
    assert [frame_id(f) for f in read_frames(path, [2, 5])] == [2, 5]
    without = list(iter_frames(path))
    assert [frame_id(f) for f in without] == list(range(N)) == [frame_id(f) for f in with_pyav]


def test_iter_frames_names_each_decoder_that_failed(tmp_path: Path) -> None:
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"this is not a video" * 50)
    with pytest.raises(VideoDecodeError, match="broken.mp4") as err:
        next(iter_frames(bad))
    assert "_pyav_iter" in err.value.reason and "_cv2_iter" in err.value.reason
    with pytest.raises(VideoDecodeError, match="no such file"):
        next(iter_frames(tmp_path / "missing.mp4"))


def test_corrupt_file_names_itself(tmp_path: Path) -> None:
    bad = tmp_path / "v_Broken_g01_c01.avi"
    bad.write_bytes(b"this is not a video" * 50)
    with pytest.raises(VideoDecodeError, match="v_Broken_g01_c01.avi") as err:
        read_frames(bad, [0])
    assert err.value.path == str(bad)
    with pytest.raises(VideoDecodeError, match="v_Broken_g01_c01.avi"):
        count_frames(bad)


def test_frame_folder(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, f in enumerate(frames_with_ids(12)):  # natural order: img_2 before img_10
        cv2.imwrite(str(folder / f"img_{i + 1}.png"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
    assert count_frames(folder) == 12
    got = read_frames(folder, [11, 1, 9])
    assert [frame_id(f) for f in got] == [11, 1, 9]
    assert np.array_equal(got[1], frames_with_ids(12)[1])  # PNG is lossless


# --------------------------------------------------------------------------- sampling


def test_sampling_test_mode_takes_segment_centres() -> None:
    assert sample_indices(16, 4).tolist() == [2, 6, 10, 14]
    assert sample_indices(3, 8).tolist() == [0, 0, 0, 1, 1, 2, 2, 2]  # short video repeats
    assert sample_indices(1, 3).tolist() == [0, 0, 0]


def test_sampling_train_mode_stays_in_segments() -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        idx = sample_indices(40, 8, train=True, rng=rng)
        assert all(5 * i <= j < 5 * (i + 1) for i, j in enumerate(idx))
    a = sample_indices(100, 8, train=True, rng=np.random.default_rng(3))
    b = sample_indices(100, 8, train=True, rng=np.random.default_rng(3))
    assert a.tolist() == b.tolist()
    short = sample_indices(3, 8, train=True, rng=rng)
    assert len(short) == 8 and short.max() <= 2 and np.all(np.diff(short) >= 0)
    with pytest.raises(ValueError):
        sample_indices(0, 4)


# --------------------------------------------------------------------------- UCF101


UCF_CLASSES = ["ApplyEyeMakeup", "Archery", "HandstandPushups"]


def make_ucf(root: Path) -> tuple[Path, Path]:
    """UCF-101/<Class>/v_<Class>_gXX_c01.avi, groups 1-3; split k tests group k."""
    videos, ann = root / "UCF-101", root / "ucfTrainTestlist"
    ann.mkdir(parents=True)
    (ann / "classInd.txt").write_text("".join(f"{i + 1} {c}\n" for i, c in enumerate(UCF_CLASSES)))
    rels = []
    for c in UCF_CLASSES:
        stem = "HandStandPushups" if c == "HandstandPushups" else c  # the real data set's quirk
        for g in (1, 2, 3):
            rel = f"{c}/v_{stem}_g{g:02d}_c01.avi"
            write_clip(videos / rel, n=N + g)
            rels.append((rel, UCF_CLASSES.index(c), g))
    corrupt = "Archery/v_Archery_g03_c02.avi"
    (videos / corrupt).write_bytes(b"\x00garbage" * 100)
    rels.append((corrupt, 1, 3))
    for k in (1, 2, 3):
        train = "".join(f"{r} {label + 1}\r\n" for r, label, g in rels if g != k)
        test = "".join(f"{r}\r\n" for r, _, g in rels if g == k)
        (ann / f"trainlist0{k}.txt").write_text(train + "ApplyEyeMakeup/v_missing.avi 1\n")
        (ann / f"testlist0{k}.txt").write_text(test)
    return videos, ann


@pytest.fixture(scope="module")
def ucf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_ucf(tmp_path_factory.mktemp("ucf"))


@pytest.mark.parametrize("split", [1, 2, 3])
def test_ucf101_splits(ucf: tuple[Path, Path], split: int) -> None:
    videos, ann = ucf
    s = read_ucf101(videos, ann, split=split)
    assert s.classes == UCF_CLASSES
    test_groups = {f"_g{split:02d}_" in r.name for r in s.test}
    assert test_groups == {True}
    assert not any(f"_g{split:02d}_" in r.name for r in s.train)
    n_corrupt_test = 1 if split == 3 else 0
    assert len(s.test) == 3 + n_corrupt_test and len(s.train) == 6 + 1 - n_corrupt_test
    assert s.missing == ["ApplyEyeMakeup/v_missing.avi"]
    for r in s.train + s.test:  # labels from the list (train) and the class folder (test)
        assert UCF_CLASSES[r.label] == Path(r.path).parent.name
    assert load_split("ucf101", videos, annotations=ann, split=split).test == s.test


def test_ucf101_default_annotation_dir_and_bad_split(ucf: tuple[Path, Path]) -> None:
    videos, _ = ucf
    assert len(read_ucf101(videos).test) == 3  # found beside the video root
    with pytest.raises(ValueError):
        read_ucf101(videos, split=4)



def relayout(tree: Path, dest: Path, moves: dict[str, str]) -> Path:
    """A copy of the data set's top folder ``tree`` at ``dest`` with its folders moved
    (``{"UCF-101": "videos"}``; ``""``: into the top folder itself); returns ``dest``."""
    shutil.copytree(tree, dest)
    for old, new in moves.items():
        target = dest / new if new else dest
        target.mkdir(parents=True, exist_ok=True)
        for item in list((dest / old).iterdir()):
            item.rename(target / item.name)
        (dest / old).rmdir()
    return dest


def names_and_labels(split: VideoSplit) -> tuple[list, list]:
    return [(r.name, r.label) for r in split.train], [(r.name, r.label) for r in split.test]


# the official archives (UCF101.rar: UCF-101/, the split zip: ucfTrainTestlist/) and renamings;
# (moves of folders of the official tree, the folder of class folders afterwards)
UCF_LAYOUTS = {
    "official": ({}, "UCF-101"),
    "ucf101_folder": ({"UCF-101": "UCF101"}, "UCF101"),
    "mmaction": ({"UCF-101": "videos", "ucfTrainTestlist": "annotations"}, "videos"),
    "lists_in_video_folder": ({"ucfTrainTestlist": "UCF-101/ucfTrainTestlist"}, "UCF-101"),
    "lists_loose_in_top": ({"ucfTrainTestlist": ""}, "UCF-101"),
    "lists_loose_with_classes": ({"ucfTrainTestlist": "UCF-101"}, "UCF-101"),
}


@pytest.mark.parametrize("layout", sorted(UCF_LAYOUTS))
def test_ucf101_found_from_top_folder_or_class_folders(
    ucf: tuple[Path, Path], tmp_path: Path, layout: str
) -> None:
    videos, ann = ucf
    moves, class_root = UCF_LAYOUTS[layout]
    top = relayout(videos.parent, tmp_path / "ucf", moves)
    expected = names_and_labels(read_ucf101(videos, ann, split=2))
    for root in (top, top / class_root):
        s = read_ucf101(root, split=2)
        assert names_and_labels(s) == expected, root
        assert all(Path(r.path).is_relative_to(top / class_root) for r in s.train + s.test)
        assert s.missing == ["ApplyEyeMakeup/v_missing.avi"]  # only the one really missing
    assert load_split("ucf101", top, split=2).test == read_ucf101(top / class_root, split=2).test


def test_ucf101_no_layout_says_where_it_looked(ucf: tuple[Path, Path], tmp_path: Path) -> None:
    videos, ann = ucf
    (tmp_path / "stuff").mkdir()
    with pytest.raises(DatasetLayoutError) as err:
        read_ucf101(tmp_path)
    text = str(err.value)
    assert text.startswith(f"{tmp_path}: no UCF101 layout found: looked for classInd.txt, "
                           f"trainlist01.txt and testlist01.txt in {tmp_path}, "
                           f"{tmp_path / 'ucfTrainTestlist'}, {tmp_path / 'annotations'}, ")
    assert text.endswith(f"; and class folders of .avi videos in {tmp_path}, "
                         f"{tmp_path / 'UCF-101'}, {tmp_path / 'UCF101'}, {tmp_path / 'videos'}")
    assert isinstance(err.value, ValueError)  # the readers' error type for bad input
    # split files without the videos
    shutil.copytree(ann, tmp_path / "ucfTrainTestlist")
    with pytest.raises(DatasetLayoutError, match=(
            rf"classInd.txt, trainlist03.txt and testlist03.txt are in "
            rf"{re.escape(str(tmp_path / 'ucfTrainTestlist'))}, but no class folders of .avi "
            rf"videos \(such as ApplyEyeMakeup/\) in {re.escape(str(tmp_path))}, ")):
        read_ucf101(tmp_path, split=3)
    # an annotations folder given without the split files is searched alone
    with pytest.raises(DatasetLayoutError, match=rf"in {re.escape(str(tmp_path / 'stuff'))};"):
        read_ucf101(videos, annotations=tmp_path / "stuff")


def test_dataset_skips_corrupt_video(
    ucf: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    videos, ann = ucf
    records = read_ucf101(videos, ann, split=3).test
    with caplog.at_level(logging.WARNING):
        ds = VideoDataset(records, T, SIZE, progress=False)
    assert ds.skipped == ["v_Archery_g03_c02"]
    assert "v_Archery_g03_c02" in caplog.text and "skipped 1 of 4" in caplog.text
    assert len(ds) == 3
    frames, label, index = ds[1]
    assert frames.shape == (T, 3, SIZE, SIZE) and frames.dtype == torch.float32
    assert label == ds.records[1].label and index == 1
    # test mode: segment centres of N + 3 = 13 frames, test transform
    idx = sample_indices(N + 3, T)
    expected = eval_transform(read_frames(ds.records[1].path, idx), SIZE)
    assert torch.equal(frames, expected)


def test_dataset_train_mode_is_seeded_by_torch(ucf: tuple[Path, Path]) -> None:
    videos, ann = ucf
    ds = VideoDataset(read_ucf101(videos, ann, split=1).train, T, SIZE, train=True, progress=False)
    torch.manual_seed(5)
    a = ds[0][0]
    torch.manual_seed(5)
    b = ds[0][0]
    assert torch.equal(a, b) and a.shape == (T, 3, SIZE, SIZE)


def test_getitem_failure_falls_through(ucf: tuple[Path, Path], tmp_path: Path) -> None:
    videos, ann = ucf
    records = read_ucf101(videos, ann, split=1).test
    ds = VideoDataset(records, T, SIZE, progress=False)
    broken = tmp_path / "gone.avi"
    write_clip(broken)
    ds.records[0] = type(ds.records[0])(str(broken), 0, "gone")
    broken.write_bytes(b"now garbage")
    frames, label, index = ds[0]
    assert index == 1 and "gone" in ds.skipped


# --------------------------------------------------------------------------- HMDB51


def make_hmdb(root: Path) -> tuple[Path, Path]:
    videos, splits = root / "hmdb51", root / "testTrainMulti_7030_splits"
    splits.mkdir(parents=True)
    classes = ["brush_hair", "cartwheel"]
    for c in classes:
        names = [f"{c}_clip_{i}_f_cm_np1_fr_med_{i}.avi" for i in range(4)]
        for name in names:
            write_clip(videos / c / name, n=6)
        for k in (1, 2, 3):
            # video i: train (1) / test (2) rotated by split; video 3 unused (0) in every split
            ids = [1 + (i + k) % 2 for i in range(3)] + [0]
            (splits / f"{c}_test_split{k}.txt").write_text(
                "".join(f"{n} {j} \n" for n, j in zip(names, ids, strict=True))
            )
    return videos, splits


@pytest.mark.parametrize("split", [1, 2, 3])
def test_hmdb51_splits(tmp_path: Path, split: int) -> None:
    videos, splits = make_hmdb(tmp_path)
    s = read_hmdb51(videos, splits, split=split)
    assert s.classes == ["brush_hair", "cartwheel"]
    assert len(s.train) + len(s.test) == 6 and not s.missing
    for r in s.train + s.test:
        assert s.classes[r.label] == Path(r.path).parent.name
        i = int(r.name.split("_clip_")[1].split("_")[0])
        assert i != 3  # unused video left out
        assert (r in s.train) == ((i + split) % 2 == 0)
    ds = VideoDataset(s.test, T, SIZE, progress=False)
    assert ds[0][0].shape == (T, 3, SIZE, SIZE) and not ds.skipped



# the official archives (hmdb51_org.rar's class archives unpacked into hmdb51_org/ or hmdb51/,
# test_train_splits.rar: testTrainMulti_7030_splits/) and renamings
HMDB_LAYOUTS = {
    "official": ({}, "hmdb51"),
    "hmdb51_org": ({"hmdb51": "hmdb51_org"}, "hmdb51_org"),
    "mmaction": ({"hmdb51": "videos", "testTrainMulti_7030_splits": "annotations"}, "videos"),
    "splits_in_video_folder": ({"testTrainMulti_7030_splits":
                                "hmdb51/testTrainMulti_7030_splits"}, "hmdb51"),
    "splits_loose_with_classes": ({"testTrainMulti_7030_splits": "hmdb51"}, "hmdb51"),
}


@pytest.mark.parametrize("layout", sorted(HMDB_LAYOUTS))
def test_hmdb51_found_from_top_folder_or_class_folders(tmp_path: Path, layout: str) -> None:
    videos, splits = make_hmdb(tmp_path / "official")
    moves, class_root = HMDB_LAYOUTS[layout]
    top = relayout(videos.parent, tmp_path / "hmdb", moves)
    expected = names_and_labels(read_hmdb51(videos, splits, split=3))
    for root in (top, top / class_root):
        s = read_hmdb51(root, split=3)
        assert names_and_labels(s) == expected and not s.missing, root
        assert all(Path(r.path).is_relative_to(top / class_root) for r in s.train + s.test)


def test_hmdb51_no_layout_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError) as err:
        load_split("hmdb51", tmp_path, split=2)
    text = str(err.value)
    assert text.startswith(f"{tmp_path}: no HMDB51 layout found: looked for "
                           f"<class>_test_split2.txt files in {tmp_path}, "
                           f"{tmp_path / 'testTrainMulti_7030_splits'}, ")
    assert text.endswith(f"; and class folders of .avi videos in {tmp_path}, "
                         f"{tmp_path / 'hmdb51_org'}, {tmp_path / 'hmdb51'}, "
                         f"{tmp_path / 'HMDB51'}, {tmp_path / 'videos'}")
    videos, splits = make_hmdb(tmp_path / "top")
    shutil.rmtree(videos)  # split files, but the class archives not unpacked
    with pytest.raises(DatasetLayoutError, match=(
            rf"<class>_test_split1.txt files are in {re.escape(str(splits))}, but no class "
            rf"folders of .avi videos \(such as brush_hair/\)")):
        read_hmdb51(tmp_path / "top")


# --------------------------------------------------------------------------- class folders


def make_folders(root: Path) -> None:
    for c in ("jump", "wave"):
        for i in range(5):
            folder = root / c / f"{c}_{i}"
            folder.mkdir(parents=True)
            for j, f in enumerate(frames_with_ids(6)):
                cv2.imwrite(str(folder / f"{j:05d}.jpg"), cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        write_clip(root / c / f"{c}_video.mp4", n=8)
    (root / "notes").mkdir()  # a folder without videos is not a class


def test_class_folders_hash_split(tmp_path: Path) -> None:
    make_folders(tmp_path)
    s = read_class_folders(tmp_path)
    assert s.classes == ["jump", "wave"]
    assert len(s.train) + len(s.test) == 12
    assert s.train == read_class_folders(tmp_path).train  # deterministic
    assert len(read_class_folders(tmp_path, train_fraction=1.0).test) == 0
    assert len(read_class_folders(tmp_path, train_fraction=0.0).train) == 0
    ds = VideoDataset(s.train + s.test, T, SIZE, progress=False)
    assert len(ds) == 12 and not ds.skipped
    assert ds[0][0].shape == (T, 3, SIZE, SIZE)


def test_class_folders_split_file_and_class_order(tmp_path: Path) -> None:
    make_folders(tmp_path)
    (tmp_path / "classes.txt").write_text("wave\njump\n")
    (tmp_path / "splits.json").write_text(
        json.dumps(
            {"train": ["jump/jump_0", "wave/wave_video.mp4"], "test": ["wave/wave_1", "jump/nope"]}
        )
    )
    s = load_split("folder", tmp_path)
    assert s.classes == ["wave", "jump"]
    assert [(r.name, r.label) for r in s.train] == [("jump_0", 1), ("wave_video", 0)]
    assert [r.name for r in s.test] == ["wave_1"] and s.missing == ["jump/nope"]


# --------------------------------------------------------------------------- rosbag2


def write_bag(path: Path, storage: str, n: int = 30, compressed: bool = False,
              broken: dict[int, str] | None = None) -> None:
    """A bag with n frames at 10 Hz on /cam (frame id in the pixels) and one /other topic.

    ``broken``: frame index -> what is wrong with it (``encoding``: bayer_rggb8, ``size``: data
    one byte short, ``junk``: bytes that do not deserialise, ``png``: compressed data that is not
    an image).
    """
    broken = broken or {}
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.ROS2_HUMBLE)
    Image = store.types["sensor_msgs/msg/Image"]
    Compressed = store.types["sensor_msgs/msg/CompressedImage"]
    Header = store.types["std_msgs/msg/Header"]
    Time = store.types["builtin_interfaces/msg/Time"]
    String = store.types["std_msgs/msg/String"]
    plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
    t0 = 1_700_000_000 * 10**9
    frames = frames_with_ids(13)  # grey levels stay below 255: ids cycle mod 13
    with Writer(path, version=9, storage_plugin=plugin) as writer:
        msgtype = Compressed.__msgtype__ if compressed else Image.__msgtype__
        cam = writer.add_connection("/cam", msgtype, typestore=store)
        other = writer.add_connection("/other", String.__msgtype__, typestore=store)
        writer.write(other, t0, store.serialize_cdr(String("start"), String.__msgtype__))
        for i in range(n):
            stamp = t0 + 500_000_000 + i * 100_000_000  # first frame 0.5 s after the bag start
            header = Header(Time(stamp // 10**9, stamp % 10**9), "cam")
            rgb = frames[i % 13]
            if compressed:
                ok, png = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
                data = b"not a png" if broken.get(i) == "png" else png.tobytes()
                msg = Compressed(header, "png", np.frombuffer(data, np.uint8))
            else:
                bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR).reshape(-1)
                encoding = "bayer_rggb8" if broken.get(i) == "encoding" else "bgr8"
                data = bgr[:-1] if broken.get(i) == "size" else bgr
                msg = Image(header, H, W, encoding, 0, W * 3, data)
            raw = store.serialize_cdr(msg, msgtype)
            writer.write(cam, stamp, b"\x00\x01\x00\x00junk" if broken.get(i) == "junk" else raw)


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_bag_opens_its_folder_or_storage_file(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / f"bag_{storage}"
    write_bag(bag, storage, n=5, compressed=storage == "mcap")
    msgtype = "sensor_msgs/msg/" + ("CompressedImage" if storage == "mcap" else "Image")
    (storage_file,) = [p for p in bag.iterdir() if p.suffix in (".mcap", ".db3")]
    for path in (bag, storage_file):
        with Bag(path) as b:
            assert b.image_topics == {"/cam": msgtype} and b.message_count("/cam") == 5
            assert b.choose_topic() == "/cam" and b.start_ns == 1_700_000_000 * 10**9
            assert b.duration_ns == 900_000_001  # /other at 0 s, frames 0.5 .. 0.9 s
            frames, start = list(b.frames(["/cam"])), b.start_ns
    assert [f.stamp_ns - start for f in frames] == [5 * 10**8 + i * 10**8 for i in range(5)]
    assert [frame_id(f.rgb) for f in frames] == list(range(5))
    assert {f.frame_id for f in frames} == {"cam"} and not any(f.error for f in frames)
    assert image_topics(bag) == {"/cam": msgtype}


def test_bag_errors_name_the_image_topics(tmp_path: Path) -> None:
    with pytest.raises(BagError, match="cannot open rosbag"):
        Bag(tmp_path / "missing")
    with pytest.raises(BagError, match="cannot open rosbag"):
        Bag(tmp_path)  # a folder, not a bag
    bag = tmp_path / "bag"
    write_bag(bag, "sqlite3", n=2)
    with Bag(bag) as b:
        with pytest.raises(BagError, match=r"no image topic /other .* carries std_msgs/msg/Str"
                           r"ing, not images; image topics: /cam$"):
            b.choose_topic("/other")
        with pytest.raises(BagError, match=r"no image topic /nope .*is not in it.*: /cam$"):
            b.choose_topics(["/cam", "/nope"])
    (tmp_path / "labels.csv").write_text("label\nwave\n")
    with pytest.raises(ValueError, match="no image topic /nope"):  # BagError is a ValueError
        read_rosbag(bag, tmp_path / "labels.csv", topic="/nope")


def test_bag_chooses_among_several_image_topics_only_when_asked(tmp_path: Path) -> None:
    from rosbags.rosbag2 import Writer
    from rosbags.typesys import Stores, get_typestore

    store = get_typestore(Stores.LATEST)
    bag = tmp_path / "two"
    with Writer(bag, version=9) as writer:
        for topic in ("/cam_b/image", "/cam_a/image"):
            writer.add_connection(topic, "sensor_msgs/msg/Image", typestore=store)
    with Bag(bag) as b:
        assert list(b.image_topics) == ["/cam_a/image", "/cam_b/image"]
        with pytest.raises(BagError, match="several image topics, name one: /cam_a/image, /cam_b"):
            b.choose_topic()
        assert b.choose_topic(first_by_name=True) == "/cam_a/image"
        assert b.choose_topic("/cam_b/image") == "/cam_b/image"
    with Writer(tmp_path / "none", version=9) as writer:
        writer.add_connection("/text", "std_msgs/msg/String", typestore=store)
    with Bag(tmp_path / "none") as b, pytest.raises(BagError, match="no Image/CompressedImage"):
        b.choose_topic(first_by_name=True)


@pytest.mark.parametrize("compressed", [False, True])
def test_bag_frames_carry_each_reject_with_its_reason(tmp_path: Path, compressed: bool) -> None:
    broken = {1: "junk", 3: "png"} if compressed else {1: "junk", 2: "encoding", 4: "size"}
    bag = tmp_path / "bag"
    write_bag(bag, "mcap", n=6, compressed=compressed, broken=broken)
    with Bag(bag) as b:
        frames = list(b.frames(["/cam"]))
    assert len(frames) == 6  # every message, decoded or rejected
    reasons = {i: f.error.reason for i, f in enumerate(frames) if f.error is not None}
    expected = {"junk": DESERIALIZE_FAILED, "png": "decode_failed",
                "encoding": "unsupported_encoding", "size": "size_mismatch"}
    assert reasons == {i: expected[what] for i, what in broken.items()}
    for i, f in enumerate(frames):
        assert (f.rgb is None) == (i in broken) and f.stamp_ns == f.log_ns  # stamps = log times
        if f.rgb is not None:
            assert frame_id(f.rgb) == i
    window = BagWindow("/cam", frames[0].log_ns, frames[-1].log_ns, 6)
    with pytest.raises(VideoDecodeError, match=DESERIALIZE_FAILED):  # a data set skips it
        read_bag_frames(bag, window, [0, 1])
    assert frame_id(read_bag_frames(bag, window, [5])[0]) == 5  # frames not asked: not decoded


@pytest.mark.parametrize("storage", ["sqlite3", "mcap"])
def test_rosbag_yaml_segments(tmp_path: Path, storage: str) -> None:
    bag = tmp_path / f"bag_{storage}"
    write_bag(bag, storage, compressed=storage == "mcap")
    # frames at 0.5, 0.6, ... 3.4 s from the bag start
    (bag / "labels.yaml").write_text(
        "topic: /cam\n"
        "classes: [idle, wave]\n"
        "segments:\n"
        "  - {start: 0.0, end: 1.0, label: idle}\n"  # frames 0-4: one short window (>= 4)
        "  - {start: 1.0, end: 2.2, label: wave, split: train}\n"  # frames 5-16: 1 window + rest
        "  - {start: 2.2, label: idle}\n"  # frames 17-29: one full window
    )
    s = read_rosbag(bag, window=8)
    assert s.classes == ["idle", "wave"]
    assert [(r.label, r.window.num_frames) for r in s.train] == [(1, 8)]
    assert [(r.label, r.window.num_frames) for r in s.test] == [(0, 5), (0, 8)]
    ds = VideoDataset(s.train + s.test, 8, SIZE, progress=False)
    assert not ds.skipped and ds[0][0].shape == (8, 3, SIZE, SIZE)
    from rsee_ros.data import read_record_frames

    got = read_record_frames(s.train[0], np.arange(8))
    assert [frame_id(f) for f in got] == list(range(5, 13))
    got = read_record_frames(s.test[1], [0, 7])
    assert [frame_id(f) for f in got] == [17 % 13, 24 % 13]


def test_rosbag_csv_and_whole_bag_label(tmp_path: Path) -> None:
    bag = tmp_path / "bag"
    write_bag(bag, "sqlite3", n=20)
    csv_file = tmp_path / "bag.labels.csv"
    csv_file.write_text("start,end,label,split\n,1.5,clap,train\n1.5,,wave,\n")
    labels = load_bag_labels(csv_file)
    assert [(x.label, x.start, x.end, x.split) for x in labels.segments] == [
        ("clap", None, 1.5, "train"),
        ("wave", 1.5, None, "test"),
    ]
    s = read_rosbag(bag, window=10, topic="/cam")  # finds bag.labels.csv beside the bag
    assert s.classes == ["clap", "wave"]
    assert [r.window.num_frames for r in s.train] == [10] and len(s.test) == 1
    (tmp_path / "whole.yaml").write_text("label: wave\nclasses: [clap, wave]\n")
    whole = read_rosbag(bag, tmp_path / "whole.yaml", window=5, stride=5)
    assert len(whole.test) == 4 and {r.label for r in whole.test} == {1}


# --------------------------------------------------------------------------- frame cache


def test_square_crop_resizes_only_squares_larger_than_the_side() -> None:
    frames = np.random.default_rng(0).integers(0, 256, (2, 60, 80, 3), dtype=np.uint8)
    assert np.array_equal(square_crop(frames, 73), frames[:, :, 10:70])
    big = np.repeat(np.repeat(frames, 5, axis=1), 5, axis=2)  # 300 x 400
    out = square_crop(big, 73)
    assert out.shape == (2, 73, 73, 3) and out.dtype == np.uint8
    # a resize of the centre square: its mean colour is kept
    assert np.allclose(out.mean(axis=(1, 2)), big[:, :, 50:350].mean(axis=(1, 2)), atol=2)


def test_cache_matches_decoding_and_is_reused(ucf: tuple[Path, Path], tmp_path: Path) -> None:
    videos, ann = ucf
    ds = VideoDataset(read_ucf101(videos, ann, split=3).test, T, 224, progress=False)
    cached = cache_dataset(ds, tmp_path / "cache", progress=False)
    assert len(cached) == len(ds) and cached.skipped == ds.skipped
    files = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(files) == len(ds)
    # 32x24 videos, R = 256: the 24x24 centre square is stored as it is
    assert np.load(files[0], mmap_mode="r").shape == (T, 24, 24, 3)
    for i in range(len(ds)):  # K == T in test mode: same tensors as decoding
        assert torch.equal(cached[i][0], ds[i][0]) and cached[i][1] == ds[i][1]
    mtimes = [f.stat().st_mtime_ns for f in files]
    cache_dataset(ds, tmp_path / "cache", progress=False)
    assert [f.stat().st_mtime_ns for f in files] == mtimes

    train = VideoDataset(read_ucf101(videos, ann, split=3).train, T, 64, train=True, progress=False)
    ctrain = cache_dataset(train, tmp_path / "cache", workers=1, progress=False)
    assert len(ctrain) == len(train)
    arr = np.load(ctrain.files[0], mmap_mode="r")
    assert arr.shape == (2 * T, 24, 24, 3)  # K = 2T; the square is below R = 73
    torch.manual_seed(0)
    assert ctrain[0][0].shape == (T, 3, 64, 64)
