"""Runner supervision without DDS: small shell-script "nodes" (found on PATH, like any executable)
check output prefixing, the child environment, stop escalation, and exit-code rules fast."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path

import pytest
from script_nodes import write_bin_dir
from tps_bringup.graph import load_graph
from tps_bringup.runner import EXIT_NODE_FAILED, EXIT_OK, GraphProcess, describe_exit, run_graph

GRACE_S = 0.5  # short escalation period for these tests
END_TIMEOUT_S = 30.0

SCRIPTS = {
    # prints its environment facts and the ROS arguments it was given, then runs until stopped
    "env_node": '#!/bin/sh\necho "var=$TPS_TEST_VAR boot=${_ROS_WHEELS_BOOTSTRAP_COMPLETE:-unset} args=$*"\n'
                'trap "exit 0" INT TERM\nwhile true; do sleep 0.05; done\n',
    "deaf_node": '#!/bin/sh\ntrap "" INT\necho deaf\nwhile true; do sleep 0.05; done\n',  # ignores SIGINT
    "done_node": "#!/bin/sh\necho finishing\nexit 0\n",
    "fail_node": "#!/bin/sh\necho failing\nexit 3\n",
}


@pytest.fixture
def bin_dir(tmp_path) -> Path:
    return write_bin_dir(tmp_path, SCRIPTS)


def _graph(tmp_path: Path, bin_dir: Path, nodes: list[tuple[str, str, bool]]):
    lines = ["name: sup", "mode: processes", "use_sim_time: true", "nodes:"]
    for name, exe, required in nodes:
        lines += [f"  - name: {name}", "    package: test_scripts", f"    executable: {exe}",
                  f"    required: {str(required).lower()}", "    remaps: {'~/out': /x}"]
    path = tmp_path / "sup.yaml"
    path.write_text("\n".join(lines) + "\n")
    env = dict(os.environ, PATH=f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    return load_graph(path, root=tmp_path, env=env), env


def _wait_for(predicate, timeout_s: float = END_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_output_prefix_and_child_environment(tmp_path, bin_dir, monkeypatch):
    monkeypatch.setenv("_ROS_WHEELS_BOOTSTRAP_COMPLETE", "1")  # must not reach the children
    graph, env = _graph(tmp_path, bin_dir, [("alpha", "env_node", True)])
    out = io.StringIO()
    gp = GraphProcess(graph, env={"PATH": env["PATH"], "TPS_TEST_VAR": "42"}, output=out, grace_s=GRACE_S)
    gp.start()
    _wait_for(lambda: "[alpha] var=" in out.getvalue())
    assert gp.stop() == EXIT_OK
    line = next(line for line in out.getvalue().splitlines() if line.startswith("[alpha] var="))
    assert "var=42 boot=unset" in line
    assert "args=--ros-args -r __node:=alpha -r ~/out:=/x -p use_sim_time:=true" in line
    assert "[tps-bringup] started 'alpha' (pid " in out.getvalue()


def test_a_node_ignoring_sigint_is_escalated_and_the_stop_is_unclean(tmp_path, bin_dir):
    graph, env = _graph(tmp_path, bin_dir, [("deaf", "deaf_node", True), ("ok", "env_node", True)])
    out = io.StringIO()
    gp = GraphProcess(graph, env={"PATH": env["PATH"]}, output=out, grace_s=GRACE_S)
    gp.start()
    _wait_for(lambda: "[deaf] deaf" in out.getvalue())
    t0 = time.monotonic()
    code = gp.stop(timeout_s=END_TIMEOUT_S)
    assert code == EXIT_NODE_FAILED
    assert time.monotonic() - t0 < 4 * GRACE_S + 2.0
    assert "'deaf' still running after 0.5 s: sending SIGTERM" in out.getvalue()
    assert "node 'deaf' did not stop within 0.5 s" in gp.failure
    assert "'ok'" not in gp.failure  # the well-behaved node stopped cleanly
    for pid in gp.pids().values():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def test_required_node_finishing_with_zero_ends_the_graph_cleanly(tmp_path, bin_dir):
    graph, env = _graph(tmp_path, bin_dir, [("sim", "done_node", True), ("other", "env_node", True)])
    out = io.StringIO()
    gp = GraphProcess(graph, env={"PATH": env["PATH"]}, output=out, grace_s=GRACE_S)
    gp.start()
    assert gp.wait(END_TIMEOUT_S) == EXIT_OK
    assert "node 'sim' exited with code 0: required node finished, stopping the graph" in out.getvalue()


def test_required_failure_and_optional_failure(tmp_path, bin_dir):
    graph, env = _graph(tmp_path, bin_dir, [("opt", "fail_node", False), ("main", "env_node", True)])
    out = io.StringIO()
    gp = GraphProcess(graph, env={"PATH": env["PATH"]}, output=out, grace_s=GRACE_S)
    gp.start()
    _wait_for(lambda: "not required" in out.getvalue())
    assert gp.running
    assert gp.stop() == EXIT_OK
    assert "node 'opt' exited with code 3 (not required: the graph keeps running)" in out.getvalue()

    graph, env = _graph(tmp_path, bin_dir, [("req", "fail_node", True), ("main", "env_node", True)])
    gp = GraphProcess(graph, env={"PATH": env["PATH"]}, output=io.StringIO(), grace_s=GRACE_S)
    gp.start()
    assert gp.wait(END_TIMEOUT_S) == EXIT_NODE_FAILED
    assert gp.failure == "node 'req' exited with code 3"


def test_describe_exit():
    assert describe_exit(2) == "exited with code 2"
    assert describe_exit(-signal.SIGSEGV) == "was killed by signal SIGSEGV"


def test_run_graph_duration_stops_cleanly(tmp_path, bin_dir):
    graph, env = _graph(tmp_path, bin_dir, [("alpha", "env_node", True)])
    out = io.StringIO()
    t0 = time.monotonic()
    code = run_graph(graph, env={"PATH": env["PATH"]}, output=out, grace_s=GRACE_S, handle_signals=False,
                     duration_s=GRACE_S)
    assert code == EXIT_OK
    assert time.monotonic() - t0 < END_TIMEOUT_S
    assert "--duration-s 0.5 s reached" in out.getvalue()
    assert "graph 'sup' stopped" in out.getvalue()
