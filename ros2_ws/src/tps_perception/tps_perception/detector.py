"""Detector core: cloud -> BEV -> network -> boxes -> tracked agents. Never imports rclpy.

``Detector(params, backend).run(points, t_s, ego_pose)`` returns a :class:`DetectionResult`;
the perception node and the evaluation both call exactly this.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import numpy as np

from tps_perception.backends import Backend
from tps_perception.pillars import BevGridParams, points_to_bev, validate_points
from tps_perception.postprocess import DecodeParams, Detections, decode
from tps_perception.tracker import Tracker, TrackerParams, align_headings

HEADING_MIN_SPEED_MPS = 2.0


@dataclass(frozen=True)
class DetectorParams:
    """Everything the detector core needs besides the network."""

    grid: BevGridParams = field(default_factory=BevGridParams)
    decode: DecodeParams = field(default_factory=DecodeParams)
    tracker: TrackerParams = field(default_factory=TrackerParams)
    track: bool = True
    # headings of agents tracked moving at least this fast over ground point along their velocity
    # (tracker.align_headings); 0 turns it off. Needs the ego pose (over-ground velocity).
    heading_min_speed_mps: float = HEADING_MIN_SPEED_MPS

    @staticmethod
    def from_meta(meta: dict, *, score_threshold: float | None = None,
                  lidar_height_m: float | None = None, track: bool = True) -> DetectorParams:
        """Build from ``detector.json`` (grid/decode written by training), with overrides."""
        grid = dict(meta["grid"])
        if lidar_height_m is not None:
            grid["lidar_height_m"] = lidar_height_m
        dec = dict(meta["decode"])
        if score_threshold is not None:
            dec["score_threshold"] = score_threshold
        return DetectorParams(BevGridParams(**grid), DecodeParams(**dec), TrackerParams(), track)


@dataclass
class DetectionResult:
    """One frame's output (base_link)."""

    detections: Detections
    track_ids: np.ndarray      # (N,) uint32, 0 = untracked
    velocities: np.ndarray     # (N, 2) float32 m/s, base_link axes
    velocity_is_relative: bool
    preprocess_ms: float
    network_ms: float
    postprocess_ms: float

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.network_ms + self.postprocess_ms


class Detector:
    """Stateful (tracker) detector; one instance per point-cloud stream."""

    def __init__(self, params: DetectorParams, backend: Backend):
        self.params = params
        self.backend = backend
        self.tracker = Tracker(params.tracker)

    def reset(self) -> None:
        self.tracker.reset()

    def run(self, points: np.ndarray, t_s: float = 0.0, ego_pose: np.ndarray | None = None,
            sensor_to_base=None) -> DetectionResult:
        """Detect (and track) agents in one lidar-frame cloud.

        Args:
            points: (N, 4) x, y, z, intensity in the lidar frame, m.
            t_s: cloud time, s (for the tracker).
            ego_pose: (3,) map x, y, yaw of base_link, or None (tracks in base_link).
            sensor_to_base: the lidar extrinsic ``T_base_link<-lidar``
                (:class:`tps_common.frames.RigidTransform`); None = the grid's
                ``lidar_height_m`` straight above base_link.

        Raises:
            tps_perception.pillars.PreprocessError: bad cloud (shape, empty, NaN).
        """
        t0 = time.perf_counter()
        points, grid = self._in_base_link(points, sensor_to_base)
        bev = points_to_bev(points, grid)
        t1 = time.perf_counter()
        hm, reg = self.backend(bev)
        t2 = time.perf_counter()
        det = decode(hm, reg, self.params.decode)
        if self.params.track:
            tr = self.tracker.update(det, t_s, ego_pose)
            ids, vel, rel = tr.ids, tr.velocities, tr.velocity_is_relative
            if not rel and len(det):
                det.boxes[:, 6] = align_headings(det.boxes[:, 6], vel, self.params.heading_min_speed_mps)
        else:
            ids, vel, rel = np.zeros(len(det), np.uint32), np.zeros((len(det), 2), np.float32), True
        t3 = time.perf_counter()
        return DetectionResult(det, ids, vel, rel, 1e3 * (t1 - t0), 1e3 * (t2 - t1), 1e3 * (t3 - t2))

    def _in_base_link(self, points: np.ndarray, sensor_to_base) -> tuple[np.ndarray, BevGridParams]:
        """Points and grid such that the BEV is built in base_link. A mount straight above
        base_link keeps the historical z offset (bit-identical); any other mount transforms the
        points (the network was trained on base_link geometry, so a tilted or shifted lidar still
        gives boxes in base_link)."""
        grid = self.params.grid
        if sensor_to_base is None:
            return points, grid
        height = sensor_to_base.height_only()
        if height is not None:
            return points, replace(grid, lidar_height_m=height)
        return sensor_to_base.apply(validate_points(points)), replace(grid, lidar_height_m=0.0)
