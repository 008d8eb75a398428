"""Stopping a training run: Ctrl-C and SIGTERM, and the line that says what was kept.

:class:`SignalGuard` turns SIGINT and SIGTERM into :class:`Interrupted` (a ``KeyboardInterrupt``)
in the main thread, except inside :meth:`SignalGuard.deferred` sections (writing a state or a
checkpoint), which finish first: a file on disk is always a whole one. :class:`Progress` is where
the trainer is (stage, epoch, the latest file saved) and says so in one line.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Interrupted", "Progress", "SignalGuard"]


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived (``signum``)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class SignalGuard:
    """SIGINT and SIGTERM as :class:`Interrupted` while :meth:`installed`, held back until the
    end of :meth:`deferred` sections (nested ones count)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self._depth = 0
        self._pending: int | None = None

    @contextmanager
    def installed(self) -> Iterator[None]:
        """Handle the signals in this block (main thread only; elsewhere Python's own
        handling stays); the previous handlers come back after it."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {s: signal.signal(s, self._handle) for s in self.SIGNALS}
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler)

    def _handle(self, signum: int, frame: Any) -> None:
        if self._depth:
            self._pending = signum
            return
        raise Interrupted(signum)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """A section a signal does not cut: it is raised when the section ends."""
        self._depth += 1
        try:
            yield
        finally:
            self._depth -= 1
            if not self._depth and self._pending is not None:
                signum, self._pending = self._pending, None
                raise Interrupted(signum)


@dataclass
class Progress:
    """Where a training run is: the ``stage`` running (None: none yet), its ``epoch``
    (1-based; 0 when not inside an epoch) of ``epochs``, the stage's latest file ``saved`` (its
    ``state.pt``, or ``model.pt`` once complete) after ``saved_epochs`` epochs, and the
    checkpoint being ``calibrating``."""

    out_dir: Path
    stage: str | None = None
    epoch: int = 0
    epochs: int = 0
    saved: Path | None = None
    saved_epochs: int = 0
    calibrating: Path | None = None

    def start_stage(self, stage: str, epochs: int, saved: Path | None, saved_epochs: int
                    ) -> None:
        """A stage begins (resumed from ``saved`` after ``saved_epochs`` epochs, or fresh)."""
        self.stage, self.epochs, self.epoch = stage, epochs, 0
        self.saved, self.saved_epochs = saved, saved_epochs

    def describe(self) -> str:
        """One line: where the run stopped and what is saved where."""
        if self.calibrating is not None:
            return (f"interrupted while calibrating {self.calibrating}: the trained model is "
                    "saved there, not yet calibrated")
        if self.stage is None:
            return f"interrupted before a stage started (nothing new saved in {self.out_dir})"
        where = (f"in stage {self.stage}, epoch {self.epoch}/{self.epochs}" if self.epoch
                 else f"in stage {self.stage} between epochs")
        if self.saved is None:
            return (f"interrupted {where}, before its first epoch was saved (completed stages "
                    f"stay in {self.out_dir})")
        return (f"interrupted {where}; saved: {self.stage} after epoch {self.saved_epochs}/"
                f"{self.epochs} in {self.saved}")
