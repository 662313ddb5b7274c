"""SimWorld behaviour: lifecycle, external ego, placement, clutter, obstacles, scene3d, futures."""

import numpy as np
import pytest
from tps_sim.world import (
    SCENARIOS,
    EgoControl,
    SimWorld,
    WorldConfig,
    attach_futures,
)
from tps_sim.world.config import CMD_CHANGE_LANE_LEFT, CMD_TAKE_EXIT, CMD_TURN_RIGHT

PLACEMENT_TOL_M = 1e-6
STEPS = 60


@pytest.fixture
def highway_world():
    world = SimWorld(WorldConfig(scenario="highway", seed=9001, clutter="high",
                                 obstacles=({"kind": "debris", "route_s_m": 300.0,
                                             "lateral_m": 0.0},)))
    yield world
    world.close()


def test_reset_step_close_reset(highway_world):
    w = highway_world
    with pytest.raises(RuntimeError, match="before reset"):
        w.step(EgoControl())
    s0 = w.reset()
    assert s0.step == 0 and s0.t_s == 0.0 and s0.ego.id == 0 and s0.ego.sim_id == "ego"
    assert len(s0.agents) > 10
    assert all(a.id > 0 for a in s0.agents)
    s1 = w.step(EgoControl(throttle=0.3))
    assert s1.step == 1 and s1.t_s == pytest.approx(0.1)
    w.close()
    again = w.reset()
    assert again.to_bytes() == s0.to_bytes(), "reset after close replays the same episode"


def test_external_ego_moves_as_commanded_and_sumo_places_it_exactly(highway_world):
    w = highway_world
    s = w.reset()
    x0, v0 = s.ego.center[0], s.ego.speed_mps
    for k in range(STEPS):
        s = w.step(EgoControl(throttle=0.6, steer=0.05 if k > 30 else 0.0))
        sumo_xy = w.sumo_ego_center()
        m = w.ego_model_state
        assert np.hypot(sumo_xy[0] - m.x_m, sumo_xy[1] - m.y_m) < PLACEMENT_TOL_M
    assert s.ego.center[0] > x0 + v0 * STEPS * 0.1 * 0.9
    assert s.ego.yaw < 0.0, "positive steer turns right"
    assert s.route_progress_m > 100.0


def test_bad_control_is_reported_not_fatal(highway_world):
    w = highway_world
    w.reset()
    s = w.step(EgoControl(throttle=float("nan"), steer=3.0))
    assert any("throttle" in e and "steer" in e for e in s.events), s.events
    s = w.step(EgoControl(throttle=0.2))
    assert s.events == ()


def test_clutter_off_road_obstacle_in_lane_and_ids_stable(highway_world):
    w = highway_world
    s = w.reset()
    st = s.statics
    clutter = ~st.in_lane
    assert clutter.sum() > 50
    assert set(st.kinds) >= {"pole", "barrier", "building", "parked_car"}
    for k in np.flatnonzero(clutter):
        x, y, yaw, length, width = st.boxes2d()[k]
        c, si = np.cos(yaw), np.sin(yaw)
        corners = [(x + c * a - si * b, y + si * a + c * b)
                   for a in (-length / 2, length / 2) for b in (-width / 2, width / 2)]
        assert not w.road.contains(np.array(corners + [(x, y)])).any(), st.kinds[k]
    ob = np.flatnonzero(st.in_lane)
    assert len(ob) == 1 and st.kinds[ob[0]] == "debris"
    assert w.road.contains(st.centers[ob, :2]).all()
    ids_by_sim = {a.sim_id: a.id for a in s.agents}
    for _ in range(10):
        s = w.step(EgoControl(throttle=0.3))
        for a in s.agents:
            if a.sim_id in ids_by_sim:
                assert ids_by_sim[a.sim_id] == a.id


def test_obstacle_blocks_the_lane_for_sumo_and_hits_the_external_ego():
    obstacle = ({"kind": "debris", "route_s_m": 110.0, "lateral_m": 0.0},)
    results = {}
    for driver in ("expert", "external"):
        w = SimWorld(WorldConfig(scenario="highway", seed=9001, ego_driver=driver,
                                 clutter="none", duration_s=15.0, obstacles=obstacle))
        try:
            s = w.reset()
            ob_id = int(s.statics.ids[s.statics.in_lane][0])
            ob_x = float(s.statics.centers[s.statics.in_lane][0, 0])
            # route_s_m counts from the ego's start: the debris is ~110 m ahead of it.
            assert ob_x - s.ego.center[0] == pytest.approx(110.0, abs=25.0)
            assert s.route_progress_m == pytest.approx(w.start_s_m, abs=25.0)
            hits = set()
            while not w.is_done(s):
                s = w.step(EgoControl(throttle=0.3))
                assert not any(a.sim_id.startswith("obst_") for a in s.agents)
                hits |= set(s.collisions)
            passed_beside = s.ego.center[0] > ob_x and abs(s.ego.center[1]) > 1.5
            stopped_short = s.ego.center[0] < ob_x and abs(s.ego.speed_mps) < 0.5
            results[driver] = (ob_id in hits, passed_beside or stopped_short)
        finally:
            w.close()
    # SUMO sees the placeholder: the expert either changes lane around the debris or stops.
    assert results["expert"] == (False, True), results
    assert results["external"][0], "a straight-driving external ego must hit the debris"


def test_clutter_levels_scale():
    counts = {}
    for level in ("none", "low", "high"):
        w = SimWorld(WorldConfig(scenario="priority", seed=3, clutter=level, density=0.3))
        try:
            counts[level] = len(w.reset().statics)
        finally:
            w.close()
    assert counts["none"] == 0 < counts["low"] < counts["high"]


def test_route_and_instruction():
    for name, cmd in (("merge", CMD_CHANGE_LANE_LEFT), ("roundabout", CMD_TAKE_EXIT),
                      ("signalised", CMD_TURN_RIGHT)):
        w = SimWorld(WorldConfig(scenario=name, seed=0))
        assert w.instruction.command == cmd
        assert w.route.shape[1] == 2 and w.route.dtype == np.float64 and len(w.route) > 100
        on_road = w.road.contains(w.route)
        assert on_road.mean() > 0.97, f"{name}: route leaves the drivable area"
    assert SCENARIOS["roundabout"].instruction.exit_number == 2


def test_lane_lookup():
    w = SimWorld(WorldConfig(scenario="highway"))
    lane, offset = w.road.lane_at((300.0, 0.5))
    assert lane == "hw0_1" and offset == pytest.approx(0.5, abs=1e-6)
    lane, offset = w.road.lane_at((300.0, -3.2 - 0.4))
    assert lane == "hw0_0" and offset == pytest.approx(-0.4, abs=1e-6)
    assert w.road.lane_at((300.0, 30.0)) is None


def test_scene3d_and_futures():
    w = SimWorld(WorldConfig(scenario="ped_crossing", seed=9002, ego_driver="expert",
                             duration_s=8.0))
    try:
        states = [w.reset()]
        while not w.is_done(states[-1]):
            states.append(w.step())
        scene = w.scene3d(states[-1])
    finally:
        w.close()
    assert states[-1].t_s == pytest.approx(8.0)
    assert len(scene.agents) == len(states[-1].agents)
    assert len(scene.statics) == len(states[-1].statics)
    assert scene.ego_pose[0] == pytest.approx(states[-1].ego.center[0])
    assert {a.class_id for s in states for a in s.agents} & {4}, "pedestrians expected"
    futures = attach_futures(states, horizon_s=3.0, step_s=0.5)
    assert len(futures) == len(states)
    f0 = futures[0]
    assert f0.times_s.tolist() == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    # The ego's future at +1.0 s is its centre 10 steps later.
    assert f0.xy[0][1] == pytest.approx(states[10].ego.center[:2])
    # Late steps have no full future.
    assert not futures[-1].valid[0].any()
    # An agent that leaves has NaN futures afterwards.
    for k, s in enumerate(states[:-30]):
        for a in s.agents:
            later = states[k + 30].agent_by_id(a.id)
            assert futures[k].valid[a.id][-1] == (later is not None)


def test_an_obstacle_close_ahead_of_the_start_slows_the_start_or_is_named():
    """SUMO refuses to insert the ego with a stopped obstacle inside its stopping distance: the
    retries start slower where that helps; where nothing helps the error names the obstacle."""
    w = SimWorld(WorldConfig(scenario="highway", seed=1000, obstacles=({"kind": "debris", "route_s_m": 50.0},)))
    try:
        st = w.reset()
        assert w.insert_attempts >= 2, "a 50 m obstacle used to make the first (full-speed) try fail"
        stop_m = st.ego.speed_mps ** 2 / 2.0 / 3.0
        assert stop_m < 50.0, f"the ego starts at a speed it cannot stop from ({stop_m:.0f} m)"
    finally:
        w.close()
    w = SimWorld(WorldConfig(scenario="highway", seed=1000, obstacles=({"kind": "debris", "route_s_m": 60.0},
                                                                        {"kind": "debris", "route_s_m": 12.0})))
    try:
        with pytest.raises(RuntimeError, match=r"obstacles\[1\]\.route_s_m = 12 m"):
            w.reset()
    finally:
        w.close()
