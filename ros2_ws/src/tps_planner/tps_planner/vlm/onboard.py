"""The planner's per-frame step as the planner node runs it (numpy, no ROS): one frame's inputs ->
:func:`tps_planner.vlm.inputs.frame_inputs` -> :class:`tps_planner.vlm.runtime.PlannerRuntime` ->
the ego plan in ``map``, the stage-2 forecasts, the stage-1 scene understanding, the rationale
rendered from exactly the stage-1/2 outputs the plan was conditioned on and its consistency
signal (:mod:`tps_planner.vlm.rationale`).

Frames: the model works in the ego's ``base_link`` at the frame's stamp (REP-103); the plan is
also returned in ``map`` (the ego pose of the stamp) as a :class:`tps_planner.trajectory.Trajectory`
with the ego's own pose as its first point (t = 0), then the model's 8 points at 0.5 .. 4.0 s.
Speeds are the path's finite differences over the points' times; accelerations their gradient;
headings the direction of travel between points (held where the plan stands still). Before that,
the lateral guard (:func:`tps_planner.vlm.route_anchor.lateral_guard`) holds the model's points
within ``lateral_band_m`` of the route they were planned on (the ego's own offset included);
``PlanResult.lateral_shift_m`` says how far it moved them.

Ego motion the model reads (as ``training/planner_data.py`` computes it from the simulator):
acceleration = speed difference to the previous odometry over its time step, yaw rate = heading
difference over it (:func:`ego_motion`). The distance to the next stop line is
:func:`route_stop_line_m`: the heads the route drives through, their stop lines in base_link,
then :func:`tps_planner.vlm.labels.next_stop_line` -- the rule the dataset's ``stop_line_m`` uses.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
from tps_common.geometry import to_local, wrap_angle

from tps_planner.trajectory import SOURCE_PLANNER, Trajectory
from tps_planner.vlm.inputs import frame_inputs, stack_frames
from tps_planner.vlm.labels import next_stop_line
from tps_planner.vlm.layout import INTENTS, intent_to_msg, route_points_ahead
from tps_planner.vlm.rationale import Consistency, Rationale, check_consistency, render_rationale
from tps_planner.vlm.route_anchor import lateral_guard

MIN_HEADING_STEP_M = 0.05   # plan points closer than this keep the previous heading
LATERAL_BAND_M = 0.5         # the lateral guard's half-width around the route (route_anchor.lateral_guard)
MAX_MOTION_DT_S = 0.5       # the previous odometry must be this recent for accel / yaw rate


class InputError(ValueError):
    """An input the planner cannot use; ``input`` names it (tokens, odometry, route, instruction,
    image, light_info, model)."""

    def __init__(self, input_name: str, reason: str) -> None:
        super().__init__(f"{input_name}: {reason}")
        self.input = input_name
        self.reason = reason


@dataclass(frozen=True)
class AgentForecastResult:
    """Stage-2 forecast of one agent (base_link of the frame)."""

    agent_id: int
    probabilities: np.ndarray   # (K,)
    modes: np.ndarray           # (K, T, 2) [m]


@dataclass(frozen=True)
class AgentSceneResult:
    """Stage-1 output for one agent."""

    agent_id: int
    relevance: float            # [0, 1]
    intent: int                 # layout.INTENTS index
    intent_msg: int             # tps_msgs/AgentRelevance INTENT_* (layout.intent_to_msg)
    xy: np.ndarray              # (2,) base_link [m]


@dataclass
class PlanResult:
    """What one frame produced."""

    stamp_s: float
    trajectory: Trajectory          # map, source planner, t = 0 at the ego
    plan_base: np.ndarray           # (P, 2) the model's points, base_link [m]
    sigma_m: np.ndarray             # (P,) per-point position sigma [m]
    forecasts: list[AgentForecastResult]
    agents: list[AgentSceneResult]
    scene: int                      # layout.SCENES index
    light: int                      # layout.LIGHTS index
    lead_agent_id: int | None
    rationale: Rationale
    consistency: Consistency
    forecast_dt_s: float
    camera_used: bool
    stop_line_m: float | None
    timings_ms: dict = field(default_factory=dict)
    lateral_shift_m: float = 0.0    # the largest shift the lateral guard made to the model's points [m]


def ego_motion(speed_mps: float, yaw: float, stamp_s: float,
               prev: tuple[float, float, float] | None) -> tuple[float, float]:
    """(acceleration [m/s^2], yaw rate [rad/s]) from the previous odometry ``prev`` = (stamp [s],
    speed [m/s], yaw [rad]); (0, 0) without one within :data:`MAX_MOTION_DT_S`."""
    if prev is None:
        return 0.0, 0.0
    dt = stamp_s - prev[0]
    if not 1e-6 < dt <= MAX_MOTION_DT_S:
        return 0.0, 0.0
    return (speed_mps - prev[1]) / dt, float(wrap_angle(yaw - prev[2])) / dt


def route_stop_line_m(heads, route_xy: np.ndarray, pose: np.ndarray) -> float | None:
    """Distance ahead [m] to the stop line governing the ego's lane, or None (module docstring).

    Args:
        heads: :class:`tps_common.traffic_lights.LightHead` s (map knowledge).
        route_xy: (R, 2) the route, map [m].
        pose: (3,) ego x, y, yaw in map.
    """
    from tps_common.traffic_lights import heads_on_route

    heads = list(heads)
    if not heads:
        return None
    on_ids = {h.id for h, _ in heads_on_route(heads, route_xy)}
    ends = np.stack([h.stop_line() for h in heads])                      # (L, 2, 2) map
    base = to_local(ends.reshape(-1, 2), np.asarray(pose[:2], np.float64), float(pose[2])).reshape(ends.shape)
    nearest = next_stop_line(base, np.array([h.id in on_ids for h in heads], bool))
    return None if nearest is None else nearest[1]


def plan_to_trajectory(plan_base: np.ndarray, sigma_m: np.ndarray, pose: np.ndarray, speed_mps: float,
                       stamp_s: float, dt_s: float, confidence: float) -> Trajectory:
    """The model's plan (P, 2) base_link -> a map :class:`Trajectory` starting at the ego (module
    docstring)."""
    p = np.concatenate([[[0.0, 0.0]], np.asarray(plan_base, np.float64).reshape(-1, 2)])
    n = len(p)
    t = dt_s * np.arange(n, dtype=np.float64)
    c, s = math.cos(pose[2]), math.sin(pose[2])
    xy = np.stack([pose[0] + c * p[:, 0] - s * p[:, 1], pose[1] + s * p[:, 0] + c * p[:, 1]], axis=1)
    yaw = np.empty(n)
    yaw[0] = pose[2]
    for i in range(1, n):
        d = xy[i] - xy[i - 1]
        yaw[i] = math.atan2(d[1], d[0]) if math.hypot(*d) >= MIN_HEADING_STEP_M else yaw[i - 1]
    speed = np.empty(n)
    speed[0] = max(float(speed_mps), 0.0)
    for i in range(1, n):
        j0, j1 = i - 1, min(i + 1, n - 1)
        speed[i] = math.hypot(*(p[j1] - p[j0])) / (t[j1] - t[j0])
    accel = np.gradient(speed, t)
    sigma = np.concatenate([[0.0], np.asarray(sigma_m, np.float64).reshape(-1)])
    return Trajectory(stamp_s=float(stamp_s), t_s=t, xy=xy, yaw=yaw, speed_mps=speed, accel_mps2=accel,
                      source=SOURCE_PLANNER, confidence=float(confidence), frame_id="map", sigma_m=sigma)


def plan_confidence(sigma_m: np.ndarray) -> float:
    """Overall confidence in [0, 1] from the per-point sigmas: 1 / (1 + mean sigma [m])."""
    return float(1.0 / (1.0 + float(np.mean(sigma_m))))


class OnboardPlanner:
    """A loaded :class:`~tps_planner.vlm.runtime.PlannerRuntime` (or anything with ``cfg`` and
    ``run(batch, texts)``) and the per-frame step around it."""

    def __init__(self, runtime, lateral_band_m: float = LATERAL_BAND_M) -> None:
        self.runtime = runtime
        self.cfg = runtime.cfg
        self.lateral_band_m = float(lateral_band_m)

    def update(self, *, stamp_s: float, pose: np.ndarray, speed_mps: float, accel_mps2: float,
               yaw_rate_rps: float, route_xy: np.ndarray, stop_line_m: float | None, text: str,
               target_speed_mps: float, tok_code: np.ndarray, tok_geom: np.ndarray, tok_qerr: np.ndarray,
               tok_id: np.ndarray, image: np.ndarray | None) -> PlanResult:
        """One frame (module docstring). ``pose`` (3,) map x, y, yaw of base_link at ``stamp_s``;
        tokens in base_link; ``image`` (H, W, 3) uint8 RGB or None.

        Raises:
            InputError: an input the model cannot read (named).
        """
        cfg = self.cfg
        t0 = time.perf_counter()
        pose = np.asarray(pose, np.float64).reshape(3)
        route = np.asarray(route_xy, np.float64).reshape(-1, 2)
        if len(route) < 2:
            raise InputError("route", f"{len(route)} route point(s): needs at least 2")
        if not np.all(np.isfinite(route)):
            raise InputError("route", "route contains NaN/inf")
        code = np.asarray(tok_code).reshape(-1)
        if len(code) and (code.min() < 0 or code.max() >= cfg.codebook_size):
            raise InputError("tokens", f"code out of range 0..{cfg.codebook_size - 1}: "
                             f"{int(code.min())}..{int(code.max())}")
        geom = np.asarray(tok_geom, np.float64).reshape(-1, 7) if np.size(tok_geom) else np.zeros((0, 7))
        bad = ~np.isfinite(geom).all(1) | ~np.isfinite(np.asarray(tok_qerr, np.float64).reshape(-1))
        if bad.any():
            raise InputError("tokens", f"token row {int(np.nonzero(bad)[0][0])} has a non-finite value")
        for name, v in (("speed", speed_mps), ("acceleration", accel_mps2), ("yaw rate", yaw_rate_rps)):
            if not math.isfinite(v):
                raise InputError("odometry", f"{name} is not finite ({v})")
        if not math.isfinite(target_speed_mps):
            raise InputError("instruction", f"target_speed_mps is not finite ({target_speed_mps})")
        try:
            frame = frame_inputs(cfg, speed_mps=speed_mps, accel_mps2=accel_mps2, yaw_rate_rps=yaw_rate_rps,
                                 route_xy=route, pose=pose, stop_line_m=stop_line_m,
                                 target_speed_mps=target_speed_mps, tok_code=code, tok_geom=geom,
                                 tok_qerr=tok_qerr, tok_id=tok_id, image=image)
        except ValueError as exc:
            msg = str(exc)
            name = "image" if "camera" in msg else "odometry" if "ego" in msg else "tokens"
            raise InputError(name, msg) from exc
        t1 = time.perf_counter()
        out = self.runtime.run(stack_frames([frame]), [text])
        t2 = time.perf_counter()
        a = int(out["relevance"].shape[1])           # the agent slots the runtime kept
        mask = frame["agent_mask"][:a]
        ids = frame["agent_ids"][:a]
        idx = frame["agent_index"][:a]
        agent_xy = np.zeros((a, 2))
        agent_xy[mask] = geom[idx[mask], :2]
        p1 = {k: np.asarray(out[k][0]) for k in ("relevance", "intent", "lead", "no_lead", "scene", "light")}
        p2 = {k: np.asarray(out[k][0]) for k in ("modes", "mode_probs")}
        plan, shift = lateral_guard(np.asarray(out["trajectory"][0], np.float64), route, pose, self.lateral_band_m,
                                    dt_s=cfg.plan_dt_s)
        sigma = np.exp(np.asarray(out["log_sigma"][0], np.float64))
        path = route_points_ahead(route, pose, cfg.route_points, cfg.route_spacing_m)
        rat = render_rationale(p1, p2, mask, ids, agent_xy, stop_line_m=stop_line_m, speed_mps=speed_mps,
                               path_xy=path, forecast_dt_s=cfg.forecast_dt_s)
        cons = check_consistency(rat, plan, p2, cfg.plan_dt_s, cfg.forecast_dt_s)
        forecasts, agents = [], []
        for k in np.nonzero(mask)[0]:
            forecasts.append(AgentForecastResult(int(ids[k]), p2["mode_probs"][k].astype(np.float64),
                                                 p2["modes"][k].astype(np.float64)))
            intent = int(np.argmax(p1["intent"][k]))
            agents.append(AgentSceneResult(int(ids[k]), float(p1["relevance"][k]), intent, intent_to_msg(intent),
                                           agent_xy[k].copy()))
        traj = plan_to_trajectory(plan, sigma, pose, speed_mps, stamp_s, cfg.plan_dt_s, plan_confidence(sigma))
        t3 = time.perf_counter()
        return PlanResult(
            stamp_s=float(stamp_s), trajectory=traj, plan_base=plan, sigma_m=sigma, forecasts=forecasts,
            agents=agents, scene=rat.scene, light=rat.light,
            lead_agent_id=int(ids[rat.lead]) if rat.lead >= 0 else None, rationale=rat, consistency=cons,
            forecast_dt_s=cfg.forecast_dt_s, camera_used=bool(frame["camera_valid"]), stop_line_m=stop_line_m,
            timings_ms={"inputs_ms": 1e3 * (t1 - t0), "model_ms": 1e3 * (t2 - t1), "outputs_ms": 1e3 * (t3 - t2)},
            lateral_shift_m=shift)


def intent_name(intent: int) -> str:
    """``keep_lane`` etc. of a layout.INTENTS index."""
    return INTENTS[int(intent)] if 0 <= int(intent) < len(INTENTS) else "unknown"
