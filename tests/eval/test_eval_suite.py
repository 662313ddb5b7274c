"""Suites, seeds, scoring against the expert and reports (no ROS, no simulator run)."""

from __future__ import annotations

import json

import pytest
from tps_eval import report as R
from tps_eval import runner
from tps_eval.suite import SuiteError, load_suite, parse_suite, plan_episodes

SCENARIO_FAMILIES = 10   # 9 families + the dense-cycle traffic lights (issue 12)
DEFAULT_MIN_EPISODES = 40


def test_suite_seeds_errors_name_the_field_and_label_the_split():
    base = {"cases": [{"scenario": "highway"}]}
    for bad in ("9:9", "a:b", "-1", "1,1", ""):
        with pytest.raises(SuiteError, match="seeds"):
            parse_suite(dict(base, seeds=bad))
    suite = parse_suite(dict(base, seeds={"split": "val", "count": 2}))
    assert suite.seeds == (1000, 1001)
    assert suite.seed_set.split == "val" and not suite.seed_set.held_out


def test_shipped_suites_cover_every_scenario_on_test_seeds():
    from tps_sim import splits
    from tps_sim.world.scenarios import SCENARIOS

    default = load_suite("default")
    smoke = load_suite("smoke")
    for suite in (default, smoke):
        assert {c.scenario for c in suite.cases} == set(SCENARIOS)
        assert all(splits.split_of(s) == "test" for s in suite.seeds)
    # the fallback alone is measured beside the stack (issue 13); the smoke demo stays short
    assert set(default.configurations) == {"stack", "fallback", "expert", "naive"}
    assert set(smoke.configurations) == {"stack", "expert", "naive"}
    assert len(SCENARIOS) == SCENARIO_FAMILIES
    assert len(default.cases) * len(default.seeds) >= DEFAULT_MIN_EPISODES
    assert len(smoke.seeds) == 1
    # --seeds overrides the file
    assert load_suite("smoke", "5:7").seeds == (5, 6)


def test_bad_suites_name_the_field(tmp_path):
    base = {"name": "x", "seeds": "0:1", "cases": [{"scenario": "highway"}]}
    with pytest.raises(SuiteError, match=r"cases\[0\].scenario"):
        parse_suite(dict(base, cases=[{"scenario": "moon"}]))
    with pytest.raises(SuiteError, match="density"):
        parse_suite(dict(base, cases=[{"scenario": "highway", "density": -1}]))
    with pytest.raises(SuiteError, match="unknown keys"):
        parse_suite(dict(base, extra=1))
    with pytest.raises(SuiteError, match="configurations"):
        parse_suite(dict(base, configurations=["stack", "genius"]))
    with pytest.raises(SuiteError, match="no file"):
        load_suite("no_such_suite")
    # expert is added when stack/fallback/naive need it for EP
    assert "expert" in parse_suite(dict(base, configurations=["stack"])).configurations
    assert parse_suite(dict(base, configurations=["fallback"])).configurations == ("fallback", "expert")
    # --configurations overrides the file's list
    only = load_suite("default", "1000:1001", "fallback,naive")
    assert only.configurations == ("fallback", "naive", "expert")
    assert [s.configuration for s in plan_episodes(only, tmp_path)][:3] == ["fallback", "naive", "expert"]
    assert all(s.graph.endswith("config/graph/sim_fallback.yaml") for s in plan_episodes(only, tmp_path)
               if s.configuration == "fallback")
    with pytest.raises(SuiteError, match="configurations"):
        load_suite("default", None, "fallback,oracle")
    specs = plan_episodes(parse_suite(dict(base, seeds="0:2")), tmp_path)
    assert [s.key for s in specs] == ["highway-s0-stack", "highway-s0-expert", "highway-s0-naive",
                                     "highway-s1-stack", "highway-s1-expert", "highway-s1-naive"]


def _result(cfg: str, seed: int, progress: float, faults: int = 0, status: str = "ok") -> dict:
    metrics = None if status != "ok" else {
        "progress_m": progress, "nc": 0.0 if faults else 1.0, "dac": 1.0, "ttc": 1.0,
        "comfort": 1.0, "ep": None, "pdm_score": None, "route_completion": 1.0,
        "at_fault_collisions": faults, "collisions": faults, "distance_m": progress,
        "step_timeouts": 0, "fallback_share": 1.0 if cfg != "expert" else None,
        "mode_transitions": 0, "e2e_latency_p50_ms": 5.0, "e2e_latency_p99_ms": 9.0,
        "collision_events": [], "off_road_steps": 0, "end_reason": "duration"}
    return {"spec": {"case_id": "highway", "scenario": "highway", "seed": seed,
                     "configuration": cfg},
            "status": status, "metrics": metrics, "error": "" if status == "ok" else "boom",
            "log_path": "", "episode_dir": "", "wall_s": 1.0, "diagnostics_errors": []}


def test_finalize_scores_against_the_expert_and_counts_errors(tmp_path):
    results = [_result("expert", 0, 200.0), _result("stack", 0, 100.0),
               _result("naive", 0, 150.0, faults=1), _result("expert", 1, 3.0),
               _result("stack", 1, 1.0), _result("naive", 1, 0.0, status="error"),
               _result("fallback", 0, 180.0), _result("fallback", 1, 2.0)]
    final = runner.finalize(list(reversed(results)))  # order of completion must not matter
    assert final == runner.finalize(results)
    by_key = {(r["spec"]["configuration"], r["spec"]["seed"]): r for r in final["episodes"]}
    assert by_key[("stack", 0)]["metrics"]["ep"] == pytest.approx(0.5)
    assert by_key[("stack", 1)]["metrics"]["ep"] == 1.0  # expert made < 5 m
    assert by_key[("expert", 0)]["metrics"]["ep"] == 1.0
    assert by_key[("naive", 0)]["failures"] == ["collision"]
    assert by_key[("naive", 1)]["failures"] == ["error"]
    assert final["stack"]["collision_rate"] == 0.0
    assert final["naive"]["errors"] == 1 and final["naive"]["collision_rate"] == 1.0
    assert final["stack"]["pdm_score"] == pytest.approx(((5 + 2.5 + 2) / 12 + 1.0) / 2)
    paths = R.write_report(final, {"suite": "unit"}, tmp_path,
                           {"stack": runner.per_case_table(final)})
    text = open(paths["report"]).read()
    assert "highway-s1-naive" in text and "boom" in text
    summary = json.loads(open(paths["summary"]).read())
    assert set(summary) >= {"stack", "fallback", "expert", "naive", "episodes", "run"}
    # the keys the monitor issue's checks read, per configuration
    for cfg in ("stack", "fallback", "naive", "expert"):
        assert {"collision_rate", "route_completion", "pdm_score", "fallback_share"} <= set(summary[cfg])
    assert summary["fallback"]["pdm_score"] == pytest.approx(((5 + 4.5 + 2) / 12 + 1.0) / 2)
    assert [row["configuration"] for row in R.aggregate_rows(final)] == ["stack", "fallback", "naive",
                                                                         "expert"]


def test_case_node_parameters_reach_only_the_graphs_that_have_the_node(tmp_path):
    from tps_bringup.graph import load_graph

    specs = {s.key: s for s in plan_episodes(load_suite("demo"), tmp_path)}
    blackout = specs["cut_in_detector_blackout-s9000-stack"]
    ort = {"planner": {"backend": "onnxruntime"}}                # the demo's default for every case
    assert blackout.node_parameters == {"perception": {"fault_blackout": True, "fault_onset_s": 3.0}, **ort}
    assert specs["cut_in_detector_blackout-s9000-expert"].node_parameters == {}  # no detector there
    assert specs["cut_in-s9000-stack"].node_parameters == ort
    assert specs["highway_planner_crash-s9000-stack"].node_parameters == {
        "planner": {"backend": "onnxruntime", "fault_crash_at_s": 3.0}}
    # the override goes through the graph runner's schema check onto the perception node
    graph = load_graph(blackout.graph, runner.node_overrides(blackout), check_executables=False)
    assert graph.node("perception").parameters["fault_blackout"] is True
    plain = load_graph(blackout.graph, check_executables=False)
    assert plain.node("perception").parameters.get("fault_blackout") in (None, False)
    base = {"name": "x", "seeds": "0:1", "configurations": ["stack"]}
    typo = parse_suite(dict(base, cases=[{"scenario": "highway",
                                          "node_parameters": {"percepton": {"fault_blackout": True}}}]))
    with pytest.raises(SuiteError, match="percepton"):
        plan_episodes(typo, tmp_path)
    for bad in ({"perception": True}, {"perception": {}}, {"perception": {"x": [1]}}, [1]):
        with pytest.raises(SuiteError, match="node_parameters"):
            parse_suite(dict(base, cases=[{"scenario": "highway", "node_parameters": bad}]))
    # the defaults' node parameters reach every case, merged per node with a case's own (case wins)
    merged = parse_suite(dict(base, defaults={"node_parameters": {"planner": {"backend": "onnxruntime-int8",
                                                                              "threads": 1}}},
                              cases=[{"scenario": "highway"},
                                     {"scenario": "highway", "id": "crash",
                                      "node_parameters": {"planner": {"fault_crash_at_s": 3.0, "threads": 2},
                                                          "perception": {"fault_blackout": True}}}]))
    plain_case, crash = merged.cases
    assert plain_case.node_parameters == {"planner": {"backend": "onnxruntime-int8", "threads": 1}}
    assert crash.node_parameters == {"planner": {"backend": "onnxruntime-int8", "threads": 2, "fault_crash_at_s": 3.0},
                                     "perception": {"fault_blackout": True}}


def test_recording_holds_step_zero_for_the_recorder_only_where_the_stack_publishes():
    from tps_bringup.graph import load_graph
    from tps_eval.replay.recorder import READY_NODE

    stack = load_graph("config/graph/sim_stack.yaml", check_executables=False)
    outputs = runner.graph_output_topics(stack)
    assert {"/tps/planning/fallback_trajectory", "/carla/ego_vehicle/vehicle_control_cmd",
            "/tps/perception/tokens"} <= outputs
    assert not any(t.startswith("/carla/ego_vehicle/lidar") for t in outputs)   # the bridge's
    # the graph's own wait (perception loading its models) is kept, the recorder is added
    (override,) = runner._record_overrides(stack)
    held = load_graph("config/graph/sim_stack.yaml", [override], check_executables=False)
    assert held.node("sim_bridge").parameters["wait_for_nodes"] == f"perception,planner,monitor,{READY_NODE}"
    fallback = load_graph("config/graph/sim_fallback.yaml", check_executables=False)
    assert runner._record_overrides(fallback) == [f"nodes.sim_bridge.parameters.wait_for_nodes='{READY_NODE}'"]
    # no stack output to wait for: the expert's bridge must not wait for a node that never comes
    assert runner._record_overrides(load_graph("config/graph/sim_expert.yaml", check_executables=False)) == []


def test_demo_text_shows_the_tables_and_where_everything_is(tmp_path):
    from tps_eval.cli import demo_text, episode_line

    results = [_result("expert", 0, 200.0), _result("stack", 0, 100.0, faults=1)]
    edir = tmp_path / "episodes" / "highway-s0-stack"
    edir.mkdir(parents=True)
    (edir / "episode.mcap").write_bytes(b"")
    results[1]["episode_dir"] = str(edir)
    final = runner.finalize(results)
    final["case_rows"] = {"stack": runner.per_case_table(final)}
    final["run"] = {"wall_s": 12.3, "workers": 2, "host_cpus": 2}
    final["paths"] = {"report": "R.md", "summary": "S.json", "bev": {"k": "a.png"},
                      "animation": "x.gif"}
    text = demo_text(final)
    table = text.split("\n\n")[0].splitlines()
    assert "fallback share" in table[1] and "collisions" in table[1]
    row = table[3].split()
    assert row[0] == "highway" and row[3] == "1"            # case, episodes, errors, collisions
    assert "100.0%" in table[3]                             # the stack's fallback share
    assert "wall time: 12 s for 2 episodes" in text and "report: R.md" in text
    assert "host load unknown" in text
    final["run"]["host_load_1min"] = {"start": 0.4, "end": 2.1}
    assert "host load 0.4 -> 2.1)" in demo_text(final)        # idle before: no warning
    final["run"]["host_load_1min"] = {"start": 3.5, "end": 5.0}
    assert "host load 3.5 -> 5.0 (busy before the run started: over 2 CPUs" in demo_text(final)
    assert f"bags: 1 x {tmp_path / 'episodes'}" in text and "BEV animation: x.gif" in text
    line = episode_line(next(r for r in final["episodes"] if r["spec"]["configuration"] == "stack"), 2, 2)
    assert line.startswith("[2/2] highway-s0-stack: ok") and "at-fault collisions 1" in line
    final["perception_rows"] = [{"case": "highway", "lidar_frames": 202, "detection_frames": 92,
                                 "frames_with_agents": 91, "fault_frames": 0, "answered_share": 92 / 202}]
    block = demo_text(final).split("Perception in the loop")[1].splitlines()
    assert block[3].split() == ["highway", "202", "92", "46%", "91", "0"]


def test_a_case_instruction_reaches_the_bridge_and_a_bad_one_is_named(tmp_path):
    from tps_bringup.graph import load_graph

    base = {"name": "x", "seeds": "1000:1001", "configurations": ["fallback"]}
    with pytest.raises(SuiteError, match=r"cases\[0\]\.instruction: 'take_exit_2' is not an instruction of scenario"):
        parse_suite(dict(base, cases=[{"scenario": "highway", "instruction": "take_exit_2"}]))
    with pytest.raises(SuiteError, match=r"instruction: 'change_lane_left' is not an instruction of scenario 'lights'"):
        parse_suite(dict(base, cases=[{"scenario": "lights", "instruction": "change_lane_left"}]))
    suite = parse_suite(dict(base, cases=[{"scenario": "highway", "id": "left", "instruction": "change_lane_left"},
                                          {"scenario": "highway"}]))
    specs = {s.key: s for s in plan_episodes(suite, tmp_path)}
    assert specs["left-s1000-fallback"].instruction == "change_lane_left"
    assert specs["highway-s1000-expert"].instruction == ""
    spec = specs["left-s1000-expert"]
    (tmp_path / spec.key).mkdir()
    graph = load_graph(spec.graph, runner.bridge_overrides(spec, tmp_path / spec.key), check_executables=False)
    assert graph.node(runner.BRIDGE_NODE).parameters["instruction"] == "change_lane_left"
