"""Writing the synthetic action data set to disk: encoding, the split, ``videos.json``, and the
command-line options (``rsee make-dataset``, ``python -m rsee_ros.data.synthetic_set``).

The classes and their rendering are :mod:`rsee_ros.data.synthetic`; the layout written is
described there.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from pathlib import Path

import av
import cv2
import numpy as np
from tqdm import tqdm

from rsee_ros.data.synthetic import (
    CLASS_DESCRIPTIONS,
    CLASS_NAMES,
    GENERATOR_VERSION,
    MIN_CLASSES,
    SyntheticConfig,
    SyntheticInfo,
    render_video,
)

log = logging.getLogger(__name__)


def pick_codec() -> str:
    """libx264 when this PyAV build has it, else mpeg4."""
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def write_video(path: Path, frames: np.ndarray, fps: int, codec: str, crf: int = 18) -> None:
    """Encode (F, H, W, 3) uint8 RGB frames to ``path`` with PyAV (single-threaded)."""
    if codec == "libx264":
        options = {"crf": str(crf), "preset": "veryfast", "threads": "1"}
    else:
        options = {"qscale": "2", "threads": "1"}
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=fps, options=options)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        if codec != "libx264":
            stream.codec_context.qscale = 2
        even = frames.shape[1] % 2 == 0 and frames.shape[2] % 2 == 0
        for f in frames:
            if even:  # OpenCV's conversion: PyAV's own gave run-to-run different x264 output
                frame = av.VideoFrame.from_ndarray(
                    cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420), format="yuv420p"
                )
            else:
                frame = av.VideoFrame.from_ndarray(f, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())


def _video_rng(seed: int, label: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, label, index]))


def _make_one(job: tuple[SyntheticConfig, str, int, int, str, str]) -> tuple[str, dict]:
    cfg, name, label, index, path, codec = job
    frames, facts = render_video(name, _video_rng(cfg.seed, label, index), cfg)
    write_video(Path(path), frames, cfg.fps, codec, cfg.crf)
    return path, facts


# --------------------------------------------------------------------------- data set


def make_synthetic_dataset(
    out_dir: str | Path,
    seed: int = SyntheticConfig.seed,
    num_classes: int = SyntheticConfig.num_classes,
    videos_per_class: int = SyntheticConfig.videos_per_class,
    frames_per_video: int = SyntheticConfig.frames_per_video,
    size: int = SyntheticConfig.size,
    *,
    fps: int = SyntheticConfig.fps,
    train_fraction: float = SyntheticConfig.train_fraction,
    background_video: str | Path | None = None,
    workers: int = 0,
    force: bool = False,
    progress: bool = True,
    **options: object,
) -> SyntheticInfo:
    """Write the synthetic data set to ``out_dir`` (layout in :mod:`rsee_ros.data.synthetic`).

    One pass: reuse a matching set, or render, encode, split and describe it (about 70 lines:
    the steps share the file list and the settings).

    A set already there with identical settings is reused unless ``force``. ``workers`` > 0
    renders in that many processes. ``options`` set other :class:`SyntheticConfig` fields.
    """
    if not MIN_CLASSES <= num_classes <= len(CLASS_NAMES):
        raise ValueError(f"num_classes must be in {MIN_CLASSES}..{len(CLASS_NAMES)}")
    if videos_per_class < 2 or frames_per_video < 4 or size < 32:
        raise ValueError("need videos_per_class >= 2, frames_per_video >= 4, size >= 32")
    cfg = SyntheticConfig(
        seed=seed, num_classes=num_classes, videos_per_class=videos_per_class,
        frames_per_video=frames_per_video, size=size, fps=fps, train_fraction=train_fraction,
        background_video=str(background_video) if background_video else None,
        **options,  # type: ignore[arg-type]
    )
    codec = cfg.codec or pick_codec()
    ext = ".mp4" if codec == "libx264" else ".avi"
    out = Path(out_dir)
    classes = list(CLASS_NAMES[:num_classes])
    meta_file = out / "videos.json"
    settings = {**asdict(cfg), "codec": codec, "generator_version": GENERATOR_VERSION,
                "classes": classes}
    if meta_file.is_file() and not force:
        meta = json.loads(meta_file.read_text())
        if meta.get("settings") == settings:
            splits = json.loads((out / "splits.json").read_text())
            return SyntheticInfo(out, classes, splits["train"], splits["test"], reused=True)
    start = time.perf_counter()
    jobs, info = [], SyntheticInfo(out, classes)
    n_train = max(1, min(videos_per_class - 1, round(videos_per_class * train_fraction)))
    for label, name in enumerate(classes):
        (out / name).mkdir(parents=True, exist_ok=True)
        order = np.random.default_rng([seed, label, 1 << 30]).permutation(videos_per_class)
        train_ids = set(order[:n_train].tolist())
        for i in range(videos_per_class):
            rel = f"{name}/{name}_{i:04d}{ext}"
            (info.train if i in train_ids else info.test).append(rel)
            jobs.append((cfg, name, label, i, str(out / rel), codec))
    bar = dict(total=len(jobs), desc="synthetic videos", disable=not progress)
    if workers > 0:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(_make_one, jobs, chunksize=8), **bar))
    else:
        results = [_make_one(j) for j in tqdm(jobs, **bar)]
    (out / "classes.txt").write_text("".join(f"{c}\n" for c in classes))
    (out / "splits.json").write_text(json.dumps({"train": info.train, "test": info.test},
                                                indent=1))
    videos = {str(Path(p).relative_to(out)): facts for p, facts in results}
    meta_file.write_text(json.dumps({"settings": settings, "classes": CLASS_DESCRIPTIONS,
                                     "videos": videos}, indent=1))
    info.seconds = time.perf_counter() - start
    log.info("wrote %d synthetic videos to %s in %.1f s", len(jobs), out, info.seconds)
    return info


def add_arguments(parser: argparse.ArgumentParser, *, size: int = SyntheticConfig.size) -> None:
    """The generator's options (defaults from :class:`SyntheticConfig`; ``size``: the default
    frame side), for :func:`make_from_arguments`."""
    d = SyntheticConfig
    parser.add_argument("--seed", type=int, default=d.seed,
                        help="same seed, same videos (default %(default)s)")
    parser.add_argument("--num-classes", type=int, default=d.num_classes,
                        help=f"{MIN_CLASSES} to {len(CLASS_NAMES)} (default %(default)s)")
    parser.add_argument("--videos-per-class", type=int, default=d.videos_per_class)
    parser.add_argument("--frames-per-video", type=int, default=d.frames_per_video)
    parser.add_argument("--size", type=int, default=size,
                        help="frame side in pixels; use the model's largest resolution, or it "
                        "x 256/224 (default %(default)s)")
    parser.add_argument("--fps", type=int, default=d.fps)
    parser.add_argument("--train-fraction", type=float, default=d.train_fraction)
    parser.add_argument("--background-video", default=d.background_video,
                        help="optional video whose frames serve as backgrounds")
    parser.add_argument("--workers", type=int, default=0, help="render in this many processes")
    parser.add_argument("--force", action="store_true", help="rewrite an existing set")


def make_from_arguments(out_dir: str | Path, args: argparse.Namespace) -> SyntheticInfo:
    """:func:`make_synthetic_dataset` with the options of :func:`add_arguments`."""
    return make_synthetic_dataset(
        out_dir, args.seed, args.num_classes, args.videos_per_class, args.frames_per_video,
        args.size, fps=args.fps, train_fraction=args.train_fraction,
        background_video=args.background_video, workers=args.workers, force=args.force,
    )


def main(argv: list[str] | None = None) -> None:
    """``python -m rsee_ros.data.synthetic_set OUT [--seed ...]``."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out_dir")
    add_arguments(ap)
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    info = make_from_arguments(a.out_dir, a)
    print(f"{len(info.train)} train + {len(info.test)} test videos, {len(info.classes)} classes "
          f"in {info.out_dir} ({'reused' if info.reused else f'{info.seconds:.1f} s'})")


if __name__ == "__main__":
    main()
