"""ROS 2 launch file for any node graph in config/graph/*.yaml (on a machine with launch_ros):

    ros2 launch launch/graph.launch.py graph:=config/graph/hello.yaml
    ros2 launch launch/graph.launch.py graph:=config/graph/hello.yaml set:="use_sim_time=true;nodes.talker.parameters.rate_hz=2"

The YAML-to-node translation is tps_bringup.graph.NodeInvocation.launch_kwargs(), the same one the
tps-bringup runner uses (and tests), so both start identical nodes. Differences: every node runs as
its own process here (a single_process graph is launched as processes, with a warning), and a
required node that exits shuts the launch down (non-zero exit codes are launch's to report).
"""

from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, Shutdown
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from tps_bringup.graph import invocations, load_graph

from launch import LaunchDescription


def _nodes(context):
    overrides = [s for s in LaunchConfiguration("set").perform(context).split(";") if s.strip()]
    graph = load_graph(LaunchConfiguration("graph").perform(context), overrides)  # GraphError names the problem
    actions = []
    if graph.mode == "single_process":
        actions.append(LogInfo(msg=f"graph '{graph.name}' is single_process: launch_ros starts one process per node"))
    for inv in invocations(graph):
        kwargs = inv.launch_kwargs()
        if inv.required:
            kwargs["on_exit"] = Shutdown(reason=f"required node '{inv.name}' exited")
        actions.append(Node(**kwargs))
    return actions


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("graph", description="node graph YAML (config/graph/*.yaml)"),
        DeclareLaunchArgument("set", default_value="", description="';'-separated KEY=VALUE overrides, as tps-bringup --set"),
        OpaqueFunction(function=_nodes),
    ])
