"""``rsee bench-node`` as a library: ``rsee_node`` measured as a real process over DDS against the
in-process :class:`~rsee_ros.pipeline.runner.RecognitionPipeline`, in one run on one machine.

Phases (one :func:`run_node_bench` call):

1. **In-process** (:mod:`.inprocess`): the pipeline, with the node's default settings, over the
   same ``frames`` frames the publisher will send (the demo clip or the synthetic clips, looped
   as ``video_source`` loops them), fed as fast as possible after a short untimed warm-up:
   frames/s and results/s. The same with the fastest settings ``target_fps`` can reach (exit
   threshold 0.5, lowest resolution) bounds the set points of phase 4.

Then two ``rsee_node`` and two ``video_source`` processes are started side by side (each in its
own session; :mod:`.processes`), the publishers paused (one frame an hour) until their phase sets
``fps`` through their ``set_parameters`` service, so no start-up overlaps a measurement
(:mod:`.phases`; the benchmark's own node, :mod:`.listener`, records what the nodes publish):

2. **Throughput** (``rsee_node``, ``video_source``): exactly those frames, reliable, at 1.5x the
   in-process frame rate, so the node always has frames waiting; its queue and QoS depths hold
   the whole run, so nothing is dropped (drops and transport losses are counted anyway). The
   results received on ``~/actions`` give results/s over the steady state (first 10% of the
   results left out, the in-process figure is computed the same way) -> ratio (target >= 95%)
   against the mean of phase 1 and the same in-process run repeated right after this phase.
   The results are also compared with the in-process ones, label by label.
3. **Camera rate** (``rsee_node_camera``, ``video_source_camera``; the node with its default
   queue and QoS depth, reliable), ``rate`` Hz (30) for ``duration_s``: latency = receive time
   minus ``header.stamp`` (stamp of the last frame used) of each result after the warm-up ->
   p50/p99; the node's utime+stime and VmRSS from ``/proc`` every second -> mean CPU (% of one
   core), RSS at the end of the warm-up / at the end / max, and the memory growth between them.
4. **target_fps tracking**, on that node right after phase 3: per set point the node's
   ``target_fps`` and the publisher's rate (1.5x the set point, at least ``rate``) are set; after
   ``settle_s`` the node's ``processed_fps`` (``~/status``) is averaged over ``measure_s`` and
   compared with the set point (target: within 10%). The node never slows down below what it
   can do, so a set point only tests the controller where it has to act: ``auto`` set points lie
   between the in-process frame rates at full accuracy and at the fastest settings.

With ``cameras`` > 0 a run is only the **cameras-per-core sweep** (:mod:`.sweep`, figures in
:mod:`.cameras`): one ``camera_rig`` (:mod:`rsee_ros.ros.camera_rig`) publishes 1, 2, ... 640x480
streams at ``rate`` into one ``rsee_node`` per level, pinned to one core, per engine and policy,
until a level is not held (a frame dropped or missing, the publishers behind, the results per
camera uneven). With ``soak_s`` > 0 a run is only the **synchronised multi-camera soak**
(:mod:`.soak`): cameras published in sync into one pinned node for ``soak_s`` seconds, with
results per camera, RSS and every frame accounted.

The figures are computed in :mod:`.metrics` from what was recorded. Every process has DDS on
loopback (:func:`rsee_ros.ros.processes.loopback_environment`) and the run's own
``ROS_DOMAIN_ID``; with ``fastdds_profile`` (default) all of them, this one included, use a Fast
DDS profile with shared memory plus UDP restricted to 127.0.0.1 (image latency, no losses).
Processes are stopped with SIGINT to their process group, then SIGKILL after a timeout, also on
errors and Ctrl-C (KeyboardInterrupt). Nothing is printed here (``log`` gets progress).

Importing this package needs neither rclpy nor torch (the run imports them).
"""

from rsee_ros.evaluation.node_bench.config import (
    TARGET_RESULTS_RATIO,
    TARGET_TRACKING_ERROR,
    BenchNodeConfig,
    BenchNodeError,
    parse_targets,
    resolve_targets,
)
from rsee_ros.evaluation.node_bench.inprocess import bench_frames
from rsee_ros.evaluation.node_bench.metrics import ProcSampler, check_targets, steady_rate
from rsee_ros.evaluation.node_bench.run import run_node_bench

__all__ = [
    "TARGET_RESULTS_RATIO",
    "TARGET_TRACKING_ERROR",
    "BenchNodeConfig",
    "BenchNodeError",
    "ProcSampler",
    "bench_frames",
    "check_targets",
    "parse_targets",
    "resolve_targets",
    "run_node_bench",
    "steady_rate",
]
