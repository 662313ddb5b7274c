"""Traffic lights of the world (tps_sim.world.signals): one head per signal-controlled incoming
lane, stop line at the lane's end, head over the far side of the junction facing the approach,
poles off the carriageway, states from SUMO's signal string; road markings at junction entries
and crossings; the lights scenario's seeded phases."""

from __future__ import annotations

import math

import numpy as np
import pytest
from tps_common.traffic_lights import GREEN, OFF, RED, UNKNOWN, YELLOW, heads_on_route
from tps_sim.sensors.scene3d import MAT_POLE, MAT_SIGNAL, SIGNAL_ID_BASE
from tps_sim.world import EgoControl, SimWorld, WorldConfig
from tps_sim.world.networks import build_network
from tps_sim.world.road import RoadGeometry
from tps_sim.world.scenarios import SCENARIOS
from tps_sim.world.signals import HEAD_HEIGHT_M, build_layout
from tps_sim.world.state import STATIC_ID_BASE
from tps_sim.world.sumo_adapter import read_network, signal_state

SEED = 3  # TRAIN split


@pytest.fixture(scope="module")
def signalised():
    net = read_network(str(build_network(SCENARIOS["signalised"].network)))
    road = RoadGeometry.from_network(net)
    return net, road, build_layout(net, road)


def test_one_head_per_signalised_lane(signalised):
    net, road, layout = signalised
    lanes = {link.from_lane for link in net.signal_links}
    assert len(lanes) == 8 and set(layout.lane_ids) == lanes
    assert [h.id for h in layout.heads] == list(range(1, 9))
    for head, lane, links in zip(layout.heads, layout.lane_ids, layout.link_indices, strict=True):
        shape = road.lane_centerlines[lane]
        assert np.allclose(head.stop_xy, shape[-1])                   # the lane's end
        d = head.lane_direction
        assert math.cos(head.yaw - (head.lane_yaw + math.pi)) == pytest.approx(1.0)   # faces back
        rel = head.position[:2] - head.stop_xy
        along = float(rel @ d)
        assert abs(float(rel[0] * d[1] - rel[1] * d[0])) < 1e-6      # straight ahead of the lane
        assert along > 2 * 14.4 and head.position[2] == HEAD_HEIGHT_M  # past the junction (28.8 m)
        assert road.contains(head.position[None, :2])[0]                  # over the exit lane
        assert links == tuple(sorted(k.link_index for k in net.signal_links if k.from_lane == lane))


def test_structure_boxes(signalised):
    _, road, layout = signalised
    mats = layout.materials
    assert np.count_nonzero(mats == MAT_SIGNAL) == 8
    assert np.all(mats[layout.housing_rows] == MAT_SIGNAL)
    poles = (mats == MAT_POLE) & (layout.sizes[:, 2] > 6.0)
    assert np.count_nonzero(poles) == 4                                  # one per approach
    assert not road.contains(layout.centers[poles, :2]).any()           # off the carriageway
    # everything over the carriageway is above any vehicle (buses 3.1 m, trucks 3.4 m)
    over_road = road.contains(layout.centers[:, :2]) & ~poles
    bottoms = layout.centers[over_road, 2] - 0.5 * layout.sizes[over_road, 2]
    assert bottoms.min() > 4.5


def test_states_from_the_signal_string(signalised):
    _, _, layout = signalised
    assert [signal_state(c) for c in "rRyYGgsuoO".replace("R", "r")] == [
        RED, RED, YELLOW, YELLOW, GREEN, GREEN, RED, RED, OFF, OFF]
    with pytest.raises(ValueError, match="unknown SUMO signal state"):
        signal_state("x")
    states = layout.states((("J", "GGGgrrrrGGGgrrrr"),))
    by_lane = dict(zip(layout.lane_ids, states.tolist(), strict=True))
    assert by_lane["in_N_0"] == GREEN and by_lane["in_S_1"] == GREEN
    assert by_lane["in_E_0"] == RED and by_lane["in_W_1"] == RED
    # one red link makes the lane's head red (most restrictive); a missing light is UNKNOWN
    assert layout.states((("J", "GGGrrrrrGGGgrrrr"),))[layout.lane_ids.index("in_N_1")] == RED
    assert np.all(layout.states(()) == UNKNOWN)


def test_stop_lines_and_give_way_lines_are_painted():
    net = read_network(str(build_network(SCENARIOS["signalised"].network)))
    road = RoadGeometry.from_network(net)
    kinds = {ln.lane_id: ln.kind for ln in road.transverse_lines}
    assert kinds == {lane: "stop" for lane in {k.from_lane for k in net.signal_links}}
    prio = RoadGeometry.from_network(read_network(str(build_network(SCENARIOS["priority"].network))))
    assert {ln.kind for ln in prio.transverse_lines} == {"give_way"}
    assert all(ln.lane_id.startswith(("in_N", "in_S")) for ln in prio.transverse_lines)
    zebra = RoadGeometry.from_network(read_network(str(build_network(SCENARIOS["ped_crossing"].network))))
    areas = zebra.marking_areas()
    assert len(zebra.crossings) == 1 and len(areas) >= 5               # stripes across 6.4 m
    hw = RoadGeometry.from_network(read_network(str(build_network(SCENARIOS["highway"].network))))
    assert hw.marking_areas() == ()                                       # nothing new on a highway


def test_world_reports_heads_and_scene_lights():
    with SimWorld(WorldConfig(scenario="signalised", seed=SEED, ego_driver="expert",
                              duration_s=3.0)) as world:
        state = world.reset()
        scene = world.scene3d(state)
        assert len(world.light_heads) == 8 and scene.lights is not None
        assert np.array_equal(scene.lights.states, world.light_states(state))
        assert set(scene.lights.states.tolist()) <= {RED, YELLOW, GREEN}
        ids = scene.lights.boxes.ids
        assert ids.min() >= SIGNAL_ID_BASE and np.all(np.diff(ids) == 1)
        # sensor geometry only: not world statics (no collisions, TTC, episode-log statics)
        assert not np.isin(ids, state.statics.ids).any() and np.all(state.statics.ids >= STATIC_ID_BASE)
        assert len(scene.all_boxes()) == len(scene.agents) + len(scene.statics) + len(ids)
        route_heads = heads_on_route(world.light_heads, world.route)
        assert [h.id for h, _ in route_heads] == [world.light_layout.lane_ids.index("in_S_0") + 1]
    with SimWorld(WorldConfig(scenario="highway", seed=SEED, duration_s=1.0)) as world:
        state = world.reset()
        assert world.light_heads == () and world.scene3d(state).lights is None


def _phases(seed: int) -> list:
    with SimWorld(WorldConfig(scenario="lights", seed=seed, ego_driver="expert",
                              duration_s=2.0)) as world:
        state = world.reset()
        out = [tuple(world.light_states(state))]
        for _ in range(5):
            state = world.step(EgoControl())
            out.append(tuple(world.light_states(state)))
        return out


def test_lights_scenario_phase_is_seeded():
    a, b = _phases(SEED), _phases(SEED)
    assert a == b                                                         # deterministic
    others = {tuple(_phases(s)[0]) for s in (SEED + 1, SEED + 2, SEED + 3, SEED + 4)}
    assert len(others | {a[0]}) > 1                                       # seeds differ
