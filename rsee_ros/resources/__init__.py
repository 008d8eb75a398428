"""Files shipped with the package: the default model and the demo clip.

* ``rsee_synthetic.pt``: the default checkpoint of ``rsee_node`` (MobileNetV2 RSEE trained on the
  synthetic action set, resolutions 112/84/56/42; see config/train_synthetic.yaml).
* ``demo/demo_clip.mp4`` + ``demo/demo_clip.yaml``: held-out synthetic clips concatenated into one
  video, with their labels (frame ranges), played by ``video_source`` with ``source:=demo`` and by
  ``make demo``. Made by ``python -m rsee_ros.resources.make_demo_clip`` (see that module).

Clip label file (YAML)::

    video: demo_clip.mp4          # relative to the label file
    fps: 8
    classes: [grow, shrink, ...]  # the label order of the model the clips were made for
    clips:                        # frame ranges [start, end) of the video, in order
      - {label: grow, start: 0, end: 16}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

RESOURCES = Path(__file__).resolve().parent
DEFAULT_CHECKPOINT = RESOURCES / "rsee_synthetic.pt"
DEMO_LABELS = RESOURCES / "demo" / "demo_clip.yaml"
FASTDDS_SHM_PROFILE = RESOURCES / "fastdds_shm.xml"
"""Fast DDS profile: shared memory for whole images between processes of one host (the file
names the details); use it with ``FASTDDS_DEFAULT_PROFILES_FILE``."""


@dataclass(frozen=True)
class ClipLabel:
    """One labelled clip of a video: frames ``start`` to ``end - 1``."""

    label: str
    start: int
    end: int


@dataclass(frozen=True)
class ClipLabels:
    """The content of a clip label file."""

    video: Path
    clips: tuple[ClipLabel, ...]
    classes: tuple[str, ...] = ()
    fps: float | None = None

    def label_at(self, frame: int) -> str | None:
        """The label of frame ``frame`` of the video (None outside every clip)."""
        for clip in self.clips:
            if clip.start <= frame < clip.end:
                return clip.label
        return None


def load_clip_labels(path: str | Path) -> ClipLabels:
    """Read a clip label file (format in the module docstring); ``ValueError`` when malformed."""
    path = Path(path)
    doc = yaml.safe_load(path.read_text())
    if not isinstance(doc, dict) or not isinstance(doc.get("clips"), list) or not doc["clips"]:
        raise ValueError(f"{path}: expected a mapping with a non-empty `clips` list")
    clips = []
    for item in doc["clips"]:
        try:
            clip = ClipLabel(str(item["label"]), int(item["start"]), int(item["end"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{path}: bad clip {item!r} ({exc})") from None
        if clip.end <= clip.start or (clips and clip.start < clips[-1].end):
            raise ValueError(f"{path}: clips must be non-empty and in order: {item!r}")
        clips.append(clip)
    video = path.parent / str(doc.get("video", path.with_suffix(".mp4").name))
    fps = float(doc["fps"]) if doc.get("fps") else None
    return ClipLabels(video, tuple(clips), tuple(str(c) for c in doc.get("classes") or ()), fps)
