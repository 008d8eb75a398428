"""Data set readers: UCF101, HMDB51, class folders and rosbag2 -> :class:`VideoSplit`.

Readers only list files and labels; nothing is decoded here. Listed videos that are missing on
disk are logged, left out and named in ``VideoSplit.missing``. UCF101 and HMDB51 are found from
the data set's top folder or from its folder of class folders, in the official archives' layouts
and a few common renamings; a root in none of them gives a :class:`DatasetLayoutError` that says
where it looked. Bags and their label files: :mod:`rsee_ros.data.bag`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rsee_ros.data.bag import Bag, BagLabels, find_label_file, load_bag_labels
from rsee_ros.data.records import BagWindow, VideoRecord, VideoSplit
from rsee_ros.data.video import VIDEO_EXTENSIONS, is_frame_folder

log = logging.getLogger(__name__)

SPLITS_FILE = "splits.json"
CLASSES_FILE = "classes.txt"


class DatasetLayoutError(ValueError):
    """A data set root in none of the layouts a reader knows; the message says where it looked
    and what it expected."""


def _check_split(split: int) -> None:
    if split not in (1, 2, 3):
        raise ValueError(f"split must be 1, 2 or 3, got {split}")


def _unique(paths: Sequence[Path]) -> list[Path]:
    return list(dict.fromkeys(paths))


@dataclass(frozen=True)
class _Layouts:
    """The folders where one data set's split files and class folders may lie, relative to the
    given root (``""``: the root itself): the official archives' folder names and common
    renamings. Split files are looked for in the root, its video folders and its parent."""

    name: str
    video_dirs: tuple[str, ...]
    split_dirs: tuple[str, ...]

    def search(self, root: Path, given: str | Path | None, expected: str) -> _LayoutSearch:
        """The candidate folders under ``root`` (``given``: the one split-file folder)."""
        videos = _unique([root / d if d else root for d in self.video_dirs])
        if given is not None:
            splits = [Path(given)]
        else:
            bases = [root, *(d for d in videos[1:] if d.is_dir()), root.parent]
            splits = _unique([base / d if d else base for base in bases for d in self.split_dirs])
        return _LayoutSearch(self.name, root, splits, videos, expected)


@dataclass(frozen=True)
class _LayoutSearch:
    """One root's candidate folders, searched in order; :class:`DatasetLayoutError` naming them
    when none fits."""

    name: str
    root: Path
    split_dirs: list[Path]
    video_dirs: list[Path]
    expected: str  # what a split-file folder holds, for the error

    def split_dir(self, fits: Callable[[Path], bool]) -> Path:
        """The first candidate split-file folder that ``fits``."""
        for folder in self.split_dirs:
            if folder.is_dir() and fits(folder):
                return folder
        raise DatasetLayoutError(
            f"{self.root}: no {self.name} layout found: looked for {self.expected} in "
            f"{_listed(self.split_dirs)}; and class folders of .avi videos in "
            f"{_listed(self.video_dirs)}"
        )

    def video_dir(self, split_dir: Path, classes: Sequence[str]) -> Path:
        """The first candidate video folder holding a class folder of ``classes``."""
        for folder in self.video_dirs:
            if folder.is_dir() and any((folder / c).is_dir() for c in classes):
                return folder
        raise DatasetLayoutError(
            f"{self.root}: no {self.name} layout found: {self.expected} are in {split_dir}, but "
            f"no class folders of .avi videos (such as {classes[0]}/) in "
            f"{_listed(self.video_dirs)}"
        )


def _listed(paths: Sequence[Path]) -> str:
    return ", ".join(map(str, paths))


_UCF101 = _Layouts("UCF101", ("", "UCF-101", "UCF101", "videos"),
                   ("", "ucfTrainTestlist", "annotations"))
_HMDB51 = _Layouts("HMDB51", ("", "hmdb51_org", "hmdb51", "HMDB51", "videos"),
                   ("", "testTrainMulti_7030_splits", "test_train_splits", "splits",
                    "annotations"))


def _log_missing(split: VideoSplit, what: str) -> VideoSplit:
    if split.missing:
        log.warning("%s: %d listed videos missing, e.g. %s", what, len(split.missing),
                    split.missing[0])
    return split


def _class_index(path: Path) -> list[str]:
    """UCF101's ``classInd.txt``: ``<id> <Class>`` lines, ids 1, 2, ..."""
    classes: list[str] = []
    for line in path.read_text().splitlines():
        if line.strip():
            num, name = line.split()
            if int(num) != len(classes) + 1:
                raise ValueError(f"classInd.txt: expected id {len(classes) + 1}, got {num}")
            classes.append(name)
    if not classes:
        raise DatasetLayoutError(f"{path}: lists no classes")
    return classes


def read_ucf101(
    root: str | Path, annotations: str | Path | None = None, split: int = 1
) -> VideoSplit:
    """UCF101: ``<videos>/<Class>/v_<Class>_gXX_cYY.avi`` and ``ucfTrainTestlist`` (classInd.txt,
    trainlist0N.txt with ``path label``, testlist0N.txt with ``path``), split 1-3.

    ``root`` may be the folder of class folders (``.../UCF-101``) or the data set's top folder
    (holding ``UCF-101/`` or ``UCF101/`` or ``videos/``, and ``ucfTrainTestlist/``); the split
    files are looked for in the root, its video folder and its parent, directly or in
    ``ucfTrainTestlist/`` or ``annotations/`` (or in ``annotations`` when given).
    :class:`DatasetLayoutError` when no layout fits.
    """
    _check_split(split)
    root = Path(root)
    lists = (f"trainlist0{split}.txt", f"testlist0{split}.txt")
    expected = f"classInd.txt, {lists[0]} and {lists[1]}"
    search = _UCF101.search(root, annotations, expected)
    ann = search.split_dir(lambda d: all((d / f).is_file() for f in ("classInd.txt", *lists)))
    classes = _class_index(ann / "classInd.txt")
    videos = search.video_dir(ann, classes)
    by_name = {c.lower(): i for i, c in enumerate(classes)}
    out = VideoSplit(classes)
    for subset, fname in zip(("train", "test"), lists, strict=True):
        for line in (ann / fname).read_text().splitlines():
            parts = line.split()
            if not parts:
                continue
            rel = parts[0].replace("\\", "/")
            folder = rel.split("/")[0].lower()
            if len(parts) > 1:
                label = int(parts[1]) - 1
            elif folder in by_name:
                label = by_name[folder]
            else:
                raise ValueError(f"{fname}: unknown class folder in {rel!r}")
            path = videos / rel
            if not path.is_file():
                out.missing.append(rel)
                continue
            getattr(out, subset).append(VideoRecord(str(path), label, Path(rel).stem))
    return _log_missing(out, f"UCF101 split {split}")


_HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split(?P<n>\d)\.txt$")


def _hmdb_split_files(folder: Path, split: int) -> dict[str, Path]:
    """``<class>: <class>_test_split<split>.txt`` of the HMDB51 split files in ``folder``."""
    files = {}
    for f in folder.iterdir():
        m = _HMDB_SPLIT.match(f.name)
        if m and int(m["n"]) == split and f.is_file():
            files[m["cls"]] = f
    return files


def read_hmdb51(
    root: str | Path, split_dir: str | Path | None = None, split: int = 1
) -> VideoSplit:
    """HMDB51: ``<videos>/<class>/<video>.avi`` and ``<class>_test_split<N>.txt`` files whose
    lines are ``<video> <id>`` (1 train, 2 test, 0 unused); classes sorted by name.

    ``root`` may be the folder of class folders or the data set's top folder (holding
    ``hmdb51_org/``, ``hmdb51/``, ``HMDB51/`` or ``videos/``); the split files are looked for in
    the root, its video folder and its parent, directly or in ``testTrainMulti_7030_splits/``
    (the official archive's), ``test_train_splits/``, ``splits/`` or ``annotations/`` (or in
    ``split_dir`` when given). :class:`DatasetLayoutError` when no layout fits.
    """
    _check_split(split)
    root = Path(root)
    expected = f"<class>_test_split{split}.txt files"
    search = _HMDB51.search(root, split_dir, expected)
    sdir = search.split_dir(lambda d: bool(_hmdb_split_files(d, split)))
    files = _hmdb_split_files(sdir, split)
    out = VideoSplit(sorted(files))
    videos = search.video_dir(sdir, out.classes)
    for label, cls in enumerate(out.classes):
        for line in files[cls].read_text().splitlines():
            parts = line.split()
            if len(parts) < 2 or parts[1] == "0":
                continue
            if parts[1] not in ("1", "2"):
                raise ValueError(f"{files[cls].name}: bad split id in {line!r}")
            path = videos / cls / parts[0]
            if not path.exists():
                out.missing.append(f"{cls}/{parts[0]}")
                continue
            rec = VideoRecord(str(path), label, Path(parts[0]).stem)
            (out.train if parts[1] == "1" else out.test).append(rec)
    return _log_missing(out, f"HMDB51 split {split}")


def _hash_fraction(text: str) -> float:
    return int.from_bytes(hashlib.sha1(text.encode()).digest()[:8], "big") / 2.0**64


def _is_video(p: Path) -> bool:
    return (p.is_file() and p.suffix.lower() in VIDEO_EXTENSIONS) or is_frame_folder(p)


def read_class_folders(
    root: str | Path, train_fraction: float = 0.8, split_file: str | Path | None = None
) -> VideoSplit:
    """``root/<class>/<video file or frame folder>``.

    Classes come from ``root/classes.txt`` (one per line, label order) if present, else the
    sorted class folders. The split comes from ``split_file`` or ``root/splits.json``
    (``{"train": [relative paths], "test": [...]}``) if present, else from a hash of each
    video's relative path (``train_fraction`` of the videos, in expectation, go to train).
    """
    root = Path(root)
    if (root / CLASSES_FILE).is_file():
        classes = [c.strip() for c in (root / CLASSES_FILE).read_text().splitlines() if c.strip()]
    else:
        classes = sorted(
            d.name for d in root.iterdir() if d.is_dir() and any(map(_is_video, d.iterdir()))
        )
    if not classes:
        raise FileNotFoundError(f"no class folders with videos under {root}")
    label_of = {c: i for i, c in enumerate(classes)}
    out = VideoSplit(classes)
    sfile = Path(split_file) if split_file else root / SPLITS_FILE
    if sfile.is_file():
        lists = json.loads(sfile.read_text())
        for subset in ("train", "test"):
            for rel in lists.get(subset, []):
                path = root / rel
                cls = Path(rel).parts[0]
                if cls not in label_of:
                    raise ValueError(f"{sfile}: {rel!r} is not under a known class folder")
                if not path.exists():
                    out.missing.append(rel)
                    continue
                rec = VideoRecord(str(path), label_of[cls], Path(rel).stem)
                getattr(out, subset).append(rec)
        return _log_missing(out, str(root))
    for cls in classes:
        for p in sorted((root / cls).iterdir()):
            if not _is_video(p):
                continue
            rel = f"{cls}/{p.name}"
            rec = VideoRecord(str(p), label_of[cls], p.stem)
            (out.train if _hash_fraction(rel) < train_fraction else out.test).append(rec)
    return out


def _windows(n: int, window: int, stride: int, min_frames: int) -> list[tuple[int, int]]:
    if n >= window:
        return [(s, s + window) for s in range(0, n - window + 1, stride)]
    return [(0, n)] if n >= min_frames else []


def read_rosbag(
    bag: str | Path,
    labels: str | Path | BagLabels | None = None,
    *,
    topic: str | None = None,
    window: int = 16,
    stride: int | None = None,
    min_frames: int | None = None,
    classes: Sequence[str] | None = None,
) -> VideoSplit:
    """Cut a bag's image topic into labelled videos of ``window`` consecutive frames.

    Labels come from a label file (format in :mod:`rsee_ros.data.bag`; looked up beside the bag
    when not given); ``topic`` (or the label file's) may be omitted when the bag has one image
    topic. ``stride`` defaults to ``window`` (no overlap); a segment shorter than one window
    gives one shorter video if it has at least ``min_frames`` (default ``window // 2``) frames.
    ``classes`` overrides the label file's class list (use one list for several bags).
    """
    bag_path = Path(bag)
    if labels is None:
        found = find_label_file(bag_path)
        if found is None:
            raise FileNotFoundError(f"no label file for bag {bag_path}")
        labels = found
    spec = labels if isinstance(labels, BagLabels) else load_bag_labels(labels)
    names = list(classes or spec.classes or sorted({s.label for s in spec.segments}))
    unknown = {s.label for s in spec.segments} - set(names)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} not in classes {names}")
    with Bag(bag_path) as reader:
        topic = reader.choose_topic(topic or spec.topic)
        times, offset = reader.log_times(topic), spec.offset_ns(reader.start_ns)
    stride = stride or window
    min_frames = max(1, window // 2 if min_frames is None else min_frames)
    out = VideoSplit(names)
    for seg in spec.segments:
        start_ns, end_ns = seg.range_ns(offset)
        lo = 0 if start_ns is None else int(np.searchsorted(times, start_ns, "left"))
        hi = len(times) if end_ns is None else int(np.searchsorted(times, end_ns, "left"))
        for a, b in _windows(hi - lo, window, stride, min_frames):
            i0, i1 = lo + a, lo + b
            skip = i0 - int(np.searchsorted(times, times[i0], "left"))
            win = BagWindow(topic, int(times[i0]), int(times[i1 - 1]), i1 - i0, skip)
            rec = VideoRecord(str(bag_path), names.index(seg.label),
                              f"{bag_path.name}{topic}[{i0}:{i1}]", win)
            (out.train if seg.split == "train" else out.test).append(rec)
    log.info("%s: %d train + %d test windows from %d frames on %s",
             bag_path.name, len(out.train), len(out.test), len(times), topic)
    return out


def load_split(kind: str, root: str | Path, **options: object) -> VideoSplit:
    """Dispatch to a reader by ``kind``: ucf101, hmdb51, folder (also synthetic) or rosbag.

    ``options`` go to the reader (``annotations``/``split`` for ucf101, ``split_dir``/``split``
    for hmdb51, ``train_fraction``/``split_file`` for folder, see :func:`read_rosbag`).
    """
    readers = {
        "ucf101": read_ucf101,
        "hmdb51": read_hmdb51,
        "folder": read_class_folders,
        "synthetic": read_class_folders,
        "rosbag": read_rosbag,
    }
    if kind not in readers:
        raise ValueError(f"unknown data set kind {kind!r}; one of {sorted(readers)}")
    return readers[kind](root, **options)
