"""Frame cache: decode each video once, train many epochs without decoding.

For every video, K frames are taken at the centres of K equal segments (K = ``cache_frames``,
capped at the video's length), centre cropped to a square and, where that square is larger than
``S * 256 / 224`` (R), resized to R x R, and stored as ``<key>.npy`` (uint8, (K, s, s, 3) with
s <= R, opened memory-mapped). The key hashes the source path, its mtime and size, the bag
window, K, R and a format version, so a changed video or setting gets a new file.

Sampling from the cache: train mode picks T of the K cached frames, one at random within each of
T segments (K defaults to 2T, so temporal jitter is coarser than when decoding: offsets come from
K fixed positions); test mode takes the segment centres of the K cached frames, which equals
decoding the test frames directly when K == T (the test default) or the video has fewer than K
frames. Spatially, train crops come from the centre square rather than the full frame. The test
transform (crop first, then one resize) on cached frames gives the same tensor as on decoded
frames when the video's shorter side is at most R (the square is stored unresized; e.g. 320x240
UCF101 at S = 224) and the centring rounds alike (even differences of the sides); a larger
video's square is resized twice (to R, then its crop to S), which differs from decoding by
interpolation rounding only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from torchvision.transforms.v2 import functional as F
from tqdm import tqdm

from rsee_ros.data.datasets import ClipDataset, VideoDataset, read_record_frames, torch_rng
from rsee_ros.data.records import VideoRecord
from rsee_ros.data.sampling import sample_indices
from rsee_ros.data.transforms import DEFAULT_AUGMENT, ClipTransform, TrainAugment
from rsee_ros.data.video import VideoDecodeError
from rsee_ros.model.preprocess import short_side_for, uint8_frames_to_chw

log = logging.getLogger(__name__)

CACHE_VERSION = 2  # 2: squares no larger than the video are stored unresized


def _source_stamp(path: Path) -> list[int]:
    if path.is_file():
        st = path.stat()
        return [st.st_mtime_ns, st.st_size]
    files = [p.stat() for p in path.iterdir() if p.is_file()]
    return [max((s.st_mtime_ns for s in files), default=0), sum(s.st_size for s in files),
            len(files)]


def cache_key(record: VideoRecord, cache_frames: int, side: int) -> str:
    """Hash of (absolute path, mtime/size, bag window, cached frame count, stored side)."""
    path = Path(record.path).resolve()
    window = None if record.window is None else [
        record.window.topic, record.window.start_ns, record.window.stop_ns,
        record.window.num_frames, record.window.skip,
    ]
    blob = json.dumps([CACHE_VERSION, str(path), _source_stamp(path), window, cache_frames, side])
    return hashlib.sha1(blob.encode()).hexdigest()[:24]


def square_crop(frames: np.ndarray, side: int) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, s, s, 3) uint8: the centre square, resized to ``side`` if it is
    larger (s = min(shorter side, ``side``))."""
    height, width = frames.shape[1:3]
    short = min(height, width)
    top, left = (height - short) // 2, (width - short) // 2
    square = np.ascontiguousarray(frames[:, top:top + short, left:left + short])
    if short <= side:
        return square
    x = F.resize(uint8_frames_to_chw(square), [side, side], antialias=True)
    return x.permute(0, 2, 3, 1).contiguous().numpy()


def _cache_one(job: tuple[VideoRecord, int, int, int, str]) -> tuple[str | None, str | None]:
    """Write one video's cache file; returns (file, None) or (None, error message)."""
    record, n, k, side, cache_dir = job
    k = min(k, n)
    target = Path(cache_dir) / f"{cache_key(record, k, side)}.npy"
    if target.is_file():
        return str(target), None
    try:
        frames = square_crop(read_record_frames(record, sample_indices(n, k)), side)
    except VideoDecodeError as exc:
        return None, str(exc)
    tmp = target.parent / f"{target.stem}.{os.getpid()}.tmp.npy"
    np.save(tmp, frames)
    os.replace(tmp, target)
    return str(target), None


class CachedDataset(ClipDataset):
    """Items are ``(frames (T, 3, S, S) float32, label, index)`` read from cache files."""

    def __init__(
        self,
        records: list[VideoRecord],
        files: list[str],
        num_frames: int,
        size: int,
        *,
        train: bool = False,
        augment: TrainAugment = DEFAULT_AUGMENT,
        skipped: list[str] | None = None,
    ) -> None:
        self.records = records
        self.files = files
        self.num_frames = num_frames
        self.size = size
        self.train = train
        self.transform = ClipTransform(size, train, augment)
        self.skipped = list(skipped or [])

    def read_clip(self, index: int, rng: np.random.Generator | None = None) -> np.ndarray:
        """T cached frames of item ``index`` (sampled as the module docstring says)."""
        cached = np.load(self.files[index], mmap_mode="r")
        idx = sample_indices(len(cached), self.num_frames, train=self.train, rng=rng)
        return np.asarray(cached[idx])

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        rng = torch_rng() if self.train else None
        return self.transform(self.read_clip(index, rng), rng), self.records[index].label, index


def cache_dataset(
    dataset: VideoDataset,
    cache_dir: str | Path,
    *,
    cache_frames: int | None = None,
    workers: int = 0,
    progress: bool = True,
) -> CachedDataset:
    """Decode ``dataset``'s videos once into ``cache_dir``; returns the cached data set.

    ``cache_frames`` (K) defaults to 2T for a train-mode data set and T for a test-mode one.
    ``workers`` > 0 decodes in that many processes. Videos that fail are logged and skipped.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    k = cache_frames or dataset.num_frames * (2 if dataset.train else 1)
    side = short_side_for(dataset.size)
    jobs = [(r, n, k, side, str(cache_dir))
            for r, n in zip(dataset.records, dataset.frame_counts, strict=True)]
    if workers > 0:
        with ProcessPoolExecutor(workers, initializer=torch.set_num_threads,
                                 initargs=(1,)) as pool:
            results = list(tqdm(pool.map(_cache_one, jobs, chunksize=4), total=len(jobs),
                                desc="caching frames", disable=not progress))
    else:
        results = [_cache_one(j) for j in tqdm(jobs, desc="caching frames", disable=not progress)]
    records, files, skipped = [], [], list(dataset.skipped)
    for rec, (file, error) in zip(dataset.records, results, strict=True):
        if file is None:
            log.warning("skipping video %s: %s", rec.name, error)
            skipped.append(rec.name)
        else:
            records.append(rec)
            files.append(file)
    if len(skipped) > len(dataset.skipped):
        log.warning("skipped %d videos while caching", len(skipped) - len(dataset.skipped))
    return CachedDataset(records, files, dataset.num_frames, dataset.size, train=dataset.train,
                         augment=dataset.transform.augment, skipped=skipped)
