"""Multi-object tracker: constant-velocity Kalman filter per track + Hungarian matching.

Gives detections stable ids and a velocity (the network sees one frame and cannot).

Tracking happens in a fixed frame when the ego pose is known (``ego_pose`` = map x, y, yaw of
base_link): detections are moved to ``map``, filtered there, and the velocity is rotated back into
``base_link`` -- so it is the agent's velocity over ground, expressed in base_link axes. Without an
ego pose the tracker works in base_link itself and the velocity is relative to the (possibly
moving) ego; :attr:`TrackerResult.velocity_is_relative` says which.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment
from tps_common.geometry import to_global, to_local, wrap_angle

from tps_perception.postprocess import Detections

_UNMATCHED_COST = 1e6


@dataclass(frozen=True)
class TrackerParams:
    """Kalman / matching parameters (SI units)."""

    gate_m: float = 3.0             # max centre distance (after prediction) to match, m
    new_track_speed_mps: float = 25.0  # a track with no velocity yet may have moved this fast
    max_misses: int = 3             # frames a track survives without a match
    process_accel_mps2: float = 3.0  # white-acceleration noise, m/s^2
    meas_std_m: float = 0.3          # detection position noise, m
    init_vel_std_mps: float = 10.0   # velocity uncertainty of a new track, m/s
    min_score_new: float = 0.3       # a detection must score this to start a track


@dataclass
class Track:
    track_id: int
    label: int
    x: np.ndarray        # (4,) x, y, vx, vy in the tracking frame
    p: np.ndarray        # (4, 4) covariance
    hits: int = 1
    misses: int = 0


@dataclass
class TrackerResult:
    """Per input detection: its track id (0 = no track started) and velocity (base_link axes)."""

    ids: np.ndarray          # (N,) uint32
    velocities: np.ndarray   # (N, 2) float32 m/s
    velocity_is_relative: bool
    active_tracks: int = 0


def align_headings(yaw: np.ndarray, velocities: np.ndarray, min_speed_mps: float) -> np.ndarray:
    """Settle the front/back ambiguity of box headings with the tracked velocity.

    A single lidar frame shows a car's outline, not which end is the front: the network's
    sin/cos heading is flipped by pi on about a fifth of moving cars (VAL split). Where an agent
    moves over ground at ``min_speed_mps`` or more, its heading is turned by pi when it points
    more than 90 degrees away from the velocity. An agent reversing that fast is flipped wrongly.

    Args:
        yaw: (N,) box headings, rad (base_link).
        velocities: (N, 2) velocity over ground in base_link axes, m/s (not ego-relative).
        min_speed_mps: speed from which the velocity is trusted; <= 0 turns the alignment off.

    Returns:
        (N,) headings in (-pi, pi].
    """
    yaw = np.asarray(yaw, np.float64)
    if min_speed_mps <= 0 or len(yaw) == 0:
        return yaw.astype(np.float32)
    v = np.asarray(velocities, np.float64)
    moving = np.hypot(v[:, 0], v[:, 1]) >= min_speed_mps
    backwards = moving & (np.cos(yaw - np.arctan2(v[:, 1], v[:, 0])) < 0.0)
    out = np.where(backwards, yaw + np.pi, yaw)
    return wrap_angle(np.asarray(out), include_pi=True).astype(np.float32)


@dataclass
class Tracker:
    """Stateful tracker; call :meth:`update` once per frame in time order."""

    params: TrackerParams = field(default_factory=TrackerParams)
    tracks: list[Track] = field(default_factory=list)
    next_id: int = 1
    last_t_s: float | None = None

    def reset(self) -> None:
        self.tracks.clear()
        self.last_t_s = None

    def _predict(self, dt: float) -> None:
        f = np.eye(4)
        f[0, 2] = f[1, 3] = dt
        q = self.params.process_accel_mps2 ** 2
        g = np.array([[0.5 * dt * dt, 0], [0, 0.5 * dt * dt], [dt, 0], [0, dt]])
        qm = g @ g.T * q
        for tr in self.tracks:
            tr.x = f @ tr.x
            tr.p = f @ tr.p @ f.T + qm

    def update(self, det: Detections, t_s: float, ego_pose: np.ndarray | None = None) -> TrackerResult:
        """Advance the tracks to ``t_s`` and match this frame's detections.

        Args:
            det: this frame's detections (base_link).
            t_s: frame time, s (must increase; a jump backwards resets the tracker).
            ego_pose: (3,) map x, y (m), yaw (rad) of base_link, or None.

        Returns:
            Track id and velocity per detection, in the order of ``det``.
        """
        pr = self.params
        if self.last_t_s is not None and t_s <= self.last_t_s:
            self.reset()
        dt = 0.0 if self.last_t_s is None else t_s - self.last_t_s
        self.last_t_s = t_s
        if dt > 0:
            self._predict(dt)
        n = len(det)
        xy = det.boxes[:, :2].astype(np.float64)
        pose = None if ego_pose is None else np.asarray(ego_pose, dtype=np.float64)
        if pose is not None and n:
            xy = to_global(xy, pose[:2], float(pose[2]))
        ids = np.zeros(n, np.uint32)
        vel = np.zeros((n, 2), np.float64)
        matched_tracks: set[int] = set()
        if n and self.tracks:
            txy = np.array([tr.x[:2] for tr in self.tracks])
            cost = np.linalg.norm(xy[:, None, :] - txy[None, :, :], axis=2)
            tl = np.array([tr.label for tr in self.tracks])
            cost[det.labels[:, None] != tl[None, :]] = _UNMATCHED_COST
            # A one-hit track has no velocity estimate: widen its gate by the distance an agent
            # can cover in dt (frames may be 0.1 .. 1 s apart).
            gates = np.array([pr.gate_m + (pr.new_track_speed_mps * dt if tr.hits == 1 else 0.0)
                              for tr in self.tracks])
            cost[cost > gates[None, :]] = _UNMATCHED_COST
            rows, cols = linear_sum_assignment(cost)
            hmat = np.zeros((2, 4))
            hmat[0, 0] = hmat[1, 1] = 1.0
            rmat = np.eye(2) * pr.meas_std_m ** 2
            for r, c in zip(rows, cols, strict=True):
                if cost[r, c] >= _UNMATCHED_COST:
                    continue
                tr = self.tracks[c]
                s = hmat @ tr.p @ hmat.T + rmat
                gain = tr.p @ hmat.T @ np.linalg.inv(s)
                tr.x = tr.x + gain @ (xy[r] - hmat @ tr.x)
                tr.p = (np.eye(4) - gain @ hmat) @ tr.p
                tr.hits += 1
                tr.misses = 0
                ids[r] = tr.track_id
                vel[r] = tr.x[2:]
                matched_tracks.add(c)
        for c, tr in enumerate(self.tracks):
            if c not in matched_tracks:
                tr.misses += 1
        self.tracks = [tr for tr in self.tracks if tr.misses <= pr.max_misses]
        for r in range(n):
            if ids[r] == 0 and det.scores[r] >= pr.min_score_new:
                p0 = np.diag([pr.meas_std_m ** 2] * 2 + [pr.init_vel_std_mps ** 2] * 2)
                tr = Track(self.next_id, int(det.labels[r]), np.array([xy[r, 0], xy[r, 1], 0.0, 0.0]), p0)
                self.tracks.append(tr)
                ids[r] = tr.track_id
                self.next_id += 1
        if pose is not None and n:
            vel = to_local(vel, (0.0, 0.0), float(pose[2]))
        return TrackerResult(ids, vel.astype(np.float32), pose is None, len(self.tracks))
