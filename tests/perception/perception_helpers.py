"""Shared helpers of the perception tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
SHIPPED_MODEL_DIR = REPO / "models" / "detector"


def box_points(center_xy: tuple[float, float], size_lwh: tuple[float, float, float], yaw: float,
               n: int = 200, lidar_height_m: float = 1.8, seed: int = 0) -> np.ndarray:
    """Points on the surface of a box standing on the ground, in the lidar frame (N, 4)."""
    rng = np.random.default_rng(seed)
    length, width, height = size_lwh
    u = rng.uniform(-0.5, 0.5, size=(n, 3)) * np.array([length, width, height])
    face = rng.integers(0, 3, n)
    u[face == 0, 0] = np.sign(u[face == 0, 0]) * length / 2
    u[face == 1, 1] = np.sign(u[face == 1, 1]) * width / 2
    u[face == 2, 2] = height / 2
    c, s = np.cos(yaw), np.sin(yaw)
    x = center_xy[0] + c * u[:, 0] - s * u[:, 1]
    y = center_xy[1] + s * u[:, 0] + c * u[:, 1]
    z = u[:, 2] + height / 2 - lidar_height_m
    return np.stack([x, y, z, np.full(n, 0.5)], axis=1).astype(np.float32)


def ground_points(n: int = 2000, radius_m: float = 50.0, lidar_height_m: float = 1.8, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    r = radius_m * np.sqrt(rng.random(n))
    a = rng.uniform(-np.pi, np.pi, n)
    return np.stack([r * np.cos(a), r * np.sin(a), np.full(n, -lidar_height_m), np.full(n, 0.1)],
                    axis=1).astype(np.float32)
