"""Occupancy around the ego from the raw point cloud (core; no ROS imports, no learned model).

Per lidar frame (points already ground-free, ego-motion compensated, in ``map``):

1. **Clustering**: the points within ``range_m`` of the ego go into an ego-centred grid of
   ``cell_m`` cells; occupied cells at most two cells apart form one object (8-connected
   components of the grid dilated by one cell, ``scipy.ndimage``): points about 2-3 cells apart
   link (a vehicle's side at a grazing angle, one point per beam ring), objects farther apart
   (vehicles in neighbouring lanes) stay apart. Clusters with fewer than ``min_points`` points are
   dropped (spurious returns).
2. **Tracking** in the map frame, all around the ego (ahead, sides, rear): each track's centre
   is predicted at constant velocity; clusters are matched to predictions greedily, nearest
   first, within ``gate_m`` (+ ``gate_time_s`` x speed); a matched track is corrected with an
   alpha-beta filter (``alpha``, ``beta``: position and velocity gains; its second measurement
   sets the velocity from the displacement). An unmatched track coasts for ``coast_s``; an
   unmatched cluster starts a new track whose velocity is unknown until it has been measured
   ``min_age`` times (``TrackedObject.velocity_known``).

The tracker keeps no reference to the route: the fallback lays the objects over the route's
Frenet frame itself (``tps_planner.fallback``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

_EIGHT_CONNECTED = np.ones((3, 3), bool)


@dataclass(frozen=True)
class OccupancyParams:
    """Clustering and tracking parameters (SI units)."""

    cell_m: float = 0.5
    range_m: float = 80.0
    min_points: int = 2
    gate_m: float = 2.5
    gate_time_s: float = 0.15           # the gate grows by this times the track's speed
    alpha: float = 0.6
    beta: float = 0.15
    coast_s: float = 0.8
    min_age: int = 3
    stationary_speed_mps: float = 0.5


@dataclass(frozen=True)
class Clusters:
    """One frame's clusters: ``labels`` (N,) cluster index of each input point (-1: none),
    ``centers`` (C, 2) mean of their points [m], ``counts`` (C,)."""

    labels: np.ndarray
    centers: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True, eq=False)
class TrackedObject:
    """An object tracked over frames (map frame).

    Attributes:
        track_id: stable id.
        xy: (2,) centre [m] (of the cluster's points; predicted when coasting).
        velocity: (2,) [m/s] (zero until known).
        age: frames it was measured in.
        measured: it was seen in this frame.
        cluster: index of its cluster in this frame's :class:`Clusters` (-1 when coasting).
        stationary_s: how long its speed has stayed below ``stationary_speed_mps`` [s].
    """

    track_id: int
    xy: np.ndarray
    velocity: np.ndarray
    age: int
    measured: bool
    cluster: int
    stationary_s: float
    velocity_known: bool


def cluster_points(xy: np.ndarray, center_xy: np.ndarray, params: OccupancyParams) -> Clusters:
    """Grid clustering of map points (N, >=2) around ``center_xy`` (see the module docstring)."""
    p = params
    xy = np.asarray(xy)
    n = len(xy)
    labels = np.full(n, -1, np.int64)
    if n == 0:
        return Clusters(labels, np.zeros((0, 2)), np.zeros(0, np.int64))
    size = int(np.ceil(2.0 * p.range_m / p.cell_m))
    cell = np.floor((xy[:, :2] - (np.asarray(center_xy, float) - p.range_m)) / p.cell_m).astype(np.int64)
    inside = np.all((cell >= 0) & (cell < size), axis=1)
    idx = np.flatnonzero(inside)
    if len(idx) == 0:
        return Clusters(labels, np.zeros((0, 2)), np.zeros(0, np.int64))
    # Label only the bounding box of the occupied cells (the road: a strip, not the square).
    cx, cy = cell[idx, 0], cell[idx, 1]
    x0, y0 = int(cx.min()), int(cy.min())
    grid = np.zeros((int(cx.max()) - x0 + 3, int(cy.max()) - y0 + 3), bool)
    cx, cy = cx - x0 + 1, cy - y0 + 1
    grid[cx, cy] = True
    # Cells up to two apart belong together (points up to ~3 cells apart): a vehicle's side seen
    # at a grazing angle returns a point per beam ring about a metre apart.
    lab, count = ndimage.label(ndimage.binary_dilation(grid, structure=_EIGHT_CONNECTED),
                               structure=_EIGHT_CONNECTED)
    point_lab = lab[cx, cy] - 1                                      # 0-based
    counts = np.bincount(point_lab, minlength=count)
    keep = counts >= p.min_points
    remap = np.full(count, -1, np.int64)
    remap[keep] = np.arange(int(keep.sum()))
    point_lab = remap[point_lab]
    labels[idx] = point_lab
    good = point_lab >= 0
    m = int(keep.sum())
    sx = np.bincount(point_lab[good], weights=xy[idx[good], 0], minlength=m)
    sy = np.bincount(point_lab[good], weights=xy[idx[good], 1], minlength=m)
    cnt = counts[keep]
    return Clusters(labels, np.stack([sx / cnt, sy / cnt], axis=1), cnt.astype(np.int64))


class ObjectTracker:
    """Tracks clusters over frames (see the module docstring)."""

    def __init__(self, params: OccupancyParams | None = None) -> None:
        self.params = params or OccupancyParams()
        self.reset()

    def reset(self) -> None:
        """Forget every track."""
        self._xy = np.zeros((0, 2))
        self._v = np.zeros((0, 2))
        self._age = np.zeros(0, np.int64)
        self._last_seen = np.zeros(0)
        self._stationary = np.zeros(0)
        self._ids = np.zeros(0, np.int64)
        self._next_id = 1
        self._stamp: float | None = None

    def update(self, clusters: Clusters, stamp_s: float) -> list[TrackedObject]:
        """Associate this frame's clusters with the tracks and return every live track."""
        p = self.params
        if self._stamp is not None and stamp_s <= self._stamp:
            if stamp_s < self._stamp or len(clusters.centers):   # time went back: start over
                self.reset()
        dt = 0.0 if self._stamp is None else stamp_s - self._stamp
        if dt > 2.0 * p.coast_s + 1.0:
            self.reset()
            dt = 0.0
        self._stamp = stamp_s
        pred = self._xy + self._v * dt
        z = clusters.centers
        nt, nc = len(pred), len(z)
        match_track = np.full(nc, -1, np.int64)
        if nt and nc:
            dist = np.hypot(pred[:, None, 0] - z[None, :, 0], pred[:, None, 1] - z[None, :, 1])
            gate = p.gate_m + p.gate_time_s * np.hypot(self._v[:, 0], self._v[:, 1])
            cand = np.argwhere(dist <= gate[:, None])
            if len(cand):
                order = np.lexsort((cand[:, 1], cand[:, 0], dist[cand[:, 0], cand[:, 1]]))
                used_t = np.zeros(nt, bool)
                for t, c in cand[order]:
                    if used_t[t] or match_track[c] >= 0:
                        continue
                    used_t[t] = True
                    match_track[c] = t
        matched = match_track >= 0
        t_idx, c_idx = match_track[matched], np.flatnonzero(matched)
        xy, v = pred.copy(), self._v.copy()
        age, seen = self._age.copy(), self._last_seen.copy()
        if len(t_idx) and dt > 0.0:
            resid = z[c_idx] - pred[t_idx]
            first = age[t_idx] == 1                        # second measurement: velocity from it
            xy[t_idx] = pred[t_idx] + p.alpha * resid
            v_new = v[t_idx] + (p.beta / dt) * resid
            v_first = (z[c_idx] - self._xy[t_idx]) / dt
            v[t_idx] = np.where(first[:, None], v_first, v_new)
            xy[t_idx] = np.where(first[:, None], z[c_idx], xy[t_idx])
        elif len(t_idx):
            xy[t_idx] = z[c_idx]
        age[t_idx] += 1
        seen[t_idx] = stamp_s
        speed = np.hypot(v[:, 0], v[:, 1])
        stationary = np.where((speed < p.stationary_speed_mps) & (age >= p.min_age),
                              self._stationary + dt, 0.0)
        alive = (stamp_s - seen) <= p.coast_s
        cluster_of = np.full(nt, -1, np.int64)
        cluster_of[t_idx] = c_idx
        # New tracks for the unmatched clusters.
        new_c = np.flatnonzero(~matched)
        n_new = len(new_c)
        self._xy = np.concatenate([xy[alive], z[new_c]])
        self._v = np.concatenate([v[alive], np.zeros((n_new, 2))])
        self._age = np.concatenate([age[alive], np.ones(n_new, np.int64)])
        self._last_seen = np.concatenate([seen[alive], np.full(n_new, stamp_s)])
        self._stationary = np.concatenate([stationary[alive], np.zeros(n_new)])
        self._ids = np.concatenate([self._ids[alive], self._next_id + np.arange(n_new)])
        self._next_id += n_new
        clusters_now = np.concatenate([cluster_of[alive], new_c])
        out = []
        for k in range(len(self._ids)):
            known = bool(self._age[k] >= p.min_age)
            out.append(TrackedObject(int(self._ids[k]), self._xy[k].copy(),
                                     self._v[k].copy() if known else np.zeros(2), int(self._age[k]),
                                     bool(self._last_seen[k] == stamp_s), int(clusters_now[k]),
                                     float(self._stationary[k]), known))
        return out
