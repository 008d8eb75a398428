#!/usr/bin/env python3
"""Build the order-and-speed benchmark from real clips: a UCF101-layout tree that only a model
which sees the order and the speed of motion can learn.

Each clip is cut into non-overlapping segments of ``2 * length`` frames. Every segment gives
three videos of ``length`` frames, one per class: ``<Clip>Forward`` (its first ``length``
frames as recorded), ``<Clip>Reversed`` (the same frames played backwards) and ``<Clip>Fast``
(every second frame of the whole segment: the same start at twice the speed). Unless
``--no-mirror``, each of them also comes left-right mirrored, under the same class, so the temporal
direction has to be told apart from the spatial one. A clip's three classes share their
appearance, so a model that pools each frame before modelling time is held at the 1-in-3
identity ceiling. Segments (UCF101's groups, ``gXX``) go whole to train or test: every
``--test-every``-th segment is a test segment. ``--stride`` keeps every n-th frame of a clip
first (so that slow motion moves more between two frames), and ``--train-step`` adds
overlapping training windows inside runs of training segments (never reaching a test segment);
each window is its own group. The clips are the user's; docs/benchmarks.md
lists real ones that Debian packages carry and how to build and evaluate the set.

    python scripts/make_order_speed_set.py --out data/order_speed vtest.avi box.mp4 cup.mp4

This is a data-preparation script, not run-time code: it reads the clips it is given and never
downloads anything.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from rsee_ros.data.synthetic_set import pick_codec, write_video
from rsee_ros.data.video import VideoDecodeError, read_video

VERSIONS = ("Forward", "Reversed", "Fast")
"""The classes of each clip, in the order of ``classInd.txt``."""


@dataclass(frozen=True)
class OrderSpeedConfig:
    """How the clips are cut and written."""

    length: int = 16
    """Frames per written video (a segment spans twice as many)."""
    height: int = 128
    """Height the frames are resized to (aspect kept, width rounded to even)."""
    test_every: int = 3
    """Every n-th segment of a clip goes to the test split (the others to train)."""
    mirror: bool = True
    """Also write each video left-right mirrored (same class)."""
    fps: int = 25
    """Frame rate written into the videos."""
    stride: int = 1
    """Keep every n-th frame of the clip before cutting (more motion between two frames)."""
    train_step: int | None = None
    """Start a training window every n frames inside runs of training segments (windows
    overlap, never reach into a test segment); ``None``: one window per segment."""

    def __post_init__(self) -> None:
        for field in ("length", "height", "stride"):
            if getattr(self, field) < 1:
                raise ValueError(f"{field} must be at least 1, got {getattr(self, field)}")
        if self.test_every < 2:
            raise ValueError("test_every must be at least 2 (1 would leave no training segment)")
        if self.train_step is not None and self.train_step < 1:
            raise ValueError(f"train_step must be at least 1, got {self.train_step}")


def clip_name(path: Path) -> str:
    """A class-name prefix from a clip's file name: alphanumerics, CamelCase (``balle-jbart`` ->
    ``BalleJbart``), so that UCF101's ``v_<Class>_gXX_cYY`` names parse."""
    words = [w for w in re.split(r"[^0-9A-Za-z]+", path.name.split(".")[0]) if w]
    if not words:
        raise ValueError(f"{path}: no letters or digits in the file name to name its classes")
    return "".join(w[:1].upper() + w[1:] for w in words)


def resized(frames: np.ndarray, height: int) -> np.ndarray:
    """``(N, H, W, 3)`` frames resized to ``height`` (even width, aspect kept)."""
    h, w = frames.shape[1:3]
    width = max(2, int(round(w * height / h / 2)) * 2)
    return np.stack([cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA)
                     for f in frames])


def versions(segment: np.ndarray, length: int) -> dict[str, np.ndarray]:
    """The three videos of one ``2 * length``-frame segment, by class suffix."""
    if len(segment) < 2 * length:
        raise ValueError(f"a segment needs {2 * length} frames, got {len(segment)}")
    forward = segment[:length]
    return {"Forward": forward, "Reversed": forward[::-1], "Fast": segment[: 2 * length : 2]}


def segment_starts(segments: int, config: OrderSpeedConfig) -> tuple[list[int], list[int]]:
    """``(train, test)`` start frames of the ``2 * length``-frame windows of a clip with
    ``segments`` whole segments: every ``test_every``-th segment is one test window; the
    training windows start every ``train_step`` frames inside each run of consecutive training
    segments (one per segment without ``train_step``), so none overlaps a test segment."""
    span = 2 * config.length
    test = [g * span for g in range(segments) if g % config.test_every == config.test_every - 1]
    step = config.train_step or span
    train: list[int] = []
    run_start = 0
    for boundary in [*test, segments * span]:
        start = run_start
        while start + span <= boundary:
            train.append(start)
            start += step
        run_start = boundary + span
    return train, test


def build(clips: Sequence[Path], out: Path, config: OrderSpeedConfig) -> dict:
    """Write the UCF101 tree for ``clips`` into ``out`` (``videos/`` and ``ucfTrainTestlist/``
    with split 1) and return the manifest that is also written to ``out/manifest.json``."""
    names = [clip_name(c) for c in clips]
    if len(set(names)) != len(names):
        raise ValueError(f"two clips give the same class names: {names}")
    classes = [f"{name}{version}" for name in names for version in VERSIONS]
    videos, lists = out / "videos", out / "ucfTrainTestlist"
    lists.mkdir(parents=True, exist_ok=True)
    codec = pick_codec()
    train, test, per_clip = [], [], {}
    for clip, name in zip(clips, names, strict=True):
        frames = resized(read_video(clip)[::config.stride], config.height)
        segments = len(frames) // (2 * config.length)
        if segments < 2:
            raise ValueError(f"{clip}: {len(frames)} frames make fewer than two segments of "
                             f"{2 * config.length}; use a shorter --length or a smaller --stride")
        train_starts, test_starts = segment_starts(segments, config)
        per_clip[name] = {"clip": str(clip), "frames": len(frames), "segments": segments,
                          "train_windows": len(train_starts), "test_windows": len(test_starts)}
        windows = sorted([(s, train) for s in train_starts] + [(s, test) for s in test_starts],
                         key=lambda window: window[0])
        for group, (start, subset) in enumerate(windows, start=1):
            segment = frames[start:start + 2 * config.length]
            for version, video in versions(segment, config.length).items():
                label = classes.index(f"{name}{version}") + 1
                copies = [video, video[:, :, ::-1]] if config.mirror else [video]
                for copy_index, copy in enumerate(copies, start=1):
                    cls = f"{name}{version}"
                    rel = f"{cls}/v_{cls}_g{group:02d}_c{copy_index:02d}.avi"
                    (videos / cls).mkdir(parents=True, exist_ok=True)
                    write_video(videos / rel, np.ascontiguousarray(copy), config.fps, codec)
                    subset.append((rel, label))
    (lists / "classInd.txt").write_text(
        "".join(f"{i} {c}\n" for i, c in enumerate(classes, start=1)))
    (lists / "trainlist01.txt").write_text("".join(f"{rel} {label}\n" for rel, label in train))
    (lists / "testlist01.txt").write_text("".join(f"{rel}\n" for rel, _ in test))
    manifest = {"classes": classes, "train_videos": len(train), "test_videos": len(test),
                "config": asdict(config), "clips": per_clip}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build the order-and-speed benchmark (UCF101 layout) from real clips")
    parser.add_argument("clips", nargs="+", type=Path, help="video files (one class prefix each)")
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--length", type=int, default=OrderSpeedConfig.length,
                        help="frames per written video; a segment spans twice as many "
                        "(default %(default)s)")
    parser.add_argument("--height", type=int, default=OrderSpeedConfig.height,
                        help="frame height written (default %(default)s)")
    parser.add_argument("--test-every", type=int, default=OrderSpeedConfig.test_every,
                        help="every n-th segment of a clip is a test segment "
                        "(default %(default)s)")
    parser.add_argument("--stride", type=int, default=OrderSpeedConfig.stride,
                        help="keep every n-th frame of each clip before cutting "
                        "(default %(default)s)")
    parser.add_argument("--train-step", type=int, default=None,
                        help="start an overlapping training window every n frames inside runs "
                        "of training segments (default: one window per segment)")
    parser.add_argument("--no-mirror", action="store_true",
                        help="do not add the left-right mirrored copies")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        config = OrderSpeedConfig(length=args.length, height=args.height,
                                  test_every=args.test_every, mirror=not args.no_mirror,
                                  stride=args.stride, train_step=args.train_step)
        manifest = build(args.clips, args.out, config)
    except (ValueError, OSError, VideoDecodeError) as error:
        print(f"make_order_speed_set: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}: {len(manifest['classes'])} classes, "
          f"{manifest['train_videos']} train and {manifest['test_videos']} test videos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
