"""Data set readers: UCF101, HMDB51, class folders and rosbag2 -> :class:`VideoSplit`.

Readers only list files and labels; nothing is decoded here. Listed videos that are missing on
disk are logged, left out and named in ``VideoSplit.missing``. Bags and their label files:
:mod:`rsee_ros.data.bag`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rsee_ros.data.bag import Bag, BagLabels, find_label_file, load_bag_labels
from rsee_ros.data.records import BagWindow, VideoRecord, VideoSplit
from rsee_ros.data.video import VIDEO_EXTENSIONS, is_frame_folder

log = logging.getLogger(__name__)

SPLITS_FILE = "splits.json"
CLASSES_FILE = "classes.txt"


def _check_split(split: int) -> None:
    if split not in (1, 2, 3):
        raise ValueError(f"split must be 1, 2 or 3, got {split}")


def _find_dir(root: Path, given: str | Path | None, names: tuple[str, ...], what: str) -> Path:
    if given is not None:
        return Path(given)
    for base in (root, root.parent):
        for name in names:
            if (base / name).is_dir():
                return base / name
    raise FileNotFoundError(f"no {what} directory found next to {root}; pass it explicitly")


def _log_missing(split: VideoSplit, what: str) -> VideoSplit:
    if split.missing:
        log.warning("%s: %d listed videos missing, e.g. %s", what, len(split.missing),
                    split.missing[0])
    return split


def read_ucf101(
    root: str | Path, annotations: str | Path | None = None, split: int = 1
) -> VideoSplit:
    """UCF101: ``root/<Class>/v_<Class>_gXX_cYY.avi`` and ``ucfTrainTestlist`` (classInd.txt,
    trainlist0N.txt with ``path label``, testlist0N.txt with ``path``), split 1-3."""
    _check_split(split)
    root = Path(root)
    ann = _find_dir(root, annotations, ("ucfTrainTestlist", "annotations"), "ucfTrainTestlist")
    classes: list[str] = []
    for line in (ann / "classInd.txt").read_text().splitlines():
        if line.strip():
            num, name = line.split()
            if int(num) != len(classes) + 1:
                raise ValueError(f"classInd.txt: expected id {len(classes) + 1}, got {num}")
            classes.append(name)
    by_name = {c.lower(): i for i, c in enumerate(classes)}
    out = VideoSplit(classes)
    for subset, fname in (("train", f"trainlist0{split}.txt"), ("test", f"testlist0{split}.txt")):
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
            path = root / rel
            if not path.is_file():
                out.missing.append(rel)
                continue
            getattr(out, subset).append(VideoRecord(str(path), label, Path(rel).stem))
    return _log_missing(out, f"UCF101 split {split}")


_HMDB_SPLIT = re.compile(r"^(?P<cls>.+)_test_split(?P<n>\d)\.txt$")


def read_hmdb51(
    root: str | Path, split_dir: str | Path | None = None, split: int = 1
) -> VideoSplit:
    """HMDB51: ``root/<class>/<video>.avi`` and ``<class>_test_split<N>.txt`` files whose lines
    are ``<video> <id>`` (1 train, 2 test, 0 unused); classes sorted by name."""
    _check_split(split)
    root = Path(root)
    sdir = _find_dir(root, split_dir, ("testTrainMulti_7030_splits", "splits"), "HMDB51 split")
    files = {}
    for f in sdir.iterdir():
        m = _HMDB_SPLIT.match(f.name)
        if m and int(m["n"]) == split:
            files[m["cls"]] = f
    if not files:
        raise FileNotFoundError(f"no *_test_split{split}.txt files in {sdir}")
    out = VideoSplit(sorted(files))
    for label, cls in enumerate(out.classes):
        for line in files[cls].read_text().splitlines():
            parts = line.split()
            if len(parts) < 2 or parts[1] == "0":
                continue
            if parts[1] not in ("1", "2"):
                raise ValueError(f"{files[cls].name}: bad split id in {line!r}")
            path = root / cls / parts[0]
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
