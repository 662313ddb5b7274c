"""The faithful rationale and its consistency signal (numpy only, no torch, no ROS).

The rationale is *rendered*, never generated: :func:`render_rationale` turns the stage-1
probabilities and stage-2 forecasts that stage 3 was conditioned on (``out["p1"]`` / ``out["p2"]``
of :class:`~tps_planner.vlm.model.VLMPlanner`, one frame via :func:`frame_outputs`) into a short
text plus a list of machine-checkable :class:`Claim` s. :func:`check_consistency` then compares the
claims with the planned trajectory -- "stopping for the red light" while the plan runs past the
stop line, "following / yielding to agent 7" while the plan drives into that agent's forecast --
for the monitor (``SceneUnderstanding.rationale`` carries the text).

Rules (thresholds below):

* scene: the most likely scene class; light: the most likely state of the light governing the
  ego's lane (``none`` = no such light);
* ``stop_for_light``: red (or yellow with room to stop at :data:`COMFORT_DECEL_MPS2`) with
  probability >= :data:`CLAIM_PROB` and a known stop line ahead -> the plan must end within
  :data:`STOP_MARGIN_M` past it;
* ``follow_lead``: the most likely lead pointer names an agent -> the plan keeps >= :data:`GAP_M`
  from that agent's most likely forecast at every common time;
* ``yield_to``: a relevant agent (relevance >= :data:`CLAIM_PROB`, not the lead) whose most likely
  forecast enters the ego's corridor (:data:`CORRIDOR_M` either side of the route ahead) within
  the forecast horizon -> the same gap check.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tps_planner.vlm.layout import INTENTS, LIGHT_NONE, LIGHT_RED, LIGHT_YELLOW, LIGHTS, SCENES

CLAIM_PROB = 0.5
COMFORT_DECEL_MPS2 = 3.0
STOP_MARGIN_M = 1.0
GAP_M = 3.0
CORRIDOR_M = 2.0
MAX_WATCH = 3


@dataclass(frozen=True)
class Claim:
    """One checkable statement of the rationale."""

    kind: str                   # stop_for_light | follow_lead | yield_to
    text: str
    agent: int = -1             # row of the agent in the planner's agent list (-1: none)
    agent_id: int = -1          # its AgentToken.agent_id
    value: float = float("nan")  # stop-line distance [m] or corridor entry time [s]


@dataclass
class Rationale:
    text: str
    claims: list[Claim] = field(default_factory=list)
    scene: int = 0
    light: int = LIGHT_NONE
    lead: int = -1              # agent row, -1 = none


@dataclass
class Consistency:
    consistent: bool
    score: float                # 1 - violated claims / claims (1.0 without claims)
    violations: list[str] = field(default_factory=list)


def frame_outputs(out: dict, i: int) -> tuple[dict, dict, np.ndarray, np.ndarray]:
    """(p1, p2, trajectory (P, 2), sigma (P,)) of frame ``i`` of a planner output, as numpy."""

    def np_(x):
        return x[i].detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x[i])

    p1 = {k: np_(v) for k, v in out["p1"].items()}
    p2 = {k: np_(v) for k, v in out["p2"].items()}
    return p1, p2, np_(out["s3"]["trajectory"]), np.exp(np_(out["s3"]["log_sigma"]))


def _corridor_entry(path: np.ndarray, fut: np.ndarray) -> int:
    """First forecast step whose point lies within CORRIDOR_M of the path ahead, or -1."""
    a, b = path[:-1], path[1:]
    seg = b - a
    l2 = np.maximum((seg ** 2).sum(1), 1e-12)
    for t, p in enumerate(fut):
        u = np.clip(((p - a) * seg).sum(1) / l2, 0.0, 1.0)
        d = np.hypot(*(a + u[:, None] * seg - p).T).min()
        if d < CORRIDOR_M and p[0] > 0.0:
            return t
    return -1


def render_rationale(p1: dict, p2: dict, agent_mask: np.ndarray, agent_ids: np.ndarray,
                     agent_xy: np.ndarray, stop_line_m: float | None = None, speed_mps: float = 0.0,
                     path_xy: np.ndarray | None = None, forecast_dt_s: float = 0.5) -> Rationale:
    """Text and claims of one frame from its stage-1 probabilities ``p1`` (relevance (A,), intent
    (A, NI), lead (A,), no_lead, scene (NS,), light (NL,)) and stage-2 forecasts ``p2`` (modes (A, K,
    T, 2) base_link, mode_probs (A, K)). ``path_xy``: the route ahead in base_link (default: straight
    ahead)."""
    mask = np.asarray(agent_mask, bool)
    scene = int(np.argmax(p1["scene"]))
    light = int(np.argmax(p1["light"]))
    parts = [SCENES[scene].replace("_", " ")]
    claims: list[Claim] = []
    if light != LIGHT_NONE:
        where = f" (stop line {stop_line_m:.0f} m)" if stop_line_m is not None else ""
        parts.append(f"light ahead {LIGHTS[light]}{where}")
        p_light = float(p1["light"][light])
        can_stop = speed_mps ** 2 / (2.0 * COMFORT_DECEL_MPS2) <= (stop_line_m or 0.0)
        if (stop_line_m is not None and stop_line_m > 0.0 and p_light >= CLAIM_PROB
                and (light == LIGHT_RED or (light == LIGHT_YELLOW and can_stop))):
            text = f"stopping for the {LIGHTS[light]} light"
            parts.append(text)
            claims.append(Claim("stop_for_light", text, value=float(stop_line_m)))
    lead_scores = np.where(mask, np.asarray(p1["lead"], np.float64), -1.0)
    lead = -1
    if mask.any() and lead_scores.max() > float(p1["no_lead"]):
        lead = int(np.argmax(lead_scores))
        intent = INTENTS[int(np.argmax(p1["intent"][lead]))].replace("_", " ")
        dist = float(np.hypot(*agent_xy[lead]))
        text = f"following agent {int(agent_ids[lead])} ({intent}, {dist:.0f} m ahead)"
        parts.append(text)
        claims.append(Claim("follow_lead", text, lead, int(agent_ids[lead])))
    path = (np.asarray(path_xy, np.float64).reshape(-1, 2) if path_xy is not None and len(path_xy)
            else np.array([[60.0, 0.0]]))
    path = np.concatenate([[[0.0, 0.0]], path])
    rel = np.where(mask, np.asarray(p1["relevance"], np.float64), 0.0)
    watched = [k for k in np.argsort(-rel, kind="stable") if rel[k] >= CLAIM_PROB and k != lead][:MAX_WATCH]
    for k in watched:
        intent = INTENTS[int(np.argmax(p1["intent"][k]))].replace("_", " ")
        best = int(np.argmax(p2["mode_probs"][k]))
        t = _corridor_entry(path, np.asarray(p2["modes"][k, best], np.float64))
        if t >= 0:
            when = (t + 1) * forecast_dt_s
            text = f"yielding to agent {int(agent_ids[k])} ({intent}, in our path in {when:.1f} s)"
            claims.append(Claim("yield_to", text, int(k), int(agent_ids[k]), when))
        else:
            text = f"watching agent {int(agent_ids[k])} ({intent})"
        parts.append(text)
    return Rationale("; ".join(parts), claims, scene, light, lead)


def _arc_length(traj: np.ndarray) -> float:
    pts = np.concatenate([[[0.0, 0.0]], np.asarray(traj, np.float64)])
    return float(np.hypot(*np.diff(pts, axis=0).T).sum())


def _min_gap(traj: np.ndarray, plan_dt_s: float, fut: np.ndarray, forecast_dt_s: float) -> tuple[float, float]:
    """(smallest distance between plan and forecast at common times [m], that time [s])."""
    best, when = np.inf, float("nan")
    for j, p in enumerate(np.asarray(traj, np.float64)):
        t = (j + 1) * plan_dt_s
        k = int(round(t / forecast_dt_s)) - 1
        if abs((k + 1) * forecast_dt_s - t) > 1e-6 or not 0 <= k < len(fut):
            continue
        d = float(np.hypot(*(p - fut[k])))
        if d < best:
            best, when = d, t
    return best, when


def check_consistency(rationale: Rationale, trajectory: np.ndarray, p2: dict, plan_dt_s: float = 0.5,
                      forecast_dt_s: float = 0.5) -> Consistency:
    """Does the plan do what the rationale says (module docstring)?"""
    violations = []
    for c in rationale.claims:
        if c.kind == "stop_for_light":
            reach = _arc_length(trajectory)
            if reach > c.value + STOP_MARGIN_M:
                violations.append(f"says '{c.text}' (stop line {c.value:.1f} m) but the plan runs "
                                  f"{reach:.1f} m")
        elif c.kind in ("follow_lead", "yield_to"):
            best = int(np.argmax(p2["mode_probs"][c.agent]))
            gap, when = _min_gap(trajectory, plan_dt_s, np.asarray(p2["modes"][c.agent, best]), forecast_dt_s)
            if gap < GAP_M:
                violations.append(f"says '{c.text}' but the plan comes within {gap:.1f} m of its "
                                  f"forecast at {when:.1f} s")
        else:
            raise ValueError(f"unknown claim kind {c.kind!r}")
    n = len(rationale.claims)
    score = 1.0 if n == 0 else 1.0 - len(violations) / n
    return Consistency(not violations, score, violations)
