"""Would the planner's candidate trajectory collide within the horizon? The counterfactual label of
issue 15's monitor AUROC, read off a closed-loop episode.

The monitor judges the planner's candidate every cycle, also while the fallback drives (full
stack), so most candidates are never executed and "an incident followed" (the label of
:mod:`tps_eval.monitor_calib`) says nothing about them: on the stack's runs it had no positive
cycle at all. This module asks the issue's own question instead. For every monitor cycle whose
record carries the candidate (``monitor.jsonl`` ``cand``: rows ``t, x, y, yaw, speed``, times from
the cycle's stamp, map frame), the ego's footprint is moved along the candidate -- linear between
its points, the ego's logged pose at the stamp as the first point -- every ``step_s`` up to
``horizon_s``, and checked against the boxes the world logged for the other agents and the static
objects at those times. A contact counts when :func:`tps_eval.metrics.classify_collision` calls it
at fault for that pose and speed (front, stopped agent, static object, or lateral while the
footprint straddles lanes), the same reading as the driving metrics' NC.

Open loop, by construction: the other agents move as they did in the episode, reacting to the
vehicle that was really driven, not to the candidate. A candidate that brakes in front of a
follower is not at fault (rear contact), as in NC.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from tps_eval import metrics as M

DEFAULT_HORIZON_S = 3.0
DEFAULT_STEP_S = 0.1
CAND_KEY = "cand"
CAND_COLUMNS = ("t", "x", "y", "yaw", "speed")


def parse_candidate(raw) -> np.ndarray | None:
    """(N, 5) ``t, x, y, yaw, speed`` of a record's ``cand`` (None when absent, malformed or
    non-finite: such a cycle gets no label rather than a wrong one)."""
    if raw is None:
        return None
    try:
        arr = np.asarray(raw, np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != 2 or arr.shape[1] != len(CAND_COLUMNS) or arr.shape[0] == 0 or not np.isfinite(arr).all():
        return None
    if np.any(np.diff(arr[:, 0]) < -1e-9):
        return None
    return arr


def sample_path(start: Sequence[float], cand: np.ndarray, horizon_s: float, step_s: float) -> np.ndarray:
    """(K, 5) ``t, x, y, yaw, speed`` every ``step_s`` in (0, min(horizon, last point)], linear
    between ``start`` (the ego at t 0: t, x, y, yaw, speed) and the candidate's points (headings
    interpolated on the unwrapped angle)."""
    pts = np.vstack([np.asarray(start, np.float64).reshape(1, 5), cand[cand[:, 0] > 1e-9]])
    end = min(float(horizon_s), float(pts[-1, 0]))
    if end <= 0.0:
        return np.zeros((0, 5))
    ts = np.arange(step_s, end + 1e-9, step_s)
    yaw = np.unwrap(pts[:, 3])
    return np.column_stack([ts] + [np.interp(ts, pts[:, 0], col) for col in (pts[:, 1], pts[:, 2], yaw, pts[:, 4])])


class EpisodeWorld:
    """The logged world of one episode, queried by stamp: ego, agents and statics per step."""

    def __init__(self, log: dict, road=None) -> None:  # noqa: ANN001 - tps_eval.road.RoadQuery
        from tps_sim.episode_log import BOX

        from tps_eval.trace import agent_frames, static_frame

        ego = np.asarray(log["ego"], np.float64).reshape(-1, len(BOX))
        self.stamps = np.asarray(log["stamp_s"], np.float64)
        self.dt = float(log["meta"].get("dt_s", 0.1))
        self.ego = ego
        self.length = float(np.median(ego[:, BOX["length"]])) if len(ego) else 4.6
        self.width = float(np.median(ego[:, BOX["width"]])) if len(ego) else 1.9
        self.agents = agent_frames(log)
        self.statics = static_frame(log)
        self._static_boxes = np.column_stack([self.statics.xy, self.statics.yaw, self.statics.length,
                                              self.statics.width]) if len(self.statics.ids) else np.zeros((0, 5))
        self._static_corners = self.statics.corners() if len(self.statics.ids) else np.zeros((0, 4, 2))
        self.road = road
        self._box = BOX

    def step_of(self, stamp_s: float) -> int | None:
        """The step whose published stamp is ``stamp_s`` (within half a step), else None."""
        if not len(self.stamps):
            return None
        k = int(np.argmin(np.abs(self.stamps - stamp_s)))
        return k if abs(self.stamps[k] - stamp_s) <= 0.5 * self.dt + 1e-6 else None

    def ego_state(self, k: int) -> tuple[float, float, float, float]:
        b = self._box
        e = self.ego[k]
        return float(e[b["x"]]), float(e[b["y"]]), float(e[b["yaw"]]), float(e[b["speed_mps"]])

    def at_fault_contact(self, k: int, x: float, y: float, yaw: float, speed: float) -> int | None:
        """The id of an object the ego's footprint at (x, y, yaw) moving at ``speed`` would hit at
        fault at step ``k`` (None: no such contact)."""
        from tps_common.geometry import boxes_overlap

        box = np.array([x, y, yaw, self.length, self.width])
        fr = self.agents[k]
        multi: bool | None = None
        if len(fr.ids):
            others = np.column_stack([fr.xy, fr.yaw, fr.length, fr.width])
            hits = np.flatnonzero(boxes_overlap(box, others))
            if hits.size:
                corners = fr.corners()
                for j in hits:
                    if multi is None:
                        multi = self._straddling(x, y, yaw)
                    _, fault = M.classify_collision(
                        np.array([x, y]), yaw, speed, self.length, self.width, corners[j], fr.xy[j],
                        float(np.linalg.norm(fr.velocity[j])), False, multi)
                    if fault:
                        return int(fr.ids[j])
        if len(self._static_boxes):
            hits = np.flatnonzero(boxes_overlap(box, self._static_boxes))
            for j in hits:
                _, fault = M.classify_collision(
                    np.array([x, y]), yaw, speed, self.length, self.width, self._static_corners[j],
                    self.statics.xy[j], 0.0, True, False)
                if fault:
                    return int(self.statics.ids[j])
        return None

    def _straddling(self, x: float, y: float, yaw: float) -> bool:
        if self.road is None:
            return False
        from tps_common.geometry import box_corners

        return bool(self.road.straddling(box_corners(np.array([x, y]), yaw, self.length, self.width)[0]))


def candidate_collision(world: EpisodeWorld, stamp_s: float, cand: np.ndarray,
                        horizon_s: float = DEFAULT_HORIZON_S, step_s: float = DEFAULT_STEP_S) -> dict | None:
    """``{"collides": bool, "t_s": time of the first at-fault contact or None, "id": its object}``
    for one candidate planned at ``stamp_s``; None when the stamp is not in the log."""
    k0 = world.step_of(stamp_s)
    if k0 is None:
        return None
    x, y, yaw, v = world.ego_state(k0)
    path = sample_path((0.0, x, y, yaw, v), cand, horizon_s, step_s)
    n = len(world.agents)
    for t, px, py, pyaw, pv in path:
        k = k0 + int(round(t / world.dt))
        if k >= n:
            break
        hit = world.at_fault_contact(k, px, py, pyaw, pv)
        if hit is not None:
            return {"collides": True, "t_s": float(t), "id": hit}
    return {"collides": False, "t_s": None, "id": None}


def label_records(records: Sequence[dict], log: dict, road=None,  # noqa: ANN001 - RoadQuery
                  horizon_s: float = DEFAULT_HORIZON_S, step_s: float = DEFAULT_STEP_S) -> list[bool | None]:
    """Per monitor record (in the given order): True / False "the candidate would collide (at
    fault) within ``horizon_s``", None for a cycle without a usable recorded candidate or whose
    stamp is not in the log."""
    world = EpisodeWorld(log, road)
    out: list[bool | None] = []
    for r in records:
        cand = parse_candidate(r.get(CAND_KEY))
        try:
            stamp = float(r["stamp_s"])
        except (KeyError, TypeError, ValueError):
            stamp = math.nan
        if cand is None or not math.isfinite(stamp):
            out.append(None)
            continue
        res = candidate_collision(world, stamp, cand, horizon_s, step_s)
        out.append(None if res is None else bool(res["collides"]))
    return out
