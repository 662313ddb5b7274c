"""The carla-ros-bridge topic contract over real DDS: expert mode (SUMO drives, no controller),
every topic of docs/CONTRACTS.md arrives with its type, frame and stamp; route, instruction, the
lane map and /tf_static are latched for late subscribers; camera_info matches the image; /tf carries the
odometry's pose every step; the frame tree resolves the lidar and camera extrinsics."""

from __future__ import annotations

import math
import subprocess
import time

import numpy as np
import pytest
import rclpy
from carla_msgs.msg import CarlaEgoVehicleStatus, CarlaTrafficLightInfoList, CarlaTrafficLightStatusList
from nav_msgs.msg import Odometry, Path
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from sim_bridge_helpers import SCENARIO, SEED, VENV_BIN
from tf2_msgs.msg import TFMessage
from tps_common.frames import RigidTransform, TransformBuffer
from tps_common.tf import tf_qos, tf_static_listen_qos, transform_from_msg
from tps_msgs.msg import DrivingInstruction, GroundTruth, LaneMap
from tps_sim import conversions as conv
from tps_sim.sensors.rig import SensorRig

pytestmark = pytest.mark.ros

STEPS = 20
# Real-time-ish stepping gives the late subscriber time to join before the episode ends.
STEP_PERIOD_S = 0.05
LATE_JOIN_S = 0.5
RUN_TIMEOUT_S = 90.0
MIN_STEPS_SEEN = 5
# With 0.7 MB images in flight, Fast DDS's shared-memory port can overflow and drop a small
# reliable sample next to them (seen on /tf); the writer repairs it after its next heartbeat
# (3 s by default), so the bridge stays up long enough for that here.
LINGER_S = 4.0


def test_expert_mode_publishes_the_contract():
    argv = [str(VENV_BIN / "sim_bridge"), "--ros-args", "-p", f"scenario:={SCENARIO}",
            "-p", f"seed:={SEED}", "-p", "ego_driver:=expert", "-p", f"duration_s:={STEPS * 0.1}",
            "-p", f"step_period_s:={STEP_PERIOD_S}", "-p", "exit_on_end:=true",
            "-p", "camera_enabled:=true", "-p", "camera_every_n:=2",
            "-p", "lidar_beams:=8", "-p", "lidar_azimuth_steps:=256",
            "-p", f"exit_linger_s:={LINGER_S}"]
    context = rclpy.Context()
    rclpy.init(context=context)
    got: dict[str, list] = {t: [] for t in conv.TOPIC_TYPES}
    proc = None
    try:
        node = rclpy.create_node("contract_listener", context=context)
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        subs = {conv.TOPIC_CLOCK: (Clock, reliable), conv.TOPIC_LIDAR: (PointCloud2, qos_profile_sensor_data),
                conv.TOPIC_IMAGE: (Image, reliable), conv.TOPIC_CAMERA_INFO: (CameraInfo, reliable),
                conv.TOPIC_ODOMETRY: (Odometry, reliable),
                conv.TOPIC_STATUS: (CarlaEgoVehicleStatus, reliable),
                conv.TOPIC_GROUND_TRUTH: (GroundTruth, reliable), conv.TOPIC_TF: (TFMessage, tf_qos()),
                conv.TOPIC_LIGHT_STATUS: (CarlaTrafficLightStatusList, reliable)}
        for topic, (cls, qos) in subs.items():
            node.create_subscription(cls, topic, got[topic].append, qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        # wait for the first message, then join the latched topics late
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not got[conv.TOPIC_CLOCK] and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        time.sleep(LATE_JOIN_S)
        node.create_subscription(Path, conv.TOPIC_ROUTE, got[conv.TOPIC_ROUTE].append, latched)
        node.create_subscription(DrivingInstruction, conv.TOPIC_INSTRUCTION,
                                 got[conv.TOPIC_INSTRUCTION].append, latched)
        node.create_subscription(LaneMap, conv.TOPIC_LANE_MAP, got[conv.TOPIC_LANE_MAP].append, latched)
        node.create_subscription(TFMessage, conv.TOPIC_TF_STATIC, got[conv.TOPIC_TF_STATIC].append,
                                 tf_static_listen_qos())
        node.create_subscription(CarlaTrafficLightInfoList, conv.TOPIC_LIGHT_INFO,
                                 got[conv.TOPIC_LIGHT_INFO].append, latched)
        while proc.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        for _ in range(20):
            executor.spin_once(timeout_sec=0.02)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        if proc is not None and proc.poll() is None:
            proc.kill()
    output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    for topic, msgs in got.items():
        assert msgs, f"nothing received on {topic}"
    assert len(got[conv.TOPIC_ROUTE]) == 1 and len(got[conv.TOPIC_ROUTE][0].poses) > 1
    assert got[conv.TOPIC_INSTRUCTION][0].text
    # map knowledge, latched: the lanes the route drives through are in it
    lane_map = got[conv.TOPIC_LANE_MAP]
    assert len(lane_map) == 1 and lane_map[0].header.frame_id == "map"
    lane_ids = {ln.id for ln in lane_map[0].lanes}
    assert lane_map[0].route_lane_ids and set(lane_map[0].route_lane_ids) <= lane_ids
    # The merge scenario has no traffic lights: the info is latched all the same (empty), the
    # status is published every step (empty).
    assert len(got[conv.TOPIC_LIGHT_INFO]) == 1 and got[conv.TOPIC_LIGHT_INFO][0].traffic_lights == []
    assert all(m.traffic_lights == [] for m in got[conv.TOPIC_LIGHT_STATUS])
    clocks = [conv.stamp_to_ns(m.clock) for m in got[conv.TOPIC_CLOCK]]
    assert clocks == sorted(clocks) and clocks[-1] == STEPS * 100_000_000
    gt = got[conv.TOPIC_GROUND_TRUTH][-1]
    assert gt.header.frame_id == "map" and gt.step == STEPS
    odom = got[conv.TOPIC_ODOMETRY][-1]
    assert (odom.header.frame_id, odom.child_frame_id) == ("map", "ego_vehicle")
    assert odom.pose.pose.position.x == pytest.approx(gt.ego.center.x)
    pc = got[conv.TOPIC_LIDAR][-1]
    assert pc.header.frame_id == conv.LIDAR_FRAME and pc.point_step == 16 and pc.width > 0
    img, info = got[conv.TOPIC_IMAGE][0], got[conv.TOPIC_CAMERA_INFO][0]
    assert (info.width, info.height) == (img.width, img.height)
    assert img.header.stamp == info.header.stamp
    assert conv.stamp_to_ns(img.header.stamp) % 200_000_000 == 0, "camera every 2nd step"
    status = got[conv.TOPIC_STATUS][-1]
    assert status.header.stamp == gt.header.stamp
    assert status.velocity == pytest.approx(math.hypot(gt.ego.velocity.x, gt.ego.velocity.y),
                                            abs=1e-3)

    # The frame tree (docs/CONTRACTS.md "Frames and units"), defaults = carla-ros-bridge names.
    assert len(got[conv.TOPIC_TF_STATIC]) == 1
    static = {(t.header.frame_id, t.child_frame_id): transform_from_msg(t.transform)
              for t in got[conv.TOPIC_TF_STATIC][0].transforms}
    rig = SensorRig()
    assert set(static) == {("ego_vehicle", "base_link"), ("ego_vehicle", "ego_vehicle/lidar"),
                           ("ego_vehicle", "ego_vehicle/rgb_front")}
    assert static[("ego_vehicle", "base_link")].almost_equal(RigidTransform.identity())
    assert static[("ego_vehicle", "ego_vehicle/lidar")].almost_equal(
        RigidTransform.from_xyz_rpy((0.0, 0.0, 1.8)))
    # The camera frame is the optical one: its z axis looks along base_link +x, its x axis right.
    cam = static[("ego_vehicle", "ego_vehicle/rgb_front")]
    assert cam.almost_equal(rig.camera_optical_transform)
    assert np.allclose(cam.rotation[:, 2], [1, 0, 0]) and np.allclose(cam.rotation[:, 0], [0, -1, 0])
    assert img.header.frame_id == "ego_vehicle/rgb_front" == info.header.frame_id
    # /tf: map -> ego_vehicle every step, stamped with the step, equal to the odometry
    odom_by_stamp = {conv.stamp_to_ns(o.header.stamp): o for o in got[conv.TOPIC_ODOMETRY]}
    tfs = [m.transforms[0] for m in got[conv.TOPIC_TF]]
    # (volatile topics: the first steps may go by before discovery matched this subscriber)
    assert len(tfs) >= MIN_STEPS_SEEN and all(len(m.transforms) == 1 for m in got[conv.TOPIC_TF])
    matched = 0
    for tf in tfs:
        assert (tf.header.frame_id, tf.child_frame_id) == ("map", "ego_vehicle")
        o = odom_by_stamp.get(conv.stamp_to_ns(tf.header.stamp))
        if o is not None:
            matched += 1
            assert tf.transform.translation.x == o.pose.pose.position.x
            assert tf.transform.translation.y == o.pose.pose.position.y
            assert tf.transform.rotation == o.pose.pose.orientation
    assert matched >= MIN_STEPS_SEEN
    # The whole tree resolves: the lidar origin in map is the ego position + 1.8 m up.
    buf = TransformBuffer()
    for t in got[conv.TOPIC_TF_STATIC][0].transforms:
        buf.set_transform(t.header.frame_id, t.child_frame_id, transform_from_msg(t.transform),
                          static=True)
    buf.set_transform("map", "ego_vehicle", transform_from_msg(tfs[-1].transform), static=False)
    lidar_in_map = buf.lookup("map", "ego_vehicle/lidar").translation
    at = odom_by_stamp[conv.stamp_to_ns(tfs[-1].header.stamp)].pose.pose.position
    assert np.allclose(lidar_in_map, [at.x, at.y, 1.8])
