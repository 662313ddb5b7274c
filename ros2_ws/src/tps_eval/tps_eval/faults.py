"""Fault-matrix bookkeeping of closed-loop episodes (issue 15): which fault an episode injects and
when, an injected node crash (the graph must survive it), and how the monitor reacted.

Plain data, no ROS. An episode's fault comes from its case (:class:`tps_eval.suite.EpisodeSpec`):

- sensor faults, the bridge's ``faults`` (``tps_sim.sensors.faults``: ``{name: {onset_s, ...}}``);
- detector faults, ``node_parameters.perception.fault_*`` (``tps_perception.faults``; onset
  ``fault_onset_s``);
- a process crash, ``node_parameters.<node>.fault_crash_at_s`` (the planner node dies with
  ``EXIT_INJECTED_CRASH`` at that sim time).

The monitor's reaction is read from the episode metrics' ``monitor`` entry::

    metrics["monitor"]["timeline"] = [[t_s, state, certainty], ...]      # one row per status
    metrics["monitor"]["transitions"] = [{"t_s", "from", "to", "reasons"}, ...]

(states as names, ``NOMINAL`` / ``DEGRADED`` / ``FALLBACK`` / ``MINIMAL_RISK``, or as the
MonitorStatus STATE_* numbers). :func:`fault_episode_metrics` scores one episode,
:func:`aggregate_faults` a suite's episodes (the ``faults`` entry of a report).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence

CRASH_PARAMETER = "fault_crash_at_s"
ALL_FAULTS = "all"     # aggregate_faults: every fault type pooled
DETECTOR_NODE = "perception"
STATE_NAMES = ("NOMINAL", "DEGRADED", "FALLBACK", "MINIMAL_RISK")   # MonitorStatus.STATE_* order
FALLBACK_STATES = ("FALLBACK", "MINIMAL_RISK")
CYCLE_S = 0.1          # one stack cycle (lidar period = simulation step) [s]
NOT_MEASURABLE_STARTUP = "onset before first NOMINAL"     # fault_episode_metrics["not_measurable"]
NOT_MEASURABLE_ALARM = "not NOMINAL at onset"
# Detector fault parameters (perception_node fault_*) -> fault type; a parameter that is 0 / false
# is off. Both pose-noise parameters are the one type "pose_noise".
DETECTOR_FAULT_TYPES = {
    "fault_blackout": "detector_blackout",
    "fault_drop_rate": "missed_agents",
    "fault_phantom_rate": "phantom_agents",
    "fault_position_noise_m": "pose_noise",
    "fault_heading_noise_rad": "pose_noise",
    "fault_latency_ms": "detector_latency",
}


# --- which fault, when ------------------------------------------------------------------------
def injected_crashes(node_parameters: Mapping) -> dict[str, float]:
    """``{node: crash sim time [s]}`` of the nodes whose ``fault_crash_at_s`` is set (>= 0)."""
    out = {}
    for node, params in (node_parameters or {}).items():
        at = (params or {}).get(CRASH_PARAMETER)
        if at is not None and not isinstance(at, bool) and float(at) >= 0.0:
            out[str(node)] = float(at)
    return out


def crash_overrides(crashes: Mapping[str, float]) -> list[str]:
    """``tps_bringup`` ``--set`` overrides that let the graph outlive the nodes meant to crash
    (``required=false``: the runner keeps the others running when such a node exits)."""
    return [f"nodes.{node}.required=false" for node in sorted(crashes)]


def crash_outcome(crashes: Mapping[str, float], exits: Mapping[str, tuple[int | None, bool]],
                  crash_code: int) -> tuple[list[dict], str]:
    """What became of the injected crashes after an episode.

    Args:
        crashes: :func:`injected_crashes` of the episode.
        exits: ``{node: (exit code or None while running, stopped by the runner)}`` of the
            graph's node processes after the episode.
        crash_code: the exit code of an injected crash (``tps_common.node.EXIT_INJECTED_CRASH``).

    Returns:
        (one ``{"node", "at_s", "crashed", "exit_code"}`` per crash, an error text or ""): a node
        meant to crash that exited by itself with any other code died unexpectedly (error); one
        still running at the end (the crash time lay after the episode) did not crash.
    """
    rows, errors = [], []
    for node, at in sorted(crashes.items()):
        if node not in exits:
            errors.append(f"node '{node}' (fault_crash_at_s) is not a process of the graph")
            continue
        code, stopped = exits[node]
        crashed = code is not None and not stopped and code == crash_code
        if code is not None and not stopped and code != crash_code:
            errors.append(f"node '{node}' exited with code {code}, not the injected crash's {crash_code}")
        rows.append({"node": node, "at_s": at, "crashed": crashed, "exit_code": code})
    return rows, "; ".join(errors)


def _window(spec: Mapping) -> tuple[float, float]:
    onset = float(spec.get("onset_s", 0.0) or 0.0)
    dur = spec.get("duration_s", math.inf)
    dur = math.inf if dur in (None, "inf", ".inf") else float(dur)
    return onset, dur


def episode_faults(spec: Mapping) -> list[dict]:
    """The faults an episode injects: ``[{"type", "source", "onset_s", "duration_s"}]``, sorted by
    onset (``source``: ``sensor`` / ``detector`` / ``crash:<node>``); empty for a nominal
    episode. ``spec``: an :class:`~tps_eval.suite.EpisodeSpec` as a dict."""
    out = []
    for name, fs in sorted((spec.get("faults") or {}).items()):
        if fs is None or fs is False:
            continue
        onset, dur = _window(fs if isinstance(fs, Mapping) else {})
        out.append({"type": name, "source": "sensor", "onset_s": onset, "duration_s": dur})
    node_params = spec.get("node_parameters") or {}
    det = node_params.get(DETECTOR_NODE) or {}
    types = sorted({t for k, t in DETECTOR_FAULT_TYPES.items() if det.get(k)})
    if types:
        onset = float(det.get("fault_onset_s", 0.0) or 0.0)
        dur = float(det.get("fault_duration_s", 0.0) or 0.0)
        for t in types:
            out.append({"type": t, "source": "detector", "onset_s": onset,
                        "duration_s": dur if dur > 0 else math.inf})
    for node, at in sorted(injected_crashes(node_params).items()):
        out.append({"type": f"{node}_crash", "source": f"crash:{node}", "onset_s": at, "duration_s": math.inf})
    return sorted(out, key=lambda f: (f["onset_s"], f["type"]))


def fault_type(spec: Mapping) -> str:
    """One label for the episode's faults (``+``-joined, sorted; ``none`` when nominal)."""
    return "+".join(sorted({f["type"] for f in episode_faults(spec)})) or "none"


def fault_onset_s(spec: Mapping) -> float | None:
    """The first fault onset of the episode [s sim time], None when it injects none."""
    faults = episode_faults(spec)
    return faults[0]["onset_s"] if faults else None


# --- the monitor's reaction -------------------------------------------------------------------
def state_name(state) -> str:
    """A monitor state as its name (numbers are MonitorStatus.STATE_*)."""
    if isinstance(state, str):
        return state.upper()
    if isinstance(state, (int, float)) and not isinstance(state, bool) and int(state) == state \
            and 0 <= int(state) < len(STATE_NAMES):
        return STATE_NAMES[int(state)]
    raise ValueError(f"monitor state {state!r} is neither a name nor one of 0..{len(STATE_NAMES) - 1}")


def _timeline(monitor: Mapping) -> list[tuple[float, str]]:
    rows = []
    for i, row in enumerate(monitor.get("timeline") or []):
        if not isinstance(row, (list, tuple)) or len(row) < 2:
            raise ValueError(f"monitor.timeline[{i}] = {row!r}: expected [t_s, state, certainty]")
        rows.append((float(row[0]), state_name(row[1])))
    return sorted(rows, key=lambda r: r[0])


def _first_after(rows: list[tuple[float, str]], onset: float, states: Sequence[str] | None) -> float | None:
    """Time of the first status at or after ``onset`` whose state is in ``states`` (None = not
    NOMINAL)."""
    for t, s in rows:
        if t >= onset and (s != "NOMINAL" if states is None else s in states):
            return t
    return None


def first_nominal_s(monitor: Mapping) -> float | None:
    """Stamp of the monitor's first NOMINAL status (None: never NOMINAL). Before it the monitor is
    starting up (the core's warm-up: FALLBACK while the planner, perception and the lidar start,
    the fallback driving), which is neither an alarm nor a state a detection can be measured from."""
    return next((t for t, s in _timeline(monitor) if s == "NOMINAL"), None)


def false_alarms(monitor: Mapping, until_s: float | None) -> dict:
    """Alarms before ``until_s`` (the fault onset; None = the whole episode, a nominal one), from
    the timeline: ``{"count": stretches outside NOMINAL that begin after the monitor first reached
    NOMINAL and before ``until_s``, "time_s": time spent outside NOMINAL in them,
    "before_first_nominal_s": the start-up time before the first NOMINAL status (up to
    ``until_s``; not an alarm)}``."""
    end = math.inf if until_s is None else float(until_s)
    rows = _timeline(monitor)
    t_nom = first_nominal_s(monitor)
    start = end if t_nom is None else t_nom
    startup = max(0.0, min(start, end) - rows[0][0]) if rows else 0.0
    count, time_s, prev = 0, 0.0, "NOMINAL"
    for (t, s), nxt in zip(rows, rows[1:] + [(None, None)], strict=True):
        if t >= end:
            break
        if t < start:        # start-up: not an alarm
            continue
        if s != "NOMINAL":   # until the next status (the last one: one cycle), at most to ``end``
            count += prev == "NOMINAL"
            t_next = min(t + CYCLE_S if nxt[0] is None else nxt[0], end)
            time_s += max(0.0, t_next - t)
        prev = s
    return {"count": count, "time_s": time_s, "before_first_nominal_s": startup}


def state_before(monitor: Mapping, t_s: float) -> str | None:
    """The monitor's state just before ``t_s``: that of its last status stamped before it (None:
    none yet). The status stamped at ``t_s`` itself already sees a fault starting then."""
    state = None
    for t, s in _timeline(monitor):
        if t >= t_s - 1e-9:
            break
        state = s
    return state


def fault_episode_metrics(spec: Mapping, metrics: Mapping | None) -> dict | None:
    """The fault metrics of one episode, or None when it injects no fault.

    Returns ``{"fault_type", "onset_s", "monitored", "state_at_onset", "first_nominal_s",
    "not_measurable", "detected", "detection_latency_s", "detection_latency_cycles",
    "fallback_latency_s", "fallback_latency_cycles", "false_alarms_before_onset",
    "false_alarm_time_s", "before_first_nominal_s", "at_fault_collisions",
    "at_fault_collisions_after_onset"}``: ``monitored`` is false when the episode has no monitor
    timeline (a configuration without monitor; its detection fields are then None);
    ``state_at_onset``: the monitor's state just before the fault (its last status stamped before
    the onset). A detection is only measurable from NOMINAL: when the monitor was not NOMINAL at the
    onset ``detected`` and the latencies are None and ``not_measurable`` says why --
    ``"onset before first NOMINAL"`` (the monitor was still starting up, or not publishing yet:
    the onset came before it first reached NOMINAL) or ``"not NOMINAL at onset"`` (an alarm was
    already on; an alarm that was on anyway is no detection). Otherwise ``detected``: the monitor left NOMINAL at
    or after the onset; the latencies run from the onset to the first non-NOMINAL
    (``detection``) and the first FALLBACK / MINIMAL_RISK status (``fallback``) at or after it, in
    seconds and in stack cycles (0.1 s).
    """
    onset = fault_onset_s(spec)
    if onset is None:
        return None
    m = metrics or {}
    monitor = m.get("monitor") or {}
    monitored = bool(monitor.get("timeline"))
    out = {"fault_type": fault_type(spec), "onset_s": onset, "monitored": monitored,
           "state_at_onset": None, "first_nominal_s": None, "not_measurable": None, "detected": None, "detection_latency_s": None, "detection_latency_cycles": None,
           "fallback_latency_s": None, "fallback_latency_cycles": None,
           "false_alarms_before_onset": None, "false_alarm_time_s": None, "before_first_nominal_s": None,
           "at_fault_collisions": m.get("at_fault_collisions"),
           "at_fault_collisions_after_onset": _collisions_after(m, onset)}
    if monitored:
        rows = _timeline(monitor)
        fa = false_alarms(monitor, onset)
        at_onset = state_before(monitor, onset)
        t_nom = first_nominal_s(monitor)
        out.update(state_at_onset=at_onset, first_nominal_s=t_nom, false_alarms_before_onset=fa["count"],
                   false_alarm_time_s=fa["time_s"], before_first_nominal_s=fa["before_first_nominal_s"])
        if at_onset != "NOMINAL":
            out["not_measurable"] = (NOT_MEASURABLE_STARTUP if t_nom is None or t_nom >= onset - 1e-9
                                     else NOT_MEASURABLE_ALARM)
            return out
        t_det = _first_after(rows, onset, None)
        t_fb = _first_after(rows, onset, FALLBACK_STATES)
        out.update(detected=t_det is not None,
                   detection_latency_s=None if t_det is None else t_det - onset,
                   detection_latency_cycles=None if t_det is None else _cycles(t_det - onset),
                   fallback_latency_s=None if t_fb is None else t_fb - onset,
                   fallback_latency_cycles=None if t_fb is None else _cycles(t_fb - onset))
    return out


def _cycles(dt_s: float) -> float:
    return round(dt_s / CYCLE_S, 6)


def _collisions_after(metrics: Mapping, onset: float) -> int | None:
    """At-fault collisions whose first contact is at or after ``onset`` (step x dt)."""
    events = metrics.get("collision_events")
    steps, dur = metrics.get("steps"), metrics.get("duration_s")
    if events is None or not steps or dur is None:
        return None
    dt = float(dur) / int(steps)
    return sum(1 for e in events if e.get("at_fault") and int(e["step"]) * dt >= onset - 1e-9)


# --- suite aggregation ------------------------------------------------------------------------
def _median(values: list) -> float | None:
    vals = [float(v) for v in values if v is not None]
    return statistics.median(vals) if vals else None


def aggregate_faults(episodes: Sequence[Mapping]) -> dict:
    """Per fault type and configuration, over a suite's episode results (``{"spec", "status",
    "metrics"}``, as :func:`tps_eval.runner.finalize` returns them under ``episodes``).

    Returns ``{fault type: {configuration: {"episodes", "errors", "monitored", "not_nominal_at_onset",
    "onset_before_first_nominal", "alarm_on_at_onset", "detected",
    "detected_text" ("k of n"), "median_detection_latency_s", "median_detection_latency_cycles",
    "median_fallback_latency_cycles", "false_alarms_before_onset", "at_fault_collisions",
    "at_fault_collisions_after_onset", "collision_episodes"}}}``; nominal episodes are left out.
    ``detected`` counts over the monitored episodes that were NOMINAL at the onset (the others
    are ``not_nominal_at_onset``: no detection measurable; split into ``onset_before_first_nominal``,
    the monitor still starting up, and ``alarm_on_at_onset``). The last key, ``all``, pools every
    fault type (e.g. the suite's median detection latency per configuration).
    """
    groups: dict = {}
    for r in episodes:
        spec = r.get("spec") or {}
        fm = fault_episode_metrics(spec, r.get("metrics") if r.get("status") == "ok" else None)
        if fm is None:
            continue
        for key in (fm["fault_type"], ALL_FAULTS):
            groups.setdefault(key, {}).setdefault(spec.get("configuration", "?"), []).append((r, fm))
    out: dict = {}
    for ftype in sorted(groups, key=lambda k: (k == ALL_FAULTS, k)):
        out[ftype] = {}
        for cfg, rows in groups[ftype].items():
            ok = [fm for r, fm in rows if r.get("status") == "ok"]
            mon = [fm for fm in ok if fm["monitored"]]
            measurable = [fm for fm in mon if fm["state_at_onset"] == "NOMINAL"]
            det = [fm for fm in measurable if fm["detected"]]
            alarmed = len(mon) - len(measurable)
            startup = sum(1 for fm in mon if fm["not_measurable"] == NOT_MEASURABLE_STARTUP)
            why = [f"{startup} not measurable: onset before first NOMINAL"] if startup else []
            if alarmed - startup:
                why.append(f"{alarmed - startup} not NOMINAL at onset")
            at_fault = [fm["at_fault_collisions"] for fm in ok if fm["at_fault_collisions"] is not None]
            after = [fm["at_fault_collisions_after_onset"] for fm in ok
                     if fm["at_fault_collisions_after_onset"] is not None]
            out[ftype][cfg] = {
                "episodes": len(rows),
                "errors": len(rows) - len(ok),
                "monitored": len(mon),
                "not_nominal_at_onset": alarmed,
                "onset_before_first_nominal": startup,
                "alarm_on_at_onset": alarmed - startup,
                "detected": len(det),
                "detected_text": (f"{len(det)} of {len(measurable)}"
                                  + (f" ({'; '.join(why)})" if why else "")) if mon else "no monitor",
                "median_detection_latency_s": _median([fm["detection_latency_s"] for fm in det]),
                "median_detection_latency_cycles": _median([fm["detection_latency_cycles"] for fm in det]),
                "median_fallback_latency_cycles": _median([fm["fallback_latency_cycles"] for fm in measurable]),
                "false_alarms_before_onset": sum(fm["false_alarms_before_onset"] or 0 for fm in mon),
                "at_fault_collisions": sum(at_fault),
                "at_fault_collisions_after_onset": sum(after),
                "collision_episodes": sum(1 for v in at_fault if v > 0),
            }
    return out


def faults_markdown(agg: Mapping) -> str:
    """The fault table of a report (one row per fault type x configuration)."""
    lines = ["| fault | configuration | episodes | detected | median latency [cycles] | "
             "to fallback [cycles] | false alarms | at-fault collisions |",
             "|---|---|---|---|---|---|---|---|"]

    def fmt(v) -> str:
        return "-" if v is None else f"{v:g}"

    for ftype, cfgs in agg.items():
        for cfg, a in cfgs.items():
            lines.append(f"| {ftype} | {cfg} | {a['episodes']} | {a['detected_text']} | "
                         f"{fmt(a['median_detection_latency_cycles'])} | {fmt(a['median_fallback_latency_cycles'])} | "
                         f"{a['false_alarms_before_onset'] if a['monitored'] else '-'} | {a['at_fault_collisions']} |")
    return "\n".join(lines) + "\n"


# --- listing a suite without running it (``tps-eval closedloop --list``) ------------------------
def episode_list_text(specs: Sequence) -> str:
    """One line per planned episode (key, fault type, onset, simulated seconds) and the totals
    per configuration; ``specs``: :func:`tps_eval.suite.plan_episodes` output (or their dicts)."""
    lines = []
    per_cfg: dict = {}
    for s in specs:
        d = s.to_dict() if hasattr(s, "to_dict") else dict(s)
        onset = fault_onset_s(d)
        lines.append(f"{d['case_id']}-s{d['seed']}-{d['configuration']}  scenario={d['scenario']} "
                     f"clutter={d['clutter']} duration={float(d['duration_s']):g}s fault={fault_type(d)}"
                     + ("" if onset is None else f" onset={onset:g}s"))
        n, sim = per_cfg.get(d["configuration"], (0, 0.0))
        per_cfg[d["configuration"]] = (n + 1, sim + float(d["duration_s"]))
    total_n = sum(n for n, _ in per_cfg.values())
    total_sim = sum(s for _, s in per_cfg.values())
    lines.append(f"{total_n} episodes, {total_sim:g} simulated s: "
                 + ", ".join(f"{c} {n} ({s:g} s)" for c, (n, s) in per_cfg.items()))
    return "\n".join(lines) + "\n"
