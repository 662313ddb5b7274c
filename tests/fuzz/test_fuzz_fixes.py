"""The crashes the node fuzz test found (tests/fuzz/test_fuzz_nodes.py), each pinned without DDS:
a negative /clock inside rclpy, a stamp past int32 seconds, a lane map or a route 1e9 m long."""

from __future__ import annotations

import numpy as np
import pytest


def test_a_negative_clock_is_dropped_not_raised_inside_rclpy():
    from builtin_interfaces.msg import Time
    from rclpy.time import Time as RclpyTime
    from rclpy.time_source import TimeSource
    from rosgraph_msgs.msg import Clock
    from tps_common.node import guard_clock_messages

    bad = Clock(clock=Time(sec=-5, nanosec=0))
    with pytest.raises(ValueError):            # what rclpy's callback does with it: killed every sim-time node
        RclpyTime.from_msg(bad.clock)
    guard_clock_messages()
    guard_clock_messages()                     # idempotent
    source = TimeSource()
    source.clock_callback(bad)                 # dropped
    source.clock_callback(Clock(clock=Time(sec=3, nanosec=0)))   # a good one still goes through


def test_stamps_beyond_int32_seconds_are_clamped():
    from tps_common.conversions import seconds_to_duration, seconds_to_time

    t = seconds_to_time(2 ** 31 - 1 + 4.294967295)   # sec 2**31 - 1 with nanosec 2**32 - 1
    assert (t.sec, t.nanosec) == (2 ** 31 - 1, 999_999_999)
    assert seconds_to_duration(1e12).sec == 2 ** 31 - 1
    assert (seconds_to_time(-1.0).sec, seconds_to_time(1.5).nanosec) == (0, 500_000_000)


def _lane_map(xy, width_m=3.5):
    from tps_planner.lane_map import LaneMap, MapLane

    return LaneMap((MapLane("a", np.asarray(xy, float), width_m, 10.0),), ("a",), (), ())


def test_a_lane_map_too_large_or_too_wide_is_refused_before_the_raster():
    from tps_planner.lane_map import MapMask, check_map_extent

    check_map_extent(_lane_map([[0.0, 0.0], [1600.0, 0.0]]))          # a real highway's size
    for bad in (_lane_map([[0.0, 0.0], [0.0, 1e9]]), _lane_map([[0.0, 0.0], [1e4, 1e4]]),
                _lane_map([[0.0, 0.0], [10.0, 0.0]], width_m=1e30), _lane_map([[0.0, 0.0], [10.0, 0.0]], 0.0)):
        with pytest.raises(ValueError):
            check_map_extent(bad)
        with pytest.raises(ValueError):
            MapMask(bad, 0.3, 0.0)


def test_a_route_1e9_m_long_is_a_value_error_not_30_gb():
    from tps_planner.fallback import FallbackParams, make_route

    with pytest.raises(ValueError, match="long"):
        make_route(np.array([[0.0, 0.0], [1e9, 0.0]]), FallbackParams())
    assert len(make_route(np.array([[0.0, 0.0], [400.0, 0.0]]), FallbackParams()).s) > 2


def test_a_cloud_layout_past_a_c_int_is_a_conversion_error():
    from sensor_msgs.msg import PointCloud2, PointField
    from tps_inference.conversions import ConversionError, pointcloud2_to_xyzi

    msg = PointCloud2(height=1, width=2, point_step=2 ** 31 + 8, row_step=0, data=bytes(32))
    msg.fields = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1) for i, n in enumerate("xyz")]
    with pytest.raises(ConversionError):      # was numpy's bare ValueError: the fallback died on it
        pointcloud2_to_xyzi(msg, intensity_field=None)
