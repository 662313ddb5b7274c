"""Per-cycle signals of the confidence monitor (pure numpy; no ROS imports).

Every function takes plain arrays / the snapshots of :mod:`tps_planner.monitor` and returns its
value(s) and a short human-readable reason. Positions are in the map frame, times in sim seconds.
None of them raises on bad numbers: a non-finite input gives a NaN/inf value (which the monitor
maps to full risk) and a reason saying so.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from tps_common.geometry import box_corners

from tps_planner.trajectory import Trajectory, arc_length, point_at_arclength, sample_at_times

_KNOWN_LIGHTS = (0, 1, 2)   # RED, YELLOW, GREEN (OFF=3 and UNKNOWN=4 are "unknown")
_LIGHT_NAMES = {0: "RED", 1: "YELLOW", 2: "GREEN", 3: "OFF", 4: "UNKNOWN"}
_DEFAULT_AGENT_LW = (4.5, 1.9)
MOVING_MPS = 0.5      # kinematic check: candidate points slower than this are a stop (no path geometry)
# Plausibility bounds of the numbers the signals resample over (paths every few decimetres, the
# corridor over the stopping distance): finite is not enough. A fuzzed candidate with one point at
# x = -1e9 m made the kinematic check resample a 1e9-m path every chord and the monitor was
# OOM-killed at 22 GB (tests/fuzz, 1000 messages per input). A road vehicle's plan spans a few
# hundred metres and seconds; anything beyond these is malformed, judged "candidate unusable".
MAX_PLAUSIBLE_SPEED_MPS = 100.0    # ego or candidate speed (360 km/h)
MAX_CANDIDATE_EXTENT_M = 2000.0    # the candidate's points within this of its first point
MAX_CANDIDATE_SPAN_S = 120.0       # from its first to its last point
INF = math.inf


def _finite_traj(traj: Trajectory | None) -> bool:
    return (traj is not None and len(traj.t_s) > 0 and len(traj.xy) == len(traj.t_s)
            and bool(np.all(np.isfinite(traj.xy))) and bool(np.all(np.isfinite(traj.t_s)))
            and math.isfinite(traj.stamp_s))


def candidate_problem(traj: Trajectory | None) -> str | None:
    """Why the candidate cannot be evaluated (None/empty/NaN/inconsistent), or None when usable."""
    if traj is None:
        return "no candidate trajectory"
    n = len(traj.t_s)
    if n == 0:
        return "empty candidate (0 points)"
    for name in ("xy", "yaw", "speed_mps", "accel_mps2"):
        if len(getattr(traj, name)) != n:
            return f"candidate field {name} has {len(getattr(traj, name))} entries, expected {n}"
    for name in ("t_s", "xy", "yaw", "speed_mps"):
        if not np.all(np.isfinite(getattr(traj, name))):
            return f"candidate field {name} contains NaN/inf"
    if not math.isfinite(traj.stamp_s):
        return "candidate stamp is not finite"
    if n > 1 and np.any(np.diff(traj.t_s) < 0.0):
        return "candidate times are not non-decreasing"
    span = float(traj.t_s[-1] - traj.t_s[0])
    if span > MAX_CANDIDATE_SPAN_S:
        return f"candidate spans {span:.3g} s (at most {MAX_CANDIDATE_SPAN_S:.0f} s is plausible)"
    xy = np.asarray(traj.xy, float)
    extent = float(np.hypot(*(xy - xy[0]).T).max())
    if extent > MAX_CANDIDATE_EXTENT_M:
        return (f"candidate points reach {extent:.3g} m from its first point "
                f"(at most {MAX_CANDIDATE_EXTENT_M:.0f} m is plausible)")
    top = float(np.abs(traj.speed_mps).max())
    if top > MAX_PLAUSIBLE_SPEED_MPS:
        return f"candidate speed {top:.3g} m/s (at most {MAX_PLAUSIBLE_SPEED_MPS:.0f} m/s is plausible)"
    return None


# ---------------------------------------------------------------------------------------------
# Planner and forecast uncertainty
# ---------------------------------------------------------------------------------------------

def planner_sigma(traj: Trajectory) -> tuple[float, float, str]:
    """Mean and max of the candidate's per-point 1-sigma position uncertainty [m]."""
    s = np.asarray(traj.sigma_m, float)
    if len(s) == 0:
        return 0.0, 0.0, "planner sigma: not estimated"
    if not np.all(np.isfinite(s)):
        return math.nan, math.nan, "planner sigma contains NaN/inf"
    return float(s.mean()), float(s.max()), f"planner sigma mean {s.mean():.2f} m, max {s.max():.2f} m"


def _near_forecast_agents(fc: Any, ego_xy: np.ndarray, radius_m: float) -> np.ndarray:
    """(A,) bool: agents whose first waypoint (most probable mode) is within radius of the ego."""
    a = fc.modes_xy.shape[0]
    if a == 0 or fc.modes_xy.shape[2] == 0:
        return np.zeros(a, bool)
    best = np.argmax(np.nan_to_num(fc.probs, nan=-1.0), axis=1)
    first = fc.modes_xy[np.arange(a), best, 0, :]
    d = np.hypot(*(first - ego_xy[None, :]).T)
    return np.isfinite(d) & (d <= radius_m)


def forecast_entropy(fc: Any, ego_xy: np.ndarray, radius_m: float) -> tuple[float, str]:
    """Mean over agents within ``radius_m`` of the normalised mode entropy H(p)/log K, in [0, 1]."""
    if fc is None:
        return 0.0, "forecast entropy: no forecasts"
    probs = np.asarray(fc.probs, float)
    if probs.ndim != 2 or probs.shape[0] == 0 or probs.shape[1] <= 1:
        return 0.0, "forecast entropy: no multi-modal agents"
    near = _near_forecast_agents(fc, ego_xy, radius_m)
    if not near.any():
        return 0.0, f"forecast entropy: no agent within {radius_m:.0f} m"
    p = probs[near]
    if not np.all(np.isfinite(p)):
        return math.nan, "forecast probabilities contain NaN/inf"
    p = np.clip(p, 0.0, None)
    p = p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -np.where(p > 0, p * np.log(p), 0.0).sum(axis=1) / math.log(p.shape[1])
    v = float(np.clip(h.mean(), 0.0, 1.0))
    return v, f"forecast entropy {v:.2f} over {int(near.sum())} near agents"


def quantisation_error(perc: Any, ego_xy: np.ndarray, radius_m: float) -> tuple[float, str]:
    """Max token quantisation error over agents within ``radius_m`` of the ego (raw units)."""
    if perc is None or len(perc.agent_ids) == 0:
        return 0.0, "quantisation error: no agents"
    d = np.hypot(*(np.asarray(perc.xy, float).reshape(-1, 2) - ego_xy[None, :]).T)
    near = ~(d > radius_m)   # NaN positions count as near (not hidden)
    if not near.any():
        return 0.0, f"quantisation error: no agent within {radius_m:.0f} m"
    q = np.asarray(perc.quantisation_error, float)[near]
    if not np.all(np.isfinite(q)):
        return math.nan, "quantisation error contains NaN/inf"
    i = int(np.argmax(q))
    ids = np.asarray(perc.agent_ids)[near]
    return float(q[i]), f"quantisation error {q[i]:.3f} (agent {int(ids[i])})"


# ---------------------------------------------------------------------------------------------
# Clearance and time to collision
# ---------------------------------------------------------------------------------------------

def box_gap(ego_xy: np.ndarray, ego_yaw: np.ndarray, ego_half_len: float, ego_half_wid: float,
            ag_xy: np.ndarray, ag_yaw: np.ndarray, ag_half_len: np.ndarray,
            ag_half_wid: np.ndarray) -> np.ndarray:
    """Conservative gap [m] between the ego box and agent boxes (broadcasting arrays).

    Separating-axis estimate on the ego's axes: the agent's half extent is projected on the ego's
    longitudinal and lateral axes; the gap is the Euclidean gap between the two axis-aligned
    extents in the ego frame (<= 0 means overlapping on both axes). It never overestimates the true
    gap for an agent aligned with the ego and is slightly conservative for a rotated one.
    """
    dx = ag_xy[..., 0] - ego_xy[..., 0]
    dy = ag_xy[..., 1] - ego_xy[..., 1]
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    lx = np.abs(c * dx + s * dy)
    ly = np.abs(-s * dx + c * dy)
    dth = ag_yaw - ego_yaw
    cd, sd = np.abs(np.cos(dth)), np.abs(np.sin(dth))
    ex = ego_half_len + ag_half_len * cd + ag_half_wid * sd
    ey = ego_half_wid + ag_half_len * sd + ag_half_wid * cd
    gx, gy = lx - ex, ly - ey
    return np.where((gx > 0) & (gy > 0), np.hypot(gx, gy), np.maximum(gx, gy))


def _agent_sizes(ids: np.ndarray, perc: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Half length, half width, yaw (NaN where unknown) and a 'known' mask per forecast agent."""
    n = len(ids)
    hl = np.full(n, 0.5 * _DEFAULT_AGENT_LW[0])
    hw = np.full(n, 0.5 * _DEFAULT_AGENT_LW[1])
    yaw = np.full(n, math.nan)
    known = np.zeros(n, bool)
    if perc is not None and len(perc.agent_ids):
        lookup = {int(a): k for k, a in enumerate(np.asarray(perc.agent_ids))}
        for j, a in enumerate(np.asarray(ids)):
            k = lookup.get(int(a))
            if k is not None:
                hl[j] = 0.5 * float(perc.length[k])
                hw[j] = 0.5 * float(perc.width[k])
                yaw[j] = float(perc.yaw[k])
                known[j] = True
    hl = np.where(np.isfinite(hl) & (hl > 0), hl, 0.5 * _DEFAULT_AGENT_LW[0])
    hw = np.where(np.isfinite(hw) & (hw > 0), hw, 0.5 * _DEFAULT_AGENT_LW[1])
    return hl, hw, yaw, known


def clearance_ttc_forecasts(traj: Trajectory, fc: Any, perc: Any, now_s: float, horizon_s: float,
                            p_min: float, ego_half_len: float, ego_half_wid: float
                            ) -> tuple[float, float, str]:
    """Min box gap [m] between the candidate and every forecast mode with probability >= p_min
    over (now, now + horizon], and the first time [s from now] the gap closes (inf: never)."""
    if fc is None:
        return INF, INF, "forecast clearance: no forecasts"
    m = np.asarray(fc.modes_xy, float)
    if m.ndim != 4 or m.shape[0] == 0 or m.shape[2] == 0:
        return INF, INF, "forecast clearance: no forecast agents"
    a, k, t, _ = m.shape
    t_abs = fc.stamp_s + fc.dt_s * np.arange(1, t + 1)
    tsel = (t_abs > now_s - 1e-6) & (t_abs <= now_s + horizon_s + 1e-6)
    if not tsel.any():
        return INF, INF, "forecast clearance: forecasts do not cover the horizon"
    probs = np.asarray(fc.probs, float)
    msel = probs >= p_min   # NaN probabilities drop out
    if not msel.any():
        return INF, INF, "forecast clearance: no mode above p_min"
    exy, eyaw, _, _ = sample_at_times(traj, t_abs[tsel] - traj.stamp_s)
    hl, hw, yaw0, _ = _agent_sizes(np.asarray(fc.agent_ids), perc)
    # Headings along each mode (finite differences; the known detection yaw where it barely moves).
    full = m
    d = np.diff(full, axis=2, prepend=full[:, :, :1, :])
    d[:, :, 0, :] = full[:, :, min(1, t - 1), :] - full[:, :, 0, :]
    hyaw = np.arctan2(d[..., 1], d[..., 0])
    still = np.hypot(d[..., 0], d[..., 1]) < 0.05
    fallback_yaw = np.where(np.isfinite(yaw0), yaw0, 0.0)[:, None, None]
    hyaw = np.where(still, np.broadcast_to(fallback_yaw, hyaw.shape), hyaw)
    axy = full[:, :, tsel, :]
    ayaw = hyaw[:, :, tsel]
    gap = box_gap(exy[None, None], eyaw[None, None], ego_half_len, ego_half_wid, axy, ayaw,
                  hl[:, None, None], hw[:, None, None])   # (A, K, T')
    gap = np.where(msel[:, :, None], gap, INF)
    if np.isnan(gap).any():
        return math.nan, math.nan, "forecast waypoints contain NaN"
    gmin = float(gap.min())
    ia, ik, it = np.unravel_index(int(np.argmin(gap)), gap.shape)
    hit = (gap <= 0.0).any(axis=(0, 1))
    ttc = float(t_abs[tsel][int(np.argmax(hit))] - now_s) if hit.any() else INF
    aid = int(np.asarray(fc.agent_ids)[ia])
    if math.isfinite(ttc):
        reason = (f"forecast conflict with agent {aid} (mode {ik}, p={probs[ia, ik]:.2f}) "
                  f"in {ttc:.1f} s")
    else:
        reason = f"forecast clearance {gmin:.1f} m (agent {aid})"
    return gmin, ttc, reason


def detections_at(perc: Any, t_abs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Detections extrapolated at constant velocity to the sim times ``t_abs`` (T,): centres
    (N, T, 2) (non-finite where a position is), yaw, half length and half width (N, 1) each, with
    defaults where a yaw or an extent is unknown."""
    xy = np.asarray(perc.xy, float).reshape(-1, 2)
    v = np.asarray(perc.vxy, float).reshape(-1, 2)
    v = np.where(np.isfinite(v), v, 0.0)
    axy = xy[:, None, :] + v[:, None, :] * (np.asarray(t_abs, float) - perc.stamp_s)[None, :, None]
    ayaw = np.asarray(perc.yaw, float)[:, None]
    ayaw = np.where(np.isfinite(ayaw), ayaw, 0.0)
    hl = 0.5 * np.asarray(perc.length, float)[:, None]
    hw = 0.5 * np.asarray(perc.width, float)[:, None]
    hl = np.where(np.isfinite(hl) & (hl > 0), hl, 0.5 * _DEFAULT_AGENT_LW[0])
    hw = np.where(np.isfinite(hw) & (hw > 0), hw, 0.5 * _DEFAULT_AGENT_LW[1])
    return axy, ayaw, hl, hw


def _detection_gaps(traj: Trajectory, perc: Any, now_s: float, horizon_s: float, dt_s: float,
                    ego_half_len: float, ego_half_wid: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Box gaps (N, T) between the candidate and the detections extrapolated at constant velocity,
    at the times ``t_rel`` (T,) after now, over (now, now + horizon]; None on a NaN position."""
    t_rel = dt_s * np.arange(1, int(math.ceil(horizon_s / dt_s)) + 1)
    t_abs = now_s + t_rel
    exy, eyaw, _, _ = sample_at_times(traj, t_abs - traj.stamp_s)
    axy, ayaw, hl, hw = detections_at(perc, t_abs)   # (N, T, 2), (N, 1) x 3
    if not np.all(np.isfinite(axy)):
        return None
    return box_gap(exy[None], eyaw[None], ego_half_len, ego_half_wid, axy, ayaw, hl, hw), t_rel


def clearance_ttc_detections(traj: Trajectory, perc: Any, now_s: float, horizon_s: float, dt_s: float,
                             ego_half_len: float, ego_half_wid: float) -> tuple[float, float, str]:
    """Min box gap [m] and first-contact time [s] between the candidate and detections
    extrapolated at constant velocity over (now, now + horizon]."""
    if perc is None or len(perc.agent_ids) == 0:
        return INF, INF, "detection clearance: no detections"
    out = _detection_gaps(traj, perc, now_s, horizon_s, dt_s, ego_half_len, ego_half_wid)
    if out is None:
        return math.nan, math.nan, "detections contain NaN positions"
    gap, t_rel = out
    gmin = float(gap.min())
    ia, _ = np.unravel_index(int(np.argmin(gap)), gap.shape)
    hit = (gap <= 0.0).any(axis=0)
    ttc = float(t_rel[int(np.argmax(hit))]) if hit.any() else INF
    aid = int(np.asarray(perc.agent_ids)[ia])
    if math.isfinite(ttc):
        return gmin, ttc, f"candidate reaches detected agent {aid} (constant velocity) in {ttc:.1f} s"
    return gmin, ttc, f"detection clearance {gmin:.1f} m (agent {aid})"


def stopping_conflict(traj: Trajectory, perc: Any, now_s: float, horizon_s: float, dt_s: float,
                      ego_half_len: float, ego_half_wid: float, ego_speed_mps: float, *,
                      max_agent_speed_mps: float, reaction_s: float, decel_mps2: float) -> tuple[bool, float, str]:
    """Does the candidate reach a slow or standing detection sooner than the ego could stop for it?

    Only detections at most ``max_agent_speed_mps`` over ground count: a pedestrian, a stalled car,
    the tail of a queue, for which constant velocity is a safe forecast (a moving car may brake or
    turn away; ``ttc_detection`` and its calibrated ramp cover those). The time the ego needs is
    ``reaction_s + v / decel_mps2`` from its current speed v. A plan that meets such an agent
    sooner has left braking too late, however certain the planner is: on TEST ped_crossing s9002
    the planner accelerated from 4.4 to 8.1 m/s towards a pedestrian standing on the crosswalk, the
    detection TTC fell from 3.0 to 1.25 s at certainty 1.00, and the 1.0-s imminent critical came
    0.9 s before contact. Returns (conflict?, first contact time [s] or inf, reason)."""
    if perc is None or len(perc.agent_ids) == 0:
        return False, INF, "stopping conflict: no detections"
    v = np.asarray(perc.vxy, float).reshape(-1, 2)
    slow = np.hypot(v[:, 0], v[:, 1])
    slow = ~(slow > max_agent_speed_mps)        # an unknown (NaN) velocity is extrapolated as standing
    if not slow.any():
        return False, INF, "stopping conflict: no slow detections"
    out = _detection_gaps(traj, perc, now_s, horizon_s, dt_s, ego_half_len, ego_half_wid)
    if out is None:
        return False, math.nan, "detections contain NaN positions"
    gap, t_rel = out
    hit = (gap[slow] <= 0.0)                                 # (S, T)
    if not hit.any():
        return False, INF, "stopping conflict: the candidate meets no slow detection"
    first = np.where(hit.any(axis=1), np.argmax(hit, axis=1), hit.shape[1])
    k = int(np.argmin(first))
    ttc = float(t_rel[first[k]])
    aid = int(np.asarray(perc.agent_ids)[slow][k])
    speed = max(float(ego_speed_mps), 0.0) if math.isfinite(ego_speed_mps) else 0.0
    need = reaction_s + speed / max(decel_mps2, 1e-3)
    reason = (f"candidate reaches slow agent {aid} in {ttc:.1f} s; stopping from {speed:.1f} m/s takes "
              f"{need:.1f} s at {decel_mps2:g} m/s^2")
    return ttc < need, ttc, reason


# ---------------------------------------------------------------------------------------------
# Raw-cloud occupancy no detection explains
# ---------------------------------------------------------------------------------------------

def _future_path(traj: Trajectory, ego_xy: np.ndarray, ego_yaw: float, now_s: float,
                 length_m: float, step_m: float) -> tuple[np.ndarray, np.ndarray]:
    """The candidate's path from the ego's current position, resampled every ``step_m`` up to
    ``length_m`` (extrapolated along the last heading past its end): (P, 2) xy, (P,) yaw."""
    # Points from now on (the part already driven is dropped), prefixed with the ego position.
    keep = traj.t_s + traj.stamp_s >= now_s - 1e-6
    xy = np.vstack([ego_xy[None, :], traj.xy[keep]]) if keep.any() else ego_xy[None, :]
    yaw = np.concatenate([[ego_yaw], traj.yaw[keep]]) if keep.any() else np.array([ego_yaw])
    s = arc_length(xy)
    q = np.arange(0.0, length_m + 1e-9, step_m)
    return point_at_arclength(xy, yaw, s, q)


def stopping_distance(speed_mps: float, decel_mps2: float, reaction_s: float) -> float:
    """Distance [m] to stop from ``speed_mps`` after a reaction time at a constant deceleration."""
    v = max(float(speed_mps), 0.0) if math.isfinite(speed_mps) else 0.0
    return v * reaction_s + v * v / (2.0 * max(decel_mps2, 1e-3))


def points_in_boxes(pts: np.ndarray, xy: np.ndarray, yaw: np.ndarray, half_len: np.ndarray,
                    half_wid: np.ndarray) -> np.ndarray:
    """(M,) bool: points (M, 2) inside any of N oriented boxes (centre, yaw, half extents)."""
    if len(pts) == 0 or len(xy) == 0:
        return np.zeros(len(pts), bool)
    d = pts[:, None, :] - xy[None, :, :]
    c, s = np.cos(yaw)[None, :], np.sin(yaw)[None, :]
    lx = np.abs(c * d[..., 0] + s * d[..., 1])
    ly = np.abs(-s * d[..., 0] + c * d[..., 1])
    return ((lx <= half_len[None, :]) & (ly <= half_wid[None, :])).any(axis=1)


def unexplained_occupancy(traj: Trajectory, ego_xy: np.ndarray, ego_yaw: float, ego_speed_mps: float,
                          now_s: float, cloud: Any, perc: Any, *, half_width_m: float, margin_m: float,
                          ego_half_len_m: float, min_length_m: float, extra_m: float,
                          decel_mps2: float, reaction_s: float, box_margin_m: float,
                          n_min: int, cluster_gap_m: float, body_margin_m: float = 0.3,
                          detector_range_m: float = 0.0) -> tuple[int, float, bool, str]:
    """Obstacle points in the candidate's swept corridor that no (inflated) detection box explains.

    The corridor follows the candidate from the ego's position, ``half_width_m + margin_m`` to each
    side, for ``max(min_length_m, ego_half_len + stopping distance + extra_m)``. Unexplained points
    are grouped along the path (a gap > ``cluster_gap_m`` in arc length starts a new cluster).

    Only points inside the detector's field (``detector_range_m`` > 0: ``|x|`` and ``|y|`` in the
    ego frame at most that, the square BEV grid of the detector) are judged: beyond it no
    detection can explain a point, so every far return -- e.g. a lead vehicle 52 m ahead at
    highway speed, where the corridor reaches past the detector's 51.2 m -- would be "unexplained"
    by construction. Those points are counted in the reason only.

    Returns:
        (number of unexplained points, arc length [m] from the ego's front to the nearest cluster of
        >= n_min points (inf: none), critical = that cluster lies within the stopping distance +
        ``extra_m``, reason).
    """
    if cloud is None:
        return 0, INF, False, "occupancy: no cloud"
    pts = np.asarray(cloud.obstacle_xy, float).reshape(-1, 2)
    stop_d = stopping_distance(ego_speed_mps, decel_mps2, reaction_s)
    length = max(min_length_m, ego_half_len_m + stop_d + extra_m)
    step = 0.25
    path, _ = _future_path(traj, ego_xy, ego_yaw, now_s, length, step)
    w = half_width_m + margin_m
    lo, hi = path.min(axis=0) - w, path.max(axis=0) + w
    x, y = pts[:, 0], pts[:, 1]
    box = (x >= lo[0]) & (x <= hi[0])          # NaN compares False: non-finite points drop out
    box &= (y >= lo[1]) & (y <= hi[1])
    pts = pts[box]
    if len(pts) == 0:
        return 0, INF, False, "occupancy: corridor clear"
    # Nearest path sample per point (samples every 0.25 m: the lateral distance is overestimated
    # by at most sqrt(d^2 + 0.125^2) - d, < 1 cm at the corridor's edge).
    dist, j = cKDTree(path).query(pts, k=1)
    best_d2 = dist * dist
    best_s = j * step
    inside = best_d2 <= w * w
    # Behind the ego's front nothing is in its way: points behind the rear (the projection clamps
    # to the first sample) and on the ego's own body (+ body_margin_m; self returns) are left out.
    rel = pts - ego_xy[None, :]
    lon = rel @ np.array([math.cos(ego_yaw), math.sin(ego_yaw)])
    lat = rel @ np.array([-math.sin(ego_yaw), math.cos(ego_yaw)])
    body = (np.abs(lon) <= ego_half_len_m + body_margin_m) & (np.abs(lat) <= half_width_m + body_margin_m)
    inside &= ~(body | (lon < -ego_half_len_m))
    n_far = 0
    if detector_range_m > 0.0:
        far = inside & ((np.abs(lon) > detector_range_m) | (np.abs(lat) > detector_range_m))
        n_far = int(far.sum())
        inside &= ~far
    far_txt = f"; {n_far} corridor points beyond the detector's {detector_range_m:g} m not judged" if n_far else ""
    pts, s_along = pts[inside], best_s[inside]
    if len(pts) == 0:
        return 0, INF, False, "occupancy: corridor clear" + far_txt
    if perc is not None and len(perc.agent_ids):
        dt = cloud.stamp_s - perc.stamp_s
        v = np.asarray(perc.vxy, float).reshape(-1, 2)
        v = np.where(np.isfinite(v), v, 0.0)
        bxy = np.asarray(perc.xy, float).reshape(-1, 2) + v * (dt if math.isfinite(dt) else 0.0)
        ok = np.all(np.isfinite(bxy), axis=1)
        hl = 0.5 * np.asarray(perc.length, float) + box_margin_m
        hw = 0.5 * np.asarray(perc.width, float) + box_margin_m
        yaw = np.asarray(perc.yaw, float)
        ok &= np.isfinite(hl) & np.isfinite(hw) & np.isfinite(yaw)
        explained = points_in_boxes(pts, bxy[ok], yaw[ok], hl[ok], hw[ok])
        pts, s_along = pts[~explained], s_along[~explained]
    n = len(pts)
    if n == 0:
        return 0, INF, False, "occupancy: corridor points all explained by detections" + far_txt
    order = np.argsort(s_along)
    s_sorted = s_along[order]
    breaks = np.flatnonzero(np.diff(s_sorted) > cluster_gap_m) + 1
    starts = np.concatenate([[0], breaks])
    ends = np.concatenate([breaks, [n]])
    sizes = ends - starts
    big = np.flatnonzero(sizes >= n_min)
    if len(big) == 0:
        return n, INF, False, f"unexplained occupancy: {n} scattered points in corridor" + far_txt
    s_near = float(s_sorted[starts[big[0]]])
    front = max(s_near - ego_half_len_m, 0.0)
    critical = front <= stop_d + extra_m
    reason = (f"unexplained occupancy: {n} points in corridor, nearest cluster of "
              f"{int(sizes[big[0]])} at {front:.1f} m (stopping distance {stop_d:.1f} m)" + far_txt)
    return n, front, critical, reason


# ---------------------------------------------------------------------------------------------
# Drivable area, consistency, lights
# ---------------------------------------------------------------------------------------------

def offroad(traj: Trajectory, drivable: Any, now_s: float, horizon_s: float,
            dt_s: float = 0.1, half_length_m: float = 0.0, half_width_m: float = 0.0,
            footprint_horizon_s: float = INF) -> tuple[int, float, str]:
    """Samples of the candidate over [now, now + horizon] (every ``dt_s``) off the drivable area.

    ``drivable`` is a :class:`tps_planner.lane_map.MapMask` (anything with ``contains(xy)``; its
    margin is set where it is built). With ``half_length_m`` and ``half_width_m`` > 0 a sample is
    off when any corner of the ego footprint at the candidate's pose is off (DAC's definition,
    METRICS.md): a plan whose centre line stays on the road while the vehicle's side runs along
    or over the road edge is off-road. The corners are tested up to ``footprint_horizon_s`` only,
    the centre point over the whole horizon: the far end of a plan cuts curves by a metre that
    the next plans, not the controller, would correct. Returns (number of samples off, first
    time off [s from now] or inf, reason)."""
    if drivable is None:
        return 0, INF, "off-road: no map"
    t_rel = np.arange(0.0, horizon_s + 1e-9, dt_s)
    xy, yaw, _, _ = sample_at_times(traj, now_s + t_rel - traj.stamp_s)
    pts = np.repeat(xy[:, None, :], 4, axis=1)                                   # (T, 4, 2)
    corners = t_rel <= footprint_horizon_s + 1e-9
    if half_length_m > 0.0 and half_width_m > 0.0 and corners.any():
        pts[corners] = box_corners(xy[corners], yaw[corners], 2.0 * half_length_m, 2.0 * half_width_m)
    else:
        corners[:] = False
    on_pts = np.asarray(drivable.contains(pts.reshape(-1, 2)), bool).reshape(len(t_rel), 4)
    off = ~on_pts.all(axis=1)
    n = int(off.sum())
    if n == 0:
        return 0, INF, "candidate stays on the drivable area"
    i = int(np.argmax(off))
    k = int(np.argmin(on_pts[i]))
    what = "the ego footprint (corner)" if corners[i] else "candidate"
    return n, float(t_rel[i]), (f"off-road: {what} leaves the drivable area in {t_rel[i]:.1f} s "
                                f"at ({pts[i, k, 0]:.1f}, {pts[i, k, 1]:.1f})")


def consistency(ok: bool | None, score: float | None) -> tuple[float, str]:
    """1 - the planner's rationale/action consistency score (0 when unknown)."""
    if score is not None and math.isfinite(score):
        v = float(np.clip(1.0 - score, 0.0, 1.0))
        if ok is False:
            v = max(v, 0.5)
        return v, ("rationale consistent" if v == 0.0 else f"rationale/action inconsistent (score {score:.2f})")
    if score is not None:   # NaN / inf score
        return math.nan, "consistency score is not finite"
    if ok is None:
        return 0.0, "consistency unknown"
    return (0.0, "rationale consistent") if ok else (1.0, "rationale/action inconsistent")


def light_disagreement(planner_state: int | None, reader_state: int | None) -> tuple[float, str]:
    """0 when the planner's and the reader's light agree or either is unknown; 1 when one says
    RED/YELLOW and the other GREEN; 0.5 for RED vs YELLOW."""
    if planner_state not in _KNOWN_LIGHTS or reader_state not in _KNOWN_LIGHTS:
        return 0.0, "light: unknown"
    if planner_state == reader_state:
        return 0.0, "light: planner and reader agree"
    serious = 2 in (planner_state, reader_state)
    v = 1.0 if serious else 0.5
    return v, (f"light disagreement: planner {_LIGHT_NAMES[planner_state]} vs reader "
               f"{_LIGHT_NAMES[reader_state]}")


# ---------------------------------------------------------------------------------------------
# Temporal consistency
# ---------------------------------------------------------------------------------------------

def plan_jump(traj: Trajectory, prev: Trajectory | None, now_s: float, horizon_s: float,
              dt_s: float = 0.1) -> tuple[float, str]:
    """Max distance [m] between the candidate and the previous one at shared absolute times
    (from now, within the horizon and both plans' spans)."""
    if prev is None or not _finite_traj(prev):
        return 0.0, "plan jump: no previous plan"
    t0 = max(now_s, traj.stamp_s + traj.t_s[0], prev.stamp_s + prev.t_s[0])
    t1 = min(now_s + horizon_s, traj.stamp_s + traj.t_s[-1], prev.stamp_s + prev.t_s[-1])
    if t1 < t0:
        return 0.0, "plan jump: plans do not overlap in time"
    t = np.arange(t0, t1 + 1e-9, dt_s)
    a, _, _, _ = sample_at_times(traj, t - traj.stamp_s)
    b, _, _, _ = sample_at_times(prev, t - prev.stamp_s)
    d = np.hypot(*(a - b).T)
    i = int(np.argmax(d))
    return float(d[i]), f"plan jump {d[i]:.1f} m at +{t[i] - now_s:.1f} s"


def track_loss(prev: Any, cur: Any, ego_xy: np.ndarray, now_s: float, radius_m: float,
               range_margin_m: float) -> tuple[int, str]:
    """Agents within ``radius_m`` of the ego in the previous perception snapshot that are missing
    now, although (extrapolated at constant velocity) they should still be within
    ``radius_m - range_margin_m`` of the ego (so leaving range does not count)."""
    if prev is None or cur is None or len(prev.agent_ids) == 0:
        return 0, "track loss: nothing to compare"
    if cur.stamp_s <= prev.stamp_s:
        return 0, "track loss: same frame"
    pxy = np.asarray(prev.xy, float).reshape(-1, 2)
    v = np.asarray(prev.vxy, float).reshape(-1, 2)
    v = np.where(np.isfinite(v), v, 0.0)
    was_near = np.hypot(*(pxy - ego_xy[None, :]).T) <= radius_m
    pred = pxy + v * (cur.stamp_s - prev.stamp_s)
    still_near = np.hypot(*(pred - ego_xy[None, :]).T) <= radius_m - range_margin_m
    present = np.isin(np.asarray(prev.agent_ids), np.asarray(cur.agent_ids))
    lost = was_near & still_near & ~present
    n = int(lost.sum())
    if n == 0:
        return 0, "no track lost"
    ids = ", ".join(str(int(a)) for a in np.asarray(prev.agent_ids)[lost][:5])
    return n, f"track loss: {n} agents near the ego disappeared ({ids})"


# ---------------------------------------------------------------------------------------------
# Health and kinematics
# ---------------------------------------------------------------------------------------------

def sensor_health(health: Any, cloud: Any, perc: Any, p: Any) -> tuple[float, dict[str, str], list[str]]:
    """Worst health defect in [0, 1] and the critical conditions.

    A sensor defect is a fact about the vehicle, not a probability to calibrate: the defects that
    corrupt the learned stack's inputs are critical here, whatever the calibrated ramps make of
    the value (the VAL refit put the ramp of ``sensor_health`` at (0.7, 1.7): a black camera
    stayed NOMINAL for 45-79 cycles on VAL 1000 and TEST 9000 of the fault matrix).

    Returns:
        (value, critical: {name: reason} among ``planner_silent``, ``perception_dead``,
        ``fallback_input_dead`` (the fallback's own lidar is gone: MINIMAL_RISK),
        ``lidar_degraded`` (a lidar frame with under ``p.degraded_point_fraction`` of the nominal
        points or over ``p.degraded_nan_share`` NaN points: the detector reads a cloud unlike
        its training data, the fallback's clustering copes with a sparser one), ``camera_fault``
        (the camera black, frozen or stale: the planner's camera tokens and its light state
        read garbage; the fallback treats an unreadable light as UNKNOWN), reasons of every defect).
    """
    crit: dict[str, str] = {}
    reasons: list[str] = []
    v = 0.0

    def bad(amount: float, reason: str) -> None:
        nonlocal v
        v = max(v, amount)
        reasons.append(reason)

    def age_ok(age: float, limit: float) -> bool:
        return math.isfinite(age) and age <= limit + 1e-6

    if not age_ok(health.planner_age_s, p.planner_timeout_s):
        crit["planner_silent"] = f"planner silent for {health.planner_age_s:.2f} s (> {p.planner_timeout_s} s)"
        bad(1.0, crit["planner_silent"])
    # Lidar: the fallback's own input.
    if not age_ok(health.lidar_age_s, p.lidar_timeout_s) or cloud is None:
        crit["fallback_input_dead"] = f"lidar stale ({health.lidar_age_s:.2f} s > {p.lidar_timeout_s} s)"
        bad(1.0, crit["fallback_input_dead"])
    else:
        frac = cloud.n_points / max(p.nominal_points, 1)
        if cloud.n_points <= 0 or frac < p.min_point_fraction:
            crit["fallback_input_dead"] = (f"lidar point count {cloud.n_points} below "
                                           f"{p.min_point_fraction:.0%} of nominal {p.nominal_points}")
            bad(1.0, crit["fallback_input_dead"])
        elif frac < p.degraded_point_fraction:
            crit["lidar_degraded"] = (f"lidar point count {cloud.n_points} low ({frac:.0%} of nominal "
                                      f"{p.nominal_points} < {p.degraded_point_fraction:.0%})")
            bad(0.8, crit["lidar_degraded"])
        elif frac < 1.0 - 0.5 * (1.0 - p.min_point_fraction):
            bad(0.5, f"lidar point count {cloud.n_points} low ({frac:.0%} of nominal)")
        ns = cloud.nan_share if math.isfinite(cloud.nan_share) else 1.0
        if ns > p.max_nan_share:
            crit["fallback_input_dead"] = f"lidar NaN share {ns:.0%} > {p.max_nan_share:.0%}"
            bad(1.0, crit["fallback_input_dead"])
        elif ns > p.degraded_nan_share:
            crit.setdefault("lidar_degraded", f"lidar NaN share {ns:.1%} > {p.degraded_nan_share:.1%}")
            bad(0.8, f"lidar NaN share {ns:.1%}")
        elif ns > 0.0:
            bad(min(ns / max(p.max_nan_share, 1e-6), 1.0) * 0.8, f"lidar NaN share {ns:.1%}")
    # Perception.
    if not age_ok(health.perception_age_s, p.perception_timeout_s) or perc is None:
        crit["perception_dead"] = f"perception silent for {health.perception_age_s:.2f} s"
        bad(1.0, crit["perception_dead"])
    else:
        if perc.status not in (0, 4):   # STATUS_FAULT_INJECTED (4) is an evaluation flag == OK
            names = {1: "NO_INPUT", 2: "INVALID_INPUT", 3: "INFERENCE_ERROR"}
            crit["perception_dead"] = f"perception status {names.get(int(perc.status), perc.status)}"
            bad(1.0, crit["perception_dead"])
        pt = perc.processing_time_ms
        if p.processing_time_health and (not math.isfinite(pt) or pt > p.processing_budget_ms):
            bad(0.5, f"perception processing {pt:.0f} ms > budget {p.processing_budget_ms:.0f} ms")
    # Camera (the planner's camera tokens and light state, the light reader): the fallback drives
    # (``camera_critical``; off: a health risk only, as before stop 36).
    cam = []
    if not age_ok(health.camera_age_s, p.camera_timeout_s):
        cam.append(f"camera stale ({health.camera_age_s:.2f} s)")
    if health.camera_frozen:
        cam.append("camera frozen")
    if health.camera_black:
        cam.append("camera black")
    for r in cam:
        bad(0.7, r)
    if cam and p.camera_critical:
        crit["camera_fault"] = "; ".join(cam)
    for e in health.node_errors:
        bad(0.7, f"node error: {e}")
    return v, crit, reasons


def moving_prefix(xy: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points of a path from the first one at ``MOVING_MPS`` or more up to (and including) the
    first one after it below ``MOVING_MPS`` (the planned stop); empty when it never moves."""
    moving = np.isfinite(v) & (v >= MOVING_MPS)
    if not moving.any():
        return xy[:0], v[:0]
    i0 = int(np.argmax(moving))
    stops = np.flatnonzero(~moving[i0:])
    i1 = i0 + int(stops[0]) if len(stops) else len(v) - 1
    return xy[i0:i1 + 1], v[i0:i1 + 1]


def chord_curvature(rxy: np.ndarray, step_m: float, k: int = 1) -> np.ndarray:
    """Curvature [1/m] of a polyline resampled every ``step_m``: the heading change between the
    chords i -> i + k and i + k -> i + 2k over their spacing ``k * step_m`` (exact on a circle);
    (len(rxy) - 2k,)."""
    d = rxy[k:] - rxy[:-k]
    hd = np.arctan2(d[:, 1], d[:, 0])
    return np.abs(np.angle(np.exp(1j * (hd[k:] - hd[:-k])))) / (k * step_m)


def kinematic(traj: Trajectory, ego_speed_mps: float, p: Any) -> tuple[float, str]:
    """Worst ratio of a kinematic quantity of the candidate to its limit (<= 1 feasible):
    longitudinal acceleration / deceleration, lateral acceleration v^2 * kappa, curvature against
    the minimum turning radius (over chords of ``p.curvature_chord_m``, or the candidate's median
    point spacing where longer, along the path up to its first planned stop, :func:`moving_prefix`), speed jumps between points and against the ego's speed."""
    t = np.asarray(traj.t_s, float)
    v = np.asarray(traj.speed_mps, float)
    xy = np.asarray(traj.xy, float)
    worst, why = 0.0, "kinematically feasible"

    def upd(r: float, msg: str) -> None:
        nonlocal worst, why
        if r > worst:
            worst, why = r, msg

    if len(v) and math.isfinite(ego_speed_mps):
        upd(abs(v[0] - ego_speed_mps) / p.max_speed_jump_mps,
            f"candidate starts at {v[0]:.1f} m/s, ego at {ego_speed_mps:.1f} m/s")
    if len(t) >= 2:
        dt = np.diff(t)
        dv = np.diff(v)
        ok = dt > 1e-3
        if ok.any():
            a = dv[ok] / dt[ok]
            upd(float(a.max(initial=0.0)) / p.max_accel_mps2, f"acceleration {a.max(initial=0.0):.1f} m/s^2")
            upd(float(-a.min(initial=0.0)) / p.max_decel_mps2, f"deceleration {-a.min(initial=0.0):.1f} m/s^2")
        jump = np.abs(dv[~ok]) if (~ok).any() else np.zeros(0)
        if len(jump):
            upd(float(jump.max()) / p.max_speed_jump_mps, f"speed jump {jump.max():.1f} m/s")
    chord = float(getattr(p, "curvature_chord_m", 0.0) or 0.0)
    if len(xy) >= 3 and chord > 0.0:
        # Curvature over chords of ``chord`` metres along the path (the heading change between
        # consecutive chords / their length; exact on a circle): over the candidate's own point
        # spacing (0.3 m at a crawl) a few centimetres of the planner's point noise read as a
        # turning radius under 2 m -- every such nominal VAL cycle was flagged by it.
        # Only the stretch the candidate drives up to its first stop (leading standstill points
        # skipped; the stop point included): beyond a planned stop the ego stands and the
        # planner re-plans before it moves again. On VAL s1002 the planner's candidates braking
        # for a red light went on *backwards* after the stop (heading flipped by ~180 deg within
        # 0.5 m, "turning radius 0.7 m"): every kinematic flag of that episode.
        mxy, mv = moving_prefix(xy, v)
        s_path = arc_length(mxy)
        keep = np.concatenate([[True], np.diff(s_path) > 1e-6]) if len(mxy) else np.zeros(0, bool)
        sp, pxy, pv = s_path[keep], mxy[keep], mv[keep]
        # Nor can a polyline's curvature be resolved below its own point spacing: the learned
        # planner's 9 points are 0.5 s apart (12.5 m at 25 m/s), and over 2-m chords the 3.6-degree
        # bend at each vertex of a gentle 200-m curve reads as a 32-m turn, 20 m/s^2 at that speed
        # (VAL 1000-1002: 7 of the stack's 15 DEGRADED entries were led by a curvature or a
        # lateral-acceleration reading, up to "30 m/s^2").
        if len(sp) >= 2:
            chord = max(chord, float(np.median(np.diff(sp))))
        if len(sp) >= 2 and sp[-1] >= 2.0 * chord:
            q = np.arange(0.0, sp[-1] + 1e-9, chord)
            rxy = np.stack([np.interp(q, sp, pxy[:, 0]), np.interp(q, sp, pxy[:, 1])], axis=1)
            kappa = chord_curvature(rxy, chord)
            vmid = np.interp(q[1:-1], sp, pv)
            upd(float(kappa.max()) * p.min_turn_radius_m,
                f"curvature {kappa.max():.2f} 1/m (turning radius {1.0 / max(kappa.max(), 1e-9):.1f} m)")
            alat = vmid ** 2 * kappa
            upd(float(alat.max()) / p.max_lat_accel_mps2, f"lateral acceleration {alat.max():.1f} m/s^2")
    return float(worst), why


# ---------------------------------------------------------------------------------------------
# Blind detector
# ---------------------------------------------------------------------------------------------

def road_objects(cloud: Any, perc: Any, ego_xy: np.ndarray, ego_yaw: float, drivable: Any, *,
                 radius_m: float, cell_m: float, min_cells: int, cluster_gap_m: float,
                 box_margin_m: float, ego_half_len_m: float, ego_half_width_m: float,
                 body_margin_m: float) -> tuple[int, int, int, str]:
    """Objects the raw cloud shows on the road near the ego, and how many of them a detection
    explains -- the evidence of a blind detector (the planner then drives on a road it sees empty).

    Obstacle points (the fallback's reduction: finite, non-ground, in the obstacle band) within
    ``radius_m`` of the ego, on the drivable area (``drivable.contains``; all when None: off-road
    clutter is no detector's business) and off the ego's own body are binned in ``cell_m`` cells;
    occupied cells closer than ``cluster_gap_m`` form one object, which needs ``min_cells`` cells.
    An object is explained when one of its cells lies in a detection's box grown by
    ``box_margin_m`` (moved to the cloud's stamp at the detection's velocity).

    Returns (objects, explained, detections within ``radius_m``, reason)."""
    if cloud is None:
        return 0, 0, 0, "road objects: no cloud"
    pts = np.asarray(cloud.obstacle_xy, float).reshape(-1, 2)
    pts = pts[np.all(np.isfinite(pts), axis=1)]
    rel = pts - ego_xy[None, :]
    near = np.hypot(rel[:, 0], rel[:, 1]) <= radius_m
    c, s = math.cos(ego_yaw), math.sin(ego_yaw)
    lon, lat = rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c
    body = (np.abs(lon) <= ego_half_len_m + body_margin_m) & (np.abs(lat) <= ego_half_width_m + body_margin_m)
    pts = pts[near & ~body]
    if len(pts) and drivable is not None:
        pts = pts[np.asarray(drivable.contains(pts), bool)]
    n_det = 0
    bxy = np.zeros((0, 2))
    yaw = hl = hw = np.zeros(0)
    if perc is not None and len(perc.agent_ids):
        v = np.asarray(perc.vxy, float).reshape(-1, 2)
        v = np.where(np.isfinite(v), v, 0.0)
        dt = cloud.stamp_s - perc.stamp_s
        bxy = np.asarray(perc.xy, float).reshape(-1, 2) + v * (dt if math.isfinite(dt) else 0.0)
        hl = 0.5 * np.asarray(perc.length, float) + box_margin_m
        hw = 0.5 * np.asarray(perc.width, float) + box_margin_m
        yaw = np.asarray(perc.yaw, float)
        ok = np.all(np.isfinite(bxy), axis=1) & np.isfinite(hl) & np.isfinite(hw) & np.isfinite(yaw)
        bxy, hl, hw, yaw = bxy[ok], hl[ok], hw[ok], yaw[ok]
        n_det = int(np.sum(np.hypot(*(bxy - ego_xy[None, :]).T) <= radius_m))
    if len(pts) == 0:
        return 0, 0, n_det, f"road objects: none within {radius_m:.0f} m ({n_det} detections)"
    cells = np.unique(np.floor(pts / cell_m).astype(np.int64), axis=0)
    centres = (cells + 0.5) * cell_m
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = cKDTree(centres).query_pairs(r=cluster_gap_m, output_type="ndarray")
    m = len(centres)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(m, m)) if len(pairs) else \
        coo_matrix((m, m))
    _, label = connected_components(graph, directed=False)
    sizes = np.bincount(label)
    big = np.flatnonzero(sizes >= min_cells)
    if len(big) == 0:
        return 0, 0, n_det, f"road objects: none of >= {min_cells} cells within {radius_m:.0f} m ({n_det} detections)"
    inside = points_in_boxes(centres, bxy, yaw, hl, hw) if len(bxy) else np.zeros(m, bool)
    explained = int(sum(bool(inside[label == k].any()) for k in big))
    return (len(big), explained, n_det,
            f"road objects: {len(big)} within {radius_m:.0f} m, {explained} explained by {n_det} detections")


# ---------------------------------------------------------------------------------------------
# Braking with no cause in view
# ---------------------------------------------------------------------------------------------

def unjustified_braking(traj: Trajectory, ego_xy: np.ndarray, ego_yaw: float, speed_mps: float, now_s: float,
                        perc: Any, attention: Any, reader_light_state: int | None, unexplained_m: float,
                        p: Any) -> tuple[bool, str]:
    """Does the candidate brake hard with nothing in view that asks for it ("phantom braking")?

    The candidate brakes when its speed over ``p.forecast_horizon_s`` falls below the ego's by
    more than ``p.brake_check_min_drop_mps`` and ``p.brake_check_min_drop_share`` of it. Then the
    ego is rolled out along the candidate's own path at its *current* speed over that horizon, with
    its footprint stretched forward by ``p.brake_check_headway_s`` of that speed. The braking is
    explained when that rollout:

    - meets a detection extrapolated at constant velocity (a lead, a cut-in, a crossing agent);
    - enters a place where the rules may ask for a stop or a yield (``attention``: junction,
      acceleration lanes, crosswalks; ``None`` = unknown map, so every braking is explained);
    - reaches unexplained cloud occupancy (``unexplained_m``, the corridor's nearest cluster);
    - takes a bend faster than ``p.brake_check_lat_accel_mps2``;

    or the light reader sees RED or YELLOW. Below ``p.brake_check_min_speed_mps`` nothing is
    checked. Returns (unexplained?, reason)."""
    v0 = float(speed_mps)
    if not math.isfinite(v0) or v0 < p.brake_check_min_speed_mps:
        return False, "braking check: ego slower than its minimum speed"
    horizon = float(p.forecast_horizon_s)
    t_rel = np.linspace(0.0, horizon, int(math.ceil(horizon / 0.1)) + 1)
    _, _, v_plan, _ = sample_at_times(traj, now_s + t_rel - traj.stamp_s)
    drop = v0 - float(np.min(v_plan))
    if not math.isfinite(drop):
        return False, "braking check: candidate speeds are not finite"
    if drop < max(p.brake_check_min_drop_mps, p.brake_check_min_drop_share * v0):
        return False, "candidate keeps its speed"
    what = f"candidate brakes from {v0:.1f} to {v0 - drop:.1f} m/s within {horizon:g} s"
    if reader_light_state in (0, 1):
        return False, f"{what}: the light reader sees {'RED' if reader_light_state == 0 else 'YELLOW'}"
    if attention is None:
        return False, f"{what}: no lane map to judge it by"
    head = p.brake_check_headway_s * v0
    reach = v0 * horizon + head + 0.5 * p.ego_length_m
    if math.isfinite(unexplained_m) and unexplained_m <= reach:
        return False, f"{what}: unexplained occupancy {unexplained_m:.0f} m ahead"
    step = 0.5
    pxy, pyaw = _future_path(traj, np.asarray(ego_xy, float), float(ego_yaw), now_s, reach, step)
    if len(pxy) >= 2:
        inside = np.asarray(attention.contains(pxy), bool)
        if inside.any():
            return False, f"{what}: a junction, merge or crosswalk {step * int(np.argmax(inside)):.0f} m ahead"
        # Curvature from the headings of chords one second (at least 20 m) long, not from the
        # points' yaw: a learned plan's headings wobble by a few degrees from point to point,
        # which over 10 m read as a bend at 22 m/s and explained phantom braking on VAL highways.
        k = max(int(round(max(20.0, v0) / step)), 1)
        if len(pxy) > 2 * k:
            kappa = float(chord_curvature(pxy, step, k).max())
            if v0 * v0 * kappa > p.brake_check_lat_accel_mps2:
                return False, f"{what}: a bend ({v0 * v0 * kappa:.1f} m/s^2 at the current speed)"
    if perc is not None and len(perc.agent_ids):
        # The ego at its current speed along the candidate's path; its box stretched forward by
        # the headway: an agent inside it is close enough to brake for.
        s_q = np.minimum(v0 * t_rel + 0.5 * head, reach)
        s_path = step * np.arange(len(pxy))
        exy = np.stack([np.interp(s_q, s_path, pxy[:, 0]), np.interp(s_q, s_path, pxy[:, 1])], axis=1)
        eyaw = np.interp(s_q, s_path, np.unwrap(pyaw))
        axy, ayaw, hl, hw = detections_at(perc, now_s + t_rel)
        if np.all(np.isfinite(axy)):
            gap = box_gap(exy[None], eyaw[None], 0.5 * p.ego_length_m + 0.5 * head, p.ego_half_width_m,
                          axy, ayaw, hl, hw)   # (N, T)
            hit = (gap <= 0.0).any(axis=1)
            if hit.any():
                aid = int(np.asarray(perc.agent_ids)[int(np.argmax(hit))])
                return False, f"{what}: agent {aid} within {p.brake_check_headway_s:g} s headway"
        else:
            return False, f"{what}: detections contain NaN positions"
    return True, f"{what} with no cause in view (no agent within {p.brake_check_headway_s:g} s headway, " \
                       "no junction, crosswalk, light or bend)"
