"""``rsee eval``: accuracy, GFLOPs and speed of a checkpoint and its baselines on a data set.

    rsee eval --checkpoint model.pt --data data/synthetic [--split test] [--kind synthetic]
              [--thresholds 0.5 0.7 0.9] [--threshold 0.9] [--baselines uniform.pt ...]
              [--baseline NAME=CKPT] --json out.json --plot out.png --confusion cm.png

Prints a compact table and the per-class table of RSEE's operating point, and writes the JSON
report, the accuracy-versus-GFLOPs plot and the operating point's confusion matrix (see
``docs/benchmarks.md`` for the fields).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from rsee_ros.evaluation.common import (
    BASELINE_MODES,
    DATA_KINDS,
    DEFAULT_THRESHOLDS,
    BaselineCheckpoint,
    default_threads,
    jsonable,
    parse_threshold,
    write_json_report,
)
from rsee_ros.evaluation.formatting import Column, number, percent, table, verdict


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rsee eval``."""
    parser.add_argument("--checkpoint", required=True, help="the RSEE checkpoint to evaluate")
    parser.add_argument("--data", required=True, help="data set root")
    parser.add_argument("--kind", choices=DATA_KINDS, default=None,
                        help="data set kind (default: the checkpoint's training data kind, else "
                        "folder)")
    parser.add_argument("--split", choices=("test", "train", "all"), default="test")
    parser.add_argument("--frames", type=int, default=16, help="frames T per video (default 16)")
    parser.add_argument("--thresholds", nargs="+", default=[str(t) for t in DEFAULT_THRESHOLDS],
                        metavar="X", help="exit thresholds of the sweeps, in [0, 1] ('inf' or "
                        "'never': never exit, the same as 1; default "
                        f"{' '.join(map(str, DEFAULT_THRESHOLDS))})")
    parser.add_argument("--threshold", default=None, metavar="X",
                        help="RSEE's operating point: the threshold of the per-class table and "
                        "the confusion matrix, starred in the plot (default: the checkpoint's "
                        "calibrated operating point, else its training eval_threshold, else "
                        "0.9; run once more if not in --thresholds)")
    parser.add_argument("--baselines", nargs="+", default=[], metavar="CKPT",
                        help="separately trained baseline checkpoints (labelled by file stem)")
    parser.add_argument("--baseline", action="append", default=[], metavar="NAME=CKPT[:MODE]",
                        help="a labelled baseline checkpoint; MODE is one of "
                        f"{', '.join(BASELINE_MODES)} (default: uniform for a warm-up "
                        "checkpoint, else learned)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="NAME",
                        help="in-model baselines to leave out (e.g. random)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="data set reader option (e.g. split=2, annotations=PATH)")
    parser.add_argument("--cache-dir", default=None, help="decode the videos once into this "
                        "frame cache")
    parser.add_argument("--max-videos", type=int, default=None,
                        help="evaluate this many videos, spread over the split")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=0, help="data loader processes")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: all cores)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random policy")
    parser.add_argument("--gate", choices=["confidence", "learned"], default=None,
                        help="exit rule for every method (default: the checkpoint's)")
    parser.add_argument("--json", default=None, metavar="OUT", help="write the report here")
    parser.add_argument("--plot", default=None, metavar="PNG",
                        help="write the accuracy-versus-GFLOPs plot here")
    parser.add_argument("--confusion", default=None, metavar="PNG",
                        help="write the confusion matrix of RSEE's operating point here")
    parser.add_argument("--no-progress", action="store_true")


def parse_baselines(paths: list[str], labelled: list[str]) -> list[BaselineCheckpoint]:
    """``--baselines`` paths (named by file stem) and ``--baseline NAME=CKPT[:MODE]``."""
    out = [BaselineCheckpoint(Path(p).stem, p) for p in paths]
    for text in labelled:
        if "=" not in text:
            raise ValueError(f"--baseline {text!r} is not NAME=CKPT")
        name, path = text.split("=", 1)
        mode = None
        head, _, tail = path.rpartition(":")
        if head and tail in BASELINE_MODES:
            path, mode = head, tail
        out.append(BaselineCheckpoint(name.strip(), path, mode))
    names = [b.name for b in out]
    if len(set(names)) != len(names):
        raise ValueError(f"baseline names must be unique: {names}")
    return out


def parse_options(items: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, values parsed as YAML."""
    import yaml

    options = {}
    for text in items:
        if "=" not in text:
            raise ValueError(f"--option {text!r} is not KEY=VALUE")
        key, raw = text.split("=", 1)
        options[key.strip()] = yaml.safe_load(raw)
    return options


COLUMNS = (
    Column("method", 22, text=True), Column("thr", 5), Column("top1", 6), Column("mAP", 6),
    Column("GFLOPs", 8), Column("frames", 6), Column("exit%", 6), Column("videos/s", 9),
    Column("frames/s", 9),
)


def _row(name: str, e: dict[str, Any]) -> tuple[str, ...]:
    thr = e["threshold"]
    return (
        name, thr if isinstance(thr, str) else format(thr, ".2f"), number(e["top1"], ".2f"),
        number(e["map"], ".2f"), number(e["gflops_per_video"], ".3f"),
        number(e["frames_processed"], ".2f"), percent(e["exited_early_fraction"], ".0f"),
        number(e["videos_per_s"], ".2f"), number(e["frames_per_s"], ".1f"),
    )


def format_table(report: dict[str, Any]) -> str:
    """The compact text table of a report (one row per method and threshold), the data-set
    check and the curve comparisons."""
    rows = [("rsee", e) for e in report["rsee"]]
    for name, entries in report["baselines"].items():
        rows += [(name, e) for e in (entries if isinstance(entries, list) else [entries])]
    lines = table(COLUMNS, (_row(name, e) for name, e in rows))
    machine = report["machine"]
    lines.append(f"{report['num_videos']} videos, T={report['frames']}, {report['split']} split; "
                 f"{machine['device']}, {machine['threads']} threads, {machine['cpu']}")
    checks = report.get("data_set_checks") or {}
    if checks:
        lines.append(
            "data set check (Uniform first frame / lowest resolution lose >= 10 points): "
            f"{number(checks['uniform_first_frame_gap_points'], '.1f')} / "
            f"{number(checks['uniform_lowest_gap_points'], '.1f')} points -> "
            f"{verdict(checks['passed'])}"
        )
    for name, comparison in (report.get("curve_comparisons") or {}).items():
        up_to = comparison["ahead_up_to_top1"]
        ahead = sum(p["ahead"] for p in comparison["points"])
        lines.append(
            f"RSEE ahead of {name} (fewer GFLOPs at equal top-1) at {ahead}/"
            f"{len(comparison['points'])} thresholds"
            + ("" if up_to is None else f", at every one up to {up_to:.2f}% top-1")
        )
    return "\n".join(lines)


def format_actions(report: dict[str, Any]) -> str:
    """RSEE's actions at every threshold: the share of looked-at frames that went to each
    resolution and each skip length (from ``action_histogram``)."""
    entries = [e for e in report["rsee"] if e.get("action_histogram")]
    if not entries:
        return "no action table: RSEE was not run"
    names = list(entries[0]["action_histogram"])
    columns = (Column("thr", 5), Column("frames", 6),
               *(Column(f"{name}%", max(len(name) + 1, 6)) for name in names))
    rows = []
    for e in entries:
        hist = e["action_histogram"]
        looked = sum(hist.values())
        thr = e["threshold"]
        rows.append((thr if isinstance(thr, str) else format(thr, ".2f"),
                     number(e["frames_processed"], ".2f"),
                     *(percent(hist[n] / looked if looked else None, ".1f") for n in names)))
    return "\n".join(["RSEE actions (share of looked-at frames) per threshold:",
                      *table(columns, rows)])


PER_CLASS_COLUMNS = (
    Column("class", 24, text=True), Column("videos", 6), Column("top1", 6), Column("frames", 6),
    Column("GFLOPs", 8),
)


def format_per_class(report: dict[str, Any], entry: dict[str, Any] | None) -> str:
    """The per-class table of RSEE's operating point ``entry`` (and a line saying which)."""
    threshold = report["operating_point"]["threshold"]
    if entry is None:
        return f"no per-class table: RSEE was not run (operating point {threshold})"
    rows = [
        (name[:24], str(c["videos"]), number(c["top1"], ".2f"),
         number(c["frames_processed"], ".2f"), number(c["gflops_per_video"], ".3f"))
        for name, c in entry["per_class"].items()
    ]
    lines = [f"RSEE per class at its operating point (threshold {threshold}): "
             f"top-1 {number(entry['top1'], '.2f')}%, ECE {number(entry['ece'], '.2f')}%"]
    return "\n".join(lines + table(PER_CLASS_COLUMNS, rows))


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write the JSON and the plot."""
    import torch
    from tqdm import tqdm

    from rsee_ros.evaluation.evaluate import evaluate, operating_entry
    from rsee_ros.evaluation.plot import plot_accuracy_vs_gflops, plot_confusion_matrix
    from rsee_ros.model import CheckpointError

    torch.set_num_threads(args.threads or default_threads())
    try:
        baselines = parse_baselines(args.baselines, args.baseline)
        options = parse_options(args.option)
        if args.threshold is not None:
            parse_threshold(args.threshold)
        if args.confusion and "rsee" in args.exclude:
            raise ValueError("--confusion draws RSEE's operating point: do not exclude rsee")
    except ValueError as error:
        print(f"rsee eval: {error}", file=sys.stderr)
        return 2

    def wrap(batches):
        return tqdm(batches, desc="eval batches", unit="batch", disable=args.no_progress)

    try:
        report = evaluate(
            args.checkpoint, args.data, kind=args.kind, split=args.split, frames=args.frames,
            thresholds=args.thresholds, baselines=baselines, exclude=args.exclude,
            device=args.device, batch_size=args.batch_size, workers=args.workers,
            max_videos=args.max_videos, seed=args.seed, options=options,
            cache_dir=args.cache_dir, wrap=wrap, progress=not args.no_progress,
            gate=args.gate, operating_threshold=args.threshold,
        )
    except (CheckpointError, FileNotFoundError, ValueError) as error:
        print(f"rsee eval: {error}", file=sys.stderr)
        return 2
    report = jsonable(report)
    print(format_table(report))
    print(format_actions(report))
    entry = operating_entry(report)
    print(format_per_class(report, entry))
    if args.json:
        write_json_report(args.json, report)
        print(f"wrote {args.json}")
    if args.plot:
        plot_accuracy_vs_gflops(report, args.plot)
        print(f"wrote {args.plot}")
    if args.confusion and entry is not None:
        title = f"RSEE, threshold {report['operating_point']['threshold']}"
        plot_confusion_matrix(entry["videos"], report["classes"], args.confusion, title=title)
        print(f"wrote {args.confusion}")
    return 0
