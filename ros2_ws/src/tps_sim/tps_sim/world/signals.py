"""Traffic lights of a network: where their heads, poles and arms stand, which SUMO signal links
each head shows, and its state at every step (map frame, metres, radians; no libsumo here: the
SUMO network arrives as :class:`~tps_sim.world.sumo_adapter.NetworkData`).

Layout (one head per signal-controlled incoming lane, ``tps_common.traffic_lights`` has the light
model):

* The **stop line** is the lane's end, where it meets the junction; its direction of travel is
  the lane's heading there.
* The **head** hangs over the lane's straight-ahead continuation on the **far side** of the
  junction, ``FAR_SIDE_OFFSET_M`` past the junction area, housing centre ``HEAD_HEIGHT_M`` above
  the ground, facing the approach. Far-side heads stay in a forward camera's view down to the
  stop line (a head at the stop line leaves the top of a 90-degree camera's image ~7 m before
  it: a car waiting at the line could never see it turn green).
* Per approach (incoming edge) one **pole** stands ``POLE_OFFSET_M`` to the right of the
  rightmost head's lane edge, with an **arm** across to the leftmost head and a short **hanger**
  above each housing. Poles stand off the carriageway; arms and heads are above
  ``ARM_HEIGHT_M`` - 0.1 m, higher than any vehicle.

State of a head: SUMO's state string has one signal character per link; the head shows the
most restrictive state of its lane's links (``tps_common.traffic_lights.most_restrictive``).
Light ids are 1..K in the order of the sorted (traffic light id, lane id) pairs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import shapely
from shapely.geometry import LineString, Polygon
from tps_common.traffic_lights import (
    HOUSING_DEPTH_M,
    HOUSING_HEIGHT_M,
    HOUSING_WIDTH_M,
    UNKNOWN,
    LightHead,
    most_restrictive,
)

from tps_sim.world.road import RoadGeometry
from tps_sim.world.sumo_adapter import NetworkData, signal_state

HEAD_HEIGHT_M = 5.5            # housing centre above the ground
FAR_SIDE_OFFSET_M = 2.0        # past the far edge of the junction area
POLE_OFFSET_M = 1.0            # to the right of the rightmost head's lane edge
POLE_SIZE_M = 0.25             # square section
ARM_HEIGHT_M = 6.5             # arm centre above the ground
ARM_SIZE_M = 0.2               # square section
ARM_OVERHANG_M = 0.4           # beyond the leftmost head
HANGER_SIZE_M = 0.06
# Search range for the junction's far edge along the lane's heading [m].
FAR_SIDE_SEARCH_M = 200.0


@dataclass(frozen=True, eq=False)
class LightLayout:
    """The traffic lights of one network.

    Attributes:
        heads: K ``LightHead`` (ids 1..K).
        tls_ids: (K,) SUMO traffic light of each head.
        link_indices: K tuples of the head's link indices in that light's state string.
        lane_ids: (K,) the incoming lane each head controls.
        centers, sizes, yaws, materials: the structure boxes (poles, arms, hangers, housings),
            as ``tps_sim.sensors.scene3d.BoxSet`` columns; ``housing_rows[k]`` is head k's.
    """

    heads: tuple
    tls_ids: tuple
    link_indices: tuple
    lane_ids: tuple
    centers: np.ndarray
    sizes: np.ndarray
    yaws: np.ndarray
    materials: np.ndarray
    housing_rows: np.ndarray

    def __len__(self) -> int:
        return len(self.heads)

    @classmethod
    def empty(cls) -> LightLayout:
        """A network without traffic lights."""
        return cls((), (), (), (), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0),
                   np.zeros(0, np.int16), np.zeros(0, np.int64))

    def states(self, tls_states: tuple) -> np.ndarray:
        """(K,) uint8 head states from SUMO's ((tls id, state string), ...) of one step;
        UNKNOWN for a head whose light is missing or whose string is too short."""
        strings = dict(tls_states)
        out = np.full(len(self.heads), UNKNOWN, np.uint8)
        for k, (tls, links) in enumerate(zip(self.tls_ids, self.link_indices, strict=True)):
            text = strings.get(tls)
            if text is None or max(links) >= len(text):
                continue
            out[k] = most_restrictive(signal_state(text[i]) for i in links)
        return out


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(float(np.hypot(v[0], v[1])), 1e-9)


def _far_side_distance(stop_xy: np.ndarray, direction: np.ndarray, junction: np.ndarray | None
                       ) -> float:
    """Distance [m] from the stop line along ``direction`` to where that ray leaves the junction
    area (0 without a junction polygon)."""
    if junction is None or len(junction) < 3:
        return 0.0
    poly = Polygon(junction).buffer(0)
    ray = LineString([stop_xy - 0.5 * direction, stop_xy + FAR_SIDE_SEARCH_M * direction])
    inter = ray.intersection(poly)
    if inter.is_empty:
        return 0.0
    pts = np.asarray(shapely.get_coordinates(inter))
    return float(max(0.0, np.max((pts - stop_xy) @ direction)))


def build_layout(net: NetworkData, road: RoadGeometry) -> LightLayout:
    """The traffic lights of a network (module docstring).

    Args:
        net: the network (its ``signal_links``, junction polygons, lanes).
        road: its geometry (lane centrelines and widths).
    """
    from tps_sim.sensors.scene3d import MAT_POLE, MAT_SIGNAL

    by_lane: dict = {}
    for link in net.signal_links:
        by_lane.setdefault((link.tls_id, link.from_lane), []).append(link.link_index)
    if not by_lane:
        return LightLayout.empty()
    edge_of = {ln.lane_id: ln.edge_id for ln in net.lanes}
    index_of = {ln.lane_id: ln.index for ln in net.lanes}
    heads, tls_ids, links, lanes = [], [], [], []
    geometry = []      # (head, lane width, edge id, lane index)
    for k, ((tls, lane), idx) in enumerate(sorted(by_lane.items())):
        shape = road.lane_centerlines[lane]
        width = float(road.lane_widths[lane])
        d = _unit(shape[-1] - shape[-2])
        stop = shape[-1].copy()
        node = net.edge_to_node.get(edge_of[lane])
        far = _far_side_distance(stop, d, net.junction_polygons.get(node))
        head_xy = stop + (far + FAR_SIDE_OFFSET_M) * d
        lane_yaw = math.atan2(d[1], d[0])
        head = LightHead(k + 1, np.array([head_xy[0], head_xy[1], HEAD_HEIGHT_M]),
                         lane_yaw + math.pi, stop, lane_yaw, width)
        heads.append(head)
        tls_ids.append(tls)
        links.append(tuple(sorted(idx)))
        lanes.append(lane)
        geometry.append((head, width, edge_of[lane], index_of[lane]))
    centers, sizes, yaws, mats = [], [], [], []

    def add(c, size, yaw, mat) -> int:
        centers.append(np.asarray(c, np.float64))
        sizes.append(np.asarray(size, np.float64))
        yaws.append(float(yaw))
        mats.append(mat)
        return len(centers) - 1

    housing_rows = []
    for head, _, _, _ in geometry:
        housing_rows.append(add(head.position, (HOUSING_DEPTH_M, HOUSING_WIDTH_M, HOUSING_HEIGHT_M),
                                head.yaw, MAT_SIGNAL))
    arm_bottom = ARM_HEIGHT_M - 0.5 * ARM_SIZE_M
    for head, _, _, _ in geometry:
        top = head.position[2] + 0.5 * HOUSING_HEIGHT_M
        if arm_bottom > top:
            add((head.position[0], head.position[1], 0.5 * (top + arm_bottom)),
                (HANGER_SIZE_M, HANGER_SIZE_M, arm_bottom - top), head.yaw, MAT_POLE)
    approaches: dict = {}
    for item in geometry:
        approaches.setdefault(item[2], []).append(item)
    for edge in sorted(approaches):
        items = sorted(approaches[edge], key=lambda it: it[3])     # lane index 0 = rightmost
        right_head, right_width = items[0][0], items[0][1]
        d = right_head.lane_direction
        right = np.array([d[1], -d[0]])
        pole_xy = right_head.position[:2] + (0.5 * right_width + POLE_OFFSET_M) * right
        add((pole_xy[0], pole_xy[1], 0.5 * (ARM_HEIGHT_M + 0.5 * ARM_SIZE_M)),
            (POLE_SIZE_M, POLE_SIZE_M, ARM_HEIGHT_M + 0.5 * ARM_SIZE_M), right_head.yaw, MAT_POLE)
        left_xy = items[-1][0].position[:2]
        span = left_xy - pole_xy
        length = float(np.hypot(*span))
        if length > 1e-6:
            u = span / length
            end = left_xy + ARM_OVERHANG_M * u
            mid = 0.5 * (pole_xy + end)
            add((mid[0], mid[1], ARM_HEIGHT_M), (length + ARM_OVERHANG_M, ARM_SIZE_M, ARM_SIZE_M),
                math.atan2(u[1], u[0]), MAT_POLE)
    return LightLayout(tuple(heads), tuple(tls_ids), tuple(links), tuple(lanes),
                       np.array(centers).reshape(-1, 3), np.array(sizes).reshape(-1, 3),
                       np.array(yaws), np.array(mats, np.int16),
                       np.array(housing_rows, np.int64))
