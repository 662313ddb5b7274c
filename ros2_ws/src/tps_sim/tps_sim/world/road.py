"""Road geometry of a network: lane and junction polygons, centrelines, lane markings, the
drivable-area test and lane lookup (map frame, metres)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import shapely
import shapely.ops
from shapely.geometry import LineString, Point, Polygon

from tps_sim.world.sumo_adapter import NetworkData

MARKING_DASH_M = 3.0
MARKING_GAP_M = 9.0
LANE_LOOKUP_TOLERANCE_M = 0.05
# Transverse markings at junction entries and crossings (painted areas) [m].
STOP_LINE_WIDTH_M = 0.4          # solid stop line (signal-controlled or stop-sign lanes)
GIVE_WAY_LINE_WIDTH_M = 0.3      # broken give-way line (lanes that must yield)
GIVE_WAY_DASH_M, GIVE_WAY_GAP_M = 0.6, 0.4
TRANSVERSE_INSET_M = 0.1         # transverse lines stop this short of the lane's borders
ZEBRA_STRIPE_M, ZEBRA_GAP_M = 0.5, 0.5
# SUMO right-of-way states of a lane's links that need a stop line / a give-way line.
STOP_LINK_STATES = frozenset("oOs")
GIVE_WAY_LINK_STATES = frozenset("m")


@dataclass(frozen=True, eq=False)
class LaneMarking:
    """A painted line: ``polyline`` (K, 2) [m], ``kind`` "solid" or "dashed"."""

    polyline: np.ndarray
    kind: str


@dataclass(frozen=True, eq=False)
class TransverseLine:
    """A line painted across a lane where it enters a junction.

    Attributes:
        lane_id: the incoming lane.
        centre: (2,) centre of the line on the lane's end [m] (the lane meets the junction there).
        direction: (2,) unit direction of travel.
        width_m: the lane's width [m].
        kind: "stop" (solid) or "give_way" (broken).
    """

    lane_id: str
    centre: np.ndarray
    direction: np.ndarray
    width_m: float
    kind: str


@dataclass(frozen=True, eq=False)
class RoadGeometry:
    """Drivable area and lanes of one network.

    Attributes:
        lane_ids: SUMO lane ids of the drivable lanes (normal and junction-internal).
        lane_centerlines: {lane id: (K, 2) polyline [m]}.
        lane_widths: {lane id: width [m]}.
        lane_polygons: {lane id: (M, 2) polygon [m]} (normal lanes only).
        junction_polygons: {junction id: (M, 2) polygon [m]}.
        markings: painted lines of the normal edges.
        sidewalk_polygons: pedestrian-only lanes (not drivable).
        transverse_lines: stop and give-way lines at junction entries.
        crossings: pedestrian crossings as ((K, 2) centreline [m], width [m]) (zebra stripes).
    """

    lane_ids: tuple
    lane_centerlines: dict
    lane_widths: dict
    lane_polygons: dict
    junction_polygons: dict
    markings: tuple
    sidewalk_polygons: tuple = field(default_factory=tuple)
    transverse_lines: tuple = field(default_factory=tuple)
    crossings: tuple = field(default_factory=tuple)

    @classmethod
    def from_network(cls, net: NetworkData) -> RoadGeometry:
        """Build from the adapter's network data."""
        centers, widths, polys, sidewalks = {}, {}, {}, []
        edges: dict = {}
        for ln in net.lanes:
            if len(ln.shape) < 2:
                continue
            if not ln.drivable:
                if not ln.internal:
                    sidewalks.append(_lane_polygon(ln.shape, ln.width_m))
                continue
            centers[ln.lane_id] = ln.shape
            widths[ln.lane_id] = ln.width_m
            if not ln.internal:
                polys[ln.lane_id] = _lane_polygon(ln.shape, ln.width_m)
                edges.setdefault(ln.edge_id, []).append(ln)
        markings = []
        for lanes in edges.values():
            lanes = sorted(lanes, key=lambda x: x.index)
            for k, ln in enumerate(lanes):
                line = LineString(ln.shape)
                right = _offset(line, -0.5 * ln.width_m)
                markings.append(LaneMarking(right, "solid" if k == 0 else "dashed"))
                if k == len(lanes) - 1:
                    markings.append(LaneMarking(_offset(line, 0.5 * ln.width_m), "solid"))
        transverse = []
        for lane_id, states in net.lane_link_states.items():
            if lane_id not in centers or lane_id.startswith(":"):
                continue
            kind = ("stop" if STOP_LINK_STATES.intersection(states) else
                    "give_way" if set(states) <= GIVE_WAY_LINK_STATES else "")
            if not kind:
                continue
            shape = centers[lane_id]
            d = shape[-1] - shape[-2]
            d = d / max(float(np.hypot(d[0], d[1])), 1e-9)
            transverse.append(TransverseLine(lane_id, shape[-1].copy(), d, widths[lane_id], kind))
        return cls(tuple(centers), centers, widths, polys, dict(net.junction_polygons),
                   tuple(markings), tuple(sidewalks), tuple(transverse), tuple(net.crossings))

    @cached_property
    def drivable_union(self):  # noqa: ANN201 - shapely geometry
        """Union of lane and junction polygons (prepared for fast queries)."""
        geoms = [Polygon(p) for p in self.lane_polygons.values()]
        geoms += [Polygon(p).buffer(0) for p in self.junction_polygons.values() if len(p) >= 3]
        # Internal lanes cover junction gaps that the junction polygon might miss.
        geoms += [LineString(c).buffer(0.5 * self.lane_widths[i], cap_style="flat")
                  for i, c in self.lane_centerlines.items() if i.startswith(":")]
        union = shapely.union_all([g for g in geoms if not g.is_empty])
        shapely.prepare(union)
        return union

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """Drivable-area test: bool (N,) for points (N, 2) [m]."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return shapely.contains_xy(self.drivable_union, xy[:, 0], xy[:, 1])

    def distance_to_drivable(self, xy: np.ndarray) -> np.ndarray:
        """Distance [m] from points (N, 2) to the drivable area (0 inside)."""
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        return shapely.distance(self.drivable_union, shapely.points(xy))

    @cached_property
    def _lane_tree(self):  # noqa: ANN201
        ids = list(self.lane_centerlines)
        geoms = [LineString(self.lane_centerlines[i]) for i in ids]
        return ids, geoms, shapely.STRtree(geoms)

    def lane_at(self, xy: tuple[float, float]) -> tuple[str, float] | None:
        """(lane id, signed lateral offset [m], left positive) of the lane whose centreline is
        nearest to ``xy`` and within half its width; None when off every lane."""
        ids, geoms, tree = self._lane_tree
        pt = Point(float(xy[0]), float(xy[1]))
        idx = tree.query(pt.buffer(6.0))
        best = None
        for k in idx:
            line = geoms[k]
            d = line.distance(pt)
            if d > 0.5 * self.lane_widths[ids[k]] + LANE_LOOKUP_TOLERANCE_M:
                continue
            if best is None or d < best[1]:
                best = (k, d)
        if best is None:
            return None
        k, d = best
        line = geoms[k]
        s = line.project(pt)
        a = np.asarray(line.interpolate(max(s - 0.5, 0.0)).coords[0])
        b = np.asarray(line.interpolate(min(s + 0.5, line.length)).coords[0])
        tangent = b - a
        rel = np.array([pt.x, pt.y]) - np.asarray(line.interpolate(s).coords[0])
        side = np.sign(tangent[0] * rel[1] - tangent[1] * rel[0]) or 1.0
        return ids[k], float(side * d)

    def marking_polylines(self, dashed_as_segments: bool = True) -> tuple:
        """All markings as polylines; dashed ones split into dashes when requested."""
        out = []
        for m in self.markings:
            if m.kind == "dashed" and dashed_as_segments:
                out.extend(_dashes(m.polyline))
            else:
                out.append(m.polyline)
        return tuple(out)

    def marking_areas(self) -> tuple:
        """Painted areas as (4, 2) polygons [m]: solid stop lines and broken give-way lines
        across the lane ends at junction entries, and the zebra stripes of pedestrian
        crossings."""
        out = []
        for line in self.transverse_lines:
            d = line.direction
            n = np.array([-d[1], d[0]])
            half = 0.5 * line.width_m - TRANSVERSE_INSET_M
            if line.kind == "stop":
                out.append(_rectangle(line.centre, d, n, -STOP_LINE_WIDTH_M, 0.0, -half, half))
                continue
            a = -half
            while a < half - 0.05:
                b = min(a + GIVE_WAY_DASH_M, half)
                out.append(_rectangle(line.centre, d, n, -GIVE_WAY_LINE_WIDTH_M, 0.0, a, b))
                a = b + GIVE_WAY_GAP_M
        for centreline, width in self.crossings:
            line = LineString(centreline)
            if line.length <= 0.0:
                continue
            s = 0.5 * ZEBRA_GAP_M
            while s + ZEBRA_STRIPE_M <= line.length:
                p0 = np.asarray(line.interpolate(s).coords[0])
                p1 = np.asarray(line.interpolate(s + ZEBRA_STRIPE_M).coords[0])
                d = (p1 - p0) / max(float(np.hypot(*(p1 - p0))), 1e-9)
                n = np.array([-d[1], d[0]])
                out.append(_rectangle(p0, d, n, 0.0, ZEBRA_STRIPE_M, -0.5 * width, 0.5 * width))
                s += ZEBRA_STRIPE_M + ZEBRA_GAP_M
        return tuple(out)

    def drivable_polygons(self) -> tuple:
        """Lane polygons then junction polygons, as (M, 2) arrays."""
        return tuple(self.lane_polygons.values()) + tuple(
            p for p in self.junction_polygons.values() if len(p) >= 3)


def _rectangle(origin: np.ndarray, d: np.ndarray, n: np.ndarray, a0: float, a1: float, b0: float,
               b1: float) -> np.ndarray:
    """(4, 2) corners of the rectangle origin + [a0, a1] d + [b0, b1] n."""
    return np.array([origin + a * d + b * n for a, b in ((a0, b0), (a1, b0), (a1, b1), (a0, b1))])


def _lane_polygon(shape: np.ndarray, width: float) -> np.ndarray:
    poly = LineString(shape).buffer(0.5 * width, cap_style="flat", join_style="mitre")
    if poly.geom_type != "Polygon":
        poly = poly.convex_hull
    return np.asarray(poly.exterior.coords, dtype=np.float64)


def _offset(line: LineString, dist: float) -> np.ndarray:
    off = line.offset_curve(dist, join_style="mitre")
    if off.geom_type != "LineString" or off.is_empty:
        return np.asarray(line.coords)
    return np.asarray(off.coords, dtype=np.float64)


def _dashes(polyline: np.ndarray) -> list:
    line = LineString(polyline)
    out = []
    s = 0.0
    while s < line.length:
        e = min(s + MARKING_DASH_M, line.length)
        seg = shapely.ops.substring(line, s, e)
        if seg.geom_type == "LineString" and seg.length > 0.1:
            out.append(np.asarray(seg.coords, dtype=np.float64))
        s += MARKING_DASH_M + MARKING_GAP_M
    return out

