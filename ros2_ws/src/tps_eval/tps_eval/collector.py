"""What the evaluation listens to during an episode, over DDS: the selected trajectory's source
per stamp (``/tps/planning/trajectory``), the monitor's state, certainty and reasons per stamp
(``/tps/monitor/status``, when the graph has a monitor) and processing times from
``/diagnostics``.

Runs in the episode's worker process in its own ``rclpy.Context`` on the episode's
``ROS_DOMAIN_ID`` (a fresh context per episode, so Ray workers and pool processes can be reused
across episodes and domains). The recorded data is plain Python (:class:`CollectedData`).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

TOPIC_SELECTED_TRAJECTORY = "/tps/planning/trajectory"
TOPIC_DIAGNOSTICS = "/diagnostics"
TOPIC_MONITOR_STATUS = "/tps/monitor/status"
# Diagnostic KeyValue keys read as per-node processing times [ms].
PROCESSING_TIME_KEYS = ("processing_time_ms",)
STAMP_KEY_DECIMALS = 3   # stamps are matched to steps at 1 ms resolution (dt = 100 ms)


def stamp_key(stamp_s: float) -> int:
    """Integer key [ms] for matching a message stamp to a simulation step."""
    return int(round(float(stamp_s) * 10 ** STAMP_KEY_DECIMALS))


@dataclass
class CollectedData:
    """Plain data gathered during one episode.

    Attributes:
        sources: {stamp key [ms]: PlannedTrajectory.source of the first selected trajectory
            with that stamp}.
        node_latency_ms: {node name: [processing_time_ms, ...]} from /diagnostics.
        diagnostics_errors: "<status name>: <message>" of every ERROR-level status seen (first
            occurrence of each).
        trajectories: number of selected trajectories received.
        monitor: {stamp key [ms]: (MonitorStatus.state, certainty, reasons tuple)} of the first
            MonitorStatus with that stamp (empty: no monitor spoke).
    """

    sources: dict = field(default_factory=dict)
    node_latency_ms: dict = field(default_factory=dict)
    diagnostics_errors: list = field(default_factory=list)
    trajectories: int = 0
    monitor: dict = field(default_factory=dict)


class Collector:
    """Subscribes on ``domain_id`` until :meth:`close`; thread-safe snapshot via :meth:`data`."""

    def __init__(self, domain_id: int, node_name: str = "tps_eval_collector") -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
        from tps_common.readiness import attach_input_match_reporter
        from tps_msgs.msg import MonitorStatus, PlannedTrajectory

        self._rclpy = rclpy
        self._lock = threading.Lock()
        self._data = CollectedData()
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=int(domain_id))
        self.node = rclpy.create_node(node_name, context=self.context)
        qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
        # The arbiter keeps its selected trajectories for late joiners (transient local): a fast
        # synchronous episode can be seconds old before discovery with this recorder completes.
        latched = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.node.create_subscription(PlannedTrajectory, TOPIC_SELECTED_TRAJECTORY,
                                      self._on_trajectory, latched)
        self.node.create_subscription(DiagnosticArray, TOPIC_DIAGNOSTICS, self._on_diagnostics,
                                      qos)
        # The monitor publishes volatile (TRAJECTORY_QOS); a volatile subscription also matches a
        # transient-local publisher (a transient-local one would not match a volatile publisher,
        # and the publisher logs a QoS warning for it). Subscribed before the graph starts.
        self.node.create_subscription(MonitorStatus, TOPIC_MONITOR_STATUS, self._on_monitor, qos)
        # Its readers' matches reported like a stack node's: the synchronous bridge holds step 0
        # until they matched (a late-matched reader missed the first monitor statuses).
        attach_input_match_reporter(self.node)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="tps-eval-collector", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.05)
            except Exception:  # noqa: BLE001 - shutdown races end the loop, never the episode
                if self._stop.is_set() or not self.context.ok():
                    break
                raise

    def _on_trajectory(self, msg) -> None:
        key = stamp_key(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        with self._lock:
            self._data.trajectories += 1
            self._data.sources.setdefault(key, int(msg.source))

    def _on_monitor(self, msg) -> None:
        key = stamp_key(msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9)
        with self._lock:
            self._data.monitor.setdefault(key, (int(msg.state), float(msg.certainty),
                                                tuple(str(r) for r in msg.reasons)))

    def _on_diagnostics(self, msg) -> None:
        with self._lock:
            for st in msg.status:
                node = st.name.split(":", 1)[0].strip() or "?"
                for kv in st.values:
                    if kv.key in PROCESSING_TIME_KEYS:
                        try:
                            v = float(kv.value)
                        except ValueError:
                            continue
                        self._data.node_latency_ms.setdefault(node, []).append(v)
                if st.level == 2:  # ERROR
                    text = f"{st.name}: {st.message}"
                    if text not in self._data.diagnostics_errors:
                        self._data.diagnostics_errors.append(text)

    def data(self) -> CollectedData:
        """A copy of what was collected so far."""
        with self._lock:
            d = self._data
            return CollectedData(dict(d.sources),
                                 {k: list(v) for k, v in d.node_latency_ms.items()},
                                 list(d.diagnostics_errors), d.trajectories, dict(d.monitor))

    def close(self) -> None:
        """Stop spinning and shut the context down."""
        self._stop.set()
        self._thread.join(timeout=5.0)
        try:
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            if self.context.ok():
                self._rclpy.shutdown(context=self.context)


def monitor_samples(collected: CollectedData | None, stamps_s, t_s) -> list[tuple]:
    """The monitor statuses heard, as (episode time [s], state, certainty, reasons) sorted by
    time, for :func:`tps_eval.metrics.monitor_summary`. A status's stamp is matched to the step
    with that stamp (``stamps_s`` / ``t_s``: the episode log's columns; they differ under a
    clock-jump fault); a stamp of no step keeps its own value as the time."""
    if collected is None or not collected.monitor:
        return []
    to_t = {stamp_key(s): float(t) for s, t in zip(stamps_s, t_s, strict=True)}
    out = [(to_t.get(key, key / 10 ** STAMP_KEY_DECIMALS), int(st), float(c), tuple(r))
           for key, (st, c, r) in collected.monitor.items()]
    return sorted(out, key=lambda x: x[0])
