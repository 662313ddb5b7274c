"""nuScenes detection metrics on our boxes, through the official nuscenes-devkit algorithm.

The only module that touches the devkit (its conventions stay here): boxes become
``DetectionBox`` es (size as w, l, h; rotation as a w-first quaternion about z), then the devkit's
``accumulate`` / ``calc_ap`` / ``calc_tp`` do the matching (greedy by score, xy centre distance)
exactly as on nuScenes. What ``DetectionEval`` would do with the dataset we do ourselves: the range
filter (xy distance from the ego < ``max_range_m`` -- 50 m for every class here, as the issue
asks, not nuScenes' 40 m for pedestrians/bicycles) and dropping ground truth the lidar did not hit
(``num_pts == 0``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from tps_common.geometry import yaw_to_quaternion

# Our class id -> nuScenes detection name.
NUSCENES_NAME = {1: "car", 2: "truck", 3: "bus", 4: "pedestrian", 5: "bicycle"}
OUR_NAME = {1: "car", 2: "truck", 3: "bus", 4: "pedestrian", 5: "cyclist"}
DIST_THS_M = (0.5, 1.0, 2.0, 4.0)
TP_METRICS = {"trans_err": "ATE", "scale_err": "ASE", "orient_err": "AOE", "vel_err": "AVE"}
MAX_RANGE_M = 50.0


@dataclass
class FrameBoxes:
    """Boxes of one sample, base_link (ego at the origin)."""

    token: str
    boxes: np.ndarray            # (N, 7) x, y, z, l, w, h, yaw
    labels: np.ndarray           # (N,) class ids
    velocities: np.ndarray       # (N, 2) m/s
    scores: np.ndarray | None = None     # predictions only
    num_pts: np.ndarray | None = None    # ground truth only
    group: str = ""              # e.g. clutter level


@dataclass
class DetectionMetrics:
    ap: dict = field(default_factory=dict)      # class -> {dist_th: AP}
    map: dict = field(default_factory=dict)     # class -> mean AP over the thresholds
    tp: dict = field(default_factory=dict)      # class -> {ATE, ASE, AOE, AVE}
    num_gt: dict = field(default_factory=dict)  # class -> count of GT boxes evaluated
    mean_ap: float = float("nan")               # over classes with ground truth

    def to_dict(self) -> dict:
        return {"ap": self.ap, "map": self.map, "tp": self.tp, "num_gt": self.num_gt, "mean_ap": self.mean_ap}


def _yaw_quat_wxyz(yaw: float) -> tuple[float, float, float, float]:
    """The devkit's w-first quaternion of a rotation by ``yaw`` [rad] about z (the one place the
    nuScenes convention is applied; ``tps_common.geometry`` is x, y, z, w)."""
    x, y, z, w = yaw_to_quaternion(yaw)
    return (w, x, y, z)


def _to_eval_boxes(frames: list[FrameBoxes], is_gt: bool, max_range_m: float):
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.detection.data_classes import DetectionBox

    eb = EvalBoxes()
    for fr in frames:
        boxes = []
        for k in range(len(fr.labels)):
            lab = int(fr.labels[k])
            if lab not in NUSCENES_NAME:
                continue
            b = fr.boxes[k]
            dist = float(np.hypot(b[0], b[1]))
            if dist >= max_range_m:
                continue
            npts = int(fr.num_pts[k]) if (is_gt and fr.num_pts is not None) else -1
            if is_gt and npts == 0:
                continue
            score = -1.0 if is_gt else float(max(fr.scores[k], 1e-6))
            boxes.append(DetectionBox(
                sample_token=fr.token,
                translation=(float(b[0]), float(b[1]), float(b[2])),
                size=(float(max(b[4], 1e-3)), float(max(b[3], 1e-3)), float(max(b[5], 1e-3))),
                rotation=_yaw_quat_wxyz(float(b[6])),
                velocity=(float(fr.velocities[k, 0]), float(fr.velocities[k, 1])),
                ego_translation=(float(b[0]), float(b[1]), float(b[2])),
                num_pts=npts,
                detection_name=NUSCENES_NAME[lab],
                detection_score=score,
                attribute_name="",
            ))
        eb.add_boxes(fr.token, boxes)
    return eb


def evaluate_boxes(gt: list[FrameBoxes], pred: list[FrameBoxes], max_range_m: float = MAX_RANGE_M,
                   classes: tuple[int, ...] = tuple(NUSCENES_NAME)) -> DetectionMetrics:
    """AP per class and threshold (0.5/1/2/4 m), mean AP, and TP errors (at 2 m), nuScenes-style.

    ``gt`` and ``pred`` must list the same sample tokens (a frame without predictions still needs
    an entry). Classes without any ground truth box are left out of the mean (NaN in the tables).
    """
    from nuscenes.eval.detection.algo import accumulate, calc_ap, calc_tp
    from nuscenes.eval.detection.config import config_factory

    cfg = config_factory("detection_cvpr_2019")
    gtb = _to_eval_boxes(gt, True, max_range_m)
    prb = _to_eval_boxes(pred, False, max_range_m)
    out = DetectionMetrics()
    maps = []
    for lab in classes:
        name = NUSCENES_NAME[lab]
        ours = OUR_NAME[lab]
        n_gt = sum(1 for b in gtb.all if b.detection_name == name)
        out.num_gt[ours] = n_gt
        if n_gt == 0:
            out.ap[ours] = {str(t): float("nan") for t in DIST_THS_M}
            out.map[ours] = float("nan")
            out.tp[ours] = {v: float("nan") for v in TP_METRICS.values()}
            continue
        aps = {}
        for th in DIST_THS_M:
            md = accumulate(gtb, prb, name, cfg.dist_fcn_callable, th)
            aps[str(th)] = float(calc_ap(md, cfg.min_recall, cfg.min_precision))
            if th == cfg.dist_th_tp:
                out.tp[ours] = {v: float(calc_tp(md, cfg.min_recall, k)) for k, v in TP_METRICS.items()}
        out.ap[ours] = aps
        out.map[ours] = float(np.mean(list(aps.values())))
        maps.append(out.map[ours])
    out.mean_ap = float(np.mean(maps)) if maps else float("nan")
    return out
