"""The benchmark's own ROS node: it records what the rsee_nodes publish (results, status,
diagnostics, with receive times) and sets parameters of the other nodes. Needs rclpy and the
built ``rsee_ros`` messages."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.srv import SetParameters
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter

from rsee_ros.data.stamps import stamp_ns
from rsee_ros.evaluation.node_bench.config import MAX_DEPTH, BenchNodeError
from rsee_ros.evaluation.node_bench.metrics import Received
from rsee_ros.msg import ActionRecognition, LabelInfo, RseeStatus
from rsee_ros.ros.qos import latched, stream

__all__ = ["Listener", "Watch"]


@dataclass
class Watch:
    """What the listener received from one rsee_node, with monotonic receive times."""

    results: list[Received] = field(default_factory=list)
    status: list[tuple[float, Any]] = field(default_factory=list)
    diagnostics: list[tuple[float, dict[str, str]]] = field(default_factory=list)
    labels: int = 0
    subscriptions: list[Any] = field(default_factory=list)


class Listener:
    """Results, status and diagnostics of the rsee_nodes with receive times, and
    ``set_parameters`` clients; spun by a background thread."""

    def __init__(self, context: Any) -> None:
        self.node = rclpy.create_node("rsee_bench_node_listener", context=context)
        self._lock = threading.Lock()
        self._watches: dict[str, Watch] = {}
        self._clients: dict[str, Any] = {}
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics,
                                      stream("reliable", MAX_DEPTH))
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self._stop = False
        self._thread = threading.Thread(target=self._spin, name="rsee_bench_spin", daemon=True)
        self._thread.start()

    def watch(self, name: str) -> None:
        """Subscribe to the results, status and label info of the rsee_node named ``name``."""
        watch = Watch()
        with self._lock:
            self._watches[name] = watch

        def on_result(msg: Any) -> None:
            now_ns = time.time_ns()
            with self._lock:
                watch.results.append(Received(time.monotonic(), now_ns, stamp_ns(msg.header.stamp),
                                              int(msg.class_id), float(msg.latency_ms),
                                              msg.source_topic))

        def on_status(msg: Any) -> None:
            with self._lock:
                watch.status.append((time.monotonic(), msg))

        def on_label(msg: Any) -> None:
            with self._lock:
                watch.labels += 1

        reliable = stream("reliable", MAX_DEPTH)
        watch.subscriptions = [
            self.node.create_subscription(ActionRecognition, f"/{name}/actions", on_result,
                                          reliable),
            self.node.create_subscription(RseeStatus, f"/{name}/status", on_status, reliable),
            self.node.create_subscription(LabelInfo, f"/{name}/label_info", on_label, latched()),
        ]

    def unwatch(self, name: str) -> None:
        """Stop recording node ``name`` (its subscriptions are destroyed, its receipts kept
        out of later snapshots)."""
        with self._lock:
            watch = self._watches.pop(name, None)
        for subscription in watch.subscriptions if watch else []:
            self.node.destroy_subscription(subscription)

    def _spin(self) -> None:
        while not self._stop and self.executor.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - the context was shut down under us
                if self._stop or not self.executor.context.ok():
                    return
                raise

    def _on_diagnostics(self, msg: Any) -> None:
        now = time.monotonic()
        for status in msg.status:
            name = status.name.split(":", 1)[0].lstrip("/")  # "/rsee_node: action recognition"
            with self._lock:
                watch = self._watches.get(name)
                if watch is not None:
                    watch.diagnostics.append((now, {kv.key: kv.value for kv in status.values}))

    def snapshot(self, name: str) -> tuple[list, list, list]:
        """Copies of (results, status, diagnostics) received from node ``name``."""
        with self._lock:
            w = self._watches[name]
            return list(w.results), list(w.status), list(w.diagnostics)

    def node_ready(self, name: str) -> bool:
        """The node published its label info and its result publisher is in the graph."""
        with self._lock:
            labels = self._watches[name].labels
        return labels > 0 and self.node.count_publishers(f"/{name}/actions") > 0

    def set_parameters(self, node: str, values: dict[str, Any], timeout_s: float = 30.0) -> None:
        """Set parameters of another node through its ``set_parameters`` service."""
        client = self._clients.get(node)
        if client is None:
            client = self._clients[node] = self.node.create_client(
                SetParameters, f"/{node}/set_parameters"
            )
        if not client.wait_for_service(timeout_sec=timeout_s):
            raise BenchNodeError(f"/{node}/set_parameters is not available")
        request = SetParameters.Request(
            parameters=[Parameter(k, value=v).to_parameter_msg() for k, v in values.items()]
        )
        future = client.call_async(request)
        deadline = time.monotonic() + timeout_s
        while not future.done() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not future.done():
            raise BenchNodeError(f"/{node}/set_parameters did not answer in {timeout_s:g} s")
        for name, result in zip(values, future.result().results):
            if not result.successful:
                raise BenchNodeError(f"{node} refused {name}={values[name]!r}: {result.reason}")

    def close(self) -> None:
        """Stop the spin thread and destroy the node."""
        self._stop = True
        self._thread.join(2.0)
        self.executor.shutdown(timeout_sec=1.0)
        self.node.destroy_node()
