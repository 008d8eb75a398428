"""``rsee bench``: RSEE against Uniform, Resolution-only and Exit-only in one run.

    rsee bench --checkpoint model.pt --data data/synthetic --json bench.json
               [--threshold 0.9] [--max-videos 100] [--warmup 2] [--threads N]

Same weights, same machine, frames fed one at a time as the node does (plus the batched offline
figures); prints the figures, the ratios against Uniform and PASS/MISS for each target.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rsee_ros.evaluation.common import DATA_KINDS, default_threads, jsonable, write_json_report
from rsee_ros.evaluation.formatting import Column, number, percent, table, target_line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Register the options of ``rsee bench``."""
    parser.add_argument("--checkpoint", required=True, help="the RSEE checkpoint")
    parser.add_argument("--data", required=True, help="data set root")
    parser.add_argument("--kind", choices=DATA_KINDS, default=None,
                        help="data set kind (default: the checkpoint's training data kind, else "
                        "folder)")
    parser.add_argument("--split", choices=("test", "train", "all"), default="test")
    parser.add_argument("--frames", type=int, default=16, help="frames T per video (default 16)")
    parser.add_argument("--threshold", default=None,
                        help="exit threshold of RSEE and Exit-only, in [0, 1] ('inf' or 'never': "
                        "never exit; default: the checkpoint's training eval_threshold, else 0.9)")
    parser.add_argument("--max-videos", type=int, default=None,
                        help="benchmark this many videos, spread over the split (default all)")
    parser.add_argument("--warmup", type=int, default=2,
                        help="untimed warm-up videos per method (default 2)")
    parser.add_argument("--passes", type=int, default=1,
                        help="timed passes over the videos (default 1)")
    parser.add_argument("--batch-size", type=int, default=8, help="batch of the batched figures")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: all cores)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default cpu)")
    parser.add_argument("--engines", nargs="+", default=["torch"], metavar="ENGINE",
                        choices=("torch", "torch-fused", "onnxruntime", "tensorrt"),
                        help="streaming engines, measured in one interleaved run (default: "
                        "torch); e.g. --engines torch torch-fused onnxruntime")
    parser.add_argument("--compare", default=None, metavar="CHECKPOINT",
                        help="another checkpoint (same input size) whose Uniform and RSEE run "
                        "in the same rotation: compare_uniform, compare_rsee and the step-cost "
                        "ratios per engine (e.g. a model with and without a temporal part)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="data set reader option (e.g. split=2)")
    parser.add_argument("--cache-dir", default=None, help="frame cache folder")
    parser.add_argument("--json", required=True, metavar="OUT", help="write the report here")
    parser.add_argument("--no-progress", action="store_true")


COLUMNS = (
    Column("method", 16, text=True), Column("mode", 9, text=True), Column("top1", 6),
    Column("GFLOPs", 8), Column("frames", 6), Column("videos/s", 9), Column("frames/s", 9),
    Column("ms/video", 9),
)


def format_report(report: dict[str, Any]) -> str:
    """The figures, ratios and targets as text."""
    rows = [
        (name, mode, number(e["top1"], ".2f"), number(e["gflops_per_video"], ".3f"),
         number(e.get("frames_processed"), ".2f"), number(e["videos_per_s"], ".2f"),
         number(e["frames_per_s"], ".1f"), number(e.get("latency_ms_mean"), ".1f"))
        for mode in ("streaming", "batched") for name, e in report[mode].items()
    ]
    lines = table(COLUMNS, rows)
    for name, r in report["ratios"].items():
        lines.append(
            f"{name} vs uniform: GFLOPs reduction "
            f"{percent(r['gflops_reduction_vs_uniform'], '.1f')}%, "
            f"throughput x{number(r['throughput_ratio_vs_uniform'], '.2f')} "
            f"(batched x{number(r['batched_throughput_ratio_vs_uniform'], '.2f')}), "
            f"top-1 {number(r['accuracy_delta_points'], '+.2f')} points"
        )
    for engine, entry in report.get("engines", {}).items():
        lines.append(f"engine {engine}: " + ", ".join(
            f"{method} {number(e['ms_per_step'], '.2f')} ms/step "
            f"{number(e['videos_per_s'], '.1f')} videos/s"
            for method, e in entry.items() if isinstance(e, dict))
            + f"; same decisions as {report['engine_reference']} on "
            f"{percent(entry['same_decisions_fraction'], '.1f')}% of runs")
    for engine, ratios in report.get("compare", {}).items():
        lines.append(f"engine {engine}: step vs {report['compare_checkpoint']}: Uniform "
                     f"x{number(ratios['uniform_step_ratio'], '.3f')}, RSEE "
                     f"x{number(ratios['rsee_step_ratio'], '.3f')}")
    lines += [target_line(t) for t in report["targets"]]
    agreement = ", ".join(f"{k} {percent(v, '.0f')}%" for k, v in report["agreement"].items())
    lines.append(f"streaming = batched (prediction and GFLOPs) for: {agreement} of videos")
    m = report["machine"]
    lines.append(
        f"{report['num_videos']} videos, T={report['frames']}, threshold {report['threshold']}, "
        f"streaming via {report['backend']}; {m['device']}, {m['threads']} threads, {m['cpu']}"
    )
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Benchmark, print, write the JSON."""
    import torch
    from tqdm import tqdm

    from rsee_ros.commands.eval import parse_options
    from rsee_ros.engine.export import ExportError
    from rsee_ros.evaluation.bench import bench
    from rsee_ros.model import CheckpointError

    torch.set_num_threads(args.threads or default_threads())
    try:
        options = parse_options(args.option)
    except ValueError as error:
        print(f"rsee bench: {error}", file=sys.stderr)
        return 2

    def wrap(chunks):
        return tqdm(chunks, desc="bench chunks", unit="chunk", disable=args.no_progress)

    try:
        report = bench(
            args.checkpoint, args.data, kind=args.kind, split=args.split, frames=args.frames,
            threshold=args.threshold, max_videos=args.max_videos, warmup=args.warmup,
            passes=args.passes, batch_size=args.batch_size, device=args.device,
            options=options, cache_dir=args.cache_dir, wrap=wrap,
            progress=not args.no_progress, engines=args.engines, compare=args.compare,
        )
    except (CheckpointError, ExportError, FileNotFoundError, ValueError) as error:
        print(f"rsee bench: {error}", file=sys.stderr)
        return 2
    report = jsonable(report)
    print(format_report(report))
    write_json_report(args.json, report)
    print(f"wrote {args.json}")
    return 0
