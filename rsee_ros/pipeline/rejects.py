"""Counting rejected inputs per reason, with throttled warnings.

Pure Python: shared by the ROS node (with an rclpy logger) and the rosbag evaluator (with a
``logging.Logger``). A stream of bad frames gives one warning per reason every ``period_s``
seconds, carrying the running count, instead of one line per frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any, Protocol


class _WarningLogger(Protocol):
    def warning(self, msg: str, /) -> Any: ...


WarningSink = Callable[[str], Any] | _WarningLogger


class RejectCounter:
    """Counts rejects per reason and logs at most one warning per reason every ``period_s``.

    ``what`` and ``verb`` word the warnings ("dropped frame (reason): ...").

    ``sink`` is anything with a ``warning(str)`` method (an rclpy ``RcutilsLogger`` or a
    ``logging.Logger``), a plain callable taking the message, or None (count only).
    Thread-safe, so it can be shared by callbacks of a multi-threaded executor.
    """

    def __init__(
        self,
        sink: WarningSink | None = None,
        period_s: float = 5.0,
        what: str = "frame",
        clock: Callable[[], float] = time.monotonic,
        verb: str = "dropped",
    ) -> None:
        if period_s < 0:
            raise ValueError("period_s must be >= 0")
        if sink is None:
            self._emit: Callable[[str], Any] | None = None
        elif callable(getattr(sink, "warning", None)):
            self._emit = sink.warning  # type: ignore[union-attr]
        elif callable(sink):
            self._emit = sink
        else:
            raise TypeError("sink must have a warning() method or be callable")
        self.period_s = float(period_s)
        self.what = what
        self.verb = verb
        self._clock = clock
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}
        self._at_last_log: dict[str, int] = {}
        self._last_log: dict[str, float] = {}

    def reject(self, reason: str, detail: str = "") -> bool:
        """Count one reject; log it unless this reason was logged less than ``period_s`` ago.

        Returns True when a warning was emitted.
        """
        now = self._clock()
        with self._lock:
            count = self._counts.get(reason, 0) + 1
            self._counts[reason] = count
            last = self._last_log.get(reason)
            if last is not None and now - last < self.period_s:
                return False
            since = count - self._at_last_log.get(reason, 0)
            self._last_log[reason] = now
            self._at_last_log[reason] = count
        if self._emit is not None:
            text = f"{self.verb} {self.what} ({reason})"
            if detail:
                text += f": {detail}"
            text += f" [{count} {self.verb} for this reason so far"
            if last is not None:
                text += f", {since} in the last {now - last:.1f} s"
            self._emit(text + "]")
        return True

    def count(self, reason: str) -> int:
        """Rejects counted for ``reason``."""
        with self._lock:
            return self._counts.get(reason, 0)

    @property
    def counts(self) -> dict[str, int]:
        """A copy of the per-reason counts."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        """Rejects counted over all reasons."""
        with self._lock:
            return sum(self._counts.values())

    def reset(self) -> None:
        """Forget all counts and throttling state."""
        with self._lock:
            self._counts.clear()
            self._at_last_log.clear()
            self._last_log.clear()
