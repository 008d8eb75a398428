"""rosbag2 bags (sqlite3 or mcap, read with ``rosbags``) as labelled videos.

The frames of one image topic (``sensor_msgs/msg/Image`` or ``CompressedImage``) are cut into
windows of consecutive frames; each window is one video. Labels come from a sidecar file.

Label file, YAML (``labels.yaml``)::

    topic: /camera/image_raw    # optional when the bag has exactly one image topic
    classes: [wave, clap, idle] # optional: label order; default the sorted label names
    label: wave                 # either one label for the whole bag ...
    segments:                   # ... or labelled time ranges
      - {start: 0.0, end: 4.5, label: wave}
      - {start: 4.5, end: 9.0, label: clap, split: train}   # split: train | test (default test)
    absolute: false             # true: start/end are Unix seconds (default: from bag start)

Label file, CSV (``labels.csv``), a header then one segment per row (empty start/end = bag
start/end; ``split`` optional)::

    start,end,label,split
    0.0,4.5,wave,test

Times are compared with the bag's receive (log) timestamps; the bag start is its earliest message
over all topics (what ``ros2 bag info`` prints). A segment covers ``start <= t < end``. Frames
outside every segment are unused. The label file is looked up, when not given, as
``labels.yaml|yml|csv`` inside a bag directory, then ``<bag>.labels.yaml|yml|csv`` beside the bag.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml
from rosbags.highlevel import AnyReader

from rsee_ros.data.records import BagWindow, VideoRecord, VideoSplit
from rsee_ros.data.video import VideoDecodeError
from rsee_ros.data.image_conversion import compressed_to_rgb, image_to_rgb  # numpy/cv2 only

log = logging.getLogger(__name__)

IMAGE_MSGTYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
_LABEL_NAMES = ("labels.yaml", "labels.yml", "labels.csv")


@dataclass(frozen=True)
class LabelSegment:
    """A labelled time range in seconds; None means the bag's start or end."""

    label: str
    start: float | None = None
    end: float | None = None
    split: str = "test"


@dataclass(frozen=True)
class BagLabels:
    """The content of a bag's label file."""

    segments: tuple[LabelSegment, ...]
    topic: str | None = None
    classes: tuple[str, ...] | None = None
    absolute: bool = False


def _opt_float(value: object) -> float | None:
    return None if value is None or str(value).strip() == "" else float(value)


def _segment(item: dict, where: Path) -> LabelSegment:
    if "label" not in item:
        raise ValueError(f"{where}: segment without a label: {item}")
    split = str(item.get("split") or "test").strip()
    if split not in ("train", "test"):
        raise ValueError(f"{where}: split must be train or test, got {split!r}")
    return LabelSegment(
        str(item["label"]).strip(), _opt_float(item.get("start")), _opt_float(item.get("end")),
        split,
    )


def load_bag_labels(path: str | Path) -> BagLabels:
    """Parse a YAML or CSV label file (format in the module docstring)."""
    p = Path(path)
    if p.suffix.lower() == ".csv":
        with p.open(newline="") as fh:
            rows = [r for r in csv.DictReader(fh) if any((v or "").strip() for v in r.values())]
        return BagLabels(tuple(_segment(r, p) for r in rows))
    doc = yaml.safe_load(p.read_text()) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{p}: expected a mapping at the top level")
    segments = [_segment(s, p) for s in doc.get("segments") or []]
    if "label" in doc:
        segments.append(_segment({"label": doc["label"], "split": doc.get("split")}, p))
    if not segments:
        raise ValueError(f"{p}: no `label` and no `segments`")
    classes = tuple(str(c) for c in doc["classes"]) if doc.get("classes") else None
    return BagLabels(tuple(segments), doc.get("topic"), classes, bool(doc.get("absolute", False)))


def find_label_file(bag: str | Path) -> Path | None:
    """The sidecar label file of a bag, or None."""
    p = Path(bag)
    candidates = [p / n for n in _LABEL_NAMES] if p.is_dir() else []
    candidates += [p.with_name(f"{p.name}.{n}") for n in _LABEL_NAMES]
    return next((c for c in candidates if c.is_file()), None)


def _connections(reader: AnyReader, topic: str) -> list:
    conns = [c for c in reader.connections if c.topic == topic]
    if not conns:
        raise ValueError(f"topic {topic} not in bag")
    bad = {c.msgtype for c in conns} - set(IMAGE_MSGTYPES)
    if bad:
        raise ValueError(f"topic {topic} carries {sorted(bad)}, not an image type")
    return conns


def image_topics(bag: str | Path) -> dict[str, str]:
    """Image topics of a bag -> message type."""
    with AnyReader([Path(bag)]) as reader:
        return {c.topic: c.msgtype for c in reader.connections if c.msgtype in IMAGE_MSGTYPES}


def resolve_topic(bag: str | Path, topic: str | None) -> str:
    """``topic`` if given, else the bag's only image topic."""
    if topic:
        return topic
    topics = image_topics(bag)
    if len(topics) != 1:
        raise ValueError(f"{bag}: name the image topic; the bag has {sorted(topics) or 'none'}")
    return next(iter(topics))


def bag_frame_times(bag: str | Path, topic: str) -> tuple[np.ndarray, int]:
    """Log timestamps (ns) of the topic's messages, and the bag's start time (ns)."""
    with AnyReader([Path(bag)]) as reader:
        times = [t for _, t, _ in reader.messages(_connections(reader, topic))]
        return np.asarray(times, dtype=np.int64), int(reader.start_time)


def read_bag_frames(bag: str | Path, window: BagWindow, indices: Sequence[int]) -> np.ndarray:
    """Decode frames ``indices`` (0-based within the window) -> (N, H, W, 3) uint8 RGB."""
    idx = [min(int(i), window.num_frames - 1) for i in np.asarray(indices).reshape(-1)]
    wanted, last = set(idx), max(idx)
    name = f"{bag}:{window.topic}@{window.start_ns}"
    frames: dict[int, np.ndarray] = {}
    try:
        with AnyReader([Path(bag)]) as reader:
            conns = _connections(reader, window.topic)
            msgs = reader.messages(conns, start=window.start_ns, stop=window.stop_ns + 1)
            for k, (conn, _, raw) in enumerate(msgs):
                i = k - window.skip
                if i in wanted:
                    msg = reader.deserialize(raw, conn.msgtype)
                    frames[i] = (image_to_rgb(msg) if conn.msgtype == IMAGE_MSGTYPES[0]
                                 else compressed_to_rgb(msg))
                if i >= last:
                    break
    except VideoDecodeError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken bag or message names the window
        raise VideoDecodeError(name, str(exc)) from exc
    if len(frames) != len(wanted):
        raise VideoDecodeError(name, f"window has {len(frames)} of {len(wanted)} frames")
    shapes = {f.shape for f in frames.values()}
    if len(shapes) != 1:
        raise VideoDecodeError(name, f"frames of different sizes {sorted(shapes)}")
    return np.stack([frames[i] for i in idx])


def _windows(n: int, window: int, stride: int, min_frames: int) -> list[tuple[int, int]]:
    if n >= window:
        return [(s, s + window) for s in range(0, n - window + 1, stride)]
    return [(0, n)] if n >= min_frames else []


def read_rosbag(
    bag: str | Path,
    labels: str | Path | BagLabels | None = None,
    *,
    topic: str | None = None,
    window: int = 16,
    stride: int | None = None,
    min_frames: int | None = None,
    classes: Sequence[str] | None = None,
) -> VideoSplit:
    """Cut a bag's image topic into labelled videos of ``window`` consecutive frames.

    ``stride`` defaults to ``window`` (no overlap); a segment shorter than one window gives one
    shorter video if it has at least ``min_frames`` (default ``window // 2``) frames. ``classes``
    overrides the label file's class list (use one list for several bags).
    """
    bag_path = Path(bag)
    if labels is None:
        found = find_label_file(bag_path)
        if found is None:
            raise FileNotFoundError(f"no label file for bag {bag_path}")
        labels = found
    spec = labels if isinstance(labels, BagLabels) else load_bag_labels(labels)
    topic = resolve_topic(bag_path, topic or spec.topic)
    names = list(classes or spec.classes or sorted({s.label for s in spec.segments}))
    unknown = {s.label for s in spec.segments} - set(names)
    if unknown:
        raise ValueError(f"labels {sorted(unknown)} not in classes {names}")
    stride = stride or window
    min_frames = max(1, window // 2 if min_frames is None else min_frames)
    times, bag_start = bag_frame_times(bag_path, topic)
    offset = 0 if spec.absolute else bag_start
    out = VideoSplit(names)
    for seg in spec.segments:
        lo = 0 if seg.start is None else int(np.searchsorted(
            times, offset + round(seg.start * 1e9), "left"))
        hi = len(times) if seg.end is None else int(np.searchsorted(
            times, offset + round(seg.end * 1e9), "left"))
        for a, b in _windows(hi - lo, window, stride, min_frames):
            i0, i1 = lo + a, lo + b
            skip = i0 - int(np.searchsorted(times, times[i0], "left"))
            win = BagWindow(topic, int(times[i0]), int(times[i1 - 1]), i1 - i0, skip)
            rec = VideoRecord(str(bag_path), names.index(seg.label),
                              f"{bag_path.name}{topic}[{i0}:{i1}]", win)
            (out.train if seg.split == "train" else out.test).append(rec)
    log.info("%s: %d train + %d test windows from %d frames on %s",
             bag_path.name, len(out.train), len(out.test), len(times), topic)
    return out
