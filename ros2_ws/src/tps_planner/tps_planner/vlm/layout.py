"""What the VLM planner reads and says, as numbers: configuration, class lists and the numeric
input features. numpy only (no torch, no ROS): the dataset builder, the trainer, the planner node
and the open-loop evaluation all call these, so a feature is computed one way everywhere.

Frames: everything is in the ego's ``base_link`` of the frame (x forward, y left, REP-103) unless
it says map.

Inputs of one frame
===================
==================  =================  =========================================================
input               shape              meaning
==================  =================  =========================================================
instruction text    str                word tokens through the trunk's own tokenizer
                                       (``PlannerConfig.max_text_tokens`` incl. [CLS]/[SEP])
camera              (H, W, 3) uint8    front camera, area-downscaled to ``camera_size`` (W, H)
ego                 (EGO_DIM,) float   :func:`ego_features` (speed, acceleration, yaw rate,
                                       route-relative pose, next route points, next stop line,
                                       requested speed)
agent codes         (A,) int           VQ code of each ``AgentToken`` (< codebook_size)
agent features      (A, AGENT_DIM)     :func:`agent_features` of the token's continuous geometry
                                       (+ its quantisation error); Fourier features are added in
                                       the model
==================  =================  =========================================================

Agents: at most ``max_agents``, the nearest first (:func:`select_agents`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import numpy as np

# --- class lists ---------------------------------------------------------------------------------
# Indices 0..7 equal tps_msgs/AgentRelevance INTENT_*; BRAKING and YIELDING have no message constant
# yet (published as INTENT_UNKNOWN until the message gains them; see intent_to_msg).
INTENTS = ("unknown", "keep_lane", "change_left", "change_right", "turn_left", "turn_right",
           "stopped", "crossing", "braking", "yielding")
INTENT_UNKNOWN, INTENT_KEEP_LANE, INTENT_CHANGE_LEFT, INTENT_CHANGE_RIGHT = 0, 1, 2, 3
INTENT_TURN_LEFT, INTENT_TURN_RIGHT, INTENT_STOPPED, INTENT_CROSSING = 4, 5, 6, 7
INTENT_BRAKING, INTENT_YIELDING = 8, 9
MSG_INTENT_MAX = 7   # highest INTENT_* constant tps_msgs/AgentRelevance has today

# tps_msgs/SceneUnderstanding SCENE_* (same order, same values)
SCENES = ("unknown", "highway", "merge", "roundabout", "signalised_intersection",
          "priority_intersection", "urban")
SCENE_OF_SCENARIO = {
    "highway": 1, "cut_in": 1, "hard_brake": 1, "stalled": 1, "merge": 2, "roundabout": 3,
    "signalised": 4, "lights": 4, "priority": 5, "ped_crossing": 6,
}

# The light governing the ego's lane: NONE = no signalised stop line on the route within range.
LIGHTS = ("none", "red", "yellow", "green")
LIGHT_NONE, LIGHT_RED, LIGHT_YELLOW, LIGHT_GREEN = 0, 1, 2, 3
# CarlaTrafficLightStatus / TrafficLightState (RED 0, YELLOW 1, GREEN 2, OFF 3, UNKNOWN 4) -> LIGHTS
LIGHT_OF_CARLA_STATE = {0: LIGHT_RED, 1: LIGHT_YELLOW, 2: LIGHT_GREEN, 3: LIGHT_NONE, 4: LIGHT_NONE}

AGENT_DIM = 9          # x, y, sin yaw, cos yaw, length, width, vx, vy, log1p(qerr), normalised
AGENT_FOURIER_COLS = (0, 1, 6, 7)   # columns of agent_features that get Fourier features
POS_SCALE_M = 50.0
VEL_SCALE_MPS = 20.0
EGO_SPEED_SCALE_MPS = 10.0   # ego_features[0] = speed / this
EGO_LATERAL_SCALE_M = 3.0    # ego_features[3] = route-relative lateral offset / this, clipped to +-3
EGO_ACCEL_COL = 1            # ego_features[1] = acceleration / 3 (ego_accel_input)
EGO_ROUTE_COL = 7            # ego_features[7:7 + 2 * route_points] = the route points ahead / POS_SCALE_M
STOP_LINE_RANGE_M = 80.0   # a stop line farther along than this is "none"


# What the plan head's per-step residuals are added to: "straight" = the ego's speed held straight
# ahead (the checkpoints trained before 2026-12-03); "route" = the ego's speed held along its route
# (the route points of the ego token), so that following the route costs the head nothing.
PLAN_PRIORS = ("straight", "route")


@dataclass(frozen=True)
class PlannerConfig:
    """Sizes of the planner (saved with its weights; :meth:`to_dict` / :meth:`from_dict`)."""

    d_model: int = 384                  # the trunk's width (all-MiniLM-L6-v2)
    trunk: str = "minilm"               # "minilm" (pretrained) | "scratch" (same size, random init)
    lora_rank: int = 8                  # 0: no LoRA (full fine-tune unless freeze_trunk)
    lora_alpha: int = 16
    lora_dropout: float = 0.0           # dropout on the adapters' input (costly on CPU: a mask per Linear)
    lora_targets: tuple = ("query", "key", "value", "dense")
    freeze_trunk: bool = False          # only with lora_rank 0: train the adapters around it only
    max_text_tokens: int = 16           # incl. [CLS] and [SEP]
    max_agents: int = 32
    codebook_size: int = 512            # the tokenizer's (models/tokenizer/tokenizer.json)
    fourier_freqs: int = 6
    use_camera: bool = True             # False: the camera-off ablation (no camera tokens)
    camera_size: tuple = (160, 90)      # (W, H) of the downscaled front camera
    camera_grid: tuple = (2, 4)         # camera tokens = rows x cols
    route_points: int = 8
    route_spacing_m: float = 8.0
    n_modes: int = 6                    # K
    forecast_steps: int = 6             # 3 s at 0.5 s
    forecast_dt_s: float = 0.5
    plan_steps: int = 8                 # 4 s at 0.5 s
    plan_dt_s: float = 0.5
    plan_prior: str = "straight"        # the plan head's residual base (:data:`PLAN_PRIORS`)
    attention_dropout: float = 0.0      # trunk attention-probability dropout (checkpoint: 0.1)
    # False: the ego token's acceleration slot is fed 0 (frame_inputs, the trainer), whatever the
    # odometry says. Closed loop, the measured acceleration is the planner's own last braking fed
    # back: a planner that learnt to continue the current acceleration (a copycat of the expert's
    # smooth profiles) then brakes itself to a stop on an open road (:func:`ego_accel_input`).
    ego_accel_input: bool = True

    def __post_init__(self):
        if self.plan_prior not in PLAN_PRIORS:
            raise ValueError(f"plan_prior {self.plan_prior!r} is not one of {PLAN_PRIORS}")

    @property
    def ego_dim(self) -> int:
        return ego_dim(self.route_points)

    @property
    def camera_tokens(self) -> int:
        return int(self.camera_grid[0] * self.camera_grid[1]) if self.use_camera else 0

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}

    @staticmethod
    def from_dict(d: dict) -> PlannerConfig:
        names = {f.name for f in fields(PlannerConfig)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown planner config keys {sorted(unknown)}")
        return PlannerConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})


def intent_to_msg(intent: int) -> int:
    """tps_msgs/AgentRelevance intent constant of a planner intent (INTENT_UNKNOWN where the message
    has no constant yet: braking, yielding)."""
    return int(intent) if 0 <= int(intent) <= MSG_INTENT_MAX else INTENT_UNKNOWN


# --- ego -----------------------------------------------------------------------------------------
def ego_accel_input(cfg: PlannerConfig, accel_mps2: float) -> float:
    """The acceleration the ego token carries: the measured one, or 0 where ``cfg.ego_accel_input``
    is False.

    Why it can be off: in the imitation data the expert's acceleration at a frame predicts its next
    seconds well (its profiles are smooth), so the planner learns to continue it. Driving itself,
    the acceleration it reads is the result of its own previous plan, and a small deceleration
    grows into a full stop (measured on VAL highway episodes: the candidate braked from 22 to 0 m/s
    within 5 s with nothing ahead; fed 0, the same weights held 19-25 m/s, 4 of 4).
    """
    return float(accel_mps2) if cfg.ego_accel_input else 0.0


def ego_dim(route_points: int) -> int:
    return EGO_ROUTE_COL + 2 * int(route_points) + 4


def route_frame(route_xy: np.ndarray, pose: np.ndarray) -> tuple[float, float, float]:
    """Projection of the ego onto its route polyline (map): (arc length s [m] of the projection,
    signed lateral offset of the ego from the route [m], left positive; heading error [rad] of the
    ego relative to the route's direction there)."""
    r = np.asarray(route_xy, np.float64).reshape(-1, 2)
    p = np.asarray(pose[:2], np.float64)
    if len(r) < 2:
        return 0.0, 0.0, 0.0
    a, b = r[:-1], r[1:]
    seg = b - a
    seg_len2 = np.maximum((seg ** 2).sum(1), 1e-12)
    t = np.clip(((p - a) * seg).sum(1) / seg_len2, 0.0, 1.0)
    proj = a + t[:, None] * seg
    d2 = ((proj - p) ** 2).sum(1)
    k = int(np.argmin(d2))
    cum = np.concatenate([[0.0], np.cumsum(np.sqrt(seg_len2))])
    s = float(cum[k] + t[k] * np.sqrt(seg_len2[k]))
    direction = np.arctan2(seg[k, 1], seg[k, 0])
    off = p - proj[k]
    lateral = float(-np.sin(direction) * off[0] + np.cos(direction) * off[1])
    heading_err = float(np.arctan2(np.sin(pose[2] - direction), np.cos(pose[2] - direction)))
    return s, lateral, heading_err


def route_points_ahead(route_xy: np.ndarray, pose: np.ndarray, n: int, spacing_m: float) -> np.ndarray:
    """(n, 2) route points at ``spacing_m``, ``2*spacing_m``, ... of arc length past the ego's
    projection, in base_link [m]; the route's end repeats where it is shorter."""
    r = np.asarray(route_xy, np.float64).reshape(-1, 2)
    if len(r) < 2:
        return np.zeros((n, 2))
    s0, _, _ = route_frame(r, pose)
    cum = np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(r, axis=0).T))])
    s = np.clip(s0 + spacing_m * np.arange(1, n + 1), 0.0, cum[-1])
    xy = np.stack([np.interp(s, cum, r[:, 0]), np.interp(s, cum, r[:, 1])], axis=1)
    c, sn = np.cos(pose[2]), np.sin(pose[2])
    d = xy - np.asarray(pose[:2], np.float64)
    return np.stack([c * d[:, 0] + sn * d[:, 1], -sn * d[:, 0] + c * d[:, 1]], axis=1)


def ego_features(speed_mps: float, accel_mps2: float, yaw_rate_rps: float, route_xy: np.ndarray,
                 pose: np.ndarray, stop_line_m: float | None, target_speed_mps: float,
                 route_points: int = 8, route_spacing_m: float = 8.0) -> np.ndarray:
    """The ego token's numbers (float32, :func:`ego_dim` long).

    Args:
        speed_mps, accel_mps2, yaw_rate_rps: ego motion.
        route_xy: (R, 2) the route the planner reads, map [m].
        pose: (3,) map x, y, yaw of base_link.
        stop_line_m: distance along the route to the next signalised stop line [m]; None = none
            within :data:`STOP_LINE_RANGE_M`.
        target_speed_mps: requested cruise speed (DrivingInstruction.target_speed_mps); < 0 = none.

    Raises:
        ValueError: a non-finite number (named).
    """
    for name, v in (("speed_mps", speed_mps), ("accel_mps2", accel_mps2), ("yaw_rate_rps", yaw_rate_rps),
                    ("target_speed_mps", target_speed_mps)):
        if not np.isfinite(v):
            raise ValueError(f"ego input {name} is not finite ({v})")
    if not np.all(np.isfinite(pose)):
        raise ValueError(f"ego pose is not finite ({pose})")
    _, lateral, heading_err = route_frame(route_xy, pose)
    pts = route_points_ahead(route_xy, pose, route_points, route_spacing_m) / POS_SCALE_M
    has_stop = stop_line_m is not None and np.isfinite(stop_line_m) and stop_line_m < STOP_LINE_RANGE_M
    has_target = target_speed_mps >= 0.0
    out = [speed_mps / EGO_SPEED_SCALE_MPS, accel_mps2 / 3.0, yaw_rate_rps,
           float(np.clip(lateral / EGO_LATERAL_SCALE_M, -3, 3)),
           np.sin(heading_err), np.cos(heading_err), 1.0,  # bias slot (a constant the MLP can use)
           *pts.ravel().tolist(),                          # from EGO_ROUTE_COL on
           float(has_stop), (float(np.clip(stop_line_m, -10.0, STOP_LINE_RANGE_M)) / POS_SCALE_M
                             if has_stop else 0.0),
           float(has_target), (target_speed_mps / 10.0 if has_target else 0.0)]
    return np.asarray(out, np.float32)


# --- agents --------------------------------------------------------------------------------------
def agent_features(geometry: np.ndarray, qerr: np.ndarray) -> np.ndarray:
    """(N, AGENT_DIM) float32 from AgentTokens geometry (N, 7: x, y, yaw, length, width, vx, vy in
    base_link) and quantisation errors (N,).

    Raises:
        ValueError: wrong shape or a non-finite value (the row is named).
    """
    g = np.asarray(geometry, np.float64)
    q = np.asarray(qerr, np.float64).reshape(-1)
    if g.ndim != 2 or g.shape[1] != 7 or len(q) != len(g):
        raise ValueError(f"agent geometry must be (N, 7) with N quantisation errors; got {g.shape} and {q.shape}")
    bad = ~np.isfinite(g).all(1) | ~np.isfinite(q)
    if bad.any():
        raise ValueError(f"agent token row {int(np.nonzero(bad)[0][0])} has a non-finite value")
    return np.stack([g[:, 0] / POS_SCALE_M, g[:, 1] / POS_SCALE_M, np.sin(g[:, 2]), np.cos(g[:, 2]),
                     g[:, 3] / 10.0, g[:, 4] / 5.0, g[:, 5] / VEL_SCALE_MPS, g[:, 6] / VEL_SCALE_MPS,
                     np.log1p(np.maximum(q, 0.0))], axis=1).astype(np.float32)


def select_agents(geometry: np.ndarray, max_agents: int) -> np.ndarray:
    """Indices of the agents the planner reads: the ``max_agents`` nearest, nearest first."""
    g = np.asarray(geometry, np.float64).reshape(-1, 7)
    order = np.argsort(np.hypot(g[:, 0], g[:, 1]), kind="stable")
    return order[:max_agents]
