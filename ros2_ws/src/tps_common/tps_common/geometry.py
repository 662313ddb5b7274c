"""Planar and rotation geometry, written once for the whole project (ROS-free, vectorised numpy).

Conventions (docs/CONTRACTS.md): REP-103 axes, metres, radians, yaw counter-clockwise from +x.

* An oriented **footprint** (2-D box) is its centre ``(x, y)``, ``yaw``, ``length`` (along the
  heading) and ``width``; a stacked box row is ``(x, y, yaw, length, width)``.
* **Corners** come in one order everywhere: front-left, front-right, rear-right, rear-left
  (shape ``(N, 4, 2)``), so ``corners[:, 0:2]`` is the front edge.
* **Overlap** is the separating-axis test on convex quadrilaterals; touching (a zero-area
  contact) counts as overlap, the conservative reading for a safety check.
* **Quaternions** are ``(x, y, z, w)`` as in ``geometry_msgs/Quaternion``; rotations are
  intrinsic roll-pitch-yaw (``R = Rz(yaw) Ry(pitch) Rx(roll)``, REP-103).
* A planar **pose** is ``(x, y, yaw)``; :func:`to_local` / :func:`to_global` move points between
  a parent frame and the frame of such a pose.
"""

from __future__ import annotations

import math

import numpy as np

# Corner signs along (length, width), in the order front-left, front-right, rear-right, rear-left.
_CORNER_SIGN_L = np.array([1.0, 1.0, -1.0, -1.0])
_CORNER_SIGN_W = np.array([1.0, -1.0, -1.0, 1.0])


# --- angles and rotations ------------------------------------------------------------------------
def wrap_angle(angle, *, include_pi: bool = False):
    """Wrap an angle [rad] (float or array) into [-pi, pi), or into (-pi, pi] with
    ``include_pi`` (the simulator's convention: SUMO headings and the ego model keep +pi).

    The two intervals differ only at +-pi; each has its own formula so that values in the open
    interval come out bit-identical to the code this replaced.
    """
    if isinstance(angle, np.ndarray):
        if include_pi:
            return -((-angle + np.pi) % (2.0 * np.pi) - np.pi)
        return (angle + np.pi) % (2.0 * np.pi) - np.pi
    if include_pi:
        return -((-float(angle) + math.pi) % (2.0 * math.pi) - math.pi)
    return (float(angle) + math.pi) % (2.0 * math.pi) - math.pi


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of a rotation by ``yaw`` [rad] about +z."""
    half = 0.5 * float(yaw)
    return 0.0, 0.0, math.sin(half), math.cos(half)


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw [rad] (rotation about +z, in [-pi, pi]) of a quaternion; roll and pitch are ignored."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def rpy_to_quaternion(roll: float, pitch: float, yaw: float) -> tuple[float, float, float, float]:
    """(x, y, z, w) of ``Rz(yaw) Ry(pitch) Rx(roll)`` [rad]."""
    cr, sr = math.cos(0.5 * roll), math.sin(0.5 * roll)
    cp, sp = math.cos(0.5 * pitch), math.sin(0.5 * pitch)
    cy, sy = math.cos(0.5 * yaw), math.sin(0.5 * yaw)
    return (sr * cp * cy - cr * sp * sy,
            cr * sp * cy + sr * cp * sy,
            cr * cp * sy - sr * sp * cy,
            cr * cp * cy + sr * sp * sy)


def quaternion_to_rpy(x: float, y: float, z: float, w: float) -> tuple[float, float, float]:
    """(roll, pitch, yaw) [rad] of a unit quaternion (inverse of :func:`rpy_to_quaternion`)."""
    roll = math.atan2(2.0 * (w * x + y * z), 1.0 - 2.0 * (x * x + y * y))
    pitch = math.asin(max(-1.0, min(1.0, 2.0 * (w * y - z * x))))
    return roll, pitch, quaternion_to_yaw(x, y, z, w)


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """(3, 3) rotation matrix of a quaternion (normalised first).

    Raises:
        ValueError: the quaternion is not finite or has (near) zero norm.
    """
    q = np.array([x, y, z, w], np.float64)
    n = float(np.linalg.norm(q))
    if not np.all(np.isfinite(q)) or n < 1e-9:
        raise ValueError(f"quaternion {tuple(q)} is not a rotation (norm {n:.3g})")
    x, y, z, w = q / n
    return np.array([
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
    ])


def rotation_2d(yaw) -> np.ndarray:
    """(2, 2) rotation matrix for a scalar yaw, (N, 2, 2) for an array of yaws [rad]."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.stack([np.stack([c, -s], -1), np.stack([s, c], -1)], -2)


# --- planar rigid transforms ---------------------------------------------------------------------
def to_local(xy: np.ndarray, origin_xy, origin_yaw: float) -> np.ndarray:
    """Points ``xy`` (N, 2) of the parent frame expressed in the frame of the pose
    ``(origin_xy, origin_yaw)``: ``R(-yaw) (xy - origin)``."""
    d = np.asarray(xy, np.float64).reshape(-1, 2) - np.asarray(origin_xy, np.float64).reshape(1, 2)
    c, s = math.cos(origin_yaw), math.sin(origin_yaw)
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)


def to_global(xy_local: np.ndarray, origin_xy, origin_yaw: float) -> np.ndarray:
    """Inverse of :func:`to_local`: ``origin + R(yaw) xy_local`` (N, 2)."""
    p = np.asarray(xy_local, np.float64).reshape(-1, 2)
    c, s = math.cos(origin_yaw), math.sin(origin_yaw)
    o = np.asarray(origin_xy, np.float64).reshape(2)
    return np.stack([o[0] + c * p[:, 0] - s * p[:, 1], o[1] + s * p[:, 0] + c * p[:, 1]], axis=1)


def rotate_vectors(v: np.ndarray, yaw: float) -> np.ndarray:
    """Vectors ``v`` (N, 2) rotated by ``yaw`` [rad] (e.g. body-frame velocity -> map)."""
    v = np.asarray(v, np.float64).reshape(-1, 2)
    c, s = math.cos(yaw), math.sin(yaw)
    return np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], axis=1)


def compose_poses(a, b) -> tuple[float, float, float]:
    """Pose ``b`` (x, y, yaw) given in the frame of pose ``a``, expressed in ``a``'s parent."""
    (x, y), = to_global(np.array([[b[0], b[1]]]), (a[0], a[1]), a[2])
    return float(x), float(y), float(wrap_angle(a[2] + b[2]))


def invert_pose(a) -> tuple[float, float, float]:
    """The pose of ``a``'s parent seen from ``a`` (x, y, yaw)."""
    (x, y), = to_local(np.zeros((1, 2)), (a[0], a[1]), a[2])
    return float(x), float(y), float(wrap_angle(-a[2]))


def bearing(origin_xy, origin_yaw: float, xy: np.ndarray) -> np.ndarray:
    """(N,) direction [rad] of points ``xy`` (N, 2) seen from a pose, 0 = straight ahead,
    in [-pi, pi)."""
    d = np.asarray(xy, np.float64).reshape(-1, 2) - np.asarray(origin_xy, np.float64).reshape(1, 2)
    return wrap_angle(np.arctan2(d[:, 1], d[:, 0]) - origin_yaw)


# --- oriented footprints -------------------------------------------------------------------------
def box_corners(xy, yaw, length, width) -> np.ndarray:
    """(N, 4, 2) corners [m] of oriented footprints (front-left, front-right, rear-right,
    rear-left). ``xy`` (N, 2) or (2,) centres; ``yaw``, ``length``, ``width`` scalars or (N,)."""
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    n = xy.shape[0]
    yaw = np.broadcast_to(np.asarray(yaw, np.float64), (n,))
    hl = np.broadcast_to(np.asarray(length, np.float64), (n,)) * 0.5
    hw = np.broadcast_to(np.asarray(width, np.float64), (n,)) * 0.5
    lx = _CORNER_SIGN_L[None, :] * hl[:, None]
    ly = _CORNER_SIGN_W[None, :] * hw[:, None]
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    out = np.empty((n, 4, 2))
    out[:, :, 0] = xy[:, 0:1] + c * lx - s * ly
    out[:, :, 1] = xy[:, 1:2] + s * lx + c * ly
    return out


def boxes_corners(boxes: np.ndarray) -> np.ndarray:
    """(N, 4, 2) corners of stacked footprint rows (N, 5): x, y, yaw, length, width."""
    b = np.asarray(boxes, np.float64).reshape(-1, 5)
    return box_corners(b[:, 0:2], b[:, 2], b[:, 3], b[:, 4])


def polygons_overlap(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Separating-axis test between one convex quadrilateral and N others.

    Args:
        a: (4, 2) vertices in order (either winding) [m]; a degenerate one (a segment repeated)
            works too.
        b: (N, 4, 2) vertices [m].

    Returns:
        (N,) bool, True where ``a`` and ``b[i]`` overlap or touch.
    """
    b = np.asarray(b, np.float64).reshape(-1, 4, 2)
    if b.shape[0] == 0:
        return np.zeros(0, bool)
    a = np.asarray(a, np.float64).reshape(4, 2)
    edges_a = np.roll(a, -1, axis=0) - a
    edges_b = np.roll(b, -1, axis=1) - b
    axes_a = np.stack([-edges_a[:, 1], edges_a[:, 0]], axis=-1)             # (4, 2)
    axes_b = np.stack([-edges_b[..., 1], edges_b[..., 0]], axis=-1)         # (N, 4, 2)
    axes = np.concatenate([np.broadcast_to(axes_a, b.shape), axes_b], axis=1)  # (N, 8, 2)
    pa = np.einsum("nkd,jd->nkj", axes, a)
    pb = np.einsum("nkd,njd->nkj", axes, b)
    separated = (pa.max(-1) < pb.min(-1)) | (pb.max(-1) < pa.min(-1))
    return ~separated.any(axis=1)


def boxes_overlap(box, others: np.ndarray) -> np.ndarray:
    """(N,) bool: footprint row ``box`` (5,) overlaps (or touches) each row of ``others`` (N, 5).

    The same test as :func:`polygons_overlap` on the boxes' corners, specialised to rectangles:
    parallel edges share an axis, so 4 axes (each box's heading and its normal) separate them
    instead of 8 (1.5x faster; the world runs it every step).
    """
    others = np.asarray(others, np.float64).reshape(-1, 5)
    n = others.shape[0]
    if n == 0:
        return np.zeros(0, bool)
    a = np.asarray(box, np.float64).reshape(1, 5)
    corners_a = boxes_corners(a)[0]                                   # (4, 2)
    corners_b = boxes_corners(others)                                 # (N, 4, 2)
    ca, sa = np.cos(a[0, 2]), np.sin(a[0, 2])
    cb, sb = np.cos(others[:, 2]), np.sin(others[:, 2])
    axes = np.empty((n, 4, 2))
    axes[:, 0] = (ca, sa)
    axes[:, 1] = (-sa, ca)
    axes[:, 2, 0], axes[:, 2, 1] = cb, sb
    axes[:, 3, 0], axes[:, 3, 1] = -sb, cb
    pa = np.einsum("nkd,jd->nkj", axes, corners_a)                    # (N, 4, 4)
    pb = np.einsum("nkd,njd->nkj", axes, corners_b)
    separated = (pa.max(-1) < pb.min(-1)) | (pb.max(-1) < pa.min(-1))
    return ~separated.any(axis=1)


def segment_intersects_polygons(p0, p1, polys: np.ndarray) -> np.ndarray:
    """(N,) bool: the segment ``p0``-``p1`` [m] touches each convex quadrilateral (N, 4, 2)."""
    seg = np.array([p0, p1, p1, p0], np.float64)
    return polygons_overlap(seg, polys)


def points_in_footprint(xy: np.ndarray, center_xy, yaw: float, length: float, width: float,
                        margin_m: float = 0.0) -> np.ndarray:
    """(N,) bool: which points ``xy`` (N, >=2; extra columns ignored) lie in the oriented
    footprint, grown by ``margin_m`` on every side (boundary included)."""
    p = np.asarray(xy)
    dx = p[:, 0] - center_xy[0]
    dy = p[:, 1] - center_xy[1]
    c, s = math.cos(yaw), math.sin(yaw)
    return ((np.abs(c * dx + s * dy) <= 0.5 * length + margin_m)
            & (np.abs(-s * dx + c * dy) <= 0.5 * width + margin_m))
