"""stack_markers: the stack's outputs as a MarkerArray (conversions without DDS, and the node's
proof of life over real DDS)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from builtin_interfaces.msg import Time
from std_msgs.msg import Header
from tps_eval.viz.markers import CLASS_STYLE, SOURCE_STYLE, code_colour, marker_set
from tps_msgs.msg import (
    AgentToken,
    AgentTokens,
    DetectedAgent,
    DetectedAgents,
    MonitorStatus,
    PlannedTrajectory,
    TrajectoryPoint,
)
from visualization_msgs.msg import Marker

NODE_START_TIMEOUT_S = 60.0
STAMP = Time(sec=12, nanosec=300_000_000)


def _detections(n: int = 2) -> DetectedAgents:
    agents = [DetectedAgent(id=10 + k, class_id=1 + k, score=0.9 - 0.1 * k) for k in range(n)]
    for k, a in enumerate(agents):
        a.center.x, a.center.y, a.yaw = 10.0 + 5 * k, -2.0, 0.3
        a.size.x, a.size.y, a.size.z = 4.5, 1.9, 1.6
    return DetectedAgents(header=Header(stamp=STAMP, frame_id="base_link"), agents=agents)


def _trajectory(source: int) -> PlannedTrajectory:
    pts = [TrajectoryPoint() for _ in range(5)]
    for k, p in enumerate(pts):
        p.pose.position.x = 100.0 + 2 * k
    return PlannedTrajectory(header=Header(stamp=STAMP, frame_id="map"), source=source, points=pts)


def test_marker_set_draws_every_output():
    tokens = AgentTokens(header=Header(stamp=STAMP, frame_id="base_link"), codebook_size=64,
                         tokens=[AgentToken(agent_id=10, code_index=7, x=10.0, y=-2.0, length=4.5, width=1.9)])
    monitor = MonitorStatus(header=Header(stamp=STAMP), state=MonitorStatus.STATE_FALLBACK, certainty=0.31,
                            reasons=["corridor occupancy"])
    markers = marker_set(detections=_detections(), tokens=tokens,
                         trajectories={"fallback": _trajectory(1), "selected": _trajectory(1), "candidate": None},
                         monitor=monitor)
    assert markers[0].action == Marker.DELETEALL and all(m.action == Marker.ADD for m in markers[1:])
    by_ns: dict = {}
    for m in markers[1:]:
        by_ns.setdefault(m.ns, []).append(m)
    assert {ns: len(v) for ns, v in by_ns.items()} == {
        "detections": 2, "detection_labels": 2, "tokens": 1, "token_codes": 1,
        "trajectory_fallback": 1, "trajectory_selected": 1, "monitor": 1}
    box = by_ns["detections"][1]
    assert box.type == Marker.CUBE and box.header.frame_id == "base_link" and box.header.stamp == STAMP
    assert (box.color.r, box.color.g, box.color.b) == pytest.approx(CLASS_STYLE[2][1:])   # truck colour
    assert by_ns["detection_labels"][0].text == "#10 car 0.90"
    assert (by_ns["tokens"][0].color.r, by_ns["tokens"][0].color.g) == pytest.approx(code_colour(7, 64)[:2])
    assert by_ns["token_codes"][0].text == "c7"
    line = by_ns["trajectory_selected"][0]
    assert line.type == Marker.LINE_STRIP and len(line.points) == 5 and line.header.frame_id == "map"
    assert (line.color.r, line.color.g, line.color.b) == pytest.approx(SOURCE_STYLE[1][1:])
    assert by_ns["monitor"][0].text.startswith("FALLBACK  certainty 0.31")
    assert marker_set() == []
    # ids are unique per namespace (RViz replaces markers by (ns, id))
    assert len({(m.ns, m.id) for m in markers[1:]}) == len(markers) - 1


def test_code_colours_differ_between_neighbouring_codes():
    a, b = code_colour(3, 64), code_colour(4, 64)
    assert max(abs(x - y) for x, y in zip(a, b, strict=True)) > 0.2


@pytest.mark.ros
def test_stack_markers_node_publishes_over_dds():
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from visualization_msgs.msg import MarkerArray

    env = dict(os.environ)
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "stack_markers"), "--ros-args",
                             "-r", "~/input/detections:=/t/detections", "-r", "~/output/markers:=/t/markers"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    node = rclpy.create_node("markers_probe", context=ctx)
    got: list = []
    try:
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(DetectedAgents, "/t/detections", qos)
        node.create_subscription(MarkerArray, "/t/markers", got.append, 5)
        from rclpy.executors import SingleThreadedExecutor

        ex = SingleThreadedExecutor(context=ctx)
        ex.add_node(node)
        deadline = time.monotonic() + NODE_START_TIMEOUT_S
        while not got and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read()
            if pub.get_subscription_count():
                pub.publish(_detections(3))
            ex.spin_once(timeout_sec=0.2)
        assert got, "no MarkerArray from stack_markers"
        ns = [m.ns for m in got[-1].markers]
        assert ns.count("detections") == 3 and ns.count("detection_labels") == 3
        ex.shutdown()
    finally:
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        proc.terminate()
        proc.wait(timeout=10)
