"""Tests of rsee_ros.pipeline.windowing."""

from __future__ import annotations

import math
import random

import pytest

from rsee_ros.pipeline.windowing import (
    BACKWARDS,
    COMPLETE,
    END_OF_STREAM,
    GAP,
    FrameEvent,
    MultiSourceWindowing,
    Window,
    WindowAssembler,
    WindowSettings,
)

DT = 1 / 30


def _feed(a: WindowAssembler, n: int, t0: float = 0.0, start: int = 0) -> list[FrameEvent]:
    """Push ``n`` frames at 30 Hz; the payload is the frame's number ``start + i``."""
    return [a.push(t0 + i * DT, start + i) for i in range(n)]


def _starts(ws: tuple[Window, ...] | list[Window]) -> list[int]:
    return [w.start_index for w in ws]


def test_tumbling_windows() -> None:
    a = WindowAssembler(WindowSettings(window_size=4), keep_frames=True)
    ev = _feed(a, 10)
    assert [e.index for e in ev] == list(range(10))
    assert [_starts(e.opened) for e in ev] == [[0], [], [], [], [4], [], [], [], [8], []]
    assert [len(e.windows) for e in ev] == [1] * 10
    assert [_starts(e.completed) for e in ev if e.completed] == [[0], [4]]
    assert ev[3].completed[0].frames == [0, 1, 2, 3]
    w = ev[3].completed[0]
    assert (w.num_frames, w.end_reason, w.complete, w.is_open) == (4, COMPLETE, True, False)
    assert (w.first_stamp, w.last_stamp) == (0.0, pytest.approx(3 * DT))
    assert _starts(a.open_windows) == [8]
    ended = a.close()
    assert len(ended) == 1 and ended[0].end_reason == END_OF_STREAM and not ended[0].complete
    assert ended[0].num_frames == 2 and ended[0].frames == [8, 9]
    assert a.open_windows == ()
    assert len({w.id for e in ev for w in e.windows}) == 3


def test_sliding_windows() -> None:
    a = WindowAssembler(WindowSettings(window_size=4, stride=2), keep_frames=True)
    ev = _feed(a, 10)
    assert [_starts(e.windows) for e in ev] == [
        [0], [0], [0, 2], [0, 2], [2, 4], [2, 4], [4, 6], [4, 6], [6, 8], [6, 8]
    ]  # fmt: skip
    done = [w for e in ev for w in e.completed]
    assert [w.frames for w in done] == [[0, 1, 2, 3], [2, 3, 4, 5], [4, 5, 6, 7], [6, 7, 8, 9]]
    assert [_starts(e.completed) for e in ev] == [[], [], [], [0], [], [2], [], [4], [], [6]]


def test_stride_longer_than_window_leaves_frames_out() -> None:
    a = WindowAssembler(WindowSettings(window_size=2, stride=3))
    ev = _feed(a, 7)
    assert [_starts(e.windows) for e in ev] == [[0], [0], [], [3], [3], [], [6]]
    assert all(e.kept for e in ev)


def test_window_size_one() -> None:
    a = WindowAssembler(WindowSettings(window_size=1))
    ev = _feed(a, 3)
    assert all(len(e.opened) == len(e.completed) == 1 for e in ev)
    assert a.open_windows == ()


def test_frame_step_subsamples() -> None:
    a = WindowAssembler(WindowSettings(window_size=2, frame_step=3), keep_frames=True)
    ev = _feed(a, 12)
    assert [e.kept for e in ev] == [i % 3 == 0 for i in range(12)]
    assert [e.index for e in ev] == [0, None, None, 1, None, None, 2, None, None, 3, None, None]
    dropped = ev[1]
    assert dropped.windows == dropped.completed == dropped.opened == () and dropped.frame == 1
    assert [w.frames for e in ev for w in e.completed] == [[0, 3], [6, 9]]


@pytest.mark.parametrize(
    ("next_stamp", "reason"), [(3 * DT + 5.0, GAP), (3 * DT - 1.01, BACKWARDS), (-1.0, BACKWARDS)]
)
def test_gap_or_backwards_stamp_starts_new_video(next_stamp: float, reason: str) -> None:
    a = WindowAssembler(WindowSettings(window_size=4, stride=2, max_gap_s=1.0))
    ev = _feed(a, 4)  # windows at 0 (complete) and 2 (2 frames)
    assert a.video == 0 and ev[-1].video == 0
    e = a.push(next_stamp, "x")
    assert [w.start_index for w in e.ended] == [2]
    cut = e.ended[0]
    assert (cut.end_reason, cut.num_frames, cut.complete, cut.video) == (reason, 2, False, 0)
    assert cut.last_stamp == pytest.approx(3 * DT)
    assert (e.video, e.index, e.kept, _starts(e.opened)) == (1, 0, True, [0])
    assert e.restart == reason and all(x.restart is None for x in ev)
    assert a.video == 1 and e.opened[0].video == 1 and e.opened[0].first_stamp == next_stamp


def test_a_late_frame_is_dropped_and_cuts_nothing() -> None:
    a = WindowAssembler(WindowSettings(window_size=4, max_gap_s=1.0), keep_frames=True)
    _feed(a, 3)  # stamps 0, DT, 2 DT
    late = a.push(DT / 2, "late")  # before the previous frame, within max_gap_s
    assert late.late and not late.kept and late.ended == late.windows == ()
    e = a.push(3 * DT, "next")  # compared with the last frame kept (2 DT), not the late one
    assert e.ended == () and e.kept and [w.frames for w in e.completed] == [[0, 1, 2, "next"]]
    assert a.video == 0
    off = WindowAssembler(WindowSettings(window_size=4, max_gap_s=0.0))  # no gap detection:
    off.push(1.0)
    assert [w.end_reason for w in off.push(0.9).ended] == [BACKWARDS]  # every step back restarts


def test_equal_stamps_and_disabled_gap_do_not_break() -> None:
    a = WindowAssembler(WindowSettings(window_size=8, max_gap_s=0.0))
    for t in (0.0, 0.0, 100.0, 1e6):
        assert a.push(t).ended == ()
    assert a.video == 0 and a.open_windows[0].num_frames == 4
    b = WindowAssembler(WindowSettings(window_size=8, max_gap_s=math.inf))
    assert b.push(0.0).ended == () and b.push(50.0).ended == ()


def test_gap_on_a_dropped_frame_still_breaks() -> None:
    a = WindowAssembler(WindowSettings(window_size=4, frame_step=2, max_gap_s=0.5))
    a.push(0.0)
    e = a.push(1.0)  # would be dropped by frame_step, but starts a new video: kept
    assert e.ended[0].end_reason == GAP and e.kept and e.index == 0 and e.video == 1


def test_bad_stamps_and_settings_raise() -> None:
    a = WindowAssembler()
    for bad in (math.nan, math.inf):
        with pytest.raises(ValueError):
            a.push(bad)
    for kwargs in (
        {"window_size": 0},
        {"stride": -1},
        {"frame_step": 0},
        {"max_gap_s": -1.0},
        {"max_gap_s": math.nan},
        {"window_size": 2.5},
        {"window_size": True},
    ):
        with pytest.raises(ValueError):
            WindowSettings(**kwargs)
        with pytest.raises(ValueError):
            a.update(**kwargs)
    with pytest.raises(TypeError):
        a.update(no_such_setting=1)
    assert a.settings == WindowSettings()


def test_live_window_size_change_applies_to_new_windows() -> None:
    a = WindowAssembler(WindowSettings(window_size=4), keep_frames=True)
    _feed(a, 2)
    a.update(window_size=2)
    ev = _feed(a, 8, t0=2 * DT, start=2)  # kept indices 2..9
    # The open window keeps its size 4; tumbling: the next one opens when it is full.
    assert [(w.frames, w.size) for e in ev for w in e.completed] == [
        ([0, 1, 2, 3], 4), ([4, 5], 2), ([6, 7], 2), ([8, 9], 2)
    ]  # fmt: skip
    a.update(window_size=3)  # no window open: the next frame opens one with the new size
    assert _starts(a.push(10 * DT, 10).opened) == [10]
    assert a.open_windows[0].size == 3


def test_live_stride_change() -> None:
    a = WindowAssembler(WindowSettings(window_size=4, stride=4))
    _feed(a, 2)  # window at 0; next would open at 4
    a.update(stride=2)  # next window opens 2 after the last start: at index 2
    ev = _feed(a, 4, t0=2 * DT, start=2)
    assert [_starts(e.opened) for e in ev] == [[2], [], [4], []]
    a.update(stride=1)  # kept index 6: 6 - 4 >= 1 -> opens; and then every frame
    ev = _feed(a, 2, t0=6 * DT, start=6)
    assert [_starts(e.opened) for e in ev] == [[6], [7]]
    a.update(stride=0)  # tumbling: waits for the window opened at 7 to fill (4 frames)
    ev = _feed(a, 5, t0=8 * DT, start=8)
    assert [_starts(e.opened) for e in ev] == [[], [], [], [11], []]


def test_live_frame_step_change_counts_from_last_kept() -> None:
    a = WindowAssembler(WindowSettings(window_size=100, frame_step=3))
    kept = [a.push(i * DT).kept for i in range(2)]  # 0 kept, 1 dropped
    a.update(frame_step=2)
    kept += [a.push(i * DT).kept for i in range(2, 8)]
    assert kept == [True, False, True, False, True, False, True, False]
    a.update(frame_step=1)
    assert all(a.push(i * DT).kept for i in range(8, 11))


def test_live_max_gap_change() -> None:
    a = WindowAssembler(WindowSettings(window_size=100, max_gap_s=1.0))
    a.push(0.0)
    assert a.push(0.8).ended == ()
    a.update(max_gap_s=0.5)
    assert a.push(1.4).ended[0].end_reason == GAP


def test_mark_exited_keeps_bookkeeping() -> None:
    a = WindowAssembler(WindowSettings(window_size=4, stride=2))
    ev = _feed(a, 3)  # windows at 0 and 2
    first, second = ev[2].windows
    a.mark_exited(first)
    e = a.push(3 * DT)
    assert e.windows == (first, second) and e.active == (second,)
    assert e.completed == (first,) and first.num_frames == 4 and first.exited
    a.mark_exited(second.id)
    e = a.push(4 * DT)
    assert [w.start_index for w in e.active] == [4] and second.num_frames == 3
    a.mark_exited(first)  # already ended: harmless
    with pytest.raises(KeyError):
        a.mark_exited(9999)
    e = a.push(5.0 * 100)  # gap: the exited window is still cut honestly
    assert second in e.ended and second.end_reason == GAP and second.num_frames == 3


def test_close_then_continue_starts_new_video() -> None:
    a = WindowAssembler(WindowSettings(window_size=3))
    _feed(a, 2)
    assert [w.end_reason for w in a.close("reset")] == ["reset"]
    assert a.close() == ()
    e = a.push(0.0)  # stamps may restart after close: no "backwards"
    assert e.ended == () and e.video == 1 and e.index == 0 and len(e.opened) == 1


def test_two_sources_do_not_mix() -> None:
    m = MultiSourceWindowing(WindowSettings(window_size=3), keep_frames=True)
    done: dict[str, list[list[str]]] = {"a": [], "b": []}
    for i in range(9):
        for src, t in (("a", 100.0 + i * DT), ("b", i * 0.05)):  # b's stamps are far behind a's
            e = m.push(src, t, f"{src}{i}")
            assert e.ended == () and all(w.source == src for w in e.windows)
            done[src] += [w.frames for w in e.completed]
    assert done["a"] == [["a0", "a1", "a2"], ["a3", "a4", "a5"], ["a6", "a7", "a8"]]
    assert done["b"] == [["b0", "b1", "b2"], ["b3", "b4", "b5"], ["b6", "b7", "b8"]]
    m.push("a", 200.0, "a9")
    m.push("b", 10.0, "b9")
    ids = [w.id for w in m.assembler("a").open_windows + m.assembler("b").open_windows]
    assert len(set(ids)) == 2 and m.sources == ("a", "b")
    m.update(window_size=5)
    assert m.assembler("a").settings.window_size == 5
    assert m.assembler("c").settings.window_size == 5
    cut = m.close("a")
    assert [w.source for w in cut] == ["a"] and m.assembler("b").open_windows
    w_b = m.assembler("b").open_windows[0]
    m.mark_exited(w_b)
    assert m.push("b", 10.0 + DT).active == ()
    assert [w.source for w in m.remove("b")] == ["b"] and m.sources == ("a", "c")
    assert m.remove("zzz") == () and m.close() == ()


# Property-style checks with random stamp sequences -----------------------------------------------


def _random_stamps(rng: random.Random, n: int) -> list[float]:
    t, out = 0.0, []
    for _ in range(n):
        r = rng.random()
        if r < 0.05:
            t += rng.uniform(1.5, 5.0)  # gap
        elif r < 0.09:
            t -= rng.uniform(0.001, 2.0)  # backwards
        elif r < 0.12:
            pass  # repeated stamp
        else:
            t += rng.uniform(0.5, 1.5) * DT
        out.append(round(t, 6))
    return out


def _reference(stamps: list[float], s: WindowSettings) -> list[tuple]:
    """Offline windowing of a whole sequence with fixed settings (independent of the assembler):
    returns (video, start_index, frames, end_reason) per window."""
    videos: list[list[int]] = [[0]]
    reasons: list[str] = []
    detection = 0 < s.max_gap_s < math.inf
    previous = stamps[0]
    for i in range(1, len(stamps)):
        dt = stamps[i] - previous
        if detection and -s.max_gap_s <= dt < 0:
            continue  # late: dropped, the previous stamp stays
        if dt < 0 or (detection and dt > s.max_gap_s):
            reasons.append(BACKWARDS if dt < 0 else GAP)
            videos.append([])
        videos[-1].append(i)
        previous = stamps[i]
    reasons.append(END_OF_STREAM)
    size = s.window_size
    stride = s.stride or size
    out = []
    for v, (frames, reason) in enumerate(zip(videos, reasons, strict=True)):
        kept = frames[:: s.frame_step]
        for start in range(0, len(kept), stride):
            got = kept[start : start + size]
            out.append((v, start, got, COMPLETE if len(got) == size else reason))
    return out


@pytest.mark.parametrize("seed", range(150))
def test_random_sequences_match_offline_reference(seed: int) -> None:
    rng = random.Random(seed)
    s = WindowSettings(
        window_size=rng.randint(1, 8),
        stride=rng.randint(0, 10),
        frame_step=rng.randint(1, 4),
        max_gap_s=rng.choice([0.0, 0.5, 1.0]),
    )
    stamps = _random_stamps(rng, rng.randint(1, 120))
    a = WindowAssembler(s, keep_frames=True)
    seen: list[Window] = []
    for i, t in enumerate(stamps):
        e = a.push(t, i)
        seen += e.opened
        assert all(w.end_reason == COMPLETE for w in e.completed)
        assert all(w.end_reason in (GAP, BACKWARDS) for w in e.ended)
        assert set(e.completed) <= set(e.windows) and set(e.opened) <= set(e.windows)
        assert all(w.frames[-1] == i for w in e.windows)
    a.close()
    got = [(w.video, w.start_index, w.frames, w.end_reason) for w in seen]
    assert got == _reference(stamps, s)
    for w in seen:
        assert w.num_frames == len(w.frames) <= w.size
        assert (w.first_stamp, w.last_stamp) == (stamps[w.frames[0]], stamps[w.frames[-1]])
    assert len({w.id for w in seen}) == len(seen)


@pytest.mark.parametrize("seed", range(60))
def test_random_live_changes_keep_invariants(seed: int) -> None:
    rng = random.Random(1000 + seed)
    stamps = _random_stamps(rng, 200)
    a = WindowAssembler(WindowSettings(window_size=4), keep_frames=True)
    seen: list[Window] = []
    kept_of_video: dict[int, list[int]] = {}
    ended_count: dict[int, int] = {}
    for i, t in enumerate(stamps):
        if rng.random() < 0.1:
            a.update(
                window_size=rng.randint(1, 6),
                stride=rng.randint(0, 6),
                frame_step=rng.randint(1, 3),
                max_gap_s=rng.choice([0.0, 1.0]),
            )
        e = a.push(t, i)
        seen += e.opened
        if e.kept:
            kept_of_video.setdefault(e.video, []).append(i)
        for w in e.completed + e.ended:
            ended_count[w.id] = ended_count.get(w.id, 0) + 1
        if rng.random() < 0.05 and e.active:
            a.mark_exited(rng.choice(e.active))
    for w in a.close():
        ended_count[w.id] = ended_count.get(w.id, 0) + 1
    assert all(ended_count.get(w.id) == 1 for w in seen)  # each window ends exactly once
    for w in seen:
        kept = kept_of_video[w.video]
        # a window holds consecutive kept frames of one video, from its start index on
        assert w.frames == kept[w.start_index : w.start_index + len(w.frames)]
        assert w.complete == (w.num_frames == w.size) and w.num_frames <= w.size
        # an incomplete window ends only with its video
        if not w.complete:
            assert w.frames[-1] == kept[-1]
