"""ROS time stamps (``builtin_interfaces/Time``: ``sec`` + ``nanosec``) as integer nanoseconds.

Duck-typed, so they serve rclpy messages and ``rosbags`` messages alike (no ROS import).
"""

from __future__ import annotations

from typing import Any

__all__ = ["split_ns", "stamp_ns"]

NS_PER_S = 1_000_000_000


def stamp_ns(stamp: Any) -> int:
    """A stamp with ``sec`` and ``nanosec`` as nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def split_ns(ns: int) -> tuple[int, int]:
    """Nanoseconds as ``(sec, nanosec)``, the fields of a ``builtin_interfaces/Time``."""
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return sec, nanosec
