"""tps-bringup on the real ROS 2 graph: a talker -> listener graph started from YAML, messages
flowing over DDS, SIGINT stopping every process with exit code 0, a crashing required node ending
the graph non-zero, single_process mode, and the GraphProcess Python API."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
from tps_bringup.graph import load_graph
from tps_bringup.runner import GraphProcess

pytestmark = pytest.mark.ros

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config/graph/examples/talker_listener.yaml"
TPS_BRINGUP = Path(sys.executable).parent / "tps-bringup"
TOPIC = "/bringup_test/chatter"  # the remap target in EXAMPLE
STARTUP_TIMEOUT_S = 60.0  # generous: 2 shared cores, other engineers' jobs
STOP_LIMIT_S = 5.0  # acceptance: SIGINT stops every process within 5 s
CRASH_EXIT_AFTER = 3
MIN_MESSAGES = 3
PARAM_FILE_EXIT_CODE = 4  # exit_code in config/graph/examples/talker.param.yaml (default is 1)
INLINE_RATE_HZ = 20.0  # rate_hz inline in EXAMPLE, overriding the parameter file's
_STARTED_RE = re.compile(r"\[tps-bringup\] started '(\w+)' \(pid (\d+)\)")


class Runner:
    """A ``tps-bringup`` process whose output lines are collected as they arrive."""

    def __init__(self, *args: str) -> None:
        self.lines: list[str] = []
        self._cond = threading.Condition()
        self.proc = subprocess.Popen(
            [str(TPS_BRINGUP), str(EXAMPLE), "--no-colour", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                self._cond.notify_all()

    def wait_for(self, pattern: str, count: int = 1, timeout_s: float = STARTUP_TIMEOUT_S) -> list[str]:
        """Wait until ``count`` output lines match ``pattern``; return them."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                hits = [line for line in self.lines if regex.search(line)]
                if len(hits) >= count:
                    return hits
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(f"no {count} line(s) matching {pattern!r}; output:\n" + self.output())
                self._cond.wait(min(left, 0.2))

    def child_pids(self) -> dict[str, int]:
        return {m.group(1): int(m.group(2)) for m in map(_STARTED_RE.search, self.lines) if m}

    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def runners():
    started: list[Runner] = []
    yield lambda *args: started.append(Runner(*args)) or started[-1]
    for r in started:
        r.kill()


def _assert_gone(pids: dict[str, int]) -> None:
    for name, pid in pids.items():
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)  # reaped by the runner: no such process any more
        assert name


def _subscribe_and_collect(topic: str, min_count: int, timeout_s: float) -> list[str]:
    """Receive ``min_count`` std_msgs/String messages over DDS in this test process."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from std_msgs.msg import String

    context = rclpy.Context()
    rclpy.init(context=context)
    received: list[str] = []
    try:
        node = rclpy.create_node(f"bringup_test_probe_{uuid.uuid4().hex[:8]}", context=context)
        node.create_subscription(String, topic, lambda m: received.append(m.data), 10)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + timeout_s
        while len(received) < min_count and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.1)
        node.destroy_node()
    finally:
        context.try_shutdown()
    return received


def _sigint_and_time(runner: Runner) -> tuple[int, float]:
    t0 = time.monotonic()
    runner.proc.send_signal(signal.SIGINT)
    try:
        code = runner.proc.wait(timeout=3 * STOP_LIMIT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError("runner did not stop after SIGINT; output:\n" + runner.output()) from None
    return code, time.monotonic() - t0


def test_processes_mode_messages_flow_and_sigint_stops_everything(runners):
    marker = f"flow-{uuid.uuid4().hex[:6]}"
    runner = runners("--set", f"nodes.talker.parameters.message={marker}")
    runner.wait_for(rf"^\[talker\] .*publishing on {TOPIC} at {INLINE_RATE_HZ} Hz")
    runner.wait_for(rf"^\[listener\] .*heard '{marker} \d+'", count=MIN_MESSAGES)
    received = _subscribe_and_collect(TOPIC, MIN_MESSAGES, STARTUP_TIMEOUT_S)
    assert len(received) >= MIN_MESSAGES and all(m.startswith(marker + " ") for m in received)
    pids = runner.child_pids()
    assert set(pids) == {"talker", "listener"}

    code, took_s = _sigint_and_time(runner)
    assert code == 0, runner.output()
    assert took_s < STOP_LIMIT_S, f"stop took {took_s:.2f} s"
    _assert_gone(pids)
    assert "[tps-bringup] graph 'talker_listener' stopped" in runner.output()


def test_a_crashing_required_node_ends_the_graph_non_zero(runners):
    runner = runners("--set", f"nodes.talker.parameters.exit_after={CRASH_EXIT_AFTER}")
    try:
        code = runner.proc.wait(timeout=STARTUP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError("runner kept running after the talker crashed:\n" + runner.output()) from None
    runner._reader.join(timeout=5)
    assert code != 0
    out = runner.output()
    assert f"node 'talker' exited with code {PARAM_FILE_EXIT_CODE}" in out  # from the parameter file
    assert "graph 'talker_listener' failed" in out
    _assert_gone(runner.child_pids())


def test_single_process_mode_runs_the_two_node_graph(runners):
    marker = f"single-{uuid.uuid4().hex[:6]}"
    runner = runners("--set", "mode=single_process", "--set", f"nodes.talker.parameters.message={marker}")
    runner.wait_for(r"single_process host: spinning 2 node\(s\)")
    runner.wait_for(rf"\[listener\]: heard '{marker} \d+'", count=MIN_MESSAGES)
    pids = runner.child_pids()
    assert set(pids) == {"talker_listener"}  # one process for both nodes
    code, took_s = _sigint_and_time(runner)
    assert code == 0, runner.output()
    assert took_s < STOP_LIMIT_S
    _assert_gone(pids)


def test_single_process_crash_is_reported(runners):
    runner = runners(
        "--set", "mode=single_process", "--set", f"nodes.talker.parameters.exit_after={CRASH_EXIT_AFTER}",
    )
    code = runner.proc.wait(timeout=STARTUP_TIMEOUT_S)
    runner._reader.join(timeout=5)
    assert code != 0
    # the parameter file reached the node through cli_args: its exit_code is the host's
    assert f"single_process host 'talker_listener' exited with code {PARAM_FILE_EXIT_CODE}" in runner.output()
    assert f"publishing on {TOPIC} at {INLINE_RATE_HZ} Hz" in runner.output()


def test_python_api_non_required_crash_keeps_graph_running(capsys):
    graph = load_graph(
        EXAMPLE,
        ["nodes.talker.required=false", f"nodes.talker.parameters.exit_after={CRASH_EXIT_AFTER}"],
    )
    gp = GraphProcess(graph, env={"ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"]})
    gp.start()
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while gp.children[0].returncode is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert gp.children[0].returncode == PARAM_FILE_EXIT_CODE
        assert gp.running and gp.poll() is None  # listener still up: talker was not required
        assert gp.wait_until_up(timeout_s=STARTUP_TIMEOUT_S, nodes=["listener"])
    finally:
        code = gp.stop(timeout_s=3 * STOP_LIMIT_S)
    assert code == 0
    out = capsys.readouterr().out
    assert f"node 'talker' exited with code {PARAM_FILE_EXIT_CODE} (not required: the graph keeps running)" in out
    _assert_gone(gp.pids())


def test_python_api_wait_until_up_and_stop():
    graph = load_graph(EXAMPLE)
    with GraphProcess(graph, env={"ROS_DOMAIN_ID": os.environ["ROS_DOMAIN_ID"]}) as gp:
        assert gp.wait_until_up(timeout_s=STARTUP_TIMEOUT_S)
        code = gp.stop(signal.SIGTERM, timeout_s=3 * STOP_LIMIT_S)
    assert code == 0
    assert not gp.running
    _assert_gone(gp.pids())


@pytest.mark.parametrize(
    ("override", "expected"),
    [("rate_hz:=0.0", "parameter 'rate_hz' = 0.0 is out of range"), ("rate_hz:=fast", "parameter 'rate_hz' must be a number, got 'fast'")],
)
def test_demo_node_refuses_a_bad_parameter_with_a_message(override, expected):
    exe = Path(sys.executable).parent / "tps_demo_talker"
    proc = subprocess.run([str(exe), "--ros-args", "-p", override], capture_output=True, text=True,
                          timeout=STARTUP_TIMEOUT_S)
    assert proc.returncode == 2
    assert expected in proc.stderr
