"""traffic_light_reader: the classical traffic-light reader (no learned model) -> TrafficLightStates.

Inputs: ``~/input/image`` (sensor_msgs/Image rgb8 or bgra8, frame ``camera_frame``: the optical
frame), ``~/input/camera_info`` (sensor_msgs/CameraInfo: K), ``~/input/odometry``
(nav_msgs/Odometry: the ego pose of each image's stamp), ``~/input/route`` (nav_msgs/Path,
transient local), ``~/input/traffic_light_info`` (carla_msgs/CarlaTrafficLightInfoList, transient
local: map knowledge), ``/tf_static`` and ``/tf`` (the camera extrinsic ``T_base<-optical``;
``camera_extrinsic`` until the tree has it), ``/clock``. Privileged ablation only (``source:
ground_truth``): ``~/input/traffic_light_status`` (carla_msgs/CarlaTrafficLightStatusList).
Outputs: ``~/output/traffic_lights`` (tps_msgs/TrafficLightStates, one per image, stamp = the
image's stamp, frame ``map``: the lights whose stop line lies on the route within
``route_lookahead_m`` ahead, nearest first), ``/diagnostics`` (``<node>: processing_time``,
``<node>: input`` ERROR on a bad image or missing pose/calibration).

Each image waits for the odometry of its stamp (tps_common.stamp_sync), exactly like the lidar
consumers, so the same images give the same output.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from carla_msgs.msg import CarlaTrafficLightInfoList, CarlaTrafficLightStatusList
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image
from tps_common import diagnostics as diag
from tps_common.conversions import light_heads_from_info, odometry_to_pose, time_to_seconds
from tps_common.frames import OPTICAL_IN_BODY, RigidTransform, parse_static_transform
from tps_common.node import load_params, run_node
from tps_common.qos import CLOCK_QOS, DIAGNOSTICS_QOS, LATCHED_QOS, STACK_OUTPUT_QOS, sensor_qos
from tps_common.stamp_sync import EgoPose, Release, StampSync, StampSyncParams
from tps_common.tf import ExtrinsicSource
from tps_common.traffic_lights import LIT_STATES, UNKNOWN, heads_on_route, project_on_polyline
from tps_msgs.msg import TrafficLightStates

from tps_perception.conversions import camera_matrix, light_states_msg
from tps_perception.traffic_light_reader import (
    REASON_NO_CALIBRATION,
    REASON_NONE,
    ReaderParams,
    TrafficLightReader,
)

NODE_NAME = "traffic_light_reader"
ODOM_HISTORY = 50           # poses kept for stamp lookup (5 s at 10 Hz)


class TrafficLightReaderNode(Node):
    """Thin node around :class:`tps_perception.traffic_light_reader.TrafficLightReader`."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("node_name", NODE_NAME)
        super().__init__(**kwargs)
        params, self.p = load_params(self, "traffic_light_reader", ReaderParams)
        self.reader = TrafficLightReader(params)
        self.privileged = self.p["source"] == "ground_truth"
        # T_base<-optical: from /tf_static (or /tf) once it connects the frames, else configured
        # (the parameter is the camera body's pose; the optical turn is added).
        configured = parse_static_transform("camera_extrinsic", self.p["camera_extrinsic"]) @ OPTICAL_IN_BODY
        self.extrinsic = ExtrinsicSource(self, target_frame=self.p["base_frame"],
                                         sensor_frame=self.p["camera_frame"], configured=configured,
                                         name="camera")
        self.sync: StampSync = StampSync(StampSyncParams(pose_tolerance_s=self.p["pose_tolerance_s"],
                                                         history_capacity=ODOM_HISTORY))
        self.k: np.ndarray | None = None
        self.route: np.ndarray | None = None
        self.heads: list = []
        self.route_heads: list = []          # (head, stop-line arc length) on the route
        self.gt_states: dict[int, int] = {}
        self.pub = self.create_publisher(TrafficLightStates, "~/output/traffic_lights", STACK_OUTPUT_QOS)
        self.diag_pub = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        qos = sensor_qos(self.p["reliable_sensor_qos"])
        self.create_subscription(Image, "~/input/image", self.on_image, qos)
        self.create_subscription(CameraInfo, "~/input/camera_info", self.on_camera_info, qos)
        self.create_subscription(Odometry, "~/input/odometry", self.on_odom, qos)
        self.create_subscription(Path, "~/input/route", self.on_route, LATCHED_QOS)
        self.create_subscription(CarlaTrafficLightInfoList, "~/input/traffic_light_info", self.on_info, LATCHED_QOS)
        if self.privileged:
            self.create_subscription(CarlaTrafficLightStatusList, "~/input/traffic_light_status",
                                     self.on_status, qos)
        if self.get_parameter("use_sim_time").value:
            self.create_subscription(Clock, "/clock", self.on_clock, CLOCK_QOS)
        self.get_logger().info("traffic_light_reader ready"
                               + (": PRIVILEGED ABLATION, states copied from the simulator's ground truth"
                                  if self.privileged else ""))

    # ---------------------------------------------------------------- inputs
    def on_camera_info(self, msg: CameraInfo) -> None:
        k = camera_matrix(msg)
        if k is None:   # a malformed one is refused (the last good K stays), never silently
            self._input_error("camera_info", "camera_info refused: K unset, not finite or a focal length <= 0")
            return
        self.k = k

    def on_route(self, msg: Path) -> None:
        route = np.array([[p.pose.position.x, p.pose.position.y] for p in msg.poses], float).reshape(-1, 2)
        if msg.header.frame_id not in ("map", "") or len(route) < 2 or not np.all(np.isfinite(route)):
            self._input_error("route", f"route refused (the last good one stays): {len(route)} poses in frame "
                              f"'{msg.header.frame_id}'; needs >= 2 finite poses in 'map'")
            return
        self.route = route
        self._match()

    def _input_error(self, aspect: str, text: str) -> None:
        self.get_logger().error(text, throttle_duration_sec=2.0)
        self.diag_pub.publish(diag.array(self.get_clock().now().to_msg(), [
            diag.status(f"{self.get_name()}: {aspect}", diag.ERROR, text)]))

    def on_info(self, msg: CarlaTrafficLightInfoList) -> None:
        try:
            self.heads = light_heads_from_info(msg)
        except ValueError as exc:
            self.heads = []
            self._input_error("traffic_light_info", f"traffic light info ignored: {exc}")
        self._match()

    def on_status(self, msg: CarlaTrafficLightStatusList) -> None:
        self.gt_states = {int(s.id): int(s.state) for s in msg.traffic_lights}

    def on_odom(self, msg: Odometry) -> None:
        res = self.sync.on_pose(odometry_to_pose(msg))
        if res.rejected:
            self._input_error("odometry", f"odometry ignored: {res.rejected}")
        for r in res.released:
            self._process(r)

    def on_image(self, msg: Image) -> None:
        for r in self.sync.on_input(msg, time_to_seconds(msg.header.stamp)).released:
            self._process(r)

    def on_clock(self, msg: Clock) -> None:
        for r in self.sync.on_clock(time_to_seconds(msg.clock)).released:
            self._process(r)

    def _match(self) -> None:
        self.route_heads = (heads_on_route(self.heads, self.route)
                            if self.route is not None and len(self.route) >= 2 else [])

    # ---------------------------------------------------------------- reading
    def _process(self, r: Release) -> None:
        t0 = time.perf_counter()
        msg: Image = r.payload
        problem = ""
        items = []
        if r.pose is None:
            problem = f"no odometry near the image's stamp {r.stamp_s:.3f} s: lights not read"
        elif self.route_heads:
            s_ego = float(project_on_polyline(self.route, np.array([[r.pose.x, r.pose.y]]))[0][0])
            chosen = [(h, s - s_ego) for h, s in self.route_heads
                      if -self.p["passed_keep_m"] <= s - s_ego <= self.p["route_lookahead_m"]]
            if chosen:
                try:
                    readings = self._read(msg, r.pose, [h for h, _ in chosen])
                except ValueError as exc:
                    problem = f"image not read: {exc}"
                    readings = [(UNKNOWN, 0.0, REASON_NO_CALIBRATION)] * len(chosen)
                items = [(h.id, st, conf, dist, reason)
                         for (h, dist), (st, conf, reason) in zip(chosen, readings, strict=True)]
        self.pub.publish(light_states_msg(msg.header.stamp, self.p["map_frame"], items))
        ms = 1e3 * (time.perf_counter() - t0)
        values = {"lights": len(items), "read": sum(1 for it in items if it[1] in LIT_STATES),
                  "source": self.p["source"], **self.extrinsic.diagnostic_values(msg.header.frame_id or None)}
        statuses = [diag.processing_time_status(self.get_name(), ms, self.p["processing_budget_ms"],
                                                self.p["processing_error_budget_ms"], values)]
        if problem or (self.k is None and items and not self.privileged):
            text = problem or "no CameraInfo received yet: lights not read"
            statuses.append(diag.status(f"{self.get_name()}: input", diag.ERROR, text))
            self.get_logger().error(text, throttle_duration_sec=2.0)
        self.diag_pub.publish(diag.array(msg.header.stamp, statuses))

    def _read(self, msg: Image, pose: EgoPose, heads: list) -> list[tuple[int, float, int]]:
        """(state, confidence, reason) per head."""
        if self.privileged:
            return [(self.gt_states.get(h.id, UNKNOWN), 1.0, REASON_NONE) for h in heads]
        from tps_inference.conversions import ConversionError, image_to_array

        expected = self.p["camera_frame"]
        if expected and msg.header.frame_id != expected:
            raise ValueError(f"image in frame '{msg.header.frame_id}', expected '{expected}'")
        try:
            img = image_to_array(msg)
        except ConversionError as exc:
            raise ValueError(str(exc)) from exc
        if msg.encoding in ("bgra8", "bgr8"):
            img = img[..., 2::-1]
        elif msg.encoding == "rgba8":
            img = img[..., :3]
        elif msg.encoding != "rgb8":
            raise ValueError(f"encoding '{msg.encoding}' not supported (rgb8, rgba8, bgr8, bgra8)")
        base_to_map = RigidTransform.from_xyz_rpy((pose.x, pose.y, 0.0), (0.0, 0.0, pose.yaw))
        optical_to_map = base_to_map @ self.extrinsic.transform(msg.header.frame_id or None)
        readings = self.reader.read(np.ascontiguousarray(img), self.k, optical_to_map, heads)
        return [(rd.state, rd.confidence, rd.reason) for rd in readings]


NODE_CLASS = TrafficLightReaderNode


def main(args=None) -> None:
    """Console script ``traffic_light_reader``."""
    sys.exit(run_node(NODE_CLASS, "traffic_light_reader", args))


if __name__ == "__main__":
    main()
