"""Entry points of the node programs (console scripts and the ``ros2 run`` launchers).

Each takes SIGINT and SIGTERM (:func:`~rsee_ros.ros.lifecycle.process_stop_request`) before
importing its node's module, whose imports (rclpy, torch) take seconds: a stop requested during
start-up is then a clean exit too.
"""

from __future__ import annotations

from rsee_ros.ros.lifecycle import exit_status, process_stop_request


def rsee_node() -> int:
    """``rsee_node``: the action recognition node."""
    process_stop_request()
    from rsee_ros.ros.node import main

    return exit_status(main())


def video_source() -> int:
    """``video_source``: publish a video, an image folder, a rosbag or synthetic clips."""
    process_stop_request()
    from rsee_ros.ros.video_source import main

    return exit_status(main())
