"""tps_common.tf over real DDS: a late listener gets latched /tf_static from every publisher, an
extrinsic source switches from the configured transform to the tree (and to /tf, carla-ros-bridge
style), bad transforms are refused and counted."""

from __future__ import annotations

import math
import time

import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from tf2_msgs.msg import TFMessage
from tps_common.frames import ORIGIN_CONFIGURED, ORIGIN_TF, ORIGIN_TF_STATIC, RigidTransform
from tps_common.tf import (
    TF_STATIC_TOPIC,
    TF_TOPIC,
    ExtrinsicSource,
    TransformListener,
    tf_qos,
    tf_static_broadcast_qos,
    transform_from_msg,
    transform_stamped,
)

pytestmark = pytest.mark.ros

DISCOVERY_TIMEOUT_S = 20.0  # discovery on a loaded 2-core host
CONFIGURED = RigidTransform.from_xyz_rpy((0.0, 0.0, 1.8))
MOUNTED = RigidTransform.from_xyz_rpy((1.2, 0.0, 2.0), (0.0, math.radians(2.0), math.radians(1.0)))
CARLA_STYLE = RigidTransform.from_xyz_rpy((1.0, 0.1, 2.1), (0.0, 0.0, 0.05))


@pytest.fixture
def ros():
    context = rclpy.Context()
    rclpy.init(context=context)
    executor = SingleThreadedExecutor(context=context)
    nodes = []

    def make(name):
        node = rclpy.create_node(name, context=context)
        executor.add_node(node)
        nodes.append(node)
        return node

    yield make, executor
    executor.shutdown()
    for node in nodes:
        node.destroy_node()
    rclpy.shutdown(context=context)


def spin_until(executor, predicate, timeout_s=DISCOVERY_TIMEOUT_S, action=None):
    deadline = time.monotonic() + timeout_s
    next_action = 0.0
    while time.monotonic() < deadline:
        if action is not None and time.monotonic() >= next_action:
            action()
            next_action = time.monotonic() + 0.25
        executor.spin_once(timeout_sec=0.02)
        if predicate():
            return True
    return bool(predicate())


def test_transform_message_round_trip():
    msg = transform_stamped("ego_vehicle", "ego_vehicle/lidar", MOUNTED, 12.25)
    assert (msg.header.frame_id, msg.child_frame_id) == ("ego_vehicle", "ego_vehicle/lidar")
    assert (msg.header.stamp.sec, msg.header.stamp.nanosec) == (12, 250_000_000)
    assert transform_from_msg(msg.transform).almost_equal(MOUNTED, tol_m=1e-12, tol_rad=1e-9)


def test_extrinsic_source_prefers_tf_static_then_follows_tf(ros):
    make, executor = ros
    vehicle = make("fake_vehicle")
    static_pub = vehicle.create_publisher(TFMessage, TF_STATIC_TOPIC, tf_static_broadcast_qos())
    tf_pub = vehicle.create_publisher(TFMessage, TF_TOPIC, tf_qos())
    # Latched before anyone listens: every static edge of this publisher in one message.
    static_pub.publish(TFMessage(transforms=[
        transform_stamped("ego_vehicle", "base_link", RigidTransform.identity()),
        transform_stamped("ego_vehicle", "ego_vehicle/lidar", MOUNTED)]))
    # A second publisher of static transforms (another driver): a listener gets both.
    camera_driver = make("fake_camera_driver")
    camera_pub = camera_driver.create_publisher(TFMessage, TF_STATIC_TOPIC, tf_static_broadcast_qos())
    camera_pub.publish(TFMessage(transforms=[transform_stamped(
        "base_link", "camera_optical", RigidTransform.from_xyz_rpy((1.5, 0, 1.5),
                                                                   (-math.pi / 2, 0, -math.pi / 2)))]))

    node = make("perception_like")
    source = ExtrinsicSource(node, target_frame="base_link", sensor_frame="ego_vehicle/lidar",
                             configured=CONFIGURED, name="lidar")
    assert source.resolve().origin == ORIGIN_CONFIGURED  # nothing received yet
    assert source.transform() is CONFIGURED
    assert spin_until(executor, lambda: source.resolve().origin == ORIGIN_TF_STATIC)
    assert source.transform().almost_equal(MOUNTED, tol_m=1e-12, tol_rad=1e-9)
    assert spin_until(executor, lambda: source.listener.buffer.can_transform("camera_optical",
                                                                            "ego_vehicle/lidar"))
    values = source.diagnostic_values()
    assert values["lidar_extrinsic_origin"] == "tf_static" and values["target_frame"] == "base_link"
    assert values["lidar_extrinsic_xyz_m"] == "1.200 0.000 2.000"

    # carla-ros-bridge sends sensor transforms on /tf: they are used, labelled 'tf'
    def send_dynamic():
        tf_pub.publish(TFMessage(transforms=[
            transform_stamped("map", "ego_vehicle", RigidTransform.from_xyz_rpy((5, 6, 0)), 1.0),
            transform_stamped("ego_vehicle", "ego_vehicle/lidar", CARLA_STYLE, 1.0)]))

    assert spin_until(executor, lambda: source.resolve().origin == ORIGIN_TF, action=send_dynamic)
    assert source.transform().almost_equal(CARLA_STYLE, tol_m=1e-12, tol_rad=1e-9)
    assert source.listener.buffer.lookup("map", "base_link").almost_equal(
        RigidTransform.from_xyz_rpy((5, 6, 0)))

    # a malformed transform is refused and counted, the rest of its message is kept
    bad = transform_stamped("ego_vehicle", "radar", RigidTransform.identity())
    bad.transform.rotation.w = 0.0
    good = transform_stamped("ego_vehicle", "imu", RigidTransform.from_xyz_rpy((0.1, 0, 0.5)))

    def send_bad():
        tf_pub.publish(TFMessage(transforms=[bad, good]))

    assert spin_until(executor, lambda: source.listener.rejected > 0, action=send_bad)
    assert "'ego_vehicle' -> 'radar' refused" in source.listener.last_error
    assert source.listener.buffer.can_transform("base_link", "imu")
    assert not source.listener.buffer.can_transform("base_link", "radar")


def test_static_only_listener_ignores_tf(ros):
    make, executor = ros
    pub_node = make("fake_vehicle")
    tf_pub = pub_node.create_publisher(TFMessage, TF_TOPIC, tf_qos())
    node = make("listener")
    changes = []
    listener = TransformListener(node, static_only=True, on_change=lambda: changes.append(1))
    spin_until(executor, lambda: False, timeout_s=1.0,
               action=lambda: tf_pub.publish(TFMessage(transforms=[transform_stamped(
                   "map", "ego_vehicle", RigidTransform.identity())])))
    assert listener.buffer.frames == set() and not changes and listener.received == 0
    listener.destroy()
