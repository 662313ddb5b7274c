"""tps_planner.route_maps: the fallback node's route / lane-map builds on a worker thread (no DDS:
the messages are built in memory). A route and its lane map sent together are built once, bad input
is reported (never raised) and the previous map stays in use, the thread outlives any message. The
route's CDR decoder (conversions.path_cdr_to_xy) agrees with rclpy's serialisation."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from geometry_msgs.msg import Point, PoseStamped
from nav_msgs.msg import Path
from planner_helpers import straight_route
from rclpy.serialization import serialize_message
from std_msgs.msg import Header
from tps_msgs.msg import LaneMap, MapLane
from tps_planner.conversions import ConversionError, path_cdr_to_xy
from tps_planner.fallback import FallbackParams, FallbackPlanner, build_route_map, make_route
from tps_planner.route_maps import RouteMapWorker

BUILD_TIMEOUT_S = 30.0            # generous: a loaded 2-core host


def _route_msg(xy: np.ndarray, frame: str = "map") -> Path:
    msg = Path(header=Header(frame_id=frame))
    msg.poses = [PoseStamped(header=msg.header) for _ in xy]
    for ps, (x, y) in zip(msg.poses, xy, strict=True):
        ps.pose.position.x, ps.pose.position.y = float(x), float(y)
        ps.pose.orientation.w = 1.0
    return msg


def _lane_map_msg(y: float, frame: str = "map", width_m: float = 3.5) -> LaneMap:
    """Two lanes along a straight route at lateral ``y`` (the route in the first)."""
    def lane(lane_id, dy, **kw):
        return MapLane(id=lane_id, centerline=[Point(x=-60.0, y=y + dy), Point(x=400.0, y=y + dy)], width_m=width_m,
                       speed_limit_mps=15.0, **kw)
    return LaneMap(header=Header(frame_id=frame), route_lane_ids=["ego"],
                   lanes=[lane("ego", 0.0, left_id="left", can_change_left=True),
                          lane("left", 3.5, right_id="ego", can_change_right=True)])


@pytest.fixture
def worker():
    w = RouteMapWorker(FallbackParams())
    yield w
    w.close()


def _drain(w: RouteMapWorker):
    assert w.wait_idle(BUILD_TIMEOUT_S)
    return w.take()


def test_route_and_lane_map_sent_together_are_built_once(worker):
    """What a new drive sends: route then lane map. Taken together before the lanes are laid: one
    update covering both requests, the lanes of the new map along the new route."""
    gate = threading.Event()
    slow = worker._build

    def held_build():              # hold the thread until both messages are queued
        gate.wait(BUILD_TIMEOUT_S)
        return slow()

    worker._build = held_build
    worker.put_route(_route_msg(straight_route(y=100.0)))
    seq = worker.put_lane_map(_lane_map_msg(100.0))
    gate.set()
    updates = _drain(worker)
    assert len(updates) == 1
    u = updates[0]
    assert u.seq == seq == worker.requested
    assert u.new_route and u.route_error == "" and u.errors == ()
    assert u.built is not None and u.built.lanes is not None and u.built.lane_map_error == ""
    assert np.allclose(u.built.route.xy[:, 1], 100.0)
    assert u.route_xy.shape == (len(straight_route()), 2)


def test_build_matches_the_planners_own(worker):
    """The worker's route map is the one FallbackPlanner.set_route / set_lane_map build inline."""
    params = FallbackParams()
    worker.put_route(_route_msg(straight_route()))
    worker.put_lane_map(_lane_map_msg(0.0))
    built = [u.built for u in _drain(worker) if u.built is not None][-1]
    inline = FallbackPlanner(params)
    inline.set_route(straight_route())
    from tps_planner import conversions as conv

    inline.set_lane_map(conv.lane_map_from_msg(_lane_map_msg(0.0)))
    assert np.array_equal(built.route.xy, inline.route.xy)
    assert np.array_equal(built.v_allow, inline._v_allow)
    assert [(s.lane.lane_id, s.i0, s.i1) for s in built.lanes.strips] == [
        (s.lane.lane_id, s.i0, s.i1) for s in inline.lanes.strips]
    again = build_route_map(make_route(straight_route(), params), inline.lane_map, params)
    assert np.array_equal(again.v_allow, built.v_allow)


def test_bad_route_and_lane_map_are_reported_and_the_last_good_one_stays(worker):
    worker.put_route(_route_msg(straight_route()))
    worker.put_lane_map(_lane_map_msg(0.0))
    good = [u for u in _drain(worker) if u.built is not None][-1].built
    cases = [
        (lambda: worker.put_route(_route_msg(straight_route(), frame="odom")), "route", "is not 'map'"),
        (lambda: worker.put_route(_route_msg(np.array([[1.0, 2.0], [1.0, 2.0]]))), "route", "unusable route"),
        (lambda: worker.put_route(_route_msg(np.array([[0.0, 0.0], [np.nan, 1.0]]))), "route", "NaN"),
        (lambda: worker.put_lane_map(_lane_map_msg(0.0, frame="base_link")), "lane_map", "is not 'map'"),
        (lambda: worker.put_lane_map(_lane_map_msg(0.0, width_m=float("inf"))), "lane_map", "unusable lane map"),
    ]
    for send, aspect, text in cases:
        send()
        (u,) = _drain(worker)
        assert u.built is None and not u.new_route
        assert len(u.errors) == 1 and u.errors[0][0] == aspect and text in u.errors[0][1], u.errors
        if aspect == "route":
            assert text in u.route_error
    # still alive, and the next good input is built over the last good one
    worker.put_route(_route_msg(straight_route(y=3.5)))
    (u,) = _drain(worker)
    assert u.route_error == "" and u.built is not None and u.built.lanes is not None
    assert u.built.lane_map is good.lane_map


def test_an_unexpected_failure_is_reported_and_the_thread_goes_on(worker, monkeypatch):
    """A bug in a build must not end the thread (the node would never get a map again)."""
    import tps_planner.route_maps as rm

    real = rm.build_route_map
    calls = []

    def failing_once(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("boom")
        return real(*args, **kwargs)

    monkeypatch.setattr(rm, "build_route_map", failing_once)
    worker.put_route(_route_msg(straight_route()))
    (u,) = _drain(worker)
    assert u.built is None and u.seq == worker.requested
    assert u.errors[0][0] == "route" and "RuntimeError: boom" in u.errors[0][1]
    worker.put_route(_route_msg(straight_route()))
    (u,) = _drain(worker)
    assert u.built is not None and u.route_error == "" and len(calls) == 2


@pytest.mark.parametrize("frame_ids", [("map", "map"), ("", ""), ("odom", "a"), ("map", "abcdefg"), ("x" * 13, "")])
@pytest.mark.parametrize("n_poses", [0, 1, 2, 7])
def test_route_cdr_decoder_matches_rclpy(frame_ids, n_poses):
    """Every alignment case: header frame ids of 0..13 bytes, odd pose frame ids (the padding before
    each pose's float64 varies from pose to pose)."""
    rng = np.random.default_rng(n_poses)
    xy = rng.normal(0.0, 1e3, (n_poses, 2))
    msg = _route_msg(xy, frame=frame_ids[0])
    for k, ps in enumerate(msg.poses):
        ps.header = Header(frame_id=frame_ids[1][: k % (len(frame_ids[1]) + 1)])   # own header per pose
        ps.pose.position.z, ps.pose.orientation.z = 1.5, 0.3
    frame, got = path_cdr_to_xy(serialize_message(msg))
    assert frame == frame_ids[0]
    assert got.shape == (n_poses, 2) and np.array_equal(got, xy)


def test_route_cdr_decoder_refuses_malformed_bytes():
    raw = serialize_message(_route_msg(straight_route()))
    for bad in (raw[:3], raw[: len(raw) // 2], raw[:-8], b"\x00\x07" + raw[2:]):
        with pytest.raises(ConversionError, match="nav_msgs/Path"):
            path_cdr_to_xy(bad)
    huge = bytearray(raw)
    huge[4 + 12 + 4: 4 + 12 + 8] = (2**31).to_bytes(4, "little")   # pose count far beyond the buffer
    with pytest.raises(ConversionError, match="do not fit"):
        path_cdr_to_xy(bytes(huge))


def test_route_cdr_decoder_on_1000_mutated_routes_only_ever_raises_conversion_error():
    """The planner, monitor and fallback all decode the raw route with this function, on their
    executor or worker threads: whatever arrives (truncated, bytes flipped, lengths corrupted), it
    returns a frame id and an (N, 2) array or raises ConversionError naming nav_msgs/Path."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    raw = serialize_message(_route_msg(straight_route()))

    @settings(max_examples=1000, derandomize=True, database=None, deadline=None,
              suppress_health_check=[HealthCheck.too_slow])
    @given(cut=st.integers(0, len(raw)),
           flips=st.lists(st.tuples(st.integers(0, len(raw) - 1), st.integers(0, 255)), max_size=8))
    def decode(cut, flips):
        buf = bytearray(raw)
        for i, b in flips:
            buf[i] = b
        try:
            frame, xy = path_cdr_to_xy(bytes(buf[:cut]))
        except ConversionError as exc:
            assert "nav_msgs/Path" in str(exc)
            return
        assert isinstance(frame, str) and xy.ndim == 2 and xy.shape[1] == 2

    decode()


def test_worker_takes_the_route_as_cdr_bytes(worker):
    """What the node hands over (its route subscription is raw)."""
    worker.put_route(serialize_message(_route_msg(straight_route(y=7.0))))
    (u,) = _drain(worker)
    assert u.route_error == "" and np.allclose(u.built.route.xy[:, 1], 7.0)
    assert np.array_equal(u.route_xy, straight_route(y=7.0))
    worker.put_route(serialize_message(_route_msg(straight_route(), frame="odom")))
    (u,) = _drain(worker)
    assert u.built is None and u.route_error == "route frame 'odom' is not 'map'"
    worker.put_route(serialize_message(_route_msg(straight_route()))[:100])
    (u,) = _drain(worker)
    assert u.built is None and u.route_error == "unusable route: nav_msgs/Path: 201 poses do not fit in 76 bytes"
