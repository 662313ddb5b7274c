"""Traffic lights, written once (ROS-free): the states, the light model (a housing with three
lamps), and the geometry that map knowledge gives -- the pose of a head and the stop line it
guards -- for the simulator (rendering, ground truth), the classical light reader, the fallback's
stop-line rule and the evaluation.

Conventions (docs/CONTRACTS.md "Traffic lights"):

* **States** are carla-ros-bridge's ``CarlaTrafficLightStatus`` constants (``RED`` 0, ``YELLOW`` 1,
  ``GREEN`` 2, ``OFF`` 3, ``UNKNOWN`` 4); ``tps_msgs/TrafficLightState`` uses the same values
  (tests/common/test_msg_constants.py checks both).
* A **head** is one housing with three lamps stacked vertically, red on top, yellow in the middle,
  green at the bottom, facing its approach. Its pose (``position`` = housing centre in ``map``,
  ``yaw`` = the direction the lamps face) is ``CarlaTrafficLightInfo.transform``. The head frame:
  +x = the facing direction (towards the traffic it controls), +z up.
* The **trigger volume** (``CarlaTrafficLightInfo.trigger_volume``, position relative to the
  transform, axes of the head frame) is the box of road in front of the stop line that the light
  controls: it starts at the stop line and extends ``TRIGGER_DEPTH_M`` upstream (+x), one lane
  wide. So the stop line's centre is the trigger box's face at its smaller x, and the direction of
  travel through it is the head's -x: :meth:`LightHead.from_info` recovers both.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

# carla_msgs/CarlaTrafficLightStatus (and tps_msgs/TrafficLightState) constants.
RED, YELLOW, GREEN, OFF, UNKNOWN = 0, 1, 2, 3, 4
STATE_NAMES = {RED: "red", YELLOW: "yellow", GREEN: "green", OFF: "off", UNKNOWN: "unknown"}
LIT_STATES = (RED, YELLOW, GREEN)

# --- the light model: what a head looks like ------------------------------------------------------
HOUSING_DEPTH_M = 0.35     # along the facing direction
HOUSING_WIDTH_M = 0.45
HOUSING_HEIGHT_M = 1.25
LAMP_RADIUS_M = 0.15       # 300 mm lenses
# Lamp centres above the housing centre, along the head's z [m]: red on top, green at the bottom.
LAMP_OFFSETS_M = {RED: 0.40, YELLOW: 0.0, GREEN: -0.40}
LAMP_ORDER = (RED, YELLOW, GREEN)
# The lamps sit on the housing's front face, this far in front of it (a decal, no thickness).
LAMP_PROUD_M = 0.01
# Trigger volume: from the stop line this far upstream, one lane wide, this tall from the ground.
TRIGGER_DEPTH_M = 6.0
TRIGGER_HEIGHT_M = 2.0


def state_name(state: int) -> str:
    """``red`` / ``yellow`` / ``green`` / ``off`` / ``unknown`` (``unknown`` for any other value)."""
    return STATE_NAMES.get(int(state), "unknown")


def most_restrictive(states) -> int:
    """The state a driver must obey when several signals apply (e.g. the links of one lane):
    RED before YELLOW before GREEN before OFF; UNKNOWN when ``states`` is empty."""
    states = [int(s) for s in states]
    for s in (RED, YELLOW, GREEN, OFF):
        if s in states:
            return s
    return UNKNOWN


@dataclass(frozen=True, eq=False)
class LightHead:
    """One traffic-light head and the stop line it guards (map frame, metres, radians).

    Attributes:
        id: the light's id (``CarlaTrafficLightInfo.id``).
        position: (3,) housing centre [m].
        yaw: direction the lamps face [rad] (towards the approaching traffic).
        stop_xy: (2,) centre of the stop line [m].
        lane_yaw: direction of travel through the stop line [rad].
        stop_width_m: length of the stop line across the lane [m].
    """

    id: int
    position: np.ndarray
    yaw: float
    stop_xy: np.ndarray
    lane_yaw: float
    stop_width_m: float

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", int(self.id))
        object.__setattr__(self, "position", np.asarray(self.position, np.float64).reshape(3))
        object.__setattr__(self, "stop_xy", np.asarray(self.stop_xy, np.float64).reshape(2))
        object.__setattr__(self, "yaw", float(self.yaw))
        object.__setattr__(self, "lane_yaw", float(self.lane_yaw))
        object.__setattr__(self, "stop_width_m", float(self.stop_width_m))
        if not (np.all(np.isfinite(self.position)) and np.all(np.isfinite(self.stop_xy))
                and math.isfinite(self.yaw) and math.isfinite(self.lane_yaw)
                and self.stop_width_m > 0.0):
            raise ValueError(f"LightHead {self.id}: position, stop line and yaws must be finite "
                             f"and the stop-line width > 0")

    # -- the head frame ------------------------------------------------------------------------------
    @property
    def facing(self) -> np.ndarray:
        """(3,) unit vector the lamps face (head +x) in map."""
        return np.array([math.cos(self.yaw), math.sin(self.yaw), 0.0])

    @property
    def lateral(self) -> np.ndarray:
        """(3,) head +y in map (to the left when looking along ``facing``)."""
        return np.array([-math.sin(self.yaw), math.cos(self.yaw), 0.0])

    def lamp_centres(self) -> np.ndarray:
        """(3, 3) map positions [m] of the red, yellow and green lamp centres (on the front face)."""
        front = self.position + self.facing * (0.5 * HOUSING_DEPTH_M + LAMP_PROUD_M)
        return np.stack([front + np.array([0.0, 0.0, LAMP_OFFSETS_M[s]]) for s in LAMP_ORDER])

    def lamp_polygon(self, state: int, sides: int = 12) -> np.ndarray:
        """(sides, 3) map vertices of one lamp's disc (a regular polygon in the front plane)."""
        centre = self.lamp_centres()[LAMP_ORDER.index(state)]
        a = 2.0 * np.pi * (np.arange(sides) + 0.5) / sides
        return (centre[None, :] + LAMP_RADIUS_M * (np.cos(a)[:, None] * self.lateral[None, :]
                                                   + np.sin(a)[:, None] * np.array([0.0, 0.0, 1.0])))

    @property
    def lane_direction(self) -> np.ndarray:
        """(2,) unit direction of travel through the stop line."""
        return np.array([math.cos(self.lane_yaw), math.sin(self.lane_yaw)])

    def stop_line(self) -> np.ndarray:
        """(2, 2) end points [m] of the stop line (right end first, looking along the lane)."""
        d = self.lane_direction
        left = np.array([-d[1], d[0]])
        half = 0.5 * self.stop_width_m
        return np.stack([self.stop_xy - half * left, self.stop_xy + half * left])

    # -- carla_msgs/CarlaTrafficLightInfo --------------------------------------------------------------
    def quaternion(self) -> tuple[float, float, float, float]:
        """(x, y, z, w) of the head's orientation (yaw only)."""
        return 0.0, 0.0, math.sin(0.5 * self.yaw), math.cos(0.5 * self.yaw)

    def trigger_volume(self) -> tuple[np.ndarray, np.ndarray]:
        """(centre (3,), size (3,)) of the trigger volume in the head frame [m] (module docstring)."""
        rel = np.append(self.stop_xy, 0.0) - self.position
        c, s = math.cos(self.yaw), math.sin(self.yaw)
        x = c * rel[0] + s * rel[1]          # the stop line in the head frame
        y = -s * rel[0] + c * rel[1]
        centre = np.array([x + 0.5 * TRIGGER_DEPTH_M, y, -self.position[2] + 0.5 * TRIGGER_HEIGHT_M])
        # Along the lane the box is as deep as TRIGGER_DEPTH_M; its x axis is the head's, so a
        # lane not anti-parallel to the head's facing would need a rotated box (CARLA's boxes have
        # none): the width then covers the lane's projection.
        dyaw = self.lane_yaw - (self.yaw + math.pi)
        width = self.stop_width_m / max(abs(math.cos(dyaw)), 1e-3)
        return centre, np.array([TRIGGER_DEPTH_M, width, TRIGGER_HEIGHT_M])

    @classmethod
    def from_info(cls, light_id: int, position, quaternion, trigger_centre, trigger_size
                  ) -> LightHead:
        """The head described by a ``CarlaTrafficLightInfo`` (transform = the head's pose,
        trigger volume in the head frame; module docstring). The direction of travel is taken
        as the head's -x.

        Raises:
            ValueError: non-finite values or an empty trigger volume.
        """
        qx, qy, qz, qw = (float(v) for v in quaternion)
        yaw = math.atan2(2.0 * (qw * qz + qx * qy), 1.0 - 2.0 * (qy * qy + qz * qz))
        pos = np.asarray(position, np.float64).reshape(3)
        centre = np.asarray(trigger_centre, np.float64).reshape(3)
        size = np.asarray(trigger_size, np.float64).reshape(3)
        if not (size[0] > 0.0 and size[1] > 0.0):
            raise ValueError(f"traffic light {light_id}: empty trigger volume {size.tolist()}")
        x, y = centre[0] - 0.5 * size[0], centre[1]
        c, s = math.cos(yaw), math.sin(yaw)
        stop = pos[:2] + np.array([c * x - s * y, s * x + c * y])
        return cls(light_id, pos, yaw, stop, yaw + math.pi, float(size[1]))


# --- heads on a route --------------------------------------------------------------------------------
ROUTE_MATCH_LATERAL_M = 1.0     # the route passes this close to the stop line's centre...
ROUTE_MATCH_HEADING_RAD = math.radians(45.0)   # ...in the lane's direction of travel


def project_on_polyline(polyline: np.ndarray, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray,
                                                                         np.ndarray]:
    """Nearest points of ``xy`` (N, 2) on a polyline (R, 2): arc lengths (N,) [m], distances
    (N,) [m] and the headings (N,) [rad] of the segments they fall on."""
    poly = np.asarray(polyline, np.float64).reshape(-1, 2)
    pts = np.asarray(xy, np.float64).reshape(-1, 2)
    if poly.shape[0] < 2:
        raise ValueError("a polyline needs at least 2 points")
    a, d = poly[:-1], np.diff(poly, axis=0)
    seg_len = np.hypot(d[:, 0], d[:, 1])
    s0 = np.concatenate([[0.0], np.cumsum(seg_len)[:-1]])
    rel = pts[:, None, :] - a[None, :, :]                                # (N, S, 2)
    u = np.clip(np.einsum("nsd,sd->ns", rel, d) / np.maximum(seg_len ** 2, 1e-12), 0.0, 1.0)
    proj = a[None] + u[..., None] * d[None]
    dist = np.hypot(*(pts[:, None, :] - proj).transpose(2, 0, 1))
    k = np.argmin(dist, axis=1)
    idx = np.arange(pts.shape[0])
    return (s0[k] + u[idx, k] * seg_len[k], dist[idx, k], np.arctan2(d[k, 1], d[k, 0]))


def heads_on_route(heads, route_xy: np.ndarray, lateral_m: float = ROUTE_MATCH_LATERAL_M,
                   heading_rad: float = ROUTE_MATCH_HEADING_RAD) -> list[tuple[LightHead, float]]:
    """The heads whose stop line the route drives through, with the stop line's arc length along
    the route [m], ordered by that arc length.

    A head matches when the route passes within ``lateral_m`` of its stop line's centre while
    heading in the lane's direction of travel (within ``heading_rad``).
    """
    heads = list(heads)
    route = np.asarray(route_xy, np.float64).reshape(-1, 2)
    if not heads or route.shape[0] < 2:
        return []
    s, dist, seg_yaw = project_on_polyline(route, np.stack([h.stop_xy for h in heads]))
    out = []
    for h, s_i, d_i, y_i in zip(heads, s, dist, seg_yaw, strict=True):
        dyaw = abs((y_i - h.lane_yaw + math.pi) % (2.0 * math.pi) - math.pi)
        if d_i <= lateral_m and dyaw <= heading_rad:
            out.append((h, float(s_i)))
    out.sort(key=lambda item: (item[1], item[0].id))
    return out
