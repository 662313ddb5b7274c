"""The closed loop's `perception` graph (config/graph/sim_perception.yaml) is the fallback graph plus
perception_node (issue 11): every other node identical to sim_fallback.yaml, so the two cannot
drift apart; perception publishes detections and tokens on the contract topics; no other node reads
them (the fallback never does)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
STACK = REPO / "config" / "graph" / "sim_perception.yaml"
FALLBACK = REPO / "config" / "graph" / "sim_fallback.yaml"
PERCEPTION_TOPICS = {"/tps/perception/detections", "/tps/perception/tokens"}


def _graph(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_stack_graph_is_the_fallback_graph_plus_perception():
    stack, fallback = _graph(STACK), _graph(FALLBACK)
    assert {k: v for k, v in stack.items() if k not in ("name", "nodes")} == \
        {k: v for k, v in fallback.items() if k not in ("name", "nodes")}
    others = [n for n in stack["nodes"] if n["name"] != "perception"]
    bridge = others[[n["name"] for n in others].index("sim_bridge")]
    # the bridge holds step 0 until perception is up (it loads models; no control depends on it)
    assert bridge["parameters"].pop("wait_for_nodes") == "perception"
    assert others == fallback["nodes"], "sim_perception.yaml differs from sim_fallback.yaml beyond perception_node"
    (perception,) = [n for n in stack["nodes"] if n["name"] == "perception"]
    assert perception["executable"] == "perception_node" and perception["package"] == "tps_perception"
    remaps = perception["remaps"]
    assert remaps["~/output/detections"] == "/tps/perception/detections"
    assert remaps["~/output/tokens"] == "/tps/perception/tokens"
    assert remaps["~/input/points"] == "/carla/ego_vehicle/lidar"
    assert perception["parameters"]["reliable_sensor_qos"] is True   # synchronous loop: no lost cloud
    params = yaml.safe_load((REPO / perception["params"][0]).read_text())["/**"]["ros__parameters"]
    assert params["tokenizer_enabled"] is True


def test_no_other_node_reads_perception_outputs():
    for node in _graph(STACK)["nodes"]:
        if node["name"] == "perception":
            continue
        assert not PERCEPTION_TOPICS & set((node.get("remaps") or {}).values()), node["name"]
    # the fallback's own code never subscribes to detections or tokens
    src = (REPO / "ros2_ws/src/tps_planner/tps_planner/nodes/fallback_node.py").read_text()
    subs = re.findall(r"create_subscription\(\s*(\w+)", src)
    assert subs and not {"DetectedAgents", "AgentTokens"} & set(subs), subs


def test_closedloop_configurations_use_their_graphs():
    from tps_eval.suite import DEFAULT_GRAPHS, load_suite

    assert Path(DEFAULT_GRAPHS["stack"]).name == "sim_stack.yaml"
    assert Path(DEFAULT_GRAPHS["perception"]).name == "sim_perception.yaml"
    assert Path(DEFAULT_GRAPHS["fallback"]).name == "sim_fallback.yaml"
    suite = load_suite("smoke")
    assert Path(suite.graphs["stack"]).name == "sim_stack.yaml"



@pytest.mark.ros
@pytest.mark.slow
def test_perception_episode_runs_perception_and_drives_as_the_fallback(tmp_path):
    """One short closed-loop episode per configuration: the perception graph's perception_node runs
    and answers lidar frames, and it drives exactly as the fallback alone (same seed)."""
    from tps_eval.cli import run_suite
    from tps_eval.executors import default_domain_base
    from tps_eval.metrics import EpisodeMetrics

    suite = tmp_path / "stack_vs_fallback.yaml"
    suite.write_text(yaml.safe_dump({
        "name": "stack_vs_fallback", "seeds": "0:1",                 # a TRAIN seed
        "configurations": ["perception", "fallback"],
        "defaults": {"duration_s": 6.0, "density": 0.6, "clutter": "low", "route_goal_m": 50.0},
        "cases": [{"scenario": "cut_in"}]}))
    final = run_suite(str(suite), None, tmp_path / "run", "local", 2, default_domain_base(), None,
                      bev=False, progress=False)
    eps = {r["spec"]["configuration"]: r for r in final["episodes"]}
    for r in eps.values():
        assert r["status"] == "ok", r["error"]
    stack, fallback = eps["perception"]["metrics"], eps["fallback"]["metrics"]
    assert "perception" in stack["node_latency_ms"] and "perception" not in fallback["node_latency_ms"]
    # Step 0 is held until perception is up. No control depends on perception here, so it is not
    # in the synchronous loop's lockstep: it answers the clouds it keeps up with (all of them on
    # an idle host; the newest when behind), never none.
    assert stack["node_latency_ms"]["perception"]["n"] > 0
    ignored = set(EpisodeMetrics.NON_DETERMINISTIC) | {"trajectories_heard", "graph_warning"}
    assert {k: v for k, v in stack.items() if k not in ignored} == \
        {k: v for k, v in fallback.items() if k not in ignored}
