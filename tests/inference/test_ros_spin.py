"""Which exceptions out of spinning mean a requested shutdown (tps_common.node)."""

from __future__ import annotations

import pytest

rclpy = pytest.importorskip("rclpy")

from rclpy.executors import ExternalShutdownException  # noqa: E402
from tps_common.node import is_requested_shutdown  # noqa: E402


def test_rcl_error_is_a_shutdown_only_once_the_context_is_down():
    ctx = rclpy.Context()
    rclpy.init(context=ctx)
    err = rclpy._rclpy_pybind11.RCLError("failed to create guard condition: the given context is not valid")
    try:
        assert not is_requested_shutdown(err, ctx), "a live context: the RCLError is a real failure"
        assert not is_requested_shutdown(RuntimeError("Unable to convert call argument '0'"), ctx)
    finally:
        ctx.try_shutdown()
    assert is_requested_shutdown(err, ctx)
    assert is_requested_shutdown(KeyboardInterrupt(), ctx)
    assert is_requested_shutdown(ExternalShutdownException(), ctx)
    assert not is_requested_shutdown(RuntimeError("SUMO refused the ego"), ctx)
    # a signal that interrupted pybind11's argument conversion in take_message, after shutdown
    interrupted = RuntimeError("Unable to convert call argument '0' to Python object (#define ...)")
    assert is_requested_shutdown(interrupted, ctx)
    assert not is_requested_shutdown(ValueError("bad"), ctx)
