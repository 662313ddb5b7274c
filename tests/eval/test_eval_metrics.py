"""Unit tests of tps_eval.metrics on hand-made trajectories (no ROS, no simulator)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from tps_eval import metrics as m

DT_S = 0.1
EGO_LENGTH_M = 4.6
EGO_WIDTH_M = 1.9


def straight_trace(speed_mps: float = 10.0, steps: int = 100, agents=None, statics=None,
                   collisions=None, drivable=None, multi_lane=None, source=None,
                   route_len_m: float = 200.0, yaw: float = 0.0) -> m.EpisodeTrace:
    """Ego along +x (or ``yaw``) from the origin at constant speed."""
    t = np.arange(steps) * DT_S
    heading = np.array([np.cos(yaw), np.sin(yaw)])
    xy = t[:, None] * speed_mps * heading[None, :]
    route = np.array([[0.0, 0.0], heading * route_len_m])
    return m.EpisodeTrace(
        dt_s=DT_S, ego_xy=xy, ego_yaw=np.full(steps, yaw), ego_speed=np.full(steps, speed_mps),
        ego_length_m=EGO_LENGTH_M, ego_width_m=EGO_WIDTH_M,
        agents=agents if agents is not None else [m.ObjectFrame.empty()] * steps,
        statics=statics if statics is not None else m.ObjectFrame.empty(),
        route=route, collision_ids=collisions if collisions is not None else [()] * steps,
        drivable=drivable, multi_lane=multi_lane, selected_source=source)


def one_agent(x: float, y: float, vx: float = 0.0, yaw: float = 0.0, oid: int = 7,
              length: float = 4.5, width: float = 1.8) -> m.ObjectFrame:
    return m.ObjectFrame([oid], [[x, y]], [yaw], [length], [width], [[vx, 0.0]], [1])


# --- route progress ---------------------------------------------------------------------------
def test_route_progress_is_monotone_and_follows_a_loop():
    theta = np.linspace(0, 2 * np.pi, 73)
    route = np.stack([20 * np.cos(theta), 20 * np.sin(theta)], axis=1)  # circle, r = 20 m
    xy = route[::3] * 1.02  # slightly outside the centreline
    p = m.route_progress(route, xy)
    assert np.all(np.diff(p) >= 0)
    # the last point coincides with the first in space but must be at the end of the route
    assert p[-1] == pytest.approx(m.polyline_length(route), rel=0.02)


def test_route_progress_starts_where_the_ego_is():
    route = np.array([[0.0, 0.0], [500.0, 0.0]])
    xy = np.stack([np.linspace(117.0, 217.0, 11), np.full(11, 0.5)], axis=1)
    p = m.route_progress(route, xy)
    np.testing.assert_allclose(p, xy[:, 0], atol=1e-9)
    tr = m.EpisodeTrace(DT_S, xy, np.zeros(11), np.full(11, 100.0), EGO_LENGTH_M, EGO_WIDTH_M,
                        [m.ObjectFrame.empty()] * 11, m.ObjectFrame.empty(), route, [()] * 11,
                        route_goal_m=200.0)
    res = m.evaluate_episode(tr)
    assert res.progress_m == pytest.approx(100.0)
    assert res.route_completion == pytest.approx(0.5)  # 100 m of the 200-m goal


# --- NC ---------------------------------------------------------------------------------------
def test_front_collision_is_at_fault():
    steps = 20
    agents = [one_agent(4.5 + 10.0 * k * DT_S, 0.0, vx=2.0) for k in range(steps)]
    collisions = [(7,)] + [()] * (steps - 1)
    ev = m.collision_events(straight_trace(agents=agents, collisions=collisions, steps=steps))
    assert [(e.kind, e.at_fault) for e in ev] == [(m.COLLISION_ACTIVE_FRONT, True)]
    assert m.no_at_fault_collision_score(ev) == 0.0


def test_rear_ended_and_stopped_ego_are_not_at_fault():
    steps = 10
    behind = [one_agent(-4.4 + 10.0 * k * DT_S, 0.0, vx=15.0) for k in range(steps)]
    ev = m.collision_events(straight_trace(agents=behind, collisions=[(7,)] + [()] * 9,
                                           steps=steps))
    assert [(e.kind, e.at_fault) for e in ev] == [(m.COLLISION_ACTIVE_REAR, False)]
    ev = m.collision_events(straight_trace(speed_mps=0.0, agents=[one_agent(4.0, 0.0, 5.0)] * 10,
                                           collisions=[(7,)] * 10, steps=steps))
    assert [(e.kind, e.at_fault) for e in ev] == [(m.COLLISION_STOPPED_EGO, False)]
    assert m.no_at_fault_collision_score(ev) == 1.0


def test_collision_with_stopped_agent_is_at_fault_even_sideways():
    ev = m.collision_events(straight_trace(agents=[one_agent(0.0, 1.8, vx=0.0)] * 5,
                                           collisions=[(7,)] * 5, steps=5))
    assert [(e.kind, e.at_fault) for e in ev] == [(m.COLLISION_STOPPED_AGENT, True)]


def test_lateral_collision_at_fault_only_when_straddling_lanes():
    agents = [one_agent(10.0 * k * DT_S, 1.8, vx=10.0) for k in range(5)]
    lane_keeping = straight_trace(agents=agents, collisions=[(7,)] * 5, steps=5,
                                  multi_lane=np.zeros(5, bool))
    ev = m.collision_events(lane_keeping)
    assert [(e.kind, e.at_fault) for e in ev] == [(m.COLLISION_ACTIVE_LATERAL, False)]
    straddling = straight_trace(agents=agents, collisions=[(7,)] * 5, steps=5,
                                multi_lane=np.ones(5, bool))
    ev = m.collision_events(straddling)
    assert [(e.kind, e.at_fault) for e in ev] == [(m.COLLISION_ACTIVE_LATERAL, True)]


def test_static_object_collision_scores_half():
    statics = m.ObjectFrame([900], [[6.0, 0.0]], [0.0], [0.6], [0.6], [[0.0, 0.0]], [15])
    tr = straight_trace(statics=statics, collisions=[()] * 3 + [(900,)] + [()] * 6, steps=10)
    ev = m.collision_events(tr)
    assert [(e.kind, e.at_fault, e.static, e.step) for e in ev] == [
        (m.COLLISION_STATIC, True, True, 3)]
    assert m.no_at_fault_collision_score(ev) == m.NC_STATIC_SCORE
    res = m.evaluate_episode(tr, reference_progress_m=tr.ego_xy[-1, 0])
    assert res.nc == 0.5 and res.at_fault_static_collisions == 1


# --- DAC --------------------------------------------------------------------------------------
def test_dac_from_corners_on_a_road_strip():
    def on_road(xy: np.ndarray) -> np.ndarray:  # road strip |y| <= 3.5 m
        return np.abs(xy[:, 1]) <= 3.5

    inside = straight_trace(steps=10)
    d = m.corners_on_drivable(m.ego_corners(inside), on_road)
    assert d.shape == (10, 4) and m.drivable_area_compliance(d) == 1.0
    # drifting left: at y = 2.8 m the left corners (y + 0.95) leave the strip
    xy = inside.ego_xy.copy()
    xy[:, 1] = np.linspace(0.0, 3.0, 10)
    drift = m.EpisodeTrace(DT_S, xy, inside.ego_yaw, inside.ego_speed, EGO_LENGTH_M, EGO_WIDTH_M,
                           inside.agents, inside.statics, inside.route, inside.collision_ids)
    d = m.corners_on_drivable(m.ego_corners(drift), on_road)
    assert m.drivable_area_compliance(d) == 0.0
    assert not d[-1, 0] and d[-1, 1]  # front-left off, front-right on
    assert m.drivable_area_compliance(None) == 1.0


# --- TTC --------------------------------------------------------------------------------------
def test_off_road_steps_below_the_slow_speed_are_counted_apart():
    """Diagnostic beside DAC: which off-road steps were driven slowly (an excursion in stop-and-go,
    not a cruise-speed edge margin)."""
    drivable = np.ones((10, 4), bool)
    drivable[[2, 3, 7], 1] = False                                  # 3 off-road steps
    tr = dataclasses.replace(straight_trace(steps=10, drivable=drivable),
                             ego_speed=np.array([10.0, 10, 10, 1.0, 10, 10, 10, 2.9, 10, 10]))
    res = m.evaluate_episode(tr).to_dict()
    assert res["off_road_steps"] == 3 and res["off_road_slow_steps"] == 2 and res["dac"] == 0.0
    assert m.evaluate_episode(straight_trace(steps=10)).to_dict()["off_road_slow_steps"] == 0


def test_the_largest_offset_from_the_route_at_an_off_road_step_is_reported():
    """Diagnostic beside DAC: an edge margin (decimetres) and an excursion (metres) both make
    off-road steps; the offset at those steps tells them apart. On-road offsets do not count."""
    drivable = np.ones((10, 4), bool)
    drivable[[4, 5], 2] = False
    base = straight_trace(steps=10, drivable=drivable)
    xy = base.ego_xy.copy()
    xy[:, 1] = [0.0, 0.1, 5.0, 0.2, 0.4, 3.6, 0.3, 0.0, 0.0, 0.0]   # 5 m at an on-road step
    res = m.evaluate_episode(dataclasses.replace(base, ego_xy=xy)).to_dict()
    assert res["off_road_steps"] == 2
    assert res["off_road_max_offset_m"] == pytest.approx(3.6, abs=1e-6)
    assert m.evaluate_episode(straight_trace(steps=10)).to_dict()["off_road_max_offset_m"] == 0.0
    # the offset is measured on the same windowed projection as progress: on a loop route, a
    # point near the start while the ego is at the end is still on its own part of the route
    theta = np.linspace(0, 2 * np.pi, 73)
    loop = np.stack([20 * np.cos(theta), 20 * np.sin(theta)], axis=1)
    off = m.route_offsets(loop, loop[::3] * 1.1)
    assert off == pytest.approx(np.full(len(off), 2.0), abs=0.05)


def test_ttc_flags_closing_on_a_stopped_lead_but_not_a_safe_gap():
    # ego 10 m/s; lead stopped with a bumper gap of 5 m: 0.5 s to contact -> violation
    gap_m = 5.0
    close = [one_agent(10.0 * k * DT_S + EGO_LENGTH_M / 2 + gap_m + 2.25, 0.0) for k in range(5)]
    assert m.ttc_violations(straight_trace(agents=close, steps=5)).all()
    # same gap but the lead drives at the ego's speed: never closes
    follow = [one_agent(10.0 * k * DT_S + EGO_LENGTH_M / 2 + gap_m + 2.25, 0.0, vx=10.0)
              for k in range(5)]
    assert not m.ttc_violations(straight_trace(agents=follow, steps=5)).any()
    # 12 m gap: 1.2 s > 0.9 s horizon
    far = [one_agent(10.0 * k * DT_S + EGO_LENGTH_M / 2 + 12.0 + 2.25, 0.0) for k in range(5)]
    assert not m.ttc_violations(straight_trace(agents=far, steps=5)).any()


def test_ttc_ignores_stopped_ego_and_side_agents_unless_across_lanes():
    lead = [one_agent(EGO_LENGTH_M / 2 + 2.0 + 2.25, 0.0)] * 5
    assert not m.ttc_violations(straight_trace(speed_mps=0.0, agents=lead, steps=5)).any()
    # an agent in the next lane cutting towards the ego path: bearing ~45 deg (not "ahead")
    side = [m.ObjectFrame([3], [[5.0, 3.5]], [-np.pi / 2], [4.5], [1.8], [[0.0, -4.0]], [1])] * 5
    assert not m.ttc_violations(straight_trace(agents=side, steps=5)).any()
    tr = straight_trace(agents=side, steps=5, multi_lane=np.ones(5, bool))
    assert m.ttc_violations(tr).all()


def test_windowed_score():
    ok = np.ones(100, bool)
    assert m.windowed_score(ok, DT_S) == 1.0
    ok[45] = False  # spoils the second of 3 windows (0-40, 40-80, 80-100)
    assert m.windowed_score(ok, DT_S) == pytest.approx(2.0 / 3.0)
    assert m.windowed_score(np.ones(85, bool), DT_S) == 1.0  # 5-step tail dropped


# --- comfort ----------------------------------------------------------------------------------
def test_comfort_constant_speed_ok_and_hard_braking_not():
    steps = 60
    assert m.comfort_ok(np.full(steps, 10.0), np.zeros(steps), DT_S).all()
    # braking at 6 m/s^2 (> 4.05) from 15 m/s
    speed = np.clip(15.0 - 6.0 * np.arange(steps) * DT_S, 0.0, None)
    ok = m.comfort_ok(speed, np.zeros(steps), DT_S)
    assert not ok[5:20].any()
    # gentle braking at 2 m/s^2 well inside bounds (after the filter settles)
    speed = 15.0 - 2.0 * np.arange(steps) * DT_S
    assert m.comfort_ok(speed, np.zeros(steps), DT_S).all()


def test_comfort_yaw_rate_bound():
    steps = 60
    yaw = 1.2 * np.arange(steps) * DT_S  # 1.2 rad/s > 0.95
    s = m.comfort_signals(np.full(steps, 3.0), yaw, DT_S)
    np.testing.assert_allclose(s["yaw_rate"], 1.2, atol=1e-6)
    assert not m.comfort_ok(np.full(steps, 3.0), yaw, DT_S).any()
    assert m.comfort_ok(np.full(steps, 3.0), 0.5 * np.arange(steps) * DT_S, DT_S).all()


# --- EP, PDMS, fallback share, aggregation ----------------------------------------------------
def test_ep_and_pdms():
    assert m.ego_progress_score(50.0, 100.0) == 0.5
    assert m.ego_progress_score(150.0, 100.0) == 1.0
    assert m.ego_progress_score(0.0, 3.0) == 1.0
    assert m.ego_progress_score(10.0, None) is None
    assert m.pdm_score(1, 1, 1, 1, 1) == pytest.approx(1.0)
    assert m.pdm_score(1, 1, 0, 0.5, 1) == pytest.approx((2.5 + 2) / 12)
    assert m.pdm_score(0.5, 1, 1, 1, 1) == pytest.approx(0.5)
    assert m.pdm_score(1, 0, 1, 1, 1) == 0.0


def test_fallback_share_and_transitions():
    src = np.array([-1, 0, 0, 1, 1, 2, 0, -1])
    assert m.fallback_share(src) == pytest.approx(3 / 6)
    assert m.mode_transitions(src) == 3
    assert m.fallback_share(np.full(4, -1)) is None
    assert m.fallback_share(None) is None and m.mode_transitions(None) == 0


def test_evaluate_episode_clean_run_and_aggregate():
    tr = straight_trace(steps=100, source=np.ones(100, int))  # 99 m of a 200 m route
    res = m.evaluate_episode(tr).to_dict()
    assert res["pdm_score"] is None  # no reference yet
    assert res["route_completion"] == pytest.approx(99.0 / 200.0)
    assert res["distance_m"] == pytest.approx(99.0)
    assert res["nc"] == res["dac"] == res["ttc"] == res["comfort"] == 1.0
    assert res["fallback_share"] == 1.0
    scored = m.with_reference(res, 198.0)
    assert scored["ep"] == pytest.approx(0.5)
    assert scored["pdm_score"] == pytest.approx((5 + 2.5 + 2) / 12)
    crashed = dict(scored, at_fault_collisions=1, collisions=1, nc=0.0, pdm_score=0.0)
    agg = m.aggregate([scored, crashed])
    assert agg["episodes"] == 2 and agg["collision_rate"] == 0.5
    assert agg["at_fault_per_km"] == pytest.approx(1 / 0.198)
    assert agg["pdm_score"] == pytest.approx(scored["pdm_score"] / 2)


def test_trace_validation_names_the_field():
    with pytest.raises(ValueError, match="agents"):
        m.EpisodeTrace(DT_S, np.zeros((3, 2)), np.zeros(3), np.zeros(3), 4.6, 1.9,
                       [m.ObjectFrame.empty()] * 2, m.ObjectFrame.empty(), np.zeros((2, 2)),
                       [()] * 3)


# --- traffic lights (TLC, red-light violations) --------------------------------------------------------
def light_trace(states_of_step, stop_x: float = 30.0, lateral: float = 0.0, lane_yaw: float = 0.0,
                speed_mps: float = 10.0, steps: int = 60) -> m.EpisodeTrace:
    """The straight trace with one stop line at ``stop_x`` (the front bumper reaches it at
    t = (stop_x - 2.3) / v); ``states_of_step(k)`` is the light's state."""
    base = straight_trace(speed_mps=speed_mps, steps=steps)
    lights = m.LightTrace([5], [[stop_x, lateral]], [lane_yaw], [3.2],
                          np.array([[states_of_step(k)] for k in range(steps)], np.uint8))
    return m.EpisodeTrace(**{**base.__dict__, "lights": lights})


def crossing_step(stop_x: float = 30.0, speed_mps: float = 10.0) -> int:
    return int(np.ceil((stop_x - EGO_LENGTH_M / 2) / (speed_mps * DT_S) - 1e-9))


def test_crossing_on_red_is_a_violation_and_zeroes_tlc():
    k = crossing_step()
    res = m.evaluate_episode(light_trace(lambda s: 0 if s >= k else 2), reference_progress_m=50.0)
    assert res.stop_line_crossings == 1 and res.red_light_violations == 1 and res.tlc == 0.0
    assert res.stop_line_events == [{"step": k, "light_id": 5, "state": 0, "violation": True}]
    assert res.pdm_score > 0 and res.pdm_score_tlc == 0.0


@pytest.mark.parametrize("state", [1, 2, 3, 4])
def test_crossing_on_yellow_green_off_or_unknown_is_compliant(state):
    res = m.evaluate_episode(light_trace(lambda s: state), reference_progress_m=50.0)
    assert (res.stop_line_crossings, res.red_light_violations, res.tlc) == (1, 0, 1.0)
    assert res.pdm_score_tlc == pytest.approx(res.pdm_score)


def test_red_turning_green_just_before_the_crossing_is_compliant():
    k = crossing_step()
    res = m.evaluate_episode(light_trace(lambda s: 0 if s < k else 2))
    assert res.red_light_violations == 0 and res.tlc == 1.0 and res.pdm_score_tlc is None


def test_lines_of_other_lanes_and_directions_do_not_count():
    beside = m.evaluate_episode(light_trace(lambda s: 0, lateral=3.2))      # the next lane
    against = m.evaluate_episode(light_trace(lambda s: 0, lane_yaw=np.pi))  # the opposite direction
    assert beside.stop_line_crossings == against.stop_line_crossings == 0 and beside.tlc == 1.0
    # stopping on the line (never reaching it) is not a crossing
    stopped = straight_trace(speed_mps=0.0, steps=20)
    lights = m.LightTrace([5], [[2.3, 0.0]], [0.0], [3.2], np.zeros((20, 1), np.uint8))
    assert m.stop_line_crossings(m.EpisodeTrace(**{**stopped.__dict__, "lights": lights})) == []


def test_aggregate_and_reference_carry_tlc():
    k = crossing_step()
    red = m.evaluate_episode(light_trace(lambda s: 0 if s >= k else 2)).to_dict()
    green = m.evaluate_episode(light_trace(lambda s: 2)).to_dict()
    red, green = m.with_reference(red, 50.0), m.with_reference(green, 50.0)
    assert red["pdm_score_tlc"] == 0.0 and green["pdm_score_tlc"] == pytest.approx(green["pdm_score"])
    agg = m.aggregate([red, green])
    assert agg["red_light_violations"] == 1 and agg["tlc"] == 0.5
    assert agg["red_light_episode_rate"] == 0.5 and agg["stop_line_crossings"] == 2
    assert agg["pdm_score_tlc"] == pytest.approx(green["pdm_score"] / 2)
