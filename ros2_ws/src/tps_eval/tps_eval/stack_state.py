"""The stack's state at each simulation step, read back from an episode's recorded bag
(``tps-eval closedloop --record``: ``episodes/<key>/episode.mcap``). No ROS; ``rosbags`` only.

Per stamp (matched to the episode log's steps at 1 ms, as :mod:`tps_eval.collector` does):

* the source of the selected trajectory (``/tps/planning/trajectory``, ``PlannedTrajectory.source``),
* the monitor's state and certainty (``/tps/monitor/status``; absent until a monitor node runs),
* the detector's status and boxes (``/tps/perception/detections``, in ``base_link``).

:func:`info_lines` turns one step into the text the BEV animation draws; :func:`detections_in_map`
puts the boxes into the map frame with the ego's pose of that step.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from tps_eval.collector import stamp_key
from tps_eval.metrics import ObjectFrame

TRAJECTORY_TOPIC = "/tps/planning/trajectory"
MONITOR_TOPIC = "/tps/monitor/status"
DETECTIONS_TOPIC = "/tps/perception/detections"
TOPICS = (TRAJECTORY_TOPIC, MONITOR_TOPIC, DETECTIONS_TOPIC)
# tps_msgs constants (PlannedTrajectory.SOURCE_*, MonitorStatus.STATE_*, DetectedAgents.STATUS_*)
SOURCE_NAMES = {0: "PLANNER", 1: "FALLBACK", 2: "MINIMAL RISK", 3: "BLEND"}
MONITOR_NAMES = {0: "NOMINAL", 1: "DEGRADED", 2: "FALLBACK", 3: "MINIMAL RISK"}
DETECTOR_STATUS = {0: "ok", 1: "NO INPUT", 2: "INVALID INPUT", 3: "INFERENCE ERROR",
                   4: "FAULT INJECTED"}


@dataclass
class StackState:
    """What the bag says about the stack, by stamp key [ms].

    Attributes:
        sources: {key: PlannedTrajectory.source of the first selected trajectory of that stamp}.
        monitor: {key: (MonitorStatus.state, certainty)}.
        detections: {key: (DetectedAgents.status, status_message, (N, 6) float array of x, y, yaw,
            length, width, class_id in base_link)}.
        topics: the topics of :data:`TOPICS` the bag has at all.
    """

    sources: dict = field(default_factory=dict)
    monitor: dict = field(default_factory=dict)
    detections: dict = field(default_factory=dict)
    topics: set = field(default_factory=set)


def _key(msg) -> int:
    st = msg.header.stamp
    return stamp_key(st.sec + st.nanosec * 1e-9)


def read_stack_state(bag: str | os.PathLike) -> StackState:
    """The stack's state per stamp from ``bag`` (see the module docstring).

    Raises:
        tps_eval.replay.bagio.BagError: no such bag.
    """
    from tps_eval.replay.bagio import read_messages

    out = StackState()
    for topic, _type, _t, msg in read_messages(bag, set(TOPICS)):
        if topic not in TOPICS:   # rosbags reads every connection when none matched
            continue
        out.topics.add(topic)
        k = _key(msg)
        if topic == TRAJECTORY_TOPIC:
            out.sources.setdefault(k, int(msg.source))
        elif topic == MONITOR_TOPIC:
            out.monitor.setdefault(k, (int(msg.state), float(msg.certainty)))
        elif topic == DETECTIONS_TOPIC:
            boxes = np.array([[a.center.x, a.center.y, a.yaw, a.size.x, a.size.y, a.class_id]
                              for a in msg.agents], np.float64).reshape(-1, 6)
            out.detections.setdefault(k, (int(msg.status), str(msg.status_message), boxes))
    return out


def info_lines(state: StackState, t_s: float) -> tuple[str, ...]:
    """The stack's state at simulation time ``t_s`` as short lines of text."""
    k = stamp_key(t_s)
    src = state.sources.get(k)
    lines = [f"driving: {SOURCE_NAMES.get(src, str(src)) if src is not None else '-'}"]
    if MONITOR_TOPIC not in state.topics:
        lines.append("monitor: not running")
    else:
        mon = state.monitor.get(k)
        lines.append("monitor: -" if mon is None else
                     f"monitor: {MONITOR_NAMES.get(mon[0], str(mon[0]))} ({mon[1]:.2f})")
    if DETECTIONS_TOPIC not in state.topics:
        lines.append("detector: not running")
    else:
        det = state.detections.get(k)
        if det is None:
            lines.append("detector: -")
        else:
            status = DETECTOR_STATUS.get(det[0], str(det[0]))
            extra = f" ({det[1]})" if det[0] != 0 and det[1] else ""
            lines.append(f"detector: {len(det[2])} agents, {status}{extra}"[:60])
    return tuple(lines)


def detections_in_map(state: StackState, t_s: float,
                      ego_pose: tuple[float, float, float]) -> ObjectFrame | None:
    """The detections of the step at ``t_s`` in the map frame (``ego_pose``: base_link's x, y,
    yaw in map); None when the bag has none for that step."""
    det = state.detections.get(stamp_key(t_s))
    if det is None:
        return None
    b = det[2]
    x, y, yaw = ego_pose
    c, s = np.cos(yaw), np.sin(yaw)
    xy = np.stack([x + c * b[:, 0] - s * b[:, 1], y + s * b[:, 0] + c * b[:, 1]], axis=1)
    n = len(b)
    return ObjectFrame(np.arange(n), xy, b[:, 2] + yaw, b[:, 3], b[:, 4], np.zeros((n, 2)),
                       b[:, 5].astype(np.int64))


LIDAR_TOPIC = "/carla/ego_vehicle/lidar"


def topic_counts(bag: str | os.PathLike) -> dict[str, int]:
    """{topic: message count} from the bag's index (no message is read)."""
    from tps_eval.replay.bagio import open_reader

    out: dict[str, int] = {}
    with open_reader(bag) as reader:
        for conn in reader.connections:
            out[conn.topic] = out.get(conn.topic, 0) + int(conn.msgcount)
    return out


def perception_row(bag: str | os.PathLike) -> dict:
    """How perception kept up in a recorded closed-loop episode: lidar frames published, frames
    perception answered (DetectedAgents), those with at least one agent, those marked
    FAULT_INJECTED, and the answered share."""
    counts = topic_counts(bag)
    state = read_stack_state(bag)
    lidar = counts.get(LIDAR_TOPIC, 0)
    dets = list(state.detections.values())
    return {"lidar_frames": lidar, "detection_frames": len(dets),
            "frames_with_agents": sum(1 for d in dets if len(d[2])),
            "fault_frames": sum(1 for d in dets if d[0] == 4),
            "answered_share": len(dets) / lidar if lidar else None}
