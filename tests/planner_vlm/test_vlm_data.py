"""The planner's dataset pieces and trainer on small synthetic shards (the simulator-backed builder
is exercised by ``python -m training.planner_data``; TEST seeds are refused before anything runs)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from tps_planner.vlm.layout import PlannerConfig
from tps_planner.vlm.model import InstructionTokenizer
from vlm_helpers import write_fake_shard

from training import planner, planner_data


def test_builder_refuses_test_seeds(tmp_path):
    with pytest.raises(ValueError, match="held-out TEST seed"):
        planner_data.build_episode("highway", 9000, tmp_path, core=None, core_info={})
    assert not any(tmp_path.iterdir())


def test_expert_plan_in_base_link():
    # driving along +y at 10 m/s, 0.1 s frames: +0.5 s = 5 m straight ahead (base_link +x)
    t = np.arange(60) * 0.1
    poses = np.column_stack([np.zeros(60), 10.0 * t, np.full(60, np.pi / 2)])
    plan, valid = planner_data.expert_plan(poses, 10, 5)
    assert valid.tolist() == [True] * 8
    np.testing.assert_allclose(plan[:, 0], 5.0 * np.arange(1, 9), atol=1e-5)
    np.testing.assert_allclose(plan[:, 1], 0.0, atol=1e-5)
    plan, valid = planner_data.expert_plan(poses, 40, 5)
    assert valid.tolist() == [True, True, True] + [False] * 5


def test_samples_convert_and_refuse_held_out_shards(tmp_path):
    cfg = PlannerConfig(max_agents=4, camera_size=(80, 45))
    tok = InstructionTokenizer(cfg.max_text_tokens)
    p = write_fake_shard(tmp_path, "train", "signalised", 3, n=3, n_tokens=6, lead=[2, -2, 5])
    s = planner.PlannerSamples([p], cfg, tok)
    assert len(s) == 3
    b = s.batch([0, 1, 2])
    assert b["camera"].shape == (3, 3, 45, 80) and float(b["camera"].max()) <= 1.0
    assert b["agent_mask"].sum(1).tolist() == [4, 4, 4]          # 6 tokens, the first 4 kept
    assert b["lead"].tolist() == [2, 4, -1]                       # slot, none (= A), beyond A (ignored)
    assert b["scene"].tolist() == [4, 4, 4] and b["light"].tolist() == [1, 0, 0]
    assert b["ego"].shape == (3, cfg.ego_dim) and b["ego"][0, -4] == 1.0 and b["ego"][1, -4] == 0.0
    assert b["text_mask"][0].sum() == 7                           # [CLS] turn right at the lights [SEP]
    # slots are trimmed to the batch's most agents; "no lead" follows the new slot count
    p2 = write_fake_shard(tmp_path, "train", "highway", 4, n=2, n_tokens=2, lead=[-2, 1])
    b2 = planner.PlannerSamples([p2], cfg, tok).batch([0, 1])
    assert b2["agent_mask"].shape == (2, 2) and b2["fut_target"].shape[1] == 2 and b2["intent"].shape == (2, 2)
    assert b2["lead"].tolist() == [2, 1]
    bad = write_fake_shard(tmp_path, "test", "signalised", 9001)
    with pytest.raises(ValueError, match="TEST seed"):
        planner.PlannerSamples([bad], cfg, tok)


def test_targeted_samples_are_drawn_targeted_weight_times_per_epoch(tmp_path):
    """--targeted-weight: the samples of TARGETED-seed episodes (--from-search data) enter an
    epoch's pool that many times, every other sample once; 1 = the plain epoch."""
    from tps_sim.splits import TARGETED

    cfg = PlannerConfig(max_agents=4, camera_size=(80, 45))
    tok = InstructionTokenizer(cfg.max_text_tokens)
    regular = write_fake_shard(tmp_path, "train", "cut_in", 3, n=3)
    targeted = write_fake_shard(tmp_path, "train", "cut_in", TARGETED[0], n=2)
    s = planner.PlannerSamples([regular, targeted], cfg, tok)
    assert s.seeds.tolist() == [3, 3, 3, TARGETED[0], TARGETED[0]]
    assert planner.epoch_pool(s, 1).tolist() == [0, 1, 2, 3, 4]
    pool = planner.epoch_pool(s, 3)
    assert np.bincount(pool).tolist() == [1, 1, 1, 3, 3]
    with pytest.raises(ValueError, match="targeted_weight"):
        planner.epoch_pool(s, 0)


def test_instructed_lane_change_samples_are_drawn_manoeuvre_weight_times_per_epoch(tmp_path):
    """--manoeuvre-weight: the samples of episodes whose instruction commanded a lane change that
    was made enter the pool that many times; a change the road did not allow (the same lane on
    both sides) and an episode without one are drawn once."""
    cfg = PlannerConfig(max_agents=4, camera_size=(80, 45))
    tok = InstructionTokenizer(cfg.max_text_tokens)
    keep = write_fake_shard(tmp_path, "train", "highway", 3, n=2)
    left = write_fake_shard(tmp_path, "train", "highway", 4, n=2, lane_change=[2.5, 0, 1])
    refused = write_fake_shard(tmp_path, "train", "highway", 5, n=1, lane_change=[2.5, 1, 1])
    s = planner.PlannerSamples([keep, left, refused], cfg, tok)
    assert s.manoeuvre.tolist() == [False, False, True, True, False]
    assert s.subset([2, 4]).manoeuvre.tolist() == [True, False]
    assert np.bincount(planner.epoch_pool(s, 1, 4)).tolist() == [1, 1, 4, 4, 1]
    with pytest.raises(ValueError, match="manoeuvre_weight"):
        planner.epoch_pool(s, 1, 0)


@pytest.mark.slow
def test_training_smoke_writes_log_checkpoint_and_reloads(tmp_path):
    for seed in (0, 1):
        write_fake_shard(tmp_path / "data", "train", "signalised", seed, n=3)
    write_fake_shard(tmp_path / "data", "val", "highway", 1000, n=2)
    rc = planner.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--run", "smoke",
                       "--max-steps", "3", "--batch", "2", "--max-agents", "8", "--time-budget-min", "5",
                       "--recovery-copies", "1", "--brake-accel-zero", "1"])
    assert rc == 0
    run = tmp_path / "runs" / "smoke"
    rows = list(csv.DictReader((run / "train_log.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(np.isfinite(float(r["loss"])) and float(r["step_s"]) > 0 for r in rows)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 3 and summary["val"] and summary["train_samples"] == 12
    assert summary["recovered_samples"] == 6 and summary["recovery"]["recovery_s"] == 2.5
    assert summary["val_samples"] == 2     # VAL is never displaced
    assert summary["brake_accel_zero"] == 1.0
    model, ckpt = planner.load_planner(run / "planner.pt")
    assert set(ckpt["state_dict"]) and all("lora_" in k or not k.startswith("trunk.") for k in ckpt["state_dict"])
    cfg = model.cfg
    tok = InstructionTokenizer(cfg.max_text_tokens)
    val = planner.PlannerSamples(sorted((tmp_path / "data" / "val").rglob("*.npz")), cfg, tok, ("val",))
    with torch.no_grad():
        again = planner.evaluate(model, val)
    assert again["loss"] == pytest.approx(summary["val"][-1]["loss"], rel=1e-4)
    # the recovery probe (python -m training.recovery_eval) on displaced copies of the VAL shards
    from training import recovery_eval

    out = tmp_path / "probe.json"
    assert recovery_eval.main([str(run / "planner.pt"), "--data", str(tmp_path / "data"), "--lateral-sigma", "1.0",
                               "--json", str(out)]) == 0
    probe = json.loads(out.read_text())[str(run / "planner.pt")]
    assert probe["samples"] == 2 and np.isfinite(probe["l2_mean"]) and np.isfinite(probe["l2_mean_nominal"])
    assert probe["removed_samples"] <= 2
    # the braking probe (python -m training.brake_eval): both passes, every frame in at most one group
    from training import brake_eval

    out = tmp_path / "brake.json"
    assert brake_eval.main([str(run / "planner.pt"), "--data", str(tmp_path / "data"), "--json", str(out)]) == 0
    brake = json.loads(out.read_text())[str(run / "planner.pt")]
    assert set(brake) == {"accel", "accel0"}
    assert sum(g["n"] for g in brake["accel"].values()) <= 2
    assert brake_eval.main([str(run / "planner.pt"), "--data", str(tmp_path / "nothing")]) == 2

    # fine-tune from that checkpoint (--init): its configuration wins over the command line's, its
    # parameters are the start (before any step the VAL loss is the checkpoint's), then they move
    rc = planner.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--run", "tuned",
                       "--init", str(run / "planner.pt"), "--max-steps", "0", "--epochs", "0",
                       "--batch", "2", "--max-agents", "16", "--time-budget-min", "5"])
    assert rc == 0
    tuned = json.loads((tmp_path / "runs" / "tuned" / "summary.json").read_text())
    assert tuned["init"] == str(run / "planner.pt") and tuned["config"]["max_agents"] == 8
    start, _ = planner.load_planner(tmp_path / "runs" / "tuned" / "planner.pt")
    with torch.no_grad():
        assert planner.evaluate(start, val)["loss"] == pytest.approx(again["loss"], rel=1e-5)
    rc = planner.main(["--data", str(tmp_path / "data"), "--out", str(tmp_path / "runs"), "--run", "tuned2",
                       "--init", str(run / "planner.pt"), "--max-steps", "2", "--batch", "2",
                       "--time-budget-min", "5", "--lr", "1e-2"])
    assert rc == 0
    moved, ck2 = planner.load_planner(tmp_path / "runs" / "tuned2" / "planner.pt")
    assert any(not torch.equal(ck2["state_dict"][k].float(), ckpt["state_dict"][k].float()) for k in ckpt["state_dict"])


class _StubPerception:
    """Stands in for the detector + tokenizer in this unit test only (the real core runs in
    ``python -m training.planner_data``): it reports every ground-truth agent 0.3 m off, plus one
    false positive, farthest-first, so matching, ordering and labels can be checked exactly."""

    def __init__(self, arrays):
        from tps_sim.dataset import Episode

        self.ep, self.i = Episode(arrays), 0

    def reset(self):
        self.i = 0

    def run(self, points, t_s, pose):
        from types import SimpleNamespace

        from tps_perception.postprocess import Detections
        from tps_perception.tokenizer import AgentTokens

        gt = self.ep.gt(self.i)
        self.i += 1
        fp = np.array([[40.0, -10.0, 0.8, 4.5, 1.8, 1.6, 0.0]], np.float32)
        boxes = np.concatenate([fp, gt.boxes[::-1, :7] + np.float32([0.3, 0, 0, 0, 0, 0, 0])])
        vel = np.concatenate([[[0.0, 0.0]], gt.boxes[::-1, 7:9]]).astype(np.float32)
        n = len(boxes)
        geom = np.column_stack([boxes[:, 0], boxes[:, 1], boxes[:, 6], boxes[:, 3], boxes[:, 4], vel]).astype(np.float32)
        tokens = AgentTokens(np.arange(10, 10 + n, dtype=np.uint32), np.arange(n, dtype=np.uint32),
                             np.full(n, 0.5, np.float32), geom, np.zeros(0, np.uint32), np.zeros(0, np.float32), 512, 64)
        return SimpleNamespace(tokens=tokens, detections=Detections(boxes, np.full(n, 0.9, np.float32),
                                                                    np.ones(n, np.uint8)))


def _synthetic_episode(t: int = 60) -> dict:
    """Ego at 10 m/s along map +x; a lead car 20 m ahead and a car in the left lane 5 m ahead at the
    same speed; a red light whose stop line is at map x = 60."""
    i = np.arange(t)
    fut_valid = (i[:, None] + 5 * np.arange(1, 7)[None]) < t
    k = np.arange(1, 7)
    boxes, futs, fvs = [], [], []
    for f in range(t):
        boxes += [[20.0, 0.0, 0.8, 4.5, 1.8, 1.6, 0.0, 10.0, 0.0], [5.0, 3.5, 0.8, 4.5, 1.8, 1.6, 0.0, 10.0, 0.0]]
        futs += [np.column_stack([20.0 + 5 * k, np.zeros(6)]), np.column_stack([5.0 + 5 * k, np.full(6, 3.5)])]
        fvs += [fut_valid[f], fut_valid[f]]
    ego_future = np.zeros((t, 6, 3), np.float32)
    ego_future[..., 0] = 5.0 * k
    stop = np.zeros((t, 1, 2, 2), np.float32)
    stop[:, 0, :, 0] = (60.0 - i)[:, None]
    stop[:, 0, :, 1] = [-3.0, 3.0]
    meta = {"scenario": "signalised", "seed": 5, "split": "train", "clutter": "none", "dt_s": 0.1, "frame_stride": 1,
            "lidar_height_m": 1.8, "future_step_s": 0.5,
            "instruction": {"text": "go straight", "command": 3, "exit_number": 0, "target_speed_mps": 12.0}}
    return {
        "meta_json": np.array(json.dumps(meta)), "t_s": i * 0.1,
        "points": np.zeros((t, 4), np.float32), "point_offsets": np.arange(t + 1, dtype=np.int64),
        "gt_offsets": np.arange(t + 1, dtype=np.int64) * 2, "gt_boxes": np.array(boxes, np.float32),
        "gt_class": np.ones(2 * t, np.uint8), "gt_id": np.tile([1, 2], t).astype(np.int32),
        "gt_num_points": np.full(2 * t, 50, np.int32), "gt_future": np.array(futs, np.float32),
        "gt_future_valid": np.array(fvs, bool),
        "ego_pose": np.column_stack([i * 1.0, np.zeros(t), np.zeros(t)]), "ego_speed": np.full(t, 10.0, np.float32),
        "ego_accel": np.zeros(t, np.float32), "ego_future": ego_future, "ego_future_valid": fut_valid,
        "image": np.zeros((t // 5, 90, 160, 3), np.uint8), "image_frame_idx": np.arange(0, t, 5),
        "route": np.array([[0.0, 0.0], [200.0, 0.0]]), "static_boxes": np.zeros((0, 8), np.float32),
        "light_id": np.array([5], np.int32), "light_on_route": np.array([True]),
        "light_state": np.zeros((t, 1), np.uint8), "light_stop_base": stop,
    }


def test_episode_samples_match_tokens_and_label_them():
    arrays = _synthetic_episode()
    s = planner_data.episode_samples(arrays, _StubPerception(arrays), sample_every=5, max_agents=8, max_gt=4)
    assert s["frame"].tolist() == list(range(0, 60, 5))
    f0 = {k: v[0] for k, v in s.items() if k != "route"}
    assert f0["tok_mask"].tolist() == [True] * 3 + [False] * 5
    np.testing.assert_allclose(f0["tok_geom"][:3, 0], [5.3, 20.3, 40.0])        # nearest first, detected boxes
    assert f0["tok_gt"][:3].tolist() == [1, 0, -1]                             # GT slots sorted by distance
    assert f0["lead"] == 1 and f0["light"] == 1 and f0["stop_line_m"] == pytest.approx(60.0)
    assert f0["intent"][:3].tolist() == [1, 1, -1]                             # keep lane, keep lane, FP: none
    assert f0["relevance"][:3].tolist() == [False, True, False]
    assert not f0["fut_valid"][2].any()
    np.testing.assert_allclose(f0["fut"][1, :, 0], 20.0 + 5.0 * np.arange(1, 7))
    np.testing.assert_allclose(f0["plan"][:, 0], 5.0 * np.arange(1, 9), atol=1e-5)
    assert s["plan_valid"][6].tolist() == [True] * 5 + [False] * 3            # frame 30: 60 frames end
    assert s["gt_mask"][0].tolist() == [True, True, False, False]
    assert s["image"].shape == (12, 90, 160, 3) and s["tok_code"].dtype == np.int32


def test_targeted_planner_data_from_a_search(tmp_path):
    """``python -m training.planner_data --from-search``: a failure's world (adversary, sensor
    fault) through the frozen INT8 perception into a TRAIN shard of the TARGETED seeds."""
    import subprocess
    import sys

    from tps_sim import splits

    options = {"scenario": "cut_in", "duration_s": 1.0, "density": 0.5, "clutter": "none",
               "faults": {"point_dropout": {"fraction": 0.3, "onset_s": 0.2}}, "obstacles": [],
               "route_goal_m": 50.0, "node_parameters": {}, "adversary": {"cut_gap_m": 4.0}}
    (tmp_path / "search.json").write_text(json.dumps({"space": "t", "seed": 1, "ranges": {}, "cases": [
        {"arm": "search", "trial": 0, "seed": 5001, "failure": True, "options": options}]}))
    out = tmp_path / "planner"
    proc = subprocess.run([sys.executable, "-m", "training.planner_data", "--from-search", str(tmp_path),
                           "--per-failure", "1", "-o", str(out), "--threads", "1"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    shard = out / "train" / "cut_in" / f"seed{splits.TARGETED[0]}.npz"
    with np.load(shard) as npz:
        meta = json.loads(str(npz["meta_json"]))
        assert npz["ego_pose"].shape[0] >= 1
    assert meta["adversary"] == {"cut_gap_m": 4.0} and meta["split"] == "train"
    assert meta["sensor_faults"] == options["faults"]
