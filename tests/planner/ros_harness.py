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
