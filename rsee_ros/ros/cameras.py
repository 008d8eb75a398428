"""The node's camera subscriptions: message type, QoS, lazy subscription, wrong-type topics.

* A topic ending in ``/compressed`` carries ``sensor_msgs/CompressedImage``, any other
  ``sensor_msgs/Image``.
* QoS: ``best_effort`` (the sensor-data reliability, matches every publisher), ``reliable``, or
  ``auto``: decided from the publishers found on the topic, and decided again whenever they
  change (a publisher that appears after the node started is matched with its own reliability:
  reliable when every publisher is reliable, else best effort). rclpy's QoS overriding
  parameters are declared for each subscription (``qos_overrides.<topic>.subscription.depth``,
  ``.history``, and ``.reliability`` unless ``auto`` decides it), the idiom of image_pipeline;
  they take precedence over ``qos_reliability`` / ``qos_depth``.
* ``lazy``: subscribe to the cameras only while someone subscribes to the node's results, so an
  idle node costs the cameras nothing (off by default: a recording robot wants results in the
  bag whether or not anyone watches).
* A topic that is published with another type (a ``std_msgs/String`` on an image topic) never
  connects and would otherwise look like a silent camera: it is warned about and reported.

:meth:`CameraSubscriptions.refresh` applies all of this; the node calls it periodically.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.qos import QoSPolicyKind, ReliabilityPolicy
from rclpy.qos_overriding_options import QoSOverridingOptions
from sensor_msgs.msg import CompressedImage, Image

from rsee_ros.ros import qos

__all__ = ["CameraSubscriptions", "image_type_for"]

_TYPE_NAMES = {Image: "sensor_msgs/msg/Image", CompressedImage: "sensor_msgs/msg/CompressedImage"}


def image_type_for(topic: str) -> type:
    """The image message type of a camera topic (by the ``/compressed`` convention)."""
    return CompressedImage if topic.rstrip("/").endswith("/compressed") else Image


class CameraSubscriptions:
    """Subscriptions to ``topics``; ``on_image(topic, msg)`` gets every image (see module)."""

    def __init__(
        self,
        node: Any,
        topics: list[str],
        on_image: Callable[[str, Any], None],
        *,
        reliability: str,
        depth: int,
        lazy: bool = False,
        listeners: Callable[[], int] = lambda: 1,
    ) -> None:
        self.node = node
        self.reliability = reliability
        self.depth = depth
        self.lazy = lazy
        self._listeners = listeners
        self._on_image = on_image
        self._subs: dict[str, Any] = {}  # requested topic -> subscription
        self._chosen: dict[str, str] = {}  # requested topic -> reliability in use
        self.topics = list(dict.fromkeys(topics))
        self.names: dict[str, str] = {t: t for t in self.topics}  # requested -> resolved name
        self.problems: dict[str, str] = {}
        """Resolved topic -> what is wrong with it (published with another type)."""
        self.refresh()

    @property
    def active(self) -> bool:
        """True while the cameras are subscribed."""
        return bool(self._subs)

    def describe(self) -> str:
        """The topics and their types, for the start-up log line."""
        return ", ".join(f"{self.names[t]} ({image_type_for(t).__name__})" for t in self.topics)

    def refresh(self) -> None:
        """Subscribe or unsubscribe (lazy), re-decide ``auto`` QoS, look for wrong types."""
        wanted = not self.lazy or self._listeners() > 0
        for topic in self.topics:
            if not wanted:
                self._drop(topic)
                continue
            reliability = self._decide(topic)
            if self._chosen.get(topic) != reliability:
                self._drop(topic)
                self._subscribe(topic, reliability)
        self._check_types()

    def close(self) -> None:
        """Destroy every subscription."""
        for topic in list(self._subs):
            self._drop(topic)

    # ------------------------------------------------------------------------------------------

    def _decide(self, topic: str) -> str:
        if self.reliability != "auto":
            return self.reliability
        infos = self.node.get_publishers_info_by_topic(self.names[topic])
        infos = [i for i in infos if i.topic_type == _TYPE_NAMES[image_type_for(topic)]]
        if infos and all(i.qos_profile.reliability == ReliabilityPolicy.RELIABLE for i in infos):
            return "reliable"
        return "best_effort"

    def _subscribe(self, topic: str, reliability: str) -> None:
        kinds = [QoSPolicyKind.HISTORY, QoSPolicyKind.DEPTH]
        if self.reliability != "auto":
            kinds.append(QoSPolicyKind.RELIABILITY)
        name = [topic]  # replaced by the resolved name once the subscription exists

        def callback(msg: Any) -> None:
            self._on_image(name[0], msg)

        sub = self.node.create_subscription(
            image_type_for(topic), topic, callback, qos.stream(reliability, self.depth),
            qos_overriding_options=QoSOverridingOptions(policy_kinds=kinds),
        )
        name[0] = self.names[topic] = sub.topic_name
        self._subs[topic] = sub
        self._chosen[topic] = reliability

    def _drop(self, topic: str) -> None:
        sub = self._subs.pop(topic, None)
        self._chosen.pop(topic, None)
        if sub is not None:
            self.node.destroy_subscription(sub)

    def _check_types(self) -> None:
        problems = {}
        for topic in self.topics:
            name, expected = self.names[topic], _TYPE_NAMES[image_type_for(topic)]
            others = sorted({i.topic_type for i in self.node.get_publishers_info_by_topic(name)
                             if i.topic_type != expected})
            if others:
                problems[name] = (f"{name} is published as {', '.join(others)}, not {expected}: "
                                  "those messages never arrive")
        for name, text in problems.items():
            if self.problems.get(name) != text:
                self.node.get_logger().warning(text)
        self.problems = problems
