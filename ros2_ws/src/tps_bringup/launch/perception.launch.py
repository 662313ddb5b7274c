"""Perception alone (lidar detector + classical traffic-light reader) on the stack's topic names,
from config/graph/stack_perception.yaml: sensor bring-up on a vehicle, or a bag through perception.

    ros2 launch tps_bringup perception.launch.py lidar_topic:=/lidar/points lidar_frame:=lidar_top
    ros2 launch tps_bringup perception.launch.py build_only:=true
"""

from launch import LaunchDescription
from launch.actions import OpaqueFunction
from tps_bringup.launch_support import declare_arguments, graph_actions

GRAPHS = ("stack_perception",)


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *declare_arguments(),
        OpaqueFunction(function=lambda context: graph_actions(context, GRAPHS)),
    ])
