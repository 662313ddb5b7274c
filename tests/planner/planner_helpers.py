"""Shared test fixtures for tests/planner: a kinematic bicycle ego driven by CARLA-style
commands, route builders and real lidar scans from the project's sensor model (tps_sim)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from tps_common.stamp_sync import EgoPose
from tps_planner.trajectory import SOURCE_FALLBACK, Trajectory

DT_S = 0.1                         # simulation step of the synchronous loop, s
FULL_THROTTLE_ACCEL_MPS2 = 3.5     # pedal map shared with ControllerParams defaults
FULL_BRAKE_DECEL_MPS2 = 8.0


@dataclass
class BicycleVehicle:
    """Kinematic bicycle about base_link (footprint centre), CARLA command convention:
    positive steer = turn right. ``drag_mps2`` is a constant resistance the PID must absorb."""

    x: float = 0.0
    y: float = 0.0
    yaw: float = 0.0
    v: float = 0.0
    wheelbase_m: float = 2.8
    rear_axle_offset_m: float = 1.4
    max_wheel_angle_rad: float = 0.61
    drag_mps2: float = 0.1
    last_accel_mps2: float = 0.0

    def step(self, throttle: float, steer: float, brake: float, dt: float = DT_S) -> None:
        """Advance ``dt`` seconds under one command."""
        accel = throttle * FULL_THROTTLE_ACCEL_MPS2 - brake * FULL_BRAKE_DECEL_MPS2
        accel -= self.drag_mps2 if self.v > 0 else 0.0
        v_new = max(self.v + accel * dt, 0.0)
        self.last_accel_mps2 = (v_new - self.v) / dt
        wheel = -steer * self.max_wheel_angle_rad          # CARLA -> REP-103
        beta = math.atan(self.rear_axle_offset_m / self.wheelbase_m * math.tan(wheel))
        v_mid = 0.5 * (self.v + v_new)
        self.x += v_mid * math.cos(self.yaw + beta) * dt
        self.y += v_mid * math.sin(self.yaw + beta) * dt
        self.yaw += v_mid / self.wheelbase_m * math.cos(beta) * math.tan(wheel) * dt
        self.yaw = (self.yaw + math.pi) % (2 * math.pi) - math.pi
        self.v = v_new

    def pose(self, stamp_s: float) -> EgoPose:
        return EgoPose(stamp_s, self.x, self.y, self.yaw, self.v)


def straight_route(length_m: float = 400.0, x0: float = -50.0, y: float = 0.0) -> np.ndarray:
    """A straight route along +x at lateral ``y`` (map), 2 m spacing."""
    x = np.arange(x0, x0 + length_m + 1e-9, 2.0)
    return np.stack([x, np.full_like(x, y)], axis=1)


def circle_route(radius_m: float, turns: float = 1.0, left: bool = True) -> np.ndarray:
    """A circle through the origin heading +x, turning left (centre (0, R)) or right."""
    sign = 1.0 if left else -1.0
    th = np.linspace(0.0, 2 * math.pi * turns, int(200 * turns * radius_m / 20) + 2)
    return np.stack([radius_m * np.sin(th), sign * radius_m * (1 - np.cos(th))], axis=1)


def constant_speed_trajectory(route_xy: np.ndarray, start_s: float, speed_mps: float, stamp_s: float,
                              n: int = 17, step_s: float = 0.5, source: int = SOURCE_FALLBACK) -> Trajectory:
    """A trajectory along a route from arc length ``start_s`` at constant speed."""
    seg = np.hypot(*np.diff(route_xy, axis=0).T)
    s_route = np.concatenate([[0.0], np.cumsum(seg)])
    t = np.arange(n) * step_s
    s = start_s + speed_mps * t
    xy = np.stack([np.interp(s, s_route, route_xy[:, 0]), np.interp(s, s_route, route_xy[:, 1])], axis=1)
    d = np.gradient(xy, axis=0)
    yaw = np.arctan2(d[:, 1], d[:, 0])
    return Trajectory(stamp_s, t, xy, yaw, np.full(n, speed_mps), np.zeros(n), source=source)


# ------------------------------------------------------------------ real lidar (tps_sim sensor model)
_LIDAR = None


def lidar_scan(ego_pose: tuple[float, float, float], boxes: list[tuple], seed: int = 0) -> np.ndarray:
    """Lidar-frame (N, 4) xyzi returns of the project's ray-casting lidar model for a straight
    4-lane road and ``boxes`` = [(cx, cy, yaw, length, width, height), ...] standing on the ground."""
    global _LIDAR
    from tps_sim.sensors.lidar import LidarModel, to_xyzi
    from tps_sim.sensors.scene3d import MAT_DEBRIS, BoxSet, Scene3D
    from tps_sim.sensors.synthetic import straight_road

    if _LIDAR is None:
        _LIDAR = (LidarModel(), straight_road(length_m=600.0))
    model, road = _LIDAR
    if boxes:
        b = np.asarray(boxes, dtype=float)
        statics = BoxSet(np.arange(len(b)), np.stack([b[:, 0], b[:, 1], b[:, 5] / 2], axis=1),
                         b[:, 3:6], b[:, 2], np.full(len(b), MAT_DEBRIS, np.int16))
    else:
        statics = BoxSet.empty()
    scene = Scene3D(agents=BoxSet.empty(), statics=statics, road=road, ego_pose=ego_pose)
    return to_xyzi(model.scan(scene, np.random.default_rng(seed)))
