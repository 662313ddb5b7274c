"""The one place that talks to SUMO (libsumo, sumolib, the netconvert binary).

Every SUMO convention is converted here, at the boundary, and nothing else in the project
imports libsumo/traci/sumolib:

- A SUMO vehicle's position is its **front-bumper centre**; the project uses the box centre.
- SUMO angles are **degrees clockwise from north**; the project uses REP-103 yaw (radians,
  counter-clockwise from +x = east).
- netconvert shifts network coordinates by ``netOffset``: ``sumo_xy = map_xy + offset``.

- During a lane change SUMO turns a vehicle by the ratio of lateral to forward motion, and its
  continuous lane-change model keeps moving sideways at standstill, so a stopped vehicle's
  heading can drift 40 deg off its lane (and keep it after the change ends) and its box swing
  into the next lane. For vehicles changing lanes or slower than 3 m/s the heading we report
  deviates from the lane's (at the front bumper) by at most 0.3 rad (body vs. tangent on a
  tight curve) + atan(|lateral speed| / max(speed, 3 m/s)); SUMO's own angle is kept whenever
  it is within that bound (all ordinary driving).

libsumo holds ONE global simulation per process, so :class:`SumoSim` refuses to start a second
one while another is running (``close()`` first).
"""

from __future__ import annotations

import math
import os
import subprocess
from dataclasses import dataclass, field

import libsumo
import numpy as np
import sumo as _sumo_pkg
import sumolib
from tps_common.geometry import wrap_angle
from tps_common.traffic_lights import GREEN, OFF, RED, YELLOW

from tps_sim.world.config import (
    CLASS_BUS,
    CLASS_CAR,
    CLASS_CYCLIST,
    CLASS_PEDESTRIAN,
    CLASS_TRUCK,
    CLASS_UNKNOWN,
)

SUMO_BIN_DIR = os.path.join(_sumo_pkg.SUMO_HOME, "bin")
NETCONVERT_TIMEOUT_S = 120.0
LANE_CHANGE_MIN_SPEED_MPS = 3.0  # see the module docstring (heading during lane changes)
# A body on a curve points off the lane tangent at its front by up to ~length / (2 radius):
# 0.3 rad covers tight junction turns (radius ~8 m).
BODY_VS_LANE_YAW_RAD = 0.3

# SUMO vehicle classes -> tps_msgs/DetectedAgent class ids.
VCLASS_TO_CLASS_ID = {
    "passenger": CLASS_CAR,
    "private": CLASS_CAR,
    "taxi": CLASS_CAR,
    "evehicle": CLASS_CAR,
    "emergency": CLASS_CAR,
    "authority": CLASS_CAR,
    "delivery": CLASS_TRUCK,
    "truck": CLASS_TRUCK,
    "trailer": CLASS_TRUCK,
    "bus": CLASS_BUS,
    "coach": CLASS_BUS,
    "motorcycle": CLASS_CYCLIST,
    "moped": CLASS_CYCLIST,
    "bicycle": CLASS_CYCLIST,
    "scooter": CLASS_CYCLIST,
    "pedestrian": CLASS_PEDESTRIAN,
}

SumoError = libsumo.TraCIException


# ---------------------------------------------------------------- conventions (pure functions)

def sumo_angle_to_yaw(angle_deg: np.ndarray | float) -> np.ndarray | float:
    """SUMO heading (degrees clockwise from north) -> REP-103 yaw [rad] in (-pi, pi]."""
    yaw = np.radians(90.0 - np.asarray(angle_deg, dtype=np.float64))
    out = wrap_angle(yaw, include_pi=True)
    return float(out) if np.ndim(out) == 0 else out


def yaw_to_sumo_angle(yaw_rad: np.ndarray | float) -> np.ndarray | float:
    """REP-103 yaw [rad] -> SUMO heading (degrees clockwise from north) in [0, 360)."""
    out = (90.0 - np.degrees(np.asarray(yaw_rad, dtype=np.float64))) % 360.0
    return float(out) if np.ndim(out) == 0 else out


def front_to_center(front_xy: np.ndarray, yaw_rad: np.ndarray, length_m: np.ndarray) -> np.ndarray:
    """Box centres (N, 2) from front-bumper centres (N, 2), yaw [rad] and length [m]."""
    front_xy = np.asarray(front_xy, dtype=np.float64).reshape(-1, 2)
    half = 0.5 * np.asarray(length_m, dtype=np.float64)
    yaw = np.asarray(yaw_rad, dtype=np.float64)
    return front_xy - np.stack([half * np.cos(yaw), half * np.sin(yaw)], axis=-1)


def center_to_front(center_xy: np.ndarray, yaw_rad: np.ndarray, length_m: np.ndarray) -> np.ndarray:
    """Front-bumper centres (N, 2) from box centres (N, 2), yaw [rad] and length [m]."""
    center_xy = np.asarray(center_xy, dtype=np.float64).reshape(-1, 2)
    half = 0.5 * np.asarray(length_m, dtype=np.float64)
    yaw = np.asarray(yaw_rad, dtype=np.float64)
    return center_xy + np.stack([half * np.cos(yaw), half * np.sin(yaw)], axis=-1)


def class_id_of_vclass(vclass: str) -> int:
    """tps_msgs DetectedAgent class id of a SUMO vehicle class (CLASS_UNKNOWN if unmapped)."""
    return VCLASS_TO_CLASS_ID.get(vclass, CLASS_UNKNOWN)


# SUMO signal characters (one per link of a traffic light's state string) -> the project's light
# states (tps_common.traffic_lights, = carla_msgs/CarlaTrafficLightStatus): red, red+yellow
# ('u', vehicles still wait) and stop ('s') are red; 'o'/'O' (blinking / off) are off.
SUMO_SIGNAL_STATES = {"r": RED, "u": RED, "s": RED, "y": YELLOW, "Y": YELLOW, "G": GREEN,
                      "g": GREEN, "o": OFF, "O": OFF}


def signal_state(char: str) -> int:
    """The light state of one SUMO signal character (ValueError for an unknown one)."""
    try:
        return SUMO_SIGNAL_STATES[char]
    except KeyError:
        raise ValueError(f"unknown SUMO signal state {char!r}; known: "
                         f"{''.join(sorted(SUMO_SIGNAL_STATES))}") from None


# ---------------------------------------------------------------- network building / reading

def run_netconvert(args: list[str], cwd: str) -> None:
    """Run SUMO's netconvert with ``args`` in ``cwd``; RuntimeError with its output on failure."""
    exe = os.path.join(SUMO_BIN_DIR, "netconvert")
    proc = subprocess.run([exe, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=NETCONVERT_TIMEOUT_S, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"netconvert failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")


@dataclass(frozen=True)
class LaneInfo:
    """One SUMO lane in the map frame.

    Attributes:
        lane_id: SUMO lane id ("edge_index", internal lanes start with ':').
        edge_id: SUMO edge id.
        index: lane index on its edge (0 = rightmost).
        shape: (K, 2) centreline polyline [m, map frame].
        width_m: lane width [m].
        internal: True for junction-internal lanes.
        drivable: True when passenger cars may use it (not a sidewalk / crossing).
        num_lanes_on_edge: lanes on the lane's edge.
        speed_mps: the lane's speed limit [m/s].
        acceleration: True for an acceleration lane (it ends by merging into its left
            neighbour).
        change_left, change_right: passenger cars may change from this lane to its left /
            right neighbour (SUMO's ``changeLeft`` / ``changeRight`` lane attributes; absent =
            allowed).
    """

    lane_id: str
    edge_id: str
    index: int
    shape: np.ndarray
    width_m: float
    internal: bool
    drivable: bool
    num_lanes_on_edge: int
    speed_mps: float = 0.0
    acceleration: bool = False
    change_left: bool = True
    change_right: bool = True


@dataclass(frozen=True)
class SignalLink:
    """One traffic-light-controlled connection: character ``link_index`` of the state string of
    traffic light ``tls_id`` governs driving from lane ``from_lane`` into ``to_lane``."""

    tls_id: str
    link_index: int
    from_lane: str
    to_lane: str


@dataclass(frozen=True)
class NetworkData:
    """A SUMO network read with sumolib and converted to the map frame (plain data).

    Attributes:
        offset: (2,) netOffset; sumo_xy = map_xy + offset.
        lanes: every lane (normal and internal).
        junction_polygons: {junction id: (K, 2) polygon [m]} for non-dead-end junctions.
        connections: {(from_edge, to_edge): [(from_lane_index, to_lane_index, via_lane_id)]}.
        edge_length_m: {edge id: length [m]} of normal edges.
        signal_links: every traffic-light-controlled connection (:class:`SignalLink`).
        lane_link_states: {normal lane id: SUMO right-of-way states of its outgoing connections}
            ('M' major, 'm' minor (give way), '=' equal, 's' stop, 'o'/'O' signal-controlled...).
        crossings: pedestrian crossings as ((K, 2) centreline [m], width [m]).
        edge_to_node: {normal edge id: id of the junction it ends at}.
    """

    offset: np.ndarray
    lanes: tuple
    junction_polygons: dict
    connections: dict
    edge_length_m: dict
    signal_links: tuple = ()
    lane_link_states: dict = field(default_factory=dict)
    crossings: tuple = ()
    edge_to_node: dict = field(default_factory=dict)

    def lane(self, lane_id: str) -> LaneInfo:
        """The lane with SUMO id ``lane_id`` (KeyError if absent)."""
        for ln in self.lanes:
            if ln.lane_id == lane_id:
                return ln
        raise KeyError(lane_id)


def _lane_change_rules(net_path: str) -> dict:
    """{lane id: (passenger cars may change left, may change right)} for the lanes whose
    ``changeLeft`` / ``changeRight`` attributes restrict changing (sumolib does not read them).
    Each attribute lists the vehicle classes that may change; absent means every class."""
    import xml.etree.ElementTree as ET

    def allows(classes: str | None) -> bool:
        if classes is None:
            return True
        names = classes.split()
        return "all" in names or "passenger" in names

    rules = {}
    for _, el in ET.iterparse(net_path, events=("end",)):
        if el.tag == "lane" and ("changeLeft" in el.attrib or "changeRight" in el.attrib):
            rules[el.attrib["id"]] = (allows(el.attrib.get("changeLeft")),
                                      allows(el.attrib.get("changeRight")))
        if el.tag in ("edge", "junction"):
            el.clear()
    return rules


def read_network(net_path: str) -> NetworkData:
    """Read a .net.xml with sumolib (internal lanes included) into map-frame plain data."""
    net = sumolib.net.readNet(net_path, withInternal=True, withPedestrianConnections=True)
    offset = np.asarray(net.getLocationOffset(), dtype=np.float64)
    change_rules = _lane_change_rules(net_path)
    lanes = []
    crossings = []
    for edge in net.getEdges(withInternal=True):
        internal = edge.getFunction() == "internal"
        if edge.getFunction() == "crossing":
            for ln in edge.getLanes():
                crossings.append((np.asarray(ln.getShape(), dtype=np.float64)[:, :2] - offset,
                                  float(ln.getWidth())))
            continue
        if edge.getFunction() == "walkingarea":
            continue
        for ln in edge.getLanes():
            shape = np.asarray(ln.getShape(), dtype=np.float64)[:, :2] - offset
            change_left, change_right = change_rules.get(ln.getID(), (True, True))
            lanes.append(LaneInfo(
                lane_id=ln.getID(), edge_id=edge.getID(), index=ln.getIndex(), shape=shape,
                width_m=float(ln.getWidth()), internal=internal,
                drivable=bool(ln.allows("passenger")), num_lanes_on_edge=edge.getLaneNumber(),
                speed_mps=float(ln.getSpeed()), acceleration=bool(ln.isAccelerationLane()),
                change_left=change_left, change_right=change_right))
    junctions = {}
    for node in net.getNodes():
        if node.getType() in ("dead_end",):
            continue
        shape = node.getShape()
        if shape and len(shape) >= 3:
            junctions[node.getID()] = np.asarray(shape, dtype=np.float64)[:, :2] - offset
    connections: dict = {}
    edge_length = {}
    signal_links = []
    link_states: dict = {}
    edge_to_node = {}
    for edge in net.getEdges(withInternal=False):
        edge_length[edge.getID()] = float(edge.getLength())
        edge_to_node[edge.getID()] = edge.getToNode().getID()
        for to_edge, conns in edge.getOutgoing().items():
            key = (edge.getID(), to_edge.getID())
            connections[key] = [(c.getFromLane().getIndex(), c.getToLane().getIndex(),
                                 c.getViaLaneID() or "") for c in conns]
            for c in conns:
                from_lane = c.getFromLane().getID()
                link_states.setdefault(from_lane, []).append(str(c.getState()))
                if c.getTLSID() and c.getTLLinkIndex() >= 0:
                    signal_links.append(SignalLink(str(c.getTLSID()), int(c.getTLLinkIndex()),
                                                   from_lane, c.getToLane().getID()))
    signal_links.sort(key=lambda k: (k.tls_id, k.link_index))
    return NetworkData(offset=offset, lanes=tuple(lanes), junction_polygons=junctions,
                       connections=connections, edge_length_m=edge_length,
                       signal_links=tuple(signal_links),
                       lane_link_states={k: tuple(v) for k, v in sorted(link_states.items())},
                       crossings=tuple(crossings), edge_to_node=edge_to_node)


# ---------------------------------------------------------------- the running simulation

@dataclass(frozen=True)
class RawAgents:
    """Poses of SUMO objects, already in project conventions (map frame, box centre, yaw).

    Attributes:
        sim_ids: SUMO ids.
        class_ids: (N,) DetectedAgent class ids.
        centers: (N, 2) box centres [m].
        yaws: (N,) REP-103 yaw [rad].
        sizes: (N, 3) length, width, height [m].
        speeds: (N,) speed along heading [m/s] (negative when reversing).
        lateral_speeds: (N,) lateral speed [m/s] (left positive; lane changes).
        accels: (N,) longitudinal acceleration [m/s^2].
    """

    sim_ids: tuple
    class_ids: np.ndarray
    centers: np.ndarray
    yaws: np.ndarray
    sizes: np.ndarray
    speeds: np.ndarray
    lateral_speeds: np.ndarray
    accels: np.ndarray


_ACTIVE: list = []  # the SumoSim currently holding libsumo's global simulation (0 or 1 items)


class SumoSim:
    """A running libsumo simulation, in project conventions (map frame, box centres, yaw)."""

    def __init__(self, offset: np.ndarray) -> None:
        self._offset = np.asarray(offset, dtype=np.float64)
        self._running = False
        self._static_cache: dict[str, tuple[int, float, float, float]] = {}

    # -- lifecycle
    def start(self, net_file: str, route_files: list[str], additional_files: list[str],
              seed: int, step_length_s: float, extra_args: tuple = ()) -> None:
        """Start SUMO (one per process). Raises RuntimeError if another is running."""
        if _ACTIVE:
            raise RuntimeError("a libsumo simulation is already running in this process; "
                               "close() it first (libsumo holds one global simulation)")
        args = [os.path.join(SUMO_BIN_DIR, "sumo"), "-n", net_file,
                "--seed", str(int(seed)), "--step-length", repr(float(step_length_s)),
                "--time-to-teleport", "-1", "--collision.action", "warn",
                "--lanechange.duration", "3", "--no-step-log", "true", "--no-warnings", os.environ.get("TPS_SUMO_QUIET", "true"),
                "--duration-log.disable", "true", "--collision.check-junctions", "true",
                "--default.action-step-length", repr(float(step_length_s))]
        if route_files:
            args += ["-r", ",".join(route_files)]
        if additional_files:
            args += ["-a", ",".join(additional_files)]
        args += list(extra_args)
        libsumo.start(args)
        _ACTIVE.append(self)
        self._running = True
        self._static_cache.clear()

    def close(self) -> None:
        """Close the simulation (idempotent)."""
        if self._running:
            try:
                libsumo.close()
            finally:
                self._running = False
                if self in _ACTIVE:
                    _ACTIVE.remove(self)

    @property
    def running(self) -> bool:
        """True between start() and close()."""
        return self._running

    def step(self) -> None:
        """Advance one step."""
        libsumo.simulationStep()

    def time_s(self) -> float:
        """SUMO's simulation time [s]."""
        return float(libsumo.simulation.getTime())

    # -- coordinate helpers
    def to_sumo(self, xy: np.ndarray) -> np.ndarray:
        """Map-frame xy -> SUMO network xy."""
        return np.asarray(xy, dtype=np.float64) + self._offset

    def to_map(self, xy: np.ndarray) -> np.ndarray:
        """SUMO network xy -> map-frame xy."""
        return np.asarray(xy, dtype=np.float64) - self._offset

    # -- reading
    def vehicle_ids(self) -> tuple:
        """Ids of vehicles currently in the network."""
        return tuple(libsumo.vehicle.getIDList())

    def has_vehicle(self, veh_id: str) -> bool:
        """True if ``veh_id`` is currently driving in the network."""
        return veh_id in libsumo.vehicle.getIDList()

    def read_vehicles(self, ids: tuple | None = None) -> RawAgents:
        """Pose, size, speed of ``ids`` (default: all vehicles) in project conventions."""
        ids = self.vehicle_ids() if ids is None else tuple(ids)
        v = libsumo.vehicle
        n = len(ids)
        front = np.empty((n, 2))
        angle = np.empty(n)
        speed = np.empty(n)
        lat = np.empty(n)
        acc = np.empty(n)
        cls = np.empty(n, np.int64)
        size = np.empty((n, 3))
        for i, vid in enumerate(ids):
            front[i] = v.getPosition(vid)
            angle[i] = v.getAngle(vid)
            speed[i] = v.getSpeed(vid)
            lat[i] = v.getLateralSpeed(vid)
            acc[i] = v.getAcceleration(vid)
            st = self._static_cache.get(vid)
            if st is None:
                st = (class_id_of_vclass(v.getVehicleClass(vid)), v.getLength(vid),
                      v.getWidth(vid), v.getHeight(vid))
                self._static_cache[vid] = st
            cls[i] = st[0]
            size[i] = st[1:]
        yaw = np.asarray(sumo_angle_to_yaw(angle), dtype=np.float64).reshape(-1) if n \
            else np.zeros(0)
        # Changing lanes, or slow (SUMO keeps a stale lane-change angle while standing).
        for i in np.flatnonzero((np.abs(lat) > 1e-6) | (np.abs(speed) < LANE_CHANGE_MIN_SPEED_MPS)):
            lane_id = v.getLaneID(ids[i])
            if not lane_id:
                # Placed off every lane (moveToXY free placement: the external ego off the
                # road network): there is no lane angle; its body angle is the one it was given.
                continue
            lane_yaw = sumo_angle_to_yaw(libsumo.lane.getAngle(lane_id, v.getLanePosition(ids[i])))
            limit = BODY_VS_LANE_YAW_RAD + math.atan2(
                abs(lat[i]), max(abs(speed[i]), LANE_CHANGE_MIN_SPEED_MPS))
            dev = min(max(wrap_angle(yaw[i] - lane_yaw, include_pi=True), -limit), limit)
            yaw[i] = wrap_angle(lane_yaw + dev, include_pi=True)
        centers = front_to_center(self.to_map(front), yaw, size[:, 0]) if n else np.zeros((0, 2))
        return RawAgents(ids, cls, centers, yaw, size, speed, lat, acc)

    def read_persons(self) -> RawAgents:
        """Pedestrians (SUMO persons) in project conventions."""
        p = libsumo.person
        ids = tuple(p.getIDList())
        n = len(ids)
        front = np.empty((n, 2))
        angle = np.empty(n)
        speed = np.empty(n)
        size = np.empty((n, 3))
        for i, pid in enumerate(ids):
            front[i] = p.getPosition(pid)
            angle[i] = p.getAngle(pid)
            speed[i] = p.getSpeed(pid)
            key = "person:" + pid
            st = self._static_cache.get(key)
            if st is None:
                st = (CLASS_PEDESTRIAN, p.getLength(pid), p.getWidth(pid), p.getHeight(pid))
                self._static_cache[key] = st
            size[i] = st[1:]
        yaw = np.asarray(sumo_angle_to_yaw(angle)).reshape(-1) if n else np.zeros(0)
        centers = front_to_center(self.to_map(front), yaw, size[:, 0]) if n else np.zeros((0, 2))
        return RawAgents(ids, np.full(n, CLASS_PEDESTRIAN, np.int64), centers, yaw, size, speed,
                         np.zeros(n), np.zeros(n))

    def lane_position(self, veh_id: str) -> tuple[str, int, float]:
        """(edge id, lane index, position along the lane [m]) of a vehicle."""
        v = libsumo.vehicle
        return v.getRoadID(veh_id), int(v.getLaneIndex(veh_id)), float(v.getLanePosition(veh_id))

    def leader(self, veh_id: str, dist_m: float = 100.0) -> tuple[str, float] | None:
        """(leader id, gap [m]) or None."""
        res = libsumo.vehicle.getLeader(veh_id, dist_m)
        if not res or not res[0]:
            return None
        return res[0], float(res[1])

    def traffic_light_states(self) -> tuple:
        """((tls id, state string), ...) for every traffic light."""
        t = libsumo.trafficlight
        return tuple((tid, t.getRedYellowGreenState(tid)) for tid in t.getIDList())

    def traffic_light_phases(self, tls_id: str) -> tuple[float, ...]:
        """Durations [s] of the phases of the running program of traffic light ``tls_id``."""
        t = libsumo.trafficlight
        program = t.getProgram(tls_id)
        for logic in t.getAllProgramLogics(tls_id):
            if logic.programID == program:
                return tuple(float(ph.duration) for ph in logic.phases)
        raise SumoError(f"traffic light {tls_id!r}: running program {program!r} not found")

    def set_traffic_light_phase(self, tls_id: str, phase: int, remaining_s: float) -> None:
        """Switch traffic light ``tls_id`` to ``phase`` (index in its program) with
        ``remaining_s`` seconds left in it."""
        libsumo.trafficlight.setPhase(tls_id, int(phase))
        libsumo.trafficlight.setPhaseDuration(tls_id, float(remaining_s))

    # -- writing
    def add_route(self, route_id: str, edges: list[str]) -> None:
        """Define a route (list of edge ids)."""
        libsumo.route.add(route_id, list(edges))

    def add_vehicle(self, veh_id: str, route_id: str, type_id: str, depart_lane: str,
                    depart_pos: str, depart_speed: str) -> None:
        """Queue a vehicle for insertion now (deferred: check has_vehicle after a step)."""
        libsumo.vehicle.add(veh_id, route_id, typeID=type_id, depart="now",
                            departLane=depart_lane, departPos=depart_pos,
                            departSpeed=depart_speed)

    def remove_vehicle(self, veh_id: str) -> None:
        """Remove a vehicle (running or pending)."""
        libsumo.vehicle.remove(veh_id)

    def vehicles_near(self, edge_id: str, lane_index: int | None, pos_lo_m: float,
                      pos_hi_m: float) -> list[str]:
        """Vehicles on ``edge_id`` (optionally one lane) with lane position in [lo, hi]."""
        out = []
        for vid in libsumo.edge.getLastStepVehicleIDs(edge_id):
            if lane_index is not None and libsumo.vehicle.getLaneIndex(vid) != lane_index:
                continue
            if pos_lo_m <= libsumo.vehicle.getLanePosition(vid) <= pos_hi_m:
                out.append(vid)
        return out

    def hand_over(self, veh_id: str) -> None:
        """Switch off SUMO's speed and lane-change logic for ``veh_id`` (external driving)."""
        libsumo.vehicle.setSpeedMode(veh_id, 0)
        libsumo.vehicle.setLaneChangeMode(veh_id, 0)

    def move_to(self, veh_id: str, center_xy: tuple[float, float], yaw_rad: float,
                length_m: float, speed_mps: float) -> None:
        """Place a vehicle by its box centre / yaw (map frame) and set its speed.

        Uses moveToXY(keepRoute=2): free placement, mapped onto the nearest lane so that the
        background traffic perceives it; with no lane near (the ego driven off the road) SUMO keeps
        the vehicle off the network (lane id "", ignored by traffic) until it is moved back near a
        lane. Raises SumoError if SUMO refuses the move.
        """
        front = center_to_front(np.asarray(center_xy)[None, :], np.asarray([yaw_rad]),
                                np.asarray([length_m]))[0]
        sx, sy = self.to_sumo(front)
        libsumo.vehicle.moveToXY(veh_id, "", -1, float(sx), float(sy),
                                 angle=float(yaw_to_sumo_angle(yaw_rad)), keepRoute=2)
        libsumo.vehicle.setSpeed(veh_id, max(0.0, float(speed_mps)))

    def road_position(self, xy: np.ndarray) -> tuple[str, float, int]:
        """(edge id, lane position [m], lane index) of the drivable lane nearest to map ``xy``."""
        sx, sy = self.to_sumo(np.asarray(xy, dtype=np.float64))
        edge, pos, lane = libsumo.simulation.convertRoad(float(sx), float(sy), False, "passenger")
        return edge, float(pos), int(lane)

    def set_size(self, veh_id: str, length_m: float, width_m: float, height_m: float) -> None:
        """Resize one vehicle (its own copy of the vType) [m]."""
        libsumo.vehicle.setLength(veh_id, float(length_m))
        libsumo.vehicle.setWidth(veh_id, float(width_m))
        libsumo.vehicle.setHeight(veh_id, float(height_m))

    def set_lane_change_mode(self, veh_id: str, mode: int) -> None:
        """SUMO lane-change mode bitset of one vehicle (1621 = SUMO's default)."""
        libsumo.vehicle.setLaneChangeMode(veh_id, int(mode))

    def set_speed(self, veh_id: str, speed_mps: float) -> None:
        """Force a vehicle's speed [m/s] (-1 gives control back to SUMO)."""
        libsumo.vehicle.setSpeed(veh_id, float(speed_mps))

    def set_max_speed(self, veh_id: str, speed_mps: float) -> None:
        """A vehicle's own maximum speed [m/s] (SUMO still drives it: car following, gaps)."""
        libsumo.vehicle.setMaxSpeed(veh_id, float(speed_mps))

    def slow_down(self, veh_id: str, speed_mps: float, duration_s: float) -> None:
        """Linear speed change to ``speed_mps`` over ``duration_s``."""
        libsumo.vehicle.slowDown(veh_id, float(speed_mps), float(duration_s))

    def change_lane(self, veh_id: str, lane_index: int, duration_s: float,
                    ignore_safety: bool = True) -> None:
        """Force a lane change (optionally ignoring SUMO's safety gaps: adversarial)."""
        if ignore_safety:
            # 0b000100000000 would keep only sublane; 0 = no autonomous changes, no safety
            libsumo.vehicle.setLaneChangeMode(veh_id, 0)
        libsumo.vehicle.changeLane(veh_id, int(lane_index), float(duration_s))

    def set_speed_mode(self, veh_id: str, mode: int) -> None:
        """SUMO speed mode bitset (31 = all checks, 0 = none)."""
        libsumo.vehicle.setSpeedMode(veh_id, int(mode))

    def stop_in_lane(self, veh_id: str, edge_id: str, pos_m: float, lane_index: int,
                     duration_s: float) -> None:
        """Make a vehicle stop (stalled) at a lane position for ``duration_s``."""
        libsumo.vehicle.setStop(veh_id, edge_id, float(pos_m), int(lane_index),
                                float(duration_s))

    def position_of_lane_pos(self, edge_id: str, pos_m: float, lane_index: int) -> np.ndarray:
        """Map-frame xy of a lane position."""
        x, y = libsumo.simulation.convert2D(edge_id, float(pos_m), int(lane_index))
        return self.to_map(np.array([x, y]))

    def angle_deg_raw(self, veh_id: str) -> float:
        """SUMO's raw angle (degrees clockwise from north), for adapter tests."""
        return float(libsumo.vehicle.getAngle(veh_id))

    def front_raw(self, veh_id: str) -> np.ndarray:
        """SUMO's raw position (front bumper, network coordinates), for adapter tests."""
        return np.asarray(libsumo.vehicle.getPosition(veh_id), dtype=np.float64)

