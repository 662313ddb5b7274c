"""Open-loop planner metrics (numpy only; summarised in ``docs/METRICS.md``, "Open-loop planning").

Plans are ``(8, 2)`` positions at +0.5 .. +4.0 s in the ego's ``base_link`` of the frame (x forward,
y left); futures of other agents are ``(6, 2)`` centres at +0.5 .. +3.0 s in the same frame. Step k
(0-based) is at ``(k + 1) * 0.5`` s, so 1 s, 2 s, 3 s are steps 1, 3, 5.

L2, two conventions (both reported, labelled):

* **at t** (``l2_1s``, ``l2_2s``, ``l2_3s``): the distance between planned and expert position at
  exactly t, averaged over the frames where the expert's position at t exists.
  ``l2_mean`` = the mean of the three (the acceptance figure).
* **averaged up to t** (``l2_avg_1s`` .. ``l2_avg_3s``, ``l2_avg_mean``; the ST-P3 / VAD
  convention): per frame the mean of the distances at 0.5, 1.0, ... t s, averaged over frames whose
  expert positions up to t all exist.

Collisions (``collision_rate_1s`` .. ``_3s``; the project's definition, ``docs/METRICS.md``): share
of frames in which the ego box along the plan overlaps a ground-truth agent box at any 0.5 s step
up to t. The ego's box (length x width of the simulator's ego, centred on base_link, which is the
box centre in ``tps_sim``) stands at the planned position of the step, heading along the plan
(:func:`path_headings`: the direction of the last move longer than 0.2 m; 0 before any); an
agent's box has its size now, its future centre at that step and the heading along its own future
likewise (from its yaw now); overlap = the project's separating-axis test (touching counts). Frames:
those where the expert's position at t exists. ``collision_rate`` = the mean of the three
per-horizon rates (the UniAD "avg." column, like ``l2_mean``).

Forecasting (K modes, agents = tokens matched to a ground-truth agent whose full 3 s future
exists): ``min_ade_3s`` = min over modes of the mean distance over the six steps; ``min_fde_3s`` =
min over modes of the distance at 3 s; ``miss_rate`` = share of agents with ``min_fde_3s`` >
:data:`MISS_THRESHOLD_M` (Argoverse).

Instruction following (:func:`realises`, per command of ``tps_msgs/DrivingInstruction``): a frame
is *checkable* when the expert's full 4 s plan itself realises the commanded manoeuvre in that
frame (the manoeuvre is possible and due now; e.g. not while the expert waits at a red light);
``instruction_following`` = share of checkable frames whose plan realises it. Frames not
checkable are excluded and counted (``if_excluded``).
"""

from __future__ import annotations

import numpy as np

STEP_S = 0.5
HORIZONS_S = (1.0, 2.0, 3.0)
MISS_THRESHOLD_M = 2.0
HEADING_MIN_STEP_M = 0.2

# tps_msgs/DrivingInstruction constants (tps_sim.world.config CMD_*; tested against the message)
COMMANDS = {"FOLLOW_LANE": 0, "TURN_LEFT": 1, "TURN_RIGHT": 2, "GO_STRAIGHT": 3, "CHANGE_LANE_LEFT": 4,
            "CHANGE_LANE_RIGHT": 5, "STOP": 6, "TAKE_EXIT": 7}
COMMAND_NAMES = {v: k for k, v in COMMANDS.items()}

# instruction-following thresholds
LANE_CHANGE_M = 1.5        # change lane: lateral displacement relative to the route over the 4 s plan
KEEP_LANE_M = 1.0          # follow lane / go straight: |lateral displacement| at most this
TURN_RAD = np.deg2rad(30.0)     # turn: heading change of the plan's end at least this
STRAIGHT_RAD = np.deg2rad(15.0)  # go straight: |heading change| at most this
MOVING_M = 2.0             # go straight / take exit: the plan travels at least this far
STOPPED_STEP_M = 0.5       # stop: the last 0.5 s step of the plan is shorter (< 1 m/s at 4 s)
ON_ROUTE_M = 1.5           # take exit: the plan's end within this of the route (through that exit)

RULES = {
    "FOLLOW_LANE": f"|lateral displacement w.r.t. the route over 4 s| <= {KEEP_LANE_M} m",
    "TURN_LEFT": f"heading change of the 4 s plan >= +{np.rad2deg(TURN_RAD):.0f} deg",
    "TURN_RIGHT": f"heading change of the 4 s plan <= -{np.rad2deg(TURN_RAD):.0f} deg",
    "GO_STRAIGHT": (f"travels >= {MOVING_M} m, |heading change| <= {np.rad2deg(STRAIGHT_RAD):.0f} deg, "
                    f"|lateral displacement w.r.t. the route| <= {KEEP_LANE_M} m"),
    "CHANGE_LANE_LEFT": f"lateral displacement w.r.t. the route over 4 s >= +{LANE_CHANGE_M} m",
    "CHANGE_LANE_RIGHT": f"lateral displacement w.r.t. the route over 4 s <= -{LANE_CHANGE_M} m",
    "STOP": f"the last 0.5 s step of the plan < {STOPPED_STEP_M} m (at rest at 4 s)",
    "TAKE_EXIT": (f"travels >= {MOVING_M} m and ends within {ON_ROUTE_M} m of the route, whose road-level "
                  "path leaves the roundabout at the commanded exit"),
}


def horizon_step(t_s: float, step_s: float = STEP_S) -> int:
    """0-based step index of the position at ``t_s`` (1 s -> 1 at 0.5 s steps)."""
    return int(round(t_s / step_s)) - 1


def _nanmean(x) -> float | None:
    x = np.asarray(x, np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if len(vals) == len(values) and vals else None


# --- L2 --------------------------------------------------------------------------------------------
def l2_per_step(plan: np.ndarray, expert: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(N, T) distance between planned and expert positions; NaN where the expert's is missing."""
    d = np.linalg.norm(np.asarray(plan, np.float64) - np.asarray(expert, np.float64), axis=-1)
    return np.where(np.asarray(valid, bool), d, np.nan)


def l2_summary(err: np.ndarray) -> dict:
    """Both L2 conventions (module docstring) from :func:`l2_per_step` rows of many frames."""
    err = np.asarray(err, np.float64)
    if err.ndim != 2 or err.shape[1] <= horizon_step(HORIZONS_S[-1]):
        raise ValueError(f"L2 rows must be (N, T >= {horizon_step(HORIZONS_S[-1]) + 1}), got {err.shape}")
    out: dict = {}
    at, avg = [], []
    for t in HORIZONS_S:
        k = horizon_step(t)
        col = err[:, k] if len(err) else np.zeros(0)
        a = _nanmean(col)
        full = np.isfinite(err[:, :k + 1]).all(1) if len(err) else np.zeros(0, bool)
        b = float(err[full, :k + 1].mean(1).mean()) if full.any() else None
        out[f"l2_{t:.0f}s"], out[f"l2_avg_{t:.0f}s"] = a, b
        out[f"frames_l2_{t:.0f}s"] = int(np.isfinite(col).sum())
        at.append(a)
        avg.append(b)
    out["l2_mean"], out["l2_avg_mean"] = _mean(at), _mean(avg)
    return out


# --- boxes and collisions -------------------------------------------------------------------------
def boxes_overlap(a: np.ndarray, b: np.ndarray):
    """Does the oriented rectangle ``a`` (5: x, y, yaw, length, width) overlap or touch ``b`` (5,) /
    each of ``b`` (N, 5)? The project's separating-axis test
    (:func:`tps_common.geometry.polygons_overlap`, ``docs/METRICS.md`` "Conventions"). A bool for
    one ``b``, else (N,) bool."""
    from tps_common.geometry import boxes_corners, polygons_overlap

    bb = np.asarray(b, np.float64)
    hit = polygons_overlap(boxes_corners(np.asarray(a, np.float64).reshape(1, 5))[0], boxes_corners(bb))
    return bool(hit[0]) if bb.ndim == 1 else hit


def path_headings(points: np.ndarray, start_xy: np.ndarray | None = None, start_yaw: float = 0.0) -> np.ndarray:
    """(T,) heading at each point of a path (T, 2): the direction from the last anchor (the start,
    then every point reached by a move longer than :data:`HEADING_MIN_STEP_M`) to the point, when
    that move is longer than it; else the heading holds (``start_yaw`` before any move)."""
    pts = np.asarray(points, np.float64).reshape(-1, 2)
    prev = np.zeros(2) if start_xy is None else np.asarray(start_xy, np.float64)
    out = np.zeros(len(pts))
    yaw = float(start_yaw)
    for k, p in enumerate(pts):
        d = p - prev
        if np.hypot(*d) > HEADING_MIN_STEP_M:
            yaw = float(np.arctan2(d[1], d[0]))
            prev = p
        out[k] = yaw
    return out


COLLISION_STEPS = horizon_step(HORIZONS_S[-1]) + 1     # 0.5 .. 3.0 s


def agent_boxes_per_step(gt_box: np.ndarray, gt_future: np.ndarray, gt_future_valid: np.ndarray) -> list:
    """Per 0.5 s step up to 3 s the (M, 5) boxes x, y, yaw, length, width of the ground-truth agents
    whose future exists then (module docstring). ``gt_box`` (G, >=7: x, y, z, l, w, h, yaw),
    ``gt_future`` (G, 6, 2), ``gt_future_valid`` (G, 6)."""
    g = np.asarray(gt_box, np.float64)
    if g.ndim != 2 or len(g) == 0:
        return [np.zeros((0, 5)) for _ in range(COLLISION_STEPS)]
    fut = np.asarray(gt_future, np.float64)
    fv = np.asarray(gt_future_valid, bool)
    agent_yaw = np.stack([path_headings(fut[j], g[j, :2], g[j, 6]) for j in range(len(g))])   # (G, 6)
    out = []
    for k in range(COLLISION_STEPS):
        ok = fv[:, k]
        out.append(np.column_stack([fut[ok, k, 0], fut[ok, k, 1], agent_yaw[ok, k], g[ok, 3], g[ok, 4]]))
    return out


def plan_collisions(plan: np.ndarray, ego_size: tuple, agent_boxes: list) -> np.ndarray:
    """(len(HORIZONS_S),) bool: the ego box (``ego_size`` length, width) along the plan overlaps one
    of :func:`agent_boxes_per_step` at any 0.5 s step up to 1 / 2 / 3 s."""
    plan = np.asarray(plan, np.float64)
    yaws = path_headings(plan)
    hit = np.zeros(COLLISION_STEPS, bool)
    for k in range(COLLISION_STEPS):
        boxes = agent_boxes[k]
        if len(boxes):
            ego = np.array([plan[k, 0], plan[k, 1], yaws[k], ego_size[0], ego_size[1]])
            hit[k] = bool(boxes_overlap(ego, boxes).any())
    return np.array([hit[:horizon_step(t) + 1].any() for t in HORIZONS_S])


def collision_summary(coll: np.ndarray, counted: np.ndarray) -> dict:
    """Rates from per-frame ``coll`` (N, 3) bool (:func:`plan_collisions`) and ``counted`` (N, 3)
    bool (the expert's position at that horizon exists)."""
    coll = np.asarray(coll, bool).reshape(-1, len(HORIZONS_S))
    counted = np.asarray(counted, bool).reshape(-1, len(HORIZONS_S))
    out: dict = {}
    rates = []
    for h, t in enumerate(HORIZONS_S):
        n = int(counted[:, h].sum())
        r = float((coll[:, h] & counted[:, h]).sum() / n) if n else None
        out[f"collision_rate_{t:.0f}s"] = r
        rates.append(r)
    out["collision_rate"] = _mean(rates)
    out["collision_frames"] = int((coll & counted).any(1).sum())
    return out


# --- forecasting -----------------------------------------------------------------------------------
def forecast_errors(modes: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """min-over-modes ADE and FDE per agent: ``modes`` (N, K, T, 2), ``target`` (N, T, 2) (full
    futures only)."""
    d = np.linalg.norm(np.asarray(modes, np.float64) - np.asarray(target, np.float64)[:, None], axis=-1)   # (N, K, T)
    if d.shape[0] == 0:
        return np.zeros(0), np.zeros(0)
    return d.mean(-1).min(-1), d[..., -1].min(-1)


def forecast_summary(ade: np.ndarray, fde: np.ndarray, k: int) -> dict:
    ade, fde = np.asarray(ade, np.float64), np.asarray(fde, np.float64)
    n = len(ade)
    return {"min_ade_3s": float(ade.mean()) if n else None, "min_fde_3s": float(fde.mean()) if n else None,
            "miss_rate": float((fde > MISS_THRESHOLD_M).mean()) if n else None, "forecast_agents": n,
            "forecast_modes": int(k)}


def accuracy(pred: np.ndarray, label: np.ndarray) -> float | None:
    pred, label = np.asarray(pred).reshape(-1), np.asarray(label).reshape(-1)
    return float((pred == label).mean()) if len(label) else None


# --- instruction following ------------------------------------------------------------------------
def route_lateral(route_xy: np.ndarray, xy_map: np.ndarray) -> tuple[float, float]:
    """(signed lateral offset [m], left positive; distance [m]) of a map point from the route
    polyline (nearest segment)."""
    r = np.asarray(route_xy, np.float64).reshape(-1, 2)
    p = np.asarray(xy_map, np.float64)
    if len(r) < 2:
        return 0.0, float("inf")
    a, b = r[:-1], r[1:]
    seg = b - a
    l2 = np.maximum((seg ** 2).sum(1), 1e-12)
    t = np.clip(((p - a) * seg).sum(1) / l2, 0.0, 1.0)
    proj = a + t[:, None] * seg
    d2 = ((proj - p) ** 2).sum(1)
    k = int(np.argmin(d2))
    direction = np.arctan2(seg[k, 1], seg[k, 0])
    off = p - proj[k]
    return float(-np.sin(direction) * off[0] + np.cos(direction) * off[1]), float(np.sqrt(d2[k]))


def to_map(xy_base: np.ndarray, pose: np.ndarray) -> np.ndarray:
    xy = np.asarray(xy_base, np.float64).reshape(-1, 2)
    c, s = np.cos(pose[2]), np.sin(pose[2])
    return np.stack([pose[0] + c * xy[:, 0] - s * xy[:, 1], pose[1] + s * xy[:, 0] + c * xy[:, 1]], 1)


def manoeuvre(plan: np.ndarray, pose: np.ndarray, route_xy: np.ndarray) -> dict:
    """What a 4 s plan (8, 2, base_link) does: ``lateral_m`` (its end's lateral offset from the
    route minus the ego's now, left positive), ``heading_rad`` (heading at its end, relative to
    now), ``travel_m`` (distance from the ego to its end), ``last_step_m``, ``end_to_route_m``."""
    plan = np.asarray(plan, np.float64)
    pose = np.asarray(pose, np.float64)
    lat0, _ = route_lateral(route_xy, pose[:2])
    end_map = to_map(plan[-1:], pose)[0]
    lat1, dist1 = route_lateral(route_xy, end_map)
    return {"lateral_m": lat1 - lat0, "heading_rad": float(path_headings(plan)[-1]),
            "travel_m": float(np.hypot(*plan[-1])), "last_step_m": float(np.hypot(*(plan[-1] - plan[-2]))),
            "end_to_route_m": dist1}


def realises(command: int, m: dict) -> bool:
    """Does a plan with :func:`manoeuvre` ``m`` realise ``command`` (rules: :data:`RULES`)?

    Raises:
        ValueError: unknown command.
    """
    name = COMMAND_NAMES.get(int(command))
    if name is None:
        raise ValueError(f"unknown DrivingInstruction command {command}")
    lat, head = m["lateral_m"], m["heading_rad"]
    if name == "FOLLOW_LANE":
        return abs(lat) <= KEEP_LANE_M
    if name == "TURN_LEFT":
        return head >= TURN_RAD
    if name == "TURN_RIGHT":
        return head <= -TURN_RAD
    if name == "GO_STRAIGHT":
        return m["travel_m"] >= MOVING_M and abs(head) <= STRAIGHT_RAD and abs(lat) <= KEEP_LANE_M
    if name == "CHANGE_LANE_LEFT":
        return lat >= LANE_CHANGE_M
    if name == "CHANGE_LANE_RIGHT":
        return lat <= -LANE_CHANGE_M
    if name == "STOP":
        return m["last_step_m"] < STOPPED_STEP_M
    return m["travel_m"] >= MOVING_M and m["end_to_route_m"] <= ON_ROUTE_M   # TAKE_EXIT


def instruction_summary(command: np.ndarray, checkable: np.ndarray, realised: np.ndarray,
                        incomplete: np.ndarray) -> dict:
    """``instruction_following`` and its counts per command name. Per frame: the command,
    ``checkable`` (the expert's plan realises it), ``realised`` (the evaluated plan does),
    ``incomplete`` (the expert's 4 s plan runs past the episode: not checked)."""
    command = np.asarray(command, np.int64).reshape(-1)
    checkable, realised = np.asarray(checkable, bool).reshape(-1), np.asarray(realised, bool).reshape(-1)
    incomplete = np.asarray(incomplete, bool).reshape(-1)
    per = {}
    for c in sorted(set(command.tolist())):
        sel = command == c
        n = int((sel & checkable).sum())
        per[COMMAND_NAMES.get(c, str(c))] = {
            "checkable": n, "realised": int((sel & checkable & realised).sum()),
            "share": float((sel & checkable & realised).sum() / n) if n else None,
            "excluded_not_possible": int((sel & ~checkable & ~incomplete).sum()),
            "excluded_incomplete": int((sel & incomplete).sum())}
    n = int(checkable.sum())
    return {"instruction_following": float((checkable & realised).sum() / n) if n else None,
            "if_checkable": n, "if_excluded": int((~checkable).sum()), "if_per_command": per}


# --- baselines -------------------------------------------------------------------------------------
def constant_velocity_plan(speed_mps: float, steps: int = 8, step_s: float = STEP_S) -> np.ndarray:
    """Straight ahead at the current speed (base_link)."""
    t = step_s * np.arange(1, steps + 1)
    return np.column_stack([speed_mps * t, np.zeros(steps)])


def follow_route_plan(route_xy: np.ndarray, pose: np.ndarray, speed_mps: float, steps: int = 8,
                      step_s: float = STEP_S) -> np.ndarray:
    """Along the route polyline from the ego's projection at the current speed (base_link); the
    route's end repeats where it is shorter."""
    r = np.asarray(route_xy, np.float64).reshape(-1, 2)
    pose = np.asarray(pose, np.float64)
    if len(r) < 2:
        return constant_velocity_plan(speed_mps, steps, step_s)
    seg = np.diff(r, axis=0)
    seg_len = np.hypot(seg[:, 0], seg[:, 1])
    cum = np.concatenate([[0.0], np.cumsum(seg_len)])
    l2 = np.maximum(seg_len ** 2, 1e-12)
    t = np.clip(((pose[:2] - r[:-1]) * seg).sum(1) / l2, 0.0, 1.0)
    proj = r[:-1] + t[:, None] * seg
    k = int(np.argmin(((proj - pose[:2]) ** 2).sum(1)))
    s0 = cum[k] + t[k] * seg_len[k]
    s = np.clip(s0 + speed_mps * step_s * np.arange(1, steps + 1), 0.0, cum[-1])
    xy = np.column_stack([np.interp(s, cum, r[:, 0]), np.interp(s, cum, r[:, 1])])
    c, sn = np.cos(pose[2]), np.sin(pose[2])
    d = xy - pose[:2]
    return np.column_stack([c * d[:, 0] + sn * d[:, 1], -sn * d[:, 0] + c * d[:, 1]])


def constant_velocity_forecast(geom: np.ndarray, steps: int = 6, step_s: float = STEP_S) -> np.ndarray:
    """(N, 1, steps, 2): each token straight on at its velocity (geometry x, y, yaw, l, w, vx, vy)."""
    g = np.asarray(geom, np.float64).reshape(-1, 7)
    t = step_s * np.arange(1, steps + 1)
    return (g[:, None, None, :2] + g[:, None, None, 5:7] * t[None, None, :, None])
