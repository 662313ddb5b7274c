"""Head maps -> boxes, in plain numpy (shared by every backend).

Also holds the inverse (:func:`encode_targets`, used by training and by the tests): a box list
-> heatmap + regression targets, so decode(encode(boxes)) == boxes is testable exactly.

Box layout everywhere in this package: ``(N, 7)`` float32 ``[x, y, z, l, w, h, yaw]`` in
``base_link`` (m, rad), plus ``scores (N,)`` and ``labels (N,)`` = DetectedAgent.CLASS_* ids.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter

from tps_perception.head_layout import CLASS_IDS, REG_CHANNELS

# Circle-NMS radius per class (m): two peaks of one class closer than this are one object.
# Large vehicles span several 1.6 m output cells, so their radius is larger.
NMS_RADIUS_M = {1: 2.0, 2: 4.0, 3: 4.0, 4: 0.5, 5: 1.0}


@dataclass(frozen=True)
class DecodeParams:
    """Decoding of the head maps."""

    range_m: float = 51.2          # BEV half extent, m (same as the grid)
    out_cell_m: float = 1.6        # output cell, m (grid cell x out_stride)
    score_threshold: float = 0.2   # minimum heatmap score kept
    max_detections: int = 100      # top-k peaks over all classes
    nms: bool = True               # per-class circle NMS


@dataclass
class Detections:
    """Boxes of one frame (base_link)."""

    boxes: np.ndarray   # (N, 7) float32 x, y, z, l, w, h, yaw
    scores: np.ndarray  # (N,) float32 in [0, 1]
    labels: np.ndarray  # (N,) uint8 class ids (1 car .. 5 cyclist)

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 7), np.float32), np.zeros(0, np.float32), np.zeros(0, np.uint8))

    def __len__(self) -> int:
        return len(self.scores)

    def select(self, mask: np.ndarray) -> Detections:
        return Detections(self.boxes[mask], self.scores[mask], self.labels[mask])


def sigmoid(x: np.ndarray) -> np.ndarray:
    """Numerically safe logistic function."""
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(np.float32)


def circle_nms(xy: np.ndarray, scores: np.ndarray, radius_m: float) -> np.ndarray:
    """Greedy circle NMS: indices kept, best score first (no two kept closer than ``radius_m``)."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    suppressed = np.zeros(len(order), dtype=bool)
    r2 = radius_m * radius_m
    for rank, idx in enumerate(order):
        if suppressed[rank]:
            continue
        keep.append(int(idx))
        d2 = ((xy[order[rank + 1:]] - xy[idx]) ** 2).sum(axis=1)
        suppressed[rank + 1:] |= d2 < r2
    return np.asarray(keep, dtype=np.int64)


def decode(heatmap_logits: np.ndarray, regression: np.ndarray, params: DecodeParams) -> Detections:
    """Decode one frame's head outputs.

    Args:
        heatmap_logits: (K, h, w) or (1, K, h, w) logits.
        regression: (8, h, w) or (1, 8, h, w), channels :data:`REG_CHANNELS`.
        params: decoding parameters.

    Returns:
        Detections sorted by descending score.
    """
    hm = np.asarray(heatmap_logits, dtype=np.float32)
    reg = np.asarray(regression, dtype=np.float32)
    if hm.ndim == 4:
        hm, reg = hm[0], reg[0]
    if reg.shape[0] != len(REG_CHANNELS) or hm.shape[1:] != reg.shape[1:]:
        raise ValueError(f"head shapes do not match: heatmap {hm.shape}, regression {reg.shape}")
    heat = sigmoid(hm)
    peaks = (heat == maximum_filter(heat, size=(1, 3, 3), mode="constant", cval=0.0))
    peaks &= heat >= params.score_threshold
    k, i, j = np.nonzero(peaks)
    if len(k) == 0:
        return Detections.empty()
    sc = heat[k, i, j]
    if len(sc) > params.max_detections:
        top = np.argpartition(-sc, params.max_detections)[: params.max_detections]
        k, i, j, sc = k[top], i[top], j[top], sc[top]
    r = reg[:, i, j]
    x = (i + r[0]) * params.out_cell_m - params.range_m
    y = (j + r[1]) * params.out_cell_m - params.range_m
    size = np.exp(np.clip(r[3:6], -3.0, 4.0))
    yaw = np.arctan2(r[6], r[7])
    boxes = np.stack([x, y, r[2], size[0], size[1], size[2], yaw], axis=1).astype(np.float32)
    labels = np.asarray(CLASS_IDS, dtype=np.uint8)[k]
    det = Detections(boxes, sc.astype(np.float32), labels)
    if params.nms:
        keep_all = []
        for cls in np.unique(labels):
            idx = np.nonzero(labels == cls)[0]
            kept = circle_nms(boxes[idx, :2], sc[idx], NMS_RADIUS_M.get(int(cls), 1.0))
            keep_all.append(idx[kept])
        det = det.select(np.concatenate(keep_all))
    order = np.argsort(-det.scores, kind="stable")
    return det.select(order)


def gaussian_radius(length_cells: float, width_cells: float, min_overlap: float = 0.1) -> float:
    """CenterNet's radius (cells) within which a shifted box still overlaps the true one by
    ``min_overlap`` IoU (the smallest of the three corner cases)."""
    h, w = length_cells, width_cells
    b1 = h + w
    c1 = w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + np.sqrt(b1 ** 2 - 4 * c1)) / 2
    b2 = 2 * (h + w)
    c2 = (1 - min_overlap) * w * h
    r2 = (b2 + np.sqrt(b2 ** 2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (h + w)
    c3 = (min_overlap - 1) * w * h
    r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2
    return float(min(r1, r2, r3))


# Regression targets are written on the centre cell and its 8 neighbours (offsets relative to
# each cell), weighted by the heatmap value there: a peak one cell off still decodes the true
# centre, which matters at 1.6 m output cells.
NEIGHBOUR_WEIGHT_MIN = 0.05


def encode_targets(boxes: np.ndarray, labels: np.ndarray, params: DecodeParams, size: int,
                   min_radius_cells: int = 1, dense_regression: bool = True
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Training targets for one frame.

    Args:
        boxes: (G, >=7) [x, y, z, l, w, h, yaw, ...] base_link.
        labels: (G,) class ids 1..K.
        params: decode parameters (range, output cell).
        size: output map side (cells).
        min_radius_cells: smallest Gaussian radius.
        dense_regression: also regress from the 8 neighbours of the centre cell.

    Returns:
        heatmap (K, size, size) in [0, 1] with 1 at box centres; regression (8, size, size);
        mask (size, size) regression loss weight: 1 at centres, the Gaussian value at neighbours,
        0 where no target is defined. A cell claimed by two boxes keeps the one whose centre is
        closer.
    """
    k_classes = len(CLASS_IDS)
    hm = np.zeros((k_classes, size, size), np.float32)
    reg = np.zeros((len(REG_CHANNELS), size, size), np.float32)
    mask = np.zeros((size, size), np.float32)
    owner_d2 = np.full((size, size), np.inf, np.float32)
    cell = params.out_cell_m
    for b, lab in zip(boxes, labels, strict=True):
        if int(lab) not in CLASS_IDS:
            continue
        ci = (b[0] + params.range_m) / cell
        cj = (b[1] + params.range_m) / cell
        i, j = int(np.floor(ci)), int(np.floor(cj))
        if not (0 <= i < size and 0 <= j < size):
            continue
        k = CLASS_IDS.index(int(lab))
        r = max(min_radius_cells, int(gaussian_radius(b[3] / cell, b[4] / cell)))
        sigma = (2 * r + 1) / 6.0
        i0, i1 = max(0, i - r), min(size, i + r + 1)
        j0, j1 = max(0, j - r), min(size, j + r + 1)
        gi = np.arange(i0, i1)[:, None] - i
        gj = np.arange(j0, j1)[None, :] - j
        g = np.exp(-(gi ** 2 + gj ** 2) / (2 * sigma ** 2)).astype(np.float32)
        hm[k, i0:i1, j0:j1] = np.maximum(hm[k, i0:i1, j0:j1], g)
        shape_terms = (b[2], np.log(b[3]), np.log(b[4]), np.log(b[5]), np.sin(b[6]), np.cos(b[6]))
        reach = 1 if dense_regression else 0
        for di in range(-reach, reach + 1):
            for dj in range(-reach, reach + 1):
                ii, jj = i + di, j + dj
                if not (0 <= ii < size and 0 <= jj < size):
                    continue
                d2 = (ci - ii - 0.5) ** 2 + (cj - jj - 0.5) ** 2
                if d2 >= owner_d2[ii, jj]:
                    continue
                w = 1.0 if (di, dj) == (0, 0) else float(np.exp(-(di * di + dj * dj) / (2 * sigma ** 2)))
                if w < NEIGHBOUR_WEIGHT_MIN:
                    continue
                owner_d2[ii, jj] = d2
                reg[:, ii, jj] = (ci - ii, cj - jj, *shape_terms)
                mask[ii, jj] = w
    return hm, reg, mask
