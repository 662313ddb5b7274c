"""Simulator values <-> ROS 2 messages, for the bridge node and the bag recorder.

The only module of ``tps_sim`` outside ``nodes/`` that imports message packages; it never imports
rclpy (message classes are plain rosidl Python classes). Every builder takes plain numbers and
numpy arrays (what :mod:`tps_sim.bridge` produces) and returns a message, so the live bridge and
the recorder publish byte-identical messages for the same step.

Conventions (docs/CONTRACTS.md): SI units, REP-103 axes; ``map`` is the world frame,
``ego_vehicle`` (carla-ros-bridge's name for the vehicle; the stack's ``base_link`` is an identity
child of it) the ego frame, points in ``ego_vehicle/lidar``, images in the optical frame
``ego_vehicle/rgb_front``; the frame names are ``sim_bridge`` parameters
(:class:`tps_sim.sensors.rig.SensorRig`), these are the defaults. ``/tf_static`` carries the
vehicle -> base_link, lidar and camera transforms, ``/tf`` map -> vehicle every step.
``CarlaEgoVehicleControl.steer`` keeps CARLA's sign (positive = right). Stamps and headers come
from :mod:`tps_common.conversions` (``stamp``/``stamp_to_s``/``stamp_to_ns``/``header`` here are
those functions under the names this package's callers use).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
from carla_msgs.msg import (
    CarlaBoundingBox,
    CarlaEgoVehicleControl,
    CarlaEgoVehicleStatus,
    CarlaTrafficLightInfo,
    CarlaTrafficLightInfoList,
    CarlaTrafficLightStatus,
    CarlaTrafficLightStatusList,
)
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion, Vector3
from nav_msgs.msg import Odometry, Path
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header
from tf2_msgs.msg import TFMessage
from tps_common import diagnostics
from tps_common.conversions import header, seconds_to_time, time_to_ns, time_to_seconds
from tps_common.conversions import yaw_to_quaternion_msg as yaw_quaternion
from tps_common.geometry import yaw_to_quaternion
from tps_common.tf import transform_stamped
from tps_msgs.msg import (
    DrivingInstruction,
    GroundTruth,
    GroundTruthAgent,
    LaneMap,
    MapCrosswalk,
    MapLane,
    MapStopLine,
)

from tps_sim.sensors.rig import CAMERA_FRAME, LIDAR_FRAME, MAP_FRAME, SensorRig
from tps_sim.sensors.rig import VEHICLE_FRAME as EGO_FRAME

# Topics of the carla-ros-bridge contract (docs/CONTRACTS.md "Topics").
TOPIC_CLOCK = "/clock"
TOPIC_LIDAR = "/carla/ego_vehicle/lidar"
TOPIC_IMAGE = "/carla/ego_vehicle/rgb_front/image"
TOPIC_CAMERA_INFO = "/carla/ego_vehicle/rgb_front/camera_info"
TOPIC_ODOMETRY = "/carla/ego_vehicle/odometry"
TOPIC_STATUS = "/carla/ego_vehicle/vehicle_status"
TOPIC_CONTROL = "/carla/ego_vehicle/vehicle_control_cmd"
TOPIC_GROUND_TRUTH = "/tps/sim/ground_truth"
TOPIC_ROUTE = "/planning/route"
TOPIC_INSTRUCTION = "/tps/instruction"
TOPIC_LANE_MAP = "/tps/map/lane_map"
TOPIC_DIAGNOSTICS = "/diagnostics"
TOPIC_TF = "/tf"
TOPIC_TF_STATIC = "/tf_static"
# Traffic lights (carla-ros-bridge): map knowledge, latched; ground-truth states every step (for
# recording and evaluation only -- no stack node subscribes to it, tests/foundation checks).
TOPIC_LIGHT_INFO = "/carla/traffic_lights/info"
TOPIC_LIGHT_STATUS = "/carla/traffic_lights/status"

# Topic -> ROS type name, in the order the bridge publishes them each step.
TOPIC_TYPES: dict[str, str] = {
    TOPIC_CLOCK: "rosgraph_msgs/msg/Clock",
    TOPIC_TF: "tf2_msgs/msg/TFMessage",
    TOPIC_LIDAR: "sensor_msgs/msg/PointCloud2",
    TOPIC_IMAGE: "sensor_msgs/msg/Image",
    TOPIC_CAMERA_INFO: "sensor_msgs/msg/CameraInfo",
    TOPIC_ODOMETRY: "nav_msgs/msg/Odometry",
    TOPIC_STATUS: "carla_msgs/msg/CarlaEgoVehicleStatus",
    TOPIC_GROUND_TRUTH: "tps_msgs/msg/GroundTruth",
    TOPIC_LIGHT_STATUS: "carla_msgs/msg/CarlaTrafficLightStatusList",
    TOPIC_ROUTE: "nav_msgs/msg/Path",
    TOPIC_INSTRUCTION: "tps_msgs/msg/DrivingInstruction",
    TOPIC_LANE_MAP: "tps_msgs/msg/LaneMap",
    TOPIC_TF_STATIC: "tf2_msgs/msg/TFMessage",
    TOPIC_LIGHT_INFO: "carla_msgs/msg/CarlaTrafficLightInfoList",
}
LATCHED_TOPICS = (TOPIC_ROUTE, TOPIC_INSTRUCTION, TOPIC_LANE_MAP, TOPIC_TF_STATIC, TOPIC_LIGHT_INFO)
DEFAULT_RIG = SensorRig()

POINT_STEP = 16  # x, y, z, intensity float32 (carla-ros-bridge layout)
_XYZI_FIELDS = tuple(
    PointField(name=name, offset=4 * i, datatype=PointField.FLOAT32, count=1)
    for i, name in enumerate(("x", "y", "z", "intensity"))
)

GT_FUTURE_STEP_S = 0.5


# One implementation of each (tps_common.conversions), under this module's historical names.
stamp = seconds_to_time
stamp_to_s = time_to_seconds
stamp_to_ns = time_to_ns


def clock_msg(t_s: float) -> Clock:
    """``rosgraph_msgs/Clock`` at ``t_s`` seconds."""
    return Clock(clock=stamp(t_s))


def _array_to_pointcloud2_local(points: np.ndarray, hdr: Header) -> PointCloud2:
    pts = np.ascontiguousarray(points, dtype="<f4")
    msg = PointCloud2(header=hdr, height=1, width=int(pts.shape[0]), fields=list(_XYZI_FIELDS),
                      is_bigendian=False, point_step=POINT_STEP,
                      row_step=POINT_STEP * int(pts.shape[0]),
                      is_dense=bool(np.isfinite(pts).all()))
    msg.data = pts.tobytes()
    return msg


def pointcloud_msg(points_xyzi: np.ndarray, t_s: float, frame_id: str = LIDAR_FRAME) -> PointCloud2:
    """``sensor_msgs/PointCloud2`` of (N, 4) float32 x, y, z [m], intensity points.

    Layout: carla-ros-bridge's (x, y, z, intensity float32, point_step 16, little endian,
    unorganised). ``is_dense`` is false when any value is NaN/inf (injected faults).
    """
    pts = np.asarray(points_xyzi)
    if pts.ndim != 2 or pts.shape[1] != 4:
        raise ValueError(f"points must have shape (N, 4), got {pts.shape}")
    hdr = header(t_s, frame_id)
    try:  # the runtime engineer's converter (docs/CONTRACTS.md) when it exists
        from tps_inference.conversions import xyzi_to_pointcloud2
    except ImportError:
        return _array_to_pointcloud2_local(pts, hdr)
    return xyzi_to_pointcloud2(pts.astype(np.float32, copy=False), hdr)


def image_msg(rgb: np.ndarray, t_s: float, frame_id: str = CAMERA_FRAME) -> Image:
    """``sensor_msgs/Image`` (rgb8) of an (H, W, 3) uint8 image."""
    img = np.ascontiguousarray(rgb, dtype=np.uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"image must have shape (H, W, 3), got {img.shape}")
    h, w = img.shape[:2]
    msg = Image(header=header(t_s, frame_id), height=h, width=w, encoding="rgb8", is_bigendian=0,
                step=3 * w)
    msg.data = img.tobytes()
    return msg


def camera_info_msg(fields: dict, t_s: float, frame_id: str = CAMERA_FRAME) -> CameraInfo:
    """``sensor_msgs/CameraInfo`` from the camera model's ``camera_info_fields()`` dict
    (width, height, K (9), D, R (9), P (12), distortion_model)."""
    msg = CameraInfo(header=header(t_s, frame_id))
    msg.width = int(fields["width"])
    msg.height = int(fields["height"])
    msg.distortion_model = str(fields.get("distortion_model", "plumb_bob"))
    msg.d = [float(v) for v in np.ravel(fields.get("D", fields.get("d", [0.0] * 5)))]
    msg.k = [float(v) for v in np.ravel(fields.get("K", fields.get("k")))]
    msg.r = [float(v) for v in np.ravel(fields.get("R", fields.get("r", np.eye(3))))]
    msg.p = [float(v) for v in np.ravel(fields.get("P", fields.get("p")))]
    return msg


def odometry_msg(pose_xyzyaw: Sequence[float], speed_mps: float, yaw_rate: float,
                 t_s: float, frame_id: str = MAP_FRAME, child_frame_id: str = EGO_FRAME) -> Odometry:
    """``nav_msgs/Odometry`` of the ego: pose of the vehicle (= base_link) in ``map`` (z = 0),
    twist in the child frame ``ego_vehicle`` (x forward = speed [m/s], angular z = yaw rate
    [rad/s])."""
    x, y, yaw = (float(v) for v in pose_xyzyaw)
    msg = Odometry(header=header(t_s, frame_id), child_frame_id=child_frame_id)
    msg.pose.pose.position = Point(x=x, y=y, z=0.0)
    msg.pose.pose.orientation = yaw_quaternion(yaw)
    msg.twist.twist.linear = Vector3(x=float(speed_mps), y=0.0, z=0.0)
    msg.twist.twist.angular = Vector3(x=0.0, y=0.0, z=float(yaw_rate))
    return msg


def control_msg(throttle: float, steer: float, brake: float, hand_brake: bool = False,
                reverse: bool = False, t_s: float = 0.0) -> CarlaEgoVehicleControl:
    """``carla_msgs/CarlaEgoVehicleControl`` (steer positive = turn right, CARLA convention)."""
    return CarlaEgoVehicleControl(header=header(t_s, EGO_FRAME), throttle=float(throttle),
                                  steer=float(steer), brake=float(brake),
                                  hand_brake=bool(hand_brake), reverse=bool(reverse), gear=1,
                                  manual_gear_shift=False)


def control_fields(msg: CarlaEgoVehicleControl) -> dict:
    """The fields of a control message as plain Python values (stamp in integer ns)."""
    return {
        "stamp_ns": stamp_to_ns(msg.header.stamp),
        "throttle": float(msg.throttle),
        "steer": float(msg.steer),
        "brake": float(msg.brake),
        "hand_brake": bool(msg.hand_brake),
        "reverse": bool(msg.reverse),
    }


def vehicle_status_msg(speed_mps: float, accel_mps2: float, yaw: float, control: dict,
                       t_s: float) -> CarlaEgoVehicleStatus:
    """``carla_msgs/CarlaEgoVehicleStatus``: speed [m/s], longitudinal acceleration [m/s^2] (in
    ``acceleration.linear.x``), orientation (yaw in map) and the control applied this step."""
    msg = CarlaEgoVehicleStatus(header=header(t_s, EGO_FRAME), velocity=float(speed_mps))
    msg.acceleration.linear = Vector3(x=float(accel_mps2), y=0.0, z=0.0)
    msg.orientation = yaw_quaternion(float(yaw))
    msg.control = control_msg(control.get("throttle", 0.0), control.get("steer", 0.0),
                              control.get("brake", 0.0), control.get("hand_brake", False),
                              control.get("reverse", False), t_s)
    return msg


def gt_agent_msg(agent, future_xy: np.ndarray | None = None) -> GroundTruthAgent:
    """``tps_msgs/GroundTruthAgent`` of one world ``AgentState`` (map frame); ``future_xy`` is an
    optional (F, 2) array of future centres [m] at 0.5 s spacing (NaN rows end it)."""
    msg = GroundTruthAgent(id=int(agent.id), sim_id=str(agent.sim_id), class_id=int(agent.class_id))
    cx, cy, cz = (float(v) for v in agent.center)
    msg.center = Point(x=cx, y=cy, z=cz)
    msg.yaw = float(agent.yaw)
    sl, sw, sh = (float(v) for v in agent.size)
    msg.size = Vector3(x=sl, y=sw, z=sh)
    vx, vy = (float(v) for v in agent.velocity)
    msg.velocity = Vector3(x=vx, y=vy, z=0.0)
    if future_xy is not None:
        pts = []
        for fx, fy in np.asarray(future_xy, dtype=np.float64).reshape(-1, 2):
            if not (math.isfinite(fx) and math.isfinite(fy)):
                break
            pts.append(Point(x=float(fx), y=float(fy), z=cz))
        msg.future = pts
    return msg


def ground_truth_msg(state, scenario: str, seed: int, events: Iterable[str], t_s: float,
                     futures: dict[int, np.ndarray] | None = None) -> GroundTruth:
    """``tps_msgs/GroundTruth`` of one ``WorldState``.

    Args:
        state: the world state (``ego``, ``agents``, ``collisions``, ``step``).
        scenario, seed: the episode.
        events: event strings of this step (``step_timeout``, ``fault:<name>``, ...).
        t_s: the stamp [s] (the published sim time of the step).
        futures: optional agent id -> (F, 2) future centres [m, map]; the ego's id is 0.
    """
    futures = futures or {}
    msg = GroundTruth(header=header(t_s, MAP_FRAME), scenario=str(scenario), seed=int(seed),
                      step=int(state.step), future_step_s=GT_FUTURE_STEP_S)
    msg.ego = gt_agent_msg(state.ego, futures.get(int(state.ego.id)))
    msg.agents = [gt_agent_msg(a, futures.get(int(a.id))) for a in state.agents]
    agent_ids = [int(c) for c in state.collisions]
    msg.collision = bool(agent_ids)
    msg.collision_agent_ids = [c for c in agent_ids if c >= 0]
    msg.events = [str(e) for e in events]
    return msg


def traffic_light_info_msg(heads) -> CarlaTrafficLightInfoList:
    """``carla_msgs/CarlaTrafficLightInfoList`` of the network's heads
    (``tps_common.traffic_lights.LightHead``): id, transform = the head's pose in ``map`` (housing
    centre, yaw = the direction its lamps face), trigger volume relative to it (from the stop line
    ``TRIGGER_DEPTH_M`` upstream, one lane wide; docs/CONTRACTS.md "Traffic lights")."""
    out = []
    for h in heads:
        centre, size = h.trigger_volume()
        qx, qy, qz, qw = h.quaternion()
        x, y, z = (float(v) for v in h.position)
        box = CarlaBoundingBox(center=Vector3(x=float(centre[0]), y=float(centre[1]),
                                              z=float(centre[2])),
                               size=Vector3(x=float(size[0]), y=float(size[1]), z=float(size[2])))
        out.append(CarlaTrafficLightInfo(id=int(h.id), transform=Pose(
            position=Point(x=x, y=y, z=z), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw)),
            trigger_volume=box))
    return CarlaTrafficLightInfoList(traffic_lights=out)


def traffic_light_status_msg(ids, states) -> CarlaTrafficLightStatusList:
    """``carla_msgs/CarlaTrafficLightStatusList``: the state of every head (ids, states as
    ``tps_common.traffic_lights`` = ``CarlaTrafficLightStatus`` constants). carla-ros-bridge's
    message has no header."""
    return CarlaTrafficLightStatusList(traffic_lights=[
        CarlaTrafficLightStatus(id=int(i), state=int(s)) for i, s in zip(ids, states, strict=True)])


def path_msg(route_xy: np.ndarray, t_s: float = 0.0) -> Path:
    """``nav_msgs/Path`` of a (N, 2) map polyline [m]; each pose faces the next point."""
    route = np.asarray(route_xy, dtype=np.float64).reshape(-1, 2)
    msg = Path(header=header(t_s, MAP_FRAME))
    if len(route) >= 2:
        d = np.diff(route, axis=0)
        yaws = np.arctan2(d[:, 1], d[:, 0])
        yaws = np.append(yaws, yaws[-1])
    else:
        yaws = np.zeros(len(route))
    poses = []
    for (x, y), yaw in zip(route, yaws, strict=True):
        ps = PoseStamped(header=header(t_s, MAP_FRAME))
        ps.pose.position = Point(x=float(x), y=float(y), z=0.0)
        ps.pose.orientation = yaw_quaternion(float(yaw))
        poses.append(ps)
    msg.poses = poses
    return msg


def instruction_msg(instruction, t_s: float = 0.0) -> DrivingInstruction:
    """``tps_msgs/DrivingInstruction`` from the world's ``Instruction`` (text, command,
    exit_number, target_speed_mps)."""
    target = getattr(instruction, "target_speed_mps", -1.0)
    return DrivingInstruction(header=header(t_s, MAP_FRAME), text=str(instruction.text),
                              command=int(instruction.command),
                              exit_number=int(getattr(instruction, "exit_number", 0) or 0),
                              target_speed_mps=float(-1.0 if target is None else target))


def _points(xy: np.ndarray) -> list:
    return [Point(x=float(x), y=float(y), z=0.0) for x, y in np.asarray(xy, np.float64).reshape(-1, 2)]


def lane_map_msg(lane_map, t_s: float = 0.0, frame_id: str = MAP_FRAME) -> LaneMap:
    """``tps_msgs/LaneMap`` of a :class:`tps_sim.map_knowledge.LaneMapData` (map frame)."""
    msg = LaneMap(header=header(t_s, frame_id), route_lane_ids=[str(i) for i in lane_map.route_lane_ids])
    msg.lanes = [MapLane(id=str(ln.lane_id), centerline=_points(ln.centerline), width_m=float(ln.width_m),
                         speed_limit_mps=float(ln.speed_limit_mps), is_junction=bool(ln.is_junction),
                         is_acceleration_lane=bool(ln.is_acceleration_lane), left_id=str(ln.left_id),
                         right_id=str(ln.right_id), can_change_left=bool(ln.can_change_left),
                         can_change_right=bool(ln.can_change_right),
                         successor_ids=[str(s) for s in ln.successor_ids])
                 for ln in lane_map.lanes]
    msg.crosswalks = [MapCrosswalk(id=str(c.crosswalk_id), polygon=_points(c.polygon))
                      for c in lane_map.crosswalks]
    msg.stop_lines = [MapStopLine(lane_id=str(s.lane_id), points=_points(s.points), control=int(s.control),
                                  traffic_light_id=int(s.traffic_light_id))
                      for s in lane_map.stop_lines]
    return msg


def diagnostic_msg(node_name: str, statuses: Iterable[tuple[str, str, str, dict]],
                   t_s: float) -> DiagnosticArray:
    """``diagnostic_msgs/DiagnosticArray`` from (aspect, level (:mod:`tps_common.levels`),
    message, values) tuples; each status is named ``<node_name>: <aspect>`` (built by
    :mod:`tps_common.diagnostics`, the project's one diagnostics convention)."""
    return diagnostics.array(stamp(t_s), [
        diagnostics.status(f"{node_name}: {aspect}", diagnostics.level_of(level), str(text), values,
                           hardware_id="tps_sim")
        for aspect, level, text, values in statuses])


def tf_static_msg(rig: SensorRig = DEFAULT_RIG, t_s: float = 0.0, *, lidar: bool = True,
                  camera: bool = True) -> TFMessage:
    """``tf2_msgs/TFMessage`` for ``/tf_static``: every fixed edge of the rig in one message (as
    tf2's static broadcaster sends them: the topic keeps one message per publisher): vehicle ->
    base_link (identity), vehicle -> lidar, vehicle -> camera optical frame."""
    return TFMessage(transforms=[transform_stamped(parent, child, tr, t_s)
                                 for parent, child, tr in rig.static_transforms(lidar=lidar,
                                                                                camera=camera)])


def tf_msg(pose_xyzyaw: Sequence[float], t_s: float, rig: SensorRig = DEFAULT_RIG) -> TFMessage:
    """``tf2_msgs/TFMessage`` for ``/tf``: map -> vehicle at the ego pose (x, y, yaw) of one step,
    stamped with the step (the odometry's pose and quaternion, bit for bit)."""
    x, y, yaw = (float(v) for v in pose_xyzyaw)
    return TFMessage(transforms=[transform_stamped(
        rig.map_frame, rig.vehicle_frame, rig.vehicle_transform((x, y, yaw)), t_s,
        quaternion=yaw_to_quaternion(yaw))])


def frame_messages(frame, scenario: str, seed: int, camera_info_fields: dict | None = None,
                   futures: dict[int, np.ndarray] | None = None,
                   rig: SensorRig = DEFAULT_RIG) -> list[tuple[str, object]]:
    """Every message of one bridge ``Frame`` (tps_sim.bridge), as (topic, message) in publication
    order: /clock first, then /tf (map -> vehicle), sensors, odometry, vehicle status and ground
    truth (all stamped ``frame.stamp_s``, delayed sensor data keeps its own stamp), frame ids from
    ``rig``; last the traffic lights' ground-truth states (an empty list without lights). The
    live bridge publishes and the recorder writes exactly this list; ``/tf_static``
    (:func:`tf_static_msg`) and the lights' map knowledge (:func:`traffic_light_info_msg`) are
    published once, latched."""
    t = frame.stamp_s
    ego = frame.state.ego
    pose = (ego.center[0], ego.center[1], ego.yaw)
    out: list[tuple[str, object]] = [(TOPIC_CLOCK, clock_msg(t)), (TOPIC_TF, tf_msg(pose, t, rig))]
    if frame.lidar_points is not None:
        out.append((TOPIC_LIDAR, pointcloud_msg(frame.lidar_points, frame.lidar_stamp_s,
                                                rig.lidar_frame)))
    if frame.image is not None:
        out.append((TOPIC_IMAGE, image_msg(frame.image, frame.image_stamp_s, rig.camera_frame)))
        if camera_info_fields is not None:
            out.append((TOPIC_CAMERA_INFO, camera_info_msg(camera_info_fields, frame.image_stamp_s,
                                                           rig.camera_frame)))
    out.append((TOPIC_ODOMETRY, odometry_msg(pose, ego.speed_mps, ego.yaw_rate, t, rig.map_frame,
                                             rig.vehicle_frame)))
    out.append((TOPIC_STATUS, vehicle_status_msg(ego.speed_mps, ego.accel_mps2, ego.yaw,
                                                 frame.control, t)))
    out.append((TOPIC_GROUND_TRUTH, ground_truth_msg(frame.state, scenario, seed, frame.events, t,
                                                     futures)))
    lights = getattr(frame.scene, "lights", None)
    out.append((TOPIC_LIGHT_STATUS, traffic_light_status_msg(
        [h.id for h in lights.heads] if lights is not None else [],
        lights.states if lights is not None else [])))
    return out
