"""The ego route as a centreline polyline through the network's lanes, and route progress."""

from __future__ import annotations

import numpy as np

from tps_sim.world.sumo_adapter import NetworkData

ROUTE_SPACING_M = 1.0
LANE_BLEND_START, LANE_BLEND_END = 0.25, 0.75  # lane changes happen over this part of an edge
PROGRESS_BACK_WINDOW_M = 10.0
PROGRESS_AHEAD_WINDOW_M = 60.0


def _resample(poly: np.ndarray, n: int) -> np.ndarray:
    seg = np.diff(poly, axis=0)
    s = np.concatenate([[0.0], np.cumsum(np.hypot(seg[:, 0], seg[:, 1]))])
    t = np.linspace(0.0, s[-1], n)
    return np.column_stack([np.interp(t, s, poly[:, 0]), np.interp(t, s, poly[:, 1])])


def _length(poly: np.ndarray) -> float:
    return float(np.hypot(*np.diff(poly, axis=0).T).sum())


def _route_plan(net: NetworkData, edges: tuple, depart_lane: int) -> list:
    """Per edge of the route: (edge, lane it is entered on, lane it is left from, the internal
    lanes through the next junction); the connection taken at each junction is the one nearest
    to the current lane."""
    lanes = {ln.lane_id for ln in net.lanes}
    plan = []
    lane_in = depart_lane
    for k, edge in enumerate(edges):
        vias: list = []
        if k + 1 < len(edges):
            conns = net.connections.get((edge, edges[k + 1]))
            if not conns:
                raise ValueError(f"route: no connection from edge {edge!r} to {edges[k + 1]!r}")
            conn = min(conns, key=lambda c: (abs(c[0] - lane_in), c[0]))
            lane_out = conn[0]
            via = conn[2]
            # Follow the chain of internal lanes (internal junctions split them).
            guard = 0
            while via and via in lanes and guard < 4:
                vias.append(via)
                nxt = [c for c in net.connections.get((via.rsplit("_", 1)[0], edges[k + 1]), [])]
                via = nxt[0][2] if nxt else ""
                guard += 1
            plan.append((edge, lane_in, lane_out, tuple(vias)))
            lane_in = conn[1]
        else:
            plan.append((edge, lane_in, lane_in, ()))
    return plan


def route_lane_ids(net: NetworkData, edges: tuple, depart_lane: int) -> tuple[str, ...]:
    """The lanes :func:`route_polyline` drives through, in order: on an edge left from another
    lane than it was entered on, both lanes follow each other (a lane change), then the internal
    lanes of the junction."""
    out: list = []
    for edge, lane_in, lane_out, vias in _route_plan(net, edges, depart_lane):
        out.append(f"{edge}_{lane_in}")
        if lane_out != lane_in:
            out.append(f"{edge}_{lane_out}")
        out.extend(vias)
    return tuple(out)


def route_polyline(net: NetworkData, edges: tuple, depart_lane: int) -> np.ndarray:
    """Centreline (N, 2) [m] of a route: the depart lane on the first edge, then through each
    junction along the connection nearest to the current lane (internal lane included); when
    the next connection leaves from another lane, the polyline blends laterally between the two
    lanes over the middle half of the edge (a lane change)."""
    lanes = {ln.lane_id: ln for ln in net.lanes}
    pieces = []
    for edge, lane_in, lane_out, vias in _route_plan(net, edges, depart_lane):
        a = lanes[f"{edge}_{lane_in}"].shape
        if lane_out != lane_in:
            b = lanes[f"{edge}_{lane_out}"].shape
            n = max(int(_length(a) / ROUTE_SPACING_M), 2)
            ra, rb = _resample(a, n), _resample(b, n)
            u = np.linspace(0.0, 1.0, n)
            w = np.clip((u - LANE_BLEND_START) / (LANE_BLEND_END - LANE_BLEND_START), 0.0, 1.0)
            w = w * w * (3.0 - 2.0 * w)  # smoothstep
            pieces.append(ra * (1.0 - w)[:, None] + rb * w[:, None])
        else:
            pieces.append(a)
        pieces.extend(lanes[via].shape for via in vias)
    poly = np.concatenate(pieces)
    keep = np.concatenate([[True], np.hypot(*np.diff(poly, axis=0).T) > 1e-6])
    poly = poly[keep]
    n = max(int(_length(poly) / ROUTE_SPACING_M), 2)
    return _resample(poly, n)


class RouteTracker:
    """Arc-length progress of a point along a route, searched in a window around the last
    progress so that loops and nearby parallel lanes do not make it jump."""

    def __init__(self, route: np.ndarray) -> None:
        self.route = np.asarray(route, dtype=np.float64)
        seg = np.diff(self.route, axis=0)
        self._seg = seg
        self._seg_len = np.hypot(seg[:, 0], seg[:, 1])
        self.s = np.concatenate([[0.0], np.cumsum(self._seg_len)])
        self.length_m = float(self.s[-1])
        self.progress_m = 0.0

    def project(self, xy: np.ndarray, windowed: bool = True) -> tuple[float, float]:
        """(arc length [m], distance from the route [m]) of ``xy``'s projection."""
        lo, hi = 0, len(self._seg)
        if windowed:
            lo = int(np.searchsorted(self.s, self.progress_m - PROGRESS_BACK_WINDOW_M)) - 1
            hi = int(np.searchsorted(self.s, self.progress_m + PROGRESS_AHEAD_WINDOW_M)) + 1
            lo, hi = max(lo, 0), min(hi, len(self._seg))
        p0 = self.route[lo:hi]
        d = self._seg[lo:hi]
        ln2 = np.maximum(self._seg_len[lo:hi] ** 2, 1e-12)
        t = np.clip(((xy[0] - p0[:, 0]) * d[:, 0] + (xy[1] - p0[:, 1]) * d[:, 1]) / ln2, 0, 1)
        px = p0[:, 0] + t * d[:, 0]
        py = p0[:, 1] + t * d[:, 1]
        dist = np.hypot(px - xy[0], py - xy[1])
        k = int(np.argmin(dist))
        return float(self.s[lo + k] + t[k] * self._seg_len[lo + k]), float(dist[k])

    def update(self, xy: np.ndarray) -> float:
        """Project ``xy`` (windowed), store and return the progress [m]."""
        self.progress_m, _ = self.project(np.asarray(xy, dtype=np.float64))
        return self.progress_m
