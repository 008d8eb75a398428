"""TargetFpsController against a simulated plant and clock."""

from __future__ import annotations

import math

import pytest

from rsee_ros.pipeline.target_fps import ControlOutput, TargetFpsController

RESOLUTIONS = (112, 84, 56, 42)


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _cost(out: ControlOutput, base: float) -> float:
    """Seconds per frame: quadratic in the resolution cap; lower thresholds exit sooner."""
    frames = 0.25 + 0.75 * out.exit_threshold  # share of a window's frames looked at
    return base * (out.max_resolution / 112) ** 2 * frames


def _run(ctl: TargetFpsController, clock: _Clock, base: float, seconds: float,
         camera_fps: float = 30.0) -> list[float]:
    """Feed frames at the camera's rate (or slower when busy); capacity per period."""
    capacities = []
    end = clock.now + seconds
    while clock.now < end:
        cost = _cost(ctl.output, base)
        clock.now += max(cost, 1 / camera_fps)
        before = ctl.capacity_fps
        ctl.record(1, cost)
        if ctl.capacity_fps is not before:
            capacities.append(ctl.capacity_fps)
    return capacities


def test_mapping_from_level_to_settings() -> None:
    ctl = TargetFpsController(30, RESOLUTIONS, 0.9, min_threshold=0.5)
    assert ctl.output == ControlOutput(0.9, 112, 0.0)
    expected = {0.25: (0.7, 112), 0.5: (0.5, 112), 0.51: (0.5, 84), 0.7: (0.5, 56),
                0.9: (0.5, 42), 1.0: (0.5, 42)}
    for level, (threshold, cap) in expected.items():
        out = ctl.reset(level)
        assert (out.exit_threshold, out.max_resolution) == pytest.approx((threshold, cap)), level
    single = TargetFpsController(30, [84], 0.8)
    assert single.reset(1.0).max_resolution == 84
    assert single.set_limits([84], 0.4).exit_threshold == 0.4  # floor never above the ceiling
    with pytest.raises(ValueError):
        TargetFpsController(0, RESOLUTIONS, 0.9)
    with pytest.raises(ValueError):
        ctl.set_limits([], 0.9)


def test_reaches_the_target_and_settles() -> None:
    clock = _Clock()
    ctl = TargetFpsController(25, RESOLUTIONS, 0.9, clock=clock)
    # Full accuracy costs 0.1 s per frame (about 10 fps): too slow for 25 fps.
    capacities = _run(ctl, clock, base=0.1 / 0.925, seconds=40)
    assert capacities[0] < 15
    assert min(capacities[-10:]) >= 25  # held over the last 10 periods
    settled = ctl.output
    assert settled.max_resolution < 112 or settled.exit_threshold < 0.9
    assert 0 < ctl.level < 1  # not saturated: it did not over-shoot to the cheapest setting
    levels = []
    for _ in range(10):
        _run(ctl, clock, base=0.1 / 0.925, seconds=1)
        levels.append(ctl.level)
    assert max(levels) - min(levels) < 0.15  # steady, no oscillation between extremes


def test_relaxes_when_the_target_drops_or_the_machine_gets_faster() -> None:
    clock = _Clock()
    ctl = TargetFpsController(25, RESOLUTIONS, 0.9, clock=clock)
    _run(ctl, clock, base=0.1, seconds=30)
    assert ctl.level > 0.4
    ctl.set_target(5)
    _run(ctl, clock, base=0.1, seconds=60, camera_fps=5)
    assert ctl.output == ControlOutput(0.9, 112, 0.0)  # back to full accuracy


def test_unreachable_target_saturates_at_the_cheapest_setting() -> None:
    clock = _Clock()
    ctl = TargetFpsController(1000, RESOLUTIONS, 0.9, clock=clock)
    _run(ctl, clock, base=0.1, seconds=20)
    assert ctl.output == ControlOutput(0.5, 42, 1.0)


def test_no_decision_without_enough_data() -> None:
    clock = _Clock()
    ctl = TargetFpsController(30, RESOLUTIONS, 0.9, clock=clock, period_s=1.0, min_frames=3)
    clock.now = 5.0
    assert ctl.record(1, 0.5) is None and ctl.record(1, 0.5) is None  # 2 frames: too few
    assert math.isnan(ctl.capacity_fps)
    out = ctl.record(1, 0.5)  # 3 frames in 1.5 s busy: 2 fps, far below 30
    assert ctl.capacity_fps == pytest.approx(2.0) and out is not None and out.exit_threshold < 0.9
    clock.now = 5.5
    assert ctl.record(10, 0.01) is None  # a new period has not elapsed yet


def test_capacity_is_the_handled_rate_in_a_period_with_drops() -> None:
    """Time lost between frames (GIL, bursty delivery) hides from busy time; in overload the
    controller steers by the frames really handled per second."""
    clock = _Clock()
    ctl = TargetFpsController(100, RESOLUTIONS, 0.9, clock=clock, period_s=1.0, min_frames=3)

    def one_period(dropping: bool) -> None:
        before, index = ctl.capacity_fps, 0
        while ctl.capacity_fps is before:  # 80 frames a second, each 5 ms busy
            clock.now += 1 / 80
            ctl.record(1, 0.005, dropped=1 if dropping and index % 2 else 0)
            index += 1

    one_period(dropping=False)
    assert ctl.capacity_fps == pytest.approx(200.0) and ctl.level == 0.0  # busy time: 200 fps
    one_period(dropping=True)
    assert ctl.capacity_fps == pytest.approx(80.0, rel=0.03) and ctl.level > 0.0


def test_raising_the_user_threshold_restores_the_range() -> None:
    """The threshold floor follows the user's value down and back up (it used to stay down)."""
    ctl = TargetFpsController(30, RESOLUTIONS, 0.9, clock=_Clock())
    assert (ctl.min_threshold, ctl.max_threshold) == (0.5, 0.9)
    ctl.set_limits(RESOLUTIONS, 0.2)
    assert (ctl.min_threshold, ctl.max_threshold) == (0.2, 0.2)
    ctl.set_limits(RESOLUTIONS, 0.9)
    assert (ctl.min_threshold, ctl.max_threshold) == (0.5, 0.9)
    ctl.reset(level=0.5)  # the split level: the threshold is at the bottom of the range
    assert ctl.output.exit_threshold == pytest.approx(0.5)
