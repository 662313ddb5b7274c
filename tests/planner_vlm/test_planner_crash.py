"""Fault injection in planner_node (issue 15's fault matrix): ``fault_crash_at_s`` kills the
process abruptly with EXIT_INJECTED_CRASH at the first input stamped at or after it -- the
decision, the parameter's validation, and on real DDS the node process dying at that /clock
stamp and not before."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
import yaml
from tps_common.node import EXIT_INJECTED_CRASH
from tps_common.params import ParameterError, load_schema, validate

ROOT = Path(__file__).resolve().parents[2]
CRASH_AT_S = 3.0
EXIT_TIMEOUT_S = 20.0        # the clock message reaching the node on a loaded 2-core host
STARTUP_TIMEOUT_S = 60.0     # process start (torch import) + discovery
ALIVE_CHECK_S = 1.0          # the node must survive clocks before CRASH_AT_S this long


def test_crash_decision():
    from tps_planner.nodes.planner_node import injected_crash_due

    assert not injected_crash_due(-1.0, 100.0)            # off
    assert not injected_crash_due(CRASH_AT_S, 2.999)
    assert injected_crash_due(CRASH_AT_S, CRASH_AT_S)
    assert injected_crash_due(CRASH_AT_S, 7.5)
    assert injected_crash_due(0.0, 0.0)
    assert not injected_crash_due(CRASH_AT_S, float("nan"))
    assert EXIT_INJECTED_CRASH == 70


SCHEMA = load_schema("planner_node")


@pytest.mark.parametrize("value", [-2.0, "later", float("inf")])
def test_bad_crash_time_names_the_parameter(value):
    with pytest.raises(ParameterError, match="fault_crash_at_s"):
        validate({"fault_crash_at_s": value}, SCHEMA)


def test_param_file_ships_the_crash_off():
    values = yaml.safe_load((ROOT / "config" / "planner_node.param.yaml").read_text())["/**"]["ros__parameters"]
    assert validate(values, SCHEMA)["fault_crash_at_s"] < 0


rclpy = pytest.importorskip("rclpy")
sys.path.insert(0, str(ROOT / "tests" / "planner"))
from ros_harness import start_node, stop  # noqa: E402


@pytest.mark.ros
def test_planner_process_dies_with_the_crash_code_at_the_stamp(tmp_path):
    from rosgraph_msgs.msg import Clock
    from tps_common.conversions import seconds_to_time
    from tps_common.qos import CLOCK_QOS

    name = "planner_crash_t"
    # A missing model keeps start-up short (the node runs, planning nothing: an ERROR names the
    # file); the crash does not depend on the model.
    proc = start_node("planner_node", name, {}, {
        "model_path": str(tmp_path / "missing.pt"), "use_sim_time": True, "warmup_runs": 0,
        "fault_crash_at_s": CRASH_AT_S}, log_dir=tmp_path)
    rclpy.init()
    node = rclpy.create_node("planner_crash_probe")
    pub = node.create_publisher(Clock, "/clock", CLOCK_QOS)

    def publish(t_s: float) -> None:
        pub.publish(Clock(clock=seconds_to_time(t_s)))

    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline and proc.poll() is None:
            rclpy.spin_once(node, timeout_sec=0.05)
        assert pub.get_subscription_count() > 0, "planner_node never subscribed to /clock"
        end = time.monotonic() + ALIVE_CHECK_S
        t = 1.0
        while time.monotonic() < end:           # clocks before the crash time: it keeps running
            publish(t)
            t = min(t + 0.1, CRASH_AT_S - 0.1)
            rclpy.spin_once(node, timeout_sec=0.05)
        assert proc.poll() is None, f"died before {CRASH_AT_S} s: {(tmp_path / f'{name}.log').read_text()}"
        deadline = time.monotonic() + EXIT_TIMEOUT_S
        while proc.poll() is None and time.monotonic() < deadline:
            publish(CRASH_AT_S)
            rclpy.spin_once(node, timeout_sec=0.1)
        code = proc.poll()
        log = (tmp_path / f"{name}.log").read_text()
        assert code == EXIT_INJECTED_CRASH, f"exit {code}: {log}"
        assert "injected crash" in log and f"{CRASH_AT_S:.3f}" in log
    finally:
        stop(proc)
        node.destroy_node()
        rclpy.try_shutdown()
