"""The 3D scene the world hands the sensor models every step.

Everything is in the ``map`` frame (x east, y north, z up, flat ground at z = 0), SI units,
radians. The world (``tps_sim.world``) builds one :class:`Scene3D` per step; the lidar and
camera models (``tps_sim.sensors.lidar`` / ``camera``) only read it.

Boxes are oriented in yaw only (no pitch/roll): a box is its centre (z = height of the box
centre above the ground, i.e. ``height / 2`` for an object standing on the ground), its size
(length along its heading, width, height) and its yaw (counter-clockwise from map +x).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import cv2
import numpy as np
from tps_common.frames import RigidTransform, parse_static_transform
from tps_common.params import ParameterError

# Default sensor mounts relative to base_link (docs/CONTRACTS.md "Frames and units"): x, y, z [m],
# roll, pitch, yaw [rad] (R = Rz Ry Rx). The camera mount is the pose of its body frame (x along
# the optical axis, y left, z up); its optical frame (x right, y down, z forward) follows from it.
# config/sim_bridge.param.yaml repeats these defaults (a test checks they agree).
LIDAR_HEIGHT_M = 1.8
CAMERA_OFFSET_M = (1.5, 0.0, 1.5)
LIDAR_MOUNT = (0.0, 0.0, LIDAR_HEIGHT_M, 0.0, 0.0, 0.0)
CAMERA_MOUNT = (*CAMERA_OFFSET_M, 0.0, 0.0, 0.0)

# Box materials: they drive lidar intensity, camera colour and labels. Dynamic-agent materials
# are equal to the class ids of the detector (tps_msgs DetectedAgent class ids).
MAT_CAR, MAT_TRUCK, MAT_BUS, MAT_PEDESTRIAN, MAT_CYCLIST = 1, 2, 3, 4, 5
MAT_POLE, MAT_BARRIER, MAT_WALL, MAT_BUILDING, MAT_PARKED_CAR, MAT_DEBRIS = 10, 11, 12, 13, 14, 15
# Traffic-light housings (their poles and arms are MAT_POLE); see LightScene.
MAT_SIGNAL = 16
# Ids of the traffic-light structure boxes (poles, arms, housings): apart from agents (1, 2, ...)
# and world statics (tps_sim.world.state.STATIC_ID_BASE = 1_000_000 upwards).
SIGNAL_ID_BASE = 3_000_000

# Sensor hits on the ground plane (no box) carry this material and id GROUND_ID.
MAT_GROUND = 0
GROUND_ID = -1

AGENT_MATERIALS = (MAT_CAR, MAT_TRUCK, MAT_BUS, MAT_PEDESTRIAN, MAT_CYCLIST)
CLUTTER_MATERIALS = (MAT_POLE, MAT_BARRIER, MAT_WALL, MAT_BUILDING, MAT_PARKED_CAR, MAT_DEBRIS)
MATERIAL_NAMES = {
    MAT_GROUND: "ground",
    MAT_CAR: "car",
    MAT_TRUCK: "truck",
    MAT_BUS: "bus",
    MAT_PEDESTRIAN: "pedestrian",
    MAT_CYCLIST: "cyclist",
    MAT_POLE: "pole",
    MAT_BARRIER: "barrier",
    MAT_WALL: "wall",
    MAT_BUILDING: "building",
    MAT_PARKED_CAR: "parked_car",
    MAT_DEBRIS: "debris",
    MAT_SIGNAL: "signal",
}

# Typical box heights [m] per material, for worlds that only know a footprint (SUMO vTypes have
# a height attribute, which should be preferred where set).
TYPICAL_HEIGHT_M = {
    MAT_CAR: 1.5,
    MAT_TRUCK: 3.4,
    MAT_BUS: 3.1,
    MAT_PEDESTRIAN: 1.75,
    MAT_CYCLIST: 1.7,
    MAT_POLE: 4.0,
    MAT_BARRIER: 1.0,
    MAT_WALL: 2.5,
    MAT_BUILDING: 8.0,
    MAT_PARKED_CAR: 1.5,
    MAT_DEBRIS: 0.4,
}

# Codes of the road-surface raster (RoadSurface.raster / surface_at).
SURFACE_OFFROAD, SURFACE_ASPHALT, SURFACE_MARKING = 0, 1, 2

# The raster never exceeds this many cells; the cell size grows for very large networks.
MAX_RASTER_CELLS = 40_000_000
RASTER_MARGIN_M = 5.0


def mount_tuple(name: str, values) -> tuple[float, float, float, float, float, float]:
    """Check a sensor mount (6 finite numbers: x, y, z [m], roll, pitch, yaw [rad], angles in
    range) and return it as a tuple of floats.

    Raises:
        ValueError: naming ``name`` and what is wrong.
    """
    try:
        parse_static_transform(name, values)
    except ParameterError as exc:
        raise ValueError(str(exc)) from None
    return tuple(float(v) for v in values)


def mount_transform(mount) -> RigidTransform:
    """``T_base_link<-sensor`` of a mount tuple (x, y, z, roll, pitch, yaw); zero angles give an
    exact identity rotation."""
    return RigidTransform.from_xyz_rpy(mount[:3], mount[3:])


def _as_array(value: object, dtype: type, shape_tail: tuple[int, ...], name: str) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(value, dtype=dtype))
    if arr.ndim == 1 and len(shape_tail) == 1 and arr.size == 0:
        arr = arr.reshape((0,) + shape_tail)
    if arr.ndim != 1 + len(shape_tail) or arr.shape[1:] != shape_tail:
        raise ValueError(f"BoxSet.{name}: expected shape (N, {', '.join(map(str, shape_tail))})"
                         f", got {arr.shape}")
    return arr


@dataclass(frozen=True, eq=False)
class BoxSet:
    """N oriented 3D boxes in the map frame.

    Attributes:
        ids: (N,) int64 object ids (agents: the world's agent id; statics: any unique id).
        centers: (N, 3) float64 box centres [m], z = centre height above ground.
        sizes: (N, 3) float64 length (along heading), width, height [m], all > 0.
        yaws: (N,) float64 heading [rad], counter-clockwise from map +x.
        materials: (N,) int16 ``MAT_*`` codes.
    """

    ids: np.ndarray
    centers: np.ndarray
    sizes: np.ndarray
    yaws: np.ndarray
    materials: np.ndarray

    def __post_init__(self) -> None:
        ids = np.ascontiguousarray(np.asarray(self.ids, dtype=np.int64).reshape(-1))
        n = ids.shape[0]
        centers = _as_array(self.centers, np.float64, (3,), "centers")
        sizes = _as_array(self.sizes, np.float64, (3,), "sizes")
        yaws = np.ascontiguousarray(np.asarray(self.yaws, dtype=np.float64).reshape(-1))
        materials = np.ascontiguousarray(np.asarray(self.materials, dtype=np.int16).reshape(-1))
        for name, arr in (("centers", centers), ("sizes", sizes), ("yaws", yaws),
                          ("materials", materials)):
            if arr.shape[0] != n:
                raise ValueError(f"BoxSet.{name}: {arr.shape[0]} rows but {n} ids")
        if n and not (np.all(np.isfinite(centers)) and np.all(np.isfinite(sizes))
                      and np.all(np.isfinite(yaws))):
            raise ValueError("BoxSet: centers, sizes and yaws must be finite")
        if n and np.any(sizes <= 0.0):
            raise ValueError("BoxSet.sizes: every length, width and height must be > 0")
        object.__setattr__(self, "ids", ids)
        object.__setattr__(self, "centers", centers)
        object.__setattr__(self, "sizes", sizes)
        object.__setattr__(self, "yaws", yaws)
        object.__setattr__(self, "materials", materials)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def empty(cls) -> BoxSet:
        """A set of zero boxes."""
        return cls(np.zeros(0, np.int64), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0),
                   np.zeros(0, np.int16))

    @classmethod
    def concat(cls, *sets: BoxSet) -> BoxSet:
        """All boxes of ``sets`` in order (an empty set when none are given)."""
        sets = tuple(s for s in sets if len(s))
        if not sets:
            return cls.empty()
        if len(sets) == 1:
            return sets[0]
        return cls(
            np.concatenate([s.ids for s in sets]),
            np.concatenate([s.centers for s in sets]),
            np.concatenate([s.sizes for s in sets]),
            np.concatenate([s.yaws for s in sets]),
            np.concatenate([s.materials for s in sets]),
        )

    def select(self, mask: np.ndarray) -> BoxSet:
        """The boxes where ``mask`` (bool (N,) or index array) selects."""
        return BoxSet(self.ids[mask], self.centers[mask], self.sizes[mask], self.yaws[mask],
                      self.materials[mask])

    def corners(self) -> np.ndarray:
        """(N, 8, 3) corner positions [m, map frame].

        Order: bottom face (z - h/2) front-left, front-right, rear-right, rear-left, then the same
        four on the top face.
        """
        half = self.sizes / 2.0
        sx = np.array([1, 1, -1, -1, 1, 1, -1, -1], dtype=np.float64)
        sy = np.array([1, -1, -1, 1, 1, -1, -1, 1], dtype=np.float64)
        sz = np.array([-1, -1, -1, -1, 1, 1, 1, 1], dtype=np.float64)
        lx = sx[None, :] * half[:, 0:1]
        ly = sy[None, :] * half[:, 1:2]
        c, s = np.cos(self.yaws)[:, None], np.sin(self.yaws)[:, None]
        out = np.empty((len(self), 8, 3))
        out[:, :, 0] = self.centers[:, 0:1] + c * lx - s * ly
        out[:, :, 1] = self.centers[:, 1:2] + s * lx + c * ly
        out[:, :, 2] = self.centers[:, 2:3] + sz[None, :] * half[:, 2:3]
        return out


@dataclass(frozen=True, eq=False)
class RoadSurface:
    """The drivable surface of a network and its lane markings, in the map frame.

    Attributes:
        drivable_polygons: (M_i, 2) float64 polygons [m] (lane shapes and junction shapes).
        marking_polylines: (K_i, 2) float64 polylines [m] of painted lines (lane borders,
            dashes as separate short polylines).
        marking_width_m: painted line width [m].
        marking_areas: (J_i, 2) float64 polygons [m] of painted areas (stop lines, give-way
            dashes, zebra stripes), filled.
        raster_resolution_m: requested cell size of the cached raster [m]; it grows when the
            network would need more than ``MAX_RASTER_CELLS`` cells.

    The raster is computed once per object (``cached_property``): build one RoadSurface per
    network and reuse it in every Scene3D of that network.
    """

    drivable_polygons: tuple = ()
    marking_polylines: tuple = ()
    marking_width_m: float = 0.15
    raster_resolution_m: float = 0.2
    marking_areas: tuple = ()

    def __post_init__(self) -> None:
        polys = tuple(np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in
                      self.drivable_polygons)
        lines = tuple(np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in
                      self.marking_polylines)
        areas = tuple(np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in
                      self.marking_areas)
        if not self.marking_width_m > 0.0:
            raise ValueError(f"RoadSurface.marking_width_m must be > 0, got {self.marking_width_m}")
        if not self.raster_resolution_m > 0.0:
            raise ValueError("RoadSurface.raster_resolution_m must be > 0, got "
                             f"{self.raster_resolution_m}")
        for p in polys + lines + areas:
            if not np.all(np.isfinite(p)):
                raise ValueError("RoadSurface: polygon/polyline coordinates must be finite")
        object.__setattr__(self, "drivable_polygons", polys)
        object.__setattr__(self, "marking_polylines", lines)
        object.__setattr__(self, "marking_areas", areas)

    @cached_property
    def raster(self) -> tuple[np.ndarray, float, float, float]:
        """(codes (H, W) uint8, x0 [m], y0 [m], cell [m]) — the BEV raster of surface codes.

        Cell (row r, column c) covers x in [x0 + c*cell, x0 + (c+1)*cell), y likewise with r.
        """
        pts = [p for p in self.drivable_polygons + self.marking_polylines if len(p)]
        if not pts:
            return np.zeros((1, 1), np.uint8), 0.0, 0.0, self.raster_resolution_m
        allp = np.concatenate(pts)
        x0, y0 = allp.min(axis=0) - RASTER_MARGIN_M
        x1, y1 = allp.max(axis=0) + RASTER_MARGIN_M
        cell = float(self.raster_resolution_m)
        while ((x1 - x0) / cell) * ((y1 - y0) / cell) > MAX_RASTER_CELLS:
            cell *= 1.5
        w = int(np.ceil((x1 - x0) / cell))
        h = int(np.ceil((y1 - y0) / cell))
        codes = np.zeros((h, w), np.uint8)
        # OpenCV draws with fixed-point sub-pixel coordinates: shift = 4 bits.
        shift = 4
        scale = float(1 << shift) / cell

        def to_px(p: np.ndarray) -> np.ndarray:
            q = np.empty_like(p)
            q[:, 0] = (p[:, 0] - x0) * scale - 0.5 * (1 << shift)
            q[:, 1] = (p[:, 1] - y0) * scale - 0.5 * (1 << shift)
            return np.round(q).astype(np.int32)

        # One call per polygon: a single fillPoly call over several polygons fills by parity,
        # so where lanes overlap junction shapes it would leave holes.
        for poly in self.drivable_polygons:
            if len(poly) >= 3:
                cv2.fillPoly(codes, [to_px(poly)], SURFACE_ASPHALT, lineType=cv2.LINE_8,
                             shift=shift)
        lines = [to_px(p) for p in self.marking_polylines if len(p) >= 2]
        if lines:
            thickness = max(1, int(round(self.marking_width_m / cell)))
            cv2.polylines(codes, lines, False, SURFACE_MARKING, thickness=thickness,
                          lineType=cv2.LINE_8, shift=shift)
        for area in self.marking_areas:
            if len(area) >= 3:
                cv2.fillPoly(codes, [to_px(area)], SURFACE_MARKING, lineType=cv2.LINE_8,
                             shift=shift)
        return codes, float(x0), float(y0), cell

    def surface_at(self, xy: np.ndarray) -> np.ndarray:
        """Surface codes (``SURFACE_*``, (N,) uint8) at map positions ``xy`` (N, 2) [m]."""
        codes, x0, y0, cell = self.raster
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        c = np.floor((xy[:, 0] - x0) / cell)
        r = np.floor((xy[:, 1] - y0) / cell)
        h, w = codes.shape
        ok = (c >= 0) & (c < w) & (r >= 0) & (r < h)
        out = np.full(xy.shape[0], SURFACE_OFFROAD, np.uint8)
        out[ok] = codes[r[ok].astype(np.intp), c[ok].astype(np.intp)]
        return out


@dataclass(frozen=True, eq=False)
class LightScene:
    """Traffic lights as the sensors see them (map frame).

    The structure (poles, arms, hangers and housings) is plain geometry: both sensors see its
    boxes, the lidar never the lamps' colours. The camera also paints each head's three lamps on
    its housing's front face: the lit one in the colour of its state, the others dark
    (``tps_common.traffic_lights`` has the light model: lamp layout, sizes).

    Attributes:
        heads: K ``tps_common.traffic_lights.LightHead`` (id, housing pose, stop line).
        states: (K,) uint8 state of each head (``tps_common.traffic_lights`` RED, YELLOW, GREEN,
            OFF).
        boxes: every structure box (ids from ``SIGNAL_ID_BASE``; housings MAT_SIGNAL, the rest
            MAT_POLE).
        housing_rows: (K,) int64, the row of ``boxes`` that is head k's housing.
    """

    heads: tuple
    states: np.ndarray
    boxes: BoxSet
    housing_rows: np.ndarray

    def __post_init__(self) -> None:
        states = np.asarray(self.states, np.uint8).reshape(-1)
        rows = np.asarray(self.housing_rows, np.int64).reshape(-1)
        if not (len(self.heads) == states.shape[0] == rows.shape[0]):
            raise ValueError(f"LightScene: {len(self.heads)} heads, {states.shape[0]} states, "
                             f"{rows.shape[0]} housing rows")
        if rows.size and (rows.min() < 0 or rows.max() >= len(self.boxes)):
            raise ValueError("LightScene.housing_rows: a row outside boxes")
        object.__setattr__(self, "heads", tuple(self.heads))
        object.__setattr__(self, "states", states)
        object.__setattr__(self, "housing_rows", rows)

    def __len__(self) -> int:
        return len(self.heads)

    def with_states(self, states: np.ndarray) -> LightScene:
        """The same lights in other states (the structure is shared)."""
        return LightScene(self.heads, states, self.boxes, self.housing_rows)


@dataclass(frozen=True, eq=False)
class Scene3D:
    """Everything a sensor can see at one simulation step.

    Attributes:
        agents: dynamic agents (cars, trucks, buses, pedestrians, cyclists), NOT the ego.
        statics: clutter (poles, barriers, walls, buildings, parked cars, debris).
        road: the network's road surface (shared between steps).
        ego_pose: (x [m], y [m], yaw [rad]) of base_link in map.
        ego_size: (length, width, height) [m] of the ego's box, centred on base_link in x/y,
            standing on the ground. Sensors exclude it.
        time_s: simulation time [s].
        lights: the traffic lights (structure + lamp states), or None where there are none.
            Their boxes are sensor geometry only: not world statics (the world's collision
            check and the episode log's statics do not include them).
    """

    agents: BoxSet
    statics: BoxSet
    road: RoadSurface
    ego_pose: tuple[float, float, float]
    ego_size: tuple[float, float, float] = (4.6, 1.9, 1.5)
    time_s: float = 0.0
    lights: LightScene | None = None

    def __post_init__(self) -> None:
        pose = tuple(float(v) for v in self.ego_pose)
        size = tuple(float(v) for v in self.ego_size)
        if len(pose) != 3 or not all(np.isfinite(pose)):
            raise ValueError(f"Scene3D.ego_pose must be 3 finite numbers, got {self.ego_pose}")
        if len(size) != 3 or not all(v > 0 for v in size):
            raise ValueError(f"Scene3D.ego_size must be 3 positive numbers, got {self.ego_size}")
        object.__setattr__(self, "ego_pose", pose)
        object.__setattr__(self, "ego_size", size)

    def all_boxes(self) -> BoxSet:
        """Agents, statics, then the traffic-light structure (if any), as one set."""
        if self.lights is None:
            return BoxSet.concat(self.agents, self.statics)
        return BoxSet.concat(self.agents, self.statics, self.lights.boxes)

    def ego_box(self) -> BoxSet:
        """The ego as a one-box set (id -1, material car)."""
        x, y, yaw = self.ego_pose
        length, width, height = self.ego_size
        return BoxSet(np.array([-1]), np.array([[x, y, height / 2.0]]),
                      np.array([[length, width, height]]), np.array([yaw]),
                      np.array([MAT_CAR], np.int16))

    def sensor_pose(self, offset_m: tuple[float, float, float],
                    rotation: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(origin (3,) in map [m], rotation (3, 3) sensor->map) of a sensor mounted at
        ``offset_m`` in base_link, rotated by ``rotation`` (sensor->base_link; None = none)."""
        return sensor_pose(self.ego_pose, offset_m, rotation)


def sensor_pose(ego_pose: tuple[float, float, float], offset_m: tuple[float, float, float],
                rotation: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(origin (3,) [m, map], R (3, 3) sensor->map) for a yaw-only ego pose (x, y, yaw) and a
    sensor at ``offset_m`` (x, y, z) in base_link with the mount rotation ``rotation``
    ((3, 3) sensor->base_link; None = no rotation, the exact yaw-only matrix)."""
    x, y, yaw = ego_pose
    c, s = np.cos(yaw), np.sin(yaw)
    rot = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    origin = np.array([x, y, 0.0]) + rot @ np.asarray(offset_m, dtype=np.float64)
    if rotation is not None:
        rot = rot @ np.asarray(rotation, dtype=np.float64).reshape(3, 3)
    return origin, rot
