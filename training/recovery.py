"""Recovery samples for the planner (issue 14: "expert data that covers recovery from perturbed
states"): a copy of an expert sample seen from a displaced ego, labelled with a plan that returns to
the expert's path.

Why: the expert (SUMO) always drives on the lane centre, so every training sample has the ego on its
path; the ego token's route-relative lateral offset and heading error are ~0 in all of them. A
planner trained on those alone never learns what to do once its own small errors have moved it off
the path, and closed loop they compound (the road-edge drift: the planner without monitor left the
road in 24-28 of 50 TEST episodes).

How (a synthetic perturbation in the token space, not a re-simulation): the ego of a sample is
displaced by ``dy`` metres to its left and turned by ``dpsi`` radians. Everything the planner reads
in base_link moves with it -- agent token positions, headings and velocities, the agents' future
labels -- and the ego token is recomputed from the displaced map pose (its route-relative lateral
offset, heading error and route points change; speed, acceleration and yaw rate stay). The plan
label becomes a *recovery*: along the expert's own future path (same arc length per step, so the
same speed profile), with a lateral offset that starts at the displaced ego's offset and heading
error and decays as a cubic (Hermite) to zero over ``recovery_s`` seconds of travel. What does not
move: the camera image (rendered from the expert's pose; the lights it carries do not depend on a
metre of offset), the VQ codes (computed in each agent's own frame) and every scene-level label.

**Speed.** With ``speed_prob`` > 0, a copy's ego is also seen *slower* than the expert was, by a
factor drawn in [``speed_min_factor``, ``speed_max_factor``] (never faster: a faster ego's
catch-up label would run past the expert's stop lines and leads). Its label speeds back up to the
expert's profile at ``speed_recovery_mps2`` on top of the expert's own acceleration, v(t) =
v_exp(t) - dv * max(0, 1 - t / T) with T = dv / a, so the plan's step k lies that much less far
along the same path. Why: closed loop, the route-anchored planner settled at ~16 m/s on a 25 m/s
highway (VAL 1000-1002, 91 % NOMINAL): every plan was a little slower than its input speed, and
a planner that never saw an ego slower than the expert had nothing to say about catching up
(fed 0.64 x the expert's speed, its 4-s plan ended at 17 m/s).

DART (Laskey et al. 2017) injects noise into the expert's executed controls and labels the visited
states with the expert's correction; SUMO's expert cannot be asked for a correction from a state it
did not drive to, so the correction here is closed-form. The closing note says so.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tps_common.geometry import to_local


@dataclass(frozen=True)
class RecoveryConfig:
    """How far the ego is displaced and how fast the label returns to the expert's path."""

    lateral_sigma_m: float = 0.6      # dy ~ N(0, sigma), clipped to +-lateral_max_m
    lateral_max_m: float = 1.5
    heading_sigma_rad: float = 0.05   # dpsi ~ N(0, sigma) (~3 deg), clipped to +-heading_max_rad
    heading_max_rad: float = 0.14     # ~8 deg
    recovery_s: float = 2.5           # travel time over which the offset decays to 0
    min_recovery_m: float = 6.0       # ... but over at least / at most this arc length
    max_recovery_m: float = 40.0
    speed_prob: float = 0.0           # share of displaced samples also seen slower than the expert
    speed_min_factor: float = 0.4     # ... at this factor of the expert's speed, drawn uniformly
    speed_max_factor: float = 0.95    # ... up to this one
    speed_recovery_mps2: float = 1.5  # the label's catch-up acceleration on top of the expert's

    def __post_init__(self):
        for name in ("lateral_sigma_m", "lateral_max_m", "heading_sigma_rad", "heading_max_rad", "recovery_s",
                     "min_recovery_m", "max_recovery_m", "speed_prob", "speed_min_factor", "speed_max_factor",
                     "speed_recovery_mps2"):
            v = getattr(self, name)
            if not np.isfinite(v) or v < 0:
                raise ValueError(f"recovery {name} must be finite and >= 0, got {v}")
        if self.min_recovery_m <= 0 or self.max_recovery_m < self.min_recovery_m:
            raise ValueError(f"recovery needs 0 < min_recovery_m <= max_recovery_m, got "
                             f"{self.min_recovery_m}, {self.max_recovery_m}")
        if self.speed_prob > 1.0 or not 0.0 <= self.speed_min_factor <= self.speed_max_factor <= 1.0:
            raise ValueError(f"recovery needs speed_prob <= 1 and 0 <= speed_min_factor <= speed_max_factor <= 1, "
                             f"got {self.speed_prob}, {self.speed_min_factor}, {self.speed_max_factor}")
        if self.speed_prob > 0.0 and self.speed_recovery_mps2 <= 0.0:
            raise ValueError("recovery speed_recovery_mps2 must be > 0 when speed_prob > 0")

    def draw(self, rng: np.random.Generator) -> tuple[float, float]:
        dy = float(np.clip(rng.normal(0.0, self.lateral_sigma_m), -self.lateral_max_m, self.lateral_max_m))
        dpsi = float(np.clip(rng.normal(0.0, self.heading_sigma_rad), -self.heading_max_rad, self.heading_max_rad))
        return dy, dpsi

    def draw_speed_factor(self, rng: np.random.Generator) -> float:
        """The factor of the expert's speed the copy's ego drives at (1 = unchanged). Draws
        nothing when ``speed_prob`` is 0, so the lateral draws stay those of a run without it."""
        if self.speed_prob <= 0.0:
            return 1.0
        u, f = rng.random(2)
        if u >= self.speed_prob:
            return 1.0
        return float(self.speed_min_factor + f * (self.speed_max_factor - self.speed_min_factor))


def speed_recovery_shift(times_s: np.ndarray, dv_mps: float, accel_mps2: float) -> np.ndarray:
    """(K,) arc-length shifts [m] (<= 0) of the plan steps at ``times_s`` for an ego ``dv_mps``
    slower than the expert that catches up at ``accel_mps2``: -(integral of dv * max(0, 1 - t/T)),
    T = dv / a."""
    t = np.asarray(times_s, np.float64)
    if dv_mps <= 0.0:
        return np.zeros_like(t)
    big_t = dv_mps / accel_mps2
    tc = np.minimum(t, big_t)
    return -dv_mps * (tc - tc ** 2 / (2.0 * big_t))


def displaced_pose(pose: np.ndarray, dy: float, dpsi: float) -> np.ndarray:
    """The map pose (x, y, yaw) of base_link moved ``dy`` to its left and turned by ``dpsi``."""
    x, y, yaw = (float(v) for v in pose[:3])
    return np.array([x - np.sin(yaw) * dy, y + np.cos(yaw) * dy, yaw + dpsi])


def to_displaced(xy: np.ndarray, dy: float, dpsi: float) -> np.ndarray:
    """Points (..., 2) in the original base_link, expressed in the displaced one."""
    p = np.asarray(xy, np.float64)
    return to_local(p.reshape(-1, 2), (0.0, dy), dpsi).reshape(p.shape)


def rotate(v: np.ndarray, angle: float) -> np.ndarray:
    """Vectors (..., 2) rotated by ``angle`` (frame change of a free vector: pass -dpsi)."""
    p = np.asarray(v, np.float64)
    c, s = np.cos(angle), np.sin(angle)
    return np.stack([c * p[..., 0] - s * p[..., 1], s * p[..., 0] + c * p[..., 1]], axis=-1)


def recovery_plan(plan: np.ndarray, plan_valid: np.ndarray, dy: float, dpsi: float, speed_mps: float,
                  cfg: RecoveryConfig, ds: np.ndarray | None = None) -> np.ndarray:
    """The recovery label (K, 2), displaced base_link, of an expert plan (K, 2) in the original one.

    Step k lies on the expert's path (the polyline from the expert's pose through its valid future
    points, extended straight past the last) at the expert's arc length of step k plus the displaced
    ego's along-track offset, shifted sideways by l(s): the cubic with l(0) = the ego's lateral
    offset from the path, l'(0) = tan(its heading error) and l = l' = 0 from L on, L = the
    ``recovery_s`` of travel at the current speed within [min_recovery_m, max_recovery_m]. A step
    without a valid expert point keeps its (transformed) value; the caller's mask still says it is
    invalid. ``ds`` (K,) shifts each step's arc length (:func:`speed_recovery_shift`: a slower ego
    travels less far; the travelled length never decreases).
    """
    plan = np.asarray(plan, np.float64).reshape(-1, 2)
    valid = np.asarray(plan_valid, bool).reshape(-1)
    origin = to_displaced(np.zeros(2), dy, dpsi)            # the expert's pose, displaced frame
    moved = to_displaced(plan, dy, dpsi)
    u0 = np.array([np.cos(-dpsi), np.sin(-dpsi)])            # the expert's heading there
    nodes = [origin] + [moved[k] for k in range(len(plan)) if valid[k]]
    # Segment directions; a (near) zero-length segment keeps the previous direction.
    dirs, lens, d_prev = [], [], u0
    for a, b in zip(nodes[:-1], nodes[1:], strict=True):
        seg = b - a
        n = float(np.hypot(*seg))
        d = seg / n if n > 1e-3 else d_prev
        dirs.append(d)
        lens.append(n)
        d_prev = d
    dirs.append(d_prev)                                      # straight on past the last point
    lens.append(np.inf)
    cum = np.concatenate([[0.0], np.cumsum(lens[:-1])])     # arc length at each node

    def point(s: float) -> tuple[np.ndarray, np.ndarray]:
        i = int(np.searchsorted(cum, s, side="right") - 1)
        i = min(max(i, 0), len(dirs) - 1)
        d = dirs[i]
        return nodes[i] + d * (s - cum[i]), d

    rel = -origin                                            # ego minus expert pose
    normal0 = np.array([-u0[1], u0[0]])
    l0, s_off = float(normal0 @ rel), float(u0 @ rel)
    slope0 = float(np.tan(dpsi))
    length = float(np.clip(cfg.recovery_s * max(float(speed_mps), 0.0), cfg.min_recovery_m, cfg.max_recovery_m))

    def lateral(s: float) -> float:
        t = s / length
        if t >= 1.0:
            return 0.0
        t = max(t, 0.0)
        h00 = 2 * t ** 3 - 3 * t ** 2 + 1
        h10 = t ** 3 - 2 * t ** 2 + t
        return l0 * h00 + length * slope0 * h10

    out = moved.copy()
    k_valid = 0
    travelled = 0.0
    for k in range(len(plan)):
        if not valid[k]:
            continue
        k_valid += 1
        # the expert's arc length at step k, less what a slower ego has not caught up yet
        s_ego = max(travelled, float(cum[k_valid]) + (float(ds[k]) if ds is not None else 0.0))
        travelled = s_ego
        s = max(0.0, s_ego + s_off)
        p, d = point(s)
        out[k] = p + np.array([-d[1], d[0]]) * lateral(s_ego)
    return out


def displace_shard(d: dict, rng: np.random.Generator, cfg: RecoveryConfig, plan_dt_s: float = 0.5) -> dict:
    """A copy of a planner shard's arrays (``training.planner_data``) with every sample seen from its
    own displaced ego (drawn with ``cfg.draw``) and its plan label replaced by the recovery. Keys
    not named here are shared, unchanged. Adds ``recovery_offset`` (N, 2): each sample's (dy, dpsi),
    and ``recovery_speed_factor`` (N,): its ego speed / the expert's (``cfg.speed_prob``; the ego
    token's speed and the plan label change with it, ``plan_dt_s`` apart from the first step)."""
    out = dict(d)
    n = len(d["t_s"])
    speed = np.array(d["ego_speed"], np.float64, copy=True)
    factors = np.ones(n, np.float64)
    times = plan_dt_s * np.arange(1, np.asarray(d["plan"]).shape[1] + 1)
    pose = np.array(d["ego_pose"], np.float64, copy=True)
    geom = np.array(d["tok_geom"], np.float32, copy=True)
    fut = np.array(d["fut"], np.float32, copy=True)
    plan = np.array(d["plan"], np.float32, copy=True)
    offsets = np.zeros((n, 2), np.float64)
    for i in range(n):
        dy, dpsi = cfg.draw(rng)
        offsets[i] = dy, dpsi
        pose[i] = displaced_pose(d["ego_pose"][i], dy, dpsi)
        g = geom[i]
        g[:, 0:2] = to_displaced(g[:, 0:2], dy, dpsi)
        g[:, 2] = np.arctan2(np.sin(g[:, 2] - dpsi), np.cos(g[:, 2] - dpsi))
        g[:, 5:7] = rotate(g[:, 5:7], -dpsi)
        fut[i] = to_displaced(fut[i], dy, dpsi)
        factors[i] = cfg.draw_speed_factor(rng)
        speed[i] = float(d["ego_speed"][i]) * factors[i]
        ds = speed_recovery_shift(times, float(d["ego_speed"][i]) - speed[i], cfg.speed_recovery_mps2)
        plan[i] = recovery_plan(d["plan"][i], d["plan_valid"][i], dy, dpsi, float(speed[i]), cfg, ds)
    out.update(ego_pose=pose, tok_geom=geom, fut=fut, plan=plan, recovery_offset=offsets, ego_speed=speed,
               recovery_speed_factor=factors)
    return out
