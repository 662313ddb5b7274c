"""The stack's outputs as ``visualization_msgs/Marker`` lists (RViz, Foxglove): detections (boxes
in class colours with id, class and score), agent tokens (a disc per agent coloured by its code),
trajectories (candidate, fallback, selected: line strips in source colours) and the monitor state
(a text). Each marker keeps its message's header (frame and stamp), so RViz places it through tf.

:func:`marker_set` puts them together behind one ``DELETEALL``, so each published array
replaces the last one completely (fewer agents leave no stale boxes; RViz 2 clears every namespace
of the display on ``DELETEALL``).
"""

from __future__ import annotations

import colorsys
import math

from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, Quaternion, Vector3
from std_msgs.msg import ColorRGBA
from visualization_msgs.msg import Marker

# DetectedAgent.CLASS_* -> (name, r, g, b)
CLASS_STYLE = {0: ("unknown", 0.6, 0.6, 0.6), 1: ("car", 0.12, 0.47, 0.71), 2: ("truck", 0.55, 0.34, 0.29),
               3: ("bus", 0.89, 0.47, 0.76), 4: ("pedestrian", 1.0, 0.5, 0.05), 5: ("cyclist", 0.17, 0.63, 0.17)}
# PlannedTrajectory.SOURCE_* -> (name, r, g, b)
SOURCE_STYLE = {0: ("planner", 0.0, 0.6, 1.0), 1: ("fallback", 1.0, 0.5, 0.0), 2: ("minimal_risk", 0.85, 0.1, 0.1),
                3: ("blend", 0.6, 0.3, 0.9)}
# MonitorStatus.STATE_* -> (name, r, g, b)
STATE_STYLE = {0: ("NOMINAL", 0.1, 0.7, 0.1), 1: ("DEGRADED", 0.9, 0.8, 0.0), 2: ("FALLBACK", 1.0, 0.5, 0.0),
               3: ("MINIMAL_RISK", 0.85, 0.1, 0.1)}
TRAJECTORY_ROLES = ("candidate", "fallback", "selected")
TRAJECTORY_WIDTH_M = {"candidate": 0.25, "fallback": 0.3, "selected": 0.5}
TOKEN_DISC_HEIGHT_M = 0.1
TOKEN_Z_M = 2.5            # discs float above the boxes
TEXT_Z_M = 1.2             # label above a box's centre [m]
MONITOR_TEXT_Z_M = 4.0     # the monitor state above the ego (base_link) [m]


def _colour(r: float, g: float, b: float, a: float) -> ColorRGBA:
    return ColorRGBA(r=float(r), g=float(g), b=float(b), a=float(a))


def _yaw_quaternion(yaw: float) -> Quaternion:
    return Quaternion(x=0.0, y=0.0, z=math.sin(yaw / 2.0), w=math.cos(yaw / 2.0))


def code_colour(code: int, codebook_size: int) -> tuple[float, float, float]:
    """A colour per code: hues spread over the codebook (golden-ratio stride, so neighbouring
    codes differ visibly)."""
    hue = (int(code) * 0.618033988749895) % 1.0 if codebook_size > 0 else 0.0
    return colorsys.hsv_to_rgb(hue, 0.85, 0.95)


def delete_all(header) -> Marker:
    """The marker that clears the display's markers."""
    return Marker(header=header, action=Marker.DELETEALL)


def detection_markers(msg, alpha: float = 0.5, text_size_m: float = 0.8, lifetime: Duration | None = None) -> list:
    """Boxes and labels of a ``tps_msgs/DetectedAgents`` (namespaces ``detections``, ``detection_labels``)."""
    out = []
    life = lifetime or Duration()
    for k, a in enumerate(msg.agents):
        name, r, g, b = CLASS_STYLE.get(int(a.class_id), CLASS_STYLE[0])
        pose = Pose(position=Point(x=a.center.x, y=a.center.y, z=a.center.z), orientation=_yaw_quaternion(a.yaw))
        out.append(Marker(header=msg.header, ns="detections", id=k, type=Marker.CUBE, action=Marker.ADD,
                          pose=pose, scale=Vector3(x=max(a.size.x, 0.05), y=max(a.size.y, 0.05),
                                                   z=max(a.size.z, 0.05)),
                          color=_colour(r, g, b, alpha), lifetime=life))
        label = Pose(position=Point(x=a.center.x, y=a.center.y, z=a.center.z + TEXT_Z_M),
                     orientation=Quaternion(w=1.0))
        out.append(Marker(header=msg.header, ns="detection_labels", id=k, type=Marker.TEXT_VIEW_FACING,
                          action=Marker.ADD, pose=label, scale=Vector3(z=text_size_m),
                          color=_colour(1.0, 1.0, 1.0, 1.0), text=f"#{a.id} {name} {a.score:.2f}", lifetime=life))
    return out


def token_markers(msg, lifetime: Duration | None = None) -> list:
    """A disc per ``tps_msgs/AgentTokens`` token, coloured by its code (namespace ``tokens``), with
    the code index as text (``token_codes``)."""
    out = []
    life = lifetime or Duration()
    for k, t in enumerate(msg.tokens):
        r, g, b = code_colour(t.code_index, msg.codebook_size)
        diameter = max(1.0, min(t.length, t.width))
        pose = Pose(position=Point(x=float(t.x), y=float(t.y), z=TOKEN_Z_M), orientation=Quaternion(w=1.0))
        out.append(Marker(header=msg.header, ns="tokens", id=k, type=Marker.CYLINDER, action=Marker.ADD, pose=pose,
                          scale=Vector3(x=diameter, y=diameter, z=TOKEN_DISC_HEIGHT_M),
                          color=_colour(r, g, b, 0.9), lifetime=life))
        text = Pose(position=Point(x=float(t.x), y=float(t.y), z=TOKEN_Z_M + 0.6), orientation=Quaternion(w=1.0))
        out.append(Marker(header=msg.header, ns="token_codes", id=k, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                          pose=text, scale=Vector3(z=0.6), color=_colour(r, g, b, 1.0), text=f"c{t.code_index}",
                          lifetime=life))
    return out


def trajectory_markers(msg, role: str, lifetime: Duration | None = None) -> list:
    """A ``tps_msgs/PlannedTrajectory`` as a line strip in its source's colour (namespace
    ``trajectory_<role>``, role one of ``TRAJECTORY_ROLES``)."""
    if role not in TRAJECTORY_ROLES:
        raise ValueError(f"role must be one of {TRAJECTORY_ROLES}, got {role!r}")
    ns = f"trajectory_{role}"
    _, r, g, b = SOURCE_STYLE.get(int(msg.source), SOURCE_STYLE[0])
    out = []
    if len(msg.points) >= 2:
        out.append(Marker(header=msg.header, ns=ns, id=0, type=Marker.LINE_STRIP, action=Marker.ADD,
                          pose=Pose(orientation=Quaternion(w=1.0)), scale=Vector3(x=TRAJECTORY_WIDTH_M[role]),
                          color=_colour(r, g, b, 0.9 if role == "selected" else 0.6),
                          points=[Point(x=p.pose.position.x, y=p.pose.position.y, z=p.pose.position.z + 0.2)
                                  for p in msg.points], lifetime=lifetime or Duration()))
    return out


def monitor_markers(msg, base_frame: str = "base_link", lifetime: Duration | None = None) -> list:
    """The monitor state and certainty as a text above the ego (namespace ``monitor``)."""
    name, r, g, b = STATE_STYLE.get(int(msg.state), ("?", 1.0, 1.0, 1.0))
    header = type(msg.header)(stamp=msg.header.stamp, frame_id=base_frame)
    text = f"{name}  certainty {msg.certainty:.2f}"
    if msg.reasons:
        text += "\n" + "; ".join(msg.reasons[:3])
    return [Marker(header=header, ns="monitor", id=0, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD,
                   pose=Pose(position=Point(z=MONITOR_TEXT_Z_M), orientation=Quaternion(w=1.0)),
                   scale=Vector3(z=1.0), color=_colour(r, g, b, 1.0), text=text, lifetime=lifetime or Duration())]


def marker_set(detections=None, tokens=None, trajectories: dict | None = None, monitor=None,
               base_frame: str = "base_link", alpha: float = 0.5, text_size_m: float = 0.8) -> list:
    """Every marker of the latest messages, behind one ``DELETEALL`` (stamped like the newest
    input). ``trajectories``: role -> PlannedTrajectory. Any input may be None."""
    parts, headers = [], []
    if detections is not None:
        parts += detection_markers(detections, alpha, text_size_m)
        headers.append(detections.header)
    if tokens is not None:
        parts += token_markers(tokens)
        headers.append(tokens.header)
    for role, traj in (trajectories or {}).items():
        if traj is not None:
            parts += trajectory_markers(traj, role)
            headers.append(traj.header)
    if monitor is not None:
        parts += monitor_markers(monitor, base_frame)
        headers.append(monitor.header)
    if not headers:
        return []
    newest = max(headers, key=lambda h: (h.stamp.sec, h.stamp.nanosec))
    return [delete_all(newest), *parts]
