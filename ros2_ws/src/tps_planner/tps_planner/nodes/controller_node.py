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
runs of the same seed diverge. If the odometry never comes, the next clock tick tracks it from the
nearest pose and says so in the diagnostics.
"""

from __future__ import annotations

import sys
import time

from carla_msgs.msg import CarlaEgoVehicleControl
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from tps_msgs.msg import PlannedTrajectory

from tps_planner import conversions as conv
from tps_planner.controller import Controller, ControllerParams, ControlResult
from tps_planner.nodes.common import (
    CLOCK_QOS,
    DIAGNOSTICS_QOS,
    TRAJECTORY_QOS,
    load_params,
    run_node,
    sensor_qos,
)
from tps_planner.trajectory import PoseHistory, validate_trajectory

NODE_NAME = "controller"
ODOM_HISTORY = 50            # poses kept for stamp lookup (5 s at 10 Hz)
POSE_TOLERANCE_S = 0.25      # nearest pose accepted when the trajectory's own is missing, s


class ControllerNode(Node):
    """Thin node around :class:`tps_planner.controller.Controller`."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("node_name", NODE_NAME)
        super().__init__(**kwargs)
        self.core_params, self.cfg = load_params(self, "controller_node", ControllerParams)
        self.controller = Controller(self.core_params)
        self.trajectory = None          # last valid Trajectory
        self.poses = PoseHistory(ODOM_HISTORY)
        self.pending = None             # trajectory waiting for the odometry of its stamp
        self.published = False          # any command sent yet (start-up ends with the first)
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

    @property
    def pose(self):
        """The newest ego pose (None before the first odometry)."""
        return self.poses.latest

    def _on_odometry(self, msg: Odometry) -> None:
        self.poses.append(conv.odometry_to_pose(msg))
        if self.pending is not None and self.poses.reached(self.pending.stamp_s):
            self._track_pending()

    def _on_trajectory(self, msg: PlannedTrajectory) -> None:
        traj = conv.trajectory_from_msg(msg)
        if self.pending is not None and not self._starting_blind():
            self._track_pending()       # its odometry never came: tracked from the nearest pose
        reason = validate_trajectory(traj, self.core_params.expected_frame)
        if reason is None and not self.poses.reached(traj.stamp_s):
            self.pending = traj         # wait for the odometry of this stamp
            return
        self._track(traj, reason)

    def _starting_blind(self) -> bool:
        """Start-up without any odometry yet: a waiting trajectory is superseded, not tracked.
        Tracking it would publish a "no valid odometry" emergency brake whose jerk state depends
        on whether the first odometry or the first trajectory won the DDS race (seen as a
        nondeterministic first step); the synchronous bridge re-publishes step 0 until a
        command arrives, so waiting for the odometry keeps the start deterministic."""
        return self.pose is None and not self.published

    def _track_pending(self) -> None:
        traj, self.pending = self.pending, None
        self._track(traj, None)         # only valid trajectories wait

    def _track(self, traj, reason: str | None) -> None:
        """Track ``traj`` from the pose of its stamp; ``reason`` says why it is invalid (None if
        valid). An invalid trajectory counts as missing: brake, stamped with the current clock."""
        t0 = time.perf_counter()
        now = max(self._now_s(), traj.stamp_s)
        pose = self.poses.at(traj.stamp_s, POSE_TOLERANCE_S) or self.pose
        if reason is None:
            self.trajectory = traj
        res = self.controller.update(traj, pose, now)
        stamp = traj.stamp_s if reason is None else now
        note = None if self.poses.has(traj.stamp_s) else f"no odometry of stamp {traj.stamp_s:.3f} s: nearest pose used"
        self._publish(res, stamp, time.perf_counter() - t0, note)

    def _check_stale(self, now: float) -> None:
        if self.pending is not None and now > self.pending.stamp_s + 1e-6 and not self._starting_blind():
            self._track_pending()       # the clock moved on without its odometry
        if self.trajectory is None and not self.cfg["brake_before_first_trajectory"]:
            # Start-up: stay silent, so the synchronous bridge keeps re-publishing step 0 until
            # the stack is up (a deterministic start), but say so.
            self._diag_waiting(now)
            return
        if self.controller.is_stale(self.trajectory, now):
            t0 = time.perf_counter()
            res = self.controller.update(self.trajectory, self.pose, now)
            self._publish(res, now, time.perf_counter() - t0)

    def _on_clock(self, msg: Clock) -> None:
        now = conv.time_to_seconds(msg.clock)
        if self.last_clock_s is not None and now <= self.last_clock_s:
            return
        self.last_clock_s = now
        self._check_stale(now)

    def _on_wall_tick(self) -> None:
        self._check_stale(self._now_s())

    def _diag_waiting(self, now: float) -> None:
        self.pub_diag.publish(conv.diagnostic_array(conv.seconds_to_time(now), [conv.diagnostic_status(
            f"{self.get_name()}: trajectory", 2, "no trajectory received yet: no control published "
            "(brake_before_first_trajectory is false)", {"stamp_s": now})]))
        self.get_logger().error("no trajectory received yet", throttle_duration_sec=2.0)

    def _publish(self, res: ControlResult, stamp_s: float, dt_s: float, note: str | None = None) -> None:
        self.pub_control.publish(conv.control_to_msg(res, stamp_s))
        self.published = True
        name = self.get_name()
        ms = dt_s * 1e3
        budget = self.cfg["processing_budget_ms"]
        values = {
            "status": res.status, "throttle": res.throttle, "steer": res.steer, "brake": res.brake,
            "accel_cmd_mps2": res.accel_cmd_mps2, "target_speed_mps": res.target_speed_mps,
            "speed_error_mps": res.speed_error_mps, "lateral_error_m": res.lateral_error_m,
            "trajectory_age_ms": res.trajectory_age_s * 1e3, "stamp_s": stamp_s,
        }
        level = 0 if res.status == "tracking" else 2
        msg = "tracking" if level == 0 else f"braking to a stop: {res.reason}"
        if note is not None:
            level = max(level, 1)
            msg = f"{msg}; {note}"
        statuses = [
            conv.diagnostic_status(f"{name}: trajectory", level, msg, values),
            conv.diagnostic_status(f"{name}: processing_time", 1 if ms > budget else 0,
                                   f"{ms:.2f} ms" + (f" > budget {budget:.1f} ms" if ms > budget else ""),
                                   {"processing_time_ms": ms, "budget_ms": budget}),
        ]
        self.pub_diag.publish(conv.diagnostic_array(conv.seconds_to_time(stamp_s), statuses))
        if level:
            self.get_logger().error(msg, throttle_duration_sec=2.0)


NODE_CLASS = ControllerNode


def main(args=None) -> None:
    """Console script ``controller_node``."""
    sys.exit(run_node(NODE_CLASS, "controller_node", args))


if __name__ == "__main__":
    main()
