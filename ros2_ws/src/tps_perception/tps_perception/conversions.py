"""Message <-> core-type conversions of tps_perception (the only module that knows messages)."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header
from tps_common.geometry import wrap_angle
from tps_msgs.msg import (
    AgentToken,
    AgentTokens,
    DetectedAgent,
    DetectedAgents,
    TrafficLightState,
    TrafficLightStates,
)

from tps_perception.postprocess import Detections


class CloudError(ValueError):
    """The PointCloud2 cannot be used (malformed, wrong frame)."""


def cloud_to_points(msg: PointCloud2, expected_frame: str) -> np.ndarray:
    """(N, 4) float32 x, y, z, intensity of a lidar cloud in ``expected_frame``.

    NaN points are kept (the detector core rejects them with a count), so a bad cloud is never
    silently "cleaned".

    Raises:
        CloudError: wrong frame, or a malformed message (naming what is wrong).
    """
    from tps_inference.conversions import ConversionError, pointcloud2_to_xyzi

    if expected_frame and msg.header.frame_id != expected_frame:
        raise CloudError(f"point cloud in frame '{msg.header.frame_id}', expected '{expected_frame}'")
    try:
        return pointcloud2_to_xyzi(msg)
    except ConversionError as exc:
        raise CloudError(f"malformed PointCloud2: {exc}") from exc


def detections_to_msg(header_stamp: Time, frame_id: str, det: Detections, ids: np.ndarray, velocities: np.ndarray,
                      status: int, status_message: str, processing_time_ms: float) -> DetectedAgents:
    """Build a DetectedAgents (boxes in base_link; velocity z = 0)."""
    msg = DetectedAgents()
    msg.header = Header(stamp=header_stamp, frame_id=frame_id)
    msg.status = int(status)
    msg.status_message = status_message
    msg.processing_time_ms = float(processing_time_ms)
    agents = []
    for k in range(len(det)):
        b = det.boxes[k]
        a = DetectedAgent()
        a.id = int(ids[k])
        a.class_id = int(det.labels[k])
        a.score = float(det.scores[k])
        a.center.x, a.center.y, a.center.z = float(b[0]), float(b[1]), float(b[2])
        a.yaw = float(wrap_angle(float(b[6]), include_pi=True))
        a.size.x, a.size.y, a.size.z = float(b[3]), float(b[4]), float(b[5])
        a.velocity.x, a.velocity.y = float(velocities[k, 0]), float(velocities[k, 1])
        agents.append(a)
    msg.agents = agents
    return msg


def tokens_to_msg(header_stamp: Time, frame_id: str, tokens, status: int, status_message: str,
                  processing_time_ms: float, codebook_size: int = 0, scene_codebook_size: int = 0) -> AgentTokens:
    """Build an AgentTokens from :class:`tps_perception.tokenizer.AgentTokens` (row k = published
    agent k), or an empty message with ``status`` when ``tokens`` is None (then the codebook sizes
    come from the arguments)."""
    msg = AgentTokens()
    msg.header = Header(stamp=header_stamp, frame_id=frame_id)
    msg.status = int(status)
    msg.status_message = status_message
    msg.processing_time_ms = float(processing_time_ms)
    if tokens is None:
        msg.codebook_size, msg.scene_codebook_size = int(codebook_size), int(scene_codebook_size)
        return msg
    msg.codebook_size, msg.scene_codebook_size = int(tokens.codebook_size), int(tokens.scene_codebook_size)
    g = tokens.geometry
    msg.tokens = [AgentToken(agent_id=int(tokens.agent_ids[k]), code_index=int(tokens.codes[k]),
                             quantisation_error=float(tokens.qerr[k]), x=float(g[k, 0]), y=float(g[k, 1]),
                             yaw=float(wrap_angle(float(g[k, 2]), include_pi=True)), length=float(g[k, 3]),
                             width=float(g[k, 4]), vx=float(g[k, 5]), vy=float(g[k, 6]))
                  for k in range(len(tokens))]
    msg.scene_codes = [int(c) for c in tokens.scene_codes]
    msg.scene_quantisation_errors = [float(e) for e in tokens.scene_qerr]
    return msg


def camera_matrix(msg) -> np.ndarray | None:
    """K (3, 3) [px] of a ``sensor_msgs/CameraInfo``; None when it is unset (all zeros) or not
    finite. Distortion is not modelled (the reader assumes rectified images)."""
    k = np.asarray(msg.k, np.float64).reshape(3, 3)
    if not np.all(np.isfinite(k)) or k[0, 0] <= 0.0 or k[1, 1] <= 0.0:
        return None
    return k


def light_states_msg(header_stamp: Time, frame_id: str, items) -> TrafficLightStates:
    """``tps_msgs/TrafficLightStates`` from (light id, state, confidence, distance to the stop line
    [m], reason) tuples, in the given order."""
    msg = TrafficLightStates()
    msg.header = Header(stamp=header_stamp, frame_id=frame_id)
    msg.lights = [TrafficLightState(id=int(i), state=int(st), confidence=float(conf),
                                    distance_to_stop_line_m=float(dist), reason=int(reason))
                  for i, st, conf, dist, reason in items]
    return msg
