"""Torch data set over :class:`VideoRecord` lists: T sampled, transformed frames per video.

Videos that cannot be decoded are logged by name, left out and listed in ``dataset.skipped``.
Every record is probed (its frame count read) when the data set is built, which catches files
that do not open; a video that opens but fails later, in ``__getitem__``, is logged and replaced
by the next readable one (in a DataLoader worker that ``skipped`` entry stays in the worker).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from rsee_ros.data.bag import read_bag_frames
from rsee_ros.data.records import VideoRecord
from rsee_ros.data.sampling import sample_indices
from rsee_ros.data.transforms import DEFAULT_AUGMENT, ClipTransform, TrainAugment
from rsee_ros.data.video import VideoDecodeError, count_frames, read_frames

log = logging.getLogger(__name__)


def record_frame_count(record: VideoRecord) -> int:
    """Number of frames of a record (probes the file; bag windows know it)."""
    if record.window is not None:
        return record.window.num_frames
    return count_frames(record.path)


def read_record_frames(record: VideoRecord, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Decode frames ``indices`` of a record -> (N, H, W, 3) uint8 RGB."""
    if record.window is not None:
        return read_bag_frames(record.path, record.window, indices)
    return read_frames(record.path, indices)


def torch_rng() -> np.random.Generator:
    """A numpy generator seeded from torch's RNG (so ``torch.manual_seed`` and DataLoader
    worker seeding make train-time sampling reproducible and different per worker/epoch)."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


def probe_records(
    records: Sequence[VideoRecord], progress: bool = True
) -> tuple[list[VideoRecord], list[int], list[str]]:
    """Frame counts of records; returns (readable records, their counts, skipped names)."""
    kept, counts, skipped = [], [], []
    for rec in tqdm(records, desc="probing videos", disable=not progress or len(records) < 50):
        try:
            n = record_frame_count(rec)
        except (VideoDecodeError, OSError, ValueError) as exc:
            log.warning("skipping video %s: %s", rec.name, exc)
            skipped.append(rec.name)
            continue
        kept.append(rec)
        counts.append(n)
    if skipped:
        log.warning("skipped %d of %d videos that could not be decoded", len(skipped),
                    len(records))
    return kept, counts, skipped


class ClipDataset(Dataset):
    """What the decoded and the cached data sets share: labelled ``records``, one item each."""

    records: list[VideoRecord]

    def __len__(self) -> int:
        return len(self.records)

    @property
    def labels(self) -> list[int]:
        """Label of each item."""
        return [r.label for r in self.records]


class VideoDataset(ClipDataset):
    """Items are ``(frames (T, 3, S, S) float32, label, index)``.

    ``num_frames`` is T; ``size`` is S, the model's largest resolution. Train mode samples a
    random frame within each of T segments and applies :func:`train_transform`; test mode takes
    segment centres and the test transform.
    """

    def __init__(
        self,
        records: Sequence[VideoRecord],
        num_frames: int,
        size: int,
        *,
        train: bool = False,
        augment: TrainAugment = DEFAULT_AUGMENT,
        progress: bool = True,
    ) -> None:
        self.num_frames = num_frames
        self.size = size
        self.train = train
        self.transform = ClipTransform(size, train, augment)
        self.records, self.frame_counts, self.skipped = probe_records(records, progress)

    def read_clip(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """The T sampled frames of item ``index``, untransformed: (T, H, W, 3) uint8."""
        idx = sample_indices(self.frame_counts[index], self.num_frames, train=self.train, rng=rng)
        return read_record_frames(self.records[index], idx)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        rng = torch_rng() if self.train else None
        for attempt in range(len(self.records)):
            i = (index + attempt) % len(self.records)
            try:
                frames = self.read_clip(i, rng)
            except VideoDecodeError as exc:
                log.warning("skipping video %s: %s", self.records[i].name, exc)
                if self.records[i].name not in self.skipped:
                    self.skipped.append(self.records[i].name)
                continue
            return self.transform(frames, rng), self.records[i].label, i
        raise VideoDecodeError("<data set>", "no video could be decoded")
