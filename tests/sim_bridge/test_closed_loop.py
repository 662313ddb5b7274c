"""Closed-loop proof of life over real DDS: sim_bridge (subprocess) + a test controller."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from sim_bridge_helpers import SCENARIO, SEED, run_closed_loop
from tps_sim import conversions as conv
from tps_sim.bridge import BridgeParams, SimBridge
from tps_sim.episode_log import load_episode_log

STEPS = 100
THROTTLE = 0.6
STEER_RIGHT = 0.4
STEER_STEPS = 40
YAW_TOL_RAD = 1e-6
MIN_YAW_CHANGE_RAD = 0.05
MIN_SPEED_GAIN_MPS = 1.0
SPEED_COL, YAW_COL = 9, 3

pytestmark = pytest.mark.ros


def constant(throttle: float, steer: float):
    def fn(stamp, _index):
        msg = conv.control_msg(throttle, steer, 0.0)
        msg.header.stamp = stamp
        return [msg]
    return fn


def in_process_ego(steps: int, throttle: float, steer: float) -> np.ndarray:
    """The same episode through the bridge core without DDS (same controls, same seed)."""
    core = SimBridge(BridgeParams(scenario=SCENARIO, seed=SEED, duration_s=steps * 0.1,
                                  lidar_enabled=False))
    now = 0.0
    frame = core.start(now)
    while not core.done:
        stamp_ns = int(round(frame.stamp_s * 1e9))
        # the message fields are float32 on the wire: round the same way
        verdict = core.submit_control({"stamp_ns": stamp_ns, "throttle": float(np.float32(throttle)),
                                       "steer": float(np.float32(steer)), "brake": 0.0}, now)
        assert verdict.status == "accepted"
        frame = core.poll(now)
    ego = np.array([r["ego"] for r in core.log.rows])
    core.close()
    return ego


@pytest.mark.slow
def test_constant_throttle_100_steps_no_timeouts(tmp_path):
    res = run_closed_loop(tmp_path, constant(THROTTLE, 0.0), steps=STEPS)
    assert res.returncode == 0, res.output
    log = load_episode_log(res.log_path)
    assert log["meta"]["step_timeouts"] == 0, res.output
    assert not log["step_timeout"].any()
    assert len(log["t_s"]) == STEPS + 1
    # every transition was driven by the controller's control
    assert log["control_received"][1:].all()
    np.testing.assert_allclose(log["control"][1:, 0], THROTTLE, atol=1e-6)
    speed, yaw = log["ego"][:, SPEED_COL], log["ego"][:, YAW_COL]
    assert speed[-1] > speed[0] + MIN_SPEED_GAIN_MPS, speed
    assert np.all(np.diff(speed) >= -1e-9), "speed must not drop under constant throttle"
    assert np.max(np.abs(yaw - yaw[0])) < YAW_TOL_RAD
    moved = np.hypot(*(log["ego"][-1, :2] - log["ego"][0, :2]))
    assert moved > speed[0] * STEPS * 0.1 * 0.9
    # the e2e latency of every answered step is measured
    assert np.isfinite(log["e2e_latency_s"][:-1]).all()
    # ground truth reached the subscriber, in order, with the step count of the log
    steps_seen = [m.step for m in res.ground_truth]
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] == STEPS
    # bit-for-bit: the DDS run equals the same controls applied in-process
    np.testing.assert_array_equal(log["ego"], in_process_ego(STEPS, THROTTLE, 0.0))


def test_steer_right_turns_clockwise(tmp_path):
    res = run_closed_loop(tmp_path, constant(0.3, STEER_RIGHT), steps=STEER_STEPS)
    assert res.returncode == 0, res.output
    log = load_episode_log(res.log_path)
    assert log["meta"]["step_timeouts"] == 0, res.output
    yaw = np.unwrap(log["ego"][:, YAW_COL])
    # CARLA convention: positive steer = turn right = yaw decreases (REP-103)
    assert yaw[-1] < yaw[0] - MIN_YAW_CHANGE_RAD, yaw
    assert np.all(log["ego"][1:, 11] <= 1e-9), "yaw rate must be <= 0 while steering right"


def test_malformed_control_is_reported_and_survived(tmp_path):
    bad_step = 3

    def fn(stamp, index):
        good = conv.control_msg(0.2, 0.0, 0.0)
        good.header.stamp = stamp
        if index != bad_step:
            return [good]
        nan = conv.control_msg(math.nan, 0.0, 0.0)
        nan.header.stamp = stamp
        too_big = conv.control_msg(0.2, 0.0, 7.0)  # brake out of range: clamped, applied
        too_big.header.stamp = stamp
        return [nan, too_big]

    res = run_closed_loop(tmp_path, fn, steps=10)
    assert res.returncode == 0, res.output
    log = load_episode_log(res.log_path)
    assert log["meta"]["malformed_controls"] == 1
    assert log["meta"]["clamped_controls"] == 1
    assert log["meta"]["step_timeouts"] == 0, res.output
    assert len(log["t_s"]) == 11, "the bridge kept stepping after the bad control"
    assert log["control"][bad_step + 1, 2] == 1.0, "the clamped brake was applied"
    statuses = [s for arr in res.diagnostics for s in arr.status if s.name == "sim_bridge: control"]
    def level(s):  # diagnostic levels are `byte` fields: bytes of length 1 in rclpy
        return s.level[0] if isinstance(s.level, bytes) else int(s.level)

    errors = [s for s in statuses if level(s) == DiagnosticStatus.ERROR[0]]
    warns = [s for s in statuses if level(s) == DiagnosticStatus.WARN[0]]
    assert any("throttle" in s.message for s in errors), [s.message for s in statuses]
    assert any("brake" in s.message for s in warns), [s.message for s in statuses]


def test_bad_parameter_exits_naming_it(tmp_path):
    import subprocess

    from sim_bridge_helpers import VENV_BIN

    proc = subprocess.run([str(VENV_BIN / "sim_bridge"), "--ros-args", "-p", "density:=-1.0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "density" in proc.stderr and "Traceback" not in proc.stderr


ANSWER_AFTER_S = 4.0     # wall s after step 0 reached it: the stand-in's first output (a model node's first frame)
START_WAIT_S = 2.5       # wait_for_controller_s, shorter than that: it bounds the subscribing, not the answer


def test_step_zero_is_held_until_every_waited_node_answered_it(tmp_path):
    """``wait_for_nodes``: step 0 is released only after the waited node subscribed, its readers
    matched (its /tps/graph/input_matches report) and it published one of its /tps/ outputs --
    not as soon as it subscribed (then the loop ran ahead of a planner still computing its first
    candidate, and the start depended on the host's speed). The answer comes later than
    ``wait_for_controller_s`` after the start: that bound is the subscribing stage's only (when it
    bounded the whole hold, a planner loading under load had not answered when the hold lapsed)."""
    import rclpy
    from nav_msgs.msg import Odometry
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from std_msgs.msg import Empty
    from tps_common.readiness import attach_input_match_reporter

    times: dict[str, float] = {}

    def stand_in(context):
        node = rclpy.create_node("fake_stack", context=context)
        node.create_subscription(Odometry, "/carla/ego_vehicle/odometry",
                                 lambda _m: times.setdefault("step_0", time.monotonic()),
                                 QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE))
        attach_input_match_reporter(node)
        pub = node.create_publisher(Empty, "/tps/test/answer", 10)

        def answer() -> None:
            if "answered" not in times and time.monotonic() - times.get("step_0", math.inf) >= ANSWER_AFTER_S:
                pub.publish(Empty())
                times["answered"] = time.monotonic()
        node.create_timer(0.05, answer)
        return [node]

    drive = constant(0.3, 0.0)

    def control_fn(stamp, index):
        if index == 1:
            times.setdefault("step_1", time.monotonic())
        return drive(stamp, index)

    result = run_closed_loop(tmp_path, control_fn, steps=5, extra_nodes=stand_in,
                             extra_params={"wait_for_nodes": "fake_stack", "wait_for_controller_s": START_WAIT_S})
    assert result.returncode == 0, result.output[-2000:]
    assert "answered" in times and "step_1" in times, (times, result.output[-2000:])
    assert times["step_1"] > times["answered"], \
        f"step 1 came {times['answered'] - times['step_1']:.2f} s before the waited node answered step 0"
    assert "answered step 0" in result.output and "never" not in result.output, result.output[-2000:]


def test_a_waited_node_that_never_subscribes_is_warned_about_and_no_longer_waited_for(tmp_path):
    """A misspelt or dead ``wait_for_nodes`` entry holds step 0 for ``wait_for_controller_s`` only,
    then the bridge says which node never came (WARN on /diagnostics) and the loop runs."""
    result = run_closed_loop(tmp_path, constant(0.3, 0.0), steps=5,
                             extra_params={"wait_for_nodes": "no_such_node", "wait_for_controller_s": 1.0})
    assert result.returncode == 0, result.output[-2000:]
    assert "['no_such_node'] never subscribed within 1 s" in result.output, result.output[-2000:]
    warns = [s for arr in result.diagnostics for s in arr.status if s.name.endswith("sync") and s.level == DiagnosticStatus.WARN
             and "no_such_node" in s.message]
    assert warns, "the node that never subscribed is not named on /diagnostics"
