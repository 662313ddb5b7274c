"""The arbiter in a graph without a planner or monitor (a replay of perception + fallback +
arbiter), over real DDS, with the simulator's long waits (candidate_wait_s, monitor_wait_s 5 s).

Its first fallback waits for a candidate that never comes; the next fallback arriving with no
candidate publisher matched ends that wait, and the planner and monitor are taken as not answering
from then on. CI once saw the opposite: every fallback waited until its successor came, the
replay's lockstep waits timed out, and the last frame was still waiting when the replay ended
(one frame "dropped")."""

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from planner_helpers import constant_speed_trajectory, straight_route
from ros_harness import STARTUP_TIMEOUT_S, spin_until, start_node, stop
from rosgraph_msgs.msg import Clock
from tps_common.qos import CLOCK_QOS, SELECTED_TRAJECTORY_QOS, TRAJECTORY_QOS
from tps_msgs.msg import PlannedTrajectory
from tps_planner import conversions as conv
from tps_planner.trajectory import SOURCE_FALLBACK

pytestmark = pytest.mark.ros
WAIT_S = 5.0                  # the simulator graphs' candidate_wait_s and monitor_wait_s
SECOND_AFTER_S = 0.3          # wall time between the first and the second fallback
REPLY_TIMEOUT_S = 15.0


def test_next_fallback_ends_the_wait_for_an_absent_planner(tmp_path):
    remaps = {"~/input/candidate_trajectory": "/np/candidate", "~/input/fallback_trajectory": "/np/fallback",
              "~/input/monitor_status": "/np/monitor", "~/output/trajectory": "/np/selected"}
    arbiter = start_node("trajectory_arbiter", "trajectory_arbiter", remaps,
                         {"use_sim_time": True, "candidate_wait_s": WAIT_S, "monitor_wait_s": WAIT_S}, tmp_path)
    rclpy.init()
    node = rclpy.create_node("arbiter_no_planner_driver")
    try:
        pub_clock = node.create_publisher(Clock, "/clock", CLOCK_QOS)
        pub_fb = node.create_publisher(PlannedTrajectory, "/np/fallback", TRAJECTORY_QOS)
        selected, modes = {}, {}
        node.create_subscription(PlannedTrajectory, "/np/selected",
                                 lambda m: selected.setdefault(round(conv.time_to_seconds(m.header.stamp), 6), m),
                                 SELECTED_TRAJECTORY_QOS)

        def on_diag(msg: DiagnosticArray) -> None:
            for s in msg.status:
                if s.name == "trajectory_arbiter: mode":
                    values = {kv.key: kv.value for kv in s.values}
                    modes[round(float(values["stamp_s"]), 6)] = values

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 50)
        assert spin_until(node, lambda: pub_fb.get_subscription_count() > 0 and pub_clock.get_subscription_count() > 0
                          and node.count_publishers("/np/selected") > 0, STARTUP_TIMEOUT_S), "arbiter never matched"
        spin_until(node, lambda: False, 0.5)            # the arbiter's readers match too
        route = straight_route()

        def fallback(t: float) -> None:
            pub_clock.publish(Clock(clock=conv.seconds_to_time(t)))
            pub_fb.publish(conv.trajectory_to_msg(constant_speed_trajectory(route, 50.0, 8.0, t, n=33, step_s=0.25)))

        fallback(1.0)
        spin_until(node, lambda: False, SECOND_AFTER_S)
        assert 1.0 not in selected, "the first fallback did not wait for the planner's candidate"
        fallback(1.1)
        assert spin_until(node, lambda: {1.0, 1.1} <= set(selected) and {1.0, 1.1} <= set(modes),
                          REPLY_TIMEOUT_S), (sorted(selected), sorted(modes))
        for t in (1.0, 1.1):
            assert selected[t].source == SOURCE_FALLBACK
        # The first waited until the second came (not its whole wait); the second did not wait.
        assert float(modes[1.0]["candidate_wait_ms"]) < 0.5 * WAIT_S * 1e3, modes[1.0]
        assert float(modes[1.1]["candidate_wait_ms"]) < 0.5 * WAIT_S * 1e3, modes[1.1]
        assert modes[1.1]["planner_answering"] == "False" and modes[1.1]["monitor_answering"] == "False"
        # From then on no fallback is parked at all.
        fallback(1.2)
        assert spin_until(node, lambda: 1.2 in selected and 1.2 in modes, REPLY_TIMEOUT_S)
        assert float(modes[1.2]["candidate_wait_ms"]) == 0.0, modes[1.2]
        assert arbiter.poll() is None
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(arbiter)
