"""A synthetic bridge episode log (tps_sim.episode_log format) for the evaluation's unit tests."""

from __future__ import annotations

import json

import numpy as np


def box_row(x, y, yaw, length, width, vx, vy, speed):
    """One BOX_COLUMNS row: x, y, z, yaw, length, width, height, vx, vy, speed, accel, yaw rate."""
    return [x, y, 0.75, yaw, length, width, 1.5, vx, vy, speed, 0.0, 0.0]


def log_arrays(dt_s: float, ego: np.ndarray, agents: list[list[list[float]]], agent_ids: list[list[int]],
               static_box: np.ndarray, coll_ids: list[list[int]] | None = None,
               stamp_offset_s: float = 0.0) -> dict:
    """The arrays of a log: ``ego`` (T, 12), per step the agents' rows and ids, the statics (S, 8)
    (ids 1000, 1001, ...), per step the ids the ego touched; stamps offset by ``stamp_offset_s``
    (a clock-jump fault)."""
    steps = len(ego)
    t = np.arange(steps) * dt_s
    coll_ids = coll_ids or [[] for _ in range(steps)]
    rows = [r for step in agents for r in step]
    return {
        "meta_json": json.dumps({"dt_s": dt_s, "end_reason": "duration", "scenario": "synthetic"}),
        "t_s": t, "step": np.arange(steps), "stamp_s": t + stamp_offset_s, "ego": np.asarray(ego, float),
        "route_progress_m": np.asarray(ego, float)[:, 0],
        "agent_offsets": np.concatenate([[0], np.cumsum([len(a) for a in agents])]).astype(np.int64),
        "agent_id": np.array([i for step in agent_ids for i in step], np.int64),
        "agent_class": np.ones(len(rows), np.uint8), "agent_box": np.array(rows, float).reshape(-1, 12),
        "static_id": 1000 + np.arange(len(static_box)), "static_box": np.asarray(static_box, float).reshape(-1, 8),
        "collision_offsets": np.concatenate([[0], np.cumsum([len(c) for c in coll_ids])]).astype(np.int64),
        "collision_ids": np.array([i for c in coll_ids for i in c], np.int64),
        "control": np.zeros((steps, 5)), "control_received": np.ones(steps, bool),
        "step_timeout": np.zeros(steps, bool), "e2e_latency_s": np.full(steps, 0.02),
        "wall_time_s": t, "events_json": json.dumps([[] for _ in range(steps)]),
        "route": np.array([[0.0, 0.0], [400.0, 0.0]]),
    }
