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
  planner's nominal operation.

``fit`` (``tps-eval calibrate-monitor --fit``) refuses TEST seeds (the thresholds are chosen on VAL,
never on the seeds they are judged on) and writes the calibration JSON the monitor node loads;
``evaluate`` reports the achieved miss rate and false-alarm rate on any run (TEST runs for the
acceptance figure). The conformal rule itself lives in :mod:`tps_planner.monitor_calibration`.
"""

from __future__ import annotations

import json
import math
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


def label_episode(records: Sequence[dict], incidents: Sequence[tuple[float, str]], horizon_s: float,
                  episode: str) -> list[dict]:
    """Calibration records of one episode (see the module docstring for the labelling rule)."""
    first = incidents[0][0] if incidents else math.inf
    times = np.array([t for t, _ in incidents], np.float64)
    out = []
    for r in records:
        t = float(r["stamp_s"])
        if t >= first - 1e-9:
            continue
        ahead = times[(times > t + 1e-9) & (times <= t + horizon_s + 1e-9)]
        out.append({"certainty": float(r["certainty"]), "critical": bool(r.get("critical")),
                    "incident": bool(len(ahead)), "signals": dict(r.get("signals") or {}),
                    "episode": episode, "t_s": t, "state": r.get("state")})
    return out


def collect(run_dirs: Iterable[str | Path], horizon_s: float = DEFAULT_HORIZON_S,
            configurations: Sequence[str] = ("shadow",)) -> tuple[list[dict], list[dict]]:
    """Labelled records and one summary row per episode from the ``episodes/*`` of runs."""
    from tps_sim.episode_log import load_episode_log

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
            spec = specs.get(edir.name, {})
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
            rows = label_episode(read_records(rec_path), incidents, horizon_s, edir.name)
            records.extend(rows)
            episodes.append({"episode": edir.name, "scenario": scenario, "seed": seed,
                             "incidents": incidents, "cycles": len(rows),
                             "faults": bool(log["meta"].get("faults"))})
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
    return [-math.inf if any(r["critical"] for r in window)
            else min((r["certainty"] for r in window), default=math.inf)
            for _, window in _incident_windows(records, episodes, horizon_s)]


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
    """False-alarm rates: the share of non-incident cycles flagged (critical, or certainty below
    ``tau``), over all episodes and over the nominal (fault-free) ones; and the event miss rate."""
    nominal = {e["episode"] for e in episodes if not e["faults"]}
    non = [r for r in records if not r["incident"]]
    nom = [r for r in non if r["episode"] in nominal]

    def flagged(rs):
        return sum(1 for r in rs if r["critical"] or (tau is not None and r["certainty"] < tau))

    scores = event_scores(records, episodes, horizon_s)
    return {"non_incident_cycles": len(non), "flagged": flagged(non),
            "false_alarm_rate": flagged(non) / len(non) if non else None,
            "nominal_non_incident_cycles": len(nom), "nominal_flagged": flagged(nom),
            "nominal_false_alarm_rate": flagged(nom) / len(nom) if nom else None,
            "nominal_critical": sum(1 for r in nom if r["critical"]),
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
        flagged = [r["t_s"] for r in window
                   if r["critical"] or (tau is not None and r["certainty"] < tau)]
        if flagged:
            k += 1
            leads.append(t_inc - min(flagged))
    return {"incident_episodes": n, "detected": k,
            "median_lead_s": float(np.median(leads)) if leads else None}


def rescore(records: list[dict], calibration: dict) -> None:
    """Recompute each record's certainty from its raw signal values under ``calibration``'s ramps
    (the node recorded them under whatever it ran with); critical flags are kept (they do not
    depend on the ramps)."""
    from tps_planner.monitor import SIGNAL_NAMES, ConfidenceMonitor

    mon = ConfidenceMonitor(calibration=calibration)
    for r in records:
        vals = {}
        for n in SIGNAL_NAMES:
            try:
                vals[n] = float(r["signals"].get(n, math.nan))
            except (TypeError, ValueError):
                vals[n] = math.nan
        r["certainty_recorded"] = r["certainty"]
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
    p.add_argument("--json", default=None, help="also write the report (counts, rates) here")


def run(args) -> int:
    """Fit or evaluate; prints a table. Exit 2 on unusable data."""
    from tps_planner import monitor_calibration as MC

    try:
        records, episodes = collect(args.runs, args.horizon_s, tuple(args.configurations.split(",")))
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
        nominal_eps = {e["episode"] for e in episodes if not e["faults"]}
        ramps = MC.fit_ramps([r for r in records if r["episode"] in nominal_eps and not r["incident"]])
        rescore(records, {"thresholds": {}, "ramps": ramps})
        calib = fit_events(records, episodes, args.target_miss_rate, args.horizon_s)
        calib["ramps"] = ramps
        calib["cycle_level"] = MC.fit(records, args.target_miss_rate)   # for comparison (see fit_events)
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
        report = {"cycles": MC.evaluate(records, calib),
                  "rates": cycle_rates(records, episodes, tau, args.horizon_s),
                  "events": event_detection(records, episodes, calib, args.horizon_s),
                  "episodes": len(episodes), "seeds": sorted({e["seed"] for e in episodes})}
        print(json.dumps(report, indent=2, default=float))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=float) + "\n")
    return 0


DEFAULT_CALIBRATION = "models/monitor/calibration.json"


def run_monitor_summary(out_dir: str | Path, final: dict, calibration_path: str | Path = DEFAULT_CALIBRATION,
                        horizon_s: float = DEFAULT_HORIZON_S) -> dict | None:
    """The ``monitor`` block of a closed-loop run's JSON (issue 15's "for checking"): over the
    monitored episodes of the run (configurations stack and shadow, their ``monitor.jsonl``),
    cycles labelled with the incidents that followed within ``horizon_s`` (the proxy for "the
    candidate trajectory would collide within 3 s": an at-fault collision, a drivable-area
    departure or a red-light violation follows), scored with the shipped calibration:

    - ``auroc``: of (1 - certainty, critical counted as certainty 0) for the incident label;
    - ``miss_rate``: the share of incident events not flagged within ``horizon_s`` before them,
      ``miss_rate_target`` the calibration's target (``events``, ``events_missed`` the counts);
    - ``false_alarm_rate``: the share of non-incident cycles flagged;
    - ``detection_latency_cycles``: median cycles from a fault's onset to FALLBACK, full stack
      (from :mod:`tps_eval.faults`; None without faults).

    Per configuration under ``by_configuration``; None when no monitored episode has a record."""
    from tps_planner import monitor_calibration as MC

    try:
        calib = MC.load_calibration(calibration_path)
    except ValueError:
        calib = None
    tau = (calib or {}).get("thresholds", {}).get("tau_fallback")
    out: dict = {"miss_rate_target": (calib or {}).get("target_miss_rate"), "horizon_s": horizon_s,
                 "calibration": str(calibration_path), "by_configuration": {}}
    for cfg in ("stack", "shadow"):
        try:
            records, episodes = collect([out_dir], horizon_s, (cfg,))
        except CalibrationDataError:
            continue
        if calib is not None:
            rescore(records, calib)
        scores = np.array([1.0 if r["critical"] else 1.0 - r["certainty"] for r in records], float)
        labels = np.array([r["incident"] for r in records], bool)
        rates = cycle_rates(records, episodes, tau, horizon_s)
        out["by_configuration"][cfg] = {
            "episodes": len(episodes), "cycles": len(records), "incident_cycles": int(labels.sum()),
            "auroc": MC.auroc(scores, labels),
            "events": rates["events"], "events_missed": rates["events_missed"],
            "miss_rate": rates["events_missed"] / rates["events"] if rates["events"] else None,
            "false_alarm_rate": rates["false_alarm_rate"],
            "nominal_false_alarm_rate": rates["nominal_false_alarm_rate"]}
    if not out["by_configuration"]:
        return None
    main = out["by_configuration"].get("shadow") or out["by_configuration"].get("stack")
    out.update({k: main[k] for k in ("auroc", "miss_rate", "false_alarm_rate", "events", "events_missed")})
    faults = (final.get("faults") or {}).get("all", {}).get("stack", {})
    out["detection_latency_cycles"] = faults.get("median_fallback_latency_cycles")
    out["detection_latency_cycles_leave_nominal"] = faults.get("median_detection_latency_cycles")
    return out
