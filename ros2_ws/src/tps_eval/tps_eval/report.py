"""Reports of a closed-loop run: the summary JSON, a Markdown table, and BEV plots (PNG of the
key frame + GIF) of every failed episode. Pure Python (no ROS).

Files under the run directory::

    summary.json     {"stack": {...}, "fallback": {...}, "expert": {...}, "naive": {...}, "episodes": [...],
                      "run": {suite, seeds, executor, workers, wall_s, ...}}
    report.md        aggregates per configuration, monitor states per configuration, per-case
                     table, failures by category
    bev/<episode>.png / .gif           (the ego's path coloured by the monitor state)
    bev/<episode>_timeline.png         speed, certainty, monitor state band and transitions
                                       (episodes with a monitor)
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tps_eval.suite import CONFIGURATION_ORDER

AGG_COLUMNS = (
    ("episodes", "episodes", "{:d}"),
    ("errors", "errors", "{:d}"),
    ("collision_rate", "at-fault collision rate", "{:.1%}"),
    ("at_fault_per_km", "at-fault / km", "{:.2f}"),
    ("route_completion", "route completion", "{:.1%}"),
    ("pdm_score", "PDMS", "{:.3f}"),
    ("pdm_score_tlc", "PDMS x TLC", "{:.3f}"),
    ("tlc", "TLC", "{:.3f}"),
    ("red_light_violations", "red-light violations", "{:d}"),
    ("nc", "NC", "{:.3f}"),
    ("dac", "DAC", "{:.3f}"),
    ("ttc", "TTC", "{:.3f}"),
    ("ep", "EP", "{:.3f}"),
    ("comfort", "C", "{:.3f}"),
    ("fallback_share", "fallback share", "{:.1%}"),
    ("mode_transitions", "mode transitions", "{:.1f}"),
    ("step_timeouts", "step timeouts", "{:d}"),
    ("e2e_latency_p50_ms", "e2e p50 [ms]", "{:.1f}"),
    ("e2e_latency_p99_ms", "e2e p99 [ms]", "{:.1f}"),
)
CASE_COLUMNS = (
    ("case", "case", "{}"),
    ("episodes", "episodes", "{:d}"),
    ("errors", "errors", "{:d}"),
    ("at_fault_collisions", "collisions", "{:d}"),
    ("route_completion", "route completion", "{:.1%}"),
    ("pdm_score", "PDMS", "{:.3f}"),
    ("pdm_score_tlc", "PDMS x TLC", "{:.3f}"),
    ("red_light_violations", "red-light violations", "{:d}"),
    ("fallback_share", "fallback share", "{:.1%}"),
    ("e2e_latency_p50_ms", "e2e p50 [ms]", "{:.1f}"),
    ("e2e_latency_p99_ms", "e2e p99 [ms]", "{:.1f}"),
)
MONITOR_COLUMNS = (
    ("configuration", "configuration", "{}"),
    ("episodes", "episodes with a monitor", "{:d}"),
    ("NOMINAL", "NOMINAL", "{:.1%}"),
    ("DEGRADED", "DEGRADED", "{:.1%}"),
    ("FALLBACK", "FALLBACK", "{:.1%}"),
    ("MINIMAL_RISK", "MINIMAL_RISK", "{:.1%}"),
    ("transitions_per_episode", "transitions / episode", "{:.2f}"),
)
HANDOVER_COLUMNS = (
    ("configuration", "configuration", "{}"),
    ("to", "into", "{}"),
    ("reason", "first reason (values dropped)", "{}"),
    ("transitions", "transitions", "{:d}"),
    ("episodes", "episodes", "{:d}"),
    ("cycle_share", "share of cycles until the next change", "{:.1%}"),
)
MAX_HANDOVER_ROWS = 12      # per configuration in report.md (all are in summary.json)
MAX_LISTED_TRANSITIONS = 3  # per failed episode in report.md (all are in summary.json)
GIF_STEP_STRIDE = 2         # every 2nd simulation step (5 frames per simulated second)
GIF_FPS = 5.0


def fmt(value, spec: str) -> str:
    """``value`` formatted with ``spec``; "-" for None/NaN."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    try:
        return spec.format(value)
    except (ValueError, TypeError):
        return str(value)


def markdown_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """A Markdown table of ``rows`` (dicts) with (key, header, format) ``columns``."""
    head = "| " + " | ".join(c[1] for c in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(fmt(r.get(k), f) for k, _, f in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def text_table(rows: Sequence[dict], columns: Sequence[tuple[str, str, str]]) -> str:
    """The same table aligned for a terminal."""
    cells = [[c[1] for c in columns]] + [[fmt(r.get(k), f) for k, _, f in columns] for r in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    lines = ["  ".join(v.rjust(w) if i else v.ljust(w) for i, (v, w) in
                       enumerate(zip(row, widths, strict=True))) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def aggregate_rows(final: dict) -> list[dict]:
    """One row per configuration present in ``final``."""
    return [dict(final[c], configuration=c) for c in CONFIGURATION_ORDER if c in final]


def monitor_rows(final: dict) -> list[dict]:
    """One row per configuration whose episodes had a monitor: mean state shares and transitions
    per episode (``metrics.aggregate_monitor``, the configuration's ``monitor_states``)."""
    rows = []
    for c in CONFIGURATION_ORDER:
        agg = (final.get(c) or {}).get("monitor_states") if c in final else None
        if agg:
            rows.append({"configuration": c, "episodes": agg["episodes"], **agg["share"],
                         "transitions_per_episode": agg["transitions_per_episode"]})
    return rows


def handover_rows(final: dict) -> list[dict]:
    """The configurations' ``monitor_states.handovers`` (``metrics.handover_reasons``), the
    first :data:`MAX_HANDOVER_ROWS` of each."""
    rows = []
    for c in CONFIGURATION_ORDER:
        agg = (final.get(c) or {}).get("monitor_states") if c in final else None
        for row in ((agg or {}).get("handovers") or [])[:MAX_HANDOVER_ROWS]:
            rows.append({"configuration": c, **row})
    return rows


def _transitions_text(monitor: dict | None) -> str:
    """", monitor: N transitions (t FROM->TO (reasons); ...)" for a failed episode's line."""
    if not monitor:
        return ""
    trs = monitor.get("transitions") or []
    listed = "; ".join(f"{tr['t_s']:.1f} s {tr['from']}->{tr['to']}"
                       + (f" ({', '.join(tr['reasons'])})" if tr.get("reasons") else "")
                       for tr in trs[:MAX_LISTED_TRANSITIONS])
    more = f"; +{len(trs) - MAX_LISTED_TRANSITIONS} more" if len(trs) > MAX_LISTED_TRANSITIONS else ""
    return f", monitor: {len(trs)} transition(s)" + (f" ({listed}{more})" if trs else "")


def monitor_figures_lines(monitor: dict | None) -> list[str]:
    """The run's ``monitor`` block (``monitor_calib.run_monitor_summary``) as a Markdown table per
    configuration: the AUROC for both labels with their cycle counts, the event miss rate against
    its target, the false-alarm rate; the fault latency under it. Empty without a block."""
    if not monitor or not monitor.get("by_configuration"):
        return []

    def f(v, spec="{:.3f}"):
        return "-" if v is None else spec.format(v)

    rows = ["| configuration | episodes | cycles | AUROC, candidate would collide in 3 s: certainty / "
            "critical as 0 (positive / labelled cycles) | AUROC, incident within 3 s (positive cycles) | "
            "incident events missed | false-alarm rate |", "|---|---|---|---|---|---|---|"]
    for cfg, c in monitor["by_configuration"].items():
        rows.append(f"| {cfg} | {c['episodes']} | {c['cycles']} | {f(c.get('auroc_candidate_collision'))} / "
                    f"{f(c.get('auroc_candidate_collision_critical'))} "
                    f"({c.get('candidate_collision_cycles', 0)} / {c.get('candidate_cycles', 0)}) | "
                    f"{f(c.get('auroc_incident'))} ({c.get('incident_cycles', 0)}) | "
                    f"{c['events_missed']} of {c['events']} (target {f(monitor.get('miss_rate_target'), '{:.2f}')}) | "
                    f"{f(c.get('false_alarm_rate'), '{:.1%}')} |")
    out = ["## Monitor against what happened (docs/METRICS.md, \"Monitor metrics\")", "", *rows, ""]
    if monitor.get("detection_latency_cycles") is not None:
        out += [f"Fault onset to FALLBACK, median over the faults NOMINAL at their onset: "
                f"**{f(monitor['detection_latency_cycles'], '{:g}')} cycles** (to leaving NOMINAL: "
                f"{f(monitor.get('detection_latency_cycles_leave_nominal'), '{:g}')}).", ""]
    if monitor.get("calibration_error"):
        out += [f"Calibration not loaded: {monitor['calibration_error']}", ""]
    return out


def write_report(final: dict, run_info: dict, out_dir: str | os.PathLike,
                 case_rows: dict | None = None, bev_paths: dict | None = None) -> dict:
    """Write summary.json and report.md; returns {"summary": path, "report": path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = {k: v for k, v in final.items()}
    summary["run"] = run_info
    summary_path = out / "summary.json"
    summary_path.write_text(json.dumps(summary, indent=1, default=float))
    lines = [f"# Closed-loop evaluation: suite `{run_info.get('suite')}`", ""]
    lines += [f"- {k}: `{v}`" for k, v in run_info.items() if k != "suite"]
    lines += ["", "Metric definitions: docs/METRICS.md in the repository (NAVSIM PDM score v1; NC "
              "and DAC per episode, TTC and C per 4-s window, EP against the expert of the same "
              "seed; collision taxonomy in its section \"Collisions and fault\"; TLC and "
              "red-light violations in \"Traffic lights\": PDMS x TLC is v1's PDMS times NAVSIM "
              "v2's traffic-light compliance); code: tps_eval/metrics.py.", "",
              "## Aggregates per configuration", ""]
    cols = (("configuration", "configuration", "{}"),) + AGG_COLUMNS
    lines += [markdown_table(aggregate_rows(final), cols), ""]
    mon_rows = monitor_rows(final)
    if mon_rows:
        lines += ["## Monitor states per configuration (share of monitor cycles, means over "
                  "episodes)", "", markdown_table(mon_rows, MONITOR_COLUMNS), ""]
        ho_rows = handover_rows(final)
        if ho_rows:
            lines += ["## Why the monitor left NOMINAL (transitions into a worse state by their first "
                      f"reason; at most {MAX_HANDOVER_ROWS} per configuration, all in summary.json)", "",
                      markdown_table(ho_rows, HANDOVER_COLUMNS), ""]
    lines += monitor_figures_lines(final.get("monitor"))
    lat_rows = [{"configuration": c, "node": n, **v} for c in CONFIGURATION_ORDER
                if c in final for n, v in (final[c].get("node_latency_ms") or {}).items()]
    if lat_rows:
        lines += ["## Per-node processing time (from /diagnostics; medians of per-episode "
                  "percentiles, wall clock)", "",
                  markdown_table(lat_rows, (("configuration", "configuration", "{}"),
                                            ("node", "node", "{}"), ("p50", "p50 [ms]", "{:.2f}"),
                                            ("p99", "p99 [ms]", "{:.2f}"),
                                            ("samples", "samples", "{:d}"))), ""]
    if final.get("faults"):
        from tps_eval.faults import faults_markdown

        lines += ["## Injected faults: monitor detection and outcome per fault type", "",
                  faults_markdown(final["faults"]), ""]
    for cfg, rows in (case_rows or {}).items():
        lines += [f"## Per case: {cfg}", "", markdown_table(rows, CASE_COLUMNS), ""]
    lines += ["## Failed episodes", ""]
    failed = [r for r in final["episodes"] if r.get("failures")]
    if not failed:
        lines.append("None.")
    for r in failed:
        s = r["spec"]
        key = f"{s['case_id']}-s{s['seed']}-{s['configuration']}"
        m = r.get("metrics") or {}
        detail = r.get("error") or (
            f"route completion {fmt(m.get('route_completion'), '{:.1%}')}, at-fault "
            f"collisions {m.get('at_fault_collisions')} "
            f"({', '.join(e['kind'] for e in m.get('collision_events', []) if e['at_fault'])}), "
            f"off-road steps {m.get('off_road_steps')}"
            + (f" ({m['off_road_slow_steps']} below 3 m/s)" if m.get("off_road_slow_steps") else "")
            + (f", up to {m['off_road_max_offset_m']:.1f} m off the route"
               if m.get("off_road_max_offset_m") else "")
            + f", end {m.get('end_reason')}"
            + _transitions_text(m.get("monitor")))
        bev = (bev_paths or {}).get(key)
        link = f" — BEV: `{bev}`" if bev else ""
        timeline = (r.get("bev") or {}).get("timeline")
        if timeline:
            link += f" — timeline: `{timeline}`"
        lines.append(f"- `{key}`: {', '.join(r['failures'])}: {detail}{link}")
    report_path = out / "report.md"
    report_path.write_text("\n".join(lines) + "\n")
    return {"summary": str(summary_path), "report": str(report_path)}


# --- BEV of an episode ------------------------------------------------------------------------------
def episode_bev(result: dict, out_dir: str | os.PathLike, gif: bool = True,
                stride: int = GIF_STEP_STRIDE) -> dict:
    """PNG of the key frame (first at-fault collision, else first red-light violation, else first
    off-road step, else the last step) and, with ``gif``, an animation of the episode. Returns
    {"png": path, "gif": path} (+ "timeline": the monitor timeline PNG,
    :func:`tps_eval.bev.render_monitor_timeline_png`, when the episode had a monitor, whose state
    also colours the ego's path). When the episode was recorded (``episode.mcap``), every frame also
    shows the stack's state: its detections and the driving source / monitor / detector text
    (:mod:`tps_eval.stack_state`)."""
    from tps_common.geometry import box_corners
    from tps_sim.episode_log import BOX, load_episode_log

    from tps_eval import bev
    from tps_eval.road import road_for_scenario
    from tps_eval.trace import agent_frames, collisions_per_step, light_trace, static_frame

    s = result["spec"]
    key = f"{s['case_id']}-s{s['seed']}-{s['configuration']}"
    log = load_episode_log(result["log_path"])
    road = road_for_scenario(s["scenario"])
    ego = np.asarray(log["ego"], float).reshape(-1, len(BOX))
    t = ego.shape[0]
    agents = agent_frames(log)
    collisions = collisions_per_step(log)
    m = result.get("metrics") or {}
    faults = [e for e in m.get("collision_events", []) if e["at_fault"]]
    length, width = float(np.median(ego[:, BOX["length"]])), float(np.median(ego[:, BOX["width"]]))
    lights = light_trace(log)
    stop_lines = (np.zeros((0, 2, 2)) if lights is None else np.stack([
        c[None, :] + np.array([[-0.5], [0.5]]) * w * np.array([-np.sin(y), np.cos(y)])[None, :]
        for c, y, w in zip(lights.stop_xy, lights.lane_yaw, lights.width, strict=True)]))
    scene = bev.BevScene(road.drivable_polygons(), road.marking_polylines(),
                         np.asarray(log["route"], float), static_frame(log), length, width,
                         title=key, light_stop_lines=stop_lines,
                         light_heads_xy=np.zeros((0, 2)) if lights is None else lights.heads[:, :2])
    bag = Path(result.get("episode_dir") or Path(result["log_path"]).parent) / "episode.mcap"
    state = None
    if bag.is_file():
        from tps_eval import stack_state as SS

        state = SS.read_stack_state(bag)
    monitor = m.get("monitor") or None
    step_t = np.asarray(log["t_s"], float)
    path_state = _monitor_state_per_step(monitor, step_t)
    hit_xy = []
    frames = []
    for k in range(t):
        if collisions[k]:
            hit_xy.append(ego[k, [BOX["x"], BOX["y"]]])
        pose = (float(ego[k, BOX["x"]]), float(ego[k, BOX["y"]]), float(ego[k, BOX["yaw"]]))
        t_k = float(np.asarray(log["t_s"])[k])
        frames.append(bev.BevFrame(
            pose, agents[k], ego[: k + 1, [BOX["x"], BOX["y"]]],
            collision_xy=np.array(hit_xy) if hit_xy else np.zeros((0, 2)),
            time_s=t_k, label=f"v = {ego[k, BOX['speed_mps']]:.1f} m/s",
            light_states=None if lights is None else lights.states[k],
            detections=None if state is None else SS.detections_in_map(state, t_k, pose),
            info=() if state is None else SS.info_lines(state, t_k),
            path_state=None if path_state is None else path_state[: k + 1]))
    red = [e for e in m.get("stop_line_events", []) if e.get("violation")]
    if faults:
        key_step = int(faults[0]["step"])
    elif red:
        key_step = int(red[0]["step"])
    else:
        corners = box_corners(ego[:, [BOX["x"], BOX["y"]]], ego[:, BOX["yaw"]], length, width)
        on = road.contains(corners.reshape(-1, 2)).reshape(t, 4).all(axis=1) if t else []
        off = np.flatnonzero(~np.asarray(on, bool))
        key_step = int(off[0]) if off.size else t - 1
    out = Path(out_dir)
    paths = {"png": str(bev.render_frame_png(scene, frames[key_step], out / f"{key}.png"))}
    if gif and frames:
        paths["gif"] = str(bev.render_episode_gif(scene, frames[::max(1, stride)],
                                                  out / f"{key}.gif", fps=GIF_FPS))
    if monitor and monitor.get("timeline"):
        paths["timeline"] = str(bev.render_monitor_timeline_png(
            step_t, ego[:, BOX["speed_mps"]], monitor, out / f"{key}_timeline.png", title=key))
    return paths


def _monitor_state_per_step(monitor: dict | None, t_s: np.ndarray) -> list[str] | None:
    """The monitor state name in force at each step time (the latest status at or before it;
    "UNKNOWN" before the first), None without a monitor timeline."""
    timeline = (monitor or {}).get("timeline") or []
    if not timeline:
        return None
    mt = np.array([row[0] for row in timeline], float)
    idx = np.searchsorted(mt, np.asarray(t_s, float) + 1e-6, side="right") - 1
    return ["UNKNOWN" if i < 0 else str(timeline[i][1]) for i in idx]
