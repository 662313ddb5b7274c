"""sim_bridge's frame parameters over real DDS: a 6-DOF lidar mount and renamed frames given as
ROS parameters reach /tf_static and the point clouds, and a consumer's ExtrinsicSource resolves
them; a bad mount stops the node with exit status 2 naming the parameter."""

from __future__ import annotations

import math
import subprocess
import time

import numpy as np
import pytest
import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from sim_bridge_helpers import SCENARIO, SEED, VENV_BIN
from tps_common.frames import ORIGIN_TF_STATIC, RigidTransform
from tps_common.tf import ExtrinsicSource
from tps_sim import conversions as conv

pytestmark = pytest.mark.ros

STEPS = 10
RUN_TIMEOUT_S = 90.0
MOUNT = (1.2, 0.0, 2.0, 0.0, math.radians(2.0), math.radians(1.0))
EXIT_BAD_PARAMETER = 2


def bridge_argv(extra: list[str]) -> list[str]:
    return [str(VENV_BIN / "sim_bridge"), "--ros-args", "-p", f"scenario:={SCENARIO}",
            "-p", f"seed:={SEED}", "-p", "ego_driver:=expert", "-p", f"duration_s:={STEPS * 0.1}",
            "-p", "step_period_s:=0.1", "-p", "exit_on_end:=true", "-p", "exit_linger_s:=1.0",
            "-p", "lidar_beams:=8", "-p", "lidar_azimuth_steps:=256"] + extra


def test_mount_and_frame_names_reach_tf_static_and_the_clouds():
    mount = "[" + ",".join(repr(float(v)) for v in MOUNT) + "]"  # all doubles for rcl
    argv = bridge_argv(["-p", f"lidar_mount:={mount}", "-p", "lidar_frame:=roof_lidar",
                        "-p", "base_frame:=base_footprint"])
    context = rclpy.Context()
    rclpy.init(context=context)
    proc = None
    clouds: list = []
    try:
        node = rclpy.create_node("extrinsic_consumer", context=context)
        node.create_subscription(PointCloud2, conv.TOPIC_LIDAR, clouds.append, qos_profile_sensor_data)
        source = ExtrinsicSource(node, target_frame="base_footprint", sensor_frame="roof_lidar",
                                 configured=RigidTransform.from_xyz_rpy((0.0, 0.0, 1.8)),
                                 name="lidar")
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + RUN_TIMEOUT_S
        def done() -> bool:
            return source.resolve().origin == ORIGIN_TF_STATIC and bool(clouds)

        while time.monotonic() < deadline and not done():
            executor.spin_once(timeout_sec=0.05)
            if proc.poll() is not None:  # the bridge ended (or failed): take what is queued
                for _ in range(20):
                    executor.spin_once(timeout_sec=0.02)
                break
        ext = source.resolve()
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        if proc is not None:
            try:
                proc.wait(timeout=RUN_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
    output = proc.communicate(timeout=30)[0]
    assert proc.returncode == 0, output
    assert ext.origin == ORIGIN_TF_STATIC, ext.detail
    assert ext.transform.almost_equal(RigidTransform.from_xyz_rpy(MOUNT[:3], MOUNT[3:]),
                                      tol_m=1e-9, tol_rad=1e-9)
    assert clouds and all(c.header.frame_id == "roof_lidar" for c in clouds)
    # The published points are in the tilted sensor frame: through the extrinsic, the ground
    # returns lie at z = 0 of base_footprint (without it they would not).
    xyz = np.frombuffer(bytes(clouds[-1].data), np.float32).reshape(-1, 4)[:, :3].astype(np.float64)
    z_base = ext.transform.apply(xyz)[:, 2]
    assert np.mean(np.abs(z_base) < 0.1) > 0.3 and np.percentile(z_base, 1) > -0.1


def test_bad_mount_names_the_parameter():
    proc = subprocess.run(bridge_argv(["-p", "lidar_mount:=[0.0,0.0,1.8,0.0,2.5,0.0]"]),
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert proc.returncode == EXIT_BAD_PARAMETER, proc.stdout + proc.stderr
    assert "lidar_mount" in proc.stderr and "pitch" in proc.stderr
