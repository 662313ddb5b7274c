"""The frame tree on ROS: ``/tf`` and ``/tf_static`` (imports geometry_msgs and tf2_msgs; rclpy
only inside the QoS functions, so message builders such as ``tps_sim.conversions`` can use the
converters here without importing rclpy).

``tf2``/``tf2_ros`` are not on PyPI (docs/CONTRACTS.md, shared ENVIRONMENT.md), so this small
module is ours; the core is :mod:`tps_common.frames` (ROS-free).

* QoS as tf2_ros uses them (geometry2 ``qos.hpp``, ``transform_listener.py``,
  ``static_transform_broadcaster.py``): ``/tf`` reliable, volatile, depth 100 (:func:`tf_qos`);
  ``/tf_static`` reliable, transient local, depth 1 for a broadcaster (one message holding every
  static transform of that publisher; :func:`tf_static_broadcast_qos`) and depth 100 for a
  listener (:func:`tf_static_listen_qos`).
* :func:`transform_from_msg`, :func:`transform_to_msg`, :func:`transform_stamped`:
  ``geometry_msgs`` <-> :class:`~tps_common.frames.RigidTransform`.
* :class:`TransformListener` feeds a :class:`~tps_common.frames.TransformBuffer` from both topics.
* :class:`ExtrinsicSource` gives a node a sensor's extrinsic (``T_target<-sensor``): from the tree
  (``/tf_static``; or ``/tf``, where carla-ros-bridge sends its sensor transforms) when it connects
  the sensor frame to the target frame, else the configured static transform, and says which one
  is in use (for diagnostics).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from geometry_msgs.msg import Quaternion, Transform, TransformStamped, Vector3
from tf2_msgs.msg import TFMessage

from tps_common.conversions import seconds_to_time, time_to_ns
from tps_common.frames import (
    ORIGIN_CONFIGURED,
    Extrinsic,
    ExtrinsicResolver,
    RigidTransform,
    TransformBuffer,
)

TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
TF_DEPTH = 100
TF_STATIC_BROADCAST_DEPTH = 1
TF_STATIC_LISTEN_DEPTH = 100
# A malformed transform is logged at most this often [s].
REJECT_LOG_PERIOD_S = 5.0


def _qos(depth: int, transient_local: bool):
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.RELIABLE,
                      durability=(DurabilityPolicy.TRANSIENT_LOCAL if transient_local
                                  else DurabilityPolicy.VOLATILE))


def tf_qos():
    """``/tf`` (publishers and subscribers): reliable, volatile, keep last 100 (tf2_ros)."""
    return _qos(TF_DEPTH, transient_local=False)


def tf_static_broadcast_qos():
    """``/tf_static`` publishers: reliable, transient local, keep last 1 (tf2_ros): publish every
    static transform of the publisher in one message."""
    return _qos(TF_STATIC_BROADCAST_DEPTH, transient_local=True)


def tf_static_listen_qos():
    """``/tf_static`` subscribers: reliable, transient local, keep last 100 (tf2_ros), so a late
    subscriber gets the latched message of every publisher."""
    return _qos(TF_STATIC_LISTEN_DEPTH, transient_local=True)


def transform_from_msg(msg: Transform) -> RigidTransform:
    """``geometry_msgs/Transform`` -> :class:`RigidTransform` (quaternion normalised; ValueError
    for a non-finite translation or a zero quaternion)."""
    t, q = msg.translation, msg.rotation
    return RigidTransform.from_xyz_quaternion((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))


def transform_to_msg(transform: RigidTransform,
                     quaternion: Sequence[float] | None = None) -> Transform:
    """:class:`RigidTransform` -> ``geometry_msgs/Transform``; ``quaternion`` (x, y, z, w)
    replaces the one computed from the rotation matrix (e.g. to send exactly an odometry's)."""
    x, y, z = (float(v) for v in transform.translation)
    qx, qy, qz, qw = (float(v) for v in (quaternion if quaternion is not None
                                          else transform.quaternion))
    return Transform(translation=Vector3(x=x, y=y, z=z), rotation=Quaternion(x=qx, y=qy, z=qz, w=qw))


def transform_stamped(parent: str, child: str, transform: RigidTransform, t_s: float = 0.0,
                      quaternion: Sequence[float] | None = None) -> TransformStamped:
    """``geometry_msgs/TransformStamped`` of ``T_parent<-child`` (``header.frame_id`` = parent,
    ``child_frame_id`` = child) stamped ``t_s`` seconds."""
    msg = TransformStamped(child_frame_id=child, transform=transform_to_msg(transform, quaternion))
    msg.header.frame_id = parent
    msg.header.stamp = seconds_to_time(t_s)
    return msg


class TransformListener:
    """Subscribes ``/tf`` and ``/tf_static`` on ``node`` and stores every transform in
    ``buffer``.

    Args:
        node: the rclpy node (its executor runs the callbacks).
        buffer: the tree to fill (a new one when None).
        static_only: only ``/tf_static`` (a node that needs extrinsics but not the vehicle pose).
        on_change: called with no argument after each message that changed the tree.
    """

    def __init__(self, node, buffer: TransformBuffer | None = None, *, static_only: bool = False,
                 on_change: Callable[[], None] | None = None) -> None:
        self.node = node
        self.buffer = buffer if buffer is not None else TransformBuffer()
        self.on_change = on_change
        self.received = 0
        self.rejected = 0
        self.last_error = ""
        self._subs = [node.create_subscription(TFMessage, TF_STATIC_TOPIC, self._on_static,
                                               tf_static_listen_qos())]
        if not static_only:
            self._subs.append(node.create_subscription(TFMessage, TF_TOPIC, self._on_dynamic,
                                                       tf_qos()))

    def _on_static(self, msg: TFMessage) -> None:
        self._store(msg, static=True)

    def _on_dynamic(self, msg: TFMessage) -> None:
        self._store(msg, static=False)

    def _store(self, msg: TFMessage, *, static: bool) -> None:
        changed = False
        for tf in msg.transforms:
            self.received += 1
            try:
                self.buffer.set_transform(tf.header.frame_id, tf.child_frame_id,
                                          transform_from_msg(tf.transform), static=static,
                                          stamp_ns=time_to_ns(tf.header.stamp))
                changed = True
            except ValueError as exc:  # bad quaternion, empty frame id, a loop
                self.rejected += 1
                self.last_error = (f"transform {tf.header.frame_id!r} -> {tf.child_frame_id!r} "
                                   f"refused: {exc}")
                self.node.get_logger().warning(self.last_error,
                                               throttle_duration_sec=REJECT_LOG_PERIOD_S)
                self._diag_rejected(static)
        if changed and self.on_change is not None:
            self.on_change()

    def _diag_rejected(self, static: bool) -> None:
        """An ERROR diagnostic ``<node>: tf`` naming the topic and the refused transform (a bad
        transform never passes silently; the publisher is made on the first one)."""
        from diagnostic_msgs.msg import DiagnosticArray

        from tps_common import diagnostics as diag
        from tps_common.qos import DIAGNOSTICS_QOS

        if getattr(self, "_diag_pub", None) is None:
            self._diag_pub = self.node.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        topic = TF_STATIC_TOPIC if static else TF_TOPIC
        self._diag_pub.publish(diag.array(self.node.get_clock().now().to_msg(), [diag.status(
            f"{self.node.get_name()}: tf", diag.ERROR, f"{topic}: {self.last_error}",
            {"rejected": self.rejected, "received": self.received})]))

    def destroy(self) -> None:
        """Remove the subscriptions from the node."""
        for sub in self._subs:
            self.node.destroy_subscription(sub)
        self._subs = []


class ExtrinsicSource:
    """A sensor's extrinsic for a node: ``T_target<-sensor`` from ``/tf_static`` (or ``/tf``) when
    it arrives, else the configured static transform (full 6-DOF; a bag without TF).

    Args:
        node: the rclpy node.
        target_frame: the frame the node works in (e.g. ``base_link``).
        sensor_frame: the sensor's frame id (its messages' ``frame_id``; a message in another frame
            can be resolved with :meth:`resolve`).
        configured: the configured transform (``tps_common.frames.parse_static_transform`` of the
            node's parameter).
        name: what the extrinsic is called in logs and diagnostics (e.g. ``lidar``).
        listener: share an existing listener (its buffer); a new one is created when None.
    """

    def __init__(self, node, *, target_frame: str, sensor_frame: str, configured: RigidTransform,
                 name: str = "sensor", listener: TransformListener | None = None) -> None:
        self.node = node
        self.name = name
        self.listener = listener if listener is not None else TransformListener(node)
        self.resolver = ExtrinsicResolver(self.listener.buffer, target_frame, sensor_frame,
                                          configured)
        self._last_key: tuple | None = None

    def resolve(self, sensor_frame: str | None = None) -> Extrinsic:
        """The extrinsic in use for ``sensor_frame`` (default: the configured sensor frame); logs
        once whenever the source or the value changes."""
        ext = self.resolver.resolve(sensor_frame)
        key = (ext.origin, ext.sensor_frame, tuple(ext.transform.to_xyz_rpy()))
        if key != self._last_key:
            self._last_key = key
            x, y, z, roll, pitch, yaw = ext.transform.to_xyz_rpy()
            how = ("configured (no transform tree for it yet)" if ext.origin == ORIGIN_CONFIGURED
                   else f"from /{ext.origin}")
            self.node.get_logger().info(
                f"{self.name} extrinsic {ext.target_frame} <- {ext.sensor_frame} {how}: "
                f"xyz ({x:.3f}, {y:.3f}, {z:.3f}) m, rpy ({roll:.4f}, {pitch:.4f}, {yaw:.4f}) rad")
        return ext

    def transform(self, sensor_frame: str | None = None) -> RigidTransform:
        """``T_target<-sensor`` in use (see :meth:`resolve`)."""
        return self.resolve(sensor_frame).transform

    def diagnostic_values(self, sensor_frame: str | None = None) -> dict:
        """KeyValues for a diagnostics status: ``<name>_extrinsic_origin`` (tf_static | tf |
        configured), the frames, and the transform (xyz [m], rpy [rad])."""
        ext = self.resolver.resolve(sensor_frame)
        x, y, z, roll, pitch, yaw = ext.transform.to_xyz_rpy()
        return {f"{self.name}_extrinsic_origin": ext.origin,
                f"{self.name}_frame": ext.sensor_frame, "target_frame": ext.target_frame,
                f"{self.name}_extrinsic_xyz_m": f"{x:.3f} {y:.3f} {z:.3f}",
                f"{self.name}_extrinsic_rpy_rad": f"{roll:.4f} {pitch:.4f} {yaw:.4f}"}

    def destroy(self) -> None:
        """Remove the listener's subscriptions."""
        self.listener.destroy()
