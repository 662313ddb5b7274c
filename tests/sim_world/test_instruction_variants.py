"""WorldConfig.instruction: an episode's instruction picked among its scenario's variants (issue 14
item 4), executed by the expert, with the route unchanged -- so only the instruction tells "change
lane left" from "keep lane" -- and a bad choice rejected naming the field."""

from __future__ import annotations

import numpy as np
import pytest
from tps_sim.world import SimWorld, WorldConfig
from tps_sim.world.config import CMD_CHANGE_LANE_LEFT, CMD_CHANGE_LANE_RIGHT, CMD_FOLLOW_LANE, ConfigError
from tps_sim.world.scenarios import HIGHWAY_SLOW_MPS, SCENARIOS, resolve_instruction


@pytest.mark.parametrize("scenario, choice, match", [
    ("lights", "change_lane_left", r"instruction: 'change_lane_left' is not an instruction of scenario 'lights'"),
    ("highway", "change lane left", r"instruction: 'change lane left' is not an instruction of scenario 'highway'.*"
                                    r"change_lane_left"),
    ("highway", 3, r"instruction: 3 is not"),
])
def test_a_bad_instruction_choice_is_rejected_naming_the_field(scenario, choice, match):
    with pytest.raises(ConfigError, match=match):
        WorldConfig(scenario=scenario, instruction=choice).validate()


def test_seeded_picks_are_per_seed_deterministic_and_cover_the_variants():
    hw = SCENARIOS["highway"]
    picks = [resolve_instruction(hw, "seeded", seed) for seed in range(40)]
    assert [p[0] for p in picks] == [resolve_instruction(hw, "seeded", seed)[0] for seed in range(40)]
    assert {p[1].key for p in picks} == set(hw.variant_keys())
    assert len({p[0].text for p in picks}) > len(hw.variant_keys())      # several wordings, not one per variant
    for inst, variant, at_s in picks:
        assert inst.text in variant.texts and inst.command == variant.command
        assert (at_s is not None) == bool(variant.lane_change)
    # a scenario without variants keeps its own instruction; "" is always the scenario's own
    assert resolve_instruction(SCENARIOS["lights"], "seeded", 5) == (SCENARIOS["lights"].instruction, None, None)
    assert resolve_instruction(hw, "", 5)[0] == hw.instruction


def test_the_route_does_not_decide_what_the_instruction_decides():
    routes = [SimWorld(WorldConfig(scenario="highway", seed=1000, instruction=key)).route
              for key in ("", *SCENARIOS["highway"].variant_keys())]
    for r in routes[1:]:
        np.testing.assert_array_equal(r, routes[0])


@pytest.mark.parametrize("key, command, lane_delta", [
    ("change_lane_left", CMD_CHANGE_LANE_LEFT, +1),
    ("change_lane_right", CMD_CHANGE_LANE_RIGHT, -1),
    ("keep_lane_80", CMD_FOLLOW_LANE, 0),
])
def test_the_expert_executes_the_instruction(key, command, lane_delta):
    world = SimWorld(WorldConfig(scenario="highway", seed=1002, clutter="none", ego_driver="expert",
                                 duration_s=12.0, instruction=key))
    try:
        state = world.reset()
        start_lane = world._sim.lane_position("ego")[1]
        speeds = []
        while not world.is_done(state):
            state = world.step()
            speeds.append(state.ego.speed_mps)
        end_lane = world._sim.lane_position("ego")[1]
    finally:
        world.close()
    assert world.instruction.command == command
    assert end_lane == start_lane + lane_delta, (start_lane, end_lane, world.lane_change_done)
    if lane_delta:
        t, lane_from, lane_to = world.lane_change_done
        assert 1.0 <= t <= 4.1 and (lane_from, lane_to) == (start_lane, start_lane + lane_delta)
    else:
        assert world.lane_change_done is None
        assert max(speeds[-30:]) <= HIGHWAY_SLOW_MPS + 0.1      # the requested 80 km/h, not the traffic's speed


def test_the_episode_shard_records_the_instruction_and_the_lane_change():
    import json

    from tps_sim.dataset import episode_arrays

    arrays = episode_arrays("highway", 1002, duration_s=5.0, frame_stride=10, image_every=0,
                            instruction="change_lane_right")
    meta = json.loads(str(arrays["meta_json"]))
    assert meta["instruction"]["command"] == CMD_CHANGE_LANE_RIGHT and meta["instruction"]["text"] == "change lane right"
    assert meta["instruction_choice"] == "change_lane_right"
    t, lane_from, lane_to = meta["lane_change"]
    assert lane_to == lane_from - 1 and 1.0 <= t <= 4.1
    plain = json.loads(str(episode_arrays("highway", 1002, duration_s=1.0, frame_stride=10, image_every=0)["meta_json"]))
    assert plain["instruction"]["text"] == "keep lane" and plain["lane_change"] is None
