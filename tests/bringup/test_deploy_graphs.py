"""Graphs and launch files agree: every node, parameter file and remap of every graph exists;
every installed launch file parses and names only existing graphs; the deployment arguments map
onto the graphs the same way for ros2 launch and tps-bringup; build_only keeps the model nodes.
Where launch_ros is importable the launch descriptions are built too (it is not on PyPI)."""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tps_bringup.deploy import (
    STACK_ARGUMENTS,
    TOPIC_ARGUMENTS,
    argument_defaults,
    build_only_graph,
    load_graph_data,
    stack_overrides,
)
from tps_bringup.graph import find_entry_point, load_graph

ROOT = Path(__file__).resolve().parents[2]
GRAPH_DIR = ROOT / "config" / "graph"
GRAPHS = sorted(p for p in GRAPH_DIR.glob("*.yaml") if "nodes" in (yaml.safe_load(p.read_text()) or {}))
LAUNCH_DIR = ROOT / "ros2_ws" / "src" / "tps_bringup" / "launch"
LAUNCH_FILES = sorted(LAUNCH_DIR.glob("*.launch.py"))
STACK_GRAPHS = ("stack", "stack_carla", "stack_perception")
EXPECTED_LAUNCH = {"stack", "perception", "replay", "sim", "carla", "graph"}
HAVE_LAUNCH_ROS = importlib.util.find_spec("launch_ros") is not None


def test_the_deployment_graphs_and_launch_files_exist():
    names = {p.stem for p in GRAPHS}
    assert {"stack", "stack_carla", "stack_perception", "carla_sim_bridge"} <= names
    assert {p.name.removesuffix(".launch.py") for p in LAUNCH_FILES} == EXPECTED_LAUNCH


def _node_source(package: str, executable: str, exe_path) -> str:
    module, _ = find_entry_point(package, executable, exe_path)
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin, f"module {module} of {executable} not importable"
    return Path(spec.origin).read_text()


@pytest.mark.parametrize("path", GRAPHS, ids=lambda p: p.stem)
def test_every_node_parameter_file_and_remap_of_the_graph_exists(path):
    graph = load_graph(path, root=ROOT)  # executables found, parameter files valid, inline params in schema
    for node in graph.nodes:
        assert all(p.is_file() for p in node.params)
        source = _node_source(node.package, node.executable, node.executable_path)
        for src, dst in node.remaps:
            assert dst.startswith("/"), f"{path.name}: {node.name} remaps {src} onto a relative name {dst}"
            if src.startswith("~/"):
                assert f'"{src}"' in source, f"{path.name}: node {node.name} ({node.executable}) has no topic {src}"


def test_stack_graphs_contain_no_simulator_and_remap_every_input():
    for name in STACK_GRAPHS:
        graph = load_graph(GRAPH_DIR / f"{name}.yaml", root=ROOT)
        assert not {n.package for n in graph.nodes} & {"tps_sim", "tps_eval"}, name
        for node in graph.nodes:  # nothing left on a node-relative default name
            source = _node_source(node.package, node.executable, node.executable_path)
            used = set(re.findall(r'"(~/(?:input|output)/\w+)"', source))
            optional = {"~/input/traffic_light_status"}  # the privileged ablation's input only
            assert used - optional <= {s for s, _ in node.remaps}, f"{name}: {node.name} misses {used}"
    carla = load_graph(GRAPH_DIR / "stack_carla.yaml", root=ROOT)
    assert carla.use_sim_time
    assert carla.node("controller").remaps == (("~/input/trajectory", "/tps/planning/trajectory"),
                                               ("~/input/odometry", "/carla/ego_vehicle/odometry"),
                                               ("~/output/control", "/carla/ego_vehicle/vehicle_control_cmd"))


def _launch_graphs(path: Path) -> tuple[str, ...]:
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "GRAPHS" for t in node.targets):
            return tuple(ast.literal_eval(node.value))
    raise AssertionError(f"{path.name} has no module-level GRAPHS tuple")


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_file_parses_and_names_only_existing_graphs(path):
    tree = ast.parse(path.read_text(), filename=str(path))
    assert ast.get_docstring(tree), f"{path.name}: say what it starts and how"
    assert any(isinstance(n, ast.FunctionDef) and n.name == "generate_launch_description" for n in tree.body)
    for name in _launch_graphs(path):
        assert (GRAPH_DIR / f"{name}.yaml").is_file(), f"{path.name} names graph '{name}', not in config/graph"


def test_launch_files_are_installed_into_the_package_share():
    setup = (ROOT / "ros2_ws" / "src" / "tps_bringup" / "setup.py").read_text()
    assert '("share/" + PACKAGE_NAME + "/launch", sorted(glob("launch/*.launch.py")))' in setup
    assert not (ROOT / "launch").exists() or not list((ROOT / "launch").glob("*.launch.py")), \
        "launch files belong in ros2_ws/src/tps_bringup/launch (installed to share/tps_bringup/launch)"


def test_every_argument_is_described():
    for name, (_, description) in STACK_ARGUMENTS.items():
        assert len(description) > 15, name
    for path in LAUNCH_FILES:  # the launch-specific arguments too
        for call in ast.walk(ast.parse(path.read_text())):
            if isinstance(call, ast.Call) and getattr(call.func, "id", "") == "DeclareLaunchArgument":
                assert any(k.arg == "description" for k in call.keywords), f"{path.name}: an argument lacks one"


def test_deployment_arguments_apply_to_every_node_that_has_them():
    data = load_graph_data(GRAPH_DIR / "stack.yaml")
    args = {name: "" for name in STACK_ARGUMENTS} | {
        "backend": "onnxruntime", "precision": "fp16", "lidar_topic": "/lidar/top/points", "namespace": "/car1",
        "build_only": "false", "engine_cache": "/var/cache/tps/engines", "lidar_frame": "lidar_top",
        "control_topic": "/vehicle/control"}
    overrides = stack_overrides(data, args, ROOT)
    graph = load_graph(GRAPH_DIR / "stack.yaml", overrides, root=ROOT)
    remaps = {n.name: dict(n.remaps) for n in graph.nodes}
    assert remaps["perception"]["~/input/points"] == remaps["fallback"]["~/input/points"] == "/lidar/top/points"
    assert remaps["controller"]["~/output/control"] == "/vehicle/control"
    perception = graph.node("perception").parameters
    assert perception["backend"] == "onnxruntime" and perception["model_name"] == "detector_fp32"
    assert perception["trt_precision"] == "fp16" and perception["engine_cache_dir"] == "/var/cache/tps/engines"
    assert perception["expected_frame"] == "lidar_top" and perception["build_only"] is False
    assert "backend" not in graph.node("fallback").parameters  # only nodes whose schema has it
    assert {n.namespace for n in graph.nodes} == {"/car1"}
    assert set(TOPIC_ARGUMENTS) <= set(STACK_ARGUMENTS)
    with pytest.raises(ValueError, match="precision"):
        stack_overrides(data, {"precision": "int4"}, ROOT)


def test_build_only_keeps_the_model_nodes():
    graph = build_only_graph(load_graph(GRAPH_DIR / "stack.yaml", root=ROOT))
    assert [n.name for n in graph.nodes] == ["perception"]
    assert graph.node("perception").parameters["build_only"] is True
    assert not build_only_graph(load_graph(GRAPH_DIR / "carla_sim_bridge.yaml", root=ROOT)).nodes


def test_tps_bringup_takes_the_same_arguments():
    exe = Path(sys.executable).parent / "tps-bringup"
    out = subprocess.run([str(exe), str(GRAPH_DIR / "stack.yaml"), "--dry-run", "--arg", "lidar_topic=/x/points",
                          "--arg", "backend=onnxruntime"], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ))
    assert out.returncode == 0, out.stderr
    lines = {line.split("]")[0][1:]: line for line in out.stdout.splitlines() if line.startswith("[")}
    assert "~/input/points:=/x/points" in lines["perception"] and "~/input/points:=/x/points" in lines["fallback"]
    assert "backend:=onnxruntime" in lines["perception"] and "backend:=" not in lines["fallback"]
    bad = subprocess.run([str(exe), str(GRAPH_DIR / "stack.yaml"), "--dry-run", "--arg", "colour=blue"],
                         capture_output=True, text=True, timeout=60, env=dict(os.environ))
    assert bad.returncode == 2 and "colour" in bad.stderr


@pytest.mark.skipif(not HAVE_LAUNCH_ROS, reason="launch_ros is not importable here (not on PyPI; a system ROS 2 "
                                                "install has it): the launch descriptions are only parsed above")
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_launch_description_builds(path, monkeypatch):
    from launch import LaunchContext, LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    monkeypatch.setenv("TPS_ROOT", str(ROOT))
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    ld = module.generate_launch_description()
    assert isinstance(ld, LaunchDescription)
    context = LaunchContext()
    required = {"graph": "stack", "bag": "/nonexistent.mcap"}
    for entity in ld.entities:
        if isinstance(entity, DeclareLaunchArgument):
            context.launch_configurations[entity.name] = required.get(entity.name, entity.default_value and "".join(
                s.perform(context) for s in entity.default_value) or "")
    from launch_ros.actions import Node

    for entity in ld.entities:
        if isinstance(entity, OpaqueFunction):
            actions = entity.execute(context)  # the graphs' Node actions; a GraphError would raise here
            assert any(isinstance(a, Node) for a in actions), f"{path.name} starts no node"


def test_backend_and_precision_defaults_follow_the_environment():
    """The vehicle images set TPS_PRECISION (docker/entrypoint.sh builds the engines with it): the
    launch files' defaults follow it, so the engines built and the engines loaded agree."""
    assert argument_defaults({}) == {n: d for n, (d, _) in STACK_ARGUMENTS.items()}
    got = argument_defaults({"TPS_PRECISION": "fp16", "TPS_BACKEND": "tensorrt"})
    assert (got["precision"], got["backend"]) == ("fp16", "tensorrt")
    with pytest.raises(ValueError, match="TPS_PRECISION"):
        argument_defaults({"TPS_PRECISION": "int4"})
