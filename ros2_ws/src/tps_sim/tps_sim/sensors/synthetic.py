"""Seeded synthetic scenes for sensor-model tests and benchmarks (no SUMO needed).

A straight road along map +x (``lanes`` lanes of ``lane_width_m``, dashed lane lines, solid
edges) with vehicles on the lane centres around the ego and clutter off the drivable area. The
real scenes come from ``tps_sim.world``; this module only exists so the sensor models can be
tested and timed on their own.
"""

from __future__ import annotations

import numpy as np

from tps_sim.sensors.scene3d import (
    MAT_BARRIER,
    MAT_BUILDING,
    MAT_BUS,
    MAT_CAR,
    MAT_CYCLIST,
    MAT_DEBRIS,
    MAT_PARKED_CAR,
    MAT_PEDESTRIAN,
    MAT_POLE,
    MAT_TRUCK,
    MAT_WALL,
    BoxSet,
    RoadSurface,
    Scene3D,
)

# Clutter objects per 100 m of road, per side, by level.
CLUTTER_PER_100M = {"none": 0, "low": 4, "medium": 10, "high": 20}
# (material, length, width, height) [m] of each agent class, and its share of the traffic.
AGENT_TYPES = (
    (MAT_CAR, 4.5, 1.9, 1.5, 0.70),
    (MAT_TRUCK, 8.0, 2.5, 3.4, 0.10),
    (MAT_BUS, 12.0, 2.55, 3.1, 0.05),
    (MAT_CYCLIST, 1.8, 0.7, 1.7, 0.10),
    (MAT_PEDESTRIAN, 0.5, 0.5, 1.75, 0.05),
)
CLUTTER_TYPES = (
    (MAT_POLE, (0.25, 0.25, 5.0)),
    (MAT_BARRIER, (3.0, 0.4, 1.0)),
    (MAT_WALL, (12.0, 0.4, 2.5)),
    (MAT_BUILDING, (15.0, 10.0, 9.0)),
    (MAT_PARKED_CAR, (4.5, 1.9, 1.5)),
    (MAT_DEBRIS, (0.8, 0.6, 0.4)),
)
DASH_LENGTH_M, DASH_GAP_M = 3.0, 6.0
# No agent within this distance [m] of the ego along its lane.
EGO_CLEARANCE_M = 10.0


def straight_road(length_m: float = 400.0, lanes: int = 4,
                  lane_width_m: float = 3.5) -> RoadSurface:
    """A straight road from x = -length/2 to +length/2 centred on y = 0 (map frame)."""
    half_len = length_m / 2.0
    half_w = lanes * lane_width_m / 2.0
    polygon = np.array([[-half_len, -half_w], [half_len, -half_w], [half_len, half_w],
                        [-half_len, half_w]])
    lines = [np.array([[-half_len, y], [half_len, y]]) for y in (-half_w + 0.2, half_w - 0.2)]
    for k in range(1, lanes):
        y = -half_w + k * lane_width_m
        for x in np.arange(-half_len, half_len - DASH_LENGTH_M, DASH_LENGTH_M + DASH_GAP_M):
            lines.append(np.array([[x, y], [x + DASH_LENGTH_M, y]]))
    return RoadSurface((polygon,), tuple(lines), marking_width_m=0.15)


def synthetic_scene(seed: int, n_vehicles: int = 50, clutter: str = "medium",
                    length_m: float = 400.0, lanes: int = 4, lane_width_m: float = 3.5,
                    road: RoadSurface | None = None) -> Scene3D:
    """A seeded scene: ego at the origin heading +x in lane 1, ``n_vehicles`` agents on lane
    centres within +-length/2 (no overlaps with each other or the ego), and clutter of the given
    level (``none|low|medium|high``) 2-25 m beside the road edges."""
    if clutter not in CLUTTER_PER_100M:
        raise ValueError(f"clutter: unknown level {clutter!r}; expected one of "
                         f"{sorted(CLUTTER_PER_100M)}")
    if n_vehicles < 0:
        raise ValueError(f"n_vehicles must be >= 0, got {n_vehicles}")
    rng = np.random.default_rng(seed)
    half_len = length_m / 2.0 - 10.0
    half_w = lanes * lane_width_m / 2.0
    road = road if road is not None else straight_road(length_m, lanes, lane_width_m)
    lane_y = -half_w + lane_width_m * (np.arange(lanes) + 0.5)
    ego_y = lane_y[min(1, lanes - 1)]
    probs = np.array([t[4] for t in AGENT_TYPES])
    occupied: list[list[tuple[float, float]]] = [[] for _ in range(lanes)]
    occupied[min(1, lanes - 1)].append((-EGO_CLEARANCE_M, EGO_CLEARANCE_M))
    centers, sizes, yaws, mats = [], [], [], []
    attempts = 0
    while len(centers) < n_vehicles and attempts < 100 * max(n_vehicles, 1):
        attempts += 1
        kind = AGENT_TYPES[rng.choice(len(AGENT_TYPES), p=probs / probs.sum())]
        lane = int(rng.integers(lanes))
        x = float(rng.uniform(-half_len, half_len))
        lo, hi = x - kind[1] / 2.0 - 1.0, x + kind[1] / 2.0 + 1.0
        if any(lo < b and a < hi for a, b in occupied[lane]):
            continue
        occupied[lane].append((lo, hi))
        heading = 0.0 if lane >= lanes // 2 else np.pi
        centers.append((x, lane_y[lane] + rng.uniform(-0.3, 0.3), kind[3] / 2.0))
        sizes.append(kind[1:4])
        yaws.append(heading + rng.uniform(-0.05, 0.05))
        mats.append(kind[0])
    n = len(centers)
    agents = BoxSet(np.arange(1, n + 1), np.array(centers).reshape(-1, 3),
                    np.array(sizes).reshape(-1, 3), np.array(yaws), np.array(mats, np.int16))

    count = int(round(CLUTTER_PER_100M[clutter] * length_m / 100.0)) * 2
    s_centers, s_sizes, s_yaws, s_mats = [], [], [], []
    for k in range(count):
        mat, size = CLUTTER_TYPES[int(rng.integers(len(CLUTTER_TYPES)))]
        side = 1.0 if k % 2 == 0 else -1.0
        offset = size[1] / 2.0 + rng.uniform(2.0, 25.0 if mat == MAT_BUILDING else 8.0)
        x = float(rng.uniform(-half_len, half_len))
        y = side * (half_w + offset)
        s_centers.append((x, y, size[2] / 2.0))
        s_sizes.append(size)
        s_yaws.append(rng.uniform(-0.1, 0.1) if mat != MAT_POLE else rng.uniform(0, np.pi))
        s_mats.append(mat)
    statics = BoxSet(np.arange(10_000, 10_000 + count), np.array(s_centers).reshape(-1, 3),
                     np.array(s_sizes).reshape(-1, 3), np.array(s_yaws),
                     np.array(s_mats, np.int16))
    return Scene3D(agents, statics, road, (0.0, float(ego_y), 0.0), (4.6, 1.9, 1.5), 0.0)
