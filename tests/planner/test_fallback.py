"""Unit tests of the fallback planner core, on clouds from the project's ray-casting lidar model."""

import math

import numpy as np
import pytest
from planner_helpers import DT_S, BicycleVehicle, circle_route, lidar_scan, straight_route
from tps_common.stamp_sync import EgoPose
from tps_planner.controller import Controller
from tps_planner.fallback import LEVEL_ERROR, LEVEL_OK, LEVEL_WARN, FallbackParams, FallbackPlanner
from tps_planner.trajectory import SOURCE_FALLBACK, SOURCE_MINIMAL_RISK, STATE_MINIMAL_RISK

DEBRIS = (0.8, 0.6, 0.4)            # l, w, h of S1's debris, m
CAR = (4.5, 1.9, 1.5)
COMFORT_DECEL_MPS2 = 3.0
# The controller tracks the plan with PID and limits; its realised deceleration may exceed the
# plan's by this much (still within the PDM comfort bound of 4.05 m/s^2).
TRACKING_DECEL_SLACK_MPS2 = 0.7
STOP_SPEED_MPS = 0.05


def _closed_loop(obstacle_x: float, v0: float, steps: int, params: FallbackParams | None = None,
                 box=DEBRIS, monitor=None):
    """Fallback + controller + bicycle on a straight road with one box in lane; returns a log."""
    fb = FallbackPlanner(params or FallbackParams())
    fb.set_route(straight_route())
    ctl = Controller()
    veh = BicycleVehicle(v=v0)
    boxes = [(obstacle_x, 0.0, 0.0, *box)] if obstacle_x is not None else []
    log = {"plan_a0": [], "veh_a": [], "v": [], "gap": [], "req": [], "sources": []}
    for k in range(steps):
        t = k * DT_S
        res = fb.update(lidar_scan((veh.x, veh.y, veh.yaw), boxes, seed=k), t, veh.pose(t),
                        monitor(t) if monitor else None)
        cmd = ctl.update(res.trajectory, veh.pose(t), t)
        veh.step(cmd.throttle, cmd.steer, cmd.brake)
        log["plan_a0"].append(res.trajectory.accel_mps2[0])
        log["veh_a"].append(veh.last_accel_mps2)
        log["v"].append(veh.v)
        log["req"].append(res.required_decel_mps2)
        log["sources"].append(res.trajectory.source)
        if obstacle_x is not None:
            log["gap"].append(obstacle_x - box[0] / 2 - (veh.x + 2.3))
    return {k: np.array(v) for k, v in log.items()}


def test_stops_behind_stationary_debris_within_comfort():
    log = _closed_loop(60.0, 10.0, 200)
    assert log["v"][-1] < STOP_SPEED_MPS
    assert log["gap"].min() > 0.5                                  # no collision
    assert log["plan_a0"].min() >= -COMFORT_DECEL_MPS2 - 1e-9      # the plan never exceeds comfort
    assert log["veh_a"].min() >= -COMFORT_DECEL_MPS2 - TRACKING_DECEL_SLACK_MPS2
    assert log["req"].max() <= COMFORT_DECEL_MPS2


def test_brakes_harder_only_when_needed():
    """Debris first seen ~19 m ahead at 12 m/s: comfort braking cannot stop in time, so the plan
    brakes harder, about as hard as required and within the emergency limit, and stops short."""
    p = FallbackParams()
    log = _closed_loop(22.0, 12.0, 60, p)
    assert log["req"][0] > COMFORT_DECEL_MPS2
    assert log["plan_a0"].min() < -COMFORT_DECEL_MPS2
    assert log["plan_a0"].min() >= -min(p.emergency_decel_mps2, log["req"].max() * p.emergency_margin) - 1e-6
    assert log["v"][-1] < STOP_SPEED_MPS
    assert log["gap"].min() > 0.0


def test_ground_only_cloud_has_no_obstacle():
    fb = FallbackPlanner()
    fb.set_route(straight_route())
    pts = lidar_scan((0.0, 0.0, 0.0), [])
    assert len(pts) > 1000
    res = fb.update(pts, 0.0, EgoPose(0.0, 0.0, 0.0, 0.0, 10.0))
    assert res.obstacle is None and res.n_obstacle_points == 0
    assert res.level == LEVEL_OK
    assert res.trajectory.speed_mps[-1] > 10.0                   # free road: speeds up to the cap


def test_obstacle_outside_corridor_is_ignored():
    """A car in the adjacent lane (3.5 m left) is not in the corridor; the same car in lane is."""
    pose = EgoPose(0.0, 0.0, 0.0, 0.0, 10.0)
    for lateral, expect in ((3.5, False), (0.0, True)):
        fb = FallbackPlanner()
        fb.set_route(straight_route())
        res = fb.update(lidar_scan((0.0, 0.0, 0.0), [(25.0, lateral, 0.0, *CAR)]), 0.0, pose)
        assert res.n_obstacle_points > 0
        assert (res.obstacle is not None) == expect, lateral
    assert res.obstacle.gap_m == pytest.approx(25.0 - CAR[0] / 2 - 2.3, abs=0.3)


def test_closing_speed_from_consecutive_frames():
    """Ego at 10 m/s behind a car at 4 m/s: the map-frame track gives the car's speed and the
    closing speed 6 m/s once a few frames are in."""
    fb = FallbackPlanner()
    fb.set_route(straight_route())
    ego_v, lead_v = 10.0, 4.0
    res = None
    for k in range(6):
        t = k * DT_S
        ego_x, lead_x = ego_v * t, 30.0 + lead_v * t
        res = fb.update(lidar_scan((ego_x, 0.0, 0.0), [(lead_x, 0.0, 0.0, *CAR)], seed=k), t,
                        EgoPose(t, ego_x, 0.0, 0.0, ego_v))
    assert res.obstacle.speed_mps == pytest.approx(lead_v, abs=0.3)
    assert res.obstacle.closing_speed_mps == pytest.approx(ego_v - lead_v, abs=0.3)


def test_minimal_risk_stops_in_lane_within_comfort():
    log = _closed_loop(None, 12.0, 120, monitor=lambda t: STATE_MINIMAL_RISK if t >= 1.0 else None)
    assert log["sources"][0] == SOURCE_FALLBACK and log["sources"][-1] == SOURCE_MINIMAL_RISK
    assert log["v"][-1] < STOP_SPEED_MPS
    assert log["plan_a0"].min() >= -COMFORT_DECEL_MPS2 - 1e-9


def test_stops_at_route_end():
    """A route that ends: the ego stops with its front bumper before the end."""
    fb = FallbackPlanner()
    fb.set_route(straight_route(length_m=60.0, x0=0.0))
    ctl = Controller()
    veh = BicycleVehicle(x=10.0, v=8.0)
    for k in range(200):
        t = k * DT_S
        res = fb.update(lidar_scan((veh.x, 0.0, 0.0), [], seed=k), t, veh.pose(t))
        cmd = ctl.update(res.trajectory, veh.pose(t), t)
        veh.step(cmd.throttle, cmd.steer, cmd.brake)
    assert veh.v < STOP_SPEED_MPS
    assert 60.0 - 8.0 < veh.x + 2.3 <= 60.0


def test_curve_speed_limit():
    p = FallbackParams(max_speed_mps=20.0)
    fb = FallbackPlanner(p)
    fb.set_route(circle_route(20.0, turns=1.0))
    res = fb.update(np.zeros((0, 3)) + np.array([[50.0, 50.0, 10.0]]), 0.0, EgoPose(0.0, 0.0, 0.0, 0.0, 5.0))
    v_lat = math.sqrt(p.max_lateral_accel_mps2 * 20.0)
    assert res.trajectory.speed_mps.max() <= min(v_lat, p.max_yaw_rate_rad_s * 20.0) + 0.1


def test_nan_clouds():
    pts = lidar_scan((0.0, 0.0, 0.0), [(30.0, 0.0, 0.0, *CAR)])
    pose = EgoPose(0.0, 0.0, 0.0, 0.0, 10.0)
    partial = pts.copy()
    partial[::10, :3] = np.nan
    fb = FallbackPlanner()
    fb.set_route(straight_route())
    res = fb.update(partial, 0.0, pose)
    assert res.level == LEVEL_WARN and "NaN" in res.messages[0]
    assert res.obstacle is not None and res.trajectory.source == SOURCE_FALLBACK
    laden = pts.copy()
    laden[::2, :3] = np.nan
    laden[1::4, :3] = np.nan
    res = fb.update(laden, 0.1, pose)
    assert res.level == LEVEL_ERROR and res.trajectory.source == SOURCE_MINIMAL_RISK
    assert res.trajectory.accel_mps2.min() >= -COMFORT_DECEL_MPS2 - 1e-9
    res = fb.update(np.zeros((0, 3)), 0.2, pose)
    assert res.level == LEVEL_ERROR and res.trajectory.source == SOURCE_MINIMAL_RISK


def test_ignore_obstacles_is_the_naive_baseline():
    fb = FallbackPlanner(FallbackParams(ignore_obstacles=True))
    fb.set_route(straight_route())
    res = fb.update(lidar_scan((0.0, 0.0, 0.0), [(20.0, 0.0, 0.0, *CAR)]), 0.0, EgoPose(0.0, 0.0, 0.0, 0.0, 10.0))
    assert res.obstacle is None
    assert res.trajectory.speed_mps.min() >= 10.0 - 1e-6


def test_bad_route_raises():
    with pytest.raises(ValueError, match="at least 2 distinct points"):
        FallbackPlanner().set_route(np.array([[1.0, 1.0], [1.0, 1.0]]))
    res = FallbackPlanner().update(np.zeros((0, 3)), 0.0, EgoPose(0.0, 0.0, 0.0, 0.0, 0.0))
    assert res.trajectory is None and res.level == LEVEL_ERROR and "no route" in res.messages[0]


def test_vehicle_alongside_is_not_an_obstacle():
    """A car beside the ego, overlapping the corridor laterally but not ahead of the front bumper
    (a merge, an overtaker), does not make the ego brake; once its body reaches past our bumper
    it is an obstacle."""
    pose = EgoPose(0.0, 0.0, 0.0, 0.0, 10.0)
    fb = FallbackPlanner()
    fb.set_route(straight_route())
    res = fb.update(lidar_scan((0.0, 0.0, 0.0), [(-1.0, 1.8, 0.0, *CAR)]), 0.0, pose)
    assert res.n_obstacle_points > 0 and res.obstacle is None
    fb = FallbackPlanner()
    fb.set_route(straight_route())
    res = fb.update(lidar_scan((0.0, 0.0, 0.0), [(4.0, 1.8, 0.0, *CAR)]), 0.0, pose)
    assert res.obstacle is not None and res.obstacle.gap_m < 1.0


def test_new_obstacle_at_the_bumper_gets_one_comfort_frame():
    """A car that slides in right at the bumper moving with the ego: the first frame (speed
    unknown) brakes at comfort, the second knows it moves with us and needs no emergency."""
    p = FallbackParams()
    fb = FallbackPlanner(p)
    fb.set_route(straight_route())
    for k, expect_obstacle in ((0, True), (1, True)):
        t = k * DT_S
        ego_x = 10.0 * t
        res = fb.update(lidar_scan((ego_x, 0.0, 0.0), [(ego_x + 5.0, 1.8, 0.0, *CAR)], seed=k), t,
                        EgoPose(t, ego_x, 0.0, 0.0, 10.0))
        assert (res.obstacle is not None) == expect_obstacle
        assert res.trajectory.accel_mps2[0] >= -p.comfort_decel_mps2 - 1e-9, k
    assert res.obstacle.speed_mps == pytest.approx(10.0, abs=1.0)
    # Without the one-frame grace the same first frame is an emergency stop.
    fb = FallbackPlanner(FallbackParams(new_track_comfort_frames=0))
    fb.set_route(straight_route())
    res = fb.update(lidar_scan((0.0, 0.0, 0.0), [(5.0, 1.8, 0.0, *CAR)]), 0.0, EgoPose(0.0, 0.0, 0.0, 0.0, 10.0))
    assert res.trajectory.accel_mps2[0] < -p.comfort_decel_mps2
