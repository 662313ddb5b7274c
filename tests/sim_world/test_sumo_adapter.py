"""SUMO convention conversions (front bumper, clockwise-from-north degrees, network offset)."""

import numpy as np
import pytest
from tps_sim.world import SimWorld, WorldConfig
from tps_sim.world.sumo_adapter import (
    center_to_front,
    front_to_center,
    sumo_angle_to_yaw,
    yaw_to_sumo_angle,
)

ANGLE_TOL = 1e-9
POS_TOL_M = 1e-6


@pytest.mark.parametrize(("deg", "yaw"), [(0.0, np.pi / 2), (90.0, 0.0), (180.0, -np.pi / 2),
                                          (270.0, np.pi), (45.0, np.pi / 4)])
def test_angle_conversion(deg, yaw):
    assert sumo_angle_to_yaw(deg) == pytest.approx(yaw, abs=ANGLE_TOL)
    assert yaw_to_sumo_angle(yaw) == pytest.approx(deg % 360.0, abs=ANGLE_TOL)


def test_angle_roundtrip_random():
    rng = np.random.default_rng(0)
    yaw = rng.uniform(-np.pi, np.pi, 1000)
    back = sumo_angle_to_yaw(yaw_to_sumo_angle(yaw))
    assert np.allclose(np.angle(np.exp(1j * (back - yaw))), 0.0, atol=ANGLE_TOL)


def test_front_center_roundtrip():
    front = np.array([[10.0, 5.0]])
    center = front_to_center(front, np.array([np.pi / 2]), np.array([4.0]))
    assert center[0] == pytest.approx([10.0, 3.0])  # heading north: centre 2 m south
    assert center_to_front(center, np.array([np.pi / 2]), np.array([4.0]))[0] == \
        pytest.approx(front[0])


def test_network_offset_and_vehicle_conventions():
    """The signalised network is drawn around the map origin, netconvert shifts it: the
    junction must come back at (0, 0), and a vehicle's raw SUMO pose must convert to our box."""
    world = SimWorld(WorldConfig(scenario="signalised", seed=9000, ego_driver="expert",
                                 clutter="none"))
    try:
        world.reset()
        assert np.linalg.norm(world._net.offset) > 100.0, "test needs a shifted network"
        junction = world.road.junction_polygons["J"]
        assert np.allclose(junction.mean(axis=0), 0.0, atol=1.0)
        state = world.step()
        sim = world._sim
        raw_front = sim.front_raw("ego")
        raw_deg = sim.angle_deg_raw("ego")
        ego = state.ego
        yaw = np.radians(90.0 - raw_deg)
        expect = raw_front - world._net.offset - 0.5 * ego.size[0] * np.array(
            [np.cos(yaw), np.sin(yaw)])
        assert ego.center[:2] == pytest.approx(expect, abs=POS_TOL_M)
        assert np.angle(np.exp(1j * (ego.yaw - yaw))) == pytest.approx(0.0, abs=ANGLE_TOL)
        # Ego starts on the south arm heading north.
        assert ego.yaw == pytest.approx(np.pi / 2, abs=0.01)
        assert ego.center[1] < 0.0
    finally:
        world.close()


def test_one_simulation_per_process():
    a = SimWorld(WorldConfig(scenario="highway", seed=1, clutter="none", density=0.2))
    b = SimWorld(WorldConfig(scenario="highway", seed=2, clutter="none", density=0.2))
    try:
        a.reset()
        with pytest.raises(RuntimeError, match="already running"):
            b.reset()
        a.close()
        b.reset()
    finally:
        a.close()
        b.close()
