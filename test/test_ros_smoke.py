"""rsee_ros messages over real DDS (loopback only): in one process, and between two processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.ros

TIMEOUT_S = 120.0  # waits end at their event; this only bounds a failure on a loaded machine


def _sample_message(label: str):
    from builtin_interfaces.msg import Time

    from rsee_ros.msg import ActionRecognition

    msg = ActionRecognition()
    msg.header.frame_id = "camera_optical"
    msg.header.stamp = Time(sec=12, nanosec=500)
    msg.source_topic = "/camera/image_raw"
    msg.label = label
    msg.class_id = 3
    msg.confidence = 0.75
    msg.top_k_labels = [label, "other"]
    msg.top_k_scores = [0.75, 0.25]
    msg.window_start = Time(sec=11, nanosec=0)
    msg.window_end = Time(sec=12, nanosec=500)
    msg.resolutions = [224, 0, 112, 84]
    msg.frames_processed = 3
    msg.window_length = 4
    msg.exited_early = True
    msg.gflops = 0.42
    msg.uniform_gflops = 1.2
    msg.latency_ms = 8.5
    return msg


def _check_received(msg, label: str) -> None:
    assert msg.label == label
    assert msg.header.frame_id == "camera_optical"
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 500)
    assert (msg.window_start.sec, msg.window_end.sec) == (11, 12)
    assert list(msg.resolutions) == [224, 0, 112, 84]
    assert list(msg.top_k_labels) == [label, "other"]
    assert list(msg.top_k_scores) == pytest.approx([0.75, 0.25])
    assert (msg.frames_processed, msg.window_length, msg.exited_early) == (3, 4, True)
    assert msg.gflops == pytest.approx(0.42)
    assert msg.latency_ms == pytest.approx(8.5)


def test_all_messages_construct() -> None:
    from rsee_ros.msg import ActionRecognition, ActionRecognitionArray, LabelInfo, RseeStatus

    array = ActionRecognitionArray(results=[_sample_message("wave"), ActionRecognition()])
    assert len(array.results) == 2
    info = LabelInfo(class_names=["a", "b"], class_ids=[0, 1], resolutions=[224, 112])
    assert list(info.resolutions) == [224, 112]
    status = RseeStatus(frames_dropped=2**40, max_resolution=224, device="cpu")
    assert status.frames_dropped == 2**40


def test_publish_and_receive_in_one_process(ros_context) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from rsee_ros.msg import ActionRecognition

    received = []
    pub_node = rclpy.create_node("rsee_smoke_pub", context=ros_context)
    sub_node = rclpy.create_node("rsee_smoke_sub", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    try:
        publisher = pub_node.create_publisher(ActionRecognition, "rsee_smoke", 10)
        sub_node.create_subscription(ActionRecognition, "rsee_smoke", received.append, 10)
        executor.add_node(pub_node)
        executor.add_node(sub_node)
        deadline = time.monotonic() + TIMEOUT_S
        while not received and time.monotonic() < deadline:
            publisher.publish(_sample_message("wave"))
            executor.spin_once(timeout_sec=0.05)
        assert received, f"no ActionRecognition received within {TIMEOUT_S} s"
        _check_received(received[0], "wave")
    finally:
        executor.shutdown()
        pub_node.destroy_node()
        sub_node.destroy_node()


PUBLISHER = textwrap.dedent(
    """
    import os, sys, time
    import rclpy
    from rclpy.signals import SignalHandlerOptions
    sys.path.insert(0, sys.argv[1])
    from test_ros_smoke import _sample_message
    from rsee_ros.msg import ActionRecognition

    assert os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    node = rclpy.create_node("rsee_smoke_remote_pub")
    publisher = node.create_publisher(ActionRecognition, "rsee_smoke_remote", 10)
    deadline = time.monotonic() + float(sys.argv[2])
    while time.monotonic() < deadline:
        publisher.publish(_sample_message("remote"))
        time.sleep(0.05)
    node.destroy_node()
    rclpy.shutdown()
    """
)


def test_publish_from_another_process(ros_context, ros_domain_id: int) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    from rsee_ros.msg import ActionRecognition

    env = dict(os.environ)  # carries the loopback settings and ROS_DOMAIN_ID from conftest
    assert env["ROS_AUTOMATIC_DISCOVERY_RANGE"] == "LOCALHOST"
    assert env["ROS_DOMAIN_ID"] == str(ros_domain_id)
    child = subprocess.Popen(
        [sys.executable, "-c", PUBLISHER, os.path.dirname(__file__), str(TIMEOUT_S + 10)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    received = []
    node = rclpy.create_node("rsee_smoke_remote_sub", context=ros_context)
    executor = SingleThreadedExecutor(context=ros_context)
    try:
        node.create_subscription(ActionRecognition, "rsee_smoke_remote", received.append, 10)
        executor.add_node(node)
        deadline = time.monotonic() + TIMEOUT_S
        while not received and time.monotonic() < deadline and child.poll() is None:
            executor.spin_once(timeout_sec=0.1)
    finally:
        executor.shutdown()
        node.destroy_node()
        child.terminate()
        try:
            output, _ = child.communicate(timeout=TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            output, _ = child.communicate()
    assert received, f"nothing received from the publisher process; its output:\n{output}"
    _check_received(received[0], "remote")
