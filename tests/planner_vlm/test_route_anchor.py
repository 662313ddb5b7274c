"""The route the VLM planner reads, anchored to the ego's lane (tps_planner.vlm.route_anchor): on a
straight three-lane road with the route in the middle lane, an ego that a lane change has put in
the left lane reads the route on the left lane's centre (the ego token's lateral offset ~0, as in
training); never while it only drifts towards the line, never onto a lane the route itself uses,
never when that lane ends within the lookahead; without a lane map the route is as given."""

import math

import numpy as np
import pytest
from tps_planner.lane_map import LaneMap, MapLane
from tps_planner.vlm.layout import route_frame
from tps_planner.vlm.route_anchor import CAPTURE_M, AnchorParams, RouteAnchor

LANE_W = 3.5
Y_RIGHT, Y_MID, Y_LEFT = -3.5, 0.0, 3.5
X0, X_END = -50.0, 800.0
EGO_X = 200.0


def lane(lane_id, y, x0=X0, x1=X_END, **kw) -> MapLane:
    return MapLane(lane_id, np.array([[x0, y], [x1, y]]), LANE_W, 25.0, **kw)


def road(route_ids=("mid",), left_end_x=X_END) -> LaneMap:
    return LaneMap((lane("right", Y_RIGHT, left_id="mid", can_change_left=True),
                    lane("mid", Y_MID, left_id="left", right_id="right", can_change_left=True, can_change_right=True),
                    lane("left", Y_LEFT, x1=left_end_x, right_id="mid", can_change_right=True)), route_ids)


ROUTE = np.column_stack([np.arange(X0, X_END + 1e-9, 10.0), np.full(86, Y_MID)])


def at(y, x=EGO_X, yaw=0.0):
    return np.array([x, y, yaw])


def test_an_ego_in_the_next_lane_reads_the_route_on_that_lanes_centre():
    a = RouteAnchor(ROUTE, road())
    r = a.route_for(at(Y_LEFT + 0.2))
    assert r.lane_id == "left" and r.offset_m == pytest.approx(LANE_W, abs=1e-6)
    assert np.allclose(r.xy[:, 1], Y_LEFT, atol=1e-6)
    p = AnchorParams()
    assert r.xy[0, 0] == pytest.approx(EGO_X - p.behind_m, abs=1.0)
    assert r.xy[-1, 0] == pytest.approx(EGO_X + p.lookahead_m, abs=1.0)
    # what the planner's ego token reads: ~0 lateral offset instead of a whole lane
    _, lateral, heading = route_frame(r.xy, at(Y_LEFT + 0.2))
    _, lateral0, _ = route_frame(ROUTE, at(Y_LEFT + 0.2))
    assert lateral == pytest.approx(0.2, abs=1e-6) and abs(heading) < 1e-9
    assert lateral0 == pytest.approx(Y_LEFT + 0.2, abs=1e-6)
    assert "shifted +3.5 m onto lane left" in r.note


def test_an_ego_in_a_route_lane_reads_the_route_as_given():
    a = RouteAnchor(ROUTE, road())
    for y in (Y_MID, Y_MID + 0.8, Y_MID - 1.2):
        r = a.route_for(at(y))
        assert r.lane_id == "" and r.xy is a.route_xy and r.offset_m == 0.0, (y, r.note)


def test_a_drift_towards_the_line_never_moves_the_route_over_and_a_finished_change_holds():
    a = RouteAnchor(ROUTE, road())
    # drifting: nearer the left lane's centre than the route's, but not within CAPTURE_M of it
    y_drift = Y_LEFT - CAPTURE_M - 0.3
    r = a.route_for(at(y_drift))
    assert r.lane_id == "" and "not yet in lane left" in r.note
    # the change finished: captured ...
    assert a.route_for(at(Y_LEFT - 0.5, x=EGO_X + 1.0)).lane_id == "left"
    # ... and held while the ego stays in that lane, even as far out as the drift above
    assert a.route_for(at(y_drift, x=EGO_X + 2.0)).lane_id == "left"
    # back in the route's lane: the route as given again
    assert a.route_for(at(Y_MID + 0.3, x=EGO_X + 3.0)).lane_id == ""


def test_never_onto_a_lane_the_route_uses():
    """A route that changes into the left lane (a lane change the route or the instruction asks
    for) lists both lanes: an ego still in either reads the route as given."""
    a = RouteAnchor(ROUTE, road(route_ids=("mid", "left")))
    assert a.route_for(at(Y_LEFT)).lane_id == ""


@pytest.mark.parametrize("end_ahead_m, anchored", [(40.0, False), (85.0, False), (200.0, True)])
def test_not_when_the_lane_ends_within_the_lookahead(end_ahead_m, anchored):
    a = RouteAnchor(ROUTE, road(left_end_x=EGO_X + end_ahead_m))
    r = a.route_for(at(Y_LEFT))
    assert (r.lane_id == "left") is anchored, r.note
    if not anchored:
        assert "ends" in r.note and r.xy is a.route_xy


def test_without_a_lane_map_or_switched_off_the_route_is_as_given():
    for a in (RouteAnchor(ROUTE, None), RouteAnchor(ROUTE, road(), AnchorParams(enabled=False))):
        r = a.route_for(at(Y_LEFT))
        assert r.lane_id == "" and r.xy is a.route_xy
    assert "anchoring off" in RouteAnchor(ROUTE, road(), AnchorParams(enabled=False)).route_for(at(Y_LEFT)).note


def test_a_curved_road_shifts_along_the_normal():
    """A circular arc (radius 200 m), lanes concentric: the shifted route lies on the left lane's arc."""
    r0 = 200.0
    th = np.linspace(-0.5, 1.5, 400)

    def arc(rad):
        return np.column_stack([rad * np.sin(th), r0 - rad * np.cos(th)])

    lm = LaneMap((MapLane("mid", arc(r0), LANE_W, 25.0, left_id="left", can_change_left=True),
                  MapLane("left", arc(r0 - LANE_W), LANE_W, 25.0, right_id="mid", can_change_right=True)), ("mid",))
    a = RouteAnchor(arc(r0), lm)
    t = 0.4
    pose = np.array([(r0 - LANE_W) * math.sin(t), r0 - (r0 - LANE_W) * math.cos(t), t])
    r = a.route_for(pose)
    assert r.lane_id == "left"
    rad = np.hypot(r.xy[:, 0], r.xy[:, 1] - r0)
    assert np.allclose(rad, r0 - LANE_W, atol=0.05)


@pytest.mark.parametrize("route, needle", [
    (np.array([[0.0, 0.0], [math.nan, 1.0]]), "NaN"),
    (np.array([[0.0, 0.0], [0.0, 0.0]]), "2 distinct"),
    (np.array([[0.0, 0.0], [1e9, 0.0]]), "long"),
])
def test_a_malformed_route_is_refused_by_name(route, needle):
    with pytest.raises(ValueError, match=needle):
        RouteAnchor(route, road())


# --------------------------------------------------------------------------- the lateral guard
from tps_planner.vlm.route_anchor import lateral_guard  # noqa: E402

PLAN_X = np.arange(1, 9) * 10.0


def test_the_guard_holds_points_within_the_band_and_leaves_the_rest():
    plan = np.column_stack([PLAN_X, [0.3, 0.9, 1.2, -0.7, 0.0, 0.4, 2.0, 0.1]])
    out, shift = lateral_guard(plan, ROUTE, at(Y_MID), 0.5)
    assert np.allclose(out[:, 1], [0.3, 0.5, 0.5, -0.5, 0.0, 0.4, 0.5, 0.1])
    assert np.allclose(out[:, 0], PLAN_X)                       # along the normal only
    assert shift == pytest.approx(1.5)
    same, none = lateral_guard(plan, ROUTE, at(Y_MID), 0.0)     # off
    assert np.array_equal(same, plan) and none == 0.0


def test_an_ego_outside_the_band_may_start_there_but_the_plan_must_come_back_within_it():
    ego_y = 0.8                  # 0.3 m outside a 0.5-m band
    plan = np.column_stack([PLAN_X, np.zeros(8)])                     # base_link: stays at the ego's offset
    out, _ = lateral_guard(plan, ROUTE, at(ego_y), 0.5, dt_s=0.5, return_s=2.0)
    route_rel = out[:, 1] + ego_y
    t = 0.5 * np.arange(1, 9)
    allowed = 0.5 + 0.3 * np.clip(1.0 - t / 2.0, 0.0, 1.0)
    assert np.allclose(route_rel, allowed)                            # pulled back, linearly, within 2 s
    assert np.allclose(route_rel[3:], 0.5)
    # on the other side the band is not widened
    low = np.column_stack([PLAN_X, np.full(8, -2.0)])
    out, _ = lateral_guard(low, ROUTE, at(ego_y), 0.5)
    assert np.allclose(out[:, 1] + ego_y, -0.5)


def test_points_past_the_routes_end_are_left_alone():
    route = np.array([[EGO_X - 20.0, 0.0], [EGO_X + 35.0, 0.0]])
    plan = np.column_stack([PLAN_X, np.full(8, 2.0)])
    out, _ = lateral_guard(plan, route, at(Y_MID), 0.5)
    assert np.allclose(out[:3, 1], 0.5) and np.allclose(out[4:, 1], 2.0)


def test_the_guard_follows_a_curved_route_with_a_band_widened_by_its_turn():
    """A 400-m-radius bend (0.05 rad over +-10 m: the band 0.5 + 4 x 0.05 = 0.7 m) holds a plan
    that goes straight on; a 15-m-radius junction turn (1.3 rad over +-10 m) leaves it alone."""
    from tps_planner.vlm.route_anchor import GUARD_CURVE_M_PER_RAD, GUARD_CURVE_WINDOW_M

    pose = np.array([0.0, 0.0, 0.0])
    plan = np.column_stack([PLAN_X, np.zeros(8)])
    for r0, held in ((400.0, True), (15.0, False)):
        th = np.linspace(-0.3, 1.5, 600) if r0 < 100 else np.linspace(-0.05, 0.4, 600)
        route = np.column_stack([r0 * np.sin(th), r0 - r0 * np.cos(th)])
        out, shift = lateral_guard(plan, route, pose, 0.5)
        if held:
            widen = GUARD_CURVE_M_PER_RAD * 2.0 * GUARD_CURVE_WINDOW_M / r0
            rad = np.hypot(out[:, 0], out[:, 1] - r0)
            assert np.all(rad <= r0 + 0.5 + widen + 0.01) and shift > 1.0   # 0.01: the polyline
            assert np.all(np.abs(rad - r0) <= np.abs(np.hypot(plan[:, 0], plan[:, 1] - r0) - r0) + 1e-9)
        else:
            near = np.hypot(plan[:, 0], plan[:, 1] - r0) < r0 + 5.0
            assert np.allclose(out[near], plan[near]), shift
