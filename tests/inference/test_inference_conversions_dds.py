"""A driver-layout cloud published by another process over real DDS converts exactly."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from inference_models import LIDAR_COLS, LIDAR_ROWS, organised_lidar_cloud

TOPIC = "/tps_test/inference/points"
FRAME = "ego_vehicle/lidar"
RECEIVE_TIMEOUT_S = 30.0
PUBLISH_PERIOD_S = 0.2

PUBLISHER = f"""
import sys, time
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
import rclpy
from sensor_msgs.msg import PointCloud2
from inference_models import organised_lidar_cloud
from tps_inference.conversions import array_to_pointcloud2

rclpy.init()
node = rclpy.create_node("inference_cloud_publisher")
pub = node.create_publisher(PointCloud2, {TOPIC!r}, 10)
msg = array_to_pointcloud2(organised_lidar_cloud(), frame_id={FRAME!r})
end = time.monotonic() + {RECEIVE_TIMEOUT_S}
while time.monotonic() < end:
    pub.publish(msg)
    time.sleep({PUBLISH_PERIOD_S})
"""


@pytest.mark.ros
def test_organised_cloud_over_dds_converts_exactly():
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import PointCloud2
    from tps_inference.conversions import pointcloud2_to_array, pointcloud2_to_xyzi

    proc = subprocess.Popen([sys.executable, "-c", PUBLISHER])
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    try:
        node = rclpy.create_node("inference_cloud_listener", context=ctx)
        received: list[PointCloud2] = []
        node.create_subscription(PointCloud2, TOPIC, received.append, 10)
        executor = SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        deadline = time.monotonic() + RECEIVE_TIMEOUT_S
        while not received and time.monotonic() < deadline and proc.poll() is None:
            executor.spin_once(timeout_sec=0.1)
        assert received, f"no cloud on {TOPIC} within {RECEIVE_TIMEOUT_S} s (publisher exit code {proc.poll()})"
        msg = received[0]
        expected = organised_lidar_cloud()
        assert msg.header.frame_id == FRAME and (msg.height, msg.width) == (LIDAR_ROWS, LIDAR_COLS)
        assert msg.is_dense is False
        arr = pointcloud2_to_array(msg)
        assert arr.shape == (LIDAR_ROWS, LIDAR_COLS)
        assert np.shares_memory(arr, np.frombuffer(msg.data, np.uint8))  # zero-copy on a received message
        for name in expected.dtype.names:
            np.testing.assert_array_equal(arr[name], expected[name])
        xyzi = pointcloud2_to_xyzi(msg, skip_nonfinite=True)
        flat = expected.reshape(-1)
        keep = np.isfinite(flat["x"])
        np.testing.assert_array_equal(xyzi, np.stack([flat[n][keep] for n in ("x", "y", "z", "intensity")], axis=1))
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=ctx)
        proc.terminate()
        proc.wait(timeout=10)
