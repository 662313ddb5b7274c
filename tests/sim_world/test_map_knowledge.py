"""Map knowledge on the bridge (tps_sim.map_knowledge): the lane map of the route's surroundings
built from the SUMO network -- lanes, neighbours, successors, speed limits, the acceleration lane,
the route's lanes, crosswalks, stop lines -- and its tps_msgs/LaneMap round trip to the planner's
core type (tps_planner.conversions)."""

from __future__ import annotations

import numpy as np
import pytest
from rclpy.serialization import deserialize_message, serialize_message
from tps_msgs.msg import LaneMap, MapStopLine
from tps_planner import conversions as planner_conv
from tps_sim import conversions as conv
from tps_sim.map_knowledge import (
    CONTROL_NONE,
    CONTROL_TRAFFIC_LIGHT,
    CONTROL_YIELD,
    MAP_RADIUS_M,
    build_lane_map,
)
from tps_sim.world.networks import build_network
from tps_sim.world.road import RoadGeometry
from tps_sim.world.route import route_lane_ids, route_polyline
from tps_sim.world.scenarios import HIGHWAY_SPEED_MPS, SCENARIOS, URBAN_SPEED_MPS
from tps_sim.world.signals import build_layout
from tps_sim.world.sumo_adapter import read_network


def lane_map_of(scenario: str):
    sc = SCENARIOS[scenario]
    net = read_network(str(build_network(sc.network)))
    route = route_polyline(net, sc.ego_edges, sc.ego_depart_lane)
    layout = build_layout(net, RoadGeometry.from_network(net))
    lights = {lane: head.id for lane, head in zip(layout.lane_ids, layout.heads, strict=True)}
    return build_lane_map(net, route, route_lane_ids(net, sc.ego_edges, sc.ego_depart_lane), lights), route


def test_merge_map_has_the_acceleration_lane_and_the_route_change():
    lm, route = lane_map_of("merge")
    # the route drives the acceleration lane, then changes into its left neighbour
    assert lm.route_lane_ids == ("ramp_0", ":m1_0_0", "accel_0", "accel_1", ":m2_0_0", "main1_0")
    accel = lm.lane("accel_0")
    assert accel.is_acceleration_lane and accel.successor_ids == ()
    assert accel.left_id == "accel_1" and accel.can_change_left and not accel.can_change_right
    assert lm.lane("accel_1").right_id == "accel_0" and lm.lane("accel_1").successor_ids == (":m2_0_0",)
    assert lm.lane(":m2_0_0").is_junction and lm.lane(":m2_0_0").successor_ids == ("main1_0",)
    assert lm.lane("ramp_0").speed_limit_mps == pytest.approx(22.0)
    assert lm.lane("main1_0").speed_limit_mps == pytest.approx(HIGHWAY_SPEED_MPS)
    # junction lanes never allow a change
    assert not any(ln.can_change_left or ln.can_change_right for ln in lm.lanes if ln.is_junction)
    # every lane lies within the map's radius of the route, every successor is in the map
    ids = {ln.lane_id for ln in lm.lanes}
    for ln in lm.lanes:
        d = np.min(np.hypot(*(ln.centerline[:, None, :] - route[None, :, :]).transpose(2, 0, 1)))
        assert d <= MAP_RADIUS_M + 2.0
        assert set(ln.successor_ids) <= ids


def test_crossing_and_stop_lines():
    lm, route = lane_map_of("ped_crossing")
    assert len(lm.crosswalks) == 1
    poly = lm.crosswalks[0].polygon
    assert poly.shape == (4, 2)
    # the route crosses it
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    assert np.any(np.all((route >= lo) & (route <= hi), axis=1))
    assert lm.lane("WC_1").speed_limit_mps == pytest.approx(URBAN_SPEED_MPS)
    controls = {s.lane_id: s.control for s in lm.stop_lines}
    assert controls["WC_1"] == CONTROL_YIELD               # vehicles give way at the zebra
    sig, _ = lane_map_of("signalised")
    lights = {s.lane_id: s for s in sig.stop_lines}
    assert lights["in_S_0"].control == CONTROL_TRAFFIC_LIGHT and lights["in_S_0"].traffic_light_id > 0
    ends = lights["in_S_0"].points
    assert ends.shape == (2, 2)
    assert np.hypot(*(ends[1] - ends[0])) == pytest.approx(sig.lane("in_S_0").width_m)
    hw, _ = lane_map_of("highway")
    assert {s.control for s in hw.stop_lines} == {CONTROL_NONE}


def test_lane_map_message_round_trip_to_the_planner_core():
    lm, _ = lane_map_of("merge")
    msg = conv.lane_map_msg(lm, 0.0)
    assert msg.header.frame_id == "map"
    again = deserialize_message(serialize_message(msg), LaneMap)
    core = planner_conv.lane_map_from_msg(again)
    assert core.route_lane_ids == lm.route_lane_ids
    by_id = {ln.lane_id: ln for ln in core.lanes}
    for ln in lm.lanes:
        got = by_id[ln.lane_id]
        np.testing.assert_allclose(got.centerline, ln.centerline, atol=1e-9)
        assert (got.left_id, got.right_id, got.successor_ids) == (ln.left_id, ln.right_id, ln.successor_ids)
        assert (got.is_junction, got.is_acceleration_lane, got.can_change_left, got.can_change_right) == (
            ln.is_junction, ln.is_acceleration_lane, ln.can_change_left, ln.can_change_right)
        assert (got.width_m, got.speed_limit_mps) == pytest.approx((ln.width_m, ln.speed_limit_mps), rel=1e-6)
    assert MapStopLine.CONTROL_TRAFFIC_LIGHT == CONTROL_TRAFFIC_LIGHT
