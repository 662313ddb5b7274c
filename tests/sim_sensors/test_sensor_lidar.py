"""Lidar model: geometry against an independent brute-force ray caster, ranges of a known box,
self-occlusion by the ego, dropout, noise, intensity by surface, layout and parameter checks."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from tps_sim.sensors.lidar import LidarModel, LidarParams, LidarScan, to_xyzi
from tps_sim.sensors.scene3d import (
    GROUND_ID,
    LIDAR_MOUNT,
    MAT_BUILDING,
    MAT_CAR,
    MAT_GROUND,
    MAT_POLE,
    SURFACE_ASPHALT,
    SURFACE_MARKING,
    SURFACE_OFFROAD,
    BoxSet,
    RoadSurface,
    Scene3D,
)
from tps_sim.sensors.synthetic import straight_road, synthetic_scene

from tests.sim_sensors.sensor_geometry import EXACT_TOL_M, distance_to_box_surfaces, to_map

NOISE_SIGMA_M = 0.03
NOISE_TOL_M = 6 * NOISE_SIGMA_M + EXACT_TOL_M
SEEDS = (0, 1, 2)
SMALL = LidarParams(beams=16, azimuth_steps=360, range_noise_sigma_m=0.0)
MOUNTS_TILTED = (1.2, 0.0, 2.0, 0.0, np.radians(2.0), np.radians(1.0))  # the example


def brute_force_ranges(model: LidarModel, scene: Scene3D) -> tuple[np.ndarray, np.ndarray]:
    """Reference: every ray against every box (incl. the ego) and the ground, no culling.

    Returns (range (B*A,), what (B*A,)) azimuth-major; what = box index in
    concat(ego, agents, statics), -1 ground, -2 nothing; range inf where nothing is hit.
    """
    p = model.params
    boxes = BoxSet.concat(scene.ego_box(), scene.agents, scene.statics)
    origin = to_map(scene, np.zeros((1, 3)), p.mount)[0]
    dirs = to_map(scene, model.directions.transpose(1, 0, 2).reshape(-1, 3), p.mount) - origin
    best = np.full(dirs.shape[0], np.inf)
    what = np.full(dirs.shape[0], -2)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_ground = np.where(dirs[:, 2] < 0, -origin[2] / dirs[:, 2], np.inf)
        for j in range(len(boxes)):
            c, s = np.cos(boxes.yaws[j]), np.sin(boxes.yaws[j])
            r_box = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1.0]])
            o = r_box.T @ (origin - boxes.centers[j])
            d = dirs @ r_box
            h = boxes.sizes[j] / 2.0
            t1 = (-h - o) / d
            t2 = (h - o) / d
            tn = np.nanmax(np.minimum(t1, t2), axis=1)
            tf = np.nanmin(np.maximum(t1, t2), axis=1)
            hit = (tn <= tf) & (tn > 0) & (tn < best)
            best[hit] = tn[hit]
            what[hit] = j
    ground = t_ground < best
    best[ground] = t_ground[ground]
    what[ground] = -1
    return best, what


def valid_reference(model: LidarModel, scene: Scene3D) -> tuple[np.ndarray, np.ndarray]:
    """(ray indices, ranges) the model must return with noise and dropout off."""
    p = model.params
    best, what = brute_force_ranges(model, scene)
    ok = np.isfinite(best) & (best >= p.min_range_m) & (best <= p.max_range_m) & (what != 0)
    return np.flatnonzero(ok), best[ok]


def ray_index(model: LidarModel, points: np.ndarray) -> np.ndarray:
    """Ray index (azimuth-major) of each sensor-frame point, from its direction."""
    p = model.params
    xyz = points[:, :3].astype(np.float64)
    az = np.mod(np.arctan2(xyz[:, 1], xyz[:, 0]), 2 * np.pi)
    k = np.round(az / (2 * np.pi / p.azimuth_steps)).astype(int) % p.azimuth_steps
    el = np.arctan2(xyz[:, 2], np.hypot(xyz[:, 0], xyz[:, 1]))
    b = np.abs(el[:, None] - model.elevations_rad[None, :]).argmin(axis=1)
    return k * p.beams + b


@pytest.mark.parametrize("mount", [LIDAR_MOUNT, MOUNTS_TILTED], ids=["default", "tilted"])
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_brute_force_ray_caster(seed: int, mount: tuple) -> None:
    """The culled numba caster returns exactly the rays and ranges of the brute-force caster."""
    scene = synthetic_scene(seed, n_vehicles=30, clutter="high", length_m=200.0)
    model = LidarModel(replace(SMALL, mount=mount))
    scan = model.scan(scene, np.random.default_rng(seed))
    ref_idx, ref_range = valid_reference(model, scene)
    assert len(scan) == ref_idx.size > 1000
    got_idx = ray_index(model, scan.points)
    np.testing.assert_array_equal(got_idx, ref_idx)
    np.testing.assert_allclose(np.linalg.norm(scan.points[:, :3], axis=1), ref_range,
                               atol=EXACT_TOL_M)


RANDOM_SCENES = 40
RANDOM_LIDAR = LidarParams(beams=12, azimuth_steps=120, range_noise_sigma_m=0.0, min_range_m=0.2,
                           max_range_m=40.0, vfov_min_deg=-40.0, vfov_max_deg=40.0)


def random_boxes(gen: np.random.Generator, n: int, sensor_xy: tuple[float, float]) -> BoxSet:
    """Boxes of any size and yaw, standing, floating or straddling the sensor's position."""
    sizes = gen.uniform(0.05, 15.0, (n, 3))
    centers = np.column_stack([gen.uniform(-35, 35, n), gen.uniform(-35, 35, n),
                               sizes[:, 2] / 2 + gen.choice([0.0, 0.0, 1.0], n) *
                               gen.uniform(0, 5, n)])
    k = min(n, 3)
    centers[:k, :2] = np.asarray(sensor_xy) + gen.uniform(-1.0, 1.0, (k, 2))  # around the sensor
    return BoxSet(np.arange(100, 100 + n), centers, sizes, gen.uniform(-np.pi, np.pi, n),
                  gen.choice([MAT_CAR, MAT_POLE, MAT_BUILDING], n).astype(np.int16))


# Mounts (x, y, z, roll, pitch, yaw): the default, a level mount turned about z, the issue's
# example (x 1.2 m, z 2.0 m, pitch 2 deg, yaw 1 deg) and a strongly tilted one.
MOUNTS = {
    "default": LIDAR_MOUNT,
    "yawed": (0.5, -0.3, 1.6, 0.0, 0.0, 0.4),
    "issue_example": (1.2, 0.0, 2.0, 0.0, np.radians(2.0), np.radians(1.0)),
    "tilted": (-0.4, 0.2, 2.2, np.radians(8.0), np.radians(-12.0), np.radians(30.0)),
}


@pytest.mark.parametrize("mount", list(MOUNTS.values()), ids=list(MOUNTS))
def test_matches_brute_force_on_random_scenes(mount: tuple) -> None:
    """Random boxes (overlapping, floating, enclosing the sensor, any yaw) and random ego poses,
    for level and tilted mounts: the culling never loses or invents a hit."""
    gen = np.random.default_rng(2024)
    model = LidarModel(replace(RANDOM_LIDAR, mount=mount))
    for _ in range(RANDOM_SCENES):
        ego = (gen.uniform(-5, 5), gen.uniform(-5, 5), gen.uniform(-np.pi, np.pi))
        scene = Scene3D(random_boxes(gen, int(gen.integers(1, 25)), ego[:2]), BoxSet.empty(),
                        RoadSurface(), ego, tuple(gen.uniform(0.5, 5.0, 3)))
        scan = model.scan(scene, np.random.default_rng(0))
        ref_idx, ref_range = valid_reference(model, scene)
        np.testing.assert_array_equal(ray_index(model, scan.points), ref_idx)
        np.testing.assert_allclose(np.linalg.norm(scan.points[:, :3], axis=1), ref_range,
                                   atol=EXACT_TOL_M)


@pytest.mark.parametrize("mount", [LIDAR_MOUNT, MOUNTS_TILTED], ids=["default", "tilted"])
@pytest.mark.parametrize("noise_sigma_m, tol_m", [(0.0, EXACT_TOL_M), (NOISE_SIGMA_M, NOISE_TOL_M)])
@pytest.mark.parametrize("seed", SEEDS)
def test_every_point_on_a_box_clutter_or_ground(seed: int, noise_sigma_m: float,
                                                tol_m: float, mount: tuple) -> None:
    scene = synthetic_scene(seed, n_vehicles=50, clutter="medium")
    params = LidarParams(range_noise_sigma_m=noise_sigma_m, mount=mount)
    scan = LidarModel(params).scan(scene, np.random.default_rng(seed))
    assert len(scan) > 5000
    pts = to_map(scene, scan.points, params.mount)
    boxes = scene.all_boxes()
    dist = np.concatenate([distance_to_box_surfaces(pts, boxes),
                           np.abs(pts[:, 2:3])], axis=1)  # last column: the ground plane z = 0
    nearest = dist.min(axis=1)
    assert nearest.max() <= tol_m, f"point {nearest.argmax()} is {nearest.max():.4f} m off"
    # The labels name the surface each point lies on.
    on_ground = scan.hit_id == GROUND_ID
    assert np.all(scan.hit_material[on_ground] == MAT_GROUND)
    assert np.abs(pts[on_ground, 2]).max() <= tol_m
    index_of = {int(i): k for k, i in enumerate(boxes.ids)}
    cols = np.array([index_of[int(i)] for i in scan.hit_id[~on_ground]])
    assert dist[np.flatnonzero(~on_ground), cols].max() <= tol_m
    np.testing.assert_array_equal(scan.hit_material[~on_ground], boxes.materials[cols])
    # Agents and clutter are both seen.
    assert np.isin(scan.hit_id, scene.agents.ids).sum() > 100
    assert np.isin(scan.hit_id, scene.statics.ids).sum() > 100


def single_box_scene(center: tuple[float, float, float], size: tuple[float, float, float],
                     yaw: float = 0.0, ego_pose: tuple[float, float, float] = (0.0, 0.0, 0.0),
                     material: int = MAT_CAR) -> Scene3D:
    box = BoxSet(np.array([7]), np.array([center]), np.array([size]), np.array([yaw]),
                 np.array([material], np.int16))
    return Scene3D(box, BoxSet.empty(), RoadSurface(), ego_pose, (4.6, 1.9, 1.5), 0.0)


@pytest.mark.parametrize("ego_yaw", [0.0, 1.0, -2.5])
def test_known_box_gives_expected_ranges(ego_yaw: float) -> None:
    """A 4 m tall wall 20 m ahead of the sensor, facing it: the horizontal-beam return straight
    ahead is at 20 m; every return on its front face is at 20 / (cos(e) cos(a)) m."""
    params = LidarParams(range_noise_sigma_m=0.0)
    model = LidarModel(params)
    front_m, depth_m, width_m, height_m = 20.0, 2.0, 6.0, 4.0
    c, s = np.cos(ego_yaw), np.sin(ego_yaw)
    ego = (3.0, -4.0, ego_yaw)
    centre_fwd = front_m + depth_m / 2.0
    scene = single_box_scene((ego[0] + c * centre_fwd, ego[1] + s * centre_fwd, height_m / 2.0),
                             (depth_m, width_m, height_m), ego_yaw, ego, MAT_BUILDING)
    scan = model.scan(scene, np.random.default_rng(0))
    on_box = scan.hit_id == 7
    pts = scan.points[on_box, :3].astype(np.float64)
    front = np.abs(pts[:, 0] - front_m) < EXACT_TOL_M
    # Everything on the box that the sensor sees is its front face (it is taller than the sensor).
    assert front.all()
    assert np.abs(pts[:, 1]).max() <= width_m / 2.0 + EXACT_TOL_M
    az = np.arctan2(pts[:, 1], pts[:, 0])
    el = np.arctan2(pts[:, 2], np.hypot(pts[:, 0], pts[:, 1]))
    np.testing.assert_allclose(np.linalg.norm(pts, axis=1),
                               front_m / (np.cos(el) * np.cos(az)), rtol=1e-5)
    # Expected count: beams whose elevation hits the face between z = 0 and the top, times the
    # azimuth steps inside the face's half-width.
    step = 2 * np.pi / params.azimuth_steps
    k = np.arange(-params.azimuth_steps // 4 + 1, params.azimuth_steps // 4)  # ahead only
    n_az = np.sum(np.abs(front_m * np.tan(k * step)) <= width_m / 2.0)
    z_at_face = params.mount[2] + front_m * np.tan(model.elevations_rad)
    beams = (z_at_face >= 0.0) & (z_at_face <= height_m)
    # Low beams are cut by the ego's own roof ahead of the sensor; count only beams that clear it.
    ego_front_m, roof_m = 4.6 / 2.0, 1.5
    clears = params.mount[2] + ego_front_m * np.tan(model.elevations_rad) > roof_m
    assert len(pts) == n_az * np.sum(beams & clears)
    e_flat = model.elevations_rad[np.abs(model.elevations_rad).argmin()]
    straight = (np.abs(az) < step / 2) & (np.abs(el - e_flat) < 1e-5)
    assert np.sum(straight) == 1
    np.testing.assert_allclose(np.linalg.norm(pts[straight], axis=1),
                               front_m / np.cos(el[straight]), rtol=1e-6)


def test_box_behind_and_across_azimuth_wrap() -> None:
    """Boxes behind the ego (azimuth pi) and straight ahead (azimuth 0 = 2 pi wrap) are hit
    symmetrically about the x axis."""
    model = LidarModel(LidarParams(range_noise_sigma_m=0.0))
    for x in (15.0, -15.0):
        scan = model.scan(single_box_scene((x, 0.0, 0.75), (4.0, 2.0, 1.5)),
                          np.random.default_rng(0))
        pts = scan.points[scan.hit_id == 7]
        assert len(pts) > 20
        assert np.isclose(pts[:, 1].min(), -pts[:, 1].max(), atol=0.05)
        assert np.abs(np.abs(pts[:, 0]).min() - (abs(x) - 2.0)) < EXACT_TOL_M


def test_no_points_from_inside_the_ego_box() -> None:
    scene = synthetic_scene(4, n_vehicles=50, clutter="high")
    params = LidarParams(range_noise_sigma_m=NOISE_SIGMA_M)
    model = LidarModel(params)
    scan = model.scan(scene, np.random.default_rng(4))
    xyz = model.mount.apply(scan.points[:, :3].astype(np.float64))  # base_link
    length, width, height = scene.ego_size
    inside = ((np.abs(xyz[:, 0]) <= length / 2 + NOISE_TOL_M)
              & (np.abs(xyz[:, 1]) <= width / 2 + NOISE_TOL_M) & (xyz[:, 2] <= height + NOISE_TOL_M))
    assert not inside.any()
    # The ego really blocks rays (the check above is not vacuous): the reference says so.
    _, what = brute_force_ranges(model, scene)
    assert np.sum(what == 0) > 1000


def test_dropout_fraction_matches() -> None:
    scene = synthetic_scene(5)
    clean = LidarModel(LidarParams(range_noise_sigma_m=0.0)).scan(scene, np.random.default_rng(0))
    for prob in (0.1, 0.5):
        model = LidarModel(LidarParams(range_noise_sigma_m=0.0, dropout_prob=prob))
        scan = model.scan(scene, np.random.default_rng(1))
        n = len(clean)
        expected = n * (1 - prob)
        sigma = np.sqrt(n * prob * (1 - prob))
        assert abs(len(scan) - expected) < 4 * sigma
        # Kept points are a subset of the clean returns, unchanged.
        kept = {tuple(p) for p in clean.points.tolist()}
        assert all(tuple(p) in kept for p in scan.points.tolist())


def test_range_noise_statistics_and_determinism() -> None:
    scene = synthetic_scene(6)
    clean = LidarModel(LidarParams(range_noise_sigma_m=0.0)).scan(scene, np.random.default_rng(0))
    model = LidarModel(LidarParams(range_noise_sigma_m=NOISE_SIGMA_M))
    a = model.scan(scene, np.random.default_rng(11))
    b = model.scan(scene, np.random.default_rng(11))
    c = model.scan(scene, np.random.default_rng(12))
    np.testing.assert_array_equal(a.points, b.points)
    np.testing.assert_array_equal(a.hit_id, b.hit_id)
    assert not np.array_equal(a.points, c.points)
    # Compare ranges ray by ray (a return near the range limits may leave with noise).
    ref = dict(zip(ray_index(model, clean.points).tolist(),
                   np.linalg.norm(clean.points[:, :3], axis=1).tolist(), strict=True))
    rays = ray_index(model, a.points)
    assert len(set(rays.tolist())) == len(a) > 0.99 * len(clean)
    err = np.linalg.norm(a.points[:, :3], axis=1) - np.array([ref[r] for r in rays.tolist()])
    assert abs(err.mean()) < 4 * NOISE_SIGMA_M / np.sqrt(err.size)
    assert abs(err.std() - NOISE_SIGMA_M) < 0.05 * NOISE_SIGMA_M


def test_intensity_by_surface() -> None:
    """Lane paint is brighter than off-road, off-road brighter than asphalt (same range band)."""
    scene = synthetic_scene(7, n_vehicles=0, clutter="none")
    params = LidarParams(range_noise_sigma_m=0.0, beams=64)
    scan = LidarModel(params).scan(scene, np.random.default_rng(0))
    ground = scan.hit_id == GROUND_ID
    pts = to_map(scene, scan.points[ground], params.mount)
    surface = scene.road.surface_at(pts[:, :2])
    rng_m = np.linalg.norm(scan.points[ground, :3], axis=1)
    band = (rng_m > 5) & (rng_m < 25)
    inten = scan.points[ground, 3]
    means = {code: inten[band & (surface == code)].mean()
             for code in (SURFACE_MARKING, SURFACE_OFFROAD, SURFACE_ASPHALT)}
    for code in means:
        assert np.sum(band & (surface == code)) > 10
    assert means[SURFACE_MARKING] > means[SURFACE_OFFROAD] > means[SURFACE_ASPHALT]
    # Intensity falls with range on one surface.
    asphalt = surface == SURFACE_ASPHALT
    order = np.argsort(rng_m[asphalt])
    assert np.all(np.diff(inten[asphalt][order]) <= 1e-6)


def test_to_xyzi_is_the_bridge_layout() -> None:
    from tps_inference.conversions import pointcloud2_to_xyzi, xyzi_to_pointcloud2

    scan = LidarModel(SMALL).scan(synthetic_scene(8, n_vehicles=10), np.random.default_rng(0))
    xyzi = to_xyzi(scan)
    assert xyzi.dtype == np.float32 and xyzi.shape == (len(scan), 4)
    assert xyzi.flags["C_CONTIGUOUS"] and xyzi.strides == (16, 4)
    msg = xyzi_to_pointcloud2(xyzi, frame_id="ego_vehicle/lidar")
    assert msg.point_step == 16
    assert [f.name for f in msg.fields] == ["x", "y", "z", "intensity"]
    np.testing.assert_array_equal(pointcloud2_to_xyzi(msg), xyzi)


def test_box_in_range_but_outside_every_beam_is_not_hit() -> None:
    """A pole top floating above the highest beam's reach gives no return (and no crash)."""
    model = LidarModel(LidarParams(range_noise_sigma_m=0.0))
    scene = single_box_scene((10.0, 0.0, 30.0), (1.0, 1.0, 1.0), material=MAT_POLE)
    assert not np.any(model.scan(scene, np.random.default_rng(0)).hit_id == 7)
    empty = Scene3D(BoxSet.empty(), BoxSet.empty(), straight_road(), (0.0, 0.0, 0.0))
    scan = model.scan(empty, np.random.default_rng(0))
    assert isinstance(scan, LidarScan) and np.all(scan.hit_id == GROUND_ID) and len(scan) > 0


@pytest.mark.parametrize("field, value", [
    ("beams", 0),
    ("azimuth_steps", -5),
    ("min_range_m", -1.0),
    ("max_range_m", 0.1),
    ("vfov_min_deg", 20.0),
    ("dropout_prob", 1.0),
    ("range_noise_sigma_m", -0.1),
    ("mount", (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)),
    ("mount", (0.0, 0.0, 1.8)),
    ("mount", (0.0, 0.0, 1.8, 0.0, 1.7, 0.0)),
    ("mount", (0.0, 0.0, float("inf"), 0.0, 0.0, 0.0)),
    ("rate_hz", float("nan")),
])
def test_bad_params_name_the_field(field: str, value: float) -> None:
    with pytest.raises(ValueError, match=field):
        LidarParams(**{field: value})


def test_from_dict_rejects_unknown_keys() -> None:
    assert LidarParams.from_dict({"beams": 16}).beams == 16
    with pytest.raises(ValueError, match="channels"):
        LidarParams.from_dict({"channels": 16})
