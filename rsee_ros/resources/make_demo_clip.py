"""Make the embedded demo clip: held-out synthetic clips in one small video, with their labels.

    python -m rsee_ros.resources.make_demo_clip            # rewrites rsee_ros/resources/demo/

Renders one clip of each of the first ``--num-classes`` classes of the synthetic action set
(:mod:`rsee_ros.data.synthetic`, the classes of the default model), in a shuffled order, from a
seed the training set does not use (``--seed``; the data set's video ``i`` of class ``c`` with
seed ``s`` is rendered from ``SeedSequence([s, c, i])``, and so is clip ``c`` here with ``i = 0``).
The clips are concatenated into ``demo_clip.mp4`` (H.264 when PyAV has it, else MPEG-4 in
``.avi``) and their frame ranges written to ``demo_clip.yaml`` (format in
:mod:`rsee_ros.resources`). The same seed gives the same frames.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from rsee_ros.data.synthetic import (
    CLASS_NAMES,
    DEFAULT_MODEL_FRAME_SIZE,
    SyntheticConfig,
    render_video,
)
from rsee_ros.data.synthetic_set import pick_codec, write_video
from rsee_ros.resources import DEMO_LABELS

DEFAULT_SEED = 90210  # the training set uses seed 0 (config/train_synthetic.yaml)


def make_demo_clip(
    out_dir: str | Path = DEMO_LABELS.parent,
    *,
    seed: int = DEFAULT_SEED,
    num_classes: int = SyntheticConfig.num_classes,
    frames: int = SyntheticConfig.frames_per_video,
    size: int = DEFAULT_MODEL_FRAME_SIZE,  # clips for the default model, not the generator's 224
    fps: int = SyntheticConfig.fps,
    crf: int = SyntheticConfig.crf,
) -> Path:
    """Write ``demo_clip.mp4`` (or ``.avi``) and ``demo_clip.yaml`` to ``out_dir``; returns the
    label file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = SyntheticConfig(seed=seed, num_classes=num_classes, frames_per_video=frames, size=size,
                          fps=fps)
    order = np.random.default_rng([seed, 1 << 31]).permutation(num_classes)
    video, clips = [], []
    for label in order.tolist():
        name = CLASS_NAMES[label]
        rng = np.random.default_rng(np.random.SeedSequence([seed, label, 0]))
        clip, _ = render_video(name, rng, cfg)
        start = len(video) * frames
        clips.append({"label": name, "start": start, "end": start + frames})
        video.append(clip)
    codec = pick_codec()
    path = out / ("demo_clip.mp4" if codec == "libx264" else "demo_clip.avi")
    write_video(path, np.concatenate(video), fps, codec, crf)
    labels = out / "demo_clip.yaml"
    header = (
        "# Ground truth of the demo clip: held-out synthetic clips, frame ranges [start, end).\n"
        f"# Made by: python -m rsee_ros.resources.make_demo_clip --seed {seed} "
        f"--num-classes {num_classes} --frames {frames} --size {size} --fps {fps} --crf {crf}\n"
    )
    doc = {
        "video": path.name,
        "fps": fps,
        "size": size,
        "seed": seed,
        "classes": list(CLASS_NAMES[:num_classes]),
        "clips": clips,
    }
    labels.write_text(header + yaml.safe_dump(doc, sort_keys=False, default_flow_style=None))
    return labels


def main(argv: list[str] | None = None) -> None:
    """Command line (see the module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=str(DEMO_LABELS.parent), help="output folder")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
    ap.add_argument("--num-classes", type=int, default=SyntheticConfig.num_classes)
    ap.add_argument("--frames", type=int, default=SyntheticConfig.frames_per_video,
                    help="frames per clip")
    ap.add_argument("--size", type=int, default=DEFAULT_MODEL_FRAME_SIZE)
    ap.add_argument("--fps", type=int, default=SyntheticConfig.fps)
    ap.add_argument("--crf", type=int, default=SyntheticConfig.crf,
                    help="H.264 quality (lower: better, larger)")
    a = ap.parse_args(argv)
    labels = make_demo_clip(a.out, seed=a.seed, num_classes=a.num_classes, frames=a.frames,
                            size=a.size, fps=a.fps, crf=a.crf)
    doc = yaml.safe_load(labels.read_text())
    video = labels.parent / doc["video"]
    print(f"wrote {video} ({video.stat().st_size / 1024:.0f} KB, {len(doc['clips'])} clips) "
          f"and {labels}")


if __name__ == "__main__":
    main()
