"""Episode traces: the bridge's per-step episode log (read and validated by
:mod:`tps_sim.episode_log`) turned into an :class:`~tps_eval.metrics.EpisodeTrace` and BEV
frames.

No ROS here: the log is a file (or the arrays of an in-memory :class:`tps_sim.episode_log.EpisodeLog`);
what the evaluation heard over DDS arrives as plain data (:class:`tps_eval.collector.CollectedData`).
"""

from __future__ import annotations

import numpy as np
from tps_sim.episode_log import BOX, STATIC, EpisodeLogError

from tps_eval.collector import CollectedData, stamp_key
from tps_eval.metrics import EpisodeTrace, LightTrace, ObjectFrame, ego_corners
from tps_eval.road import RoadQuery


def _frame(ids: np.ndarray, cls: np.ndarray, box: np.ndarray) -> ObjectFrame:
    return ObjectFrame(ids, box[:, [BOX["x"], BOX["y"]]], box[:, BOX["yaw"]],
                       box[:, BOX["length"]], box[:, BOX["width"]],
                       box[:, [BOX["vx"], BOX["vy"]]], cls.astype(np.int64))


def agent_frames(log: dict) -> list[ObjectFrame]:
    """Per step, the dynamic agents of the log."""
    off = np.asarray(log["agent_offsets"], np.int64)
    ids = np.asarray(log["agent_id"], np.int64)
    cls = np.asarray(log["agent_class"], np.int64)
    box = np.asarray(log["agent_box"], np.float64).reshape(-1, len(BOX))
    return [_frame(ids[off[t]:off[t + 1]], cls[off[t]:off[t + 1]], box[off[t]:off[t + 1]])
            for t in range(off.shape[0] - 1)]


def static_frame(log: dict) -> ObjectFrame:
    """The static objects (clutter, debris) of the log; class ids are their MAT_* materials."""
    box = np.asarray(log["static_box"], np.float64).reshape(-1, len(STATIC))
    n = box.shape[0]
    return ObjectFrame(np.asarray(log["static_id"], np.int64), box[:, [STATIC["x"], STATIC["y"]]],
                       box[:, STATIC["yaw"]], box[:, STATIC["length"]], box[:, STATIC["width"]],
                       np.zeros((n, 2)), box[:, STATIC["material"]].astype(np.int64))


def collisions_per_step(log: dict) -> list[tuple[int, ...]]:
    """Per step, the ids the ego's box overlapped (the world's oriented-box check)."""
    off = np.asarray(log["collision_offsets"], np.int64)
    ids = np.asarray(log["collision_ids"], np.int64)
    return [tuple(int(i) for i in ids[off[t]:off[t + 1]]) for t in range(off.shape[0] - 1)]


def selected_sources(log: dict, collected: CollectedData | None) -> np.ndarray | None:
    """(T,) source of the trajectory the controller followed at each step (-1: none heard), by
    matching trajectory stamps to the steps' published stamps; None without a collector."""
    if collected is None:
        return None
    keys = [stamp_key(s) for s in np.asarray(log["stamp_s"], np.float64)]
    return np.array([collected.sources.get(k, -1) for k in keys], np.int64)


def light_trace(log: dict) -> LightTrace | None:
    """The traffic lights of the log (its optional ``light_*`` keys), None without lights."""
    if "light_id" not in log or not len(log["light_id"]):
        return None
    stop = np.asarray(log["light_stop"], np.float64).reshape(-1, 4)
    return LightTrace(log["light_id"], stop[:, 0:2], stop[:, 2], stop[:, 3], log["light_state"],
                      np.asarray(log["light_head"], np.float64))


def trace_from_log(log: dict, road: RoadQuery | None, collected: CollectedData | None = None,
                   meta: dict | None = None, route_length_m: float | None = None,
                   route_goal_m: float | None = None) -> EpisodeTrace:
    """An :class:`EpisodeTrace` from a loaded log, the road of its scenario (drivable area and
    lane straddling; None skips both) and what the collector heard (sources, latencies).
    ``route_length_m`` (the route's end, arc length from its first point) defaults to the
    logged route's length; ``route_goal_m`` (distance from the start) ends the scored route
    earlier."""
    ego = np.asarray(log["ego"], np.float64).reshape(-1, len(BOX))
    t = ego.shape[0]
    dt = float(log["meta"].get("dt_s", 0.1))
    agents = agent_frames(log)
    if len(agents) != t:
        raise EpisodeLogError(f"episode log: {len(agents)} agent frames for {t} ego rows")
    length = float(np.median(ego[:, BOX["length"]])) if t else 4.6
    width = float(np.median(ego[:, BOX["width"]])) if t else 1.9
    e2e = np.asarray(log["e2e_latency_s"], np.float64) * 1000.0
    # Step 0's control comes after the bridge's start-up hold (every node subscribed, readers
    # matched, models loaded and warmed up: 6-9 s in the demo), not after one cycle of the graph:
    # it is the episode's start-up, kept apart from the per-cycle latency percentiles.
    startup_ms = float(e2e[0]) if e2e.size and np.isfinite(e2e[0]) else None
    e2e = e2e[1:]
    trace_kwargs = dict(
        dt_s=dt, ego_xy=ego[:, [BOX["x"], BOX["y"]]], ego_yaw=ego[:, BOX["yaw"]],
        ego_speed=ego[:, BOX["speed_mps"]], ego_length_m=length, ego_width_m=width,
        agents=agents, statics=static_frame(log), route=np.asarray(log["route"], float),
        collision_ids=collisions_per_step(log),
        selected_source=selected_sources(log, collected),
        step_timeouts=int(np.count_nonzero(np.asarray(log["step_timeout"], bool))),
        e2e_latency_ms=e2e[np.isfinite(e2e)],
        startup_latency_ms=startup_ms,
        node_latency_ms=dict(collected.node_latency_ms) if collected else {},
        # progress is projected onto the logged route here (row 0 of the log's own
        # route_progress_m did not match the ego position in format_version 1)
        route_length_m=route_length_m,
        route_goal_m=route_goal_m,
        meta=dict(meta or {}),
        lights=light_trace(log))
    trace = EpisodeTrace(**trace_kwargs)
    if road is None:
        return trace
    corners = ego_corners(trace)
    drivable = road.contains(corners.reshape(-1, 2)).reshape(t, 4)
    multi = np.array([road.straddling(c) for c in corners], bool)
    return EpisodeTrace(**dict(trace_kwargs, drivable=drivable, multi_lane=multi))
