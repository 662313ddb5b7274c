"""Bridge episode log (tps_sim.episode_log format) -> EpisodeTrace -> metrics, on a synthetic log."""

from __future__ import annotations

import numpy as np
import pytest
from tps_eval import metrics as m
from tps_eval.collector import CollectedData, stamp_key
from tps_eval.road import RoadQuery
from tps_eval.trace import trace_from_log
from tps_sim.episode_log import EpisodeLogError, load_episode_log

from tests.eval.synthetic_log import box_row, log_arrays

STEPS = 30
DT_S = 0.1
SPEED_MPS = 10.0
LEAD_ID = 42
STATIC_ID = 1000
LANE_HALF_WIDTH_M = 1.75


def write_log(path, collide_at: int | None = 20) -> None:
    """Ego along +x at 10 m/s; a stopped car ahead in lane; a pole off the road."""
    t = np.arange(STEPS) * DT_S
    ego = np.array([box_row(SPEED_MPS * ti, 0.0, 0.0, 4.6, 1.9, SPEED_MPS, 0.0, SPEED_MPS) for ti in t])
    lead_x = SPEED_MPS * (collide_at or 1000) * DT_S + 4.5
    agents = [[box_row(lead_x, 0.0, 0.0, 4.5, 1.8, 0.0, 0.0, 0.0)] for _ in t]
    coll_ids = [[LEAD_ID] if collide_at is not None and k >= collide_at else [] for k in range(STEPS)]
    np.savez(path, **log_arrays(DT_S, ego, agents, [[LEAD_ID] for _ in t],
                                np.array([[50.0, 8.0, 2.0, 0.3, 0.3, 4.0, 0.0, 10.0]]), coll_ids))


def straight_road() -> RoadQuery:
    lane = np.array([[-50, -LANE_HALF_WIDTH_M], [450, -LANE_HALF_WIDTH_M],
                     [450, LANE_HALF_WIDTH_M], [-50, LANE_HALF_WIDTH_M]], float)
    return RoadQuery([lane])


def test_log_to_metrics_front_collision_with_stopped_car(tmp_path):
    path = tmp_path / "episode_log.npz"
    write_log(path)
    log = load_episode_log(path)
    collected = CollectedData(sources={stamp_key(s): 1 for s in log["stamp_s"][5:]},
                              node_latency_ms={"fallback": [4.0, 6.0]})
    trace = trace_from_log(log, straight_road(), collected, route_goal_m=100.0)
    assert trace.n_steps == STEPS and len(trace.agents[0]) == 1 and len(trace.statics) == 1
    res = m.evaluate_episode(trace)
    assert res.at_fault_collisions == 1
    assert res.collision_events[0]["kind"] == m.COLLISION_STOPPED_AGENT
    assert res.collision_events[0]["step"] == 20
    assert res.nc == 0.0 and res.dac == 1.0
    assert res.progress_m == pytest.approx(SPEED_MPS * (STEPS - 1) * DT_S)
    assert res.route_completion == pytest.approx(29.0 / 100.0)
    assert res.fallback_share == 1.0  # the 25 steps heard were all fallback
    assert res.e2e_latency_p50_ms == pytest.approx(20.0)
    assert res.node_latency_ms["fallback"]["n"] == 2


def test_step_zero_start_up_is_kept_apart_from_the_cycle_latency(tmp_path):
    """Step 0's control waits for the graph's start-up (seconds); it is startup_latency_ms, and
    the e2e percentiles are over the later steps only."""
    path = tmp_path / "episode_log.npz"
    write_log(path)
    log = load_episode_log(path)
    log["e2e_latency_s"] = np.full(STEPS, 0.02)
    log["e2e_latency_s"][0] = 7.0
    log["e2e_latency_s"][10] = 0.5
    res = m.evaluate_episode(trace_from_log(log, straight_road(), None, route_goal_m=100.0))
    assert res.startup_latency_ms == pytest.approx(7000.0)
    assert res.e2e_latency_p50_ms == pytest.approx(20.0)
    assert 20.0 < res.e2e_latency_p99_ms < 500.0        # the 0.5-s cycle counts, step 0 does not
    assert "startup_latency_ms" in m.EpisodeMetrics.NON_DETERMINISTIC


def test_clean_log_and_missing_key(tmp_path):
    path = tmp_path / "clean.npz"
    write_log(path, collide_at=None)
    res = m.evaluate_episode(trace_from_log(load_episode_log(path), straight_road()))
    assert res.collisions == 0 and res.nc == 1.0 and res.fallback_share is None
    bad = dict(np.load(path))
    del bad["ego"]
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(EpisodeLogError, match="ego"):
        load_episode_log(tmp_path / "bad.npz")
    with pytest.raises(EpisodeLogError, match="does not exist"):
        load_episode_log(tmp_path / "none.npz")


def test_road_query_straddling_and_tolerance():
    left = np.array([[0, 0], [100, 0], [100, 3.5], [0, 3.5]], float)
    right = np.array([[0, -3.5], [100, -3.5], [100, 0], [0, 0]], float)
    road = RoadQuery([left, right])
    centred = m.box_corners([[50.0, 1.75]], [0.0], [4.6], [1.9])[0]
    across = m.box_corners([[50.0, 0.0]], [0.0], [4.6], [1.9])[0]
    assert not road.straddling(centred) and road.straddling(across)
    assert road.contains(np.array([[50.0, 3.55], [50.0, 3.7]])).tolist() == [True, False]
