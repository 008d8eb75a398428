"""A procedural action data set whose classes are defined by motion over time.

Every video shows one or two objects on a procedural background (or on frames of an optional
background video). The class is what the objects do; colours, shapes, sizes, positions, speeds
and backgrounds are random nuisances. The classes are chosen so a per-frame 2D CNN with global
average pooling plus a recurrent accumulator can tell them apart: what changes over time is the
objects' size, opacity, visible colours or visibility, not only their position (two stacked
discs of different colours show one colour, parted they show two). Pairs such as grow/shrink
are time reversals of each other, so they need an order-aware accumulator (a GRU); an
order-free mean of frame features cannot separate them. Two pairs differ only in a fine
luminance texture on the object (stripes vs dots, period 3 px): visible at the frame size and
at 3/4 of it, averaged away when a frame is downsampled with antialiasing to 1/2 or 3/8 of it
(224 -> 112 or 84). So generate with ``size`` equal to the model's largest resolution S, or
S * 256 / 224 (the test transform then only crops): frames of 224 px fed to a model with
S = 112 lose the texture already at S.

Some videos begin late (static or empty until a random onset frame), some have camera shake,
and some frames are non-informative (blank, occluded, motion-blurred). ``videos.json`` records
these per video. The set is written by :mod:`rsee_ros.data.synthetic_set`. Output layout:
``out/<class>/<class>_NNNN.mp4``, ``out/classes.txt``,
``out/splits.json`` (``{"train": [...], "test": [...]}``, paths relative to ``out``) and
``out/videos.json`` (the generation settings and per-video facts). The same seed gives the same
decoded frames (and, with the same encoder build, the same bytes).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from rsee_ros.data.video import iter_frames

log = logging.getLogger(__name__)

#: Class names in label order; the first ``num_classes`` (default 12) are generated. The two
#: rotation classes come last: their direction is a cyclic quantity (hue/angle), which frozen
#: ImageNet features + GRU could not separate in a probe (see CLASS_DESCRIPTIONS).
CLASS_NAMES: tuple[str, ...] = (
    "grow", "shrink", "split", "merge", "fade_in", "fade_out",
    "slide_striped", "slide_dotted", "swing_striped", "swing_dotted",
    "blink", "approach_leave", "rotate_cw", "rotate_ccw",
)
CLASS_DESCRIPTIONS: dict[str, str] = {
    "grow": "a plain object grows (size x2.2-3.2)",
    "shrink": "a plain object shrinks (time reversal of grow)",
    "rotate_cw": "a window in a dark disc turns clockwise over a fixed colour wheel (12-22 "
                 "deg/frame): the visible hue cycles one way",
    "rotate_ccw": "the same, counter-clockwise: the hue cycles the other way",
    "split": "two discs/squares of different colours, stacked, move apart",
    "merge": "two discs/squares of different colours move together and stack (reversed split)",
    "slide_striped": "a finely striped object translates (stripes: 224 px detail)",
    "slide_dotted": "the same motion with a fine dot texture",
    "swing_striped": "a finely striped bar swings back and forth",
    "swing_dotted": "the same swing with a fine dot texture",
    "blink": "a plain object flashes on and off",
    "approach_leave": "a plain object grows then shrinks again",
    "fade_in": "a plain object's opacity rises (from .08-.3 to .75-1)",
    "fade_out": "a plain object's opacity falls (time reversal of fade_in)",
}
MIN_CLASSES = 10
GENERATOR_VERSION = 2  # bump when the rendering changes: a set written by another is rebuilt
REFERENCE_SIZE = 224  # geometry below is in pixels of a 224 x 224 frame and scales with size


#: Frame side of the set the packaged default model was trained on (its largest resolution, 112,
#: x 256/224): the default of ``rsee make-dataset``, the demo clip and video_source's synthetic
#: clips. The generator's own default (``SyntheticConfig.size``, ``make_synthetic_dataset``,
#: ``python -m rsee_ros.data.synthetic``) is 224, for 224 px models.
DEFAULT_MODEL_FRAME_SIZE = 128


@dataclass
class SyntheticConfig:
    """Generation settings; every default of the generator, its command lines and the synthetic
    frame sources is read from here (the frame size of the default model's set aside:
    :data:`DEFAULT_MODEL_FRAME_SIZE`)."""

    seed: int = 0
    num_classes: int = 12
    videos_per_class: int = 60
    frames_per_video: int = 16
    size: int = 224
    fps: int = 8
    train_fraction: float = 0.75
    late_start_prob: float = 0.3  # videos whose action starts at 25-50% of their length
    shake_prob: float = 0.2  # videos with camera shake
    bad_frame_prob: float = 0.08  # per frame: blank, occluded or motion-blurred
    texture_period: float = 3.0  # px at 224; scales with size, at least 3 px
    crf: int = 18
    codec: str | None = None  # None: libx264 if PyAV has it, else mpeg4
    background_video: str | None = None


@dataclass
class SyntheticInfo:
    """What :func:`make_synthetic_dataset` wrote."""

    out_dir: Path
    classes: list[str]
    train: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    seconds: float = 0.0
    reused: bool = False


# --------------------------------------------------------------------------- drawing


@dataclass
class _Obj:
    shape: str  # disc, square, triangle, rect, ellipse, sector
    cx: float
    cy: float
    sx: float  # half extent along the object's u axis (radius for round shapes and sectors)
    sy: float  # half extent along v (a sector's half opening angle, radians)
    angle: float  # radians, image coordinates (y down): increasing angle turns clockwise
    color: np.ndarray  # (3,) float in [0, 1]
    texture: str | None = None  # stripes, dots, wheel or None
    alpha: float = 1.0
    hue0: float = 0.0  # wheel: hue = (image-frame angle around the centre - hue0) / 2 pi


class _Canvas:
    """Pixel-centre grids for one frame size and soft (antialiased) shape drawing."""

    def __init__(self, size: int, texture_period: float, texture_amp: float = 0.18) -> None:
        self.size = size
        ys, xs = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
        self.xs, self.ys = xs, ys
        self.period = texture_period
        self.amp = texture_amp

    def draw(self, img: np.ndarray, o: _Obj) -> None:
        if o.alpha <= 0:
            return
        ext = math.hypot(o.sx, o.sy) + 2
        x0, x1 = max(int(o.cx - ext), 0), min(int(o.cx + ext) + 1, self.size)
        y0, y1 = max(int(o.cy - ext), 0), min(int(o.cy + ext) + 1, self.size)
        if x0 >= x1 or y0 >= y1:
            return
        x = self.xs[y0:y1, x0:x1] - o.cx
        y = self.ys[y0:y1, x0:x1] - o.cy
        c, s = math.cos(o.angle), math.sin(o.angle)
        u, v = x * c + y * s, y * c - x * s
        if o.shape == "disc":
            d = o.sx - np.sqrt(u * u + v * v)
        elif o.shape == "square":
            d = o.sx - np.maximum(np.abs(u), np.abs(v))
        elif o.shape == "rect":
            d = np.minimum(o.sx - np.abs(u), o.sy - np.abs(v))
        elif o.shape == "ellipse":
            d = (1 - np.sqrt((u / o.sx) ** 2 + (v / o.sy) ** 2)) * min(o.sx, o.sy)
        elif o.shape == "sector":  # a pie slice centred on the u axis
            rad = np.sqrt(u * u + v * v)
            d = np.minimum(o.sx - rad, (o.sy - np.abs(np.arctan2(v, u))) * np.maximum(rad, 1))
        elif o.shape == "triangle":  # equilateral, circumradius sx, pointing along -v
            d = np.minimum(np.minimum(o.sx / 2 + v, o.sx / 2 - (0.866 * u + 0.5 * v)),
                           o.sx / 2 - (-0.866 * u + 0.5 * v))
        else:
            raise ValueError(o.shape)
        a = (np.clip(d + 0.5, 0, 1) * o.alpha)[..., None]
        col = o.color[None, None, :]
        if o.texture == "stripes":
            col = col + (self.amp * np.sin(u * (2 * math.pi / self.period)))[..., None]
        elif o.texture == "dots":  # same spatial frequency and variance as the stripes
            k = 2 * math.pi / (self.period * math.sqrt(2))
            col = col + (self.amp * math.sqrt(2) * np.sin(u * k) * np.sin(v * k))[..., None]
        elif o.texture == "wheel":  # fixed to the image frame; hue grows clockwise (y down)
            hue = ((np.arctan2(y, x) - o.hue0) / (2 * math.pi)) % 1.0
            rgb = np.stack([np.abs(hue * 6 - 3) - 1, 2 - np.abs(hue * 6 - 2),
                            2 - np.abs(hue * 6 - 4)], -1)
            col = 0.8 * (0.35 + 0.65 * np.clip(rgb, 0, 1))
        patch = img[y0:y1, x0:x1]
        patch += a * (col - patch)


def _random_color(rng: np.random.Generator, *avoid: np.ndarray) -> np.ndarray:
    """A mid-value colour far from the ``avoid`` colours; channels in [.26, .74] so a texture
    of amplitude up to .18 * sqrt(2) never clips (clipping would shift the mean colour)."""
    best, best_d = None, -1.0
    for _ in range(8):
        hsv = np.array([[[rng.uniform(0, 180), rng.uniform(120, 255), rng.uniform(150, 230)]]],
                       dtype=np.uint8)
        rgb = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32) / 255
        rgb = 0.5 + (rgb - rgb.mean()) * 0.9 + (rgb.mean() - 0.5) * 0.5
        d = min(float(np.abs(rgb - a).sum()) for a in avoid)
        if d > best_d:
            best, best_d = rgb, d
    return np.clip(best, 0.26, 0.74).astype(np.float32)


def _procedural_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Two-colour gradient in a random direction plus smooth noise blobs."""
    c0, c1 = rng.uniform(0.05, 0.95, 3), rng.uniform(0.05, 0.95, 3)
    ang = rng.uniform(0, 2 * math.pi)
    t = np.linspace(-1, 1, size, dtype=np.float32)
    g = (np.cos(ang) * t[None, :] + np.sin(ang) * t[:, None]) * 0.5 + 0.5
    img = c0 + (c1 - c0) * g[..., None]
    cells = int(rng.integers(3, 8))
    noise = rng.normal(0, rng.uniform(0.03, 0.12), (cells, cells, 3)).astype(np.float32)
    img += cv2.resize(noise, (size, size), interpolation=cv2.INTER_CUBIC)
    return np.clip(img, 0, 1).astype(np.float32)


class _BackgroundFootage:
    """Frames of a real video (decoded once per process) used as moving backgrounds."""

    _cache: dict[tuple[str, int], np.ndarray] = {}

    @classmethod
    def frames(cls, path: str, size: int, max_frames: int = 240) -> np.ndarray:
        key = (path, size)
        if key not in cls._cache:
            out = []
            for i, f in enumerate(iter_frames(path)):
                if i >= max_frames:
                    break
                h, w = f.shape[:2]
                s = size * 1.25 / min(h, w)
                out.append(cv2.resize(f, (round(w * s), round(h * s)),
                                      interpolation=cv2.INTER_AREA))
            if not out:
                raise ValueError(f"background video {path} has no frames")
            cls._cache[key] = np.stack(out)
        return cls._cache[key]


# --------------------------------------------------------------------------- class motions


def _class_scene(
    name: str, rng: np.random.Generator, size: int, bg_mean: np.ndarray
) -> Callable[[float, int, bool], list[_Obj]]:
    """Return ``scene(p, k, active)``: the objects at action progress p (0..1) and action frame
    k (both 0 before the onset, where ``active`` is False).

    A table of the classes' scenes more than a procedure (one short closure per class), so it
    stays one function of about 100 lines.
    """
    sc = size / REFERENCE_SIZE
    color = _random_color(rng, bg_mean)
    cx = size / 2 + rng.uniform(-12, 12) * sc
    cy = size / 2 + rng.uniform(-12, 12) * sc
    angle0 = rng.uniform(0, 2 * math.pi)
    plain_shape = str(rng.choice(["disc", "square", "triangle"]))
    drift = rng.uniform(-0.6, 0.6, 2) * sc  # slow nuisance drift, px per frame

    def at(k: int) -> tuple[float, float]:
        return cx + drift[0] * k, cy + drift[1] * k

    if name in ("grow", "shrink", "approach_leave"):
        r0, ratio = rng.uniform(14, 26) * sc, rng.uniform(2.2, 3.2)

        def scene(p: float, k: int, active: bool) -> list[_Obj]:
            q = {"grow": p, "shrink": 1 - p, "approach_leave": math.sin(math.pi * p)}[name]
            r = r0 * ratio ** q
            return [_Obj(plain_shape, *at(k), r, r, angle0, color)]
        return scene
    if name in ("rotate_cw", "rotate_ccw"):
        # A turning window in a dark disc shows the part of a fixed colour wheel it is over, so
        # the turn shows in globally pooled colour statistics, not only in the window's angle.
        radius = rng.uniform(55, 75) * sc
        half = math.radians(rng.uniform(30, 45))
        step = math.radians(rng.uniform(12, 22)) * (1 if name == "rotate_cw" else -1)
        hue0 = rng.uniform(0, 2 * math.pi)
        dark = np.full(3, rng.uniform(0.04, 0.2), np.float32)

        def scene(p: float, k: int, active: bool) -> list[_Obj]:
            x, y = at(k)
            return [_Obj("disc", x, y, radius, radius, 0.0, dark),
                    _Obj("sector", x, y, radius, half, angle0 + step * k, dark, "wheel",
                         hue0=hue0)]
        return scene
    if name in ("split", "merge"):
        shape = str(rng.choice(["disc", "square"]))
        r = rng.uniform(18, 30) * sc
        dist = rng.uniform(3.2, 4.2) * r
        phi = rng.uniform(0, math.pi)
        color2 = _random_color(rng, bg_mean, color)  # stacked: only the top one shows

        def scene(p: float, k: int, active: bool) -> list[_Obj]:
            d = dist * (p if name == "split" else 1 - p) / 2
            x, y = at(k)
            dx, dy = d * math.cos(phi), d * math.sin(phi)
            return [_Obj(shape, x - dx, y - dy, r, r, angle0, color),
                    _Obj(shape, x + dx, y + dy, r, r, angle0, color2)]
        return scene
    if name in ("slide_striped", "slide_dotted"):
        shape = str(rng.choice(["disc", "square"]))
        r = rng.uniform(34, 46) * sc
        travel = rng.uniform(50, 80) * sc
        phi = rng.uniform(0, 2 * math.pi)
        tex = "stripes" if name.endswith("striped") else "dots"
        c0x, c0y = size / 2 + rng.uniform(-8, 8, 2) * sc

        def scene(p: float, k: int, active: bool) -> list[_Obj]:
            off = (p - 0.5) * travel
            return [_Obj(shape, c0x + off * math.cos(phi), c0y + off * math.sin(phi), r, r,
                         angle0, color, tex)]
        return scene
    if name in ("swing_striped", "swing_dotted"):
        a, b = rng.uniform(55, 70) * sc, rng.uniform(16, 22) * sc
        amp = math.radians(rng.uniform(35, 50))
        period = rng.uniform(8, 12)
        phase = rng.uniform(0, 2 * math.pi)
        tex = "stripes" if name.endswith("striped") else "dots"

        def scene(p: float, k: int, active: bool) -> list[_Obj]:
            ang = angle0 + amp * math.sin(2 * math.pi * k / period + phase)
            return [_Obj("rect", cx, cy, a, b, ang, color, tex)]
        return scene
    if name == "blink":
        r = rng.uniform(25, 50) * sc
        period = int(rng.integers(4, 8))
        phase = int(rng.integers(0, period))

        def scene(p: float, k: int, active: bool) -> list[_Obj]:
            on = not active or (k + phase) % period < (period + 1) // 2
            return [_Obj(plain_shape, *at(k), r, r, angle0, color, alpha=float(on))]
        return scene
    if name in ("fade_in", "fade_out"):
        r = rng.uniform(25, 50) * sc
        lo, hi = rng.uniform(0.08, 0.3), rng.uniform(0.75, 1.0)

        def scene(p: float, k: int, active: bool) -> list[_Obj]:
            q = p if name == "fade_in" else 1 - p
            return [_Obj(plain_shape, *at(k), r, r, angle0, color, alpha=lo + (hi - lo) * q)]
        return scene
    raise ValueError(f"unknown synthetic class {name!r}")


# --------------------------------------------------------------------------- one video


def _bad_frame(img: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    size = img.shape[0]
    if kind == "blank":
        return np.full_like(img, rng.choice([0.0, 0.5, 1.0, float(img.mean())]))
    if kind == "occluder":
        w, h = (rng.uniform(0.45, 0.75, 2) * size).astype(int)
        x0 = int(rng.integers(0, size - w + 1))
        y0 = int(rng.integers(0, size - h + 1))
        out = img.copy()
        out[y0:y0 + h, x0:x0 + w] = rng.uniform(0, 1, 3)
        return out
    length = int(rng.integers(11, 22) * size / REFERENCE_SIZE) | 1
    kernel = np.zeros((length, length), np.float32)
    kernel[length // 2, :] = 1 / length
    rot = cv2.getRotationMatrix2D((length / 2 - 0.5, length / 2 - 0.5), rng.uniform(0, 180), 1)
    kernel = cv2.warpAffine(kernel, rot, (length, length))
    return cv2.filter2D(img, -1, kernel / max(kernel.sum(), 1e-6), borderType=cv2.BORDER_REFLECT)


def render_video(
    name: str, rng: np.random.Generator, cfg: SyntheticConfig
) -> tuple[np.ndarray, dict]:
    """Render one video of class ``name`` -> ((F, size, size, 3) uint8 RGB, facts)."""
    size, n = cfg.size, cfg.frames_per_video
    canvas = _Canvas(size, max(3.0, cfg.texture_period * size / REFERENCE_SIZE))
    footage = None
    if cfg.background_video:
        footage = _BackgroundFootage.frames(cfg.background_video, size)
        fh, fw = footage.shape[1:3]
        f0 = int(rng.integers(0, max(1, len(footage) - n)))
        oy, ox = int(rng.integers(0, fh - size + 1)), int(rng.integers(0, fw - size + 1))
        bg_mean = footage[f0].mean(axis=(0, 1)) / 255
    else:
        background = _procedural_background(rng, size)
        bg_mean = background.mean(axis=(0, 1))
    scene = _class_scene(name, rng, size, bg_mean)
    onset, pre = 0, "none"
    if rng.random() < cfg.late_start_prob:
        onset = int(rng.integers(round(n * 0.25), round(n * 0.5) + 1))
        pre = str(rng.choice(["static", "empty"]))
    duration = max(n - 1 - onset, 1)
    shake = rng.random() < cfg.shake_prob
    bad = {}
    for t in range(n):
        if rng.random() < cfg.bad_frame_prob and len(bad) < n // 4:
            bad[t] = str(rng.choice(["blank", "occluder", "blur"]))
    frames = np.empty((n, size, size, 3), np.uint8)
    for t in range(n):
        if footage is not None:
            fr = footage[min(f0 + t, len(footage) - 1)]
            img = fr[oy:oy + size, ox:ox + size].astype(np.float32) / 255
        else:
            img = background.copy()
        k = t - onset
        if k >= 0 or pre == "static":  # before the onset: frozen at the first state, or empty
            for obj in scene(max(k, 0) / duration, max(k, 0), k >= 0):
                canvas.draw(img, obj)
        if shake:
            dx, dy = rng.uniform(-6, 6, 2) * size / REFERENCE_SIZE
            m = np.float32([[1, 0, dx], [0, 1, dy]])
            img = cv2.warpAffine(img, m, (size, size), borderMode=cv2.BORDER_REFLECT)
        if t in bad:
            img = _bad_frame(img, bad[t], rng)
        frames[t] = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)
    facts = {"onset": onset, "before_onset": pre, "shake": shake,
             "bad_frames": {str(t): kind for t, kind in sorted(bad.items())}}
    return frames, facts
