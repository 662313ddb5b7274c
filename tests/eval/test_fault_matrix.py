"""The fault matrix's bookkeeping (tps_eval.faults, no ROS): which fault an episode injects and
when, the injected-crash handling the runner applies, the monitor's detection latency and false
alarms from the episode metrics' ``monitor`` timeline (synthetic), the per-suite aggregation, and
the ``faults`` suite itself."""

from __future__ import annotations

import math

import pytest
from tps_common.node import EXIT_INJECTED_CRASH
from tps_eval import faults as F
from tps_eval.suite import load_suite, plan_episodes

NOMINAL, DEGRADED, FALLBACK, MRM = "NOMINAL", "DEGRADED", "FALLBACK", "MINIMAL_RISK"


def _spec(cfg="stack", faults=None, node_parameters=None, case="c", seed=9000):
    return {"case_id": case, "seed": seed, "configuration": cfg, "scenario": "highway", "clutter": "low",
            "duration_s": 12.0, "faults": faults or {}, "node_parameters": node_parameters or {}}


def _timeline(states: list[str], dt=0.1, t0=0.0) -> list:
    return [[round(t0 + i * dt, 3), s, 1.0 if s == NOMINAL else 0.3] for i, s in enumerate(states)]


def _transitions(tl: list) -> list:
    out = []
    for (_, a, _), (t, b, _) in zip(tl, tl[1:], strict=False):
        if a != b:
            out.append({"t_s": t, "from": a, "to": b, "reasons": ["test"]})
    return out


def _metrics(states, collisions=(), steps=120, dt=0.1):
    tl = _timeline(states, dt)
    return {"monitor": {"timeline": tl, "transitions": _transitions(tl)},
            "at_fault_collisions": sum(1 for c in collisions if c[1]), "steps": steps, "duration_s": steps * dt,
            "collision_events": [{"step": s, "object_id": 1, "kind": "x", "at_fault": af, "static": False}
                                 for s, af in collisions]}


# --- which fault, when -------------------------------------------------------------------------
def test_fault_types_and_onsets_from_the_case():
    assert F.episode_faults(_spec()) == [] and F.fault_type(_spec()) == "none" and F.fault_onset_s(_spec()) is None
    s = _spec(faults={"point_dropout": {"onset_s": 4.0, "fraction": 0.5}})
    assert F.fault_type(s) == "point_dropout" and F.fault_onset_s(s) == 4.0
    s = _spec(node_parameters={"perception": {"fault_position_noise_m": 1.0, "fault_heading_noise_rad": 0.3,
                                              "fault_onset_s": 6.0}})
    assert F.fault_type(s) == "pose_noise" and F.fault_onset_s(s) == 6.0
    s = _spec(node_parameters={"perception": {"fault_blackout": True}})   # no onset: from 0
    assert F.fault_type(s) == "detector_blackout" and F.fault_onset_s(s) == 0.0
    s = _spec(node_parameters={"perception": {"fault_drop_rate": 0.0, "fault_onset_s": 3.0}})
    assert F.fault_type(s) == "none"                                        # a rate of 0 is off
    s = _spec(node_parameters={"planner": {"fault_crash_at_s": 3.0}})
    assert F.fault_type(s) == "planner_crash" and F.fault_onset_s(s) == 3.0
    s = _spec(faults={"camera_black": {"onset_s": 5.0}}, node_parameters={"perception": {"fault_drop_rate": 0.3,
                                                                                         "fault_onset_s": 2.0}})
    assert F.fault_type(s) == "camera_black+missed_agents" and F.fault_onset_s(s) == 2.0


def test_injected_crashes_overrides_and_outcomes():
    crashes = F.injected_crashes({"planner": {"fault_crash_at_s": 3.0}, "perception": {"fault_blackout": True},
                                  "monitor": {"fault_crash_at_s": -1.0}})
    assert crashes == {"planner": 3.0}
    assert F.crash_overrides(crashes) == ["nodes.planner.required=false"]
    code = EXIT_INJECTED_CRASH
    rows, err = F.crash_outcome(crashes, {"planner": (code, False), "sim_bridge": (0, False)}, code)
    assert err == "" and rows == [{"node": "planner", "at_s": 3.0, "crashed": True, "exit_code": code}]
    rows, err = F.crash_outcome(crashes, {"planner": (None, False)}, code)         # still running
    assert err == "" and not rows[0]["crashed"]
    rows, err = F.crash_outcome(crashes, {"planner": (0, True)}, code)             # stopped at the end
    assert err == "" and not rows[0]["crashed"]
    _, err = F.crash_outcome(crashes, {"planner": (-11, False)}, code)             # an unexpected death
    assert "planner" in err and "-11" in err
    _, err = F.crash_outcome(crashes, {"planner": (1, False)}, code)
    assert "code 1" in err
    _, err = F.crash_outcome(crashes, {"sim_planner": (0, False)}, code)          # single_process host
    assert "not a process" in err


def test_runner_lets_the_graph_outlive_only_the_crashing_node():
    from tps_bringup.graph import load_graph
    from tps_eval.runner import bridge_overrides
    from tps_eval.suite import EpisodeSpec, repo_root

    spec = EpisodeSpec(suite="faults", case_id="planner_crash-highway", scenario="highway", seed=9000,
                       configuration="planner", duration_s=12.0, density=1.0, clutter="low", faults={},
                       obstacles=[], graph=str(repo_root() / "config/graph/sim_planner.yaml"), out_dir="/tmp",
                       node_parameters={"planner": {"fault_crash_at_s": 3.0}})
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        crashes = F.injected_crashes(spec.node_parameters)
        g = load_graph(spec.graph, bridge_overrides(spec, Path(d)) + F.crash_overrides(crashes))
    by_name = {n.name: n for n in g.nodes}
    assert not by_name["planner"].required and by_name["planner"].parameters["fault_crash_at_s"] == 3.0
    assert all(n.required for n in g.nodes if n.name != "planner")


# --- the monitor's reaction --------------------------------------------------------------------
def test_detection_latency_and_fallback_latency_from_the_onset():
    states = [NOMINAL] * 30 + [NOMINAL, DEGRADED, FALLBACK] + [FALLBACK] * 87   # onset at 3.0 s
    spec = _spec(node_parameters={"perception": {"fault_blackout": True, "fault_onset_s": 3.0}})
    fm = F.fault_episode_metrics(spec, _metrics(states))
    assert fm["monitored"] and fm["detected"]
    assert fm["detection_latency_s"] == pytest.approx(0.1) and fm["detection_latency_cycles"] == pytest.approx(1.0)
    assert fm["fallback_latency_s"] == pytest.approx(0.2) and fm["fallback_latency_cycles"] == pytest.approx(2.0)
    assert fm["false_alarms_before_onset"] == 0 and fm["false_alarm_time_s"] == 0.0
    # the status stamped at the onset itself already sees the fault: latency 0, still a detection
    fm = F.fault_episode_metrics(spec, _metrics([NOMINAL] * 30 + [FALLBACK] * 90))
    assert fm["state_at_onset"] == NOMINAL and fm["detected"] and fm["detection_latency_cycles"] == 0.0


def test_undetected_fault_and_false_alarms_before_the_onset():
    # a 0.5-s false alarm at 1.0 s, back to NOMINAL, never leaves NOMINAL after the 6-s onset
    states = [NOMINAL] * 10 + [DEGRADED] * 5 + [NOMINAL] * 105
    spec = _spec(faults={"camera_freeze": {"onset_s": 6.0}})
    fm = F.fault_episode_metrics(spec, _metrics(states, collisions=[(80, True), (20, True), (90, False)]))
    assert fm["detected"] is False and fm["detection_latency_s"] is None and fm["fallback_latency_s"] is None
    assert fm["false_alarms_before_onset"] == 1 and fm["false_alarm_time_s"] == pytest.approx(0.5)
    assert fm["at_fault_collisions"] == 2 and fm["at_fault_collisions_after_onset"] == 1


def test_an_alarm_already_on_at_the_onset_is_no_detection():
    # NOMINAL from the start, a FALLBACK from 2.0 s that lasts through the 3-s onset: an alarm on
    states = [NOMINAL] * 20 + [FALLBACK] * 100
    spec = _spec(node_parameters={"perception": {"fault_blackout": True, "fault_onset_s": 3.0}})
    fm = F.fault_episode_metrics(spec, _metrics(states))
    assert fm["monitored"] and fm["state_at_onset"] == FALLBACK and fm["first_nominal_s"] == 0.0
    assert fm["not_measurable"] == "not NOMINAL at onset"
    assert fm["detected"] is None and fm["detection_latency_s"] is None and fm["fallback_latency_s"] is None
    assert fm["false_alarms_before_onset"] == 1 and fm["false_alarm_time_s"] == pytest.approx(1.0)
    # no status before the onset (the monitor not publishing yet): not measurable either
    late = _metrics([FALLBACK] * 80)
    late["monitor"]["timeline"] = [[4.0 + r[0], r[1], r[2]] for r in late["monitor"]["timeline"]]
    fm = F.fault_episode_metrics(spec, late)
    assert fm["state_at_onset"] is None and fm["detected"] is None
    assert fm["not_measurable"] == "onset before first NOMINAL"


def test_an_onset_before_the_first_nominal_is_not_measurable_and_start_up_is_no_false_alarm():
    """The monitor starts up (warm-up: FALLBACK while the planner and perception start) and first
    reaches NOMINAL at 3.5 s, after the 3-s onset: the latency is not measurable (counted apart),
    and the start-up is not a false alarm; one reaching NOMINAL at 1.5 s is measured."""
    spec = _spec(node_parameters={"perception": {"fault_blackout": True, "fault_onset_s": 3.0}})
    slow = [FALLBACK] * 35 + [NOMINAL] * 5 + [FALLBACK] * 80
    fm = F.fault_episode_metrics(spec, _metrics(slow))
    assert fm["first_nominal_s"] == pytest.approx(3.5) and fm["not_measurable"] == "onset before first NOMINAL"
    assert fm["detected"] is None and fm["detection_latency_cycles"] is None
    assert fm["false_alarms_before_onset"] == 0 and fm["false_alarm_time_s"] == 0.0
    assert fm["before_first_nominal_s"] == pytest.approx(3.0)
    quick = [FALLBACK] * 15 + [NOMINAL] * 17 + [FALLBACK] * 88      # detected 0.2 s after the onset
    fm = F.fault_episode_metrics(spec, _metrics(quick))
    assert fm["not_measurable"] is None and fm["detected"] and fm["fallback_latency_cycles"] == pytest.approx(2.0)
    assert fm["false_alarms_before_onset"] == 0 and fm["before_first_nominal_s"] == pytest.approx(1.5)
    alarm = [NOMINAL] * 20 + [FALLBACK] * 100
    agg = F.aggregate_faults([{"spec": spec, "status": "ok", "metrics": _metrics(m)} for m in (slow, quick, alarm)])
    st = agg["detector_blackout"]["stack"]
    assert (st["detected"], st["not_nominal_at_onset"], st["onset_before_first_nominal"], st["alarm_on_at_onset"]) \
        == (1, 2, 1, 1)
    assert st["detected_text"] == "1 of 1 (1 not measurable: onset before first NOMINAL; 1 not NOMINAL at onset)"
    assert st["median_fallback_latency_cycles"] == pytest.approx(2.0)


def test_states_as_numbers_and_no_monitor():
    states = [0] * 40 + [2] * 80
    spec = _spec(node_parameters={"planner": {"fault_crash_at_s": 3.0}})
    fm = F.fault_episode_metrics(spec, _metrics(states))
    assert fm["detected"] and fm["detection_latency_s"] == pytest.approx(1.0)
    assert fm["fallback_latency_cycles"] == pytest.approx(10.0)
    no_mon = F.fault_episode_metrics(_spec(cfg="planner", node_parameters={"planner": {"fault_crash_at_s": 3.0}}),
                                     {"at_fault_collisions": 1, "collision_events": [], "steps": 120,
                                      "duration_s": 12.0})
    assert not no_mon["monitored"] and no_mon["detected"] is None and no_mon["at_fault_collisions"] == 1
    assert F.fault_episode_metrics(_spec(), _metrics(states)) is None    # nominal: no fault metrics
    with pytest.raises(ValueError, match="monitor state"):
        F.fault_episode_metrics(spec, {"monitor": {"timeline": [[0.0, 7, 1.0]]}})


def test_aggregate_per_fault_type_and_configuration():
    blackout = {"perception": {"fault_blackout": True, "fault_onset_s": 3.0}}
    fast = [NOMINAL] * 31 + [FALLBACK] * 89                  # detected 0.1 s after the onset
    slow = [NOMINAL] * 33 + [FALLBACK] * 87                  # 0.3 s
    never = [NOMINAL] * 120
    eps = [
        {"spec": _spec("stack", node_parameters=blackout, case="a"), "status": "ok", "metrics": _metrics(fast)},
        {"spec": _spec("stack", node_parameters=blackout, case="b"), "status": "ok", "metrics": _metrics(slow)},
        {"spec": _spec("stack", node_parameters=blackout, case="c"), "status": "ok",
         "metrics": _metrics(never, collisions=[(60, True)])},
        {"spec": _spec("stack", node_parameters=blackout, case="d"), "status": "error", "metrics": None},
        {"spec": _spec("planner", node_parameters=blackout, case="a"), "status": "ok",
         "metrics": {"at_fault_collisions": 2, "collision_events": [{"step": 50, "at_fault": True},
                                                                    {"step": 70, "at_fault": True}],
                     "steps": 120, "duration_s": 12.0}},
        {"spec": _spec("stack", case="nominal"), "status": "ok", "metrics": _metrics(never)},
    ]
    agg = F.aggregate_faults(eps)
    assert list(agg) == ["detector_blackout", "all"] and agg["all"] == agg["detector_blackout"]
    st = agg["detector_blackout"]["stack"]
    assert st["episodes"] == 4 and st["errors"] == 1 and st["monitored"] == 3 and st["detected"] == 2
    assert st["detected_text"] == "2 of 3"
    assert st["median_detection_latency_s"] == pytest.approx(0.2)
    assert st["median_detection_latency_cycles"] == pytest.approx(2.0)
    assert st["at_fault_collisions"] == 1 and st["collision_episodes"] == 1
    pl = agg["detector_blackout"]["planner"]
    assert pl["detected_text"] == "no monitor" and pl["at_fault_collisions"] == 2
    assert pl["at_fault_collisions_after_onset"] == 2 and pl["median_detection_latency_s"] is None
    md = F.faults_markdown(agg)
    assert "| detector_blackout | stack | 4 | 2 of 3 | 2 |" in md and "| detector_blackout | planner |" in md


# --- the suite -----------------------------------------------------------------------------------
def test_faults_suite_is_a_latin_square_of_ten_faults_with_onsets_inside_the_episodes():
    suite = load_suite("faults")
    assert set(suite.configurations) == {"stack", "planner", "fallback", "expert"}
    specs = [s.to_dict() for s in plan_episodes(suite, "/tmp/faults-plan")]
    assert len(specs) == len(suite.cases) * len(suite.seeds) * 4 == 120
    stack = [s for s in specs if s["configuration"] == "stack"]
    types = {}
    for s in stack:
        onset = F.fault_onset_s(s)
        assert onset is not None and 0 < onset < s["duration_s"], s["case_id"]
        types.setdefault(F.fault_type(s), set()).add((s["scenario"], s["clutter"]))
    assert set(types) == {"detector_blackout", "missed_agents", "phantom_agents", "pose_noise", "point_dropout",
                          "nan_points", "camera_freeze", "camera_black", "sensor_delay", "planner_crash"}
    for t, cells in types.items():   # every fault at every clutter level, in three scenario families
        assert {c for _, c in cells} == {"low", "medium", "high"}, t
        assert len({sc for sc, _ in cells}) == 3, t
    # the fallback's graph has no detector and no planner: those cases are nominal for it
    fb = {s["case_id"]: F.fault_type(s) for s in specs if s["configuration"] == "fallback"}
    assert fb["detector_blackout-cut_in"] == "none" and fb["planner_crash-highway"] == "none"
    assert fb["point_dropout-highway"] == "point_dropout"
    text = F.episode_list_text(plan_episodes(suite, "/tmp/faults-plan"))
    assert text.strip().splitlines()[-1].startswith("120 episodes, 1440 simulated s")
    assert not math.isnan(sum(F.fault_onset_s(s) for s in stack))
