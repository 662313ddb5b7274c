"""Kinematic bicycle ego model: straight line, turning radius, steer sign, limits."""

import math

import pytest
from tps_sim.world import EgoControl, EgoModel, EgoModelParams, EgoModelState

DT_S = 0.1
POS_TOL_M = 1e-9
RADIUS_TOL_M = 1e-6


def _run(model: EgoModel, control: EgoControl, steps: int) -> list:
    return [model.update(control, DT_S) for _ in range(steps)]


def test_straight_line_under_throttle():
    m = EgoModel(EgoModelParams(), EgoModelState(0.0, 0.0, 0.0, 0.0))
    states = _run(m, EgoControl(throttle=0.5), 50)
    assert all(abs(s.y_m) < POS_TOL_M and abs(s.yaw_rad) < POS_TOL_M for s in states)
    speeds = [s.speed_mps for s in states]
    assert all(b > a for a, b in zip(speeds[:-1], speeds[1:], strict=True)), \
        "speed must grow under throttle"
    xs = [s.x_m for s in states]
    assert all(b > a for a, b in zip(xs[:-1], xs[1:], strict=True))
    # First step: a = throttle * max_accel (no drag at v = 0): v = 0.5 * 3.5 * 0.1.
    assert speeds[0] == pytest.approx(0.5 * EgoModelParams().max_accel_mps2 * DT_S)


def test_turning_radius_matches_wheelbase_over_tan():
    p = EgoModelParams(max_steer_rate_radps=100.0)  # reach the wheel angle at once
    steer = -0.5  # left
    delta = 0.5 * p.max_wheel_angle_rad
    m = EgoModel(p, EgoModelState(0.0, 0.0, 0.0, 10.0))
    m.update(EgoControl(throttle=0.0, steer=steer), DT_S)  # settle the wheel angle
    m.teleport(speed_mps=10.0, x_m=0.0, y_m=0.0, yaw_rad=0.0)
    # Constant speed: zero throttle would decelerate (drag), so re-set speed every step.
    pts = []
    for _ in range(100):
        m.update(EgoControl(steer=steer), DT_S)
        m.teleport(speed_mps=10.0)
        pts.append(m.rear_axle())
    radius = p.wheelbase_m / math.tan(delta)
    # Rear axle started at (-rear_axle_to_center, 0) heading +x, turning left: centre above it.
    cx, cy = -p.rear_axle_to_center_m, radius
    for x, y in pts:
        assert math.hypot(x - cx, y - cy) == pytest.approx(radius, abs=RADIUS_TOL_M)


def test_positive_steer_turns_right():
    m = EgoModel(EgoModelParams(), EgoModelState(0.0, 0.0, 0.0, 8.0))
    states = _run(m, EgoControl(throttle=0.2, steer=0.6), 20)
    assert states[-1].yaw_rad < 0.0, "CARLA convention: positive steer = right = yaw decreases"
    assert states[-1].y_m < 0.0
    assert all(s.wheel_angle_rad <= 0.0 for s in states)
    m2 = EgoModel(EgoModelParams(), EgoModelState(0.0, 0.0, 0.0, 8.0))
    assert _run(m2, EgoControl(throttle=0.2, steer=-0.6), 20)[-1].yaw_rad > 0.0


def test_steer_rate_limit():
    p = EgoModelParams()
    m = EgoModel(p, EgoModelState(0.0, 0.0, 0.0, 5.0))
    s = m.update(EgoControl(steer=1.0), DT_S)
    assert s.wheel_angle_rad == pytest.approx(-p.max_steer_rate_radps * DT_S)


def test_brake_stops_without_reversing():
    m = EgoModel(EgoModelParams(), EgoModelState(0.0, 0.0, 0.0, 5.0))
    states = _run(m, EgoControl(brake=1.0), 30)
    assert states[-1].speed_mps == 0.0
    assert min(s.speed_mps for s in states) >= 0.0
    # Full brake decelerates at max_brake (plus drag/rolling) until stopped.
    assert states[0].speed_mps < 5.0 - EgoModelParams().max_brake_mps2 * DT_S + 1e-9


def test_reverse_drives_backwards():
    m = EgoModel(EgoModelParams(), EgoModelState(0.0, 0.0, 0.0, 0.0))
    states = _run(m, EgoControl(throttle=0.5, reverse=True), 20)
    assert states[-1].speed_mps < 0.0 and states[-1].x_m < 0.0
