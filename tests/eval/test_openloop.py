"""``tps-eval openloop``: the metric functions on hand-made cases (box overlap, L2 conventions,
instruction-following decisions, baselines, paraphrases) and one tiny end-to-end run (a real
simulated episode through the frozen detector + tokenizer, a checkpoint from two training steps;
~10 s with one thread)."""

from __future__ import annotations

import importlib.util
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from tps_eval.openloop import evaluate as E
from tps_eval.openloop import metrics as M

REPO = Path(__file__).resolve().parents[2]


# --- boxes and collisions ------------------------------------------------------------------------------
def test_oriented_boxes_overlap_where_they_must_and_not_where_only_their_bounds_do():
    car = np.array([0.0, 0.0, 0.0, 4.0, 2.0])                  # x in [-2, 2], y in [-1, 1]
    # a 2 x 2 square turned 45 deg: its axis-aligned bounds reach into the car's, the square does not
    # (its near edge is the line x + y = 3.39; the car's corner (2, 1) has x + y = 3)
    near = np.array([2.9, 1.9, math.pi / 4, 2.0, 2.0])
    assert not M.boxes_overlap(car, near)
    # moved 0.4 m closer on both axes the car's corner lies inside it
    inside = np.array([2.5, 1.5, math.pi / 4, 2.0, 2.0])
    assert M.boxes_overlap(car, inside)
    # two long thin boxes crossing in an X: no corner of either lies inside the other
    assert M.boxes_overlap(np.array([0.0, 0.0, 0.0, 10.0, 1.0]), np.array([0.0, 0.0, math.pi / 2, 10.0, 1.0]))
    # side by side in adjacent lanes (3.5 m apart): no overlap; 1.5 m apart: overlap
    assert not M.boxes_overlap(np.array([0.0, 0.0, 0.0, 4.6, 1.9]), np.array([1.0, 3.5, 0.0, 4.6, 1.9]))
    assert M.boxes_overlap(np.array([0.0, 0.0, 0.0, 4.6, 1.9]), np.array([1.0, 1.5, 0.1, 4.6, 1.9]))
    # one ego box against many; touching counts (the project's convention)
    assert M.boxes_overlap(car, np.stack([near, inside])).tolist() == [False, True]
    assert M.boxes_overlap(car, np.array([4.0, 0.0, 0.0, 4.0, 2.0]))
    assert not M.boxes_overlap(car, np.array([4.01, 0.0, 0.0, 4.0, 2.0]))


def test_plan_collisions_per_horizon_against_future_boxes():
    plan = M.constant_velocity_plan(10.0)                          # 5, 10, ..., 40 m ahead
    # a car standing 20 m ahead, and one driving alongside in the left lane at the same speed
    gt_box = np.array([[20.0, 0.0, 0.8, 4.5, 1.8, 1.6, 0.0, 0.0, 0.0],
                       [0.0, 3.5, 0.8, 4.5, 1.8, 1.6, 0.0, 10.0, 0.0]])
    k = np.arange(1, 7) * 0.5
    fut = np.stack([np.column_stack([np.full(6, 20.0), np.zeros(6)]),
                    np.column_stack([10.0 * k, np.full(6, 3.5)])])
    boxes = M.agent_boxes_per_step(gt_box, fut, np.ones((2, 6), bool))
    # ego at 5, 10 m (up to 1 s): clear; at 20 m (2 s) in the standing car; "up to 3 s" includes 2 s
    assert M.plan_collisions(plan, (4.6, 1.9), boxes).tolist() == [False, True, True]
    fv = np.ones((2, 6), bool)
    fv[0, 3] = False          # the car's future missing at 2 s only: at 1.5 s and 2.5 s the ego's centre
    # is 5 m from the car's, 4.55 m would touch -- no collision at any step
    assert not M.plan_collisions(plan, (4.6, 1.9), M.agent_boxes_per_step(gt_box, fut, fv)).any()
    # a plan that stops short of it never collides
    stop = np.column_stack([np.minimum(np.arange(1, 9) * 3.0, 12.0), np.zeros(8)])
    assert not M.plan_collisions(stop, (4.6, 1.9), boxes).any()
    summary = M.collision_summary(np.array([[False, True, True], [False, False, False]]), np.ones((2, 3), bool))
    assert summary["collision_rate_2s"] == 0.5 and summary["collision_rate"] == pytest.approx(1.0 / 3)
    assert summary["collision_frames"] == 1
    counted = np.ones((2, 3), bool)
    counted[0, 2] = False                                        # frame 0 has no expert position at 3 s
    assert M.collision_summary(np.array([[False, True, True], [False, False, True]]), counted)["collision_rate_3s"] == 1.0


def test_headings_follow_the_path_and_hold_when_standing():
    pts = np.array([[1.0, 0.0], [1.05, 0.0], [1.05, 2.0]])
    # the 5 cm step is too short to say a heading: held; the next one is measured from (1, 0)
    np.testing.assert_allclose(M.path_headings(pts), [0.0, 0.0, math.atan2(2.0, 0.05)])
    assert M.path_headings(np.zeros((3, 2)), start_yaw=0.7).tolist() == [0.7, 0.7, 0.7]


# --- L2 ------------------------------------------------------------------------------------------------
def test_l2_at_t_and_averaged_up_to_t():
    expert = M.constant_velocity_plan(8.0)[None].repeat(2, 0)
    plan = expert.copy()
    plan[:, :, 1] += 0.1 * np.arange(1, 9)                        # errors 0.1, 0.2, ..., 0.8 m
    valid = np.ones((2, 8), bool)
    valid[1, 5:] = False                                          # frame 1: the episode ends after 2.5 s
    s = M.l2_summary(M.l2_per_step(plan, expert, valid))
    assert s["l2_1s"] == pytest.approx(0.2) and s["l2_2s"] == pytest.approx(0.4) and s["l2_3s"] == pytest.approx(0.6)
    assert s["l2_mean"] == pytest.approx(0.4)
    assert s["l2_avg_1s"] == pytest.approx(0.15) and s["l2_avg_2s"] == pytest.approx(0.25)
    assert s["l2_avg_3s"] == pytest.approx(0.35) and s["l2_avg_mean"] == pytest.approx(0.25)
    assert (s["frames_l2_1s"], s["frames_l2_3s"]) == (2, 1)
    assert M.l2_summary(np.zeros((0, 8)))["l2_mean"] is None


def test_forecast_min_over_modes():
    target = np.column_stack([np.arange(1, 7) * 1.0, np.zeros(6)])[None]
    modes = np.stack([target[0] + [0.0, 3.0], target[0] + [0.0, 0.5]])[None]   # K = 2; the second is 0.5 m off
    ade, fde = M.forecast_errors(modes, target)
    assert ade.tolist() == pytest.approx([0.5]) and fde.tolist() == pytest.approx([0.5])
    s = M.forecast_summary(np.array([0.5, 1.0]), np.array([0.5, 3.0]), 2)
    assert s["miss_rate"] == 0.5 and s["min_fde_3s"] == pytest.approx(1.75)


# --- instruction following ----------------------------------------------------------------------------
def _lane_change(side: float) -> np.ndarray:
    x = np.arange(1, 9) * 4.0
    y = side * 3.5 * np.clip((x - 4.0) / 20.0, 0.0, 1.0)
    return np.column_stack([x, y])


def _arc(sign: float, radius: float = 12.0) -> np.ndarray:
    ang = np.arange(1, 9) * (math.pi / 2) / 8
    return np.column_stack([radius * np.sin(ang), sign * radius * (1 - np.cos(ang))])


def test_instruction_following_decisions_relative_to_the_route():
    c = M.COMMANDS
    # the ego drives north (map +y, yaw pi/2) along a straight route: its left is map -x
    route = np.array([[0.0, -50.0], [0.0, 200.0]])
    pose = np.array([0.0, 0.0, math.pi / 2])
    left, right = M.manoeuvre(_lane_change(1.0), pose, route), M.manoeuvre(_lane_change(-1.0), pose, route)
    assert left["lateral_m"] == pytest.approx(3.5)
    assert M.realises(c["CHANGE_LANE_LEFT"], left) and not M.realises(c["CHANGE_LANE_RIGHT"], left)
    assert M.realises(c["CHANGE_LANE_RIGHT"], right) and not M.realises(c["FOLLOW_LANE"], right)
    keep = M.manoeuvre(M.constant_velocity_plan(8.0), pose, route)
    assert M.realises(c["FOLLOW_LANE"], keep) and M.realises(c["GO_STRAIGHT"], keep)
    assert not M.realises(c["CHANGE_LANE_LEFT"], keep) and not M.realises(c["STOP"], keep)
    # lateral is relative to where the ego is now: 1 m right of the route, keeping that offset = keep lane
    assert M.realises(c["FOLLOW_LANE"], M.manoeuvre(M.constant_velocity_plan(8.0), pose + [1.0, 0, 0], route))
    # turns by heading; a right turn is neither a left turn nor straight on
    rt = M.manoeuvre(_arc(-1.0), pose, route)
    assert M.realises(c["TURN_RIGHT"], rt) and not M.realises(c["TURN_LEFT"], rt)
    assert not M.realises(c["GO_STRAIGHT"], rt)
    assert M.realises(c["TURN_LEFT"], M.manoeuvre(_arc(1.0), pose, route))
    # stopping: the plan comes to rest; standing still is not going straight
    stop = np.column_stack([[3.0, 5.5, 7.0, 8.0, 8.5, 8.7, 8.8, 8.8], np.zeros(8)])
    m = M.manoeuvre(stop, pose, route)
    assert M.realises(c["STOP"], m) and not M.realises(c["GO_STRAIGHT"], M.manoeuvre(np.zeros((8, 2)), pose, route))
    # take exit: following a route that turns right = taking that exit; going straight on leaves it
    bend = np.vstack([[[0.0, -20.0], [0.0, 0.0]], np.column_stack([12.0 * (1 - np.cos(np.linspace(0, 1.5, 20))),
                                                                   12.0 * np.sin(np.linspace(0, 1.5, 20))])])
    assert M.realises(c["TAKE_EXIT"], M.manoeuvre(_arc(-1.0), pose, bend))
    assert not M.realises(c["TAKE_EXIT"], M.manoeuvre(M.constant_velocity_plan(8.0), pose, bend))
    with pytest.raises(ValueError, match="unknown DrivingInstruction command"):
        M.realises(42, keep)
    s = M.instruction_summary(np.full(4, c["CHANGE_LANE_LEFT"]), np.array([True, True, False, False]),
                              np.array([True, False, True, False]), np.array([False, False, False, True]))
    assert s["instruction_following"] == 0.5 and s["if_checkable"] == 2 and s["if_excluded"] == 2
    per = s["if_per_command"]["CHANGE_LANE_LEFT"]
    assert (per["excluded_not_possible"], per["excluded_incomplete"]) == (1, 1)


def test_commands_match_the_message_and_the_simulator():
    from tps_sim.world import config

    msg = (REPO / "ros2_ws/src/tps_msgs/msg/DrivingInstruction.msg").read_text()
    consts = {m.group(1): int(m.group(2)) for m in re.finditer(r"^uint8 ([A-Z_]+)=(\d+)", msg, re.M)}
    assert consts == M.COMMANDS
    assert {k[4:]: v for k, v in vars(config).items() if k.startswith("CMD_")} == M.COMMANDS
    assert set(M.RULES) == set(M.COMMANDS)


# --- baselines ----------------------------------------------------------------------------------------
def test_baselines_constant_velocity_and_follow_route():
    np.testing.assert_allclose(M.constant_velocity_plan(4.0)[:, 0], 2.0 * np.arange(1, 9))
    # an L-shaped route: 10 m east, then north; ego at its start heading east at 4 m/s
    route = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 50.0]])
    p = M.follow_route_plan(route, np.array([0.0, 0.0, 0.0]), 4.0)
    np.testing.assert_allclose(p[:5], [[2, 0], [4, 0], [6, 0], [8, 0], [10, 0]], atol=1e-9)
    np.testing.assert_allclose(p[5:], [[10, 2], [10, 4], [10, 6]], atol=1e-9)
    # standing still: every point at the ego
    np.testing.assert_allclose(M.follow_route_plan(route, np.array([3.0, 0.0, 0.0]), 0.0), 0.0, atol=1e-9)
    f = M.constant_velocity_forecast(np.array([[10.0, 2.0, 0.0, 4.5, 1.8, 2.0, -1.0]]))
    assert f.shape == (1, 1, 6, 2)
    np.testing.assert_allclose(f[0, 0, -1], [16.0, -1.0])


# --- paraphrases --------------------------------------------------------------------------------------
def test_paraphrases_load_pick_and_refuse_bad_files(tmp_path):
    table = E.load_paraphrases(REPO / "config/paraphrases/example.yaml")
    c = M.COMMANDS
    assert (c["TAKE_EXIT"], 2) in table and (c["FOLLOW_LANE"], None) in table
    a = E.paraphrase(table, c["FOLLOW_LANE"], 0, "highway", 9000, 15)
    assert a in table[(c["FOLLOW_LANE"], None)]
    assert a == E.paraphrase(table, c["FOLLOW_LANE"], 0, "highway", 9000, 15)       # seeded
    picks = {E.paraphrase(table, c["FOLLOW_LANE"], 0, "highway", 9000, f) for f in range(0, 200, 5)}
    assert picks == set(table[(c["FOLLOW_LANE"], None)])                              # every text gets used
    assert E.paraphrase(table, c["TAKE_EXIT"], 2, "roundabout", 9000, 0) in table[(c["TAKE_EXIT"], 2)]
    assert E.paraphrase({(c["STOP"], None): ["halt"]}, c["TURN_LEFT"], 0, "priority", 1, 0) is None
    # the example's wording is not a training instruction
    from tps_sim.world import SCENARIOS

    trained = {sc.instruction.text for sc in SCENARIOS.values()}
    assert not trained & {t for texts in table.values() for t in texts}
    for text, match in (("TURN_BACK: [a]", "unknown instruction"), ("STOP: []", "non-empty list"),
                        ("STOP:2: [a]", "exit number"), ("- a", "mapping")):
        bad = tmp_path / "bad.yaml"
        bad.write_text(text)
        with pytest.raises(ValueError, match=match):
            E.load_paraphrases(bad)


def test_ablation_arguments_are_checked(tmp_path):
    f = tmp_path / "m.pt"
    f.write_bytes(b"x")
    assert E.parse_ablations([f"camera_off={f}"]) == {"camera_off": f}
    for items, match in (([f"bigger={f}"], "unknown ablation"), (["camera_off"], "NAME=PATH"),
                         ([f"camera_off={tmp_path / 'none.pt'}"], "no model file"),
                         ([f"camera_off={f}", f"camera_off={f}"], "twice")):
        with pytest.raises(ValueError, match=match):
            E.parse_ablations(items)


def test_missing_model_is_a_clear_error(tmp_path, capsys):
    from tps_eval.cli import main

    rc = main(["openloop", "--seeds", "3", "--scenarios", "signalised", "--model", str(tmp_path / "none.pt")])
    assert rc == 2 and "no planner model at" in capsys.readouterr().err


# --- end to end -----------------------------------------------------------------------------------------
def _tiny_checkpoint(tmp_path: Path) -> Path:
    """Two training steps on small synthetic shards (the trainer's own smoke path)."""
    spec = importlib.util.spec_from_file_location("vlm_helpers", REPO / "tests/planner_vlm/vlm_helpers.py")
    helpers = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(helpers)
    from training import planner

    helpers.write_fake_shard(tmp_path / "data", "train", "signalised", 0, n=3)
    rc = planner.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--run", "tiny",
                       "--max-steps", "2", "--batch", "2", "--max-agents", "8", "--time-budget-min", "5", "--threads", "1"])
    assert rc == 0
    return tmp_path / "runs" / "tiny" / "planner.pt"


def test_openloop_end_to_end_on_a_fresh_episode(tmp_path):
    from tps_eval.cli import main

    ckpt = _tiny_checkpoint(tmp_path)
    out = tmp_path / "ol.json"
    rc = main(["openloop", "--seeds", "3", "--scenarios", "signalised", "--duration", "5", "--model", str(ckpt),
               "--ablation", f"untargeted_tokens={ckpt}", "--paraphrases", str(REPO / "config/paraphrases/example.yaml"),
               "--threads", "1", "--quiet", "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    required = {"l2_1s", "l2_2s", "l2_3s", "l2_mean", "collision_rate", "min_ade_3s", "instruction_following",
                "light_state_acc"}
    assert required <= set(res)
    for k in ("l2_1s", "l2_2s", "l2_3s", "l2_mean", "l2_avg_mean", "min_ade_3s", "min_fde_3s"):
        assert math.isfinite(res[k]) and res[k] >= 0.0, k
    assert res["l2_mean"] == pytest.approx((res["l2_1s"] + res["l2_2s"] + res["l2_3s"]) / 3, abs=1e-4)
    for k in ("collision_rate", "miss_rate", "intent_acc", "light_state_acc"):
        assert 0.0 <= res[k] <= 1.0, k
    assert res["counts"]["episodes"] == 1 and res["counts"]["frames"] == res["frames"] == 11   # 0..5 s at 2 Hz
    assert res["split"] == "train" and res["held_out"] is False
    for name in E.BASELINES:
        b = res["baselines"][name]
        assert required <= set(b) and math.isfinite(b["l2_mean"]) and 0.0 <= b["collision_rate"] <= 1.0
        assert b["light_state_acc"] is None
    # the expert's own plan is never scored as a baseline; its collision floor is reported apart
    assert "expert" not in res["baselines"] and "collision_rate" in res["reference"]["expert"]
    assert res["ablations"]["scratch_trunk"] is None and "not measured" in res["ablation_notes"]["scratch_trunk"]
    ab = res["ablations"]["untargeted_tokens"]
    assert required <= set(ab) and math.isfinite(ab["l2_mean"])
    assert res["instructions"]["paraphrases"]["frames_paraphrased"] == 11
    assert set(res["instructions"]["paraphrases"]["texts_used"]["TURN_RIGHT"]) <= {
        "take a right at the traffic signal", "hang a right at the signals"}
    md = out.with_suffix(".md").read_text()
    assert "| metric | planner | constant_velocity | follow_route | untargeted_tokens |" in md


def test_verb_takes_the_common_seed_options_and_documents_its_output(capsys):
    from tps_eval import seeds as S
    from tps_eval.cli import build_parser

    ap = build_parser()
    assert S.from_args(ap.parse_args(["openloop", "--seeds", "9000:9002"])).seeds == (9000, 9001)
    args = ap.parse_args(["openloop", "--split", "test", "--count", "3", "--ablation", "camera_off=x.pt"])
    assert S.from_args(args).split == "test" and args.count == 3 and args.ablation == ["camera_off=x.pt"]
    with pytest.raises(SystemExit):
        ap.parse_args(["openloop", "--seeds", "1", "--split", "val"])
    with pytest.raises(SystemExit):
        ap.parse_args(["openloop", "-h"])
    text = capsys.readouterr().out
    assert "examples:" in text and "half-open range [A, B)" in text and "held out" in text
    assert "l2_mean" in text and "baselines" in text and "ablations" in text
