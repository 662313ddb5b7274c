"""Every tps_msgs and carla_msgs message type, published from another process over real DDS,
arrives field-for-field intact; and carla_msgs matches carla-ros-bridge exactly."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from roundtrip_values import default_leaves, fill, message_classes, msg_files, to_plain

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "ros2_ws/src"
PUBLISHER = Path(__file__).with_name("roundtrip_publisher.py")
INTERFACE_PACKAGES = sorted(msg_files(SRC))  # every workspace package with a msg/ folder
RECEIVE_TIMEOUT_S = 60.0  # generous: 2 shared cores
STOP_TIMEOUT_S = 10.0

CARLA_FIELDS = {
    "CarlaEgoVehicleControl": {
        "header": "std_msgs/Header", "throttle": "float", "steer": "float", "brake": "float",
        "hand_brake": "boolean", "reverse": "boolean", "gear": "int32", "manual_gear_shift": "boolean",
    },
    "CarlaEgoVehicleStatus": {
        "header": "std_msgs/Header", "velocity": "float", "acceleration": "geometry_msgs/Accel",
        "orientation": "geometry_msgs/Quaternion", "control": "carla_msgs/CarlaEgoVehicleControl",
    },
    "CarlaBoundingBox": {"center": "geometry_msgs/Vector3", "size": "geometry_msgs/Vector3"},
    "CarlaTrafficLightInfo": {
        "id": "uint32", "transform": "geometry_msgs/Pose", "trigger_volume": "carla_msgs/CarlaBoundingBox",
    },
    "CarlaTrafficLightInfoList": {"traffic_lights": "sequence<carla_msgs/CarlaTrafficLightInfo>"},
    "CarlaTrafficLightStatus": {"id": "uint32", "state": "uint8"},
    "CarlaTrafficLightStatusList": {"traffic_lights": "sequence<carla_msgs/CarlaTrafficLightStatus>"},
}  # fmt: skip
# carla-ros-bridge's constants (CarlaTrafficLightStatus), name and value.
CARLA_CONSTANTS = {"CarlaTrafficLightStatus": {"RED": 0, "YELLOW": 1, "GREEN": 2, "OFF": 3, "UNKNOWN": 4}}


def _all_types() -> dict[str, type]:
    return {f"{pkg}/{name}": cls for pkg in INTERFACE_PACKAGES for name, cls in message_classes(pkg).items()}


def test_installed_types_match_the_msg_files():
    assert {"tps_msgs", "carla_msgs"} <= set(INTERFACE_PACKAGES)
    files = msg_files(SRC)
    for pkg in INTERFACE_PACKAGES:
        assert set(message_classes(pkg)) == files[pkg], f"{pkg}: installed types differ from its .msg files"
    assert len(_all_types()) == sum(len(v) for v in files.values())


def test_carla_msgs_fields_match_carla_ros_bridge():
    classes = message_classes("carla_msgs")
    assert set(classes) == set(CARLA_FIELDS)
    for name, fields in CARLA_FIELDS.items():
        actual = classes[name].get_fields_and_field_types()
        assert list(actual.items()) == list(fields.items()), name  # names, types and order


def test_carla_msgs_constants_match_carla_ros_bridge():
    classes = message_classes("carla_msgs")
    for name, constants in CARLA_CONSTANTS.items():
        for const, value in constants.items():
            assert getattr(classes[name], const) == value, f"{name}.{const}"


def test_generated_messages_fill_every_field():
    for type_name, cls in _all_types().items():
        filled = to_plain(fill(cls))
        assert default_leaves(filled, to_plain(cls())) == [], type_name
        assert fill(cls) == fill(cls)  # deterministic: both processes build the same message


@pytest.mark.ros
def test_every_message_type_round_trips_over_dds():
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

    types = _all_types()
    prefix = f"/roundtrip_{uuid.uuid4().hex[:8]}"
    qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    publisher = subprocess.Popen(
        [sys.executable, str(PUBLISHER), prefix, *types], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True,
    )
    context = rclpy.Context()
    rclpy.init(context=context)
    received: dict[str, object] = {}
    try:
        node = rclpy.create_node("roundtrip_subscriber", context=context)
        for type_name, cls in types.items():
            node.create_subscription(
                cls, f"{prefix}/{type_name}", lambda msg, t=type_name: received.setdefault(t, msg), qos
            )
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while len(received) < len(types) and time.monotonic() < deadline and publisher.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        node.destroy_node()
    finally:
        context.try_shutdown()
        publisher.send_signal(signal.SIGINT)
        try:
            out, _ = publisher.communicate(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            publisher.kill()
            out, _ = publisher.communicate()

    assert f"READY {len(types)}" in out, out
    missing = sorted(set(types) - set(received))
    assert not missing, f"never received: {missing}\npublisher output:\n{out}"
    for type_name, cls in types.items():
        msg = received[type_name]
        assert type(msg) is cls
        assert to_plain(msg) == to_plain(fill(cls)), type_name
        assert msg == fill(cls), type_name
