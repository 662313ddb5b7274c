"""Lane-level map knowledge for the planners (core; no ROS imports).

:class:`LaneMap` is the plain form of ``tps_msgs/LaneMap`` (``tps_planner.conversions`` converts
it): lanes with centrelines, widths, speed limits, neighbours, lane-change permissions and
successors, the lanes the route drives through, crosswalk polygons and stop lines (map frame,
metres, m/s).

:class:`RouteLanes` lays that map over the route the fallback follows, in the route's Frenet
frame (``s`` = arc length along the route, ``d`` = signed lateral offset, left positive):

- every lane near the route becomes one or more **strips**: the lane's centreline offset
  ``d(s)`` sampled on the route's grid (``route_resolution_m``) where the lane runs along the
  route (heading within ``lane_heading_tolerance_rad``, ``|d| <= lane_max_offset_m``);
- each strip knows the strip it continues into (through the lane's successors) and whether the
  lane **ends** on the way (no continuation; an acceleration lane, or a route lane the route
  leaves by a lane change): :meth:`RouteLanes.lane_path` follows a strip and its continuations;
- the **speed limit** along the route (the route lanes' limits) for the speed profile;
- the **crosswalks** the route crosses (arc-length interval + polygon) and the arc lengths of
  the **junction entries** (stop lines) near the route;
- a **map-area raster** (lanes and crosswalks grown by a margin) that tells occupancy on the
  road from clutter beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree
from tps_common.geometry import wrap_angle

# tps_msgs/MapStopLine CONTROL_* (tests/common/test_msg_constants.py checks the copy).
CONTROL_NONE = 0
CONTROL_YIELD = 1
CONTROL_STOP = 2
CONTROL_TRAFFIC_LIGHT = 3

LANE_SAMPLE_M = 0.5            # lane centrelines are resampled at this spacing
STRIP_MIN_LENGTH_M = 3.0       # shorter runs along the route are not lanes of it
STRIP_MAX_JUMP_M = 3.0         # a jump in the projected arc length splits a run
CONTINUATION_MAX_GAP_M = 40.0  # a successor strip starts at most this far after the end
CONTINUATION_MAX_DD_M = 1.5    # ... and at most this far to the side
SUCCESSOR_SEARCH_DEPTH = 3     # lanes followed through (junction lanes without a strip)
CURRENT_LANE_TOLERANCE_M = 0.4 # beyond half the lane width: still "in" it (lane changes)
MASK_CELL_M = 0.5
MAX_MASK_CELLS = 100_000_000   # raster cells of a map at most (100 MB; 5 km x 5 km at MASK_CELL_M)
MAX_LANE_WIDTH_M = 50.0        # a wider lane is a malformed map


@dataclass(frozen=True, eq=False)
class MapLane:
    """One lane (``tps_msgs/MapLane``); ``centerline`` (K, 2) [m]."""

    lane_id: str
    centerline: np.ndarray
    width_m: float
    speed_limit_mps: float
    is_junction: bool = False
    is_acceleration_lane: bool = False
    left_id: str = ""
    right_id: str = ""
    can_change_left: bool = False
    can_change_right: bool = False
    successor_ids: tuple = ()


@dataclass(frozen=True, eq=False)
class Crosswalk:
    """A pedestrian crossing (``tps_msgs/MapCrosswalk``); ``polygon`` (K, 2) [m]."""

    crosswalk_id: str
    polygon: np.ndarray


@dataclass(frozen=True, eq=False)
class StopLine:
    """A lane's entry into a junction (``tps_msgs/MapStopLine``); ``points`` (2, 2) [m]."""

    lane_id: str
    points: np.ndarray
    control: int = CONTROL_NONE
    traffic_light_id: int = 0


@dataclass(frozen=True, eq=False)
class LaneMap:
    """Lane-level map knowledge (``tps_msgs/LaneMap``)."""

    lanes: tuple
    route_lane_ids: tuple = ()
    crosswalks: tuple = ()
    stop_lines: tuple = ()


@dataclass(frozen=True, eq=False)
class Strip:
    """A lane laid over the route: route-grid indices ``i0..i1`` (inclusive), lateral offsets
    ``d`` [m] there; ``next`` the strip it continues into (-1: none), ``ends`` True when the lane
    ends there without a continuation before the route's end."""

    lane: MapLane
    i0: int
    i1: int
    d: np.ndarray
    is_route: bool
    next: int = -1
    ends: bool = False

    def d_at(self, i: int) -> float:
        """Lateral offset [m] at route index ``i`` (clamped to the strip)."""
        return float(self.d[min(max(i - self.i0, 0), len(self.d) - 1)])


@dataclass(frozen=True, eq=False)
class CrosswalkOnRoute:
    """A crosswalk the route crosses: arc lengths where the route enters / leaves it [m], its
    outline as a convex quadrilateral (4, 2) [m]."""

    crosswalk_id: str
    s_in_m: float
    s_out_m: float
    quad: np.ndarray


@dataclass(frozen=True, eq=False)
class LanePath:
    """The lateral offsets [m] of a lane path on route indices ``i_from..i_from + len(d) - 1``;
    ``end_index`` is the route index where the lane ends (None: it does not end in range)."""

    i_from: int
    d: np.ndarray
    end_index: int | None
    strips: tuple


def _resample(poly: np.ndarray, spacing_m: float) -> np.ndarray:
    poly = np.asarray(poly, float).reshape(-1, 2)
    seg = np.hypot(*np.diff(poly, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(math.ceil(s[-1] / spacing_m)) + 1, 2)
    t = np.linspace(0.0, s[-1], n)
    return np.column_stack([np.interp(t, s, poly[:, 0]), np.interp(t, s, poly[:, 1])])


def convex_quad(polygon: np.ndarray) -> np.ndarray:
    """A polygon as a convex quadrilateral (4, 2): itself when it has four corners, else the
    oriented bounding rectangle of its points (principal axes)."""
    p = np.asarray(polygon, float).reshape(-1, 2)
    if len(p) == 4:
        return p.copy()
    c = p.mean(axis=0)
    _, _, vt = np.linalg.svd(p - c, full_matrices=False)
    ax = vt[0]
    n = np.array([-ax[1], ax[0]])
    u, v = (p - c) @ ax, (p - c) @ n
    return np.array([c + a * ax + b * n for a, b in ((u.min(), v.min()), (u.max(), v.min()),
                                                      (u.max(), v.max()), (u.min(), v.max()))])


def points_in_convex(xy: np.ndarray, quad: np.ndarray, margin_m: float = 0.0) -> np.ndarray:
    """(N,) bool: points (N, 2) inside a convex polygon (K, 2) grown by ``margin_m``."""
    xy = np.asarray(xy, float).reshape(-1, 2)
    q = np.asarray(quad, float)
    inside = np.ones(len(xy), bool)
    e0, e1 = q[1] - q[0], q[2] - q[1]
    orient = float(np.sign(e0[0] * e1[1] - e0[1] * e1[0])) or 1.0
    for k in range(len(q)):
        a, b = q[k], q[(k + 1) % len(q)]
        e = b - a
        n = np.array([e[1], -e[0]]) * orient / max(float(np.hypot(*e)), 1e-9)   # outward
        inside &= (xy - a) @ n <= margin_m
    return inside


def check_map_extent(lane_map: LaneMap, margin_m: float = 0.0, crosswalk_margin_m: float = 0.0) -> None:
    """Raise ValueError for a map whose raster would not fit ``MAX_MASK_CELLS`` or whose lane
    widths are not in (0, ``MAX_LANE_WIDTH_M``]: a malformed LaneMap (a centreline point at 1e30 m,
    a lane 1e30 m wide) made the fallback allocate 22 GB and die (found by tests/fuzz)."""
    for ln in lane_map.lanes:
        if not (0.0 < ln.width_m <= MAX_LANE_WIDTH_M):
            raise ValueError(f"lane {ln.lane_id!r}: width {ln.width_m} m not in (0, {MAX_LANE_WIDTH_M}]")
    pts = [np.asarray(ln.centerline, float).reshape(-1, 2) for ln in lane_map.lanes]
    pts += [np.asarray(c.polygon, float).reshape(-1, 2) for c in lane_map.crosswalks]
    if not pts or not sum(len(q) for q in pts):
        return
    allp = np.concatenate(pts)
    if not np.all(np.isfinite(allp)):
        raise ValueError("map geometry contains NaN/inf")
    pad = 2.0 * (MAX_LANE_WIDTH_M + max(margin_m, crosswalk_margin_m, 0.0) + MASK_CELL_M)
    cells = np.prod((allp.max(axis=0) - allp.min(axis=0) + pad) / MASK_CELL_M + 1.0)
    if cells > MAX_MASK_CELLS:
        span = allp.max(axis=0) - allp.min(axis=0)
        raise ValueError(f"map area {span[0]:.3g} x {span[1]:.3g} m is too large for the drivable-area "
                         f"raster ({cells:.3g} cells > {MAX_MASK_CELLS:.3g})")


class MapMask:
    """Raster of the map's area (lanes and crosswalks grown by a margin), ``MASK_CELL_M`` cells."""

    def __init__(self, lane_map: LaneMap, margin_m: float, crosswalk_margin_m: float) -> None:
        check_map_extent(lane_map, margin_m, crosswalk_margin_m)
        pts, radii = [], []
        for ln in lane_map.lanes:
            c = _resample(ln.centerline, MASK_CELL_M)
            pts.append(c)
            radii.append(np.full(len(c), 0.5 * ln.width_m + margin_m))
        quads = [convex_quad(c.polygon) for c in lane_map.crosswalks]
        for q in quads:
            pts.append(q)
            radii.append(np.full(len(q), crosswalk_margin_m))
        if not pts:
            self.grid = np.zeros((1, 1), bool)
            self.origin = np.zeros(2)
            return
        allp = np.concatenate(pts)
        rmax = float(np.concatenate(radii).max()) + MASK_CELL_M
        self.origin = allp.min(axis=0) - rmax
        size = np.ceil((allp.max(axis=0) + rmax - self.origin) / MASK_CELL_M).astype(int) + 1
        grid = np.zeros((int(size[0]), int(size[1])), bool)
        for c, r in zip(pts[:len(lane_map.lanes)], radii[:len(lane_map.lanes)], strict=True):
            rad = float(r[0])
            k = int(math.ceil(rad / MASK_CELL_M))
            ox, oy = np.meshgrid(np.arange(-k, k + 1), np.arange(-k, k + 1), indexing="ij")
            keep = np.hypot(ox, oy) * MASK_CELL_M <= rad
            ox, oy = ox[keep], oy[keep]
            cell = np.floor((c - self.origin) / MASK_CELL_M).astype(int)
            gx = np.clip(cell[:, 0:1] + ox[None, :], 0, grid.shape[0] - 1)
            gy = np.clip(cell[:, 1:2] + oy[None, :], 0, grid.shape[1] - 1)
            grid[gx.ravel(), gy.ravel()] = True
        for q in quads:
            lo = np.floor((q.min(axis=0) - crosswalk_margin_m - self.origin) / MASK_CELL_M).astype(int)
            hi = np.ceil((q.max(axis=0) + crosswalk_margin_m - self.origin) / MASK_CELL_M).astype(int)
            lo, hi = np.maximum(lo, 0), np.minimum(hi, np.array(grid.shape) - 1)
            gx, gy = np.meshgrid(np.arange(lo[0], hi[0] + 1), np.arange(lo[1], hi[1] + 1), indexing="ij")
            centres = self.origin + (np.stack([gx.ravel(), gy.ravel()], axis=1) + 0.5) * MASK_CELL_M
            inside = points_in_convex(centres, q, crosswalk_margin_m + MASK_CELL_M)
            grid[gx.ravel()[inside], gy.ravel()[inside]] = True
        self.grid = grid

    def contains(self, xy: np.ndarray) -> np.ndarray:
        """(N,) bool: points (N, >=2) [m] on the map's area."""
        xy = np.asarray(xy)
        if len(xy) == 0:
            return np.zeros(0, bool)
        cell = np.floor((xy[:, :2] - self.origin) / MASK_CELL_M).astype(np.int64)
        ok = (cell[:, 0] >= 0) & (cell[:, 1] >= 0) & (cell[:, 0] < self.grid.shape[0]) & (
            cell[:, 1] < self.grid.shape[1])
        out = np.zeros(len(xy), bool)
        out[ok] = self.grid[cell[ok, 0], cell[ok, 1]]
        return out


def attention_mask(lane_map: LaneMap, crosswalk_margin_m: float) -> MapMask:
    """The places where the rules may ask the ego to stop or yield: junction lanes (their
    entries are the stop lines), acceleration lanes (a merge) and crosswalks grown by
    ``crosswalk_margin_m`` -- the monitor's braking check treats a plan braking towards one as
    explained."""
    lanes = tuple(ln for ln in lane_map.lanes if ln.is_junction or ln.is_acceleration_lane)
    return MapMask(LaneMap(lanes, (), tuple(lane_map.crosswalks), ()), 0.0, crosswalk_margin_m)


class RouteLanes:
    """A :class:`LaneMap` laid over a route (see the module docstring).

    Args:
        route_xy, route_s, route_yaw: the route resampled on its grid (M,) [m, rad].
        lane_map: the map.
        lane_max_offset_m: lanes farther than this from the route are left out [m].
        heading_tolerance_rad: lanes turned more than this from the route are left out.
        mask_margin_m, crosswalk_margin_m: growth of lanes / crosswalks in the map-area raster.
    """

    def __init__(self, route_xy: np.ndarray, route_s: np.ndarray, route_yaw: np.ndarray,
                 lane_map: LaneMap, lane_max_offset_m: float = 8.0,
                 heading_tolerance_rad: float = 0.5, mask_margin_m: float = 1.5,
                 crosswalk_margin_m: float = 3.0) -> None:
        self.lane_map = lane_map
        self.route_xy, self.route_s, self.route_yaw = route_xy, route_s, route_yaw
        self.n = len(route_s)
        self.res = float(route_s[1] - route_s[0]) if self.n > 1 else 1.0
        self._tree = cKDTree(route_xy)
        self.lanes = {ln.lane_id: ln for ln in lane_map.lanes}
        route_ids = tuple(lane_map.route_lane_ids)
        self.route_lane_ids = route_ids
        strips: list = []
        for ln in lane_map.lanes:
            for i0, i1, d in self._project_lane(ln, lane_max_offset_m, heading_tolerance_rad):
                strips.append(Strip(ln, i0, i1, d, ln.lane_id in route_ids))
        strips.sort(key=lambda k: (k.i0, k.lane.lane_id))
        self.strips = self._link(strips)
        self.by_lane: dict = {}
        for k, st in enumerate(self.strips):
            self.by_lane.setdefault(st.lane.lane_id, []).append(k)
        self.i0 = np.array([st.i0 for st in self.strips], int)
        self.i1 = np.array([st.i1 for st in self.strips], int)
        self.half_width = np.array([0.5 * st.lane.width_m for st in self.strips])
        self.is_route = np.array([st.is_route for st in self.strips], bool)
        self.speed_limit_mps = self._route_speed_limit()
        self.crosswalks = self._crosswalks_on_route()
        self.entry_s = self._junction_entries()
        self.mask = MapMask(lane_map, mask_margin_m, crosswalk_margin_m)

    # ---------------------------------------------------------------- construction
    def _project_lane(self, ln: MapLane, max_offset: float, tol: float) -> list:
        """Runs (i0, i1, d on the grid) where lane ``ln`` runs along the route."""
        c = _resample(ln.centerline, LANE_SAMPLE_M)
        if len(c) < 2:
            return []
        heading = np.arctan2(*np.gradient(c, axis=0)[:, ::-1].T)
        _, j = self._tree.query(c)
        rel = c - self.route_xy[j]
        cy, sy = np.cos(self.route_yaw[j]), np.sin(self.route_yaw[j])
        along = rel[:, 0] * cy + rel[:, 1] * sy
        d = cy * rel[:, 1] - sy * rel[:, 0]
        s = self.route_s[j] + along
        ok = (np.abs(wrap_angle(heading - self.route_yaw[j])) <= tol) & (np.abs(d) <= max_offset) & (
            np.abs(along) <= self.res + 1e-6)
        runs, start = [], None
        for k in range(len(c) + 1):
            good = k < len(c) and ok[k] and (start is None or (0.0 < s[k] - s[k - 1] <= STRIP_MAX_JUMP_M))
            if good and start is None:
                start = k
            elif not good and start is not None:
                runs.append((start, k))
                start = k if (k < len(c) and ok[k]) else None
        out = []
        for a, b in runs:
            ss, dd = s[a:b], d[a:b]
            if ss[-1] - ss[0] < STRIP_MIN_LENGTH_M:
                continue
            i0 = int(math.ceil(ss[0] / self.res - 1e-9))
            i1 = int(math.floor(ss[-1] / self.res + 1e-9))
            i0, i1 = max(i0, 0), min(i1, self.n - 1)
            if i1 <= i0:
                continue
            out.append((i0, i1, np.interp(self.route_s[i0:i1 + 1], ss, dd)))
        return out

    def _successor_lanes(self, lane_id: str) -> list:
        """Lanes reachable from ``lane_id``'s end, through at most SUCCESSOR_SEARCH_DEPTH lanes
        (junction lanes) that have no strip."""
        has_strip = {st.lane.lane_id for st in self._strips_tmp}
        out, frontier, seen = [], [lane_id], {lane_id}
        for _ in range(SUCCESSOR_SEARCH_DEPTH):
            nxt = []
            for lid in frontier:
                ln = self.lanes.get(lid)
                for sid in (ln.successor_ids if ln is not None else ()):
                    if sid in seen:
                        continue
                    seen.add(sid)
                    (out if sid in has_strip else nxt).append(sid)
            frontier = nxt
        return out

    def _link(self, strips: list) -> list:
        self._strips_tmp = strips
        by_lane: dict = {}
        for k, st in enumerate(strips):
            by_lane.setdefault(st.lane.lane_id, []).append(k)
        gap_max = int(CONTINUATION_MAX_GAP_M / self.res)
        out = []
        for st in strips:
            best, best_key = -1, None
            cands = [m for lid in self._successor_lanes(st.lane.lane_id) for m in by_lane.get(lid, [])]
            # A lane cut into two runs (it left the route's side and came back) continues too.
            cands += [m for m in by_lane[st.lane.lane_id] if strips[m].i0 > st.i1]
            for m in cands:
                nx = strips[m]
                if not (st.i1 - 4 <= nx.i0 <= st.i1 + gap_max) or nx.i1 <= st.i1:
                    continue
                dd = abs(nx.d_at(max(nx.i0, st.i1)) - st.d[-1])
                if dd > CONTINUATION_MAX_DD_M:
                    continue
                key = (not nx.is_route, dd)
                if best_key is None or key < best_key:
                    best, best_key = m, key
            ends = best < 0 and st.i1 < self.n - 1 - int(1.0 / self.res)
            out.append(Strip(st.lane, st.i0, st.i1, st.d, st.is_route, best, ends))
        del self._strips_tmp
        return out

    def _route_speed_limit(self) -> np.ndarray:
        """(M,) speed limit along the route [m/s]: the route strip nearest the route at each
        index (NaN where no route lane is known)."""
        v = np.full(self.n, np.nan)
        best = np.full(self.n, np.inf)
        for st in self.strips:
            if not st.is_route:
                continue
            ad = np.abs(st.d)
            sl = slice(st.i0, st.i1 + 1)
            better = ad < best[sl]
            best[sl] = np.where(better, ad, best[sl])
            v[sl] = np.where(better, st.lane.speed_limit_mps, v[sl])
        known = np.flatnonzero(np.isfinite(v))
        if len(known) and len(known) < self.n:     # fill gaps from the nearest known index
            idx = np.arange(self.n)
            nearest = known[np.clip(np.searchsorted(known, idx), 0, len(known) - 1)]
            prev = known[np.clip(np.searchsorted(known, idx) - 1, 0, len(known) - 1)]
            pick = np.where(np.abs(prev - idx) <= np.abs(nearest - idx), prev, nearest)
            v = v[pick]
        return v

    def _crosswalks_on_route(self) -> tuple:
        out = []
        for cw in self.lane_map.crosswalks:
            quad = convex_quad(cw.polygon)
            lo, hi = quad.min(axis=0) - 1.0, quad.max(axis=0) + 1.0
            near = np.flatnonzero(np.all((self.route_xy >= lo) & (self.route_xy <= hi), axis=1))
            if len(near) == 0:
                continue
            inside = near[points_in_convex(self.route_xy[near], quad)]
            if len(inside) == 0:
                continue
            out.append(CrosswalkOnRoute(cw.crosswalk_id, float(self.route_s[inside.min()]),
                                        float(self.route_s[inside.max()]), quad))
        return tuple(out)

    def _junction_entries(self) -> np.ndarray:
        """Sorted arc lengths [m] where lanes near the route enter a junction (stop lines)."""
        ids = {sl.lane_id for sl in self.lane_map.stop_lines}
        s = [self.route_s[st.i1] for st in self.strips if st.lane.lane_id in ids]
        return np.array(sorted(s), float)

    # ---------------------------------------------------------------- queries
    def index(self, s_m: float) -> int:
        """Nearest route-grid index of arc length ``s_m``."""
        return int(min(max(round(s_m / self.res), 0), self.n - 1))

    def strip_at(self, i: int, d_m: float, prefer: int | None = None) -> int:
        """The strip the lateral position ``d_m`` at route index ``i`` is in (-1: none): the
        nearest centre within half its width (+ a tolerance); route strips and ``prefer`` win
        ties within 0.3 m, then the strip reaching farther."""
        cover = np.flatnonzero((self.i0 <= i) & (self.i1 >= i))
        if len(cover) == 0:
            return -1
        dd = np.array([abs(self.strips[k].d_at(i) - d_m) for k in cover])
        ok = dd <= self.half_width[cover] + CURRENT_LANE_TOLERANCE_M
        if not ok.any():
            return -1
        cover, dd = cover[ok], dd[ok]
        near = dd <= dd.min() + 0.3
        cands = cover[near]
        if prefer is not None and prefer in cands:
            return int(prefer)
        key = [(not self.is_route[k], -self.i1[k], float(dd[near][n])) for n, k in enumerate(cands)]
        return int(cands[min(range(len(cands)), key=lambda n: key[n])])

    def neighbour(self, k: int, side: str, i: int) -> int:
        """The strip of strip ``k``'s left/right neighbour lane covering route index ``i``, if the
        map allows the change (-1: none)."""
        ln = self.strips[k].lane
        lid, allowed = (ln.left_id, ln.can_change_left) if side == "left" else (ln.right_id,
                                                                               ln.can_change_right)
        if not lid or not allowed:
            return -1
        for m in self.by_lane.get(lid, []):
            if self.strips[m].i0 <= i <= self.strips[m].i1:
                return m
        return -1

    def lane_path(self, k: int, i_from: int, length: int) -> LanePath:
        """Lateral offsets of strip ``k`` and its continuations on route indices
        ``i_from .. i_from + length - 1``; across a gap between a strip and its continuation the
        offset is interpolated linearly; after a lane end it is held (``end_index`` says where)."""
        d = np.empty(length)
        pos, cur, end, used = 0, k, None, [k]
        i = i_from
        while pos < length:
            st = self.strips[cur]
            if i <= st.i1:
                a = max(i, st.i0)
                if a > i:                               # before the strip's start: hold its first
                    n = min(a - i, length - pos)
                    d[pos:pos + n] = st.d[0]
                    pos += n
                    i += n
                    continue
                n = min(st.i1 - i + 1, length - pos)
                d[pos:pos + n] = st.d[i - st.i0:i - st.i0 + n]
                pos += n
                i += n
                continue
            if st.next < 0:
                if st.ends:
                    end = st.i1
                d[pos:] = st.d[-1]
                break
            nx = self.strips[st.next]
            gap = nx.i0 - i
            if gap > 0:
                n = min(gap, length - pos)
                w = (np.arange(1, gap + 1)[:n]) / (gap + 1)
                d[pos:pos + n] = st.d[-1] + w * (nx.d[0] - st.d[-1])
                pos += n
                i += n
            cur = st.next
            used.append(cur)
            if len(used) > 64:                          # a cycle in a malformed map: hold
                d[pos:] = d[pos - 1] if pos else 0.0
                break
        return LanePath(i_from, d, end, tuple(used))

    def path_ends(self, k: int, i_from: int, length: int) -> int | None:
        """Route index where strip ``k``'s lane path ends within ``length`` indices (None: no end)."""
        return self.lane_path(k, i_from, length).end_index

    def next_entry_after(self, s_m: float) -> float:
        """Arc length [m] of the first junction entry at or after ``s_m`` (inf: none)."""
        k = int(np.searchsorted(self.entry_s, s_m))
        return float(self.entry_s[k]) if k < len(self.entry_s) else math.inf
