"""Camera model: rendered boxes land where the CameraInfo intrinsics say, horizon, road colours,
occlusion order, near-plane clipping, projection API and parameter checks."""

from __future__ import annotations

import numpy as np
import pytest
from tps_common.frames import RigidTransform
from tps_sim.sensors.camera import (
    MATERIAL_RGB,
    SKY_RGB,
    SURFACE_RGB,
    CameraModel,
    CameraParams,
)
from tps_sim.sensors.scene3d import (
    CAMERA_OFFSET_M,
    MAT_CAR,
    MAT_PEDESTRIAN,
    MAT_TRUCK,
    MAT_WALL,
    BoxSet,
    RoadSurface,
    Scene3D,
)
from tps_sim.sensors.synthetic import straight_road, synthetic_scene

PIXEL_TOL = 1  # rasterisation: pixel centres inside the projected polygon are filled
EMPTY = BoxSet.empty()


def boxes(*specs: tuple) -> BoxSet:
    """specs: (id, (cx, cy, cz), (l, w, h), yaw, material)."""
    return BoxSet(np.array([s[0] for s in specs]), np.array([s[1] for s in specs]),
                  np.array([s[2] for s in specs]), np.array([s[3] for s in specs]),
                  np.array([s[4] for s in specs], np.int16))


def project_with_camera_info(info: dict, ego_pose: tuple[float, float, float],
                             points_map: np.ndarray) -> np.ndarray:
    """Independent projection from the CameraInfo fields and the documented frames:
    camera at CAMERA_OFFSET_M in base_link, looking along +x; optical x = -y, y = -z, z = x."""
    x, y, yaw = ego_pose
    c, s = np.cos(yaw), np.sin(yaw)
    d = points_map - [x, y, 0.0]
    base = np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1], d[:, 2]], axis=1)
    cam = base - np.asarray(CAMERA_OFFSET_M)
    opt = np.stack([-cam[:, 1], -cam[:, 2], cam[:, 0]], axis=1)
    p = np.array(info["P"]).reshape(3, 4)
    hom = opt @ p[:, :3].T + p[:, 3]
    return hom[:, :2] / hom[:, 2:3]


def changed_pixels_bbox(with_box: np.ndarray, without: np.ndarray) -> tuple[int, int, int, int]:
    mask = np.any(with_box != without, axis=2)
    rows, cols = np.nonzero(mask)
    assert rows.size, "the box changed no pixel"
    return cols.min(), rows.min(), cols.max(), rows.max()


@pytest.mark.parametrize("ego_pose, offset_fwd_left_m, yaw_rel", [
    ((0.0, 0.0, 0.0), (15.0, 2.0), 0.0),
    ((10.0, -3.0, 0.7), (12.0, -3.0), 0.4),
    ((-5.0, 8.0, -2.0), (25.0, 0.5), 1.2),
    ((0.0, 0.0, np.pi), (8.0, -1.0), -0.3),
])
def test_vehicle_projects_to_expected_pixel_box(ego_pose: tuple, offset_fwd_left_m: tuple,
                                                yaw_rel: float) -> None:
    cam = CameraModel()
    info = cam.camera_info_fields()
    x, y, yaw = ego_pose
    fwd, left = offset_fwd_left_m
    c, s = np.cos(yaw), np.sin(yaw)
    car = boxes((3, (x + c * fwd - s * left, y + s * fwd + c * left, 0.75), (4.5, 1.9, 1.5),
                 yaw + yaw_rel, MAT_CAR))
    road = straight_road()
    img = cam.render(Scene3D(car, EMPTY, road, ego_pose))
    background = cam.render(Scene3D(EMPTY, EMPTY, road, ego_pose))
    uv = project_with_camera_info(info, ego_pose, car.corners()[0])
    expected = (np.ceil(uv[:, 0].min()), np.ceil(uv[:, 1].min()), np.floor(uv[:, 0].max()),
                np.floor(uv[:, 1].max()))
    assert all(0 <= v < 640 for v in expected[::2]) and all(0 <= v < 360 for v in expected[1::2])
    got = changed_pixels_bbox(img, background)
    assert np.all(np.abs(np.array(got) - np.array(expected)) <= PIXEL_TOL), (got, expected)
    # The model's own projection agrees with the CameraInfo projection.
    uv_model, in_front = cam.project(Scene3D(car, EMPTY, road, ego_pose), car.corners()[0])
    assert in_front.all()
    np.testing.assert_allclose(uv_model, uv, atol=1e-9)


def test_camera_info_matches_intrinsics() -> None:
    cam = CameraModel(CameraParams(width=800, height=450, hfov_deg=70.0))
    info = cam.camera_info_fields()
    k = np.array(info["K"]).reshape(3, 3)
    np.testing.assert_allclose(k, cam.intrinsics())
    np.testing.assert_allclose(np.array(info["P"]).reshape(3, 4)[:, :3], k)
    np.testing.assert_allclose(np.array(info["R"]).reshape(3, 3), np.eye(3))
    assert info["width"] == 800 and info["height"] == 450
    assert info["distortion_model"] == "plumb_bob" and not any(info["D"])
    # Horizontal FOV: the image edges are at +-hfov/2.
    assert np.isclose(2 * np.degrees(np.arctan(k[0, 2] / k[0, 0])), 70.0)
    # A point straight ahead at camera height projects to the principal point.
    scene = Scene3D(EMPTY, EMPTY, RoadSurface(), (0.0, 0.0, 0.0))
    uv, in_front = cam.project(scene, np.array([[11.5, 0.0, 1.5], [-5.0, 0.0, 1.5],
                                                [11.5, 1.0, 1.5]]))
    np.testing.assert_allclose(uv[0], [k[0, 2], k[1, 2]])
    assert in_front.tolist() == [True, False, True]
    assert np.isnan(uv[1]).all()
    # Left of the axis (+y) is left in the image (smaller u).
    assert np.isclose(uv[2, 0], k[0, 2] - k[0, 0] * 1.0 / 10.0)


def test_horizon_sky_and_ground() -> None:
    cam = CameraModel()
    img = cam.render(Scene3D(EMPTY, EMPTY, RoadSurface(), (0.0, 0.0, 0.0)))
    cy = int(cam.cy)
    assert np.all(img[:cy] == SKY_RGB)
    assert np.all(img[cy + 1:] == SURFACE_RGB[0])


def test_ground_pixels_show_the_road_surface_under_them() -> None:
    """Inverse-project ground pixels with K; the rendered colour is the surface there."""
    cam = CameraModel()
    scene = synthetic_scene(0, n_vehicles=0, clutter="none")
    img = cam.render(scene)
    k = np.array(cam.camera_info_fields()["K"]).reshape(3, 3)
    vv, uu = np.mgrid[200:360:3, 0:640:3]
    depth = CAMERA_OFFSET_M[2] * k[1, 1] / (vv - k[1, 2])
    bx = CAMERA_OFFSET_M[0] + depth
    by = -depth * (uu - k[0, 2]) / k[0, 0]
    x, y, yaw = scene.ego_pose
    mx = x + np.cos(yaw) * bx - np.sin(yaw) * by
    my = y + np.sin(yaw) * bx + np.cos(yaw) * by
    codes = scene.road.surface_at(np.stack([mx.ravel(), my.ravel()], axis=1))
    expected = np.array([SURFACE_RGB[int(c)] for c in codes]).reshape(uu.shape + (3,))
    np.testing.assert_array_equal(img[vv, uu], expected)
    assert len(set(codes.tolist())) == 3  # asphalt, paint and off-road all in view


def test_near_box_occludes_far_box() -> None:
    cam = CameraModel()
    scene = Scene3D(boxes((1, (30.0, 0.0, 1.7), (10.0, 2.5, 3.4), 0.0, MAT_TRUCK),
                          (2, (10.0, 0.0, 0.875), (0.5, 0.5, 1.75), 0.0, MAT_PEDESTRIAN)),
                    EMPTY, RoadSurface(), (0.0, 0.0, 0.0))
    img = cam.render(scene)
    u, v = int(cam.cx), int(cam.cy) + 5  # straight ahead, just below camera height
    ped = np.array(MATERIAL_RGB[MAT_PEDESTRIAN], float)
    truck = np.array(MATERIAL_RGB[MAT_TRUCK], float)
    # Flat shading scales the base colour: the hue (normalised RGB) identifies the material.
    hue = img[v, u] / img[v, u].sum()
    assert np.allclose(hue, ped / ped.sum(), atol=0.02)
    hue_side = img[v, u + 13] / img[v, u + 13].sum()  # beside the pedestrian: the truck
    assert np.allclose(hue_side, truck / truck.sum(), atol=0.02)


def test_wall_beside_the_car_is_clipped_at_the_near_plane() -> None:
    """A wall from 10 m behind to 30 m ahead, its face 3 m to the left: its visible face has
    corners behind the camera. After clipping it fills the left of the image from u = 0 to the
    projection of its far end."""
    cam = CameraModel()
    wall = boxes((5, (10.0, 3.2, 1.25), (40.0, 0.4, 2.5), 0.0, MAT_WALL))
    scene = Scene3D(wall, EMPTY, RoadSurface(), (0.0, 0.0, 0.0))
    img = cam.render(scene)
    background = cam.render(Scene3D(EMPTY, EMPTY, RoadSurface(), (0.0, 0.0, 0.0)))
    u0, _, u1, _ = changed_pixels_bbox(img, background)
    far_end_u = cam.cx - cam.fx * 3.0 / (30.0 - CAMERA_OFFSET_M[0])
    assert u0 == 0
    assert abs(u1 - np.floor(far_end_u)) <= PIXEL_TOL
    assert np.all(np.any(img[int(cam.cy), :int(far_end_u) - 1] != background[int(cam.cy),
                                                                            :int(far_end_u) - 1],
                         axis=1))


def test_render_is_deterministic() -> None:
    cam = CameraModel()
    scene = synthetic_scene(3)
    a, b = cam.render(scene), cam.render(scene)
    assert a.dtype == np.uint8 and a.shape == (360, 640, 3)
    np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("field, value", [
    ("width", 0),
    ("height", 1),
    ("hfov_deg", 180.0),
    ("hfov_deg", -10.0),
    ("near_clip_m", 0.0),
    ("far_clip_m", 0.1),
    ("mount", (1.0, 0.0)),
    ("mount", (1.5, 0.0, -0.2, 0.0, 0.0, 0.0)),
    ("mount", (1.5, 0.0, 1.5, 0.0, 2.0, 0.0)),
])
def test_bad_params_name_the_field(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        CameraParams(**{field: value})
    with pytest.raises(ValueError, match="lens"):
        CameraParams.from_dict({"lens": "fisheye"})


# -- 6-DOF mounts ---------------------------------------------------------------------------------
# (x, y, z, roll, pitch, yaw) of the camera body frame in base_link.
TILTED_MOUNTS = {
    "pitched_down": (1.5, 0.0, 1.5, 0.0, np.radians(6.0), 0.0),
    "rolled_yawed": (1.2, 0.3, 1.7, np.radians(4.0), np.radians(-3.0), np.radians(-8.0)),
}
# Pixels whose colour may differ from an independent inverse projection: ground points within
# rounding of a raster-cell border.
GROUND_MISMATCH_FRACTION = 0.002


def optical_from_map(mount: tuple, ego_pose: tuple) -> RigidTransform:
    """T_optical<-map composed from the documented frames with tps_common.frames: map -> base_link
    (ego pose) -> camera body (mount) -> optical (x right, y down, z forward)."""
    x, y, yaw = ego_pose
    map_from_base = RigidTransform.from_xyz_rpy((x, y, 0.0), (0.0, 0.0, yaw))
    base_from_body = RigidTransform.from_xyz_rpy(mount[:3], mount[3:])
    body_from_optical = RigidTransform(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0],
                                                 [0.0, -1.0, 0.0]]), np.zeros(3))
    return (map_from_base @ base_from_body @ body_from_optical).inverse()


@pytest.mark.parametrize("mount", list(TILTED_MOUNTS.values()), ids=list(TILTED_MOUNTS))
def test_tilted_camera_projects_and_renders_like_the_frame_chain(mount: tuple) -> None:
    cam = CameraModel(CameraParams(mount=mount))
    ego = (10.0, -3.0, 0.7)
    c, s = np.cos(ego[2]), np.sin(ego[2])
    car = boxes((3, (ego[0] + c * 14.0 + s * 1.0, ego[1] + s * 14.0 - c * 1.0, 0.75),
                 (4.5, 1.9, 1.5), ego[2] + 0.3, MAT_CAR))
    road = straight_road()
    corners = car.corners()[0]
    opt = optical_from_map(mount, ego).apply(corners)
    k = cam.intrinsics()
    uv = (opt @ k.T)[:, :2] / opt[:, 2:3]
    uv_model, in_front = cam.project(Scene3D(car, EMPTY, road, ego), corners)
    assert in_front.all()
    np.testing.assert_allclose(uv_model, uv, atol=1e-9)
    img = cam.render(Scene3D(car, EMPTY, road, ego))
    background = cam.render(Scene3D(EMPTY, EMPTY, road, ego))
    expected = (np.ceil(uv[:, 0].min()), np.ceil(uv[:, 1].min()), np.floor(uv[:, 0].max()),
                np.floor(uv[:, 1].max()))
    got = changed_pixels_bbox(img, background)
    assert np.all(np.abs(np.array(got) - np.array(expected)) <= PIXEL_TOL), (got, expected)
    # CameraModel.optical_mount is the transform /tf_static publishes for the optical frame
    x, y, yaw = ego
    map_from_base = RigidTransform.from_xyz_rpy((x, y, 0.0), (0.0, 0.0, yaw))
    assert (map_from_base @ cam.optical_mount).inverse().almost_equal(optical_from_map(mount, ego))


@pytest.mark.parametrize("mount", list(TILTED_MOUNTS.values()), ids=list(TILTED_MOUNTS))
def test_tilted_camera_sky_and_ground(mount: tuple) -> None:
    """Every pixel whose ray points up (in base_link) is sky; every other one shows the road
    surface where its ray meets the ground (inverse projection through the frame chain)."""
    cam = CameraModel(CameraParams(mount=mount))
    scene = synthetic_scene(0, n_vehicles=0, clutter="none")
    img = cam.render(scene)
    vv, uu = np.mgrid[0:360, 0:640]
    rays_opt = np.stack([(uu - cam.cx) / cam.fx, (vv - cam.cy) / cam.fy, np.ones(uu.shape)], -1)
    map_from_optical = optical_from_map(mount, scene.ego_pose).inverse()
    origin = map_from_optical.translation
    rays = map_from_optical.apply_vectors(rays_opt.reshape(-1, 3))
    down = rays[:, 2] < 0.0
    sky = np.all(img.reshape(-1, 3) == SKY_RGB, axis=1)
    np.testing.assert_array_equal(sky, ~down)
    depth = -origin[2] / rays[down, 2]
    hits = origin[:2] + depth[:, None] * rays[down, :2]
    codes = scene.road.surface_at(hits)
    codes[depth > cam.params.far_clip_m] = 0
    expected = np.array([SURFACE_RGB[int(c)] for c in range(3)])[codes]
    mismatch = np.any(img.reshape(-1, 3)[down] != expected, axis=1)
    assert mismatch.mean() <= GROUND_MISMATCH_FRACTION
    assert len(set(codes.tolist())) == 3
    if mount[3] == 0.0:  # no roll: the horizon is the row where the optical axis' pitch is
        horizon_v = cam.cy - cam.fy * np.tan(mount[4])
        assert np.all(sky.reshape(360, 640)[:int(np.floor(horizon_v)) - 1])
        assert not np.any(sky.reshape(360, 640)[int(np.ceil(horizon_v)) + 1:])


def test_general_ground_table_agrees_with_the_level_one() -> None:
    """The any-mount ground table, forced on the default mount, renders what the level table
    renders (up to raster-cell border rounding)."""
    level = CameraModel()
    general = CameraModel()
    general._general_ground_table()
    assert general._ground_v0 == level._ground_v0
    scene = synthetic_scene(1)
    a, b = level.render(scene), general.render(scene)
    assert np.mean(np.any(a != b, axis=2)) <= GROUND_MISMATCH_FRACTION
