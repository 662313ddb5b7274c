"""Point-cloud fallback planner (core; no ROS imports).

Follows the route centreline with an IDM speed profile against the nearest obstacle found in the
**raw lidar point cloud** inside the route's swept corridor. It never reads detections, so it does
not share the learned models' failure modes.

Per lidar frame:
1. Validate the cloud (empty / NaN-laden -> ERROR and a comfortable stop; partial NaN -> WARN,
   NaN points dropped).
2. Lidar frame -> ``base_link`` (the lidar extrinsic, :meth:`FallbackPlanner.set_lidar_extrinsic`;
   by default ``DEFAULT_LIDAR_HEIGHT_M`` straight above base_link); drop ground (z below
   ``ground_threshold_m``; the ground is flat at z = 0), overhead points and the ego's own body.
3. Ego-motion compensation: transform to ``map`` with the ego pose at the frame's stamp.
4. Corridor: the route ahead of the ego, from its projection over a speed-dependent length,
   ``ego_width_m / 2 + corridor_margin_m`` to each side. Each point gets an along-route arc
   length; the obstacle is the ``min_obstacle_points``-th nearest point in the corridor.
5. Closing speed: the obstacle's along-route position is tracked across frames (alpha-beta
   filter, reset when it jumps), which gives the obstacle's own speed along the route (the
   map frame removes the ego motion); closing speed = ego speed - obstacle speed.
6. Speed profile: IDM integrated over the horizon against the (constant-speed) obstacle and a
   stationary virtual obstacle at the route's end, with a curvature speed limit. Deceleration is
   capped at ``comfort_decel_mps2`` unless the required deceleration
   ``(v - v_lead)^2 / (2 (gap - stop_margin))`` exceeds it, in which case that much (up to
   ``emergency_decel_mps2``) is applied. In MINIMAL_RISK the profile also brakes at
   ``mrm_decel_mps2`` to a stop in lane.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy.spatial import cKDTree
from tps_common.levels import ERROR as LEVEL_ERROR
from tps_common.levels import OK as LEVEL_OK
from tps_common.levels import WARN as LEVEL_WARN
from tps_common.stamp_sync import EgoPose

from tps_planner.trajectory import (
    SOURCE_FALLBACK,
    SOURCE_MINIMAL_RISK,
    STATE_MINIMAL_RISK,
    Trajectory,
    arc_length,
    wrap_angle,
)

# The default lidar mount (docs/CONTRACTS.md): straight above base_link. Nodes set the real
# extrinsic (from /tf_static or their lidar_extrinsic parameter) with set_lidar_extrinsic.
DEFAULT_LIDAR_HEIGHT_M = 1.8


@dataclass(frozen=True)
class FallbackParams:
    """Fallback planner parameters (SI units). See config/schema/fallback_node.schema.json."""

    max_speed_mps: float = 12.0
    ignore_obstacles: bool = False
    ego_length_m: float = 4.6
    ego_width_m: float = 1.9
    corridor_margin_m: float = 0.4            # each side, m
    corridor_min_length_m: float = 40.0
    corridor_time_s: float = 5.0              # corridor length = max(min, time * speed), m
    corridor_max_length_m: float = 90.0
    ground_threshold_m: float = 0.15          # points below this height (base_link z) are ground
    max_obstacle_height_m: float = 2.5        # points above this height do not block the ego
    ego_body_margin_m: float = 0.3            # points this close to the footprint are the ego's own
    min_obstacle_points: int = 2              # k-th nearest corridor point is the obstacle
    idm_accel_mps2: float = 1.5
    idm_decel_mps2: float = 2.0               # IDM comfortable deceleration b
    idm_delta: float = 4.0
    idm_time_headway_s: float = 1.5
    idm_min_gap_m: float = 4.0                # standstill bumper gap s0
    comfort_decel_mps2: float = 3.0
    emergency_decel_mps2: float = 7.0
    emergency_margin: float = 1.15            # emergency braking = required deceleration x this
    stop_margin_m: float = 1.0                # gap kept when computing the required deceleration
    closing_deadband_mps: float = 0.5         # closing speeds below this need no emergency braking
    plan_jerk_mps3: float = 3.0               # jerk limit inside the plan unless emergency
    max_lateral_accel_mps2: float = 2.0
    max_yaw_rate_rad_s: float = 0.5
    mrm_decel_mps2: float = 2.0
    route_end_margin_m: float = 1.0           # the front bumper stops this far before the route end
    horizon_s: float = 8.0
    output_step_s: float = 0.25
    integration_dt_s: float = 0.05
    route_resolution_m: float = 0.5
    route_search_back_m: float = 10.0
    route_search_ahead_m: float = 40.0
    max_route_offset_m: float = 8.0           # ego farther than this from the route -> ERROR
    track_window: int = 10                    # frames in the obstacle-speed regression
    track_gate_m: float = 3.0
    new_track_near_gap_m: float = 5.0         # a new track this close: one frame at comfort braking
    track_coast_s: float = 1.5                # keep an unseen obstacle this long (beam gaps), s
    ego_height_m: float = 1.5                 # the roof shadows the lidar's lowest beams near the ego
    nan_error_fraction: float = 0.5           # more NaN points than this -> ERROR
    min_cloud_points: int = 1


@dataclass(frozen=True)
class Route:
    """A route resampled at a fixed spacing. Arrays (M,) / (M, 2) in map, metres / radians."""

    xy: np.ndarray
    s: np.ndarray
    yaw: np.ndarray
    curvature: np.ndarray
    speed_limit_mps: np.ndarray   # curvature speed limit with braking anticipation, m/s


@dataclass(frozen=True)
class Obstacle:
    """The nearest in-corridor obstacle."""

    xy: np.ndarray            # (2,) map position of the representative point, m
    s_abs_m: float            # arc length along the route, m
    gap_m: float              # along-route distance from the ego's front bumper, m
    speed_mps: float          # filtered obstacle speed along the route, m/s
    closing_speed_mps: float  # ego speed - obstacle speed, m/s
    n_points: int             # corridor points
    measured: bool = True     # False: not seen this frame, coasted from earlier frames


@dataclass(frozen=True)
class FallbackResult:
    """Output of one planning cycle."""

    trajectory: Trajectory | None
    level: int                                  # LEVEL_OK / WARN / ERROR
    messages: tuple[str, ...]
    obstacle: Obstacle | None = None
    required_decel_mps2: float = 0.0
    n_points: int = 0
    n_finite: int = 0
    n_obstacle_points: int = 0                  # above ground, below overhead, not the ego
    nan_fraction: float = 0.0
    corridor_left: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    corridor_right: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))
    s_ego_m: float = float("nan")
    minimal_risk: bool = False


def make_route(xy: np.ndarray, params: FallbackParams) -> Route:
    """Resample a route polyline (N, 2) in map at ``route_resolution_m`` and precompute headings,
    curvature and the curvature speed limit.

    Raises:
        ValueError: if the route has fewer than two distinct points or non-finite values.
    """
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    if not np.all(np.isfinite(xy)):
        raise ValueError("route contains NaN/inf")
    keep = np.concatenate([[True], np.hypot(*np.diff(xy, axis=0).T) > 1e-6]) if len(xy) else np.zeros(0, bool)
    xy = xy[keep]
    if len(xy) < 2:
        raise ValueError(f"route needs at least 2 distinct points, got {len(xy)}")
    s_in = arc_length(xy)
    n = max(int(math.ceil(s_in[-1] / params.route_resolution_m)) + 1, 2)
    s = np.linspace(0.0, s_in[-1], n)
    rxy = np.stack([np.interp(s, s_in, xy[:, 0]), np.interp(s, s_in, xy[:, 1])], axis=1)
    d = np.gradient(rxy, s, axis=0)
    yaw = np.arctan2(d[:, 1], d[:, 0])
    dyaw = wrap_angle(np.diff(yaw))
    ds = np.diff(s)
    kappa = np.concatenate([dyaw / ds, [0.0]])
    # Smooth over ~2 m so a kink in a coarse route does not read as a hairpin.
    w = max(int(round(2.0 / params.route_resolution_m)), 1)
    kappa = np.convolve(kappa, np.ones(2 * w + 1) / (2 * w + 1), mode="same")
    ak = np.maximum(np.abs(kappa), 1e-6)
    v_curve = np.minimum(np.sqrt(params.max_lateral_accel_mps2 / ak), params.max_yaw_rate_rad_s / ak)
    v_allow = v_curve.copy()
    for i in range(n - 2, -1, -1):
        v_allow[i] = min(v_allow[i], math.sqrt(v_allow[i + 1] ** 2 + 2.0 * params.idm_decel_mps2 * (s[i + 1] - s[i])))
    return Route(xy=rxy, s=s, yaw=yaw, curvature=kappa, speed_limit_mps=v_allow)


def required_decel(v_mps: float, v_lead_mps: float, gap_m: float, stop_margin_m: float,
                   closing_deadband_mps: float = 0.0) -> float:
    """Constant deceleration (m/s^2, >= 0) that brings the closing speed to zero within
    ``gap_m - stop_margin_m``. Returns inf when the gap is already used up while closing.
    Closing speeds up to ``closing_deadband_mps`` (tracking noise) count as zero."""
    closing = v_mps - max(v_lead_mps, 0.0)
    if closing <= closing_deadband_mps:
        return 0.0
    room = gap_m - stop_margin_m
    if room <= 1e-3:
        return float("inf")
    return closing * closing / (2.0 * room)


class FallbackPlanner:
    """Stateful fallback planner: call :meth:`set_route` once (or on change) and :meth:`update`
    per lidar frame."""

    def __init__(self, params: FallbackParams | None = None) -> None:
        self.params = params or FallbackParams()
        self.route: Route | None = None
        self._s_ego: float | None = None
        self._track: tuple[float, float, float, int] | None = None   # (stamp, s_abs, v, n_updates)
        self._prev_plan_accel = 0.0
        self._plan_accel_base = 0.0
        self._prev_stamp: float | None = None
        self.set_lidar_extrinsic(None)

    def set_route(self, xy: np.ndarray) -> None:
        """Install a new route (map frame). Raises ValueError on an unusable route."""
        self.route = make_route(xy, self.params)
        self._s_ego = None
        self._track = None

    # ---------------------------------------------------------------- geometry
    def project_ego(self, pose: EgoPose) -> tuple[float, float]:
        """Arc length (m) of the ego's projection on the route and its distance to it (m)."""
        r = self.route
        p = np.array([pose.x, pose.y])
        if self._s_ego is not None:
            lo = np.searchsorted(r.s, self._s_ego - self.params.route_search_back_m)
            hi = np.searchsorted(r.s, self._s_ego + self.params.route_search_ahead_m) + 1
            idx = np.arange(lo, min(hi, len(r.s)))
        else:
            idx = np.arange(len(r.s))
        d2 = np.sum((r.xy[idx] - p) ** 2, axis=1)
        if self._s_ego is not None and d2.min() > self.params.max_route_offset_m ** 2:
            idx = np.arange(len(r.s))     # lost the local window (teleport, new episode): search all
            d2 = np.sum((r.xy[idx] - p) ** 2, axis=1)
        k = int(idx[np.argmin(d2)])
        t = np.array([math.cos(r.yaw[k]), math.sin(r.yaw[k])])
        along = float(np.dot(p - r.xy[k], t))
        s = float(np.clip(r.s[k] + along, 0.0, r.s[-1]))
        lateral = float(abs(t[0] * (p[1] - r.xy[k, 1]) - t[1] * (p[0] - r.xy[k, 0])))
        return s, lateral

    def route_pose_at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions (M, 2) and headings (M,) on the route at arc lengths ``s`` (clamped)."""
        r = self.route
        s = np.clip(s, 0.0, r.s[-1])
        xy = np.stack([np.interp(s, r.s, r.xy[:, 0]), np.interp(s, r.s, r.xy[:, 1])], axis=1)
        yaw = np.arctan2(np.interp(s, r.s, np.sin(r.yaw)), np.interp(s, r.s, np.cos(r.yaw)))
        return xy, yaw

    def set_lidar_extrinsic(self, sensor_to_base) -> None:
        """Use the lidar extrinsic ``T_base_link<-lidar`` (:class:`tps_common.frames.RigidTransform`);
        None = ``DEFAULT_LIDAR_HEIGHT_M`` straight above base_link."""
        self._extrinsic = sensor_to_base
        height = sensor_to_base.height_only() if sensor_to_base is not None else DEFAULT_LIDAR_HEIGHT_M
        self._height_only = height
        if sensor_to_base is None:
            self._sensor_xz = (0.0, DEFAULT_LIDAR_HEIGHT_M)
        else:
            t = sensor_to_base.translation
            self._sensor_xz = (0.0, height) if height is not None else (float(t[0]), float(t[2]))

    def obstacle_points_map(self, points: np.ndarray, pose: EgoPose) -> np.ndarray:
        """Lidar-frame points (N, >=3), finite -> (M, 3) map points (x, y, height above ground)
        that can block the ego (ground, overhead and ego-body points removed)."""
        p = self.params
        if self._height_only is not None:   # mounted straight above base_link: a z offset
            z = points[:, 2] + self._height_only
            x, y = points[:, 0], points[:, 1]
        else:
            base = self._extrinsic.apply(points[:, :3])
            x, y, z = base[:, 0], base[:, 1], base[:, 2]
        keep = (z > p.ground_threshold_m) & (z < p.max_obstacle_height_m)
        body = (np.abs(x) <= p.ego_length_m / 2 + p.ego_body_margin_m) & (
            np.abs(y) <= p.ego_width_m / 2 + p.ego_body_margin_m)
        keep &= ~body
        x, y, z = x[keep], y[keep], z[keep]
        c, s = math.cos(pose.yaw), math.sin(pose.yaw)
        return np.stack([pose.x + c * x - s * y, pose.y + s * x + c * y, z], axis=1)

    def corridor_occupancy(self, pts_map: np.ndarray, s_ego: float, length_m: float
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Along-route arc lengths of the points inside the corridor: from the ego's front bumper
        to ``s_ego + length_m`` along the route.

        Args:
            pts_map: (M, 3) map points (x, y, height) from :meth:`obstacle_points_map`.

        Returns:
            (s_in, xy_in, z_in, left, right): in-corridor arc lengths (m), map xy and heights (m),
            and the corridor's left/right boundary polylines for display.
        """
        r, p = self.route, self.params
        half = p.ego_width_m / 2 + p.corridor_margin_m
        lo = np.searchsorted(r.s, s_ego)
        hi = np.searchsorted(r.s, s_ego + length_m, side="right")
        lo = max(lo - 1, 0)
        hi = max(hi, lo + 2)
        cxy, cyaw, cs = r.xy[lo:hi], r.yaw[lo:hi], r.s[lo:hi]
        normal = np.stack([-np.sin(cyaw), np.cos(cyaw)], axis=1)
        left, right = cxy + half * normal, cxy - half * normal
        empty = (np.zeros(0), np.zeros((0, 2)), np.zeros(0), left, right)
        if len(pts_map) == 0:
            return empty
        bb_lo = cxy.min(axis=0) - half - p.route_resolution_m
        bb_hi = cxy.max(axis=0) + half + p.route_resolution_m
        inbox = np.all((pts_map[:, :2] >= bb_lo) & (pts_map[:, :2] <= bb_hi), axis=1)
        cand, cand_z = pts_map[inbox, :2], pts_map[inbox, 2]
        if len(cand) == 0:
            return empty
        _, j = cKDTree(cxy).query(cand)
        rel = cand - cxy[j]
        tan = np.stack([np.cos(cyaw[j]), np.sin(cyaw[j])], axis=1)
        along = np.einsum("ij,ij->i", rel, tan)
        lat = tan[:, 0] * rel[:, 1] - tan[:, 1] * rel[:, 0]
        s_pt = cs[j] + along
        # Only what is ahead of the front bumper blocks the ego: a vehicle alongside (a merge, an
        # overtaker sliding in) is a lateral conflict that braking cannot resolve.
        s_front = s_ego + p.ego_length_m / 2
        inside = (np.abs(lat) <= half) & (np.abs(along) <= p.route_resolution_m) & (s_pt > s_front) & (
            s_pt <= s_ego + length_m)
        return s_pt[inside], cand[inside], cand_z[inside], left, right

    # ---------------------------------------------------------------- tracking
    def in_blind_zone(self, gap_m: float, top_height_m: float) -> bool:
        """True if an obstacle ``gap_m`` ahead of the front bumper whose top is ``top_height_m``
        above the ground hides under the lidar's roof shadow (rays steeper than the line from the
        sensor over the front edge of the roof hit the ego itself)."""
        p = self.params
        sensor_x, sensor_z = self._sensor_xz
        to_roof_edge = p.ego_length_m / 2 - sensor_x   # sensor -> front edge of the roof, m
        drop = sensor_z - p.ego_height_m
        if drop <= 0.0 or to_roof_edge <= 0.0 or top_height_m >= sensor_z:
            return False
        shadow_range = (sensor_z - top_height_m) * to_roof_edge / drop   # from the sensor, m
        return gap_m + to_roof_edge < shadow_range

    def _update_track(self, stamp_s: float, s_meas: float | None, top_m: float, s_ego: float
                      ) -> tuple[float, float, bool] | None:
        """Track the nearest obstacle's along-route position over frames.

        The speed is the least-squares slope of the last ``track_window`` measured positions
        (the k-th nearest point wanders over the object's surface from frame to frame, so a
        two-frame difference is too noisy); a measurement farther than ``track_gate_m`` from the
        prediction starts a new track. An unseen obstacle is kept, as stationary at its last
        position (the conservative assumption), for ``track_coast_s`` or, without a time limit,
        while it hides in the lidar's near blind zone; it is dropped once the ego has passed it.

        Returns:
            (s_abs, speed, measured) or None when there is no obstacle to plan against.
        """
        p = self.params
        tr = self._track
        if s_meas is None:
            if tr is None:
                return None
            t_last, s_last = tr["hist"][-1]
            gap = s_last - (s_ego + p.ego_length_m / 2)
            blind = self.in_blind_zone(gap, tr["top"])
            if gap < -p.ego_length_m or (stamp_s - t_last > p.track_coast_s and not blind):
                self._track = None
                return None
            return s_last, 0.0, False
        if tr is not None:
            t_last, s_last = tr["hist"][-1]
            s_pred = s_last + tr["v"] * max(stamp_s - t_last, 0.0)
            if abs(s_meas - s_pred) > p.track_gate_m or stamp_s <= t_last:
                tr = None                                    # another object (or time went back)
        if tr is None:
            self._track = {"hist": [(stamp_s, s_meas)], "v": 0.0, "top": top_m}
            return s_meas, 0.0, True
        hist = (tr["hist"] + [(stamp_s, s_meas)])[-p.track_window:]
        t = np.array([h[0] for h in hist])
        s_h = np.array([h[1] for h in hist])
        tc = t - t.mean()
        v = float(np.dot(tc, s_h - s_h.mean()) / np.dot(tc, tc))
        self._track = {"hist": hist, "v": v, "top": max(tr["top"], top_m)}
        return s_meas, v, True

    # ---------------------------------------------------------------- speed profile
    def _speed_profile(self, s0: float, v0: float, lead: tuple[float, float] | None,
                       minimal_risk: bool, allow_emergency: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """Integrate IDM. Returns output times, arc lengths, speeds, accelerations and the
        required deceleration at t = 0."""
        p, r = self.params, self.route
        half_len = p.ego_length_m / 2
        # Obstacles as (arc length of the obstacle's near face at t=0, speed along the route, s0 gap).
        obstacles = [(r.s[-1] - p.route_end_margin_m + p.idm_min_gap_m, 0.0)]
        if lead is not None:
            obstacles.append(lead)
        dt = p.integration_dt_s
        n_steps = int(round(p.horizon_s / dt))
        out_every = max(int(round(p.output_step_s / dt)), 1)
        ts, ss, vs, accs = [], [], [], []
        s, v, a_prev = s0, max(v0, 0.0), self._prev_plan_accel
        sqrt_ab = math.sqrt(p.idm_accel_mps2 * p.idm_decel_mps2)
        a_req0 = 0.0
        for k in range(n_steps + 1):
            t = k * dt
            v_lim = min(p.max_speed_mps, float(np.interp(s, r.s, r.speed_limit_mps)))
            if v_lim > 0.05:
                # Above the limit (a lower cap, a curve ahead) slow down at IDM's comfortable b:
                # the curve limit is anticipated with b, so b is enough.
                a = max(p.idm_accel_mps2 * (1.0 - (v / v_lim) ** p.idm_delta), -p.idm_decel_mps2)
            else:
                a = -p.idm_decel_mps2 if v > 0 else 0.0
            a_req = 0.0
            for s_obs, v_obs in obstacles:
                s_obs_t = s_obs + v_obs * t
                gap = s_obs_t - (s + half_len)
                s_star = p.idm_min_gap_m + max(0.0, v * p.idm_time_headway_s + v * (v - v_obs) / (2 * sqrt_ab))
                a -= p.idm_accel_mps2 * (s_star / max(gap, 0.1)) ** 2
                a_req = max(a_req, required_decel(v, v_obs, gap, p.stop_margin_m, p.closing_deadband_mps))
            if minimal_risk and v > 0.0:
                a = min(a, -p.mrm_decel_mps2)
            emergency = allow_emergency and a_req > p.comfort_decel_mps2
            if emergency:
                # Exactly as hard as needed (plus a small margin), never beyond the emergency limit.
                a = max(min(a, -a_req), -min(p.emergency_decel_mps2, a_req * p.emergency_margin))
            else:
                a = max(a, -p.comfort_decel_mps2)
                # Jerk limit on rising acceleration only: braking onset is never delayed.
                if a > a_prev:
                    a = min(a, a_prev + p.plan_jerk_mps3 * dt)
            a = min(a, p.idm_accel_mps2)
            if v <= 0.0 and a < 0.0:
                a = 0.0
            if k == 0:
                a_req0 = a_req
            if k % out_every == 0:
                ts.append(t)
                ss.append(s)
                vs.append(v)
                accs.append(a)
            v_next = max(v + a * dt, 0.0)
            s += 0.5 * (v + v_next) * dt
            v, a_prev = v_next, a
        self._prev_plan_accel = accs[1] if len(accs) > 1 else accs[0]
        return np.array(ts), np.array(ss), np.array(vs), np.array(accs), a_req0

    # ---------------------------------------------------------------- main entry
    def update(self, points: np.ndarray | None, stamp_s: float, pose: EgoPose, monitor_state: int | None = None
               ) -> FallbackResult:
        """Plan from one lidar frame.

        Args:
            points: (N, >=3) lidar-frame xyz[i] (m), as published (may contain NaN); None = missing.
            stamp_s: the frame's stamp, s; the output trajectory carries it.
            pose: ego pose in map at ``stamp_s`` (ego-motion compensation uses it).
            monitor_state: MonitorStatus state, or None if no monitor has spoken.

        Returns:
            The plan with diagnostics. ``trajectory`` is None only without a usable route.
        """
        p = self.params
        msgs: list[str] = []
        level = LEVEL_OK
        minimal_risk = monitor_state == STATE_MINIMAL_RISK
        if self.route is None:
            return FallbackResult(None, LEVEL_ERROR, ("no route received",), minimal_risk=minimal_risk)
        if not all(math.isfinite(v) for v in (pose.x, pose.y, pose.yaw, pose.speed_mps)):
            return FallbackResult(None, LEVEL_ERROR, ("ego pose contains NaN/inf",), minimal_risk=minimal_risk)

        s_ego, offset = self.project_ego(pose)
        self._s_ego = s_ego
        if offset > p.max_route_offset_m:
            level = LEVEL_ERROR
            msgs.append(f"ego is {offset:.1f} m off the route (limit {p.max_route_offset_m:.1f} m): stopping")
            minimal_risk = True

        n_points = 0 if points is None else len(points)
        cloud_ok = True
        nan_fraction = 0.0
        finite = np.zeros((0, 3))
        if points is None or n_points < p.min_cloud_points:
            cloud_ok = False
            msgs.append("no point cloud" if points is None else f"point cloud has {n_points} points: blind, stopping")
        else:
            pts = np.asarray(points, dtype=float)[:, :3]
            good = np.all(np.isfinite(pts), axis=1)
            finite = pts[good]
            nan_fraction = 1.0 - len(finite) / n_points
            if nan_fraction > p.nan_error_fraction:
                cloud_ok = False
                msgs.append(f"{nan_fraction:.0%} of the cloud's points are NaN/inf (limit "
                            f"{p.nan_error_fraction:.0%}): stopping")
            elif nan_fraction > 0.0:
                level = max(level, LEVEL_WARN)
                msgs.append(f"{n_points - len(finite)} of {n_points} points NaN/inf: dropped")
        if not cloud_ok:
            level = LEVEL_ERROR
            minimal_risk = True

        length = min(max(p.corridor_min_length_m, p.corridor_time_s * max(pose.speed_mps, 0.0)),
                     p.corridor_max_length_m)
        pts_map = self.obstacle_points_map(finite, pose) if cloud_ok else np.zeros((0, 3))
        s_in, xy_in, z_in, left, right = self.corridor_occupancy(pts_map, s_ego, length)

        obstacle = None
        lead = None
        if cloud_ok and not p.ignore_obstacles:
            s_meas, top = None, 0.0
            if len(s_in) >= p.min_obstacle_points:
                order = np.argsort(s_in)
                k = order[p.min_obstacle_points - 1]
                s_meas = float(s_in[k])
                near = s_in <= s_meas + 1.0
                top = float(z_in[near].max())
                obs_xy = xy_in[k].copy()
            tracked = self._update_track(stamp_s, s_meas, top, s_ego)
            if tracked is not None:
                s_obs, v_obs, measured = tracked
                if not measured:
                    obs_xy, _ = self.route_pose_at(np.array([s_obs]))
                    obs_xy = obs_xy[0]
                    msgs.append("obstacle not seen this frame: kept from earlier frames")
                gap = s_obs - (s_ego + p.ego_length_m / 2)
                obstacle = Obstacle(xy=obs_xy, s_abs_m=s_obs, gap_m=gap, speed_mps=v_obs,
                                    closing_speed_mps=pose.speed_mps - v_obs, n_points=int(len(s_in)),
                                    measured=measured)
                lead = (s_obs, max(v_obs, 0.0))
        if self._prev_stamp is not None and abs(stamp_s - self._prev_stamp) <= 1e-9:
            self._prev_plan_accel = self._plan_accel_base   # the same frame again: same start
        else:
            if self._prev_stamp is not None and stamp_s - self._prev_stamp > 1.0:
                self._prev_plan_accel = 0.0   # long gap: the previous plan no longer applies
            self._plan_accel_base = self._prev_plan_accel
        self._prev_stamp = stamp_s

        # A new obstacle right at the bumper came in from the side (a merging or overtaking vehicle):
        # its speed is unknown for one frame, so that frame brakes at comfort, not as for a wall.
        allow_emergency = not (obstacle is not None and obstacle.measured and self._track is not None
                               and len(self._track["hist"]) == 1 and obstacle.gap_m < p.new_track_near_gap_m)
        t, s, v, a, a_req = self._speed_profile(s_ego, pose.speed_mps, lead, minimal_risk, allow_emergency)
        if a_req > p.comfort_decel_mps2:
            level = max(level, LEVEL_WARN)
            msgs.append(f"required deceleration {a_req:.1f} m/s^2 exceeds comfort "
                        f"{p.comfort_decel_mps2:.1f} m/s^2: emergency braking")
        xy, yaw = self.route_pose_at(s)
        traj = Trajectory(stamp_s=stamp_s, t_s=t, xy=xy, yaw=yaw, speed_mps=v, accel_mps2=a,
                          source=SOURCE_MINIMAL_RISK if minimal_risk else SOURCE_FALLBACK,
                          confidence=1.0 if level == LEVEL_OK else 0.5, frame_id="map")
        return FallbackResult(
            trajectory=traj, level=level, messages=tuple(msgs), obstacle=obstacle, required_decel_mps2=a_req,
            n_points=n_points, n_finite=len(finite), n_obstacle_points=len(pts_map), nan_fraction=nan_fraction,
            corridor_left=left, corridor_right=right, s_ego_m=s_ego, minimal_risk=minimal_risk,
        )
