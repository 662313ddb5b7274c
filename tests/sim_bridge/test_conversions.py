"""tps_sim.conversions: message builders (layout, frames, stamps, units) and CDR round trips."""

from __future__ import annotations

import math

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from tps_inference.conversions import image_to_array, pointcloud2_to_xyzi
from tps_msgs.msg import GroundTruth
from tps_sim import conversions as conv
from tps_sim.world.state import AgentState

STAMP_S = 12.3


def agent(aid: int, x: float, y: float, yaw: float) -> AgentState:
    return AgentState(id=aid, sim_id=f"veh{aid}", class_id=1, center=(x, y, 0.75), yaw=yaw,
                      size=(4.5, 1.9, 1.5), velocity=(3.0, -1.0), speed_mps=3.16, accel_mps2=0.2,
                      yaw_rate=-0.1)


def test_stamp_exact_nanoseconds():
    t = conv.stamp(STAMP_S)
    assert (t.sec, t.nanosec) == (12, 300_000_000)
    assert conv.stamp_to_ns(conv.stamp(0.1 * 3)) == 300_000_000
    assert conv.stamp_to_s(t) == pytest.approx(STAMP_S)


def test_pointcloud_layout_and_roundtrip():
    pts = np.array([[1.0, 2.0, -1.8, 0.5], [np.nan, 0.0, 0.0, 0.1]], np.float32)
    msg = conv.pointcloud_msg(pts, STAMP_S)
    assert msg.point_step == 16 and msg.row_step == 32 and msg.header.frame_id == conv.LIDAR_FRAME
    assert [(f.name, f.offset) for f in msg.fields] == [("x", 0), ("y", 4), ("z", 8),
                                                        ("intensity", 12)]
    assert msg.is_dense is False
    back = pointcloud2_to_xyzi(deserialize_message(serialize_message(msg), type(msg)))
    np.testing.assert_array_equal(back, pts)
    local = conv._array_to_pointcloud2_local(pts, msg.header)
    assert bytes(local.data) == bytes(msg.data) and local.fields == msg.fields


def test_image_and_camera_info():
    rgb = np.random.default_rng(0).integers(0, 255, (4, 6, 3), dtype=np.uint8)
    img = conv.image_msg(rgb, STAMP_S)
    assert img.encoding == "rgb8" and img.step == 18
    np.testing.assert_array_equal(image_to_array(img), rgb)
    k = [100.0, 0.0, 3.0, 0.0, 100.0, 2.0, 0.0, 0.0, 1.0]
    info = conv.camera_info_msg({"width": 6, "height": 4, "K": k,
                                 "P": k[:3] + [0.0] + k[3:6] + [0.0] + k[6:] + [0.0]}, STAMP_S)
    assert list(info.k) == k and info.width == 6 and info.header.frame_id == conv.CAMERA_FRAME


def test_odometry_and_status():
    odom = conv.odometry_msg((10.0, -5.0, math.pi / 2), 7.0, 0.2, STAMP_S)
    q = odom.pose.pose.orientation
    assert 2 * math.atan2(q.z, q.w) == pytest.approx(math.pi / 2)
    assert (odom.header.frame_id, odom.child_frame_id) == ("map", "ego_vehicle")
    assert odom.twist.twist.linear.x == 7.0 and odom.twist.twist.angular.z == 0.2
    st = conv.vehicle_status_msg(7.0, -1.5, 0.3, {"throttle": 0.2, "steer": 0.1, "brake": 0.0},
                                 STAMP_S)
    assert st.velocity == 7.0 and st.acceleration.linear.x == -1.5
    assert st.control.throttle == pytest.approx(0.2) and st.control.steer == pytest.approx(0.1)


def test_path_faces_along_route():
    path = conv.path_msg(np.array([[0.0, 0.0], [0.0, 10.0], [-10.0, 10.0]]))
    yaws = [2 * math.atan2(p.pose.orientation.z, p.pose.orientation.w) for p in path.poses]
    assert yaws == pytest.approx([math.pi / 2, math.pi, math.pi])
    assert path.header.frame_id == "map"


def test_ground_truth_with_futures_roundtrip():
    class State:
        step = 7
        ego = agent(0, 0.0, 0.0, 0.0)
        agents = (agent(4, 20.0, 3.0, 0.1), agent(9, -8.0, 0.0, 3.0))
        collisions = (9,)

    fut = np.array([[21.0, 3.0], [22.0, 3.0], [np.nan, np.nan]])
    msg = conv.ground_truth_msg(State, "merge", 3, ["step_timeout"], STAMP_S, {4: fut})
    back = deserialize_message(serialize_message(msg), GroundTruth)
    assert back.step == 7 and back.scenario == "merge" and list(back.events) == ["step_timeout"]
    assert back.collision and list(back.collision_agent_ids) == [9]
    a4 = back.agents[0]
    assert (a4.id, a4.sim_id, a4.class_id) == (4, "veh4", 1)
    assert [(p.x, p.y) for p in a4.future] == [(21.0, 3.0), (22.0, 3.0)]
    assert back.agents[1].future == [] and back.future_step_s == pytest.approx(0.5)
    assert a4.velocity.x == 3.0 and a4.size.x == 4.5
