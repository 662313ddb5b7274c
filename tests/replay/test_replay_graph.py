"""tps-replay on the real node graph (perception, fallback, arbiter as separate processes over real
DDS, sim time): lockstep determinism, the regression table, real-time latency/drop reporting, a
foreign driver's bag adapted by configuration only, and result bags read back with ``mcap`` +
``mcap-ros2-support`` (not the writer's library).

Four replays of a 3 s simulator bag (31 lidar frames), ~30 s each on 2 loaded cores.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from replay_bags import (
    FOREIGN_FRAME,
    REPO,
    SIM_BAG,
    foreign_config_text,
    write_foreign_bag,
)

pytestmark = [pytest.mark.ros, pytest.mark.slow]

NODES = ("perception", "fallback", "trajectory_arbiter")
DETECTIONS = "/tps/perception/detections"
FALLBACK_TRAJ = "/tps/planning/fallback_trajectory"
SELECTED_TRAJ = "/tps/planning/trajectory"
REPLAY_TIMEOUT_S = 240
REPORT_KEYS = ("latency_ms", "dropped", "unreadable", "frames", "monitor_state_share")
SIM_FRAMES = 31                      # 3 s at 10 Hz, t = 0 included
# Foreign-driver replay vs the simulator's own: the clouds are the same points re-expressed in
# another frame (float64 there, float32 again after the stack's transform), so boxes may move by
# rounding only; scores likewise.
FOREIGN_CENTER_TOL_M = 0.05
FOREIGN_SCORE_TOL = 0.02
FOREIGN_TRAJ_TOL_M = 0.05
FOREIGN_MIN_DETECTIONS = 20          # the comparison must cover real detections, not empty frames
# Real time: how late a lidar frame may go out against its schedule. Anchored at the preamble, the
# 0.3 s settling pause after it made frames 0..k late by up to 0.3 s, sent as one burst (the graph's
# depth-1 queues kept only the last); generous for a loaded host's sleep overshoot.
MAX_PUBLISH_LAG_MS = 150.0


def _cli(*args: str, timeout: float = REPLAY_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tps_eval.replay.cli", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO)


@pytest.fixture(scope="module")
def case():
    from tps_eval.replay.regression import load_cases

    return next(c for c in load_cases() if c.name == "cut_in_perception_fallback")


@pytest.fixture(scope="module")
def lockstep_cli(tmp_path_factory, case):
    """``tps-replay BAG --mode lockstep --config`` (the regression case's configuration) through the
    console script's code path in a subprocess."""
    out = tmp_path_factory.mktemp("lockstep_cli")
    cfg = out / "replay.yaml"
    cfg.write_text(f"nodes: [{', '.join(case.nodes)}]\nplay: [{', '.join(case.inputs)}]\n")
    proc = _cli(str(SIM_BAG), "--mode", "lockstep", "--config", str(cfg), "--out", str(out / "run"), "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out / "run"


@pytest.fixture(scope="module")
def regression_verdict(tmp_path_factory, case):
    """The regression case run in this process (the same replay a second time)."""
    from tps_eval.replay.regression import run_case

    return run_case(case, tmp_path_factory.mktemp("regression") / "run", log=lambda s: None)


def test_lockstep_report_has_the_promised_fields(lockstep_cli):
    report = json.loads((lockstep_cli / "report.json").read_text())
    for key in REPORT_KEYS:
        assert key in report, key
    assert report["frames"] == SIM_FRAMES
    assert report["unreadable"] == 0
    # discovery was confirmed before frame 0, node to node too (the arbiter once lost frame 0)
    assert not [n for n in report["run"]["notes"] if "not confirmed matched" in n], report["run"]["notes"]
    assert set(report["latency_ms"]) == set(NODES)
    for node in NODES:
        assert report["dropped"][node] == 0, (node, report["dropped"])
        assert report["latency_ms"][node]["n"] == SIM_FRAMES
        assert 0 < report["latency_ms"][node]["p50"] <= report["latency_ms"][node]["p99"]
    # No monitor node in this graph yet: reported as such, not invented.
    assert report["monitor_state_share"] is None and "no monitor" in report["monitor"]
    assert report["fallback_share"] == 1.0           # no planner: the arbiter selects the fallback
    assert report["detections"]["vs_ground_truth"]["recall"] > 0.5
    assert (lockstep_cli / "report.md").read_text().startswith("# Replay report")
    for png in ("timeline.png", "latency.png"):
        assert (lockstep_cli / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_lockstep_twice_gives_identical_outputs(lockstep_cli, regression_verdict, case):
    """Two lockstep replays of the same bag (a subprocess and this process, started at different
    machine load): every output message identical, field by field, with zero tolerance (only the
    nodes' own wall-clock processing time differs)."""
    from tps_eval.replay.compare import CompareSpec, compare_bags

    spec = CompareSpec(topics=case.outputs, ignore=("processing_time_ms",), default_tolerance=0.0)
    result = compare_bags(lockstep_cli / "result.mcap", regression_verdict.result_bag, spec)
    assert result.ok, result.summary()
    assert result.compared == {t: SIM_FRAMES for t in case.outputs}


def test_regression_case_passes_against_its_reference(regression_verdict):
    assert regression_verdict.ok, regression_verdict.summary()


def test_regression_checks_each_nodes_processing_budget(regression_verdict, case):
    """The case passed with every node's processing time (median, from its recorded processing_time
    diagnostics) within the ERROR budget of its parameter file; the same recorded replay fails, naming
    the node, its median and the budget, once that budget is below what the node took."""
    import dataclasses

    from tps_eval.replay.regression import check_budgets, processing_budgets

    report = regression_verdict.report
    assert set(regression_verdict.processing_budgets) == set(NODES)
    for node, budget in regression_verdict.processing_budgets.items():
        assert report["processing_ms"][node]["n"] >= SIM_FRAMES, node
        assert report["processing_ms"][node]["p50"] <= budget.ms, node
    # only the processing budget is under test here (the latency budget has its own unit test)
    tiny = dataclasses.replace(case, latency_budget_ms={}, processing_budget_ms={"fallback": 0.001})
    (failure,) = check_budgets(tiny, report, processing_budgets(tiny))
    p50 = report["processing_ms"]["fallback"]["p50"]
    assert failure.startswith(f"fallback: processing time p50 {p50:.1f} ms over its error budget 0.001 ms")


def test_regression_fails_when_an_output_moves(regression_verdict, case, tmp_path):
    """The same comparison fails once one output field of the replay is moved beyond its tolerance
    (and still passes when moved within it)."""
    from tps_eval.replay.bagio import ResultBagWriter, open_reader
    from tps_eval.replay.compare import compare_bags
    from tps_eval.replay.regression import write_reference

    tol = case.tolerances["agents.*.center.*"]

    def moved(by_m: float) -> Path:
        target = tmp_path / f"moved_{by_m:g}.mcap"
        writer = ResultBagWriter(target)
        done = False
        with open_reader(regression_verdict.result_bag) as reader:
            conns = [c for c in reader.connections if c.topic in case.outputs]
            for conn, t_ns, raw in reader.messages(connections=conns):
                msg = reader.deserialize(raw, conn.msgtype)
                if conn.topic == DETECTIONS and msg.agents and not done:
                    msg.agents[0].center.x += by_m
                    done = True
                writer.write(conn.topic, conn.msgtype, bytes(reader.typestore.serialize_cdr(msg, conn.msgtype)),
                             t_ns)
        writer.close()
        assert done
        return target

    reference = write_reference(regression_verdict.result_bag, tmp_path / "ref.mcap", case.outputs)
    within = compare_bags(reference, moved(0.5 * tol), case.compare_spec())
    assert within.ok, within.summary()
    beyond = compare_bags(reference, moved(3.0 * tol), case.compare_spec())
    assert not beyond.ok
    assert beyond.count == 1
    diff = beyond.differences[0]
    assert diff.topic == DETECTIONS and diff.path == "agents.0.center.x" and diff.tolerance == tol


def test_result_bags_decode_with_mcap_ros2(lockstep_cli):
    """Every message of the result bag decodes with mcap + mcap-ros2-support from the embedded
    ros2msg schemas; the counts equal what the report says was recorded."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    report = json.loads((lockstep_cli / "report.json").read_text())
    counts: dict[str, int] = {}
    with open(lockstep_cli / "result.mcap", "rb") as f:
        reader = make_reader(f, decoder_factories=[DecoderFactory()])
        summary = reader.get_summary()
        for schema in summary.schemas.values():
            assert schema.encoding == "ros2msg" and schema.data, schema.name
        for _, channel, _, decoded in reader.iter_decoded_messages():
            assert decoded is not None
            counts[channel.topic] = counts.get(channel.topic, 0) + 1
    assert counts == report["recorded"]
    assert counts[DETECTIONS] == counts[SELECTED_TRAJ] == SIM_FRAMES
    assert {"/tf_static", "/diagnostics", FALLBACK_TRAJ} <= set(counts)
    assert sum(counts.values()) == summary.statistics.message_count


def test_realtime_reports_latency_and_drops(tmp_path):
    """Real time at twice the bag's rate (no --config: the simulator's own bag): every node's
    latency percentiles and drops are reported; answered + dropped = frames; every lidar frame went
    out on its schedule (no burst after the preamble)."""
    out = tmp_path / "rt"
    proc = _cli(str(SIM_BAG), "--mode", "realtime", "--rate", "2", "--nodes", ",".join(NODES),
                "--markers", "--out", str(out), "--quiet", "--no-plots")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["run"]["mode"] == "realtime" and report["run"]["rate"] == 2.0
    assert report["frames"] == SIM_FRAMES
    lag = report["run"]["lidar_publish_lag_ms"]      # the input itself was real time, from frame 0 on
    assert lag["n"] == SIM_FRAMES and lag["max"] < MAX_PUBLISH_LAG_MS, lag
    for node in NODES:
        lat, dropped = report["latency_ms"][node], report["dropped"][node]
        assert isinstance(dropped, int) and dropped >= 0
        assert lat is not None and lat["n"] + dropped == SIM_FRAMES, (node, lat, dropped)
        assert all(math.isfinite(lat[q]) and lat[q] > 0 for q in ("p50", "p95", "p99"))
    md = (out / "report.md").read_text()
    assert "| perception |" in md and "dropped" in md
    # --markers: the stack_markers node drew the outputs (boxes, trajectories) into the result bag
    assert report["recorded"].get("/tps/viz/markers", 0) > 0
    assert "stack_markers" in report["run"]["nodes"]


def _detections_by_stamp(bag: Path) -> dict:
    from tps_eval.replay.bagio import read_messages

    return {(m.header.stamp.sec, m.header.stamp.nanosec): m for _, _, _, m in read_messages(bag, {DETECTIONS})}


def test_foreign_driver_bag_by_configuration_only(tmp_path, lockstep_cli):
    """A bag as another driver records it (sqlite3; /velodyne_points, float64 xyz with padding,
    ring/time fields, 'reflectivity', organised and unorganised clouds, frame 'velodyne' at another
    mount given by the bag's
    /tf_static; truncated and out-of-order clouds) replays with a configuration file only and
    gives the simulator bag's detections within tolerance; bad messages are counted, not fatal."""
    foreign = write_foreign_bag(SIM_BAG, tmp_path / "foreign_bag")
    assert foreign.corrupt >= 2 and foreign.out_of_order == 1
    cfg = tmp_path / "foreign.yaml"
    cfg.write_text(foreign_config_text(NODES))
    out = tmp_path / "run"
    proc = _cli(str(foreign.path), "--config", str(cfg), "--out", str(out), "--quiet", "--no-plots")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == SIM_FRAMES
    assert report["unreadable"] == foreign.corrupt
    assert report["input"]["non_monotonic_total"] == foreign.out_of_order
    assert all(d == 0 for d in report["dropped"].values()), report["dropped"]

    ref, got = _detections_by_stamp(lockstep_cli / "result.mcap"), _detections_by_stamp(out / "result.mcap")
    assert set(ref) == set(got)
    compared = 0
    for stamp, a in ref.items():
        b = got[stamp]
        assert b.status == 0, b.status_message                  # no frame rejected (frame id, fields)
        assert len(a.agents) == len(b.agents), stamp
        for da, db in zip(sorted(a.agents, key=lambda d: (d.center.x, d.center.y)),
                          sorted(b.agents, key=lambda d: (d.center.x, d.center.y)), strict=True):
            assert da.class_id == db.class_id
            assert math.hypot(da.center.x - db.center.x, da.center.y - db.center.y) <= FOREIGN_CENTER_TOL_M
            assert abs(da.score - db.score) <= FOREIGN_SCORE_TOL
            compared += 1
    assert compared >= FOREIGN_MIN_DETECTIONS

    from tps_eval.replay.bagio import read_messages

    def traj(bag):
        return {(m.header.stamp.sec, m.header.stamp.nanosec):
                np.array([[p.pose.position.x, p.pose.position.y] for p in m.points])
                for _, _, _, m in read_messages(bag, {FALLBACK_TRAJ})}

    ta, tb = traj(lockstep_cli / "result.mcap"), traj(out / "result.mcap")
    assert set(ta) == set(tb)
    worst = max(float(np.abs(ta[k] - tb[k]).max()) for k in ta)
    assert worst <= FOREIGN_TRAJ_TOL_M, worst
    # The extrinsic really came from the bag's /tf_static (the velodyne edge is in the result).
    statics = [tf.child_frame_id for _, _, _, m in read_messages(out / "result.mcap", {"/tf_static"})
               for tf in m.transforms]
    assert FOREIGN_FRAME in statics


@pytest.fixture(scope="module")
def full_stack_verdict(tmp_path_factory):
    """The regression case of the whole learned stack (tokens, lights, planner, monitor, arbiter)."""
    from tps_eval.replay.regression import load_cases, run_case

    (case,) = [c for c in load_cases() if c.name == "cut_in_full_stack"]
    return case, run_case(case, tmp_path_factory.mktemp("full_stack") / "run", log=lambda s: None)


def test_full_stack_regression_case_passes_and_covers_every_learned_output(full_stack_verdict):
    """Tokens, light states, the planner's candidate, forecasts and scene, the monitor's status and
    the selected trajectory: one per lidar frame, all within tolerance of the reference; the
    planner drove (its candidate selected) and the monitor judged every frame."""
    from tps_eval.replay.bagio import open_reader

    case, verdict = full_stack_verdict
    assert verdict.ok, verdict.summary()
    assert verdict.comparison.compared == {t: SIM_FRAMES for t in case.outputs}
    assert set(verdict.processing_budgets) >= {"perception", "planner", "monitor"}
    sources, states = [], []
    with open_reader(verdict.result_bag) as reader:
        for topic, out in (("/tps/planning/trajectory", sources), ("/tps/monitor/status", states)):
            conns = [c for c in reader.connections if c.topic == topic]
            for conn, _, raw in reader.messages(connections=conns):
                msg = reader.deserialize(raw, conn.msgtype)
                out.append(int(msg.source) if topic.endswith("trajectory") else int(msg.state))
    assert len(states) == SIM_FRAMES and 0 in sources, (sources, states)


def test_full_stack_regression_fails_on_a_flipped_monitor_state(full_stack_verdict, tmp_path):
    """A monitor state is an integer: compared exactly, a single flipped state fails the case,
    naming the topic and field."""
    from tps_eval.replay.bagio import ResultBagWriter, open_reader
    from tps_eval.replay.compare import compare_bags
    from tps_eval.replay.regression import write_reference

    case, verdict = full_stack_verdict
    status = "/tps/monitor/status"
    target, done = tmp_path / "flipped.mcap", False
    writer = ResultBagWriter(target)
    with open_reader(verdict.result_bag) as reader:
        conns = [c for c in reader.connections if c.topic in case.outputs]
        for conn, t_ns, raw in reader.messages(connections=conns):
            if conn.topic == status and not done:
                msg = reader.deserialize(raw, conn.msgtype)
                msg.state = (int(msg.state) + 1) % 4
                raw, done = bytes(reader.typestore.serialize_cdr(msg, conn.msgtype)), True
            writer.write(conn.topic, conn.msgtype, raw, t_ns)
    writer.close()
    assert done
    reference = write_reference(verdict.result_bag, tmp_path / "ref.mcap", case.outputs)
    result = compare_bags(reference, target, case.compare_spec())
    assert not result.ok and result.count == 1
    assert result.differences[0].topic == status and result.differences[0].path == "state"
