"""Recovery samples (training.recovery): a displaced ego sees the scene moved by the inverse
displacement, reads its offset in the ego token, and is labelled with a plan back to the expert's path."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tps_planner.vlm.layout import PlannerConfig, ego_features, route_frame
from tps_planner.vlm.model import InstructionTokenizer
from vlm_helpers import write_fake_shard

from training import planner
from training.recovery import RecoveryConfig, displace_shard, displaced_pose, recovery_plan, to_displaced

CFG = RecoveryConfig()
STRAIGHT = np.array([[5.0 * k, 0.0] for k in range(1, 9)])   # 10 m/s along x, 0.5 s steps
ALL = np.ones(8, bool)


def test_a_lateral_displacement_is_recovered_smoothly_onto_the_experts_path():
    dy = 1.0                                            # the ego 1 m left of the expert
    rec = recovery_plan(STRAIGHT, ALL, dy, 0.0, 10.0, CFG)
    length = CFG.recovery_s * 10.0                      # 25 m of travel
    # the expert's path is 1 m to the ego's right; the label starts near the ego ...
    assert -0.25 < rec[0, 1] < 0.0
    # ... moves monotonically towards the path and is on it from `length` on
    assert np.all(np.diff(rec[:, 1]) <= 1e-9)
    on = STRAIGHT[:, 0] >= length
    np.testing.assert_allclose(rec[on, 1], -dy, atol=1e-9)
    # the expert's speed profile is kept: same distance per step
    np.testing.assert_allclose(rec[:, 0], STRAIGHT[:, 0], atol=0.05)


def test_a_heading_error_starts_along_the_egos_heading_and_ends_on_the_path():
    dpsi = 0.1                                          # ego turned 5.7 deg to the left
    rec = recovery_plan(STRAIGHT, ALL, 0.0, dpsi, 10.0, CFG)
    path = to_displaced(STRAIGHT, 0.0, dpsi)
    # the first step leaves along the ego's own heading more than along the path's (-dpsi)
    assert abs(np.arctan2(rec[0, 1], rec[0, 0])) < 0.5 * dpsi
    np.testing.assert_allclose(rec[-1], path[-1], atol=0.05)


def test_no_displacement_gives_back_the_expert_plan_and_a_standing_expert_keeps_the_ego_standing():
    np.testing.assert_allclose(recovery_plan(STRAIGHT, ALL, 0.0, 0.0, 10.0, CFG), STRAIGHT, atol=1e-9)
    curve = np.stack([50 * np.sin(np.arange(1, 9) / 10), 50 * (1 - np.cos(np.arange(1, 9) / 10))], 1)
    np.testing.assert_allclose(recovery_plan(curve, ALL, 0.0, 0.0, 10.0, CFG), curve, atol=1e-9)
    # an expert that does not move: the displaced ego is told not to move either
    np.testing.assert_allclose(recovery_plan(np.zeros((8, 2)), ALL, 1.2, 0.1, 0.0, CFG), 0.0, atol=1e-9)


def test_displaced_shard_moves_every_base_link_quantity_and_the_ego_token_reads_the_offset(tmp_path):
    path = write_fake_shard(tmp_path, "train", "highway", 0, n=4)
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    out = displace_shard(d, np.random.default_rng(3), RecoveryConfig(lateral_sigma_m=1.0))
    for i in range(4):
        dy, dpsi = out["recovery_offset"][i]
        assert abs(dy) <= CFG.lateral_max_m and abs(dpsi) <= CFG.heading_max_rad
        np.testing.assert_allclose(out["ego_pose"][i], displaced_pose(d["ego_pose"][i], dy, dpsi))
        # the route runs along x through the expert: the ego token's lateral offset is the displacement
        _, lateral, heading = route_frame(d["route"], out["ego_pose"][i])
        assert lateral == pytest.approx(dy, abs=1e-9) and heading == pytest.approx(dpsi, abs=1e-9)
        ego = ego_features(8.0, 0.0, 0.0, d["route"], out["ego_pose"][i], None, -1.0)
        assert ego[3] == pytest.approx(dy / 3.0, abs=1e-6)
        # an agent keeps its map position: displaced base_link back to map = original base_link to map
        for name, pts in (("tok_geom", out["tok_geom"][i, :5, :2]), ("fut", out["fut"][i, :5, 0])):
            c, s = np.cos(out["ego_pose"][i, 2]), np.sin(out["ego_pose"][i, 2])
            world = out["ego_pose"][i, :2] + pts @ np.array([[c, s], [-s, c]])
            orig = d["tok_geom"][i, :5, :2] if name == "tok_geom" else d["fut"][i, :5, 0]
            np.testing.assert_allclose(world, d["ego_pose"][i, :2] + orig, atol=1e-4, err_msg=name)
        # a velocity keeps its map direction, a heading its map angle
        v0 = d["tok_geom"][i, :5, 5:7]
        v1 = out["tok_geom"][i, :5, 5:7]
        np.testing.assert_allclose(np.hypot(*v1.T), np.hypot(*v0.T), rtol=1e-5)
        ang = np.arctan2(v1[:, 1], v1[:, 0]) + dpsi - np.arctan2(v0[:, 1], v0[:, 0])
        np.testing.assert_allclose(np.cos(ang), 1.0, atol=1e-5)
        dyaw = out["tok_geom"][i, :5, 2] + dpsi - d["tok_geom"][i, :5, 2]
        np.testing.assert_allclose(np.cos(dyaw), 1.0, atol=1e-5)
    # the scene-level content is untouched (same arrays)
    for k in ("image", "tok_code", "light", "intent", "route"):
        assert out[k] is d[k]


def test_planner_samples_add_recovery_copies_marked_and_seeded(tmp_path):
    cfg = PlannerConfig(max_agents=4, camera_size=(80, 45))
    tok = InstructionTokenizer(cfg.max_text_tokens)
    path = write_fake_shard(tmp_path, "train", "highway", 0, n=3)
    plain = planner.PlannerSamples([path], cfg, tok)
    two = planner.PlannerSamples([path], cfg, tok, recovery_copies=2, seed=5)
    again = planner.PlannerSamples([path], cfg, tok, recovery_copies=2, seed=5)
    assert len(plain) == 3 and len(two) == 9
    assert two.recovered.tolist() == [False] * 3 + [True] * 6 and not plain.recovered.any()
    assert two.seeds.tolist() == [0] * 9
    for k in ("ego", "plan_target", "agent_feats"):
        np.testing.assert_array_equal(two.data[k][:3].numpy(), plain.data[k].numpy())
        np.testing.assert_array_equal(two.data[k].numpy(), again.data[k].numpy())
        assert not np.allclose(two.data[k][3:6].numpy(), plain.data[k].numpy())
    with pytest.raises(ValueError, match="recovery_copies"):
        planner.PlannerSamples([path], cfg, tok, recovery_copies=-1)
    with pytest.raises(ValueError, match="lateral_sigma_m"):
        RecoveryConfig(lateral_sigma_m=float("nan"))


def test_a_slower_ego_is_labelled_with_a_catch_up_to_the_experts_speed(tmp_path):
    """--recovery-speed-prob: a copy seen at 6 m/s behind a 10 m/s expert travels less far per
    step than the expert, speeds up at the catch-up rate (the gap to the expert's profile stops
    growing once caught up) and never moves backwards; its ego token reads the slower speed."""
    from training.recovery import speed_recovery_shift

    times = 0.5 * np.arange(1, 9)
    ds = speed_recovery_shift(times, 4.0, 2.0)          # 4 m/s slower, catches up in 2 s
    rec = recovery_plan(STRAIGHT, ALL, 0.0, 0.0, 6.0, CFG, ds)
    np.testing.assert_allclose(rec[:, 1], 0.0, atol=1e-9)
    np.testing.assert_allclose(rec[0, 0], 6.0 * 0.5 + 0.5 * 2.0 * 0.25, atol=1e-6)   # v0 t + a t^2 / 2
    gap = STRAIGHT[:, 0] - rec[:, 0]
    assert np.all(np.diff(gap[:4]) > 0) and np.allclose(gap[3:], 4.0, atol=1e-6)   # 4 m lost by t = 2 s
    assert np.all(np.diff(rec[:, 0]) > 0)
    np.testing.assert_allclose(speed_recovery_shift(times, 0.0, 2.0), 0.0)
    # a standing expert: nothing to catch up, and a slower ego stays put rather than backing up
    np.testing.assert_allclose(recovery_plan(np.zeros((8, 2)), ALL, 0.0, 0.0, 0.0, CFG,
                                             speed_recovery_shift(times, 2.0, 2.0)), 0.0, atol=1e-9)

    # in a shard: the drawn factor scales the ego speed the token reads; 0 draws nothing extra
    path_ = write_fake_shard(tmp_path, "train", "highway", 0, n=6)
    with np.load(path_) as z:
        d = {k: z[k] for k in z.files}
    d["ego_speed"] = np.full(6, 10.0, np.float32)
    cfg = RecoveryConfig(speed_prob=1.0, speed_min_factor=0.5, speed_max_factor=0.9)
    out = displace_shard(d, np.random.default_rng(0), cfg)
    f = out["recovery_speed_factor"]
    assert np.all((f >= 0.5) & (f <= 0.9))
    np.testing.assert_allclose(out["ego_speed"], 10.0 * f)
    plain = displace_shard(d, np.random.default_rng(0), RecoveryConfig())
    again = displace_shard(d, np.random.default_rng(0), RecoveryConfig(speed_prob=0.0))
    np.testing.assert_array_equal(plain["recovery_offset"], again["recovery_offset"])
    np.testing.assert_array_equal(plain["recovery_speed_factor"], 1.0)
    with pytest.raises(ValueError, match="speed_min_factor"):
        RecoveryConfig(speed_prob=0.5, speed_min_factor=0.9, speed_max_factor=0.5)


def test_the_trainer_feeds_the_acceleration_slot_as_the_config_says(tmp_path):
    """The trainer and the onboard inputs agree (layout.ego_accel_input): with ego_accel_input False
    every sample's acceleration slot is 0, recovery copies included; the other slots are unchanged."""
    tok = InstructionTokenizer(8)
    path = write_fake_shard(tmp_path, "train", "highway", 0, n=3)
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    accel = np.array([-4.0, -1.5, 0.8])
    d["ego_accel"] = accel.astype(np.float32)
    np.savez_compressed(path, **d)
    measured = planner.PlannerSamples([path], PlannerConfig(max_agents=4, camera_size=(80, 45)), tok,
                                      recovery_copies=1, seed=1)
    zeroed = planner.PlannerSamples([path], PlannerConfig(max_agents=4, camera_size=(80, 45), ego_accel_input=False),
                                    tok, recovery_copies=1, seed=1)
    np.testing.assert_allclose(measured.data["ego"][:3, 1].numpy(), accel / 3.0, rtol=1e-6)
    assert (zeroed.data["ego"][:, 1] == 0).all()
    np.testing.assert_array_equal(np.delete(measured.data["ego"].numpy(), 1, axis=1),
                                  np.delete(zeroed.data["ego"].numpy(), 1, axis=1))


def test_accel_noise_replaces_only_the_acceleration_slot_of_about_the_share_asked_from_the_pool():
    """--ego-accel-noise (planner.swap_ego_accel): only column 1 changes, in about ``share`` of the
    rows, to values of the pool; share 0 leaves the batch as it is; a share outside [0, 1] is refused."""
    rng = np.random.default_rng(0)
    ego = torch.arange(4000 * 5, dtype=torch.float32).reshape(4000, 5)
    pool = torch.tensor([-2.0, -1.0, 0.5])
    out = planner.swap_ego_accel(ego, pool, 0.3, rng)
    changed = (out != ego).any(1)
    assert 0.27 < float(changed.float().mean()) < 0.33
    assert torch.equal(torch.cat([out[:, :1], out[:, 2:]], 1), torch.cat([ego[:, :1], ego[:, 2:]], 1))
    assert set(out[changed, 1].tolist()) <= set(pool.tolist())
    assert torch.equal(ego[:, 1], torch.arange(4000, dtype=torch.float32) * 5 + 1)  # the input is not modified
    assert planner.swap_ego_accel(ego, pool, 0.0, rng) is ego
    with pytest.raises(ValueError, match="share"):
        planner.swap_ego_accel(ego, pool, 1.5, rng)


def test_brake_accel_zero_feeds_0_only_on_braking_in_view_rows():
    """--brake-accel-zero (planner.zero_brake_accel): the acceleration slot becomes 0 on about
    ``share`` of the braking-in-view rows and on no other row; nothing else changes; share 0 or no
    such row leaves the batch as it is; a share outside [0, 1] is refused; and the option is refused
    without the acceleration input."""
    rng = np.random.default_rng(0)
    ego = torch.arange(4000 * 5, dtype=torch.float32).reshape(4000, 5) + 1.0
    seen = np.arange(4000) % 2 == 0
    out = planner.zero_brake_accel(ego, seen, 0.5, rng)
    changed = (out != ego).any(1).numpy()
    assert not changed[~seen].any() and 0.46 < changed[seen].mean() < 0.54
    assert (out[torch.from_numpy(changed), 1] == 0.0).all()
    assert torch.equal(torch.cat([out[:, :1], out[:, 2:]], 1), torch.cat([ego[:, :1], ego[:, 2:]], 1))
    assert (ego[:, 1] != 0.0).all()                       # the input is not modified
    assert (planner.zero_brake_accel(ego, seen, 1.0, rng)[torch.from_numpy(seen), 1] == 0.0).all()
    assert planner.zero_brake_accel(ego, seen, 0.0, rng) is ego
    assert planner.zero_brake_accel(ego, np.zeros(4000, bool), 1.0, rng) is ego
    with pytest.raises(ValueError, match="share"):
        planner.zero_brake_accel(ego, seen, -0.1, rng)


def test_accel_noise_is_refused_without_the_acceleration_input(tmp_path):
    """--ego-accel-noise with --no-ego-accel would train on noise the planner never reads onboard."""
    write_fake_shard(tmp_path, "train", "highway", 0, n=3)
    args = planner.build_parser().parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "runs"),
                                              "--no-ego-accel", "--ego-accel-noise", "0.5", "--max-steps", "1"])
    with pytest.raises(ValueError, match="ego-accel-noise"):
        planner.train(args)
    args = planner.build_parser().parse_args(["--data", str(tmp_path), "--out", str(tmp_path / "runs"),
                                              "--no-ego-accel", "--brake-accel-zero", "1", "--max-steps", "1"])
    with pytest.raises(ValueError, match="brake-accel-zero"):
        planner.train(args)


def _braking_frames(n=5):
    """Frames of an ego at 20 m/s whose expert plan slows to 8 m/s (the points 0.5 s apart), with
    no agent, no stop line."""
    a = 8
    steps = np.linspace(10.0, 4.0, 8) * 0.5      # 20 m/s -> 8 m/s over the plan
    plan = np.tile(np.column_stack([np.cumsum(steps), np.zeros(8)])[None], (n, 1, 1)).astype(np.float32)
    return {"t_s": np.arange(n) * 0.5, "plan": plan, "plan_valid": np.ones((n, 8), bool),
            "ego_speed": np.full(n, 20.0, np.float32), "tok_geom": np.zeros((n, a, 7), np.float32),
            "tok_mask": np.zeros((n, a), bool), "stop_line_m": np.full(n, np.nan, np.float32)}


def test_unobserved_braking_is_braking_with_nothing_in_view_that_explains_it():
    """training.planner.unobserved_braking: an expert that brakes with an empty corridor is picked
    out; a token in the lane ahead, a car in the next lane, a pedestrian walking towards the path,
    or a stop line each explain the braking; an expert that holds its speed is never picked."""
    d = _braking_frames()
    d["tok_mask"][1:, 0] = True
    d["tok_geom"][1, 0, :2] = (45.0, 0.3)                 # stopped car in the lane, 45 m ahead
    d["tok_geom"][2, 0, :2] = (20.0, 3.5)                 # a car in the next lane (could cut in)
    d["tok_geom"][3, 0, [0, 1, 6]] = (15.0, -9.0, 1.4)    # a pedestrian 9 m right, walking left
    d["tok_geom"][4, 0, [0, 1, 6]] = (15.0, -9.0, -1.4)   # ... walking away from the path
    np.testing.assert_array_equal(planner.unobserved_braking(d), [True, False, False, False, True])
    d["stop_line_m"][0] = 30.0
    assert not planner.unobserved_braking(d)[0]
    d["tok_geom"][1, 0, :2] = (75.0, 0.3)                 # beyond the corridor's 60 m: not seen
    assert planner.unobserved_braking(d)[1]
    cruise = _braking_frames()
    cruise["plan"] = np.tile(np.column_stack([np.arange(1, 9) * 10.0, np.zeros(8)])[None], (5, 1, 1)).astype(np.float32)
    assert not planner.unobserved_braking(cruise).any()


def test_masked_unobserved_braking_leaves_only_those_plans_out_of_the_loss(tmp_path):
    """PlannerSamples(mask_unobserved_braking=True): the picked frames' plan_valid is False in the
    original and in its recovery copy; every other target and frame is as without the option."""
    tok = InstructionTokenizer(8)
    path = write_fake_shard(tmp_path, "train", "highway", 0, n=3, n_tokens=0)
    with np.load(path) as z:
        d = {k: z[k] for k in z.files}
    d.update({k: v[:3] for k, v in _braking_frames(3).items() if k not in ("tok_geom", "tok_mask", "t_s")})
    d["plan"][1] = np.column_stack([np.arange(1, 9) * 10.0, np.zeros(8)])  # frame 1 keeps 20 m/s
    np.savez_compressed(path, **d)
    cfg = PlannerConfig(max_agents=4, camera_size=(80, 45))
    plain = planner.PlannerSamples([path], cfg, tok, recovery_copies=1, seed=1)
    masked = planner.PlannerSamples([path], cfg, tok, recovery_copies=1, seed=1, mask_unobserved_braking=True)
    np.testing.assert_array_equal(masked.unobserved, [True, False, True] * 2)
    assert plain.data["plan_valid"].all()
    np.testing.assert_array_equal(masked.data["plan_valid"].any(1).numpy(), ~masked.unobserved)
    for k in ("plan_target", "ego", "fut_valid", "intent"):
        assert torch.equal(plain.data[k], masked.data[k]), k


def test_braking_in_view_is_the_braking_the_planner_must_read_from_the_scene_and_is_drawn_brake_weight_times(tmp_path):
    """training.planner.braking_in_view: the expert brakes and something in view explains it (the
    complement of unobserved_braking among braking frames); --brake-weight draws those samples, and
    their recovery copies, that many times per epoch."""
    d = _braking_frames()
    d["tok_mask"][1:3, 0] = True
    d["tok_geom"][1, 0, :2] = (45.0, 0.3)                 # stopped car in the lane, 45 m ahead
    d["tok_geom"][2, 0, :2] = (20.0, 3.5)                 # a car in the next lane
    d["stop_line_m"][3] = 30.0                            # a stop line
    d["plan"][4] = np.column_stack([np.arange(1, 9) * 10.0, np.zeros(8)])   # frame 4 keeps 20 m/s
    np.testing.assert_array_equal(planner.braking_in_view(d), [False, True, True, True, False])
    np.testing.assert_array_equal(planner.unobserved_braking(d), [True, False, False, False, False])

    tok = InstructionTokenizer(8)
    path = write_fake_shard(tmp_path, "train", "highway", 0, n=3, n_tokens=0)
    with np.load(path) as z:
        shard = {k: z[k] for k in z.files}
    shard.update({k: v[:3] for k, v in _braking_frames(3).items() if k not in ("tok_geom", "tok_mask", "t_s")})
    shard["stop_line_m"][1] = 30.0                        # frame 1 brakes for a stop line; 0 and 2 for nothing
    np.savez_compressed(path, **shard)
    s = planner.PlannerSamples([path], PlannerConfig(max_agents=4, camera_size=(80, 45)), tok, recovery_copies=1, seed=1)
    np.testing.assert_array_equal(s.brakes_seen, [False, True, False] * 2)
    np.testing.assert_array_equal(s.subset([1, 2]).brakes_seen, [True, False])
    assert np.bincount(planner.epoch_pool(s, brake_weight=4)).tolist() == [1, 4, 1, 1, 4, 1]
    assert planner.epoch_pool(s).tolist() == list(range(6))
    with pytest.raises(ValueError, match="brake_weight"):
        planner.epoch_pool(s, brake_weight=0)


def test_brake_probe_groups_frames_by_the_experts_braking_and_scores_the_drop_share():
    """training.brake_eval: frames fall in brakes_seen / brakes_unseen / keeps by the expert's speed
    at +2.5..3 s and the cause in view (the planner's expert_braking / braking_cause_in_view); the
    drop share is the share of the expert's speed drop the plan reproduces."""
    from training import brake_eval

    traj = np.zeros((1, 8, 2))
    traj[0, :, 0] = np.arange(1, 9) * 6.0                 # 12 m/s at 0.5-s steps
    assert brake_eval.plan_speed(traj, 0.5)[0] == pytest.approx(12.0)
    d = _braking_frames()                                 # an ego at 20 m/s
    d["plan"][:2] = np.column_stack([np.arange(1, 9) * 5.0, np.zeros(8)])   # frames 0, 1: the expert at 10 m/s
    d["tok_mask"][[0, 4], 0] = True
    d["tok_geom"][[0, 4], 0, :2] = (45.0, 0.3)            # the cause in view: a car ahead
    d["plan"][2] = np.column_stack([np.arange(1, 9) * 9.5, np.zeros(8)])    # frame 2 keeps 19 m/s
    d["plan_valid"][3, 5] = False                         # frame 3: no expert speed
    d["plan"][4] = np.column_stack([np.arange(1, 9) * 4.0, np.zeros(8)])    # frame 4 brakes to 8 m/s
    ego, expert, g = brake_eval.shard_frames(d, 0.5)
    np.testing.assert_allclose(expert[[0, 1, 2, 4]], [10.0, 10.0, 19.0, 8.0], rtol=1e-5)
    assert np.isnan(expert[3]) and ego.tolist() == [20.0] * 5
    assert g["brakes_seen"].tolist() == [True, False, False, False, True]
    assert g["brakes_unseen"].tolist() == [False, True, False, False, False]
    assert g["keeps"].tolist() == [False, False, True, False, False]      # the invalid frame is in none
    np.testing.assert_array_equal(g["brakes_unseen"], planner.unobserved_braking(d))
    np.testing.assert_array_equal(g["brakes_seen"], planner.braking_in_view(d))
    plan = np.array([15.0, 20.0, 19.0, 5.0, 8.0])          # half of the first drop, all of the last
    fig = brake_eval.group_figures(ego, expert, plan, g)
    assert fig["brakes_seen"]["n"] == 2 and fig["brakes_seen"]["drop_share"] == pytest.approx(0.75)
    assert fig["brakes_unseen"]["drop_share"] == pytest.approx(0.0)
    assert fig["keeps"]["plan_mps"] == pytest.approx(19.0) and "drop_share" not in fig["keeps"]
    empty = brake_eval.group_figures(ego, expert, plan, {k: np.zeros(5, bool) for k in brake_eval.GROUPS})
    assert empty["brakes_seen"]["n"] == 0 and np.isnan(empty["brakes_seen"]["drop_share"])
    assert "fed 0" in brake_eval.table({"m": {"accel": fig, "accel0": fig}})
