"""Input bags in, result bags out (``rosbags``; no ROS).

:class:`InputBag` reads a rosbag2 (an MCAP file, or a rosbag2 directory with MCAP or sqlite3
storage) in bag-time order and turns it into what the player publishes: a *preamble* (everything
before the first lidar message: latched map knowledge, route, ``/tf_static``) and *frames* (all
messages up to and including one lidar message and everything with the same bag time after it; a
stamped message the recorder logged after the next frame began goes back to the frame of its stamp,
:meth:`InputBag.frames`).
On the way every message is

* deserialized (a message that does not decode is counted as **unreadable** and never played: a
  corrupt message must not reach a node),
* remapped (``remap``), filtered (never ``/clock``, ``/diagnostics``, the graph's own outputs, the
  ``drop`` list; only ``play`` when given),
* adapted where the configuration says so: the lidar's PointField names and frame id, header
  stamps set to bag time (``time.restamp``), stamps that go back on a topic counted and dropped
  (``time.non_monotonic: drop``) or kept.

Unmodified messages are published as the bag's own CDR bytes. Static transforms of the bag and of
the configuration are merged into one ``/tf_static`` message (tf2's convention: one message per
publisher holding all of its edges).

:class:`ResultBagWriter` writes the recorded outputs as one MCAP file (rosbag2 layout, the
project's typestore: tps_msgs and carla_msgs registered, so schemas are embedded for Foxglove and
``mcap-ros2-support``); every message is decoded and re-encoded on the way (zeroed CDR padding,
so equal runs write equal bytes), and one that does not decode is counted, not written.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tps_eval.replay.config import NEVER_PLAYED, ReplayConfig

TF_STATIC = "/tf_static"
TF = "/tf"
TF_TYPE = "tf2_msgs/msg/TFMessage"
POINTCLOUD_TYPE = "sensor_msgs/msg/PointCloud2"
LATCHED_NAMES = ("/planning/route", "/tps/instruction", "/tps/map/lane_map", "/carla/traffic_lights/info",
                 TF_STATIC)
NS_PER_S = 1_000_000_000
ROSBAG_VERSION = 8


class BagError(RuntimeError):
    """The bag cannot be opened at all (not a rosbag2, missing, no usable topic)."""


@dataclass(eq=False)
class BagMessage:
    """One message to publish.

    Attributes:
        topic: the topic it is published on (after ``remap``); bag_topic: its name in the bag.
        msgtype: ``pkg/msg/Name``.
        bag_ns: bag time [ns]; stamp_ns: its header stamp after restamping [ns] (None: no header).
        raw: CDR bytes to publish.
        msg: the decoded message (``rosbags`` dataclass), for the analysis.
    """

    topic: str
    bag_topic: str
    msgtype: str
    bag_ns: int
    stamp_ns: int | None
    raw: bytes
    msg: Any


@dataclass
class Frame:
    """One lidar frame: ``messages`` in bag order (the trigger among them); ``clock_ns`` is the
    sim time published on ``/clock`` before them; ``stamp_ns`` the trigger's header stamp (what the
    graph's outputs for this frame carry)."""

    index: int
    clock_ns: int
    stamp_ns: int
    trigger: BagMessage
    messages: list[BagMessage]


@dataclass
class BagStats:
    """What happened to the bag's messages (all counts per played topic)."""

    played: Counter = field(default_factory=Counter)
    unreadable: Counter = field(default_factory=Counter)
    non_monotonic: Counter = field(default_factory=Counter)
    filtered: Counter = field(default_factory=Counter)
    adapted: Counter = field(default_factory=Counter)
    moved_late: Counter = field(default_factory=Counter)   # logged after their frame: moved back
    unreadable_reasons: dict = field(default_factory=dict)
    frames: int = 0

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"played": dict(self.played), "unreadable": dict(self.unreadable),
                "unreadable_total": sum(self.unreadable.values()),
                "unreadable_reasons": dict(self.unreadable_reasons),
                "non_monotonic": dict(self.non_monotonic),
                "non_monotonic_total": sum(self.non_monotonic.values()),
                "filtered": dict(self.filtered), "adapted": dict(self.adapted),
                "moved_late": dict(self.moved_late), "frames": self.frames}


def time_ns(stamp) -> int:
    """``builtin_interfaces/Time``-like (sec, nanosec) -> integer ns."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def _set_time(stamp, ns: int) -> None:
    stamp.sec, stamp.nanosec = int(ns // NS_PER_S), int(ns % NS_PER_S)


def header_stamp_ns(msg) -> int | None:
    """The header stamp of a decoded message [ns] (TFMessage: its first transform's), or None."""
    hdr = getattr(msg, "header", None)
    if hdr is not None and hasattr(hdr, "stamp"):
        return time_ns(hdr.stamp)
    transforms = getattr(msg, "transforms", None)
    if transforms:
        return time_ns(transforms[0].header.stamp)
    return None


def _is_latched(conn) -> bool:
    if conn.topic in LATCHED_NAMES:
        return True
    for qos in getattr(getattr(conn, "ext", None), "offered_qos_profiles", None) or []:
        if getattr(getattr(qos, "durability", None), "name", "") == "TRANSIENT_LOCAL":
            return True
    return False


def open_reader(path: str | os.PathLike, typestore=None):
    """A ``rosbags`` AnyReader on an MCAP file or a rosbag2 directory (not yet opened)."""
    from rosbags.highlevel import AnyReader

    p = Path(path)
    if not p.exists():
        raise BagError(f"bag {p}: no such file or directory")
    if typestore is None:
        from tps_sim.recording import build_typestore

        typestore = build_typestore()
    return AnyReader([p], default_typestore=typestore)


class InputBag:
    """A bag prepared for playing (module docstring). Use as a context manager.

    Args:
        path: the bag (``.mcap`` file or rosbag2 directory).
        config: the replay configuration.
        exclude: topics (after remap) the graph publishes itself; never played.
    """

    def __init__(self, path: str | os.PathLike, config: ReplayConfig,
                 exclude: set[str] | frozenset[str] = frozenset()) -> None:
        self.path = Path(path)
        self.config = config
        self.exclude = set(exclude)
        self.stats = BagStats()
        self._reader = open_reader(self.path)
        self.lidar_topic = config.inputs.get("lidar", "")
        self.camera_topic = config.inputs.get("camera", "")
        self._last_stamp: dict[str, int] = {}
        self._static: dict[tuple[str, str], Any] = {}
        self.tf_static_changed = False
        self.topics: dict[str, tuple[str, bool]] = {}   # played topic -> (msgtype, latched)
        # topic (after remap) -> callback(decoded message) for topics read but never played (the
        # outputs of a logged run, for comparison)
        self.keep: dict = {}
        self.start_ns = 0
        self.end_ns = 0

    def __enter__(self) -> InputBag:
        try:
            self._reader.open()
        except Exception as exc:  # noqa: BLE001 - a bag that cannot be opened at all
            raise BagError(f"bag {self.path}: cannot be read: {exc}") from exc
        self.typestore = self._reader.typestore
        for conn in self._reader.connections:
            name = self.config.played_name(conn.topic)
            if self._playable(name):
                latched = self.topics.get(name, (None, False))[1] or _is_latched(conn)
                self.topics[name] = (conn.msgtype, latched)
        self.start_ns = int(getattr(self._reader, "start_time", 0) or 0)
        self.end_ns = int(getattr(self._reader, "end_time", 0) or 0)
        if self.lidar_topic not in self.topics:
            have = sorted(self.topics)
            raise BagError(f"bag {self.path}: no lidar topic {self.lidar_topic!r} to trigger frames "
                           f"(topics after remap: {have}); set inputs.lidar or remap in --config")
        return self

    def __exit__(self, *exc) -> None:
        self._reader.close()

    # -- filtering and adaptation -------------------------------------------------------------
    def _playable(self, topic: str) -> bool:
        if topic in NEVER_PLAYED or topic in self.config.drop or topic in self.exclude:
            return False
        if self.config.play and topic not in self.config.play and topic != TF_STATIC:
            return False
        return True

    def static_transforms(self) -> list:
        """The merged ``/tf_static`` edges: the bag's, then the configuration's (which win)."""
        return list(self._static.values())

    def tf_static_raw(self) -> bytes | None:
        """One ``tf2_msgs/TFMessage`` (CDR) with every static edge, or None when there is none."""
        from tps_common.frames import RigidTransform

        edges = dict(self._static)
        ts_cls = self.typestore.types["geometry_msgs/msg/TransformStamped"]
        hdr_cls = self.typestore.types["std_msgs/msg/Header"]
        time_cls = self.typestore.types["builtin_interfaces/msg/Time"]
        tr_cls = self.typestore.types["geometry_msgs/msg/Transform"]
        v_cls = self.typestore.types["geometry_msgs/msg/Vector3"]
        q_cls = self.typestore.types["geometry_msgs/msg/Quaternion"]
        for st in self.config.static_transforms:
            rt = RigidTransform.from_xyz_rpy(st.xyz_rpy[:3], st.xyz_rpy[3:])
            x, y, z = (float(v) for v in rt.translation)
            qx, qy, qz, qw = (float(v) for v in rt.quaternion)
            edges[(st.parent, st.child)] = ts_cls(
                header=hdr_cls(stamp=time_cls(sec=0, nanosec=0), frame_id=st.parent),
                child_frame_id=st.child,
                transform=tr_cls(translation=v_cls(x=x, y=y, z=z), rotation=q_cls(x=qx, y=qy, z=qz, w=qw)))
        if not edges:
            return None
        tf_cls = self.typestore.types[TF_TYPE]
        return bytes(self.typestore.serialize_cdr(tf_cls(transforms=list(edges.values())), TF_TYPE))

    def _adapt(self, topic: str, msgtype: str, msg, bag_ns: int) -> bool:
        """Apply the configured adaptations in place; True when the message changed."""
        changed = False
        if self.config.time.restamp:
            hdr = getattr(msg, "header", None)
            if hdr is not None and hasattr(hdr, "stamp"):
                _set_time(hdr.stamp, bag_ns)
                changed = True
            for tf in getattr(msg, "transforms", None) or []:
                _set_time(tf.header.stamp, bag_ns)
                changed = True
        if topic == self.lidar_topic and msgtype == POINTCLOUD_TYPE:
            for f in msg.fields:
                new = self.config.lidar_fields.get(f.name)
                if new is not None and new != f.name:
                    f.name = new
                    changed = True
            if self.config.lidar_frame_id and msg.header.frame_id != self.config.lidar_frame_id:
                msg.header.frame_id = self.config.lidar_frame_id
                changed = True
        return changed

    def _unreadable(self, topic: str, reason: str) -> None:
        self.stats.unreadable[topic] += 1
        self.stats.unreadable_reasons.setdefault(topic, reason[:200])

    def messages(self) -> Iterator[BagMessage]:
        """Every playable message in bag order, adapted (``/tf_static`` is merged, not yielded)."""
        for conn, bag_ns, raw in self._reader.messages():
            topic = self.config.played_name(conn.topic)
            if topic not in self.topics:
                self.stats.filtered[topic] += 1
                if topic in self.keep:
                    try:
                        self.keep[topic](self.typestore.deserialize_cdr(raw, conn.msgtype))
                    except Exception:  # noqa: BLE001 - a logged output that does not decode
                        self._unreadable(topic, "logged output does not decode")
                continue
            try:
                msg = self.typestore.deserialize_cdr(raw, conn.msgtype)
            except Exception as exc:  # noqa: BLE001 - counted, never fatal
                self._unreadable(topic, f"{type(exc).__name__}: {exc}")
                continue
            changed = self._adapt(topic, conn.msgtype, msg, int(bag_ns))
            if topic == TF_STATIC:
                for tf in msg.transforms:
                    self._static[(tf.header.frame_id, tf.child_frame_id)] = tf
                self.tf_static_changed = True
                self.stats.played[topic] += 1
                continue
            stamp = header_stamp_ns(msg)
            if stamp is not None:
                last = self._last_stamp.get(topic)
                back = last is not None and (stamp <= last if topic == self.lidar_topic else stamp < last)
                if back:
                    self.stats.non_monotonic[topic] += 1
                    if self.config.time.non_monotonic == "drop":
                        continue
                else:
                    self._last_stamp[topic] = stamp
            if changed:
                self.stats.adapted[topic] += 1
                try:
                    raw = self.typestore.serialize_cdr(msg, conn.msgtype)
                except Exception as exc:  # noqa: BLE001
                    self._unreadable(topic, f"re-encoding after adaptation failed: {exc}")
                    continue
            self.stats.played[topic] += 1
            yield BagMessage(topic, conn.topic, conn.msgtype, int(bag_ns), stamp, bytes(raw), msg)

    def frames(self) -> Iterator[tuple[list[BagMessage], Frame | None]]:
        """(messages to publish first, the frame) pairs: the first pair's list is the preamble,
        later lists are empty; the last pair may carry a tail without a frame (None).

        A stamped message logged after its frame goes back to it: a recorder logs each message
        when it receives it, and topics arrive in no fixed order, so on a busy host the odometry
        of stamp k was logged after the clock of k+1 (seen in the evaluation's own bags). Played
        in bag order, frame k would go out without it, and a node pairing by stamp would wait
        for it until the lockstep timeout. Each frame is held until the next one is read; the
        messages of the next one (its trigger excepted) stamped at or before the held frame's
        stamp move to the end of the held frame, in bag order. Counted as ``moved_late``."""
        held: Frame | None = None
        for prefix, frame in self._frames_in_bag_order():
            if frame is None:
                if held is not None:
                    yield [], held
                    held = None
                yield prefix, None
                continue
            if held is not None:
                late = [m for m in frame.messages if m is not frame.trigger and m.topic != self.lidar_topic
                         and m.stamp_ns is not None and m.stamp_ns <= held.stamp_ns]
                if late:
                    held.messages.extend(late)
                    frame.messages = [m for m in frame.messages if not any(m is x for x in late)]
                    for m in late:
                        self.stats.moved_late[m.topic] += 1
                yield [], held
            held = frame
        if held is not None:
            yield [], held

    def _frames_in_bag_order(self) -> Iterator[tuple[list[BagMessage], Frame | None]]:
        """:meth:`frames` before late messages are moved back: every frame's messages in bag order."""
        pending: list[BagMessage] = []
        current: Frame | None = None
        index = 0
        last_clock = -1
        for m in self.messages():
            if current is not None:
                if m.bag_ns == current.trigger.bag_ns and m.topic != self.lidar_topic:
                    current.messages.append(m)      # the same instant as the trigger
                    continue
                yield [], current
                current = None
            if m.topic == self.lidar_topic:
                stamp = m.stamp_ns if m.stamp_ns is not None else m.bag_ns
                clock = m.bag_ns if self.config.time.clock == "bag" else stamp
                clock = max(clock, last_clock)
                last_clock = clock
                current = Frame(index, clock, stamp, m, pending + [m])
                index += 1
                self.stats.frames = index
                if index == 1:
                    # The preamble (published during set-up): latched topics and anything older
                    # than the first lidar message; the rest of its instant belongs to frame 0.
                    early = [self.topics[p.topic][1] or p.bag_ns < m.bag_ns for p in pending]
                    preamble = [p for p, e in zip(pending, early, strict=True) if e]
                    current.messages = [p for p, e in zip(pending, early, strict=True) if not e] + [m]
                    yield preamble, None
                pending = []
                continue
            pending.append(m)
        if current is not None:
            yield [], current
        if pending:
            yield pending, None


# --- result bags --------------------------------------------------------------------------------
def _qos_profile(latched: bool, depth: int = 10):
    from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

    never = QosTime(sec=0x7FFFFFFF, nsec=0xFFFFFFFF)
    return Qos(history=QosHistory.KEEP_LAST, depth=depth, reliability=QosReliability.RELIABLE,
               durability=QosDurability.TRANSIENT_LOCAL if latched else QosDurability.VOLATILE,
               deadline=never, lifespan=never, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=never, avoid_ros_namespace_conventions=False)


class ResultBagWriter:
    """One MCAP file of recorded messages (module docstring). Not thread-safe: one writer thread.

    Args:
        path: the ``.mcap`` file to write (must not exist).
        compress: zstd-compress the MCAP chunks.
        typestore: the types (default: the project's, tps_sim.recording.build_typestore).
    """

    def __init__(self, path: str | os.PathLike, *, compress: bool = False, typestore=None) -> None:
        from rosbags.rosbag2 import CompressionFormat, CompressionMode, StoragePlugin, Writer

        self.target = Path(path)
        if self.target.suffix != ".mcap":
            raise ValueError(f"result bag must be a .mcap file, got {self.target}")
        if self.target.exists():
            raise FileExistsError(f"output {self.target} exists already; not overwriting")
        self.target.parent.mkdir(parents=True, exist_ok=True)
        if typestore is None:
            from tps_sim.recording import build_typestore

            typestore = build_typestore()
        self.store = typestore
        self._tmpdir = Path(tempfile.mkdtemp(prefix=".bag-", dir=self.target.parent))
        self._bag_dir = self._tmpdir / self.target.stem
        self.writer = Writer(self._bag_dir, version=ROSBAG_VERSION, storage_plugin=StoragePlugin.MCAP)
        if compress:
            self.writer.set_compression(CompressionMode.STORAGE, CompressionFormat.ZSTD)
        self.writer.open()
        self.connections: dict[str, Any] = {}
        self.written: Counter = Counter()
        self.undecodable: Counter = Counter()
        self.unknown_types: set[str] = set()

    def known(self, msgtype: str) -> bool:
        """Whether the typestore can encode ``msgtype``."""
        return msgtype in self.store.types

    def write(self, topic: str, msgtype: str, raw: bytes, log_ns: int, latched: bool = False) -> bool:
        """Decode, re-encode and write one message at log time ``log_ns``; False when skipped."""
        if not self.known(msgtype):
            self.unknown_types.add(msgtype)
            self.undecodable[topic] += 1
            return False
        try:
            clean = self.store.serialize_cdr(self.store.deserialize_cdr(raw, msgtype), msgtype)
        except Exception:  # noqa: BLE001 - counted: a result bag holds only decodable messages
            self.undecodable[topic] += 1
            return False
        conn = self.connections.get(topic)
        if conn is None:
            conn = self.writer.add_connection(topic, msgtype, typestore=self.store,
                                              offered_qos_profiles=[_qos_profile(latched)])
            self.connections[topic] = conn
        self.writer.write(conn, max(0, int(log_ns)), clean)
        self.written[topic] += 1
        return True

    def close(self) -> Path:
        """Finish the file; returns its path."""
        self.writer.close()
        produced = list(self._bag_dir.glob("*.mcap"))
        if len(produced) != 1:
            raise RuntimeError(f"expected one .mcap file in {self._bag_dir}, found {produced}")
        os.replace(produced[0], self.target)
        shutil.rmtree(self._tmpdir, ignore_errors=True)
        return self.target


def read_messages(path: str | os.PathLike, topics: set[str] | None = None) -> Iterator[tuple[str, str, int, Any]]:
    """(topic, msgtype, log time [ns], decoded message) of a bag, in log-time order."""
    with open_reader(path) as reader:
        conns = [c for c in reader.connections if topics is None or c.topic in topics]
        for conn, t_ns, raw in reader.messages(connections=conns):
            yield conn.topic, conn.msgtype, int(t_ns), reader.deserialize(raw, conn.msgtype)
