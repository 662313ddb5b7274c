"""Replay a rosbag2 (MCAP or sqlite3) through the stack on sim time: ``ros2 bag play --clock``
feeds the bag's topics and /clock, the stack (default: stack_carla, the topics the project's
recorder writes) runs on them, and ``record:=DIR`` records every topic into a result bag. The
launch ends when the bag has been played.

    ros2 launch tps_bringup replay.launch.py bag:=runs/bags/merge_s3 record:=runs/replay/merge_s3
    ros2 launch tps_bringup replay.launch.py bag:=vehicle.mcap graph:=stack lidar_topic:=/lidar/points
"""

from launch import LaunchDescription
from launch.actions import (
    DeclareLaunchArgument,
    ExecuteProcess,
    OpaqueFunction,
    RegisterEventHandler,
    Shutdown,
)
from launch.event_handlers import OnProcessExit
from tps_bringup.launch_support import argument_values, declare_arguments, graph_actions

GRAPHS = ("stack_carla", "stack", "stack_perception")  # the graphs graph:= may name (first = default)
REPLAY_ARGUMENTS = {
    "bag": ("", "rosbag2 folder or file to play (required)"),
    "graph": (GRAPHS[0], f"node graph to run on the bag: {' | '.join(GRAPHS)}"),
    "rate": ("1.0", "playback rate (1.0 = real time)"),
    "record": ("", "record every topic into this bag folder ('' = do not record)"),
}


def _actions(context):
    args = argument_values(context, list(REPLAY_ARGUMENTS))
    if not args["bag"]:
        raise RuntimeError("replay.launch.py needs bag:=PATH")
    if args["graph"] not in GRAPHS:
        raise RuntimeError(f"graph:={args['graph']} is not one of {GRAPHS}")
    stack = graph_actions(context, [args["graph"]], extra_overrides={args["graph"]: ["use_sim_time=true"]})
    play = ExecuteProcess(cmd=["ros2", "bag", "play", args["bag"], "--clock", "--rate", args["rate"]],
                          output="screen", name="bag_play")
    actions = [*stack, play, RegisterEventHandler(OnProcessExit(target_action=play,
                                                                on_exit=[Shutdown(reason="bag played")]))]
    if args["record"]:
        actions.append(ExecuteProcess(cmd=["ros2", "bag", "record", "-a", "-o", args["record"],
                                           "--use-sim-time"], output="screen", name="bag_record"))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *declare_arguments(defaults={"use_sim_time": "true"}),
        *[DeclareLaunchArgument(n, default_value=d, description=t) for n, (d, t) in REPLAY_ARGUMENTS.items()],
        OpaqueFunction(function=_actions),
    ])
