"""stack_markers: draws the stack's outputs for RViz 2 / Foxglove.

Inputs (all optional; each a node-relative name to remap): ``~/input/detections``
(tps_msgs/DetectedAgents), ``~/input/tokens`` (tps_msgs/AgentTokens),
``~/input/candidate_trajectory``, ``~/input/fallback_trajectory``, ``~/input/selected_trajectory``
(tps_msgs/PlannedTrajectory), ``~/input/monitor_status`` (tps_msgs/MonitorStatus).
Output: ``~/output/markers`` (visualization_msgs/MarkerArray): after each input message, every
marker of the latest message of each input (:func:`tps_eval.viz.markers.marker_set`).
No learned model, no effect on driving: it only reads.
"""

from __future__ import annotations

import sys

from rclpy.node import Node
from tps_common.node import load_params, run_node
from tps_common.qos import TRAJECTORY_QOS
from tps_msgs.msg import AgentTokens, DetectedAgents, MonitorStatus, PlannedTrajectory
from visualization_msgs.msg import MarkerArray

from tps_eval.viz.markers import TRAJECTORY_ROLES, marker_set

NODE_NAME = "stack_markers"
MARKER_QOS_DEPTH = 5


class StackMarkersNode(Node):
    """Keeps the latest message of each input and republishes the whole marker set."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("node_name", NODE_NAME)
        super().__init__(**kwargs)
        _, self.cfg = load_params(self, "stack_markers")
        self.latest: dict = {}
        self.pub = self.create_publisher(MarkerArray, "~/output/markers", MARKER_QOS_DEPTH)
        self.create_subscription(DetectedAgents, "~/input/detections",
                                 lambda m: self._on("detections", m), TRAJECTORY_QOS)
        self.create_subscription(AgentTokens, "~/input/tokens", lambda m: self._on("tokens", m), TRAJECTORY_QOS)
        for role in TRAJECTORY_ROLES:
            self.create_subscription(PlannedTrajectory, f"~/input/{role}_trajectory",
                                     lambda m, r=role: self._on(r, m), TRAJECTORY_QOS)
        self.create_subscription(MonitorStatus, "~/input/monitor_status",
                                 lambda m: self._on("monitor", m), TRAJECTORY_QOS)

    def _on(self, key: str, msg) -> None:
        self.latest[key] = msg
        markers = marker_set(detections=self.latest.get("detections"), tokens=self.latest.get("tokens"),
                             trajectories={r: self.latest.get(r) for r in TRAJECTORY_ROLES},
                             monitor=self.latest.get("monitor"), base_frame=self.cfg["base_frame"],
                             alpha=self.cfg["box_alpha"], text_size_m=self.cfg["text_size_m"])
        self.pub.publish(MarkerArray(markers=markers))


NODE_CLASS = StackMarkersNode


def main(args=None) -> None:
    """Console script ``stack_markers``."""
    sys.exit(run_node(NODE_CLASS, NODE_NAME, args))


if __name__ == "__main__":
    main()
