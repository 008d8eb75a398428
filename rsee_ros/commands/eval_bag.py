"""``rsee eval-bag``: run the node's recognition on a rosbag2 recording, without ROS.

    rsee eval-bag BAG --topic /camera/image_raw --json out.json [--labels labels.yaml]
                  [--checkpoint model.pt] [--params config/rsee.yaml] [--write-bag OUT]

The bag (sqlite3 or mcap, read with ``rosbags``) is replayed in recording order through the same
:class:`~rsee_ros.pipeline.runner.RecognitionPipeline` the node uses, with the node's settings:
defaults, then the ``rsee_node`` entries of a parameter file (``--params``), then the options
given here. Frame stamps are the header stamps (the recording time when a stamp is zero, as the
node uses its arrival time). Windows still open at the end of the bag are ended as
``end_of_stream`` (reported if they processed a frame).

Every image message is accounted for: ``frames`` in the JSON counts, per topic, the messages that
went through the backbone (``processed``), were fed but skipped by the selector (``skipped``),
came after every window holding them had exited (``after_exit``), were dropped by ``frame_step``
(``not_kept``) or fell between windows (``between_windows``), and the ``rejected`` ones by
reason (unsupported encoding, size mismatch, empty, decode or deserialisation failure).

``--labels`` takes the bag label format of :mod:`rsee_ros.data.rosbag` (labelled time segments,
YAML or CSV; looked up beside the bag when not given). A window is scored against the segment
that holds its first frame if that segment also holds the last frame it used (by recording
time); windows across a segment boundary or outside every segment are reported unscored.

``--write-bag OUT`` writes the results as ``rsee_ros/msg/ActionRecognition`` on
``--output-topic`` (default ``/rsee_node/actions``), plus the model's ``LabelInfo`` on
``/rsee_node/label_info``, stamped at the frames' stamps, so ``ros2 bag play`` replays them
(the custom types are registered from the package's ``msg/`` definitions).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IMAGE = "sensor_msgs/msg/Image"
COMPRESSED = "sensor_msgs/msg/CompressedImage"
DESERIALIZE_FAILED = "deserialize_failed"
MSG_TYPES = ("ActionRecognition", "ActionRecognitionArray", "LabelInfo", "RseeStatus")
NODE_PARAMS = (
    "window_size", "stride", "frame_step", "max_gap_s", "exit_threshold", "max_resolution",
    "allowed_resolutions", "skip_enabled", "top_k",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rsee eval-bag``."""
    parser.add_argument("bag", help="rosbag2 folder (or its .db3 / .mcap file)")
    parser.add_argument(
        "--topic", action="append", default=None, metavar="TOPIC",
        help="image topic (repeat for several cameras; default: the node's image_topics from "
        "--params, else the bag's only image topic)",
    )
    parser.add_argument("--checkpoint", default=None,
                        help="model checkpoint (default: --params' checkpoint, else the "
                        "packaged default model)")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the results here")
    parser.add_argument("--labels", default=None,
                        help="bag label file (YAML/CSV, see rsee_ros.data.rosbag; default: "
                        "labels.yaml|csv in the bag folder or <bag>.labels.yaml beside it)")
    parser.add_argument("--no-labels", action="store_true", help="do not look for a label file")
    parser.add_argument("--write-bag", default=None, metavar="OUT",
                        help="write the ActionRecognition results to a new bag")
    parser.add_argument("--write-storage", choices=("sqlite3", "mcap"), default="sqlite3",
                        help="storage of --write-bag (default: sqlite3)")
    parser.add_argument("--output-topic", default="/rsee_node/actions",
                        help="topic of the results in --write-bag")
    parser.add_argument("--params", default=None, metavar="YAML",
                        help="ROS parameter file: use its rsee_node settings (e.g. "
                        "config/rsee.yaml)")
    group = parser.add_argument_group("node settings (override --params)")
    group.add_argument("--window-size", type=int)
    group.add_argument("--stride", type=int)
    group.add_argument("--frame-step", type=int)
    group.add_argument("--max-gap-s", type=float)
    group.add_argument("--exit-threshold", type=float)
    group.add_argument("--max-resolution", type=int)
    group.add_argument("--allowed-resolutions", type=int, nargs="+", metavar="PX")
    group.add_argument("--skip-enabled", choices=("true", "false"))
    group.add_argument("--top-k", type=int)
    parser.add_argument("--quiet", action="store_true", help="print the summary only")


# Parameter files --------------------------------------------------------------------------------


def node_parameters(path: str | Path, node_name: str = "rsee_node") -> dict[str, Any]:
    """The ``ros__parameters`` that apply to ``node_name`` in a ROS 2 parameter file (entries
    ``/**``, ``node``, ``/node``, ``/ns/node`` and ``/**/node``; later entries win)."""
    import yaml

    doc = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a ROS 2 parameter file")
    out: dict[str, Any] = {}
    for key, entry in doc.items():
        name = str(key)
        if name == "/**" or name.rstrip("/").split("/")[-1] == node_name:
            params = (entry or {}).get("ros__parameters") if isinstance(entry, dict) else None
            if isinstance(params, dict):
                out.update(params)
    return out


def pipeline_settings(args: argparse.Namespace, params: dict[str, Any]) -> Any:
    """:class:`PipelineSettings` from the defaults, ``params`` (a node's parameters), then the
    command-line options."""
    from rsee_ros.pipeline.runner import PipelineSettings

    known = {f.name for f in fields(PipelineSettings)}
    values: dict[str, Any] = {k: v for k, v in params.items() if k in NODE_PARAMS and k in known}
    for name in NODE_PARAMS:
        given = getattr(args, name, None)
        if given is not None:
            values[name] = given
    if isinstance(values.get("skip_enabled"), str):
        values["skip_enabled"] = values["skip_enabled"] == "true"
    if "allowed_resolutions" in values:
        values["allowed_resolutions"] = tuple(values["allowed_resolutions"] or ())
    return PipelineSettings(**values)


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


def _open_reader(bag: Path) -> Any:
    from rosbags.highlevel import AnyReader
    from rosbags.typesys import Stores, get_typestore

    if bag.is_file() and (bag.parent / "metadata.yaml").is_file():
        bag = bag.parent
    reader = AnyReader([bag], default_typestore=get_typestore(Stores.LATEST))
    reader.open()
    return reader


def evaluate_bag(
    bag: str | Path,
    pipeline: Any,
    topics: Sequence[str] | None = None,
    labels: Any = None,
    writer: Any = None,
) -> BagEvaluation:
    """Replay the image ``topics`` of ``bag`` through ``pipeline`` (a RecognitionPipeline).

    ``labels``: a :class:`rsee_ros.data.rosbag.BagLabels` to score windows; ``writer``: a
    :class:`ResultWriter` receiving every result.
    """
    from rsee_ros.data.image_conversion import ImageConversionError, compressed_to_rgb, image_to_rgb
    from rsee_ros.pipeline.runner import FRAME_OUTCOMES

    out = BagEvaluation()
    reader = _open_reader(Path(bag))
    try:
        images = {
            c.topic: c.msgtype for c in reader.connections if c.msgtype in (IMAGE, COMPRESSED)
        }
        if not topics:
            if len(images) != 1:
                raise ValueError(f"{bag}: name the image topic (--topic); the bag has "
                                 f"{sorted(images) or 'no image topic'}")
            topics = list(images)
        missing = [t for t in topics if t not in images]
        if missing:
            raise ValueError(f"{bag}: no image topic {missing}; image topics: {sorted(images)}")
        connections = [c for c in reader.connections if c.topic in topics]
        bag_start = int(reader.start_time)
        for topic in topics:
            out.frames[topic] = {"total": 0, **dict.fromkeys(FRAME_OUTCOMES, 0), "rejected": {}}
        log_times: dict[tuple[str, int], int] = {}
        start = time.perf_counter()

        def keep(results: list[Any]) -> None:
            for r in results:
                out.windows.append(_window_record(r, log_times, labels, bag_start))
                if writer is not None:
                    writer.write(r)

        for conn, log_ns, raw in reader.messages(connections=connections):
            counts = out.frames[conn.topic]
            counts["total"] += 1
            try:
                msg = reader.deserialize(raw, conn.msgtype)
            except Exception as exc:  # noqa: BLE001 - rosbags raises various types on junk
                _reject(counts, DESERIALIZE_FAILED, conn.topic, exc)
                continue
            try:
                rgb = compressed_to_rgb(msg) if conn.msgtype == COMPRESSED else image_to_rgb(msg)
            except ImageConversionError as exc:
                _reject(counts, exc.reason, conn.topic, exc)
                continue
            stamp_ns = int(msg.header.stamp.sec) * 10**9 + int(msg.header.stamp.nanosec)
            stamp_ns = stamp_ns or int(log_ns)
            log_times[(conn.topic, stamp_ns)] = int(log_ns)
            report = pipeline.process(
                conn.topic, stamp_ns * 1e-9, rgb, stamp_ns=stamp_ns, frame_id=msg.header.frame_id
            )
            counts[report.outcome] += 1
            keep(report.results)
        keep(pipeline.flush())
        out.seconds = time.perf_counter() - start
    finally:
        reader.close()
    return out


def _reject(counts: dict[str, Any], reason: str, topic: str, exc: Exception) -> None:
    counts["rejected"][reason] = counts["rejected"].get(reason, 0) + 1
    if counts["rejected"][reason] == 1:
        log.warning("%s: rejected image (%s): %s", topic, reason, exc)


def _segment_at(labels: Any, t_ns: int, bag_start: int) -> Any:
    offset = 0 if labels.absolute else bag_start
    for seg in labels.segments:
        lo = -float("inf") if seg.start is None else offset + seg.start * 1e9
        hi = float("inf") if seg.end is None else offset + seg.end * 1e9
        if lo <= t_ns < hi:
            return seg
    return None


def _window_record(
    result: Any, log_times: dict[tuple[str, int], int], labels: Any, bag_start: int
) -> dict[str, Any]:
    record = result.to_dict()
    first = log_times.get((result.source, result.first_stamp_ns))
    last = log_times.get((result.source, result.last_stamp_ns))
    record["first_log_time_ns"], record["last_log_time_ns"] = first, last
    record["true_label"] = record["correct"] = None
    if labels is not None and first is not None and last is not None:
        seg = _segment_at(labels, first, bag_start)
        if seg is not None and seg is _segment_at(labels, last, bag_start):
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

        from rsee_ros.ros.messages import split_ns

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


# Command -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Evaluate the bag, print a summary, write the JSON / bag."""
    from rsee_ros.data.bag import find_label_file, load_bag_labels
    from rsee_ros.model import CheckpointError, load_checkpoint, resolve_device
    from rsee_ros.pipeline.runner import RecognitionPipeline
    from rsee_ros.resources import DEFAULT_CHECKPOINT

    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s: %(message)s")
    bag = Path(args.bag)
    if not bag.exists():
        print(f"rsee eval-bag: {bag} does not exist", file=sys.stderr)
        return 2
    try:
        params = node_parameters(args.params) if args.params else {}
        settings = pipeline_settings(args, params)
        label_file = None if args.no_labels else (args.labels or find_label_file(bag))
        labels = load_bag_labels(label_file) if label_file else None
    except (OSError, ValueError) as exc:
        print(f"rsee eval-bag: {exc}", file=sys.stderr)
        return 2
    checkpoint_path = Path(args.checkpoint or params.get("checkpoint") or DEFAULT_CHECKPOINT)
    try:
        device = resolve_device(args.device or params.get("device") or "cpu")
        checkpoint = load_checkpoint(checkpoint_path, device=device)
        pipeline = RecognitionPipeline(checkpoint.model, checkpoint.class_names, settings)
    except (CheckpointError, RuntimeError, ValueError) as exc:
        print(f"rsee eval-bag: cannot load the model: {exc}", file=sys.stderr)
        return 2
    topics = args.topic or [t for t in params.get("image_topics") or [] if t] or None
    if labels is not None and labels.topic and not topics:
        topics = [labels.topic]
    unknown = sorted({s.label for s in labels.segments} - set(checkpoint.class_names)) \
        if labels else []
    if unknown:
        log.warning("labels %s are not classes of the model: those windows count as wrong", unknown)
    writer = None
    try:
        if args.write_bag:
            writer = ResultWriter(args.write_bag, args.write_storage, args.output_topic)
            reader = _open_reader(bag)
            start_ns = int(reader.start_time)
            reader.close()
            writer.write_label_info(
                checkpoint.class_names, checkpoint.config.resolutions, start_ns,
                backbone=checkpoint.config.backbone, checkpoint=str(checkpoint_path),
            )
        result = evaluate_bag(bag, pipeline, topics, labels, writer)
    except (OSError, ValueError) as exc:
        print(f"rsee eval-bag: {exc}", file=sys.stderr)
        return 2
    finally:
        if writer is not None:
            writer.close()
    summary = result.summary()
    if not args.quiet:
        for w in result.windows:
            truth = "" if w["true_label"] is None else f"  true {w['true_label']}" + (
                " ok" if w["correct"] else " WRONG")
            print(f"{w['source']} [{w['first_stamp']:.3f}-{w['last_stamp']:.3f}] {w['label']:<16}"
                  f" {w['confidence']:.2f} res {w['resolutions']} {w['frames_processed']}/"
                  f"{w['window_length']}{' exit' if w['exited_early'] else ''}"
                  f"{'' if w['complete'] else ' (' + w['end_reason'] + ')'}{truth}")
    _print_summary(summary, result.frames)
    if args.json:
        doc = {
            "bag": str(bag),
            "topics": list(result.frames),
            "checkpoint": str(checkpoint_path),
            "classes": checkpoint.class_names,
            "settings": settings.to_dict(),
            "labels": str(label_file) if label_file else None,
            "summary": summary,
            "frames": result.frames,
            "windows": result.windows,
        }
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1))
        print(f"wrote {args.json}")
    if writer is not None:
        print(f"wrote {writer.count} ActionRecognition messages on {writer.topic} to "
              f"{args.write_bag}")
    return 0


def _print_summary(summary: dict[str, Any], frames: dict[str, dict[str, Any]]) -> None:
    for topic, counts in frames.items():
        rejected = Counter(counts["rejected"])
        parts = [f"{k} {counts[k]}" for k in counts if k not in ("total", "rejected") and counts[k]]
        parts += [f"rejected {k} {n}" for k, n in sorted(rejected.items())]
        print(f"{topic}: {counts['total']} images: " + ", ".join(parts))
    accuracy = summary["accuracy"]
    acc = "n/a (no labels)" if accuracy is None else (
        f"{accuracy:.3f} over {summary['scored_windows']} labelled windows")
    uniform = summary["mean_uniform_gflops"]
    saving = f" ({1 - summary['mean_gflops'] / uniform:.0%} less)" if uniform else ""
    fps = summary["frames_per_second"]
    print(f"{summary['windows']} windows ({summary['exited_early']} exited early, "
          f"{summary['incomplete']} incomplete); accuracy {acc}; "
          f"{summary['mean_gflops']:.3f} GFLOPs per window vs Uniform {uniform:.3f}{saving}; "
          f"{'n/a' if fps is None else f'{fps:.1f}'} frames/s")
