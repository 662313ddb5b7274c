"""Test node for the watchdog test: on every /clock tick it publishes a planner candidate
(source planner) and a NOMINAL MonitorStatus, both stamped with that tick. Started as a separate
process by tests/planner/test_watchdog_ros.py, which then kills it.

Usage: python candidate_publisher.py CANDIDATE_TOPIC MONITOR_TOPIC
"""

import sys

import numpy as np
import rclpy
from planner_helpers import constant_speed_trajectory, straight_route
from rosgraph_msgs.msg import Clock
from std_msgs.msg import Header
from tps_common.qos import CLOCK_QOS, TRAJECTORY_QOS
from tps_msgs.msg import MonitorStatus, PlannedTrajectory
from tps_planner import conversions as conv
from tps_planner.trajectory import SOURCE_PLANNER

LATERAL_OFFSET_M = 1.0      # the candidate runs 1 m left of the route, so it is recognisable


def main() -> None:
    candidate_topic, monitor_topic = sys.argv[1], sys.argv[2]
    rclpy.init()
    node = rclpy.create_node("candidate_publisher")
    pub_c = node.create_publisher(PlannedTrajectory, candidate_topic, TRAJECTORY_QOS)
    pub_m = node.create_publisher(MonitorStatus, monitor_topic, TRAJECTORY_QOS)
    route = straight_route() + np.array([0.0, LATERAL_OFFSET_M])

    def on_clock(msg: Clock) -> None:
        t = conv.time_to_seconds(msg.clock)
        traj = constant_speed_trajectory(route, 50.0, 8.0, t, n=8, source=SOURCE_PLANNER)
        pub_c.publish(conv.trajectory_to_msg(traj))
        pub_m.publish(MonitorStatus(header=Header(stamp=msg.clock), state=MonitorStatus.STATE_NOMINAL,
                                    certainty=1.0))

    node.create_subscription(Clock, "/clock", on_clock, CLOCK_QOS)
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
