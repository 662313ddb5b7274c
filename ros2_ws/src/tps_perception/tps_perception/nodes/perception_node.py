"""perception_node: PointCloud2 -> DetectedAgents (lidar 3D detector + tracker + faults).

Inputs: ``~/input/points`` (sensor_msgs/PointCloud2, sensor QoS, frame ``expected_frame``),
``~/input/odometry`` (nav_msgs/Odometry, optional: ego pose for over-ground track velocities).
Outputs: ``~/output/detections`` (tps_msgs/DetectedAgents, base_link, stamp = cloud stamp, one per
cloud), ``/diagnostics`` (``<node>: processing_time`` OK/WARN/ERROR vs the budget; ``<node>: input``
ERROR on a bad cloud; ``<node>: inference`` ERROR when the model fails).
A bad cloud never stops the node: it answers with an empty DetectedAgents whose status says why.
"""

from __future__ import annotations

import math
import time
from collections import deque

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from nav_msgs.msg import Odometry
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import PointCloud2
from tps_inference.params import declare_from_schema, load_schema
from tps_inference.ros_spin import spin_until_shutdown
from tps_msgs.msg import DetectedAgents

from tps_perception.backends import engine_backend
from tps_perception.conversions import CloudError, cloud_to_points, detections_to_msg, diagnostic, stamp_to_s
from tps_perception.detector import Detector, DetectorParams
from tps_perception.faults import FaultInjector, FaultParams
from tps_perception.pillars import PreprocessError
from tps_perception.postprocess import Detections

ODOM_HISTORY = 50


class PerceptionNode(Node):
    def __init__(self, **kwargs):
        super().__init__(kwargs.pop("node_name", "perception"), **kwargs)
        p = declare_from_schema(self, load_schema("perception_node"))
        self.p = p
        backend, meta, what = engine_backend(p["model_name"], p["backend"], p["threads"])
        self.backend_name = what
        params = DetectorParams.from_meta(meta, score_threshold=p["score_threshold"],
                                          lidar_height_m=p["lidar_height_m"], track=p["track"])
        self.detector = Detector(params, backend)
        self.faults = FaultInjector(FaultParams(
            blackout=p["fault_blackout"], drop_rate=p["fault_drop_rate"], phantom_rate=p["fault_phantom_rate"],
            position_noise_m=p["fault_position_noise_m"], heading_noise_rad=p["fault_heading_noise_rad"],
            latency_ms=p["fault_latency_ms"], seed=p["fault_seed"]))
        self.odom: deque[tuple[float, np.ndarray]] = deque(maxlen=ODOM_HISTORY)
        self.tracking_in_map: bool | None = None
        self.pub = self.create_publisher(DetectedAgents, "~/output/detections", 10)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self.create_subscription(PointCloud2, "~/input/points", self.on_cloud, qos_profile_sensor_data)
        if p["use_odometry"]:
            self.create_subscription(Odometry, "~/input/odometry", self.on_odom, 10)
        self.get_logger().info(f"perception ready: model {p['model_name']} on {what}"
                               + (f", FAULTS: {self.faults.params.describe()}" if self.faults.params.any_active else ""))

    def on_odom(self, msg: Odometry) -> None:
        q = msg.pose.pose.orientation
        yaw = math.atan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z))
        pos = msg.pose.pose.position
        self.odom.append((stamp_to_s(msg.header.stamp), np.array([pos.x, pos.y, yaw])))

    def _pose_at(self, t_s: float) -> np.ndarray | None:
        best = min(self.odom, key=lambda e: abs(e[0] - t_s), default=None)
        if best is None or abs(best[0] - t_s) > self.p["odometry_tolerance_s"]:
            return None
        return best[1]

    def _fail(self, msg: PointCloud2, status: int, aspect: str, text: str, t0: float) -> None:
        self.get_logger().error(text, throttle_duration_sec=1.0)
        ms = 1e3 * (time.perf_counter() - t0)
        self.pub.publish(detections_to_msg(msg.header.stamp, self.p["output_frame"], Detections.empty(),
                                           np.zeros(0, np.uint32), np.zeros((0, 2), np.float32), status, text, ms))
        self.diag_pub.publish(diagnostic(msg.header.stamp, f"{self.get_name()}: {aspect}", DiagnosticStatus.ERROR,
                                         text, {"processing_time_ms": ms, "frame_id": msg.header.frame_id}))

    def on_cloud(self, msg: PointCloud2) -> None:
        t0 = time.perf_counter()
        try:
            points = cloud_to_points(msg, self.p["expected_frame"])
            t_s = stamp_to_s(msg.header.stamp)
            pose = self._pose_at(t_s) if self.p["use_odometry"] else None
            if self.tracking_in_map is not None and self.tracking_in_map != (pose is not None):
                self.detector.reset()  # the tracking frame changed (odometry appeared / vanished)
            self.tracking_in_map = pose is not None
            res = self.detector.run(points, t_s, pose)
        except (CloudError, PreprocessError) as exc:
            self._fail(msg, DetectedAgents.STATUS_INVALID_INPUT, "input", f"invalid point cloud: {exc}", t0)
            return
        except Exception as exc:  # noqa: BLE001 - a model failure must not kill the node
            self._fail(msg, DetectedAgents.STATUS_INFERENCE_ERROR, "inference",
                       f"detector failed: {type(exc).__name__}: {exc}", t0)
            return
        fr = self.faults.apply(res.detections, res.track_ids, res.velocities)
        if self.faults.params.latency_ms > 0:
            time.sleep(self.faults.params.latency_ms / 1e3)
        ms = 1e3 * (time.perf_counter() - t0)
        status, text = DetectedAgents.STATUS_OK, ""
        if fr.active:
            status, text = DetectedAgents.STATUS_FAULT_INJECTED, f"fault injected: {fr.description}"
        self.pub.publish(detections_to_msg(msg.header.stamp, self.p["output_frame"], fr.detections, fr.track_ids,
                                           fr.velocities, status, text, ms))
        level, dtext = DiagnosticStatus.OK, "within budget"
        if ms > self.p["error_budget_ms"]:
            level, dtext = DiagnosticStatus.ERROR, f"processing {ms:.1f} ms > error budget {self.p['error_budget_ms']} ms"
        elif ms > self.p["budget_ms"]:
            level, dtext = DiagnosticStatus.WARN, f"processing {ms:.1f} ms > budget {self.p['budget_ms']} ms"
        self.diag_pub.publish(diagnostic(msg.header.stamp, f"{self.get_name()}: processing_time", level, dtext, {
            "processing_time_ms": ms, "budget_ms": self.p["budget_ms"], "preprocess_ms": res.preprocess_ms,
            "network_ms": res.network_ms, "postprocess_ms": res.postprocess_ms, "detections": len(fr.detections),
            "model": self.p["model_name"], "velocity_frame": "relative" if res.velocity_is_relative else "over_ground"}))


NODE_CLASS = PerceptionNode


def main(args=None) -> None:
    rclpy.init(args=args)
    node = None
    try:
        node = PerceptionNode()
        spin_until_shutdown(node)  # a signal during the wait-set build is a clean stop too
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        if node is not None:
            node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()


if __name__ == "__main__":
    main()
