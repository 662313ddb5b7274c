"""Shared helpers of the sim_bridge tests (imported by name: pytest puts this folder on sys.path): a small, real episode configuration and a closed-loop
runner (the bridge as a subprocess, a tiny rclpy controller in the test process)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
# A scenario/seed whose ego starts moving on a straight road section (train split seed).
SCENARIO = "merge"
SEED = 3
DT_S = 0.1
# Generous: the CI machine is shared; a slow controller must not count step timeouts.
SYNC_TIMEOUT_S = 5.0
BRIDGE_START_TIMEOUT_S = 60.0


@dataclass
class ClosedLoopResult:
    returncode: int | None
    output: str
    log_path: Path
    controls_sent: int = 0
    diagnostics: list = field(default_factory=list)
    ground_truth: list = field(default_factory=list)


def run_closed_loop(tmp_path: Path, control_fn, *, steps: int, extra_params: dict | None = None,
                    timeout_s: float = 120.0, extra_nodes=None) -> ClosedLoopResult:
    """Run the bridge (subprocess) for ``steps`` steps in synchronous mode; a controller in this
    process answers every new /clock stamp with the messages ``control_fn(stamp, index)``
    returns (CarlaEgoVehicleControl, stamped by the callee). ``extra_nodes(context)`` may return
    more rclpy nodes spun beside the controller (stand-ins of stack nodes)."""
    import rclpy
    from carla_msgs.msg import CarlaEgoVehicleControl
    from diagnostic_msgs.msg import DiagnosticArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from tps_msgs.msg import GroundTruth

    log_path = tmp_path / "episode.npz"
    params = {"scenario": SCENARIO, "seed": SEED, "duration_s": round(steps * DT_S, 6),
              "exit_on_end": True, "episode_log": str(log_path), "synchronous": True,
              "sync_timeout_s": SYNC_TIMEOUT_S, "camera_enabled": False,
              "ego_driver": "external"}
    params.update(extra_params or {})
    argv = [str(VENV_BIN / "sim_bridge"), "--ros-args"]
    for key, value in params.items():
        text = ("true" if value else "false") if isinstance(value, bool) else str(value)
        argv += ["-p", f"{key}:={text}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ))
    result = ClosedLoopResult(None, "", log_path)
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("test_controller", context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(CarlaEgoVehicleControl, "/carla/ego_vehicle/vehicle_control_cmd", qos)
        answered: set = set()

        def on_clock(msg: Clock) -> None:
            key = (msg.clock.sec, msg.clock.nanosec)
            if key in answered:
                return
            answered.add(key)
            for ctrl in control_fn(msg.clock, len(answered) - 1):
                pub.publish(ctrl)
                result.controls_sent += 1

        node.create_subscription(Clock, "/clock", on_clock, qos)
        node.create_subscription(DiagnosticArray, "/diagnostics", result.diagnostics.append, 50)
        node.create_subscription(GroundTruth, "/tps/sim/ground_truth", result.ground_truth.append, qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        others = list(extra_nodes(context)) if extra_nodes is not None else []
        for other in others:
            executor.add_node(other)
        deadline = time.monotonic() + timeout_s
        while proc.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.02)
        for _ in range(10):  # late messages still in flight
            executor.spin_once(timeout_sec=0.02)
        executor.shutdown()
        for other in others:
            other.destroy_node()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        if proc.poll() is None:
            proc.kill()
        result.output = proc.communicate(timeout=30)[0]
        result.returncode = proc.returncode
    return result


