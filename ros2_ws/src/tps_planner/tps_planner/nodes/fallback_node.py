"""fallback_node: the point-cloud fallback planner (never reads detections).

Inputs: ``~/input/points`` (sensor_msgs/PointCloud2, lidar frame), ``~/input/odometry``
(nav_msgs/Odometry), ``~/input/route`` (nav_msgs/Path, transient local), ``~/input/monitor_status``
(tps_msgs/MonitorStatus), ``~/input/lane_map`` (tps_msgs/LaneMap, transient local: lanes, speed
limits, crosswalks), ``/tf_static`` and ``/tf`` (the lidar extrinsic ``T_base<-lidar``;
``lidar_extrinsic`` until the tree connects the cloud's frame); with ``use_traffic_lights``
also ``~/input/traffic_light_info`` (carla_msgs/CarlaTrafficLightInfoList, transient local: map
knowledge) and ``~/input/traffic_lights`` (tps_msgs/TrafficLightStates of the classical light
reader). Outputs: ``~/output/trajectory`` (tps_msgs/PlannedTrajectory, source
fallback or minimal-risk, stamped with the cloud's stamp), ``~/output/markers``
(visualization_msgs/MarkerArray), ``/diagnostics``.

Traffic lights (``tps_planner.traffic_rules``): a cycle uses the reader's output of its own stamp
(the camera frame of the same step); while the route has stop lines and that output has not
arrived, the cloud waits for it (at most ``light_wait_s`` of wall time, then every light counts
as UNKNOWN).

Route and lane map are laid over each other on a worker thread (``tps_planner.route_maps``), not
in their callbacks (the route is even subscribed raw and decoded there: rclpy's deserialisation of a
1600-pose route alone held the executor ~70 ms): the executor keeps taking clouds while a new drive's map is built (built inline,
the first clouds of each drive replaced each other in the depth-1 queue and went unanswered). A
finished build is installed between two cycles (a guard condition wakes the executor). A cycle uses
the map installed last; only when that one cannot plan it (none yet, no lane map with
``require_lane_map``, or the ego farther than ``max_route_offset_m`` from its route: a new drive)
and a newer one is being built, the cycle waits for it (at most ``map_wait_s`` of wall time), so
that a closed loop or a lockstep replay plans its first frame with the route sent before it, as
before.

Each cloud is planned with the ego pose at the cloud's stamp: if the odometry of that stamp has
not arrived yet, the cloud waits for it (the synchronous loop publishes both per step); the next
cloud, or the clock passing its stamp by ``pose_wait_s``, releases it with the nearest pose
(tps_common.stamp_sync).
"""

from __future__ import annotations

import sys
import time

from carla_msgs.msg import CarlaTrafficLightInfoList
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry, Path
from rclpy.clock import Clock as WallClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import PointCloud2
from tps_common import diagnostics as diag
from tps_common.conversions import light_heads_from_info, seconds_to_time, time_to_seconds
from tps_common.frames import parse_static_transform
from tps_common.node import load_params, run_node
from tps_common.qos import CLOCK_QOS, DIAGNOSTICS_QOS, LATCHED_QOS, TRAJECTORY_QOS, sensor_qos
from tps_common.stamp_sync import PoseKind, Release, StampSync, StampSyncParams
from tps_common.tf import ExtrinsicSource
from tps_msgs.msg import LaneMap, MonitorStatus, PlannedTrajectory, TrafficLightState, TrafficLightStates
from visualization_msgs.msg import MarkerArray

from tps_planner import conversions as conv
from tps_planner.fallback import FallbackParams, FallbackPlanner, VirtualStop
from tps_planner.route_maps import MapUpdate, RouteMapWorker
from tps_planner.traffic_rules import TrafficLightStage, TrafficRuleParams
from tps_planner.trajectory import STATE_NAMES

NODE_NAME = "fallback"
ODOM_HISTORY = 50           # poses kept for stamp lookup (5 s at 10 Hz)


class FallbackNode(Node):
    """Thin node around :class:`tps_planner.fallback.FallbackPlanner`."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("node_name", NODE_NAME)
        super().__init__(**kwargs)
        self.core_params, self.cfg = load_params(self, "fallback_node", FallbackParams)
        self.planner = FallbackPlanner(self.core_params)
        # T_base<-lidar: from /tf_static (or /tf) once it connects the frames, else configured.
        self.extrinsic = ExtrinsicSource(
            self, target_frame=self.cfg["base_frame"], sensor_frame=self.cfg["lidar_frame"] or "lidar",
            configured=parse_static_transform("lidar_extrinsic", self.cfg["lidar_extrinsic"]), name="lidar")
        self.sync: StampSync = StampSync(StampSyncParams(
            pose_tolerance_s=self.cfg["pose_tolerance_s"], history_capacity=ODOM_HISTORY,
            clock_release_after_s=self.cfg["pose_wait_s"]))
        self.monitor_state: int | None = None
        self.last_cloud_stamp_s: float | None = None
        self.route_error = "no route received"
        self._map_installed = 0       # sequence number of the last route-map request installed
        qos = sensor_qos(self.cfg["reliable_sensor_qos"])
        self.pub_traj = self.create_publisher(PlannedTrajectory, "~/output/trajectory", TRAJECTORY_QOS)
        self.pub_markers = self.create_publisher(MarkerArray, "~/output/markers", 5)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self.create_subscription(PointCloud2, "~/input/points", self._on_points,
                                 sensor_qos(self.cfg["reliable_sensor_qos"], latest_only=True))
        self.create_subscription(Odometry, "~/input/odometry", self._on_odometry, qos)
        # raw: the route's CDR bytes are decoded on the route-map worker thread (module docstring)
        self.create_subscription(Path, "~/input/route", self._on_route, LATCHED_QOS, raw=True)
        self.create_subscription(LaneMap, "~/input/lane_map", self._on_lane_map, LATCHED_QOS)
        self.create_subscription(MonitorStatus, "~/input/monitor_status", self._on_monitor, TRAJECTORY_QOS)
        if self.get_parameter("use_sim_time").value:
            self.create_subscription(Clock, "/clock", self._on_clock, CLOCK_QOS)
        else:
            self.create_timer(0.1, lambda: self._check_stale(self.get_clock().now().nanoseconds * 1e-9))
        self.lights: TrafficLightStage | None = None
        # cycles waiting for the light reader or for a route map being built: (cycle, parked at [s])
        self._parked: list[tuple[Release, float]] = []
        self._map_guard = self.create_guard_condition(self._on_map_built)
        self.map_worker = RouteMapWorker(self.core_params, notify=self._map_guard.trigger)
        self.create_timer(0.05, self._release_parked, clock=WallClock(clock_type=ClockType.STEADY_TIME))
        if self.cfg["use_traffic_lights"]:
            self.lights = TrafficLightStage(TrafficRuleParams.from_node_config(self.cfg))
            self.create_subscription(CarlaTrafficLightInfoList, "~/input/traffic_light_info", self._on_light_info,
                                     LATCHED_QOS)
            self.create_subscription(TrafficLightStates, "~/input/traffic_lights", self._on_lights, TRAJECTORY_QOS)

    # ---------------------------------------------------------------- inputs
    def _on_route(self, raw: bytes) -> None:
        self.map_worker.put_route(raw)          # decoded and built on the worker thread (module docstring)

    def _on_lane_map(self, msg: LaneMap) -> None:
        self.map_worker.put_lane_map(msg)

    def _on_map_built(self) -> None:
        """Install the worker's finished route maps (executor thread), then plan the cycles that
        waited for them."""
        for update in self.map_worker.take():
            self._install(update)
        self._release_parked()

    def _install(self, u: MapUpdate) -> None:
        if u.built is not None:
            self.planner.install_route_map(u.built, new_route=u.new_route)
            if u.new_route and self.lights is not None:
                self.lights.set_route(u.route_xy)
        if u.route_error is not None:
            self.route_error = u.route_error
        self._map_installed = u.seq
        for aspect, text in u.errors:
            self._diag_error(aspect, text)
        if u.infos:
            self.get_logger().info("; ".join(u.infos))

    def _map_pending(self) -> bool:
        """A route or lane map has arrived that is not installed yet."""
        return self.map_worker.requested > self._map_installed

    def _on_light_info(self, msg: CarlaTrafficLightInfoList) -> None:
        try:
            self.lights.set_heads(light_heads_from_info(msg))
        except ValueError as exc:
            self._diag_error("traffic_lights", f"traffic light info ignored: {exc}")

    def _on_lights(self, msg: TrafficLightStates) -> None:
        stamp, observations = conv.light_observations(msg)
        bad = [o for o in observations if o.state > TrafficLightState.UNKNOWN or not 0.0 <= o.confidence <= 1.0]
        if msg.header.frame_id not in ("map", "") or bad:
            # malformed (found by tests/fuzz): every light of this stamp counts as UNKNOWN
            self._diag_error("traffic_lights", f"traffic_lights refused (lights UNKNOWN for stamp {stamp:.3f} s): "
                             f"frame '{msg.header.frame_id}', {len(bad)} light(s) with an unknown state or a "
                             "confidence outside [0, 1]")
            observations = []
        self.lights.put(stamp, observations)
        self._release_parked()

    def _waits(self, r: Release, parked_at: float, now: float) -> bool:
        """Whether cycle ``r`` (parked at ``parked_at``, monotonic [s]) still waits: for the light
        reading of its stamp (at most ``light_wait_s``), or for a route map being built when the
        installed one cannot plan it (at most ``map_wait_s``)."""
        waited = now - parked_at
        if (waited <= self.cfg["map_wait_s"] and r.pose is not None and self._map_pending()
                and not self.planner.serves(r.pose)):
            return True
        return self.lights is not None and waited <= self.cfg["light_wait_s"] and self.lights.waits_for(r.stamp_s)

    def _release_parked(self) -> None:
        """Plan the parked cycles that no longer wait, oldest stamp first."""
        if not self._parked:
            return
        now = time.monotonic()
        ready = [(r, t) for r, t in self._parked if not self._waits(r, t, now)]
        for item in sorted(ready, key=lambda item: item[0].stamp_s):
            self._parked.remove(item)
            self._process(item[0])

    def _on_monitor(self, msg: MonitorStatus) -> None:
        state, _ = conv.monitor_state_of(msg)
        if state not in STATE_NAMES:
            self._diag_error("monitor", f"unknown monitor state {state}: ignored")
            return
        self.monitor_state = state

    def _on_odometry(self, msg: Odometry) -> None:
        res = self.sync.on_pose(conv.odometry_to_pose(msg))
        if res.rejected:
            self._diag_error("odometry", f"odometry ignored: {res.rejected}")
            return
        for r in res.released:
            self._cycle(r)

    def _on_points(self, msg: PointCloud2) -> None:
        for r in self.sync.on_input(msg, time_to_seconds(msg.header.stamp)).released:
            self._cycle(r)

    def _on_clock(self, msg: Clock) -> None:
        self._check_stale(time_to_seconds(msg.clock))

    def _check_stale(self, now_s: float) -> None:
        for r in self.sync.on_clock(now_s).released:   # the clock moved on without its odometry
            self._cycle(r)
        timeout = self.cfg["cloud_timeout_s"]
        if self.last_cloud_stamp_s is None:
            age_txt = "no point cloud received"
        elif now_s - self.last_cloud_stamp_s > timeout:
            age_txt = f"point cloud stale: last one {now_s - self.last_cloud_stamp_s:.2f} s ago"
        else:
            return
        self._diag_error("points", f"{age_txt} (timeout {timeout:.2f} s): no fallback trajectory",
                         stamp_s=now_s)

    # ---------------------------------------------------------------- planning
    def _cycle(self, r: Release) -> None:
        """Plan cycle ``r`` now, or park it while it waits (:meth:`_waits`)."""
        now = time.monotonic()
        if self._waits(r, now, now):
            self._parked.append((r, now))
            return
        self._process(r)

    def _process(self, r: Release) -> None:
        t0 = time.perf_counter()
        msg, stamp, pose = r.payload, r.stamp_s, r.pose
        self.last_cloud_stamp_s = stamp
        extra: list[str] = []
        expected = self.cfg["lidar_frame"]
        points = None
        if expected and msg.header.frame_id != expected:
            extra.append(f"cloud frame '{msg.header.frame_id}' is not '{expected}': cloud ignored")
        else:
            try:
                points = conv.pointcloud_to_xyz(msg)
            except conv.ConversionError as exc:
                extra.append(f"malformed point cloud: {exc}")
        if pose is None:
            self._diag_error("planning", "no odometry near the cloud's stamp "
                             f"{stamp:.3f} s: no trajectory", stamp_s=stamp)
            return
        if r.pose_kind is PoseKind.NEAREST:
            extra.append(f"odometry of the cloud's stamp missing: used the pose at {pose.stamp_s:.3f} s")
        self.planner.set_lidar_extrinsic(self.extrinsic.transform(msg.header.frame_id or None))
        light_values, stops = {}, ()
        if self.lights is not None and self.planner.route is not None:
            if not self.lights.has(stamp) and self.lights.rules.stop_lines:
                extra.append("no light reading for this frame: every light UNKNOWN")
            s_ego, _ = self.planner.project_ego(pose)
            rule = self.lights.update(stamp, s_ego + self.core_params.ego_length_m / 2, pose.speed_mps)
            stops = rule.stops
            d = rule.decisions[0] if rule.decisions else None
            light_values = {"light_id": d.light_id if d else 0, "light_state": d.effective if d else -1,
                            "light_gap_m": d.gap_m if d else float("inf"), "light_stop": bool(stops),
                            "light_decision": d.reason if d else "no stop line ahead"}
        res = self.planner.update(points, stamp, pose, self.monitor_state,
                                  virtual_stops=tuple(VirtualStop(s, "traffic light") for s in stops))
        if res.trajectory is None:
            self._diag_error("planning", "; ".join([*res.messages, *extra, self.route_error]).strip("; "),
                             stamp_s=stamp)
            return
        self.pub_traj.publish(conv.trajectory_to_msg(res.trajectory))
        if self.cfg["publish_markers"]:
            self.pub_markers.publish(conv.fallback_markers(res, stamp))
        ms = (time.perf_counter() - t0) * 1e3
        level = max(res.level, diag.WARN if extra else diag.OK, diag.ERROR if points is None else diag.OK)
        ob = res.obstacle
        values = {
            "nearest_obstacle_m": ob.gap_m if ob is not None else float("inf"),
            "closing_speed_mps": ob.closing_speed_mps if ob is not None else 0.0,
            "obstacle_speed_mps": ob.speed_mps if ob is not None else 0.0,
            "obstacle_measured": ob.measured if ob is not None else False,
            "required_decel_mps2": res.required_decel_mps2,
            "point_count": res.n_points, "finite_points": res.n_finite,
            "obstacle_points": res.n_obstacle_points, "corridor_points": ob.n_points if ob is not None else 0,
            "nan_fraction": res.nan_fraction, "ego_speed_mps": pose.speed_mps, "route_s_m": res.s_ego_m,
            "source": "minimal_risk" if res.minimal_risk else "fallback",
            "plan_speed_end_mps": float(res.trajectory.speed_mps[-1]),
            "lane_state": res.lane.state, "lane_id": res.lane.lane_id, "lane_target": res.lane.target_lane_id,
            "lane_reason": res.lane.reason, "objects": len(res.objects),
            "stops": "; ".join(f"{st.reason} at {st.s_m:.1f} m" for st in res.stops),
            **self.extrinsic.diagnostic_values(msg.header.frame_id or None),
            **light_values,
        }
        text = "; ".join([*res.messages, *extra]) or "ok"
        statuses = [
            diag.status(f"{self.get_name()}: planning", level, text, values),
            diag.processing_time_status(self.get_name(), ms, self.cfg["processing_budget_ms"],
                                        self.cfg["processing_error_budget_ms"]),
        ]
        self.pub_diag.publish(diag.array(msg.header.stamp, statuses))

    def destroy_node(self) -> None:
        """Stop the route-map worker, then the node."""
        self.map_worker.close()
        super().destroy_node()

    def _diag_error(self, aspect: str, text: str, stamp_s: float | None = None) -> None:
        stamp = seconds_to_time(stamp_s) if stamp_s is not None else self.get_clock().now().to_msg()
        self.pub_diag.publish(diag.array(stamp, [diag.status(f"{self.get_name()}: {aspect}", diag.ERROR, text)]))
        self.get_logger().error(text, throttle_duration_sec=2.0)


NODE_CLASS = FallbackNode


def main(args=None) -> None:
    """Console script ``fallback_node``."""
    sys.exit(run_node(NODE_CLASS, "fallback_node", args))


if __name__ == "__main__":
    main()
