"""Tests of the synthetic action data set generator."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rsee_ros.data import (
    CLASS_NAMES,
    VideoDataset,
    make_synthetic_dataset,
    read_class_folders,
    read_video,
)
from rsee_ros.data.synthetic import SyntheticConfig, _class_scene, render_video

TINY = dict(num_classes=10, videos_per_class=2, frames_per_video=6, size=48, progress=False)


def decoded(root: Path) -> dict[str, np.ndarray]:
    return {p.relative_to(root).as_posix(): read_video(p) for p in sorted(root.rglob("*.mp4"))}


def test_deterministic_per_seed(tmp_path: Path) -> None:
    a = make_synthetic_dataset(tmp_path / "a", seed=3, **TINY)
    b = make_synthetic_dataset(tmp_path / "b", seed=3, **TINY)
    make_synthetic_dataset(tmp_path / "c", seed=4, **TINY)
    assert a.train == b.train and a.test == b.test
    fa, fb, fc = decoded(tmp_path / "a"), decoded(tmp_path / "b"), decoded(tmp_path / "c")
    assert len(fa) == 20 and fa.keys() == fb.keys() == fc.keys()
    assert all(np.array_equal(fa[k], fb[k]) for k in fa)
    # same encoder build: same bytes too
    assert all((tmp_path / "a" / k).read_bytes() == (tmp_path / "b" / k).read_bytes() for k in fa)
    assert not all(np.array_equal(fa[k], fc[k]) for k in fa)
    assert all(v.shape == (6, 48, 48, 3) for v in fa.values())


def test_layout_split_files_and_reader(tmp_path: Path) -> None:
    info = make_synthetic_dataset(tmp_path, seed=0, **{**TINY, "videos_per_class": 4})
    assert len(info.classes) >= 10 and info.classes == list(CLASS_NAMES[:10])
    assert (tmp_path / "classes.txt").read_text().split() == info.classes
    splits = json.loads((tmp_path / "splits.json").read_text())
    assert len(splits["train"]) == 30 and len(splits["test"]) == 10  # 3 + 1 per class
    assert not set(splits["train"]) & set(splits["test"])
    meta = json.loads((tmp_path / "videos.json").read_text())
    assert set(meta["videos"]) == set(splits["train"] + splits["test"])
    s = read_class_folders(tmp_path)
    assert s.classes == info.classes and len(s.train) == 30 and len(s.test) == 10
    assert all(Path(r.path).parent.name == s.classes[r.label] for r in s.train + s.test)
    ds = VideoDataset(s.test[:2], 4, 48, progress=False)
    assert ds[0][0].shape == (4, 3, 48, 48)
    again = make_synthetic_dataset(tmp_path, seed=0, **{**TINY, "videos_per_class": 4})
    assert again.reused and again.train == info.train


def test_background_video(tmp_path: Path) -> None:
    from rsee_ros.data.synthetic_set import write_video

    bg = tmp_path / "bg.mp4"
    ramp = np.linspace(0, 255, 80).astype(np.uint8)
    write_video(bg, np.stack([np.stack([np.roll(ramp, 3 * i)[None].repeat(60, 0)] * 3, -1)
                              for i in range(12)]), fps=10, codec="libx264")
    info = make_synthetic_dataset(tmp_path / "out", background_video=bg, **TINY)
    assert len(info.train) + len(info.test) == 20
    v = read_video(tmp_path / "out" / info.test[0])
    assert v.shape == (6, 48, 48, 3)


def test_rejects_too_few_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        make_synthetic_dataset(tmp_path, num_classes=9, videos_per_class=2)


def test_motions_go_the_right_way() -> None:
    def states(name: str) -> list:
        scene = _class_scene(name, np.random.default_rng(0), 224, np.full(3, 0.5))
        return [scene(k / 9, k, True) for k in range(10)]

    def increasing(xs: list[float]) -> bool:
        return all(b > a for a, b in zip(xs[:-1], xs[1:], strict=True))

    assert increasing([s[0].sx for s in states("grow")])
    assert increasing([-s[0].sx for s in states("shrink")])
    size = [s[0].sx for s in states("approach_leave")]
    assert max(size) > 1.5 * size[0] and max(size) > 1.5 * size[-1]
    cw = [s[1].angle for s in states("rotate_cw")]  # image y points down: +angle is clockwise
    ccw = [s[1].angle for s in states("rotate_ccw")]
    assert len({s[0].angle for s in states("rotate_cw")}) == 1  # the dial stays put
    assert increasing(cw) and increasing([-a for a in ccw])

    def gap(s: list) -> float:
        return math.hypot(s[0].cx - s[1].cx, s[0].cy - s[1].cy)

    assert gap(states("split")[0]) < 1 and gap(states("split")[-1]) > 2.5 * states("split")[0][0].sx
    assert gap(states("merge")[-1]) < 1
    assert {s[0].texture for s in states("slide_striped")} == {"stripes"}
    assert {s[0].texture for s in states("swing_dotted")} == {"dots"}
    assert {s[0].alpha for s in states("blink")} == {0.0, 1.0}


def test_texture_is_fine_detail() -> None:
    """Stripes/dots carry high-frequency energy at full size that a 84 px copy loses."""
    import torch
    from torchvision.transforms.v2 import functional as F

    cfg = SyntheticConfig(late_start_prob=0, shake_prob=0, bad_frame_prob=0)
    for name in ("slide_striped", "slide_dotted"):
        frames, facts = render_video(name, np.random.default_rng(1), cfg)
        assert facts["onset"] == 0 and not facts["bad_frames"]
        x = torch.from_numpy(frames[0]).permute(2, 0, 1).float()[None]
        hi = (x - F.gaussian_blur(x, [5, 5], [1.5, 1.5])).abs().mean()
        small = F.resize(x, [84, 84], antialias=True)
        back = F.resize(small, [224, 224], antialias=True)
        lo = (back - F.gaussian_blur(back, [5, 5], [1.5, 1.5])).abs().mean()
        assert hi > 3 * lo


def test_command_lines_take_their_defaults_from_the_config() -> None:
    """``rsee make-dataset`` and ``python -m rsee_ros.data.synthetic_set`` default to
    :class:`SyntheticConfig`, except make-dataset's frame size: the default model's set (128)."""
    import argparse
    import dataclasses
    import inspect

    from rsee_ros.commands import make_dataset
    from rsee_ros.data import synthetic, synthetic_set

    config = {f.name: f.default for f in dataclasses.fields(SyntheticConfig)}
    generator = argparse.ArgumentParser()
    synthetic_set.add_arguments(generator)
    command = argparse.ArgumentParser()
    make_dataset.add_arguments(command)
    from_generator = vars(generator.parse_args([]))
    from_command = vars(command.parse_args(["synthetic", "--out", "x"]))
    shared = set(from_generator) & set(config)
    assert shared >= {"seed", "num_classes", "videos_per_class", "frames_per_video", "size",
                      "fps", "train_fraction", "background_video"}
    assert {k: from_generator[k] for k in shared} == {k: config[k] for k in shared}
    assert from_generator["size"] == 224
    assert {k: from_command[k] for k in shared} == {**{k: config[k] for k in shared},
                                                    "size": synthetic.DEFAULT_MODEL_FRAME_SIZE}
    assert synthetic.DEFAULT_MODEL_FRAME_SIZE == 128
    signature = inspect.signature(make_synthetic_dataset).parameters
    assert {k: signature[k].default for k in shared if k in signature} == {
        k: config[k] for k in shared if k in signature}
