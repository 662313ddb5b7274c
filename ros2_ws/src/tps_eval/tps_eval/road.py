"""Road-geometry queries the metrics need: drivable area and lane straddling (shapely, no ROS).

The drivable area is the world's own (``tps_sim.world.road.RoadGeometry.contains``: lanes +
junctions, as docs/METRICS.md "Closed-loop episodes" and its DAC define it); this module adds the
"ego straddles lanes or is in an intersection" test of NAVSIM's NC and TTC (the multi-lane
condition of the collision taxonomy), and the plotting geometry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache

import numpy as np
import shapely
from shapely.geometry import Polygon
from shapely.ops import unary_union

# A footprint overlapping a lane by less than this area [m^2] does not occupy it (driving on the
# paint of a line is not yet a lane change).
STRADDLE_MIN_AREA_M2 = 0.3
# Points this close to the drivable area count as on it: SUMO's junction shapes approximate the
# paved area (netconvert corner detail), and the expert's corners graze them by millimetres.
DRIVABLE_TOLERANCE_M = 0.1


class RoadQuery:
    """Point and footprint queries on one road network (map frame, metres).

    Args:
        lane_polygons: (M, 2) polygons [m] of the normal (non-junction) drivable lanes.
        junction_polygons: (K, 2) polygons [m] of the junction areas.
        contains: drivable-area test, (N, 2) points -> (N,) bool; default: inside the union of
            the lane and junction polygons.
        marking_polylines: (K, 2) lane-marking polylines [m] (plotting only).
        tolerance_m: points within this distance of the lane/junction polygons also count as
            drivable [m].
    """

    def __init__(self, lane_polygons: Sequence[np.ndarray],
                 junction_polygons: Sequence[np.ndarray] = (),
                 contains: Callable[[np.ndarray], np.ndarray] | None = None,
                 marking_polylines: Sequence[np.ndarray] = (),
                 tolerance_m: float = DRIVABLE_TOLERANCE_M) -> None:
        self._lanes_xy = [np.asarray(p, float).reshape(-1, 2) for p in lane_polygons
                          if len(p) >= 3]
        self._junctions_xy = [np.asarray(p, float).reshape(-1, 2) for p in junction_polygons
                              if len(p) >= 3]
        self._markings = [np.asarray(p, float).reshape(-1, 2) for p in marking_polylines]
        self.lanes = [Polygon(p).buffer(0) for p in self._lanes_xy]
        self.junctions = [Polygon(p).buffer(0) for p in self._junctions_xy]
        self._lane_tree = shapely.STRtree(self.lanes)
        self._junction_union = unary_union(self.junctions) if self.junctions else None
        if self._junction_union is not None:
            shapely.prepare(self._junction_union)
        area = unary_union(self.lanes + self.junctions)
        shapely.prepare(area)
        self._area = area
        self.tolerance_m = float(tolerance_m)
        if contains is None:
            def contains(xy: np.ndarray) -> np.ndarray:
                xy = np.asarray(xy, float).reshape(-1, 2)
                return np.asarray(shapely.contains_xy(area, xy[:, 0], xy[:, 1]), bool)
        self._contains = contains

    @classmethod
    def from_geometry(cls, geometry) -> RoadQuery:
        """From a ``tps_sim.world.road.RoadGeometry`` (its ``contains`` is the DAC test)."""
        return cls(list(geometry.lane_polygons.values()),
                   list(geometry.junction_polygons.values()), geometry.contains,
                   list(geometry.marking_polylines()))

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """(N,) bool: the points (N, 2) [m] lie on the drivable area (within ``tolerance_m``)."""
        xy = np.asarray(xy, float).reshape(-1, 2)
        if xy.shape[0] == 0:
            return np.zeros(0, bool)
        inside = np.asarray(self._contains(xy), bool).reshape(-1)
        if self.tolerance_m > 0 and not inside.all():
            out = np.flatnonzero(~inside)
            dist = shapely.distance(self._area, shapely.points(xy[out]))
            inside[out] = np.asarray(dist) <= self.tolerance_m
        return inside

    def straddling(self, corners: np.ndarray) -> bool:
        """Whether a footprint (4, 2) [m] spans two or more lanes (overlap above
        ``STRADDLE_MIN_AREA_M2`` each), touches a junction area, or has a corner off the drivable
        area: the "multiple lanes, off-road or in an intersection" condition of NAVSIM's NC and
        TTC."""
        corners = np.asarray(corners, float).reshape(4, 2)
        if not self.contains(corners).all():
            return True
        fp = Polygon(corners)
        if self._junction_union is not None and self._junction_union.intersects(fp):
            return True
        count = 0
        for i in self._lane_tree.query(fp, predicate="intersects"):
            if fp.intersection(self.lanes[int(i)]).area > STRADDLE_MIN_AREA_M2:
                count += 1
                if count >= 2:
                    return True
        return False

    def drivable_polygons(self) -> list[np.ndarray]:
        """Lane then junction polygons (K, 2) [m], for plotting."""
        return self._lanes_xy + self._junctions_xy

    def marking_polylines(self) -> list[np.ndarray]:
        """Lane-marking polylines (K, 2) [m], for plotting."""
        return list(self._markings)


@lru_cache(maxsize=16)
def road_for_scenario(scenario: str) -> RoadQuery:
    """The road of a scenario's network, built (netconvert, cached on disk) without starting a
    simulation."""
    from tps_sim.world.networks import build_network
    from tps_sim.world.road import RoadGeometry
    from tps_sim.world.scenarios import SCENARIOS
    from tps_sim.world.sumo_adapter import read_network

    if scenario not in SCENARIOS:
        raise ValueError(f"unknown scenario {scenario!r}; expected one of {sorted(SCENARIOS)}")
    net = read_network(str(build_network(SCENARIOS[scenario].network)))
    return RoadQuery.from_geometry(RoadGeometry.from_network(net))
