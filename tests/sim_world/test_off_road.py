"""Lane departure: the external ego driven off every lane keeps running (SUMO used to raise
"Lane '' is not known" for it and the bridge ended the episode as a world error); the departure
is in the ground truth (events), the episode ends as ``off_road`` after OFF_ROAD_END_S fully off
the drivable area, and the evaluation scores it (DAC 0), never as an error."""

from __future__ import annotations

import math

import libsumo
import numpy as np
import pytest
from tps_sim.bridge import BridgeParams, SimBridge
from tps_sim.episode_log import load_episode_log
from tps_sim.world import EgoControl, SimWorld, WorldConfig
from tps_sim.world.world import END_OFF_ROAD, EVENT_OFF_DRIVABLE, OFF_ROAD_END_S

SCENARIO, SEED = "merge", 3     # train split seed
SIDEWAYS_M = 30.0
BRAKE = EgoControl(brake=1.0)   # slow: SUMO's lane-angle lookup for slow vehicles used to fail


def _push_sideways(world: SimWorld, metres: float) -> None:
    """Move the ego model ``metres`` to its left (negative: right)."""
    m = world.ego_model_state
    world._ego_model.teleport(x_m=m.x_m - metres * math.sin(m.yaw_rad),
                              y_m=m.y_m + metres * math.cos(m.yaw_rad))


def _off_side(world: SimWorld) -> float:
    """+/-SIDEWAYS_M: the side where the ego's new position is off the drivable area."""
    m = world.ego_model_state
    for side in (SIDEWAYS_M, -SIDEWAYS_M):
        xy = np.array([[m.x_m - side * math.sin(m.yaw_rad), m.y_m + side * math.cos(m.yaw_rad)]])
        if not world.road.contains(xy)[0]:
            return side
    pytest.fail("no side of the start is off the road 30 m away")


@pytest.fixture
def world():
    w = SimWorld(WorldConfig(scenario=SCENARIO, seed=SEED, duration_s=20.0, ego_driver="external"))
    yield w
    w.close()


def test_far_off_road_keeps_stepping_and_ends_off_road(world):
    s = world.reset()
    assert EVENT_OFF_DRIVABLE not in s.events
    _push_sideways(world, _off_side(world))
    steps = 0
    while not world.is_done(s):
        s = world.step(BRAKE)
        steps += 1
        assert EVENT_OFF_DRIVABLE in s.events, f"step {steps}: {s.events}"
        m = world.ego_model_state
        # SUMO keeps its ego where the model is, off every lane
        assert np.allclose(world.sumo_ego_center(), (m.x_m, m.y_m), atol=1e-6)
        assert libsumo.vehicle.getLaneID("ego") == ""
        assert steps < 100
    assert world.done_reason == END_OFF_ROAD
    assert steps == round(OFF_ROAD_END_S / world.config.dt_s) + 1, "ends just after OFF_ROAD_END_S"
    assert s.ego.speed_mps < 3.0, "the slow, off-lane case is the one that used to fail"


def test_short_excursion_recovers_onto_a_lane(world):
    s = world.reset()
    side = _off_side(world)
    _push_sideways(world, side)
    for _ in range(10):                       # 1 s off the road: less than OFF_ROAD_END_S
        s = world.step(EgoControl(throttle=0.2))
        assert EVENT_OFF_DRIVABLE in s.events
    _push_sideways(world, -side)
    for _ in range(30):
        s = world.step(EgoControl(throttle=0.2))
        assert EVENT_OFF_DRIVABLE not in s.events
    assert not world.is_done(s) and world.done_reason == ""
    assert libsumo.vehicle.getLaneID("ego") != "", "back on a lane in SUMO"
    m = world.ego_model_state
    assert np.allclose(world.sumo_ego_center(), (m.x_m, m.y_m), atol=1e-6)


def test_bridge_logs_off_road_and_the_evaluation_scores_dac_zero(tmp_path):
    from tps_eval import metrics as M
    from tps_eval.road import road_for_scenario
    from tps_eval.runner import _episode_completed, failure_categories
    from tps_eval.trace import trace_from_log

    core = SimBridge(BridgeParams(scenario=SCENARIO, seed=SEED, duration_s=20.0,
                                  lidar_enabled=False, sync_timeout_s=0.5,
                                  episode_log=str(tmp_path / "log.npz")))
    try:
        f = core.start(0.0)
        _push_sideways(core.world, _off_side(core.world))
        now = 0.0
        while not core.done:
            now += 0.01
            assert core.submit_control({"stamp_ns": int(round(f.stamp_s * 1e9)), "throttle": 0.0,
                                        "steer": 0.0, "brake": 1.0}, now).status == "accepted"
            f = core.poll(now)
            assert f is not None and f.step < 100
        assert core.stats.end_reason == "off_road"
    finally:
        path = core.close()
    log = load_episode_log(path)
    assert log["meta"]["end_reason"] == "off_road"
    assert all(EVENT_OFF_DRIVABLE in ev for ev in log["events"][1:])
    assert _episode_completed(path), "an off-road end is a finished episode, not an error"
    trace = trace_from_log(log, road_for_scenario(SCENARIO))
    metrics = M.evaluate_episode(trace).to_dict()
    assert metrics["dac"] == 0.0 and metrics["off_road_steps"] >= len(log["t_s"]) - 1
    result = {"status": "ok", "metrics": M.with_reference(metrics, 50.0)}
    assert "off_road" in failure_categories(result) and "error" not in failure_categories(result)
    assert result["metrics"]["pdm_score"] == 0.0
