"""The ROS processes of one ``rsee bench-node`` run (two ``rsee_node``, two ``video_source``; or
the sweep's ``camera_rig`` and one ``rsee_node`` per level):
their environment (DDS on loopback, the run's domain, optionally the Fast DDS profile), their
parameters, starting, checking and stopping them (:class:`~rsee_ros.ros.processes.RosProcess`).
rclpy-free."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rsee_ros.evaluation.node_bench.config import (
    CAMERA_HEIGHT,
    CAMERA_WIDTH,
    IDLE_PERIOD_S,
    BenchNodeConfig,
    BenchNodeError,
)
from rsee_ros.resources import FASTDDS_SHM_PROFILE
from rsee_ros.ros.processes import LOOPBACK_ENV, RosProcess, loopback_environment

__all__ = ["BenchProcesses"]

PROFILE_VARIABLE = "FASTDDS_DEFAULT_PROFILES_FILE"


class BenchProcesses:
    """The running and finished processes of one run, all started with one environment; logs
    go to ``workdir``."""

    def __init__(self, config: BenchNodeConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = workdir
        self.running: list[RosProcess] = []
        self.finished: list[dict[str, Any]] = []
        extra = {"OMP_NUM_THREADS": str(config.threads)}
        if config.fastdds_profile:  # the packaged shared-memory profile (see the file)
            extra[PROFILE_VARIABLE] = str(FASTDDS_SHM_PROFILE)
        self.env = loopback_environment(domain_id=config.domain_id, **extra)

    def participant_environment(self) -> dict[str, str]:
        """The DDS variables this process's own participant (the listener) needs too."""
        names = [*LOOPBACK_ENV, "ROS_DOMAIN_ID"]
        if self.config.fastdds_profile:
            names.append(PROFILE_VARIABLE)
        return {name: self.env[name] for name in names}

    def start(self, name: str, module: str, params: dict[str, Any],
              cpus: Sequence[int] | None = None) -> RosProcess:
        """Start ``python -m module`` as node ``name`` with parameters ``params``, pinned to
        ``cpus`` when given."""
        proc = RosProcess(name, module, params, env=self.env,
                          log_path=self.workdir / f"{name}.log", rename=True, cpus=cpus)
        self.running.append(proc)
        return proc

    def get(self, name: str) -> RosProcess:
        """The running process named ``name``."""
        return next(p for p in self.running if p.name == name)

    def stop(self, *procs: RosProcess) -> None:
        """Stop processes (SIGINT to all first, so they shut down side by side)."""
        for proc in procs:
            proc.interrupt()
        for proc in procs:
            proc.stop()
            if proc in self.running:
                self.running.remove(proc)
                self.finished.append(proc.info())

    def stop_all(self) -> None:
        """Stop every running process, the last started first."""
        self.stop(*reversed(self.running))

    @staticmethod
    def check_alive(*procs: RosProcess) -> None:
        """``BenchNodeError`` with the log tail of the first of ``procs`` that has exited."""
        for proc in procs:
            if not proc.alive():
                raise BenchNodeError(
                    f"{proc.name} exited with status {proc.returncode}; its log "
                    f"({proc.log_path}) ends with:\n{proc.tail()}"
                )

    def node_params(self, settings: Any, *topics: str, **extra: Any) -> dict[str, Any]:
        """Parameters of an rsee_node on ``topics`` running the pipeline ``settings``."""
        c = self.config
        return {
            "checkpoint": str(Path(c.checkpoint).expanduser().resolve()),
            "device": c.device,
            "num_threads": c.threads,
            "engine": c.engines[0],
            "image_topics": list(topics),
            "qos_reliability": "reliable",
            "window_size": settings.window_size,
            "stride": settings.stride,
            "frame_step": settings.frame_step,
            "max_gap_s": float(settings.max_gap_s),
            "exit_threshold": float(settings.exit_threshold),
            "skip_enabled": settings.skip_enabled,
            "diagnostics_period_s": float(c.diagnostics_period_s),
            **extra,
        }

    def source_params(self, topic: str, **extra: Any) -> dict[str, Any]:
        """Parameters of a video_source on ``topic``, started paused (one frame every
        IDLE_PERIOD_S): the rate is set when a phase begins."""
        return {
            "source": self.config.source,
            "topic": topic,
            "fps": 1.0 / IDLE_PERIOD_S,
            "loop": True,
            "qos_reliability": "reliable",
            "wait_for_subscribers": True,
            **extra,
        }

    def rig_params(self, topics: Sequence[str], *, stagger: bool = True) -> dict[str, Any]:
        """Parameters of a camera_rig on ``topics``, started paused (``active`` 0); ``stagger``
        False publishes the cameras in sync."""
        return {
            "stagger": stagger,
            "topics": list(topics),
            "source": self.config.source,
            "fps": float(self.config.rate),
            "width": CAMERA_WIDTH,
            "height": CAMERA_HEIGHT,
            "active": 0,
        }
