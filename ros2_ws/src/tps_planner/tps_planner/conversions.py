"""Message <-> core-type conversions for tps_planner: the only core-adjacent module that imports
message types (no rclpy). Frames: trajectories, routes and odometry in ``map``."""

from __future__ import annotations

import math
import struct

import numpy as np
from carla_msgs.msg import CarlaEgoVehicleControl
from geometry_msgs.msg import Point, Pose, Vector3
from nav_msgs.msg import Path
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import ColorRGBA, Header
from tps_common.conversions import (
    odometry_to_pose,  # re-exported: speed, non-unit quaternion check
    quaternion_msg_to_yaw,
    seconds_to_duration,
    seconds_to_time,
    time_to_seconds,
    yaw_to_quaternion_msg,
)
from tps_inference.conversions import ConversionError, pointcloud2_to_xyzi
from tps_msgs.msg import (
    AgentForecast,
    AgentRelevance,
    AgentTokens,
    ForecastMode,
    Forecasts,
    MonitorStatus,
    PlannedTrajectory,
    SceneUnderstanding,
    TrafficLightStates,
    TrajectoryPoint,
)
from tps_msgs.msg import LaneMap as LaneMapMsg
from visualization_msgs.msg import Marker, MarkerArray

from tps_planner.controller import ControlResult
from tps_planner.fallback import FallbackResult
from tps_planner.lane_map import Crosswalk, LaneMap, MapLane, StopLine, check_map_extent
from tps_planner.traffic_rules import LightObservation
from tps_planner.trajectory import Trajectory

__all__ = [
    "ConversionError",
    "control_to_msg",
    "fallback_markers",
    "forecasts_to_msg",
    "planner_markers",
    "scene_to_msg",
    "tokens_to_arrays",
    "lane_map_from_msg",
    "light_observations",
    "odometry_to_pose",
    "path_cdr_to_xy",
    "path_to_xy",
    "pointcloud_to_xyz",
    "trajectory_from_msg",
    "trajectory_to_msg",
]


def trajectory_from_msg(msg: PlannedTrajectory) -> Trajectory:
    """PlannedTrajectory -> Trajectory (values are not validated here; see validate_trajectory)."""
    pts = msg.points
    n = len(pts)
    t = np.array([time_to_seconds(p.time_from_start) for p in pts], dtype=float)
    xy = np.array([[p.pose.position.x, p.pose.position.y] for p in pts], dtype=float).reshape(n, 2)
    yaw = np.array([quaternion_msg_to_yaw(p.pose.orientation) for p in pts], dtype=float)
    return Trajectory(
        stamp_s=time_to_seconds(msg.header.stamp), t_s=t, xy=xy, yaw=yaw,
        speed_mps=np.array([p.speed_mps for p in pts], dtype=float),
        accel_mps2=np.array([p.acceleration_mps2 for p in pts], dtype=float),
        source=int(msg.source), confidence=float(msg.confidence), frame_id=msg.header.frame_id,
        sigma_m=np.array([p.position_sigma_m for p in pts], dtype=float),
    )


def trajectory_to_msg(traj: Trajectory) -> PlannedTrajectory:
    """Trajectory -> PlannedTrajectory (stamp = the trajectory's sensor stamp)."""
    msg = PlannedTrajectory()
    msg.header = Header(stamp=seconds_to_time(traj.stamp_s), frame_id=traj.frame_id)
    msg.source = int(traj.source)
    msg.confidence = float(min(max(traj.confidence, 0.0), 1.0))
    points = []
    for i in range(len(traj)):
        points.append(TrajectoryPoint(
            time_from_start=seconds_to_duration(float(traj.t_s[i])),
            pose=Pose(position=Point(x=float(traj.xy[i, 0]), y=float(traj.xy[i, 1]), z=0.0),
                      orientation=yaw_to_quaternion_msg(float(traj.yaw[i]))),
            speed_mps=float(traj.speed_mps[i]),
            acceleration_mps2=float(traj.accel_mps2[i]),
            position_sigma_m=float(traj.sigma_m[i]),
        ))
    msg.points = points
    return msg


def path_to_xy(msg: Path) -> np.ndarray:
    """nav_msgs/Path -> (N, 2) xy, m."""
    return np.array([[ps.pose.position.x, ps.pose.position.y] for ps in msg.poses], dtype=float).reshape(-1, 2)


CDR_ENCAPSULATIONS = {b"\x00\x00": ">", b"\x00\x01": "<"}   # plain CDR, big / little endian
POSE_STAMPED_MIN_BYTES = 8 + 4 + 1 + 56   # stamp, frame_id length + its null byte, pose (padding aside)


def path_cdr_to_xy(raw: bytes | memoryview) -> tuple[str, np.ndarray]:
    """A serialised nav_msgs/Path (CDR bytes, as a ``raw=True`` subscription delivers them) ->
    (frame_id, (N, 2) xy [m]) without building the N PoseStamped objects: rclpy's deserialisation of
    a 1600-pose route (800 m at 0.5 m) takes ~70 ms of the executor thread on an idle core, more
    under load (the fallback node reads the route this way, on its route-map worker thread).

    Raises:
        ConversionError: an encapsulation other than plain CDR, or a truncated / inconsistent buffer.
    """
    buf = memoryview(raw).cast("B")
    endian = CDR_ENCAPSULATIONS.get(bytes(buf[:2]))
    if len(buf) < 4 or endian is None:
        raise ConversionError(f"nav_msgs/Path: not plain CDR (encapsulation {bytes(buf[:2]).hex()!r})")
    data = buf[4:]             # CDR alignment counts from here
    u32, f64x2 = struct.Struct(endian + "I"), struct.Struct(endian + "dd")
    try:
        (n,) = u32.unpack_from(data, 8)                 # header: stamp (8 bytes), frame_id
        frame_id = bytes(data[12:12 + max(n - 1, 0)]).decode("utf-8", "replace")
        pos = 12 + n
        pos += -pos % 4
        (count,) = u32.unpack_from(data, pos)
        pos += 4
        if count * POSE_STAMPED_MIN_BYTES > len(data) - pos:
            raise ConversionError(f"nav_msgs/Path: {count} poses do not fit in {len(data) - pos} bytes")
        xy = np.empty((count, 2))
        for i in range(count):
            pos += -pos % 4 + 8                         # PoseStamped: header stamp
            (n,) = u32.unpack_from(data, pos)
            pos += 4 + n                                # frame_id
            pos += -pos % 8                             # pose: 7 float64
            xy[i] = f64x2.unpack_from(data, pos)
            pos += 56
        if pos > len(data):
            raise ConversionError(f"nav_msgs/Path: truncated ({len(data)} bytes, {pos} needed)")
    except struct.error as exc:
        raise ConversionError(f"nav_msgs/Path: truncated ({exc})") from None
    return frame_id, xy


def _xy(points) -> np.ndarray:
    return np.array([[q.x, q.y] for q in points], dtype=float).reshape(-1, 2)


def lane_map_from_msg(msg: LaneMapMsg) -> LaneMap:
    """tps_msgs/LaneMap -> LaneMap (map frame; raises ValueError on a lane with fewer than two
    centreline points or non-finite values, a lane width outside (0, 50] m or a map too large for
    the drivable-area raster: ``lane_map.check_map_extent``)."""
    lanes = []
    for ln in msg.lanes:
        c = _xy(ln.centerline)
        if len(c) < 2 or not np.all(np.isfinite(c)) or not math.isfinite(ln.width_m):
            raise ValueError(f"lane {ln.id!r}: needs >= 2 finite centreline points and a width")
        lanes.append(MapLane(str(ln.id), c, float(ln.width_m), float(ln.speed_limit_mps), bool(ln.is_junction),
                             bool(ln.is_acceleration_lane), str(ln.left_id), str(ln.right_id),
                             bool(ln.can_change_left), bool(ln.can_change_right),
                             tuple(str(s) for s in ln.successor_ids)))
    crosswalks = tuple(Crosswalk(str(c.id), _xy(c.polygon)) for c in msg.crosswalks if len(c.polygon) >= 3)
    stop_lines = tuple(StopLine(str(s.lane_id), _xy(s.points), int(s.control), int(s.traffic_light_id))
                       for s in msg.stop_lines)
    lane_map = LaneMap(tuple(lanes), tuple(str(i) for i in msg.route_lane_ids), crosswalks, stop_lines)
    check_map_extent(lane_map)   # a lane 1e9 m long or wide: refused here, before any resampling
    return lane_map


def pointcloud_to_xyz(msg: PointCloud2) -> np.ndarray:
    """PointCloud2 -> (N, 3) float32 xyz (NaN kept). Raises ConversionError if malformed."""
    return pointcloud2_to_xyzi(msg, intensity_field=None)[:, :3]


def light_observations(msg: TrafficLightStates) -> tuple[float, list[LightObservation]]:
    """(stamp [s], the reader's state of each light) of a ``tps_msgs/TrafficLightStates``."""
    return time_to_seconds(msg.header.stamp), [
        LightObservation(int(li.id), int(li.state), float(li.confidence)) for li in msg.lights]


def monitor_state_of(msg: MonitorStatus) -> tuple[int, tuple[str, ...]]:
    """MonitorStatus -> (state, reasons)."""
    return int(msg.state), tuple(msg.reasons)


def control_to_msg(res: ControlResult, stamp_s: float) -> CarlaEgoVehicleControl:
    """ControlResult -> CarlaEgoVehicleControl (CARLA convention: positive steer = turn right)."""
    msg = CarlaEgoVehicleControl()
    msg.header = Header(stamp=seconds_to_time(stamp_s), frame_id="ego_vehicle")
    msg.throttle = float(res.throttle)
    msg.steer = float(res.steer)
    msg.brake = float(res.brake)
    msg.hand_brake = False
    msg.reverse = False
    msg.gear = 1
    msg.manual_gear_shift = False
    return msg


def fallback_markers(res: FallbackResult, stamp_s: float, ns: str = "fallback") -> MarkerArray:
    """RViz markers of the fallback's corridor (two line strips), obstacle (cube + text), plan and
    the tracked objects around the ego (a cube list)."""
    header = Header(stamp=seconds_to_time(stamp_s), frame_id="map")
    markers = [Marker(header=header, ns=ns, action=Marker.DELETEALL)]

    def strip(mid: int, xy: np.ndarray, colour: ColorRGBA, width: float) -> Marker:
        m = Marker(header=header, ns=ns, id=mid, type=Marker.LINE_STRIP, action=Marker.ADD)
        m.scale = Vector3(x=width, y=0.0, z=0.0)
        m.color = colour
        m.pose.orientation.w = 1.0
        m.points = [Point(x=float(x), y=float(y), z=0.05) for x, y in xy]
        return m

    corridor_colour = ColorRGBA(r=0.2, g=0.6, b=1.0, a=0.8)
    if len(res.corridor_left):
        markers.append(strip(1, res.corridor_left, corridor_colour, 0.1))
        markers.append(strip(2, res.corridor_right, corridor_colour, 0.1))
    if res.trajectory is not None and len(res.trajectory):
        markers.append(strip(3, res.trajectory.xy, ColorRGBA(r=0.1, g=0.9, b=0.2, a=0.9), 0.2))
    if res.obstacle is not None:
        ob = res.obstacle
        cube = Marker(header=header, ns=ns, id=4, type=Marker.CUBE, action=Marker.ADD)
        cube.pose.position = Point(x=float(ob.xy[0]), y=float(ob.xy[1]), z=0.5)
        cube.pose.orientation.w = 1.0
        cube.scale = Vector3(x=0.6, y=0.6, z=1.0)
        cube.color = ColorRGBA(r=1.0, g=0.1, b=0.1, a=0.9)
        text = Marker(header=header, ns=ns, id=5, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
        text.pose.position = Point(x=float(ob.xy[0]), y=float(ob.xy[1]), z=2.0)
        text.pose.orientation.w = 1.0
        text.scale.z = 0.8
        text.color = ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0)
        text.text = f"{ob.gap_m:.1f} m, closing {ob.closing_speed_mps:.1f} m/s"
        markers += [cube, text]
    if res.objects:
        cubes = Marker(header=header, ns=ns, id=6, type=Marker.CUBE_LIST, action=Marker.ADD)
        cubes.pose.orientation.w = 1.0
        cubes.scale = Vector3(x=0.8, y=0.8, z=0.8)
        cubes.color = ColorRGBA(r=1.0, g=0.7, b=0.1, a=0.8)
        cubes.points = [Point(x=float(o.xy[0]), y=float(o.xy[1]), z=0.4) for o in res.objects]
        markers.append(cubes)
    return MarkerArray(markers=markers)


# --- VLM planner (planner_node) -------------------------------------------------------------------
def tokens_to_arrays(msg: AgentTokens) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """AgentTokens -> (codes (N,) int64, geometry (N, 7) x, y, yaw, length, width, vx, vy, quantisation
    errors (N,), agent ids (N,) int64), in the message's frame (base_link)."""
    toks = msg.tokens
    code = np.array([t.code_index for t in toks], dtype=np.int64)
    geom = np.array([[t.x, t.y, t.yaw, t.length, t.width, t.vx, t.vy] for t in toks], dtype=np.float64).reshape(-1, 7)
    qerr = np.array([t.quantisation_error for t in toks], dtype=np.float64)
    ids = np.array([t.agent_id for t in toks], dtype=np.int64)
    return code, geom, qerr, ids


def forecasts_to_msg(res, frame_id: str = "base_link") -> Forecasts:
    """The stage-2 forecasts of a :class:`tps_planner.vlm.onboard.PlanResult` (base_link of its
    stamp; one AgentForecast per agent the planner read, K modes each)."""
    msg = Forecasts(header=Header(stamp=seconds_to_time(res.stamp_s), frame_id=frame_id))
    for f in res.forecasts:
        modes = [ForecastMode(probability=float(p), waypoints=[Point(x=float(x), y=float(y), z=0.0) for x, y in wp])
                 for p, wp in zip(f.probabilities, f.modes, strict=True)]
        msg.forecasts.append(AgentForecast(agent_id=int(f.agent_id), time_step_s=float(res.forecast_dt_s),
                                           modes=modes))
    return msg


def scene_to_msg(res, frame_id: str = "base_link") -> SceneUnderstanding:
    """The stage-1 scene understanding of a PlanResult: scene class, per-agent relevance and intent
    (tps_msgs constants), lead agent, and the rationale rendered from the stage-1/2 outputs the
    plan was conditioned on."""
    msg = SceneUnderstanding(header=Header(stamp=seconds_to_time(res.stamp_s), frame_id=frame_id),
                             scene_class=int(res.scene), rationale=res.rationale.text)
    msg.agents = [AgentRelevance(agent_id=int(a.agent_id), relevance=float(min(max(a.relevance, 0.0), 1.0)),
                                 intent=int(a.intent_msg)) for a in res.agents]
    msg.has_lead_agent = res.lead_agent_id is not None
    msg.lead_agent_id = int(res.lead_agent_id) if res.lead_agent_id is not None else 0
    return msg


def planner_markers(res, pose: np.ndarray, ns: str = "planner", max_forecasts: int = 8) -> MarkerArray:
    """RViz markers (map) of a PlanResult: the plan (line strip + sigma spheres), the most likely
    forecast mode of the most relevant agents, the lead agent and the rationale text above the ego."""
    header = Header(stamp=seconds_to_time(res.stamp_s), frame_id="map")
    markers = [Marker(header=header, ns=ns, action=Marker.DELETEALL)]
    c, s = math.cos(pose[2]), math.sin(pose[2])

    def to_map(xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        return np.stack([pose[0] + c * xy[:, 0] - s * xy[:, 1], pose[1] + s * xy[:, 0] + c * xy[:, 1]], axis=1)

    def strip(mid: int, xy: np.ndarray, colour: ColorRGBA, width: float) -> Marker:
        m = Marker(header=header, ns=ns, id=mid, type=Marker.LINE_STRIP, action=Marker.ADD)
        m.scale = Vector3(x=width, y=0.0, z=0.0)
        m.color = colour
        m.pose.orientation.w = 1.0
        m.points = [Point(x=float(x), y=float(y), z=0.1) for x, y in xy]
        return m

    markers.append(strip(1, res.trajectory.xy, ColorRGBA(r=0.2, g=0.4, b=1.0, a=0.95), 0.25))
    spheres = Marker(header=header, ns=ns, id=2, type=Marker.SPHERE_LIST, action=Marker.ADD)
    spheres.pose.orientation.w = 1.0
    sig = float(np.clip(np.mean(res.sigma_m), 0.1, 5.0))
    spheres.scale = Vector3(x=sig, y=sig, z=0.1)
    spheres.color = ColorRGBA(r=0.2, g=0.4, b=1.0, a=0.3)
    spheres.points = [Point(x=float(x), y=float(y), z=0.05) for x, y in res.trajectory.xy[1:]]
    markers.append(spheres)
    order = sorted(range(len(res.agents)), key=lambda k: -res.agents[k].relevance)[:max_forecasts]
    for n, k in enumerate(order):
        f = res.forecasts[k]
        best = int(np.argmax(f.probabilities))
        xy = to_map(np.concatenate([res.agents[k].xy[None], f.modes[best]]))
        alpha = 0.3 + 0.7 * float(res.agents[k].relevance)
        markers.append(strip(10 + n, xy, ColorRGBA(r=1.0, g=0.6, b=0.1, a=alpha), 0.12))
    if res.lead_agent_id is not None:
        lead = next(a for a in res.agents if a.agent_id == res.lead_agent_id)
        m = Marker(header=header, ns=ns, id=3, type=Marker.CYLINDER, action=Marker.ADD)
        x, y = to_map(lead.xy)[0]
        m.pose.position = Point(x=float(x), y=float(y), z=2.2)
        m.pose.orientation.w = 1.0
        m.scale = Vector3(x=0.6, y=0.6, z=0.2)
        m.color = ColorRGBA(r=1.0, g=0.2, b=0.8, a=0.9)
        markers.append(m)
    text = Marker(header=header, ns=ns, id=4, type=Marker.TEXT_VIEW_FACING, action=Marker.ADD)
    text.pose.position = Point(x=float(pose[0]), y=float(pose[1]), z=4.0)
    text.pose.orientation.w = 1.0
    text.scale.z = 0.7
    text.color = (ColorRGBA(r=1.0, g=1.0, b=1.0, a=1.0) if res.consistency.consistent
                  else ColorRGBA(r=1.0, g=0.3, b=0.3, a=1.0))
    text.text = res.rationale.text
    markers.append(text)
    return MarkerArray(markers=markers)
