"""Front pinhole camera model: flat-shaded rendering of a :class:`Scene3D`.

The camera is mounted at a 6-DOF pose ``mount`` in base_link (docs/CONTRACTS.md): x, y, z [m],
roll, pitch, yaw [rad] of its *body* frame (x along the optical axis, y left, z up); the default
looks along base_link +x. Its optical frame (z forward, x right, y down; the frame of its images,
as carla-ros-bridge's ``ego_vehicle/rgb_front``) follows from it by :data:`BODY_TO_OPTICAL`.
The projection is ``u = fx * x_opt / z_opt + cx``, ``v = fy * y_opt / z_opt + cy`` with no
distortion, the same K that :meth:`CameraModel.camera_info_fields` hands to
``sensor_msgs/CameraInfo``. Pixel centres are at integer (u, v), as in OpenCV and ROS.

Rendering, back to front:
1. sky everywhere, then the ground: every pixel whose ray points below the horizon sees the
   ground at a base_link position that only depends on the pixel (flat ground, fixed mount), so
   those positions are a table; each frame they are moved to the map frame and looked up in the
   road raster (asphalt, lane paint, off-road). With a level mount (no roll or pitch) these are
   exactly the rows below the horizon row;
2. boxes (agents, clutter and the traffic-light structure, not the ego) sorted far to near by
   the distance from the camera to the nearest point of their footprint (painter's algorithm),
   each drawn as its camera-facing faces, clipped at the near plane, filled with
   ``cv2.fillConvexPoly`` and flat-shaded by face orientation. Right after a traffic-light
   housing's front face, its three lamps are painted on it (12-gon discs, unshaded): the lit
   one in its state's colour (``LAMP_RGB``), the others dark.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import cv2
import numpy as np
from numba import njit
from tps_common.traffic_lights import GREEN, LAMP_ORDER, RED, YELLOW

from tps_sim.sensors.rig import CAMERA_FRAME, OPTICAL_IN_BODY
from tps_sim.sensors.scene3d import (
    CAMERA_MOUNT,
    MAT_BARRIER,
    MAT_BUILDING,
    MAT_BUS,
    MAT_CAR,
    MAT_CYCLIST,
    MAT_DEBRIS,
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
    RoadSurface,
    Scene3D,
    mount_transform,
    mount_tuple,
)

# The default frame id of the images (the optical frame; sim_bridge parameter camera_frame).
CAMERA_FRAME_ID = CAMERA_FRAME

SKY_RGB = (140, 185, 235)
SURFACE_RGB = {SURFACE_OFFROAD: (95, 125, 70), SURFACE_ASPHALT: (75, 75, 80),
               SURFACE_MARKING: (235, 235, 225)}
MATERIAL_RGB = {
    MAT_CAR: (200, 50, 45),
    MAT_TRUCK: (220, 160, 40),
    MAT_BUS: (235, 200, 40),
    MAT_PEDESTRIAN: (40, 90, 210),
    MAT_CYCLIST: (150, 60, 200),
    MAT_POLE: (150, 150, 155),
    MAT_BARRIER: (230, 230, 230),
    MAT_WALL: (160, 140, 120),
    MAT_BUILDING: (185, 165, 150),
    MAT_PARKED_CAR: (110, 110, 140),
    MAT_DEBRIS: (100, 80, 60),
    MAT_SIGNAL: (28, 28, 30),
}
DEFAULT_RGB = (128, 128, 128)
# Traffic-light lamps (emitters: brighter and more saturated than any painted material): the lit
# lamp of each state, and an unlit lamp.
LAMP_RGB = {RED: (255, 30, 20), YELLOW: (255, 200, 0), GREEN: (30, 255, 120)}
LAMP_OFF_RGB = (55, 55, 58)
LAMP_SIDES = 12
# Flat shading: brightness of the top face, and of side faces facing (away from) the light.
TOP_SHADE = 1.0
SIDE_SHADE_MIN, SIDE_SHADE_MAX = 0.55, 0.9
LIGHT_DIR_XY = (0.6, 0.8)  # horizontal direction the light comes from (map frame, unit)
# OpenCV draws with fixed-point vertices: 4 fractional bits.
DRAW_SHIFT = 4
# Projected coordinates are clamped to +-this many pixels (int32 fixed point stays safe; the
# near-plane clip keeps real vertices well inside it for any sane near_clip_m).
MAX_ABS_PX = 1.0e5

# Box faces as corner indices of BoxSet.corners() (bottom FL, FR, RR, RL, then top), outward
# normals in the box frame.
_FACES = np.array([
    [0, 1, 5, 4],  # front (+x)
    [2, 3, 7, 6],  # rear (-x)
    [3, 0, 4, 7],  # left (+y)
    [1, 2, 6, 5],  # right (-y)
    [4, 5, 6, 7],  # top (+z)
    [0, 3, 2, 1],  # bottom (-z)
])
_FACE_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
                         dtype=np.float64)


@dataclass(frozen=True)
class CameraParams:
    """Front camera configuration.

    Attributes:
        width: image width [px] (>= 2).
        height: image height [px] (>= 2).
        hfov_deg: horizontal field of view [deg], in (0, 180).
        mount: pose of the camera's body frame (x along the optical axis) in base_link: x, y,
            z [m] (z > 0), roll, pitch, yaw [rad] (``R = Rz Ry Rx``).
        near_clip_m: faces are clipped at this depth [m] (> 0).
        far_clip_m: boxes and ground farther than this are not drawn [m].
    """

    width: int = 640
    height: int = 360
    hfov_deg: float = 90.0
    mount: tuple[float, float, float, float, float, float] = CAMERA_MOUNT
    near_clip_m: float = 0.3
    far_clip_m: float = 250.0

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"CameraParams.{name} = {getattr(self, name)!r}: {why}")

        for name in ("width", "height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                bad(name, "must be an integer >= 2")
        if not (isinstance(self.hfov_deg, (int, float)) and 0.0 < self.hfov_deg < 180.0):
            bad("hfov_deg", "must be in (0, 180)")
        object.__setattr__(self, "mount", mount_tuple("CameraParams.mount", self.mount))
        if self.mount[2] <= 0.0:
            bad("mount", "camera height (z) must be > 0")
        if not (isinstance(self.near_clip_m, (int, float)) and self.near_clip_m > 0.0):
            bad("near_clip_m", "must be > 0")
        if not (isinstance(self.far_clip_m, (int, float)) and self.far_clip_m > self.near_clip_m):
            bad("far_clip_m", f"must be > near_clip_m ({self.near_clip_m})")

    @classmethod
    def from_dict(cls, values: dict) -> CameraParams:
        """Build from a dict; unknown keys raise ValueError naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"CameraParams: unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)


# Rotation from the ROS body frame (x fwd, y left, z up) to the optical frame (x right, y down,
# z fwd): x_opt = -y_body, y_opt = -z_body, z_opt = x_body. carla-ros-bridge turns its camera
# frames the same way (its quat_swap), so the optical frame is the frame of the image.
BODY_TO_OPTICAL = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
# Marks a ground-table pixel whose ray never meets the ground (it keeps the sky colour).
SKY = np.inf


class CameraModel:
    """Pinhole camera renderer for :class:`Scene3D`; see the module docstring.

    Attributes:
        mount: ``T_base_link<-camera body`` (from ``params.mount``).
        optical_mount: ``T_base_link<-optical frame`` (what ``/tf_static`` publishes).
    """

    def __init__(self, params: CameraParams | None = None) -> None:
        self.params = params if params is not None else CameraParams()
        p = self.params
        self.fx = p.width / (2.0 * math.tan(math.radians(p.hfov_deg) / 2.0))
        self.fy = self.fx
        self.cx = p.width / 2.0
        self.cy = p.height / 2.0
        self.mount = mount_transform(p.mount)
        self.optical_mount = self.mount @ OPTICAL_IN_BODY
        # None: no mount rotation, the exact yaw-only camera pose of a level forward camera.
        self._mount_rotation = None if self.mount.is_pure_translation() else self.mount.rotation
        self._offset_m = tuple(float(v) for v in self.mount.translation)
        if self._mount_rotation is None:
            self._level_ground_table()
        else:
            self._general_ground_table()
        self._surface_lut = np.zeros((256, 3), np.uint8)
        self._surface_lut[:] = SURFACE_RGB[SURFACE_OFFROAD]
        for code, rgb in SURFACE_RGB.items():
            self._surface_lut[code] = rgb
        self._material_lut = np.zeros((256, 3), np.float64)
        self._material_lut[:] = DEFAULT_RGB
        for mat, rgb in MATERIAL_RGB.items():
            self._material_lut[mat] = rgb

    def _level_ground_table(self) -> None:
        """Ground table of a camera without mount rotation: pixels strictly below the horizon row
        see the ground."""
        p = self.params
        cam_h = self._offset_m[2]
        v0 = int(math.floor(self.cy)) + 1
        rows = np.arange(v0, p.height, dtype=np.float64)
        cols = np.arange(p.width, dtype=np.float64)
        vv, uu = np.meshgrid(rows, cols, indexing="ij")
        depth = cam_h * self.fy / (vv - self.cy)  # along the optical axis = base_link x offset
        bx = self._offset_m[0] + depth
        by = self._offset_m[1] - depth * (uu - self.cx) / self.fx
        near_enough = depth <= p.far_clip_m
        self._ground_v0 = v0
        self._ground_bx = np.ascontiguousarray(np.where(near_enough, bx, np.nan))
        self._ground_by = np.ascontiguousarray(np.where(near_enough, by, np.nan))

    def _general_ground_table(self) -> None:
        """Ground table of any mount: the ray of pixel (u, v) is ((u - cx)/fx, (v - cy)/fy, 1) in
        the optical frame; where it points down in base_link it meets the ground at depth
        ``s = -z_cam / d_z`` (along the optical axis). Pixels that never see the ground hold
        :data:`SKY`; those beyond the far clip NaN (painted off-road, like the level table)."""
        p = self.params
        rows = np.arange(p.height, dtype=np.float64)
        cols = np.arange(p.width, dtype=np.float64)
        vv, uu = np.meshgrid(rows, cols, indexing="ij")
        rays_opt = np.stack([(uu - self.cx) / self.fx, (vv - self.cy) / self.fy,
                             np.ones_like(uu)], axis=-1)
        rays = rays_opt @ self.optical_mount.rotation.T  # base_link directions (H, W, 3)
        ground = rays[..., 2] < 0.0
        with np.errstate(divide="ignore", invalid="ignore"):  # inf * 0 where no ground: masked
            depth = np.where(ground, -self._offset_m[2] / rays[..., 2], np.inf)
            bx = self._offset_m[0] + depth * rays[..., 0]
            by = self._offset_m[1] + depth * rays[..., 1]
        bx = np.where(depth <= p.far_clip_m, bx, np.nan)
        by = np.where(depth <= p.far_clip_m, by, np.nan)
        bx[~ground] = SKY
        by[~ground] = SKY
        seen = np.flatnonzero(ground.any(axis=1))
        v0 = int(seen[0]) if seen.size else p.height
        self._ground_v0 = v0
        self._ground_bx = np.ascontiguousarray(bx[v0:])
        self._ground_by = np.ascontiguousarray(by[v0:])

    # -- projection -------------------------------------------------------------------------
    def intrinsics(self) -> np.ndarray:
        """K (3, 3) float64: [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] [px]."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def camera_info_fields(self) -> dict:
        """The sensor_msgs/CameraInfo fields (no header): width, height, distortion_model, D,
        K, R, P (row-major lists of float), like carla-ros-bridge's CameraInfo."""
        k = self.intrinsics()
        proj = np.zeros((3, 4))
        proj[:, :3] = k
        return {
            "width": self.params.width,
            "height": self.params.height,
            "distortion_model": "plumb_bob",
            "D": [0.0, 0.0, 0.0, 0.0, 0.0],
            "K": [float(v) for v in k.ravel()],
            "R": [float(v) for v in np.eye(3).ravel()],
            "P": [float(v) for v in proj.ravel()],
        }

    def _map_to_optical(self, scene: Scene3D) -> tuple[np.ndarray, np.ndarray]:
        """(R (3, 3), t (3,)) with p_opt = R @ p_map + t."""
        origin, rot = scene.sensor_pose(self._offset_m, self._mount_rotation)
        r = BODY_TO_OPTICAL @ rot.T
        return r, -r @ origin

    def to_optical(self, scene: Scene3D, points_map: np.ndarray) -> np.ndarray:
        """(N, 3) map points [m] -> optical camera frame (x right, y down, z forward) [m]."""
        r, t = self._map_to_optical(scene)
        return np.asarray(points_map, dtype=np.float64).reshape(-1, 3) @ r.T + t

    def project(self, scene: Scene3D, points_map: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Project map points into the image.

        Args:
            scene: gives the ego pose (the camera pose follows from the mount).
            points_map: (N, 3) points [m] in the map frame.

        Returns:
            uv: (N, 2) float64 pixel coordinates (NaN for points not in front of the camera).
            in_front: (N,) bool, depth > 0 along the optical axis.
        """
        p = self.to_optical(scene, points_map)
        in_front = p[:, 2] > 0.0
        uv = np.full((p.shape[0], 2), np.nan)
        z = p[in_front, 2]
        uv[in_front, 0] = self.fx * p[in_front, 0] / z + self.cx
        uv[in_front, 1] = self.fy * p[in_front, 1] / z + self.cy
        return uv, in_front

    # -- rendering --------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Compile the numba ground kernel (first call ~1 s; cached on disk afterwards)."""
        empty = BoxSet.empty()
        self.render(Scene3D(empty, empty, RoadSurface(), (0.0, 0.0, 0.0)))

    def render(self, scene: Scene3D) -> np.ndarray:
        """Render ``scene``; returns an (H, W, 3) uint8 RGB image."""
        p = self.params
        img = np.empty((p.height, p.width, 3), np.uint8)
        img[:] = SKY_RGB
        self._draw_ground(scene, img)
        self._draw_boxes(scene, img)
        return img

    def _draw_ground(self, scene: Scene3D, img: np.ndarray) -> None:
        codes, x0, y0, cell = scene.road.raster
        _paint_ground(self._ground_bx, self._ground_by, scene.ego_pose[0], scene.ego_pose[1],
                      scene.ego_pose[2], codes, x0, y0, cell, self._surface_lut,
                      img[self._ground_v0:])

    def _draw_boxes(self, scene: Scene3D, img: np.ndarray) -> None:
        boxes = scene.all_boxes()
        if not len(boxes):
            return
        p = self.params
        origin, _ = scene.sensor_pose(self._offset_m)
        # Cull by distance from the camera to the nearest point of each footprint.
        rel = origin[:2] - boxes.centers[:, :2]
        cb, sb = np.cos(boxes.yaws), np.sin(boxes.yaws)
        lx = cb * rel[:, 0] + sb * rel[:, 1]
        ly = -sb * rel[:, 0] + cb * rel[:, 1]
        half = boxes.sizes / 2.0
        dx = np.maximum(np.abs(lx) - half[:, 0], 0.0)
        dy = np.maximum(np.abs(ly) - half[:, 1], 0.0)
        near_dist = np.hypot(dx, dy)
        corners = boxes.corners()  # (N, 8, 3) map
        r, t = self._map_to_optical(scene)
        corners_opt = corners @ r.T + t
        depth = corners_opt[:, :, 2]
        xo, yo = corners_opt[:, :, 0], corners_opt[:, :, 1]
        tan_h = (p.width / 2.0 + 1.0) / self.fx
        tan_v = (p.height / 2.0 + 1.0) / self.fy
        # Frustum cull: drop a box when all 8 corners are on the outer side of one plane.
        outside = (
            np.all(depth < p.near_clip_m, axis=1)
            | np.all(xo > tan_h * depth, axis=1) | np.all(xo < -tan_h * depth, axis=1)
            | np.all(yo > tan_v * depth, axis=1) | np.all(yo < -tan_v * depth, axis=1)
            | (near_dist > p.far_clip_m)
        )
        keep = np.flatnonzero(~outside)
        if keep.size == 0:
            return
        order = keep[np.argsort(-near_dist[keep], kind="stable")]
        # Face visibility: outward normal (map frame) against the vector from the face to the
        # camera. Normals rotate with the box yaw.
        nx = np.stack([cb, -cb, -sb, sb, np.zeros_like(cb), np.zeros_like(cb)], axis=1)
        ny = np.stack([sb, -sb, cb, -cb, np.zeros_like(cb), np.zeros_like(cb)], axis=1)
        nz = np.tile(np.array([0.0, 0.0, 0.0, 0.0, 1.0, -1.0]), (len(boxes), 1))
        face_centres = corners[:, _FACES].mean(axis=2)  # (N, 6, 3)
        to_cam = origin[None, None, :] - face_centres
        facing = (nx * to_cam[..., 0] + ny * to_cam[..., 1] + nz * to_cam[..., 2]) > 0.0
        lx_light, ly_light = LIGHT_DIR_XY
        side_lambert = np.clip(nx * lx_light + ny * ly_light, -1.0, 1.0)
        shade = SIDE_SHADE_MIN + (SIDE_SHADE_MAX - SIDE_SHADE_MIN) * 0.5 * (side_lambert + 1.0)
        shade[:, 4] = TOP_SHADE
        colours = np.clip(self._material_lut[boxes.materials][:, None, :] * shade[..., None],
                          0, 255).astype(np.int64)[order].tolist()
        near = p.near_clip_m
        scale = float(1 << DRAW_SHIFT)
        polys = corners_opt[order][:, _FACES]  # (K, 6, 4, 3) optical frame
        clipped = np.any(polys[..., 2] < near, axis=2)  # (K, 6)
        z = np.where(clipped[..., None], 1.0, polys[..., 2])
        uv = np.empty(polys.shape[:3] + (2,))
        uv[..., 0] = self.fx * polys[..., 0] / z + self.cx
        uv[..., 1] = self.fy * polys[..., 1] / z + self.cy
        np.clip(uv, -MAX_ABS_PX, MAX_ABS_PX, out=uv)
        uv_fixed = np.round(uv * scale).astype(np.int32)
        visible = facing[order]
        lamps = self._lamp_decals(scene, order, r, t)
        for k, f in zip(*np.nonzero(visible), strict=True):
            if clipped[k, f]:
                pts = self._project_clipped(polys[k, f], near)
                if pts is None:
                    continue
            else:
                pts = uv_fixed[k, f]
            cv2.fillConvexPoly(img, pts, colours[k][f], lineType=cv2.LINE_8, shift=DRAW_SHIFT)
            if f == 0 and k in lamps:   # a housing's front face: its lamps go on it
                for lamp_pts, rgb in lamps[k]:
                    cv2.fillConvexPoly(img, lamp_pts, rgb, lineType=cv2.LINE_8, shift=DRAW_SHIFT)

    def _lamp_decals(self, scene: Scene3D, order: np.ndarray, r: np.ndarray, t: np.ndarray
                     ) -> dict[int, list]:
        """{painter index of a housing: [(fixed-point lamp polygon, RGB), ...]} for the drawn
        housings whose lamps are wholly in front of the near plane."""
        lights = scene.lights
        if lights is None or not len(lights):
            return {}
        first = len(scene.agents) + len(scene.statics)
        position = {int(row): k for k, row in enumerate(order)}
        out: dict[int, list] = {}
        scale = float(1 << DRAW_SHIFT)
        for head, state, row in zip(lights.heads, lights.states, lights.housing_rows, strict=True):
            k = position.get(first + int(row))
            if k is None:
                continue
            decals = []
            for lamp in LAMP_ORDER:
                poly = head.lamp_polygon(lamp, LAMP_SIDES) @ r.T + t
                if np.any(poly[:, 2] < self.params.near_clip_m):
                    continue
                uv = np.stack([self.fx * poly[:, 0] / poly[:, 2] + self.cx,
                               self.fy * poly[:, 1] / poly[:, 2] + self.cy], axis=1)
                np.clip(uv, -MAX_ABS_PX, MAX_ABS_PX, out=uv)
                rgb = LAMP_RGB[lamp] if int(state) == lamp else LAMP_OFF_RGB
                decals.append((np.round(uv * scale).astype(np.int32), rgb))
            out[k] = decals
        return out

    def _project_clipped(self, poly: np.ndarray, near: float) -> np.ndarray | None:
        """Clip a face (K, 3, optical frame) at depth ``near`` and project it to fixed-point
        pixels; None when nothing is left."""
        poly = _clip_near(poly, near)
        if poly.shape[0] < 3:
            return None
        uv = np.empty((poly.shape[0], 2))
        uv[:, 0] = self.fx * poly[:, 0] / poly[:, 2] + self.cx
        uv[:, 1] = self.fy * poly[:, 1] / poly[:, 2] + self.cy
        np.clip(uv, -MAX_ABS_PX, MAX_ABS_PX, out=uv)
        return np.round(uv * float(1 << DRAW_SHIFT)).astype(np.int32)


@njit(cache=True, nogil=True)
def _paint_ground(bx: np.ndarray, by: np.ndarray, ex: float, ey: float, eyaw: float,
                  codes: np.ndarray, x0: float, y0: float, cell: float, lut: np.ndarray,
                  out: np.ndarray) -> None:
    """Colour every ground pixel by the road-surface code under it.

    bx, by: (R, W) base_link positions [m] seen by the pixels (NaN beyond the far clip, SKY
    where the pixel sees no ground: left untouched);
    (ex, ey, eyaw): ego pose in map; codes/x0/y0/cell: the road raster; lut: (256, 3) RGB per
    code; out: (R, W, 3) uint8 image rows below the horizon (written in place).
    """
    c, s = math.cos(eyaw), math.sin(eyaw)
    h, w = codes.shape
    for r in range(bx.shape[0]):
        for q in range(bx.shape[1]):
            code = SURFACE_OFFROAD
            x = bx[r, q]
            if x == SKY:  # the ray never meets the ground (tilted mounts): keep the sky
                continue
            if x == x:  # not NaN
                y = by[r, q]
                col = math.floor((ex + c * x - s * y - x0) / cell)
                row = math.floor((ey + s * x + c * y - y0) / cell)
                if 0 <= col < w and 0 <= row < h:
                    code = codes[int(row), int(col)]
            out[r, q, 0] = lut[code, 0]
            out[r, q, 1] = lut[code, 1]
            out[r, q, 2] = lut[code, 2]


def _clip_near(poly: np.ndarray, near: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex polygon (K, 3) (optical frame) to depth >= near."""
    out = []
    k = poly.shape[0]
    for idx in range(k):
        a = poly[idx]
        b = poly[(idx + 1) % k]
        a_in = a[2] >= near
        b_in = b[2] >= near
        if a_in:
            out.append(a)
        if a_in != b_in:
            s = (near - a[2]) / (b[2] - a[2])
            out.append(a + s * (b - a))
    if not out:
        return np.zeros((0, 3))
    return np.array(out)
