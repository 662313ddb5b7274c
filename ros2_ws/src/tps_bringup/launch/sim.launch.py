"""The stack + the built-in simulator: the SUMO world behind the carla-ros-bridge topic contract
(config/graph/carla_sim_bridge.yaml) and the stack-only CARLA graph (config/graph/stack_carla.yaml),
synchronous on /clock. The episode's end (the bridge exits) ends the launch.

    ros2 launch tps_bringup sim.launch.py scenario:=merge seed:=3 duration_s:=60.0

Equivalent without launch_ros (two terminals):
    tps-bringup config/graph/carla_sim_bridge.yaml --set nodes.sim_bridge.parameters.scenario=merge
    tps-bringup config/graph/stack_carla.yaml
"""

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from tps_bringup.launch_support import argument_values, declare_arguments, graph_actions

GRAPHS = ("carla_sim_bridge", "stack_carla")
SIM_ARGUMENTS = {
    "scenario": ("highway", "simulator scenario (tps_sim.world.SCENARIOS: highway, merge, roundabout, ...)"),
    "seed": ("0", "episode seed (held-out test seeds 9000..9099 are for evaluation only)"),
    "duration_s": ("30.0", "episode length in simulated seconds"),
}


def _actions(context):
    sim = argument_values(context, list(SIM_ARGUMENTS))
    bridge = [f"nodes.sim_bridge.parameters.scenario={sim['scenario']}",
              f"nodes.sim_bridge.parameters.seed={int(sim['seed'])}",
              f"nodes.sim_bridge.parameters.duration_s={float(sim['duration_s'])}"]
    return graph_actions(context, GRAPHS, extra_overrides={"carla_sim_bridge": bridge})


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([
        *declare_arguments(),
        *[DeclareLaunchArgument(n, default_value=d, description=t) for n, (d, t) in SIM_ARGUMENTS.items()],
        OpaqueFunction(function=_actions),
    ])
