"""fallback_node with traffic lights over real DDS: a cycle waits for the light reading of its own
camera frame, plans a stop before a red light's line (map knowledge from
CarlaTrafficLightInfoList), goes on green, and reports the decision in its diagnostics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from carla_msgs.msg import CarlaTrafficLightInfoList
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PoseStamped
from nav_msgs.msg import Odometry, Path
from planner_helpers import lidar_scan, straight_route
from ros_harness import STARTUP_TIMEOUT_S, InputMatches, spin_until, start_node, stop
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from tps_common.qos import CLOCK_QOS, LATCHED_QOS, RELIABLE_SENSOR_QOS, STACK_OUTPUT_QOS, TRAJECTORY_QOS
from tps_common.traffic_lights import GREEN, RED, LightHead
from tps_inference.conversions import xyzi_to_pointcloud2
from tps_msgs.msg import PlannedTrajectory, TrafficLightState, TrafficLightStates
from tps_planner import conversions as conv
from tps_sim.conversions import traffic_light_info_msg

pytestmark = pytest.mark.ros
REPLY_TIMEOUT_S = 10.0
STOP_X_M = 40.0              # stop line of the route's light (the route runs along +x from -50 m)
EGO_FRONT_M = 2.3
LIGHT_ID = 7


def _odometry(t: float, x: float, v: float) -> Odometry:
    msg = Odometry(header=Header(stamp=conv.seconds_to_time(t), frame_id="map"), child_frame_id="ego_vehicle")
    msg.pose.pose.position.x = x
    msg.pose.pose.orientation.w = 1.0
    msg.twist.twist.linear.x = v
    return msg


def _reading(t: float, state: int) -> TrafficLightStates:
    msg = TrafficLightStates(header=Header(stamp=conv.seconds_to_time(t), frame_id="map"))
    msg.lights = [TrafficLightState(id=LIGHT_ID, state=state, confidence=1.0, distance_to_stop_line_m=30.0)]
    return msg


def test_fallback_stops_for_red_and_goes_on_green(test_node, tmp_path):
    remaps = {"~/input/points": "/tl/points", "~/input/odometry": "/tl/odom", "~/input/route": "/tl/route",
              "~/input/monitor_status": "/tl/monitor", "~/input/traffic_light_info": "/tl/info",
              "~/input/traffic_lights": "/tl/states", "~/output/trajectory": "/tl/traj",
              "~/output/markers": "/tl/markers"}
    matches = InputMatches(test_node, "fallback_tl")     # the node's own reader-side matches
    proc = start_node("fallback_node", "fallback_tl", remaps, {"use_sim_time": True, "use_traffic_lights": True},
                      tmp_path)
    try:
        n = test_node
        pub_clock = n.create_publisher(Clock, "/clock", CLOCK_QOS)
        pub_points = n.create_publisher(PointCloud2, "/tl/points", RELIABLE_SENSOR_QOS)
        pub_odom = n.create_publisher(Odometry, "/tl/odom", RELIABLE_SENSOR_QOS)
        pub_route = n.create_publisher(Path, "/tl/route", LATCHED_QOS)
        pub_info = n.create_publisher(CarlaTrafficLightInfoList, "/tl/info", LATCHED_QOS)
        pub_states = n.create_publisher(TrafficLightStates, "/tl/states", STACK_OUTPUT_QOS)
        trajs: list[PlannedTrajectory] = []
        diags: list[DiagnosticArray] = []
        n.create_subscription(PlannedTrajectory, "/tl/traj", trajs.append, TRAJECTORY_QOS)
        n.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 20)
        route = Path(header=Header(frame_id="map"))
        route.poses = [PoseStamped(header=route.header) for _ in straight_route()]
        for ps, (x, y) in zip(route.poses, straight_route(), strict=True):
            ps.pose.position.x, ps.pose.position.y = float(x), float(y)
            ps.pose.orientation.w = 1.0
        pub_route.publish(route)
        head = LightHead(LIGHT_ID, (STOP_X_M + 31.0, 0.0, 5.5), math.pi, (STOP_X_M, 0.0), 0.0, 3.5)
        pub_info.publish(traffic_light_info_msg([head]))
        empty = xyzi_to_pointcloud2(lidar_scan((0.0, 0.0, 0.0), []), Header(frame_id="ego_vehicle/lidar"))
        # The light map and the route are latched, read once: a cloud answered before they arrive
        # is planned without the light (CI once saw 11.9 m/s at t = 1.0). Start the frames after the
        # node reports its readers matched, and the latched samples have had time to land.
        inputs = ["/tl/info", "/tl/route", "/tl/points", "/tl/odom", "/tl/states"]
        assert matches.wait(inputs, STARTUP_TIMEOUT_S), f"fallback_tl never matched {matches.unmatched(inputs)}"
        spin_until(n, lambda: False, 0.5)

        def frame(t: float):
            def _send():
                pub_clock.publish(Clock(clock=conv.seconds_to_time(t)))
                pub_odom.publish(_odometry(t, 0.0, 10.0))
                empty.header.stamp = conv.seconds_to_time(t)
                pub_points.publish(empty)
            return _send

        def traj_at(t: float):
            found = [m for m in trajs if abs(conv.time_to_seconds(m.header.stamp) - t) < 1e-6]
            return found[-1] if found else None

        # 1. discovery: clouds go unanswered while their light reading is missing (the cycle waits
        #    up to light_wait_s, then plans with UNKNOWN): send the reading along with them.
        def frame_and_red():
            frame(1.0)()
            pub_states.publish(_reading(1.0, RED))

        assert spin_until(n, lambda: traj_at(1.0) is not None, STARTUP_TIMEOUT_S, action=frame_and_red)
        red = conv.trajectory_from_msg(traj_at(1.0))
        assert red.speed_mps[-1] < 0.5                                       # a stop is planned
        stop_x = red.xy[np.argmax(red.speed_mps < 0.05), 0] if np.any(red.speed_mps < 0.05) else red.xy[-1, 0]
        assert stop_x + EGO_FRONT_M <= STOP_X_M                              # before the line
        # 2. the cycle of t = 1.1 waits for its reading (green, sent 1 s later): no plan before it
        frame(1.1)()
        spin_until(n, lambda: False, 0.3)
        assert traj_at(1.1) is None, "planned before its frame's light reading arrived"
        pub_states.publish(_reading(1.1, GREEN))
        assert spin_until(n, lambda: traj_at(1.1) is not None, REPLY_TIMEOUT_S)
        green = conv.trajectory_from_msg(traj_at(1.1))
        assert green.speed_mps.min() > 5.0                                   # goes on
        assert spin_until(n, lambda: any(kv.key == "light_decision" and "green" in kv.value
                                         for a in diags for s in a.status if s.name == "fallback_tl: planning"
                                         for kv in s.values), REPLY_TIMEOUT_S)
        assert proc.poll() is None
    finally:
        stop(proc)
