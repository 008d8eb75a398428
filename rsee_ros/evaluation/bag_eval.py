"""The engine of ``rsee eval-bag``: the node's recognition on a rosbag2 recording, without ROS.

:func:`evaluate_bag` replays the image topics of a bag (read by :mod:`rsee_ros.data.bag`) in
recording order through a :class:`~rsee_ros.pipeline.runner.RecognitionPipeline`, the one the node
uses. Frame stamps are the header stamps (the recording time when a stamp is zero, as the node
uses its arrival time); windows still open at the end are ended as ``end_of_stream``.

Every image message is accounted for, per topic: the messages that went through the backbone
(``processed``), were fed but skipped by the selector (``skipped``), came after every window
holding them had exited (``after_exit``), were dropped by ``frame_step`` (``not_kept``) or fell
between windows (``between_windows``), and the ``rejected`` ones by reason (unsupported
encoding, size mismatch, empty, decode or deserialisation failure).

A bag that cannot be read to its end (an MCAP file cut short by an interrupted recording, a
damaged chunk) is evaluated as far as it can be read; :attr:`BagEvaluation.unreadable` and one
warning say what could not be.

With labels (:class:`~rsee_ros.data.bag.BagLabels`), a window is scored against the segment that
holds its first frame if that segment also holds the last frame it used (by recording time);
windows across a segment boundary or outside every segment are reported unscored.

:class:`ResultWriter` writes the results as ``rsee_ros/msg/ActionRecognition`` (plus the model's
``LabelInfo``) to a new bag, stamped at the frames' stamps, so ``ros2 bag play`` replays them; the
custom types are registered from the package's ``msg/`` definitions.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsee_ros.data.bag import Bag, BagLabels
from rsee_ros.data.image_conversion import ImageConversionError
from rsee_ros.data.stamps import split_ns

__all__ = ["BagEvaluation", "ResultWriter", "evaluate_bag", "msg_dir", "typestore_with_rsee_types"]

log = logging.getLogger(__name__)

MSG_TYPES = ("ActionRecognition", "ActionRecognitionArray", "LabelInfo", "RseeStatus")


# Message definitions -----------------------------------------------------------------------------


def msg_dir() -> Path:
    """The folder holding rsee_ros' .msg files (installed share/ or the source tree)."""
    candidates = [Path(__file__).resolve().parents[2] / "msg"]
    try:
        from ament_index_python.packages import get_package_share_directory

        candidates.insert(0, Path(get_package_share_directory("rsee_ros")) / "msg")
    except Exception:  # noqa: BLE001 - no ament index (plain pip install): fall back
        pass
    candidates.append(Path(sys.prefix) / "share" / "rsee_ros" / "msg")
    for folder in candidates:
        if (folder / "ActionRecognition.msg").is_file():
            return folder
    raise FileNotFoundError("rsee_ros message definitions (msg/ActionRecognition.msg) not found")


def typestore_with_rsee_types() -> Any:
    """A rosbags typestore (latest ROS 2) with the rsee_ros messages registered."""
    from rosbags.typesys import Stores, get_types_from_msg, get_typestore

    store = get_typestore(Stores.LATEST)
    folder = msg_dir()
    types: dict[str, Any] = {}
    for name in MSG_TYPES:
        types.update(get_types_from_msg((folder / f"{name}.msg").read_text(),
                                        f"rsee_ros/msg/{name}"))
    store.register(types)
    return store


# Evaluation --------------------------------------------------------------------------------------


@dataclass
class BagEvaluation:
    """Results of :func:`evaluate_bag`."""

    windows: list[dict[str, Any]] = field(default_factory=list)
    frames: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    unreadable: str | None = None
    """What of the bag could not be read (an interrupted recording), or None."""

    def summary(self) -> dict[str, Any]:
        """Totals over the windows and frames."""
        n = len(self.windows)
        scored = [w for w in self.windows if w.get("true_label") is not None]
        correct = sum(bool(w["correct"]) for w in scored)
        total_frames = sum(f["total"] for f in self.frames.values())

        def mean(key: str) -> float:
            return sum(w[key] for w in self.windows) / n if n else 0.0

        return {
            "windows": n,
            "scored_windows": len(scored),
            "accuracy": correct / len(scored) if scored else None,
            "exited_early": sum(w["exited_early"] for w in self.windows),
            "incomplete": sum(not w["complete"] for w in self.windows),
            "mean_gflops": mean("gflops"),
            "mean_uniform_gflops": mean("uniform_gflops"),
            "mean_frames_processed": mean("frames_processed"),
            "frames": total_frames,
            "frames_per_second": total_frames / self.seconds if self.seconds > 0 else None,
        }


def evaluate_bag(
    bag: str | Path | Bag,
    pipeline: Any,
    topics: Sequence[str] | None = None,
    labels: BagLabels | None = None,
    writer: ResultWriter | None = None,
) -> BagEvaluation:
    """Replay the image ``topics`` of ``bag`` (a path, or a :class:`~.bag.Bag` opened by the
    caller, who closes it) through ``pipeline`` (a RecognitionPipeline); default: the bag's only
    image topic.

    ``labels`` score the windows; ``writer`` receives every result. :class:`~.bag.BagError` (a
    ValueError) for a bag that cannot be opened or a topic it does not have. Of a bag that
    cannot be read to its end (an interrupted recording), what can be read is evaluated, and
    what could not is warned about and kept in :attr:`BagEvaluation.unreadable`.
    """
    from rsee_ros.pipeline.runner import FRAME_OUTCOMES

    out = BagEvaluation()
    # a path is opened here (partial: what can be read is evaluated), a Bag used as given
    with Bag(bag, partial=True) if not isinstance(bag, Bag) else nullcontext(bag) as reader:
        topics = reader.choose_topics(topics)
        bag_start = reader.start_ns
        for topic in topics:
            out.frames[topic] = {"total": 0, **dict.fromkeys(FRAME_OUTCOMES, 0), "rejected": {}}
        log_times: dict[tuple[str, int], int] = {}
        start = time.perf_counter()

        def keep(results: list[Any]) -> None:
            for r in results:
                out.windows.append(_window_record(r, log_times, labels, bag_start))
                if writer is not None:
                    writer.write(r)

        for frame in reader.frames(topics):
            counts = out.frames[frame.topic]
            counts["total"] += 1
            if frame.error is not None:
                _reject(counts, frame.topic, frame.error)
                continue
            log_times[(frame.topic, frame.stamp_ns)] = frame.log_ns
            report = pipeline.process(frame.topic, frame.stamp_ns * 1e-9, frame.rgb,
                                      stamp_ns=frame.stamp_ns, frame_id=frame.frame_id)
            counts[report.outcome] += 1
            keep(report.results)
        keep(pipeline.flush())
        out.seconds = time.perf_counter() - start
        out.unreadable = reader.unreadable
    if out.unreadable:
        log.warning("%s", out.unreadable)
    return out


def _reject(counts: dict[str, Any], topic: str, error: ImageConversionError) -> None:
    """Count a rejected message; warn at the first of each reason on each topic."""
    counts["rejected"][error.reason] = counts["rejected"].get(error.reason, 0) + 1
    if counts["rejected"][error.reason] == 1:
        log.warning("%s: rejected image (%s): %s", topic, error.reason, error)


def _window_record(
    result: Any, log_times: dict[tuple[str, int], int], labels: BagLabels | None, bag_start: int
) -> dict[str, Any]:
    record = result.to_dict()
    first = log_times.get((result.source, result.first_stamp_ns))
    last = log_times.get((result.source, result.last_stamp_ns))
    record["first_log_time_ns"], record["last_log_time_ns"] = first, last
    record["true_label"] = record["correct"] = None
    if labels is not None and first is not None and last is not None:
        seg = labels.segment_at(first, bag_start)
        if seg is not None and seg is labels.segment_at(last, bag_start):
            record["true_label"] = seg.label
            record["correct"] = seg.label == result.label
    return record


# Writing results ---------------------------------------------------------------------------------


class ResultWriter:
    """Writes results as ``rsee_ros/msg/ActionRecognition`` to a new rosbag2 (rosbags)."""

    def __init__(self, path: str | Path, storage: str = "sqlite3",
                 topic: str = "/rsee_node/actions") -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer

        self.store = typestore_with_rsee_types()
        plugin = StoragePlugin.MCAP if storage == "mcap" else StoragePlugin.SQLITE3
        self._writer = Writer(Path(path), version=9, storage_plugin=plugin)
        self._writer.open()
        self._types = self.store.types
        self._conn = self._writer.add_connection(
            topic, "rsee_ros/msg/ActionRecognition", typestore=self.store
        )
        self.topic = topic
        self.count = 0

    def _time(self, stamp: tuple[int, int]) -> Any:
        return self._types["builtin_interfaces/msg/Time"](sec=stamp[0], nanosec=stamp[1])

    def write_label_info(self, class_names: Sequence[str], resolutions: Sequence[int],
                         stamp_ns: int, *, backbone: str, checkpoint: str,
                         topic: str = "/rsee_node/label_info") -> None:
        """The model's LabelInfo (the node publishes it latched)."""
        import numpy as np

        t = self._types
        conn = self._writer.add_connection(topic, "rsee_ros/msg/LabelInfo", typestore=self.store)
        msg = t["rsee_ros/msg/LabelInfo"](
            header=t["std_msgs/msg/Header"](stamp=self._time(split_ns(stamp_ns)), frame_id=""),
            class_names=list(class_names),
            class_ids=np.arange(len(class_names), dtype=np.int32),
            model_name="rsee",
            backbone=backbone,
            resolutions=np.asarray(resolutions, np.uint16),
            checkpoint=checkpoint,
        )
        self._writer.write(conn, stamp_ns,
                           self.store.serialize_cdr(msg, "rsee_ros/msg/LabelInfo"))

    def write(self, result: Any) -> None:
        """One result, at its header stamp (the last frame used)."""
        from rsee_ros.ros.messages import action_fields

        t = self._types
        f = action_fields(result)
        f["header"] = t["std_msgs/msg/Header"](
            stamp=self._time(f["header"]["stamp"]), frame_id=f["header"]["frame_id"]
        )
        f["window_start"] = self._time(f["window_start"])
        f["window_end"] = self._time(f["window_end"])
        msg = t["rsee_ros/msg/ActionRecognition"](**f)
        self._writer.write(self._conn, result.last_stamp_ns,
                           self.store.serialize_cdr(msg, "rsee_ros/msg/ActionRecognition"))
        self.count += 1

    def close(self) -> None:
        self._writer.close()
