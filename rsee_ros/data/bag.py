"""rosbag2 recordings (sqlite3 or mcap, read with ``rosbags``: no ROS needed) and their labels.

The one place bags are opened and their images read, for the ``rosbag`` data set reader
(:func:`rsee_ros.data.readers.read_rosbag`), the bag frame source of ``video_source``
(:class:`rsee_ros.data.sources.RosbagSource`) and ``rsee eval-bag``
(:mod:`rsee_ros.evaluation.bag_eval`):

* :class:`Bag` opens a bag folder (or a ``.mcap``/``.db3`` file inside one; what is wrong with
  a path that is not a readable bag, in one line, and interrupted recordings:
  :mod:`rsee_ros.data.bag_storage`), lists its image topics (``sensor_msgs/msg/Image`` and
  ``CompressedImage``), chooses topics, and iterates their messages decoded to RGB
  (:meth:`Bag.frames`), each rejected one with a reason code of
  :mod:`rsee_ros.data.image_conversion` or :data:`DESERIALIZE_FAILED`;
* the label sidecar file, below, gives time segments their labels.

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
over all topics (what ``ros2 bag info`` prints). A segment covers ``start <= t < end``; a missing
``start`` or ``end`` is the bag's start or end. Segments must end after they start and may touch
but not overlap (a frame has one label); ``label`` and ``segments`` do not go together. Frames
outside every segment are unused. Every error in a label file is a ValueError naming the file
(and the segment or CSV line). The label file is looked up, when not given, as
``labels.yaml|yml|csv`` inside a bag directory, then ``<bag>.labels.yaml|yml|csv`` beside the bag.

Reading bags and their label format stay one module (the one place both are defined, opening
checks aside), hence a little over 400 lines.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import yaml

from rsee_ros.data.bag_storage import BAG_SUFFIXES, BagError, one_line, open_reader
from rsee_ros.data.image_conversion import (
    DEFAULT_MAX_PIXELS,
    ImageConversionError,
    compressed_to_rgb,
    image_to_rgb,
)
from rsee_ros.data.records import BagWindow
from rsee_ros.data.stamps import stamp_ns
from rsee_ros.data.video import VideoDecodeError

__all__ = [
    "BAG_SUFFIXES",
    "COMPRESSED",
    "DESERIALIZE_FAILED",
    "IMAGE",
    "IMAGE_MSGTYPES",
    "Bag",
    "BagError",
    "BagFrame",
    "BagLabels",
    "LabelSegment",
    "find_label_file",
    "image_topics",
    "load_bag_labels",
    "read_bag_frames",
]

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
IMAGE_MSGTYPES = (IMAGE, COMPRESSED)
# Reject reason of a message that cannot be deserialised (the others: image_conversion's codes).
DESERIALIZE_FAILED = "deserialize_failed"
_LABEL_NAMES = ("labels.yaml", "labels.yml", "labels.csv")


class BagFrame(NamedTuple):
    """One image message of a bag: decoded (``rgb``) or rejected (``error``)."""

    topic: str
    log_ns: int
    """Receive (log) time of the message in the bag."""
    stamp_ns: int
    """Header stamp; the log time when the stamp is zero or the message was rejected."""
    frame_id: str
    rgb: np.ndarray | None
    """(H, W, 3) uint8 RGB; None when rejected."""
    error: ImageConversionError | None = None
    """Why the message was rejected (``error.reason``: a reject reason code)."""


def to_rgb(msgtype: str, msg: Any, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """A deserialised Image or CompressedImage as (H, W, 3) RGB (ImageConversionError)."""
    convert = compressed_to_rgb if msgtype == COMPRESSED else image_to_rgb
    return convert(msg, max_pixels=max_pixels)


class Bag:
    """An open rosbag2 (a context manager); :class:`BagError` when it cannot be opened.

    Types are read from the bag; the latest ROS 2 type store serves bags that do not store their
    message definitions. Images of more than ``max_pixels`` are rejected as ``too_large`` (see
    :mod:`~rsee_ros.data.image_conversion`).

    A bag that cannot be read to its end (an MCAP file cut short, a message that cannot be read)
    is a :class:`BagError`, unless ``partial``: then what can be read is, and
    :attr:`unreadable` says (one line, with the count) what could not.
    """

    unreadable: str | None
    """What could not be read (``partial`` bags; set when opening or reading), or None."""

    def __init__(self, path: str | Path, *, max_pixels: int = DEFAULT_MAX_PIXELS,
                 partial: bool = False) -> None:
        self.path = Path(path)
        self.max_pixels = max_pixels
        self.partial = partial
        self._reader, self.unreadable = open_reader(self.path, partial=partial)
        self.image_topics: dict[str, str] = {
            c.topic: c.msgtype
            for c in sorted(self._reader.connections, key=lambda c: c.topic)
            if c.msgtype in IMAGE_MSGTYPES
        }
        """Image topic -> message type, sorted by topic."""

    def __enter__(self) -> Bag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the bag's files."""
        self._reader.close()

    @property
    def start_ns(self) -> int:
        """Log time of the bag's first message over all topics."""
        return int(self._reader.start_time)

    @property
    def duration_ns(self) -> int:
        """Last minus first log time over all topics, plus 1 ns (rosbags' ``duration``)."""
        return int(self._reader.duration)

    def choose_topics(
        self, wanted: Sequence[str] | None = None, *, first_by_name: bool = False
    ) -> list[str]:
        """The image topics to read: ``wanted``, else the bag's only image topic (its first by
        name with ``first_by_name``). :class:`BagError` naming the image topics otherwise."""
        available = sorted(self.image_topics)
        listed = ", ".join(available) or "none"
        if wanted:
            for topic in wanted:
                if topic not in self.image_topics:
                    types = sorted({c.msgtype for c in self._reader.connections
                                    if c.topic == topic})
                    what = f"carries {', '.join(types)}, not images" if types else "is not in it"
                    raise BagError(f"no image topic {topic} in rosbag {str(self.path)!r}: the "
                                   f"topic {what}; image topics: {listed}")
            return list(wanted)
        if not available:
            raise BagError(f"no Image/CompressedImage topic in rosbag {str(self.path)!r}")
        if len(available) > 1 and not first_by_name:
            raise BagError(f"rosbag {str(self.path)!r} has several image topics, name one: "
                           f"{listed}")
        return available[:1]

    def choose_topic(self, wanted: str | None = None, *, first_by_name: bool = False) -> str:
        """One image topic, see :meth:`choose_topics`."""
        return self.choose_topics([wanted] if wanted else None, first_by_name=first_by_name)[0]

    def _connections(self, topics: Sequence[str]) -> list[Any]:
        self.choose_topics(topics)
        return [c for c in self._reader.connections if c.topic in topics]

    def message_count(self, topic: str) -> int:
        """Messages on an image topic."""
        return sum(c.msgcount for c in self._connections([topic]))

    def log_times(self, topic: str) -> np.ndarray:
        """Log times (ns, int64) of an image topic's messages, in recording order."""
        times = [t for _, t, _ in self.messages([topic])]
        return np.asarray(times, dtype=np.int64)

    def messages(
        self, topics: Sequence[str], start_ns: int | None = None, stop_ns: int | None = None
    ) -> Iterator[tuple[Any, int, bytes]]:
        """``(connection, log_ns, raw)`` of image topics in recording order, log times in
        ``[start_ns, stop_ns)``; decode one with :meth:`decode`.

        A message that cannot be read ends them, and so do fewer messages than the bag lists
        (rosbags skips what it cannot parse in a damaged chunk): :class:`BagError`, or with
        ``partial`` the end, said in :attr:`unreadable`.
        """
        connections = self._connections(topics)
        source = self._reader.messages(connections, start=start_ns, stop=stop_ns)
        whole = start_ns is None and stop_ns is None
        listed = sum(c.msgcount for c in connections)
        count, problem = 0, None
        while True:
            try:
                item = next(source)
            except StopIteration:
                if whole and count < listed:
                    problem = (f"only {count} of the {listed} messages on {', '.join(topics)} "
                               "could be read (the others are damaged)")
                break
            except Exception as exc:  # noqa: BLE001 - rosbags and sqlite3 raise various types
                of = f" of {listed}" if whole else ""
                problem = (f"the messages after the first {count}{of} on {', '.join(topics)} "
                           f"could not be read: {one_line(str(exc))}")
                break
            count += 1
            yield item
        if problem is not None and not self.partial:
            raise BagError(f"cannot read rosbag {self.path}: {problem}")
        if problem is not None:
            self.unreadable = f"{self.path}: {problem}"

    def decode(self, connection: Any, raw: bytes) -> tuple[Any, np.ndarray]:
        """``(message, rgb)``; :class:`ImageConversionError` with a reject reason otherwise."""
        try:
            msg = self._reader.deserialize(raw, connection.msgtype)
        except Exception as exc:  # noqa: BLE001 - rosbags raises various types on junk
            raise ImageConversionError(DESERIALIZE_FAILED, str(exc)) from None
        return msg, to_rgb(connection.msgtype, msg, self.max_pixels)

    def frames(self, topics: Sequence[str]) -> Iterator[BagFrame]:
        """Every message of image ``topics`` in recording order, decoded or with its reject."""
        for conn, log_ns, raw in self.messages(topics):
            try:
                msg, rgb = self.decode(conn, raw)
            except ImageConversionError as exc:
                yield BagFrame(conn.topic, int(log_ns), int(log_ns), "", None, exc)
                continue
            stamp = stamp_ns(msg.header.stamp) or int(log_ns)
            yield BagFrame(conn.topic, int(log_ns), stamp, str(msg.header.frame_id), rgb)


def image_topics(bag: str | Path) -> dict[str, str]:
    """Image topics of a bag -> message type."""
    with Bag(bag) as b:
        return dict(b.image_topics)


def read_bag_frames(bag: str | Path, window: BagWindow, indices: Sequence[int]) -> np.ndarray:
    """Decode frames ``indices`` (0-based within the window) -> (N, H, W, 3) uint8 RGB.

    Only the frames asked for are decoded; any failure is a :class:`VideoDecodeError` naming the
    window (a data set skips that video).
    """
    idx = [min(int(i), window.num_frames - 1) for i in np.asarray(indices).reshape(-1)]
    wanted, last = set(idx), max(idx)
    name = f"{bag}:{window.topic}@{window.start_ns}"
    frames: dict[int, np.ndarray] = {}
    try:
        with Bag(bag) as b:
            msgs = b.messages([window.topic], window.start_ns, window.stop_ns + 1)
            for k, (conn, _, raw) in enumerate(msgs):
                i = k - window.skip
                if i in wanted:
                    frames[i] = b.decode(conn, raw)[1]
                if i >= last:
                    break
    except Exception as exc:  # noqa: BLE001 - a broken bag or message names the window
        raise VideoDecodeError(name, str(exc)) from exc
    if len(frames) != len(wanted):
        raise VideoDecodeError(name, f"window has {len(frames)} of {len(wanted)} frames")
    shapes = {f.shape for f in frames.values()}
    if len(shapes) != 1:
        raise VideoDecodeError(name, f"frames of different sizes {sorted(shapes)}")
    return np.stack([frames[i] for i in idx])


# Labels -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSegment:
    """A labelled time range in seconds; None means the bag's start or end."""

    label: str
    start: float | None = None
    end: float | None = None
    split: str = "test"

    def range_ns(self, offset_ns: int) -> tuple[int | None, int | None]:
        """``[start, end)`` as log times in ns (``offset_ns`` + seconds); None: open."""
        lo = None if self.start is None else offset_ns + round(self.start * 1e9)
        hi = None if self.end is None else offset_ns + round(self.end * 1e9)
        return lo, hi


@dataclass(frozen=True)
class BagLabels:
    """The content of a bag's label file."""

    segments: tuple[LabelSegment, ...]
    topic: str | None = None
    classes: tuple[str, ...] | None = None
    absolute: bool = False

    def offset_ns(self, bag_start_ns: int) -> int:
        """What segment times count from: 0 (absolute) or the bag's start."""
        return 0 if self.absolute else bag_start_ns

    def segment_at(self, log_ns: int, bag_start_ns: int) -> LabelSegment | None:
        """The first segment holding log time ``log_ns``, or None."""
        offset = self.offset_ns(bag_start_ns)
        for seg in self.segments:
            lo, hi = seg.range_ns(offset)
            if (lo is None or lo <= log_ns) and (hi is None or log_ns < hi):
                return seg
        return None


def _seconds(item: dict, key: str, where: str) -> float | None:
    """``item[key]`` as finite seconds; None when absent or empty (the bag's start or end)."""
    value = item.get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    number = None
    if not isinstance(value, bool):
        try:
            number = float(value)
        except (TypeError, ValueError):
            pass
    if number is None or not math.isfinite(number):
        raise ValueError(f"{where}: {key} must be a finite number of seconds, got {value!r}")
    return number


def _segment(item: object, where: str) -> LabelSegment:
    """One segment (a mapping of label, start, end, split); ValueError saying what is wrong."""
    if not isinstance(item, dict):
        raise ValueError(f"{where}: expected a mapping of start, end, label, got {item!r}")
    label = item.get("label")
    if isinstance(label, (dict, list, bool)) or label is None or not str(label).strip():
        raise ValueError(f"{where}: segment without a label: {item}")
    split = str(item.get("split") or "test").strip()
    if split not in ("train", "test"):
        raise ValueError(f"{where}: split must be train or test, got {split!r}")
    seg = LabelSegment(str(label).strip(), _seconds(item, "start", where),
                       _seconds(item, "end", where), split)
    if seg.start is not None and seg.end is not None and seg.end <= seg.start:
        raise ValueError(f"{where}: end {seg.end:g} is not after start {seg.start:g}")
    return seg


def _check_overlaps(segments: Sequence[LabelSegment], names: Sequence[str], p: Path) -> None:
    """ValueError naming the first two segments that share a time (a frame has one label)."""
    def lo(i: int) -> float:
        return -math.inf if segments[i].start is None else segments[i].start

    order = sorted(range(len(segments)), key=lo)
    for a, b in zip(order, order[1:], strict=False):
        end = math.inf if segments[a].end is None else segments[a].end
        if lo(b) < end:
            raise ValueError(f"{p}: {names[a]} and {names[b]} overlap (a frame has one label; "
                             "segments may only touch)")


def _csv_labels(p: Path, text: str) -> BagLabels:
    try:
        reader = csv.DictReader(io.StringIO(text))
        if "label" not in (reader.fieldnames or []):
            raise ValueError(f"{p}: no label column in the header {reader.fieldnames}")
        rows = [(f"line {reader.line_num}", r) for r in reader
                if any((v or "").strip() for v in r.values() if isinstance(v, str))]
    except csv.Error as exc:
        raise ValueError(f"{p}: not valid CSV: {exc}") from None
    segments = tuple(_segment(r, f"{p} {name}") for name, r in rows)
    _check_overlaps(segments, [name for name, _ in rows], p)
    return BagLabels(segments)


def _yaml_labels(p: Path, text: str) -> BagLabels:
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ValueError(f"{p}: not valid YAML{at}: {getattr(exc, 'problem', None) or exc}") \
            from None
    if not isinstance(doc, dict):
        raise ValueError(f"{p}: expected a mapping at the top level")
    items = doc.get("segments") or []
    if not isinstance(items, list):
        raise ValueError(f"{p}: segments must be a list of {{start, end, label}} mappings, got "
                         f"{items!r}")
    if "label" in doc and items:
        raise ValueError(f"{p}: give `label` (the whole bag) or `segments`, not both")
    if "label" in doc:
        items = [{"label": doc["label"], "split": doc.get("split")}]
    if not items:
        raise ValueError(f"{p}: no `label` and no `segments`")
    names = [f"segment {i + 1}" for i in range(len(items))]
    segments = tuple(_segment(s, f"{p} {n}") for s, n in zip(items, names, strict=True))
    _check_overlaps(segments, names, p)
    classes, topic, absolute = doc.get("classes"), doc.get("topic"), doc.get("absolute", False)
    if classes is not None and not (isinstance(classes, list)
                                    and all(isinstance(c, (str, int)) for c in classes)):
        raise ValueError(f"{p}: classes must be a list of names, got {classes!r}")
    if topic is not None and not isinstance(topic, str):
        raise ValueError(f"{p}: topic must be a topic name, got {topic!r}")
    if not isinstance(absolute, bool):
        raise ValueError(f"{p}: absolute must be true or false, got {absolute!r}")
    return BagLabels(segments, topic, tuple(str(c) for c in classes) if classes else None,
                     absolute)


def load_bag_labels(path: str | Path) -> BagLabels:
    """Parse a YAML or CSV label file (format in the module docstring); ValueError naming the
    file and what is wrong."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ValueError(f"{p}: cannot read the label file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{p}: not a text file") from None
    return _csv_labels(p, text) if p.suffix.lower() == ".csv" else _yaml_labels(p, text)


def find_label_file(bag: str | Path) -> Path | None:
    """The sidecar label file of a bag, or None."""
    p = Path(bag)
    candidates = [p / n for n in _LABEL_NAMES] if p.is_dir() else []
    candidates += [p.with_name(f"{p.name}.{n}") for n in _LABEL_NAMES]
    return next((c for c in candidates if c.is_file()), None)
