"""Closed-loop driving metrics (pure numpy; no rclpy, no simulator).

Every function states which definition of ``docs/METRICS.md`` (in this repository; cited as
"METRICS.md, <section>") it implements. Inputs are an :class:`EpisodeTrace` (one closed-loop
episode, one row per 0.1 s simulation step, map frame, REP-103, SI units) built by
:func:`tps_eval.trace.trace_from_log` from the bridge's episode log, or hand-made in tests.
Geometry (corners, overlap, bearing) is ``tps_common.geometry``; :func:`classify_collision` is
the project's one at-fault taxonomy (METRICS.md, "Collisions and fault"), also used by the
expert check and the yield probe.

How an episode becomes a NAVSIM-style score (METRICS.md, "Closed-loop episodes" and
"Closed-loop score (PDMS)"): NAVSIM scores 4-s scenarios; one closed-loop episode is longer, so

- **NC** and **DAC** are scored over the whole episode (one at-fault collision or one corner
  off the drivable area spoils the episode, as it would the scenario it happened in);
- **TTC** and **C** are scored on consecutive 4-s windows of the episode (each window like one
  NAVSIM scenario) and averaged over the windows, so one brief event does not zero a minute of
  driving but still costs its share;
- **EP** is the episode's progress along the route divided by the progress of the reference
  (the simulator's expert, same scenario and seed), 1 if the reference made under 5 m.

``PDMS = NC x DAC x (5 TTC + 5 EP + 2 C) / 12`` per episode, averaged over episodes.

Traffic lights (METRICS.md, "Traffic lights"): **TLC** is NAVSIM v2's traffic-light compliance, 0
when the ego's front bumper crosses a stop line into the junction while that stop line's light
is red, else 1; every such crossing is a **red-light violation**. ``PDMS x TLC`` is reported
beside v1's PDMS.

Diagnostics beside the scores (not part of any score): ``off_road_slow_steps`` counts the off-road
steps driven below ``SLOW_OFF_ROAD_MPS``; at cruise speed an off-road step is usually a few
decimetres of offset in a lane at the road edge, at low speed an excursion (stop-and-go, creeping).
``off_road_max_offset_m`` is the largest distance from the route centreline at an off-road step
(0 without one): a few decimetres is a lane at the road edge, a lane width or more an excursion.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
from tps_common.geometry import bearing, box_corners, polygons_overlap, segment_intersects_polygons

# --- constants of the METRICS.md definitions --------------------------------------------------
STOPPED_SPEED_MPS = 0.005          # NAVSIM/nuPlan: ego (or agent) below this speed is stopped
TTC_TIMES_S = (0.0, 0.3, 0.6, 0.9)  # constant-velocity projection instants of the TTC check
TTC_IGNORE_SPEED_MPS = 0.005       # TTC ignored while the ego is below this speed
# Safety margins (min_ttc_s, min_clearance_m; the failure search's objective): the constant-
# velocity projection looks this far ahead in these steps, and objects this far away are ignored.
MARGIN_TTC_HORIZON_S = 5.0
MARGIN_TTC_STEP_S = 0.25
MARGIN_RANGE_M = 40.0
MARGIN_MIN_SPEED_MPS = 0.5          # min TTC only counts while the ego drives at least this fast
MARGIN_CLEARANCE_MIN_SPEED_MPS = 2.0   # min clearance likewise (creeping up to a queue is no risk)
ROUTE_LOOKBACK_M = 10.0            # route projection window behind / ahead of the last
ROUTE_LOOKAHEAD_M = 30.0           # projection (route_progress: a roundabout is not short-cut)
SLOW_OFF_ROAD_MPS = 3.0            # off-road steps below this speed are counted apart (diagnostic)
AHEAD_BEARING_RAD = np.deg2rad(30.0)   # nuPlan is_agent_ahead tolerance
BEHIND_BEARING_RAD = np.deg2rad(150.0)  # nuPlan is_agent_behind tolerance
EP_MIN_REFERENCE_PROGRESS_M = 5.0  # EP is 1 when the reference progressed less than this
NC_STATIC_SCORE = 0.5              # NC multiplier for an at-fault collision with a static object
SCORE_WINDOW_S = 4.0               # NAVSIM scenario horizon: TTC and C are scored per window
MIN_WINDOW_FRACTION = 0.25         # a trailing partial window shorter than this is dropped
PDMS_WEIGHTS = {"ttc": 5.0, "ep": 5.0, "comfort": 2.0}

# Comfort bounds (METRICS.md, C): all must hold.
COMFORT_LON_ACCEL_MPS2 = (-4.05, 2.40)
COMFORT_LAT_ACCEL_MPS2 = 4.89
COMFORT_JERK_MPS3 = 8.37
COMFORT_LON_JERK_MPS3 = 4.13
COMFORT_YAW_ACCEL_RPS2 = 1.93
COMFORT_YAW_RATE_RPS = 0.95
# nuPlan filters the ego states with a Savitzky-Golay filter (window 15, order 2) before
# differentiating; without it 0.1-s finite differences turn numerical noise into jerk.
SAVGOL_WINDOW = 15
SAVGOL_ORDER = 2

# Traffic lights: the ego crosses a stop line when its front bumper goes from before the line to
# on or past it, within the line's half width plus this, heading within this of the lane's
# direction of travel (METRICS.md, "Traffic lights").
STOP_LINE_LATERAL_TOL_M = 0.5
STOP_LINE_HEADING_TOL_RAD = np.deg2rad(60.0)
LIGHT_RED = 0                      # tps_common.traffic_lights.RED (= CarlaTrafficLightStatus.RED)

# Collision types (nuPlan's taxonomy, used by NAVSIM's NC).
COLLISION_STOPPED_EGO = "stopped_ego"
COLLISION_STOPPED_AGENT = "stopped_agent"
COLLISION_ACTIVE_REAR = "active_rear"
COLLISION_ACTIVE_FRONT = "active_front"
COLLISION_ACTIVE_LATERAL = "active_lateral"
COLLISION_STATIC = "static_object"


# --- data ----------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ObjectFrame:
    """Boxes of the objects (agents or statics) at one step, map frame.

    Attributes:
        ids: (N,) int64 object ids.
        xy: (N, 2) box centres [m].
        yaw: (N,) headings [rad].
        length: (N,) [m].
        width: (N,) [m].
        velocity: (N, 2) [m/s] (zeros for statics).
        class_id: (N,) int class ids (DetectedAgent.CLASS_* for agents, MAT_* for statics).
    """

    ids: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray
    length: np.ndarray
    width: np.ndarray
    velocity: np.ndarray
    class_id: np.ndarray

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, dtype=np.int64).reshape(-1)
        n = ids.shape[0]
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "xy", np.asarray(self.xy, dtype=np.float64).reshape(n, 2))
        object.__setattr__(self, "yaw", np.asarray(self.yaw, dtype=np.float64).reshape(n))
        object.__setattr__(self, "length", np.asarray(self.length, dtype=np.float64).reshape(n))
        object.__setattr__(self, "width", np.asarray(self.width, dtype=np.float64).reshape(n))
        vel = np.asarray(self.velocity, dtype=np.float64)
        object.__setattr__(self, "velocity", vel.reshape(n, 2) if vel.size else np.zeros((n, 2)))
        cls = np.asarray(self.class_id, dtype=np.int64)
        object.__setattr__(self, "class_id", cls.reshape(n) if cls.size else np.zeros(n, np.int64))

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def empty(cls) -> ObjectFrame:
        """No objects."""
        z = np.zeros(0)
        return cls(np.zeros(0, np.int64), np.zeros((0, 2)), z, z, z, np.zeros((0, 2)),
                   np.zeros(0, np.int64))

    def corners(self) -> np.ndarray:
        """(N, 4, 2) footprint corners [m]: front-left, front-right, rear-right, rear-left."""
        return box_corners(self.xy, self.yaw, self.length, self.width)


@dataclass(frozen=True, eq=False)
class LightTrace:
    """The traffic lights of an episode: their stop lines and states at every step.

    Attributes:
        ids: (L,) head ids.
        stop_xy: (L, 2) stop-line centres [m].
        lane_yaw: (L,) direction of travel through each stop line [rad].
        width: (L,) stop-line lengths across the lane [m].
        states: (T, L) uint8 state of each head per step (RED 0, YELLOW 1, GREEN 2, OFF 3,
            UNKNOWN 4).
        heads: (L, 4) head pose x, y, z [m], yaw [rad] (plotting).
    """

    ids: np.ndarray
    stop_xy: np.ndarray
    lane_yaw: np.ndarray
    width: np.ndarray
    states: np.ndarray
    heads: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))

    def __post_init__(self) -> None:
        ids = np.asarray(self.ids, np.int64).reshape(-1)
        n = ids.shape[0]
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "stop_xy", np.asarray(self.stop_xy, np.float64).reshape(n, 2))
        object.__setattr__(self, "lane_yaw", np.asarray(self.lane_yaw, np.float64).reshape(n))
        object.__setattr__(self, "width", np.asarray(self.width, np.float64).reshape(n))
        object.__setattr__(self, "states", np.asarray(self.states, np.uint8).reshape(-1, n))
        heads = np.asarray(self.heads, np.float64)
        object.__setattr__(self, "heads", heads.reshape(n, 4) if heads.size else np.zeros((0, 4)))

    def __len__(self) -> int:
        return int(self.ids.shape[0])


@dataclass(frozen=True, eq=False)
class EpisodeTrace:
    """One closed-loop episode, one row per simulation step (map frame, SI units).

    Attributes:
        dt_s: simulation step [s].
        ego_xy: (T, 2) base_link (footprint centre) positions [m].
        ego_yaw: (T,) headings [rad].
        ego_speed: (T,) signed longitudinal speed [m/s].
        ego_length_m, ego_width_m: ego footprint [m].
        agents: T frames of dynamic agents (not the ego).
        statics: static objects (clutter, debris), constant over the episode.
        route: (R, 2) route centreline polyline [m].
        collision_ids: per step, ids of the objects the simulator reported in contact with the
            ego (agents or statics). Empty tuples when none.
        drivable: (T, 4) bool, whether each ego corner lies on the drivable area (None: not
            known, DAC then reads 1).
        multi_lane: (T,) bool, the ego straddles lanes / is off the drivable area / is in an
            intersection (None: never).
        selected_source: (T,) int, PlannedTrajectory.SOURCE_* of the trajectory the controller
            followed at each step, -1 where unknown (expert, or nothing received).
        step_timeouts: number of synchronous-mode step timeouts the bridge counted.
        e2e_latency_ms: end-to-end latencies (sensor publish -> control received) [ms] of the
            steps after step 0.
        startup_latency_ms: the same for step 0, whose control waits for the graph's start-up
            (the bridge's step-0 hold) [ms]; None when step 0 got no control.
        node_latency_ms: per node name, processing times from /diagnostics [ms].
        route_length_m: length of the route the episode was asked to drive [m] (None: the
            polyline length).
        route_progress_m: (T,) the world's own arc length along the route [m] (None: the
            ego positions are projected onto ``route``).
        route_goal_m: the episode's goal as a distance along the route from where the ego
            started [m] (None: the end of the route). Route completion is progress / goal.
        meta: free-form identification (scenario, seed, configuration ...).
        lights: the traffic lights' stop lines and states (None: no lights; TLC reads 1).
    """

    dt_s: float
    ego_xy: np.ndarray
    ego_yaw: np.ndarray
    ego_speed: np.ndarray
    ego_length_m: float
    ego_width_m: float
    agents: Sequence[ObjectFrame]
    statics: ObjectFrame
    route: np.ndarray
    collision_ids: Sequence[tuple[int, ...]]
    drivable: np.ndarray | None = None
    multi_lane: np.ndarray | None = None
    selected_source: np.ndarray | None = None
    step_timeouts: int = 0
    e2e_latency_ms: np.ndarray = field(default_factory=lambda: np.zeros(0))
    startup_latency_ms: float | None = None
    node_latency_ms: dict = field(default_factory=dict)
    route_length_m: float | None = None
    route_progress_m: np.ndarray | None = None
    route_goal_m: float | None = None
    meta: dict = field(default_factory=dict)
    lights: LightTrace | None = None

    def __post_init__(self) -> None:
        xy = np.asarray(self.ego_xy, dtype=np.float64).reshape(-1, 2)
        t = xy.shape[0]
        object.__setattr__(self, "ego_xy", xy)
        object.__setattr__(self, "ego_yaw", np.asarray(self.ego_yaw, np.float64).reshape(t))
        object.__setattr__(self, "ego_speed", np.asarray(self.ego_speed, np.float64).reshape(t))
        object.__setattr__(self, "route", np.asarray(self.route, np.float64).reshape(-1, 2))
        if len(self.agents) != t:
            raise ValueError(f"EpisodeTrace.agents has {len(self.agents)} frames for {t} steps")
        if len(self.collision_ids) != t:
            raise ValueError(f"EpisodeTrace.collision_ids has {len(self.collision_ids)} rows "
                             f"for {t} steps")
        if not self.dt_s > 0:
            raise ValueError(f"EpisodeTrace.dt_s must be > 0, got {self.dt_s}")
        for name in ("drivable", "multi_lane", "selected_source"):
            v = getattr(self, name)
            if v is not None and np.asarray(v).shape[0] != t:
                raise ValueError(f"EpisodeTrace.{name} has {np.asarray(v).shape[0]} rows for "
                                 f"{t} steps")
        if self.lights is not None and len(self.lights) and self.lights.states.shape[0] != t:
            raise ValueError(f"EpisodeTrace.lights has {self.lights.states.shape[0]} state rows "
                             f"for {t} steps")

    @property
    def n_steps(self) -> int:
        """Number of simulation steps T."""
        return int(self.ego_xy.shape[0])


@dataclass(frozen=True)
class CollisionEvent:
    """The first step of contact between the ego and one object."""

    step: int
    object_id: int
    kind: str           # COLLISION_* type
    at_fault: bool
    static: bool


@dataclass(frozen=True)
class EpisodeMetrics:
    """Every per-episode number the reports use (see the module docstring for definitions).

    Latency fields are wall-clock measurements and are not deterministic; all others are.
    """

    steps: int
    duration_s: float
    distance_m: float
    progress_m: float
    route_length_m: float
    route_goal_m: float
    route_completion: float
    nc: float
    dac: float
    ttc: float
    comfort: float
    ep: float | None
    pdm_score: float | None
    collisions: int
    at_fault_collisions: int
    at_fault_static_collisions: int
    at_fault_per_km: float
    collision_events: list
    off_road_steps: int
    ttc_violation_steps: int
    fallback_share: float | None
    mode_transitions: int
    step_timeouts: int
    e2e_latency_p50_ms: float | None
    e2e_latency_p99_ms: float | None
    node_latency_ms: dict

    tlc: float = 1.0
    red_light_violations: int = 0
    stop_line_crossings: int = 0
    stop_line_events: list = field(default_factory=list)
    pdm_score_tlc: float | None = None
    min_ttc_s: float = MARGIN_TTC_HORIZON_S
    min_clearance_m: float = MARGIN_RANGE_M
    startup_latency_ms: float | None = None
    off_road_slow_steps: int = 0     # of off_road_steps, those below SLOW_OFF_ROAD_MPS (module docstring)
    off_road_max_offset_m: float = 0.0  # largest distance from the route at an off-road step (docstring)

    NON_DETERMINISTIC = ("e2e_latency_p50_ms", "e2e_latency_p99_ms", "node_latency_ms", "startup_latency_ms")

    def to_dict(self) -> dict:
        """A JSON-ready dict."""
        return asdict(self)


# --- route progress -----------------------------------------------------------------------------
def polyline_length(poly: np.ndarray) -> float:
    """Length [m] of a polyline (R, 2)."""
    poly = np.asarray(poly, np.float64).reshape(-1, 2)
    if poly.shape[0] < 2:
        return 0.0
    return float(np.linalg.norm(np.diff(poly, axis=0), axis=1).sum())


def route_progress(route: np.ndarray, xy: np.ndarray, lookback_m: float = ROUTE_LOOKBACK_M,
                   lookahead_m: float = ROUTE_LOOKAHEAD_M) -> np.ndarray:
    """Arc length [m] along ``route`` reached at every step (monotone, non-decreasing).

    The first position is projected onto the whole route; each later one onto the segments whose
    arc-length range overlaps [s_prev - lookback_m, s_prev + lookahead_m], so a route that passes near itself (a
    roundabout) is not short-cut. Returns (T,) progress, the running maximum of the projection.
    """
    return _project_on_route(route, xy, lookback_m, lookahead_m)[0]


def route_offsets(route: np.ndarray, xy: np.ndarray, lookback_m: float = ROUTE_LOOKBACK_M,
                  lookahead_m: float = ROUTE_LOOKAHEAD_M) -> np.ndarray:
    """(T,) distance [m] from every position to its projection on ``route`` (the same windowed
    projection as :func:`route_progress`, so a roundabout's other side is not taken as near)."""
    return _project_on_route(route, xy, lookback_m, lookahead_m)[1]


def _project_on_route(route: np.ndarray, xy: np.ndarray, lookback_m: float = ROUTE_LOOKBACK_M,
                      lookahead_m: float = ROUTE_LOOKAHEAD_M) -> tuple[np.ndarray, np.ndarray]:
    """(progress (T,), distance to the route (T,)) of :func:`route_progress`'s projection."""
    route = np.asarray(route, np.float64).reshape(-1, 2)
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    out = np.zeros(xy.shape[0])
    off = np.zeros(xy.shape[0])
    if route.shape[0] < 2 or xy.shape[0] == 0:
        if route.shape[0] == 1 and xy.shape[0]:
            off = np.linalg.norm(xy - route[0], axis=1)
        return out, off
    a = route[:-1]
    d = np.diff(route, axis=0)
    seg_len = np.linalg.norm(d, axis=1)
    s0 = np.concatenate([[0.0], np.cumsum(seg_len)[:-1]])
    s1 = s0 + seg_len
    safe_len2 = np.maximum(seg_len ** 2, 1e-12)
    best = 0.0
    s_prev = 0.0
    for k in range(xy.shape[0]):
        # the first position is projected onto the whole route (the ego may start anywhere on it)
        window = (s1 >= s_prev - lookback_m) & (s0 <= s_prev + lookahead_m)
        idx = np.flatnonzero(window) if k > 0 else np.arange(a.shape[0])
        if idx.size == 0:
            idx = np.arange(a.shape[0])
        rel = xy[k] - a[idx]
        u = np.clip(np.einsum("nd,nd->n", rel, d[idx]) / safe_len2[idx], 0.0, 1.0)
        proj = a[idx] + u[:, None] * d[idx]
        dist = np.linalg.norm(xy[k] - proj, axis=1)
        j = int(np.argmin(dist))
        s = float(s0[idx[j]] + u[j] * seg_len[idx[j]])
        s_prev = s
        best = max(best, s)
        out[k] = best
        off[k] = float(dist[j])
    return out, off


# --- NC: no at-fault collision -------------------------------------------------------------------
def classify_collision(ego_xy: np.ndarray, ego_yaw: float, ego_speed: float, ego_length: float,
                       ego_width: float, obj_corners: np.ndarray, obj_xy: np.ndarray,
                       obj_speed: float, is_static: bool, ego_multi_lane: bool) -> tuple[str, bool]:
    """Type and fault of one collision (METRICS.md, "Collisions and fault"; nuPlan's taxonomy).

    - ego stopped (< 0.005 m/s): not at fault;
    - static object: at fault (NC 0.5);
    - agent stopped: at fault;
    - agent behind the ego (bearing beyond 150 deg): rear-ended, not at fault;
    - the ego's front bumper touches the agent: front collision, at fault;
    - otherwise lateral: at fault only while the ego straddles lanes / is off the drivable
      area / is in an intersection (``ego_multi_lane``).

    Returns:
        (kind, at_fault) with kind one of the ``COLLISION_*`` names.
    """
    if abs(ego_speed) < STOPPED_SPEED_MPS:
        return COLLISION_STOPPED_EGO, False
    if is_static:
        return COLLISION_STATIC, True
    if obj_speed < STOPPED_SPEED_MPS:
        return COLLISION_STOPPED_AGENT, True
    bearing_rad = bearing(ego_xy, ego_yaw, obj_xy)[0]
    if abs(bearing_rad) > BEHIND_BEARING_RAD:
        return COLLISION_ACTIVE_REAR, False
    ego = box_corners(ego_xy, ego_yaw, ego_length, ego_width)[0]
    if segment_intersects_polygons(ego[0], ego[1], obj_corners[None])[0]:
        return COLLISION_ACTIVE_FRONT, True
    return COLLISION_ACTIVE_LATERAL, bool(ego_multi_lane)


def collision_events(trace: EpisodeTrace) -> list[CollisionEvent]:
    """Classified collisions of an episode: one event per object, at its first contact step.

    Contacts come from the simulator's oriented-box check (``trace.collision_ids``); an id
    found neither among the step's agents nor among the statics is treated as an agent at rest
    next to the ego (the conservative reading: at fault).
    """
    events: list[CollisionEvent] = []
    seen: set[int] = set()
    static_index = {int(i): j for j, i in enumerate(trace.statics.ids)}
    static_corners = trace.statics.corners()
    multi = (np.zeros(trace.n_steps, bool) if trace.multi_lane is None
             else np.asarray(trace.multi_lane, bool))
    for k, ids in enumerate(trace.collision_ids):
        for oid in ids:
            oid = int(oid)
            if oid in seen:
                continue
            seen.add(oid)
            frame = trace.agents[k]
            hit = np.flatnonzero(frame.ids == oid)
            if hit.size:
                j = int(hit[0])
                corners = frame.corners()[j]
                obj_xy = frame.xy[j]
                obj_speed = float(np.linalg.norm(frame.velocity[j]))
                static = False
            elif oid in static_index:
                j = static_index[oid]
                corners = static_corners[j]
                obj_xy = trace.statics.xy[j]
                obj_speed = 0.0
                static = True
            else:
                corners = box_corners(trace.ego_xy[k], trace.ego_yaw[k], trace.ego_length_m,
                                      trace.ego_width_m)[0]
                obj_xy = trace.ego_xy[k]
                obj_speed = 0.0
                static = False
            kind, fault = classify_collision(
                trace.ego_xy[k], float(trace.ego_yaw[k]), float(trace.ego_speed[k]),
                trace.ego_length_m, trace.ego_width_m, corners, obj_xy, obj_speed, static,
                bool(multi[k]))
            events.append(CollisionEvent(k, oid, kind, bool(fault), static))
    return events


def no_at_fault_collision_score(events: Sequence[CollisionEvent]) -> float:
    """NC (METRICS.md): 0 with an at-fault collision with an agent, 0.5 if only with a static
    object, else 1."""
    score = 1.0
    for e in events:
        if e.at_fault:
            score = min(score, NC_STATIC_SCORE if e.static else 0.0)
    return score


# --- TLC: traffic-light compliance ---------------------------------------------------------------
@dataclass(frozen=True)
class StopLineCrossing:
    """The ego's front bumper crossed a stop line at ``step``; ``state`` is the line's light
    state at that step, ``violation`` = it was red."""

    step: int
    light_id: int
    state: int
    violation: bool


def stop_line_crossings(trace: EpisodeTrace) -> list[StopLineCrossing]:
    """Every crossing of a stop line by the ego's front bumper (METRICS.md, "Traffic lights"):
    the centre of the front edge goes from before the line (along the lane's direction of
    travel) at step k-1 to on or past it at step k, within half the line's width plus
    ``STOP_LINE_LATERAL_TOL_M`` of its centre across the lane, with the ego heading within
    ``STOP_LINE_HEADING_TOL_RAD`` of the direction of travel. It is a red-light violation when
    the light is RED at step k."""
    lights = trace.lights
    if lights is None or not len(lights) or trace.n_steps < 2:
        return []
    heading = np.stack([np.cos(trace.ego_yaw), np.sin(trace.ego_yaw)], axis=1)
    front = trace.ego_xy + 0.5 * trace.ego_length_m * heading                    # (T, 2)
    d = np.stack([np.cos(lights.lane_yaw), np.sin(lights.lane_yaw)], axis=1)      # (L, 2)
    rel = front[:, None, :] - lights.stop_xy[None, :, :]                           # (T, L, 2)
    along = np.einsum("tld,ld->tl", rel, d)
    across = rel[..., 1] * d[None, :, 0] - rel[..., 0] * d[None, :, 1]
    dyaw = np.abs((trace.ego_yaw[:, None] - lights.lane_yaw[None, :] + np.pi) % (2 * np.pi) - np.pi)
    crossed = (along[:-1] < 0.0) & (along[1:] >= 0.0)
    near = (np.abs(across[1:]) <= 0.5 * lights.width[None, :] + STOP_LINE_LATERAL_TOL_M) \
        & (dyaw[1:] <= STOP_LINE_HEADING_TOL_RAD)
    out = []
    for k, j in zip(*np.nonzero(crossed & near), strict=True):
        step = int(k) + 1
        state = int(lights.states[step, j])
        out.append(StopLineCrossing(step, int(lights.ids[j]), state, state == LIGHT_RED))
    out.sort(key=lambda c: (c.step, c.light_id))
    return out


def traffic_light_compliance(crossings: Sequence[StopLineCrossing]) -> float:
    """TLC (NAVSIM v2; METRICS.md): 0 if any stop line was crossed on red, else 1."""
    return 0.0 if any(c.violation for c in crossings) else 1.0


# --- DAC: drivable area compliance ------------------------------------------------------------
def ego_corners(trace: EpisodeTrace) -> np.ndarray:
    """(T, 4, 2) ego footprint corners [m] at every step."""
    return box_corners(trace.ego_xy, trace.ego_yaw, trace.ego_length_m, trace.ego_width_m)


def corners_on_drivable(corners: np.ndarray,
                        contains: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """(T, 4) bool: each corner of (T, 4, 2) lies on the drivable area per ``contains``
    (a map query taking (N, 2) points [m] and returning (N,) bool)."""
    corners = np.asarray(corners, np.float64)
    flat = np.asarray(contains(corners.reshape(-1, 2)), bool)
    return flat.reshape(corners.shape[0], 4)


def drivable_area_compliance(drivable: np.ndarray | None) -> float:
    """DAC (METRICS.md): 0 if any ego corner leaves the drivable area at any step, else 1.
    ``drivable`` is (T, 4) bool from :func:`corners_on_drivable`; None reads as compliant."""
    if drivable is None:
        return 1.0
    return 0.0 if not np.all(np.asarray(drivable, bool)) else 1.0


# --- TTC --------------------------------------------------------------------------------------
def ttc_violations(trace: EpisodeTrace) -> np.ndarray:
    """(T,) bool, TTC violated at each step (METRICS.md, TTC).

    The ego footprint is projected forward at constant velocity (its heading and speed) to
    0, 0.3, 0.6 and 0.9 s; agents likewise at their velocity, statics stay. A step violates when
    a projected ego footprint intersects the projected box of an object ahead (bearing within
    30 deg), or of any object not behind (bearing within 150 deg) while the ego straddles lanes
    or is in an intersection. Ignored while the ego is slower than 0.005 m/s; objects already in
    contact at the step are left to NC.
    """
    out = np.zeros(trace.n_steps, bool)
    multi = (np.zeros(trace.n_steps, bool) if trace.multi_lane is None
             else np.asarray(trace.multi_lane, bool))
    statics = trace.statics
    for k in range(trace.n_steps):
        v = float(trace.ego_speed[k])
        if abs(v) < TTC_IGNORE_SPEED_MPS:
            continue
        frame = trace.agents[k]
        xy = np.concatenate([frame.xy, statics.xy])
        if xy.shape[0] == 0:
            continue
        yaw = np.concatenate([frame.yaw, statics.yaw])
        length = np.concatenate([frame.length, statics.length])
        width = np.concatenate([frame.width, statics.width])
        vel = np.concatenate([frame.velocity, np.zeros((len(statics), 2))])
        ids = np.concatenate([frame.ids, statics.ids])
        abs_bearing = np.abs(bearing(trace.ego_xy[k], trace.ego_yaw[k], xy))
        limit = BEHIND_BEARING_RAD if multi[k] else AHEAD_BEARING_RAD
        relevant = abs_bearing <= limit
        in_contact = np.isin(ids, np.asarray(trace.collision_ids[k], np.int64))
        relevant &= ~in_contact
        if not relevant.any():
            continue
        heading = np.array([np.cos(trace.ego_yaw[k]), np.sin(trace.ego_yaw[k])])
        for t in TTC_TIMES_S:
            ego_c = box_corners(trace.ego_xy[k] + heading * v * t, trace.ego_yaw[k],
                                trace.ego_length_m, trace.ego_width_m)[0]
            obj_c = box_corners(xy[relevant] + vel[relevant] * t, yaw[relevant],
                                length[relevant], width[relevant])
            if polygons_overlap(ego_c, obj_c).any():
                out[k] = True
                break
    return out


def _relevant_objects(trace: EpisodeTrace, k: int, max_range_m: float):
    """The objects at step ``k`` the ego could run into (the TTC check's rule: ahead within
    30 deg, or not behind while it straddles lanes), not in contact, within ``max_range_m``:
    (xy, yaw, length, width, velocity) arrays, or None."""
    frame, statics = trace.agents[k], trace.statics
    xy = np.concatenate([frame.xy, statics.xy])
    if xy.shape[0] == 0:
        return None
    multi = bool(trace.multi_lane[k]) if trace.multi_lane is not None else False
    ids = np.concatenate([frame.ids, statics.ids])
    keep = np.abs(bearing(trace.ego_xy[k], trace.ego_yaw[k], xy)) <= (
        BEHIND_BEARING_RAD if multi else AHEAD_BEARING_RAD)
    keep &= ~np.isin(ids, np.asarray(trace.collision_ids[k], np.int64))
    keep &= np.linalg.norm(xy - trace.ego_xy[k], axis=1) <= max_range_m
    if not keep.any():
        return None
    return (xy[keep], np.concatenate([frame.yaw, statics.yaw])[keep],
            np.concatenate([frame.length, statics.length])[keep],
            np.concatenate([frame.width, statics.width])[keep],
            np.concatenate([frame.velocity, np.zeros((len(statics), 2))])[keep])


def _polygon_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) distance [m] between one convex quadrilateral ``a`` (4, 2) and N others (N, 4, 2);
    0 where they overlap."""
    def corner_to_edges(pts: np.ndarray, polys: np.ndarray) -> np.ndarray:
        # pts (N, 4, 2) to the 4 edges of polys (N, 4, 2): (N,) minimum distance
        p0 = polys[:, :, None, :]
        d = np.roll(polys, -1, axis=1)[:, :, None, :] - p0                      # (N, 4e, 1, 2)
        rel = pts[:, None, :, :] - p0                                            # (N, 4e, 4p, 2)
        t = np.clip((rel * d).sum(-1) / np.maximum((d * d).sum(-1), 1e-12), 0.0, 1.0)
        return np.linalg.norm(rel - t[..., None] * d, axis=-1).min(axis=(1, 2))

    b = np.asarray(b, np.float64).reshape(-1, 4, 2)
    a_n = np.broadcast_to(np.asarray(a, np.float64)[None], b.shape)
    dist = np.minimum(corner_to_edges(a_n, b), corner_to_edges(b, a_n))
    dist[polygons_overlap(a, b)] = 0.0
    return dist


def safety_margins(trace: EpisodeTrace) -> tuple[float, float]:
    """(min_ttc_s, min_clearance_m) of an episode, over the objects the TTC check considers.

    min_ttc_s: the smallest time [s] within ``MARGIN_TTC_HORIZON_S`` at which the ego footprint,
    projected at constant velocity, meets an object projected at its own (the TTC check's
    projection, continued), over the steps where the ego drives >= ``MARGIN_MIN_SPEED_MPS``;
    the horizon when nothing is met. min_clearance_m: the smallest footprint-to-footprint gap [m]
    (0 = touching) within ``MARGIN_RANGE_M``, over the steps where the ego drives >=
    ``MARGIN_CLEARANCE_MIN_SPEED_MPS`` (stopping 2 m behind a queue is not a near miss).
    Collisions themselves are NC's; objects already in contact are left out of both.
    """
    min_ttc, min_gap = MARGIN_TTC_HORIZON_S, MARGIN_RANGE_M
    times = np.arange(0.0, MARGIN_TTC_HORIZON_S + 1e-9, MARGIN_TTC_STEP_S)
    for k in range(trace.n_steps):
        objs = _relevant_objects(trace, k, MARGIN_RANGE_M)
        if objs is None:
            continue
        xy, yaw, length, width, vel = objs
        v = float(trace.ego_speed[k])
        if v >= MARGIN_CLEARANCE_MIN_SPEED_MPS:
            ego = box_corners(trace.ego_xy[k], trace.ego_yaw[k], trace.ego_length_m,
                              trace.ego_width_m)[0]
            min_gap = min(min_gap, float(_polygon_distance(ego, box_corners(xy, yaw, length,
                                                                             width)).min()))
        if v < MARGIN_MIN_SPEED_MPS:
            continue
        heading = np.array([np.cos(trace.ego_yaw[k]), np.sin(trace.ego_yaw[k])])
        for t in times[times < min_ttc]:
            ego_c = box_corners(trace.ego_xy[k] + heading * v * t, trace.ego_yaw[k],
                                trace.ego_length_m, trace.ego_width_m)[0]
            if polygons_overlap(ego_c, box_corners(xy + vel * t, yaw, length, width)).any():
                min_ttc = float(t)
                break
    return min_ttc, min_gap


def windowed_score(ok_per_step: np.ndarray, dt_s: float,
                   window_s: float = SCORE_WINDOW_S) -> float:
    """Mean over consecutive ``window_s`` windows of "every step in the window is ok" (1/0).

    A trailing window shorter than ``MIN_WINDOW_FRACTION`` of a window is dropped (unless it is
    the only one). An empty episode scores 1.
    """
    ok = np.asarray(ok_per_step, bool)
    n = ok.shape[0]
    if n == 0:
        return 1.0
    w = max(1, int(round(window_s / dt_s)))
    scores = []
    for start in range(0, n, w):
        chunk = ok[start:start + w]
        if start > 0 and chunk.shape[0] < MIN_WINDOW_FRACTION * w:
            continue
        scores.append(1.0 if chunk.all() else 0.0)
    return float(np.mean(scores))


# --- C: comfort -------------------------------------------------------------------------------
def _smooth_derivative(x: np.ndarray, dt_s: float, deriv: int) -> np.ndarray:
    """Savitzky-Golay derivative (nuPlan's ego comfort filter), finite differences if too short."""
    from scipy.signal import savgol_filter

    n = x.shape[0]
    win = min(SAVGOL_WINDOW, n if n % 2 == 1 else n - 1)
    if win > SAVGOL_ORDER and win >= 3:
        return savgol_filter(x, win, SAVGOL_ORDER, deriv=deriv, delta=dt_s, mode="interp")
    y = x.astype(np.float64)
    for _ in range(deriv):
        y = np.gradient(y, dt_s) if y.shape[0] > 1 else np.zeros_like(y)
    return y


def comfort_signals(speed: np.ndarray, yaw: np.ndarray, dt_s: float) -> dict[str, np.ndarray]:
    """The six comfort signals (METRICS.md, C) from speed [m/s] and yaw [rad] at dt_s [s].

    Returns (T,) arrays: lon_accel [m/s^2], lat_accel [m/s^2], jerk [m/s^3] (magnitude of the
    derivative of the acceleration vector), lon_jerk [m/s^3], yaw_rate [rad/s],
    yaw_accel [rad/s^2].
    """
    speed = np.asarray(speed, np.float64)
    yaw = np.unwrap(np.asarray(yaw, np.float64))
    if speed.shape[0] < 2:
        z = np.zeros_like(speed)
        return {k: z for k in ("lon_accel", "lat_accel", "jerk", "lon_jerk", "yaw_rate",
                               "yaw_accel")}
    lon_accel = _smooth_derivative(speed, dt_s, 1)
    yaw_rate = _smooth_derivative(yaw, dt_s, 1)
    yaw_accel = _smooth_derivative(yaw, dt_s, 2)
    lon_jerk = _smooth_derivative(speed, dt_s, 2)
    lat_accel = speed * yaw_rate
    lat_jerk = np.gradient(lat_accel, dt_s)
    jerk = np.hypot(lon_jerk, lat_jerk)
    return {"lon_accel": lon_accel, "lat_accel": lat_accel, "jerk": jerk, "lon_jerk": lon_jerk,
            "yaw_rate": yaw_rate, "yaw_accel": yaw_accel}


def comfort_ok(speed: np.ndarray, yaw: np.ndarray, dt_s: float) -> np.ndarray:
    """(T,) bool: all six comfort bounds of METRICS.md (C) hold at each step."""
    s = comfort_signals(speed, yaw, dt_s)
    lo, hi = COMFORT_LON_ACCEL_MPS2
    return ((s["lon_accel"] >= lo) & (s["lon_accel"] <= hi)
            & (np.abs(s["lat_accel"]) < COMFORT_LAT_ACCEL_MPS2)
            & (np.abs(s["jerk"]) < COMFORT_JERK_MPS3)
            & (np.abs(s["lon_jerk"]) < COMFORT_LON_JERK_MPS3)
            & (np.abs(s["yaw_accel"]) < COMFORT_YAW_ACCEL_RPS2)
            & (np.abs(s["yaw_rate"]) < COMFORT_YAW_RATE_RPS))


# --- EP and PDMS ------------------------------------------------------------------------------
def ego_progress_score(progress_m: float, reference_progress_m: float | None) -> float | None:
    """EP (METRICS.md): progress / best progress of the reference (the expert, same seed),
    clipped to [0, 1]; 1 if the reference progressed less than 5 m; None without reference."""
    if reference_progress_m is None:
        return None
    if reference_progress_m < EP_MIN_REFERENCE_PROGRESS_M:
        return 1.0
    return float(np.clip(progress_m / reference_progress_m, 0.0, 1.0))


def pdm_score(nc: float, dac: float, ttc: float, ep: float, comfort: float) -> float:
    """PDMS = NC x DAC x (5 TTC + 5 EP + 2 C) / 12 (METRICS.md, NAVSIM v1)."""
    w = PDMS_WEIGHTS
    return float(nc * dac * (w["ttc"] * ttc + w["ep"] * ep + w["comfort"] * comfort)
                 / (w["ttc"] + w["ep"] + w["comfort"]))


# --- fallback share, transitions, latency ---------------------------------------------------------
FALLBACK_SOURCES = (1, 2)   # PlannedTrajectory.SOURCE_FALLBACK, SOURCE_MINIMAL_RISK


def fallback_share(selected_source: np.ndarray | None) -> float | None:
    """Time in fallback: share of steps whose selected trajectory came from the fallback or the
    minimal-risk manoeuvre, among the steps with a known source (None if none is known)."""
    if selected_source is None:
        return None
    src = np.asarray(selected_source, np.int64)
    known = src >= 0
    if not known.any():
        return None
    return float(np.isin(src[known], FALLBACK_SOURCES).mean())


def mode_transitions(selected_source: np.ndarray | None) -> int:
    """Number of changes of the selected trajectory source between consecutive known steps."""
    if selected_source is None:
        return 0
    src = np.asarray(selected_source, np.int64)
    src = src[src >= 0]
    if src.shape[0] < 2:
        return 0
    return int(np.count_nonzero(src[1:] != src[:-1]))


# --- monitor timeline -----------------------------------------------------------------------------
# MonitorStatus.STATE_* (tps_planner.trajectory.STATE_NAMES), in the order of the report's columns.
MONITOR_STATES = ("NOMINAL", "DEGRADED", "FALLBACK", "MINIMAL_RISK")


def monitor_state_name(state: int) -> str:
    """MonitorStatus state -> its name ("UNKNOWN_<n>" outside STATE_*)."""
    return MONITOR_STATES[state] if 0 <= int(state) < len(MONITOR_STATES) else f"UNKNOWN_{int(state)}"


def monitor_summary(samples: Sequence[tuple]) -> dict | None:
    """An episode's monitor timeline from its statuses (t_s [s], state, certainty, reasons),
    one per stamp, sorted by time (``tps_eval.collector.monitor_samples``); None when no
    monitor ran.

    Returns {"timeline": [[t_s, state name, certainty], ...], "transitions": [{"t_s", "from",
    "to", "reasons"}, ...] (every change of state between consecutive statuses, with the reasons
    of the status that changed it), "share": {state name: share of the statuses}} (the four
    MONITOR_STATES always present; they sum to 1 unless unknown states were heard)."""
    if not samples:
        return None
    timeline = [[float(t), monitor_state_name(st), float(c)] for t, st, c, _ in samples]
    transitions = []
    for (_, a, _, _), (t, b, _, reasons) in zip(samples[:-1], samples[1:], strict=True):
        if int(a) != int(b):
            transitions.append({"t_s": float(t), "from": monitor_state_name(a),
                                "to": monitor_state_name(b), "reasons": [str(r) for r in reasons]})
    n = len(timeline)
    share = {name: sum(1 for row in timeline if row[1] == name) / n for name in MONITOR_STATES}
    return {"timeline": timeline, "transitions": transitions, "share": share}


# Words a reason's kind does not end on (the kind is the text before its first number).
_REASON_TAIL_WORDS = ("in", "from", "at", "of", "with", "to", "for", "by")


def reason_kind(reason: str) -> str:
    """A monitor reason without its values: the text before its first digit or parenthesis,
    trailing punctuation and connecting words dropped, so that reasons of one kind count together
    ("candidate reaches detected agent 5 (constant velocity) in 2.2 s" -> "candidate reaches
    detected agent"; "CRITICAL unjustified_braking: candidate brakes from 22.4 to 13.5 m/s ..." ->
    "CRITICAL unjustified_braking: candidate brakes"). An empty reason is "(no reason)"."""
    text = str(reason).strip()
    cut = min((i for i, ch in enumerate(text) if ch.isdigit() or ch == "("), default=len(text))
    words = text[:cut].rstrip(" ,:;=-").split()
    while words and words[-1].lower() in _REASON_TAIL_WORDS:
        words.pop()
    return " ".join(words).rstrip(" ,:;=-") or "(no reason)"


def handover_reasons(mons: Sequence[dict]) -> list[dict]:
    """Why the monitor left NOMINAL, over episodes' monitor summaries (:func:`monitor_summary`).

    Every transition into a worse state (DEGRADED, FALLBACK or MINIMAL_RISK, from a better one)
    counts under its target state and the :func:`reason_kind` of its first reason (the monitor
    lists the signal that decided it first). ``cycle_share`` is the share of all the episodes'
    monitor statuses from that transition up to the next change of state (or the episode's end):
    how much of the driving the kind of reason held the stack away from NOMINAL by itself.
    Returns rows {"to", "reason", "transitions", "episodes", "cycle_share"}, most cycles first."""
    rank = {name: i for i, name in enumerate(MONITOR_STATES)}
    rows: dict[tuple[str, str], dict] = {}
    total = sum(len(m.get("timeline") or []) for m in mons)
    for ep, m in enumerate(mons):
        times = np.asarray([row[0] for row in m.get("timeline") or []], np.float64)
        trs = m.get("transitions") or []
        for i, tr in enumerate(trs):
            if rank.get(tr["to"], -1) <= rank.get(tr["from"], len(MONITOR_STATES)):
                continue
            kind = reason_kind(tr["reasons"][0]) if tr.get("reasons") else "(no reason)"
            row = rows.setdefault((tr["to"], kind), {"to": tr["to"], "reason": kind, "transitions": 0,
                                                    "episodes": set(), "cycles": 0})
            row["transitions"] += 1
            row["episodes"].add(ep)
            t_end = trs[i + 1]["t_s"] if i + 1 < len(trs) else np.inf
            row["cycles"] += int(np.count_nonzero((times >= tr["t_s"] - 1e-9) & (times < t_end - 1e-9)))
    out = [{"to": r["to"], "reason": r["reason"], "transitions": r["transitions"],
            "episodes": len(r["episodes"]), "cycle_share": r["cycles"] / total if total else 0.0}
           for r in rows.values()]
    return sorted(out, key=lambda r: (-r["cycle_share"], -r["transitions"], r["to"], r["reason"]))


def aggregate_monitor(episodes: Sequence[dict]) -> dict | None:
    """Over the episodes with a monitor timeline (their ``monitor`` entry): mean state shares,
    transitions per episode, how many episodes had one, and why it left NOMINAL
    (:func:`handover_reasons`). None when none had."""
    mons = [e["monitor"] for e in episodes if e.get("monitor")]
    if not mons:
        return None
    return {"episodes": len(mons),
            "share": {k: float(np.mean([m["share"].get(k, 0.0) for m in mons]))
                      for k in MONITOR_STATES},
            "transitions_per_episode": float(np.mean([len(m["transitions"]) for m in mons])),
            "handovers": handover_reasons(mons)}


def percentile_or_none(values: Sequence[float] | np.ndarray, q: float) -> float | None:
    """The q-th percentile of the finite values (None when there are none)."""
    v = np.asarray(values, np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    return float(np.percentile(v, q)) if v.size else None


# --- per-episode evaluation ------------------------------------------------------------------------
def evaluate_episode(trace: EpisodeTrace,
                     reference_progress_m: float | None = None) -> EpisodeMetrics:
    """Every metric of one episode (see the module docstring); EP and PDMS are None when no
    reference progress is given (the runner fills them once the expert run is known)."""
    events = collision_events(trace)
    nc = no_at_fault_collision_score(events)
    dac = drivable_area_compliance(trace.drivable)
    ttc_bad = ttc_violations(trace)
    ttc = windowed_score(~ttc_bad, trace.dt_s)
    comfort = windowed_score(comfort_ok(trace.ego_speed, trace.ego_yaw, trace.dt_s), trace.dt_s)
    projection = None   # (progress, offsets) along the route; the world's own progress wins
    if trace.route_progress_m is not None:
        progress = np.maximum.accumulate(np.asarray(trace.route_progress_m, np.float64))
    else:
        projection = _project_on_route(trace.route, trace.ego_xy)
        progress = projection[0]
    # progress and completion count from where the episode started on the route
    start_m = float(progress[0]) if progress.size else 0.0
    progress_m = float(progress[-1]) - start_m if progress.size else 0.0
    route_len = (float(trace.route_length_m) if trace.route_length_m
                 else polyline_length(trace.route))
    remaining_m = route_len - start_m
    if trace.route_goal_m is not None:
        remaining_m = min(remaining_m, float(trace.route_goal_m))
    completion = (float(np.clip(progress_m / remaining_m, 0.0, 1.0)) if remaining_m > 0
                  else 1.0)
    distance = float(np.linalg.norm(np.diff(trace.ego_xy, axis=0), axis=1).sum()) \
        if trace.n_steps > 1 else 0.0
    at_fault = [e for e in events if e.at_fault]
    ep = ego_progress_score(progress_m, reference_progress_m)
    pdms = None if ep is None else pdm_score(nc, dac, ttc, ep, comfort)
    crossings = stop_line_crossings(trace)
    tlc = traffic_light_compliance(crossings)
    off_mask = (np.zeros(trace.n_steps, bool) if trace.drivable is None
                else ~np.asarray(trace.drivable, bool).all(axis=1))
    off_road = int(np.count_nonzero(off_mask))
    off_road_slow = int(np.count_nonzero(off_mask & (np.asarray(trace.ego_speed, np.float64) < SLOW_OFF_ROAD_MPS)))
    off_road_offset = 0.0
    if off_road:   # the offsets are projected only for an episode that left the road
        offsets = (projection if projection is not None else _project_on_route(trace.route, trace.ego_xy))[1]
        off_road_offset = float(offsets[off_mask].max())
    min_ttc, min_gap = safety_margins(trace)
    node_lat = {name: {"p50": percentile_or_none(v, 50), "p99": percentile_or_none(v, 99),
                       "n": int(len(v))}
                for name, v in sorted(trace.node_latency_ms.items())}
    return EpisodeMetrics(
        steps=trace.n_steps,
        duration_s=trace.n_steps * trace.dt_s,
        distance_m=distance,
        progress_m=progress_m,
        route_length_m=route_len,
        route_goal_m=remaining_m,
        route_completion=completion,
        nc=nc,
        dac=dac,
        ttc=ttc,
        comfort=comfort,
        ep=ep,
        pdm_score=pdms,
        collisions=len(events),
        at_fault_collisions=len(at_fault),
        at_fault_static_collisions=sum(1 for e in at_fault if e.static),
        at_fault_per_km=(len(at_fault) / (distance / 1000.0)) if distance > 0 else 0.0,
        collision_events=[asdict(e) for e in events],
        off_road_steps=off_road,
        off_road_slow_steps=off_road_slow,
        off_road_max_offset_m=round(off_road_offset, 3),
        ttc_violation_steps=int(np.count_nonzero(ttc_bad)),
        fallback_share=fallback_share(trace.selected_source),
        mode_transitions=mode_transitions(trace.selected_source),
        step_timeouts=int(trace.step_timeouts),
        e2e_latency_p50_ms=percentile_or_none(trace.e2e_latency_ms, 50),
        e2e_latency_p99_ms=percentile_or_none(trace.e2e_latency_ms, 99),
        startup_latency_ms=(round(float(trace.startup_latency_ms), 3)
                            if trace.startup_latency_ms is not None else None),
        node_latency_ms=node_lat,
        tlc=tlc,
        red_light_violations=sum(1 for c in crossings if c.violation),
        stop_line_crossings=len(crossings),
        stop_line_events=[asdict(c) for c in crossings],
        pdm_score_tlc=None if pdms is None else pdms * tlc,
        min_ttc_s=min_ttc,
        min_clearance_m=min_gap,
    )


def with_reference(metrics: dict, reference_progress_m: float | None) -> dict:
    """A copy of an episode's metrics dict with EP and PDMS computed against the reference
    progress (the expert's progress in the same scenario, seed and options) [m]."""
    out = dict(metrics)
    ep = ego_progress_score(float(metrics["progress_m"]), reference_progress_m)
    out["ep"] = ep
    out["reference_progress_m"] = reference_progress_m
    out["pdm_score"] = None if ep is None else pdm_score(
        metrics["nc"], metrics["dac"], metrics["ttc"], ep, metrics["comfort"])
    out["pdm_score_tlc"] = None if out["pdm_score"] is None else \
        out["pdm_score"] * float(metrics.get("tlc", 1.0))
    return out


# --- aggregation ------------------------------------------------------------------------------------
def aggregate(episodes: Sequence[dict]) -> dict:
    """Aggregates over the metric dicts of one configuration's episodes.

    collision_rate: share of episodes with >= 1 at-fault collision; route_completion,
    pdm_score, pdm_score_tlc, tlc, nc, dac, ttc, ep, comfort, fallback_share: means over episodes
    (None-valued entries skipped); red_light_violations, stop_line_crossings: sums;
    red_light_episode_rate: share of episodes with >= 1 red-light violation; at_fault_per_km: at-fault collisions / total km driven; off_road_rate:
    share of episodes with DAC 0; e2e latency p50/p99 and per-node processing time p50/p99:
    medians of the per-episode values; monitor_states: :func:`aggregate_monitor`.
    """
    n = len(episodes)
    if n == 0:
        return {"episodes": 0}

    def mean(key: str) -> float | None:
        vals = [e[key] for e in episodes if e.get(key) is not None]
        return float(np.mean(vals)) if vals else None

    km = sum(e["distance_m"] for e in episodes) / 1000.0
    faults = sum(e["at_fault_collisions"] for e in episodes)
    return {
        "episodes": n,
        "collision_rate": sum(1 for e in episodes if e["at_fault_collisions"] > 0) / n,
        "any_collision_rate": sum(1 for e in episodes if e["collisions"] > 0) / n,
        "route_completion": mean("route_completion"),
        "pdm_score": mean("pdm_score"),
        "pdm_score_tlc": mean("pdm_score_tlc"),
        "tlc": mean("tlc"),
        "red_light_violations": sum(int(e.get("red_light_violations", 0)) for e in episodes),
        "red_light_episode_rate": sum(1 for e in episodes
                                      if e.get("red_light_violations", 0) > 0) / n,
        "stop_line_crossings": sum(int(e.get("stop_line_crossings", 0)) for e in episodes),
        "nc": mean("nc"),
        "dac": mean("dac"),
        "ttc": mean("ttc"),
        "ep": mean("ep"),
        "comfort": mean("comfort"),
        "fallback_share": mean("fallback_share"),
        "mode_transitions": mean("mode_transitions"),
        "off_road_rate": sum(1 for e in episodes if e["dac"] < 1.0) / n,
        "at_fault_collisions": faults,
        "at_fault_per_km": faults / km if km > 0 else 0.0,
        "distance_km": km,
        "step_timeouts": sum(e["step_timeouts"] for e in episodes),
        "e2e_latency_p50_ms": _median_or_none(e.get("e2e_latency_p50_ms") for e in episodes),
        "e2e_latency_p99_ms": _median_or_none(e.get("e2e_latency_p99_ms") for e in episodes),
        "startup_latency_ms": _median_or_none(e.get("startup_latency_ms") for e in episodes),
        "node_latency_ms": _node_latency(episodes),
        "monitor_states": aggregate_monitor(episodes),
    }


def _node_latency(episodes: Sequence[dict]) -> dict:
    """Per node: medians over episodes of the per-episode p50 and p99 processing times [ms]."""
    nodes = sorted({n for e in episodes for n in (e.get("node_latency_ms") or {})})
    out = {}
    for n in nodes:
        per = [e["node_latency_ms"][n] for e in episodes if n in (e.get("node_latency_ms") or {})]
        out[n] = {"p50": _median_or_none(p.get("p50") for p in per),
                  "p99": _median_or_none(p.get("p99") for p in per),
                  "samples": int(sum(p.get("n", 0) for p in per))}
    return out


def _median_or_none(values) -> float | None:
    v = [x for x in values if x is not None]
    return float(np.median(v)) if v else None
