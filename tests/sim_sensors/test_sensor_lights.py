"""Traffic lights in the sensor models: the camera paints each head's lit lamp in its state's
colour where CameraInfo projects it (the others dark), stop lines as paint; the lidar sees poles,
arms and housings as geometry (never the lamps), deterministic; scenes without lights render as
before."""

from __future__ import annotations

import numpy as np
import pytest
from tps_common.traffic_lights import GREEN, LAMP_ORDER, RED, YELLOW
from tps_sim.sensors.camera import LAMP_OFF_RGB, LAMP_RGB, SURFACE_RGB, CameraModel
from tps_sim.sensors.lidar import LidarModel, LidarParams
from tps_sim.sensors.rig import SensorRig
from tps_sim.sensors.scene3d import MAT_POLE, MAT_SIGNAL, SIGNAL_ID_BASE, SURFACE_MARKING
from tps_sim.world import EgoControl, SimWorld, WorldConfig

SEED = 5  # TRAIN split
STEPS_TO_JUNCTION = 75   # the expert is ~25 m before the stop line then (heads ~40 m ahead)


@pytest.fixture(scope="module")
def junction_scene():
    with SimWorld(WorldConfig(scenario="signalised", seed=SEED, ego_driver="expert", clutter="none",
                              density=0.0, duration_s=20.0)) as world:
        state = world.reset()
        for _ in range(STEPS_TO_JUNCTION):
            state = world.step(EgoControl())
        yield world.scene3d(state)


def project(camera: CameraModel, scene, points: np.ndarray) -> np.ndarray:
    rig = SensorRig()
    to_map = rig.vehicle_transform(scene.ego_pose) @ camera.optical_mount
    opt = to_map.inverse().apply(points)
    k = camera.intrinsics()
    return np.stack([k[0, 0] * opt[:, 0] / opt[:, 2] + k[0, 2], k[1, 1] * opt[:, 1] / opt[:, 2] + k[1, 2]], 1)


@pytest.mark.parametrize("state", [RED, YELLOW, GREEN])
def test_camera_paints_the_lit_lamp_where_camera_info_projects_it(junction_scene, state):
    lights = junction_scene.lights
    scene = type(junction_scene)(junction_scene.agents, junction_scene.statics, junction_scene.road,
                                 junction_scene.ego_pose, junction_scene.ego_size,
                                 junction_scene.time_s, lights.with_states(np.full(len(lights), state)))
    camera = CameraModel()
    img = camera.render(scene)
    ego = np.array(scene.ego_pose[:2])
    # heads facing the camera within 45 deg and near enough for lamps > 1 px
    ahead = [k for k, h in enumerate(lights.heads)
             if np.dot(h.facing[:2], (ego - h.position[:2]) / np.linalg.norm(ego - h.position[:2])) > 0.7
             and np.linalg.norm(ego - h.position[:2]) < 50.0]
    checked = 0
    for k in ahead:
        uv = np.round(project(camera, scene, lights.heads[k].lamp_centres())).astype(int)
        if np.all((uv[:, 0] >= 0) & (uv[:, 0] < img.shape[1]) & (uv[:, 1] >= 0) & (uv[:, 1] < img.shape[0])):
            colours = [tuple(img[v, u]) for u, v in uv]
            want = [LAMP_RGB[s] if s == state else LAMP_OFF_RGB for s in LAMP_ORDER]
            assert colours == want, (k, colours)
            checked += 1
    assert checked >= 2


def test_stop_lines_are_paint_in_the_road_raster(junction_scene):
    lights = junction_scene.lights
    road = junction_scene.road
    for h in lights.heads:
        # 0.2 m upstream of the lane end: on the 0.4 m stop line
        p = h.stop_xy - 0.2 * h.lane_direction
        assert road.surface_at(p[None])[0] == SURFACE_MARKING
    assert SURFACE_RGB[SURFACE_MARKING] == (235, 235, 225)


def test_lidar_sees_the_structure_not_the_lamps(junction_scene):
    lidar = LidarModel(LidarParams())
    scan = lidar.scan(junction_scene, np.random.default_rng(0))
    hit = np.isin(scan.hit_id, junction_scene.lights.boxes.ids)
    mats = set(scan.hit_material[hit].tolist())
    assert hit.sum() > 20 and mats <= {MAT_POLE, MAT_SIGNAL} and MAT_SIGNAL in mats
    assert scan.hit_id[hit].min() >= SIGNAL_ID_BASE
    # the lamps' colour is not geometry: the same scan whatever the states
    other = junction_scene.lights.with_states(np.full(len(junction_scene.lights), GREEN))
    scene2 = type(junction_scene)(junction_scene.agents, junction_scene.statics, junction_scene.road,
                                  junction_scene.ego_pose, junction_scene.ego_size,
                                  junction_scene.time_s, other)
    scan2 = lidar.scan(scene2, np.random.default_rng(0))
    assert np.array_equal(scan.points, scan2.points)


def test_rendering_with_lights_is_deterministic(junction_scene):
    a = CameraModel().render(junction_scene)
    b = CameraModel().render(junction_scene)
    assert np.array_equal(a, b)
