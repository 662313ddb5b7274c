"""The evaluation harness against the nuScenes devkit on hand-made boxes."""

from __future__ import annotations

import numpy as np
import pytest
from tps_eval.detector.metrics import FrameBoxes, evaluate_boxes

SHIFT_M = 0.7  # beyond the 0.5 m threshold, within 1/2/4 m


def _frames(n: int = 4) -> tuple[list[FrameBoxes], list[FrameBoxes]]:
    rng = np.random.default_rng(0)
    gt, pred = [], []
    for k in range(n):
        boxes = np.array([[10 + 3 * k, -5, 0.75, 4.5, 1.9, 1.5, 0.1], [-15, 7, 0.9, 0.5, 0.5, 1.75, 1.0],
                          [25, 12, 1.7, 8.0, 2.5, 3.4, 0.0]], np.float32)
        labels = np.array([1, 4, 2], np.uint8)
        vel = rng.normal(0, 3, (3, 2)).astype(np.float32)
        gt.append(FrameBoxes(f"s{k}", boxes, labels, vel, num_pts=np.array([50, 10, 80])))
        pred.append(FrameBoxes(f"s{k}", boxes.copy(), labels, vel.copy(), scores=np.array([0.9, 0.8, 0.7])))
    return gt, pred


def test_perfect_predictions_score_ap_one_and_zero_errors():
    gt, pred = _frames()
    m = evaluate_boxes(gt, pred)
    for name in ("car", "pedestrian", "truck"):
        assert m.map[name] == pytest.approx(1.0)
        assert m.tp[name]["ATE"] == pytest.approx(0.0, abs=1e-5)
        assert m.tp[name]["AVE"] == pytest.approx(0.0, abs=1e-5)
    assert np.isnan(m.map["bus"]) and m.num_gt["bus"] == 0
    assert m.mean_ap == pytest.approx(1.0)


def test_shifted_predictions_score_lower():
    gt, pred = _frames()
    for p in pred:
        p.boxes[:, 0] += SHIFT_M
    m = evaluate_boxes(gt, pred)
    assert m.ap["car"]["0.5"] == pytest.approx(0.0)
    assert m.ap["car"]["1.0"] == pytest.approx(1.0)
    assert m.map["car"] == pytest.approx(0.75)
    assert m.tp["car"]["ATE"] == pytest.approx(SHIFT_M, abs=1e-4)


def test_missing_half_the_cars_halves_recall():
    gt, pred = _frames(4)
    for p in pred[:2]:
        keep = p.labels != 1
        p.boxes, p.labels, p.velocities, p.scores = p.boxes[keep], p.labels[keep], p.velocities[keep], p.scores[keep]
    assert evaluate_boxes(gt, pred).map["car"] < 0.6


def test_range_and_unseen_ground_truth_are_filtered():
    gt, pred = _frames(2)
    # a GT car 60 m away and one with no lidar points: neither counts as a miss
    for g in gt:
        g.boxes = np.concatenate([g.boxes, [[60, 0, 0.75, 4.5, 1.9, 1.5, 0], [5, 5, 0.75, 4.5, 1.9, 1.5, 0]]]).astype(np.float32)
        g.labels = np.concatenate([g.labels, [1, 1]]).astype(np.uint8)
        g.velocities = np.concatenate([g.velocities, np.zeros((2, 2))]).astype(np.float32)
        g.num_pts = np.concatenate([g.num_pts, [100, 0]])
    m = evaluate_boxes(gt, pred)
    assert m.map["car"] == pytest.approx(1.0) and m.num_gt["car"] == 2
