"""ROS node ``camera_rig``: the cameras of ``rsee bench-node --cameras``, several image topics
published by one process (``python -m rsee_ros.ros.camera_rig --ros-args ...``).

Why one process and not one ``video_source`` per camera: measured on this project's 2-core
machine, a ``video_source`` publishing 640x480 frames at 30 fps takes about 16% of a core (its
executor, and resizing and building a 0.9 MB message every frame), so eight of them would need
more than the core the node is not pinned to. Here the frames ``video_source`` publishes for the
same ``source`` (:func:`~rsee_ros.evaluation.node_bench.inprocess.bench_frames`) are resized and
built into messages once, at start-up; a publish then only sets the stamp.

Camera ``i`` of ``n`` topics starts ``i/n`` of the way into the frames (the cameras do not show
the same frame at once) and publishes ``i/active`` of a period after camera 0, as unsynchronised
cameras would (``stagger``; without it all publish back to back with the same stamp, as a
synchronised stereo or multi-camera driver does); the schedule is absolute, so it does not
drift. Stamps are the scheduled capture times: a publish that is late (a busy core) is not taken
for a lost frame by the node's cadence estimate. A publisher that cannot keep up falls behind,
which shows as a lower ``input_fps`` at the node. ``active`` (dynamic) says how many of the
topics publish, the first ones; 0 (the default) pauses all. A schedule starts once each active
topic has a matched subscriber; the ``published`` counts are logged at exit.
"""

from __future__ import annotations

from rsee_ros.ros.lifecycle import exit_status, process_stop_request, run_node

if __name__ == "__main__":
    process_stop_request()  # a signal during the imports below is a clean stop too

import sys
import threading
import time
from typing import Any

from builtin_interfaces.msg import Time
from rcl_interfaces.msg import SetParametersResult
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from rsee_ros.data.image_conversion import rgb_to_image_msg
from rsee_ros.data.stamps import split_ns
from rsee_ros.evaluation.node_bench.inprocess import bench_frames
from rsee_ros.ros.params import ParamSpec, check_number, declare_parameters
from rsee_ros.ros.qos import stream
from rsee_ros.ros.video_source import resize_frame

NODE_NAME = "camera_rig"
MATCH_SETTLE_S = 0.5

PARAMETERS = (
    ParamSpec("topics", ["/camera/image_raw"], "Image topics, one per camera."),
    ParamSpec("source", "demo", "Frames: demo or synthetic (as video_source's source)."),
    ParamSpec("frames", 192, "Frames of the source, looped (demo: its whole clip).",
              int_range=(1, 10000)),
    ParamSpec("width", 640, "Width of the published frames.", int_range=(1, 8192)),
    ParamSpec("height", 480, "Height of the published frames.", int_range=(1, 8192)),
    ParamSpec("fps", 30.0, "Frames per second of each camera.", dynamic=True,
              float_range=(0.001, 1000.0)),
    ParamSpec("active", 0, "How many of the topics publish (the first ones); 0: none.",
              dynamic=True, int_range=(0, 1000)),
    ParamSpec("stagger", True, "Cameras publish spread over each period (unsynchronised); "
              "false: all at the same instant with the same stamp, back to back (synchronised)."),
    ParamSpec("qos_depth", 10, "History depth of the (reliable) publishers.",
              int_range=(1, 1000)),
)
_FPS = next(spec for spec in PARAMETERS if spec.name == "fps")


class CameraRig(Node):
    """Publishes the same frames on several topics on a staggered schedule (module docstring)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(NODE_NAME, **kwargs)
        p = declare_parameters(self, PARAMETERS)
        topics = [str(t) for t in p["topics"]]
        self._messages = [rgb_to_image_msg(resize_frame(f, p["width"], p["height"]), "rgb8")
                          for f in bench_frames(p["source"], p["frames"])]
        self._publishers = [self.create_publisher(Image, t, stream("reliable", p["qos_depth"]))
                            for t in topics]
        self._offsets = [i * len(self._messages) // len(topics) for i in range(len(topics))]
        self._fps, self._active = p["fps"], min(p["active"], len(topics))
        self._stagger = bool(p["stagger"])
        self.published = [0] * len(topics)
        self.max_lag_s = 0.0
        self._changed = threading.Event()
        self._stop = False
        self.add_on_set_parameters_callback(self._on_set_parameters)
        self._thread = threading.Thread(target=self._run, name="camera_rig", daemon=True)
        self._thread.start()
        self.get_logger().info(f"{len(topics)} cameras, {p['width']}x{p['height']} "
                               f"{p['source']} frames at {self._fps:g} fps, {self._active} active")

    def _on_set_parameters(self, params: list[Parameter]) -> SetParametersResult:
        try:
            fps = {p.name: check_number(_FPS, p.value) for p in params if p.name == "fps"}
        except ValueError as exc:
            return SetParametersResult(successful=False, reason=str(exc))
        for param in params:
            if param.name == "active":
                self._active = min(int(param.value), len(self._publishers))
        self._fps = fps.get("fps", self._fps)
        self._changed.set()  # the schedule starts again with the new values
        return SetParametersResult(successful=True)

    def _run(self) -> None:
        """Publish on the schedule until a parameter changes, then start again."""
        while not self._stop:
            self._changed.clear()
            active, period = self._active, 1.0 / self._fps
            if not active:
                self._changed.wait(0.5)
                continue
            # a schedule starts once every active camera has a subscriber matched, so no frame
            # is published into the void (every published frame can be accounted for)
            if any(pub.get_subscription_count() == 0 for pub in self._publishers[:active]):
                self._changed.wait(0.05)
                continue
            # the match is seen here first; the subscriber's side may take a moment longer
            if self._changed.wait(MATCH_SETTLE_S):
                continue
            t0, wall0 = time.monotonic(), time.time_ns()
            for tick in range(sys.maxsize):
                if not self._tick(tick, active, period, t0, wall0):
                    break

    def _tick(self, tick: int, active: int, period: float, t0: float, wall0: int) -> bool:
        """One frame of each active camera, each at its phase; False when the schedule ends."""
        for cam in range(active):
            due = (tick + (cam / active if self._stagger else 0.0)) * period
            wait = t0 + due - time.monotonic()
            if wait > 0:
                self._changed.wait(wait)
            if self._changed.is_set() or self._stop:
                return False
            self.max_lag_s = max(self.max_lag_s, -wait)
            msg = self._messages[(self._offsets[cam] + tick) % len(self._messages)]
            sec, nanosec = split_ns(wall0 + round(due * 1e9))
            msg.header.stamp = Time(sec=sec, nanosec=nanosec)
            self._publishers[cam].publish(msg)
            self.published[cam] += 1
        return True

    def destroy_node(self) -> None:
        self._stop = True
        self._changed.set()
        self._thread.join(2.0)
        self.get_logger().info(f"published {self.published} frames per camera, largest lag "
                               f"{1e3 * self.max_lag_s:.1f} ms")
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """Run the rig until SIGINT / SIGTERM; returns the exit status."""
    return run_node(NODE_NAME, CameraRig, args=args, stop=process_stop_request())


if __name__ == "__main__":
    sys.exit(exit_status(main()))
