"""Spinning a node until shutdown, shared by every node's ``main()``.

rclpy's signal handler shuts the context down on SIGINT/SIGTERM. Usually ``spin`` then raises
``ExternalShutdownException``, but when the signal lands while the executor is building its wait
set, rclpy raises ``RCLError("... context is not valid ...")`` instead (seen in CI: a clean
SIGTERM stop reported as "exited with code 1"). Both are a requested shutdown, not a failure; any
error while the context is still valid is re-raised.

rclpy is imported inside the function, so this module imports without it.
"""

from __future__ import annotations


def spin_until_shutdown(node, executor=None) -> None:
    """Spin ``node`` (on ``executor`` if given) until shutdown; a requested shutdown returns."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    try:
        if executor is None:
            rclpy.spin(node)
        else:
            executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except rclpy._rclpy_pybind11.RCLError:
        if node.context.ok():
            raise
