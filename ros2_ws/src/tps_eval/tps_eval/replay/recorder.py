"""Record topics heard over DDS into a result MCAP (what ``ros2 bag record`` does; rosbag2 itself
is not on PyPI). Used by ``tps-replay`` (the graph's outputs, ``/tf``, diagnostics) and by
``tps-eval closedloop --record`` (an episode's full topic set).

Subscriptions are raw (``raw=True``: CDR bytes, no Python message objects on the hot path). Topics
are given up front (``fixed``) and/or discovered while running (``include``): the QoS of a
discovered topic follows its publishers, as rosbag2 does -- transient local when every publisher
offers it (latched map knowledge, ``/tf_static``, the selected trajectory's history), best effort
when any publisher is best effort. A writer thread decodes, re-encodes and writes (so callbacks
never block the executor); the log time of a message is the later of the sim clock when it
arrived and its header stamp, so a frame's messages keep their instant even when DDS delivers the
sensor data before the clock.
"""

from __future__ import annotations

import queue
import struct
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tps_common.msgtypes import message_class

from tps_eval.replay.bagio import NS_PER_S, ResultBagWriter

DISCOVERY_PERIOD_S = 0.2
RECORD_DEPTH = 100
# CDR encapsulation (2 bytes kind + 2 options), then a message that starts with std_msgs/Header:
# int32 sec, uint32 nanosec.
_CDR_LE = 0x01
_HEADER_STAMP = struct.Struct("<iI")
_HEADER_STAMP_BE = struct.Struct(">iI")


def cdr_header_stamp_ns(raw: bytes) -> int | None:
    """The header stamp [ns] of a CDR message whose first field is a ``std_msgs/Header`` (read
    from the bytes, no decoding); None when too short."""
    if len(raw) < 12:
        return None
    fmt = _HEADER_STAMP if raw[1] == _CDR_LE else _HEADER_STAMP_BE
    sec, nsec = fmt.unpack_from(raw, 4)
    return int(sec) * NS_PER_S + int(nsec)


def record_qos(latched: bool, best_effort: bool = False, depth: int = RECORD_DEPTH):
    """The QoS a recording subscription uses."""
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth,
                      reliability=ReliabilityPolicy.BEST_EFFORT if best_effort else ReliabilityPolicy.RELIABLE,
                      durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)


class RecordSink:
    """Receives (topic, type, raw, arrival wall time, log time) from subscriptions and writes them
    from one thread into a :class:`ResultBagWriter` (and to optional listeners, e.g. the Foxglove
    server). ``path`` None: nothing is written (listeners only)."""

    def __init__(self, path: str | Path | None, *, compress: bool = False) -> None:
        self.writer = ResultBagWriter(path, compress=compress) if path is not None else None
        self.latched: set[str] = set()
        self.heard: Counter = Counter()
        self.listeners: list[Callable[[str, str, bytes, int], None]] = []
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="tps-record-writer", daemon=True)
        self._thread.start()
        self.error: str = ""

    def put(self, topic: str, msgtype: str, raw: bytes, log_ns: int) -> None:
        """Queue one message (thread-safe, never blocks)."""
        self.heard[topic] += 1
        self._queue.put((topic, msgtype, raw, int(log_ns)))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            topic, msgtype, raw, log_ns = item
            try:
                if self.writer is not None:
                    self.writer.write(topic, msgtype, raw, log_ns, latched=topic in self.latched)
                for listener in self.listeners:
                    listener(topic, msgtype, raw, log_ns)
            except Exception as exc:  # noqa: BLE001 - a recording problem never stops the run
                self.error = f"{type(exc).__name__}: {exc}"

    def close(self) -> Path | None:
        """Write everything queued and finish the file; returns its path (None without one)."""
        self._queue.put(None)
        self._thread.join()
        return self.writer.close() if self.writer is not None else None


class TopicRecorder:
    """Raw subscriptions on ``node`` feeding a :class:`RecordSink` (module docstring).

    Args:
        node: an rclpy node (its executor must spin).
        sink: where messages go.
        clock_ns: the current sim time [ns] (the log time of header-less messages).
        fixed: topic -> msgtype subscribed at once; latched ones in ``latched``.
        include: a predicate on discovered topic names (None: no discovery).
        on_message: extra callback (topic, raw, arrival wall time [s]) for each message heard.
    """

    def __init__(self, node, sink: RecordSink, clock_ns: Callable[[], int], *,
                 fixed: dict[str, str] | None = None, latched: set[str] | None = None,
                 include: Callable[[str], bool] | None = None,
                 on_message: Callable[[str, bytes, float], None] | None = None) -> None:
        self.node = node
        self.sink = sink
        self.clock_ns = clock_ns
        self.on_message = on_message
        self.include = include
        self.subscriptions: dict[str, Any] = {}
        self.types: dict[str, str] = {}
        self.skipped: dict[str, str] = {}
        self._header_first: dict[str, bool] = {}
        for topic, msgtype in (fixed or {}).items():
            self.subscribe(topic, msgtype, latched=topic in (latched or set()))
        self._timer = None
        if include is not None:
            from rclpy.clock import Clock, ClockType

            self._timer = node.create_timer(DISCOVERY_PERIOD_S, self.discover,
                                            clock=Clock(clock_type=ClockType.STEADY_TIME))

    def subscribe(self, topic: str, msgtype: str, *, latched: bool = False,
                  best_effort: bool = False) -> bool:
        """Subscribe ``topic`` (once); False when its type cannot be imported."""
        if topic in self.subscriptions:
            return True
        try:
            cls = message_class(msgtype)
        except (ImportError, AttributeError, ValueError) as exc:
            self.skipped[topic] = f"type {msgtype} not importable: {exc}"
            return False
        if latched:
            self.sink.latched.add(topic)
        self.types[topic] = msgtype
        fields = list(cls.get_fields_and_field_types().items())
        self._header_first[topic] = bool(fields) and fields[0][1] == "std_msgs/Header"
        self.subscriptions[topic] = self.node.create_subscription(
            cls, topic, lambda raw, t=topic: self._on_raw(t, raw), record_qos(latched, best_effort),
            raw=True)
        return True

    def discover(self) -> None:
        """Subscribe every new topic that ``include`` accepts, with its publishers' QoS."""
        from rclpy.qos import DurabilityPolicy, ReliabilityPolicy

        for topic, types in self.node.get_topic_names_and_types():
            if topic in self.subscriptions or topic in self.skipped or not self.include(topic):
                continue
            infos = self.node.get_publishers_info_by_topic(topic)
            if not infos:
                continue
            latched = all(i.qos_profile.durability == DurabilityPolicy.TRANSIENT_LOCAL for i in infos)
            best_effort = any(i.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT for i in infos)
            self.subscribe(topic, types[0], latched=latched, best_effort=best_effort)

    def _on_raw(self, topic: str, raw: bytes) -> None:
        wall = time.monotonic()
        log_ns = self.clock_ns()
        stamp = cdr_header_stamp_ns(raw) if self._header_first.get(topic) else None
        if stamp is not None and stamp > log_ns:
            log_ns = stamp
        self.sink.put(topic, self.types[topic], raw, log_ns)
        if self.on_message is not None:
            self.on_message(topic, raw, wall)

    def publisher_counts(self) -> dict[str, int]:
        """topic -> matched publishers of each subscription."""
        return {t: s.get_publisher_count() for t, s in self.subscriptions.items()}

    def destroy(self) -> None:
        """Remove the subscriptions and the discovery timer."""
        if self._timer is not None:
            self.node.destroy_timer(self._timer)
        for sub in self.subscriptions.values():
            self.node.destroy_subscription(sub)
        self.subscriptions.clear()


# Topics an episode recording leaves out: ROS plumbing, not data.
EPISODE_EXCLUDED = ("/rosout", "/parameter_events")
# The node an episode recorder creates once it hears every publisher of ``ready_topics``: it
# subscribes to ``ready_signal_topic`` (a bridge output), so a bridge told to wait for it
# (``wait_for_nodes``) holds step 0 until the recording cannot miss the stack's first outputs.
READY_NODE = "tps_episode_recorder_ready"
READY_CHECK_PERIOD_S = 0.1


class EpisodeRecorder:
    """Records every topic of a ROS domain into one MCAP (``tps-eval closedloop --record``): its own
    rclpy context and node on ``domain_id``, subscriptions made up front for ``fixed`` (so the first
    steps are not lost to discovery) and for every other topic as it is discovered; the log time of
    a message is the later of the last ``/clock`` heard and its header stamp.

    Args:
        domain_id: the episode's ROS domain.
        path: the ``.mcap`` file to write (must not exist).
        fixed: topic -> msgtype subscribed before the graph starts.
        latched: those of ``fixed`` that are transient local.
        ready_topics: topics of ``fixed`` whose publishers must be matched before the
            :data:`READY_NODE` appears (empty: it never does).
        ready_signal_topic, ready_signal_type: what the ready node subscribes to.
    """

    def __init__(self, domain_id: int, path: str | Path, fixed: dict[str, str] | None = None,
                 latched: set[str] | None = None, compress: bool = True, *,
                 ready_topics: set[str] | frozenset[str] = frozenset(),
                 ready_signal_topic: str = "/carla/ego_vehicle/odometry",
                 ready_signal_type: str = "nav_msgs/msg/Odometry") -> None:
        import rclpy
        from rclpy.executors import SingleThreadedExecutor

        self._rclpy = rclpy
        self.clock_ns = 0
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(domain_id))
        self.node = rclpy.create_node("tps_episode_recorder", context=self.context,
                                      start_parameter_services=False)
        self.sink = RecordSink(path, compress=compress)
        self.recorder = TopicRecorder(self.node, self.sink, lambda: self.clock_ns, fixed=fixed,
                                      latched=latched, include=lambda t: t not in EPISODE_EXCLUDED,
                                      on_message=self._on_message)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.ready_topics = set(ready_topics) & set(self.recorder.subscriptions)
        self._ready_signal = (ready_signal_topic, ready_signal_type)
        self.ready_node = None
        self._next_ready_check = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="tps-episode-recorder", daemon=True)
        self._thread.start()

    def _on_message(self, topic: str, raw: bytes, wall: float) -> None:
        if topic == "/clock":   # rosgraph_msgs/Clock: a builtin_interfaces/Time first
            t = cdr_header_stamp_ns(raw)
            if t is not None and t > self.clock_ns:
                self.clock_ns = t

    def unmatched(self) -> list[str]:
        """Those of ``ready_topics`` with no publisher matched yet."""
        counts = self.recorder.publisher_counts()
        return sorted(t for t in self.ready_topics if counts.get(t, 0) == 0)

    def _check_ready(self) -> None:
        now = time.monotonic()
        if self.ready_node is not None or not self.ready_topics or now < self._next_ready_check:
            return
        self._next_ready_check = now + READY_CHECK_PERIOD_S
        if self.unmatched():
            return
        from tps_common.qos import RELIABLE_SENSOR_QOS
        from tps_common.readiness import attach_input_match_reporter

        topic, msgtype = self._ready_signal
        self.ready_node = self._rclpy.create_node(READY_NODE, context=self.context,
                                                  start_parameter_services=False)
        self.ready_node.create_subscription(message_class(msgtype), topic, lambda _raw: None,
                                            RELIABLE_SENSOR_QOS, raw=True)
        # a bridge waiting for it also waits for its report (tps_common.readiness)
        attach_input_match_reporter(self.ready_node)
        self.executor.add_node(self.ready_node)

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self._check_ready()
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutdown races end the loop, never the episode
                if self._stop.is_set() or not self.context.ok():
                    return
                raise

    def close(self) -> Path | None:
        """Stop, write what is queued and finish the file; returns its path."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        try:
            self.recorder.destroy()
            self.executor.shutdown(timeout_sec=1.0)
            if self.ready_node is not None:
                self.ready_node.destroy_node()
            self.node.destroy_node()
        finally:
            if self.context.ok():
                self._rclpy.shutdown(context=self.context)
        return self.sink.close()
