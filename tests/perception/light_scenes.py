"""Synthetic traffic-light scenes for the reader and sensor tests (imported by name: pytest puts
this folder on sys.path): a straight road heading +x, the ego at the origin, one far-side head
``distance`` metres ahead over the ego's lane (or beside it), rendered by the simulator's camera."""

from __future__ import annotations

import math

import numpy as np
from tps_common.traffic_lights import (
    HOUSING_DEPTH_M,
    HOUSING_HEIGHT_M,
    HOUSING_WIDTH_M,
    LightHead,
)
from tps_sim.sensors.camera import CameraModel, CameraParams
from tps_sim.sensors.rig import SensorRig
from tps_sim.sensors.scene3d import (
    MAT_SIGNAL,
    SIGNAL_ID_BASE,
    BoxSet,
    LightScene,
    Scene3D,
)
from tps_sim.sensors.synthetic import straight_road

HEAD_Z_M = 5.5
STOP_BEFORE_HEAD_M = 31.0     # far-side heads: the stop line is this far before the head


def light_head(distance_m: float, lateral_m: float = 0.0, light_id: int = 1,
               facing_yaw: float = math.pi) -> LightHead:
    """A head ``distance_m`` ahead of the origin (map +x), ``lateral_m`` to the left, facing
    ``facing_yaw`` (pi: back towards the ego)."""
    lane_yaw = facing_yaw - math.pi
    stop = np.array([distance_m - STOP_BEFORE_HEAD_M, lateral_m])
    return LightHead(light_id, (distance_m, lateral_m, HEAD_Z_M), facing_yaw, stop, lane_yaw, 3.5)


def light_scene(heads, states, occluders: BoxSet | None = None, ego_pose=(0.0, 0.0, 0.0)) -> Scene3D:
    """The heads (their housings only) in the given states on a straight road."""
    heads = list(heads)
    n = len(heads)
    boxes = BoxSet(SIGNAL_ID_BASE + np.arange(n), np.array([h.position for h in heads]).reshape(n, 3),
                   np.tile([HOUSING_DEPTH_M, HOUSING_WIDTH_M, HOUSING_HEIGHT_M], (n, 1)),
                   np.array([h.yaw for h in heads]), np.full(n, MAT_SIGNAL, np.int16))
    lights = LightScene(tuple(heads), np.asarray(states, np.uint8), boxes, np.arange(n))
    road = straight_road(lanes=2, length_m=400.0)
    return Scene3D(agents=occluders if occluders is not None else BoxSet.empty(),
                   statics=BoxSet.empty(), road=road, ego_pose=ego_pose, lights=lights)


def render(scene: Scene3D, params: CameraParams | None = None):
    """(image, K, T_map<-optical) as the node would have them."""
    camera = CameraModel(params)
    image = camera.render(scene)
    rig = SensorRig(camera_mount=camera.params.mount)
    optical_to_map = rig.vehicle_transform(scene.ego_pose) @ camera.optical_mount
    return image, camera.intrinsics(), optical_to_map


def box(center, size, yaw=0.0, material=3, box_id=1) -> BoxSet:
    """One box (default: a bus, material 3)."""
    return BoxSet(np.array([box_id]), np.array([center], float), np.array([size], float),
                  np.array([yaw]), np.array([material], np.int16))
