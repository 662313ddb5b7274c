"""``tps-eval detector`` end to end with the shipped model: fresh held-out (VAL) episodes keep the
JSON keys of the former ``python -m tps_perception.eval_detector``; stored shards are labelled by
their seeds' split (TRAIN/VAL never held out, a seed outside the splits held out)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from tps_eval.cli import main
from tps_eval.detector.data import synthetic_frames

SHIPPED_MODEL_DIR = Path(__file__).resolve().parents[2] / "models" / "detector"
SEEDS = "1002:1003"  # VAL seed, medium clutter
# The JSON keys of the former eval_detector (kept) and those the seed handling adds.
LEGACY_KEYS = {"backend", "source", "frames", "car_map", "mean_ap", "per_clutter", "overall",
               "latency_ms_median", "max_range_m", "dist_ths_m", "model_dir", "ground_truth",
               "eval_wall_s"}
SEED_KEYS = {"seeds", "split", "held_out"}
OVERALL_KEYS = {"ap", "map", "tp", "num_gt", "mean_ap"}
COMMON_ARGS = ["--backend", "onnxruntime-int8", "--model-dir", str(SHIPPED_MODEL_DIR), "--threads", "1"]


def test_detector_verb_writes_json_and_markdown(tmp_path):
    out = tmp_path / "eval.json"
    rc = main(["detector", "--seeds", SEEDS, "--scenarios", "cut_in", "--duration", "4",
               "--frame-stride", "5", *COMMON_ARGS, "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert set(res) == LEGACY_KEYS | SEED_KEYS
    assert set(res["overall"]) == OVERALL_KEYS
    assert res["backend"] == "onnxruntime-int8" and res["frames"] == 9
    assert set(res["per_clutter"]) == {"medium"}
    assert 0.0 <= res["overall"]["map"]["car"] <= 1.0
    assert res["ground_truth"].startswith("traffic + parked cars")
    # VAL seeds: evaluated, labelled val, never held out
    assert res["split"] == "val" and res["held_out"] is False
    assert res["seeds"]["first"] == 1002 and res["seeds"]["count"] == 1
    md = out.with_suffix(".md").read_text()
    assert "car" in md and "NOT held out" in md


def test_detector_verb_traffic_only_scores_fewer_cars(tmp_path):
    """Seed 1002 is medium clutter: its parked cars are in the default ground truth only."""
    runs = {}
    for name, extra in (("all", []), ("traffic", ["--traffic-only"])):
        out = tmp_path / f"{name}.json"
        assert main(["detector", "--seeds", SEEDS, "--scenarios", "cut_in", "--duration", "2",
                     "--frame-stride", "10", *COMMON_ARGS, "--json", str(out), *extra]) == 0
        runs[name] = json.loads(out.read_text())
    assert runs["traffic"]["ground_truth"].startswith("traffic only")
    assert 0 < runs["traffic"]["overall"]["num_gt"]["car"] < runs["all"]["overall"]["num_gt"]["car"]


def _write_shard(path: Path, seed: int) -> None:
    """A two-frame shard (tps_sim.dataset layout) of the synthetic lidar scene of ``seed``."""
    frames = synthetic_frames(seed, n_frames=2, n_vehicles=12)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path,
             meta_json=json.dumps({"clutter": "low", "seed": seed, "scenario": "synthetic"}),
             t_s=np.array([f.t_s for f in frames]),
             points=np.concatenate([f.points for f in frames]),
             point_offsets=np.cumsum([0] + [len(f.points) for f in frames]),
             gt_boxes=np.concatenate([f.gt_boxes for f in frames]),
             gt_offsets=np.cumsum([0] + [len(f.gt_boxes) for f in frames]),
             gt_class=np.concatenate([f.gt_class for f in frames]),
             gt_id=np.concatenate([f.gt_id for f in frames]),
             gt_num_points=np.concatenate([f.gt_num_points for f in frames]),
             ego_pose=np.stack([f.ego_pose for f in frames]))


@pytest.mark.parametrize(("split", "seed", "label", "held_out"), [
    ("train", 3, "train", False),          # a TRAIN seed is scored but never held out
    ("test", 9004, "test", True),
    ("test", 5000, "unassigned", True),    # outside every split: accepted, held out
])
def test_stored_split_is_labelled_by_its_seeds(tmp_path, capsys, split, seed, label, held_out):
    _write_shard(tmp_path / split / "synthetic" / f"seed{seed}.npz", seed)
    out = tmp_path / "eval.json"
    assert main(["detector", "--split", split, "--data-root", str(tmp_path), *COMMON_ARGS,
                 "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert set(res) == LEGACY_KEYS | SEED_KEYS
    assert res["source"] == f"split {split}" and res["frames"] == 2
    assert (res["split"], res["held_out"]) == (label, held_out)
    assert ("not held out" in capsys.readouterr().err) == (not held_out)


def test_missing_shards_and_bad_seeds_are_usage_errors(tmp_path, capsys):
    assert main(["detector", "--split", "val", "--data-root", str(tmp_path), *COMMON_ARGS]) == 2
    assert "no shards" in capsys.readouterr().err
    assert main(["detector", "--seeds", "9:3", *COMMON_ARGS]) == 2
    assert "empty" in capsys.readouterr().err
