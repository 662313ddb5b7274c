"""The files of a replay report (no ROS)::

    report.json     the analysis (tps_eval.replay.analysis) + run info
    report.md       the same as tables, with the definitions
    timeline.png    speed, certainty, state, detections, latency against sim time
    latency.png     per-node latency distributions
    bev_<k>.png     BEV snapshots
"""

from __future__ import annotations

import json
from pathlib import Path

from tps_eval.replay.analysis import HORIZONS_S, BagFacts, Series


def _fmt(v, spec: str = "{:.2f}") -> str:
    if v is None:
        return "-"
    try:
        return spec.format(v)
    except (ValueError, TypeError):
        return str(v)


def markdown(result: dict, images: list[str]) -> str:
    """report.md text."""
    run = result.get("run", {})
    lines = [f"# Replay report: `{Path(run.get('bag', '?')).name}`", ""]
    lines += [f"- {k}: `{v}`" for k, v in run.items() if k != "notes"]
    for note in run.get("notes", []):
        lines.append(f"- note: {note}")
    inp = result.get("input", {})
    lines += ["", f"Frames played: **{result['frames']}**; unreadable messages: **{result['unreadable']}**; "
              f"non-monotonic stamps: {inp.get('non_monotonic_total', 0)}; lockstep waits that timed out: "
              f"{result.get('lockstep_timeouts', 0)}.", "",
              "## Nodes", "",
              "Latency: wall time from publishing the input that triggers the node (lidar frame, or camera "
              "image) to receiving its output with the same stamp (the pipeline up to that node). Dropped: "
              "inputs never answered. Processing: the node's own `processing_time_ms` on `/diagnostics`.", "",
              "| node | latency p50 [ms] | p95 | p99 | answered | dropped | processing p50 [ms] | p95 | p99 |",
              "|---|---|---|---|---|---|---|---|---|"]
    nodes = list(dict.fromkeys([*result["latency_ms"], *result.get("processing_ms", {})]))
    for n in nodes:
        lat = result["latency_ms"].get(n) or {}
        proc = result.get("processing_ms", {}).get(n) or {}
        lines.append(f"| {n} | {_fmt(lat.get('p50'))} | {_fmt(lat.get('p95'))} | {_fmt(lat.get('p99'))} | "
                     f"{lat.get('n', 0)} | {_fmt(result['dropped'].get(n), '{:d}')} | {_fmt(proc.get('p50'))} | "
                     f"{_fmt(proc.get('p95'))} | {_fmt(proc.get('p99'))} |")
    res = result.get("resources")
    if res and res.get("nodes"):
        tot = res["total"]
        lines += ["", "## Resources", "",
                  f"Sampled every {tot['period_s']} s while playing (process + descendants; CPU 100 % = one "
                  f"core of {tot['host_cpus']}). Whole graph: peak RSS **{_fmt(tot['rss_mb_peak'], '{:.0f}')} MB**"
                  f", mean CPU {_fmt(tot['cpu_pct_mean'], '{:.0f}')} %.", "",
                  "| process | CPU mean [%] | CPU p95 [%] | peak RSS [MB] |", "|---|---|---|---|"]
        for n, r in res["nodes"].items():
            lines.append(f"| {n} | {_fmt(r['cpu_pct_mean'], '{:.1f}')} | {_fmt(r['cpu_pct_p95'], '{:.1f}')} | "
                         f"{_fmt(r['rss_mb_peak'], '{:.0f}')} |")
    if result.get("nodes_absent"):
        lines += ["", f"Nodes of the node table not in this graph: {', '.join(result['nodes_absent'])}."]
    if result.get("gave_up_waiting"):
        lines += ["", f"Lockstep stopped waiting for (node: frame): {result['gave_up_waiting']}."]
    lines += ["", "## Modes", "",
              f"- fallback share (selected trajectories from the fallback or minimal-risk): "
              f"{_fmt(result['fallback_share'], '{:.1%}')}; sources: {result.get('selected_source_share')}",
              f"- monitor: {result['monitor']}; state share: {result['monitor_state_share']}", "",
              "## Open loop (nuScenes convention)", "",
              "L2: planned position at t + h vs the logged ego position (odometry); collision: the planned "
              "ego footprint touches a ground-truth agent at t + h.", "",
              "| trajectory | " + " | ".join(f"L2 {h:g} s [m]" for h in HORIZONS_S) + " | avg L2 [m] | "
              + " | ".join(f"collision {h:g} s" for h in HORIZONS_S) + " |",
              "|---|" + "---|" * (2 * len(HORIZONS_S) + 1)]
    for name, ol in result["open_loop"].items():
        if not isinstance(ol, dict):
            continue
        cells = [_fmt(ol[f"{h:g}s"]["l2_m"]) for h in HORIZONS_S] + [_fmt(ol.get("avg_l2_m"))]
        cells += [_fmt(ol[f"{h:g}s"]["collision_rate"], "{:.1%}") for h in HORIZONS_S]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if result.get("vs_logged_run"):
        lines += ["", f"Against the run logged in the bag (same stamps): {result['vs_logged_run']}"]
    det = result["detections"]
    lines += ["", "## Detections", "", f"- messages: {det['messages']}, per frame (mean): {_fmt(det['per_frame_mean'])}"]
    if det.get("vs_ground_truth"):
        q = det["vs_ground_truth"]
        lines.append(f"- vs ground truth (centre within {q['match_distance_m']} m, {q['range_m']} m range): "
                     f"precision {_fmt(q['precision'], '{:.3f}')}, recall {_fmt(q['recall'], '{:.3f}')} "
                     f"over {q['frames']} frames")
    lines += ["", "## Input bag", "", "Moved back: logged after the next frame began, played with the frame of "
              "their stamp.", "",
              "| topic | played | unreadable | non-monotonic | adapted | moved back |", "|---|---|---|---|---|---|"]
    for t in sorted(set(inp.get("played", {})) | set(inp.get("unreadable", {}))):
        lines.append(f"| `{t}` | {inp['played'].get(t, 0)} | {inp['unreadable'].get(t, 0)} | "
                     f"{inp['non_monotonic'].get(t, 0)} | {inp['adapted'].get(t, 0)} | "
                     f"{inp.get('moved_late', {}).get(t, 0)} |")
    for t, why in inp.get("unreadable_reasons", {}).items():
        lines.append(f"- unreadable on `{t}`: {why}")
    lines += ["", "## Recorded (result.mcap)", "", ", ".join(f"`{t}` {n}" for t, n in sorted(result["recorded"].items()))]
    if images:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({Path(p).name})" for p in images]
    return "\n".join(lines) + "\n"


def write(result: dict, out: Path, series: Series | None = None, facts: BagFacts | None = None,
          plots: bool = True) -> dict:
    """Write report.json, report.md and the plots into ``out``; returns their paths."""
    from tps_eval.replay import plots as P

    out = Path(out)
    images: list[str] = []
    if plots and series is not None and facts is not None:
        title = Path(result.get("run", {}).get("bag", "")).name
        images.append(str(P.timeline_png(series, out / "timeline.png", title)))
        lat = P.latency_png(series.latency, out / "latency.png")
        if lat is not None:
            images.append(str(lat))
        for k, t in enumerate(P.snapshot_times(series, facts)):
            p = P.bev_png(series, facts, t, out / f"bev_{k}.png", title)
            if p is not None:
                images.append(str(p))
    paths = {"json": str(out / "report.json"), "markdown": str(out / "report.md"), "images": images}
    result["files"] = dict(paths, result_bag=str(out / "result.mcap"))
    (out / "report.json").write_text(json.dumps(result, indent=1, default=float))
    (out / "report.md").write_text(markdown(result, images))
    return paths
