"""Coordinate frames, written once (ROS-free): 3-D rigid transforms, a transform tree, extrinsics.

Conventions (docs/CONTRACTS.md "Frames and units"): REP-103 axes, metres, radians; rotations
from roll-pitch-yaw are ``R = Rz(yaw) Ry(pitch) Rx(roll)`` and quaternions are ``(x, y, z, w)``
(both from :mod:`tps_common.geometry`). A :class:`RigidTransform` ``T`` stored for the edge
``parent -> child`` maps a point given in ``child`` into ``parent``: ``p_parent = R p_child + t``,
exactly what a ``geometry_msgs/TransformStamped`` with ``header.frame_id = parent`` and
``child_frame_id = child`` says, and what tf2's ``lookup_transform(target, source)`` returns for
``target = parent``, ``source = child``.

* :class:`RigidTransform` -- translation + rotation; from xyz+rpy, xyz+quaternion or a 4x4
  matrix; compose (``a @ b``), inverse, apply to (N, 3) points (float32 clouds stay float32).
* :class:`TransformBuffer` -- the latest transform of each ``parent -> child`` edge (a tree, as
  in tf2), resolving chains: ``lookup(target="base_link", source="ego_vehicle/lidar")``. No time
  history: it is meant for sensor extrinsics (``/tf_static``) and the latest ``/tf``.
* :func:`parse_static_transform` -- a configured static transform parameter (6 numbers: x, y, z
  [m], roll, pitch, yaw [rad]) with errors that name the parameter.
* :class:`ExtrinsicResolver` -- a sensor's extrinsic from the buffer when the transform tree
  has it, else the configured one, saying which it used (``tps_common.tf.ExtrinsicSource`` feeds
  it from ``/tf_static`` and ``/tf``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tps_common.geometry import quaternion_to_matrix, quaternion_to_rpy, rpy_to_quaternion
from tps_common.params import ParameterError

# Number of values of a configured static transform: x, y, z [m], roll, pitch, yaw [rad].
STATIC_TRANSFORM_LEN = 6
STATIC_TRANSFORM_FIELDS = ("x", "y", "z", "roll", "pitch", "yaw")
# Allowed angle ranges of a configured transform [rad]: the roll-pitch-yaw chart is unique there.
ROLL_YAW_LIMIT_RAD = math.pi
PITCH_LIMIT_RAD = math.pi / 2.0

# Where an extrinsic came from (ExtrinsicResolver.resolve / diagnostics).
ORIGIN_TF_STATIC = "tf_static"
ORIGIN_TF = "tf"
ORIGIN_CONFIGURED = "configured"


class FrameLookupError(LookupError):
    """Two frames are not connected in a :class:`TransformBuffer` (or a frame is unknown)."""


def _as_rotation(rotation) -> np.ndarray:
    r = np.array(rotation, dtype=np.float64).reshape(3, 3)
    if not np.all(np.isfinite(r)):
        raise ValueError(f"rotation matrix is not finite: {r.tolist()}")
    if not (np.allclose(r @ r.T, np.eye(3), atol=1e-6) and np.linalg.det(r) > 0.0):
        raise ValueError(f"not a rotation matrix (orthonormal, det +1): {r.tolist()}")
    return r


@dataclass(frozen=True, eq=False)
class RigidTransform:
    """A 3-D rigid transform ``p_parent = rotation @ p_child + translation``.

    Attributes:
        rotation: (3, 3) float64 rotation matrix (orthonormal, det +1; read-only).
        translation: (3,) float64 translation [m] (read-only).
    """

    rotation: np.ndarray
    translation: np.ndarray

    def __post_init__(self) -> None:
        r = _as_rotation(self.rotation)
        t = np.array(self.translation, dtype=np.float64).reshape(3)
        if not np.all(np.isfinite(t)):
            raise ValueError(f"translation is not finite: {t.tolist()}")
        r.flags.writeable = False
        t.flags.writeable = False
        object.__setattr__(self, "rotation", r)
        object.__setattr__(self, "translation", t)

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def identity(cls) -> RigidTransform:
        """No rotation, no translation."""
        return cls(np.eye(3), np.zeros(3))

    @classmethod
    def from_xyz_rpy(cls, xyz: Sequence[float], rpy: Sequence[float] = (0.0, 0.0, 0.0)
                     ) -> RigidTransform:
        """From a translation (x, y, z) [m] and roll, pitch, yaw [rad] (``Rz Ry Rx``).

        Zero angles give an exact identity rotation (no rounding)."""
        roll, pitch, yaw = (float(v) for v in rpy)
        return cls(quaternion_to_matrix(*rpy_to_quaternion(roll, pitch, yaw)), xyz)

    @classmethod
    def from_xyz_quaternion(cls, xyz: Sequence[float], quaternion: Sequence[float]
                            ) -> RigidTransform:
        """From a translation [m] and a quaternion (x, y, z, w) (normalised here).

        Raises:
            ValueError: the quaternion is not finite or has (near) zero norm.
        """
        return cls(quaternion_to_matrix(*(float(v) for v in quaternion)), xyz)

    @classmethod
    def from_matrix(cls, matrix) -> RigidTransform:
        """From a (4, 4) homogeneous matrix."""
        m = np.asarray(matrix, dtype=np.float64).reshape(4, 4)
        if not np.allclose(m[3], (0.0, 0.0, 0.0, 1.0)):
            raise ValueError(f"last row of a rigid transform must be (0, 0, 0, 1), got {m[3]}")
        return cls(m[:3, :3], m[:3, 3])

    # -- views ----------------------------------------------------------------------------------
    @property
    def matrix(self) -> np.ndarray:
        """(4, 4) homogeneous matrix (a new array)."""
        m = np.eye(4)
        m[:3, :3] = self.rotation
        m[:3, 3] = self.translation
        return m

    @property
    def quaternion(self) -> tuple[float, float, float, float]:
        """(x, y, z, w) of the rotation, w >= 0."""
        r = self.rotation
        tr = float(np.trace(r))
        # Shepperd's method: take the largest of w, x, y, z first (numerically stable).
        if tr > max(r[0, 0], r[1, 1], r[2, 2]):
            s = math.sqrt(1.0 + tr) * 2.0
            q = (
                (r[2, 1] - r[1, 2]) / s,
                (r[0, 2] - r[2, 0]) / s,
                (r[1, 0] - r[0, 1]) / s,
                0.25 * s,
            )
        elif r[0, 0] >= r[1, 1] and r[0, 0] >= r[2, 2]:
            s = math.sqrt(max(0.0, 1.0 + r[0, 0] - r[1, 1] - r[2, 2])) * 2.0
            q = (0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s)
        elif r[1, 1] >= r[2, 2]:
            s = math.sqrt(max(0.0, 1.0 + r[1, 1] - r[0, 0] - r[2, 2])) * 2.0
            q = ((r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s)
        else:
            s = math.sqrt(max(0.0, 1.0 + r[2, 2] - r[0, 0] - r[1, 1])) * 2.0
            q = ((r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s, (r[1, 0] - r[0, 1]) / s)
        x, y, z, w = (float(v) for v in q)
        n = math.sqrt(x * x + y * y + z * z + w * w)
        sign = -1.0 if w < 0.0 else 1.0
        return sign * x / n, sign * y / n, sign * z / n, sign * w / n

    @property
    def rpy(self) -> tuple[float, float, float]:
        """(roll, pitch, yaw) [rad] of the rotation (pitch in [-pi/2, pi/2])."""
        return quaternion_to_rpy(*self.quaternion)

    def to_xyz_rpy(self) -> list[float]:
        """[x, y, z, roll, pitch, yaw]: the configured-parameter form (round trip of
        :func:`parse_static_transform` within float rounding)."""
        return [float(v) for v in self.translation] + list(self.rpy)

    # -- algebra --------------------------------------------------------------------------------
    def compose(self, other: RigidTransform) -> RigidTransform:
        """``self`` after ``other``: for ``self = T_a<-b`` and ``other = T_b<-c``, ``T_a<-c``."""
        return RigidTransform(self.rotation @ other.rotation,
                              self.rotation @ other.translation + self.translation)

    def __matmul__(self, other: RigidTransform) -> RigidTransform:
        return self.compose(other)

    def inverse(self) -> RigidTransform:
        """``T_b<-a`` for ``self = T_a<-b``."""
        rt = self.rotation.T
        return RigidTransform(rt, -(rt @ self.translation))

    def apply(self, points: np.ndarray) -> np.ndarray:
        """Map points from the child frame into the parent frame.

        Args:
            points: (N, 3) or (N, K >= 3) array; only the first three columns (x, y, z) are
                transformed, the others (e.g. intensity) are copied. float32 input is computed and
                returned in float32 (a 30k-point cloud: ~0.2 ms), anything else in float64.

        Returns:
            A new array of the input's shape (and dtype for float32).
        """
        pts = np.asarray(points)
        if pts.ndim != 2 or pts.shape[1] < 3:
            raise ValueError(f"points must have shape (N, >=3), got {pts.shape}")
        dtype = np.float32 if pts.dtype == np.float32 else np.float64
        out = np.array(pts, dtype=dtype, copy=True, order="C")
        t = self.translation.astype(dtype)
        if self.is_pure_translation():
            out[:, :3] += t
            return out
        r = self.rotation.astype(dtype)
        out[:, :3] = pts[:, :3].astype(dtype, copy=False) @ r.T
        out[:, :3] += t
        return out

    def apply_vectors(self, vectors: np.ndarray) -> np.ndarray:
        """Rotate direction vectors (N, 3) (no translation), float64."""
        v = np.asarray(vectors, dtype=np.float64).reshape(-1, 3)
        return v @ self.rotation.T

    # -- predicates -----------------------------------------------------------------------------
    def is_pure_translation(self, tol: float = 0.0) -> bool:
        """The rotation is the identity (within ``tol`` per matrix element; exact by default)."""
        return bool(np.all(np.abs(self.rotation - np.eye(3)) <= tol))

    def height_only(self) -> float | None:
        """The z of a transform that is exactly a translation along z (a sensor mounted straight
        above the origin, no rotation), else None. Consumers keep their historical
        "add the mount height to z" arithmetic on this case, so outputs stay bit-identical."""
        t = self.translation
        if t[0] == 0.0 and t[1] == 0.0 and self.is_pure_translation():
            return float(t[2])
        return None

    def is_yaw_only(self, tol: float = 0.0) -> bool:
        """The rotation is about +z only (no roll or pitch; within ``tol`` per element)."""
        r = self.rotation
        return bool(abs(r[2, 2] - 1.0) <= tol and np.all(np.abs(r[2, :2]) <= tol)
                    and np.all(np.abs(r[:2, 2]) <= tol))

    def almost_equal(self, other: RigidTransform, tol_m: float = 1e-9,
                     tol_rad: float = 1e-9) -> bool:
        """Translations within ``tol_m`` and rotations within ``tol_rad`` of each other."""
        if float(np.max(np.abs(self.translation - other.translation))) > tol_m:
            return False
        delta = self.rotation.T @ other.rotation
        # atan2(sin, cos) of the relative rotation angle: acos of the trace alone loses half the
        # digits near zero (acos(1 - 1e-16) is 1.5e-8 rad), which read float noise as a 1e-8 rad
        # difference against a 1e-9 rad tolerance.
        sin_angle = 0.5 * math.sqrt(float((delta[2, 1] - delta[1, 2]) ** 2
                                          + (delta[0, 2] - delta[2, 0]) ** 2
                                          + (delta[1, 0] - delta[0, 1]) ** 2))
        cos_angle = (float(np.trace(delta)) - 1.0) / 2.0
        return math.atan2(sin_angle, cos_angle) <= tol_rad

    def __repr__(self) -> str:
        x, y, z, roll, pitch, yaw = self.to_xyz_rpy()
        return (f"RigidTransform(xyz=({x:.6g}, {y:.6g}, {z:.6g}), "
                f"rpy=({roll:.6g}, {pitch:.6g}, {yaw:.6g}))")


# A camera's optical frame (x right, y down, z forward: the frame of its images and CameraInfo) in
# its body frame (x along the optical axis, y left, z up): carla-ros-bridge's camera frame turn.
# ``T_base<-optical = T_base<-body @ OPTICAL_IN_BODY`` (docs/CONTRACTS.md "Frames and units").
OPTICAL_IN_BODY = RigidTransform(np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]]),
                                 np.zeros(3))


# -- configured static transforms ---------------------------------------------------------------
def parse_static_transform(name: str, values: Sequence[float]) -> RigidTransform:
    """A configured static transform parameter -> :class:`RigidTransform`.

    Args:
        name: the parameter's name (every error names it).
        values: 6 numbers: x, y, z [m], roll, pitch, yaw [rad] of the child frame in the parent
            frame (``R = Rz(yaw) Ry(pitch) Rx(roll)``); roll and yaw in [-pi, pi], pitch in
            [-pi/2, pi/2].

    Raises:
        ParameterError: not 6 finite numbers, or an angle outside its range.
    """
    try:
        if isinstance(values, (str, bytes)):
            raise TypeError
        vals = list(values)  # a list, a tuple, rclpy's array.array('d'), a numpy array
    except TypeError:
        raise ParameterError(f"parameter '{name}' must be a list of {STATIC_TRANSFORM_LEN} numbers "
                             f"[x, y, z (m), roll, pitch, yaw (rad)], got {values!r}") from None
    if len(vals) != STATIC_TRANSFORM_LEN:
        raise ParameterError(f"parameter '{name}' must have {STATIC_TRANSFORM_LEN} numbers "
                             f"[x, y, z (m), roll, pitch, yaw (rad)], got {len(vals)}: {vals!r}")
    out = []
    for field, v in zip(STATIC_TRANSFORM_FIELDS, vals, strict=True):
        if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
            raise ParameterError(f"parameter '{name}': {field} must be a number, got {v!r}")
        if not math.isfinite(float(v)):
            raise ParameterError(f"parameter '{name}': {field} must be finite, got {v!r}")
        out.append(float(v))
    for field, limit in (("roll", ROLL_YAW_LIMIT_RAD), ("pitch", PITCH_LIMIT_RAD),
                         ("yaw", ROLL_YAW_LIMIT_RAD)):
        v = out[STATIC_TRANSFORM_FIELDS.index(field)]
        if abs(v) > limit:
            raise ParameterError(f"parameter '{name}': {field} = {v} rad is out of range; allowed "
                                 f"[{-limit:.6g}, {limit:.6g}] rad")
    return RigidTransform.from_xyz_rpy(out[:3], out[3:])


# -- the transform tree -------------------------------------------------------------------------
@dataclass(frozen=True)
class TransformEdge:
    """One stored ``parent -> child`` transform.

    Attributes:
        parent, child: frame ids.
        transform: ``T_parent<-child``.
        static: from a static source (``/tf_static``, configuration) rather than ``/tf``.
        stamp_ns: header stamp of the transform [ns] (0 when not known).
    """

    parent: str
    child: str
    transform: RigidTransform
    static: bool
    stamp_ns: int = 0


@dataclass(frozen=True)
class Lookup:
    """A resolved chain: ``transform`` is ``T_target<-source``; ``static`` is true when every
    edge on the chain is static; ``stamp_ns`` is the oldest edge stamp of the chain."""

    target: str
    source: str
    transform: RigidTransform
    static: bool
    stamp_ns: int


class TransformBuffer:
    """The latest transform of every ``parent -> child`` edge, as a tree (one parent per child,
    as in tf2), and chain lookups between any two connected frames.

    Setting an edge again replaces it (a later ``/tf_static`` message with new values wins; a
    child moved to another parent is re-attached). An edge that would close a loop is refused.
    """

    def __init__(self) -> None:
        self._edges: dict[str, TransformEdge] = {}  # child -> edge

    def set_transform(self, parent: str, child: str, transform: RigidTransform, *,
                      static: bool, stamp_ns: int = 0) -> None:
        """Store ``T_parent<-child``.

        Raises:
            ValueError: empty frame ids, ``parent == child``, or the edge would make a loop.
        """
        parent, child = str(parent).lstrip("/"), str(child).lstrip("/")
        if not parent or not child:
            raise ValueError(f"frame ids must not be empty (parent {parent!r}, child {child!r})")
        if parent == child:
            raise ValueError(f"frame {child!r} cannot be its own parent")
        # The new parent must not descend from the child (that would close a loop).
        node = parent
        while node in self._edges:
            node = self._edges[node].parent
            if node == child:
                raise ValueError(f"transform {parent!r} -> {child!r} would make a loop")
        self._edges[child] = TransformEdge(parent, child, transform, bool(static), int(stamp_ns))

    def clear(self) -> None:
        """Forget every edge."""
        self._edges.clear()

    @property
    def frames(self) -> set[str]:
        """Every frame id that appears as a parent or a child."""
        return set(self._edges) | {e.parent for e in self._edges.values()}

    def edges(self) -> list[TransformEdge]:
        """Every stored edge."""
        return list(self._edges.values())

    def parent_of(self, child: str) -> str | None:
        """The parent frame of ``child`` (None for a root or an unknown frame)."""
        edge = self._edges.get(child.lstrip("/"))
        return edge.parent if edge is not None else None

    def _chain_to_root(self, frame: str) -> list[TransformEdge]:
        out = []
        while frame in self._edges:
            edge = self._edges[frame]
            out.append(edge)
            frame = edge.parent
        return out

    def lookup_chain(self, target: str, source: str) -> Lookup:
        """``T_target<-source`` with how it was made (see :class:`Lookup`).

        Raises:
            FrameLookupError: a frame is unknown or the two are not connected; the message names
                both frames and the known ones.
        """
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return Lookup(target, source, RigidTransform.identity(), True, 0)
        known = self.frames
        for role, frame in (("target", target), ("source", source)):
            if frame not in known:
                raise FrameLookupError(f"{role} frame {frame!r} is unknown; known frames: "
                                       f"{sorted(known) or 'none'}")
        up_source = self._chain_to_root(source)
        up_target = self._chain_to_root(target)
        # Ancestors of the source (itself included) -> index into its chain.
        source_ancestors = {source: 0}
        for i, edge in enumerate(up_source):
            source_ancestors[edge.parent] = i + 1
        # Walk up from the target to the first ancestor the source shares: the common frame.
        common, n_target = None, 0
        if target in source_ancestors:
            common = target
        else:
            for i, edge in enumerate(up_target):
                if edge.parent in source_ancestors:
                    common, n_target = edge.parent, i + 1
                    break
        if common is None:
            raise FrameLookupError(f"frames {target!r} and {source!r} are not connected "
                                   f"(roots {self._root(target)!r} and {self._root(source)!r})")
        source_part = up_source[:source_ancestors[common]]
        target_part = up_target[:n_target]
        used = source_part + target_part
        t_common_source = _compose_up(source_part)
        t_common_target = _compose_up(target_part)
        transform = t_common_target.inverse() @ t_common_source
        return Lookup(target, source, transform, all(e.static for e in used),
                      min((e.stamp_ns for e in used), default=0))

    def lookup(self, target: str, source: str) -> RigidTransform:
        """``T_target<-source``: maps points given in ``source`` into ``target`` (tf2's
        ``lookup_transform(target, source)``). Raises :class:`FrameLookupError`."""
        return self.lookup_chain(target, source).transform

    def can_transform(self, target: str, source: str) -> bool:
        """Whether :meth:`lookup` would succeed."""
        try:
            self.lookup_chain(target, source)
        except FrameLookupError:
            return False
        return True

    def _root(self, frame: str) -> str:
        chain = self._chain_to_root(frame)
        return chain[-1].parent if chain else frame


def _compose_up(chain: list[TransformEdge]) -> RigidTransform:
    """``T_top<-bottom`` of a chain listed bottom-up (chain[0].child is the bottom frame)."""
    out = RigidTransform.identity()
    for edge in chain:
        out = edge.transform @ out
    return out


# -- extrinsics ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Extrinsic:
    """A sensor extrinsic in use.

    Attributes:
        transform: ``T_target<-sensor`` (maps sensor-frame points into the target frame).
        target_frame: e.g. ``base_link``.
        sensor_frame: the sensor's frame id (e.g. the ``frame_id`` of its messages).
        origin: ``tf_static`` (every edge of the chain static), ``tf`` (a dynamic edge on the
            chain, e.g. carla-ros-bridge's sensor transforms on ``/tf``) or ``configured``.
        detail: why the configured one is used (the lookup error), else empty.
    """

    transform: RigidTransform
    target_frame: str
    sensor_frame: str
    origin: str
    detail: str = ""


class ExtrinsicResolver:
    """A sensor's extrinsic: from the transform tree when it connects the sensor frame to the
    target frame, else the configured static transform (a bag without TF, a vehicle with no TF
    publisher yet).

    Args:
        buffer: the transform tree (fed by ``tps_common.tf.TransformListener``).
        target_frame: the frame the consumer works in (e.g. ``base_link``).
        sensor_frame: the sensor frame expected by default (its messages' ``frame_id``).
        configured: ``T_target<-sensor`` from the parameters (:func:`parse_static_transform`).
    """

    def __init__(self, buffer: TransformBuffer, target_frame: str, sensor_frame: str,
                 configured: RigidTransform) -> None:
        self.buffer = buffer
        self.target_frame = target_frame
        self.sensor_frame = sensor_frame
        self.configured = configured

    def resolve(self, sensor_frame: str | None = None) -> Extrinsic:
        """The extrinsic for ``sensor_frame`` (default: the configured sensor frame).

        A frame other than the configured sensor frame that the tree does not know falls back to
        the configured transform too (and says so in ``detail``).
        """
        frame = (sensor_frame or self.sensor_frame).lstrip("/")
        try:
            found = self.buffer.lookup_chain(self.target_frame, frame)
        except FrameLookupError as exc:
            return Extrinsic(self.configured, self.target_frame, frame, ORIGIN_CONFIGURED, str(exc))
        return Extrinsic(found.transform, self.target_frame, frame,
                         ORIGIN_TF_STATIC if found.static else ORIGIN_TF)
