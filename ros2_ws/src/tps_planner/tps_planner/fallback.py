"""Point-cloud fallback planner (core; no ROS imports).

Follows the route -- lane by lane when a lane map is known -- with an IDM speed profile against
obstacles found in the **raw lidar point cloud**. It never reads detections, so it does not
share the learned models' failure modes.

Per lidar frame:
1. Validate the cloud (empty / NaN-laden -> ERROR and a comfortable stop; partial NaN -> WARN,
   NaN points dropped).
2. Lidar frame -> ``base_link`` (the lidar extrinsic, :meth:`FallbackPlanner.set_lidar_extrinsic`;
   by default ``DEFAULT_LIDAR_HEIGHT_M`` straight above base_link); drop ground (z below
   ``ground_threshold_m``; the ground is flat at z = 0), overhead points and the ego's own body.
3. Ego-motion compensation: transform to ``map`` with the ego pose at the frame's stamp.
4. Occupancy all around the ego (``tps_planner.occupancy``): the points on the map's area (lanes
   and crosswalks grown by ``map_filter_margin_m``; clutter beside the road is left out) are
   clustered on a grid and the clusters tracked in ``map`` (position, velocity), then laid over
   the route: arc-length and lateral extents, speed along and across the route.
5. Lanes (with a lane map, ``tps_planner.lane_map``): the ego follows the centre of its lane and
   the lane's continuations. A **lane change** starts when the lane ends ahead (an acceleration
   lane; mandatory), when a vehicle has stood still in it for ``overtake_stationary_s``
   within ``overtake_trigger_gap_m`` ahead, away from junctions (``overtake_junction_distance_m``),
   and a neighbour lane the map allows continues past it, or when a slow lead has held the ego
   back for ``slow_lead_time_s`` (discretionary); in every case only when the **gap rule**
   (``tps_planner.gap``) accepts the target lane's gap. Blocked, the ego
   keeps its lane: before a lane end it lets the blocking vehicle pass (its speed minus
   ``merge_speed_margin_mps``) and stops ``lane_end_stop_margin_m`` before the end rather than
   force its way in; behind a stalled vehicle it waits ``stalled_standstill_gap_m`` back. The
   change is a quintic blend over ``lane_change_time_s`` of travel (``lane_change_*_length_m``),
   re-checked every frame and aborted back to its lane while less than ``abort_progress`` done.
6. Crossings: an object inside or entering (``crosswalk_margin_m``) a crosswalk the route crosses,
   in the ego's path (``crosswalk_path_margin_m``) or moving towards it, puts a stop
   ``crosswalk_stop_margin_m`` before the crosswalk.
7. Corridor along the planned path (its lateral offsets from the route), from the ego's front
   bumper over a speed-dependent length, ``ego_width_m / 2 + corridor_margin_m`` to each side.
   Each point gets an along-route arc length; the obstacle is the ``min_obstacle_points``-th
   nearest point in the corridor, tracked across frames (least-squares speed along the route).
   A vehicle beside the corridor moving into it (a cut-in) is followed before it is in.
8. Speed profile: IDM integrated over the horizon against the obstacle (constant speed) and a
   stationary obstacle at the route's end; desired speed = the lane's speed limit x
   ``speed_limit_factor`` (``max_speed_mps`` without a map), curvature-limited; **virtual stops**
   (lane ends, crosswalks, and the caller's, e.g. stop lines) limit the speed so that the front
   bumper stops at them braking at ``stop_decel_mps2``. Deceleration is capped at
   ``comfort_decel_mps2`` unless the required deceleration ``(v - v_lead)^2 / (2 (gap -
   stop_margin))`` exceeds it, in which case that much (up to ``emergency_decel_mps2``) is
   applied. In MINIMAL_RISK the profile also brakes at ``mrm_decel_mps2`` to a stop in lane.
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

from tps_planner.gap import GapDecision, GapParams, LaneObject, gap_acceptance
from tps_planner.lane_map import LaneMap, RouteLanes, points_in_convex
from tps_planner.occupancy import ObjectTracker, OccupancyParams, cluster_points
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
KINK_WINDOW_M = 8.0             # curvature window of a kink that turns less than KINK_MAX_TURN_RAD
KINK_MAX_TURN_RAD = 0.35        # ... in all over that window
PATH_BACK_M = 10.0              # the planned path starts this far behind the ego
PATH_MARGIN_M = 20.0            # ... and reaches this far beyond the horizon's reach
OBJECT_BACK_M = 90.0            # objects this far behind the ego count (gaps, crosswalks)
OBJECT_AHEAD_M = 150.0          # ... and this far ahead
TARGET_LANE_INSET_M = 0.3       # an object must reach this far into the target lane to count
LATERAL_ENTRY_SPEED_MPS = 0.5   # an object moving sideways this fast towards the lane counts too
FACE_WINDOW = 8                 # frames in the least-squares speed of an object's near face
FACE_MARGIN_M = 1.0             # an object's face this far beyond the ego's bumpers is "near face"
COAST_MOVING_MIN_FRAMES = 5     # an obstacle tracked this long and ...
COAST_MOVING_MIN_SPEED_MPS = 1.0  # ... faster than this coasts at its speed when unseen
STOP_HOLD_M = 0.3               # the front bumper holds this short of a virtual stop
OBSTACLE_HALF_WIDTH_M = 1.0     # a vehicle's half width beside the point the corridor tracks
ABORT_IN_LANE_M = 0.5           # an aborted change closer than this to its lane's centre is dropped
UNKNOWN_ABORT_WITHIN_M = 10.0   # a change under way is aborted for an unknown-speed object this close
STUCK_SPEED_MPS = 0.3           # below this the ego counts as held up (a change given up)
LANE_END_HARD_MARGIN_M = 1.0    # past its stop, the ego still stops this far before a lane end
OVERTAKE_NO_RETURN_M = 8.0      # an overtake this close to the stalled object is not aborted
OVERTAKE_MIN_ROOM = 0.6         # room to a stalled object, in shortest lane changes, to steer round it


@dataclass(frozen=True)
class FallbackParams:
    """Fallback planner parameters (SI units). See config/schema/fallback_node.schema.json."""

    max_speed_mps: float = 12.0               # cruise speed where no speed limit is known (no map)
    speed_limit_factor: float = 1.0           # with a lane map: cruise at this x the lane's limit
    speed_cap_mps: float = 40.0               # never faster than this
    ignore_obstacles: bool = False
    require_lane_map: bool = False            # no plan until a lane map has arrived
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
    idm_accel_mps2: float = 2.0
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
    max_lateral_accel_mps2: float = 2.5
    max_yaw_rate_rad_s: float = 0.7
    curvature_window_m: float = 4.0           # curvature averaged over +- this along the route
    mrm_decel_mps2: float = 2.0
    stop_decel_mps2: float = 1.5              # braking towards a virtual stop
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
    new_track_comfort_frames: int = 1         # a new obstacle's first frames brake at comfort at most
    track_coast_s: float = 1.5                # keep an unseen obstacle this long (beam gaps), s
    ego_height_m: float = 1.5                 # the roof shadows the lidar's lowest beams near the ego
    lidar_beam_spacing_deg: float = 1.29      # the lidar's vertical resolution (between its beams)
    nan_error_fraction: float = 0.5           # more NaN points than this -> ERROR
    min_cloud_points: int = 1
    # lanes (lane map)
    lane_max_offset_m: float = 8.0            # lanes farther from the route are not laid over it
    lane_heading_tolerance_rad: float = 0.5
    map_filter_margin_m: float = 1.5          # occupancy counts on lanes grown by this
    # lane changes and the gap rule (tps_planner.gap)
    lane_changes: bool = True
    lane_change_time_s: float = 3.0
    lane_change_min_length_m: float = 10.0
    lane_change_max_length_m: float = 90.0
    lane_change_cooldown_s: float = 2.0       # after a change or an abort, no new one this long
    abort_progress: float = 0.5               # an unsafe change is aborted while less done than this
    lane_change_stuck_s: float = 3.0          # a change held up at standstill this long is given up
    abort_gap_relax: float = 0.5              # a change under way: gaps and time gaps x this, decels / this
    lane_end_stop_margin_m: float = 12.0      # the front bumper stops this far before a lane end
    merge_speed_margin_mps: float = 3.0       # blocked before a lane end: slow to the blocker's - this
    merge_min_speed_mps: float = 5.0
    gap_min_m: float = 3.0
    gap_front_time_s: float = 1.0
    gap_rear_time_s: float = 1.0
    gap_ego_decel_mps2: float = 2.0
    gap_follower_decel_mps2: float = 3.0
    gap_min_track_age: int = 3                # frames before an object's speed counts as known
    # overtaking a stalled vehicle
    overtake_stationary_s: float = 0.5
    overtake_speed_mps: float = 0.5           # ... standing = slower than this
    overtake_trigger_gap_m: float = 60.0
    overtake_clearance_m: float = 30.0        # the neighbour lane must continue this far past it
    overtake_junction_distance_m: float = 80.0
    stalled_standstill_gap_m: float = 10.0
    # passing a slow lead (speed gain)
    overtake_slow: bool = True
    slow_lead_margin_mps: float = 4.0         # slower than the desired speed by this ...
    slow_lead_time_s: float = 3.0             # ... for this long ...
    slow_lead_gap_m: float = 60.0             # ... within this ahead: passed in a neighbour lane
    slow_lead_junction_distance_m: float = 150.0
    # occupancy (tps_planner.occupancy)
    cluster_cell_m: float = 0.5
    occupancy_range_m: float = 80.0
    cluster_min_points: int = 2
    object_gate_m: float = 2.5
    object_coast_s: float = 0.8
    # crosswalks
    crosswalk_margin_m: float = 1.5           # an object this close to a crosswalk is entering it
    crosswalk_path_margin_m: float = 1.0      # ... and in the ego's path within this of its corridor
    crosswalk_watch_m: float = 8.0            # ... or moving towards the path from within this
    crosswalk_approach_speed_mps: float = 0.3
    crosswalk_stop_margin_m: float = 2.0      # the front bumper stops this far before the crosswalk
    cut_in_lateral_speed_mps: float = 0.5     # a vehicle beside moving into the corridor this fast ...
    cut_in_horizon_s: float = 1.5             # ... and reaching it within this is followed already
    crosswalk_time_margin_s: float = 1.5      # an object reaching the path this much after the ego
                                              # cleared the crosswalk does not stop it

    def gap_params(self) -> GapParams:
        """The gap rule's parameters."""
        return GapParams(self.gap_min_m, self.gap_front_time_s, self.gap_rear_time_s,
                         self.gap_ego_decel_mps2, self.gap_follower_decel_mps2, self.lane_change_time_s)

    def occupancy_params(self) -> OccupancyParams:
        """The clustering and tracking parameters."""
        return OccupancyParams(cell_m=self.cluster_cell_m, range_m=self.occupancy_range_m,
                               min_points=self.cluster_min_points, gate_m=self.object_gate_m,
                               coast_s=self.object_coast_s, min_age=self.gap_min_track_age)


@dataclass(frozen=True)
class Route:
    """A route resampled at a fixed spacing. Arrays (M,) / (M, 2) in map, metres / radians."""

    xy: np.ndarray
    s: np.ndarray
    yaw: np.ndarray
    curvature: np.ndarray
    speed_limit_mps: np.ndarray   # curvature speed limit with braking anticipation, m/s


@dataclass(frozen=True)
class VirtualStop:
    """A stationary virtual obstacle: the front bumper stops at arc length ``s_m`` along the
    route [m] (e.g. a stop line); ``reason`` names it in diagnostics; ``decel_mps2`` is the
    braking it is approached with (None: ``stop_decel_mps2``)."""

    s_m: float
    reason: str
    decel_mps2: float | None = None


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


@dataclass(frozen=True, eq=False)
class RouteObject:
    """A tracked object laid over the route (see ``tps_planner.occupancy``).

    Attributes:
        track_id: the tracker's id.
        xy: (2,) centre in map [m].
        s_min_m, s_max_m, d_min_m, d_max_m: arc-length and lateral (left +) extents [m].
        speed_mps: speed along the route [m/s]; lateral_speed_mps across it (left +).
        velocity_known: measured often enough for its speed to count.
        stationary_s: how long it has stood still [s].
        measured: seen in this frame (else coasted).
    """

    track_id: int
    xy: np.ndarray
    s_min_m: float
    s_max_m: float
    d_min_m: float
    d_max_m: float
    speed_mps: float
    lateral_speed_mps: float
    velocity_known: bool
    stationary_s: float
    measured: bool


@dataclass(frozen=True)
class LaneChange:
    """A lane change under way: from reference offset ``d_start_m`` at arc length ``s0_m`` to
    strip ``target``'s lane path over ``length_m`` of route."""

    origin: int
    target: int
    s0_m: float
    length_m: float
    d_start_m: float
    mandatory: bool
    reason: str
    abort: bool = False
    obstacle_s_m: float | None = None     # the stalled object passed (its rear), if overtaking


@dataclass(frozen=True)
class LaneDecision:
    """What the lane logic decided this frame (diagnostics)."""

    lane_id: str = ""
    target_lane_id: str = ""
    state: str = "route"              # route | lane | changing | aborting | waiting
    reason: str = ""
    gap: GapDecision | None = None
    lane_end_s_m: float = math.inf
    speed_cap_mps: float = math.inf


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
    objects: tuple = ()                         # RouteObject around the ego
    stops: tuple = ()                           # VirtualStop applied
    lane: LaneDecision = field(default_factory=LaneDecision)


def smootherstep(u: np.ndarray) -> np.ndarray:
    """Quintic blend 0 -> 1 on [0, 1] with zero slope and curvature at both ends."""
    u = np.clip(u, 0.0, 1.0)
    return u * u * u * (10.0 + u * (-15.0 + 6.0 * u))


MAX_ROUTE_LENGTH_M = 200_000.0   # a longer route is malformed (resampled at route_resolution_m)


def make_route(xy: np.ndarray, params: FallbackParams) -> Route:
    """Resample a route polyline (N, 2) in map at ``route_resolution_m`` and precompute headings,
    curvature and the curvature speed limit.

    Raises:
        ValueError: if the route has fewer than two distinct points, non-finite values or is
            longer than ``MAX_ROUTE_LENGTH_M``.
    """
    xy = np.asarray(xy, dtype=float).reshape(-1, 2)
    if not np.all(np.isfinite(xy)):
        raise ValueError("route contains NaN/inf")
    keep = np.concatenate([[True], np.hypot(*np.diff(xy, axis=0).T) > 1e-6]) if len(xy) else np.zeros(0, bool)
    xy = xy[keep]
    if len(xy) < 2:
        raise ValueError(f"route needs at least 2 distinct points, got {len(xy)}")
    s_in = arc_length(xy)
    if s_in[-1] > MAX_ROUTE_LENGTH_M:   # a point at 1e9 m: 30 GB of samples killed the node (tests/fuzz)
        raise ValueError(f"route is {s_in[-1]:.3g} m long (at most {MAX_ROUTE_LENGTH_M:.0f} m)")
    n = max(int(math.ceil(s_in[-1] / params.route_resolution_m)) + 1, 2)
    s = np.linspace(0.0, s_in[-1], n)
    rxy = np.stack([np.interp(s, s_in, xy[:, 0]), np.interp(s, s_in, xy[:, 1])], axis=1)
    d = np.gradient(rxy, s, axis=0)
    yaw = np.arctan2(d[:, 1], d[:, 0])
    dyaw = wrap_angle(np.diff(yaw))
    ds = np.diff(s)
    kappa = np.concatenate([dyaw / ds, [0.0]])
    # Smooth over +-curvature_window_m so a kink in a coarse route does not read as a hairpin; a
    # kink that turns little in all (a ramp meeting its acceleration lane: 17 deg over 3.5 m) is
    # smoothed over +-KINK_WINDOW_M, as the controller's lookahead cuts it at speed.
    w = max(int(round(params.curvature_window_m / params.route_resolution_m)), 1)
    wk = max(int(round(KINK_WINDOW_M / params.route_resolution_m)), w)
    turn = np.convolve(kappa * np.concatenate([ds, [0.0]]), np.ones(2 * wk + 1), mode="same")
    kappa_kink = np.convolve(kappa, np.ones(2 * wk + 1) / (2 * wk + 1), mode="same")
    kappa = np.convolve(kappa, np.ones(2 * w + 1) / (2 * w + 1), mode="same")
    kappa = np.where(np.abs(turn) < KINK_MAX_TURN_RAD, np.sign(kappa) * np.minimum(np.abs(kappa),
                                                                                     np.abs(kappa_kink)), kappa)
    ak = np.maximum(np.abs(kappa), 1e-6)
    v_curve = np.minimum(np.sqrt(params.max_lateral_accel_mps2 / ak), params.max_yaw_rate_rad_s / ak)
    v_allow = v_curve.copy()
    for i in range(n - 2, -1, -1):
        v_allow[i] = min(v_allow[i], math.sqrt(v_allow[i + 1] ** 2 + 2.0 * params.idm_decel_mps2 * (s[i + 1] - s[i])))
    return Route(xy=rxy, s=s, yaw=yaw, curvature=kappa, speed_limit_mps=v_allow)


@dataclass(frozen=True)
class RouteMap:
    """A route with the lane map laid over it and the desired speed along it: everything
    :meth:`FallbackPlanner.install_route_map` installs (made by :func:`build_route_map`)."""

    route: Route
    tree: cKDTree                      # of route.xy (nearest route sample of a point)
    lane_map: LaneMap | None
    lanes: RouteLanes | None           # None without a lane map or when it does not fit the route
    lane_map_error: str                # why a lane map given is not used ('' otherwise)
    v_allow: np.ndarray                # (M,) desired speed along the route [m/s]


def build_route_map(route: Route, lane_map: LaneMap | None, params: FallbackParams,
                    tree: cKDTree | None = None) -> RouteMap:
    """Lay ``lane_map`` over ``route`` and compute the desired speed along it: the lanes' limits
    (else ``max_speed_mps``), the curvature limit, braking anticipated at the IDM's comfortable
    deceleration. Pure (no planner state): the fallback node runs it off its executor thread.

    Args:
        route: from :func:`make_route`.
        lane_map: the lane map, or None.
        params: the planner's parameters.
        tree: a KD-tree of ``route.xy`` already built (else built here).

    Returns:
        The route map; an unusable lane map gives ``lanes`` None and the reason in
        ``lane_map_error`` (no exception).
    """
    p = params
    lanes, error = None, ""
    if lane_map is not None:
        try:
            lanes = RouteLanes(route.xy, route.s, route.yaw, lane_map, p.lane_max_offset_m,
                               p.lane_heading_tolerance_rad, p.map_filter_margin_m, p.crosswalk_margin_m + 1.5)
        except (ValueError, IndexError) as exc:
            lanes, error = None, f"unusable lane map: {exc}"
    if lanes is not None and np.isfinite(lanes.speed_limit_mps).any():
        v = np.minimum(lanes.speed_limit_mps * p.speed_limit_factor, p.speed_cap_mps)
    else:
        v = np.full(len(route.s), min(p.max_speed_mps, p.speed_cap_mps))
    v = np.minimum(v, route.speed_limit_mps)
    for i in range(len(v) - 2, -1, -1):
        v[i] = min(v[i], math.sqrt(v[i + 1] ** 2 + 2.0 * p.idm_decel_mps2 * (route.s[i + 1] - route.s[i])))
    return RouteMap(route=route, tree=tree if tree is not None else cKDTree(route.xy), lane_map=lane_map,
                    lanes=lanes, lane_map_error=error, v_allow=v)


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
    """Stateful fallback planner: call :meth:`set_route` once (or on change), optionally
    :meth:`set_lane_map`, and :meth:`update` per lidar frame."""

    def __init__(self, params: FallbackParams | None = None) -> None:
        self.params = params or FallbackParams()
        self.route: Route | None = None
        self.lane_map: LaneMap | None = None
        self.lanes: RouteLanes | None = None
        self.lane_map_error = ""
        self._route_tree: cKDTree | None = None
        self._v_allow: np.ndarray | None = None
        self._s_ego: float | None = None
        self._track: dict | None = None
        self._prev_plan_accel = 0.0
        self._plan_accel_base = 0.0
        self._prev_stamp: float | None = None
        self.tracker = ObjectTracker(self.params.occupancy_params())
        self._extents: dict = {}
        self._faces: dict = {}
        self._still: dict = {}
        self._objects_stamp: float | None = None
        self._reset_lane_state()
        self.set_lidar_extrinsic(None)

    def _reset_lane_state(self) -> None:
        self._strip = -1
        self._lc: LaneChange | None = None
        self._lc_block_until = -math.inf
        self._lc_stopped_s = 0.0
        self._lc_last_stamp: float | None = None
        self._slow_lead_since: float | None = None
        self._slow_lead_id: int | None = None

    def set_route(self, xy: np.ndarray) -> None:
        """Install a new route (map frame), laid over the lane map known so far. Raises ValueError
        on an unusable route."""
        self.install_route_map(build_route_map(make_route(xy, self.params), self.lane_map, self.params),
                               new_route=True)

    def set_lane_map(self, lane_map: LaneMap | None) -> None:
        """Install the lane map (None forgets it); laid over the route once both are known."""
        if self.route is None:
            self.lane_map = lane_map
            self._reset_lane_state()
            self.lanes, self.lane_map_error, self._v_allow = None, "", None
            return
        self.install_route_map(build_route_map(self.route, lane_map, self.params, tree=self._route_tree),
                               new_route=False)

    def install_route_map(self, built: RouteMap, new_route: bool) -> None:
        """Install a route map made by :func:`build_route_map` (cheap: the heavy part is the build,
        which a caller may run on another thread). ``new_route``: the route itself changed (the ego
        projection, obstacle tracks and object history restart); otherwise only the lanes did. The
        lane-change state restarts either way."""
        if new_route:
            self._s_ego = None
            self._track = None
            self.tracker.reset()
            self._extents = {}
            self._faces = {}
            self._still = {}
            self._objects_stamp = None
        self.route, self._route_tree = built.route, built.tree
        self.lane_map, self.lanes, self.lane_map_error = built.lane_map, built.lanes, built.lane_map_error
        self._v_allow, self._v_allow_list = built.v_allow, [float(x) for x in built.v_allow]
        self._reset_lane_state()

    def serves(self, pose: EgoPose) -> bool:
        """Whether the installed route map can plan a cycle at ``pose``: a route, the lane map when
        ``require_lane_map``, and the ego within ``max_route_offset_m`` of the route (the caller
        waits for a route map being built otherwise, e.g. when a new drive starts elsewhere)."""
        if self.route is None or (self.params.require_lane_map and self.lanes is None):
            return False
        if not all(math.isfinite(v) for v in (pose.x, pose.y)):
            return True     # update() reports the pose itself
        return self._project_ego_signed(pose)[1] ** 2 <= self.params.max_route_offset_m ** 2

    # ---------------------------------------------------------------- geometry
    def project_ego(self, pose: EgoPose) -> tuple[float, float]:
        """Arc length (m) of the ego's projection on the route and its distance to it (m)."""
        s, d = self._project_ego_signed(pose)
        return s, abs(d)

    def _project_ego_signed(self, pose: EgoPose) -> tuple[float, float]:
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
        lateral = float(t[0] * (p[1] - r.xy[k, 1]) - t[1] * (p[0] - r.xy[k, 0]))
        return s, lateral

    def project_point(self, xy) -> tuple[float, float]:
        """(arc length along the route [m], signed lateral offset, left +, [m]) of a map point,
        e.g. for a caller's virtual stop at a stop line."""
        s, d = self._project_points(np.asarray(xy, float).reshape(1, 2))
        return float(s[0]), float(d[0])

    def _project_points(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Arc lengths and signed lateral offsets of map points (N, 2) (nearest route point)."""
        r = self.route
        _, j = self._route_tree.query(xy)
        rel = xy - r.xy[j]
        c, s = np.cos(r.yaw[j]), np.sin(r.yaw[j])
        return r.s[j] + rel[:, 0] * c + rel[:, 1] * s, c * rel[:, 1] - s * rel[:, 0]

    def route_pose_at(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Positions (M, 2) and headings (M,) on the route at arc lengths ``s`` (clamped)."""
        r = self.route
        s = np.clip(s, 0.0, r.s[-1])
        xy = np.stack([np.interp(s, r.s, r.xy[:, 0]), np.interp(s, r.s, r.xy[:, 1])], axis=1)
        yaw = np.arctan2(np.interp(s, r.s, np.sin(r.yaw)), np.interp(s, r.s, np.cos(r.yaw)))
        return xy, yaw

    def path_pose_at(self, s: np.ndarray, path_s: np.ndarray, path_d: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
        """Positions and headings of the planned path (the route offset by ``path_d`` at
        ``path_s``) at arc lengths ``s``."""
        xy, yaw = self.route_pose_at(s)
        if not np.any(path_d):
            return xy, yaw
        d = np.interp(s, path_s, path_d)
        slope = np.interp(s, path_s, np.gradient(path_d, path_s)) if len(path_s) > 1 else np.zeros_like(s)
        normal = np.stack([-np.sin(yaw), np.cos(yaw)], axis=1)
        return xy + d[:, None] * normal, wrap_angle(yaw + np.arctan(slope))

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

    def corridor_occupancy(self, pts_map: np.ndarray, s_ego: float, length_m: float,
                           path_s: np.ndarray | None = None, path_d: np.ndarray | None = None
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Along-route arc lengths of the points inside the corridor: from the ego's front bumper
        to ``s_ego + length_m`` along the planned path (the route offset laterally by ``path_d``
        at ``path_s``; None = the route itself).

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
        offset = np.zeros(len(cs)) if path_d is None else np.interp(cs, path_s, path_d)
        centre = cxy + offset[:, None] * normal
        left, right = centre + half * normal, centre - half * normal
        empty = (np.zeros(0), np.zeros((0, 2)), np.zeros(0), left, right)
        if len(pts_map) == 0:
            return empty
        reach = half + float(np.max(np.abs(offset))) + p.route_resolution_m
        bb_lo = cxy.min(axis=0) - reach
        bb_hi = cxy.max(axis=0) + reach
        inbox = np.all((pts_map[:, :2] >= bb_lo) & (pts_map[:, :2] <= bb_hi), axis=1)
        cand, cand_z = pts_map[inbox, :2], pts_map[inbox, 2]
        if len(cand) == 0:
            return empty
        _, j = cKDTree(cxy).query(cand)
        rel = cand - cxy[j]
        tan = np.stack([np.cos(cyaw[j]), np.sin(cyaw[j])], axis=1)
        along = np.einsum("ij,ij->i", rel, tan)
        lat = tan[:, 0] * rel[:, 1] - tan[:, 1] * rel[:, 0] - offset[j]
        s_pt = cs[j] + along
        # Only what is ahead of the front bumper blocks the ego: a vehicle alongside (a merge, an
        # overtaker sliding in) is a lateral conflict that braking cannot resolve.
        s_front = s_ego + p.ego_length_m / 2
        inside = (np.abs(lat) <= half) & (np.abs(along) <= p.route_resolution_m) & (s_pt > s_front) & (
            s_pt <= s_ego + length_m)
        return s_pt[inside], cand[inside], cand_z[inside], left, right

    # ---------------------------------------------------------------- occupancy around the ego
    def route_objects(self, pts_map: np.ndarray, stamp_s: float, pose: EgoPose,
                      s_ego: float) -> tuple:
        """Cluster and track the obstacle points (on the map's area when a lane map is known) and
        lay the tracks over the route (:class:`RouteObject`, within ``OBJECT_BACK_M`` behind and
        ``OBJECT_AHEAD_M`` ahead of the ego)."""
        pts = pts_map
        if self.lanes is not None and len(pts):
            pts = pts[self.lanes.mask.contains(pts)]
        clusters = cluster_points(pts[:, :2], np.array([pose.x, pose.y]), self.tracker.params)
        tracks = self.tracker.update(clusters, stamp_s)
        n_c = len(clusters.centers)
        ext = np.zeros((n_c, 4))
        if n_c:
            lab = clusters.labels
            sel = np.flatnonzero(lab >= 0)
            s_pt, d_pt = self._project_points(pts[sel, :2])
            order = np.argsort(lab[sel], kind="stable")
            ls, ss, ds = lab[sel][order], s_pt[order], d_pt[order]
            starts = np.flatnonzero(np.concatenate([[True], ls[1:] != ls[:-1]]))
            ext[:, 0] = np.minimum.reduceat(ss, starts)
            ext[:, 1] = np.maximum.reduceat(ss, starts)
            ext[:, 2] = np.minimum.reduceat(ds, starts)
            ext[:, 3] = np.maximum.reduceat(ds, starts)
        r = self.route
        extents = {}
        keep, boxes = [], []
        for tr in tracks:
            if tr.cluster >= 0:
                extents[tr.track_id] = (ext[tr.cluster], stamp_s)
                keep.append(tr)
                boxes.append((ext[tr.cluster], 0.0))
            elif tr.track_id in self._extents:          # coasting: last extents, moved on below
                e, t_prev = self._extents[tr.track_id]
                extents[tr.track_id] = (e, t_prev)
                keep.append(tr)
                boxes.append((e, stamp_s - t_prev))
        if not keep:
            self._extents, self._faces, self._still, self._objects_stamp = extents, {}, {}, stamp_s
            return ()
        xy = np.array([tr.xy for tr in keep])
        vel = np.array([tr.velocity for tr in keep])
        _, j = self._route_tree.query(xy)
        c, s = np.cos(r.yaw[j]), np.sin(r.yaw[j])
        v_along = vel[:, 0] * c + vel[:, 1] * s
        v_lat = c * vel[:, 1] - s * vel[:, 0]
        out, faces, still = [], {}, {}
        p = self.params
        s_front, s_rear = s_ego + p.ego_length_m / 2, s_ego - p.ego_length_m / 2
        dt = 0.0 if self._objects_stamp is None else max(stamp_s - self._objects_stamp, 0.0)
        for n, tr in enumerate(keep):
            e, age_s = boxes[n]
            speed = float(v_along[n])
            if tr.cluster >= 0:
                speed = self._face_speed(tr.track_id, e, stamp_s, s_front, s_rear, speed, faces)
            # Standing still: by the speed of the face turned to the ego where there is one.
            standing = tr.velocity_known and math.hypot(speed, float(v_lat[n])) < p.overtake_speed_mps
            still[tr.track_id] = self._still.get(tr.track_id, 0.0) + dt if standing else 0.0
            shift = speed * age_s
            s_min, s_max = float(e[0]) + shift, float(e[1]) + shift
            if s_max < s_ego - OBJECT_BACK_M or s_min > s_ego + OBJECT_AHEAD_M:
                continue
            out.append(RouteObject(tr.track_id, tr.xy, s_min, s_max, float(e[2]), float(e[3]),
                                   speed, float(v_lat[n]), tr.velocity_known, still[tr.track_id], tr.measured))
        self._faces, self._still, self._objects_stamp = faces, still, stamp_s
        self._extents = extents
        return tuple(out)

    def _face_speed(self, track_id: int, e: np.ndarray, stamp_s: float, s_front: float, s_rear: float,
                    centroid_speed: float, faces: dict) -> float:
        """Speed along the route of an object ahead or behind from the face turned to the ego (its
        rear face ahead, its front face behind: least squares over ``FACE_WINDOW`` frames): the
        centroid of what the lidar sees of it moves as its visible faces change, the near face
        does not. Alongside, or until three frames of the face: the centroid's speed."""
        if e[0] > s_front + FACE_MARGIN_M:
            side, face = 1, float(e[0])
        elif e[1] < s_rear - FACE_MARGIN_M:
            side, face = -1, float(e[1])
        else:
            return centroid_speed
        prev = self._faces.get(track_id)
        hist = prev[1] if prev is not None and prev[0] == side else []
        hist = (hist + [(stamp_s, face)])[-FACE_WINDOW:]
        faces[track_id] = (side, hist)
        if len(hist) < 3:
            return centroid_speed
        tt = np.array([h[0] for h in hist])
        ss = np.array([h[1] for h in hist])
        tc = tt - tt.mean()
        return float(np.dot(tc, ss - ss.mean()) / max(np.dot(tc, tc), 1e-9))

    # ---------------------------------------------------------------- lanes
    def _objects_in_lane(self, objects: tuple, k: int, exclude_from: int = -1) -> list:
        """The objects that reach ``TARGET_LANE_INSET_M`` into strip ``k``'s lane, or move
        sideways into it from the far side (not from the ego's own lane, strip ``exclude_from``:
        the lateral speed of what is behind or beside the ego in its lane is too noisy), as
        gap-rule :class:`LaneObject`."""
        lanes = self.lanes
        st = lanes.strips[k]
        hw = 0.5 * st.lane.width_m
        so = lanes.strips[exclude_from] if exclude_from >= 0 else None
        out = []
        for ob in objects:
            i = lanes.index(0.5 * (ob.s_min_m + ob.s_max_m))
            dc = st.d_at(i)
            lo, hi = dc - hw + TARGET_LANE_INSET_M, dc + hw - TARGET_LANE_INSET_M
            inside = ob.d_max_m >= lo and ob.d_min_m <= hi
            if not inside and ob.velocity_known:
                below = ob.d_max_m < lo
                gap = lo - ob.d_max_m if below else ob.d_min_m - hi
                towards = ob.lateral_speed_mps if below else -ob.lateral_speed_mps
                far_side = so is None or (so.d_at(i) < dc) != below
                inside = far_side and gap <= 2.0 * hw and towards >= LATERAL_ENTRY_SPEED_MPS
            if inside:
                out.append(LaneObject(ob.s_min_m, ob.s_max_m, ob.speed_mps if ob.velocity_known else None,
                                      ob.track_id))
        return out

    def _gap(self, objects: tuple, target: int, origin: int, s_ego: float, v: float,
             duration_s: float | None = None, unknown_within_m: float | None = None,
             relax: float = 1.0) -> GapDecision:
        p = self.params
        lane_objects = [] if p.ignore_obstacles else self._objects_in_lane(objects, target, origin)
        g = p.gap_params()
        if relax != 1.0:
            g = GapParams(g.min_gap_m * relax, g.front_time_gap_s * relax, g.rear_time_gap_s * relax,
                          g.ego_decel_mps2 / relax, g.follower_decel_mps2 / relax, g.lane_change_time_s)
        # The ego's expected acceleration: IDM's free-road term towards the desired speed here.
        v_des = float(np.interp(s_ego, self.route.s, self._v_allow))
        a_ego = p.idm_accel_mps2 * (1.0 - (max(v, 0.0) / v_des) ** p.idm_delta) if v_des > 0.1 else 0.0
        return gap_acceptance(s_ego + p.ego_length_m / 2, p.ego_length_m, v, lane_objects, g, duration_s,
                              unknown_within_m, max(a_ego, 0.0))

    def _stalled_ahead(self, objects: tuple, path_s: np.ndarray, path_d: np.ndarray, s_ego: float
                       ) -> RouteObject | None:
        """The nearest object in the ego's path ahead that has stood still long enough to be
        overtaken (within ``overtake_trigger_gap_m``)."""
        p = self.params
        s_front = s_ego + p.ego_length_m / 2
        best = None
        for ob in objects:
            if not ob.velocity_known or ob.stationary_s < p.overtake_stationary_s:
                continue
            gap = ob.s_min_m - s_front
            if gap < 0.0 or gap > p.overtake_trigger_gap_m:
                continue
            if not self._in_path(ob, ob.s_min_m, path_s, path_d):
                continue
            if best is None or ob.s_min_m < best.s_min_m:
                best = ob
        return best

    def _in_path(self, ob: RouteObject, s_m: float, path_s: np.ndarray, path_d: np.ndarray) -> bool:
        """Whether ``ob``'s lateral extent overlaps the ego's corridor (``ego_width_m / 2 +
        corridor_margin_m`` to each side) around the path at arc length ``s_m``."""
        p = self.params
        half = p.ego_width_m / 2 + p.corridor_margin_m
        dc = float(np.interp(s_m, path_s, path_d))
        return not (ob.d_max_m < dc - half or ob.d_min_m > dc + half)

    @staticmethod
    def _track_near_face(tr: dict) -> float:
        """The corridor track's last near face (arc length [m]), or its pinned anchor if nearer."""
        s_last = tr["hist"][-1][1]
        return s_last if tr.get("anchor") is None else min(s_last, tr["anchor"])

    def _room_ahead(self, objects: tuple, stalled: RouteObject, s_ego: float, path_s: np.ndarray,
                    path_d: np.ndarray) -> float:
        """Bumper gap [m] to the nearest thing in the ego's path ahead that an overtake of
        ``stalled`` must steer round: ``stalled`` itself, any nearer object overlapping the path
        (moving or standing, its speed known or not), and the corridor's standing obstacle of the
        previous frame (its pinned near face).

        Why: on VAL stalled s1002 (stop 44) the ego stood 4.1 m behind a stalled car, rightly held
        back as too close to steer round. Then the car's near face merged into the cluster of a car
        passing beside it (a moving object), the nearest *standing* object left was a second
        cluster of the same car 7.3 m ahead, past the room check, and the overtake clipped the
        stalled car's corner at 4 m/s. What is in the way counts, whatever the tracker calls it.
        """
        p = self.params
        s_front = s_ego + p.ego_length_m / 2
        near = stalled.s_min_m
        for ob in objects:
            if ob.s_min_m >= near or ob.s_max_m <= s_front:
                continue
            s_in = max(ob.s_min_m, s_front)
            if self._in_path(ob, s_in, path_s, path_d):
                near = s_in
        tr = self._track
        if tr is not None and tr.get("standing"):
            s_tr = self._track_near_face(tr)
            if s_tr > s_front - p.ego_length_m:
                near = min(near, max(s_tr, s_front))
        return near - s_front

    def _lane_plan(self, objects: tuple, s_ego: float, d_ego: float, v: float, stamp_s: float,
                   i_lo: int, n_win: int) -> tuple[np.ndarray, LaneDecision, list]:
        """The lateral offsets of the path on route indices ``i_lo .. i_lo + n_win - 1``, the
        lane decision and the lane's virtual stops."""
        p, lanes = self.params, self.lanes
        i_e = lanes.index(s_ego)
        lc = self._lc
        if lc is not None and s_ego >= lc.s0_m + lc.length_m:
            self._strip = lc.target
            self._lc = lc = None
            self._lc_block_until = stamp_s + p.lane_change_cooldown_s
        if lc is not None:
            return self._continue_lane_change(lc, objects, s_ego, d_ego, v, stamp_s, i_e, i_lo, n_win)
        k = lanes.strip_at(i_e, d_ego, prefer=self._strip if self._strip >= 0 else None)
        self._strip = k
        if k < 0:
            return np.zeros(n_win), LaneDecision(state="route", reason="on no lane of the map"), []
        lane_id = lanes.strips[k].lane.lane_id
        path = lanes.lane_path(k, i_lo, n_win)
        lane_end = path.end_index
        end_s = float(lanes.route_s[lane_end]) if lane_end is not None else math.inf
        stops = [self._lane_end_stop(end_s, s_ego)] if lane_end is not None else []
        stalled, room = None, math.inf
        if lane_end is not None:
            targets, reason = self._mandatory_targets(k, i_e, lane_end), "lane ends"
        else:
            targets, reason = [], ""
            if not p.ignore_obstacles:
                stalled = self._stalled_ahead(objects, lanes.route_s[i_lo:i_lo + n_win], path.d, s_ego)
                if stalled is not None:
                    reason = f"overtake stalled object {stalled.track_id}"
                    room = self._room_ahead(objects, stalled, s_ego, lanes.route_s[i_lo:i_lo + n_win], path.d)
                    if lanes.next_entry_after(s_ego) - stalled.s_max_m <= p.overtake_junction_distance_m:
                        reason += " (near a junction: not overtaken)"
                    elif room < OVERTAKE_MIN_ROOM * p.lane_change_min_length_m:
                        reason += " (too close to steer round it)"
                    else:
                        targets = self._overtake_targets(k, i_e, stalled)
                elif p.overtake_slow:
                    targets, reason = self._slow_lead_targets(objects, k, i_e, s_ego, stamp_s,
                                                              lanes.route_s[i_lo:i_lo + n_win], path.d)
        if not targets:
            if not reason:
                return path.d, LaneDecision(lane_id, state="lane", lane_end_s_m=end_s), stops
            why = "" if reason.endswith(")") else ": no neighbour lane"
            return path.d, LaneDecision(lane_id, "", "waiting", reason + why, None, end_s), stops
        if not p.lane_changes or stamp_s < self._lc_block_until:
            why = "lane changes off" if not p.lane_changes else "cooling down"
            return path.d, LaneDecision(lane_id, lanes.strips[targets[0]].lane.lane_id, "waiting",
                                        f"{reason}: {why}", None, end_s), stops
        first_gap = None
        for m in targets:
            gap = self._gap(objects, m, k, s_ego, v)
            first_gap = first_gap or gap
            if not gap.accepted:
                continue
            length = min(max(v * p.lane_change_time_s, p.lane_change_min_length_m), p.lane_change_max_length_m)
            if lane_end is not None:
                length = min(length, max(end_s - s_ego - p.ego_length_m, p.lane_change_min_length_m))
            if stalled is not None:
                length = min(length, max(room - 1.0, p.lane_change_min_length_m))
            self._lc = LaneChange(k, m, s_ego, length, lanes.strips[k].d_at(i_e), lane_end is not None, reason,
                                  obstacle_s_m=stalled.s_min_m if stalled is not None else None)
            self._lc_stopped_s, self._lc_last_stamp = 0.0, None
            return self._continue_lane_change(self._lc, objects, s_ego, d_ego, v, stamp_s, i_e, i_lo, n_win)
        gap = first_gap
        cap = math.inf
        if lane_end is not None and gap.blocking_speed_mps is not None and (
                gap.blocking_ahead or gap.blocking_speed_mps > v - 1.0):
            # Let the blocking vehicle pass: merge behind it rather than race it to the lane end.
            cap = max(gap.blocking_speed_mps - p.merge_speed_margin_mps, p.merge_min_speed_mps)
        return path.d, LaneDecision(lane_id, lanes.strips[targets[0]].lane.lane_id, "waiting",
                                    f"{reason}: {gap.reason}", gap, end_s, cap), stops

    def _continue_lane_change(self, lc: LaneChange, objects: tuple, s_ego: float, d_ego: float, v: float,
                              stamp_s: float, i_e: int, i_lo: int, n_win: int
                              ) -> tuple[np.ndarray, LaneDecision, list]:
        """A change under way: re-check the gap and abort back to the lane while early (at once
        when the ego has not left its lane yet); stop before the end of the lane it heads for."""
        p, lanes = self.params, self.lanes
        gap = None
        if v < STUCK_SPEED_MPS:
            self._lc_stopped_s += 0.0 if self._lc_last_stamp is None else max(stamp_s - self._lc_last_stamp, 0.0)
        else:
            self._lc_stopped_s = 0.0
        self._lc_last_stamp = stamp_s
        if self._lc_stopped_s >= p.lane_change_stuck_s:
            # Held up mid-change (something in the way): give it up, take the lane the ego is in.
            self._lc, self._lc_stopped_s, self._lc_last_stamp = None, 0.0, None
            self._strip = -1
            self._lc_block_until = stamp_s + p.lane_change_cooldown_s
            return self._lane_plan(objects, s_ego, d_ego, v, stamp_s, i_lo, n_win)
        if not lc.abort:
            progress = (s_ego - lc.s0_m) / max(lc.length_m, 1e-6)
            remaining = p.lane_change_time_s * min(max(1.0 - progress, 0.0), 1.0)
            # Hysteresis: a change under way is aborted only when its gap is really unsafe (the
            # start criterion relaxed), not when an estimate wobbles below the start criterion.
            gap = self._gap(objects, lc.target, lc.origin, s_ego, v, remaining, UNKNOWN_ABORT_WITHIN_M,
                            p.abort_gap_relax)
            # Close to the stalled object it passes, going back means driving into it: no abort.
            committed = lc.obstacle_s_m is not None and \
                lc.obstacle_s_m - (s_ego + p.ego_length_m / 2) < OVERTAKE_NO_RETURN_M
            if not gap.accepted and progress < p.abort_progress and not gap.blocking_ahead and not committed:
                self._lc_block_until = stamp_s + p.lane_change_cooldown_s
                d_origin = lanes.strips[lc.origin].d_at(i_e)
                if abs(d_ego - d_origin) < ABORT_IN_LANE_M:
                    # Still in its lane: drop the change.
                    self._lc, self._strip = None, lc.origin
                    path = lanes.lane_path(lc.origin, i_lo, n_win)
                    end = path.end_index
                    stops = [self._lane_end_stop(float(lanes.route_s[end]), s_ego)] if end is not None else []
                    return path.d, LaneDecision(lanes.strips[lc.origin].lane.lane_id,
                                                lanes.strips[lc.target].lane.lane_id, "waiting",
                                                f"{lc.reason}: change dropped: {gap.reason}", gap), stops
                d_now = float(self._lane_change_offsets(lc, np.array([i_e]), 1)[0])
                length = min(max(v * p.lane_change_time_s * 0.7, p.lane_change_min_length_m),
                             p.lane_change_max_length_m)
                self._lc = lc = LaneChange(lc.target, lc.origin, s_ego, length, d_now, lc.mandatory,
                                           f"abort: {gap.reason}", abort=True)
        d = self._lane_change_offsets(lc, np.arange(i_lo, i_lo + n_win), n_win, i_lo)
        end = lanes.lane_path(lc.target, i_e, lanes.n - i_e).end_index
        stops = [self._lane_end_stop(float(lanes.route_s[end]), s_ego)] if end is not None else []
        return d, LaneDecision(lanes.strips[lc.origin].lane.lane_id, lanes.strips[lc.target].lane.lane_id,
                               "aborting" if lc.abort else "changing", lc.reason, gap), stops

    def _lane_change_offsets(self, lc: LaneChange, idx: np.ndarray, n: int, i_lo: int | None = None
                             ) -> np.ndarray:
        lanes = self.lanes
        i0 = int(idx[0]) if i_lo is None else i_lo
        target = lanes.lane_path(lc.target, i0, n).d
        d0_target = lanes.lane_path(lc.target, lanes.index(lc.s0_m), 1).d[0]
        u = (lanes.route_s[idx] - lc.s0_m) / max(lc.length_m, 1e-6)
        return target + (lc.d_start_m - d0_target) * (1.0 - smootherstep(u))

    def _lane_end_stop(self, end_s: float, s_ego: float) -> VirtualStop:
        """The stop before a lane end: ``lane_end_stop_margin_m`` before it, or right away when
        the ego is already past that (never beyond the end itself)."""
        p = self.params
        s_front = s_ego + p.ego_length_m / 2
        s_stop = max(end_s - p.lane_end_stop_margin_m, min(s_front, end_s - LANE_END_HARD_MARGIN_M))
        # Braked for late, at comfort: the ego uses the lane to reach the traffic's speed.
        return VirtualStop(s_stop, "lane ends", p.comfort_decel_mps2)

    def _overtake_possible(self, s_ego: float, d_ego: float, s_obstacle: float) -> bool:
        """Whether an obstacle standing at ``s_obstacle`` in the ego's lane could be overtaken:
        the lane has a neighbour the map allows changing into, and no junction entry lies within
        ``overtake_junction_distance_m`` beyond the obstacle."""
        lanes, p = self.lanes, self.params
        if lanes is None or not p.lane_changes or p.ignore_obstacles:
            return False
        i_e = lanes.index(s_ego)
        k = self._lc.origin if self._lc is not None else lanes.strip_at(i_e, d_ego)
        if k < 0 or (lanes.neighbour(k, "left", i_e) < 0 and lanes.neighbour(k, "right", i_e) < 0):
            return False
        return lanes.next_entry_after(s_ego) - s_obstacle > p.overtake_junction_distance_m

    def _mandatory_targets(self, k: int, i_e: int, lane_end: int) -> list:
        """The neighbours of strip ``k`` to change into before its lane ends: those whose lane
        path continues farther; route lanes first, then the farther reaching, then left."""
        lanes = self.lanes
        cands = []
        for side in ("left", "right"):
            m = lanes.neighbour(k, side, i_e)
            if m < 0:
                continue
            end = lanes.path_ends(m, i_e, lanes.n - i_e)
            reach = lanes.n if end is None else end
            if reach <= lane_end:
                continue
            cands.append(((not lanes.strips[m].is_route, -reach, side != "left"), m))
        return [m for _, m in sorted(cands)]

    def _slow_lead_targets(self, objects: tuple, k: int, i_e: int, s_ego: float, stamp_s: float,
                           path_s: np.ndarray, path_d: np.ndarray) -> tuple[list, str]:
        """Neighbour lanes to pass a slow lead in: the nearest object ahead in the ego's path
        (within ``slow_lead_gap_m``) has driven slower than the desired speed by
        ``slow_lead_margin_mps`` for ``slow_lead_time_s``, no junction entry lies within
        ``slow_lead_junction_distance_m``, and the neighbour (left first) goes on past it with
        nothing slower ahead in it within ``slow_lead_gap_m`` beyond the lead."""
        p, lanes = self.params, self.lanes
        s_front = s_ego + p.ego_length_m / 2
        lead = None
        for ob in objects:
            if ob.s_min_m <= s_front or ob.s_min_m - s_front > p.slow_lead_gap_m:
                continue
            if not self._in_path(ob, ob.s_min_m, path_s, path_d):
                continue
            if lead is None or ob.s_min_m < lead.s_min_m:
                lead = ob
        v_des = float(np.interp(s_ego, self.route.s, self._v_allow))
        slow = lead is not None and lead.velocity_known and lead.speed_mps < v_des - p.slow_lead_margin_mps
        if not slow or self._slow_lead_id != lead.track_id:
            self._slow_lead_since = stamp_s if slow else None
            self._slow_lead_id = lead.track_id if slow else None
            return [], ""
        if stamp_s - self._slow_lead_since < p.slow_lead_time_s:
            return [], ""
        if lanes.next_entry_after(s_ego) - lead.s_max_m <= p.slow_lead_junction_distance_m:
            return [], ""
        reason = f"pass slow object {lead.track_id} ({lead.speed_mps:.1f} m/s)"
        out = []
        for m in self._overtake_targets(k, i_e, lead):
            ahead = [o for o in self._objects_in_lane(objects, m, k)
                     if s_front < o.s_rear_m <= lead.s_max_m + p.slow_lead_gap_m]
            if all(o.speed_mps is not None and o.speed_mps >= lead.speed_mps + p.slow_lead_margin_mps
                   for o in ahead):
                out.append(m)
        return out, reason

    def _overtake_targets(self, k: int, i_e: int, stalled: RouteObject) -> list:
        """The neighbours of strip ``k`` that continue ``overtake_clearance_m`` past the stalled
        object (left first)."""
        lanes, p = self.lanes, self.params
        need = lanes.index(stalled.s_max_m + p.overtake_clearance_m)
        out = []
        for side in ("left", "right"):
            m = lanes.neighbour(k, side, i_e)
            if m < 0:
                continue
            end = lanes.path_ends(m, i_e, lanes.n - i_e)
            if end is None or end >= need:
                out.append(m)
        return out

    def _left_behind_by_change(self, s_ego: float, v_ego: float, s_obs: float, v_obs: float,
                               path_s: np.ndarray, path_d: np.ndarray) -> bool:
        """During a lane change, whether the corridor's obstacle stays in the lane the ego leaves:
        by the time the ego would reach it (at the closing speed), the path has left its lateral
        position (a slow vehicle being passed, not a wall the ego must stop for)."""
        lc, p = self._lc, self.params
        if lc is None or lc.abort or self._track is None or "xy" not in self._track:
            return False
        s_front = s_ego + p.ego_length_m / 2
        closing = max(v_ego - max(v_obs, 0.0), 0.1)
        s_meet = s_obs + max(v_obs, 0.0) * (s_obs - s_front) / closing
        _, d_obs = self._project_points(np.asarray(self._track["xy"], float).reshape(1, 2))
        half = p.ego_width_m / 2 + p.corridor_margin_m
        return abs(float(d_obs[0]) - float(np.interp(s_meet, path_s, path_d))) > half + OBSTACLE_HALF_WIDTH_M

    def _target_lane_lead(self, objects: tuple, s_ego: float) -> tuple:
        """The nearest object ahead in the target lane of a change under way (IDM only), as
        (arc length of its rear, speed, standstill gap)."""
        lc, p = self._lc, self.params
        s_front = s_ego + p.ego_length_m / 2
        ahead = [o for o in self._objects_in_lane(objects, lc.target, lc.origin)
                 if o.s_rear_m > s_front and o.speed_mps is not None]
        if not ahead:
            return ()
        o = min(ahead, key=lambda x: x.s_rear_m)
        return ((o.s_rear_m, max(o.speed_mps, 0.0), p.idm_min_gap_m),)

    def _cut_ins(self, objects: tuple, s_ego: float, path_s: np.ndarray, path_d: np.ndarray) -> tuple:
        """Vehicles ahead beside the ego's corridor moving sideways into it (at
        ``cut_in_lateral_speed_mps`` or more, reaching it within ``cut_in_horizon_s``): the IDM
        follows them before they are in (a cut-in braked for early and gently); as (arc length of
        the rear, speed along the route, standstill gap)."""
        p = self.params
        s_front = s_ego + p.ego_length_m / 2
        half = p.ego_width_m / 2 + p.corridor_margin_m
        out = []
        for ob in objects:
            if not ob.velocity_known or ob.s_min_m <= s_front or ob.s_min_m > s_front + p.corridor_max_length_m:
                continue
            dc = float(np.interp(ob.s_min_m, path_s, path_d))
            if ob.d_min_m > dc + half:
                gap, towards = ob.d_min_m - (dc + half), -ob.lateral_speed_mps
            elif ob.d_max_m < dc - half:
                gap, towards = (dc - half) - ob.d_max_m, ob.lateral_speed_mps
            else:
                continue                                  # already in the corridor: the lead
            if towards >= p.cut_in_lateral_speed_mps and gap <= towards * p.cut_in_horizon_s:
                out.append((ob.s_min_m, max(ob.speed_mps, 0.0), p.idm_min_gap_m))
        return tuple(out)

    def _crosswalk_stops(self, objects: tuple, s_ego: float, v_ego: float, path_s: np.ndarray,
                         path_d: np.ndarray) -> list:
        """Stops before the crosswalks that something is on, or entering, in the ego's way.

        An object inside a crosswalk the route crosses (grown by ``crosswalk_margin_m``) makes the
        ego stop before it when it overlaps the ego's corridor, is within
        ``crosswalk_path_margin_m`` of it without moving away, has no known velocity yet, or
        moves towards the corridor (at ``crosswalk_approach_speed_mps`` or more, from within
        ``crosswalk_watch_m``) fast enough to reach it before the ego would have cleared the
        crosswalk (accelerating at ``idm_accel_mps2``) plus ``crosswalk_time_margin_s``."""
        p = self.params
        stops = []
        s_front = s_ego + p.ego_length_m / 2
        half = p.ego_width_m / 2 + p.corridor_margin_m
        for cw in self.lanes.crosswalks:
            s_stop = cw.s_in_m - p.crosswalk_stop_margin_m
            if s_front >= cw.s_out_m or s_stop < s_front - 0.5 or s_stop > s_front + OBJECT_AHEAD_M:
                continue
            clear = cw.s_out_m - s_front + p.ego_length_m
            a = p.idm_accel_mps2
            t_clear = (-v_ego + math.sqrt(v_ego * v_ego + 2.0 * a * clear)) / a + p.crosswalk_time_margin_s
            for ob in objects:
                radius = 0.5 * max(ob.s_max_m - ob.s_min_m, ob.d_max_m - ob.d_min_m)
                if not points_in_convex(ob.xy[None], cw.quad, p.crosswalk_margin_m + radius)[0]:
                    continue
                dc = float(np.interp(0.5 * (ob.s_min_m + ob.s_max_m), path_s, path_d))
                gap = max(0.0, ob.d_min_m - (dc + half), (dc - half) - ob.d_max_m)
                mid = 0.5 * (ob.d_min_m + ob.d_max_m)
                towards = -math.copysign(1.0, mid - dc) * ob.lateral_speed_mps
                if gap <= 0.0:
                    why = "in the path"
                elif not ob.velocity_known:
                    why = "entering, speed unknown" if gap <= p.crosswalk_watch_m else ""
                elif towards <= -p.crosswalk_approach_speed_mps:
                    why = ""                                   # leaving the path
                elif gap <= p.crosswalk_path_margin_m:
                    why = "next to the path"
                elif towards >= p.crosswalk_approach_speed_mps and gap <= p.crosswalk_watch_m and \
                        gap / towards < t_clear:
                    why = f"reaches the path in {gap / towards:.1f} s"
                else:
                    why = ""
                if why:
                    stops.append(VirtualStop(s_stop, f"crosswalk {cw.crosswalk_id}: object {ob.track_id} {why}"))
                    break
        return stops

    # ---------------------------------------------------------------- tracking
    def in_blind_zone(self, gap_m: float, top_height_m: float) -> bool:
        """True if an obstacle ``gap_m`` ahead of the front bumper whose top is ``top_height_m``
        above the ground may hide under the lidar's roof shadow: rays steeper than the line from
        the sensor over the front edge of the roof hit the ego itself, and the beams are
        ``lidar_beam_spacing_deg`` apart, so the obstacle is surely seen only when at least that
        much of elevation lies between the ray over its top and the roof's shadow line."""
        p = self.params
        sensor_x, sensor_z = self._sensor_xz
        to_roof_edge = p.ego_length_m / 2 - sensor_x   # sensor -> front edge of the roof, m
        drop = sensor_z - p.ego_height_m
        if drop <= 0.0 or to_roof_edge <= 0.0 or top_height_m >= sensor_z:
            return False
        visible_dip = math.atan2(drop, to_roof_edge) - math.radians(p.lidar_beam_spacing_deg)
        if visible_dip <= 0.0:
            return True
        shadow_range = (sensor_z - top_height_m) / math.tan(visible_dip)   # from the sensor, m
        return gap_m + to_roof_edge < shadow_range

    def _update_track(self, stamp_s: float, s_meas: float | None, top_m: float, s_ego: float
                      ) -> tuple[float, float, bool] | None:
        """Track the nearest obstacle's along-route position over frames.

        The speed is the least-squares slope of the last ``track_window`` measured positions
        (the k-th nearest point wanders over the object's surface from frame to frame, so a
        two-frame difference is too noisy); a measurement farther than ``track_gate_m`` from the
        prediction starts a new track. An unseen obstacle is kept for ``track_coast_s`` or,
        without a time limit, while it hides in the lidar's near blind zone -- a vehicle tracked
        for ``COAST_MOVING_MIN_FRAMES`` frames moving on at its speed, anything else as stationary
        at its last position (the conservative assumption); it is dropped once the ego has passed
        it.

        Returns:
            (s_abs, speed, measured) or None when there is no obstacle to plan against.
        """
        p = self.params
        tr = self._track
        if s_meas is None:
            if tr is None:
                return None
            t_last = tr["hist"][-1][0]
            # A vehicle tracked long enough coasts on at its speed (the corridor moved off it in a
            # lane change, a beam gap); anything else, as stationary (the conservative guess); a
            # standing one where it stood (its anchor).
            moving = len(tr["hist"]) >= COAST_MOVING_MIN_FRAMES and tr["v"] > COAST_MOVING_MIN_SPEED_MPS \
                and tr.get("anchor") is None
            v_coast = tr["v"] if moving else 0.0
            s_last = self._track_near_face(tr) + v_coast * max(stamp_s - t_last, 0.0)
            gap = s_last - (s_ego + p.ego_length_m / 2)
            blind = self.in_blind_zone(gap, tr["top"])
            if gap < -p.ego_length_m or (stamp_s - t_last > p.track_coast_s and not blind):
                self._track = None
                return None
            return s_last, v_coast, False
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
        # A low object (one that would hide in the near blind zone with the ego at its standstill
        # gap) standing for overtake_stationary_s is pinned at the nearest face seen (anchor),
        # speed 0, until it moves off by more than track_gate_m: close ahead, the roof's shadow
        # eats its lower part as the ego creeps up, so its nearest visible point recedes and
        # would read as an object driving away, which the ego would follow into it.
        anchor, still_s = tr.get("anchor"), tr.get("still_s", 0.0)
        low = self.in_blind_zone(p.idm_min_gap_m, max(tr["top"], top_m))
        if anchor is None:
            if low and abs(v) < p.overtake_speed_mps and len(hist) >= 3:
                still_s += stamp_s - tr["hist"][-1][0]
                if still_s >= p.overtake_stationary_s:
                    anchor = float(s_h.min())
            else:
                still_s = 0.0
        elif s_meas - anchor > p.track_gate_m:
            anchor, still_s = None, 0.0                  # it really moved off
        else:
            anchor = min(anchor, s_meas)
        self._track = {"hist": hist, "v": v, "top": max(tr["top"], top_m), "anchor": anchor,
                       "still_s": still_s, "standing": tr.get("standing", False)}
        if anchor is not None:
            return anchor, 0.0, True
        return s_meas, v, True

    # ---------------------------------------------------------------- speed profile
    def _speed_profile(self, s0: float, v0: float, lead: tuple | None, minimal_risk: bool,
                       allow_emergency: bool = True, stops: tuple = (), v_cap: float = math.inf,
                       entering: tuple = ()) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, float]:
        """Integrate IDM. ``lead`` = (arc length of its near face, speed, standstill gap) or None;
        ``entering`` = such tuples of vehicles about to cut in (IDM only, never an emergency);
        ``stops`` = :class:`VirtualStop` s where the front bumper must stop; ``v_cap`` caps the desired
        speed. Returns output times, arc lengths, speeds, accelerations and the required
        deceleration at t = 0."""
        p, r = self.params, self.route
        half_len = p.ego_length_m / 2
        # Obstacles as (arc length of the near face at t=0, speed along the route, s0 gap).
        obstacles = [(r.s[-1] - p.route_end_margin_m + p.idm_min_gap_m, 0.0, p.idm_min_gap_m, True)]
        if lead is not None:
            obstacles.append((*lead, True))
        obstacles += [(*e, False) for e in entering]
        stop_s = [(float(st.s_m), 2.0 * (st.decel_mps2 or p.stop_decel_mps2)) for st in stops]
        dt = p.integration_dt_s
        n_steps = int(round(p.horizon_s / dt))
        out_every = max(int(round(p.output_step_s / dt)), 1)
        ts, ss, vs, accs = [], [], [], []
        s, v, a_prev = s0, max(v0, 0.0), self._prev_plan_accel
        sqrt_ab = math.sqrt(p.idm_accel_mps2 * p.idm_decel_mps2)
        a_req0 = 0.0
        v_allow = self._v_allow_list
        res = float(r.s[1] - r.s[0])
        last = len(v_allow) - 1
        for k in range(n_steps + 1):
            t = k * dt
            x = min(max(s / res, 0.0), float(last))
            i = min(int(x), last - 1) if last > 0 else 0
            v_lim = v_allow[i] if last == 0 else v_allow[i] + (x - i) * (v_allow[i + 1] - v_allow[i])
            v_lim = min(v_lim, v_cap)
            stop_brake = 0.0
            for st, two_b in stop_s:
                # Stopped STOP_HOLD_M short of it the desired speed is 0: no creeping up to (and past)
                # a stop point the plan keeps re-approaching.
                room = st - (s + half_len)
                v_lim = min(v_lim, math.sqrt(two_b * (room - STOP_HOLD_M)) if room > STOP_HOLD_M else 0.0)
                if v > 0.0 and v * v > two_b * max(room, 0.0):
                    # Inside its braking curve (a stop that appeared late, e.g. a light turning):
                    # brake exactly as hard as it needs, which the IDM's b alone may not be.
                    stop_brake = max(stop_brake, v * v / (2.0 * max(room, 0.05)))
            if v_lim > 0.05:
                # Above the limit (a lower cap, a curve ahead) slow down at IDM's comfortable b:
                # the curve limit is anticipated with b, so b is enough.
                a = max(p.idm_accel_mps2 * (1.0 - (v / v_lim) ** p.idm_delta), -p.idm_decel_mps2)
            else:
                a = -p.idm_decel_mps2 if v > 0 else 0.0
            a_req = 0.0
            for s_obs, v_obs, gap0, hard in obstacles:
                s_obs_t = s_obs + v_obs * t
                gap = s_obs_t - (s + half_len)
                s_star = gap0 + max(0.0, v * p.idm_time_headway_s + v * (v - v_obs) / (2 * sqrt_ab))
                a -= p.idm_accel_mps2 * (s_star / max(gap, 0.1)) ** 2
                if not hard:
                    continue
                # A larger standstill gap (behind a stalled vehicle) is kept in an emergency too.
                margin = p.stop_margin_m + max(gap0 - p.idm_min_gap_m, 0.0)
                a_req = max(a_req, required_decel(v, v_obs, gap, margin, p.closing_deadband_mps))
            for st, _ in stop_s:
                a_req = max(a_req, required_decel(v, 0.0, st - (s + half_len) + p.stop_margin_m,
                                                  p.stop_margin_m, p.closing_deadband_mps))
            a = min(a, -stop_brake) if stop_brake > 0.0 else a
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
    def update(self, points: np.ndarray | None, stamp_s: float, pose: EgoPose, monitor_state: int | None = None,
               virtual_stops: tuple = ()) -> FallbackResult:
        """Plan from one lidar frame.

        Args:
            points: (N, >=3) lidar-frame xyz[i] (m), as published (may contain NaN); None = missing.
            stamp_s: the frame's stamp, s; the output trajectory carries it.
            pose: ego pose in map at ``stamp_s`` (ego-motion compensation uses it).
            monitor_state: MonitorStatus state, or None if no monitor has spoken.
            virtual_stops: :class:`VirtualStop` s (or bare arc lengths [m]) the caller adds, e.g.
                a red light's stop line (``tps_planner.traffic_rules``; arc lengths along the
                route, :meth:`project_point`); the front bumper stops at each one ahead of it.

        Returns:
            The plan with diagnostics. ``trajectory`` is None only without a usable route (or
            without a lane map when ``require_lane_map``).
        """
        p = self.params
        msgs: list[str] = []
        level = LEVEL_OK
        minimal_risk = monitor_state == STATE_MINIMAL_RISK
        if self.route is None:
            return FallbackResult(None, LEVEL_ERROR, ("no route received",), minimal_risk=minimal_risk)
        if p.require_lane_map and self.lanes is None:
            why = self.lane_map_error or "no lane map received"
            return FallbackResult(None, LEVEL_ERROR, (f"{why}: waiting for it",), minimal_risk=minimal_risk)
        if not all(math.isfinite(v) for v in (pose.x, pose.y, pose.yaw, pose.speed_mps)):
            return FallbackResult(None, LEVEL_ERROR, ("ego pose contains NaN/inf",), minimal_risk=minimal_risk)

        s_ego, d_ego = self._project_ego_signed(pose)
        offset = abs(d_ego)
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
        objects = self.route_objects(pts_map, stamp_s, pose, s_ego) if (
            cloud_ok and self.lanes is not None and not p.ignore_obstacles) else ()

        # The path: the lane (and lane changes) with a lane map, else the route itself.
        r = self.route
        res = p.route_resolution_m
        i_lo = max(int(math.floor((s_ego - PATH_BACK_M) / res)), 0)
        reach = max(length, max(pose.speed_mps, float(np.max(self._v_allow))) * p.horizon_s) + PATH_MARGIN_M
        i_hi = min(int(math.ceil((s_ego + reach) / res)), len(r.s) - 1)
        n_win = max(i_hi - i_lo + 1, 2)
        path_s = r.s[i_lo:i_lo + n_win]
        lane = LaneDecision()
        stops = [st if isinstance(st, VirtualStop) else VirtualStop(float(st), "virtual stop")
                 for st in virtual_stops]
        if self.lanes is not None:
            path_d, lane, lane_stops = self._lane_plan(objects, s_ego, d_ego, pose.speed_mps, stamp_s,
                                                       i_lo, n_win)
            stops += lane_stops
            if objects:
                stops += self._crosswalk_stops(objects, s_ego, pose.speed_mps, path_s, path_d)
            if lane.state == "aborting":
                level = max(level, LEVEL_WARN)
            if lane.state in ("waiting", "aborting"):
                msgs.append(f"lane: {lane.state} ({lane.reason})")
        else:
            path_d = np.zeros(len(path_s))
        s_in, xy_in, z_in, left, right = self.corridor_occupancy(pts_map, s_ego, length, path_s, path_d)

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
            if tracked is not None and tracked[2]:
                self._track["xy"] = obs_xy
            elif tracked is not None and "xy" in self._track and np.any(path_d):
                # Coasted while the path moves sideways (a lane change): only while still in it.
                _, d_obs = self._project_points(np.asarray(self._track["xy"], float).reshape(1, 2))
                half = p.ego_width_m / 2 + p.corridor_margin_m
                if abs(float(d_obs[0]) - float(np.interp(tracked[0], path_s, path_d))) > half:
                    self._track, tracked = None, None
            if tracked is not None:
                s_obs, v_obs, measured = tracked
                if not measured:
                    obs_xy, _ = self.path_pose_at(np.array([s_obs]), path_s, path_d)
                    obs_xy = obs_xy[0]
                    msgs.append("obstacle not seen this frame: kept from earlier frames")
                gap = s_obs - (s_ego + p.ego_length_m / 2)
                obstacle = Obstacle(xy=obs_xy, s_abs_m=s_obs, gap_m=gap, speed_mps=v_obs,
                                    closing_speed_mps=pose.speed_mps - v_obs, n_points=int(len(s_in)),
                                    measured=measured)
                # Behind a standing obstacle it could overtake, the ego stops farther back: room to
                # steer round it.
                # (Coasted, e.g. hidden in the near blind zone: as it was when last measured.)
                standing = abs(v_obs) < p.overtake_speed_mps and len(self._track["hist"]) >= 3 if measured \
                    else self._track.get("standing", False)
                self._track["standing"] = standing
                gap0 = p.stalled_standstill_gap_m if (
                    standing and self._overtake_possible(s_ego, d_ego, s_obs)) else p.idm_min_gap_m
                lead = (s_obs, max(v_obs, 0.0), gap0)
                if self._left_behind_by_change(s_ego, pose.speed_mps, s_obs, v_obs, path_s, path_d):
                    lead = None
        if self._prev_stamp is not None and abs(stamp_s - self._prev_stamp) <= 1e-9:
            self._prev_plan_accel = self._plan_accel_base   # the same frame again: same start
        else:
            if self._prev_stamp is not None and stamp_s - self._prev_stamp > 1.0:
                self._prev_plan_accel = 0.0   # long gap: the previous plan no longer applies
            self._plan_accel_base = self._prev_plan_accel
        self._prev_stamp = stamp_s

        # A new obstacle's speed is unknown for one frame (one right at the bumper came in from the
        # side: a merging or overtaking vehicle; a far one just came into range): that frame brakes
        # at comfort, not as for a wall -- a wall's emergency stop from a cruising speed would hold
        # the plan back for seconds (jerk limit), for a vehicle that drives on.
        allow_emergency = not (obstacle is not None and obstacle.measured and self._track is not None
                               and len(self._track["hist"]) <= p.new_track_comfort_frames)
        s_front = s_ego + p.ego_length_m / 2
        active_stops = tuple(st for st in stops if st.s_m >= s_front - 0.5)
        entering = self._cut_ins(objects, s_ego, path_s, path_d) if objects else ()
        if self._lc is not None and not self._lc.abort and objects:
            entering += self._target_lane_lead(objects, s_ego)
        t, s, v, a, a_req = self._speed_profile(s_ego, pose.speed_mps, lead, minimal_risk, allow_emergency,
                                                active_stops, lane.speed_cap_mps, entering)
        if a_req > p.comfort_decel_mps2:
            level = max(level, LEVEL_WARN)
            msgs.append(f"required deceleration {a_req:.1f} m/s^2 exceeds comfort "
                        f"{p.comfort_decel_mps2:.1f} m/s^2: emergency braking")
        xy, yaw = self.path_pose_at(s, path_s, path_d)
        traj = Trajectory(stamp_s=stamp_s, t_s=t, xy=xy, yaw=yaw, speed_mps=v, accel_mps2=a,
                          source=SOURCE_MINIMAL_RISK if minimal_risk else SOURCE_FALLBACK,
                          confidence=1.0 if level == LEVEL_OK else 0.5, frame_id="map")
        return FallbackResult(
            trajectory=traj, level=level, messages=tuple(msgs), obstacle=obstacle, required_decel_mps2=a_req,
            n_points=n_points, n_finite=len(finite), n_obstacle_points=len(pts_map), nan_fraction=nan_fraction,
            corridor_left=left, corridor_right=right, s_ego_m=s_ego, minimal_risk=minimal_risk,
            objects=objects, stops=active_stops, lane=lane,
        )
