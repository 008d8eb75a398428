"""The evaluated videos of ``rsee eval`` and ``rsee bench``: which data set, which videos, in
what form (preprocessed batches for ``eval``, decoded uint8 clips for ``bench``)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rsee_ros.evaluation.common import DATA_KINDS

__all__ = ["Batches", "ClipChunks", "data_config", "load_split", "spread_indices"]


def data_config(
    root: str | Path,
    *,
    kind: str | None,
    frames: int,
    metadata: Mapping[str, Any] | None = None,
    options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    workers: int = 0,
) -> dict[str, Any]:
    """The ``data`` section for :func:`rsee_ros.training.data.build_dataset`.

    ``kind`` defaults to the checkpoint's training data kind (``metadata["train_config"]
    ["data"]``), else ``folder``; that section's ``options`` and ``split`` are reused when the kind
    is the one trained on, and ``options`` given here override them.
    """
    trained = dict(((metadata or {}).get("train_config") or {}).get("data") or {})
    kind = kind or trained.get("kind") or "folder"
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data kind {kind!r}; one of {DATA_KINDS}")
    same = kind == trained.get("kind")
    merged = dict(trained.get("options") or {}) if same else {}
    merged.update(options or {})
    return {
        "kind": kind,
        "root": str(root),
        "split": trained.get("split", 1) if same else 1,
        "frames": int(frames),
        "options": merged,
        "cache_dir": cache_dir,
        "workers": workers,
    }


def load_split(
    checkpoint: Any,
    data: str | Path,
    *,
    kind: str | None,
    split: str,
    frames: int,
    options: Mapping[str, Any] | None = None,
    cache_dir: str | None = None,
    workers: int = 0,
    progress: bool = False,
) -> tuple[dict[str, Any], Any]:
    """The ``data`` section (:func:`data_config`) and the ``split`` subset of the data set at
    ``data``, at the checkpoint's input size; ``ValueError`` when its classes are not the
    checkpoint's (``checkpoint``: a loaded :class:`~rsee_ros.model.Checkpoint`)."""
    from rsee_ros.training.data import build_dataset

    data_cfg = data_config(data, kind=kind, frames=frames, metadata=checkpoint.metadata,
                           options=options, cache_dir=cache_dir, workers=workers)
    bundle = build_dataset(data_cfg, subset=split, size=checkpoint.config.max_resolution,
                           train=False, progress=progress)
    if bundle.classes != checkpoint.class_names:
        raise ValueError(
            f"{data}: data set classes {bundle.classes[:5]}... differ from the checkpoint's "
            f"{checkpoint.class_names[:5]}..."
        )
    return data_cfg, bundle


def spread_indices(total: int, limit: int | None) -> list[int]:
    """``limit`` indices spread evenly over ``range(total)`` (all when None): a subset that keeps
    every class of a class-ordered split."""
    if limit is None or limit >= total:
        return list(range(total))
    if limit <= 0:
        raise ValueError(f"need a positive number of videos, got {limit}")
    return sorted({int(round(x)) for x in np.linspace(0, total - 1, limit)})


class Batches:
    """``(frames (B, T, 3, S, S), labels (B,))`` batches of a data set's items ``indices``, in
    test order (sized, so progress bars know the total)."""

    def __init__(
        self, dataset: torch.utils.data.Dataset, indices: Sequence[int], *, batch_size: int,
        workers: int = 0,
    ) -> None:
        subset = torch.utils.data.Subset(dataset, list(indices))
        self.loader = torch.utils.data.DataLoader(subset, batch_size=batch_size, shuffle=False,
                                                  num_workers=workers)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for frames, labels, _ in self.loader:
            yield frames, labels


class ClipChunks:
    """Decoded ``(T, H, W, 3)`` uint8 clips (test sampling) and their labels, ``chunk`` videos
    at a time (sized, for progress bars); videos that fail to decode are left out."""

    def __init__(self, dataset: Any, indices: Sequence[int], chunk: int) -> None:
        self.dataset = dataset
        self.indices = list(indices)
        self.chunk = max(int(chunk), 1)

    def __len__(self) -> int:
        return math.ceil(len(self.indices) / self.chunk)

    def __iter__(self) -> Iterator[tuple[list[np.ndarray], list[int]]]:
        from rsee_ros.data import VideoDecodeError

        for start in range(0, len(self.indices), self.chunk):
            clips, labels = [], []
            for i in self.indices[start:start + self.chunk]:
                try:
                    clips.append(np.ascontiguousarray(self.dataset.read_clip(i)))
                except VideoDecodeError:
                    continue
                labels.append(int(self.dataset.records[i].label))
            yield clips, labels
