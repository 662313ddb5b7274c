"""Core trajectory types shared by the controller, the fallback planner and the arbiter.

Plain numpy; no ROS imports. Frames: trajectories are in ``map`` (REP-103, metres, radians);
times are simulation seconds. The ego pose types (``EgoPose``, ``PoseHistory``) live in
:mod:`tps_common.stamp_sync`; they are re-exported here only for code not yet moved over.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

# Re-exported (``X as X``) for the nodes and conversions until they import tps_common.stamp_sync.
from tps_common.geometry import wrap_angle

# PlannedTrajectory.SOURCE_* mirrored here so the core needs no message import.
SOURCE_PLANNER = 0
SOURCE_FALLBACK = 1
SOURCE_MINIMAL_RISK = 2
SOURCE_BLEND = 3
SOURCE_NAMES = {
    SOURCE_PLANNER: "planner",
    SOURCE_FALLBACK: "fallback",
    SOURCE_MINIMAL_RISK: "minimal_risk",
    SOURCE_BLEND: "blend",
}

# MonitorStatus.STATE_* mirrored likewise.
STATE_NOMINAL = 0
STATE_DEGRADED = 1
STATE_FALLBACK = 2
STATE_MINIMAL_RISK = 3
STATE_NAMES = {
    STATE_NOMINAL: "NOMINAL",
    STATE_DEGRADED: "DEGRADED",
    STATE_FALLBACK: "FALLBACK",
    STATE_MINIMAL_RISK: "MINIMAL_RISK",
}



@dataclass(frozen=True)
class Trajectory:
    """A planned ego trajectory.

    Attributes:
        stamp_s: sim time of the sensor data it was planned from, s.
        t_s: (N,) time from ``stamp_s`` of each point, s, non-decreasing.
        xy: (N, 2) positions in ``frame_id``, m.
        yaw: (N,) headings, rad.
        speed_mps: (N,) longitudinal speeds, m/s.
        accel_mps2: (N,) longitudinal accelerations, m/s^2.
        source: one of SOURCE_*.
        confidence: in [0, 1].
        frame_id: frame of the positions (``map`` expected).
        sigma_m: (N,) 1-sigma position uncertainty, m (zeros when not estimated).
    """

    stamp_s: float
    t_s: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray
    speed_mps: np.ndarray
    accel_mps2: np.ndarray
    source: int = SOURCE_FALLBACK
    confidence: float = 1.0
    frame_id: str = "map"
    sigma_m: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.sigma_m is None:
            object.__setattr__(self, "sigma_m", np.zeros(len(self.t_s)))

    def __len__(self) -> int:
        return len(self.t_s)


def validate_trajectory(traj: Trajectory | None, expected_frame: str = "map") -> str | None:
    """Return a human-readable reason why ``traj`` is unusable, or None if it is valid."""
    if traj is None:
        return "no trajectory"
    n = len(traj.t_s)
    if n == 0:
        return "empty trajectory (0 points)"
    if traj.frame_id != expected_frame:
        return f"trajectory frame '{traj.frame_id}' is not '{expected_frame}'"
    for name in ("xy", "yaw", "speed_mps", "accel_mps2"):
        arr = getattr(traj, name)
        if len(arr) != n:
            return f"trajectory field {name} has {len(arr)} entries, expected {n}"
    for name in ("t_s", "xy", "yaw", "speed_mps", "accel_mps2"):
        if not np.all(np.isfinite(getattr(traj, name))):
            return f"trajectory field {name} contains NaN/inf"
    if not math.isfinite(traj.stamp_s):
        return "trajectory stamp is not finite"
    if n > 1 and np.any(np.diff(traj.t_s) < 0.0):
        return "trajectory times are not non-decreasing"
    return None


def arc_length(xy: np.ndarray) -> np.ndarray:
    """Cumulative arc length (m) of a polyline (N, 2), starting at 0."""
    if len(xy) == 0:
        return np.zeros(0)
    seg = np.hypot(*np.diff(xy, axis=0).T) if len(xy) > 1 else np.zeros(0)
    return np.concatenate([[0.0], np.cumsum(seg)])


def _interp_angle(t: np.ndarray, tp: np.ndarray, ang: np.ndarray) -> np.ndarray:
    """Interpolate angles without a jump at +-pi."""
    return np.arctan2(np.interp(t, tp, np.sin(ang)), np.interp(t, tp, np.cos(ang)))


def sample_at_times(traj: Trajectory, t_s: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Linearly interpolate (xy, yaw, speed, accel) of ``traj`` at times ``t_s`` (from its stamp).

    Outside the trajectory's span the position is extrapolated at the end speed along the end
    heading (before the start: the first point is held), so a short plan still yields a pose.
    """
    t_s = np.asarray(t_s, dtype=float)
    tp = traj.t_s
    if len(tp) == 1:
        tp1 = np.array([tp[0], tp[0] + 1.0])
        xy = np.vstack([traj.xy, traj.xy])
        yaw = np.repeat(traj.yaw, 2)
        v = np.repeat(traj.speed_mps, 2)
        a = np.repeat(traj.accel_mps2, 2)
    else:
        tp1, xy, yaw, v, a = tp, traj.xy, traj.yaw, traj.speed_mps, traj.accel_mps2
    out_xy = np.stack([np.interp(t_s, tp1, xy[:, 0]), np.interp(t_s, tp1, xy[:, 1])], axis=1)
    out_yaw = _interp_angle(t_s, tp1, yaw)
    out_v = np.interp(t_s, tp1, v)
    out_a = np.interp(t_s, tp1, a)
    beyond = t_s > tp1[-1]
    if np.any(beyond):
        dt = t_s[beyond] - tp1[-1]
        d = v[-1] * dt
        out_xy[beyond, 0] = xy[-1, 0] + d * math.cos(yaw[-1])
        out_xy[beyond, 1] = xy[-1, 1] + d * math.sin(yaw[-1])
        out_a[beyond] = 0.0
    return out_xy, out_yaw, out_v, out_a


def retime(traj: Trajectory, new_stamp_s: float, t_s: np.ndarray | None = None) -> Trajectory:
    """Express ``traj`` relative to ``new_stamp_s`` (later or earlier), sampled at ``t_s``.

    Args:
        traj: the trajectory.
        new_stamp_s: the new reference time, s.
        t_s: output times from ``new_stamp_s``; default: the trajectory's own time grid.
    """
    if t_s is None:
        t_s = traj.t_s
    shift = new_stamp_s - traj.stamp_s
    xy, yaw, v, a = sample_at_times(traj, np.asarray(t_s, dtype=float) + shift)
    sigma = np.interp(np.asarray(t_s) + shift, traj.t_s, traj.sigma_m) if len(traj.t_s) > 1 else (
        np.full(len(t_s), traj.sigma_m[0] if len(traj.sigma_m) else 0.0)
    )
    return replace(traj, stamp_s=new_stamp_s, t_s=np.asarray(t_s, dtype=float).copy(), xy=xy, yaw=yaw,
                   speed_mps=v, accel_mps2=a, sigma_m=sigma)


def blend(a: Trajectory, b: Trajectory, alpha: float, source: int = SOURCE_BLEND) -> Trajectory:
    """Pointwise linear blend ``(1 - alpha) * a + alpha * b`` on ``b``'s stamp and time grid.

    ``a`` is re-timed to ``b``'s stamp first, so both describe the same instants.
    """
    alpha = float(min(max(alpha, 0.0), 1.0))
    a2 = retime(a, b.stamp_s, b.t_s)
    dyaw = wrap_angle(b.yaw - a2.yaw)
    return replace(
        b,
        xy=(1.0 - alpha) * a2.xy + alpha * b.xy,
        yaw=wrap_angle(a2.yaw + alpha * dyaw),
        speed_mps=(1.0 - alpha) * a2.speed_mps + alpha * b.speed_mps,
        accel_mps2=(1.0 - alpha) * a2.accel_mps2 + alpha * b.accel_mps2,
        sigma_m=(1.0 - alpha) * a2.sigma_m + alpha * b.sigma_m,
        confidence=(1.0 - alpha) * a.confidence + alpha * b.confidence,
        source=source,
    )


def stopping_profile(traj: Trajectory, decel_mps2: float, source: int = SOURCE_MINIMAL_RISK) -> Trajectory:
    """Re-time ``traj``'s path with a constant deceleration to a stop (minimal-risk manoeuvre).

    The path geometry is kept; speeds follow ``v(t) = max(v0 - decel * t, 0)`` from the first
    point's speed, so the vehicle stops in lane. Points are on the same time grid.

    Args:
        traj: a valid trajectory (the path to stop along).
        decel_mps2: deceleration, m/s^2 (> 0).
    """
    t = traj.t_s - traj.t_s[0]
    v0 = float(max(traj.speed_mps[0], 0.0))
    v = np.maximum(v0 - decel_mps2 * t, 0.0)
    t_stop = v0 / decel_mps2
    tc = np.minimum(t, t_stop)
    dist = v0 * tc - 0.5 * decel_mps2 * tc**2
    s_path = arc_length(traj.xy)
    xy, yaw = point_at_arclength(traj.xy, traj.yaw, s_path, dist)
    acc = np.where(t < t_stop, -decel_mps2, 0.0)
    return replace(traj, xy=xy, yaw=yaw, speed_mps=v, accel_mps2=acc, source=source)


def speed_capped(traj: Trajectory, cap_mps: float, decel_mps2: float) -> Trajectory:
    """Re-time ``traj``'s path so the speed never exceeds ``cap_mps`` (the monitor's DEGRADED mode).

    Above the cap, the speed comes down to it at ``decel_mps2`` (no step for the controller); below
    it the trajectory's own speeds are kept. The path geometry is kept; positions follow the new
    speeds along it, on the same time grid. A cap of inf returns ``traj`` unchanged.

    Args:
        traj: a valid trajectory.
        cap_mps: the speed cap, m/s (>= 0).
        decel_mps2: deceleration towards the cap, m/s^2 (> 0).
    """
    if not math.isfinite(cap_mps) or len(traj.t_s) == 0 or float(np.max(traj.speed_mps)) <= cap_mps:
        return traj
    t = traj.t_s - traj.t_s[0]
    v0 = float(max(traj.speed_mps[0], 0.0))
    envelope = np.maximum(cap_mps, v0 - decel_mps2 * t)
    v = np.minimum(np.maximum(traj.speed_mps, 0.0), envelope)
    if len(t) > 1:
        dist = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(t))])
        acc = np.gradient(v, t) if np.all(np.diff(t) > 0) else np.zeros(len(t))
    else:
        dist, acc = np.zeros(1), np.zeros(1)
    s_path = arc_length(traj.xy)
    xy, yaw = point_at_arclength(traj.xy, traj.yaw, s_path, dist)
    return replace(traj, xy=xy, yaw=yaw, speed_mps=v, accel_mps2=acc)


def point_at_arclength(xy: np.ndarray, yaw: np.ndarray, s_path: np.ndarray,
                       s_query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Positions and headings at arc lengths ``s_query`` along a polyline; extrapolated past its
    end along the last heading."""
    s_query = np.asarray(s_query, dtype=float)
    if len(xy) == 1 or s_path[-1] <= 1e-9:
        d = np.maximum(s_query, 0.0)
        out = np.stack([xy[0, 0] + d * math.cos(yaw[0]), xy[0, 1] + d * math.sin(yaw[0])], axis=1)
        return out, np.full(len(s_query), yaw[0])
    # Drop zero-length segments so np.interp sees strictly increasing abscissae.
    keep = np.concatenate([[True], np.diff(s_path) > 1e-9])
    sp, pxy, pyaw = s_path[keep], xy[keep], yaw[keep]
    out = np.stack([np.interp(s_query, sp, pxy[:, 0]), np.interp(s_query, sp, pxy[:, 1])], axis=1)
    oyaw = _interp_angle(s_query, sp, pyaw)
    beyond = s_query > sp[-1]
    if np.any(beyond):
        d = s_query[beyond] - sp[-1]
        out[beyond, 0] = pxy[-1, 0] + d * math.cos(pyaw[-1])
        out[beyond, 1] = pxy[-1, 1] + d * math.sin(pyaw[-1])
    return out, oyaw
