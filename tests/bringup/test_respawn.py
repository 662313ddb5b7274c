"""Respawn in the graph runner (graph keys ``respawn`` / ``respawn_delay_s``, like ros2 launch's
``respawn`` / ``respawn_delay``), without DDS: small shell-script "nodes" on PATH crash, get
killed and are restarted; the graph-file validation of the new keys; the launch translation; the
once-per-run arming of an injected crash (tps_common.node.injected_crash_time)."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import pytest
import yaml
from script_nodes import write_bin_dir
from tps_bringup.graph import DEFAULT_RESPAWN_DELAY_S, GraphError, graph_from_json, invocations, load_graph
from tps_bringup.runner import EXIT_OK, GraphProcess, run_graph
from tps_common.node import RESPAWN_ENV, injected_crash_time, respawn_count

GRACE_S = 0.5
END_TIMEOUT_S = 30.0

SCRIPTS = {
    # crashes (exit 70) in its first life, runs until stopped once respawned
    "crash_once_node": '#!/bin/sh\necho "life=${TPS_RESPAWN_COUNT:-0}"\n'
                       'if [ -z "$TPS_RESPAWN_COUNT" ]; then sleep 0.2; exit 70; fi\n'
                       'trap "exit 0" INT TERM\nwhile true; do sleep 0.05; done\n',
    # runs until stopped
    "steady_node": '#!/bin/sh\necho "life=${TPS_RESPAWN_COUNT:-0}"\ntrap "exit 0" INT TERM\n'
                   'while true; do sleep 0.05; done\n',
    "quit_node": "#!/bin/sh\necho quitting\nexit 3\n",
    "done_node": "#!/bin/sh\nsleep 0.5\necho finishing\nexit 0\n",
}


@pytest.fixture
def bin_dir(tmp_path) -> Path:
    return write_bin_dir(tmp_path, SCRIPTS)


def _node(name: str, exe: str, **keys) -> dict:
    return {"name": name, "package": "test_scripts", "executable": exe, "remaps": {"~/out": "/x"}, **keys}


def _write(tmp_path: Path, nodes: list[dict], mode: str = "processes") -> Path:
    path = tmp_path / "respawn.yaml"
    path.write_text(yaml.safe_dump({"name": "rs", "mode": mode, "use_sim_time": False, "nodes": nodes}))
    return path


def _load(tmp_path: Path, bin_dir: Path, nodes: list[dict], mode: str = "processes"):
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return load_graph(_write(tmp_path, nodes, mode), root=tmp_path, env=env), {"PATH": env["PATH"]}


def _wait_for(predicate, timeout_s: float = END_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


# ------------------------------------------------------------------------------------ runner
def test_a_crashed_node_is_respawned_once_with_the_same_command_line(tmp_path, bin_dir):
    graph, env = _load(tmp_path, bin_dir, [_node("anchor", "steady_node"),
                                           _node("victim", "crash_once_node", respawn=True, respawn_delay_s=0.3)])
    out = io.StringIO()
    gp = GraphProcess(graph, env=env, output=out, grace_s=GRACE_S)
    gp.start()
    first_pid = gp.pids()["victim"]
    _wait_for(lambda: "[victim] life=1" in out.getvalue())
    text = out.getvalue()
    assert "[victim] life=0" in text                       # the first process had no restart count
    assert "[tps-bringup] node 'victim' exited with code 70: respawn #1 in 0.3 s" in text
    assert "[tps-bringup] respawned 'victim' (#1, pid " in text
    assert gp.running, "a respawning node's crash must not stop the graph"
    (r,) = gp.restarts
    assert (r.node, r.count, r.exit_code) == ("victim", 1, 70)
    assert r.restarted_at - r.exited_at >= 0.3 - 1e-3      # the delay was honoured
    assert r.pid == gp.pids()["victim"] != first_pid
    assert gp.restart_counts() == {"victim": 1}
    victim = next(c for c in gp.children if c.label == "victim")
    assert victim.command == graph_command(graph, "victim")  # same parameters and remaps
    time.sleep(0.5)
    assert len(gp.restarts) == 1, "the respawned process (it does not crash) was restarted again"
    assert gp.stop(timeout_s=END_TIMEOUT_S) == EXIT_OK


def graph_command(graph, name: str) -> list[str]:
    return next(inv.command() for inv in invocations(graph) if inv.name == name)


def test_a_killed_node_is_respawned_each_time(tmp_path, bin_dir):
    graph, env = _load(tmp_path, bin_dir, [_node("anchor", "steady_node"),
                                           _node("victim", "steady_node", respawn=True, respawn_delay_s=0.0)])
    out = io.StringIO()
    gp = GraphProcess(graph, env=env, output=out, grace_s=GRACE_S)
    gp.start()
    for k in (1, 2):
        _wait_for(lambda k=k: f"[victim] life={k - 1}" in out.getvalue())
        os.kill(gp.pids()["victim"], signal.SIGKILL)
        _wait_for(lambda k=k: len(gp.restarts) == k)
        assert gp.restarts[-1].exit_code == -signal.SIGKILL
    _wait_for(lambda: "[victim] life=2" in out.getvalue())
    assert "node 'victim' was killed by signal SIGKILL: respawn #2 in 0 s" in out.getvalue()
    assert gp.restart_counts() == {"victim": 2}
    assert gp.stop(timeout_s=END_TIMEOUT_S) == EXIT_OK


def test_a_stop_cancels_a_pending_respawn(tmp_path, bin_dir):
    graph, env = _load(tmp_path, bin_dir, [_node("anchor", "steady_node"),
                                           _node("quitter", "quit_node", respawn=True, respawn_delay_s=60.0)])
    out = io.StringIO()
    gp = GraphProcess(graph, env=env, output=out, grace_s=GRACE_S)
    gp.start()
    _wait_for(lambda: "respawn #1 in 60 s" in out.getvalue())
    t0 = time.monotonic()
    assert gp.stop(timeout_s=END_TIMEOUT_S) == EXIT_OK     # the node's own exit is not a stop failure
    assert time.monotonic() - t0 < 10.0
    assert "respawn of 'quitter' cancelled: the graph is stopping" in out.getvalue()
    assert gp.restarts == []


def test_a_required_node_finishing_ends_the_graph_despite_a_respawning_one(tmp_path, bin_dir):
    graph, env = _load(tmp_path, bin_dir, [_node("sim", "done_node"),
                                           _node("quitter", "quit_node", respawn=True, respawn_delay_s=0.05)])
    out = io.StringIO()
    gp = GraphProcess(graph, env=env, output=out, grace_s=GRACE_S)
    gp.start()
    code = gp.wait(END_TIMEOUT_S)
    assert code is not None, "the graph did not end when its required node finished"
    assert len(gp.restarts) >= 2, "a node that keeps exiting is restarted each time while the graph runs"
    assert "required node finished, stopping the graph" in out.getvalue()


def test_run_graph_reports_the_restart_counts_at_the_end(tmp_path, bin_dir):
    graph, env = _load(tmp_path, bin_dir, [_node("anchor", "steady_node"),
                                           _node("victim", "crash_once_node", respawn=True, respawn_delay_s=0.0)])
    out = io.StringIO()
    code = run_graph(graph, env=env, output=out, grace_s=GRACE_S, handle_signals=False, duration_s=2.0)
    assert code == EXIT_OK
    assert "[tps-bringup] graph 'rs' stopped (restarts: 'victim' 1)" in out.getvalue()


# -------------------------------------------------------------------------------- graph file
def test_respawn_defaults_and_implied_not_required(tmp_path, bin_dir):
    graph, _ = _load(tmp_path, bin_dir, [_node("a", "steady_node"), _node("b", "steady_node", respawn=True)])
    a, b = graph.node("a"), graph.node("b")
    assert (a.respawn, a.required) == (False, True)
    assert (b.respawn, b.required, b.respawn_delay_s) == (True, False, DEFAULT_RESPAWN_DELAY_S)
    back = graph_from_json(graph.to_json()).node("b")
    assert (back.respawn, back.respawn_delay_s, back.required) == (True, DEFAULT_RESPAWN_DELAY_S, False)
    inv = {i.name: i for i in invocations(graph)}
    assert "respawn" not in inv["a"].launch_kwargs()
    assert inv["b"].launch_kwargs()["respawn"] is True
    assert inv["b"].launch_kwargs()["respawn_delay"] == DEFAULT_RESPAWN_DELAY_S
    explicit, _ = _load(tmp_path, bin_dir, [_node("b", "steady_node", respawn=True, required=False,
                                                  respawn_delay_s=2)])
    assert (explicit.node("b").required, explicit.node("b").respawn_delay_s) == (False, 2.0)


@pytest.mark.parametrize(
    ("keys", "mode", "expected"),
    [
        ({"respawn": "yes"}, "processes", "node 'b': 'respawn' must be true or false, got 'yes'"),
        ({"respawn": True, "required": True}, "processes", "node 'b': 'respawn: true' cannot be 'required: true'"),
        ({"respawn": True, "respawn_delay_s": -1}, "processes",
         "node 'b': 'respawn_delay_s' must be a number of seconds in [0, 3600], got -1"),
        ({"respawn": True, "respawn_delay_s": "1 s"}, "processes", "'respawn_delay_s' must be a number of seconds"),
        ({"respawn": True, "respawn_delay_s": True}, "processes", "'respawn_delay_s' must be a number of seconds"),
        ({"respawn": True}, "single_process", "node 'b': 'respawn' needs mode 'processes'"),
    ],
)
def test_invalid_respawn_keys_are_named(tmp_path, bin_dir, keys, mode, expected):
    with pytest.raises(GraphError) as exc:
        _load(tmp_path, bin_dir, [_node("b", "steady_node", **keys)], mode)
    assert expected in str(exc.value)


def test_respawn_can_be_set_from_the_command_line(tmp_path, bin_dir):
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    path = _write(tmp_path, [_node("b", "steady_node")])
    graph = load_graph(path, ["nodes.b.respawn=true", "nodes.b.respawn_delay_s=0.25"], root=tmp_path, env=env)
    assert (graph.node("b").respawn, graph.node("b").respawn_delay_s, graph.node("b").required) == (True, 0.25, False)


# ---------------------------------------------------------------------- injected-crash arming
def test_an_injected_crash_is_armed_only_in_the_first_process():
    assert respawn_count({}) == 0 and injected_crash_time(2.5, {}) == 2.5
    assert respawn_count({RESPAWN_ENV: "1"}) == 1 and injected_crash_time(2.5, {RESPAWN_ENV: "1"}) == -1.0
    assert injected_crash_time(-1.0, {}) == -1.0
    assert respawn_count({RESPAWN_ENV: "garbage"}) == 0   # unreadable: a first process


class _Logger:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def fatal(self, text: str) -> None:
        self.lines.append(text)


class _Node:
    def __init__(self) -> None:
        self.logger = _Logger()

    def get_logger(self) -> _Logger:
        return self.logger


def test_crash_if_due_does_nothing_when_off_early_or_not_finite():
    from tps_common.node import crash_if_due

    node = _Node()
    for crash_at, stamp in [(-1.0, 100.0), (3.0, 2.999), (3.0, float("nan")), (3.0, float("-inf"))]:
        crash_if_due(node, crash_at, stamp, "points")   # returns: the test process lives on
    assert node.logger.lines == []


def test_crash_if_due_exits_with_the_injected_crash_code():
    import subprocess
    import sys

    code = ("from tps_common.node import crash_if_due\n"
            "class L:\n    def fatal(self, t): print(t, flush=True)\n"
            "class N:\n    def get_logger(self): return L()\n"
            "crash_if_due(N(), 3.0, 3.0, 'points')\nprint('survived')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 70, proc.stderr
    assert "injected crash: fault_crash_at_s = 3.000 s, points stamped 3.000 s arrived" in proc.stdout
    assert "survived" not in proc.stdout


@pytest.mark.parametrize("schema", ["perception_node", "monitor_node", "planner_node"])
def test_the_crash_fault_is_a_parameter_shipped_off(schema):
    from tps_common.params import ParameterError, load_schema, validate

    spec = load_schema(schema)
    root = Path(__file__).resolve().parents[2]
    values = yaml.safe_load((root / "config" / f"{schema}.param.yaml").read_text())["/**"]["ros__parameters"]
    assert validate(values, spec)["fault_crash_at_s"] < 0
    with pytest.raises(ParameterError, match="fault_crash_at_s"):
        validate({"fault_crash_at_s": -2.0}, spec)
