"""Node plumbing shared by every node: parameters from the schema, ``main()``, spinning until
shutdown (imports rclpy inside the functions that need it, so the module imports without it).

Every node's console script is ``sys.exit(run_node(NODE_CLASS, "<executable>", args))``; its
constructor calls :func:`load_params` (schema ``config/schema/<executable>.schema.json``), which
declares every parameter with a descriptor (description, range, read-only) and raises
:class:`~tps_common.params.ParameterError` naming a bad one; ``run_node`` turns that into exit
code 2 with the message.

Shutdown:

rclpy's signal handler shuts the context down on SIGINT/SIGTERM. Usually ``spin`` then raises
``ExternalShutdownException``, but when the signal lands while the executor is building its wait
set, rclpy raises ``RCLError("... context is not valid ...")`` instead (seen in CI: a clean
SIGTERM stop reported as "exited with code 1"). Both are a requested shutdown, not a failure; any
error while the context is still valid is re-raised.

"""

from __future__ import annotations

import dataclasses
import os
import sys
import time

from tps_common.params import ParameterError, declare_from_schema, load_schema

EXIT_BAD_PARAMETER = 2
EXIT_INJECTED_CRASH = 70  # fault injection: a node's fault_crash_at_s fired (os._exit, no cleanup)
# Set by tps-bringup (tps_bringup.runner) in the environment of a respawned node process: how many
# times the node has been restarted (absent in a node's first process).
RESPAWN_ENV = "TPS_RESPAWN_COUNT"
PYBIND_INTERRUPTED_CONVERSION = "Unable to convert call argument"
INTERRUPT_SHUTDOWN_WAIT_S = 1.0   # how long an interrupted conversion waits for the signal's shutdown [s]


def respawn_count(environ=None) -> int:
    """How many times the graph runner has restarted this node process (``RESPAWN_ENV``; 0 in a
    node's first process, or when it is unreadable)."""
    import os

    raw = (os.environ if environ is None else environ).get(RESPAWN_ENV, "0")
    try:
        return max(int(raw), 0)
    except ValueError:
        return 0


def injected_crash_time(crash_at_s: float, environ=None) -> float:
    """The ``fault_crash_at_s`` a node arms: the parameter in its first process, -1 (off) in a
    respawned one, so that an injected crash fires once per run and a respawn (same parameters)
    does not crash again."""
    return float(crash_at_s) if respawn_count(environ) == 0 else -1.0


def crash_if_due(node, crash_at_s: float, stamp_s: float, what: str) -> None:
    """FAULT INJECTION (a node's ``fault_crash_at_s``, armed through :func:`injected_crash_time`):
    when ``crash_at_s`` >= 0 and an input stamped ``stamp_s`` (finite) at or after it arrived, log
    "injected crash" (FATAL, naming the input) and die at once with ``os._exit(EXIT_INJECTED_CRASH)``,
    without cleanup, like a real crash."""
    import math
    import os

    if crash_at_s < 0.0 or not math.isfinite(stamp_s) or stamp_s < crash_at_s:
        return
    node.get_logger().fatal(f"injected crash: fault_crash_at_s = {crash_at_s:.3f} s, {what} stamped "
                            f"{stamp_s:.3f} s arrived; exiting with code {EXIT_INJECTED_CRASH}")
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(EXIT_INJECTED_CRASH)


def is_requested_shutdown(exc: BaseException, context=None) -> bool:
    """True when ``exc``, raised out of spinning, means a requested shutdown: KeyboardInterrupt,
    ExternalShutdownException, or rclpy's RCLError once ``context`` (default: the global one) is
    down. For loops that spin themselves (``spin_once``) and catch broadly."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    if isinstance(exc, (KeyboardInterrupt, ExternalShutdownException)):
        return True
    if isinstance(exc, RuntimeError) and str(exc).startswith(PYBIND_INTERRUPTED_CONVERSION):
        # SIGINT while a subscription's message is taken: the KeyboardInterrupt raised inside
        # pybind11's argument conversion surfaces as this RuntimeError (seen in CI stopping the
        # talker/listener graph). rclpy shuts the context down from a deferred thread, so give it
        # a moment; a context that stays up means a real conversion failure.
        deadline = time.monotonic() + INTERRUPT_SHUTDOWN_WAIT_S
        while rclpy.ok(context=context) and time.monotonic() < deadline:
            time.sleep(0.01)
        return not rclpy.ok(context=context)
    return isinstance(exc, rclpy._rclpy_pybind11.RCLError) and not rclpy.ok(context=context)


def guard_clock_messages() -> None:
    """Make rclpy's sim-time ``/clock`` subscription survive malformed clocks (call before any node
    is built). rclpy's ``TimeSource.clock_callback`` converts every message with ``Time.from_msg``,
    which raises ValueError on negative seconds: one bad ``/clock`` message killed every node with
    ``use_sim_time`` from inside rclpy (found by tests/fuzz). Such a message is dropped and logged as
    an error naming ``/clock``; the node's time stays where it was. Idempotent."""
    from rclpy.logging import get_logger
    from rclpy.time_source import TimeSource

    if getattr(TimeSource.clock_callback, "_tps_guarded", False):
        return
    original = TimeSource.clock_callback

    def clock_callback(self, msg) -> None:
        if msg.clock.sec < 0:
            get_logger("tps_common.clock").error(
                f"/clock: dropped a malformed clock message (sec {msg.clock.sec} < 0)", throttle_duration_sec=1.0)
            return
        original(self, msg)

    clock_callback._tps_guarded = True
    TimeSource.clock_callback = clock_callback


def spin_until_shutdown(node, executor=None) -> None:
    """Spin ``node`` (on ``executor`` if given) until shutdown; a requested shutdown returns."""
    import rclpy

    try:
        if executor is None:
            rclpy.spin(node)
        else:
            executor.spin()
    except (KeyboardInterrupt, Exception) as exc:
        if not is_requested_shutdown(exc, node.context):
            raise


def load_params(node, schema_name: str, params_cls=None) -> tuple[object, dict]:
    """Declare and validate the node's parameters against ``config/schema/<schema_name>.schema.json``.

    Args:
        node: the rclpy node.
        schema_name: the schema (= the node's executable name).
        params_cls: a frozen params dataclass of the node's core, built from the matching keys
            (its ``__post_init__`` may raise ValueError for cross-parameter checks); None: skip.

    Returns:
        (core params or None, the full validated dict).

    Raises:
        ParameterError: naming the bad parameter and its allowed range.
    """
    values = declare_from_schema(node, load_schema(schema_name))
    if params_cls is None:
        return None, values
    names = {f.name for f in dataclasses.fields(params_cls)}
    try:
        core = params_cls(**{k: v for k, v in values.items() if k in names})
    except ValueError as exc:  # cross-parameter checks of the core dataclass
        raise ParameterError(str(exc)) from exc
    return core, values


def run_node(node_cls, executable: str, args=None) -> int:
    """The body of every console script: init, build the node (a bad parameter exits
    ``EXIT_BAD_PARAMETER`` with the message on stderr), spin until shutdown. An exception with an
    integer ``exit_code`` attribute raised by a callback ends the node with that code (the same
    rule as the single_process host of tps_bringup). Returns the exit code."""
    import rclpy

    rclpy.init(args=args)
    guard_clock_messages()
    try:
        node = node_cls()
    except ParameterError as exc:
        print(f"{executable}: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return EXIT_BAD_PARAMETER
    except BaseException as exc:
        rclpy.try_shutdown()
        if is_requested_shutdown(exc):
            return 0
        raise
    from tps_common.readiness import attach_input_match_reporter

    attach_input_match_reporter(node, log=lambda text: print(f"{executable}: {text}", file=sys.stderr))
    try:
        spin_until_shutdown(node)  # a signal during the wait-set build is a clean stop too
    except Exception as exc:
        code = getattr(exc, "exit_code", None)
        if isinstance(code, int) and not isinstance(code, bool):
            print(f"{executable}: {exc}", file=sys.stderr)
            return code
        raise
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


def exit_now(code: int) -> None:
    """End the process with ``code`` at once, after a clean :func:`run_node` (the node destroyed,
    rclpy shut down): stdio and logging flushed, then ``os._exit``, skipping the interpreter's
    teardown. A node that imported torch and transformers spends 2-7 s (measured on a loaded 2-core
    host) freeing their modules at exit, longer than a launcher's stop grace (tps-bringup's 5 s),
    which then reports the clean stop as a failure. Nothing of the node's state is lost: every
    output went out before rclpy shut down."""
    import logging

    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed stream has nothing left to flush
            pass
    logging.shutdown()
    os._exit(int(code))
