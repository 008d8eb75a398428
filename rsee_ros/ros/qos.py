"""The QoS profiles of this package's publishers and subscriptions, built in one place."""

from __future__ import annotations

from rclpy.qos import (
    DurabilityPolicy,
    HistoryPolicy,
    QoSProfile,
    ReliabilityPolicy,
)

__all__ = ["RELIABILITY_CHOICES", "latched", "reliability_policy", "stream"]

RELIABILITY_CHOICES = ("reliable", "best_effort")


def reliability_policy(name: str) -> ReliabilityPolicy:
    """``"reliable"`` or ``"best_effort"`` as an rclpy policy (``ValueError`` otherwise)."""
    if name == "reliable":
        return ReliabilityPolicy.RELIABLE
    if name == "best_effort":
        return ReliabilityPolicy.BEST_EFFORT
    raise ValueError(f"reliability must be reliable or best_effort, got {name!r}")


def latched(depth: int = 1) -> QoSProfile:
    """Reliable, transient local: late joiners get the last ``depth`` messages (model labels,
    ground truth)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=ReliabilityPolicy.RELIABLE,
        durability=DurabilityPolicy.TRANSIENT_LOCAL,
    )


def stream(reliability: str = "reliable", depth: int = 10) -> QoSProfile:
    """Keep-last, volatile, with the given reliability (image streams, results)."""
    return QoSProfile(
        history=HistoryPolicy.KEEP_LAST,
        depth=depth,
        reliability=reliability_policy(reliability),
        durability=DurabilityPolicy.VOLATILE,
    )
