"""Any node graph of config/graph/*.yaml (a name or a path) under ros2 launch, with tps-bringup's
--set overrides and the stack's deployment arguments:

    ros2 launch tps_bringup graph.launch.py graph:=hello
    ros2 launch tps_bringup graph.launch.py graph:=config/graph/hello.yaml set:="use_sim_time=true;nodes.talker.parameters.rate_hz=2"

The YAML-to-node translation is tps_bringup.graph.NodeInvocation.launch_kwargs(), the same one the
tps-bringup runner uses (and tests), so both start identical nodes. Differences: every node runs as
its own process here (a single_process graph is launched as processes, with a warning), and a
required node that exits shuts the launch down (non-zero exit codes are launch's to report).
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from tps_bringup.launch_support import declare_arguments, graph_actions

GRAPHS = ()  # none fixed: graph:= names one (checked when the launch runs)


def _nodes(context):
    graph = LaunchConfiguration("graph").perform(context)
    overrides = [s for s in LaunchConfiguration("set").perform(context).split(";") if s.strip()]
    return graph_actions(context, [graph], extra_overrides={graph: overrides})


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        DeclareLaunchArgument("graph", description="node graph: a name under config/graph (e.g. stack) or a YAML path"),
        DeclareLaunchArgument("set", default_value="", description="';'-separated KEY=VALUE overrides, as tps-bringup --set"),
        *declare_arguments(),
        OpaqueFunction(function=_nodes),
    ])
