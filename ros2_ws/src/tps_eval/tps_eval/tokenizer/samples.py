"""Per-frame records of the frozen detector for the tokenizer (training and evaluation).

An episode's frames run in time order through :class:`~tps_perception.tokenizer.PerceptionTokenizer`
(the onboard core: BEV -> detector -> decode -> tracker, exactly as the node) and each frame keeps
what the tokenizer needs: the detector's head input ``features``, the class heatmaps, the
published detections with their tracker velocities, the head targets an agent code must
reproduce (:func:`tps_perception.tokenizer_layout.head_targets`) and the match of each detection
to the ground truth (greedy by score, class-agnostic, centre distance <= :data:`MATCH_DIST_M`;
ground truth = agents the lidar hit within :data:`MAX_RANGE_M`, parked cars included as cars, as
for the detector's evaluation).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
from tps_perception.faults import FaultInjector
from tps_perception.postprocess import sigmoid
from tps_perception.tokenizer import PerceptionTokenizer
from tps_perception.tokenizer_layout import head_targets

from tps_eval.detector.data import Frame

MATCH_DIST_M = 2.0    # a detection within this centre distance of a ground-truth agent is that agent
MAX_RANGE_M = 50.0    # ground truth (and detections scored) within this range, as tps-eval detector


@dataclass
class FrameRecord:
    """One frame as the tokenizer sees it (base_link)."""

    features: np.ndarray     # (C, h, w) float16 head input
    class_heat: np.ndarray   # (K, h, w) float16 class probabilities (sigmoid of the head logits)
    boxes: np.ndarray        # (N, 7) float32 published detections
    scores: np.ndarray       # (N,) float32
    labels: np.ndarray       # (N,) uint8 detector class ids
    ids: np.ndarray          # (N,) uint32 track ids
    velocities: np.ndarray   # (N, 2) float32 m/s
    targets: np.ndarray      # (N, 13) float32 head targets (tokenizer_layout.HEAD_TARGETS)
    gt_index: np.ndarray     # (N,) int32 matched ground-truth row, -1 = none
    gt_class: np.ndarray     # (N,) uint8 class of the matched agent, 0 = none
    gt_boxes: np.ndarray     # (G, 9) float32 ground truth in range (lidar-hit)
    phantom: np.ndarray      # (N,) bool: injected by a fault (no real agent)
    clutter: str
    seed: int
    scenario: str
    index: int


def gt_in_range(frame: Frame) -> np.ndarray:
    """Ground-truth rows (indices) the lidar hit within :data:`MAX_RANGE_M`."""
    g = frame.gt_boxes
    return np.nonzero((frame.gt_num_points >= 1) & (np.hypot(g[:, 0], g[:, 1]) < MAX_RANGE_M))[0]


def match_to_gt(boxes: np.ndarray, scores: np.ndarray, gt_xy: np.ndarray, max_dist_m: float = MATCH_DIST_M
                ) -> np.ndarray:
    """Greedy one-to-one matching by descending score: (N,) index into ``gt_xy`` or -1."""
    out = np.full(len(boxes), -1, np.int32)
    if len(boxes) == 0 or len(gt_xy) == 0:
        return out
    taken = np.zeros(len(gt_xy), bool)
    for k in np.argsort(-scores, kind="stable"):
        d = np.hypot(gt_xy[:, 0] - boxes[k, 0], gt_xy[:, 1] - boxes[k, 1])
        d[taken] = np.inf
        j = int(np.argmin(d))
        if d[j] <= max_dist_m:
            out[k] = j
            taken[j] = True
    return out


def episode_records(frames: Iterable[Frame], core: PerceptionTokenizer, faults: FaultInjector | None = None,
                    tokenize: bool = False) -> Iterator[tuple[FrameRecord, object]]:
    """Run one episode (fresh tracker) and yield ``(record, result)`` per frame.

    Args:
        frames: the episode's frames in time order.
        core: the detector + tokenizer core (``keep_features`` is forced on).
        faults: injected into the published detections (phantoms are flagged in the record).
        tokenize: also tokenize the published agents (``result.tokens``); else ``result`` is the
            detector's :class:`~tps_perception.detector.DetectionResult` only.
    """
    core.reset()
    core.keep_features = True
    out_cell = core.params.detector.decode.out_cell_m
    rng_m = core.params.detector.decode.range_m
    for f in frames:
        if tokenize:
            res = core.run(f.points, f.t_s, f.ego_pose, faults)
            det, ids, vel, feat = res.detections, res.track_ids, res.velocities, res.features
            n_real = len(det) - (res.fault.phantoms if res.fault is not None else 0)
        else:
            res = core.detector.run(f.points, f.t_s, f.ego_pose)
            det, ids, vel, feat = res.detections, res.track_ids, res.velocities, core.last_features
            n_real = len(det)
        hm = core.last_heatmap
        keep = np.hypot(det.boxes[:, 0], det.boxes[:, 1]) < MAX_RANGE_M
        phantom = np.arange(len(det)) >= n_real
        rows = gt_in_range(f)
        gt = f.gt_boxes[rows]
        gt_index = np.full(len(det), -1, np.int32)
        real = keep & ~phantom
        if real.any():
            sel = np.nonzero(real)[0]
            gt_index[sel] = match_to_gt(det.boxes[sel], det.scores[sel], gt[:, :2])
        gt_class = np.where(gt_index >= 0, f.gt_class[rows][np.maximum(gt_index, 0)] if len(rows) else 0, 0)
        rec = FrameRecord(
            features=np.asarray(feat, np.float16),
            class_heat=sigmoid(hm).astype(np.float16),
            boxes=det.boxes[:, :7].astype(np.float32), scores=det.scores.astype(np.float32),
            labels=det.labels.astype(np.uint8), ids=np.asarray(ids, np.uint32),
            velocities=np.asarray(vel, np.float32).reshape(-1, 2),
            targets=head_targets(hm, det.boxes, vel, out_cell, rng_m),
            gt_index=gt_index, gt_class=gt_class.astype(np.uint8), gt_boxes=gt.astype(np.float32),
            phantom=phantom, clutter=f.clutter, seed=f.seed, scenario=f.scenario, index=f.index)
        # detections beyond the scored range stay in the record (the tracker saw them) but never match
        yield rec, res
