"""Reader-side matching reports (tps_common.readiness) over real DDS: a node's report follows its
subscriptions' matched publishers, and every node started through ``run_node`` publishes one
under its remapped input names (what ``tps-replay`` waits for before the first frame)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import Empty
from tps_common.readiness import (
    INPUT_MATCHES_TOPIC,
    InputMatchReporter,
    input_match_counts,
    parse_output_report,
    parse_report,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "planner"))
from ros_harness import spin_until, start_node, stop  # noqa: E402

pytestmark = pytest.mark.ros

TOPIC = "/tps_readiness_test/input"
LATCHED_READER = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                            durability=DurabilityPolicy.TRANSIENT_LOCAL)


class Reports:
    def __init__(self, node) -> None:
        self.by_node: dict[str, dict[str, int]] = {}
        self.outputs: dict[str, dict[str, int]] = {}
        self.messages = 0
        node.create_subscription(DiagnosticArray, INPUT_MATCHES_TOPIC, self._on, LATCHED_READER)

    def _on(self, msg) -> None:
        self.messages += 1
        self.by_node.update(parse_report(msg))
        self.outputs.update(parse_output_report(msg))


def test_report_follows_the_readers_matched_publishers(test_node):
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    reader = rclpy.create_node("readiness_reader")
    executor = SingleThreadedExecutor()
    try:
        reader.create_subscription(Empty, TOPIC, lambda _m: None, 10)
        reporter = InputMatchReporter(reader, period_s=0.05)
        reports = Reports(test_node)
        executor.add_node(reader)
        executor.add_node(test_node)
        name = reader.get_fully_qualified_name()

        def spin_for(predicate, timeout_s=20.0):
            import time
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and not predicate():
                executor.spin_once(timeout_sec=0.02)
            return predicate()

        assert spin_for(lambda: reports.by_node.get(name, {}).get(TOPIC) == 0), reports.by_node
        assert input_match_counts(reader)[TOPIC] == 0
        published = reports.messages
        pub = test_node.create_publisher(Empty, TOPIC, 10)
        assert spin_for(lambda: reports.by_node[name].get(TOPIC) == 1), \
            f"the report never showed the new publisher: {reports.by_node}"
        assert reports.messages > published
        # unchanged counts publish nothing
        assert not reporter.tick()
        test_node.destroy_publisher(pub)
        assert spin_for(lambda: reports.by_node[name].get(TOPIC) == 0), \
            f"the report never showed the publisher gone: {reports.by_node}"
    finally:
        executor.shutdown(timeout_sec=1.0)
        reader.destroy_node()


def test_every_run_node_process_reports_its_remapped_inputs(test_node, tmp_path):
    remaps = {"~/input/candidate_trajectory": "/rt/candidate", "~/input/fallback_trajectory": "/rt/fallback",
              "~/input/monitor_status": "/rt/status", "~/output/trajectory": "/rt/selected"}
    proc = start_node("trajectory_arbiter", "readiness_arbiter", remaps, log_dir=tmp_path)
    try:
        reports = Reports(test_node)
        pub = test_node.create_publisher(Empty, "/rt/status_unrelated", 10)   # noqa: F841 - not an input
        assert spin_until(test_node, lambda: "/readiness_arbiter" in reports.by_node or proc.poll() is not None,
                          timeout_s=60.0), "trajectory_arbiter never reported its input matches"
        counts = reports.by_node["/readiness_arbiter"]
        for topic in ("/rt/candidate", "/rt/fallback", "/rt/status"):
            assert counts.get(topic) == 0, counts     # no publisher of its inputs yet
        from tps_msgs.msg import PlannedTrajectory

        cand = test_node.create_publisher(PlannedTrajectory, "/rt/candidate", 10)  # noqa: F841 - kept alive
        assert spin_until(test_node, lambda: reports.by_node["/readiness_arbiter"].get("/rt/candidate") == 1,
                          timeout_s=30.0), reports.by_node
        # the writer half: its output's writer counts the readers it has matched
        assert reports.outputs.get("/readiness_arbiter", {}).get("/rt/selected") == 0, reports.outputs
        assert "/readiness_arbiter" not in {n for n in reports.by_node if n.endswith("#outputs")}
        sel = test_node.create_subscription(PlannedTrajectory, "/rt/selected", lambda _m: None, 10)  # noqa: F841
        assert spin_until(test_node, lambda: reports.outputs["/readiness_arbiter"].get("/rt/selected") == 1,
                          timeout_s=30.0), reports.outputs
    finally:
        stop(proc)
