"""A lidar mounted elsewhere on the vehicle gives the same perception, given its extrinsic.

The simulator renders the same episode twice, once with the default mount (straight above
base_link, 1.8 m) and once with a shifted, raised and tilted one (x 1.2 m, z 2.0 m, pitch 2 deg,
yaw 1 deg). Points are published in the lidar frame, so the two clouds differ; with each mount's
extrinsic ``T_base_link<-lidar`` the detector's boxes and the fallback's obstacle distance must
agree within tolerance. (The extrinsic reaches the nodes from /tf_static: tests/sim_bridge/
test_frames_node.py and the node test below.)
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from tps_common.frames import RigidTransform
from tps_common.stamp_sync import EgoPose

DEFAULT_MOUNT = (0.0, 0.0, 1.8, 0.0, 0.0, 0.0)
TILTED_MOUNT = (1.2, 0.0, 2.0, 0.0, math.radians(2.0), math.radians(1.0))
DET_SCENE = ("cut_in", 1002, "medium")    # a VAL seed (never a test seed) with traffic in view
DET_STEPS = range(20, 40)                  # frames compared
MAX_RANGE_M = 40.0
MIN_SCORE = 0.5
MATCH_RADIUS_M = 1.0
MIN_MATCHED_SHARE = 0.9                    # of the default run's confident detections
MAX_MEAN_CENTRE_ERROR_M = 0.25
MAX_YAW_ERROR_RAD = math.radians(10.0)
OBSTACLE = {"kind": "parked_car", "route_s_m": 45.0, "lateral_m": 0.0}
GAP_STEPS = range(1, 8)
MAX_GAP_ERROR_M = 0.3


def _frames(scenario: str, seed: int, clutter: str, mount, steps, obstacles: str = "") -> tuple[list, np.ndarray]:
    """The frames of ``steps`` of an expert-driven episode, and its route."""
    from tps_sim.bridge import BridgeParams, SimBridge

    params = BridgeParams(scenario=scenario, seed=seed, clutter=clutter, ego_driver="expert",
                          density=0.0 if obstacles else 1.0, duration_s=max(steps) * 0.1 + 0.5,
                          lidar_mount=tuple(mount), obstacles=obstacles)
    bridge = SimBridge(params)
    out = []
    route = bridge.route
    try:
        frame = bridge.start(0.0)
        t = 0.0
        while frame.step < max(steps):
            t += params.step_period_s
            frame = bridge.poll(t) or frame
            if frame.step in steps and (not out or out[-1].step != frame.step):
                out.append(frame)
    finally:
        bridge.close()
    return out, route


def _detector():
    from tps_perception.backends import engine_backend
    from tps_perception.detector import Detector, DetectorParams

    backend, meta, _ = engine_backend("detector_int8", "onnxruntime", 2)
    return Detector(DetectorParams.from_meta(meta, track=False), backend)


def _confident(res) -> np.ndarray:
    b = res.detections.boxes
    keep = (res.detections.scores >= MIN_SCORE) & (np.hypot(b[:, 0], b[:, 1]) <= MAX_RANGE_M)
    return b[keep]


@pytest.mark.slow
def test_detections_unchanged_with_a_tilted_shifted_lidar():
    default, _ = _frames(*DET_SCENE, DEFAULT_MOUNT, DET_STEPS)
    tilted, _ = _frames(*DET_SCENE, TILTED_MOUNT, DET_STEPS)
    assert [f.step for f in default] == [f.step for f in tilted] == list(DET_STEPS)
    det = _detector()
    errors, yaw_errors, matched, total = [], [], 0, 0
    for fd, ft in zip(default, tilted, strict=True):
        assert not np.array_equal(fd.lidar_points[:100], ft.lidar_points[:100]), "mounts were not applied"
        bd = _confident(det.run(fd.lidar_points, fd.t_s,
                                sensor_to_base=RigidTransform.from_xyz_rpy(DEFAULT_MOUNT[:3], DEFAULT_MOUNT[3:])))
        bt = det.run(ft.lidar_points, ft.t_s,
                     sensor_to_base=RigidTransform.from_xyz_rpy(TILTED_MOUNT[:3], TILTED_MOUNT[3:])).detections.boxes
        total += len(bd)
        for b in bd:
            d = np.hypot(bt[:, 0] - b[0], bt[:, 1] - b[1]) if len(bt) else np.array([np.inf])
            j = int(np.argmin(d))
            if d[j] <= MATCH_RADIUS_M:
                matched += 1
                errors.append(float(d[j]))
                dyaw = (bt[j, 6] - b[6] + math.pi / 2) % math.pi - math.pi / 2   # boxes: yaw mod pi
                yaw_errors.append(abs(dyaw))
    assert total >= 20, f"only {total} confident detections: pick another scene"
    assert matched / total >= MIN_MATCHED_SHARE, f"{matched} of {total} detections found again"
    assert np.mean(errors) <= MAX_MEAN_CENTRE_ERROR_M, f"mean centre error {np.mean(errors):.3f} m"
    assert np.median(yaw_errors) <= MAX_YAW_ERROR_RAD


@pytest.mark.slow
def test_fallback_obstacle_distance_unchanged_with_a_tilted_shifted_lidar():
    import json

    from tps_planner.fallback import FallbackParams, FallbackPlanner

    obstacles = json.dumps([OBSTACLE])
    gaps = {}
    for name, mount in (("default", DEFAULT_MOUNT), ("tilted", TILTED_MOUNT)):
        frames, route = _frames("highway", 1003, "none", mount, GAP_STEPS, obstacles)
        planner = FallbackPlanner(FallbackParams())
        planner.set_route(route)
        planner.set_lidar_extrinsic(RigidTransform.from_xyz_rpy(mount[:3], mount[3:]))
        out = []
        for f in frames:
            e = f.state.ego
            res = planner.update(f.lidar_points, f.t_s, EgoPose(f.t_s, float(e.center[0]), float(e.center[1]),
                                                                 float(e.yaw), float(e.speed_mps)))
            assert res.obstacle is not None, f"{name}: no obstacle at step {f.step}"
            out.append(res.obstacle.gap_m)
        gaps[name] = np.array(out)
    err = np.abs(gaps["default"] - gaps["tilted"])
    assert err.max() <= MAX_GAP_ERROR_M, f"gap differences {err.round(3)} (gaps {gaps['default'].round(2)})"

