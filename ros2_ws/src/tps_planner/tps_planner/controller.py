"""Trajectory-tracking controller (core; no ROS imports).

Lateral: pure pursuit with a speed-dependent lookahead (default) or Stanley. Longitudinal: PID on
speed with feed-forward from the trajectory's acceleration. Output limits: steering rate, wheel
angle, acceleration, deceleration and jerk. The command is expressed in CARLA's convention:
``steer`` in [-1, 1], **positive = turn right** (negative yaw rate in REP-103), normalised by
the maximum wheel angle; ``throttle``/``brake`` in [0, 1] from the commanded acceleration by a
linear pedal map (full throttle = ``full_throttle_accel_mps2``, full brake =
``full_brake_decel_mps2``).

A stale, missing or invalid trajectory makes the controller brake to a stop with the wheel
angle held (``status`` says why), so the synchronous loop never waits on a planner.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tps_common.stamp_sync import EgoPose

from tps_planner.trajectory import (
    Trajectory,
    arc_length,
    point_at_arclength,
    sample_at_times,
    validate_trajectory,
    wrap_angle,
)

LATERAL_MODES = ("pure_pursuit", "stanley")


@dataclass(frozen=True)
class ControllerParams:
    """Controller parameters (SI units). See config/schema/controller_node.schema.json."""

    # Vehicle defaults match tps_sim.world.ego_model.EgoModelParams (the simulated ego).
    wheelbase_m: float = 2.8
    max_wheel_angle_rad: float = 0.61
    rear_axle_offset_m: float = 1.4           # base_link (footprint centre) to rear axle, m
    lateral_mode: str = "pure_pursuit"
    # lookahead = min + time * speed. Was 3 m + 0.5 s: pure pursuit then cut a junction's left turn
    # (11.6 m radius) and ran 0.5-0.6 m wide at its exit at 6-8 m/s, the ego's corner over the exit
    # lane's edge (VAL priority s1005, recorded); 2 m + 0.3 s halves it and still settles on a
    # straight road at 25 m/s without oscillating (tests/planner/test_controller.py).
    lookahead_min_m: float = 2.0
    lookahead_time_s: float = 0.3
    lookahead_max_m: float = 25.0
    stanley_gain: float = 1.5                 # 1/s
    stanley_softening_mps: float = 1.0
    speed_kp: float = 0.8                     # (m/s^2) per (m/s)
    speed_ki: float = 0.15                    # (m/s^2) per (m)
    speed_kd: float = 0.0                     # (m/s^2) per (m/s^2)
    integral_limit_m: float = 3.0             # anti-windup bound of the speed-error integral, m
    feedforward_gain: float = 1.0
    speed_preview_s: float = 0.2              # reference taken this far ahead in the plan, s
    max_accel_mps2: float = 2.5
    max_decel_mps2: float = 8.0
    comfort_decel_mps2: float = 3.0           # harder only when the plan asks (emergency)
    max_jerk_mps3: float = 3.0               # PDM comfort bound on longitudinal jerk: 4.13
    emergency_jerk_mps3: float = 30.0
    max_steer_rate_rad_s: float = 0.8         # wheel angle rate limit, rad/s
    full_throttle_accel_mps2: float = 3.5
    full_brake_decel_mps2: float = 8.0
    stop_speed_mps: float = 0.2               # below this with a stop requested: hold the brake
    hold_brake: float = 0.4                   # brake pedal held at standstill, [0, 1]
    stale_timeout_s: float = 0.5              # sim time
    stale_decel_mps2: float = 4.0
    nominal_dt_s: float = 0.1
    expected_frame: str = "map"

    def __post_init__(self) -> None:
        if self.lateral_mode not in LATERAL_MODES:
            raise ValueError(f"lateral_mode must be one of {LATERAL_MODES}, got {self.lateral_mode!r}")
        if self.lookahead_max_m < self.lookahead_min_m:
            raise ValueError("lookahead_max_m must be >= lookahead_min_m")


@dataclass(frozen=True)
class ControlResult:
    """One control command and what it was computed from.

    ``steer`` follows CARLA (positive = right); ``wheel_angle_rad`` follows REP-103 (positive =
    left). ``status`` is one of ``tracking``, ``stale``, ``missing``, ``invalid``.
    """

    throttle: float
    steer: float
    brake: float
    accel_cmd_mps2: float
    wheel_angle_rad: float
    status: str
    reason: str = ""
    target_speed_mps: float = 0.0
    speed_error_mps: float = 0.0
    lateral_error_m: float = 0.0
    lookahead_m: float = 0.0
    trajectory_age_s: float = float("nan")


def project_to_polyline(xy: np.ndarray, p: np.ndarray) -> tuple[float, float, float]:
    """Closest point of a polyline to ``p``.

    Returns:
        (s, lateral, yaw): arc length of the foot point (m), signed lateral offset of ``p`` from
        the polyline (m, positive = left of the direction of travel), and the segment heading.
    """
    if len(xy) == 1:
        return 0.0, 0.0, float("nan")
    a = xy[:-1]
    d = np.diff(xy, axis=0)
    seg_len2 = np.einsum("ij,ij->i", d, d)
    valid = seg_len2 > 1e-12
    if not np.any(valid):
        return 0.0, 0.0, float("nan")
    a, d, seg_len2 = a[valid], d[valid], seg_len2[valid]
    s_start = arc_length(xy)[:-1][valid]
    u = np.clip(np.einsum("ij,ij->i", p - a, d) / seg_len2, 0.0, 1.0)
    foot = a + u[:, None] * d
    dist2 = np.einsum("ij,ij->i", p - foot, p - foot)
    k = int(np.argmin(dist2))
    seg_len = math.sqrt(seg_len2[k])
    rel = p - foot[k]
    lateral = (d[k, 0] * rel[1] - d[k, 1] * rel[0]) / seg_len
    return float(s_start[k] + u[k] * seg_len), float(lateral), math.atan2(d[k, 1], d[k, 0])


class Controller:
    """Tracks a :class:`Trajectory`; call :meth:`update` once per control cycle."""

    def __init__(self, params: ControllerParams | None = None) -> None:
        self.params = params or ControllerParams()
        self.reset()

    def reset(self) -> None:
        """Forget the integrator and the rate-limiter memory."""
        self._integral_m = 0.0
        self._prev_err = None
        self._prev_accel = 0.0
        self._prev_wheel = 0.0
        self._prev_now = None
        self._snapshot = self._state()
        self._last_dt = self.params.nominal_dt_s

    # ------------------------------------------------------------------ helpers
    def is_stale(self, traj: Trajectory | None, now_s: float) -> bool:
        """True if ``traj`` is missing or older than ``stale_timeout_s`` at ``now_s``."""
        return traj is None or (now_s - traj.stamp_s) > self.params.stale_timeout_s

    def _state(self) -> tuple:
        return (self._integral_m, self._prev_err, self._prev_accel, self._prev_wheel)

    def _dt(self, now_s: float) -> float:
        """Time since the previous update. A repeated update at the same sim time (the
        synchronous bridge re-publishes a frame while it waits) restarts from the state before
        the first update at that time, so repeats never advance the integrator or rate limiters."""
        if self._prev_now is not None and abs(now_s - self._prev_now) <= 1e-9:
            (self._integral_m, self._prev_err, self._prev_accel, self._prev_wheel) = self._snapshot
            return self._last_dt
        dt = self.params.nominal_dt_s
        if self._prev_now is not None and 0.0 < now_s - self._prev_now <= 1.0:
            dt = now_s - self._prev_now
        self._prev_now = now_s
        self._snapshot = self._state()
        self._last_dt = dt
        return dt

    def _limit_accel(self, a_cmd: float, dt: float, emergency: bool) -> float:
        """Clip to the acceleration limits and rate-limit by the jerk limit. Only an emergency
        (the plan itself braking harder than comfort, or a stale trajectory) may brake harder
        than ``comfort_decel_mps2`` and use the emergency jerk limit; a speed error alone may not."""
        p = self.params
        floor = -p.max_decel_mps2 if emergency else -p.comfort_decel_mps2
        a_cmd = min(max(a_cmd, floor), p.max_accel_mps2)
        jerk = p.emergency_jerk_mps3 if emergency else p.max_jerk_mps3
        step = jerk * dt
        a = min(max(a_cmd, self._prev_accel - step), self._prev_accel + step)
        self._prev_accel = a
        return a

    def _limit_wheel(self, wheel: float, dt: float) -> float:
        p = self.params
        wheel = min(max(wheel, -p.max_wheel_angle_rad), p.max_wheel_angle_rad)
        step = p.max_steer_rate_rad_s * dt
        wheel = min(max(wheel, self._prev_wheel - step), self._prev_wheel + step)
        self._prev_wheel = wheel
        return wheel

    def _pedals(self, accel: float) -> tuple[float, float]:
        p = self.params
        if accel >= 0.0:
            return min(accel / p.full_throttle_accel_mps2, 1.0), 0.0
        return 0.0, min(-accel / p.full_brake_decel_mps2, 1.0)

    def _brake_result(self, dt: float, status: str, reason: str, pose: EgoPose | None,
                      age_s: float) -> ControlResult:
        p = self.params
        self._integral_m = 0.0
        self._prev_err = None
        speed = pose.speed_mps if pose is not None else float("inf")
        if speed < p.stop_speed_mps:
            accel = self._limit_accel(-p.stale_decel_mps2, dt, emergency=True)
            throttle, brake = 0.0, max(p.hold_brake, self._pedals(accel)[1])
        else:
            accel = self._limit_accel(-p.stale_decel_mps2, dt, emergency=True)
            throttle, brake = self._pedals(accel)
        wheel = self._limit_wheel(self._prev_wheel, dt)
        return ControlResult(throttle, -wheel / p.max_wheel_angle_rad, brake, accel, wheel, status, reason,
                             trajectory_age_s=age_s)

    # ------------------------------------------------------------------ lateral laws
    def _pure_pursuit(self, traj: Trajectory, pose: EgoPose) -> tuple[float, float, float]:
        p = self.params
        c, s = math.cos(pose.yaw), math.sin(pose.yaw)
        rear = np.array([pose.x - p.rear_axle_offset_m * c, pose.y - p.rear_axle_offset_m * s])
        s_path = arc_length(traj.xy)
        s0, lateral, _ = project_to_polyline(traj.xy, rear)
        ld = min(max(p.lookahead_min_m + p.lookahead_time_s * max(pose.speed_mps, 0.0), p.lookahead_min_m),
                 p.lookahead_max_m)
        target, _ = point_at_arclength(traj.xy, traj.yaw, s_path, np.array([s0 + ld]))
        dx, dy = target[0, 0] - rear[0], target[0, 1] - rear[1]
        x_v = c * dx + s * dy
        y_v = -s * dx + c * dy
        dist = math.hypot(x_v, y_v)
        if dist < 1e-3:
            return 0.0, lateral, ld
        alpha = math.atan2(y_v, x_v)
        wheel = math.atan2(2.0 * p.wheelbase_m * math.sin(alpha), dist)
        return wheel, lateral, ld

    def _stanley(self, traj: Trajectory, pose: EgoPose) -> tuple[float, float, float]:
        p = self.params
        front_off = p.wheelbase_m - p.rear_axle_offset_m
        front = np.array([pose.x + front_off * math.cos(pose.yaw), pose.y + front_off * math.sin(pose.yaw)])
        s0, lateral, seg_yaw = project_to_polyline(traj.xy, front)
        if not math.isfinite(seg_yaw):
            seg_yaw = float(traj.yaw[0])
        heading_err = wrap_angle(seg_yaw - pose.yaw)
        # lateral > 0: the front axle is left of the path -> steer right (negative wheel angle).
        wheel = heading_err + math.atan2(-p.stanley_gain * lateral,
                                         p.stanley_softening_mps + max(pose.speed_mps, 0.0))
        return wheel, lateral, 0.0

    # ------------------------------------------------------------------ main entry
    def update(self, traj: Trajectory | None, pose: EgoPose | None, now_s: float) -> ControlResult:
        """Compute one command.

        Args:
            traj: the selected trajectory (map frame) or None when none has arrived.
            pose: the ego state (map frame) or None when unknown.
            now_s: current sim time, s (the trajectory's stamp in the synchronous loop).

        Returns:
            The command; ``status != "tracking"`` means it is a braking command.
        """
        p = self.params
        dt = self._dt(now_s)
        reason = validate_trajectory(traj, p.expected_frame)
        if traj is None:
            return self._brake_result(dt, "missing", "no trajectory received", pose, float("nan"))
        age = now_s - traj.stamp_s
        if reason is not None:
            return self._brake_result(dt, "invalid", f"invalid trajectory: {reason}", pose, age)
        if age > p.stale_timeout_s:
            return self._brake_result(dt, "stale", f"trajectory is {age:.2f} s old (timeout "
                                      f"{p.stale_timeout_s:.2f} s)", pose, age)
        if pose is None or not all(math.isfinite(v) for v in (pose.x, pose.y, pose.yaw, pose.speed_mps)):
            return self._brake_result(dt, "invalid", "no valid odometry", pose, age)

        if p.lateral_mode == "pure_pursuit":
            wheel_raw, lateral, ld = self._pure_pursuit(traj, pose)
        else:
            wheel_raw, lateral, ld = self._stanley(traj, pose)
        wheel = self._limit_wheel(wheel_raw, dt)

        t_ref = max(age, 0.0) + p.speed_preview_s
        _, _, v_ref_arr, a_ff_arr = sample_at_times(traj, np.array([t_ref]))
        v_ref, a_ff = float(max(v_ref_arr[0], 0.0)), float(a_ff_arr[0])
        err = v_ref - pose.speed_mps
        if v_ref < p.stop_speed_mps and pose.speed_mps < p.stop_speed_mps and a_ff <= 0.0:
            # Standstill requested and reached: hold the brake, keep the integrator empty.
            self._integral_m = 0.0
            self._prev_err = None
            accel = self._limit_accel(-p.comfort_decel_mps2 * 0.5, dt, emergency=False)
            throttle, brake = 0.0, p.hold_brake
        else:
            self._integral_m = min(max(self._integral_m + err * dt, -p.integral_limit_m), p.integral_limit_m)
            derr = 0.0 if self._prev_err is None else (err - self._prev_err) / dt
            self._prev_err = err
            a_cmd = p.feedforward_gain * a_ff + p.speed_kp * err + p.speed_ki * self._integral_m + p.speed_kd * derr
            accel = self._limit_accel(a_cmd, dt, emergency=a_ff < -p.comfort_decel_mps2)
            throttle, brake = self._pedals(accel)
        return ControlResult(
            throttle=throttle,
            steer=-wheel / p.max_wheel_angle_rad,  # CARLA: positive steer = turn right
            brake=brake,
            accel_cmd_mps2=accel,
            wheel_angle_rad=wheel,
            status="tracking",
            target_speed_mps=v_ref,
            speed_error_mps=err,
            lateral_error_m=lateral,
            lookahead_m=ld,
            trajectory_age_s=age,
        )
