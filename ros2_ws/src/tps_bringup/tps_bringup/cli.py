"""``tps-bringup GRAPH.yaml [--set key=value ...] [--dry-run]``: start a node graph.

Exit codes: 0 clean stop; 1 a node failed (or did not stop cleanly); 2 the graph file is invalid.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from tps_bringup.deploy import (
    STACK_ARGUMENTS,
    build_only_graph,
    deployment_env,
    load_graph_data,
    stack_overrides,
)
from tps_bringup.graph import Graph, GraphError, find_root, load_graph
from tps_bringup.runner import DEFAULT_GRACE_S, GraphProcess, run_build_only, run_graph

EXIT_BAD_GRAPH = 2


def _parse_env(items: list[str]) -> dict[str, str]:
    env = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise GraphError(f"--env {item!r}: expected NAME=VALUE")
        env[key] = value
    return env


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    p = argparse.ArgumentParser(
        prog="tps-bringup",
        description="Start the ROS 2 node graph declared in a config/graph/*.yaml file.",
    )
    p.add_argument("graph", help="graph YAML file (format: docs/CONTRACTS.md, 'Node graph files')")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a graph value, e.g. use_sim_time=false, "
                        "nodes.talker.parameters.rate_hz=20, nodes.talker.remaps./chatter=/x (repeatable)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment variable for every node, e.g. ROS_DOMAIN_ID=51 (repeatable)")
    p.add_argument("--arg", dest="deploy_args", action="append", default=[], metavar="NAME=VALUE",
                   help="a deployment argument, as the ROS 2 launch files take them (repeatable): "
                        + ", ".join(STACK_ARGUMENTS))
    p.add_argument("--build-only", action="store_true",
                   help="start only the model nodes with build_only:=true, one after the other: each builds or "
                        "validates its engines, reports and exits; exit 0 when every one is ready")
    p.add_argument("--dry-run", action="store_true", help="validate and print the commands; start nothing")
    p.add_argument("--duration-s", type=float, default=None,
                   help="stop the graph cleanly (SIGINT) after this many seconds (default: run until stopped)")
    p.add_argument("--grace-s", type=float, default=DEFAULT_GRACE_S,
                   help="seconds to wait after each stop signal before escalating (default %(default)s)")
    p.add_argument("--executor", choices=("multi_threaded", "single_threaded"), default="multi_threaded",
                   help="executor of single_process mode (default %(default)s)")
    p.add_argument("--root", default=None,
                   help="repository root for relative parameter-file paths (default: $TPS_ROOT or found "
                        "from the graph file)")
    p.add_argument("--no-colour", "--no-color", dest="colour", action="store_false", default=None,
                   help="plain [name] prefixes")
    return p


def _print_dry_run(graph: Graph, env: dict[str, str], executor: str) -> None:
    """Print the graph summary and every command that would be started."""
    gp = GraphProcess(graph, env=env, executor=executor)
    print(f"# graph '{graph.name}' ({graph.mode}, use_sim_time={str(graph.use_sim_time).lower()}), "
          f"{len(graph.nodes)} node(s), root {graph.root}")
    if graph.mode == "single_process":
        for inv in gp.node_invocations():
            print(f"# node {inv.name}: cli_args = {shlex.join(inv.ros_args())}")
    for label, command in gp.commands():
        print(f"[{label}] {shlex.join(command)}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    """Console script ``tps-bringup``."""
    args = build_parser().parse_args(argv)
    try:
        env = _parse_env(args.env)
        overrides = list(args.overrides)
        if args.deploy_args:
            deploy = _parse_env(args.deploy_args)
            unknown = sorted(set(deploy) - set(STACK_ARGUMENTS))
            if unknown:
                raise GraphError(f"--arg {unknown}: unknown; known: {', '.join(STACK_ARGUMENTS)}")
            root = Path(args.root).resolve() if args.root else find_root(Path(args.graph).resolve().parent)
            try:
                overrides = stack_overrides(load_graph_data(Path(args.graph)), deploy, root) + overrides
            except (OSError, ValueError) as exc:
                raise GraphError(f"--arg: {exc}") from exc
            env = {**deployment_env(deploy), **env}
        graph = load_graph(args.graph, overrides, root=args.root)
    except GraphError as exc:
        print(f"tps-bringup: error: {exc}", file=sys.stderr)
        return EXIT_BAD_GRAPH
    if args.build_only:
        graph = build_only_graph(graph)
    if args.dry_run:
        try:
            _print_dry_run(graph, env, args.executor)
        except BrokenPipeError:  # piped into `head`: the reader has what it wanted
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    if args.build_only:
        return run_build_only(graph, env=env, colour=args.colour)
    if args.duration_s is not None and args.duration_s <= 0:
        print(f"tps-bringup: error: --duration-s must be > 0, got {args.duration_s}", file=sys.stderr)
        return EXIT_BAD_GRAPH
    return run_graph(graph, env=env, grace_s=args.grace_s, colour=args.colour, executor=args.executor,
                     duration_s=args.duration_s)


if __name__ == "__main__":
    sys.exit(main())
