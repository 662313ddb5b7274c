"""Geometry helpers shared by the sensor tests (independent of the models under test)."""

from __future__ import annotations

import numpy as np
from tps_common.frames import RigidTransform
from tps_sim.sensors.scene3d import BoxSet, Scene3D

# float32 points at <= 80 m are exact to well under a millimetre
EXACT_TOL_M = 1e-3


def to_map(scene: Scene3D, points: np.ndarray, mount: tuple) -> np.ndarray:
    """Sensor-frame points (N, >=3) -> map frame (N, 3), for a sensor at ``mount`` (x, y, z,
    roll, pitch, yaw) in base_link; composed with tps_common.frames, independently of the
    sensor models' own pose code."""
    base_from_sensor = RigidTransform.from_xyz_rpy(mount[:3], mount[3:])
    x, y, yaw = scene.ego_pose
    map_from_base = RigidTransform.from_xyz_rpy((x, y, 0.0), (0.0, 0.0, yaw))
    return (map_from_base @ base_from_sensor).apply(points[:, :3].astype(np.float64))


def distance_to_box_surfaces(pts: np.ndarray, boxes: BoxSet) -> np.ndarray:
    """(N, M) distance [m] of every point to the surface of every box."""
    rel = pts[:, None, :] - boxes.centers[None, :, :]
    c, s = np.cos(boxes.yaws)[None, :], np.sin(boxes.yaws)[None, :]
    lx = c * rel[..., 0] + s * rel[..., 1]
    ly = -s * rel[..., 0] + c * rel[..., 1]
    local = np.stack([lx, ly, rel[..., 2]], axis=-1)
    q = np.abs(local) - boxes.sizes[None, :, :] / 2.0
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
    inside = np.minimum(q.max(axis=-1), 0.0)
    return np.abs(outside + inside)
