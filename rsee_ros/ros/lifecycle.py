"""Running one node in a process: signals, spinning and an orderly shutdown.

rclpy's own signal handlers shut the context down from inside the signal. Whatever the process
does next (a last wait for acknowledgements, destroying the node) may then meet an invalid
context and raise, depending on where the signal landed (seen on Jazzy as ``RCLError: ...
publisher's context is invalid`` from ``wait_for_all_acked``). Here rclpy is initialised without
its handlers: SIGINT and SIGTERM only record a stop request, the spin loop sees it within
:data:`POLL_S`, and the node is finished and destroyed on a context that is still valid. A
signal can therefore never turn a requested stop into a traceback, whenever it arrives.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import TypeVar

__all__ = ["POLL_S", "StopRequest", "exit_status", "process_stop_request", "run_node"]

POLL_S = 0.1
"""Longest time the spin loop waits before it looks at the stop request again."""

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

NodeT = TypeVar("NodeT")


class StopRequest:
    """Set by SIGINT / SIGTERM once :meth:`install` ran (main thread only); never raises."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signal: int | None = None
        """The signal that asked to stop, None when none did."""

    def install(self) -> StopRequest:
        """Handle SIGINT and SIGTERM by setting this request; returns ``self``."""
        for number in _STOP_SIGNALS:
            signal.signal(number, self._on_signal)
        return self

    def _on_signal(self, number: int, _frame: FrameType | None) -> None:
        self.signal = number
        self._event.set()

    def set(self) -> None:
        """Ask to stop without a signal."""
        self._event.set()

    @property
    def requested(self) -> bool:
        """True once a stop was asked for."""
        return self._event.is_set()


_PROCESS_STOP: StopRequest | None = None


def process_stop_request() -> StopRequest:
    """The process's stop request, installed on the first call (from the main thread).

    Node programs call this before their heavy imports, so that a signal during start-up is a
    clean stop as well.
    """
    global _PROCESS_STOP
    if _PROCESS_STOP is None:
        _PROCESS_STOP = StopRequest().install()
    return _PROCESS_STOP


def exit_status(status: int) -> int:
    """``status``, once SIGINT and SIGTERM are ignored: what a node program returns to
    ``sys.exit``. The program is ending, so a stop asked for now has nothing left to stop; and
    while the interpreter finalises it puts the default handlers back (Python-level handlers
    go), so a signal landing then would otherwise kill the process (exit status -2, seen when a
    benchmark stopped a source that was already exiting on its own). Ignored signals stay
    ignored through finalisation."""
    for number in _STOP_SIGNALS:
        signal.signal(number, signal.SIG_IGN)
    return status


def run_node(
    name: str,
    build: Callable[[], NodeT],
    *,
    args: list[str] | None = None,
    stop: StopRequest | None = None,
    done: Callable[[NodeT], bool] | None = None,
    finish: Callable[[NodeT, bool], int] | None = None,
    startup_errors: tuple[type[Exception], ...] = (),
) -> int:
    """Run the node ``build()`` makes until a signal, ``done(node)`` or the context ends.

    ``finish(node, stopped_by_signal)`` runs afterwards, on the still valid context, and returns
    the exit status (default 0). ``startup_errors`` (and rclpy's parameter and name errors) are
    configuration errors: logged as one line under ``name``, exit status 1, no traceback.
    ``stop`` defaults to :func:`process_stop_request`. Returns the process's exit status.
    """
    import rclpy
    from rclpy.exceptions import NameValidationException, ParameterException
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.signals import SignalHandlerOptions

    stop = stop or process_stop_request()
    if stop.requested:
        return 0
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    context = rclpy.get_default_context()
    node = None
    executor = None
    status = 0
    try:
        node = build()
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        while not stop.requested and context.ok() and not (done is not None and done(node)):
            executor.spin_once(timeout_sec=POLL_S)
        if finish is not None and context.ok():
            status = finish(node, stop.requested)
    except ExternalShutdownException:
        pass  # someone else shut the context down: a stop, not a failure
    except (ParameterException, NameValidationException, *startup_errors) as exc:
        rclpy.logging.get_logger(name).error(str(exc))
        status = 1
    finally:
        if executor is not None:
            executor.shutdown(timeout_sec=1.0)
        if node is not None:
            node.destroy_node()
        context.try_shutdown()
    return status
