"""The fallback's traffic-light rule (tps_planner.traffic_rules): red stops, yellow only where it
can stop comfortably, unknown within the stopping distance, green goes; the dilemma zone is
decided once; the stage pairs the reader's output with the planning cycle of its stamp; closed
loop (fallback + controller + bicycle), the ego stops before a red light's line and goes on
green."""

from __future__ import annotations

import math

import numpy as np
import pytest
from planner_helpers import DT_S, BicycleVehicle, lidar_scan, straight_route
from tps_common.traffic_lights import GREEN, OFF, RED, UNKNOWN, YELLOW, LightHead
from tps_planner.controller import Controller
from tps_planner.fallback import FallbackPlanner
from tps_planner.traffic_rules import (
    LightObservation,
    RouteStopLine,
    TrafficLightRules,
    TrafficLightStage,
    TrafficRuleParams,
)

P = TrafficRuleParams()
LINE_S = 100.0
STOP_SPEED_MPS = 0.05
COMFORT_BOUND_MPS2 = 4.05          # PDM comfort: longitudinal deceleration bound


def rules(*lines) -> TrafficLightRules:
    r = TrafficLightRules(P)
    r.set_stop_lines([RouteStopLine(i, s) for i, s in (lines or [(1, LINE_S)])])
    return r


def obs(state, confidence=1.0, light_id=1) -> dict:
    return {light_id: LightObservation(light_id, state, confidence)}


def comfortable_distance(v: float) -> float:
    return v * v / (2 * P.comfort_decel_mps2)


def test_red_far_away_stops_at_the_line():
    res = rules().update(0.0, 0.0, 12.0, obs(RED))
    assert res.stops == (LINE_S - P.stop_margin_m,) and res.decisions[0].stop
    assert res.decisions[0].effective == RED and "red" in res.decisions[0].reason


def test_green_goes():
    res = rules().update(0.0, 60.0, 12.0, obs(GREEN))
    assert res.stops == () and not res.decisions[0].stop


@pytest.mark.parametrize(("gap_m", "stop"), [(40.0, True), (26.0, True), (20.0, False), (5.0, False)])
def test_yellow_stops_only_where_comfortable(gap_m, stop):
    v = 12.0                       # comfortable distance 24 m + 0.5 m margin
    res = rules().update(0.0, LINE_S - gap_m, v, obs(YELLOW))
    assert bool(res.stops) is stop


def test_red_that_cannot_be_stopped_for_is_passed():
    v = 12.0                       # 144 / (2 * 6) = 12 m needed at 6 m/s^2
    assert rules().update(0.0, LINE_S - 14.0, v, obs(RED)).stops     # 13.5 m room: stop
    res = rules().update(0.0, LINE_S - 8.0, v, obs(RED))
    assert res.stops == () and "cannot stop" in res.decisions[0].reason


def test_unknown_acts_within_the_stopping_distance_only():
    v = 10.0
    near = comfortable_distance(v) + P.unknown_margin_m + P.stop_margin_m   # 19.17 m
    r = rules()
    assert r.update(0.0, LINE_S - (near + 5.0), v, obs(UNKNOWN)).stops == ()
    assert r.update(0.1, LINE_S - (near - 1.0), v, obs(UNKNOWN)).stops == (LINE_S - P.stop_margin_m,)
    assert rules().update(0.0, LINE_S - 30.0, v, None).stops == ()          # no reader output at all
    off = rules().update(0.0, LINE_S - (near - 1.0), v, obs(OFF))
    assert off.stops and off.decisions[0].effective == UNKNOWN


def test_low_confidence_counts_as_unknown_and_a_state_is_held():
    r = rules()
    v = 10.0
    s = LINE_S - 15.0                                   # within the stopping distance
    assert r.update(0.0, s, v, obs(GREEN)).stops == ()
    # an unreadable frame within hold_s keeps GREEN...
    res = r.update(0.5, s, v, obs(GREEN, confidence=0.1))
    assert res.decisions[0].observed == UNKNOWN and res.decisions[0].effective == GREEN and not res.stops
    # ...beyond it the light is UNKNOWN near the line: stop
    assert r.update(0.5 + P.hold_s + 0.2, s, v, obs(UNKNOWN)).stops


def test_dilemma_zone_is_decided_once_and_standstill_resets_it():
    r = rules()
    v = 12.0
    # yellow 15 m before the line: cannot stop comfortably -> committed
    assert r.update(0.0, LINE_S - 15.0, v, obs(YELLOW)).stops == ()
    # it turns red on the way: still committed, goes on
    res = r.update(0.5, LINE_S - 9.0, v, obs(RED))
    assert res.stops == () and "committed" in res.decisions[0].reason
    # the ego had to stop before the line after all (a queue): the light applies again
    assert r.update(5.0, LINE_S - 6.0, 0.0, obs(RED)).stops == (LINE_S - P.stop_margin_m,)


def test_green_clears_a_commitment_and_passed_lines_are_forgotten():
    r = rules((1, LINE_S), (2, LINE_S + 100.0))
    r.update(0.0, LINE_S - 10.0, 12.0, obs(YELLOW))                 # committed at light 1
    r.update(0.1, LINE_S - 8.0, 12.0, obs(GREEN))
    assert r.update(0.2, LINE_S - 7.0, 12.0, obs(RED)).stops == ()   # 6.5 m room at 12 m/s: cannot
    res = r.update(1.0, LINE_S + 1.0, 12.0, {**obs(RED), **obs(RED, light_id=2)})
    assert [d.light_id for d in res.decisions] == [2] and res.stops == (LINE_S + 100.0 - P.stop_margin_m,)
    far = rules((1, LINE_S + 400.0)).update(0.0, 0.0, 12.0, obs(RED))
    assert far.decisions == () and far.stops == ()                   # beyond the lookahead


@pytest.mark.parametrize(("field", "value"), [("comfort_decel_mps2", 0.0), ("max_stop_decel_mps2", 2.0),
                                              ("hold_s", -1.0), ("min_confidence", 1.5)])
def test_bad_parameters_name_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrafficRuleParams(**{field: value})


def _head(stop_x: float, light_id: int = 1, y: float = 0.0) -> LightHead:
    return LightHead(light_id, (stop_x + 31.0, y, 5.5), math.pi, (stop_x, y), 0.0, 3.5)


def test_stage_pairs_readings_with_their_stamp():
    stage = TrafficLightStage(P)
    stage.set_route(straight_route())                     # x from -50 m
    assert not stage.waits_for(0.0)                       # no lights yet: never wait
    stage.set_heads([_head(50.0), _head(50.0, 2, y=3.5)])
    assert [ln.light_id for ln in stage.rules.stop_lines] == [1]
    assert stage.rules.stop_lines[0].s_m == pytest.approx(100.0)
    assert stage.waits_for(0.0)
    stage.put(0.0, [LightObservation(1, RED)])
    assert not stage.waits_for(0.0) and stage.waits_for(0.1)
    assert stage.update(0.0, 60.0, 10.0).stops
    # a later reading means the reader skipped 0.1 s: do not wait for it
    stage.put(0.2, [LightObservation(1, GREEN)])
    assert not stage.waits_for(0.1)
    res = stage.update(0.1, 60.0, 10.0)
    assert res.decisions[0].observed == UNKNOWN and res.decisions[0].effective == RED   # held
    assert stage.update(0.2, 60.0, 10.0).stops == ()


def _drive(states, steps: int, v0: float = 12.0):
    """Fallback + stage + controller + bicycle towards a light whose stop line is at x = 60 m;
    ``states(t)`` gives the reader's state. Returns (x, v, accel) per step."""
    fb = FallbackPlanner()
    route = straight_route()
    fb.set_route(route)
    stage = TrafficLightStage(P)
    stage.set_route(route)
    stage.set_heads([_head(60.0)])
    ctl = Controller()
    veh = BicycleVehicle(v=v0)
    xs, vs, acc = [], [], []
    for k in range(steps):
        t = k * DT_S
        stage.put(t, [LightObservation(1, states(t))])
        pose = veh.pose(t)
        s_ego, _ = fb.project_ego(pose)
        rule = stage.update(t, s_ego + fb.params.ego_length_m / 2, pose.speed_mps)
        res = fb.update(lidar_scan((veh.x, veh.y, veh.yaw), [], seed=k), t, pose, None,
                        virtual_stops=rule.stops)
        cmd = ctl.update(res.trajectory, pose, t)
        veh.step(cmd.throttle, cmd.steer, cmd.brake)
        xs.append(veh.x)
        vs.append(veh.v)
        acc.append(veh.last_accel_mps2)
    return np.array(xs), np.array(vs), np.array(acc)


def test_closed_loop_stops_before_a_red_line_and_goes_on_green():
    front = 2.3                                           # base_link -> front bumper
    x, v, a = _drive(lambda t: RED if t < 15.0 else GREEN, 250)
    stopped = np.flatnonzero(v < STOP_SPEED_MPS)
    assert stopped.size, "never stopped"
    before_green = x[: int(15.0 / DT_S)]
    assert before_green.max() + front < 60.0                          # never past the line on red
    assert before_green.max() + front > 60.0 - 6.0                    # stopped close to it
    assert a[: int(15.0 / DT_S)].min() >= -COMFORT_BOUND_MPS2         # comfortable
    assert x[-1] + front > 60.0 + 20.0 and v[-1] > 5.0                # went on green


def test_closed_loop_yellow_too_late_to_stop_goes_through():
    # yellow when the bumper is ~10 m before the line at 12 m/s: it cannot stop comfortably
    x, v, _ = _drive(lambda t: YELLOW if t >= 3.5 else GREEN, 60)
    assert v.min() > 10.0 and x[-1] > 60.0


def test_closed_loop_unknown_light_is_approached_carefully():
    x, v, a = _drive(lambda t: UNKNOWN, 200)
    assert x.max() + 2.3 < 60.0 and v[-1] < STOP_SPEED_MPS and a.min() >= -COMFORT_BOUND_MPS2
