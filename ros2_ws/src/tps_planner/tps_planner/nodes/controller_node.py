"""controller_node: tracks the selected PlannedTrajectory, publishes CarlaEgoVehicleControl.

Inputs: ``~/input/trajectory`` (tps_msgs/PlannedTrajectory), ``~/input/odometry``
(nav_msgs/Odometry), ``/clock`` (with use_sim_time). Output: ``~/output/control``
(carla_msgs/CarlaEgoVehicleControl, stamped with the trajectory's stamp; remapped to
/carla/ego_vehicle/vehicle_control_cmd), ``/diagnostics``. When ``/clock`` advances while the
trajectory is stale or missing, a braking command stamped with the current clock is published so
the synchronous loop never deadlocks (docs/CONTRACTS.md).

Each trajectory is tracked from the ego pose *of its stamp* (the odometry published with the
sensor data it was planned from). DDS does not order messages across topics, so when that
odometry has not arrived yet the trajectory waits for it; tracking from "the latest pose" made two
runs of the same seed diverge. If the odometry never comes, the next trajectory or clock tick
tracks it from the nearest pose and says so in the diagnostics (tps_common.stamp_sync).
"""

from __future__ import annotations

import sys
import time

from carla_msgs.msg import CarlaEgoVehicleControl
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from tps_common import diagnostics as diag
from tps_common.conversions import seconds_to_time, time_to_seconds
from tps_common.node import load_params, run_node
from tps_common.qos import CLOCK_QOS, DIAGNOSTICS_QOS, TRAJECTORY_QOS, sensor_qos
from tps_common.stamp_sync import PoseKind, Release, StampSync, StampSyncParams
from tps_msgs.msg import PlannedTrajectory

from tps_planner import conversions as conv
from tps_planner.controller import Controller, ControllerParams, ControlResult
from tps_planner.trajectory import validate_trajectory

NODE_NAME = "controller"
ODOM_HISTORY = 50            # poses kept for stamp lookup (5 s at 10 Hz)


class ControllerNode(Node):
    """Thin node around :class:`tps_planner.controller.Controller`."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("node_name", NODE_NAME)
        super().__init__(**kwargs)
        self.core_params, self.cfg = load_params(self, "controller_node", ControllerParams)
        self.controller = Controller(self.core_params)
        self.trajectory = None          # last valid Trajectory
        # Each trajectory waits for the odometry of its stamp. At start-up without any odometry, a
        # waiting trajectory is superseded instead of tracked blind: a "no valid odometry" brake
        # would set a jerk state depending on which of the first odometry and trajectory won the
        # DDS race; the synchronous bridge re-publishes step 0 until a command arrives.
        self.sync: StampSync = StampSync(StampSyncParams(
            pose_tolerance_s=self.cfg["pose_tolerance_s"], history_capacity=ODOM_HISTORY,
            startup_needs_pose=True, latest_pose_fallback=True))
        self.last_clock_s = None
        self.pub_control = self.create_publisher(CarlaEgoVehicleControl, "~/output/control", 10)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self.create_subscription(PlannedTrajectory, "~/input/trajectory", self._on_trajectory, TRAJECTORY_QOS)
        self.create_subscription(Odometry, "~/input/odometry", self._on_odometry,
                                 sensor_qos(self.cfg["reliable_sensor_qos"]))
        if self.get_parameter("use_sim_time").value:
            self.create_subscription(Clock, "/clock", self._on_clock, CLOCK_QOS)
        else:
            self.create_timer(self.core_params.nominal_dt_s, self._on_wall_tick)

    def _now_s(self) -> float:
        return self.get_clock().now().nanoseconds * 1e-9

    def _on_odometry(self, msg: Odometry) -> None:
        res = self.sync.on_pose(conv.odometry_to_pose(msg))
        if res.rejected:
            self._diag_error("odometry", f"odometry ignored: {res.rejected}")
        for r in res.released:
            self._track(r)

    def _on_trajectory(self, msg: PlannedTrajectory) -> None:
        traj = conv.trajectory_from_msg(msg)
        reason = validate_trajectory(traj, self.core_params.expected_frame)
        # only valid trajectories wait for their odometry; an invalid one brakes at once
        for r in self.sync.on_input((traj, reason), traj.stamp_s, wait=reason is None).released:
            self._track(r)

    def _track(self, r: Release) -> None:
        """Track a released trajectory from the pose of its stamp (``r.pose``); an invalid one
        (``reason`` set) counts as missing: brake, stamped with the current clock."""
        traj, reason = r.payload
        t0 = time.perf_counter()
        now = max(self._now_s(), traj.stamp_s)
        if reason is None:
            self.trajectory = traj
        res = self.controller.update(traj, r.pose, now)
        stamp = traj.stamp_s if reason is None else now
        note = None if r.pose_kind is PoseKind.EXACT else f"no odometry of stamp {traj.stamp_s:.3f} s: nearest pose used"
        self._publish(res, stamp, time.perf_counter() - t0, note)

    def _check_stale(self, now: float) -> None:
        for r in self.sync.on_clock(now).released:   # the clock moved on without its odometry
            self._track(r)
        if self.trajectory is None and not self.cfg["brake_before_first_trajectory"]:
            # Start-up: stay silent, so the synchronous bridge keeps re-publishing step 0 until
            # the stack is up (a deterministic start), but say so.
            self._diag_waiting(now)
            return
        if self.controller.is_stale(self.trajectory, now):
            t0 = time.perf_counter()
            res = self.controller.update(self.trajectory, self.sync.latest_pose, now)
            self._publish(res, now, time.perf_counter() - t0)

    def _on_clock(self, msg: Clock) -> None:
        now = time_to_seconds(msg.clock)
        if self.last_clock_s is not None and now <= self.last_clock_s:
            return
        self.last_clock_s = now
        self._check_stale(now)

    def _on_wall_tick(self) -> None:
        self._check_stale(self._now_s())

    def _diag_waiting(self, now: float) -> None:
        self.pub_diag.publish(diag.array(seconds_to_time(now), [diag.status(
            f"{self.get_name()}: trajectory", diag.ERROR, "no trajectory received yet: no control published "
            "(brake_before_first_trajectory is false)", {"stamp_s": now})]))
        self.get_logger().error("no trajectory received yet", throttle_duration_sec=2.0)

    def _diag_error(self, aspect: str, text: str) -> None:
        self.pub_diag.publish(diag.array(self.get_clock().now().to_msg(), [
            diag.status(f"{self.get_name()}: {aspect}", diag.ERROR, text)]))
        self.get_logger().error(text, throttle_duration_sec=2.0)

    def _publish(self, res: ControlResult, stamp_s: float, dt_s: float, note: str | None = None) -> None:
        self.pub_control.publish(conv.control_to_msg(res, stamp_s))
        self.sync.mark_started()
        name = self.get_name()
        ms = dt_s * 1e3
        values = {
            "status": res.status, "throttle": res.throttle, "steer": res.steer, "brake": res.brake,
            "accel_cmd_mps2": res.accel_cmd_mps2, "target_speed_mps": res.target_speed_mps,
            "speed_error_mps": res.speed_error_mps, "lateral_error_m": res.lateral_error_m,
            "trajectory_age_ms": res.trajectory_age_s * 1e3, "stamp_s": stamp_s,
        }
        level = diag.OK if res.status == "tracking" else diag.ERROR
        msg = "tracking" if level == diag.OK else f"braking to a stop: {res.reason}"
        if note is not None:
            level = max(level, diag.WARN)
            msg = f"{msg}; {note}"
        statuses = [
            diag.status(f"{name}: trajectory", level, msg, values),
            diag.processing_time_status(name, ms, self.cfg["processing_budget_ms"],
                                        self.cfg["processing_error_budget_ms"]),
        ]
        self.pub_diag.publish(diag.array(seconds_to_time(stamp_s), statuses))
        if level:
            self.get_logger().error(msg, throttle_duration_sec=2.0)


NODE_CLASS = ControllerNode


def main(args=None) -> None:
    """Console script ``controller_node``."""
    sys.exit(run_node(NODE_CLASS, "controller_node", args))


if __name__ == "__main__":
    main()
