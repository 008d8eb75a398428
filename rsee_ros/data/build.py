"""Data sets for training and evaluation, built from a configuration's ``data`` section.

Subsets: ``train`` and ``test`` as the reader splits them, ``all`` (both) and ``val``: with
``data.val_fraction`` > 0, that share of the training videos, chosen by :func:`split_validation`
(deterministic, by video, per class), leaves ``train`` and becomes ``val``; the test split is
never touched.
"""

from __future__ import annotations

import difflib
import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from rsee_ros.data.cache import cache_dataset
from rsee_ros.data.datasets import VideoDataset
from rsee_ros.data.readers import load_split
from rsee_ros.data.records import VideoRecord, VideoSplit
from rsee_ros.data.transforms import DEFAULT_AUGMENT, TrainAugment

log = logging.getLogger(__name__)

AUGMENT_KEYS = tuple(f.name for f in fields(TrainAugment))


@dataclass
class DataConfig:
    """The ``data`` section: which data set to read and how (one attribute docstring per key:
    docs/training.md is generated from them)."""

    kind: str = "synthetic"
    """The reader: ``synthetic``, ``ucf101``, ``hmdb51``, ``folder`` (class folders of videos or
    frame folders) or ``rosbag`` (a recording with a label file)."""
    root: str = "data/synthetic"
    """The data set's folder (for ``rosbag``: the bag)."""
    split: int = 1
    """The official split (1-3) of UCF101 and HMDB51."""
    frames: int = 16
    """Frames sampled per video (T), the window the model learns to decide over."""
    cache_dir: str | None = None
    """Decode every video once into this folder and memory-map it afterwards (``null``: decode
    every epoch)."""
    workers: int = 0
    """Data loader (and cache decoding) processes; 0: in the training process."""
    val_fraction: float = 0.0
    """Share of the training videos held out as the ``val`` subset (per class, by a hash of each
    video's name; at least one video of every class with two or more, never its last); ``rsee
    calibrate`` and the end of ``rsee train`` fit the temperature and the operating point on
    it. 0: none, every training video trains."""
    options: dict[str, Any] = field(default_factory=dict)
    """Further keyword arguments of the reader (e.g. ``annotations``, ``train_fraction``,
    ``labels``, ``topic``, ``window``, ``stride``; see ``rsee_ros/data/readers.py``)."""
    augment: dict[str, Any] | None = field(default=None, metadata={"keys": AUGMENT_KEYS})
    """Train-time augmentation, :class:`~rsee_ros.data.transforms.TrainAugment` keys
    (``scales``, ``max_distort``, ``flip``); ``null``: its defaults."""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DataConfig:
        """A section from plain data (e.g. a checkpoint's ``train_config["data"]``); unknown
        keys raise ``ValueError``."""
        known = [f.name for f in fields(cls)]
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown data configuration key {key!r}{hint}")
        return cls(**dict(data))

    def check(self) -> None:
        """``ValueError`` naming a value no reader takes (``val_fraction`` outside [0, 1))."""
        if not 0.0 <= float(self.val_fraction) < 1.0:
            raise ValueError(f"data.val_fraction must be in [0, 1) (a share of the training "
                             f"videos), got {self.val_fraction!r}")


@dataclass
class DataBundle:
    """One split's data set together with its class names."""

    dataset: Dataset
    classes: list[str]
    skipped: list[str]


def _video_hash(record: VideoRecord) -> str:
    """What orders a class's videos for the validation choice: a hash of the label and name
    (not the path, so a data set moved or given by another path keeps its split)."""
    return hashlib.sha1(f"{record.label}\0{record.name}".encode()).hexdigest()


def split_validation(records: Sequence[VideoRecord], fraction: float
                     ) -> tuple[list[VideoRecord], list[VideoRecord]]:
    """``(train, val)``: ``fraction`` of each class's ``records`` (rounded; at least one of a
    class with two or more, never all of one) by the order of :func:`_video_hash`, the same
    for the same videos whatever their order; both keep the order of ``records``."""
    if fraction <= 0:
        return list(records), []
    by_class: dict[int, list[VideoRecord]] = {}
    for record in records:
        by_class.setdefault(record.label, []).append(record)
    held: set[int] = set()
    for members in by_class.values():
        count = len(members)
        share = min(max(round(count * fraction), 1), count - 1) if count >= 2 else 0
        held |= {id(r) for r in sorted(members, key=_video_hash)[:share]}
    return ([r for r in records if id(r) not in held], [r for r in records if id(r) in held])


def subset_records(split: VideoSplit, subset: str, val_fraction: float = 0.0
                   ) -> list[VideoRecord]:
    """The records of ``subset`` (train, val, test or all) of a reader's ``split``; ``train``
    and ``val`` share its training videos by :func:`split_validation` (the test split is not
    read for them)."""
    if subset not in ("train", "val"):
        return split.subset(subset)
    if subset == "val" and val_fraction <= 0:
        raise ValueError("there is no val subset: set data.val_fraction (e.g. 0.15) to hold out "
                         "a share of the training videos")
    train, val = split_validation(split.subset("train"), val_fraction)
    return train if subset == "train" else val


def build_dataset(
    data: DataConfig | Mapping[str, Any],
    *,
    subset: str,
    size: int,
    train: bool,
    progress: bool = True,
) -> DataBundle:
    """Read the split ``data`` names and return its ``subset`` (train/val/test/all) as a data
    set of ``(T, 3, size, size)`` clips (train-time augmentation when ``train``)."""
    if not isinstance(data, DataConfig):
        data = DataConfig.from_dict(data)
    data.check()
    options = dict(data.options)
    if data.kind in ("ucf101", "hmdb51"):
        options.setdefault("split", data.split)
    split = load_split(data.kind, data.root, **options)
    records = subset_records(split, subset, float(data.val_fraction))
    if not records:
        hint = (" (no class has two training videos to hold one out)" if subset == "val"
                else "")
        raise ValueError(f"{data.root}: the {subset} subset of this {data.kind} data set is "
                         f"empty{hint}")
    augment = TrainAugment(**data.augment) if data.augment else DEFAULT_AUGMENT
    dataset: Dataset = VideoDataset(
        records, int(data.frames), size, train=train, augment=augment, progress=progress
    )
    if data.cache_dir:
        dataset = cache_dataset(dataset, Path(data.cache_dir), workers=int(data.workers),
                                progress=progress)
    skipped = list(getattr(dataset, "skipped", []))
    if skipped:
        log.warning("%d videos could not be decoded and were skipped: %s", len(skipped),
                    ", ".join(skipped[:10]))
    return DataBundle(dataset=dataset, classes=list(split.classes), skipped=skipped)


__all__ = ["DataBundle", "DataConfig", "build_dataset", "split_validation", "subset_records"]
