"""The monitor's timeline in the evaluation: the collector hears /tps/monitor/status over DDS (real
publishers, volatile and transient local), the metrics extract transitions and state shares, and
the report renders the monitor table, the timeline PNG and the state-coloured BEV path."""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import pytest
from PIL import Image
from tps_eval import bev, runner
from tps_eval import metrics as M
from tps_eval import report as R
from tps_eval.collector import CollectedData, Collector, monitor_samples, stamp_key

sys.path.insert(0, os.path.join(os.path.dirname(__file__), os.pardir, "planner"))
from ros_harness import InputMatches  # noqa: E402

NOMINAL, DEGRADED, FALLBACK, MINIMAL_RISK = 0, 1, 2, 3
# (state, certainty, reasons) per 0.1-s cycle
SEQUENCE = ([(NOMINAL, 0.95, ())] * 10 + [(DEGRADED, 0.6, ("planner_sigma",))] * 5
            + [(FALLBACK, 0.2, ("unexplained_occupancy", "ttc"))] * 8
            + [(MINIMAL_RISK, 0.1, ("fallback_timeout",))] * 4 + [(NOMINAL, 0.9, ())] * 3)


def samples(seq=SEQUENCE, dt=0.1):
    return [(round(k * dt, 6), st, c, r) for k, (st, c, r) in enumerate(seq)]


def test_transitions_and_shares_from_a_status_sequence():
    mon = M.monitor_summary(samples())
    assert [tr["from"] + ">" + tr["to"] for tr in mon["transitions"]] == [
        "NOMINAL>DEGRADED", "DEGRADED>FALLBACK", "FALLBACK>MINIMAL_RISK", "MINIMAL_RISK>NOMINAL"]
    assert [tr["t_s"] for tr in mon["transitions"]] == pytest.approx([1.0, 1.5, 2.3, 2.7])
    assert mon["transitions"][1]["reasons"] == ["unexplained_occupancy", "ttc"]
    assert mon["transitions"][3]["reasons"] == []
    assert mon["share"] == pytest.approx({"NOMINAL": 13 / 30, "DEGRADED": 5 / 30,
                                          "FALLBACK": 8 / 30, "MINIMAL_RISK": 4 / 30})
    assert sum(mon["share"].values()) == pytest.approx(1.0)
    assert mon["timeline"][10] == [1.0, "DEGRADED", pytest.approx(0.6)]
    assert len(mon["timeline"]) == len(SEQUENCE)
    json.dumps(mon)  # JSON-ready
    steady = M.monitor_summary(samples([(NOMINAL, 1.0, ())] * 5))
    assert steady["transitions"] == [] and steady["share"]["NOMINAL"] == 1.0
    assert M.monitor_summary([]) is None


def test_samples_follow_the_step_times_under_a_clock_offset():
    t = np.arange(5) * 0.1
    stamps = t + 2.0                      # a clock-jump fault offsets the stamps
    heard = {stamp_key(stamps[k]): (st, c, r) for k, (st, c, r) in enumerate(SEQUENCE[8:13])}
    out = monitor_samples(CollectedData(monitor=dict(reversed(list(heard.items())))), stamps, t)
    assert [s[0] for s in out] == pytest.approx(t.tolist())
    assert [s[1] for s in out] == [NOMINAL, NOMINAL, DEGRADED, DEGRADED, DEGRADED]
    assert monitor_samples(CollectedData(), stamps, t) == []
    assert monitor_samples(None, stamps, t) == []


def _status(stamp_s: float, state: int, certainty: float, reasons):
    from builtin_interfaces.msg import Time
    from tps_msgs.msg import MonitorStatus

    msg = MonitorStatus(state=state, certainty=certainty, reasons=list(reasons))
    msg.header.stamp = Time(sec=int(stamp_s), nanosec=int(round((stamp_s % 1) * 1e9)))
    return msg


@pytest.mark.parametrize("latched", [False, True])
def test_collector_hears_the_monitor_over_dds(latched):
    import rclpy
    import rclpy.executors
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
    from tps_msgs.msg import MonitorStatus

    domain = int(os.environ.get("ROS_DOMAIN_ID", "0"))
    collector = Collector(domain, node_name="test_monitor_collector")
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain)
    try:
        node = rclpy.create_node("test_monitor_publisher", context=ctx)
        qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100,
                         reliability=ReliabilityPolicy.RELIABLE,
                         durability=(DurabilityPolicy.TRANSIENT_LOCAL if latched
                                     else DurabilityPolicy.VOLATILE))
        pub = node.create_publisher(MonitorStatus, "/tps/monitor/status", qos)
        # both halves of DDS matching: the writer's count, and the collector's own report that its
        # reader matched this writer (a volatile reader not matched yet drops what is sent)
        matches = InputMatches(node, "test_monitor_collector")
        executor = rclpy.executors.SingleThreadedExecutor(context=ctx)
        executor.add_node(node)
        deadline = time.monotonic() + 10.0
        while (matches.unmatched(["/tps/monitor/status"]) or pub.get_subscription_count() < 1) \
                and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        assert not matches.unmatched(["/tps/monitor/status"]) and pub.get_subscription_count() >= 1, \
            f"the collector never matched this publisher (its report: {matches.counts})"
        for k, (st, c, r) in enumerate(SEQUENCE):
            pub.publish(_status(k * 0.1, st, c, r))
        pub.publish(_status(0.0, FALLBACK, 0.0, ("duplicate stamp",)))  # first per stamp kept
        while len(collector.data().monitor) < len(SEQUENCE) and time.monotonic() < deadline:
            time.sleep(0.05)
        heard = collector.data().monitor
    finally:
        collector.close()
        rclpy.shutdown(context=ctx)
    assert len(heard) == len(SEQUENCE)
    assert heard[stamp_key(0.0)] == (NOMINAL, pytest.approx(0.95), ())
    assert heard[stamp_key(1.5)] == (FALLBACK, pytest.approx(0.2), ("unexplained_occupancy", "ttc"))
    t = np.arange(len(SEQUENCE)) * 0.1
    mon = M.monitor_summary(monitor_samples(CollectedData(monitor=heard), t, t))
    assert len(mon["transitions"]) == 4


def _episode(cfg: str, seed: int, log_path: str, monitor: dict | None, dac: float = 1.0) -> dict:
    metrics = {"progress_m": 30.0, "nc": 1.0, "dac": dac, "ttc": 1.0, "comfort": 1.0, "ep": None,
               "pdm_score": None, "route_completion": 1.0, "at_fault_collisions": 0,
               "collisions": 0, "distance_m": 30.0, "step_timeouts": 0, "fallback_share": 0.3,
               "mode_transitions": 2, "e2e_latency_p50_ms": 5.0, "e2e_latency_p99_ms": 9.0,
               "collision_events": [], "off_road_steps": 0 if dac else 5, "end_reason": "duration",
               "monitor": monitor}
    return {"spec": {"case_id": "highway", "scenario": "highway", "seed": seed,
                     "configuration": cfg},
            "status": "ok", "metrics": metrics, "error": "", "log_path": log_path,
            "episode_dir": "", "wall_s": 1.0, "diagnostics_errors": []}


def test_report_renders_the_monitor_table_timeline_and_state_coloured_bev(tmp_path):
    from test_eval_trace import STEPS, write_log

    log_path = str(tmp_path / "log.npz")
    write_log(log_path, collide_at=None)   # 30 steps at 0.1 s on highway-like coordinates
    mon = M.monitor_summary(samples())     # 30 statuses
    assert len(SEQUENCE) == STEPS
    steady = M.monitor_summary(samples([(NOMINAL, 0.97, ())] * STEPS))
    stack0 = _episode("stack", 0, log_path, mon, dac=0.0)
    # the BEV's key frame is the last step (a collision there): the whole path is drawn
    stack0["metrics"]["collision_events"] = [{"step": STEPS - 1, "object_id": 42, "at_fault": True,
                                              "kind": M.COLLISION_STOPPED_AGENT, "static": False}]
    results = [_episode("expert", 0, log_path, None), stack0,
               _episode("stack", 1, log_path, steady), _episode("expert", 1, log_path, None)]
    final = runner.finalize(results)
    agg = final["stack"]["monitor_states"]
    assert agg["episodes"] == 2 and agg["transitions_per_episode"] == pytest.approx(2.0)
    assert agg["share"]["NOMINAL"] == pytest.approx((13 / 30 + 1.0) / 2)
    assert sum(agg["share"].values()) == pytest.approx(1.0)
    assert final["expert"]["monitor_states"] is None

    failed = [r for r in final["episodes"] if r["failures"]]
    assert [r["spec"]["seed"] for r in failed] == [0]
    r = failed[0]
    r["bev"] = R.episode_bev(r, tmp_path / "bev", gif=False)
    png = tmp_path / "bev" / "highway-s0-stack_timeline.png"
    assert r["bev"]["timeline"] == str(png) and png.is_file()
    img = np.asarray(Image.open(png).convert("RGB")).astype(int)

    def has_colour(image, hex_colour: str, tol: int = 12) -> bool:
        rgb = np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])
        return bool((np.abs(image - rgb).max(axis=-1) <= tol).any())

    # the transition lines are drawn in the colour of the state they enter
    for state in ("DEGRADED", "FALLBACK", "MINIMAL_RISK"):
        assert has_colour(img, bev.MONITOR_COLOURS[state]), state
    # the BEV draws the monitor state (path and legend); without a monitor it does not
    key_png = np.asarray(Image.open(r["bev"]["png"]).convert("RGB")).astype(int)
    plain = dict(r, metrics=dict(r["metrics"], monitor=None))
    plain_png = np.asarray(Image.open(R.episode_bev(plain, tmp_path / "plain", gif=False)["png"])
                           .convert("RGB")).astype(int)
    assert has_colour(key_png, bev.MONITOR_COLOURS["DEGRADED"])
    assert not has_colour(plain_png, bev.MONITOR_COLOURS["DEGRADED"])

    paths = R.write_report(final, {"suite": "unit"}, tmp_path, bev_paths={
        "highway-s0-stack": r["bev"]["png"]})
    text = open(paths["report"]).read()
    assert "## Monitor states per configuration" in text
    row = next(line for line in text.splitlines() if line.startswith("| stack |")
               and "%" in line and "transitions" not in line and line.count("|") == 8)
    assert "71.7%" in row and "2.00" in row   # NOMINAL (13/30 + 1) / 2, transitions / episode
    assert "| expert |" not in text.split("## Monitor states per configuration")[1].split("##")[0]
    assert "monitor: 4 transition(s) (1.0 s NOMINAL->DEGRADED (planner_sigma)" in text
    assert f"timeline: `{png}`" in text
    # why it left NOMINAL: the transitions into worse states by their first reason
    handovers = text.split("## Why the monitor left NOMINAL")[1].split("##")[0]
    assert "| stack | FALLBACK | unexplained_occupancy | 1 | 1 | 13.3% |" in handovers   # 8 of the 60 cycles
    summary = json.loads(open(paths["summary"]).read())
    ep = next(e for e in summary["episodes"] if e["spec"]["seed"] == 0
              and e["spec"]["configuration"] == "stack")
    assert set(ep["metrics"]["monitor"]) == {"timeline", "transitions", "share"}


@pytest.mark.parametrize("reason, kind", [
    ("candidate reaches detected agent 5 (constant velocity) in 2.2 s", "candidate reaches detected agent"),
    ("CRITICAL unjustified_braking: candidate brakes from 22.4 to 13.5 m/s within 3 s with no cause",
     "CRITICAL unjustified_braking: candidate brakes"),
    ("CRITICAL offroad: off-road: the ego footprint (corner) leaves the drivable area in 2.0 s at (1, 2)",
     "CRITICAL offroad: off-road: the ego footprint"),
    ("CRITICAL offroad: off-road: candidate leaves the drivable area in 3.0 s at (-6.1, 5.2)",
     "CRITICAL offroad: off-road: candidate leaves the drivable area"),
    ("quantisation error 10.724 (agent 10)", "quantisation error"),
    ("forecast conflict with agent 17 (mode 4, p=0.12) in 1.5 s", "forecast conflict with agent"),
    ("CRITICAL camera_fault: camera frozen", "CRITICAL camera_fault: camera frozen"),
    ("", "(no reason)"),
    ("12.0", "(no reason)"),
])
def test_reason_kind_drops_the_values(reason, kind):
    assert M.reason_kind(reason) == kind


def test_handover_reasons_count_worse_transitions_and_their_cycles():
    # 30 cycles: NOMINAL 10, DEGRADED 5 (sigma), FALLBACK 8 (occupancy), MINIMAL_RISK 4, NOMINAL 3
    mon = M.monitor_summary(samples())
    other = M.monitor_summary(samples([(NOMINAL, 0.9, ())] * 5 + [(FALLBACK, 0.2, ("unexplained_occupancy 7 points",))] * 5))
    rows = M.handover_reasons([mon, other])
    by = {(r["to"], r["reason"]): r for r in rows}
    # the recovery MINIMAL_RISK -> NOMINAL is not a handover; every other change is
    assert set(by) == {("DEGRADED", "planner_sigma"), ("FALLBACK", "unexplained_occupancy"),
                       ("MINIMAL_RISK", "fallback_timeout")}
    occ = by[("FALLBACK", "unexplained_occupancy")]
    assert occ["transitions"] == 2 and occ["episodes"] == 2
    assert occ["cycle_share"] == pytest.approx((8 + 5) / 40)     # up to the next change / the end
    assert by[("DEGRADED", "planner_sigma")]["cycle_share"] == pytest.approx(5 / 40)
    assert by[("MINIMAL_RISK", "fallback_timeout")]["cycle_share"] == pytest.approx(4 / 40)
    assert rows[0] is occ                                         # most cycles first
    assert M.handover_reasons([]) == []
    assert M.handover_reasons([M.monitor_summary(samples([(NOMINAL, 1.0, ())] * 4))]) == []


def test_report_without_a_monitor_has_no_monitor_table(tmp_path):
    results = [_episode("expert", 0, "", None), _episode("stack", 0, "", None)]
    text = open(R.write_report(runner.finalize(results), {"suite": "unit"}, tmp_path)["report"]).read()
    assert "Monitor states" not in text


def test_timeline_png_refuses_an_empty_timeline(tmp_path):
    with pytest.raises(ValueError, match="empty"):
        bev.render_monitor_timeline_png(np.arange(3) * 0.1, np.ones(3), {"timeline": []},
                                        tmp_path / "x.png")


def test_timeline_lists_its_numbered_transitions_under_the_plot(tmp_path):
    transitions = [{"t_s": 0.1 * k, "from": "NOMINAL" if k % 2 else "FALLBACK", "to": "FALLBACK" if k % 2 else "NOMINAL",
                    "reasons": [f"CRITICAL reason {k} " + "x" * 120]} for k in range(1, 31)]
    monitor = {"timeline": [[0.1 * k, "NOMINAL", 1.0] for k in range(40)], "transitions": transitions}
    lines = bev.monitor_transition_lines(monitor, max_reason_chars=40)
    assert len(lines) == 30
    assert lines[0].startswith(" 1    0.1 s  NOMINAL->FALLBACK: CRITICAL reason 1 ")
    assert lines[0].endswith("...") and len(lines[0].split(": ", 1)[1]) == 40
    few, many = tmp_path / "few.png", tmp_path / "many.png"
    bev.render_monitor_timeline_png(np.arange(40) * 0.1, np.ones(40), {**monitor, "transitions": transitions[:2]}, few)
    bev.render_monitor_timeline_png(np.arange(40) * 0.1, np.ones(40), monitor, many, max_listed=10)
    h_few, h_many = Image.open(few).size[1], Image.open(many).size[1]
    # the list grows the figure by a line per transition, up to max_listed + the "more" line
    assert h_many - h_few == pytest.approx(0.115 * (11 - 2) * bev.DEFAULT_DPI, abs=3)
