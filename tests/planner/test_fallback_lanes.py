"""The fallback with a lane map, closed loop (fallback + controller + bicycle) on clouds of the
project's ray-casting lidar model: the speed limit, a merge at the end of an acceleration lane
(gap acceptance, stop rather than force in), overtaking a stalled vehicle (or waiting behind it),
a crosswalk, the virtual-stop hook, and the lane map laid over the route."""

import math

import numpy as np
import pytest
from planner_helpers import DT_S, BicycleVehicle, lidar_scan
from tps_planner.controller import Controller
from tps_planner.fallback import FallbackParams, FallbackPlanner, VirtualStop
from tps_planner.lane_map import CONTROL_TRAFFIC_LIGHT, Crosswalk, LaneMap, MapLane, RouteLanes, StopLine

LANE_W = 3.5                       # the synthetic road's lanes (tps_sim.sensors.synthetic)
Y_RIGHT, Y_MID, Y_LEFT = -5.25, -1.75, 1.75
CAR = (4.5, 1.9, 1.5)              # l, w, h
PEDESTRIAN = (0.5, 0.6, 1.7)
X0, X_END = -60.0, 700.0
STOP_SPEED_MPS = 0.1
CREEP_SPEED_MPS = 1.0
SPEED_TOLERANCE_MPS = 0.6


def lane(lane_id, y, x0=X0, x1=X_END, speed=20.0, **kw) -> MapLane:
    return MapLane(lane_id, np.array([[x0, y], [x1, y]]), LANE_W, speed, **kw)


def three_lanes(speed=20.0) -> LaneMap:
    """A straight three-lane road, all lanes continuing; the route in the middle one."""
    return LaneMap((lane("right", Y_RIGHT, speed=speed, left_id="mid", can_change_left=True),
                    lane("mid", Y_MID, speed=speed, left_id="left", right_id="right", can_change_left=True,
                         can_change_right=True),
                    lane("left", Y_LEFT, speed=speed, right_id="mid", can_change_right=True)), ("mid",))


def straight(y: float) -> np.ndarray:
    x = np.arange(X0, X_END + 1e-9, 1.0)
    return np.stack([x, np.full_like(x, y)], axis=1)


ACCEL_END_X = 120.0


def merge_map() -> tuple[LaneMap, np.ndarray]:
    """An acceleration lane (y = Y_MID) ending at ACCEL_END_X beside a through lane (Y_LEFT); the
    route drives the acceleration lane, then blends into the through lane (as the simulator's
    route does), and the route lanes say so: accel, then through."""
    lm = LaneMap((lane("accel", Y_MID, x1=ACCEL_END_X, is_acceleration_lane=True, left_id="through",
                       can_change_left=True),
                  lane("through", Y_LEFT, right_id="accel", can_change_right=True)), ("accel", "through"))
    x = np.arange(X0, X_END + 1e-9, 1.0)
    u = np.clip((x - 30.0) / 60.0, 0.0, 1.0)
    y = Y_MID + (Y_LEFT - Y_MID) * u * u * (3 - 2 * u)
    return lm, np.stack([x, y], axis=1)


def drive(lane_map, route, steps, v0, movers=(), statics=(), params=None, stops_fn=None, start_y=None):
    """Closed loop; ``movers`` = [(x0, y, vx, size)], boxes moving along x at constant speed;
    returns a log of ego x, y, v, the lane state and the stops."""
    fb = FallbackPlanner(params or FallbackParams())
    fb.set_route(route)
    if lane_map is not None:
        fb.set_lane_map(lane_map)
    ctl = Controller()
    veh = BicycleVehicle(x=0.0, y=route[np.argmin(np.abs(route[:, 0]))][1] if start_y is None else start_y, v=v0)
    log = {"x": [], "y": [], "v": [], "state": [], "target": [], "stops": [], "boxes": [], "res": [], "planner": fb}
    for k in range(steps):
        t = k * DT_S
        boxes = [(x + vx * t, y, 0.0, *size) for x, y, vx, size in movers] + list(statics)
        res = fb.update(lidar_scan((veh.x, veh.y, veh.yaw), boxes, seed=k), t, veh.pose(t), None,
                        stops_fn(fb) if stops_fn else ())
        cmd = ctl.update(res.trajectory, veh.pose(t), t)
        log["x"].append(veh.x)
        log["y"].append(veh.y)
        log["v"].append(veh.v)
        log["state"].append(res.lane.state)
        log["target"].append(res.lane.target_lane_id)
        log["stops"].append(tuple(s.reason for s in res.stops))
        log["boxes"].append(boxes)
        log["res"].append(res)
        veh.step(cmd.throttle, cmd.steer, cmd.brake)
    return log


def min_clearance(log) -> float:
    """Smallest distance between the ego's footprint and any box's (both axis-aligned here) [m]."""
    best = math.inf
    for x, y, boxes in zip(log["x"], log["y"], log["boxes"], strict=True):
        for bx, by, _, bl, bw, _ in boxes:
            dx = abs(bx - x) - (bl + CAR[0]) / 2
            dy = abs(by - y) - (bw + CAR[1]) / 2
            best = min(best, max(dx, dy))
    return best


# ----------------------------------------------------------------------------------- map over route
def test_route_lanes_lay_the_map_over_the_route():
    lm, route = merge_map()
    fb = FallbackPlanner()
    fb.set_route(route)
    fb.set_lane_map(lm)
    lanes = fb.lanes
    assert isinstance(lanes, RouteLanes) and len(lanes.strips) == 2
    accel = lanes.strips[lanes.by_lane["accel"][0]]
    through = lanes.strips[lanes.by_lane["through"][0]]
    # offsets from the route: the route leaves the acceleration lane for the through lane
    assert accel.d_at(lanes.index(0.0 - X0)) == pytest.approx(0.0, abs=0.05)
    assert through.d_at(lanes.index(200.0 - X0)) == pytest.approx(0.0, abs=0.05)
    assert accel.ends and not through.ends
    assert lanes.speed_limit_mps[lanes.index(100.0)] == pytest.approx(20.0)


def test_speed_limit_from_the_map_instead_of_the_default_cruise():
    log = drive(three_lanes(speed=18.0), straight(Y_MID), 150, 10.0)
    assert log["v"][-1] == pytest.approx(18.0, abs=SPEED_TOLERANCE_MPS)
    no_map = drive(None, straight(Y_MID), 120, 10.0)
    assert no_map["v"][-1] == pytest.approx(FallbackParams().max_speed_mps, abs=SPEED_TOLERANCE_MPS)


# ----------------------------------------------------------------------------------- merge
def test_merges_into_a_free_through_lane_before_the_acceleration_lane_ends():
    lm, route = merge_map()
    log = drive(lm, route, 200, 12.0)
    x, y = np.array(log["x"]), np.array(log["y"])
    assert "changing" in log["state"]
    assert y[-1] == pytest.approx(Y_LEFT, abs=0.3)
    # the change was complete before the acceleration lane ended
    assert x[np.argmax(y > Y_LEFT - 0.3)] < ACCEL_END_X


def test_does_not_merge_into_a_car_alongside_and_merges_behind_it():
    lm, route = merge_map()
    # a car in the through lane level with the ego, a little faster
    log = drive(lm, route, 260, 12.0, movers=[(1.0, Y_LEFT, 13.0, CAR)])
    y = np.array(log["y"])
    car_x = np.array([b[0][0] for b in log["boxes"]])
    ego_x = np.array(log["x"])
    alongside = np.abs(car_x - ego_x) < (CAR[0] + CAR[0]) / 2 + 1.0
    assert np.all(y[alongside] < Y_MID + 0.5)          # never left its lane beside the car
    assert y[-1] == pytest.approx(Y_LEFT, abs=0.3)     # merged in the end ...
    k = int(np.argmax(y > Y_MID + 0.5))
    assert ego_x[k] < car_x[k] - CAR[0]                # ... behind it
    assert min_clearance(log) > 0.3


def test_stops_at_the_end_of_the_acceleration_lane_rather_than_force_in():
    lm, route = merge_map()
    # a dense platoon in the through lane: no acceptable gap
    platoon = [(x0, Y_LEFT, 10.0, CAR) for x0 in np.arange(-400.0, 200.0, 12.0)]
    p = FallbackParams()
    log = drive(lm, route, 300, 10.0, movers=platoon, params=p)
    y = np.array(log["y"])
    assert np.all(y < Y_MID + 0.5)                     # never moved into the platoon
    assert log["v"][-1] < STOP_SPEED_MPS
    front = log["x"][-1] + CAR[0] / 2
    assert front <= ACCEL_END_X - p.lane_end_stop_margin_m + 0.5
    assert any("lane ends" in s for s in log["stops"][-1])
    assert log["state"][-1] == "waiting"


# ----------------------------------------------------------------------------------- stalled
STALLED_X = 70.0


def test_overtakes_a_stalled_car_when_the_neighbour_lane_is_free():
    stalled = (STALLED_X, Y_MID, 0.0, *CAR)
    log = drive(three_lanes(), straight(Y_MID), 220, 15.0, statics=[stalled])
    x, y = np.array(log["x"]), np.array(log["y"])
    assert x[-1] > STALLED_X + 20.0                    # got past it
    assert "changing" in log["state"]
    assert abs(y[np.argmin(np.abs(x - STALLED_X))] - Y_MID) > LANE_W - 0.5   # beside it in another lane
    assert min_clearance(log) > 0.5


def test_waits_behind_a_stalled_car_while_the_neighbour_lanes_are_busy():
    stalled = (STALLED_X, Y_MID, 0.0, *CAR)
    traffic = [(x0, y, 12.0, CAR) for y in (Y_LEFT, Y_RIGHT) for x0 in np.arange(-200.0, 150.0, 11.0)]
    p = FallbackParams()
    log = drive(three_lanes(), straight(Y_MID), 200, 12.0, movers=traffic, statics=[stalled], params=p)
    y = np.array(log["y"])
    assert np.all(np.abs(y - Y_MID) < 0.5)             # stayed in its lane
    assert log["v"][-1] < STOP_SPEED_MPS
    gap = STALLED_X - CAR[0] / 2 - (log["x"][-1] + CAR[0] / 2)
    assert gap > p.idm_min_gap_m                       # stopped well back: room to steer round
    assert log["state"][-1] == "waiting"


def test_no_overtake_while_anything_in_the_path_is_too_close_to_steer_round_whatever_the_tracker_calls_it():
    """VAL stalled s1002 (stop 44): stopped 4.1 m behind a stalled car (too close to steer round it),
    the car's near face merged into the cluster of a car passing beside it; the nearest *standing*
    object left was another cluster of the same car 7.3 m ahead, past the room check, and the
    overtake clipped the stalled car. The room counts every object in the path, and the corridor's
    standing obstacle of the previous frame."""
    from tps_planner.fallback import OVERTAKE_MIN_ROOM, RouteObject

    gap = 4.1
    log = drive(three_lanes(), straight(Y_MID), 40, 0.0, statics=[(CAR[0] + gap, Y_MID, 0.0, *CAR)])
    assert log["state"][-1] == "waiting" and "too close to steer round it" in log["res"][-1].lane.reason
    assert max(abs(y - Y_MID) for y in log["y"]) < 0.1 and min_clearance(log) > gap - 0.2
    planner = log["planner"]
    p = planner.params
    s_ego = log["res"][-1].s_ego_m
    s_front = s_ego + p.ego_length_m / 2
    path_s = np.arange(s_ego - 10.0, s_ego + 100.0, 1.0)
    path_d = np.zeros_like(path_s)

    def obj(tid, s0, s1, d0, d1, v, still):
        return RouteObject(tid, np.zeros(2), s_front + s0, s_front + s1, d0, d1, v, 0.0, True, still, True)

    far_part = obj(64, 7.3, 7.4, -0.9, 0.9, 0.0, 3.6)              # the stalled car's far cluster
    merged = obj(55, 2.2, 13.6, -4.4, 0.9, 9.7, 0.0)               # passing car + the near face
    beside = obj(56, 2.2, 13.6, -5.3, -2.2, 9.7, 0.0)              # a car passing in the next lane
    room_needed = OVERTAKE_MIN_ROOM * p.lane_change_min_length_m
    assert planner._room_ahead((far_part, merged), far_part, s_ego, path_s, path_d) == pytest.approx(2.2)
    planner._track = None                                          # no corridor memory: the objects decide
    assert planner._room_ahead((far_part, beside), far_part, s_ego, path_s, path_d) == pytest.approx(7.3)
    assert planner._room_ahead((far_part,), far_part, s_ego, path_s, path_d) > room_needed
    # the corridor's standing obstacle of the last frame (the near face, 4.1 m) still counts
    planner._track = {"hist": [(0.0, s_front + gap)], "v": 0.0, "top": 1.5, "standing": True}
    assert planner._room_ahead((far_part, beside), far_part, s_ego, path_s, path_d) == pytest.approx(gap)
    assert planner._room_ahead((far_part, beside), far_part, s_ego, path_s, path_d) < room_needed
    planner._track["standing"] = False                             # a moving lead is not a wall
    assert planner._room_ahead((far_part, beside), far_part, s_ego, path_s, path_d) == pytest.approx(7.3)


def test_does_not_overtake_a_queue_near_a_junction():
    lm = three_lanes()
    lm = LaneMap(lm.lanes, lm.route_lane_ids, stop_lines=(
        StopLine("mid", np.array([[STALLED_X + 20.0, Y_MID - 1.7], [STALLED_X + 20.0, Y_MID + 1.7]]),
                 CONTROL_TRAFFIC_LIGHT),))
    # the map's lanes end at the junction entry, the stop line's lane included
    lanes = tuple(MapLane(ln.lane_id, np.array([[X0, ln.centerline[0, 1]], [STALLED_X + 20.0, ln.centerline[0, 1]]]),
                          ln.width_m, ln.speed_limit_mps, left_id=ln.left_id, right_id=ln.right_id,
                          can_change_left=ln.can_change_left, can_change_right=ln.can_change_right)
                  for ln in lm.lanes)
    lm = LaneMap(lanes, lm.route_lane_ids, stop_lines=lm.stop_lines)
    log = drive(lm, straight(Y_MID), 160, 12.0, statics=[(STALLED_X, Y_MID, 0.0, *CAR)])
    assert "changing" not in log["state"]
    assert np.all(np.abs(np.array(log["y"]) - Y_MID) < 0.5)
    assert log["v"][-1] < STOP_SPEED_MPS


DEBRIS = (0.8, 0.8, 0.5)            # l, w, h of the simulator's debris


def test_waits_behind_low_debris_across_every_lane_also_once_it_hides_between_beams():
    # Low debris in every lane: nowhere to go round it. Stopped behind it, the debris sits near
    # the roof's shadow line where it can fall between two lidar beams: the fallback must keep it
    # (it once lost it there, drove off and hit it) and must not change into a lane whose debris
    # hid the same way.
    debris_x = 100.0
    statics = [(debris_x, y, 0.0, *DEBRIS) for y in (Y_MID, Y_LEFT, Y_RIGHT)]
    log = drive(three_lanes(speed=22.0), straight(Y_MID), 260, 20.0, statics=statics)
    assert min_clearance(log) > 1.0
    assert np.all(np.abs(np.array(log["y"]) - Y_MID) < 0.5)
    assert max(log["v"][-60:]) < STOP_SPEED_MPS                # stopped for good
    assert debris_x - DEBRIS[0] / 2 - (log["x"][-1] + CAR[0] / 2) < 15.0


def test_near_blind_zone_counts_a_beam_spacing_of_margin():
    fb = FallbackPlanner()                       # default mount: 1.8 m straight above base_link
    assert fb.in_blind_zone(8.0, DEBRIS[2])      # under the roof's shadow line
    assert fb.in_blind_zone(9.5, DEBRIS[2])      # between the shadow line and the next beam
    assert not fb.in_blind_zone(15.0, DEBRIS[2])
    assert not fb.in_blind_zone(2.0, CAR[2])     # a car's roof stays in view
    no_margin = FallbackPlanner(FallbackParams(lidar_beam_spacing_deg=0.0))
    assert not no_margin.in_blind_zone(9.5, DEBRIS[2])


def _track_series(top_m: float, recede_mps: float, frames_recede: int) -> list:
    """The corridor track fed an object standing at 100 m for 1 s, then measured receding."""
    fb = FallbackPlanner()
    out = []
    for k in range(10 + frames_recede):
        s_meas = 100.0 + recede_mps * max(k - 9, 0) * DT_S
        out.append(fb._update_track(k * DT_S, s_meas, top_m, 80.0))
    return out


def test_a_low_standing_object_is_pinned_while_its_visible_face_recedes():
    # The roof's shadow eats a low object's lower part as the ego creeps up: its nearest visible
    # point recedes. A low standing object stays where it stood, at speed 0 (the ego once
    # followed such "departing" debris into it) ...
    s, v, _ = _track_series(DEBRIS[2], 1.0, 15)[-1]
    assert s == pytest.approx(100.0) and v == 0.0
    # ... until it has really moved off by more than track_gate_m,
    s, v, _ = _track_series(DEBRIS[2], 1.0, 40)[-1]
    assert s > 103.0 and v > 0.5
    # and a vehicle (too tall to hide at the standstill gap) is followed as it drives off.
    s, v, _ = _track_series(CAR[2], 1.0, 15)[-1]
    assert s > 101.0 and v > 0.5


# ----------------------------------------------------------------------------------- crosswalk
CROSSWALK_X = 60.0


def crosswalk_map() -> LaneMap:
    lm = three_lanes(speed=12.0)
    quad = np.array([[CROSSWALK_X - 2.0, -8.0], [CROSSWALK_X + 2.0, -8.0], [CROSSWALK_X + 2.0, 5.0],
                     [CROSSWALK_X - 2.0, 5.0]])
    return LaneMap(lm.lanes, lm.route_lane_ids, (Crosswalk("zebra", quad),))


def walker(y0: float, vy: float):
    """A pedestrian crossing at CROSSWALK_X: a box moving along y (drive() moves along x)."""
    return y0, vy


def drive_with_pedestrian(y0, vy, steps=200):
    fb_log = {"x": [], "v": [], "stops": [], "ped": []}
    fb = FallbackPlanner()
    fb.set_route(straight(Y_MID))
    fb.set_lane_map(crosswalk_map())
    ctl = Controller()
    veh = BicycleVehicle(x=0.0, y=Y_MID, v=11.0)
    for k in range(steps):
        t = k * DT_S
        py = y0 + vy * t
        boxes = [(CROSSWALK_X, py, math.pi / 2, *PEDESTRIAN)]
        res = fb.update(lidar_scan((veh.x, veh.y, veh.yaw), boxes, seed=k), t, veh.pose(t))
        cmd = ctl.update(res.trajectory, veh.pose(t), t)
        fb_log["x"].append(veh.x)
        fb_log["v"].append(veh.v)
        fb_log["stops"].append(tuple(s.reason for s in res.stops))
        fb_log["ped"].append(py)
        veh.step(cmd.throttle, cmd.steer, cmd.brake)
    return fb_log


def test_yields_to_a_pedestrian_entering_the_crosswalk_then_goes():
    # walks from the kerb on the right across all lanes at 1.2 m/s
    log = drive_with_pedestrian(-9.0, 1.2, steps=260)
    x, v = np.array(log["x"]), np.array(log["v"])
    ped = np.array(log["ped"])
    front = x + CAR[0] / 2
    p = FallbackParams()
    # it stopped before the crosswalk while the pedestrian was in the ego's lane ...
    in_lane = np.abs(ped - Y_MID) < 1.5
    assert np.all(front[in_lane] < CROSSWALK_X - 2.0)
    assert v.min() < CREEP_SPEED_MPS                     # (nearly) stopped for it
    assert any(s and s[0].startswith("crosswalk") for s in log["stops"])
    assert front[v.argmin()] <= CROSSWALK_X - 2.0 - p.crosswalk_stop_margin_m + 1.0
    # ... and went on once it had crossed
    assert x[-1] > CROSSWALK_X + 10.0


def test_ignores_a_pedestrian_walking_away_on_the_far_side():
    log = drive_with_pedestrian(3.0, 1.2, steps=120)
    known = FallbackParams().gap_min_track_age + 1        # frames until its velocity is known
    assert not any(s for s in log["stops"][known:])
    assert min(log["v"]) > 9.0


# ----------------------------------------------------------------------------------- hook
def test_virtual_stop_hook_stops_the_front_bumper_at_the_line():
    line_x = 80.0

    def stops(fb):
        s, _ = fb.project_point((line_x, Y_MID))
        return (VirtualStop(s, "red light"),)

    log = drive(three_lanes(speed=12.0), straight(Y_MID), 250, 12.0, stops_fn=stops)
    front = log["x"][-1] + CAR[0] / 2
    assert log["v"][-1] < STOP_SPEED_MPS
    assert line_x - 1.5 < front <= line_x + 0.3
    assert log["stops"][-1] == ("red light",)
