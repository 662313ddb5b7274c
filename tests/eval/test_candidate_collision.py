"""The counterfactual label of the monitor's AUROC: would the recorded candidate collide (at fault)
within 3 s, against the world the episode logged (tps_eval.candidate_collision), and its place in
a closed-loop run's ``monitor`` block (tps_eval.monitor_calib.run_monitor_summary)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tps_eval import candidate_collision as CC
from tps_eval import monitor_calib as MC
from tps_eval import report
from tps_eval.road import RoadQuery
from tps_sim.episode_log import load_episode_log

from tests.eval.synthetic_log import box_row, log_arrays

STEPS = 80
DT_S = 0.1
EGO_SPEED = 10.0
STOPPED_ID, FOLLOWER_ID = 42, 7
STOPPED_X = 60.0


def write_log(path, follower_speed: float | None = None, stamp_offset_s: float = 0.0) -> None:
    """Ego along +x at 10 m/s from x 0 for 8 s (it stops short of the car: the log is only the
    world the candidates are checked against); a car stopped in the lane at x 60; optionally a
    follower 12 m behind the ego at ``follower_speed``; a pole (id 1000) off the road at (30, 8)."""
    t = np.arange(STEPS) * DT_S
    ego = np.array([box_row(min(EGO_SPEED * ti, 45.0), 0.0, 0.0, 4.6, 1.9, EGO_SPEED, 0.0, EGO_SPEED) for ti in t])
    agents, ids = [], []
    for ti in t:
        agents.append([box_row(STOPPED_X, 0.0, 0.0, 4.5, 1.8, 0.0, 0.0, 0.0)])
        ids.append([STOPPED_ID])
        if follower_speed is not None:
            x = -12.0 + follower_speed * ti
            agents[-1].append(box_row(x, 0.0, 0.0, 4.5, 1.8, follower_speed, 0.0, follower_speed))
            ids[-1].append(FOLLOWER_ID)
    np.savez(path, **log_arrays(DT_S, ego, agents, ids, np.array([[30.0, 8.0, 2.0, 0.3, 0.3, 4.0, 0.0, 10.0]]),
                                stamp_offset_s=stamp_offset_s))


def straight_road() -> RoadQuery:
    return RoadQuery([np.array([[-50, -1.75], [450, -1.75], [450, 1.75], [-50, 1.75]], float)])


def cruise(x0: float, speed: float, n: int = 8, dt: float = 0.5) -> list[list[float]]:
    """Candidate rows t, x, y, yaw, speed at a constant speed along +x from ``x0``."""
    return [[dt * (k + 1), x0 + speed * dt * (k + 1), 0.0, 0.0, speed] for k in range(n)]


def stop_at(x0: float, speed: float, stop_x: float, n: int = 8, dt: float = 0.5) -> list[list[float]]:
    """Constant deceleration from ``speed`` to rest at ``stop_x``."""
    a = speed * speed / (2.0 * (stop_x - x0))
    out = []
    for k in range(n):
        t = dt * (k + 1)
        tt = min(t, speed / a)
        out.append([t, x0 + speed * tt - 0.5 * a * tt * tt, 0.0, 0.0, max(0.0, speed - a * t)])
    return out


@pytest.fixture
def world(tmp_path):
    write_log(tmp_path / "log.npz")
    return CC.EpisodeWorld(load_episode_log(tmp_path / "log.npz"), straight_road())


def test_a_candidate_driving_on_into_a_stopped_car_collides_and_one_that_stops_does_not(world):
    # at 3.0 s the ego is at x 30: cruising at 10 m/s its front (x + 2.3) meets the car's back
    # (60 - 2.25) when x = 25.45 m further, 2.55 s on
    hit = CC.candidate_collision(world, 3.0, np.array(cruise(30.0, 10.0)))
    assert hit["collides"] and hit["id"] == STOPPED_ID
    assert hit["t_s"] == pytest.approx(2.6, abs=0.051)
    safe = CC.candidate_collision(world, 3.0, np.array(stop_at(30.0, 10.0, 50.0)))
    assert safe == {"collides": False, "t_s": None, "id": None}


def test_only_contacts_within_the_horizon_count(world):
    # from 2.0 s (x 20) the contact is 3.55 s ahead: outside 3 s, inside 4 s
    cand = np.array(cruise(20.0, 10.0))
    assert not CC.candidate_collision(world, 2.0, cand, horizon_s=3.0)["collides"]
    assert CC.candidate_collision(world, 2.0, cand, horizon_s=4.0)["collides"]


def test_sparse_candidate_points_are_interpolated_so_a_short_object_between_them_is_not_skipped(world):
    # two points 2 s apart straddling the stopped car: the car lies between them
    cand = np.array([[2.0, 70.0, 0.0, 0.0, 20.0], [3.0, 90.0, 0.0, 0.0, 20.0]])
    res = CC.candidate_collision(world, 3.0, cand)
    assert res["collides"] and res["id"] == STOPPED_ID


def test_a_follower_running_into_a_braking_candidate_is_not_the_candidates_fault(tmp_path):
    write_log(tmp_path / "log.npz", follower_speed=16.0)
    w = CC.EpisodeWorld(load_episode_log(tmp_path / "log.npz"), straight_road())
    # at 1.0 s the ego is at x 10, the follower at x 4 closing at 6 m/s; the candidate stops at
    # x 12: the follower runs into its back (rear-ended), which is not at fault
    res = CC.candidate_collision(w, 1.0, np.array(stop_at(10.0, 10.0, 12.0)))
    assert res == {"collides": False, "t_s": None, "id": None}
    # the boxes do overlap there (x 6 against the follower at x 4): it is the fault rule that
    # leaves the contact out, not a missed overlap
    fr = w.agents[10]
    j = int(np.flatnonzero(fr.ids == FOLLOWER_ID)[0])
    assert abs(fr.xy[j, 0] - 6.0) < 4.6 and w.at_fault_contact(10, 6.0, 0.0, 0.0, 5.0) is None


def test_a_swerve_off_the_lane_into_a_static_object_is_at_fault(world):
    cand = np.array([[1.0, 30.0, 8.0, 1.0, 5.0], [2.0, 31.0, 9.0, 1.0, 0.0]])
    res = CC.candidate_collision(world, 2.3, cand)    # ego at x 23: its footprint crosses the pole at (30, 8)
    assert res["collides"] and res["id"] == 1000


def test_clock_jump_stamps_are_matched_to_the_logged_published_stamps(tmp_path):
    write_log(tmp_path / "log.npz", stamp_offset_s=100.0)
    w = CC.EpisodeWorld(load_episode_log(tmp_path / "log.npz"), straight_road())
    assert CC.candidate_collision(w, 103.0, np.array(cruise(30.0, 10.0)))["collides"]
    assert CC.candidate_collision(w, 3.0, np.array(cruise(30.0, 10.0))) is None     # not a logged stamp


@pytest.mark.parametrize("raw", [None, "x", [], [[0.5, 1.0, 2.0]], [[0.5, 1.0, 2.0, 0.0, float("nan")]],
                                 [[1.0, 1.0, 0.0, 0.0, 1.0], [0.5, 2.0, 0.0, 0.0, 1.0]]])
def test_a_missing_or_malformed_candidate_gets_no_label_rather_than_a_wrong_one(raw):
    assert CC.parse_candidate(raw) is None


def test_label_records_keeps_order_and_marks_unlabelled_cycles(tmp_path):
    write_log(tmp_path / "log.npz")
    log = load_episode_log(tmp_path / "log.npz")
    recs = [{"stamp_s": 3.0, "cand": cruise(30.0, 10.0)}, {"stamp_s": 3.0, "cand": stop_at(30.0, 10.0, 50.0)},
            {"stamp_s": 3.0}, {"stamp_s": 50.0, "cand": cruise(30.0, 10.0)}, {"stamp_s": "bad", "cand": cruise(0, 1)}]
    assert CC.label_records(recs, log, straight_road()) == [True, False, None, None, None]


def _run_dir(tmp_path, monkeypatch):
    """A closed-loop run directory with one stack episode: a monitor that is sure of the candidates
    that would stop and unsure of the ones that would hit the car, and one that is wrong; one clear
    cycle is critical all the same (a blind detector is critical whatever the candidate does)."""
    monkeypatch.setattr("tps_eval.road.road_for_scenario", lambda scenario: straight_road())
    ep = tmp_path / "episodes" / "synthetic-s1000-stack"
    ep.mkdir(parents=True)
    write_log(ep / "episode_log.npz")
    lines = []
    for k in range(10, 40):
        t = round(k * DT_S, 3)
        x = EGO_SPEED * t
        bad = k % 3 == 0
        cand = cruise(x, 20.0) if bad else stop_at(x, 10.0, min(x + 20.0, 55.0))
        certainty = 0.2 if bad else 0.9
        if k == 39:      # confidently wrong once
            certainty = 0.95
        lines.append(json.dumps({"stamp_s": t, "t_s": t, "state": 0, "certainty": certainty, "critical": k == 10,
                                 "signals": {}, "critical_signals": [], "reasons": [], "candidate": True,
                                 "warming_up": False, "cand": cand}))
    (ep / "monitor.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_the_run_summary_reports_the_candidate_collision_auroc_beside_the_incident_proxy(tmp_path, monkeypatch):
    out = MC.run_monitor_summary(_run_dir(tmp_path, monkeypatch), {}, calibration_path=tmp_path / "none.json")
    stack = out["by_configuration"]["stack"]
    labels = CC.label_records([json.loads(s) for s in (tmp_path / "episodes" / "synthetic-s1000-stack"
                                                           / "monitor.jsonl").read_text().splitlines()],
                              load_episode_log(tmp_path / "episodes" / "synthetic-s1000-stack" / "episode_log.npz"),
                              straight_road())
    pos = sum(1 for v in labels if v)
    assert stack["candidate_cycles"] == 30 and stack["candidate_collision_cycles"] == pos
    assert 0 < pos < 30
    # every positive but the confidently wrong one scores above every negative
    assert stack["auroc_candidate_collision"] == pytest.approx(1.0 - (30 - pos) / (pos * (30 - pos)), abs=1e-9)
    # critical counted as certainty 0: the critical clear cycle outranks the 9 right positives
    assert stack["auroc_candidate_collision_critical"] == pytest.approx(171 / 200)
    assert stack["incident_cycles"] == 0 and stack["auroc_incident"] is None
    assert out["auroc"] == stack["auroc_candidate_collision"]
    assert out["auroc_label"] == "candidate_collision"
    assert "calibration_error" in out
    text = "\n".join(report.monitor_figures_lines(out))
    assert "| stack | 1 | 30 | 0.900 / 0.855 (10 / 30) | - (0) | 0 of 0" in text and "Calibration not loaded" in text
    assert report.monitor_figures_lines(None) == []


def test_without_recorded_candidates_the_auroc_falls_back_to_the_incident_label_and_says_so(tmp_path, monkeypatch):
    run = _run_dir(tmp_path, monkeypatch)
    p = run / "episodes" / "synthetic-s1000-stack" / "monitor.jsonl"
    rows = [json.loads(s) for s in p.read_text().splitlines()]
    p.write_text("\n".join(json.dumps({k: v for k, v in r.items() if k != "cand"}) for r in rows) + "\n")
    out = MC.run_monitor_summary(run, {}, calibration_path=tmp_path / "none.json")
    assert out["by_configuration"]["stack"]["candidate_cycles"] == 0
    assert out["auroc_candidate_collision"] is None and out["auroc_label"] == "incident"
