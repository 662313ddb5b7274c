"""The simulated ego's frame tree (tps_sim.sensors.rig): one source of truth for the sensor
models, /tf_static and the sim_bridge parameters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tps_common.frames import RigidTransform
from tps_common.params import ParameterError, load_schema
from tps_sim.bridge import BridgeParams
from tps_sim.sensors.camera import BODY_TO_OPTICAL, CameraModel, CameraParams
from tps_sim.sensors.lidar import LidarParams
from tps_sim.sensors.rig import OPTICAL_IN_BODY, SensorRig
from tps_sim.sensors.scene3d import CAMERA_MOUNT, CAMERA_OFFSET_M, LIDAR_HEIGHT_M, LIDAR_MOUNT

RIG_PARAMS = ("map_frame", "vehicle_frame", "base_frame", "lidar_frame", "camera_frame",
              "lidar_mount", "camera_mount")


def test_defaults_agree_everywhere():
    """scene3d's mounts = the sensor models' defaults = the rig's = BridgeParams' = the sim_bridge
    schema and parameter file (carla-ros-bridge frame names)."""
    assert LIDAR_MOUNT == (0.0, 0.0, LIDAR_HEIGHT_M, 0.0, 0.0, 0.0)
    assert CAMERA_MOUNT == (*CAMERA_OFFSET_M, 0.0, 0.0, 0.0)
    assert LidarParams().mount == LIDAR_MOUNT and CameraParams().mount == CAMERA_MOUNT
    rig, bridge = SensorRig(), BridgeParams()
    schema = load_schema("sim_bridge")["parameters"]
    for name in RIG_PARAMS:
        default = schema[name]["default"]
        assert getattr(rig, name) == getattr(bridge, name)
        assert (tuple(default) if name.endswith("_mount") else default) == getattr(rig, name), name
    assert (rig.map_frame, rig.vehicle_frame, rig.base_frame, rig.lidar_frame, rig.camera_frame) == (
        "map", "ego_vehicle", "base_link", "ego_vehicle/lidar", "ego_vehicle/rgb_front")
    import yaml
    from tps_common.params import config_dir

    values = yaml.safe_load((config_dir() / "sim_bridge.param.yaml").read_text())
    values = values["/**"]["ros__parameters"]
    for name in RIG_PARAMS:
        assert values[name] == schema[name]["default"], name


def test_static_transforms_and_optical_frame():
    rig = SensorRig(lidar_mount=(1.2, 0.0, 2.0, 0.0, math.radians(2.0), math.radians(1.0)))
    edges = rig.static_transforms()
    assert [(p, c) for p, c, _ in edges] == [("ego_vehicle", "base_link"),
                                             ("ego_vehicle", "ego_vehicle/lidar"),
                                             ("ego_vehicle", "ego_vehicle/rgb_front")]
    assert edges[0][2].almost_equal(RigidTransform.identity())
    assert edges[1][2].almost_equal(RigidTransform.from_xyz_rpy(
        (1.2, 0.0, 2.0), (0.0, math.radians(2.0), math.radians(1.0))))
    # optical frame: z along the camera's view (+x of base_link), x to the right (-y), y down (-z)
    optical = edges[2][2]
    assert np.allclose(optical.rotation, [[0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    assert np.allclose(optical.translation, CAMERA_OFFSET_M)
    assert np.allclose(optical.quaternion, (-0.5, 0.5, -0.5, 0.5))
    assert np.array_equal(OPTICAL_IN_BODY.rotation, BODY_TO_OPTICAL.T)
    assert CameraModel().optical_mount.almost_equal(optical)
    assert [c for _, c, _ in rig.static_transforms(camera=False)] == ["base_link", "ego_vehicle/lidar"]
    # no base_link edge when it is the vehicle frame itself, or empty
    assert len(SensorRig(base_frame="").static_transforms()) == 2
    assert len(SensorRig(base_frame="ego_vehicle").static_transforms()) == 2
    assert rig.vehicle_transform((3.0, 4.0, 0.5)).almost_equal(
        RigidTransform.from_xyz_rpy((3.0, 4.0, 0.0), (0.0, 0.0, 0.5)))


@pytest.mark.parametrize(("values", "match"), [
    ({"lidar_frame": ""}, "'lidar_frame'"),
    ({"camera_frame": "/ego_vehicle/rgb_front"}, "'camera_frame'.*leading '/'"),
    ({"lidar_frame": "ego_vehicle"}, "'vehicle_frame' and 'lidar_frame' name the same frame"),
    ({"lidar_mount": [0.0, 0.0, 1.8]}, "'lidar_mount' must have 6 numbers"),
    ({"lidar_mount": [0.0, 0.0, -1.0, 0.0, 0.0, 0.0]}, "'lidar_mount': z = -1.0 m must be > 0"),
    ({"camera_mount": [1.5, 0.0, 1.5, 0.0, 2.0, 0.0]}, "'camera_mount': pitch = 2.0 rad"),
])
def test_bad_rig_parameters_name_the_parameter(values, match):
    with pytest.raises(ParameterError, match=match):
        SensorRig.from_values(values)
    with pytest.raises(ParameterError, match=match):
        BridgeParams.from_values(values)


def test_bridge_params_take_rclpy_arrays():
    import array

    mount = array.array("d", [1.2, 0.0, 2.0, 0.0, 0.03, 0.01])
    params = BridgeParams.from_values({"lidar_mount": mount})
    assert params.lidar_mount == (1.2, 0.0, 2.0, 0.0, 0.03, 0.01)
