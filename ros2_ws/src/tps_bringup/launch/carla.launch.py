"""The full stack alone (perception, light reader, VLM planner, monitor, fallback, arbiter,
controller), remapped onto carla-ros-bridge's topics (config/graph/stack_carla.yaml), for a running
CARLA server + carla-ros-bridge. Nothing here starts CARLA or the bridge.

Synchronous mode (what the stack's closed-loop contract assumes, docs/CONTRACTS.md):
- start carla-ros-bridge with ``synchronous_mode:=True``,
  ``synchronous_mode_wait_for_vehicle_control_command:=True`` and ``fixed_delta_seconds:=0.1``
  (the stack's 10 Hz step): the bridge then ticks CARLA only after the controller's
  ``CarlaEgoVehicleControl`` for the current frame arrived on
  ``/carla/ego_vehicle/vehicle_control_cmd``; it publishes ``/clock``, so every node runs on sim time;
- the ego's ``role_name`` is ``ego_vehicle``; its sensors (objects.json) are a lidar with id
  ``lidar`` (x, y, z, intensity) and an RGB camera with id ``rgb_front``; the stack's lidar and
  camera parameters (range, mount) must match them;
- carla-ros-bridge names the vehicle frame ``ego_vehicle``; the stack works in ``base_link``, so
  this file publishes the identity ``ego_vehicle -> base_link`` on /tf_static
  (``publish_base_link:=false`` if something else does);
- route: ``route_topic`` defaults to carla_waypoint_publisher's ``/carla/ego_vehicle/waypoints``;
  the lane map (``tps_msgs/LaneMap``) has no carla-ros-bridge source: publish one from the town's
  OpenDRIVE map or set the fallback's ``require_lane_map: false``;
- the driving instruction (``tps_msgs/DrivingInstruction`` on ``/tps/instruction``, transient local;
  ``instruction_topic`` to rename) has no carla-ros-bridge source: publish one, e.g.
  ``ros2 topic pub --once --qos-durability transient_local /tps/instruction tps_msgs/msg/DrivingInstruction
  "{header: {frame_id: map}, text: 'keep lane', command: 0, target_speed_mps: -1.0}"``; without it the
  planner does not plan (its diagnostics say why) and the monitor keeps the fallback in charge;
- carla-ros-bridge's ``passive`` mode must be off (the bridge, not another client, ticks the world);
- start order: the stack first (``build_only:=true`` once, then this file), the bridge once the stack
  is up. In synchronous mode the bridge waits only for the controller's command, which the fallback
  chain gives without any model; perception loads its networks before it subscribes, so frames
  ticked before it is up get no DetectedAgents (tests/bringup/test_stack_carla_graph.py waits for
  perception's subscription before starting the simulator for that reason).

    ros2 launch tps_bringup carla.launch.py
    ros2 launch tps_bringup carla.launch.py backend:=tensorrt precision:=int8
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from tps_bringup.launch_support import declare_arguments, graph_actions

GRAPHS = ("stack_carla",)
CARLA_DEFAULTS = {"route_topic": "/carla/ego_vehicle/waypoints"}


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *declare_arguments(defaults=CARLA_DEFAULTS),
        DeclareLaunchArgument("publish_base_link", default_value="true",
                              description="publish the identity ego_vehicle -> base_link on /tf_static"),
        Node(package="tf2_ros", executable="static_transform_publisher", name="base_link_publisher",
             arguments=["--frame-id", "ego_vehicle", "--child-frame-id", "base_link"],
             parameters=[{"use_sim_time": True}], condition=IfCondition(LaunchConfiguration("publish_base_link"))),
        OpaqueFunction(function=lambda context: graph_actions(context, GRAPHS)),
    ])
