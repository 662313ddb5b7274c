"""The stack alone (no simulator) on a vehicle: perception (lidar detector), the classical
traffic-light reader, the fallback planner, the trajectory arbiter and the controller, as declared
in config/graph/stack.yaml (the same file tps-bringup runs).

    ros2 launch tps_bringup stack.launch.py
    ros2 launch tps_bringup stack.launch.py backend:=tensorrt precision:=fp16 lidar_topic:=/lidar/points
    ros2 launch tps_bringup stack.launch.py build_only:=true      # build/validate engines, then exit
    ros2 launch tps_bringup stack.launch.py --show-args           # every argument, described

Equivalent without launch_ros: tps-bringup config/graph/stack.yaml --arg backend=tensorrt ...
"""

from launch import LaunchDescription
from launch.actions import OpaqueFunction
from tps_bringup.launch_support import declare_arguments, graph_actions

GRAPHS = ("stack",)


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *declare_arguments(),
        OpaqueFunction(function=lambda context: graph_actions(context, GRAPHS)),
    ])
