"""Ground-truth labels of the planner's stage-1 heads, from simulator ground truth (numpy only).

The simulator has no notion of "intent", so intents are read off each agent's own future (3 s at
0.5 s, ``tps_sim.dataset`` ``gt_future``), in the agent's frame at the current time:

============  ====================================================================================
intent        rule (first that holds, in this order)
============  ====================================================================================
stopped       speed < 0.5 m/s now and moves < 1 m in the next 3 s
crossing      a pedestrian / cyclist moving across the ego's heading (|cos(rel. yaw)| < 0.6), or a
              vehicle ahead of the ego (x > 0) driving across it (|cos(rel. yaw)| < 0.5)
turn_l/r      heading change over the horizon > 35 deg (sign: left positive)
change_l/r    lateral offset left after removing the circular arc implied by the heading change
              (y_end - x_end * tan(dtheta / 2)) > 1.5 m (left) or < -1.5 m (right)
braking       mean deceleration over the horizon > 1.5 m/s^2
keep_lane     otherwise
unknown       no valid future point
============  ====================================================================================

``yielding`` is not labelled from ground truth yet (it needs the simulator's right-of-way state,
e.g. SUMO's waiting/foe information): its class weight is 0 in training.

Relevance: the agent's future comes within :data:`RELEVANT_DIST_M` of the expert ego at the same
time (now .. 3 s), or it is the lead agent. Lead: the nearest agent ahead (0 < x < 60 m) whose
centre lies within :data:`CORRIDOR_HALF_WIDTH_M` of the expert's 4 s path (a straight corridor
when the expert stands still).
"""

from __future__ import annotations

import numpy as np

from tps_planner.vlm.layout import (
    INTENT_BRAKING,
    INTENT_CHANGE_LEFT,
    INTENT_CHANGE_RIGHT,
    INTENT_CROSSING,
    INTENT_KEEP_LANE,
    INTENT_STOPPED,
    INTENT_TURN_LEFT,
    INTENT_TURN_RIGHT,
    INTENT_UNKNOWN,
    LIGHT_NONE,
    LIGHT_OF_CARLA_STATE,
    STOP_LINE_RANGE_M,
)

CLASS_PEDESTRIAN, CLASS_CYCLIST = 4, 5
RELEVANT_DIST_M = 5.0
CORRIDOR_HALF_WIDTH_M = 1.8
LEAD_RANGE_M = 60.0
TURN_RAD = np.deg2rad(35.0)
CHANGE_M = 1.5
BRAKE_MPS2 = 1.5


def intent_label(box: np.ndarray, cls: int, future: np.ndarray, valid: np.ndarray, dt_s: float = 0.5) -> int:
    """Intent of one agent (module docstring). ``box`` (>=9: x, y, z, l, w, h, yaw, vx, vy)."""
    valid = np.asarray(valid, bool)
    n = len(valid) if valid.all() else int(np.argmin(valid))   # leading valid points
    if n == 0:
        return INTENT_UNKNOWN
    fut = np.asarray(future, np.float64)[:n]
    p0, yaw = np.asarray(box[:2], np.float64), float(box[6])
    v0 = float(np.hypot(box[7], box[8]))
    c, s = np.cos(yaw), np.sin(yaw)
    d = fut - p0
    local = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)
    if v0 < 0.5 and np.hypot(*local[-1]) < 1.0:
        return INTENT_STOPPED
    across = abs(np.cos(yaw))
    if cls in (CLASS_PEDESTRIAN, CLASS_CYCLIST):
        if across < 0.6:
            return INTENT_CROSSING
    elif across < 0.5 and box[0] > 0.0 and v0 > 1.0:
        return INTENT_CROSSING
    pts = np.concatenate([[[0.0, 0.0]], local])
    seg = np.diff(pts, axis=0)
    last = seg[-1]
    dtheta = float(np.arctan2(last[1], last[0])) if np.hypot(*last) > 0.3 else 0.0
    if abs(dtheta) > TURN_RAD:
        return INTENT_TURN_LEFT if dtheta > 0 else INTENT_TURN_RIGHT
    residual = local[-1, 1] - local[-1, 0] * np.tan(dtheta / 2.0)
    if residual > CHANGE_M:
        return INTENT_CHANGE_LEFT
    if residual < -CHANGE_M:
        return INTENT_CHANGE_RIGHT
    v_end = float(np.hypot(*last)) / dt_s
    t_end = (len(local) - 0.5) * dt_s
    if (v0 - v_end) / t_end > BRAKE_MPS2:
        return INTENT_BRAKING
    return INTENT_KEEP_LANE


def _dist_to_polyline(p: np.ndarray, line: np.ndarray) -> np.ndarray:
    """Distance of points p (N, 2) to a polyline (M, 2)."""
    if len(line) < 2:
        return np.hypot(*(p - line[0]).T)
    a, b = line[:-1], line[1:]
    seg = b - a
    l2 = np.maximum((seg ** 2).sum(1), 1e-12)
    t = np.clip(((p[:, None, :] - a[None]) * seg[None]).sum(2) / l2[None], 0.0, 1.0)
    proj = a[None] + t[..., None] * seg[None]
    return np.sqrt(((proj - p[:, None, :]) ** 2).sum(2)).min(1)


def lead_index(boxes: np.ndarray, ego_path: np.ndarray) -> int:
    """Row of the lead agent among ``boxes`` (N, >=2 x, y), or -1. ``ego_path`` (M, 2): the expert's
    future positions (base_link), the origin not included."""
    if len(boxes) == 0:
        return -1
    path = np.concatenate([[[0.0, 0.0]], np.asarray(ego_path, np.float64).reshape(-1, 2)])
    if np.hypot(*(path[-1] - path[0])) < 2.0:
        path = np.array([[0.0, 0.0], [LEAD_RANGE_M, 0.0]])
    xy = np.asarray(boxes, np.float64)[:, :2]
    ok = (xy[:, 0] > 0.0) & (xy[:, 0] < LEAD_RANGE_M) & (_dist_to_polyline(xy, path) < CORRIDOR_HALF_WIDTH_M)
    if not ok.any():
        return -1
    cand = np.nonzero(ok)[0]
    return int(cand[np.argmin(xy[cand, 0])])


def relevance_labels(boxes: np.ndarray, futures: np.ndarray, valid: np.ndarray, ego_future: np.ndarray,
                     ego_valid: np.ndarray, lead: int) -> np.ndarray:
    """(N,) bool: the agent comes within RELEVANT_DIST_M of the expert ego at the same time, or is
    the lead. ``futures`` (N, T, 2) / ``valid`` (N, T); ``ego_future`` (T', >=2) / ``ego_valid``
    (T',), the same 0.5 s steps (the common prefix is compared)."""
    n = len(boxes)
    out = np.zeros(n, bool)
    if n == 0:
        return out
    out |= np.hypot(boxes[:, 0], boxes[:, 1]) < RELEVANT_DIST_M
    t = min(futures.shape[1], len(ego_future))
    if t:
        d = np.hypot(futures[:, :t, 0] - ego_future[None, :t, 0], futures[:, :t, 1] - ego_future[None, :t, 1])
        ok = valid[:, :t] & np.asarray(ego_valid[:t], bool)[None]
        out |= (ok & (d < RELEVANT_DIST_M)).any(1)
    if lead >= 0:
        out[lead] = True
    return out


def governing_light(light_state: np.ndarray, stop_base: np.ndarray, on_route: np.ndarray
                    ) -> tuple[int, float | None]:
    """(LIGHTS index, distance to its stop line [m] or None) of the light governing the ego's lane:
    the nearest stop line of an on-route head ahead (its centre 0 < x < STOP_LINE_RANGE_M, |y| < 12
    m, base_link). ``light_state`` (L,) CarlaTrafficLightStatus values, ``stop_base`` (L, 2, 2)."""
    if len(light_state) == 0:
        return LIGHT_NONE, None
    nearest = next_stop_line(stop_base, on_route)
    if nearest is None:
        return LIGHT_NONE, None
    k, dist = nearest
    return LIGHT_OF_CARLA_STATE.get(int(light_state[k]), LIGHT_NONE), dist


def next_stop_line(stop_base: np.ndarray, on_route: np.ndarray) -> tuple[int, float] | None:
    """(index, distance ahead [m]) of the stop line governing the ego's lane -- the nearest stop
    line of an on-route head ahead (its centre 0 < x < STOP_LINE_RANGE_M, |y| < 12 m, base_link)
    -- or None. ``stop_base`` (L, 2, 2) stop-line end points in base_link, ``on_route`` (L,) bool.
    The ``stop_line_m`` of the dataset (via :func:`governing_light`) and of the planner node."""
    mid = np.asarray(stop_base, np.float64).reshape(-1, 2, 2).mean(1)
    if len(mid) == 0:
        return None
    ok = np.asarray(on_route, bool) & (mid[:, 0] > 0.0) & (mid[:, 0] < STOP_LINE_RANGE_M) & (np.abs(mid[:, 1]) < 12.0)
    if not ok.any():
        return None
    cand = np.nonzero(ok)[0]
    k = int(cand[np.argmin(mid[cand, 0])])
    return k, float(mid[k, 0])
