"""Training smoke run: a few synthetic frames, one epoch; checkpoints, CSV log and metadata appear,
the saved weights load back and reproduce the model's outputs."""

from __future__ import annotations

import csv
import json

import numpy as np
from tps_perception.backends import load_torch_model, torch_backend
from tps_perception.pillars import BevGridParams, points_to_bev

from training.detector import focal_loss, main, sampling_weights

SMOKE_ARGS = ["--synthetic-episodes", "2", "--synthetic-frames", "2", "--epochs", "1", "--batch-size", "2",
              "--threads", "1", "--run-name", "smoke", "--val-frames", "2"]


def test_focal_loss_is_lower_for_the_right_heatmap():
    import torch

    target = torch.zeros(1, 1, 8, 8)
    target[0, 0, 3, 3] = 1.0
    good = torch.full((1, 1, 8, 8), -6.0)
    good[0, 0, 3, 3] = 6.0
    bad = -good
    assert focal_loss(good, target) < 0.01 < focal_loss(bad, target)


def test_class_balanced_sampling_favours_frames_with_rare_classes():
    from tps_eval.detector.data import Frame

    def frame(classes, points):
        n = len(classes)
        return Frame(np.zeros((1, 4), np.float32), np.zeros((n, 9), np.float32), np.array(classes, np.uint8),
                     np.arange(n, dtype=np.int32), np.array(points, np.int32), 0.0, None, "none", 0, "unit", 0)

    frames = [frame([1, 1], [5, 5]), frame([1, 3], [5, 9]), frame([4], [0]), frame([], [])]
    w = sampling_weights(frames, 2.0)
    # the bus frame is drawn 3x as often; a pedestrian the lidar did not hit does not count
    np.testing.assert_allclose(w, np.array([1, 3, 1, 1]) / 6.0)
    assert sampling_weights(frames, 0.0) is None


def test_training_smoke_run_writes_artifacts(tmp_path, monkeypatch):
    monkeypatch.setenv("TPS_ROOT", str(tmp_path))
    assert main(SMOKE_ARGS) == 0
    run = tmp_path / "runs" / "detector" / "smoke"
    rows = list(csv.DictReader((run / "log.csv").open()))
    assert len(rows) == 1 and np.isfinite(float(rows[0]["train_loss"]))
    meta = json.loads((run / "final" / "detector.json").read_text())
    assert meta["info"]["epochs_done"] == 1 and meta["grid"]["cell_m"] == BevGridParams().cell_m
    model, ckpt = load_torch_model(run / "epoch01" / "detector.pt")
    from tps_eval.detector.data import synthetic_frames

    bev = points_to_bev(synthetic_frames(0, 1)[0].points, BevGridParams(**ckpt["grid"]))
    hm, reg = torch_backend(model, threads=1)(bev)
    assert hm.shape[0] == 5 and np.isfinite(hm).all() and np.isfinite(reg).all()
