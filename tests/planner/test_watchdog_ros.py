"""The watchdog over real DDS: a test node (its own process) publishes planner candidates and
monitor NOMINAL on every /clock tick and is then killed; the arbiter must select the fallback
within 200 ms of sim time. This test drives /clock and publishes the fallback trajectories."""

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml
from diagnostic_msgs.msg import DiagnosticArray
from planner_helpers import constant_speed_trajectory, straight_route
from ros_harness import STARTUP_TIMEOUT_S, spin_until, start_node, stop
from rosgraph_msgs.msg import Clock
from tps_common.qos import CLOCK_QOS, TRAJECTORY_QOS
from tps_msgs.msg import PlannedTrajectory
from tps_planner import conversions as conv
from tps_planner.trajectory import SOURCE_BLEND, SOURCE_FALLBACK, SOURCE_PLANNER

pytestmark = pytest.mark.ros
STEP_S = 0.1
WATCHDOG_S = 0.2
REPLY_TIMEOUT_S = 10.0
SILENT_WAIT_S = 0.3          # wall time given to a (dead) planner before the fallback is published
MAX_STEPS_AFTER_KILL = 10
# The start-up is a hand-back (fallback -> planner): it blends over the arbiter's handback_blend_s.
HANDBACK_S = yaml.safe_load((Path(__file__).parents[2] / "config" / "trajectory_arbiter.param.yaml").read_text()
                            )["/**"]["ros__parameters"]["handback_blend_s"]


def test_arbiter_watchdog_selects_fallback_within_200ms_sim_time(tmp_path):
    remaps = {"~/input/candidate_trajectory": "/w/candidate", "~/input/fallback_trajectory": "/w/fallback",
              "~/input/monitor_status": "/w/monitor", "~/output/trajectory": "/w/selected"}
    arbiter = start_node("trajectory_arbiter", "trajectory_arbiter", remaps,
                         {"use_sim_time": True, "watchdog_timeout_s": WATCHDOG_S}, tmp_path)
    planner = subprocess.Popen([sys.executable, str(Path(__file__).with_name("candidate_publisher.py")),
                                "/w/candidate", "/w/monitor"],
                               stdout=open(tmp_path / "planner.log", "w"), stderr=subprocess.STDOUT)  # noqa: SIM115
    rclpy.init()
    node = rclpy.create_node("watchdog_test_driver")
    try:
        pub_clock = node.create_publisher(Clock, "/clock", CLOCK_QOS)
        pub_fb = node.create_publisher(PlannedTrajectory, "/w/fallback", TRAJECTORY_QOS)
        selected, candidates, diags = [], [], []
        node.create_subscription(PlannedTrajectory, "/w/selected", selected.append, TRAJECTORY_QOS)
        node.create_subscription(PlannedTrajectory, "/w/candidate", candidates.append, TRAJECTORY_QOS)
        node.create_subscription(DiagnosticArray, "/diagnostics", diags.append, 10)
        route = straight_route()

        def stamp_of(m):
            return conv.time_to_seconds(m.header.stamp)

        def output_at(t):
            return next((m for m in selected if abs(stamp_of(m) - t) < 1e-6), None)

        def step(t, planner_alive: bool):
            """One synchronous cycle: clock, (candidate), fallback, selected output."""
            pub_clock.publish(Clock(clock=conv.seconds_to_time(t)))
            if planner_alive:
                ok = spin_until(node, lambda: any(abs(stamp_of(c) - t) < 1e-6 for c in candidates), REPLY_TIMEOUT_S)
                assert ok, f"no candidate for t={t:.1f}"
                spin_until(node, lambda: False, 0.05)     # let the arbiter take it too
            else:
                spin_until(node, lambda: False, SILENT_WAIT_S)
            pub_fb.publish(conv.trajectory_to_msg(constant_speed_trajectory(route, 50.0, 8.0, t, n=33, step_s=0.25)))
            assert spin_until(node, lambda: output_at(t) is not None, REPLY_TIMEOUT_S), f"no output for t={t:.1f}"
            return output_at(t)

        # Start-up: wait until every connection is up (clock, candidate, fallback, selected).
        t = 1.0

        def warm():
            pub_clock.publish(Clock(clock=conv.seconds_to_time(t)))
            pub_fb.publish(conv.trajectory_to_msg(constant_speed_trajectory(route, 50.0, 8.0, t, n=33, step_s=0.25)))

        assert spin_until(node, lambda: candidates and selected, STARTUP_TIMEOUT_S, action=warm, action_every_s=0.5)
        # Planner and monitor alive: after the hand-back blend the planner's candidate is selected.
        for _ in range(int(round(HANDBACK_S / STEP_S)) + 5):
            t = round(t + STEP_S, 6)
            out = step(t, planner_alive=True)
        assert out.source == SOURCE_PLANNER
        assert np.mean([p.pose.position.y for p in out.points]) == pytest.approx(1.0, abs=1e-3)
        last_alive = t

        planner.send_signal(signal.SIGKILL)
        planner.wait(timeout=10)
        switched_at = None
        for _ in range(MAX_STEPS_AFTER_KILL):
            t = round(t + STEP_S, 6)
            out = step(t, planner_alive=False)
            if out.source in (SOURCE_BLEND, SOURCE_FALLBACK):
                switched_at = t
                break
        assert switched_at is not None, "arbiter never left the planner"
        assert switched_at - last_alive <= WATCHDOG_S + 1e-6
        # Keeps driving on the fallback: the blend completes and the diagnostics say why.
        for _ in range(8):
            t = round(t + STEP_S, 6)
            out = step(t, planner_alive=False)
        assert out.source == SOURCE_FALLBACK
        mode = [s for d in diags for s in d.status if s.name == "trajectory_arbiter: mode"]
        assert "planner silent" in mode[-1].message
        assert {kv.key: kv.value for kv in mode[-1].values}["mode"] == "fallback"
        assert arbiter.poll() is None
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(planner)
        stop(arbiter)
