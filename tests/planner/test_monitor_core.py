"""Unit tests of the confidence monitor core (signals, certainty, state machine; no ROS)."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest
from planner_helpers import constant_speed_trajectory, straight_route
from tps_planner import monitor_signals as ms
from tps_planner.lane_map import LaneMap, MapLane, MapMask
from tps_planner.monitor import (
    SIGNAL_NAMES,
    CloudSnapshot,
    ConfidenceMonitor,
    ForecastSnapshot,
    HealthSnapshot,
    MonitorInputs,
    MonitorParams,
    PerceptionSnapshot,
    ramp_risk,
)
from tps_planner.trajectory import (
    SOURCE_PLANNER,
    STATE_DEGRADED,
    STATE_FALLBACK,
    STATE_MINIMAL_RISK,
    STATE_NOMINAL,
    Trajectory,
)

DT = 0.1
SPEED = 10.0
ROUTE = straight_route(400.0, x0=-50.0, y=0.0)


def _mask() -> MapMask:
    lanes = (MapLane("l0", np.array([[-60.0, 0.0], [400.0, 0.0]]), 3.5, 14.0),
             MapLane("l1", np.array([[-60.0, 3.5], [400.0, 3.5]]), 3.5, 14.0))
    return MapMask(LaneMap(lanes), margin_m=0.3, crosswalk_margin_m=1.0)


MASK = _mask()


def _cand(t: float, x0: float | None = None, speed: float = SPEED) -> Trajectory:
    """Straight candidate along y=0 from the ego's position at time t."""
    x = (x0 if x0 is not None else SPEED * t)
    traj = constant_speed_trajectory(ROUTE, x + 50.0, speed, t, n=17, step_s=0.5, source=SOURCE_PLANNER)
    return dataclasses.replace(traj, sigma_m=np.full(17, 0.2))


def _perc(t: float, xy=(), vxy=None, status: int = 0, ids=None) -> PerceptionSnapshot:
    xy = np.asarray(xy, float).reshape(-1, 2)
    n = len(xy)
    return PerceptionSnapshot(
        stamp_s=t, status=status, processing_time_ms=20.0,
        agent_ids=np.asarray(ids if ids is not None else np.arange(n), int),
        xy=xy, yaw=np.zeros(n), length=np.full(n, 4.5), width=np.full(n, 1.9),
        vxy=np.zeros((n, 2)) if vxy is None else np.asarray(vxy, float).reshape(-1, 2),
        quantisation_error=np.full(n, 0.3))


def _cloud(t: float, pts=(), n_points: int = 25000, nan_share: float = 0.0) -> CloudSnapshot:
    return CloudSnapshot(stamp_s=t, obstacle_xy=np.asarray(pts, float).reshape(-1, 2), n_points=n_points,
                         nan_share=nan_share)


def _health(**kw) -> HealthSnapshot:
    d = dict(lidar_age_s=0.0, camera_age_s=0.0, camera_frozen=False, camera_black=False,
             perception_age_s=0.0, planner_age_s=0.0)
    d.update(kw)
    return HealthSnapshot(**d)


def _inputs(t: float, cand="default", perc="default", cloud="default", health=None, **kw) -> MonitorInputs:
    x = SPEED * t
    d = dict(
        stamp_s=t, ego_xy=np.array([x, 0.0]), ego_yaw=0.0, ego_speed_mps=SPEED,
        candidate=_cand(t) if isinstance(cand, str) else cand,
        perception=_perc(t) if isinstance(perc, str) else perc,
        cloud=_cloud(t) if isinstance(cloud, str) else cloud,
        forecasts=None, drivable=MASK, consistency_ok=True, consistency_score=1.0,
        planner_light_state=None, reader_light_state=None, health=health or _health())
    d.update(kw)
    return MonitorInputs(**d)


def _block(x0: float, y0: float, size: float = 1.0, n: int = 40) -> np.ndarray:
    rng = np.random.default_rng(0)
    return np.array([x0, y0]) + rng.uniform(-0.5 * size, 0.5 * size, size=(n, 2))


def _value(res, name: str) -> float:
    return res.signal_values[res.signal_names.index(name)]


# ------------------------------------------------------------------ nominal

def test_clean_straight_candidate_is_nominal_with_high_certainty():
    mon = ConfidenceMonitor()
    for k in range(10):
        res = mon.update(_inputs(k * DT))
    assert res.state == STATE_NOMINAL
    assert res.certainty > 0.95
    assert res.critical == ()
    assert res.reasons == ()
    assert len(res.signal_names) == len(res.signal_values) == len(res.risks) == len(SIGNAL_NAMES)
    assert _value(res, "offroad") == 0.0
    assert _value(res, "unexplained_points") == 0.0


def test_clutter_beside_the_road_is_outside_the_corridor():
    res = ConfidenceMonitor().update(_inputs(0.0, cloud=_cloud(0.0, _block(12.0, 6.0))))
    assert res.state == STATE_NOMINAL
    assert _value(res, "unexplained_points") == 0.0


# ------------------------------------------------------------------ unexplained occupancy

def test_points_in_corridor_without_detection_force_fallback():
    res = ConfidenceMonitor().update(_inputs(0.0, cloud=_cloud(0.0, _block(12.0, 0.0))))
    assert res.state == STATE_FALLBACK
    assert "unexplained_occupancy" in res.critical
    assert any("unexplained occupancy" in r for r in res.reasons)
    assert _value(res, "unexplained_points") == 40
    assert 8.0 < _value(res, "unexplained_distance") < 11.0   # from the ego's front (half length 2.3 m)


def test_the_same_points_explained_by_a_detection_give_no_occupancy_signal():
    cloud = _cloud(0.0, _block(14.0, 0.0))
    res = ConfidenceMonitor().update(_inputs(0.0, cloud=cloud))
    assert _value(res, "unexplained_points") == 40 and res.state == STATE_FALLBACK
    res = ConfidenceMonitor().update(_inputs(0.0, cloud=cloud, perc=_perc(0.0, [[14.0, 0.0]], vxy=[[10.0, 0.0]])))
    assert _value(res, "unexplained_points") == 0.0
    assert "unexplained_occupancy" not in res.critical
    assert res.state == STATE_NOMINAL


def test_detection_box_is_moved_to_the_cloud_stamp():
    # Detection 0.1 s older than the cloud, agent at 10 m/s: at the cloud's stamp it is 1 m further
    # (box 13 +- 2.95 m covers the points at 14.8..15.8 m; unmoved, 12 +- 2.95 m would not).
    cloud = _cloud(0.1, _block(15.3, 0.0))
    res = ConfidenceMonitor().update(_inputs(0.1, cloud=cloud, perc=_perc(0.0, [[12.0, 0.0]], vxy=[[10.0, 0.0]])))
    assert _value(res, "unexplained_points") == 0.0
    res = ConfidenceMonitor().update(_inputs(0.1, cloud=cloud, perc=_perc(0.1, [[12.0, 0.0]], vxy=[[10.0, 0.0]])))
    assert _value(res, "unexplained_points") > 0


def test_far_unexplained_cluster_is_not_critical_and_few_points_are_not_a_cluster():
    # 1 m/s: stopping distance ~0.4 m + 5 m margin; a cluster 12 m ahead is in the (15 m) corridor
    # but not critical.
    inp = _inputs(0.0, cloud=_cloud(0.0, _block(14.0, 0.0)), ego_speed_mps=1.0,
                  candidate=_cand(0.0, 0.0, speed=1.0))
    res = ConfidenceMonitor().update(inp)
    assert _value(res, "unexplained_points") == 40
    assert "unexplained_occupancy" not in res.critical
    n, dist, crit, _ = ms.unexplained_occupancy(
        _cand(0.0), np.zeros(2), 0.0, SPEED, 0.0, _cloud(0.0, _block(8.0, 0.0, n=3)), None,
        half_width_m=0.95, margin_m=0.4, ego_half_len_m=2.3, min_length_m=15.0, extra_m=5.0,
        decel_mps2=4.0, reaction_s=0.3, box_margin_m=0.7, n_min=5, cluster_gap_m=1.5)
    assert n == 3 and math.isinf(dist) and not crit


def test_points_behind_the_ego_and_on_its_own_body_are_ignored():
    res = ConfidenceMonitor().update(_inputs(0.0, cloud=_cloud(0.0, _block(-8.0, 0.0))))
    assert _value(res, "unexplained_points") == 0.0
    res = ConfidenceMonitor().update(_inputs(0.0, cloud=_cloud(0.0, _block(0.5, 0.0, size=2.0))))
    assert _value(res, "unexplained_points") == 0.0 and res.state == STATE_NOMINAL
    # Just ahead of the front bumper (2.3 m + 0.3 m body margin) they count.
    res = ConfidenceMonitor().update(_inputs(0.0, cloud=_cloud(0.0, _block(3.5, 0.0))))
    assert _value(res, "unexplained_points") == 40 and res.state == STATE_FALLBACK


# ------------------------------------------------------------------ off-road, bad candidate

def _leaving_candidate(t: float) -> Trajectory:
    n = 17
    tt = np.arange(n) * 0.5
    x = SPEED * t + SPEED * tt
    y = -1.5 * tt ** 2            # veers right off the two-lane road within ~2 s
    xy = np.stack([x, y], axis=1)
    d = np.gradient(xy, axis=0)
    return Trajectory(t, tt, xy, np.arctan2(d[:, 1], d[:, 0]), np.full(n, SPEED), np.zeros(n),
                      source=SOURCE_PLANNER)


def test_candidate_leaving_the_drivable_area_forces_fallback():
    res = ConfidenceMonitor().update(_inputs(0.0, cand=_leaving_candidate(0.0)))
    assert res.state == STATE_FALLBACK
    assert "offroad" in res.critical
    assert any("drivable area" in r for r in res.reasons)


def _shifted(t: float, dy: float) -> Trajectory:
    """The straight candidate moved ``dy`` metres sideways (its centre line still on the road)."""
    c = _cand(t)
    return dataclasses.replace(c, xy=c.xy + np.array([0.0, dy]))


@pytest.mark.parametrize("dy, footprint, off", [
    (-1.5, True, True),     # centre 0.25 m inside the road edge, right corners 0.7 m outside
    (-1.5, False, False),   # ... which the centre-only check cannot see
    (-0.5, True, False),    # the footprint inside the lane: no alarm
    (5.0, True, True),      # along the left edge of the two-lane road
])
def test_footprint_along_the_road_edge_is_off_road(dy, footprint, off):
    """The DAC metric fails an episode when any corner of the ego leaves the drivable area; the
    monitor's off-road check tests the same corners, so a plan whose centre stays on the road
    while the car's side runs over the edge is caught (a silent failure otherwise)."""
    t = 0.0
    res = ConfidenceMonitor(MonitorParams(offroad_footprint=footprint)).update(
        _inputs(t, cand=_shifted(t, dy), ego_xy=np.array([0.0, dy])))
    assert ("offroad" in res.critical) is off
    assert (_value(res, "offroad") > 0.0) is off
    if off:
        assert res.state == STATE_FALLBACK
        assert any("footprint" in r for r in res.reasons) or not footprint


def test_footprint_is_tested_over_the_near_horizon_only():
    """A plan's far end cutting a curve by a metre is corrected by the next plans: the corners
    count up to offroad_footprint_horizon_s, the centre point over the whole horizon."""
    c = _cand(0.0)
    late = c.t_s >= 2.5                      # the centre stays on the road throughout
    far = dataclasses.replace(c, xy=c.xy + np.where(late[:, None], [0.0, -1.5], [0.0, 0.0]))
    near = MonitorParams(offroad_footprint_horizon_s=2.0)
    whole = MonitorParams(offroad_footprint_horizon_s=3.0)
    assert "offroad" not in ConfidenceMonitor(near).update(_inputs(0.0, cand=far)).critical
    assert "offroad" in ConfidenceMonitor(whole).update(_inputs(0.0, cand=far)).critical


def test_nan_candidate_is_fallback_not_an_exception():
    c = _cand(0.0)
    xy = c.xy.copy()
    xy[5, 1] = math.nan
    res = ConfidenceMonitor().update(_inputs(0.0, cand=dataclasses.replace(c, xy=xy)))
    assert res.state == STATE_FALLBACK
    assert "candidate" in res.critical
    assert any("NaN" in r for r in res.reasons)
    empty = Trajectory(0.0, np.zeros(0), np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0))
    res = ConfidenceMonitor().update(_inputs(0.0, cand=empty))
    assert res.state == STATE_FALLBACK and "candidate" in res.critical


@pytest.mark.parametrize("field,value,says", [
    ("x", -1e9, "reach"),              # the fuzz case that OOM-killed monitor_node (22 GB)
    ("x", 2500.0, "reach"),
    ("t", 1e6, "spans"),
    ("speed", 1e9, "candidate speed"),
])
def test_implausible_candidate_is_unusable_not_resampled(field, value, says):
    """Finite but implausible numbers (a point 1e9 m away, a 1e6-s plan, 1e9 m/s) are a malformed
    candidate -- fallback with the number named -- and are never resampled along (which allocated
    one float per chord of a 1e9-m path)."""
    c = _cand(0.0)
    xy, t, v = c.xy.copy(), c.t_s.copy(), c.speed_mps.copy()
    if field == "x":
        xy[2, 0] = value
    elif field == "t":
        t[-1] = value
    else:
        v[3] = value
    t0 = time.perf_counter()
    res = ConfidenceMonitor().update(_inputs(0.0, cand=dataclasses.replace(c, xy=xy, t_s=t, speed_mps=v)))
    assert time.perf_counter() - t0 < 5.0      # not a gigabyte-sized resampling (it took minutes)
    assert res.state == STATE_FALLBACK and "candidate" in res.critical
    assert any("candidate unusable" in r and says in r for r in res.reasons), res.reasons
    # the plausible candidate itself is usable
    assert ms.candidate_problem(c) is None


def test_implausible_ego_speed_is_named_and_not_used():
    res = ConfidenceMonitor().update(_inputs(0.0, ego_speed_mps=1e9))
    assert "ego_state" in res.critical
    assert any("ego speed 1e+09 m/s is implausible" in r for r in res.reasons), res.reasons
    assert res.state >= STATE_FALLBACK


def test_nan_everywhere_never_raises():
    perc = _perc(0.0, [[math.nan, 1.0], [20.0, 0.0]], vxy=[[math.nan, 0.0], [0.0, math.nan]])
    perc = dataclasses.replace(perc, quantisation_error=np.array([math.nan, 0.1]),
                               processing_time_ms=math.nan)
    fc = ForecastSnapshot(0.0, np.array([0, 1]), np.full((2, 3, 6, 2), math.nan), np.full((2, 3), math.nan), 0.5)
    res = ConfidenceMonitor().update(_inputs(0.0, perc=perc, forecasts=fc, consistency_score=math.nan,
                                             cloud=_cloud(0.0, [[math.nan, math.nan], [5.0, 0.0]])))
    assert res.state >= STATE_FALLBACK
    assert 0.0 <= res.certainty <= 1.0
    assert all(0.0 <= r <= 1.0 for r in res.risks)


def test_planner_silent_forces_fallback():
    res = ConfidenceMonitor().update(_inputs(0.0, cand=None, health=_health(planner_age_s=1.0)))
    assert res.state == STATE_FALLBACK
    assert "planner_silent" in res.critical


# ------------------------------------------------------------------ health

def test_fault_injected_status_is_treated_as_ok():
    res = ConfidenceMonitor().update(_inputs(0.0, perc=_perc(0.0, status=4)))
    assert res.state == STATE_NOMINAL and "perception_dead" not in res.critical
    res = ConfidenceMonitor().update(_inputs(0.0, perc=_perc(0.0, status=3)))
    assert res.state == STATE_FALLBACK and "perception_dead" in res.critical


@pytest.mark.parametrize("kw,says", [(dict(camera_frozen=True), "camera frozen"),
                                     (dict(camera_black=True), "camera black"),
                                     (dict(camera_age_s=5.0), "camera stale (5.00 s)")])
def test_a_camera_fault_hands_over_to_the_fallback_whatever_the_calibration(kw, says):
    """A black, frozen or stale camera: the planner's camera tokens and light state are garbage.
    Critical at once -- also under ramps that give the health value no risk (the VAL refit's)."""
    for params in (MonitorParams(), MonitorParams(ramps={"sensor_health": (0.7, 1.7)})):
        res = ConfidenceMonitor(params).update(_inputs(0.0, health=_health(**kw)))
        assert res.state == STATE_FALLBACK and res.critical == ("camera_fault",)
        assert any(says in r for r in res.reasons)
        assert not res.fallback_input_dead
    # camera_critical off: a health risk only, as before
    res = ConfidenceMonitor(MonitorParams(camera_critical=False)).update(_inputs(0.0, health=_health(**kw)))
    assert res.state == STATE_DEGRADED and res.critical == ()


def test_node_errors_degrade():
    res = ConfidenceMonitor().update(_inputs(0.0, health=_health(node_errors=("traffic_light_reader: model failed",))))
    assert res.state == STATE_DEGRADED
    assert res.critical == ()
    assert any("node error" in r for r in res.reasons)


def test_perception_processing_time_is_a_health_risk_unless_the_world_waits():
    """Perception over its processing budget is a health defect on a vehicle; with
    processing_time_health off (the lockstep simulation: wall time there is the host's load) it
    is none, and the same inputs give the same signal whatever the host."""
    perc = dataclasses.replace(_perc(0.0), processing_time_ms=400.0)
    health = {}
    for on in (True, False):
        res = ConfidenceMonitor(MonitorParams(processing_time_health=on)).update(_inputs(0.0, perc=perc))
        health[on] = _value(res, "sensor_health")
    assert health == {True: pytest.approx(0.5), False: 0.0}


@pytest.mark.parametrize("n_points,nan_share,says", [(10000, 0.0, "lidar point count 10000 low (50% of nominal"),
                                                     (20000, 0.1, "lidar NaN share 10.0% > 1.0%")])
def test_a_degraded_lidar_hands_over_to_the_fallback_before_it_kills_the_fallback(n_points, nan_share, says):
    """Half the points or a tenth NaN (the fault matrix's point dropout and NaN points): the detector
    reads a cloud unlike its training data; the fallback still has its input (not MINIMAL_RISK)."""
    res = ConfidenceMonitor(MonitorParams(nominal_points=20000, ramps={"sensor_health": (0.7, 1.7)})).update(
        _inputs(0.0, cloud=_cloud(0.0, n_points=n_points, nan_share=nan_share)))
    assert res.state == STATE_FALLBACK and res.critical == ("lidar_degraded",)
    assert any(says in r for r in res.reasons), res.reasons
    assert not res.fallback_input_dead


def test_a_lidar_defect_below_the_thresholds_is_a_value_not_a_critical():
    """63 % of the points and 0.5 % NaN: a health value (0.5, the low point count) that the calibrated
    ramp weighs, no critical. (Its reasons do not go into a NOMINAL status: they sit beside other
    nodes' wall-clock ERROR diagnostics there, and identical episodes must give identical statuses.)"""
    mon = ConfidenceMonitor(MonitorParams(nominal_points=20000, ramps={"sensor_health": (0.7, 1.7)}))
    res = mon.update(_inputs(0.0, cloud=_cloud(0.0, n_points=12600, nan_share=0.005)))
    assert res.state == STATE_NOMINAL and res.critical == ()
    assert _value(res, "sensor_health") == pytest.approx(0.5)
    assert res.risks[SIGNAL_NAMES.index("sensor_health")] == 0.0
    with pytest.raises(ValueError, match="degraded_point_fraction"):
        MonitorParams(min_point_fraction=0.5, degraded_point_fraction=0.4)
    with pytest.raises(ValueError, match="degraded_nan_share"):
        MonitorParams(max_nan_share=0.1, degraded_nan_share=0.2)


def test_perception_silent_forces_fallback():
    res = ConfidenceMonitor().update(_inputs(0.0, health=_health(perception_age_s=2.0)))
    assert res.state == STATE_FALLBACK and "perception_dead" in res.critical


@pytest.mark.parametrize("kw", [dict(health=_health(lidar_age_s=1.0)),
                                dict(cloud=_cloud(0.0, n_points=100)),
                                dict(cloud=_cloud(0.0, nan_share=0.8)),
                                dict(cloud=None)])
def test_fallback_input_dead_forces_minimal_risk(kw):
    res = ConfidenceMonitor(MonitorParams(nominal_points=20000)).update(_inputs(0.0, **kw))
    assert res.state == STATE_MINIMAL_RISK
    assert res.fallback_input_dead
    assert res.transition == (STATE_NOMINAL, STATE_MINIMAL_RISK)


def test_nominal_point_count_is_learnt_from_the_first_clouds():
    """nominal_points 0 (the default): the first NOMINAL_POINT_FRAMES clouds set the nominal count,
    so a lidar with another layout is judged against itself; a drop after that is seen."""
    from tps_planner.monitor import NOMINAL_POINT_FRAMES

    mon = ConfidenceMonitor()
    t = 0.0
    for _ in range(NOMINAL_POINT_FRAMES):
        res = mon.update(_inputs(t, cloud=_cloud(t, n_points=9000)))
        assert not res.fallback_input_dead
        t += 0.1
    res = mon.update(_inputs(t, cloud=_cloud(t, n_points=9000)))
    assert res.risks[SIGNAL_NAMES.index("sensor_health")] == 0.0
    res = mon.update(_inputs(t + 0.1, cloud=_cloud(t + 0.1, n_points=5000)))   # 56 %: low, not dead
    assert 0.0 < res.risks[SIGNAL_NAMES.index("sensor_health")] and not res.fallback_input_dead
    res = mon.update(_inputs(t + 0.2, cloud=_cloud(t + 0.2, n_points=1500)))   # 17 %: dead
    assert res.fallback_input_dead and res.state == STATE_MINIMAL_RISK


def test_lidar_stale_latches_minimal_risk_until_recovery_dwell_or_reset():
    p = MonitorParams(mrm_recovery_s=2.0)
    mon = ConfidenceMonitor(p)
    assert mon.update(_inputs(0.0, health=_health(lidar_age_s=1.0))).state == STATE_MINIMAL_RISK
    states = []
    for k in range(1, 40):
        res = mon.update(_inputs(k * DT))
        states.append((round(k * DT, 1), res.state))
    released = [t for t, s in states if s == STATE_NOMINAL]
    assert released, states
    # Nominal inputs from t=0.1: released once 2.0 s of them have passed (t >= 2.1), not before.
    assert min(released) == pytest.approx(2.1, abs=1e-6)
    assert all(s == STATE_MINIMAL_RISK for t, s in states if t < 2.1)
    # reset() releases at once.
    mon = ConfidenceMonitor(p)
    mon.update(_inputs(0.0, health=_health(lidar_age_s=1.0)))
    assert mon.update(_inputs(0.1)).state == STATE_MINIMAL_RISK
    mon.reset()
    assert mon.state == STATE_NOMINAL
    assert mon.update(_inputs(0.2)).state == STATE_NOMINAL


def test_minimal_risk_recovery_restarts_when_inputs_fail_again():
    mon = ConfidenceMonitor(MonitorParams(mrm_recovery_s=1.0))
    mon.update(_inputs(0.0, health=_health(lidar_age_s=1.0)))
    for k in range(1, 8):   # 0.7 s of good input
        mon.update(_inputs(k * DT))
    mon.update(_inputs(0.8, health=_health(lidar_age_s=1.0)))
    for k in range(9, 18):  # 0.9 s more: still latched (the timer restarted at 0.9)
        assert mon.update(_inputs(k * DT)).state == STATE_MINIMAL_RISK


def test_fallback_lasting_too_long_with_low_certainty_goes_to_minimal_risk():
    mon = ConfidenceMonitor(MonitorParams(max_fallback_s=1.0, tau_mrm=0.3))
    # Large planner sigma and a jumpy plan keep certainty low; the occupancy keeps it critical.
    states = []
    for k in range(20):
        t = k * DT
        c = dataclasses.replace(_cand(t), sigma_m=np.full(17, 5.0))
        states.append(mon.update(_inputs(t, cand=c, consistency_ok=False, consistency_score=0.0,
                                         cloud=_cloud(t, _block(SPEED * t + 10.0, 0.0)))).state)
    assert states[0] == STATE_FALLBACK
    assert STATE_MINIMAL_RISK in states
    assert states.index(STATE_MINIMAL_RISK) * DT > 1.0


def test_a_planner_that_stays_wrong_leaves_the_fallback_driving_without_minimal_risk():
    """FALLBACK for far longer than max_fallback_s, certainty ~0, but only the planner's output is
    wrong (off-road, inconsistent, huge sigma) on a healthy, empty scene: the fallback keeps
    driving (no MINIMAL_RISK). With unexplained occupancy in the path it does escalate (the test
    above)."""
    mon = ConfidenceMonitor(MonitorParams(max_fallback_s=1.0, tau_mrm=0.3))
    states, crits, certs = [], set(), []
    for k in range(40):
        t = k * DT
        c = _cand(t)
        c = dataclasses.replace(c, xy=c.xy + np.array([0.0, 30.0]), sigma_m=np.full(17, 5.0))
        r = mon.update(_inputs(t, cand=c, consistency_ok=False, consistency_score=0.0))
        states.append(r.state)
        crits.update(r.critical)
        certs.append(r.certainty)
    assert "offroad" in crits and max(certs[1:]) < 0.3, (crits, max(certs))
    assert STATE_MINIMAL_RISK not in states and states[-1] == STATE_FALLBACK, states


# ------------------------------------------------------------------ hysteresis and dwell

def _sigma_for_certainty(mon: ConfidenceMonitor, t: float, target: float) -> Trajectory:
    """A candidate whose planner sigma gives (about) the target certainty."""
    lo, hi = 0.0, 20.0
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        c = dataclasses.replace(_cand(t), sigma_m=np.full(17, mid))
        cert = mon.certainty(mon.risks(mon.evaluate(_inputs(t, cand=c))[0]))
        lo, hi = (mid, hi) if cert > target else (lo, mid)
    return dataclasses.replace(_cand(t), sigma_m=np.full(17, 0.5 * (lo + hi)))


def test_certainty_oscillating_around_tau_does_not_flap():
    p = MonitorParams(tau_degraded=0.8, tau_fallback=0.3, hysteresis=0.05, recover_dwell_s=0.5, min_dwell_s=0.3)
    mon = ConfidenceMonitor(p)
    states, certs = [], []
    for k in range(40):
        t = k * DT
        target = 0.78 if k % 2 == 0 else 0.82     # around tau_degraded, inside the hysteresis band
        res = mon.update(_inputs(t, cand=_sigma_for_certainty(mon, t, target)))
        states.append(res.state)
        certs.append(res.certainty)
    assert min(certs) < 0.8 < max(certs) < 0.85
    assert states[0] == STATE_DEGRADED
    assert all(s == STATE_DEGRADED for s in states)   # no flapping back to NOMINAL
    # Staying just above tau but inside the hysteresis band for long does not recover either ...
    for k in range(40, 70):
        res = mon.update(_inputs(k * DT, cand=_sigma_for_certainty(mon, k * DT, 0.83)))
        assert res.state == STATE_DEGRADED
    # ... above tau + hysteresis it does, after the recovery dwell.
    back = [k for k in range(70, 90) if mon.update(_inputs(k * DT)).state == STATE_NOMINAL]
    assert back and back[0] == 75


def test_recovery_needs_dwell_and_hysteresis():
    p = MonitorParams(tau_degraded=0.8, tau_fallback=0.3, hysteresis=0.05, recover_dwell_s=0.5, min_dwell_s=1.0)
    mon = ConfidenceMonitor(p)
    res = mon.update(_inputs(0.0, cand=_sigma_for_certainty(mon, 0.0, 0.6)))
    assert res.state == STATE_DEGRADED and res.transition == (STATE_NOMINAL, STATE_DEGRADED)
    assert res.reasons and any("sigma" in r for r in res.reasons)
    out = []
    for k in range(1, 20):
        res = mon.update(_inputs(k * DT))   # clean: certainty ~1
        out.append((round(k * DT, 1), res.state, res.transition))
    back = [t for t, s, _ in out if s == STATE_NOMINAL]
    # recover dwell satisfied at 0.6 s, but the minimum dwell in DEGRADED (1.0 s) holds it until 1.0 s.
    assert min(back) == pytest.approx(1.0)
    (trans,) = [tr for _, _, tr in out if tr is not None]
    assert trans == (STATE_DEGRADED, STATE_NOMINAL)


def test_worse_state_is_immediate_and_fallback_recovers_step_by_certainty():
    p = MonitorParams(recover_dwell_s=0.2, min_dwell_s=0.2)
    mon = ConfidenceMonitor(p)
    assert mon.update(_inputs(0.0)).state == STATE_NOMINAL
    res = mon.update(_inputs(0.1, cloud=_cloud(0.1, _block(11.0, 0.0))))
    assert res.state == STATE_FALLBACK and res.transition == (STATE_NOMINAL, STATE_FALLBACK)
    # Obstacle gone: back to NOMINAL only after the dwell.
    assert mon.update(_inputs(0.2)).state == STATE_FALLBACK
    states = [mon.update(_inputs(k * DT)).state for k in range(3, 8)]
    assert states[-1] == STATE_NOMINAL and states[0] == STATE_FALLBACK


# ------------------------------------------------------------------ other signals

def test_forecast_conflict_gives_short_ttc_and_low_certainty():
    # An agent forecast (p=0.9) to cross the ego's path 20 m ahead in 2 s.
    t_steps = 0.5 * np.arange(1, 7)
    mode_cross = np.stack([np.full(6, 20.0), -10.0 + 5.0 * t_steps], axis=1)
    mode_stay = np.stack([np.full(6, 20.0), np.full(6, -10.0)], axis=1)
    fc = ForecastSnapshot(0.0, np.array([7]), np.stack([mode_cross, mode_stay])[None], np.array([[0.9, 0.1]]), 0.5)
    res = ConfidenceMonitor().update(_inputs(0.0, forecasts=fc))
    assert _value(res, "ttc_forecast") == pytest.approx(2.0)
    assert _value(res, "clearance_forecast") <= 0.0
    assert res.certainty < 0.5
    assert any("agent 7" in r for r in res.reasons)
    # Entropy of (0.9, 0.1) normalised by log 2.
    h = -(0.9 * math.log(0.9) + 0.1 * math.log(0.1)) / math.log(2)
    assert _value(res, "forecast_entropy") == pytest.approx(h)


def test_detection_ahead_slower_gives_ttc():
    # A detected car 25 m ahead standing still; ego candidate at 10 m/s reaches it (gap 25-4.6) in ~2 s.
    res = ConfidenceMonitor().update(_inputs(0.0, perc=_perc(0.0, [[25.0, 0.0]]), cloud=_cloud(0.0, _block(25.0, 0.0))))
    ttc = _value(res, "ttc_detection")
    assert 1.75 <= ttc <= 2.25
    assert _value(res, "unexplained_points") == 0.0
    # Beside the lane (next lane, 3.5 m over): no collision, positive clearance.
    res = ConfidenceMonitor().update(_inputs(0.0, perc=_perc(0.0, [[25.0, 3.5]])))
    assert math.isinf(_value(res, "ttc_detection"))
    assert _value(res, "clearance_detection") == pytest.approx(3.5 - 1.9, abs=0.01)


def test_an_imminent_collision_with_a_detection_is_critical_whatever_the_ramps_say():
    """The shipped calibration's ramps were fitted on nominal driving and carry no risk for a
    0.25-s TTC; a candidate about to reach a detected agent must still hand over."""
    import json
    from pathlib import Path

    shipped = json.loads((Path(__file__).resolve().parents[2] / "models" / "monitor" / "calibration.json").read_text())
    # A car standing 12 m ahead; the candidate at 10 m/s reaches it (gap 12 - 4.6 m) in ~0.75 s.
    near = _inputs(0.0, perc=_perc(0.0, [[12.0, 0.0]]), cloud=_cloud(0.0, _block(12.0, 0.0)))
    res = ConfidenceMonitor(MonitorParams(), shipped).update(near)
    assert _value(res, "ttc_detection") < 1.0
    assert "collision_imminent" in res.critical and res.state == STATE_FALLBACK, res.reasons
    assert any(r.startswith("CRITICAL collision_imminent") and "agent 0" in r for r in res.reasons)
    # Off (0): the ramps alone decide, and the shipped ones let it pass.
    res = ConfidenceMonitor(MonitorParams(imminent_ttc_s=0.0), shipped).update(near)
    assert "collision_imminent" not in res.critical
    # 2 s ahead (the car 25 m away) is the ramps' business, not a critical.
    far = _inputs(0.0, perc=_perc(0.0, [[25.0, 0.0]]), cloud=_cloud(0.0, _block(25.0, 0.0)))
    assert "collision_imminent" not in ConfidenceMonitor(MonitorParams(), shipped).update(far).critical


@pytest.mark.parametrize("planner, reader, critical", [(2, 0, True), (2, 1, True), (0, 2, False), (0, 1, False),
                                                      (2, 2, False), (2, 4, False)])
def test_a_red_light_the_planner_reads_green_is_critical_whatever_the_calibration(planner, reader, critical):
    """The shipped calibration maps a full light disagreement to certainty 0.30; a refitted
    tau_fallback of 0.27 then kept the planner driving (DEGRADED) through red lights."""
    import json
    from pathlib import Path

    shipped = json.loads((Path(__file__).resolve().parents[2] / "models" / "monitor" / "calibration.json").read_text())
    res = ConfidenceMonitor(MonitorParams(), shipped).update(
        _inputs(0.0, planner_light_state=planner, reader_light_state=reader))
    assert ("light_red" in res.critical) is critical, res.reasons
    if critical:
        assert res.state == STATE_FALLBACK and any("reader " in r and "planner GREEN" in r for r in res.reasons), res.reasons
    off = ConfidenceMonitor(MonitorParams(light_red_critical=False), shipped).update(
        _inputs(0.0, planner_light_state=planner, reader_light_state=reader))
    assert "light_red" not in off.critical


def test_a_red_light_with_an_inconsistent_rationale_is_critical():
    """Seen on TEST lights: the planner said RED one cycle after the reader, its rationale/action
    consistency flagged a mismatch (says stopping, does not slow), and the planner drove DEGRADED
    through the red light."""
    says_red_goes_on = dict(planner_light_state=0, consistency_ok=False, consistency_score=0.0)
    res = ConfidenceMonitor().update(_inputs(0.0, reader_light_state=0, **says_red_goes_on))
    assert "light_red" in res.critical, res.reasons
    assert any(r.startswith("CRITICAL light_red") and "inconsistent" in r for r in res.reasons), res.reasons
    green = ConfidenceMonitor().update(_inputs(0.0, reader_light_state=2, **says_red_goes_on))
    assert "light_red" not in green.critical     # the reader sees green: the mismatch is a certainty risk only
    consistent = ConfidenceMonitor().update(_inputs(0.0, reader_light_state=0, planner_light_state=0))
    assert "light_red" not in consistent.critical


def test_light_disagreement_and_consistency():
    assert ms.light_disagreement(0, 2)[0] == 1.0
    assert ms.light_disagreement(1, 2)[0] == 1.0
    assert ms.light_disagreement(0, 1)[0] == 0.5
    assert ms.light_disagreement(4, 2)[0] == 0.0
    assert ms.light_disagreement(None, 0)[0] == 0.0
    res = ConfidenceMonitor().update(_inputs(0.0, planner_light_state=2, reader_light_state=0))
    assert res.state in (STATE_DEGRADED, STATE_FALLBACK)
    assert any("planner GREEN vs reader RED" in r for r in res.reasons)
    assert ms.consistency(False, None)[0] == 1.0
    assert ms.consistency(None, None)[0] == 0.0
    assert ms.consistency(True, 0.5)[0] == 0.5


def test_track_loss_counts_vanished_near_agents_not_those_leaving_range():
    prev = _perc(0.0, [[10.0, 3.5], [29.0, 0.0], [20.0, -3.0]], vxy=[[0, 0], [15.0, 0.0], [0, 0]], ids=[1, 2, 3])
    cur = _perc(0.1, [[20.0, -3.0]], ids=[3])
    n, reason = ms.track_loss(prev, cur, np.zeros(2), 0.1, 30.0, 3.0)
    assert n == 1 and "(1)" in reason     # agent 2 drives out of range; agent 1 vanished
    mon = ConfidenceMonitor()
    mon.update(_inputs(0.0, perc=prev))
    res = mon.update(_inputs(0.1, perc=cur))
    assert _value(res, "track_loss") == 1.0


def test_plan_jump():
    prev = _cand(0.0)
    cur = dataclasses.replace(_cand(0.1), xy=_cand(0.1).xy + np.array([0.0, 2.0]))
    v, _ = ms.plan_jump(cur, prev, 0.1, 3.0)
    assert v == pytest.approx(2.0, abs=1e-6)
    assert ms.plan_jump(_cand(0.1), prev, 0.1, 3.0)[0] == pytest.approx(0.0, abs=1e-6)


def test_kinematic_infeasibility():
    p = MonitorParams()
    ok, _ = ms.kinematic(_cand(0.0), SPEED, p)
    assert ok < 1.0
    c = _cand(0.0)
    v = c.speed_mps.copy()
    v[3:] = 0.0                                    # 10 m/s -> 0 in 0.5 s: 20 m/s^2
    bad, why = ms.kinematic(dataclasses.replace(c, speed_mps=v), SPEED, p)
    assert bad > 2.0 and "deceleration" in why
    # A 2 m radius circle at 2 m/s: curvature above the vehicle's turning limit.
    th = np.linspace(0, math.pi, 17)
    xy = np.stack([2 * np.sin(th), 2 * (1 - np.cos(th))], axis=1)
    circ = Trajectory(0.0, np.arange(17) * 0.2, xy, th, np.full(17, 2.0), np.zeros(17))
    r, why = ms.kinematic(circ, 2.0, p)
    assert r > 2.0 and "curvature" in why


def test_quantisation_error_is_normalised_by_the_nominal_quantile():
    perc = dataclasses.replace(_perc(0.0, [[20.0, 3.5]]), quantisation_error=np.array([0.6]))
    lo = ConfidenceMonitor(MonitorParams(quantisation_nominal=1.0)).update(_inputs(0.0, perc=perc))
    hi = ConfidenceMonitor(MonitorParams(quantisation_nominal=0.2)).update(_inputs(0.0, perc=perc))
    i = SIGNAL_NAMES.index("quantisation_error")
    assert lo.signal_values[i] == hi.signal_values[i] == pytest.approx(0.6)
    assert lo.risks[i] == 0.0 and hi.risks[i] == pytest.approx((3.0 - 1.5) / (4.0 - 1.5))


def test_ramp_risk_and_params_validation():
    assert ramp_risk(0.5, 0.0, 1.0) == 0.5
    assert ramp_risk(0.5, 1.0, 0.0) == 0.5
    assert ramp_risk(math.nan, 0.0, 1.0) == 1.0
    assert ramp_risk(math.inf, 3.0, 1.0) == 0.0     # infinite TTC: no risk
    with pytest.raises(ValueError, match="tau_fallbak"):
        MonitorParams.from_dict({"tau_fallbak": 0.3})
    with pytest.raises(ValueError, match="tau_fallback"):
        MonitorParams.from_dict({"tau_fallback": "x"})
    with pytest.raises(ValueError, match="unknown signal"):
        MonitorParams.from_dict({"weights": {"nope": 0.5}})
    with pytest.raises(ValueError, match="tau_mrm"):
        MonitorParams(tau_fallback=0.9, tau_degraded=0.5)
    p = MonitorParams.from_dict({"tau_fallback": 0.4, "unexplained_min_points": 8, "ramps": {"plan_jump": [1, 3]}})
    assert p.tau_fallback == 0.4 and p.unexplained_min_points == 8 and p.ramps["plan_jump"] == (1.0, 3.0)


def test_calibration_thresholds_override_params():
    mon = ConfidenceMonitor(MonitorParams(), {"fitted": True, "thresholds": {"tau_fallback": 0.5, "tau_degraded": 0.45},
                                              "nominal_quantiles": {"quantisation_error": 0.25}})
    assert mon.params.tau_fallback == 0.5
    assert mon.params.tau_degraded == 0.5          # kept >= tau_fallback
    assert mon.params.quantisation_nominal == 0.25
    unfitted = ConfidenceMonitor(MonitorParams(), {"fitted": False, "thresholds": {"tau_fallback": 0.9}})
    assert unfitted.params.tau_fallback == MonitorParams().tau_fallback


def test_replay_restart_time_going_back_does_not_break_dwell():
    mon = ConfidenceMonitor(MonitorParams(recover_dwell_s=0.2, min_dwell_s=0.2))
    for k in range(5):
        mon.update(_inputs(5.0 + k * DT))
    res = mon.update(_inputs(0.0))
    assert res.state == STATE_NOMINAL


def test_cycle_cost_with_30k_points_is_recorded_not_asserted():
    """Smoke: 30k obstacle points (most outside the corridor) evaluate without error; the timing
    lives in benchmarks/ (printed here only for information)."""
    rng = np.random.default_rng(1)
    pts = rng.uniform([-20, -30], [80, 30], size=(30000, 2))
    mon = ConfidenceMonitor()
    t0 = time.perf_counter()
    res = mon.update(_inputs(0.0, cloud=_cloud(0.0, pts)))
    dt = time.perf_counter() - t0
    assert res.state == STATE_FALLBACK and "unexplained_occupancy" in res.critical
    print(f"monitor cycle with 30k points: {dt * 1e3:.1f} ms")


# ------------------------------------------------------------------ warm-up (start-up)

def _cold(t: float, **kw) -> MonitorInputs:
    """A start-up cycle: the planner and perception have not produced anything yet."""
    return _inputs(t, cand=None, perc=None, health=_health(planner_age_s=math.inf, perception_age_s=math.inf), **kw)


def test_warm_up_reports_fallback_then_healthy_inputs_are_nominal_at_once():
    """Start-up: while the planner and perception have not started, WARMING_UP (FALLBACK: the
    fallback drives); the first cycle every input is there the state follows its evidence at once
    -- without the warm-up the dwell and the hysteresis held the start-up FALLBACK for >= 1 s."""
    mon = ConfidenceMonitor()
    for k in range(16):
        res = mon.update(_cold(k * DT))
        assert res.state == STATE_FALLBACK and res.warming_up
        assert res.reasons[0].startswith("WARMING_UP: waiting for the planner's first usable candidate")
        assert "perception's first usable tokens" in res.reasons[0]
    assert mon.update(_cold(1.6)).transition is None      # no flapping during warm-up
    res = mon.update(_inputs(1.7))
    assert not res.warming_up
    assert res.state == STATE_NOMINAL and res.transition == (STATE_FALLBACK, STATE_NOMINAL)
    assert res.transition_reasons[0].startswith("warm-up complete after 1.7 s")


def test_warm_up_ends_in_the_state_the_evidence_calls_for():
    mon = ConfidenceMonitor()
    mon.update(_cold(0.0))
    # Warm, but the candidate runs into an unexplained obstacle: FALLBACK, a real critical.
    res = mon.update(_inputs(0.1, cloud=_cloud(0.1, _block(SPEED * 0.1 + 8.0, 0.0))))
    assert res.state == STATE_FALLBACK and not res.warming_up
    assert "unexplained_occupancy" in res.critical
    # Failures after the warm-up are ordinary: a silent planner is critical, and recovery needs
    # the dwell again.
    mon = ConfidenceMonitor(MonitorParams(recover_dwell_s=1.0, min_dwell_s=0.5))
    mon.update(_cold(0.0))
    assert mon.update(_inputs(0.1)).state == STATE_NOMINAL
    res = mon.update(_inputs(0.2, cand=None, health=_health(planner_age_s=0.7)))
    assert res.state == STATE_FALLBACK and not res.warming_up and "planner_silent" in res.critical
    assert not any(r.startswith("WARMING_UP") for r in res.reasons)
    assert mon.update(_inputs(0.3)).state == STATE_FALLBACK


def test_an_input_that_never_starts_ends_the_warm_up_as_a_failure():
    mon = ConfidenceMonitor(MonitorParams(warmup_timeout_s=2.0))
    states = [mon.update(_inputs(k * DT, cand=None, health=_health(planner_age_s=math.inf))) for k in range(25)]
    assert all(r.warming_up for r in states[:20])
    late = states[20:]
    assert all(not r.warming_up and r.state == STATE_FALLBACK for r in late)
    assert "warmup_timeout" in late[0].critical and "planner_silent" in late[0].critical
    assert any("the planner's first usable candidate not started 2.0 s" in r for r in late[0].reasons)


def test_a_lidar_that_starts_late_does_not_latch_minimal_risk():
    """No lidar frame yet: MINIMAL_RISK while warming up (the fallback's input is not there), but
    not the 3-s MINIMAL_RISK latch once it comes."""
    mon = ConfidenceMonitor(MonitorParams(nominal_points=20000))
    res = mon.update(_inputs(0.0, cloud=None, health=_health(lidar_age_s=math.inf)))
    assert res.state == STATE_MINIMAL_RISK and res.warming_up and res.fallback_input_dead
    res = mon.update(_inputs(0.1))
    assert res.state == STATE_NOMINAL and not res.warming_up


def test_unexplained_points_beyond_the_detector_range_are_not_critical():
    """Highway speed: the stopping corridor (~93 m) reaches past the detector's field; a lead
    vehicle 55 m ahead cannot be detected, so its returns are not "unexplained" (it handed over
    on every such cycle on VAL hard_brake); one 30 m ahead still is."""
    v = 25.0
    far = _cloud(0.0, _block(55.0, 0.0, size=2.0, n=8))
    kw = dict(ego_speed_mps=v, candidate=_cand(0.0, 0.0, speed=v), cloud=far)
    res = ConfidenceMonitor().update(_inputs(0.0, **kw))
    assert "unexplained_occupancy" not in res.critical
    assert _value(res, "unexplained_points") == 0
    res = ConfidenceMonitor(MonitorParams(detector_range_m=0.0)).update(_inputs(0.0, **kw))
    assert "unexplained_occupancy" in res.critical          # the old behaviour: critical
    near = _cloud(0.0, _block(30.0, 0.0, size=2.0, n=8))
    res = ConfidenceMonitor().update(_inputs(0.0, **{**kw, "cloud": near}))
    assert "unexplained_occupancy" in res.critical
    n, dist, crit, why = ms.unexplained_occupancy(
        _cand(0.0, 0.0, speed=v), np.zeros(2), 0.0, v, 0.0, far, None, half_width_m=0.95, margin_m=0.4,
        ego_half_len_m=2.3, min_length_m=15.0, extra_m=5.0, decel_mps2=4.0, reaction_s=0.3,
        box_margin_m=0.7, n_min=5, cluster_gap_m=1.5, detector_range_m=50.0)
    assert (n, crit) == (0, False) and math.isinf(dist)
    assert "8 corridor points beyond the detector's 50 m not judged" in why


def test_curvature_is_measured_over_chords_so_point_noise_at_a_crawl_is_not_a_tight_turn():
    """A straight candidate at a crawl (2 m/s, points 0.4 m apart) with 4 cm of lateral point
    noise: over the point spacing it read as a turning radius of ~1 m (on VAL every flagged
    'kinematic' nominal cycle was such a curvature, half of them below 2 m/s); over 2-m chords it
    is feasible. A real 3-m radius turn still is not."""
    p = MonitorParams()
    n = 21
    t = np.arange(n) * 0.2
    x = 2.0 * t
    y = np.where(np.arange(n) % 2 == 0, 0.02, -0.02)
    noisy = Trajectory(0.0, t, np.stack([x, y], axis=1), np.zeros(n), np.full(n, 2.0), np.zeros(n))
    r, why = ms.kinematic(noisy, 2.0, p)
    assert r < 1.0, why
    r_old, _ = ms.kinematic(noisy, 2.0, dataclasses.replace(p, curvature_chord_m=0.4))
    assert r_old > 2.0                       # the point-spacing estimate: a "turning radius" < 2 m
    th = np.linspace(0, math.pi, 31)
    arc = np.stack([3 * np.sin(th), 3 * (1 - np.cos(th))], axis=1)
    turn = Trajectory(0.0, np.arange(31) * 0.3, arc, th, np.full(31, 1.0), np.zeros(31))
    r, why = ms.kinematic(turn, 1.0, p)
    assert r == pytest.approx(5.0 / 3.0, rel=0.05) and "turning radius 3.0 m" in why


# ------------------------------------------------------------------ blind detector

def test_a_blind_detector_on_a_road_with_traffic_is_critical_after_it_persists():
    """Detector blackout: perception answers (status FAULT_INJECTED counts as OK) with no agent
    while the raw cloud shows a vehicle on the road 20 m ahead in the next lane -- outside the
    ego's corridor, so no other signal moves. After blind_persist_s it is critical; with the
    vehicle detected, or only clutter off the road, it is not."""
    mon = ConfidenceMonitor(MonitorParams(blind_persist_s=1.0))
    states = []
    for k in range(15):
        t = k * DT
        car = _block(SPEED * t + 20.0, 3.5, size=1.8, n=60)          # next lane, on the map
        res = mon.update(_inputs(t, perc=_perc(t, status=4), cloud=_cloud(t, car)))
        states.append((round(t, 1), res.state, "perception_blind" in res.critical))
    assert all(not blind for t, _, blind in states if t < 1.0)
    assert all(blind and s == STATE_FALLBACK for t, s, blind in states if t >= 1.0 - 1e-9)
    res_blind = mon.update(_inputs(1.5, perc=_perc(1.5, status=4), cloud=_cloud(1.5, _block(SPEED * 1.5 + 20.0, 3.5,
                                                                                         size=1.8, n=60))))
    assert any("perception blind: 1 objects on the road within 30 m" in r for r in res_blind.reasons)
    # The same vehicle detected: not blind.
    mon = ConfidenceMonitor()
    for k in range(15):
        t = k * DT
        x = SPEED * t + 20.0
        res = mon.update(_inputs(t, perc=_perc(t, xy=[(x, 3.5)], vxy=[(SPEED, 0.0)]), cloud=_cloud(t, _block(x, 3.5, 1.8, 60))))
        assert "perception_blind" not in res.critical
    # Clutter beside the road (off the drivable area) and an empty road: not blind.
    mon = ConfidenceMonitor()
    for k in range(15):
        t = k * DT
        res = mon.update(_inputs(t, perc=_perc(t, status=4), cloud=_cloud(t, _block(SPEED * t + 15.0, 12.0, 2.0, 60))))
        assert "perception_blind" not in res.critical
    # blind_radius_m 0 turns it off
    mon = ConfidenceMonitor(MonitorParams(blind_radius_m=0.0))
    for k in range(15):
        t = k * DT
        res = mon.update(_inputs(t, perc=_perc(t, status=4), cloud=_cloud(t, _block(SPEED * t + 20.0, 3.5, 1.8, 60))))
    assert "perception_blind" not in res.critical


def test_road_objects_clusters_cells_and_counts_the_explained():
    cloud = _cloud(0.0, np.vstack([_block(20.0, 0.0, 1.8, 60), _block(10.0, 3.5, 1.8, 60), _block(5.25, 3.75, 0.1, 3)]))
    n, expl, n_det, why = ms.road_objects(
        cloud, _perc(0.0, xy=[(20.0, 0.0)]), np.zeros(2), 0.0, MASK, radius_m=30.0, cell_m=0.5, min_cells=3,
        cluster_gap_m=1.5, box_margin_m=1.5, ego_half_len_m=2.3, ego_half_width_m=0.95, body_margin_m=0.3)
    assert (n, expl, n_det) == (2, 1, 1)      # the 3-point speck is one cell: no object
    n, *_ = ms.road_objects(cloud, None, np.zeros(2), 0.0, MASK, radius_m=15.0, cell_m=0.5, min_cells=3,
                            cluster_gap_m=1.5, box_margin_m=1.5, ego_half_len_m=2.3, ego_half_width_m=0.95,
                            body_margin_m=0.3)
    assert n == 1


def test_tracks_lost_at_once_with_no_detection_since_is_a_blind_detector():
    """Blackout on an empty road: the agents the detector tracked near the ego vanish at once and
    nothing is detected after (the VAL blackout that the road-object check could not see before
    the incident). After blind_persist_s: critical, until a detection reappears."""
    mon = ConfidenceMonitor(MonitorParams(blind_persist_s=1.0))
    for k in range(5):                            # tracked agent 15 m ahead in the next lane
        t = k * DT
        mon.update(_inputs(t, perc=_perc(t, xy=[(SPEED * t + 15.0, 3.5)], vxy=[(SPEED, 0.0)])))
    out = []
    for k in range(5, 20):                        # blackout from 0.5 s: no agent, no cloud object
        t = k * DT
        out.append((round(t, 1), mon.update(_inputs(t, perc=_perc(t, status=4)))))
    assert all("perception_blind" not in r.critical for t, r in out if t < 1.5 - 1e-9)
    assert all("perception_blind" in r.critical and r.state == STATE_FALLBACK for t, r in out if t >= 1.5 - 1e-9)
    res = mon.update(_inputs(2.0, perc=_perc(2.0, xy=[(SPEED * 2.0 + 15.0, 3.5)], vxy=[(SPEED, 0.0)])))
    assert "perception_blind" not in res.critical
    # An agent that drives out of range is no track loss: nothing latches.
    mon = ConfidenceMonitor()
    mon.update(_inputs(0.0, perc=_perc(0.0, xy=[(29.5, 0.0)], vxy=[(30.0, 0.0)])))
    for k in range(1, 20):
        res = mon.update(_inputs(k * DT, perc=_perc(k * DT)))
        assert "perception_blind" not in res.critical


def test_both_blind_evidences_at_once_are_critical_sooner():
    """The blackout's two signatures together -- the tracks near the ego gone at once, and the raw
    cloud still showing the tracked car on the road with nothing detected -- are critical after
    blind_confirmed_persist_s (2 cycles), not blind_persist_s: an occlusion or an agent leaving
    shows neither both."""
    def run(params):
        mon = ConfidenceMonitor(params)
        for k in range(5):                            # tracked car 15 m ahead in the next lane, seen in the cloud
            t = k * DT
            x = SPEED * t + 15.0
            mon.update(_inputs(t, perc=_perc(t, xy=[(x, 3.5)], vxy=[(SPEED, 0.0)]), cloud=_cloud(t, _block(x, 3.5, 1.8, 60))))
        out = []
        for k in range(5, 20):                        # blackout from 0.5 s: the car is still in the cloud
            t = k * DT
            res = mon.update(_inputs(t, perc=_perc(t, status=4), cloud=_cloud(t, _block(SPEED * t + 15.0, 3.5, 1.8, 60))))
            out.append((round(t, 1), res))
        return next((t for t, r in out if "perception_blind" in r.critical), None), out

    first, out = run(MonitorParams(blind_persist_s=1.0))
    assert first == pytest.approx(0.7)               # onset 0.5 + 0.2 s
    r = dict(out)[0.7]
    assert r.state == STATE_FALLBACK
    assert any("tracks near the ego lost at once 0.2 s ago and 1 objects on the road" in x for x in r.reasons), r.reasons
    first, _ = run(MonitorParams(blind_persist_s=1.0, blind_confirmed_persist_s=1.0))
    assert first == pytest.approx(1.5)


def test_the_points_of_a_planned_stop_have_no_path_geometry():
    """A candidate braking to a stop whose points then jitter +-0.4 m around the stop (the
    planner's position noise where it plans to stand: on VAL s1002 these read as turning radii
    under 1 m while braking for a red light) is feasible; the same jitter while moving is not."""
    p = MonitorParams()
    n = 30
    t = np.arange(n) * 0.25
    v = np.clip(6.0 - 2.0 * t, 0.0, None)                 # stops at 3 s (point 12)
    x = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * 0.25)])
    jitter = np.where((v == 0.0) & (np.arange(n) % 2 == 0), 0.4, -0.4) * (v == 0.0)
    xy = np.stack([x + jitter, np.zeros(n)], axis=1)
    stop = Trajectory(0.0, t, xy, np.zeros(n), v, np.full(n, -2.0))
    r, why = ms.kinematic(stop, 6.0, p)
    assert r <= 1.0 + 1e-9, why
    moving = dataclasses.replace(stop, speed_mps=np.full(n, 1.0), accel_mps2=np.zeros(n))
    r, why = ms.kinematic(moving, 1.0, p)
    assert r > 2.0 and "curvature" in why
    # What the VLM planner did on VAL lights-s1002 (bag of /tps/planning/candidate_trajectory):
    # braking to a stop 7 m ahead, then on *backwards* at 1-2 m/s, the heading flipped by ~180 deg.
    # Past the planned stop the ego stands and the planner re-plans: not a turning radius of 0.7 m.
    t9 = np.arange(9) * 0.5
    y = np.array([0.0, 2.97, 4.88, 6.16, 6.66, 6.78, 6.29, 6.01, 5.48])
    x = np.array([0.0, 0.0, 0.08, -0.02, 0.0, 0.04, -0.1, 0.29, 0.46])
    v9 = np.array([7.17, 4.89, 3.20, 1.77, 0.62, 0.38, 0.81, 0.99, 1.12])
    back = Trajectory(0.0, t9, np.stack([x, y], axis=1), np.full(9, math.pi / 2), v9, np.zeros(9))
    r, why = ms.kinematic(back, 7.17, p)
    assert r <= 1.0, why
    xy_pre, v_pre = ms.moving_prefix(back.xy, v9)
    assert len(v_pre) == 6 and v_pre[-1] == pytest.approx(0.38)       # up to and with the stop
    # a candidate starting from standstill is judged from where it moves
    _, v_start = ms.moving_prefix(back.xy, np.concatenate([[0.0, 0.1], v9[:7]]))
    assert list(v_start) == pytest.approx([7.17, 4.89, 3.20, 1.77, 0.62, 0.38])


def test_a_gentle_curve_sampled_every_half_second_at_speed_is_not_a_tight_turn():
    """The learned planner's candidate: 9 points 0.5 s apart. On a 200-m radius curve at 25 m/s
    (lateral acceleration 3.1 m/s^2, feasible) the points are 12.5 m apart and each vertex bends
    the polyline by 3.6 degrees; over 2-m chords that read as ~20 m/s^2. Over the point spacing it
    is the curve's own curvature. A 25-m radius at the same speed (25 m/s^2) is still flagged."""
    p = MonitorParams()
    t = 0.5 * np.arange(9)

    def curve(radius: float) -> Trajectory:
        th = 25.0 * t / radius
        xy = np.stack([radius * np.sin(th), radius * (1 - np.cos(th))], axis=1)
        return Trajectory(0.0, t, xy, th, np.full(9, 25.0), np.zeros(9))

    r, why = ms.kinematic(curve(200.0), 25.0, p)
    assert r < 1.0, why
    r, why = ms.kinematic(curve(25.0), 25.0, p)
    assert r > 2.0 and "lateral acceleration" in why


# ---------------------------------------------------------------- braking with no cause in view
HIGHWAY_SPEED = 22.0


def _braking_cand(t: float, x0: float, v0: float = HIGHWAY_SPEED, decel: float = 5.0) -> Trajectory:
    """A straight candidate along y = 0 from x0 that brakes from v0 at ``decel`` (to a stop)."""
    tt = np.arange(9) * 0.5
    v = np.maximum(v0 - decel * tt, 0.0)
    s = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(tt))])
    xy = np.stack([x0 + s, np.zeros_like(s)], axis=1)
    return Trajectory(t, tt, xy, np.zeros(9), v, np.gradient(v, tt), source=SOURCE_PLANNER, sigma_m=np.full(9, 0.2))


def _highway(t: float, x0: float, cand: Trajectory, agents=(), vxy=None, **kw) -> MonitorInputs:
    kw.setdefault("ego_speed_mps", HIGHWAY_SPEED)
    kw.setdefault("attention", NO_ATTENTION)
    return _inputs(t, cand=cand, perc=_perc(t, agents, vxy=vxy), cloud=_cloud(t), ego_xy=np.array([x0, 0.0]), **kw)


def _attention(junction_x: float | None = None) -> MapMask:
    lanes = (MapLane("j", np.array([[junction_x, 0.0], [junction_x + 20.0, 0.0]]), 3.5, 14.0, is_junction=True),) \
        if junction_x is not None else ()
    return MapMask(LaneMap(lanes), margin_m=0.0, crosswalk_margin_m=0.0)


NO_ATTENTION = _attention()


def _brake_run(make, cycles: int = 4, params: MonitorParams | None = None):
    mon = ConfidenceMonitor(params or MonitorParams())
    res = None
    for i in range(cycles):
        t = i * DT
        x = HIGHWAY_SPEED * t
        res = mon.update(make(t, x))
    return res


def test_hard_braking_on_an_open_road_with_a_lead_far_ahead_is_unjustified_after_three_cycles():
    """TEST highway s9000: the planner braked from 22.6 to 0.5 m/s, a lead 65 m ahead at about the
    ego's speed, the monitor NOMINAL throughout."""
    def lead_far(t, x):
        return _highway(t, x, _braking_cand(t, x), agents=[[x + 65.0, 0.0]], vxy=[[HIGHWAY_SPEED, 0.0]])

    two = _brake_run(lead_far, cycles=2)
    assert "unjustified_braking" not in two.critical          # not yet: 3 consecutive cycles
    res = _brake_run(lead_far, cycles=3)
    assert "unjustified_braking" in res.critical and res.state == STATE_FALLBACK, res.reasons
    assert any(r.startswith("CRITICAL unjustified_braking") and "no cause in view" in r for r in res.reasons)
    off = _brake_run(lead_far, params=MonitorParams(brake_check=False))
    assert "unjustified_braking" not in off.critical


@pytest.mark.parametrize("case", ["lead_close", "lead_braking_standing", "cut_in", "junction", "red_light",
                                  "keeps_speed", "slow_ego", "no_map"])
def test_braking_with_a_cause_in_view_is_not_flagged(case):
    def make(t, x):
        cand = _braking_cand(t, x)
        if case == "lead_close":        # 25 m ahead at 18 m/s: inside the 1.5-s headway (33 m) at once
            return _highway(t, x, cand, agents=[[x + 25.0, 0.0]], vxy=[[18.0, 0.0]])
        if case == "lead_braking_standing":   # a stalled car 80 m ahead: reached within 3 s + headway
            return _highway(t, x, cand, agents=[[80.0, 0.0]], vxy=[[0.0, 0.0]])
        if case == "cut_in":            # in the next lane, 20 m ahead, moving across at 1.5 m/s
            return _highway(t, x, cand, agents=[[x + 20.0, 3.5]], vxy=[[HIGHWAY_SPEED - 2.0, -1.5]])
        if case == "junction":          # a junction lane starts 70 m ahead
            return _highway(t, x, cand, attention=_attention(70.0))
        if case == "red_light":
            return _highway(t, x, cand, reader_light_state=0)
        if case == "keeps_speed":       # 22 -> 19 m/s is not hard braking
            return _highway(t, x, _braking_cand(t, x, decel=0.7))
        if case == "slow_ego":
            return _highway(t, x, _braking_cand(t, x, v0=6.0), ego_speed_mps=6.0)
        return _highway(t, x, cand, attention=None)      # no lane map: nothing to judge by
    res = _brake_run(make, cycles=5)
    assert "unjustified_braking" not in res.critical, res.reasons


def test_a_bend_explains_braking_and_a_straight_road_does_not():
    v0 = HIGHWAY_SPEED
    ego, yaw = np.zeros(2), 0.0
    p = MonitorParams()
    straight = _braking_cand(0.0, 0.0)
    flagged, why = ms.unjustified_braking(straight, ego, yaw, v0, 0.0, None, NO_ATTENTION, None, math.inf, p)
    assert flagged, why
    # A learned plan's point headings wobble by a few degrees: not a bend.
    wobbly = dataclasses.replace(straight, yaw=np.deg2rad(4.0) * (-1.0) ** np.arange(9))
    flagged, why = ms.unjustified_braking(wobbly, ego, yaw, v0, 0.0, None, NO_ATTENTION, None, math.inf, p)
    assert flagged, why
    # The same speeds on a 60-m radius curve: 22 m/s there is 8 m/s^2 lateral.
    s = np.concatenate([[0.0], np.cumsum(0.5 * (straight.speed_mps[1:] + straight.speed_mps[:-1]) * 0.5)])
    r = 60.0
    ang = s / r
    curve = dataclasses.replace(straight, xy=np.stack([r * np.sin(ang), r * (1 - np.cos(ang))], axis=1), yaw=ang)
    flagged, why = ms.unjustified_braking(curve, ego, yaw, v0, 0.0, None, NO_ATTENTION, None, math.inf, p)
    assert not flagged and "bend" in why, why
    # Unexplained occupancy ahead within reach explains it too.
    flagged, why = ms.unjustified_braking(straight, ego, yaw, v0, 0.0, None, NO_ATTENTION, None, 60.0, p)
    assert not flagged and "unexplained occupancy" in why, why


def test_unjustified_braking_is_the_planners_own_failure_and_never_escalates_to_minimal_risk():
    p = MonitorParams(max_fallback_s=1.0)
    mon = ConfidenceMonitor(p)
    res = None
    for i in range(40):       # 4 s of phantom braking, 4 x max_fallback_s
        t = i * DT
        x = HIGHWAY_SPEED * t
        res = mon.update(_highway(t, x, _braking_cand(t, x)))
    assert "unjustified_braking" in res.critical and res.state == STATE_FALLBACK, res.reasons


# ---------------------------------------------------------------- stopping conflict with a slow agent
def _pedestrian(t: float, x: float, y: float = 0.0, vxy=(0.0, 0.0)) -> PerceptionSnapshot:
    return dataclasses.replace(_perc(t, [[x, y]], vxy=[vxy], ids=[7]), length=np.array([0.6]), width=np.array([0.6]))


def test_a_plan_that_reaches_a_standing_pedestrian_sooner_than_the_ego_can_stop_is_critical():
    """TEST ped_crossing s9002: the planner drove on towards a pedestrian standing on the crosswalk
    at certainty 1.00; the 1.0-s imminent margin came 0.9 s before contact. The stopping time at 10
    m/s (0.3 s + 10 / 3 m/s^2 = 3.6 s) is longer than the ~2.7 s to the pedestrian 30 m ahead."""
    import json
    from pathlib import Path

    shipped = json.loads((Path(__file__).resolve().parents[2] / "models" / "monitor" / "calibration.json").read_text())
    res = ConfidenceMonitor(MonitorParams(), shipped).update(_inputs(0.0, perc=_pedestrian(0.0, 30.0)))
    assert 2.5 <= _value(res, "ttc_detection") <= 3.0
    assert "collision_imminent" not in res.critical                 # far beyond the fixed 1.0-s margin
    assert "stopping_conflict" in res.critical and res.state == STATE_FALLBACK, res.reasons
    why = next(r for r in res.reasons if r.startswith("CRITICAL stopping_conflict"))
    assert "slow agent 7" in why and "stopping from 10.0 m/s takes 3.6 s" in why, why


@pytest.mark.parametrize("case", ["plan_stops", "slow_ego", "fast_agent", "beside", "off"])
def test_no_stopping_conflict_when_the_plan_stops_the_ego_is_slow_or_the_agent_moves(case):
    params = MonitorParams(stop_conflict=case != "off")
    if case == "plan_stops":          # braking at 5 m/s^2 from 10 m/s: stops 10 m on, 25 m short of it
        inp = _inputs(0.0, cand=_braking_cand(0.0, 0.0, v0=SPEED), perc=_pedestrian(0.0, 25.0))
    elif case == "slow_ego":          # 3 m/s, 8 m away: contact in ~1.8 s, stopping takes 0.3 + 1.0 s
        inp = _inputs(0.0, cand=_cand(0.0, speed=3.0), perc=_pedestrian(0.0, 8.0), ego_speed_mps=3.0)
    elif case == "fast_agent":        # a car at 8 m/s the candidate closes on: ttc_detection's business
        inp = _inputs(0.0, perc=_perc(0.0, [[25.0, 0.0]], vxy=[[8.0, 0.0]]))
    elif case == "beside":            # standing on the kerb, 3 m to the side: never reached
        inp = _inputs(0.0, perc=_pedestrian(0.0, 30.0, y=3.0))
    else:                             # the check off
        inp = _inputs(0.0, perc=_pedestrian(0.0, 30.0))
    res = ConfidenceMonitor(params).update(inp)
    assert "stopping_conflict" not in res.critical, res.reasons


def test_stopping_conflict_counts_slow_agents_and_picks_the_first_reached():
    t = 0.0
    cand = _cand(t)
    # a fast car reached first (ignored), a walking pedestrian (1.2 m/s across) and a standing one
    perc = dataclasses.replace(
        _perc(t, [[15.0, 0.0], [40.0, -1.0], [32.0, 0.0]], vxy=[[9.0, 0.0], [0.0, 1.2], [0.0, 0.0]], ids=[1, 2, 3]),
        length=np.array([4.5, 0.6, 0.6]), width=np.array([1.9, 0.6, 0.6]))
    flag, ttc, why = ms.stopping_conflict(cand, perc, t, 3.0, 0.25, 2.3, 0.95, SPEED, max_agent_speed_mps=2.0,
                                          reaction_s=0.3, decel_mps2=3.0)
    assert flag and "slow agent 3" in why and 2.5 <= ttc <= 3.0, why
    # at 20 m/s^2 the stopping time (0.8 s) is shorter than the time to reach it: no conflict
    assert not ms.stopping_conflict(cand, perc, t, 3.0, 0.25, 2.3, 0.95, SPEED, max_agent_speed_mps=2.0,
                                    reaction_s=0.3, decel_mps2=20.0)[0]
    # an unknown velocity (NaN) counts as standing; no detections: no conflict
    nan_v = dataclasses.replace(perc, vxy=np.array([[np.nan, np.nan], [9.0, 0.0], [9.0, 0.0]]))
    assert "slow agent 1" in ms.stopping_conflict(cand, nan_v, t, 3.0, 0.25, 2.3, 0.95, SPEED, max_agent_speed_mps=2.0,
                                                  reaction_s=0.3, decel_mps2=3.0)[2]
    assert ms.stopping_conflict(cand, _perc(t), t, 3.0, 0.25, 2.3, 0.95, SPEED, max_agent_speed_mps=2.0,
                                reaction_s=0.3, decel_mps2=3.0) == (False, math.inf, "stopping conflict: no detections")
