"""The simulated ego's frame tree: frame names and sensor mounts, one source of truth for the
sensor models (``LidarParams.mount``, ``CameraParams.mount``) and for ``/tf_static``.

Tree (docs/CONTRACTS.md "Frames and units"), with carla-ros-bridge's default names::

    map --(/tf, every step)--> ego_vehicle --(/tf_static, identity)--> base_link
                                           --(/tf_static, lidar_mount)--> ego_vehicle/lidar
                                           --(/tf_static, camera_mount + optical turn)-->
                                                                      ego_vehicle/rgb_front

``ego_vehicle`` is carla-ros-bridge's name for the vehicle frame (odometry's child frame) and
``base_link`` the stack's (REP-105; detections are published in it). In the simulator they are the
same frame, so the bridge publishes an identity transform between them. The sensor frames hang
off the vehicle frame as carla-ros-bridge hangs them; the mounts are given relative to base_link,
which is the same thing. The camera frame is the *optical* frame (x right, y down, z forward),
as carla-ros-bridge turns its camera frames; the mount gives the pose of the camera body (x along
the optical axis), the turn is added here. ROS-free.
"""

from __future__ import annotations

from dataclasses import dataclass

from tps_common.frames import OPTICAL_IN_BODY, RigidTransform  # noqa: F401 - re-exported
from tps_common.params import ParameterError

from tps_sim.sensors.scene3d import CAMERA_MOUNT, LIDAR_MOUNT, mount_transform, mount_tuple

# carla-ros-bridge's frame names (role name ego_vehicle, sensors 'lidar' and 'rgb_front').
MAP_FRAME = "map"
VEHICLE_FRAME = "ego_vehicle"
BASE_FRAME = "base_link"
LIDAR_FRAME = "ego_vehicle/lidar"
CAMERA_FRAME = "ego_vehicle/rgb_front"
# Camera body (x forward, y left, z up) -> optical (x right, y down, z forward): the rotation of
# the optical frame in the body frame (carla-ros-bridge's quat_swap matrix; one copy, in
# tps_common.frames, shared with the nodes that read the camera).


@dataclass(frozen=True)
class SensorRig:
    """Frame names and sensor mounts of the simulated ego (the ``sim_bridge`` parameters of the
    same names).

    Attributes:
        map_frame: world frame (odometry's frame, parent of the vehicle on ``/tf``).
        vehicle_frame: the ego vehicle (odometry's child frame; carla-ros-bridge ``ego_vehicle``).
        base_frame: the stack's base_link, published as an identity child of ``vehicle_frame``;
            empty, or equal to ``vehicle_frame``, publishes no such transform.
        lidar_frame: frame of the point clouds.
        camera_frame: optical frame of the images and CameraInfo.
        lidar_mount: x, y, z [m], roll, pitch, yaw [rad] of the lidar in base_link.
        camera_mount: the same for the camera body frame (x along the optical axis).
    """

    map_frame: str = MAP_FRAME
    vehicle_frame: str = VEHICLE_FRAME
    base_frame: str = BASE_FRAME
    lidar_frame: str = LIDAR_FRAME
    camera_frame: str = CAMERA_FRAME
    lidar_mount: tuple[float, ...] = LIDAR_MOUNT
    camera_mount: tuple[float, ...] = CAMERA_MOUNT

    def __post_init__(self) -> None:
        names = {"map_frame": self.map_frame, "vehicle_frame": self.vehicle_frame,
                 "lidar_frame": self.lidar_frame, "camera_frame": self.camera_frame}
        if self.base_frame:
            names["base_frame"] = self.base_frame
        for name, value in names.items():
            if not isinstance(value, str) or not value.strip() or value != value.strip():
                raise ParameterError(f"parameter '{name}' = {value!r} must be a non-empty frame id "
                                     "without surrounding spaces")
            if value.startswith("/"):
                raise ParameterError(f"parameter '{name}' = {value!r}: frame ids have no leading "
                                     "'/' in ROS 2")
        seen: dict[str, str] = {}
        for name, value in names.items():
            if value in seen and not (name == "base_frame" and seen[value] == "vehicle_frame"):
                raise ParameterError(f"parameters '{seen[value]}' and '{name}' name the same "
                                     f"frame {value!r}")
            seen.setdefault(value, name)
        for name in ("lidar_mount", "camera_mount"):
            try:
                mount = mount_tuple(name, getattr(self, name))
            except ValueError as exc:
                raise ParameterError(str(exc)) from None
            if mount[2] <= 0.0:
                raise ParameterError(f"parameter '{name}': z = {mount[2]} m must be > 0 (above "
                                     "the ground)")
            object.__setattr__(self, name, mount)

    @classmethod
    def from_values(cls, values: dict) -> SensorRig:
        """From a dict that may hold other parameters too (only the rig's names are read)."""
        names = set(cls.__dataclass_fields__)
        return cls(**{k: (tuple(v) if k.endswith("_mount") else v)
                      for k, v in values.items() if k in names})

    @property
    def lidar_transform(self) -> RigidTransform:
        """``T_vehicle<-lidar``."""
        return mount_transform(self.lidar_mount)

    @property
    def camera_optical_transform(self) -> RigidTransform:
        """``T_vehicle<-camera optical frame`` (mount, then the body -> optical turn)."""
        return mount_transform(self.camera_mount) @ OPTICAL_IN_BODY

    def static_transforms(self, *, camera: bool = True,
                          lidar: bool = True) -> list[tuple[str, str, RigidTransform]]:
        """(parent, child, ``T_parent<-child``) of every fixed edge, in publication order:
        vehicle -> base_link (identity; unless ``base_frame`` is empty or the vehicle frame),
        vehicle -> lidar, vehicle -> camera optical frame (only the enabled sensors)."""
        out = []
        if self.base_frame and self.base_frame != self.vehicle_frame:
            out.append((self.vehicle_frame, self.base_frame, RigidTransform.identity()))
        if lidar:
            out.append((self.vehicle_frame, self.lidar_frame, self.lidar_transform))
        if camera:
            out.append((self.vehicle_frame, self.camera_frame, self.camera_optical_transform))
        return out

    def vehicle_transform(self, ego_pose: tuple[float, float, float]) -> RigidTransform:
        """``T_map<-vehicle`` of a yaw-only ego pose (x [m], y [m], yaw [rad]) on the ground."""
        x, y, yaw = (float(v) for v in ego_pose)
        return RigidTransform.from_xyz_rpy((x, y, 0.0), (0.0, 0.0, yaw))
