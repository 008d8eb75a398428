"""Fair, bounded queues between camera callbacks and the inference worker.

Each source (camera topic) has its own queue of at most ``depth`` frames; when it is full, the
source's oldest frame is dropped (and counted for that source), so a fast or bursty camera can
only ever push out its own frames. The worker takes frames round robin over the sources that
have one waiting, so every camera gets its share even when they publish in lockstep and the
consumer is slower than all of them together. Pure Python, thread-safe; no ROS.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Hashable
from typing import Generic, TypeVar

__all__ = ["FairQueue"]

T = TypeVar("T")


class FairQueue(Generic[T]):
    """Per-source drop-oldest queues served round robin; ``put`` never blocks."""

    def __init__(self, depth: int) -> None:
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth}")
        self.depth = depth
        self._queues: OrderedDict[Hashable, deque[T]] = OrderedDict()
        self._drops: dict[Hashable, int] = {}
        self._cond = threading.Condition()
        self._closed = False

    def put(self, source: Hashable, item: T) -> bool:
        """Queue ``item`` for ``source``; True when that source's oldest frame was dropped."""
        with self._cond:
            queue = self._queues.get(source)
            if queue is None:
                queue = self._queues[source] = deque()
                self._drops.setdefault(source, 0)
            dropped = len(queue) >= self.depth
            if dropped:
                queue.popleft()
                self._drops[source] += 1
            queue.append(item)
            self._cond.notify()
        return dropped

    def get(self, timeout_s: float | None = None) -> tuple[Hashable, T] | None:
        """The next ``(source, item)`` round robin, waiting up to ``timeout_s`` (None: until
        one arrives or :meth:`close`); None on time-out or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or self._pending(), timeout_s):
                return None
            if self._closed:
                return None
            for source, queue in self._queues.items():
                if queue:
                    item = queue.popleft()
                    self._queues.move_to_end(source)  # served: to the back of the round
                    return source, item
        return None  # unreachable: _pending() was true

    def _pending(self) -> bool:
        return any(self._queues.values())

    def close(self) -> None:
        """Wake every waiting :meth:`get`; later calls return None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return sum(len(q) for q in self._queues.values())

    def drops(self) -> dict[Hashable, int]:
        """Frames dropped so far, per source."""
        with self._cond:
            return dict(self._drops)

    @property
    def dropped(self) -> int:
        """Frames dropped so far, all sources."""
        with self._cond:
            return sum(self._drops.values())
