"""DDS test harness for tests/planner: start a node as a real process (its console script) and
drive it from an in-process rclpy test node."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import rclpy
from rclpy.node import Node

VENV_BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 30.0     # process start + discovery on a loaded 2-core host


def start_node(executable: str, node_name: str, remaps: dict, params: dict | None = None,
               log_dir: Path | None = None, params_file: Path | None = None) -> subprocess.Popen:
    """Start ``executable`` (a console script of the venv) with ROS args (a parameter file first,
    then single parameters); output to a log file."""
    args = [str(VENV_BIN / executable), "--ros-args", "-r", f"__node:={node_name}"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    for src, dst in remaps.items():
        args += ["-r", f"{src}:={dst}"]
    for k, v in (params or {}).items():
        val = str(v).lower() if isinstance(v, bool) else str(v)
        args += ["-p", f"{k}:={val}"]
    log = open((log_dir or Path("/tmp")) / f"{node_name}.log", "w")  # noqa: SIM115 (closed by the process end)
    return subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=dict(os.environ))


def stop(proc: subprocess.Popen) -> None:
    """Terminate a process we started, then kill it if it does not exit."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def spin_until(node: Node, predicate, timeout_s: float, step_s: float = 0.02, action=None,
               action_every_s: float = 0.25) -> bool:
    """Spin ``node`` until ``predicate()`` is true; call ``action()`` now and then meanwhile
    (re-publishing until discovery completes). Returns the predicate's final value."""
    deadline = time.monotonic() + timeout_s
    next_action = 0.0
    while time.monotonic() < deadline:
        if action is not None and time.monotonic() >= next_action:
            action()
            next_action = time.monotonic() + action_every_s
        rclpy.spin_once(node, timeout_sec=step_s)
        if predicate():
            return True
    return bool(predicate())


class InputMatches:
    """A node's own reports of its readers' matched publishers (tps_common.readiness), by topic.

    A publisher's ``get_subscription_count()`` is the writer's half of DDS matching only: the node's
    reader may not have matched that writer yet, and a volatile reader drops what was sent before
    (a message published "after discovery" by the writer's count can still be lost). The report is
    latched: created before or after the node, this gets its newest one."""

    def __init__(self, node: Node, node_name: str) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from tps_common.qos import INPUT_MATCHES_READER_QOS
        from tps_common.readiness import INPUT_MATCHES_TOPIC, parse_report

        self.node, self.fqn = node, node_name if node_name.startswith("/") else f"/{node_name}"
        self.counts: dict[str, int] = {}
        self.sub = node.create_subscription(
            DiagnosticArray, INPUT_MATCHES_TOPIC,
            lambda msg: self.counts.update(parse_report(msg).get(self.fqn, {})), INPUT_MATCHES_READER_QOS)

    def unmatched(self, topics) -> list[str]:
        return [t for t in topics if self.counts.get(t, 0) < 1]

    def wait(self, topics, timeout_s: float) -> bool:
        """Spin until the node reports at least one matched publisher on every topic (resolved
        names); returns whether it did."""
        return spin_until(self.node, lambda: not self.unmatched(topics), timeout_s)
