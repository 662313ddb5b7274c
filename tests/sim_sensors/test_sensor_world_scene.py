"""Sensor models on scenes from the real SUMO world (tps_sim.world.SimWorld)."""

from __future__ import annotations

import numpy as np
import pytest
import tps_sim.world as world_mod
from tps_sim.sensors.camera import SKY_RGB, CameraModel
from tps_sim.sensors.lidar import LidarModel, LidarParams
from tps_sim.sensors.scene3d import GROUND_ID, SURFACE_ASPHALT, SURFACE_MARKING

from tests.sim_sensors.sensor_geometry import EXACT_TOL_M, distance_to_box_surfaces, to_map

SEED = 3  # a train seed
STEPS = (0, 15, 30)
SCENARIOS = ("roundabout", "signalised")


def world_scenes(scenario: str) -> list:
    cfg = world_mod.WorldConfig(scenario=scenario, seed=SEED, clutter="high",
                                ego_driver="expert", duration_s=10.0)
    world = world_mod.SimWorld(cfg)
    scenes = []
    try:
        state = world.reset()
        for step in range(max(STEPS) + 1):
            if step in STEPS:
                scenes.append(world.scene3d(state))
            state = world.step(world_mod.EgoControl(throttle=0.0))
    finally:
        world.close()
    return scenes


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_sensors_on_world_scenes(scenario: str) -> None:
    params = LidarParams(range_noise_sigma_m=0.0)
    lidar, camera = LidarModel(params), CameraModel()
    for scene in world_scenes(scenario):
        scan = lidar.scan(scene, np.random.default_rng(0))
        assert len(scan) > 1000
        pts = to_map(scene, scan.points, params.mount)
        boxes = scene.all_boxes()
        dist = np.abs(pts[:, 2])
        if len(boxes):
            dist = np.minimum(dist, distance_to_box_surfaces(pts, boxes).min(axis=1))
        assert dist.max() <= EXACT_TOL_M
        assert set(np.unique(scan.hit_id[scan.hit_id != GROUND_ID]).tolist()) <= set(
            boxes.ids.tolist())
        # The ego stands on the road: the ground returns include asphalt and lane paint.
        ground = scene.road.surface_at(pts[scan.hit_id == GROUND_ID, :2])
        assert np.any(ground == SURFACE_ASPHALT) and np.any(ground == SURFACE_MARKING)
        assert np.any(scan.hit_id != GROUND_ID)  # clutter (high) or traffic is in range
        image = camera.render(scene)
        assert image.shape == (360, 640, 3)
        below = image[int(camera.cy) + 1:]
        assert not np.any(np.all(below == SKY_RGB, axis=2))  # no sky below the horizon


DIGEST_SCRIPT = """
import hashlib, numpy as np
from tps_sim.sensors.camera import CameraModel
from tps_sim.sensors.faults import SensorFaultConfig, SensorFaultInjector
from tps_sim.sensors.lidar import LidarModel, LidarParams, to_xyzi
from tps_sim.sensors.synthetic import synthetic_scene
scene = synthetic_scene({seed})
inj = SensorFaultInjector(SensorFaultConfig.from_dict({{"point_dropout": {{"fraction": 0.2}},
                                                       "nan_points": {{"kind": "mixed"}}}}), {seed})
h = hashlib.sha256()
h.update(to_xyzi(LidarModel(LidarParams(dropout_prob=0.1)).scan(scene, np.random.default_rng({seed}))).tobytes())
h.update(inj.apply_lidar(0.3, to_xyzi(LidarModel().scan(scene, np.random.default_rng(1)))).tobytes())
h.update(CameraModel().render(scene).tobytes())
print(h.hexdigest())
"""


def test_sensor_output_is_byte_identical_across_processes() -> None:
    """The same seed gives the same bytes in a fresh process as in this one."""
    import contextlib
    import io
    import subprocess
    import sys

    def here(seed: int) -> str:
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            exec(DIGEST_SCRIPT.format(seed=seed), {})  # noqa: S102 - our own script text
        return buf.getvalue().strip()

    child = subprocess.run([sys.executable, "-c", DIGEST_SCRIPT.format(seed=5)],
                           capture_output=True, text=True, check=True, timeout=120).stdout.strip()
    assert len(child) == 64
    assert child == here(5)
    assert child != here(6)
