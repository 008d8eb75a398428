"""Data sets for training and evaluation, built from a configuration's ``data`` section."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from rsee_ros.data.cache import cache_dataset
from rsee_ros.data.datasets import VideoDataset
from rsee_ros.data.readers import load_split
from rsee_ros.data.transforms import DEFAULT_AUGMENT, TrainAugment

log = logging.getLogger(__name__)

AUGMENT_KEYS = tuple(f.name for f in fields(TrainAugment))


@dataclass
class DataConfig:
    """The ``data`` section: which data set to read and how.

    ``kind``/``root``: the reader (``synthetic``, ``ucf101``, ``hmdb51``, ``folder``, ...) and
    its folder; ``split``: the official split of UCF101/HMDB51; ``frames`` sampled per video;
    ``options``: further keyword arguments of the reader; ``cache_dir``: decode once and
    memory-map afterwards (with ``workers`` decoding processes); ``augment``: the train-time
    :class:`~rsee_ros.data.transforms.TrainAugment` settings (``None``: its defaults).
    """

    kind: str = "synthetic"
    root: str = "data/synthetic"
    split: int = 1
    frames: int = 16
    cache_dir: str | None = None
    workers: int = 0
    options: dict[str, Any] = field(default_factory=dict)
    augment: dict[str, Any] | None = field(default=None, metadata={"keys": AUGMENT_KEYS})

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


@dataclass
class DataBundle:
    """One split's data set together with its class names."""

    dataset: Dataset
    classes: list[str]
    skipped: list[str]


def build_dataset(
    data: DataConfig | Mapping[str, Any],
    *,
    subset: str,
    size: int,
    train: bool,
    progress: bool = True,
) -> DataBundle:
    """Read the split ``data`` names and return its ``subset`` (train/test/all) as a data set
    of ``(T, 3, size, size)`` clips (train-time augmentation when ``train``)."""
    if not isinstance(data, DataConfig):
        data = DataConfig.from_dict(data)
    options = dict(data.options)
    if data.kind in ("ucf101", "hmdb51"):
        options.setdefault("split", data.split)
    split = load_split(data.kind, data.root, **options)
    records = split.subset(subset)
    if not records:
        raise ValueError(f"{data.root}: the {subset} subset of this {data.kind} data set is empty")
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


__all__ = ["DataBundle", "DataConfig", "build_dataset"]
