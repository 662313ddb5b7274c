"""The full stack's closed-loop graph (config/graph/sim_stack.yaml, configuration `stack`) is the
planner's graph (sim_planner.yaml, the planner without a monitor) plus monitor_node, with the arbiter
requiring the monitor and waiting for its status of each stamp: every other node identical, so the
two configurations compared in one run cannot drift apart."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _graph(name: str) -> dict:
    return yaml.safe_load((ROOT / "config" / "graph" / name).read_text())


def test_stack_graph_is_the_planner_graph_plus_the_monitor():
    from tps_eval.suite import DEFAULT_GRAPHS

    assert Path(DEFAULT_GRAPHS["stack"]).name == "sim_stack.yaml"
    stack, planner = _graph("sim_stack.yaml"), _graph("sim_planner.yaml")
    assert {k: v for k, v in stack.items() if k not in ("name", "nodes")} == \
        {k: v for k, v in planner.items() if k not in ("name", "nodes")}
    nodes = {n["name"]: n for n in stack["nodes"]}
    planner_nodes = {n["name"]: n for n in planner["nodes"]}
    (monitor,) = [n for n in stack["nodes"] if n["executable"] == "monitor_node"]
    assert set(nodes) - set(planner_nodes) == {monitor["name"]}
    bridge, pbridge = nodes["sim_bridge"]["parameters"], planner_nodes["sim_bridge"]["parameters"]
    assert bridge.pop("wait_for_nodes").split(",") == pbridge.pop("wait_for_nodes").split(",") + [monitor["name"]]
    bridge.pop("sync_timeout_s"), pbridge.pop("sync_timeout_s")
    arb, parb = nodes["trajectory_arbiter"].pop("parameters"), planner_nodes["trajectory_arbiter"].pop("parameters")
    assert arb["monitor_required"] is True and parb["monitor_required"] is False
    assert arb["monitor_wait_s"] > 0.0 and arb["candidate_wait_s"] == parb["candidate_wait_s"]
    assert {k: v for k, v in nodes.items() if k != monitor["name"]} == planner_nodes
    # the monitor reads what the planner, perception and the bridge publish, and the arbiter and
    # the fallback read what it publishes
    r = monitor["remaps"]
    planner_node = nodes["planner"]["remaps"]
    assert r["~/input/candidate_trajectory"] == planner_node["~/output/trajectory"]
    assert r["~/input/forecasts"] == planner_node["~/output/forecasts"]
    assert r["~/input/scene"] == planner_node["~/output/scene"]
    assert r["~/input/tokens"] == nodes["perception"]["remaps"]["~/output/tokens"]
    assert r["~/input/points"] == nodes["perception"]["remaps"]["~/input/points"]
    assert r["~/input/traffic_lights"] == nodes["traffic_light_reader"]["remaps"]["~/output/traffic_lights"]
    assert r["~/output/status"] == nodes["trajectory_arbiter"]["remaps"]["~/input/monitor_status"] \
        == nodes["fallback"]["remaps"]["~/input/monitor_status"]
    params = yaml.safe_load((ROOT / monitor["params"][0]).read_text())["/**"]["ros__parameters"]
    assert params, "monitor_node.param.yaml has no parameters"
