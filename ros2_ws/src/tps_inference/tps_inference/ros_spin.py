"""Spinning a node until shutdown, shared by every node's ``main()``.

rclpy's signal handler shuts the context down on SIGINT/SIGTERM. Usually ``spin`` then raises
``ExternalShutdownException``, but when the signal lands while the executor is building its wait
set, rclpy raises ``RCLError("... context is not valid ...")`` instead (seen in CI: a clean
SIGTERM stop reported as "exited with code 1"). Both are a requested shutdown, not a failure; any
error while the context is still valid is re-raised.

rclpy is imported inside the function, so this module imports without it.
"""

from __future__ import annotations


def is_requested_shutdown(exc: BaseException, context=None) -> bool:
    """True when ``exc``, raised out of spinning, means a requested shutdown: KeyboardInterrupt,
    ExternalShutdownException, or rclpy's RCLError once ``context`` (default: the global one) is
    down. For loops that spin themselves (``spin_once``) and catch broadly."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    if isinstance(exc, (KeyboardInterrupt, ExternalShutdownException)):
        return True
    return isinstance(exc, rclpy._rclpy_pybind11.RCLError) and not rclpy.ok(context=context)


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
