"""Point cloud -> BEV pillar tensor, in plain numpy (shared by every backend).

The point-to-pillar scatter happens here, not in the network, so the exported ONNX graph holds
only dense convolutions (which quantise well to static INT8 QDQ and build in TensorRT) and the
pillar count never has to be dynamic.

Each pillar (a square BEV cell, ``cell_m`` wide, unbounded in z) is summarised by hand-made
statistics of its points -- the network's first 1x1/3x3 convolutions then act as the learned
pillar feature net on these statistics. Channels (:data:`BEV_CHANNELS`):

0. ``log1p(count)``                   number of points in the pillar
1. ``z_max`` / Z_SCALE_M              highest point above ground
2. ``z_min`` / Z_SCALE_M              lowest point above ground
3. ``z_mean`` / Z_SCALE_M
4. ``intensity_mean``
5. ``dx_mean``                        mean x offset of the points from the cell centre, in cells
6. ``dy_mean``                        mean y offset, in cells
7. ``frac_low``   share of points 0.25 .. 1.0 m above ground  (bumpers, legs)
8. ``frac_mid``   share 1.0 .. 2.0 m                           (car bodies, people)
9. ``frac_high``  share above 2.0 m                             (trucks, buses)
10. ``range``     distance of the cell centre from the sensor / range_m (lets the net learn
    range-dependent sparsity)

Everything is in the ``base_link`` frame: the cloud arrives in the lidar frame and is shifted
down by ``lidar_height_m`` first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BEV_CHANNELS = (
    "log_count", "z_max", "z_min", "z_mean", "intensity_mean", "dx_mean", "dy_mean",
    "frac_low", "frac_mid", "frac_high", "range",
)
Z_SCALE_M = 4.0
Z_MIN_M = -0.5   # points lower than this (ground noise below the road) are dropped
Z_MAX_M = 5.0    # ... and higher than this (overhangs, noise)
LOW_BAND_M = (0.25, 1.0)
MID_BAND_M = (1.0, 2.0)
HIGH_FROM_M = 2.0


@dataclass(frozen=True)
class BevGridParams:
    """Geometry of the BEV grid (base_link frame, metres)."""

    range_m: float = 51.2        # half extent in x and y
    cell_m: float = 0.8          # pillar size; 128 x 128 cells at the defaults
    lidar_height_m: float = 1.8  # lidar frame origin above base_link

    @property
    def size(self) -> int:
        """Cells per side."""
        return int(round(2.0 * self.range_m / self.cell_m))

    def cell_centres(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of each cell centre, each (size,), m. Row index i -> x, column j -> y."""
        c = -self.range_m + (np.arange(self.size) + 0.5) * self.cell_m
        return c, c.copy()


class PreprocessError(ValueError):
    """The cloud cannot be turned into a BEV tensor (wrong shape, non-finite values...)."""


def validate_points(points: np.ndarray) -> np.ndarray:
    """Check an (N, 4) x, y, z, intensity cloud; return it as float32.

    Raises:
        PreprocessError: naming what is wrong (shape, empty, NaN/inf count).
    """
    if not isinstance(points, np.ndarray) or points.ndim != 2 or points.shape[1] < 4:
        shape = getattr(points, "shape", None)
        raise PreprocessError(f"point cloud must be an (N, 4) array x, y, z, intensity; got shape {shape}")
    if points.shape[0] == 0:
        raise PreprocessError("point cloud is empty (0 points)")
    pts = np.asarray(points[:, :4], dtype=np.float32)
    bad = ~np.isfinite(pts).all(axis=1)
    if bad.any():
        raise PreprocessError(f"point cloud has {int(bad.sum())} of {len(pts)} points with NaN/inf values")
    return pts


def points_to_bev(points: np.ndarray, grid: BevGridParams) -> np.ndarray:
    """Scatter a lidar-frame cloud into the BEV pillar tensor.

    Args:
        points: (N, 4) float x, y, z, intensity in the lidar frame (m); must be finite.
        grid: grid geometry.

    Returns:
        (C, H, W) float32 with C = len(BEV_CHANNELS), H = W = ``grid.size``; row = x, col = y.
    """
    pts = validate_points(points)
    n = grid.size
    x = pts[:, 0]
    y = pts[:, 1]
    z = pts[:, 2] + np.float32(grid.lidar_height_m)
    inten = pts[:, 3]
    fi = (x + grid.range_m) / grid.cell_m
    fj = (y + grid.range_m) / grid.cell_m
    keep = (fi >= 0) & (fi < n) & (fj >= 0) & (fj < n) & (z > Z_MIN_M) & (z < Z_MAX_M)
    fi, fj, z, inten = fi[keep], fj[keep], z[keep], inten[keep]
    ii = fi.astype(np.int64)
    jj = fj.astype(np.int64)
    flat = ii * n + jj
    cells = n * n
    out = np.zeros((len(BEV_CHANNELS), cells), dtype=np.float32)
    count = np.bincount(flat, minlength=cells).astype(np.float32)
    occ = count > 0
    safe = np.maximum(count, 1.0)
    out[0] = np.log1p(count)
    zmax = np.full(cells, -np.inf, dtype=np.float32)
    np.maximum.at(zmax, flat, z)
    zmin = np.full(cells, np.inf, dtype=np.float32)
    np.minimum.at(zmin, flat, z)
    out[1] = np.where(occ, zmax, 0.0) / Z_SCALE_M
    out[2] = np.where(occ, zmin, 0.0) / Z_SCALE_M
    out[3] = np.bincount(flat, weights=z, minlength=cells) / safe / Z_SCALE_M
    out[4] = np.bincount(flat, weights=inten, minlength=cells) / safe
    out[5] = np.bincount(flat, weights=fi - ii - 0.5, minlength=cells) / safe
    out[6] = np.bincount(flat, weights=fj - jj - 0.5, minlength=cells) / safe
    low = ((z >= LOW_BAND_M[0]) & (z < LOW_BAND_M[1])).astype(np.float32)
    mid = ((z >= MID_BAND_M[0]) & (z < MID_BAND_M[1])).astype(np.float32)
    high = (z >= HIGH_FROM_M).astype(np.float32)
    out[7] = np.bincount(flat, weights=low, minlength=cells) / safe
    out[8] = np.bincount(flat, weights=mid, minlength=cells) / safe
    out[9] = np.bincount(flat, weights=high, minlength=cells) / safe
    cx, cy = grid.cell_centres()
    rng = np.hypot(cx[:, None], cy[None, :]).reshape(-1) / grid.range_m
    out[10] = np.where(occ, rng, 0.0)
    return out.reshape(len(BEV_CHANNELS), n, n)
