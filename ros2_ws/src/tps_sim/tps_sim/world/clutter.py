"""Seeded background clutter (poles, barriers, walls, buildings, parked cars) placed OFF the
drivable area along the ego route, and in-lane obstacles from the configuration."""

from __future__ import annotations

import numpy as np
import shapely
from tps_common.geometry import boxes_corners, boxes_overlap

from tps_sim.world.road import RoadGeometry
from tps_sim.world.state import STATIC_ID_BASE, StaticObjects

# Objects per 100 m of route, per clutter level.
CLUTTER_PER_100M = {"none": 0.0, "low": 3.0, "medium": 7.0, "high": 14.0}
ROAD_CLEARANCE_M = 0.8   # minimum gap between clutter and the drivable area / sidewalks
MAX_TRIES_PER_OBJECT = 20

# kind: (probability, length range, width range, height range, lateral distance range from
# the route centreline [m], aligned with the road?)
CLUTTER_KINDS = {
    "pole": (0.30, (0.25, 0.4), (0.25, 0.4), (3.0, 8.0), (5.0, 14.0), False),
    "barrier": (0.20, (2.0, 6.0), (0.3, 0.6), (0.8, 1.2), (5.0, 12.0), True),
    "wall": (0.12, (5.0, 20.0), (0.25, 0.4), (1.5, 3.0), (8.0, 20.0), True),
    "building": (0.13, (8.0, 25.0), (8.0, 20.0), (5.0, 18.0), (15.0, 45.0), True),
    "parked_car": (0.25, (4.2, 4.8), (1.75, 1.95), (1.4, 1.6), (5.0, 10.0), True),
}
OBSTACLE_DEFAULT_SIZE_M = {
    "debris": (0.8, 0.8, 0.5),
    "barrier": (2.0, 0.5, 1.0),
    "parked_car": (4.5, 1.85, 1.5),
    "pole": (0.3, 0.3, 3.0),
}


def route_frame(route: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(cumulative arc length (N,) [m], heading (N,) [rad]) of a polyline (N, 2)."""
    seg = np.diff(route, axis=0)
    s = np.concatenate([[0.0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))])
    heading = np.arctan2(seg[:, 1], seg[:, 0])
    heading = np.concatenate([heading, heading[-1:]])
    return s, heading


def pose_on_route(route: np.ndarray, s_m: float, lateral_m: float) -> tuple[float, float, float]:
    """(x, y, heading) at arc length ``s_m`` and ``lateral_m`` left of the route [m, rad]."""
    s, heading = route_frame(route)
    s_m = float(np.clip(s_m, 0.0, s[-1]))
    k = int(np.clip(np.searchsorted(s, s_m, side="right") - 1, 0, len(route) - 2))
    frac = (s_m - s[k]) / max(s[k + 1] - s[k], 1e-9)
    p = route[k] + frac * (route[k + 1] - route[k])
    h = heading[k]
    return float(p[0] - lateral_m * np.sin(h)), float(p[1] + lateral_m * np.cos(h)), float(h)


def place_clutter(road: RoadGeometry, route: np.ndarray, level: str,
                  rng: np.random.Generator) -> StaticObjects:
    """Seeded clutter beside ``route`` at ``level``, never touching the drivable area."""
    s_total = route_frame(route)[0][-1]
    count = int(round(CLUTTER_PER_100M[level] * s_total / 100.0))
    if count == 0:
        return StaticObjects.empty()
    kinds = list(CLUTTER_KINDS)
    probs = np.array([CLUTTER_KINDS[k][0] for k in kinds])
    probs /= probs.sum()
    blocked = road.drivable_union
    if road.sidewalk_polygons:
        blocked = shapely.union_all([blocked, *[shapely.Polygon(p) for p in
                                                road.sidewalk_polygons]])
    blocked = blocked.buffer(ROAD_CLEARANCE_M)
    shapely.prepare(blocked)
    placed_kinds: list = []
    boxes: list = []  # (x, y, yaw, l, w, h)
    for _ in range(count):
        kind = kinds[int(rng.choice(len(kinds), p=probs))]
        _, lr, wr, hr, dr, aligned = CLUTTER_KINDS[kind]
        for _try in range(MAX_TRIES_PER_OBJECT):
            s_m = rng.uniform(0.0, s_total)
            side = 1.0 if rng.random() < 0.5 else -1.0
            lat = side * rng.uniform(*dr)
            x, y, h = pose_on_route(route, s_m, lat)
            length, width, height = rng.uniform(*lr), rng.uniform(*wr), rng.uniform(*hr)
            yaw = h if aligned else rng.uniform(-np.pi, np.pi)
            box = np.array([x, y, yaw, length, width])
            if shapely.intersects(blocked, shapely.Polygon(boxes_corners(box)[0])):
                continue
            if boxes and boxes_overlap(box, np.array(boxes)[:, :5]).any():
                continue
            boxes.append([x, y, yaw, length, width, height])
            placed_kinds.append(kind)
            break
    if not boxes:
        return StaticObjects.empty()
    b = np.array(boxes)
    n = len(b)
    return StaticObjects(
        ids=STATIC_ID_BASE + np.arange(n, dtype=np.int64), kinds=tuple(placed_kinds),
        centers=np.column_stack([b[:, 0], b[:, 1], 0.5 * b[:, 5]]), yaws=b[:, 2].copy(),
        sizes=b[:, [3, 4, 5]].copy(), in_lane=np.zeros(n, bool))


def place_obstacles(route: np.ndarray, obstacles: tuple, first_id: int,
                    start_s_m: float = 0.0) -> StaticObjects:
    """In-lane obstacles from WorldConfig.obstacles: ``route_s_m`` metres along the route
    ahead of ``start_s_m`` (the ego's start), ``lateral_m`` left of the centreline."""
    if not obstacles:
        return StaticObjects.empty()
    rows, kinds = [], []
    for ob in obstacles:
        size = tuple(ob.get("size_m", OBSTACLE_DEFAULT_SIZE_M[ob["kind"]]))
        x, y, h = pose_on_route(route, start_s_m + float(ob["route_s_m"]),
                                float(ob.get("lateral_m", 0.0)))
        rows.append([x, y, h + float(ob.get("yaw_rad", 0.0)), *size])
        kinds.append(ob["kind"])
    b = np.array(rows, dtype=np.float64)
    n = len(b)
    return StaticObjects(
        ids=first_id + np.arange(n, dtype=np.int64), kinds=tuple(kinds),
        centers=np.column_stack([b[:, 0], b[:, 1], 0.5 * b[:, 5]]), yaws=b[:, 2].copy(),
        sizes=b[:, 3:6].copy(), in_lane=np.ones(n, bool))


def concat_statics(a: StaticObjects, b: StaticObjects) -> StaticObjects:
    """Both sets, a first."""
    if not len(b):
        return a
    if not len(a):
        return b
    return StaticObjects(np.concatenate([a.ids, b.ids]), a.kinds + b.kinds,
                         np.concatenate([a.centers, b.centers]), np.concatenate([a.yaws, b.yaws]),
                         np.concatenate([a.sizes, b.sizes]), np.concatenate([a.in_lane, b.in_lane]))
