"""single_process host: build every node of a graph in this one process and spin them on one
executor.  Started by :class:`tps_bringup.runner.GraphProcess` as
``python -m tps_bringup.host --graph-json JSON``; not meant to be run by hand.

Each node's module is imported from its console-script entry point and its ``NODE_CLASS`` is
constructed with ``node_name``, ``namespace`` and ``cli_args`` = the same ``--ros-args`` the node
would get as its own process (:meth:`tps_bringup.graph.NodeInvocation.ros_args`).

Exit codes: 0 after SIGINT/SIGTERM; 1 when a node cannot be built or a callback raises; the code of
a ``SystemExit`` raised by a callback (single_threaded executor only: a MultiThreadedExecutor drops
``SystemExit`` raised in its worker threads) or the integer ``exit_code`` attribute of the
exception raised (e.g. :class:`tps_bringup.demo.DemoExit`).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

import rclpy
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor, SingleThreadedExecutor
from tps_common.node import guard_clock_messages, is_requested_shutdown
from tps_common.readiness import attach_input_match_reporter

from tps_bringup.graph import Graph, find_entry_point, graph_from_json, node_invocation

LOG_PREFIX = "single_process host:"


def node_class(package: str, executable: str, executable_path=None) -> type:
    """The ``NODE_CLASS`` of the module behind a node's console script.

    Raises:
        RuntimeError: naming the module when it has no NODE_CLASS.
    """
    module_name, _func = find_entry_point(package, executable, executable_path)
    module = importlib.import_module(module_name)
    cls = getattr(module, "NODE_CLASS", None)
    if cls is None:
        raise RuntimeError(f"module {module_name} (executable '{executable}') defines no NODE_CLASS")
    return cls


def build_nodes(graph: Graph, context=None) -> list:
    """Construct every node of ``graph`` (rclpy must be initialised)."""
    nodes = []
    for spec in graph.nodes:
        inv = node_invocation(spec, graph)
        cls = node_class(spec.package, spec.executable, spec.executable_path)
        kwargs = {"node_name": spec.name, "namespace": spec.namespace or None, "cli_args": inv.ros_args()}
        if context is not None:
            kwargs["context"] = context
        try:
            nodes.append(cls(**kwargs))
        except Exception as exc:
            for node in nodes:
                node.destroy_node()
            raise RuntimeError(f"node '{spec.name}' failed to start: {type(exc).__name__}: {exc}") from exc
        print(f"{LOG_PREFIX} node '{spec.name}' is up ({cls.__module__}.{cls.__name__})", flush=True)
    return nodes


def main(argv: list[str] | None = None) -> int:
    """Entry point of the host process."""
    parser = argparse.ArgumentParser(prog="python -m tps_bringup.host")
    parser.add_argument("--graph-json", required=True)
    parser.add_argument("--executor", choices=("multi_threaded", "single_threaded"), default="multi_threaded")
    args = parser.parse_args(argv)
    graph = graph_from_json(args.graph_json)

    rclpy.init()
    guard_clock_messages()
    executor = MultiThreadedExecutor() if args.executor == "multi_threaded" else SingleThreadedExecutor()
    nodes = []
    code = 0
    try:
        nodes = build_nodes(graph)
        for node in nodes:
            attach_input_match_reporter(node)
            executor.add_node(node)
        print(f"{LOG_PREFIX} spinning {len(nodes)} node(s) on a {args.executor} executor", flush=True)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
        print(f"{LOG_PREFIX} a node requested exit with code {code}", file=sys.stderr, flush=True)
    except Exception as exc:  # noqa: BLE001 - any failure ends the host with a message and code 1
        if not is_requested_shutdown(exc):  # a signal mid wait-set build raises RCLError: a clean stop
            traceback.print_exc()
            code = getattr(exc, "exit_code", 1)
            code = code if isinstance(code, int) and not isinstance(code, bool) and code != 0 else 1
            print(f"{LOG_PREFIX} {type(exc).__name__}: {exc} (exit code {code})", file=sys.stderr, flush=True)
    finally:
        executor.shutdown(timeout_sec=1.0)
        for node in nodes:
            node.destroy_node()
        rclpy.try_shutdown()
    return code


if __name__ == "__main__":
    sys.exit(main())
