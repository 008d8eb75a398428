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
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

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
                        help="bag label file (YAML/CSV, see rsee_ros.data.bag; default: "
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


# Command -----------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """Evaluate the bag, print a summary, write the JSON / bag.

    One pass through the command's steps (settings and labels, model, evaluation, output), each
    reporting bad input on one line with exit status 2; hence its length.
    """
    from rsee_ros.data.bag import Bag, find_label_file, load_bag_labels
    from rsee_ros.evaluation.bag_eval import ResultWriter, evaluate_bag
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
            with Bag(bag) as recording:
                start_ns = recording.start_ns
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
        _print_windows(result.windows)
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
