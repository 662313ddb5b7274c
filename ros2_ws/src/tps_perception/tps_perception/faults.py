"""Detector-level fault injection (tests and closed-loop evaluation). Never imports rclpy.

Simulates a frozen detector that makes errors, so the monitor's checks can be exercised:

* ``blackout``            no detections at all,
* ``drop_rate``           each real detection is removed with this probability (missed agents),
* ``phantom_rate``        expected number of phantom cars per frame (Poisson), placed uniformly
                          within ``phantom_range_m`` of the ego,
* ``position_noise_m``    Gaussian noise (std) on each detection's x and y,
* ``heading_noise_rad``   Gaussian noise (std) on each detection's yaw,
* ``latency_ms``          extra processing delay the node applies before publishing.

"Pose noise" (issue 15's fault list) is ``position_noise_m`` + ``heading_noise_rad``: noise on the
poses of the published detections (not on the ego pose).

Onset: the faults apply only to frames whose stamp (sim time) is in ``[onset_s, onset_s +
duration_s)`` (default: from 0 on, without end, i.e. every frame). A frame outside the window is
passed through untouched, draws no random numbers and is not marked as faulted, so a fault that is
configured but not yet active looks like a healthy detector (status OK), as a real one would.

Seeded: the same seed and inputs give the same faults. :attr:`FaultResult.active` is true when a
fault altered (or may have altered) this output; the node then reports STATUS_FAULT_INJECTED.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tps_common.geometry import wrap_angle

from tps_perception.postprocess import Detections

PHANTOM_SIZE_M = (4.5, 1.9, 1.5)
PHANTOM_CLASS = 1


@dataclass(frozen=True)
class FaultParams:
    """Which faults are on (all off by default)."""

    blackout: bool = False
    drop_rate: float = 0.0          # probability in [0, 1]
    phantom_rate: float = 0.0       # phantoms per frame (Poisson mean)
    phantom_range_m: float = 40.0
    position_noise_m: float = 0.0   # std, m
    heading_noise_rad: float = 0.0  # std, rad
    latency_ms: float = 0.0
    seed: int = 0
    onset_s: float = 0.0            # sim time the faults start [s]
    duration_s: float = math.inf    # how long they last [s] (inf = to the end)

    def __post_init__(self) -> None:
        checks = {
            "onset_s": math.isfinite(self.onset_s) and self.onset_s >= 0.0,
            "duration_s": not math.isnan(self.duration_s) and self.duration_s > 0.0,
            "drop_rate": 0.0 <= self.drop_rate <= 1.0,
            "phantom_rate": self.phantom_rate >= 0.0,
            "phantom_range_m": self.phantom_range_m > 0.0,
            "position_noise_m": self.position_noise_m >= 0.0,
            "heading_noise_rad": self.heading_noise_rad >= 0.0,
            "latency_ms": self.latency_ms >= 0.0,
        }
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            raise ValueError(f"fault parameter(s) out of range: {', '.join(f'{k}={getattr(self, k)}' for k in bad)}")

    @property
    def any_active(self) -> bool:
        return (self.blackout or self.drop_rate > 0 or self.phantom_rate > 0 or self.position_noise_m > 0
                or self.heading_noise_rad > 0 or self.latency_ms > 0)

    def in_window(self, t_s: float | None) -> bool:
        """True when a frame stamped ``t_s`` (sim time, s) is inside ``[onset_s, onset_s +
        duration_s)``; ``None`` (no stamp known) counts as inside."""
        return t_s is None or self.onset_s <= t_s < self.onset_s + self.duration_s

    def active_at(self, t_s: float | None) -> bool:
        """Some fault is configured and the frame stamped ``t_s`` is in its window."""
        return self.any_active and self.in_window(t_s)

    def describe(self) -> str:
        parts = []
        if self.blackout:
            parts.append("blackout")
        for name in ("drop_rate", "phantom_rate", "position_noise_m", "heading_noise_rad", "latency_ms"):
            v = getattr(self, name)
            if v > 0:
                parts.append(f"{name}={v:g}")
        if parts and (self.onset_s > 0 or math.isfinite(self.duration_s)):
            end = "" if math.isinf(self.duration_s) else f" for {self.duration_s:g} s"
            parts.append(f"from {self.onset_s:g} s{end}")
        return ", ".join(parts)


@dataclass
class FaultResult:
    detections: Detections
    track_ids: np.ndarray
    velocities: np.ndarray
    active: bool
    description: str
    dropped: int = 0
    phantoms: int = 0


class FaultInjector:
    """Applies :class:`FaultParams` to each frame's output; holds its own seeded RNG."""

    def __init__(self, params: FaultParams):
        self.params = params
        self.rng = np.random.default_rng(params.seed)

    def apply(self, det: Detections, track_ids: np.ndarray, velocities: np.ndarray,
              stamp_s: float | None = None) -> FaultResult:
        """Return the faulted output (the inputs are not modified). ``stamp_s``: the frame's sim
        time [s]; outside the fault window the frame is returned as is (``active`` false);
        ``None`` = inside."""
        p = self.params
        if not p.active_at(stamp_s):
            return FaultResult(det, track_ids, velocities, False, "")
        desc = p.describe()
        if p.blackout:
            return FaultResult(Detections.empty(), np.zeros(0, np.uint32), np.zeros((0, 2), np.float32), True, desc,
                               dropped=len(det))
        keep = self.rng.random(len(det)) >= p.drop_rate
        boxes = det.boxes[keep].copy()
        scores = det.scores[keep].copy()
        labels = det.labels[keep].copy()
        ids = track_ids[keep].copy()
        vel = velocities[keep].copy()
        if p.position_noise_m > 0 and len(boxes):
            boxes[:, :2] += self.rng.normal(0.0, p.position_noise_m, size=(len(boxes), 2)).astype(np.float32)
        if p.heading_noise_rad > 0 and len(boxes):
            yaw = boxes[:, 6] + self.rng.normal(0.0, p.heading_noise_rad, size=len(boxes))
            boxes[:, 6] = wrap_angle(yaw, include_pi=True)
        n_ph = int(self.rng.poisson(p.phantom_rate)) if p.phantom_rate > 0 else 0
        if n_ph:
            r = p.phantom_range_m * np.sqrt(self.rng.random(n_ph))
            a = self.rng.uniform(-np.pi, np.pi, n_ph)
            ph = np.zeros((n_ph, 7), np.float32)
            ph[:, 0], ph[:, 1] = r * np.cos(a), r * np.sin(a)
            ph[:, 2] = PHANTOM_SIZE_M[2] / 2
            ph[:, 3:6] = PHANTOM_SIZE_M
            ph[:, 6] = self.rng.uniform(-np.pi, np.pi, n_ph)
            boxes = np.concatenate([boxes, ph])
            scores = np.concatenate([scores, self.rng.uniform(0.3, 0.9, n_ph).astype(np.float32)])
            labels = np.concatenate([labels, np.full(n_ph, PHANTOM_CLASS, np.uint8)])
            ids = np.concatenate([ids, np.zeros(n_ph, np.uint32)])
            vel = np.concatenate([vel, np.zeros((n_ph, 2), np.float32)])
        return FaultResult(Detections(boxes, scores, labels), ids, vel, True, desc,
                           dropped=int((~keep).sum()), phantoms=n_ph)
