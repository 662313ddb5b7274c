"""The simulator's ground truth of the traffic lights (``/carla/traffic_lights/status``) is for
recording and evaluation only: no stack node may read it (issue 12). Checked over every graph
file: no node remaps an input onto that topic -- except in the one explicitly named privileged
ablation graph -- and no onboard package names the topic in its source (a node could subscribe
to the absolute name without a remap)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAPHS = sorted((ROOT / "config" / "graph").rglob("*.yaml"))
STATUS_TOPIC = "/carla/traffic_lights/status"
# The only graph allowed to read the ground truth: an ablation, never a stack configuration.
PRIVILEGED_GRAPHS = {"sim_fallback_privileged_lights"}
# Packages that run on a vehicle (DESIGN.md "Layout"): their code never names the topic.
ONBOARD_PACKAGES = ("tps_common", "tps_inference", "tps_perception", "tps_planner")
# Nodes that publish simulator ground truth (the bridge), not stack nodes.
SIMULATOR_EXECUTABLES = {"sim_bridge"}


def _status_readers(graph: dict) -> list[str]:
    """Names of the stack nodes whose remaps route an input onto the status topic."""
    out = []
    for node in graph.get("nodes") or []:
        if node.get("executable") in SIMULATOR_EXECUTABLES:
            continue
        for src, dst in (node.get("remaps") or {}).items():
            if str(dst).strip() == STATUS_TOPIC or str(src).strip() == STATUS_TOPIC:
                out.append(f"{node.get('name')} ({src} -> {dst})")
    return out


def test_there_are_graphs_to_check():
    names = {yaml.safe_load(p.read_text()).get("name") for p in GRAPHS}
    assert {"sim_fallback", "sim_naive", "sim_expert"} <= names
    assert PRIVILEGED_GRAPHS <= names


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: str(p.relative_to(ROOT / "config" / "graph")))
def test_no_stack_node_reads_the_light_ground_truth(path):
    graph = yaml.safe_load(path.read_text())
    readers = _status_readers(graph)
    if graph.get("name") in PRIVILEGED_GRAPHS:
        assert readers, f"{path.name}: the privileged ablation graph should read {STATUS_TOPIC}"
        assert "ablation" in path.read_text().lower()
    else:
        assert not readers, f"{path.name} routes {STATUS_TOPIC} into stack nodes: {readers}"


def test_the_lint_catches_a_reader():
    bad = {"name": "x", "nodes": [{"name": "fallback", "executable": "fallback_node",
                                   "remaps": {"~/input/traffic_lights": STATUS_TOPIC}}]}
    assert _status_readers(bad) == [f"fallback (~/input/traffic_lights -> {STATUS_TOPIC})"]


@pytest.mark.parametrize("package", ONBOARD_PACKAGES)
def test_onboard_code_never_names_the_status_topic(package):
    src = ROOT / "ros2_ws" / "src" / package / package
    offenders = [str(p.relative_to(ROOT)) for p in src.rglob("*.py") if STATUS_TOPIC in p.read_text()]
    assert not offenders
