"""What the ROS 2 launch files of this package share: their arguments and the translation of one
or more graph files (``config/graph/*.yaml``) into ``launch_ros`` Node actions, through the same
functions as ``tps-bringup`` (:mod:`tps_bringup.graph`, :mod:`tps_bringup.deploy`).

Imports ``launch``/``launch_ros`` (a system ROS 2 install; not on PyPI) inside the functions, so
that the module and its callers' syntax can be checked anywhere.

A node with ``respawn: true`` becomes a Node action with launch's ``respawn``/``respawn_delay``
(``NodeInvocation.launch_kwargs``) and, not being required, no Shutdown on exit. launch restarts it
with an unchanged environment (no ``TPS_RESPAWN_COUNT``), so an injected ``fault_crash_at_s`` would
fire again in every respawn: fault injection runs through ``tps-bringup``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from tps_bringup.deploy import (
    STACK_ARGUMENTS,
    argument_defaults,
    build_only_graph,
    deployment_env,
    graph_file,
    load_graph_data,
    repo_root,
    stack_overrides,
)
from tps_bringup.graph import invocations, load_graph


def declare_arguments(arguments: Mapping[str, tuple[str, str]] = STACK_ARGUMENTS,
                      defaults: Mapping[str, str] | None = None) -> list:
    """One ``DeclareLaunchArgument`` per argument, each with its description; ``backend`` and
    ``precision`` default to ``$TPS_BACKEND``/``$TPS_PRECISION`` where set (deploy.argument_defaults)."""
    from launch.actions import DeclareLaunchArgument

    defaults = {**argument_defaults(), **dict(defaults or {})}
    return [DeclareLaunchArgument(name, default_value=defaults.get(name, default), description=description)
            for name, (default, description) in arguments.items()]


def argument_values(context, names: Sequence[str]) -> dict[str, str]:
    from launch.substitutions import LaunchConfiguration

    return {name: LaunchConfiguration(name).perform(context) for name in names}


def graph_actions(context, graphs: Sequence[str], *, extra_overrides: Mapping[str, Sequence[str]] | None = None,
                  shutdown_on_required_exit: bool = True) -> list:
    """Node actions for every node of ``graphs`` (names under config/graph, or paths), with the
    stack arguments applied. With ``build_only:=true`` only the model nodes start, one after the
    other, and the launch ends when the last has exited."""
    from launch.actions import LogInfo, RegisterEventHandler, Shutdown
    from launch.event_handlers import OnProcessExit
    from launch_ros.actions import Node

    values = argument_values(context, list(STACK_ARGUMENTS))
    build_only = values.get("build_only", "false").strip().lower() in ("true", "1", "yes", "on")
    root = repo_root()
    env = deployment_env(values)
    actions, nodes = [], []
    for name in graphs:
        path = graph_file(name, root)
        overrides = stack_overrides(load_graph_data(path), values, root) + list((extra_overrides or {}).get(name, ()))
        graph = load_graph(path, overrides, root=root, check_executables=False)  # GraphError names the problem
        if build_only:
            graph = build_only_graph(graph)
        elif graph.mode == "single_process":
            actions.append(LogInfo(msg=f"graph '{graph.name}' is single_process: launch_ros starts one process per node"))
        for inv in invocations(graph):
            kwargs = inv.launch_kwargs()
            if env:
                kwargs["additional_env"] = dict(env)
            if inv.required and shutdown_on_required_exit and not build_only:
                kwargs["on_exit"] = Shutdown(reason=f"required node '{inv.name}' exited")
            nodes.append(Node(**kwargs))
    if not build_only:
        return actions + nodes
    if not nodes:
        return [LogInfo(msg="build_only: no model node in " + ", ".join(graphs))]
    # one engine build at a time: each model node starts when the previous one has exited
    chained = [nodes[0]]
    for prev, nxt in zip(nodes, nodes[1:], strict=False):
        chained.append(RegisterEventHandler(OnProcessExit(target_action=prev, on_exit=[nxt])))
    return [LogInfo(msg=f"build_only: {len(nodes)} model node(s) build/validate their engines and exit"), *chained]
