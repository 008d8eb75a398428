"""Data sets for training and evaluation, built from a configuration's ``data`` section."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from rsee_ros.data import CachedDataset, VideoDataset, cache_dataset, load_split
from rsee_ros.data.transforms import DEFAULT_AUGMENT, TrainAugment

log = logging.getLogger(__name__)


@dataclass
class DataBundle:
    """One split's data set together with its class names."""

    dataset: Dataset
    classes: list[str]
    skipped: list[str]


def build_dataset(
    data: dict[str, Any],
    *,
    subset: str,
    size: int,
    train: bool,
    progress: bool = True,
) -> DataBundle:
    """Read the split named by ``data`` (kind, root, split, frames, options, cache_dir) and
    return the ``subset`` (train/test/all) as a data set of ``(T, 3, size, size)`` clips.
    With ``cache_dir`` set, frames are decoded once and memory-mapped afterwards."""
    options = dict(data.get("options") or {})
    kind = data["kind"]
    if kind in ("ucf101", "hmdb51"):
        options.setdefault("split", data.get("split", 1))
    split = load_split(kind, data["root"], **options)
    records = split.subset(subset)
    if not records:
        raise ValueError(f"{data['root']}: the {subset} subset of this {kind} data set is empty")
    augment = TrainAugment(**data["augment"]) if data.get("augment") else DEFAULT_AUGMENT
    dataset: Dataset = VideoDataset(
        records, int(data["frames"]), size, train=train, augment=augment, progress=progress
    )
    if data.get("cache_dir"):
        cache = Path(data["cache_dir"])
        dataset = cache_dataset(dataset, cache, workers=int(data.get("workers", 0)),
                                progress=progress)
    skipped = list(getattr(dataset, "skipped", []))
    if skipped:
        log.warning("%d videos could not be decoded and were skipped: %s", len(skipped),
                    ", ".join(skipped[:10]))
    return DataBundle(dataset=dataset, classes=list(split.classes), skipped=skipped)


__all__ = ["CachedDataset", "DataBundle", "build_dataset"]
