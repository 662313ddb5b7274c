"""The ego's kinematic bicycle model, driven by CARLA-convention controls.

Convention (docs/CONTRACTS.md "Control"): ``steer`` in [-1, 1], POSITIVE = TURN RIGHT
(clockwise seen from above = negative yaw rate in REP-103), normalised by the maximum wheel
angle. This module converts it: wheel angle (REP-103, positive = left) = -steer * max angle.

Model: rear-axle kinematic bicycle. The rear axle moves along its heading; yaw rate =
v * tan(delta) / wheelbase, so the rear axle turns on a circle of radius wheelbase / tan(delta).
The pose reported is base_link (centre of the footprint), ``rear_axle_to_center_m`` ahead of the
rear axle. Each step integrates the arc exactly for the step's mean speed and wheel angle.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from tps_common.geometry import wrap_angle

from tps_sim.world.config import EgoControl


@dataclass(frozen=True)
class EgoModelParams:
    """Ego vehicle parameters (SI units).

    Attributes:
        wheelbase_m: axle distance [m].
        rear_axle_to_center_m: rear axle -> footprint centre (base_link) distance [m].
        max_wheel_angle_rad: wheel angle at |steer| = 1 [rad].
        max_steer_rate_radps: wheel-angle rate limit [rad/s].
        max_accel_mps2: acceleration at full throttle from standstill [m/s^2].
        max_speed_mps: top speed; throttle authority fades linearly to 0 there [m/s].
        max_brake_mps2: deceleration at full brake [m/s^2].
        hand_brake_mps2: deceleration with the hand brake [m/s^2].
        drag_per_m: aerodynamic drag coefficient: a_drag = drag_per_m * v^2 [1/m].
        rolling_mps2: rolling resistance deceleration while moving [m/s^2].
        max_reverse_speed_mps: top speed in reverse [m/s].
        length_m, width_m, height_m: box size [m].
    """

    wheelbase_m: float = 2.8
    rear_axle_to_center_m: float = 1.4
    max_wheel_angle_rad: float = 0.61
    max_steer_rate_radps: float = 1.2
    max_accel_mps2: float = 3.5
    max_speed_mps: float = 45.0
    max_brake_mps2: float = 8.0
    hand_brake_mps2: float = 6.0
    drag_per_m: float = 0.0006
    rolling_mps2: float = 0.1
    max_reverse_speed_mps: float = 5.0
    length_m: float = 4.6
    width_m: float = 1.9
    height_m: float = 1.5


@dataclass(frozen=True)
class EgoModelState:
    """Ego state: base_link pose in map, speed and actuator states.

    Attributes:
        x_m, y_m: base_link position [m].
        yaw_rad: heading [rad] (REP-103).
        speed_mps: signed speed along the heading [m/s] (negative in reverse).
        wheel_angle_rad: current front-wheel angle [rad], positive = left (REP-103).
        accel_mps2: last longitudinal acceleration [m/s^2].
        yaw_rate_radps: last yaw rate [rad/s].
    """

    x_m: float
    y_m: float
    yaw_rad: float
    speed_mps: float
    wheel_angle_rad: float = 0.0
    accel_mps2: float = 0.0
    yaw_rate_radps: float = 0.0


def longitudinal_accel(params: EgoModelParams, speed_mps: float, control: EgoControl) -> float:
    """Acceleration [m/s^2] (signed along the heading) from the powertrain/brake model."""
    v = speed_mps
    direction = -1.0 if control.reverse else 1.0
    top = params.max_reverse_speed_mps if control.reverse else params.max_speed_mps
    fade = max(0.0, 1.0 - abs(v) / top) if v * direction >= 0.0 else 1.0
    drive = direction * control.throttle * params.max_accel_mps2 * fade
    resist = params.drag_per_m * v * v + (params.rolling_mps2 if abs(v) > 1e-3 else 0.0)
    braking = control.brake * params.max_brake_mps2
    if control.hand_brake:
        braking = max(braking, params.hand_brake_mps2)
    # Resistances and brakes act against the motion.
    sign_v = 1.0 if v > 0.0 else (-1.0 if v < 0.0 else 0.0)
    return drive - sign_v * (resist + braking)


class EgoModel:
    """Kinematic bicycle ego. ``update(control, dt)`` returns the new state."""

    def __init__(self, params: EgoModelParams, state: EgoModelState) -> None:
        self.params = params
        self.state = state

    def update(self, control: EgoControl, dt_s: float) -> EgoModelState:
        """Advance ``dt_s`` seconds under ``control`` (already sanitised, CARLA convention)."""
        p, s = self.params, self.state
        # Steering: CARLA positive steer = right = negative REP-103 wheel angle.
        target = -control.steer * p.max_wheel_angle_rad
        max_change = p.max_steer_rate_radps * dt_s
        delta = s.wheel_angle_rad + min(max(target - s.wheel_angle_rad, -max_change), max_change)
        delta = min(max(delta, -p.max_wheel_angle_rad), p.max_wheel_angle_rad)

        acc = longitudinal_accel(p, s.speed_mps, control)
        v_new = s.speed_mps + acc * dt_s
        # Brakes and resistances stop the car; they never reverse it.
        if s.speed_mps > 0.0 and v_new < 0.0 and not (control.reverse and control.throttle > 0):
            v_new = 0.0
        if s.speed_mps < 0.0 and v_new > 0.0 and not (not control.reverse and control.throttle > 0):
            v_new = 0.0
        if s.speed_mps == 0.0 and not control.reverse and v_new < 0.0:
            v_new = 0.0
        if s.speed_mps == 0.0 and control.reverse and v_new > 0.0:
            v_new = 0.0
        v_mean = 0.5 * (s.speed_mps + v_new)
        dist = v_mean * dt_s
        yaw_rate = v_mean * math.tan(delta) / p.wheelbase_m

        # Exact arc of the rear axle for constant speed / wheel angle over the step.
        c, si = math.cos(s.yaw_rad), math.sin(s.yaw_rad)
        rx = s.x_m - p.rear_axle_to_center_m * c
        ry = s.y_m - p.rear_axle_to_center_m * si
        dyaw = yaw_rate * dt_s
        if abs(dyaw) < 1e-9:
            rx += dist * c
            ry += dist * si
        else:
            radius = dist / dyaw
            rx += radius * (math.sin(s.yaw_rad + dyaw) - si)
            ry += radius * (-math.cos(s.yaw_rad + dyaw) + c)
        yaw = wrap_angle(s.yaw_rad + dyaw, include_pi=True)
        x = rx + p.rear_axle_to_center_m * math.cos(yaw)
        y = ry + p.rear_axle_to_center_m * math.sin(yaw)
        self.state = EgoModelState(x, y, yaw, v_new, delta, (v_new - s.speed_mps) / dt_s,
                                   yaw_rate)
        return self.state

    def rear_axle(self) -> tuple[float, float]:
        """Rear-axle position [m] of the current state."""
        s, p = self.state, self.params
        return (s.x_m - p.rear_axle_to_center_m * math.cos(s.yaw_rad),
                s.y_m - p.rear_axle_to_center_m * math.sin(s.yaw_rad))

    def teleport(self, **changes: float) -> None:
        """Overwrite state fields (e.g. after SUMO placed the ego)."""
        self.state = replace(self.state, **changes)

