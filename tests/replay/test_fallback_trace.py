"""``python -m tps_eval.replay.fallback_trace``: the fallback core replayed offline through a bag.
(Its agreement with a recorded closed-loop run's fallback decisions is checked in
test_closedloop_record.py, on a bag that run records.)"""

from __future__ import annotations

import json
import math

import pytest
from replay_bags import REPO, SIM_BAG
from tps_eval.replay.fallback_trace import (
    EXIT_USAGE,
    FrameTrace,
    TraceResult,
    format_trace,
    main,
    parse_set,
    trace_bag,
)

PARAMS = REPO / "config" / "fallback_node.param.yaml"


def test_every_frame_of_the_simulator_bag_is_planned_with_the_traffic_around_it():
    res = trace_bag(SIM_BAG, params_file=PARAMS)
    assert not res.lights and not res.monitor            # the reference bag has neither
    assert res.compared == 0                              # nor the fallback's diagnostics
    assert len(res.frames) >= 29                          # 31 clouds, each with its odometry
    assert all(math.isfinite(f.plan_speed_end_mps) for f in res.frames)
    stamps = [f.stamp_s for f in res.frames]
    assert stamps == sorted(set(stamps))
    assert any("lane map: 9 lanes" in m for m in res.map_messages)
    # the cars in the next lane are tracked: listed ahead of the bumper, beside the ego's lane
    # (lateral extent left of -1.5 m), most of them with a measured speed
    near = [o for f in res.frames for o in f.objects if 0.0 < o.ahead_m < 40.0]
    assert len(near) >= 10
    assert all(o.d_max_m < 0.0 for o in near)             # nothing in the ego's own lane in 3 s
    assert sum(o.speed_mps is not None for o in near) >= len(near) // 2


def test_a_parameter_override_changes_the_plan_and_bad_overrides_are_named():
    base = trace_bag(SIM_BAG, params_file=PARAMS)
    capped = trace_bag(SIM_BAG, params_file=PARAMS, overrides={"speed_cap_mps": 10.0})
    # the ego drives at 24-28 m/s: the capped plans brake towards 10 m/s (comfortably: within 3 m/s
    # of it after their 8 s)
    assert max(f.plan_speed_end_mps for f in base.frames) > 25.0
    assert max(f.plan_speed_end_mps for f in capped.frames) < 13.0
    with pytest.raises(ValueError, match="no_such_parameter"):
        trace_bag(SIM_BAG, params_file=PARAMS, overrides={"no_such_parameter": 1})
    assert parse_set(["lane_changes=false", "max_speed_mps=8.5"]) == {"lane_changes": False, "max_speed_mps": 8.5}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_set(["lane_changes"])


def test_cli_window_json_and_errors(tmp_path, capsys):
    out = tmp_path / "trace.json"
    assert main([str(SIM_BAG), "--from", "1.0", "--to", "1.5", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "lights not replayed" in text
    data = json.loads(out.read_text())
    assert data["frames"] and all(1.0 <= f["stamp_s"] <= 1.5 for f in data["frames"])
    assert main([str(tmp_path / "missing.mcap")]) == EXIT_USAGE
    assert main([str(SIM_BAG), "--set", "bogus=1"]) == EXIT_USAGE
    assert "bogus" in capsys.readouterr().err
    assert main([str(SIM_BAG), "--set", "max_speed_mps=fast"]) == EXIT_USAGE     # the node's schema
    assert "max_speed_mps" in capsys.readouterr().err


def test_a_frame_the_run_decided_otherwise_is_flagged():
    frame = FrameTrace(stamp_s=11.8, speed_mps=0.0, s_ego_m=50.0, monitor_state=2, lane_state="waiting",
                       lane_reason="overtake stalled object 64 (too close to steer round it)", obstacle_gap_m=4.05,
                       plan_speed_end_mps=0.0, stops=[], messages=[],
                       recorded={"lane_state": "changing", "lane_reason": "overtake stalled object 64",
                                 "nearest_obstacle_m": "inf"})
    same = FrameTrace(**{**frame.__dict__, "stamp_s": 11.9,
                         "recorded": {"lane_state": "waiting", "lane_reason": frame.lane_reason,
                                      "nearest_obstacle_m": "4.07"}})
    text = format_trace(TraceResult([frame, same], lights=False, monitor=True, map_messages=[], compared=2, agree=1,
                                    first_disagreement_s=11.8))
    lines = text.splitlines()
    assert lines[1].startswith("!") and "changing" in lines[2]
    assert lines[3].startswith(" ")
    assert "1 of 2 frames (first difference at 11.80 s)" in lines[-1]
