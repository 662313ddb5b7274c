"""Map knowledge of an episode: the lane-level map of the route's surroundings that a vehicle's
map would hold (no traffic, no signal states), published by the bridge as ``tps_msgs/LaneMap``.

Built from the SUMO network (:class:`~tps_sim.world.sumo_adapter.NetworkData`, map frame) and the
ego's route; plain data, no ROS (``tps_sim.conversions.lane_map_msg`` makes the message):

- **lanes**: every drivable lane (junction lanes included) with a centreline point within
  ``MAP_RADIUS_M`` of the route: centreline, width, speed limit, same-direction neighbours on
  the edge and whether a change into them is allowed, successors (through the junction's
  internal lanes), acceleration-lane flag;
- **route lanes**: the lanes the route drives through, in order (``route.route_lane_ids``);
- **crosswalks**: the pedestrian crossings near the route as polygons;
- **stop lines**: the end of every incoming lane of the map where it enters a junction, with
  what controls the entry (SUMO's right-of-way state of the lane's links: a traffic light, a
  stop, give way, or none) and the id of its traffic-light head (``tps_sim.world.signals``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely

from tps_sim.world.sumo_adapter import NetworkData

MAP_RADIUS_M = 60.0          # lanes and crosswalks within this distance of the route
SAMPLE_SPACING_M = 2.0       # spacing of the points that test a lane's distance to the route
# Stop-line controls (= tps_msgs/MapStopLine CONTROL_*; tests/common/test_msg_constants.py).
CONTROL_NONE = 0
CONTROL_YIELD = 1
CONTROL_STOP = 2
CONTROL_TRAFFIC_LIGHT = 3
STOP_LINK_STATES = frozenset("s=")       # stop sign / all-way stop
YIELD_LINK_STATES = frozenset("mw")      # minor link / zipper merge


@dataclass(frozen=True, eq=False)
class MapLaneData:
    """One lane (see the module docstring); ``centerline`` (K, 2) [m], speeds [m/s]."""

    lane_id: str
    centerline: np.ndarray
    width_m: float
    speed_limit_mps: float
    is_junction: bool
    is_acceleration_lane: bool
    left_id: str
    right_id: str
    can_change_left: bool
    can_change_right: bool
    successor_ids: tuple


@dataclass(frozen=True, eq=False)
class CrosswalkData:
    """A pedestrian crossing: ``polygon`` (K, 2) outline [m]."""

    crosswalk_id: str
    polygon: np.ndarray


@dataclass(frozen=True, eq=False)
class StopLineData:
    """A lane's entry into a junction: ``points`` (2, 2) across its end, right to left [m]."""

    lane_id: str
    points: np.ndarray
    control: int
    traffic_light_id: int = 0


@dataclass(frozen=True, eq=False)
class LaneMapData:
    """The lane map of one episode."""

    lanes: tuple
    route_lane_ids: tuple
    crosswalks: tuple
    stop_lines: tuple

    def lane(self, lane_id: str) -> MapLaneData:
        """The lane with id ``lane_id`` (KeyError if absent)."""
        for ln in self.lanes:
            if ln.lane_id == lane_id:
                return ln
        raise KeyError(lane_id)


def _resample(poly: np.ndarray, spacing_m: float) -> np.ndarray:
    seg = np.hypot(*np.diff(poly, axis=0).T)
    s = np.concatenate([[0.0], np.cumsum(seg)])
    n = max(int(np.ceil(s[-1] / spacing_m)) + 1, 2)
    t = np.linspace(0.0, s[-1], n)
    return np.column_stack([np.interp(t, s, poly[:, 0]), np.interp(t, s, poly[:, 1])])


def _crosswalk_polygon(centreline: np.ndarray, width_m: float) -> np.ndarray:
    """The rectangle(s) of a crossing's straight centreline, as one outline (K, 2)."""
    a, b = np.asarray(centreline[0], float), np.asarray(centreline[-1], float)
    d = b - a
    d = d / max(float(np.hypot(d[0], d[1])), 1e-9)
    n = np.array([-d[1], d[0]]) * (0.5 * width_m)
    return np.array([a - n, b - n, b + n, a + n])


def _control(states: tuple, signalised: bool) -> int:
    if signalised:
        return CONTROL_TRAFFIC_LIGHT
    if STOP_LINK_STATES.intersection(states):
        return CONTROL_STOP
    if YIELD_LINK_STATES.intersection(states):
        return CONTROL_YIELD
    return CONTROL_NONE


def build_lane_map(net: NetworkData, route_xy: np.ndarray, route_lane_ids: tuple,
                   light_ids: dict | None = None, radius_m: float = MAP_RADIUS_M) -> LaneMapData:
    """The lane map of ``route_xy`` (N, 2) [m] on ``net`` (see the module docstring).

    Args:
        route_lane_ids: the lanes the route drives through, in order.
        light_ids: {incoming lane id: traffic-light head id} (``tps_sim.world.signals``).
    """
    light_ids = light_ids or {}
    route_line = shapely.LineString(np.asarray(route_xy, float).reshape(-1, 2))

    def distance(points: np.ndarray) -> float:
        return float(np.min(shapely.distance(route_line, shapely.points(points))))

    by_id = {ln.lane_id: ln for ln in net.lanes if ln.drivable and len(ln.shape) >= 2}
    near = set()
    for lane_id, ln in by_id.items():
        if distance(_resample(ln.shape, SAMPLE_SPACING_M)) <= radius_m:
            near.add(lane_id)
    near |= {lid for lid in route_lane_ids if lid in by_id}
    # Successors through the connections (a normal lane -> its internal lane -> the next lane).
    successors: dict = {}
    for (from_edge, to_edge), conns in net.connections.items():
        for from_index, to_index, via in conns:
            src, dst = f"{from_edge}_{from_index}", f"{to_edge}_{to_index}"
            if via:
                successors.setdefault(src, []).append(via)
                successors.setdefault(via, []).append(dst)
            else:
                successors.setdefault(src, []).append(dst)
    edge_lanes: dict = {}
    for ln in by_id.values():
        edge_lanes.setdefault(ln.edge_id, {})[ln.index] = ln
    lanes = []
    for lane_id in sorted(near):
        ln = by_id[lane_id]
        on_edge = edge_lanes[ln.edge_id]
        left = on_edge.get(ln.index + 1)
        right = on_edge.get(ln.index - 1)
        left_id = left.lane_id if left is not None and left.lane_id in near else ""
        right_id = right.lane_id if right is not None and right.lane_id in near else ""
        succ = tuple(dict.fromkeys(s for s in successors.get(lane_id, ()) if s in near))
        lanes.append(MapLaneData(
            lane_id=lane_id, centerline=np.asarray(ln.shape, float).copy(), width_m=float(ln.width_m),
            speed_limit_mps=float(ln.speed_mps), is_junction=bool(ln.internal),
            is_acceleration_lane=bool(ln.acceleration), left_id=left_id, right_id=right_id,
            can_change_left=bool(left_id) and bool(ln.change_left) and not ln.internal,
            can_change_right=bool(right_id) and bool(ln.change_right) and not ln.internal,
            successor_ids=succ))
    crosswalks = []
    for k, (centreline, width) in enumerate(net.crossings):
        poly = _crosswalk_polygon(np.asarray(centreline, float), float(width))
        if distance(poly) <= radius_m:
            crosswalks.append(CrosswalkData(f"crosswalk_{k}", poly))
    signalised = {link.from_lane for link in net.signal_links}
    stop_lines = []
    for lane_id, states in sorted(net.lane_link_states.items()):
        ln = by_id.get(lane_id)
        if ln is None or ln.internal or lane_id not in near:
            continue
        end, before = np.asarray(ln.shape[-1], float), np.asarray(ln.shape[-2], float)
        d = end - before
        d = d / max(float(np.hypot(d[0], d[1])), 1e-9)
        left_normal = np.array([-d[1], d[0]]) * (0.5 * ln.width_m)
        stop_lines.append(StopLineData(lane_id, np.array([end - left_normal, end + left_normal]),
                                       _control(tuple(states), lane_id in signalised),
                                       int(light_ids.get(lane_id, 0))))
    return LaneMapData(tuple(lanes), tuple(route_lane_ids), tuple(crosswalks), tuple(stop_lines))


def lane_map_of_world(world) -> LaneMapData:  # noqa: ANN001 - tps_sim.world.SimWorld
    """The lane map of a :class:`~tps_sim.world.SimWorld`'s scenario and route."""
    from tps_sim.world.route import route_lane_ids

    net, sc = world.network, world.scenario
    layout = world.light_layout
    light_ids = {lane: int(head.id) for lane, head in zip(layout.lane_ids, layout.heads, strict=True)}
    return build_lane_map(net, world.route, route_lane_ids(net, sc.ego_edges, sc.ego_depart_lane),
                          light_ids)
