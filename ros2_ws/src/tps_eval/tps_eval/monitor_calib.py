"""Conformal calibration of the confidence monitor from closed-loop runs (issue 15).

The data: ``tps-eval closedloop`` runs of the ``shadow`` configuration (config/graph/
sim_monitor_shadow.yaml): the VLM planner drives unmonitored while monitor_node judges every frame
and records each cycle (stamp, certainty, critical signals, signal values) to the episode's
``monitor.jsonl``. The labels come from what then happened in the world, read from the bridge's
episode log with the metrics' own definitions (:mod:`tps_eval.metrics`):

- an **incident** is an at-fault collision (its first contact step), a drivable-area departure (the
  first step with an ego corner off the drivable area after being on it) or a red-light violation
  (the step the front bumper crosses a red stop line);
- a cycle at stamp ``t`` is labelled ``incident`` when an incident happens in ``(t, t + horizon_s]``
  -- the monitor should have flagged it by then;
- cycles at or after an episode's first incident are dropped: what follows a crash is not the
  planner's nominal operation;
- **warm-up** cycles (``warming_up``: the planner, perception or the lidar had not started yet;
  derived for records written before the node recorded it, see :func:`warmup_flags`) are kept but
  never count as a flag: during them the fallback drives by design, so they are neither a false
  alarm nor a detection (:func:`cycle_rates` counts them apart);
- an episode is **nominal** when it injects no fault of any kind: sensor faults, detector faults
  and node crashes (:func:`tps_eval.faults.episode_faults`), not only the bridge's sensor faults.

A learned combiner (``--combiner logistic``, :func:`tps_planner.monitor_calibration.fit_combiner`)
replaces the product of the ramps by an L2-regularised logistic model of "incident within the
horizon" on the per-signal risks; :func:`crossval` compares both, cross-validated on VAL
(leave-one-case-out: both seeds of a case held out together).

``fit`` (``tps-eval calibrate-monitor --fit``) refuses TEST seeds (the thresholds are chosen on VAL,
never on the seeds they are judged on) and writes the calibration JSON the monitor node loads;
``evaluate`` reports the achieved miss rate and false-alarm rate on any run (TEST runs for the
acceptance figure). The conformal rule itself lives in :mod:`tps_planner.monitor_calibration`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

RECORD_NAME = "monitor.jsonl"
LOG_NAME = "episode_log.npz"
DEFAULT_HORIZON_S = 3.0
DEGRADED_MARGIN = 0.15


class CalibrationDataError(ValueError):
    """A run directory holds no usable monitor records; the message names the path."""


def episode_incidents(log: dict, scenario: str) -> list[tuple[float, str]]:
    """``[(stamp_s, kind), ...]`` of the incidents of one episode log, in time order: ``collision``
    (at fault), ``off_road`` (departure onset), ``red_light``."""
    from tps_eval import metrics as M
    from tps_eval.road import road_for_scenario
    from tps_eval.trace import trace_from_log

    trace = trace_from_log(log, road_for_scenario(scenario))
    stamps = np.asarray(log["stamp_s"], np.float64)
    out: list[tuple[float, str]] = []
    for e in M.collision_events(trace):
        if e.at_fault:
            out.append((float(stamps[e.step]), "collision"))
    if trace.drivable is not None and trace.n_steps:
        on = np.all(np.asarray(trace.drivable, bool), axis=1)
        for k in np.nonzero(~on[1:] & on[:-1])[0] + 1:
            out.append((float(stamps[k]), "off_road"))
    for c in M.stop_line_crossings(trace):
        if c.violation:
            out.append((float(stamps[c.step]), "red_light"))
    out.sort()
    return out


def read_records(path: Path) -> list[dict]:
    """The monitor's per-cycle records (one JSON object per line); a line that does not parse is
    skipped and counted in the first record's ``_skipped`` (never fatal)."""
    rows, skipped = [], 0
    for line in Path(path).read_text().splitlines():
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            float(row["stamp_s"]), float(row["certainty"])
        except (ValueError, KeyError, TypeError):
            skipped += 1
            continue
        rows.append(row)
    if rows and skipped:
        rows[0]["_skipped"] = skipped
    return rows


# Critical conditions that an input which has not started yet shows (warm-up), and the warm-up
# timeout of the core (tps_planner.monitor.MonitorParams.warmup_timeout_s).
_NOT_STARTED = ("planner_silent", "perception_dead", "candidate")
WARMUP_TIMEOUT_S = 10.0


def warmup_flags(records: Sequence[dict], timeout_s: float = WARMUP_TIMEOUT_S) -> list[bool]:
    """Per record (time order): was the monitor warming up. Records of a node that recorded it
    carry ``warming_up``; for older ones it is derived as the core decides it: every cycle before
    the first one with a candidate and none of the not-started criticals (planner silent,
    perception dead, candidate unusable), at most ``timeout_s`` after the first cycle."""
    if records and all("warming_up" in r for r in records):
        return [bool(r["warming_up"]) for r in records]
    out, warm = [], False
    t0 = float(records[0]["stamp_s"]) if records else 0.0
    for r in records:
        if not warm:
            crit = set(r.get("critical_signals") or [])
            # (a record without the node's "candidate" key cannot tell: taken as started)
            if (r.get("candidate", True) and not crit & set(_NOT_STARTED)) or float(r["stamp_s"]) - t0 >= timeout_s - 1e-9:
                warm = True
        out.append(not warm)
    return out


_CLUSTER = re.compile(r"nearest cluster of (\d+) at ([\d.]+) m")


def emulate_fixes(row: dict, reasons: Sequence[str], detector_range_m: float = 50.0,
                  ego_half_len_m: float = 2.3) -> list[str]:
    """Apply to a record written before them the signal fixes that can be recomputed from what
    it holds (the cloud and the candidate are not recorded); returns what it changed.

    (The blind-detector critical's track-loss evidence is temporal: :func:`blind_flags`, applied
    by :func:`label_episode`.)

    - unexplained occupancy beyond the detector's field (``detector_range_m``): a critical whose
      nearest unexplained cluster lies farther than the range (along-path distance from the
      ego's front + its half length: exact on a straight path, an approximation on a curved one)
      is dropped, and that cluster's points leave ``unexplained_points``."""
    changed = []
    crit = list(row.get("critical_signals") or [])
    if detector_range_m > 0 and "unexplained_occupancy" in crit:
        text = next((x for x in reasons if x.startswith("CRITICAL unexplained_occupancy")), "")
        m = _CLUSTER.search(text)
        if m and float(m.group(2)) + ego_half_len_m > detector_range_m:
            crit.remove("unexplained_occupancy")
            sig = row["signals"]
            try:
                sig["unexplained_points"] = max(float(sig.get("unexplained_points", 0.0)) - int(m.group(1)), 0.0)
            except (TypeError, ValueError):
                pass
            sig["unexplained_distance"] = "inf"
            changed.append("unexplained_occupancy beyond the detector range")
    if changed:
        row["critical_signals"] = crit
        row["critical"] = bool(crit)
    return changed


def blind_flags(records: Sequence[dict], persist_s: float = 1.0) -> list[bool]:
    """Per record (time order): the core's track-loss evidence of a blind detector
    (:meth:`tps_planner.monitor.ConfidenceMonitor._blind_detector`), recomputed from what a record
    holds: tracks near the ego lost (``track_loss`` >= 1) with perception reporting no agent
    within its near radius (``quantisation_error`` exactly 0: the signal is the largest error of
    the near agents, 0 with none), held ``persist_s`` until an agent is near again. (The core's
    other evidence, objects on the road in the raw cloud, needs the cloud: not recorded.)"""
    out, since = [], None
    for r in records:
        sig = r.get("signals") or {}
        try:
            tl, qe = float(sig.get("track_loss", 0.0)), float(sig.get("quantisation_error", math.nan))
        except (TypeError, ValueError):
            tl, qe = 0.0, math.nan
        t = float(r["stamp_s"])
        if qe != 0.0:
            since = None
        elif tl >= 1.0 and since is None:
            since = t
        out.append(since is not None and t - since >= persist_s - 1e-9)
    return out


def label_episode(records: Sequence[dict], incidents: Sequence[tuple[float, str]], horizon_s: float,
                  episode: str, emulate: bool = False) -> list[dict]:
    """Calibration records of one episode (see the module docstring for the labelling rule).
    ``emulate``: records without ``warming_up`` (written before the signal fixes) get
    :func:`emulate_fixes`."""
    first = incidents[0][0] if incidents else math.inf
    times = np.array([t for t, _ in incidents], np.float64)
    records = sorted(records, key=lambda r: float(r["stamp_s"]))
    warm = warmup_flags(records)
    blind = blind_flags(records)
    out = []
    for r, wu, bl in zip(records, warm, blind, strict=True):
        t = float(r["stamp_s"])
        if t >= first - 1e-9:
            continue
        ahead = times[(times > t + 1e-9) & (times <= t + horizon_s + 1e-9)]
        crit_sig = r.get("critical_signals")
        row = {"certainty": float(r["certainty"]), "critical": bool(r.get("critical")),
               "incident": bool(len(ahead)), "signals": dict(r.get("signals") or {}),
               "candidate_collision": r.get("_candidate_collision"),
               "episode": episode, "t_s": t, "state": r.get("state"), "warming_up": bool(wu),
               "critical_signals": list(crit_sig) if isinstance(crit_sig, list) else []}
        if emulate and "warming_up" not in r:
            row["emulated"] = emulate_fixes(row, r.get("reasons") or [])
            if bl and not wu and "perception_blind" not in row["critical_signals"]:
                row["critical_signals"].append("perception_blind")
                row["critical"] = True
                row["emulated"].append("perception_blind (track loss)")
        out.append(row)
    return out


def flagged(r: dict, tau: float | None) -> bool:
    """A cycle the monitor hands to the fallback for: critical or certainty below ``tau`` --
    never a warm-up cycle (the fallback drives then by design; no alarm, no detection)."""
    return not r.get("warming_up") and (bool(r["critical"]) or (tau is not None and r["certainty"] < tau))


def episode_is_faulty(spec: dict, meta: dict) -> bool:
    """Does the episode inject any fault: the bridge's sensor faults (its log's ``faults``) or any
    of the case's (:func:`tps_eval.faults.episode_faults`: sensor, detector ``fault_*``
    parameters, node crashes). Only the first were seen before, so the detector-fault and
    planner-crash episodes counted as nominal (their silent planner as nominal false alarms)."""
    from tps_eval.faults import episode_faults

    return bool((meta or {}).get("faults")) or bool(episode_faults(spec or {}))


def collect(run_dirs: Iterable[str | Path], horizon_s: float = DEFAULT_HORIZON_S,
            configurations: Sequence[str] = ("shadow",), emulate: bool = True,
            candidate_labels: bool = False) -> tuple[list[dict], list[dict]]:
    """Labelled records and one summary row per episode from the ``episodes/*`` of runs
    (``emulate``: see :func:`label_episode`). ``candidate_labels``: each record also gets
    ``candidate_collision`` (:mod:`tps_eval.candidate_collision`: would the recorded candidate
    collide within ``horizon_s``; None for a cycle recorded without one)."""
    from tps_sim.episode_log import load_episode_log

    from tps_eval.faults import episode_faults

    records: list[dict] = []
    episodes: list[dict] = []
    for run in run_dirs:
        run = Path(run)
        summary = run / "summary.json"
        specs = {}
        if summary.exists():
            for ep in json.loads(summary.read_text()).get("episodes", []):
                specs[Path(ep.get("episode_dir", "")).name] = ep.get("spec", {})
        for edir in sorted((run / "episodes").glob("*")):
            spec = specs.get(edir.name) or {}
            if not spec and (edir / "metrics.json").exists():
                try:
                    spec = json.loads((edir / "metrics.json").read_text()).get("spec") or {}
                except (OSError, ValueError):
                    spec = {}
            # before summary.json exists (the run's own summary), the directory name says it:
            # <case>-s<seed>-<configuration>
            configuration = spec.get("configuration") or edir.name.rsplit("-", 1)[-1]
            if configuration not in configurations:
                continue
            rec_path, log_path = edir / RECORD_NAME, edir / LOG_NAME
            if not rec_path.exists() or not log_path.exists():
                continue
            log = load_episode_log(log_path)
            scenario = spec.get("scenario") or log["meta"].get("scenario")
            seed = int(spec.get("seed", log["meta"].get("seed", -1)))
            incidents = episode_incidents(log, scenario)
            raw = read_records(rec_path)
            if candidate_labels:
                from tps_eval.candidate_collision import label_records
                from tps_eval.road import road_for_scenario

                for r, lab in zip(raw, label_records(raw, log, road_for_scenario(scenario), horizon_s), strict=True):
                    r["_candidate_collision"] = lab
            rows = label_episode(raw, incidents, horizon_s, edir.name, emulate=emulate)
            records.extend(rows)
            faults = episode_faults(spec) if spec else []
            episodes.append({"episode": edir.name, "scenario": scenario, "seed": seed,
                             "case": spec.get("case_id") or edir.name.rsplit("-s", 1)[0],
                             "incidents": incidents, "cycles": len(rows),
                             "faults": episode_is_faulty(spec, log["meta"]),
                             "fault_onset_s": faults[0]["onset_s"] if faults else None})
    if not episodes:
        raise CalibrationDataError(
            f"no episode with both {RECORD_NAME} and {LOG_NAME} under {[str(r) for r in run_dirs]} "
            f"(configurations {list(configurations)})")
    return records, episodes


def check_no_test_seeds(episodes: Sequence[dict]) -> None:
    """Thresholds are fitted on VAL (or TRAIN) seeds only: a TEST seed raises ValueError naming it."""
    from tps_sim.splits import TEST

    bad = sorted({e["seed"] for e in episodes if e["seed"] in TEST})
    if bad:
        raise ValueError(f"calibration data contains TEST seeds {bad}: fit on VAL seeds "
                         f"(tps_sim.splits.VAL), evaluate on TEST")


def _incident_windows(records: Sequence[dict], episodes: Sequence[dict], horizon_s: float):
    """``(t_incident, cycles)`` per incident event (each episode's first incident, the one the
    monitor could act on): the episode's cycles in the ``horizon_s`` before it."""
    by_ep: dict[str, list[dict]] = {}
    for r in records:
        by_ep.setdefault(r["episode"], []).append(r)
    for ep in episodes:
        if not ep["incidents"]:
            continue
        t_inc = ep["incidents"][0][0]
        yield t_inc, [r for r in by_ep.get(ep["episode"], []) if t_inc - horizon_s <= r["t_s"] < t_inc]


def event_scores(records: Sequence[dict], episodes: Sequence[dict], horizon_s: float) -> list[float]:
    """One score per incident event: the lowest certainty of the cycles in the ``horizon_s``
    before it, -inf when one of them was critical (always flagged), +inf when the monitor judged
    no cycle there. An event is flagged by a threshold tau when its score is below tau."""
    out = []
    for _, window in _incident_windows(records, episodes, horizon_s):
        judged = [r for r in window if not r.get("warming_up")]
        out.append(-math.inf if any(r["critical"] for r in judged)
                   else min((r["certainty"] for r in judged), default=math.inf))
    return out


def fit_events(records: list[dict], episodes: list[dict], target_miss_rate: float, horizon_s: float,
               degraded_margin: float = DEGRADED_MARGIN) -> dict:
    """Split-conformal thresholds at the level of incident *events*: tau_fallback is the smallest
    threshold that flags (certainty below it, or a critical signal, within ``horizon_s`` before the
    incident) all but a ``target_miss_rate`` share of the calibration events, with the finite-sample
    correction k = ceil((n + 1)(1 - alpha)) (exchangeable episodes). A cycle-level target ("90 % of
    the cycles in the 3 s before an incident flagged") asks the monitor to see trouble the moment
    the horizon opens, which no signal here does (the VAL fit put tau at 1.0: fall back always);
    the event level asks what a safety driver asks: was the incident flagged before it happened.
    tau_degraded = tau_fallback + ``degraded_margin`` (DEGRADED only caps the speed)."""
    from tps_planner import monitor_calibration as MC

    scores = np.array(event_scores(records, episodes, horizon_s), float)
    q, k = MC.conformal_quantile(scores, target_miss_rate)
    notes = []
    if not len(scores):
        fitted, tau_fb = False, None
        notes.append("no incident events: no threshold can be fitted")
    elif math.isinf(q) and q > 0:
        fitted, tau_fb = False, None
        notes.append(f"{len(scores)} incident events are too few for miss rate {target_miss_rate} "
                     f"(k = {k} > n)")
    else:
        fitted = True
        tau_fb = 0.0 if not math.isfinite(q) else float(min(np.nextafter(q, math.inf), 1.0))
    calib = {"version": 1, "method": "split-conformal over incident events", "fitted": fitted,
             "notes": notes, "target_miss_rate": float(target_miss_rate), "horizon_s": horizon_s,
             "thresholds": ({"tau_fallback": tau_fb, "tau_degraded": min(1.0, tau_fb + degraded_margin)}
                            if fitted else {}),
             "conformal": {"n_events": int(len(scores)), "k": int(k),
                           "q": None if not math.isfinite(q) else float(q),
                           "event_scores": [None if not math.isfinite(x) else float(x) for x in scores],
                           "events_critical": int(np.sum(np.isneginf(scores)))}}
    return calib


def cycle_rates(records: Sequence[dict], episodes: Sequence[dict], tau: float | None,
                horizon_s: float = DEFAULT_HORIZON_S) -> dict:
    """False-alarm rates: the share of the non-incident cycles past the warm-up that are flagged
    (critical, or certainty below ``tau``), over all episodes and over the nominal (fault-free)
    ones; the warm-up cycles apart (never flags); and the event miss rate."""
    nominal = {e["episode"] for e in episodes if not e["faults"]}
    non = [r for r in records if not r["incident"] and not r.get("warming_up")]
    nom = [r for r in non if r["episode"] in nominal]

    def n_flagged(rs):
        return sum(1 for r in rs if flagged(r, tau))

    scores = event_scores(records, episodes, horizon_s)
    return {"non_incident_cycles": len(non), "flagged": n_flagged(non),
            "false_alarm_rate": n_flagged(non) / len(non) if non else None,
            "nominal_non_incident_cycles": len(nom), "nominal_flagged": n_flagged(nom),
            "nominal_false_alarm_rate": n_flagged(nom) / len(nom) if nom else None,
            "nominal_critical": sum(1 for r in nom if r["critical"]),
            "warmup_cycles": sum(1 for r in records if r.get("warming_up")),
            "nominal_warmup_cycles": sum(1 for r in records if r.get("warming_up") and r["episode"] in nominal),
            "events": len(scores),
            "events_missed": sum(1 for x in scores if tau is None or not x < tau)}


def event_detection(records: Sequence[dict], episodes: Sequence[dict], calibration: dict | None,
                    horizon_s: float) -> dict:
    """Per incident (the first of each episode, the one the monitor could act on): was any cycle in
    the ``horizon_s`` before it flagged (certainty below the FALLBACK threshold or a critical
    signal), and how long before. ``k of n`` counts."""
    tau = None
    if calibration:
        tau = calibration.get("thresholds", {}).get("tau_fallback", calibration.get("tau_fallback"))
    n = k = 0
    leads = []
    for t_inc, window in _incident_windows(records, episodes, horizon_s):
        n += 1
        hits = [r["t_s"] for r in window if flagged(r, tau)]
        if hits:
            k += 1
            leads.append(t_inc - min(hits))
    return {"incident_episodes": n, "detected": k,
            "median_lead_s": float(np.median(leads)) if leads else None}


def cycle_auroc(records: Sequence[dict], label: str = "incident", critical_as_zero: bool = True) -> float | None:
    """AUROC of the cycles past the warm-up for a label (``incident``, or ``candidate_collision``:
    cycles without one are left out), the score 1 - certainty; ``critical_as_zero``: a critical
    cycle counts as certainty 0 (the hand-over decision rather than the certainty alone)."""
    from tps_planner import monitor_calibration as MC

    judged = [r for r in records if not r.get("warming_up") and r.get(label) is not None]
    scores = np.array([1.0 if (critical_as_zero and r["critical"]) else 1.0 - r["certainty"] for r in judged],
                      float)
    labels = np.array([bool(r[label]) for r in judged], bool)
    return MC.auroc(scores, labels)


def fit_calibration(records: list[dict], episodes: list[dict], target_miss_rate: float, horizon_s: float,
                    combiner: str = "product", l2: float = 1.0) -> dict:
    """The whole fit on (VAL) records: ramps on the nominal non-incident cycles past the warm-up,
    then (``combiner`` "logistic") the logistic combiner on the non-critical cycles past the warm-up, then the
    event-level conformal thresholds on the rescored certainties. Rescores ``records`` in place."""
    from tps_planner import monitor_calibration as MC

    nominal_eps = {e["episode"] for e in episodes if not e["faults"]}
    ramps = MC.fit_ramps([r for r in records
                          if r["episode"] in nominal_eps and not r["incident"] and not r.get("warming_up")])
    base = {"thresholds": {}, "ramps": ramps}
    if combiner == "logistic":
        # Trained where it decides: past the warm-up and without a critical condition (those are
        # FALLBACK whatever the certainty; a silent planner's NaN signals would teach it that
        # risks at 1 are harmless, its cycles being non-incident).
        base["combiner"] = MC.fit_combiner([r for r in records if not r.get("warming_up") and not r["critical"]],
                                           ramps, l2=l2)
    elif combiner != "product":
        raise ValueError(f"combiner: expected 'product' or 'logistic', got {combiner!r}")
    rescore(records, base)
    calib = fit_events(records, episodes, target_miss_rate, horizon_s)
    calib["ramps"] = ramps
    if "combiner" in base:
        calib["combiner"] = base["combiner"]
    return calib


def crossval(records: list[dict], episodes: list[dict], target_miss_rate: float, horizon_s: float,
             combiner: str = "product", l2: float = 1.0, groups: str = "case") -> dict:
    """Cross-validated figures of :func:`fit_calibration` on (VAL) records: per fold the whole fit
    (ramps, combiner, thresholds) on the other folds, the held-out fold rescored with it; the
    held-out cycles and events pooled. ``groups``: "case" (leave one case out: its seeds and
    configurations together, so a scenario is never both fitted and judged) or "seed".

    Returns ``{"folds", "auroc", "events", "events_detected", "nominal_non_incident_cycles",
    "nominal_flagged", "nominal_flag_rate", "non_incident_flag_rate"}``."""
    import copy

    key = (lambda e: e["case"]) if groups == "case" else (lambda e: e["seed"])
    folds = sorted({key(e) for e in episodes}, key=str)
    held: list[dict] = []
    n_ev = k_ev = 0
    for f in folds:
        test_eps = [e for e in episodes if key(e) == f]
        train_eps = [e for e in episodes if key(e) != f]
        tr_names = {e["episode"] for e in train_eps}
        te_names = {e["episode"] for e in test_eps}
        train = [copy.deepcopy(r) for r in records if r["episode"] in tr_names]
        test = [copy.deepcopy(r) for r in records if r["episode"] in te_names]
        calib = fit_calibration(train, train_eps, target_miss_rate, horizon_s, combiner, l2)
        rescore(test, calib)
        tau = calib.get("thresholds", {}).get("tau_fallback")
        for r in test:
            r["_flag"] = flagged(r, tau)
        held.extend(test)
        det = event_detection(test, test_eps, calib, horizon_s)
        n_ev += det["incident_episodes"]
        k_ev += det["detected"]
    nominal = {e["episode"] for e in episodes if not e["faults"]}
    non = [r for r in held if not r["incident"] and not r.get("warming_up")]
    nom = [r for r in non if r["episode"] in nominal]
    return {"combiner": combiner, "l2": l2 if combiner == "logistic" else None, "groups": groups,
            "folds": len(folds), "auroc": cycle_auroc(held), "events": n_ev, "events_detected": k_ev,
            "nominal_non_incident_cycles": len(nom), "nominal_flagged": sum(r["_flag"] for r in nom),
            "nominal_flag_rate": sum(r["_flag"] for r in nom) / len(nom) if nom else None,
            "non_incident_flag_rate": sum(r["_flag"] for r in non) / len(non) if non else None}


def rescore(records: list[dict], calibration: dict) -> None:
    """Recompute each record's certainty from its raw signal values under ``calibration``'s ramps
    (the node recorded them under whatever it ran with); critical flags are kept (they do not
    depend on the ramps)."""
    from tps_planner.monitor import SIGNAL_NAMES, ConfidenceMonitor

    mon = ConfidenceMonitor(calibration=calibration)   # its combiner, when it has one
    for r in records:
        vals = {}
        for n in SIGNAL_NAMES:
            try:
                vals[n] = float(r["signals"].get(n, math.nan))
            except (TypeError, ValueError):
                vals[n] = math.nan
        r.setdefault("certainty_recorded", r["certainty"])
        r["certainty"] = mon.certainty(mon.risks(vals))


def add_arguments(p) -> None:
    """``tps-eval calibrate-monitor`` arguments."""
    p.add_argument("runs", nargs="+", help="closedloop output directories (configuration shadow)")
    mode = p.add_mutually_exclusive_group(required=True)
    mode.add_argument("--fit", metavar="OUT", help="fit the thresholds (VAL seeds only) and write "
                      "the calibration JSON here (e.g. models/monitor/calibration.json)")
    mode.add_argument("--evaluate", metavar="CALIBRATION", help="report miss / false-alarm rates "
                      "of this calibration on the runs (TEST runs for the acceptance figure)")
    p.add_argument("--target-miss-rate", type=float, default=0.3,
                   help="conformal target: the share of incident events not flagged within the horizon "
                        "before them (default 0.3)")
    p.add_argument("--horizon-s", type=float, default=DEFAULT_HORIZON_S,
                   help=f"a cycle is labelled incident when one follows within this time (default {DEFAULT_HORIZON_S})")
    p.add_argument("--configurations", default="shadow",
                   help="comma-separated configurations whose episodes are used (default shadow)")
    p.add_argument("--combiner", choices=("product", "logistic"), default="product",
                   help="--fit: how the per-signal risks become the certainty: the product of the ramps "
                        "(default) or an L2-regularised logistic model of 'incident within the horizon'")
    p.add_argument("--l2", type=float, default=1.0, help="--fit --combiner logistic: L2 penalty (default 1)")
    p.add_argument("--crossval", default="case,seed",
                   help="--fit: cross-validate both combiners on the data, comma-separated groupings: case "
                        "(leave one case out), seed (leave one seed out), none; the figures go into the "
                        "calibration's 'crossval' (default case,seed)")
    p.add_argument("--no-emulate", action="store_true",
                   help="use records as written (do not apply the signal fixes that can be recomputed from "
                        "records written before them: tps_eval.monitor_calib.emulate_fixes)")
    p.add_argument("--json", default=None, help="also write the report (counts, rates) here")


def run(args) -> int:
    """Fit or evaluate; prints a table. Exit 2 on unusable data."""
    from tps_planner import monitor_calibration as MC

    try:
        records, episodes = collect(args.runs, args.horizon_s, tuple(args.configurations.split(",")),
                                    emulate=not getattr(args, "no_emulate", False))
    except CalibrationDataError as exc:
        print(f"calibrate-monitor: {exc}")
        return 2
    n_inc = sum(r["incident"] for r in records)
    n_ep_inc = sum(1 for e in episodes if e["incidents"])
    print(f"{len(episodes)} episodes, {len(records)} cycles, {n_inc} incident-labelled cycles "
          f"(horizon {args.horizon_s:g} s), {n_ep_inc} episodes with an incident")
    if args.fit:
        try:
            check_no_test_seeds(episodes)
        except ValueError as exc:
            print(f"calibrate-monitor: {exc}")
            return 2
        combiner = getattr(args, "combiner", "product")
        l2 = getattr(args, "l2", 1.0)
        cv_groups = getattr(args, "crossval", "none") or "none"
        cv: dict = {}
        for grouping in [g for g in cv_groups.split(",") if g and g != "none"]:
            if grouping not in ("case", "seed"):
                print(f"calibrate-monitor: --crossval {grouping!r}: expected case, seed or none")
                return 2
            for comb in ("product", "logistic"):
                c = crossval(records, episodes, args.target_miss_rate, args.horizon_s, comb, l2, grouping)
                cv.setdefault(grouping, {})[comb] = c
                print(f"cross-validated ({c['folds']} folds by {grouping}) {comb}: AUROC "
                      f"{c['auroc'] if c['auroc'] is None else round(c['auroc'], 3)}, events "
                      f"{c['events_detected']} of {c['events']}, nominal flag rate "
                      f"{c['nominal_flagged']}/{c['nominal_non_incident_cycles']}")
        calib = fit_calibration(records, episodes, args.target_miss_rate, args.horizon_s, combiner, l2)
        calib["cycle_level"] = MC.fit(records, args.target_miss_rate)   # for comparison (see fit_events)
        calib["crossval"] = cv
        calib["made_by"] = {"command": "tps-eval calibrate-monitor " + " ".join(
                                [*map(str, args.runs), "--fit", str(args.fit), "--target-miss-rate",
                                 f"{args.target_miss_rate:g}", "--combiner", combiner, "--l2", f"{l2:g}",
                                 "--crossval", cv_groups] + (["--no-emulate"] if getattr(args, "no_emulate", False) else [])),
                            "emulated_fixes": not getattr(args, "no_emulate", False),
                            "auroc_calibration_set": cycle_auroc(records)}
        tau = calib["thresholds"].get("tau_fallback")
        calib["calibration_set"] = cycle_rates(records, episodes, tau, args.horizon_s)
        calib["data"] = {"runs": [str(r) for r in args.runs], "episodes": len(episodes),
                         "seeds": sorted({e["seed"] for e in episodes}),
                         "incident_episodes": n_ep_inc}
        Path(args.fit).parent.mkdir(parents=True, exist_ok=True)
        Path(args.fit).write_text(json.dumps(calib, indent=2, default=float) + "\n")
        report = {"calibration": calib, "events": event_detection(records, episodes, calib, args.horizon_s)}
        print(json.dumps(report, indent=2, default=float))
        print(f"wrote {args.fit}")
    else:
        calib = MC.load_calibration(args.evaluate)
        rescore(records, calib)
        tau = calib.get("thresholds", {}).get("tau_fallback")
        report = {"auroc": cycle_auroc(records),     # past the warm-up ("cycles" counts every cycle)
                  "cycles": MC.evaluate(records, calib),
                  "rates": cycle_rates(records, episodes, tau, args.horizon_s),
                  "events": event_detection(records, episodes, calib, args.horizon_s),
                  "episodes": len(episodes), "seeds": sorted({e["seed"] for e in episodes})}
        print(json.dumps(report, indent=2, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")
    return 0


DEFAULT_CALIBRATION = "models/monitor/calibration.json"


def calibration_file(path: str | Path) -> Path:
    """``path``, or a relative one that is not there under the repository root: the shipped
    calibration also when ``tps-eval`` runs from another directory (it was then silently not
    loaded, and the run's ``miss_rate_target`` was null)."""
    from tps_eval.suite import repo_root

    p = Path(path)
    return repo_root() / p if not p.is_absolute() and not p.exists() else p


def run_monitor_summary(out_dir: str | Path, final: dict, calibration_path: str | Path = DEFAULT_CALIBRATION,
                        horizon_s: float = DEFAULT_HORIZON_S) -> dict | None:
    """The ``monitor`` block of a closed-loop run's JSON (issue 15's "for checking"; definitions in
    docs/METRICS.md, "Monitor metrics"): over the monitored episodes of the run (configurations
    stack and shadow, their ``monitor.jsonl``), cycles labelled two ways -- "the candidate the
    monitor judged would collide (at fault) within ``horizon_s``"
    (:mod:`tps_eval.candidate_collision`, the issue's label; records with the candidate) and "an
    incident followed within ``horizon_s``" (an at-fault collision, a drivable-area departure or a
    red-light violation) --, scored with the shipped calibration:

    - ``auroc``: over the cycles past the warm-up (:func:`cycle_auroc`), for the label
      ``auroc_label``: ``candidate_collision`` (score 1 - certainty, the monitor's combined
      certainty) where the records carry candidates, else ``incident`` (the earlier figure: a
      critical cycle counted as certainty 0). ``auroc_candidate_collision``,
      ``auroc_candidate_collision_critical`` (critical counted as certainty 0: a blind detector is
      critical throughout, also while the candidate happens to be clear) and ``auroc_incident``
      all three;
    - ``miss_rate``: the share of incident events not flagged within ``horizon_s`` before them,
      ``miss_rate_target`` the calibration's target (``events``, ``events_missed`` the counts);
    - ``false_alarm_rate``: the share of non-incident cycles flagged;
    - ``detection_latency_cycles``: median cycles from a fault's onset to FALLBACK, full stack
      (from :mod:`tps_eval.faults`; None without faults).

    Per configuration under ``by_configuration``; None when no monitored episode has a record."""
    from tps_planner import monitor_calibration as MC

    calib_error = None
    try:
        calib = MC.load_calibration(calibration_file(calibration_path))
    except ValueError as exc:
        calib, calib_error = None, str(exc)
    tau = (calib or {}).get("thresholds", {}).get("tau_fallback")
    out: dict = {"miss_rate_target": (calib or {}).get("target_miss_rate"), "horizon_s": horizon_s,
                 "calibration": str(calibration_path), "by_configuration": {}}
    if calib_error is not None:   # scored unrescored, without a target: said, not silent
        out["calibration_error"] = calib_error
    for cfg in ("stack", "shadow"):
        try:
            records, episodes = collect([out_dir], horizon_s, (cfg,), candidate_labels=True)
        except CalibrationDataError:
            continue
        if calib is not None:
            rescore(records, calib)
        rates = cycle_rates(records, episodes, tau, horizon_s)
        out["by_configuration"][cfg] = {
            "episodes": len(episodes), "cycles": len(records),
            "incident_cycles": sum(1 for r in records if r["incident"]),
            "warmup_cycles": rates["warmup_cycles"],
            "candidate_cycles": sum(1 for r in records if r.get("candidate_collision") is not None),
            "candidate_collision_cycles": sum(1 for r in records if r.get("candidate_collision")),
            "auroc_candidate_collision": cycle_auroc(records, "candidate_collision", critical_as_zero=False),
            "auroc_candidate_collision_critical": cycle_auroc(records, "candidate_collision"),
            "auroc_incident": cycle_auroc(records),
            "events": rates["events"], "events_missed": rates["events_missed"],
            "miss_rate": rates["events_missed"] / rates["events"] if rates["events"] else None,
            "false_alarm_rate": rates["false_alarm_rate"],
            "nominal_false_alarm_rate": rates["nominal_false_alarm_rate"]}
    if not out["by_configuration"]:
        return None
    main = out["by_configuration"].get("shadow") or out["by_configuration"].get("stack")
    for c in out["by_configuration"].values():
        c["auroc_label"] = "candidate_collision" if c["candidate_cycles"] else "incident"
        c["auroc"] = c["auroc_candidate_collision"] if c["candidate_cycles"] else c["auroc_incident"]
    out.update({k: main[k] for k in ("auroc", "auroc_label", "auroc_candidate_collision",
                                     "auroc_candidate_collision_critical", "auroc_incident",
                                     "miss_rate", "false_alarm_rate", "events", "events_missed")})
    faults = (final.get("faults") or {}).get("all", {}).get("stack", {})
    out["detection_latency_cycles"] = faults.get("median_fallback_latency_cycles")
    out["detection_latency_cycles_leave_nominal"] = faults.get("median_detection_latency_cycles")
    return out
