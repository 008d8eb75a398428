"""The stamp-cadence estimate of frames lost before they reached the node."""

from __future__ import annotations

import pytest

from rsee_ros.pipeline.cadence import CadenceMonitor

PERIOD_NS = 33_333_333  # 30 fps


def feed(monitor: CadenceMonitor, frames: list[float], source: str = "cam") -> int:
    """Observe the frames numbered ``frames`` of a 30 fps camera; returns the estimate."""
    for n in frames:
        monitor.observe(source, 10**12 + round(n * PERIOD_NS))
    return monitor.missing().get(source, 0)


@pytest.mark.parametrize("lost", [[], [3], [1, 2], [40], [10, 11, 12, 50], [2, 30, 31]])
def test_every_lost_frame_is_counted_wherever_it_is(lost: list[int]) -> None:
    frames = [n for n in range(100) if n not in lost]
    assert feed(CadenceMonitor(), frames) == len(lost)


def test_holes_before_the_period_is_known_are_counted_once_it_is() -> None:
    monitor = CadenceMonitor(min_intervals=5)
    assert feed(monitor, [0, 2, 3]) == 0  # two intervals: no period yet
    assert feed(monitor, [4, 5, 6]) == 1  # five: the early hole counted
    assert feed(monitor, [7, 8, 9]) == 1  # and not again


def test_pauses_and_steps_back_are_not_losses() -> None:
    monitor = CadenceMonitor()
    frames = list(range(20)) + list(range(20 + 90, 140)) + list(range(5, 30))  # 3 s pause, back
    assert feed(monitor, frames) == 0


@pytest.mark.parametrize("at", [5, 40])  # before and after the period is known
def test_a_late_frame_is_no_loss_and_a_hole_after_it_still_is(at: int) -> None:
    monitor = CadenceMonitor()
    frames: list[float] = [float(n) for n in range(60) if n not in (at + 3, at + 4)]
    frames[frames.index(at)] = at - 1.5  # frame `at` arrives late, stamped between two others
    assert feed(monitor, frames) == 2


def test_cameras_are_counted_apart() -> None:
    monitor = CadenceMonitor()
    feed(monitor, [n for n in range(50) if n != 20], "left")
    feed(monitor, list(range(50)), "right")
    assert monitor.missing() == {"left": 1, "right": 0} and monitor.total == 1
