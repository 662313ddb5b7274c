"""Unit tests of the monitor's split-conformal calibration (no ROS)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from tps_planner.monitor import ConfidenceMonitor, MonitorParams
from tps_planner.monitor_calibration import (
    auroc,
    conformal_quantile,
    evaluate,
    fit,
    label_incidents,
    load_calibration,
    save_calibration,
)


def _synthetic(n_inc: int, n_ok: int, seed: int = 0) -> list[dict]:
    """Incidents have low certainty (Beta(2, 5)), nominal cycles high (Beta(8, 2))."""
    rng = np.random.default_rng(seed)
    recs = []
    for i, c in enumerate(rng.beta(2, 5, n_inc)):
        recs.append({"certainty": float(c), "critical": False, "incident": True, "episode": f"i{i // 10}",
                     "t_s": float(i % 10) * 0.1, "signals": {"quantisation_error": float(rng.uniform(0, 3))}})
    for i, c in enumerate(rng.beta(8, 2, n_ok)):
        recs.append({"certainty": float(c), "critical": False, "incident": False, "episode": f"n{i // 50}",
                     "t_s": float(i % 50) * 0.1, "signals": {"quantisation_error": float(rng.uniform(0, 1))}})
    return recs


def test_threshold_meets_the_target_miss_rate_on_calibration_and_fresh_data():
    cal = fit(_synthetic(400, 2000, seed=1), target_miss_rate=0.1)
    assert cal["fitted"] is True and cal["n_incident"] == 400 and cal["n_total"] == 2400
    tau = cal["thresholds"]["tau_fallback"]
    assert cal["calibration_set"]["miss_rate"] <= 0.1
    # The Beta(2, 5) 90 % quantile is ~0.51: the threshold sits there, not at an extreme.
    assert 0.42 < tau < 0.6
    assert cal["thresholds"]["tau_degraded"] >= tau
    json.dumps(cal)                    # JSON-able
    # Fresh data from the same distribution: miss rate near (at most about) the target.
    ev = evaluate(_synthetic(4000, 4000, seed=2), cal)
    assert ev["miss_rate"] <= 0.12
    assert ev["false_alarm_rate"] < 0.05
    assert ev["auroc"] > 0.95
    assert ev["miss_rate_target"] == 0.1
    # Nominal quantile of the quantisation error from the non-incident cycles (U(0, 1): 0.95).
    assert cal["nominal_quantiles"]["quantisation_error"] == pytest.approx(0.95, abs=0.03)


def test_conformal_finite_sample_correction_with_small_n():
    scores = np.arange(1, 20) / 20.0          # n = 19
    q, k = conformal_quantile(scores, 0.1)    # k = ceil(20 * 0.9) = 18, not 0.9 * 19 -> 17.1
    assert k == 18 and q == pytest.approx(0.9)
    q, k = conformal_quantile(scores[:5], 0.1)   # k = ceil(6 * 0.9) = 6 > 5: no guarantee possible
    assert math.isinf(q) and k == 6
    recs = [{"certainty": float(c), "critical": False, "incident": True} for c in scores[:5]]
    recs += [{"certainty": 0.95, "critical": False, "incident": False}] * 10
    cal = fit(recs, target_miss_rate=0.1)
    assert cal["fitted"] is False
    assert any("too few" in n for n in cal["notes"])
    assert cal["thresholds"]["tau_fallback"] == MonitorParams().tau_fallback
    # n = 9 incidents at alpha = 0.1: k = 9 = n -> the largest score; every calibration incident caught.
    recs9 = [{"certainty": float(c), "critical": False, "incident": True} for c in np.linspace(0.1, 0.5, 9)]
    cal9 = fit(recs9, target_miss_rate=0.1)
    assert cal9["fitted"] and cal9["conformal"]["k_fallback"] == 9
    assert cal9["thresholds"]["tau_fallback"] > 0.5 and cal9["calibration_set"]["miss_rate"] == 0.0


def test_no_incidents_keeps_defaults_and_says_so():
    recs = [{"certainty": 0.9, "critical": False, "incident": False, "signals": {"plan_jump": 0.5}}] * 20
    cal = fit(recs, target_miss_rate=0.05)
    assert cal["fitted"] is False and cal["n_incident"] == 0
    assert "no incident" in cal["notes"][0]
    assert cal["thresholds"]["tau_fallback"] == MonitorParams().tau_fallback
    assert cal["calibration_set"]["miss_rate"] is None
    mon = ConfidenceMonitor(calibration=cal)
    assert mon.params.tau_fallback == MonitorParams().tau_fallback


def test_critical_incident_cycles_count_as_caught():
    recs = [{"certainty": 0.99, "critical": True, "incident": True}] * 30
    recs += [{"certainty": 0.3, "critical": False, "incident": True}] * 2
    cal = fit(recs, target_miss_rate=0.1)
    # 30 of 32 scores are -inf; k = ceil(33 * 0.9) = 30: q = -inf, tau 0 (the critical flags suffice).
    assert cal["thresholds"]["tau_fallback"] == 0.0
    assert cal["calibration_set"]["miss_rate"] == pytest.approx(2 / 32)


def test_evaluate_event_detection_and_lead_time():
    recs = []
    for k in range(30):   # one episode, 0.1 s cycles; incident at t = 2.5 s, horizon 1 s
        t = 0.1 * k
        recs.append({"certainty": 0.2 if 1.8 <= t < 2.6 else 0.9, "critical": False, "episode": "e1", "t_s": t})
    recs += [{"certainty": 0.9, "critical": False, "episode": "e2", "t_s": 0.1 * k} for k in range(30)]
    lab = label_incidents(recs, {"e1": [2.5], "e2": [1.0]}, horizon_s=1.0)
    assert sum(r["incident"] for r in lab) == 22            # 1.5..2.5 in e1 and 0.0..1.0 in e2, inclusive
    ev = evaluate(lab, {"thresholds": {"tau_fallback": 0.5}, "target_miss_rate": 0.1})
    assert ev["n_events"] == 2 and ev["events_detected"] == 1
    (e1,) = [e for e in ev["events"] if e["episode"] == "e1"]
    assert e1["detected"] and e1["lead_time_s"] == pytest.approx(0.7)
    (e2,) = [e for e in ev["events"] if e["episode"] == "e2"]
    assert not e2["detected"] and e2["lead_time_s"] is None
    assert ev["miss_rate"] == pytest.approx((3 + 11) / 22)


def test_auroc():
    assert auroc(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1], bool)) == 1.0
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1], bool)) == 0.5
    assert auroc(np.array([0.1, 0.2]), np.array([1, 1], bool)) is None


def test_fit_rejects_bad_records_and_targets():
    with pytest.raises(ValueError, match="record 1: missing key 'incident'"):
        fit([{"certainty": 0.5, "critical": False, "incident": True}, {"certainty": 0.5, "critical": False}])
    with pytest.raises(ValueError, match="target_miss_rate"):
        fit([], target_miss_rate=0.0)


def test_load_calibration_roundtrip_and_corrupt_files(tmp_path):
    cal = fit(_synthetic(200, 200), target_miss_rate=0.1)
    p = tmp_path / "cal.json"
    save_calibration(p, cal)
    loaded = load_calibration(p)
    assert loaded["thresholds"] == cal["thresholds"]
    assert ConfidenceMonitor(calibration=loaded).params.tau_fallback == cal["thresholds"]["tau_fallback"]
    bad = tmp_path / "corrupt.json"
    bad.write_text('{"thresholds": {"tau_fallback": 0.3,')
    with pytest.raises(ValueError, match="corrupt.json"):
        load_calibration(bad)
    bad.write_text('{"thresholds": {"tau_fallback": 7}}')
    with pytest.raises(ValueError, match=r"corrupt.json.*thresholds.tau_fallback"):
        load_calibration(bad)
    bad.write_text('[1, 2]')
    with pytest.raises(ValueError, match="corrupt.json"):
        load_calibration(bad)
    with pytest.raises(ValueError, match="missing.json"):
        load_calibration(tmp_path / "missing.json")


def test_fitted_ramps_follow_nominal_scale_never_stricter_and_apply():
    """fit_ramps moves a ramp's ok end to the nominal quantile where the default would flag nominal
    driving (a planner whose sigma is metres), never makes it stricter, and the monitor uses it."""

    from tps_planner.monitor import ConfidenceMonitor, MonitorParams
    from tps_planner.monitor_calibration import fit_ramps

    rng = np.random.default_rng(0)
    recs = [{"signals": {"planner_sigma_mean": float(s), "clearance_detection": float(c),
                         "plan_jump": 0.1}}
            for s, c in zip(rng.uniform(1.0, 4.0, 200), rng.uniform(2.0, 10.0, 200), strict=True)]
    ramps = fit_ramps(recs)
    d = MonitorParams().ramps
    ok, bad = ramps["planner_sigma_mean"]
    assert ok == pytest.approx(np.quantile([r["signals"]["planner_sigma_mean"] for r in recs], 0.95))
    assert bad - ok == pytest.approx(d["planner_sigma_mean"][1] - d["planner_sigma_mean"][0])
    assert ramps["clearance_detection"] == list(d["clearance_detection"])   # nominal clearances are wide
    assert ramps["plan_jump"] == list(d["plan_jump"])                       # nominal jumps are small
    mon = ConfidenceMonitor(calibration={"thresholds": {}, "ramps": ramps})
    assert mon.params.ramps["planner_sigma_mean"] == (ok, bad)
    assert mon.risks({**dict.fromkeys(mon.params.ramps, 0.0), "planner_sigma_mean": 3.0})["planner_sigma_mean"] < 0.1


def test_bad_ramps_in_a_calibration_file_name_the_file(tmp_path):
    import json

    from tps_planner.monitor_calibration import load_calibration

    p = tmp_path / "calibration.json"
    p.write_text(json.dumps({"thresholds": {"tau_fallback": 0.3}, "ramps": {"planner_sigma_mean": [1.0, 1.0]}}))
    with pytest.raises(ValueError, match=str(p)):
        load_calibration(p)


# ------------------------------------------------------------------ learned combiner

def test_fit_logistic_recovers_the_predictive_feature_and_keeps_weights_non_negative():
    from tps_planner.monitor_calibration import fit_logistic

    rng = np.random.default_rng(1)
    x = rng.uniform(0, 1, size=(3000, 3))
    # feature 0 raises the incident odds, feature 1 lowers them (a risk that "protects" would make
    # the certainty non-monotone: constrained to 0), feature 2 is noise
    z = -3.0 + 4.0 * x[:, 0] - 2.0 * x[:, 1]
    y = (rng.uniform(size=3000) < 1 / (1 + np.exp(-z))).astype(float)
    b, w = fit_logistic(x, y, l2=1.0)
    assert w[0] > 2.5 and w[1] == 0.0 and 0.0 <= w[2] < 0.5
    b_free, w_free = fit_logistic(x, y, l2=1.0, nonneg=False)
    assert w_free[1] < -1.0 and abs(w_free[0] - 4.0) < 1.0
    with pytest.raises(ValueError, match="finite"):
        fit_logistic(np.array([[np.nan]]), np.array([1.0]))


def test_a_calibration_combiner_replaces_the_product_and_a_bad_one_is_named(tmp_path):
    from tps_planner.monitor import SIGNAL_NAMES

    comb = {"kind": "logistic", "intercept": -2.0, "weights": {"plan_jump": 3.0, "offroad": 1.0}}
    mon = ConfidenceMonitor(calibration={"thresholds": {}, "combiner": comb})
    risks = dict.fromkeys(SIGNAL_NAMES, 0.0)
    assert mon.certainty(risks) == pytest.approx(1 - 1 / (1 + math.exp(2.0)))
    risks["plan_jump"] = 0.5
    assert mon.certainty(risks) == pytest.approx(1 - 1 / (1 + math.exp(0.5)))
    risks["sensor_health"] = 1.0          # weight 0 in this combiner: no effect
    assert mon.certainty(risks) == pytest.approx(1 - 1 / (1 + math.exp(0.5)))
    # without a combiner the product rule (the core's default) holds
    plain = ConfidenceMonitor()
    assert plain.certainty(risks) == pytest.approx((1 - 0.4 * 0.5) * (1 - 0.6))
    p = tmp_path / "cal.json"
    p.write_text(json.dumps({"thresholds": {}, "combiner": {**comb, "weights": {"plan_jump": -1.0}}}))
    with pytest.raises(ValueError, match=r"cal.json.*combiner.weights\['plan_jump'\]"):
        load_calibration(p)
    p.write_text(json.dumps({"thresholds": {}, "combiner": {**comb, "kind": "mlp"}}))
    with pytest.raises(ValueError, match=r"cal.json.*combiner.kind"):
        load_calibration(p)
    p.write_text(json.dumps({"thresholds": {}, "combiner": {**comb, "weights": {"nope": 1.0}}}))
    with pytest.raises(ValueError, match="unknown signal 'nope'"):
        load_calibration(p)


def test_the_shipped_calibration_is_found_from_any_directory(tmp_path, monkeypatch):
    """tps-eval run outside the repository: the default relative path still names the shipped file
    (a TEST fault run from another directory had written miss_rate_target null)."""
    from tps_eval.monitor_calib import DEFAULT_CALIBRATION, calibration_file
    from tps_planner import monitor_calibration as MC

    monkeypatch.chdir(tmp_path)
    path = calibration_file(DEFAULT_CALIBRATION)
    assert path.is_file(), path
    assert MC.load_calibration(path)["target_miss_rate"] > 0.0
    mine = tmp_path / "mine.json"
    assert calibration_file(mine) == mine and calibration_file("mine.json").name == "mine.json"
