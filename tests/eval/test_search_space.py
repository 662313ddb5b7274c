"""The failure search's parameter space, objective and seeds (issue 16), without running episodes."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from tps_eval import metrics as m
from tps_eval.search.space import FAULTS, SearchSpaceError, load_space, parse_space
from tps_eval.search.study import (
    EXPLOIT_STEP,
    FAILURE_MARGIN,
    SearchRun,
    episode_margin,
    failure_suite,
    is_failure,
    neighbours,
    safety_margin,
    summarize,
    trial_seed,
)
from tps_eval.suite import parse_suite, plan_episodes

ROOT = Path(__file__).resolve().parents[2]
SPACES = sorted((ROOT / "config" / "search").glob("*.yaml")) + [ROOT / "tests/data/search/tiny.yaml"]


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_the_simulator_accepts_every_corner_of_the_shipped_spaces(path):
    """Every point inside a space is a valid world, sensor-fault config and detector fault."""
    from tps_common.params import load_schema, validate
    from tps_sim.sensors.faults import SensorFaultConfig
    from tps_sim.world.config import WorldConfig

    space = load_space(path)
    schema = load_schema("perception_node")
    points = space.corner_points()
    assert len(points) >= 2
    for point in points:
        assert space.check(point) == point
        o = space.case_options(point)
        WorldConfig(scenario=o["scenario"], density=o["density"], clutter=o["clutter"],
                    duration_s=o["duration_s"], adversary=o["adversary"],
                    obstacles=tuple(o["obstacles"])).validate()
        SensorFaultConfig.from_dict(o["faults"])
        for node, params in o["node_parameters"].items():
            assert node == "perception"
            validate(params, schema, allow_unknown=False)


BASE = {"scenario": "cut_in", "fault": "none", "clutter": "none", "density": 0.3,
        "adversary.cut_gap_m": 5.0}


@pytest.mark.parametrize("change, match", [
    ({"adversary.cut_gap_m": 99.0}, r"^adversary\.cut_gap_m: 99.0 outside \[3.0, 13.0\]"),
    ({"density": float("nan")}, r"^density: nan outside"),
    ({"clutter": "extreme"}, r"^clutter: 'extreme' is not one of"),
    ({"scenario": "hard_brake"}, r"^adversary\.cut_gap_m: does not apply to this point"),
    ({"fault.onset_s": 1.0}, r"^fault\.onset_s: does not apply"),
    ({"wind_mps": 3.0}, r"^wind_mps: not a parameter of space 'tiny'"),
    ({"density": None}, r"^density: None is not a number"),
])
def test_a_point_outside_the_space_is_rejected_naming_the_parameter(change, match):
    space = load_space(ROOT / "tests/data/search/tiny.yaml")
    assert space.check(BASE) == BASE
    point = dict(BASE, **change)
    with pytest.raises(SearchSpaceError, match=match):
        space.check(point)
    missing = dict(BASE)
    del missing["density"]
    with pytest.raises(SearchSpaceError, match=r"^density: missing from the point"):
        space.check(missing)


@pytest.mark.parametrize("param, spec, match", [
    ("density", {"type": "float", "low": 0.1, "high": 9.0}, r"parameters\.density: \[0.1, 9.0\] must be"),
    ("wind", {"type": "float", "low": 0, "high": 1}, r"parameters\.wind: unknown parameter"),
    ("clutter", {"type": "categorical", "choices": ["fog"]}, r"parameters\.clutter: choices \['fog'\]"),
    ("fault", {"type": "categorical", "choices": ["gremlins"]}, r"parameters\.fault: choices"),
    ("adversary.hold_s", {"type": "float", "low": 1, "high": 2}, r"applies to the hard_brake adversary, "
                                                                    r"which no scenario of the space has"),
    ("fault.severity", {"type": "float", "low": 0.5, "high": 0.5}, r"must be a non-empty range"),
])
def test_bad_space_files_name_the_field(param, spec, match):
    data = {"name": "x", "parameters": {"scenario": {"type": "categorical", "choices": ["cut_in"]},
                                        param: spec}}
    with pytest.raises(SearchSpaceError, match=match):
        parse_space(data, "x.yaml")


def test_case_options_map_faults_and_adversary():
    space = parse_space({"name": "f", "parameters": {
        "scenario": {"type": "categorical", "choices": ["hard_brake"]},
        "fault": {"type": "categorical", "choices": list(FAULTS)},
        "fault.onset_s": {"type": "float", "low": 1.0, "high": 5.0},
        "fault.severity": {"type": "float", "low": 0.0, "high": 1.0},
        "adversary.brake_decel_mps2": {"type": "float", "low": 4.0, "high": 9.0},
        "obstacle.kind": {"type": "categorical", "choices": ["none", "debris"]},
        "obstacle.route_s_m": {"type": "float", "low": 40.0, "high": 90.0}}})
    point = {"scenario": "hard_brake", "fault": "missed_agents", "obstacle.kind": "debris",
             "adversary.brake_decel_mps2": 6.0, "fault.onset_s": 2.0, "fault.severity": 0.4,
             "obstacle.route_s_m": 50.0}
    o = space.case_options(point)
    assert o["node_parameters"] == {"perception": {"fault_drop_rate": 0.4, "fault_onset_s": 2.0}}
    assert o["adversary"] == {"brake_decel_mps2": 6.0}
    assert o["obstacles"] == [{"kind": "debris", "route_s_m": 50.0, "lateral_m": 0.0}]
    o = space.case_options(dict(point, fault="point_dropout"))
    assert o["faults"] == {"point_dropout": {"fraction": 0.4, "onset_s": 2.0}}
    assert o["node_parameters"] == {}


def test_safety_margin_and_failure():
    assert safety_margin(None) is None
    assert safety_margin({"at_fault_collisions": 1, "min_ttc_s": 5.0}) == FAILURE_MARGIN
    assert safety_margin({"red_light_violations": 1}) == FAILURE_MARGIN
    assert is_failure({"at_fault_collisions": 0, "red_light_violations": 2})
    assert not is_failure({"at_fault_collisions": 0, "red_light_violations": 0, "collisions": 3})
    calm = {"at_fault_collisions": 0, "min_ttc_s": 5.0, "min_clearance_m": 25.0}
    assert safety_margin(calm) == 1.0
    assert safety_margin(dict(calm, min_ttc_s=0.75)) == pytest.approx(0.25)
    assert safety_margin(dict(calm, min_clearance_m=0.5)) == pytest.approx(0.25)
    assert safety_margin(dict(calm, min_clearance_m=2.5, min_ttc_s=3.5)) == 1.0


def test_trial_seeds_are_search_seeds_and_depend_on_the_search_seed():
    from tps_sim.splits import SEARCH, TEST, TRAIN, VAL

    a = [trial_seed(1, n) for n in range(50)]
    assert a == [trial_seed(1, n) for n in range(50)]
    assert len(set(a)) == 50 and all(s in SEARCH for s in a)
    assert not set(SEARCH) & (set(TRAIN) | set(VAL) | set(TEST))
    assert a != [trial_seed(2, n) for n in range(50)]


DT_S = 0.1


def _trace(agents, speed=10.0, steps=5):
    t = np.arange(steps) * DT_S
    return m.EpisodeTrace(
        dt_s=DT_S, ego_xy=np.stack([t * speed, np.zeros(steps)], 1), ego_yaw=np.zeros(steps),
        ego_speed=np.full(steps, speed), ego_length_m=4.6, ego_width_m=1.9, agents=agents,
        statics=m.ObjectFrame.empty(), route=np.array([[0.0, 0.0], [200.0, 0.0]]),
        collision_ids=[()] * steps)


def _agent(x, vx=0.0, y=0.0):
    return m.ObjectFrame([7], [[x, y]], [0.0], [4.5], [1.8], [[vx, 0.0]], [1])


def test_safety_margins_time_to_collision_and_clearance():
    # stopped lead, bumper gap 15 m at 10 m/s: contact in 1.5 s; gap shrinks 1 m per step
    gap = 15.0
    lead = [_agent(10.0 * k * DT_S + 2.3 + gap + 2.25) for k in range(5)]
    ttc, clearance = m.safety_margins(_trace(lead))
    assert ttc == pytest.approx(1.5, abs=m.MARGIN_TTC_STEP_S)
    assert clearance == pytest.approx(gap, abs=1e-6)
    # a lead at the ego's speed never closes: full horizon; its gap is the clearance
    follow = [_agent(10.0 * k * DT_S + 2.3 + 8.0 + 2.25, vx=10.0) for k in range(5)]
    ttc, clearance = m.safety_margins(_trace(follow))
    assert ttc == m.MARGIN_TTC_HORIZON_S and clearance == pytest.approx(8.0)
    # a car alongside in the next lane is not ahead: ignored (unless the ego straddles lanes)
    side = [_agent(10.0 * k * DT_S, y=3.5) for k in range(5)]
    assert m.safety_margins(_trace(side)) == (m.MARGIN_TTC_HORIZON_S, m.MARGIN_RANGE_M)
    # creeping (1 m/s) up to a stopped car: no clearance counted below 2 m/s
    creep = [_agent(1.0 * k * DT_S + 2.3 + 1.0 + 2.25) for k in range(5)]
    assert m.safety_margins(_trace(creep, speed=1.0))[1] == m.MARGIN_RANGE_M
    # the metrics carry them
    metrics = m.evaluate_episode(_trace(lead)).to_dict()
    assert metrics["min_ttc_s"] == pytest.approx(1.5, abs=m.MARGIN_TTC_STEP_S)
    assert math.isfinite(metrics["min_clearance_m"])


def test_found_failures_become_a_suite_with_their_own_seeds(tmp_path):
    space = load_space(ROOT / "tests/data/search/tiny.yaml")
    summary = {"space": "tiny", "configuration": "fallback", "seed": 3, "budget": 2, "cases": [
        {"arm": "search", "trial": 4, "params": BASE, "seed": 5123, "metric": -1.0, "failure": True},
        {"arm": "random", "trial": 1, "params": dict(BASE, scenario="hard_brake", **{
            "adversary.cut_gap_m": None}), "seed": 5200, "metric": 0.4, "failure": False}]}
    summary["cases"][1]["params"].pop("adversary.cut_gap_m")
    data = failure_suite(summary, space)
    (tmp_path / "f.yaml").write_text(yaml.safe_dump(data))
    suite = parse_suite(yaml.safe_load((tmp_path / "f.yaml").read_text()), source="f.yaml")
    assert [c.id for c in suite.cases] == ["search-0004"]
    assert suite.cases[0].seeds == (5123,) and suite.cases[0].adversary == {"cut_gap_m": 5.0}
    specs = plan_episodes(suite, tmp_path)
    assert {(s.seed, s.configuration) for s in specs} == {(5123, "fallback"), (5123, "expert")}
    assert all(s.adversary == {"cut_gap_m": 5.0} for s in specs)


def test_a_suite_case_rejects_a_bad_adversary():
    from tps_eval.suite import SuiteError

    with pytest.raises(SuiteError, match=r"cases\[0\]\.adversary\.cut_gap_m: applies to the cut_in"):
        parse_suite({"name": "x", "cases": [{"scenario": "hard_brake", "adversary": {"cut_gap_m": 4}}]})


def _failing_cut_in(space) -> dict:
    return space.check({"scenario": "cut_in", "clutter": "medium", "density": 1.2,
                        "adversary.speed_delta_mps": 9.9, "adversary.cut_gap_m": 3.2,
                        "fault": "missed_agents", "fault.onset_s": 2.0, "fault.severity": 0.5})


def test_neighbours_stay_in_the_space_keep_the_categories_and_move_the_numbers():
    space = load_space(ROOT / "config/search/default.yaml")
    point = _failing_cut_in(space)
    a = neighbours(space, point, np.random.default_rng(3), 50)
    assert a == neighbours(space, point, np.random.default_rng(3), 50), "not reproducible from its rng"
    for q in a:
        assert space.check(q) == q
        assert all(q[k] == point[k] for k in ("scenario", "clutter", "fault"))
    for name in ("density", "adversary.speed_delta_mps", "adversary.cut_gap_m", "fault.onset_s"):
        p = space.parameters[name]
        moved = np.array([q[name] for q in a]) - point[name]
        assert np.any(moved != 0.0), name
        # a local step, not a redraw: ~N(0, EXPLOIT_STEP x range), clipped
        assert np.median(np.abs(moved)) <= 2 * EXPLOIT_STEP * (p.high - p.low), name
    assert max(q["adversary.speed_delta_mps"] for q in a) <= 10.0   # clipped at the range's end


def test_the_search_arm_queues_neighbours_of_failures_and_near_misses_only(tmp_path):
    import optuna

    space = load_space(ROOT / "config/search/default.yaml")
    run = SearchRun(space, 10, 1, tmp_path, executor="local")
    point = _failing_cut_in(space)
    failure = {"status": "ok", "metrics": {"at_fault_collisions": 1}}
    near = {"status": "ok", "metrics": {"at_fault_collisions": 0, "min_ttc_s": 0.6, "min_clearance_m": 3.0}}
    calm = {"status": "ok", "metrics": {"at_fault_collisions": 0, "min_ttc_s": 9.0, "min_clearance_m": 9.0}}
    broken = {"status": "error", "error": "world_error"}
    study = optuna.create_study(direction="minimize")
    assert [run.exploit_around(study, 0, point, episode_margin(r))
            for r in (calm, broken, near, failure)] == [0, 0, 1, 2]
    queued = study.get_trials(states=(optuna.trial.TrialState.WAITING,))
    assert len(queued) == 3
    for i, _ in enumerate(queued):   # asked next, each gives its queued point through the space's define-by-run
        trial = study.ask()
        got = space.sample(trial)
        assert got == space.check(got) and got["scenario"] == "cut_in"
        assert trial.user_attrs["neighbour_of"] == 0
        r = failure if i == 0 else calm   # the first neighbour fails
        run._tell(study, trial, r, episode_margin(r))
    trial = study.ask()                   # the optimiser's own proposal
    space.sample(trial)
    run._tell(study, trial, failure, episode_margin(failure))
    summary = summarize({"search": study}, run)
    assert [c["neighbour_of"] for c in summary["cases"]] == [0, 0, 0, None]
    assert (summary["failures_found"], summary["neighbours"], summary["failures_by_neighbours"]) == (2, 3, 1)
    off = SearchRun(space, 10, 1, tmp_path, executor="local", exploit=0)
    assert off.exploit_around(optuna.create_study(), 0, point, episode_margin(failure)) == 0
    with pytest.raises(ValueError, match="--exploit"):
        SearchRun(space, 10, 1, tmp_path, executor="local", exploit=-1)
