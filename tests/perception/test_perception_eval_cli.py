"""eval_detector CLI end to end with the shipped model on a fresh held-out (VAL) episode, and its
refusal of training seeds."""

from __future__ import annotations

import json

from perception_helpers import SHIPPED_MODEL_DIR
from tps_perception.eval_detector import main

SEEDS = "1002:1003"  # VAL seed, medium clutter


def test_eval_cli_writes_json_and_markdown(tmp_path):
    out = tmp_path / "eval.json"
    rc = main(["--seeds", SEEDS, "--scenarios", "cut_in", "--duration", "4", "--frame-stride", "5",
               "--backend", "onnxruntime-int8", "--model-dir", str(SHIPPED_MODEL_DIR), "--threads", "1",
               "--json", str(out)])
    assert rc == 0
    res = json.loads(out.read_text())
    assert {"car_map", "per_clutter", "backend"} <= set(res)
    assert res["backend"] == "onnxruntime-int8" and res["frames"] == 9
    assert set(res["per_clutter"]) == {"medium"}
    assert 0.0 <= res["overall"]["map"]["car"] <= 1.0
    assert "car" in out.with_suffix(".md").read_text()
    assert res["ground_truth"].startswith("traffic + parked cars")


def test_eval_cli_traffic_only_scores_fewer_cars(tmp_path):
    """Seed 1002 is medium clutter: its parked cars are in the default ground truth only."""
    runs = {}
    for name, extra in (("all", []), ("traffic", ["--traffic-only"])):
        out = tmp_path / f"{name}.json"
        assert main(["--seeds", SEEDS, "--scenarios", "cut_in", "--duration", "2", "--frame-stride", "10",
                     "--backend", "onnxruntime-int8", "--model-dir", str(SHIPPED_MODEL_DIR), "--threads", "1",
                     "--json", str(out), *extra]) == 0
        runs[name] = json.loads(out.read_text())
    assert runs["traffic"]["ground_truth"].startswith("traffic only")
    assert 0 < runs["traffic"]["overall"]["num_gt"]["car"] < runs["all"]["overall"]["num_gt"]["car"]


def test_eval_cli_refuses_training_seeds(tmp_path, capsys):
    assert main(["--seeds", "0:2", "--model-dir", str(SHIPPED_MODEL_DIR)]) == 2
    assert "TRAIN seeds" in capsys.readouterr().err
