"""``rsee eval-bag``: run the node's recognition on a rosbag2 recording, without ROS.

    rsee eval-bag BAG --topic /camera/image_raw --json out.json [--labels labels.yaml]
                  [--checkpoint model.pt] [--params config/rsee.yaml] [--write-bag OUT]

The command: options, the node's settings (defaults, then the ``rsee_node`` entries of a
parameter file, ``--params``, then the options given here), the printed summary, the JSON and
the exit status (0, or 2 for bad input). The engine, replay, frame accounting and scoring, is
:mod:`rsee_ros.evaluation.bag_eval`.

``--labels`` takes the bag label format of :mod:`rsee_ros.data.bag` (labelled time segments,
YAML or CSV; looked up beside the bag when not given). ``--write-bag OUT`` writes the results as
``rsee_ros/msg/ActionRecognition`` on ``--output-topic`` (default ``/rsee_node/actions``), plus
the model's ``LabelInfo`` on ``/rsee_node/label_info``, so ``ros2 bag play`` replays them.

Bad input is one line on stderr naming the file and what is wrong, and exit status 2, found
before the run where it can be: the bag, the label file, the model, the output topic and the
``--json`` / ``--write-bag`` destinations (an existing ``--write-bag`` folder is never
overwritten). Of an interrupted recording, what can be read is evaluated, with one warning line
saying how much could not (also in the JSON as ``unreadable``). The JSON is strict: a
non-finite number (NaN or infinity, say from a model with NaN weights) is written as ``null``,
counted in ``non_finite_as_null`` and warned about.

One module for the whole command (options, checks, run, output; the engine is elsewhere),
hence a little over 400 lines.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsee_ros.commands.node_settings import (
    add_engine_options,
    add_node_settings,
    load_pipeline_engine,
    node_parameters,
    pipeline_settings,
)

log = logging.getLogger(__name__)

LABEL_INFO_TOPIC = "/rsee_node/label_info"
TOPIC_MAX_LENGTH = 255 - 8  # rmw's RMW_TOPIC_MAX_NAME_LENGTH: DDS limit less its prefixes


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
    add_engine_options(parser)
    parser.add_argument("--threads", type=int, default=None, metavar="N",
                        help="torch CPU threads (default: --params' num_threads, else 1: "
                        "batch-1 streaming gains nothing from more, and on a busy 2-core "
                        "machine torch's default made eval-bag 16x slower with identical "
                        "results); 0: torch's default")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the results here")
    parser.add_argument("--labels", default=None,
                        help="bag label file (YAML/CSV, see rsee_ros.data.bag; default: "
                        "labels.yaml|csv in the bag folder or <bag>.labels.yaml beside it)")
    parser.add_argument("--no-labels", action="store_true", help="do not look for a label file")
    parser.add_argument("--write-bag", default=None, metavar="OUT",
                        help="write the ActionRecognition results to a new bag (a folder "
                        "that must not exist yet)")
    parser.add_argument("--write-storage", choices=("sqlite3", "mcap"), default="sqlite3",
                        help="storage of --write-bag (default: sqlite3)")
    parser.add_argument("--output-topic", default="/rsee_node/actions",
                        help="topic of the results in --write-bag (a fully qualified ROS 2 "
                        "topic name)")
    add_node_settings(parser)
    group = parser.add_argument_group("input")
    group.add_argument("--max-input-pixels", type=int, metavar="PX",
                       help="largest image (width x height) accepted, as the node's "
                       "max_input_pixels (default: --params', else 16777216 = 4096x4096); larger "
                       "images and ones whose sides differ more than 10x are rejected before "
                       "decoding")
    parser.add_argument("--quiet", action="store_true", help="print the summary only")


# Checks before the run ---------------------------------------------------------------------------


class InputError(Exception):
    """Bad input, said in one line (exit status 2)."""


def topic_name_problem(name: str) -> str | None:
    """What makes ``name`` no fully qualified ROS 2 topic name (None: it is one).

    The rules of rmw's ``rmw_validate_full_topic_name`` (design.ros2.org, "Topic and Service
    names"); a bag holds expanded names, so ``~`` and ``{}`` substitutions are refused too.
    rclpy has this validator, but eval-bag needs no ROS (rosbags reads and writes the bags):
    rclpy may not be installed, and importing it for this check would make it a dependency.
    """
    if not name:
        return "it is empty"
    bad = re.search(r"[^A-Za-z0-9_/]", name)
    if bad:
        return (f"{bad.group()!r} at index {bad.start()}: only letters, digits, '_' and '/' are "
                "allowed")
    if not name.startswith("/"):
        return f"it must be absolute, starting with '/' (say '/{name}')"
    if name.endswith("/"):
        return "it must not end with '/'"
    if "//" in name:
        return "it must not contain '//'"
    if any(token[:1].isdigit() for token in name.split("/")):
        return "no part of it may start with a digit"
    if len(name) > TOPIC_MAX_LENGTH:
        return f"it is {len(name)} characters long, more than {TOPIC_MAX_LENGTH}"
    return None


def _check_writable(path: Path, option: str) -> None:
    """InputError unless ``path`` (a new or existing file or folder) can be created: its
    nearest existing folder is a folder where a file can be written."""
    folder = next(p for p in (path.absolute().parent, *path.absolute().parents) if p.exists())
    if not folder.is_dir():
        raise InputError(f"{option} {path}: {folder} is not a folder")
    try:
        tempfile.TemporaryFile(dir=folder).close()
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot write in {folder}: "
                         f"{exc.strerror or exc}") from None


def check_outputs(args: argparse.Namespace) -> None:
    """Refuse, before the run, an output topic that is no ROS 2 topic name and outputs that
    could not be written (InputError)."""
    problem = topic_name_problem(args.output_topic)
    if problem:
        raise InputError(f"--output-topic {args.output_topic!r} is not a ROS 2 topic name: "
                         f"{problem}")
    if args.output_topic == LABEL_INFO_TOPIC:
        raise InputError(f"--output-topic {LABEL_INFO_TOPIC} is the LabelInfo topic of "
                         "--write-bag; choose another")
    if args.write_bag:
        out = Path(args.write_bag)
        if out.exists() or out.is_symlink():
            raise InputError(f"--write-bag {out} exists already (not overwritten): name a new "
                             "folder")
        _check_writable(out, "--write-bag")
    if args.json:
        out = Path(args.json)
        if out.is_dir():
            raise InputError(f"--json {out} is a directory: name a file")
        if out.exists() and not os.access(out, os.W_OK):
            raise InputError(f"--json {out} exists and is not writable")
        _check_writable(out, "--json")


def strict_json(value: Any, where: str = "", found: list[str] | None = None) -> Any:
    """``value`` with every non-finite float (NaN, infinity: not JSON) replaced by None; the
    places replaced are appended to ``found`` (``windows[0].confidence``)."""
    if isinstance(value, float) and not math.isfinite(value):
        if found is not None:
            found.append(where)
        return None
    if isinstance(value, dict):
        return {k: strict_json(v, f"{where}.{k}" if where else str(k), found)
                for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [strict_json(v, f"{where}[{i}]", found) for i, v in enumerate(value)]
    return value


# Command -----------------------------------------------------------------------------------------


@dataclass
class _Inputs:
    """What the run needs, read and checked."""

    bag: Path
    params: dict[str, Any]
    settings: Any
    label_file: Path | None
    labels: Any
    threads: int
    max_pixels: int


def _setting(given: int | None, params: dict[str, Any], key: str, default: int, low: int,
             option: str) -> int:
    """An integer option: given, else the parameter file's ``key``, else ``default``; >= low."""
    value = given if given is not None else params.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InputError(f"{option} must be an integer >= {low}, got {value!r}")
    return value


def _read_inputs(args: argparse.Namespace) -> _Inputs:
    """The parameter file, settings and label file, checked (InputError)."""
    from rsee_ros.data.bag import find_label_file, load_bag_labels
    from rsee_ros.data.image_conversion import DEFAULT_MAX_PIXELS

    bag = Path(args.bag)
    if not bag.exists():
        raise InputError(f"{bag} does not exist")
    try:
        params = node_parameters(args.params) if args.params else {}
        settings = pipeline_settings(args, params)
        label_file = None if args.no_labels else (args.labels or find_label_file(bag))
        labels = load_bag_labels(label_file) if label_file else None
    except (OSError, ValueError) as exc:
        raise InputError(str(exc)) from None
    threads = _setting(args.threads, params, "num_threads", 1, 0, "--threads")
    max_pixels = _setting(args.max_input_pixels, params, "max_input_pixels", DEFAULT_MAX_PIXELS,
                          1, "--max-input-pixels")
    return _Inputs(bag, params, settings, Path(label_file) if label_file else None, labels,
                   threads, max_pixels)


def run(args: argparse.Namespace) -> int:
    """Evaluate the bag, print a summary, write the JSON / bag; 2 for bad input (one line on
    stderr)."""
    logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO,
                        format="%(levelname)s: %(message)s")
    try:
        inputs = _read_inputs(args)
        check_outputs(args)
        return _run(args, inputs)
    except InputError as exc:
        print(f"rsee eval-bag: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace, inputs: _Inputs) -> int:
    """Open the bag, load the model, evaluate, report (InputError for bad input)."""
    import torch

    from rsee_ros.data.bag import Bag, BagError
    from rsee_ros.evaluation.bag_eval import evaluate_bag

    if inputs.threads:
        torch.set_num_threads(inputs.threads)
    try:
        recording = Bag(inputs.bag, max_pixels=inputs.max_pixels, partial=True)
    except BagError as exc:
        raise InputError(str(exc)) from None
    with recording:
        topics = args.topic or [t for t in inputs.params.get("image_topics") or [] if t] or None
        if inputs.labels is not None and inputs.labels.topic and not topics:
            topics = [inputs.labels.topic]
        try:
            topics = recording.choose_topics(topics)
        except BagError as exc:
            raise InputError(str(exc)) from None
        checkpoint, checkpoint_path, pipeline = _load_model(args, inputs)
        writer = None
        try:
            if args.write_bag:
                writer = _result_writer(args)
                writer.write_label_info(
                    checkpoint.class_names, checkpoint.config.resolutions, recording.start_ns,
                    backbone=checkpoint.config.backbone, checkpoint=str(checkpoint_path),
                )
            result = evaluate_bag(recording, pipeline, topics, inputs.labels, writer)
        except (OSError, ValueError) as exc:
            raise InputError(str(exc)) from None
        finally:
            if writer is not None:
                writer.close()
    _report(args, inputs, result, checkpoint, checkpoint_path)
    if writer is not None:
        print(f"wrote {writer.count} ActionRecognition messages on {writer.topic} to "
              f"{args.write_bag}")
    return 0


def _result_writer(args: argparse.Namespace) -> Any:
    """The ResultWriter of ``--write-bag`` (InputError when rosbags cannot create it)."""
    from rosbags.rosbag2 import WriterError

    from rsee_ros.evaluation.bag_eval import ResultWriter

    try:
        return ResultWriter(args.write_bag, args.write_storage, args.output_topic)
    except WriterError as exc:
        raise InputError(f"--write-bag {args.write_bag}: {exc}") from None


def _load_model(args: argparse.Namespace, inputs: _Inputs) -> tuple[Any, Path, Any]:
    """``(engine, checkpoint path, pipeline)``; InputError when the model cannot be loaded."""
    from rsee_ros.engine.export import ExportError
    from rsee_ros.model import CheckpointError
    from rsee_ros.pipeline.runner import RecognitionPipeline
    from rsee_ros.resources import DEFAULT_CHECKPOINT

    params = inputs.params
    checkpoint_path = Path(args.checkpoint or params.get("checkpoint") or DEFAULT_CHECKPOINT)
    try:
        checkpoint = load_pipeline_engine(args, params, str(checkpoint_path),
                                          max(1, inputs.threads))
        pipeline = RecognitionPipeline(checkpoint, settings=inputs.settings)
    except (CheckpointError, ExportError, RuntimeError, ValueError) as exc:
        raise InputError(f"cannot load the model: {exc}") from None
    labels = inputs.labels
    unknown = sorted({s.label for s in labels.segments} - set(checkpoint.class_names)) \
        if labels else []
    if unknown:
        log.warning("labels %s are not classes of the model: those windows count as wrong", unknown)
    return checkpoint, checkpoint_path, pipeline


def _report(args: argparse.Namespace, inputs: _Inputs, result: Any, checkpoint: Any,
            checkpoint_path: Path) -> None:
    """Print the windows and the summary; write the JSON (InputError when it cannot be)."""
    summary = result.summary()
    if not args.quiet:
        _print_windows(result.windows)
    _print_summary(summary, result.frames)
    if not args.json:
        return
    doc = {
        "bag": str(inputs.bag),
        "topics": list(result.frames),
        "checkpoint": str(checkpoint_path),
        "classes": checkpoint.class_names,
        "settings": inputs.settings.to_dict(),
        "labels": str(inputs.label_file) if inputs.label_file else None,
        "summary": summary,
        "frames": result.frames,
        "windows": result.windows,
    }
    if result.unreadable:
        doc["unreadable"] = result.unreadable
    replaced: list[str] = []
    doc = strict_json(doc, found=replaced)
    if replaced:
        doc["non_finite_as_null"] = len(replaced)
        log.warning("%d non-finite numbers (NaN or infinity) in the results, written to the JSON "
                    "as null (first: %s)", len(replaced), replaced[0])
    try:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(doc, indent=1, allow_nan=False))
    except OSError as exc:
        raise InputError(f"--json {args.json}: cannot write it: {exc.strerror or exc}") from None
    print(f"wrote {args.json}")


def _print_windows(windows: list[dict[str, Any]]) -> None:
    for w in windows:
        truth = "" if w["true_label"] is None else f"  true {w['true_label']}" + (
            " ok" if w["correct"] else " WRONG")
        print(f"{w['source']} [{w['first_stamp']:.3f}-{w['last_stamp']:.3f}] {w['label']:<16}"
              f" {w['confidence']:.2f} res {w['resolutions']} {w['frames_processed']}/"
              f"{w['window_length']}{' exit' if w['exited_early'] else ''}"
              f"{'' if w['complete'] else ' (' + w['end_reason'] + ')'}{truth}")


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
