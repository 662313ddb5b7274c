"""Proof-of-life tests of the three nodes over real DDS: each node runs as its own process (its
console script); this test publishes the inputs and checks the outputs."""

import numpy as np
import pytest
from carla_msgs.msg import CarlaEgoVehicleControl
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import Point, PoseStamped
from nav_msgs.msg import Odometry, Path
from planner_helpers import constant_speed_trajectory, lidar_scan, straight_route
from ros_harness import STARTUP_TIMEOUT_S, spin_until, start_node, stop
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from tps_common.qos import CLOCK_QOS, LATCHED_QOS, RELIABLE_SENSOR_QOS, TRAJECTORY_QOS
from tps_inference.conversions import xyzi_to_pointcloud2
from tps_msgs.msg import LaneMap, MapLane, PlannedTrajectory
from tps_planner import conversions as conv
from tps_planner.trajectory import SOURCE_FALLBACK, SOURCE_MINIMAL_RISK
from visualization_msgs.msg import MarkerArray

pytestmark = pytest.mark.ros
REPLY_TIMEOUT_S = 10.0


class Inbox:
    """Collects messages of one topic."""

    def __init__(self, node, msg_type, topic, qos):
        self.msgs = []
        node.create_subscription(msg_type, topic, self.msgs.append, qos)


def _odometry(t: float, x: float, v: float) -> Odometry:
    msg = Odometry(header=Header(stamp=conv.seconds_to_time(t), frame_id="map"), child_frame_id="ego_vehicle")
    msg.pose.pose.position.x = x
    msg.pose.pose.orientation.w = 1.0
    msg.twist.twist.linear.x = v
    return msg


def _lane_map(speed_mps: float) -> LaneMap:
    """Two lanes along the straight route (y = 0) and left of it (y = 3.5), the route in the first."""
    def lane(lane_id, y, **kw):
        return MapLane(id=lane_id, centerline=[Point(x=-60.0, y=y), Point(x=400.0, y=y)], width_m=3.5,
                       speed_limit_mps=speed_mps, **kw)
    return LaneMap(header=Header(frame_id="map"), route_lane_ids=["ego"],
                   lanes=[lane("ego", 0.0, left_id="left", can_change_left=True),
                          lane("left", 3.5, right_id="ego", can_change_right=True)])


def _statuses(inbox: Inbox, name: str) -> list[DiagnosticStatus]:
    return [s for m in inbox.msgs for s in m.status if s.name == name]


def test_controller_node_proof_of_life(test_node, tmp_path):
    remaps = {"~/input/trajectory": "/t/traj", "~/input/odometry": "/t/odom", "~/output/control": "/t/control"}
    proc = start_node("controller_node", "controller", remaps, {"use_sim_time": True}, tmp_path)
    try:
        pub_clock = test_node.create_publisher(Clock, "/clock", CLOCK_QOS)
        pub_traj = test_node.create_publisher(PlannedTrajectory, "/t/traj", TRAJECTORY_QOS)
        pub_odom = test_node.create_publisher(Odometry, "/t/odom", RELIABLE_SENSOR_QOS)
        controls = Inbox(test_node, CarlaEgoVehicleControl, "/t/control", 10)
        diags = Inbox(test_node, DiagnosticArray, "/diagnostics", 10)
        traj = conv.trajectory_to_msg(constant_speed_trajectory(straight_route(), 50.0, 10.0, 1.0))

        # Start-up: /clock ticks before any trajectory give an ERROR diagnostic but no control,
        # so the synchronous bridge waits for the stack instead of stepping with brakes.
        def waiting():
            return any(s.level == DiagnosticStatus.ERROR and "no trajectory received yet" in s.message
                       for s in _statuses(diags, "controller: trajectory"))

        assert spin_until(test_node, waiting, STARTUP_TIMEOUT_S,
                          action=lambda: pub_clock.publish(Clock(clock=conv.seconds_to_time(0.5))))
        assert not controls.msgs

        def send():
            pub_clock.publish(Clock(clock=conv.seconds_to_time(1.0)))
            pub_odom.publish(_odometry(1.0, 0.0, 5.0))
            pub_traj.publish(traj)

        def tracked():
            return any(abs(conv.time_to_seconds(c.header.stamp) - 1.0) < 1e-6 and c.throttle > 0 for c in controls.msgs)

        assert spin_until(test_node, tracked, STARTUP_TIMEOUT_S, action=send), "no control for the trajectory"
        # The clock advances 2 s with no new trajectory: a braking command stamped with the clock.
        pub_clock.publish(Clock(clock=conv.seconds_to_time(3.0)))

        def braked():
            return any(abs(conv.time_to_seconds(c.header.stamp) - 3.0) < 1e-6 and c.brake > 0 and c.throttle == 0
                       for c in controls.msgs)

        assert spin_until(test_node, braked, REPLY_TIMEOUT_S)

        def stale_error():
            return any(s.level == DiagnosticStatus.ERROR and "s old" in s.message
                       for s in _statuses(diags, "controller: trajectory"))

        assert spin_until(test_node, stale_error, REPLY_TIMEOUT_S)
        assert _statuses(diags, "controller: processing_time")
        assert proc.poll() is None
    finally:
        stop(proc)


def test_fallback_node_proof_of_life(test_node, tmp_path):
    remaps = {"~/input/points": "/t/points", "~/input/odometry": "/t/odom", "~/input/route": "/t/route",
              "~/input/lane_map": "/t/lane_map", "~/input/monitor_status": "/t/monitor",
              "~/output/trajectory": "/t/fb_traj", "~/output/markers": "/t/markers"}
    proc = start_node("fallback_node", "fallback", remaps, {"use_sim_time": True, "require_lane_map": True},
                      tmp_path)
    try:
        pub_clock = test_node.create_publisher(Clock, "/clock", CLOCK_QOS)
        pub_points = test_node.create_publisher(PointCloud2, "/t/points", RELIABLE_SENSOR_QOS)
        pub_odom = test_node.create_publisher(Odometry, "/t/odom", RELIABLE_SENSOR_QOS)
        pub_route = test_node.create_publisher(Path, "/t/route", LATCHED_QOS)
        pub_map = test_node.create_publisher(LaneMap, "/t/lane_map", LATCHED_QOS)
        trajs = Inbox(test_node, PlannedTrajectory, "/t/fb_traj", TRAJECTORY_QOS)
        markers = Inbox(test_node, MarkerArray, "/t/markers", 5)
        diags = Inbox(test_node, DiagnosticArray, "/diagnostics", 10)
        route = Path(header=Header(frame_id="map"))
        route.poses = [PoseStamped(header=route.header) for _ in straight_route()]
        for ps, (x, y) in zip(route.poses, straight_route(), strict=True):
            ps.pose.position.x, ps.pose.position.y = float(x), float(y)
            ps.pose.orientation.w = 1.0
        pub_route.publish(route)
        xyzi = lidar_scan((0.0, 0.0, 0.0), [(20.0, 0.0, 0.0, 0.8, 0.6, 0.4)])

        def cloud(t, pts):
            return xyzi_to_pointcloud2(pts, Header(stamp=conv.seconds_to_time(t), frame_id="ego_vehicle/lidar"))

        def send(t, pts):
            def _send():
                pub_clock.publish(Clock(clock=conv.seconds_to_time(t)))
                pub_odom.publish(_odometry(t, 0.0, 8.0))
                pub_points.publish(cloud(t, pts))
            return _send

        def got(t):
            return lambda: any(abs(conv.time_to_seconds(m.header.stamp) - t) < 1e-6 for m in trajs.msgs)

        # As in the closed loop (shipped parameters) it waits for the lane map: no plan without it.
        def no_map_error():
            return any(s.level == DiagnosticStatus.ERROR and "lane map" in s.message
                       for s in _statuses(diags, "fallback: planning"))

        assert spin_until(test_node, no_map_error, STARTUP_TIMEOUT_S, action=send(0.9, xyzi))
        assert not trajs.msgs
        pub_map.publish(_lane_map(speed_mps=15.0))
        assert spin_until(test_node, got(1.0), STARTUP_TIMEOUT_S, action=send(1.0, xyzi)), "no fallback trajectory"
        out = [m for m in trajs.msgs if abs(conv.time_to_seconds(m.header.stamp) - 1.0) < 1e-6][-1]
        assert out.header.frame_id == "map" and out.source == SOURCE_FALLBACK
        traj = conv.trajectory_from_msg(out)
        assert traj.t_s[-1] >= 8.0 - 1e-6 and np.max(np.diff(traj.t_s)) <= 0.5 + 1e-6
        assert traj.speed_mps[-1] < 1.0                       # stops for the debris
        assert spin_until(test_node, lambda: markers.msgs, REPLY_TIMEOUT_S)
        assert spin_until(test_node, lambda: _statuses(diags, "fallback: planning"), REPLY_TIMEOUT_S)
        planning = _statuses(diags, "fallback: planning")
        keys = {kv.key: kv.value for kv in planning[-1].values}
        assert float(keys["nearest_obstacle_m"]) == pytest.approx(20.0 - 0.4 - 2.3, abs=0.5)
        assert keys["lane_state"] == "lane" and keys["lane_id"] == "ego"
        assert int(keys["point_count"]) == len(xyzi)
        # A NaN-laden cloud: ERROR and a minimal-risk stop, the node keeps running.
        nan_pts = xyzi.copy()
        nan_pts[: int(0.8 * len(nan_pts)), :3] = np.nan
        assert spin_until(test_node, got(1.1), REPLY_TIMEOUT_S, action=send(1.1, nan_pts))
        out = [m for m in trajs.msgs if abs(conv.time_to_seconds(m.header.stamp) - 1.1) < 1e-6][-1]
        assert out.source == SOURCE_MINIMAL_RISK

        def nan_error():
            return any(s.level == DiagnosticStatus.ERROR and "NaN" in s.message
                       for s in _statuses(diags, "fallback: planning"))

        assert spin_until(test_node, nan_error, REPLY_TIMEOUT_S)
        assert proc.poll() is None
    finally:
        stop(proc)


def test_bad_parameter_exits_nonzero_naming_it(tmp_path):
    proc = start_node("trajectory_arbiter", "arbiter_bad", {}, {"watchdog_timeout_s": -1.0}, tmp_path)
    assert proc.wait(timeout=STARTUP_TIMEOUT_S) == 2
    text = (tmp_path / "arbiter_bad.log").read_text()
    assert "watchdog_timeout_s" in text and "out of range" in text
