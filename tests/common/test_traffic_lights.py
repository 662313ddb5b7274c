"""tps_common.traffic_lights: the light model, CARLA info <-> head round trip, heads on a route."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tps_common.traffic_lights import (
    GREEN,
    HOUSING_DEPTH_M,
    LAMP_OFFSETS_M,
    LAMP_PROUD_M,
    OFF,
    RED,
    TRIGGER_DEPTH_M,
    UNKNOWN,
    YELLOW,
    LightHead,
    heads_on_route,
    most_restrictive,
    project_on_polyline,
    state_name,
)

TOL = 1e-9


def head(light_id=1, position=(0.0, 30.0, 5.5), stop=(0.0, 0.0), lane_yaw=math.pi / 2,
         width=3.2) -> LightHead:
    """A far-side head 30 m past a stop line at the origin, for a lane heading north."""
    return LightHead(light_id, position, lane_yaw + math.pi, stop, lane_yaw, width)


def test_most_restrictive_and_names():
    assert most_restrictive([GREEN, RED, YELLOW]) == RED
    assert most_restrictive([GREEN, YELLOW]) == YELLOW
    assert most_restrictive([GREEN, OFF]) == GREEN
    assert most_restrictive([]) == UNKNOWN
    assert [state_name(s) for s in (RED, YELLOW, GREEN, OFF, UNKNOWN, 9)] == [
        "red", "yellow", "green", "off", "unknown", "unknown"]


def test_lamps_stack_on_the_front_face_red_on_top():
    h = head()
    lamps = h.lamp_centres()
    # facing south (towards the approach): the front face is 0.175 m + proud to the south
    assert np.allclose(lamps[:, 1], 30.0 - (0.5 * HOUSING_DEPTH_M + LAMP_PROUD_M))
    assert np.allclose(lamps[:, 2], 5.5 + np.array([LAMP_OFFSETS_M[s] for s in (RED, YELLOW, GREEN)]))
    assert lamps[0, 2] > lamps[1, 2] > lamps[2, 2]
    poly = h.lamp_polygon(GREEN, 12)
    assert poly.shape == (12, 3)
    assert np.allclose(np.linalg.norm(poly - lamps[2], axis=1), 0.15)
    assert np.allclose(poly[:, 1], lamps[2, 1])          # in the front plane


@pytest.mark.parametrize("yaw", [0.0, 0.7, -2.5, math.pi])
def test_info_round_trip_recovers_the_stop_line(yaw):
    stop = np.array([12.0, -4.0])
    d = np.array([math.cos(yaw), math.sin(yaw)])
    h = LightHead(7, np.array([*(stop + 31.0 * d), 5.5]), yaw + math.pi, stop, yaw, 3.2)
    centre, size = h.trigger_volume()
    assert size[0] == pytest.approx(TRIGGER_DEPTH_M) and size[1] == pytest.approx(3.2)
    # the box starts at the stop line and extends upstream (+x of the head frame)
    assert centre[0] - 0.5 * size[0] == pytest.approx(31.0)
    back = LightHead.from_info(7, h.position, h.quaternion(), centre, size)
    assert np.allclose(back.stop_xy, stop, atol=1e-9)
    assert math.cos(back.lane_yaw - yaw) == pytest.approx(1.0)
    assert back.stop_width_m == pytest.approx(3.2)
    line = back.stop_line()
    assert np.allclose(line.mean(axis=0), stop) and np.linalg.norm(line[1] - line[0]) == pytest.approx(3.2)


def test_from_info_rejects_an_empty_trigger_volume():
    with pytest.raises(ValueError, match="trigger volume"):
        LightHead.from_info(3, (0, 0, 5), (0, 0, 0, 1), (1, 0, 0), (0.0, 3.0, 2.0))


def test_head_must_be_finite():
    with pytest.raises(ValueError, match="LightHead 1"):
        LightHead(1, (np.nan, 0, 0), 0.0, (0, 0), 0.0, 3.0)


def test_project_on_polyline():
    poly = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0]])
    s, d, yaw = project_on_polyline(poly, np.array([[5.0, 1.0], [11.0, 5.0]]))
    assert np.allclose(s, [5.0, 15.0]) and np.allclose(d, [1.0, 1.0])
    assert np.allclose(yaw, [0.0, math.pi / 2])


def test_heads_on_route_matches_position_and_direction():
    route = np.stack([np.zeros(101), np.linspace(-50.0, 50.0, 101)], axis=1)   # northbound
    on = head(1)
    beside = head(2, stop=(3.2, 0.0))                      # the next lane: 3.2 m to the side
    opposite = LightHead(3, (0.0, -30.0, 5.5), math.pi / 2, (0.0, 10.0), -math.pi / 2, 3.2)
    ahead = head(4, stop=(0.0, 20.0), position=(0.0, 50.0, 5.5))
    got = heads_on_route([ahead, beside, on, opposite], route)
    assert [(h.id, round(s, 6)) for h, s in got] == [(1, 50.0), (4, 70.0)]
    assert heads_on_route([], route) == [] and heads_on_route([on], route[:1]) == []
