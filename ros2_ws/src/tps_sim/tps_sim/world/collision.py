"""Oriented-box collision test (separating axis theorem, vectorised numpy) and the at-fault
classification the evaluation uses.

Boxes are 2D footprints ``(x, y, yaw, length, width)`` in the map frame [m, rad].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

FRONT_CONE_RAD = np.radians(45.0)  # contact within +-45 deg of the ego's heading = front
REAR_CONE_RAD = np.radians(45.0)   # contact within +-45 deg of the ego's tail = rear
STOPPED_SPEED_MPS = 0.1


def _axes_and_corners(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(axes (N, 2, 2): unit length/width axes, corners (N, 4, 2))."""
    c, s = np.cos(boxes[:, 2]), np.sin(boxes[:, 2])
    ax_l = np.stack([c, s], axis=-1)
    ax_w = np.stack([-s, c], axis=-1)
    hl = 0.5 * boxes[:, 3:4]
    hw = 0.5 * boxes[:, 4:5]
    center = boxes[:, :2]
    corners = np.stack([center + hl * ax_l + hw * ax_w, center + hl * ax_l - hw * ax_w,
                        center - hl * ax_l - hw * ax_w, center - hl * ax_l + hw * ax_w], axis=1)
    return np.stack([ax_l, ax_w], axis=1), corners


def obb_overlap(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Whether oriented box ``box`` (5,) overlaps each of ``others`` (N, 5): bool (N,).

    Separating axis theorem: two convex rectangles are disjoint iff their projections onto one
    of the 4 edge normals do not overlap. Touching (zero-area contact) counts as no overlap.
    """
    others = np.asarray(others, dtype=np.float64).reshape(-1, 5)
    if others.shape[0] == 0:
        return np.zeros(0, dtype=bool)
    a = np.asarray(box, dtype=np.float64).reshape(1, 5)
    axes_a, corners_a = _axes_and_corners(a)
    axes_b, corners_b = _axes_and_corners(others)
    n = others.shape[0]
    axes = np.concatenate([np.broadcast_to(axes_a, (n, 2, 2)), axes_b], axis=1)  # (N, 4, 2)
    proj_a = np.einsum("nkd,cd->nkc", axes, corners_a[0])             # (N, 4, 4)
    proj_b = np.einsum("nkd,ncd->nkc", axes, corners_b)               # (N, 4, 4)
    separated = (proj_a.max(-1) <= proj_b.min(-1)) | (proj_b.max(-1) <= proj_a.min(-1))
    return ~separated.any(axis=1)


def obb_overlap_pairwise(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Overlap matrix bool (N, M) between two box sets (N, 5) and (M, 5)."""
    boxes_a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 5)
    return np.stack([obb_overlap(b, boxes_b) for b in boxes_a]) if len(boxes_a) else \
        np.zeros((0, len(boxes_b)), dtype=bool)


@dataclass(frozen=True)
class CollisionInfo:
    """How a collision happened, for at-fault metrics (NAVSIM-style).

    Attributes:
        other_id: id of the other agent / static object.
        kind: "front" (ego ran into it), "rear" (ego was rear-ended), "lateral" (side contact).
        ego_at_fault: False when the ego was stopped or was rear-ended, or a lateral contact
            where the other closed in faster than the ego did; True otherwise.
        bearing_rad: direction of the other's centre seen from the ego (0 = straight ahead).
    """

    other_id: int
    kind: str
    ego_at_fault: bool
    bearing_rad: float


def classify_collision(ego_box: np.ndarray, ego_velocity: np.ndarray, other_id: int,
                       other_box: np.ndarray, other_velocity: np.ndarray) -> CollisionInfo:
    """Classify the collision between the ego and one other object.

    Args:
        ego_box, other_box: (x, y, yaw, length, width) [m, rad].
        ego_velocity, other_velocity: (vx, vy) map frame [m/s] (statics: zeros).
        other_id: the other's id (copied into the result).
    """
    ego_box = np.asarray(ego_box, dtype=np.float64)
    other_box = np.asarray(other_box, dtype=np.float64)
    yaw = ego_box[2]
    rel = other_box[:2] - ego_box[:2]
    c, s = np.cos(yaw), np.sin(yaw)
    lx, ly = c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1]
    bearing = float(np.arctan2(ly, lx))
    ego_v = np.asarray(ego_velocity, dtype=np.float64)
    oth_v = np.asarray(other_velocity, dtype=np.float64)
    ego_speed = float(np.hypot(*ego_v))
    if abs(bearing) <= FRONT_CONE_RAD:
        kind = "front"
    elif abs(bearing) >= np.pi - REAR_CONE_RAD:
        kind = "rear"
    else:
        kind = "lateral"
    if ego_speed < STOPPED_SPEED_MPS:
        at_fault = False
    elif kind == "front":
        at_fault = True
    elif kind == "rear":
        # Rear-ended, unless the ego was reversing into it.
        heading = np.array([c, s])
        at_fault = float(ego_v @ heading) < -STOPPED_SPEED_MPS
    else:
        # Lateral: who closes the gap along the line between the centres?
        norm = float(np.hypot(*rel))
        u = rel / norm if norm > 1e-9 else np.array([c, s])
        ego_closing = float(ego_v @ u)
        other_closing = float(-(oth_v @ u))
        at_fault = ego_closing >= other_closing
    return CollisionInfo(int(other_id), kind, bool(at_fault), bearing)
