"""One ``rsee bench-node`` run: check the configuration, load the model, run phase 1 in this
process, then start the processes and run phases 2 to 4 (or, with ``cameras``, only the
cameras-per-core sweep), cleaning up whatever happens."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rsee_ros.evaluation.node_bench.config import (
    FASTEST_FRAMES,
    FEED_FACTOR,
    MAX_DEPTH,
    MAX_FRAMES,
    POLICY_METHODS,
    SOURCES,
    BenchNodeConfig,
    BenchNodeError,
    Log,
    parse_targets,
    resolve_targets,
)
from rsee_ros.evaluation.node_bench.inprocess import bench_frames, run_in_process
from rsee_ros.evaluation.node_bench.metrics import add_throughput_ratios, check_targets
from rsee_ros.evaluation.node_bench.processes import BenchProcesses
from rsee_ros.ros.processes import check_domain_id, domain_block, temporary_environment

__all__ = ["check_config", "run_node_bench"]


def check_config(config: BenchNodeConfig) -> list[str]:
    """Validate ``config`` (its domain id defaults here); returns the parsed set points."""
    if config.source not in SOURCES:
        raise BenchNodeError(f"source must be one of {SOURCES}, got {config.source!r}")
    if config.domain_id is None:
        config.domain_id = domain_block(1)[0]
    try:
        check_domain_id(config.domain_id)
    except ValueError as exc:
        raise BenchNodeError(str(exc)) from None
    if config.frames < 3 or config.duration_s <= 0 or config.rate <= 0:
        raise BenchNodeError("need frames >= 3, duration > 0 and rate > 0")
    if config.frames > MAX_FRAMES:
        raise BenchNodeError(f"at most {MAX_FRAMES} frames (the node's queue holds "
                             f"{MAX_DEPTH}, the backlog grows to a third of the frames)")
    if config.cameras and config.soak_s:
        raise BenchNodeError("--cameras and --soak are separate runs")
    if config.cameras or config.soak_s:
        _check_sweep(config)
    return parse_targets(config.targets)


def _check_sweep(config: BenchNodeConfig) -> None:
    """The sweep's options (``BenchNodeError`` for a bad one)."""
    from rsee_ros.engine import ENGINES

    engines = [e for e in ENGINES if e != "auto"]
    if config.cameras and not 1 <= config.cameras <= 64:
        raise BenchNodeError(f"cameras must be in 1..64, got {config.cameras}")
    if config.soak_s and not (1 <= config.soak_cameras <= 64 and config.soak_s > 0):
        raise BenchNodeError(f"soak cameras must be in 1..64 and the soak > 0 s, got "
                             f"{config.soak_cameras} cameras, {config.soak_s:g} s")
    if not config.engines or not set(config.engines) <= set(engines):
        raise BenchNodeError(f"engines must be some of {engines}, got {list(config.engines)}")
    if not config.policies or not set(config.policies) <= set(POLICY_METHODS):
        raise BenchNodeError(f"policies must be some of {list(POLICY_METHODS)}, got "
                             f"{list(config.policies)}")
    if not config.sweep_duration_s > 0 or config.sweep_warmup_s < 0:
        raise BenchNodeError("need a sweep duration > 0 and a warm-up >= 0")


def _phase_in_process(
    config: BenchNodeConfig, checkpoint: Any, model: Any, settings: Any, log: Log
) -> tuple[dict[str, Any], dict[str, Any], list[int], list[Any]]:
    """Phase 1: the frames, the pipeline on the engine ``model`` over them with the node's
    ``settings`` and over the first of them with the fastest settings; returns (figures,
    fastest figures, class ids, frames)."""
    from rsee_ros.pipeline.runner import PipelineSettings

    log(f"in-process: decoding {config.frames} frames of the {config.source} source")
    frames = bench_frames(config.source, config.frames)
    names = checkpoint.class_names
    in_process, class_ids = run_in_process(model, names, frames, settings, config.rate)
    fastest_settings = PipelineSettings(
        exit_threshold=min(0.5, settings.exit_threshold),
        max_resolution=min(checkpoint.config.resolutions),
    )
    fastest, _ = run_in_process(model, names, frames[:FASTEST_FRAMES], fastest_settings,
                                config.rate)
    log(f"in-process: {in_process['frames_per_s']:.1f} frames/s, "
        f"{in_process['results_per_s']:.2f} results/s; fastest settings "
        f"{fastest['frames_per_s']:.1f} frames/s")
    return in_process, fastest, class_ids, frames


@contextmanager
def _participant(config: BenchNodeConfig, procs: BenchProcesses) -> Iterator[Any]:
    """This process's own DDS participant and the listener on it; on leaving, the processes
    are stopped and the participant shut down whatever happened."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    from rsee_ros.evaluation.node_bench.listener import Listener

    context = listener = None
    try:
        with temporary_environment(procs.participant_environment()):
            context = rclpy.Context()
            rclpy.init(context=context, domain_id=config.domain_id,
                       signal_handler_options=SignalHandlerOptions.NO)
            listener = Listener(context)
        yield listener
        procs.stop_all()
    finally:
        procs.stop_all()
        if listener is not None:
            listener.close()
        if context is not None:
            context.try_shutdown()


def _node_phases(
    config: BenchNodeConfig, log: Log, procs: BenchProcesses, model: Any, settings: Any,
    report: dict[str, Any], setpoints: list[float], class_ids: list[int], frames: list[Any],
) -> None:
    """Phases 2 to 4 into ``report``."""
    from rsee_ros.evaluation.node_bench.phases import NodePhases

    in_process = report["in_process"]
    with _participant(config, procs) as listener:
        phases = NodePhases(config, log, procs, listener)
        log("starting rsee_node x2 and video_source x2 (publishers paused)")
        phases.start_all(settings, config.frames)
        # Phase 2: throughput against the in-process figure.
        t = report["throughput"] = phases.throughput(in_process, class_ids)
        # The in-process run again right after (the nodes idle): the reference is the mean
        # of the runs before and after, so a drift in machine speed between the phases
        # does not land on the node.
        again, _ = run_in_process(model, model.class_names, frames, settings, config.rate)
        frames.clear()
        in_process["after_node"] = again
        add_throughput_ratios(t, in_process, again)
        log(f"in-process again: {again['frames_per_s']:.1f} frames/s; node: "
            f"{t['results_per_s']:.2f} results/s (x{t['ratio_results_per_s']:.3f} of the "
            f"in-process mean), {t['frames_dropped']} dropped")
        # Phases 3 and 4 on the second node.
        report["latency"], report["resources"] = phases.camera_rate()
        report["tracking"] = {
            "full_accuracy_fps": in_process["frames_per_s"],
            "fastest_fps": in_process["fastest"]["frames_per_s"],
            "feed_factor": FEED_FACTOR,
            "setpoints": phases.tracking(setpoints, in_process["frames_per_s"]),
        }


def _camera_sweep(config: BenchNodeConfig, log: Log, procs: BenchProcesses, settings: Any,
                  report: dict[str, Any]) -> None:
    """The cameras-per-core sweep into ``report`` (its targets are the run's)."""
    from rsee_ros.evaluation.node_bench.sweep import CameraSweep

    with _participant(config, procs) as listener:
        report["cameras"] = CameraSweep(config, log, procs, listener).run(settings)


def _camera_soak(config: BenchNodeConfig, log: Log, procs: BenchProcesses, settings: Any,
                 report: dict[str, Any]) -> None:
    """The synchronised multi-camera soak into ``report`` (its targets are the run's)."""
    from rsee_ros.evaluation.node_bench.soak import CameraSoak

    with _participant(config, procs) as listener:
        report["soak"] = CameraSoak(config, log, procs, listener).run(settings)


def _with_processes(config: BenchNodeConfig, body: Callable[[BenchProcesses], None]
                    ) -> BenchProcesses:
    """``body(procs)`` with the run's processes logging into a temporary folder, kept with
    ``keep_logs`` or when the run fails."""
    workdir = Path(tempfile.mkdtemp(prefix="rsee_bench_node_"))
    procs = BenchProcesses(config, workdir)
    keep = config.keep_logs
    try:
        body(procs)
    except BenchNodeError as exc:
        keep = True
        raise BenchNodeError(f"{exc}\n(process logs kept in {workdir})") from None
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
    return procs


def run_node_bench(config: BenchNodeConfig, log: Log | None = None) -> dict[str, Any]:
    """Run the four phases, or the sweep, or the soak (package docstring); returns the JSON
    report (NaN where unmeasured). Over 60 lines by the report's fields, written out here."""
    log = log or (lambda line: None)
    targets = check_config(config)
    try:
        import rclpy  # noqa: F401 - the listener's

        import rsee_ros.msg  # noqa: F401 - the node's messages must be built
    except ImportError as exc:
        raise BenchNodeError(f"needs rclpy and the built rsee_ros messages: {exc}") from None
    import torch

    from rsee_ros.evaluation.clock import machine_info
    from rsee_ros.model import load_checkpoint, resolve_device
    from rsee_ros.pipeline.runner import PipelineSettings

    torch.set_num_threads(config.threads)
    device = resolve_device(config.device)
    checkpoint = load_checkpoint(config.checkpoint, device=device)
    settings = PipelineSettings()  # the node's defaults
    report: dict[str, Any] = {
        "checkpoint": str(config.checkpoint),
        "source": config.source,
        "quick": config.quick,
        "frames": config.frames,
        "rate_hz": config.rate,
        "duration_s": config.duration_s,
        "threads": config.threads,
        "engine": None if config.cameras else config.engines[0],
        "domain_id": config.domain_id,
        "fastdds_profile": config.fastdds_profile,
        "machine": machine_info(device),
        "classes": list(checkpoint.class_names),
        "resolutions": list(checkpoint.config.resolutions),
        "settings": settings.to_dict(),
    }
    if config.cameras:
        procs = _with_processes(
            config, lambda procs: _camera_sweep(config, log, procs, settings, report))
        report["targets"] = report["cameras"]["targets"]
    elif config.soak_s:
        procs = _with_processes(
            config, lambda procs: _camera_soak(config, log, procs, settings, report))
        report["targets"] = report["soak"]["targets"]
    else:
        from rsee_ros.engine import load_engine

        # the engine the node runs (the first of --engines): the reference is like for like
        model = load_engine(config.checkpoint, config.engines[0], device=config.device,
                            threads=config.threads)
        in_process, fastest, class_ids, frames = _phase_in_process(config, checkpoint, model,
                                                                   settings, log)
        report["in_process"] = {**in_process, "fastest": fastest}
        setpoints = resolve_targets(targets, in_process["frames_per_s"],
                                    fastest["frames_per_s"], config.quick)
        procs = _with_processes(config, lambda procs: _node_phases(
            config, log, procs, model, settings, report, setpoints, class_ids, frames))
        report["targets"] = check_targets(report)
    report["processes"] = procs.finished
    report["logs"] = str(procs.workdir) if config.keep_logs else None
    return report
