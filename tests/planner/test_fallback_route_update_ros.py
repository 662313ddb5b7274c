"""fallback_node over real DDS: a new drive's route and lane map do not cost lidar frames.

The vehicle's QoS (``reliable_sensor_qos: false``: the clouds best effort, depth 1). The node drives
on route A; then route B (elsewhere) comes with a lane map that takes several lidar periods to lay
over it, and clouds keep coming every 100 ms on route B. Built in the route / lane-map callbacks
(before tps_planner.route_maps), the executor was held meanwhile and the clouds replaced each other
in the depth-1 queue: the first frames of the drive were never answered (benchmarks/bench_e2e.py, 2
per drive start). Now every frame is answered, each planned on route B (the cycles the old map
cannot plan wait for the new one)."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import Point, PoseStamped
from nav_msgs.msg import Odometry, Path
from planner_helpers import lidar_scan, straight_route
from ros_harness import STARTUP_TIMEOUT_S, spin_until, start_node, stop
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from tps_common.qos import CLOCK_QOS, LATCHED_QOS, RELIABLE_SENSOR_QOS, TRAJECTORY_QOS
from tps_inference.conversions import xyzi_to_pointcloud2
from tps_msgs.msg import LaneMap, MapLane, PlannedTrajectory
from tps_planner import conversions as conv
from tps_planner.trajectory import SOURCE_FALLBACK

pytestmark = pytest.mark.ros
LIDAR_PERIOD_S = 0.1
ROUTE_B_Y_M = 1000.0           # drive B runs 1 km beside drive A: the ego "jumps" there
ROUTE_B_LENGTH_M = 8000.0      # laying its lanes over it (resampled at 0.5 m) takes several lidar
LANES_B = 3                    # periods; the messages stay small (their deserialisation is not the test)
ROUTE_POINT_STEP_M = 20.0
FRAMES_B = 12
MAP_WAIT_S = 10.0              # the cycles the old map cannot plan wait this long for the new one
ANSWER_TIMEOUT_S = 60.0        # generous: a loaded 2-core host
EGO_SPEED_MPS = 8.0
ROUTE_DELIVERY_S = 0.2         # wall time between route B's messages and its first cloud


def _route(xy: np.ndarray) -> Path:
    msg = Path(header=Header(frame_id="map"))
    msg.poses = [PoseStamped(header=msg.header) for _ in xy]
    for ps, (x, y) in zip(msg.poses, xy, strict=True):
        ps.pose.position.x, ps.pose.position.y = float(x), float(y)
        ps.pose.orientation.w = 1.0
    return msg


def _lane_map(y: float, length_m: float, n_lanes: int) -> LaneMap:
    """``n_lanes`` straight parallel lanes from the route's lane at lateral ``y`` leftwards."""
    xs = (-60.0, length_m + 60.0)

    def lane(k: int) -> MapLane:
        return MapLane(id=f"l{k}", centerline=[Point(x=float(x), y=y + 3.5 * k) for x in xs], width_m=3.5,
                       speed_limit_mps=15.0, left_id=f"l{k + 1}" if k + 1 < n_lanes else "",
                       right_id=f"l{k - 1}" if k else "", can_change_left=k + 1 < n_lanes, can_change_right=k > 0)
    return LaneMap(header=Header(frame_id="map"), route_lane_ids=["l0"], lanes=[lane(k) for k in range(n_lanes)])


def _odometry(t: float, x: float, y: float) -> Odometry:
    msg = Odometry(header=Header(stamp=conv.seconds_to_time(t), frame_id="map"), child_frame_id="ego_vehicle")
    msg.pose.pose.position.x, msg.pose.pose.position.y = x, y
    msg.pose.pose.orientation.w = 1.0
    msg.twist.twist.linear.x = EGO_SPEED_MPS
    return msg


def test_new_drive_route_map_costs_no_lidar_frame(test_node, tmp_path):
    remaps = {"~/input/points": "/ru/points", "~/input/odometry": "/ru/odom", "~/input/route": "/ru/route",
              "~/input/lane_map": "/ru/lane_map", "~/input/monitor_status": "/ru/monitor",
              "~/output/trajectory": "/ru/traj", "~/output/markers": "/ru/markers"}
    proc = start_node("fallback_node", "fallback_ru", remaps,
                      {"use_sim_time": True, "reliable_sensor_qos": False, "map_wait_s": MAP_WAIT_S,
                       "publish_markers": False}, tmp_path)
    try:
        n = test_node
        pub_clock = n.create_publisher(Clock, "/clock", CLOCK_QOS)
        pub_points = n.create_publisher(PointCloud2, "/ru/points", RELIABLE_SENSOR_QOS)
        pub_odom = n.create_publisher(Odometry, "/ru/odom", RELIABLE_SENSOR_QOS)
        pub_route = n.create_publisher(Path, "/ru/route", LATCHED_QOS)
        pub_map = n.create_publisher(LaneMap, "/ru/lane_map", LATCHED_QOS)
        trajs: dict[float, PlannedTrajectory] = {}
        n.create_subscription(PlannedTrajectory, "/ru/traj",
                              lambda m: trajs.setdefault(round(conv.time_to_seconds(m.header.stamp), 3), m),
                              TRAJECTORY_QOS)
        ground = lidar_scan((0.0, 0.0, 0.0), [])         # an empty road: nothing to stop for

        def send(t: float, x: float, y: float) -> None:
            pub_clock.publish(Clock(clock=conv.seconds_to_time(t)))
            pub_odom.publish(_odometry(t, x, y))
            pub_points.publish(xyzi_to_pointcloud2(ground, Header(stamp=conv.seconds_to_time(t),
                                                                  frame_id="ego_vehicle/lidar")))

        # drive A (route along y = 0) until the node plans
        pub_route.publish(_route(straight_route()))
        pub_map.publish(_lane_map(0.0, 400.0, 2))
        assert spin_until(n, lambda: 1.0 in trajs, STARTUP_TIMEOUT_S, action=lambda: send(1.0, 100.0, 0.0)), \
            "no trajectory on drive A"

        # drive B: its route and lane map, and at once a cloud every lidar period on it
        xs = np.arange(0.0, ROUTE_B_LENGTH_M + 1e-9, ROUTE_POINT_STEP_M)
        pub_route.publish(_route(np.stack([xs, np.full_like(xs, ROUTE_B_Y_M)], axis=1)))
        pub_map.publish(_lane_map(ROUTE_B_Y_M, ROUTE_B_LENGTH_M, LANES_B))
        # let DDS deliver them first (a few ms; the build that follows takes several lidar periods):
        # a cloud that overtakes the route message itself is planned on route A, an off-route stop
        # (seen once in CI: frame 2.0 answered MINIMAL_RISK) -- not what this test is about
        deadline = time.monotonic() + ROUTE_DELIVERY_S
        while time.monotonic() < deadline:
            rclpy.spin_once(n, timeout_sec=0.01)
        stamps = [round(2.0 + k * LIDAR_PERIOD_S, 3) for k in range(FRAMES_B)]
        for k, t in enumerate(stamps):
            send(t, 100.0 + EGO_SPEED_MPS * k * LIDAR_PERIOD_S, ROUTE_B_Y_M)
            deadline = time.monotonic() + LIDAR_PERIOD_S
            while time.monotonic() < deadline:
                rclpy.spin_once(n, timeout_sec=0.01)
        assert spin_until(n, lambda: all(t in trajs for t in stamps), ANSWER_TIMEOUT_S), \
            f"frames of drive B never answered: {[t for t in stamps if t not in trajs]}"
        for t in stamps:
            msg = trajs[t]
            assert msg.source == SOURCE_FALLBACK, (t, msg.source)        # not an off-route stop
            traj = conv.trajectory_from_msg(msg)
            assert np.allclose(traj.xy[:, 1], ROUTE_B_Y_M, atol=0.5), t   # planned along route B
            assert traj.speed_mps[-1] > 1.0, t
        assert proc.poll() is None
    finally:
        stop(proc)
