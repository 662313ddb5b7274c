"""Rotating multi-beam lidar model: ray casting against oriented boxes and the ground plane.

The sensor is mounted at a 6-DOF pose ``mount`` (x, y, z [m], roll, pitch, yaw [rad]) in
base_link (docs/CONTRACTS.md); in the sensor frame ray (beam b, azimuth step k) has the direction
``(cos e_b cos a_k, cos e_b sin a_k, sin e_b)`` with e_b = linspace(vfov_min, vfov_max, beams)
and a_k = 2 pi k / azimuth_steps, and points are returned in the sensor frame. Boxes are moved
into the sensor frame once per scan; a numba kernel then visits, for every box, only the rays
inside the box's (conservative) azimuth and elevation window and keeps the nearest slab-test hit
per ray. With a level mount (no roll or pitch) the boxes stay yaw-only in the sensor frame and the
window comes from the box itself; a tilted mount makes them general oriented boxes, tested with
their full rotation, and the window comes from their axis-aligned bounds in the sensor frame. The
ground (z = 0) is hit at a range that only depends on the ray (flat ground, fixed mount), so it is
a constant table; the road surface under each ground hit gives its intensity. Rays whose first hit
is the ego's own box are dropped (a real sensor filters its self-returns).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from numba import njit

from tps_sim.sensors.scene3d import (
    GROUND_ID,
    LIDAR_MOUNT,
    MAT_BARRIER,
    MAT_BUILDING,
    MAT_BUS,
    MAT_CAR,
    MAT_CYCLIST,
    MAT_DEBRIS,
    MAT_GROUND,
    MAT_PARKED_CAR,
    MAT_PEDESTRIAN,
    MAT_POLE,
    MAT_SIGNAL,
    MAT_TRUCK,
    MAT_WALL,
    SURFACE_ASPHALT,
    SURFACE_MARKING,
    SURFACE_OFFROAD,
    BoxSet,
    Scene3D,
    mount_transform,
    mount_tuple,
)

# Surface reflectivity in [0, 1] (scaled by range attenuation to give the intensity).
# Lane paint is retro-reflective (brightest), asphalt is dark, grass/gravel in between.
SURFACE_REFLECTIVITY = {SURFACE_OFFROAD: 0.30, SURFACE_ASPHALT: 0.10, SURFACE_MARKING: 0.80}
MATERIAL_REFLECTIVITY = {
    MAT_CAR: 0.50,
    MAT_TRUCK: 0.55,
    MAT_BUS: 0.55,
    MAT_PEDESTRIAN: 0.35,
    MAT_CYCLIST: 0.40,
    MAT_POLE: 0.60,
    MAT_BARRIER: 0.70,
    MAT_WALL: 0.40,
    MAT_BUILDING: 0.35,
    MAT_PARKED_CAR: 0.50,
    MAT_DEBRIS: 0.25,
    MAT_SIGNAL: 0.30,
}
DEFAULT_REFLECTIVITY = 0.4
# A box window is widened by this many radians on every side (rounding safety; the windows are
# conservative bounds, the slab test decides the hit).
WINDOW_MARGIN_RAD = 1e-6
# Distance [m] below which a sensor is treated as inside a box footprint (full azimuth window).
INSIDE_TOL_M = 1e-9


@dataclass(frozen=True)
class LidarParams:
    """Lidar configuration.

    Attributes:
        beams: number of vertical beams (>= 1).
        azimuth_steps: rays per revolution (>= 1).
        rate_hz: rotation rate [Hz] (one scan per frame; informational for the bridge).
        min_range_m: returns nearer than this are discarded [m].
        max_range_m: returns farther than this are discarded [m].
        vfov_min_deg: elevation of the lowest beam [deg] (negative = down).
        vfov_max_deg: elevation of the highest beam [deg].
        range_noise_sigma_m: standard deviation of Gaussian range noise [m] (0 = exact).
        dropout_prob: probability that a return is lost, per ray, in [0, 1).
        mount: pose of the sensor in base_link: x, y, z [m] (z > 0: above the ground), roll,
            pitch, yaw [rad] (``R = Rz Ry Rx``; roll, yaw in [-pi, pi], pitch in [-pi/2, pi/2]).
        intensity_attenuation_per_m: intensity = reflectivity * exp(-a * range) [1/m].
    """

    beams: int = 32
    azimuth_steps: int = 1024
    rate_hz: float = 10.0
    min_range_m: float = 0.5
    max_range_m: float = 80.0
    vfov_min_deg: float = -25.0
    vfov_max_deg: float = 15.0
    range_noise_sigma_m: float = 0.02
    dropout_prob: float = 0.0
    mount: tuple[float, float, float, float, float, float] = LIDAR_MOUNT
    intensity_attenuation_per_m: float = 0.004

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"LidarParams.{name} = {getattr(self, name)!r}: {why}")

        object.__setattr__(self, "mount", mount_tuple("LidarParams.mount", self.mount))
        for f in fields(self):
            if f.name == "mount":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                bad(f.name, "must be a number")
            if not math.isfinite(value):
                bad(f.name, "must be finite")
        for name in ("beams", "azimuth_steps"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                bad(name, "must be an integer >= 1")
        if self.rate_hz <= 0:
            bad("rate_hz", "must be > 0")
        if self.min_range_m < 0:
            bad("min_range_m", "must be >= 0")
        if self.max_range_m <= self.min_range_m:
            bad("max_range_m", f"must be > min_range_m ({self.min_range_m})")
        if not -90.0 <= self.vfov_min_deg < self.vfov_max_deg <= 90.0:
            bad("vfov_min_deg", f"need -90 <= vfov_min_deg < vfov_max_deg ({self.vfov_max_deg})"
                " <= 90")
        if self.range_noise_sigma_m < 0:
            bad("range_noise_sigma_m", "must be >= 0")
        if not 0.0 <= self.dropout_prob < 1.0:
            bad("dropout_prob", "must be in [0, 1)")
        if self.mount[2] <= 0:
            bad("mount", "the sensor height (z) must be > 0")
        if self.intensity_attenuation_per_m < 0:
            bad("intensity_attenuation_per_m", "must be >= 0")

    @classmethod
    def from_dict(cls, values: dict) -> LidarParams:
        """Build from a dict; unknown keys raise ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"LidarParams: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


@dataclass(frozen=True, eq=False)
class LidarScan:
    """One lidar frame.

    Attributes:
        points: (N, 4) float32 x, y, z [m] in the sensor frame (REP-103) and intensity [0, 1].
        hit_material: (N,) int16 material of the surface hit (``MAT_GROUND`` for the ground).
        hit_id: (N,) int64 id of the box hit (``GROUND_ID`` for the ground).
        time_s: simulation time of the scene [s].
    """

    points: np.ndarray
    hit_material: np.ndarray
    hit_id: np.ndarray
    time_s: float = 0.0

    def __len__(self) -> int:
        return int(self.points.shape[0])


def to_xyzi(scan: LidarScan) -> np.ndarray:
    """(N, 4) C-contiguous float32 x, y, z, intensity: carla-ros-bridge's PointCloud2 layout
    (four float32 fields at offsets 0, 4, 8, 12; point_step 16)."""
    return np.ascontiguousarray(scan.points, dtype=np.float32)


@njit(cache=True, nogil=True, error_model="numpy")
def _ray_window(cx: float, cy: float, cz: float, hx: float, hy: float, hz: float, cb: float,
                sb: float, inside: bool, n_az: int, elev: np.ndarray,
                max_range: float) -> tuple[bool, int, int, int, int]:
    """The (conservative) window of rays that can hit a box whose footprint, in the sensor frame,
    is centred at (cx, cy) with half sizes (hx, hy) turned by the yaw of (cos, sin) = (cb, sb)
    and whose height spans cz -+ hz. ``inside``: the sensor is inside the footprint (full
    azimuth circle).

    Returns (any rays, first azimuth step, last azimuth step (may wrap: take them mod n_az),
    first beam, beam end (exclusive)).
    """
    az_step = 2.0 * math.pi / n_az
    dist = math.hypot(cx, cy)
    half_diag = math.hypot(hx, hy)
    if dist - half_diag > max_range:
        return False, 0, -1, 0, 0
    if inside:
        k_lo, k_hi = 0, n_az - 1
        r_min = 1e-6
    else:
        a0 = math.atan2(cy, cx)
        lo, hi = 0.0, 0.0
        for sx in (-1.0, 1.0):
            for sy in (-1.0, 1.0):
                px = cx + cb * sx * hx - sb * sy * hy
                py = cy + sb * sx * hx + cb * sy * hy
                da = math.atan2(py, px) - a0
                if da > math.pi:
                    da -= 2.0 * math.pi
                elif da < -math.pi:
                    da += 2.0 * math.pi
                lo = min(lo, da)
                hi = max(hi, da)
        k_lo = int(math.ceil((a0 + lo - WINDOW_MARGIN_RAD) / az_step))
        k_hi = int(math.floor((a0 + hi + WINDOW_MARGIN_RAD) / az_step))
        r_min = max(dist - half_diag, 1e-6)
    r_max = dist + half_diag
    z_top, z_bot = cz + hz, cz - hz
    e_hi = math.atan2(z_top, r_min if z_top >= 0.0 else r_max) + WINDOW_MARGIN_RAD
    e_lo = math.atan2(z_bot, r_min if z_bot < 0.0 else r_max) - WINDOW_MARGIN_RAD
    b_lo = np.searchsorted(elev, e_lo)
    b_hi = np.searchsorted(elev, e_hi, side="right")
    return b_lo < b_hi, k_lo, k_hi, b_lo, b_hi


@njit(cache=True, nogil=True, error_model="numpy")
def _slab(ox: float, oy: float, oz: float, lx: float, ly: float, lz: float, hx: float,
          hy: float, hz: float) -> tuple[float, float]:
    """Slab test of the ray o + t l against the box |x| <= hx, |y| <= hy, |z| <= hz (box frame):
    (t entering, t leaving); a hit when entering <= leaving (1/0 -> inf under
    error_model="numpy")."""
    inv = 1.0 / lx
    t1 = (-hx - ox) * inv
    t2 = (hx - ox) * inv
    tn = min(t1, t2)
    tf = max(t1, t2)
    inv = 1.0 / ly
    t1 = (-hy - oy) * inv
    t2 = (hy - oy) * inv
    tn = max(tn, min(t1, t2))
    tf = min(tf, max(t1, t2))
    inv = 1.0 / lz
    t1 = (-hz - oz) * inv
    t2 = (hz - oz) * inv
    tn = max(tn, min(t1, t2))
    tf = min(tf, max(t1, t2))
    return tn, tf


@njit(cache=True, nogil=True, error_model="numpy")
def _cast_boxes(cos_a: np.ndarray, sin_a: np.ndarray, elev: np.ndarray, cos_e: np.ndarray,
                sin_e: np.ndarray, centers: np.ndarray, half: np.ndarray, yaws: np.ndarray,
                max_range: float, best_t: np.ndarray, best_j: np.ndarray) -> None:
    """For every box j (sensor frame), slab-test the rays in its window; keep the nearest hit.

    best_t (B, A) float64 and best_j (B, A) int64 are updated in place.
    """
    n_az = cos_a.shape[0]
    for j in range(centers.shape[0]):
        cx, cy, cz = centers[j, 0], centers[j, 1], centers[j, 2]
        hx, hy, hz = half[j, 0], half[j, 1], half[j, 2]
        cb, sb = math.cos(yaws[j]), math.sin(yaws[j])
        # Sensor origin in the box frame.
        ox = -(cb * cx + sb * cy)
        oy = -(-sb * cx + cb * cy)
        oz = -cz
        inside = abs(ox) <= hx + INSIDE_TOL_M and abs(oy) <= hy + INSIDE_TOL_M
        any_ray, k_lo, k_hi, b_lo, b_hi = _ray_window(cx, cy, cz, hx, hy, hz, cb, sb, inside, n_az,
                                                      elev, max_range)
        if not any_ray:
            continue
        for k in range(k_lo, k_hi + 1):
            kk = k % n_az
            if kk < 0:
                kk += n_az
            ca, sa = cos_a[kk], sin_a[kk]
            for b in range(b_lo, b_hi):
                dx = cos_e[b] * ca
                dy = cos_e[b] * sa
                dz = sin_e[b]
                lx = cb * dx + sb * dy
                ly = -sb * dx + cb * dy
                tn, tf = _slab(ox, oy, oz, lx, ly, dz, hx, hy, hz)
                # NaN (ray parallel to and on a slab plane) fails every comparison: no hit.
                if tn <= tf and tn > 0.0 and tn < best_t[b, kk]:
                    best_t[b, kk] = tn
                    best_j[b, kk] = j


@njit(cache=True, nogil=True, error_model="numpy")
def _cast_rotated_boxes(cos_a: np.ndarray, sin_a: np.ndarray, elev: np.ndarray,
                        cos_e: np.ndarray, sin_e: np.ndarray, centers: np.ndarray,
                        rotations: np.ndarray, half: np.ndarray, bound_half: np.ndarray,
                        max_range: float, best_t: np.ndarray, best_j: np.ndarray) -> None:
    """:func:`_cast_boxes` for boxes of any orientation in the sensor frame (a tilted mount).

    rotations (N, 3, 3): box -> sensor; half (N, 3): the box's half sizes; bound_half (N, 3): half
    sizes of its axis-aligned bounds in the sensor frame, which give the (conservative) window.
    best_t (B, A) and best_j (B, A) are updated in place.
    """
    n_az = cos_a.shape[0]
    for j in range(centers.shape[0]):
        cx, cy, cz = centers[j, 0], centers[j, 1], centers[j, 2]
        hx, hy, hz = half[j, 0], half[j, 1], half[j, 2]
        bx, by, bz = bound_half[j, 0], bound_half[j, 1], bound_half[j, 2]
        r = rotations[j]
        # Sensor origin in the box frame: -R^T c.
        ox = -(r[0, 0] * cx + r[1, 0] * cy + r[2, 0] * cz)
        oy = -(r[0, 1] * cx + r[1, 1] * cy + r[2, 1] * cz)
        oz = -(r[0, 2] * cx + r[1, 2] * cy + r[2, 2] * cz)
        # The window of the axis-aligned bounds (no yaw): it contains the box.
        inside = abs(cx) <= bx + INSIDE_TOL_M and abs(cy) <= by + INSIDE_TOL_M
        any_ray, k_lo, k_hi, b_lo, b_hi = _ray_window(cx, cy, cz, bx, by, bz, 1.0, 0.0, inside,
                                                      n_az, elev, max_range)
        if not any_ray:
            continue
        for k in range(k_lo, k_hi + 1):
            kk = k % n_az
            if kk < 0:
                kk += n_az
            ca, sa = cos_a[kk], sin_a[kk]
            for b in range(b_lo, b_hi):
                dx = cos_e[b] * ca
                dy = cos_e[b] * sa
                dz = sin_e[b]
                # Ray direction in the box frame: R^T d.
                lx = r[0, 0] * dx + r[1, 0] * dy + r[2, 0] * dz
                ly = r[0, 1] * dx + r[1, 1] * dy + r[2, 1] * dz
                lz = r[0, 2] * dx + r[1, 2] * dy + r[2, 2] * dz
                tn, tf = _slab(ox, oy, oz, lx, ly, lz, hx, hy, hz)
                if tn <= tf and tn > 0.0 and tn < best_t[b, kk]:
                    best_t[b, kk] = tn
                    best_j[b, kk] = j


class LidarModel:
    """Lidar ray caster for :class:`Scene3D`; see the module docstring for the algorithm.

    Attributes:
        mount: ``T_base_link<-sensor`` (from ``params.mount``).
    """

    def __init__(self, params: LidarParams | None = None) -> None:
        self.params = params if params is not None else LidarParams()
        p = self.params
        self.elevations_rad = np.radians(np.linspace(p.vfov_min_deg, p.vfov_max_deg, p.beams))
        self.azimuths_rad = 2.0 * np.pi * np.arange(p.azimuth_steps) / p.azimuth_steps
        self._cos_e = np.cos(self.elevations_rad)
        self._sin_e = np.sin(self.elevations_rad)
        self._cos_a = np.cos(self.azimuths_rad)
        self._sin_a = np.sin(self.azimuths_rad)
        # Unit ray directions in the sensor frame, (B, A, 3).
        self.directions = np.stack(np.broadcast_arrays(
            self._cos_e[:, None] * self._cos_a[None, :],
            self._cos_e[:, None] * self._sin_a[None, :],
            self._sin_e[:, None]), axis=-1)
        self.mount = mount_transform(p.mount)
        # Three cases: no mount rotation (today's default; the exact yaw-only sensor pose), a yaw
        # about +z only (boxes stay yaw-only in the sensor frame: same kernel, yaws offset), or a
        # tilted mount (general kernel).
        self._mount_rotation = None if self.mount.is_pure_translation() else self.mount.rotation
        self._tilted = not self.mount.is_yaw_only()
        self._mount_yaw = float(np.arctan2(self.mount.rotation[1, 0], self.mount.rotation[0, 0]))
        height = float(self.mount.translation[2])
        if not self._tilted:
            # Ground range depends on the beam only (flat ground, level sensor).
            with np.errstate(divide="ignore"):
                ground_t = np.where(self._sin_e < 0.0, -height / self._sin_e, np.inf)
            self._ground_t = np.broadcast_to(ground_t[:, None], (p.beams, p.azimuth_steps))
        else:
            # z of each ray in base_link (= map z: the ego is level on flat ground).
            dz = self.directions @ self.mount.rotation[2]
            with np.errstate(divide="ignore"):
                self._ground_t = np.where(dz < 0.0, -height / dz, np.inf)
        self._mat_reflect = np.full(256, DEFAULT_REFLECTIVITY, np.float64)
        for mat, value in MATERIAL_REFLECTIVITY.items():
            self._mat_reflect[mat] = value
        self._surf_reflect = np.zeros(256, np.float64)
        for code, value in SURFACE_REFLECTIVITY.items():
            self._surf_reflect[code] = value

    @property
    def rays_per_scan(self) -> int:
        """beams x azimuth_steps."""
        return self.params.beams * self.params.azimuth_steps

    def warm_up(self) -> None:
        """Compile the numba kernel of this mount (first call costs ~1 s; cached on disk
        afterwards)."""
        best_t = np.full((1, 4), np.inf)
        best_j = np.full((1, 4), -1, np.int64)
        if self._tilted:
            _cast_rotated_boxes(np.ones(4), np.zeros(4), np.zeros(1), np.ones(1), np.zeros(1),
                                np.array([[5.0, 0.0, 0.0]]), np.eye(3)[None].copy(),
                                np.ones((1, 3)), np.ones((1, 3)), 80.0, best_t, best_j)
        else:
            _cast_boxes(np.ones(4), np.zeros(4), np.zeros(1), np.ones(1), np.zeros(1),
                        np.array([[5.0, 0.0, 0.0]]), np.ones((1, 3)), np.zeros(1), 80.0, best_t,
                        best_j)

    def scan(self, scene: Scene3D, rng: np.random.Generator) -> LidarScan:
        """Cast every ray into ``scene``.

        Args:
            scene: the scene; agents and statics are hit, the ego's own box blocks rays.
            rng: source of range noise and dropout (the same rng state and scene give the
                same scan).

        Returns:
            The returns in the sensor frame, azimuth-major (all beams of step 0, then step 1...).
        """
        p = self.params
        origin, rot = scene.sensor_pose(self.mount.translation, self._mount_rotation)
        ego = scene.ego_box()
        boxes = BoxSet.concat(ego, scene.agents, scene.statics,
                              scene.lights.boxes if scene.lights is not None else BoxSet.empty())
        # Boxes into the sensor frame.
        rel = boxes.centers - origin
        centers_s = rel @ rot  # row-vector form of rot.T @ rel
        half = boxes.sizes / 2.0

        best_t = np.full((p.beams, p.azimuth_steps), np.inf)
        best_j = np.full((p.beams, p.azimuth_steps), -1, np.int64)
        if not self._tilted:
            yaw_s = boxes.yaws - scene.ego_pose[2]
            if self._mount_rotation is not None:
                yaw_s = yaw_s - self._mount_yaw
            _cast_boxes(self._cos_a, self._sin_a, self.elevations_rad, self._cos_e, self._sin_e,
                        centers_s, half, yaw_s, float(p.max_range_m), best_t, best_j)
        else:
            c, s = np.cos(boxes.yaws), np.sin(boxes.yaws)
            box_to_map = np.zeros((len(boxes), 3, 3))
            box_to_map[:, 0, 0], box_to_map[:, 0, 1] = c, -s
            box_to_map[:, 1, 0], box_to_map[:, 1, 1] = s, c
            box_to_map[:, 2, 2] = 1.0
            box_to_sensor = np.ascontiguousarray(rot.T @ box_to_map)  # (N, 3, 3)
            bound_half = np.abs(box_to_sensor) @ half[:, :, None]
            _cast_rotated_boxes(self._cos_a, self._sin_a, self.elevations_rad, self._cos_e,
                                self._sin_e, centers_s, box_to_sensor, half,
                                np.ascontiguousarray(bound_half[:, :, 0]), float(p.max_range_m),
                                best_t, best_j)

        ground = self._ground_t < best_t
        t = np.where(ground, self._ground_t, best_t)
        # Azimuth-major order (transpose) like a rotating sensor.
        t = t.T.ravel()
        j = best_j.T.ravel()
        ground = ground.T.ravel()
        valid = np.isfinite(t) & (t <= p.max_range_m) & (t >= p.min_range_m)
        valid &= ground | (j != 0)  # j == 0 is the ego: self-return, dropped
        idx = np.flatnonzero(valid)
        if p.dropout_prob > 0.0 and idx.size:
            idx = idx[rng.random(idx.size) >= p.dropout_prob]
        t = t[idx]
        if p.range_noise_sigma_m > 0.0 and idx.size:
            t = t + rng.normal(0.0, p.range_noise_sigma_m, idx.size)
            keep = (t >= p.min_range_m) & (t <= p.max_range_m)
            idx, t = idx[keep], t[keep]
        dirs = self.directions.transpose(1, 0, 2).reshape(-1, 3)[idx]
        xyz = dirs * t[:, None]
        is_ground = ground[idx]
        hit_j = j[idx]
        hit_material = np.where(is_ground, MAT_GROUND, boxes.materials[hit_j]).astype(np.int16)
        hit_id = np.where(is_ground, GROUND_ID, boxes.ids[hit_j]).astype(np.int64)
        reflect = self._mat_reflect[hit_material]
        if is_ground.any():
            if self._tilted:
                gxy = origin[:2] + xyz[is_ground] @ rot[:2].T
            else:
                gxy = origin[:2] + xyz[is_ground, :2] @ rot[:2, :2].T
            reflect[is_ground] = self._surf_reflect[scene.road.surface_at(gxy)]
        intensity = reflect * np.exp(-p.intensity_attenuation_per_m * t)
        points = np.empty((idx.size, 4), np.float32)
        points[:, :3] = xyz
        points[:, 3] = intensity
        return LidarScan(points, hit_material, hit_id, scene.time_s)
