"""The nodes that need the lidar extrinsic take it from /tf_static over real DDS.

sim_bridge runs an expert episode with the lidar mounted at x 1.2 m, z 2.0 m, pitch 2 deg, yaw
1 deg; perception_node and fallback_node run with their shipped parameter files (whose configured
``lidar_extrinsic`` is the default 1.8 m mount; the fallback wired to the bridge's lane map and
clock as in config/graph/sim_fallback.yaml). Their diagnostics must report the extrinsic from
/tf_static with the tilted mount's values, and both must keep producing output. (That outputs
agree with the default mount's, given the extrinsic: tests/perception/test_lidar_mount.py.)
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.executors import SingleThreadedExecutor
from sim_bridge_helpers import REPO, VENV_BIN
from tps_common.qos import DIAGNOSTICS_QOS

sys.path.insert(0, str(REPO / "tests" / "planner"))
from ros_harness import start_node, stop  # noqa: E402

pytestmark = [pytest.mark.ros, pytest.mark.slow]

MOUNT = (1.2, 0.0, 2.0, 0.0, math.radians(2.0), math.radians(1.0))
EPISODE_S = 6.0
RUN_TIMEOUT_S = 120.0
LIDAR = "/carla/ego_vehicle/lidar"
ODOM = "/carla/ego_vehicle/odometry"
LANE_MAP = "/tps/map/lane_map"
EXPECTED_XYZ = "1.200 0.000 2.000"


def test_perception_and_fallback_use_the_tf_static_extrinsic(tmp_path):
    import subprocess

    mount = "[" + ",".join(repr(float(v)) for v in MOUNT) + "]"
    bridge = subprocess.Popen(
        [str(VENV_BIN / "sim_bridge"), "--ros-args", "--params-file", str(REPO / "config" / "sim_bridge.param.yaml"),
         "-p", "scenario:=highway", "-p", "seed:=1003", "-p", "ego_driver:=expert",
         "-p", f"duration_s:={EPISODE_S}", "-p", "step_period_s:=0.1", "-p", "exit_on_end:=true",
         "-p", f"lidar_mount:={mount}"],
        stdout=(tmp_path / "bridge.log").open("w"), stderr=subprocess.STDOUT)
    perception = start_node("perception_node", "perception", {"~/input/points": LIDAR, "~/input/odometry": ODOM},
                            log_dir=tmp_path, params_file=REPO / "config" / "perception_node.param.yaml")
    # The fallback as in the closed-loop graphs: it plans only once the bridge's lane map has
    # arrived (require_lane_map) and follows the bridge's /clock (its cloud-timeout check is in sim
    # time: on the wall clock every sim-stamped cloud would read as decades old).
    fallback = start_node("fallback_node", "fallback", {"~/input/points": LIDAR, "~/input/odometry": ODOM,
                                                        "~/input/route": "/planning/route",
                                                        "~/input/lane_map": LANE_MAP},
                          params={"use_sim_time": True},
                          log_dir=tmp_path, params_file=REPO / "config" / "fallback_node.param.yaml")
    seen: dict[str, dict] = {}
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("extrinsic_diag_listener", context=context)

        def on_diag(msg: DiagnosticArray) -> None:
            for st in msg.status:
                values = {kv.key: kv.value for kv in st.values}
                if "lidar_extrinsic_origin" in values and values["lidar_extrinsic_origin"] == "tf_static":
                    seen[st.name.split(":")[0]] = values

        node.create_subscription(DiagnosticArray, "/diagnostics", on_diag, DIAGNOSTICS_QOS)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while time.monotonic() < deadline and not {"perception", "fallback"} <= set(seen):
            executor.spin_once(timeout_sec=0.05)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        for p in (perception, fallback):
            stop(p)
        stop(bridge)
    logs = {n: (tmp_path / f"{n}.log").read_text()[-1500:] for n in ("perception", "fallback")}
    for name in ("perception", "fallback"):
        assert name in seen, f"{name} never reported the /tf_static extrinsic: {logs[name]}"
        assert seen[name]["lidar_extrinsic_xyz_m"] == EXPECTED_XYZ, seen[name]
        roll, pitch, yaw = (float(v) for v in seen[name]["lidar_extrinsic_rpy_rad"].split())
        assert (roll, pitch, yaw) == pytest.approx(MOUNT[3:], abs=1e-4)
    assert Path(tmp_path / "bridge.log").exists()
