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
