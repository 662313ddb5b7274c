"""Stamps, headers and orientations <-> messages, one copy for every package.

Imports message types (builtin_interfaces, std_msgs, geometry_msgs), never rclpy. Times are
seconds as float or exact integer nanoseconds; orientations go through :mod:`tps_common.geometry`.
"""

from __future__ import annotations

import math

from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Quaternion
from std_msgs.msg import Header

from tps_common.geometry import quaternion_to_yaw, yaw_to_quaternion

NS_PER_S = 1_000_000_000
MAX_STAMP_NS = (2 ** 31 - 1) * NS_PER_S + NS_PER_S - 1   # the largest builtin_interfaces Time


def time_to_seconds(stamp: Time) -> float:
    """``builtin_interfaces/Time`` (or ``Duration``) -> seconds."""
    return stamp.sec + stamp.nanosec * 1e-9


def time_to_ns(stamp: Time) -> int:
    """``builtin_interfaces/Time`` -> exact integer nanoseconds (for comparisons and keys)."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def seconds_to_time(t_s: float) -> Time:
    """Seconds -> ``builtin_interfaces/Time``, rounded to the nanosecond and clamped to [0, the
    largest Time] (a Time cannot be negative; a stamp of 2**31 - 1 s with nanoseconds >= 1e9,
    which a malformed message can carry, must not overflow its int32 seconds)."""
    ns = min(max(0, int(round(t_s * 1e9))), MAX_STAMP_NS)
    return Time(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


def seconds_to_duration(t_s: float) -> Duration:
    """Seconds (>= 0) -> ``builtin_interfaces/Duration``, rounded to the nanosecond (clamped like
    :func:`seconds_to_time`)."""
    ns = min(max(0, int(round(t_s * 1e9))), MAX_STAMP_NS)
    return Duration(sec=ns // NS_PER_S, nanosec=ns % NS_PER_S)


def header(t_s: float, frame_id: str = "") -> Header:
    """A ``std_msgs/Header`` stamped ``t_s`` seconds in ``frame_id``."""
    return Header(stamp=seconds_to_time(t_s), frame_id=frame_id)


def yaw_to_quaternion_msg(yaw: float) -> Quaternion:
    """``geometry_msgs/Quaternion`` of a rotation by ``yaw`` [rad] about +z."""
    x, y, z, w = yaw_to_quaternion(yaw)
    return Quaternion(x=x, y=y, z=z, w=w)


def quaternion_msg_to_yaw(q: Quaternion) -> float:
    """Yaw [rad] of a ``geometry_msgs/Quaternion`` (roll and pitch ignored)."""
    return quaternion_to_yaw(q.x, q.y, q.z, q.w)


# A pose's orientation must be a unit quaternion: localisation publishes normalised ones (float
# rounding aside); one far from unit norm is a malformed message, not a rotation to normalise.
QUATERNION_NORM_TOLERANCE = 0.01


def orientation_problem(q: Quaternion) -> str | None:
    """Why ``q`` is not a pose's orientation (a NaN/inf component, or a norm off 1 by more than
    :data:`QUATERNION_NORM_TOLERANCE`), or None."""
    comps = (q.x, q.y, q.z, q.w)
    if not all(math.isfinite(c) for c in comps):
        return f"orientation quaternion {comps} has NaN/inf"
    norm = math.sqrt(sum(c * c for c in comps))
    if abs(norm - 1.0) > QUATERNION_NORM_TOLERANCE:
        return f"orientation quaternion is not a rotation (norm {norm:.3g}, not 1)"
    return None


def odometry_to_pose(msg):
    """``nav_msgs/Odometry`` (pose in map) -> ``tps_common.stamp_sync.EgoPose``; speed =
    |twist.linear| (the twist is in the child frame per REP-105; its norm does not depend on the
    frame). An orientation that is not a unit quaternion is the pose's ``problem``
    (``invalid_pose_reason`` then names it): its yaw would be a number all the same."""
    from tps_common.stamp_sync import EgoPose

    p, tw = msg.pose.pose, msg.twist.twist.linear
    return EgoPose(time_to_seconds(msg.header.stamp), float(p.position.x), float(p.position.y),
                   quaternion_msg_to_yaw(p.orientation), math.hypot(tw.x, tw.y),
                   problem=orientation_problem(p.orientation))


def light_heads_from_info(msg) -> list:
    """``carla_msgs/CarlaTrafficLightInfoList`` -> ``tps_common.traffic_lights.LightHead`` (one
    per light, in the message's order; the stop line from each trigger volume, docs/CONTRACTS.md
    "Traffic lights"). The message is read by its fields (no carla_msgs import here).

    Raises:
        ValueError: a light with a non-finite pose or an empty trigger volume (names its id).
    """
    from tps_common.traffic_lights import LightHead

    heads = []
    for light in msg.traffic_lights:
        p, q = light.transform.position, light.transform.orientation
        c, s = light.trigger_volume.center, light.trigger_volume.size
        heads.append(LightHead.from_info(int(light.id), (p.x, p.y, p.z), (q.x, q.y, q.z, q.w),
                                         (c.x, c.y, c.z), (s.x, s.y, s.z)))
    return heads
