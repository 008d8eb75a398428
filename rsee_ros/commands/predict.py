"""``rsee predict``: label a video, a folder of videos or frames, a rosbag or a camera.

    rsee predict SOURCE [--checkpoint C] [--topic T] [node settings] [--json OUT] [--csv OUT]
                 [--annotate OUT.mp4]

SOURCE: a video file, a folder of videos (each one a stream of its own), a folder of frames (or
one image), a rosbag2 (``--topic`` names the image topic when it has several), or a camera
device index (``0``; runs until the camera stops or Ctrl-C). The node's pipeline and settings
(``--window-size``, ``--stride``, ``--exit-threshold``, ``--min-confidence``, ... or a ROS
parameter file with ``--params``) run over the frames: one line per window, the JSON
(``{"windows": [...], "summary": {...}}``), a CSV with one row per window, and with
``--annotate`` the video with label, confidence and the chosen resolution drawn on each frame.
Exit status 0, or 2 for bad input (one line, no traceback).
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

from rsee_ros.commands.node_settings import (
    add_engine_options,
    add_node_settings,
    load_pipeline_engine,
    node_parameters,
    pipeline_settings,
)

CSV_FIELDS = ("source", "first_frame", "last_frame", "label", "class_id", "confidence",
              "frames_processed", "window_length", "exited_early", "complete", "end_reason",
              "gflops", "uniform_gflops", "resolutions")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rsee predict``."""
    parser.add_argument("source", help="video file, folder of videos or frames, rosbag2, or a "
                        "camera device index")
    parser.add_argument("--topic", default=None, help="image topic of a rosbag source")
    parser.add_argument("--checkpoint", default=None,
                        help="model checkpoint (default: --params' checkpoint, else the packaged "
                        "default model)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: batch-1 streaming gains nothing "
                        "from more)")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the windows as JSON")
    parser.add_argument("--csv", default=None, metavar="OUT", help="write the windows as CSV")
    parser.add_argument("--annotate", default=None, metavar="OUT.mp4",
                        help="write the video with the results drawn on it (one source only)")
    parser.add_argument("--max-frames", type=int, default=0,
                        help="stop each source after this many frames (0: all)")
    parser.add_argument("--quiet", action="store_true", help="print the summary only")
    add_engine_options(parser)
    add_node_settings(parser)


def _fail(message: str) -> int:
    print(f"rsee predict: {message}", file=sys.stderr)
    return 2


def _check_outputs(args: argparse.Namespace) -> str | None:
    """Why an output path cannot be written, checked before the run (None when all can)."""
    for option in ("json", "csv", "annotate"):
        value = getattr(args, option)
        if value is None:
            continue
        path = Path(value)
        if path.is_dir():
            return f"--{option} {value} is a directory"
        if not path.parent.is_dir():
            return f"--{option} {value}: folder {path.parent} does not exist"
    return None


def run(args: argparse.Namespace) -> int:
    """Label the source; print, write the outputs. Exit status 0 or 2."""
    import torch

    from rsee_ros.data.sources import SourceError
    from rsee_ros.engine.export import ExportError
    from rsee_ros.evaluation.annotate import Annotator
    from rsee_ros.evaluation.common import jsonable, write_json_report
    from rsee_ros.evaluation.predict import DEFAULT_FPS, open_sources, predict
    from rsee_ros.model import CheckpointError
    from rsee_ros.pipeline.runner import RecognitionPipeline
    from rsee_ros.resources import DEFAULT_CHECKPOINT

    torch.set_num_threads(max(1, args.threads))
    problem = _check_outputs(args)
    if problem:
        return _fail(problem)
    try:
        params = node_parameters(args.params) if args.params else {}
        settings = pipeline_settings(args, params)
        sources = open_sources(args.source, topic=args.topic)
    except (OSError, ValueError, SourceError) as exc:
        return _fail(str(exc))
    if args.annotate and len(sources) != 1:
        return _fail(f"--annotate writes one video; {args.source} holds {len(sources)} sources")
    checkpoint_path = Path(args.checkpoint or params.get("checkpoint") or DEFAULT_CHECKPOINT)
    try:
        engine = load_pipeline_engine(args, params, str(checkpoint_path), args.threads)
        pipeline = RecognitionPipeline(engine, settings=settings)
    except (CheckpointError, ExportError, RuntimeError, ValueError) as exc:
        return _fail(f"cannot load the model: {exc}")
    annotator = (Annotator(args.annotate, sources[0][1].fps or DEFAULT_FPS)
                 if args.annotate else None)
    start = time.monotonic()
    windows = []
    try:
        for window in predict(pipeline, sources, annotator=annotator, max_frames=args.max_frames):
            windows.append(window)
            if not args.quiet:
                print(_line(window), flush=True)
    except KeyboardInterrupt:
        print("rsee predict: interrupted; the windows so far are kept", file=sys.stderr)
    summary = _summary(windows, pipeline, time.monotonic() - start)
    print(_summary_line(summary))
    doc = {"source": args.source, "checkpoint": str(checkpoint_path), "engine": engine.name,
           "classes": engine.class_names, "settings": settings.to_dict(),
           "windows": [w.to_dict() for w in windows], "summary": summary}
    if args.json:
        write_json_report(args.json, jsonable(doc))
        print(f"wrote {args.json}")
    if args.csv:
        _write_csv(args.csv, doc["windows"])
        print(f"wrote {args.csv}")
    if annotator is not None:
        print(f"wrote {args.annotate} ({annotator.frames_written} frames)")
    return 0


def _line(window: Any) -> str:
    r = window.result
    res = " ".join(str(x) if x else "-" for x in r.resolutions)
    how = "exit" if r.exited_early else ("full" if r.complete else "cut ")
    saved = 1 - r.gflops / r.uniform_gflops if r.uniform_gflops else 0.0
    return (f"{Path(window.name).name} [{window.first_frame}-{window.last_frame}] {r.label} "
            f"{r.confidence:.2f}  frames {r.frames_processed}/{r.window_length} {how}  "
            f"res [{res}]  {r.gflops:.3f}/{r.uniform_gflops:.3f} GFLOPs ({saved:.0%} less)")


def _summary(windows: list[Any], pipeline: Any, seconds: float) -> dict[str, Any]:
    stats = pipeline.stats()
    n = len(windows)
    return {
        "windows": n,
        "unknown": sum(w.result.class_id < 0 for w in windows),
        "exited_early": sum(w.result.exited_early for w in windows),
        "frames": stats.frames,
        "mean_gflops": sum(w.result.gflops for w in windows) / n if n else 0.0,
        "mean_uniform_gflops": sum(w.result.uniform_gflops for w in windows) / n if n else 0.0,
        "seconds": seconds,
        "frames_per_second": stats.frames / seconds if seconds > 0 else 0.0,
    }


def _summary_line(s: dict[str, Any]) -> str:
    saved = 1 - s["mean_gflops"] / s["mean_uniform_gflops"] if s["mean_uniform_gflops"] else 0.0
    return (f"{s['windows']} windows ({s['exited_early']} exited early, {s['unknown']} unknown) "
            f"over {s['frames']} frames; {s['mean_gflops']:.3f} GFLOPs per window vs Uniform "
            f"{s['mean_uniform_gflops']:.3f} ({saved:.0%} less); {s['frames_per_second']:.1f} "
            "frames/s")


def _write_csv(path: str, windows: list[dict[str, Any]]) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        for w in windows:
            writer.writerow({**w, "resolutions": " ".join(map(str, w["resolutions"]))})
