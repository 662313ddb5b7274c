"""Labelling of the monitor's shadow-mode cycles for conformal calibration (tps_eval.monitor_calib)."""

from __future__ import annotations

import json

import pytest
from tps_eval import monitor_calib as MC


def _records(times, certainty=0.9, critical=()):
    return [{"stamp_s": t, "certainty": certainty, "critical": list(critical), "state": 0,
             "signals": {"plan_sigma_m": 0.1}} for t in times]


def test_cycles_before_an_incident_within_the_horizon_are_labelled_and_later_ones_dropped():
    times = [round(0.1 * k, 1) for k in range(100)]           # 0.0 .. 9.9 s
    rows = MC.label_episode(_records(times), [(6.0, "collision"), (8.0, "off_road")], 3.0, "ep")
    assert max(r["t_s"] for r in rows) < 6.0                   # nothing at or after the first incident
    labelled = [r["t_s"] for r in rows if r["incident"]]
    assert min(labelled) == pytest.approx(3.0) and max(labelled) == pytest.approx(5.9)
    assert not any(r["incident"] for r in rows if r["t_s"] < 3.0 - 1e-9)
    # no incident: every cycle kept, none labelled
    rows = MC.label_episode(_records(times), [], 3.0, "ep")
    assert len(rows) == 100 and not any(r["incident"] for r in rows)


def test_fit_refuses_test_seeds_and_names_them():
    MC.check_no_test_seeds([{"seed": 1000}, {"seed": 5}])
    with pytest.raises(ValueError, match="9003"):
        MC.check_no_test_seeds([{"seed": 1000}, {"seed": 9003}])


def test_event_detection_counts_an_incident_flagged_in_time_and_one_missed():
    eps = [{"episode": "a", "incidents": [(5.0, "collision")]},
           {"episode": "b", "incidents": [(5.0, "off_road")]},
           {"episode": "c", "incidents": []}]
    recs = (MC.label_episode(_records([3.0, 4.0], certainty=0.2), eps[0]["incidents"], 3.0, "a")
            + MC.label_episode(_records([3.0, 4.0], certainty=0.9), eps[1]["incidents"], 3.0, "b"))
    out = MC.event_detection(recs, eps, {"thresholds": {"tau_fallback": 0.5}}, 3.0)
    assert out == {"incident_episodes": 2, "detected": 1, "median_lead_s": pytest.approx(2.0)}


def test_unparsable_record_lines_are_skipped_and_counted(tmp_path):
    p = tmp_path / "monitor.jsonl"
    p.write_text(json.dumps({"stamp_s": 1.0, "certainty": 0.5}) + "\n{not json\n"
                 + json.dumps({"stamp_s": "x", "certainty": 1}) + "\n")
    rows = MC.read_records(p)
    assert len(rows) == 1 and rows[0]["_skipped"] == 2


def test_no_records_is_a_named_error(tmp_path):
    (tmp_path / "episodes" / "x").mkdir(parents=True)
    with pytest.raises(MC.CalibrationDataError, match="monitor.jsonl"):
        MC.collect([tmp_path])


def _node_rows(times, warm_from, certainty=0.9):
    """Records as the node wrote them before it recorded ``warming_up``: before ``warm_from`` no
    candidate yet and the planner silent / perception dead."""
    out = []
    for t in times:
        cold = t < warm_from - 1e-9
        out.append({"stamp_s": t, "certainty": 0.0 if cold else certainty, "critical": cold, "state": 2 if cold else 0,
                    "signals": {}, "candidate": not cold,
                    "critical_signals": ["planner_silent", "perception_dead"] if cold else [], "reasons": []})
    return out


def test_warm_up_cycles_are_derived_for_old_records_and_are_neither_alarms_nor_detections():
    times = [round(0.1 * k, 1) for k in range(80)]
    rows = MC.label_episode(_node_rows(times, warm_from=2.0), [(4.0, "off_road")], 3.0, "a")
    assert [r["warming_up"] for r in rows] == [t < 2.0 - 1e-9 for t in times if t < 4.0]
    eps = [{"episode": "a", "incidents": [(4.0, "off_road")], "faults": False}]
    # the only flagged cycles before the incident are the start-up ones: no detection
    assert MC.event_detection(rows, eps, {"thresholds": {"tau_fallback": 0.5}}, 3.0)["detected"] == 0
    assert MC.event_scores(rows, eps, 3.0) == [pytest.approx(0.9)]
    nominal = MC.label_episode(_node_rows(times, warm_from=2.0), [], 3.0, "b")
    rates = MC.cycle_rates(nominal, [{"episode": "b", "incidents": [], "faults": False}], 0.5)
    assert rates["nominal_flagged"] == 0 and rates["nominal_non_incident_cycles"] == 60
    assert rates["warmup_cycles"] == 20 and rates["nominal_warmup_cycles"] == 20
    # a record that says it (a node from now on) is taken as written; a planner that never starts
    # ends the derived warm-up after the core's timeout
    said = [dict(r, warming_up=False) for r in _node_rows(times, warm_from=2.0)]
    assert not any(MC.warmup_flags(said))
    never = MC.warmup_flags(_node_rows([0.1 * k for k in range(150)], warm_from=99.0))
    assert sum(never) == 100


def test_detector_and_crash_faults_make_an_episode_faulty_not_only_sensor_faults():
    assert not MC.episode_is_faulty({"faults": {}, "node_parameters": {}}, {"faults": ""})
    assert MC.episode_is_faulty({}, {"faults": "/x/faults.json"})
    assert MC.episode_is_faulty({"node_parameters": {"planner": {"fault_crash_at_s": 3.0}}}, {})
    assert MC.episode_is_faulty({"node_parameters": {"perception": {"fault_blackout": True, "fault_onset_s": 3}}}, {})


def test_emulated_fix_drops_unexplained_occupancy_beyond_the_detector_range_only():
    def row(dist):
        return {"critical": True, "critical_signals": ["unexplained_occupancy"],
                "signals": {"unexplained_points": 7.0, "unexplained_distance": dist}}
    far = row(52.2)
    why = [f"CRITICAL unexplained_occupancy: unexplained occupancy: 7 points in corridor, nearest cluster of 5 at "
           f"{52.2} m (stopping distance 68.2 m)"]
    assert MC.emulate_fixes(far, why) == ["unexplained_occupancy beyond the detector range"]
    assert far["critical"] is False and far["critical_signals"] == []
    assert far["signals"]["unexplained_points"] == 2.0 and far["signals"]["unexplained_distance"] == "inf"
    near = row(30.0)
    assert MC.emulate_fixes(near, [why[0].replace("52.2", "30.0")]) == [] and near["critical"] is True
    assert MC.emulate_fixes(row(52.2), why, detector_range_m=0.0) == []


def _synthetic(n_eps=8, seed=0):
    """Episodes where a plan jump of 4 m precedes every incident by 2 s (and happens rarely
    otherwise); half the episodes end in an off-road incident at 8 s."""
    import numpy as np
    from tps_planner.monitor import SIGNAL_NAMES

    rng = np.random.default_rng(seed)
    recs, eps = [], []
    for e in range(n_eps):
        name = f"case{e}-s{1000 + e % 2}-shadow"
        inc = [(8.0, "off_road")] if e % 2 == 0 else []
        rows = []
        for k in range(100):
            t = round(0.1 * k, 1)
            sig = dict.fromkeys(SIGNAL_NAMES, 0.0)
            sig["planner_sigma_mean"] = float(rng.uniform(0, 1))
            sig["plan_jump"] = 4.0 if (inc and 6.0 <= t < 8.0) or rng.random() < 0.02 else 0.5
            rows.append({"stamp_s": t, "certainty": 1.0, "critical": False, "signals": sig, "candidate": True,
                         "critical_signals": [], "reasons": []})
        recs += MC.label_episode(rows, inc, 3.0, name)
        eps.append({"episode": name, "case": f"case{e}", "seed": 1000 + e % 2, "incidents": inc, "faults": False})
    return recs, eps


def test_crossval_compares_the_product_and_the_logistic_combiner_on_held_out_cases():
    recs, eps = _synthetic()
    prod = MC.crossval(recs, eps, 0.3, 3.0, "product", groups="case")
    logi = MC.crossval(recs, eps, 0.3, 3.0, "logistic", groups="case")
    assert prod["folds"] == logi["folds"] == 8 and prod["events"] == logi["events"] == 4
    # the plan jump is the only signal that predicts; the logistic model ranks by it
    assert logi["auroc"] > 0.6
    calib = MC.fit_calibration([dict(r) for r in recs], eps, 0.3, 3.0, "logistic")
    w = calib["combiner"]["weights"]
    assert w["plan_jump"] > 0 and all(v >= 0 for v in w.values())
    assert max(w, key=w.get) == "plan_jump"
    MC.rescore(recs, calib)        # the rescoring uses the combiner
    jump = [r["certainty"] for r in recs if r["signals"]["plan_jump"] == 4.0]
    calm = [r["certainty"] for r in recs if r["signals"]["plan_jump"] == 0.5]
    assert max(jump) < min(calm)


def test_blind_detector_evidence_is_recomputed_from_old_records():
    """Old records: the track-loss evidence of perception_blind is recomputed (track_loss >= 1 with
    no near agent, held 1 s, until an agent is near again), and the emulated critical flags."""
    rows = []
    for k in range(40):
        t = round(0.1 * k, 1)
        qe = 2.0 if t < 1.0 or t >= 3.0 else 0.0            # agents near until 1.0 s, again from 3.0 s
        tl = 2.0 if t == 1.0 else 0.0
        rows.append({"stamp_s": t, "certainty": 0.9, "critical": False, "state": 0, "candidate": True,
                     "critical_signals": [], "reasons": [], "signals": {"track_loss": tl, "quantisation_error": qe}})
    flags = MC.blind_flags(rows)
    on = [r["stamp_s"] for r, f in zip(rows, flags, strict=True) if f]
    assert on[0] == pytest.approx(2.0) and on[-1] == pytest.approx(2.9) and len(on) == 10
    out = MC.label_episode(rows, [], 3.0, "ep", emulate=True)
    assert [r["t_s"] for r in out if r["critical"]] == on
    assert all("perception_blind" in r["critical_signals"] for r in out if r["critical"])
    assert not any(r["critical"] for r in MC.label_episode(rows, [], 3.0, "ep", emulate=False))
