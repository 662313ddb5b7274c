"""Graph files: loading, validation messages, --set overrides, node-argument translation, CLI
(--dry-run), and the demo nodes' core.  No DDS: these run in any virtualenv."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
import yaml
from tps_bringup import cli
from tps_bringup.demo import Listener, Talker, TalkerParams
from tps_bringup.graph import (
    GraphError,
    apply_overrides,
    find_entry_point,
    format_parameter_value,
    invocations,
    load_graph,
    node_invocation,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config/graph/examples/talker_listener.yaml"
HELLO = ROOT / "config/graph/hello.yaml"
TALKER_PARAMS = ROOT / "config/graph/examples/talker.param.yaml"
VENV_BIN = Path(sys.executable).parent


def _node(**overrides) -> dict:
    node = {"name": "talker", "package": "tps_bringup", "executable": "tps_demo_talker"}
    node.update(overrides)
    return node


def _write_graph(tmp_path: Path, data: dict, name: str = "g.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def _graph(*nodes: dict, **top) -> dict:
    data = {"name": "t", "mode": "processes", "use_sim_time": False, "nodes": list(nodes)}
    data.update(top)
    return data


# ------------------------------------------------------------------------------------ loading
def test_example_graphs_load_and_resolve_executables():
    for path in (EXAMPLE, HELLO):
        graph = load_graph(path)
        assert graph.root == ROOT
        assert [n.name for n in graph.nodes] == ["talker", "listener"]
        for node in graph.nodes:
            assert node.executable_path == VENV_BIN / node.executable
    graph = load_graph(EXAMPLE)
    talker = graph.node("talker")
    assert talker.params == (TALKER_PARAMS,)
    assert talker.parameters == {"rate_hz": 20.0, "message": "bringup test"}
    assert talker.remaps == (("~/output/chatter", "/bringup_test/chatter"),)
    assert talker.required is True and graph.node("listener").required is True
    assert graph.use_sim_time is False and graph.mode == "processes"


def test_missing_executable_is_named_with_a_suggestion(tmp_path):
    path = _write_graph(tmp_path, _graph(_node(executable="tps_demo_talkr")))
    with pytest.raises(GraphError) as exc:
        load_graph(path, root=ROOT)
    text = str(exc.value)
    assert "executable 'tps_demo_talkr' of package 'tps_bringup' not found" in text
    assert "did you mean tps_demo_talker" in text
    assert "node 'talker'" in text


def test_executable_of_another_package_is_rejected(tmp_path):
    path = _write_graph(tmp_path, _graph(_node(package="tps_planner")))
    with pytest.raises(GraphError, match="console script of package 'tps_bringup', not of 'tps_planner'"):
        load_graph(path, root=ROOT)


def test_missing_parameter_file_is_named(tmp_path):
    path = _write_graph(tmp_path, _graph(_node(params=["config/graph/examples/nope.param.yaml"])))
    with pytest.raises(GraphError, match=r"parameter file 'config/graph/examples/nope.param.yaml' not found"):
        load_graph(path, root=ROOT)


def test_malformed_parameter_file_is_named(tmp_path):
    bad = tmp_path / "bad.param.yaml"
    bad.write_text("/**:\n  rate_hz: 3\n")
    path = _write_graph(tmp_path, _graph(_node(params=[str(bad)])))
    with pytest.raises(GraphError, match=r"bad.param.yaml' entry '/\*\*' has no 'ros__parameters'"):
        load_graph(path, root=ROOT)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (_graph(_node(), launch_prefix="gdb"), "unknown top-level key 'launch_prefix'"),
        (_graph(_node(remap={"a": "b"})), "node 'talker': unknown key 'remap'"),
        (_graph(_node(), _node()), "duplicate node name 'talker'"),
        (_graph(_node(), mode="threads"), "bad mode 'threads' (allowed: processes, single_process)"),
        (_graph(_node(), use_sim_time="yes please"), "'use_sim_time' must be true or false"),
        (_graph(_node(required="no")), "node 'talker': 'required' must be true or false"),
        (_graph(_node(name="1talker")), "node '1talker': invalid node name"),
        (_graph(_node(package=None)), "node 'talker': 'package' is missing"),
        (_graph(_node(parameters={"use_sim_time": True})), "set 'use_sim_time' at the graph's top level"),
        (_graph(_node(parameters={"gains": []})), "parameter 'gains' has no value"),
        (_graph(_node(parameters={"mixed": [1, "a"]})), "parameter 'mixed' = [1, 'a'] is not a ROS parameter value"),
        (_graph(_node(parameters={"rate_hz": -1})), "parameter 'rate_hz' = -1 is out of range; allowed (0.0, 1000.0] Hz"),
        (_graph(_node(parameters={"rate": 5.0})), "unknown parameter 'rate' for tps_demo_talker (schema built-in"),
        (_graph(_node(args=["--verbose"]), mode="single_process"), "'args' cannot be passed in single_process"),
        (_graph(), "'nodes' must be a non-empty list"),
    ],
)
def test_invalid_graphs_are_rejected_naming_the_problem(tmp_path, data, expected):
    path = _write_graph(tmp_path, data)
    with pytest.raises(GraphError) as exc:
        load_graph(path, root=ROOT)
    assert expected in str(exc.value)
    assert str(path) in str(exc.value)


def test_every_problem_is_reported_at_once(tmp_path):
    path = _write_graph(tmp_path, _graph(_node(executable="nope_exe", colour=True), foo=1))
    with pytest.raises(GraphError) as exc:
        load_graph(path, root=ROOT)
    assert len(exc.value.problems) == 3
    assert "unknown top-level key 'foo'" in str(exc.value)
    assert "unknown key 'colour'" in str(exc.value)
    assert "executable 'nope_exe'" in str(exc.value)


def test_missing_or_broken_graph_file(tmp_path):
    with pytest.raises(GraphError, match="file not found"):
        load_graph(tmp_path / "absent.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("nodes: [\n")
    with pytest.raises(GraphError, match="cannot read YAML"):
        load_graph(broken)


# ---------------------------------------------------------------------------------- overrides
def test_set_overrides_top_level_parameters_and_remaps():
    graph = load_graph(
        EXAMPLE,
        [
            "use_sim_time=true",
            "mode=single_process",
            "nodes.talker.parameters.rate_hz=5",  # int widened to float by the node's schema
            'nodes.talker.parameters.message="10"',  # quoted YAML: the string "10"
            "nodes.talker.remaps./extra=/x",
            "nodes.listener.required=false",
            "nodes.listener.namespace=demo",
        ],
    )
    assert graph.use_sim_time is True and graph.mode == "single_process"
    talker = graph.node("talker")
    assert talker.parameters == {"rate_hz": 5.0, "message": "10"}
    assert isinstance(talker.parameters["rate_hz"], float)
    assert dict(talker.remaps) == {"~/output/chatter": "/bringup_test/chatter", "/extra": "/x"}
    listener = graph.node("listener")
    assert listener.required is False and listener.namespace == "/demo" and listener.full_name == "/demo/listener"


def test_set_replaces_a_nested_parameter_given_as_a_mapping():
    data = _graph(_node(parameters={"model": {"path": "a.onnx", "threads": 2}}))
    out = apply_overrides(data, ["nodes.talker.parameters.model.path=b.onnx"])
    assert out["nodes"][0]["parameters"] == {"model.path": "b.onnx", "model.threads": 2}
    assert data["nodes"][0]["parameters"]["model"]["path"] == "a.onnx"  # input untouched


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("nodes.talkr.required=false", "no node named 'talkr' (nodes: talker, listener)"),
        ("use_sim_time", "expected KEY=VALUE"),
        ("nodes.talker=1", "use nodes.<node name>.<key>=VALUE"),
        ("nodes.talker.required.x=1", "node key 'required' takes no sub-keys"),
        ("mode.x=1", "top-level key 'mode' takes no sub-keys"),
    ],
)
def test_bad_set_overrides_are_named(override, expected):
    with pytest.raises(GraphError) as exc:
        load_graph(EXAMPLE, [override])
    assert expected in str(exc.value)


def test_set_cannot_smuggle_in_unknown_keys():
    with pytest.raises(GraphError, match="node 'talker': unknown key 'launch_prefix'"):   # respawn is a key now
        load_graph(EXAMPLE, ["nodes.talker.launch_prefix=gdb"])
    with pytest.raises(GraphError, match="bad mode 'fast'"):
        load_graph(EXAMPLE, ["mode=fast"])


# -------------------------------------------------------------------------------- translation
def test_ros_args_follow_the_contract():
    graph = load_graph(EXAMPLE, ["nodes.talker.namespace=/ns", "use_sim_time=true"])
    inv = node_invocation(graph.node("talker"), graph)
    assert inv.ros_args() == [
        "--ros-args", "-r", "__node:=talker", "-r", "__ns:=/ns",
        "--params-file", str(TALKER_PARAMS),
        "-p", "rate_hz:=20.0", "-p", "message:=bringup test",
        "-r", "~/output/chatter:=/bringup_test/chatter",
        "-p", "use_sim_time:=true",
    ]  # fmt: skip
    assert inv.command()[0] == str(VENV_BIN / "tps_demo_talker")


def test_launch_kwargs_carry_the_same_translation_as_ros_args():
    graph = load_graph(EXAMPLE, ["nodes.talker.parameters.exit_after=2"])
    for inv in invocations(graph):
        kw = inv.launch_kwargs()
        args = inv.ros_args()
        assert kw["name"] == args[args.index("-r") + 1].split(":=")[1]
        files = [args[i + 1] for i, a in enumerate(args) if a == "--params-file"]
        assert kw["parameters"][:-1] == files
        inline = {}
        for i, a in enumerate(args):
            if a == "-p":
                key, value = args[i + 1].split(":=", 1)
                inline[key] = yaml.safe_load(value)
        assert kw["parameters"][-1] == inline
        remaps = [tuple(args[i + 1].split(":=")) for i, a in enumerate(args) if a == "-r"][1:]
        assert kw["remappings"] == remaps
        assert (kw["package"], kw["executable"], kw["namespace"]) == (inv.package, inv.executable, "")
    assert graph.node("talker").parameters["exit_after"] == 2


@pytest.mark.parametrize(
    ("value", "text"),
    [(12.0, "12.0"), (3, "3"), (True, "true"), ("hello world", "hello world"), ("10", "'10'"),
     ("true", "'true'"), ([1.0, 2.5], "[1.0, 2.5]"), (["a", "b"], "[a, b]"), ("a: b", "'a: b'")],
)
def test_parameter_values_round_trip_through_yaml(value, text):
    assert format_parameter_value(value) == text
    assert yaml.safe_load(format_parameter_value(value)) == value


def test_mixed_numeric_list_is_written_as_doubles():
    assert format_parameter_value([1, 2.5]) == "[1.0, 2.5]"


def test_entry_point_of_a_console_script():
    assert find_entry_point("tps_bringup", "tps_demo_talker") == ("tps_bringup.nodes.talker", "main")
    with pytest.raises(GraphError, match="not a Python console script"):
        find_entry_point("tps_bringup", "not_a_script")


# ------------------------------------------------------------------------------------------ CLI
def test_cli_dry_run_prints_one_command_per_node(capsys):
    assert cli.main([str(EXAMPLE), "--dry-run", "--set", "nodes.talker.parameters.rate_hz=2"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert [line.split()[0] for line in lines] == ["[talker]", "[listener]"]
    talker_cmd = shlex.split(lines[0].split(" ", 1)[1])
    assert talker_cmd[0] == str(VENV_BIN / "tps_demo_talker")
    assert "rate_hz:=2.0" in talker_cmd


def test_cli_dry_run_single_process_shows_node_cli_args(capsys):
    assert cli.main([str(EXAMPLE), "--dry-run", "--set", "mode=single_process"]) == 0
    out = capsys.readouterr().out
    assert "# node talker: cli_args = --ros-args -r __node:=talker" in out
    assert "-m tps_bringup.host" in out


def test_cli_rejects_invalid_graph_with_exit_code_2(tmp_path, capsys):
    path = _write_graph(tmp_path, _graph(_node(params=["missing.param.yaml"])))
    assert cli.main([str(path), "--dry-run"]) == cli.EXIT_BAD_GRAPH
    err = capsys.readouterr().err
    assert "tps-bringup: error:" in err and "parameter file 'missing.param.yaml' not found" in err
    assert cli.main([str(EXAMPLE), "--env", "NOEQUALS"]) == cli.EXIT_BAD_GRAPH
    assert "--env 'NOEQUALS'" in capsys.readouterr().err


# ------------------------------------------------------------------------------ demo node core
def test_talker_core_counts_and_exits_after_n():
    talker = Talker(TalkerParams(message="hi", exit_after=2, exit_code=3))
    steps = [talker.update() for _ in range(3)]
    assert [s.text for s in steps] == ["hi 1", "hi 2", None]
    assert [s.exit_code for s in steps] == [None, 3, 3]
    forever = Talker(TalkerParams(rate_hz=4.0))
    assert forever.params.period_s == 0.25
    assert all(forever.update().exit_code is None for _ in range(100))


def test_listener_core_logs_every_nth():
    listener = Listener(log_every=2)
    lines = [listener.update(f"m{i}").log_line for i in range(4)]
    assert lines == [None, "heard 'm1' (#2)", None, "heard 'm3' (#4)"]
    with pytest.raises(ValueError, match="log_every"):
        Listener(log_every=0)


def test_launch_file_compiles_and_uses_the_shared_translation():
    """launch_ros is not installable here, so the launch files cannot run in CI; at least their
    shared translation (tps_bringup.launch_support, used by every file in the package's launch/)
    must compile and build its Node actions from NodeInvocation.launch_kwargs (tested above)."""
    import ast

    source = (ROOT / "ros2_ws/src/tps_bringup/tps_bringup/launch_support.py").read_text()
    tree = ast.parse(source)
    called = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
              for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert {"load_graph", "invocations", "launch_kwargs", "Node"} <= called


def test_inline_parameters_are_checked_against_the_node_schema(tmp_path):
    # an integer for a number parameter is widened (rclpy would refuse rate_hz:=5 for a double)
    graph = load_graph(EXAMPLE, ["nodes.talker.parameters.rate_hz=5"])
    assert graph.node("talker").parameters["rate_hz"] == 5.0
    assert "rate_hz:=5.0" in node_invocation(graph.node("talker"), graph).ros_args()
    # a schema in <root>/config/schema/<executable>.schema.json takes precedence over a built-in one
    schema_dir = tmp_path / "config" / "schema"
    schema_dir.mkdir(parents=True)
    (schema_dir / "tps_demo_listener.schema.json").write_text(
        '{"node": "tps_demo_listener", "parameters": {"gain": {"type": "number", "default": 1.0, "maximum": 3}}}'
    )
    path = _write_graph(tmp_path, _graph(_node(name="l", executable="tps_demo_listener", parameters={"gain": 2})))
    assert load_graph(path, root=tmp_path).node("l").parameters == {"gain": 2.0}
    with pytest.raises(GraphError, match=r"parameter 'gain' = 4 is out of range.*config/schema/tps_demo_listener"):
        load_graph(path, ["nodes.l.parameters.gain=4"], root=tmp_path)
    with pytest.raises(GraphError, match="parameter 'message' must be a string, got 10"):
        load_graph(EXAMPLE, ["nodes.talker.parameters.message=10"])
