"""WorldConfig validation: a bad value raises ConfigError naming the field."""

import pytest
from tps_sim.world import SCENARIOS, ConfigError, WorldConfig
from tps_sim.world import config as wc

EXPECTED_SCENARIOS = {"highway", "merge", "roundabout", "signalised", "priority", "cut_in",
                      "hard_brake", "stalled", "ped_crossing", "lights"}


@pytest.mark.parametrize(("changes", "field"), [
    ({"scenario": "autobahn"}, "scenario"),
    ({"density": -0.5}, "density"),
    ({"density": float("nan")}, "density"),
    ({"dt_s": 0.0}, "dt_s"),
    ({"dt_s": -0.1}, "dt_s"),
    ({"clutter": "extreme"}, "clutter"),
    ({"ego_driver": "human"}, "ego_driver"),
    ({"duration_s": 0.0}, "duration_s"),
    ({"seed": -1}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"obstacles": ({"kind": "cow", "route_s_m": 10.0},)}, "obstacles[0].kind"),
    ({"obstacles": ({"kind": "debris"},)}, "obstacles[0].route_s_m"),
    ({"obstacles": ({"kind": "debris", "route_s_m": 5.0, "size_m": [1, 0, 1]},)},
     "obstacles[0].size_m[1]"),
])
def test_bad_config_names_the_field(changes, field):
    cfg = WorldConfig(**changes)
    with pytest.raises(ConfigError) as err:
        cfg.validate()
    assert str(err.value).startswith(field + ":"), str(err.value)


def test_simworld_validates_before_building():
    from tps_sim.world import SimWorld

    with pytest.raises(ConfigError, match="^density:"):
        SimWorld(WorldConfig(density=-1.0))


def test_good_config_passes():
    WorldConfig(scenario="merge", seed=3, density=1.0, clutter="medium", ego_driver="expert",
                obstacles=({"kind": "debris", "route_s_m": 60.0, "lateral_m": 0.0,
                            "size_m": [0.8, 0.8, 0.8]},)).validate()


def test_scenario_registry_complete():
    assert set(SCENARIOS) == EXPECTED_SCENARIOS
    for name, sc in SCENARIOS.items():
        assert sc.name == name
        assert sc.family and sc.description
        assert sc.instruction.text


def test_constants_match_tps_msgs():
    from tps_msgs.msg import DetectedAgent, DrivingInstruction

    for name in ("FOLLOW_LANE", "TURN_LEFT", "TURN_RIGHT", "GO_STRAIGHT", "CHANGE_LANE_LEFT",
                 "CHANGE_LANE_RIGHT", "STOP", "TAKE_EXIT"):
        assert getattr(wc, "CMD_" + name) == getattr(DrivingInstruction, name)
    for name in ("UNKNOWN", "CAR", "TRUCK", "BUS", "PEDESTRIAN", "CYCLIST"):
        assert getattr(wc, "CLASS_" + name) == getattr(DetectedAgent, "CLASS_" + name)
