"""Play a bag into the real node graph on sim time and record what it answers (rclpy).

:func:`run_replay` is the whole run (``tps-replay`` is a thin CLI over it):

1. the graph (``config.graph`` restricted to ``config.nodes``, ``use_sim_time: true``) is started
   by ``tps_bringup`` on its own ROS domain; this process creates one publisher per played topic
   (the bag's own CDR bytes, QoS: latched topics transient local, ``/tf``/``/tf_static`` as tf2,
   everything else reliable), ``/clock``, and raw subscriptions recording the node table's
   outputs, ``/tf``, ``/tf_static``, ``/diagnostics`` and every other ``/tps/...`` topic
   (:mod:`tps_eval.replay.recorder`);
2. once every node is up and every played topic the graph reads has matched its readers, the
   preamble (latched map knowledge, route) and the merged ``/tf_static`` are published;
3. frames (:class:`tps_eval.replay.bagio.Frame`): ``/clock`` = the frame's time, then its
   messages in bag order.

   * **lockstep**: after each frame, wait until every node of the table triggered by it (the lidar,
     or a camera image in the frame) has published its output with that stamp, at most
     ``lockstep.timeout_s`` of wall time (then it counts as dropped; a node silent
     ``give_up_after`` frames in a row is no longer waited for). The graph sees the same inputs in
     the same order whatever the machine's speed: deterministic outputs.
   * **realtime**: messages go out at their bag times scaled by ``rate`` (1 = real time), the graph
     keeps up or drops, as on a vehicle. The schedule starts with frame 0 (after the preamble and
     its settling pause: anchored at the preamble, the first ``PREAMBLE_SETTLE_S`` of frames went
     out at once, 4 lidar frames in a few ms, and the graph's depth-1 sensor queues kept only the
     last); how late each lidar frame went out against it is reported (``run.lidar_publish_lag_ms``).

4. after a drain, the graph is stopped and the result bag closed; the timing (when each trigger was
   published, when each output with its stamp arrived) goes to the analysis.

Latency of a node = wall time from publishing the input that triggered it (lidar or camera
message) to receiving that node's output with the same stamp: the pipeline up to that node.
"""

from __future__ import annotations

import fcntl
import os
import random
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tps_common.readiness import INPUT_MATCHES_TOPIC, parse_output_report, parse_report

from tps_eval.replay.bagio import TF, TF_STATIC, Frame, InputBag
from tps_eval.replay.config import (
    NodeOutput,
    ReplayConfig,
    ResolvedOutput,
    graph_topics,
    load_node_table,
    load_replay_graph,
    resolve_outputs,
)

MODES = ("lockstep", "realtime")
RESULT_BAG = "result.mcap"
GRAPH_LOG = "graph.log"
STARTUP_TIMEOUT_S = 120.0
# Once every node is up, how long its outputs' publishers and its readers of the played topics
# may take to match (a node creates its publishers after loading its models).
OUTPUT_MATCH_TIMEOUT_S = 30.0
MATCH_SETTLE_S = 0.5        # after discovery, before the first message (reader-side matching)
# Reader-side matching, as the graph's nodes report it (tps_common.readiness): how long to wait for
# every reader of a played topic to have matched the player's publisher, after the writers matched.
READER_MATCH_TIMEOUT_S = 15.0
PREAMBLE_SETTLE_S = 0.3     # latched topics reach every node before frame 0
DRAIN_S = 2.0               # realtime: outputs of the last frames
# Claimed domains when ROS_DOMAIN_ID is unset (lock files shared with the test sessions').
DOMAIN_CANDIDATES = tuple(range(20, 60))
DOMAIN_LOCK_DIR = Path(tempfile.gettempdir()) / "tps-ros-domains"
STAMP_KEY_NS = 1_000_000    # outputs are matched to their input by stamp at 1 ms resolution
# Topics recorded besides the table's outputs.
RECORDED_ALWAYS = {TF: "tf2_msgs/msg/TFMessage", TF_STATIC: "tf2_msgs/msg/TFMessage",
                   "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}


class ReplayError(RuntimeError):
    """The replay could not run (graph did not start, no frame played)."""


@dataclass(frozen=True)
class ReplayOptions:
    """How to run (see the CLI for the meaning of each)."""

    out_dir: Path
    mode: str = "lockstep"
    rate: float = 1.0
    domain_id: int | None = None
    foxglove_port: int | None = None
    with_inputs: bool = False
    compress: bool = False
    startup_timeout_s: float = STARTUP_TIMEOUT_S
    drain_s: float = DRAIN_S
    progress: bool = True
    max_frames: int | None = None
    plots: bool = True
    resources: bool = True      # sample CPU % and RSS of each node while playing (report "resources")


@dataclass
class PlayTiming:
    """Wall-clock facts of a run, keyed by stamp (ms keys, :func:`stamp_key`)."""

    trigger_published: dict = field(default_factory=lambda: {"lidar": {}, "camera": {}})
    arrivals: dict = field(default_factory=dict)          # topic -> {key: first arrival wall [s]}
    duplicates: dict = field(default_factory=dict)        # topic -> outputs with a stamp seen before
    frames: list = field(default_factory=list)            # (index, clock_ns, stamp_ns)
    gave_up: dict = field(default_factory=dict)           # node -> frame index
    waits_timed_out: int = 0
    publish_lag_s: list = field(default_factory=list)     # realtime: lidar frame published - its schedule
    wall_s: float = 0.0
    startup_s: float = 0.0


def stamp_key(stamp_ns: int) -> int:
    """The key an input and the outputs answering it share (ms resolution)."""
    return int(round(int(stamp_ns) / STAMP_KEY_NS))


def lookup_key(table: dict, key: int):
    """``table[key]``, or a neighbour key's value (stamps through float seconds may round across a
    millisecond boundary)."""
    for k in (key, key - 1, key + 1):
        if k in table:
            return table[k]
    return None


def claim_domain() -> tuple[int, object | None]:
    """``ROS_DOMAIN_ID`` when set, else a domain claimed with a lock file (returns the handle to
    keep the claim)."""
    env = os.environ.get("ROS_DOMAIN_ID")
    if env:
        return int(env), None
    DOMAIN_LOCK_DIR.mkdir(exist_ok=True)
    order = list(DOMAIN_CANDIDATES)
    random.Random(os.getpid()).shuffle(order)
    for domain in order:
        handle = open(DOMAIN_LOCK_DIR / f"{domain}.lock", "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return domain, handle
        except OSError:
            handle.close()
    raise ReplayError(f"every ROS domain in {DOMAIN_CANDIDATES[0]}..{DOMAIN_CANDIDATES[-1]} is in use; "
                      "set ROS_DOMAIN_ID")


def _publisher_qos(topic: str, latched: bool):
    from tps_common import qos
    from tps_common.tf import tf_qos, tf_static_broadcast_qos

    if topic == TF_STATIC:
        return tf_static_broadcast_qos()
    if topic == TF:
        return tf_qos()
    if latched:
        return qos.LATCHED_QOS
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy

    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)


class _Session:
    """The rclpy side of one run: node, publishers, recorder, executor thread."""

    def __init__(self, domain: int, bag: InputBag, outputs: list[ResolvedOutput], sink, live) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rosgraph_msgs.msg import Clock
        from tps_common.qos import CLOCK_QOS, INPUT_MATCHES_READER_QOS

        from tps_eval.replay.recorder import TopicRecorder, message_class

        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain)
        self.node = rclpy.create_node("tps_replay", context=self.context, start_parameter_services=False)
        self.clock_ns = 0
        self.live = live
        self.pub_clock = self.node.create_publisher(Clock, "/clock", CLOCK_QOS)
        self._clock_cls = Clock
        self.publishers = {}
        self.unplayable: dict[str, str] = {}
        for topic, (msgtype, latched) in bag.topics.items():
            try:
                cls = message_class(msgtype)
            except (ImportError, AttributeError) as exc:
                self.unplayable[topic] = f"type {msgtype} not importable here: {exc}"
                continue
            self.publishers[topic] = self.node.create_publisher(cls, topic, _publisher_qos(topic, latched))
        self.outputs = outputs
        self.timing = PlayTiming()
        self._cond = threading.Condition()
        self._output_topics = {o.topic for o in outputs if o.trigger != "none"}
        fixed = dict(RECORDED_ALWAYS)
        fixed.update({o.topic: o.type for o in outputs})
        played = set(bag.topics)
        self.recorder = TopicRecorder(
            self.node, sink, lambda: self.clock_ns, fixed=fixed, latched={TF_STATIC},
            include=lambda t: t.startswith("/tps/") and t not in played and t != INPUT_MATCHES_TOPIC,
            on_message=self._on_message)
        # what the graph's nodes say their readers have matched (latched: every node's newest)
        self.input_matches: dict[str, dict[str, int]] = {}
        self.output_matches: dict[str, dict[str, int]] = {}     # the writer half, per node
        self.node.create_subscription(DiagnosticArray, INPUT_MATCHES_TOPIC, self._on_input_matches,
                                      INPUT_MATCHES_READER_QOS)
        self.executor = SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, name="tps-replay-spin", daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        while not self._stop.is_set() and self.context.ok():
            try:
                self.executor.spin_once(timeout_sec=0.02)
            except Exception:  # noqa: BLE001 - shutdown races end the loop
                if self._stop.is_set() or not self.context.ok():
                    return
                raise

    def _on_input_matches(self, msg) -> None:
        with self._cond:
            self.input_matches.update(parse_report(msg))
            self.output_matches.update(parse_output_report(msg))

    def _on_message(self, topic: str, raw: bytes, wall: float) -> None:
        if topic not in self._output_topics:
            return
        from tps_eval.replay.recorder import cdr_header_stamp_ns

        stamp = cdr_header_stamp_ns(raw)
        if stamp is None:
            return
        key = stamp_key(stamp)
        with self._cond:
            arrivals = self.timing.arrivals.setdefault(topic, {})
            if key in arrivals:
                self.timing.duplicates[topic] = self.timing.duplicates.get(topic, 0) + 1
            else:
                arrivals[key] = wall
            self._cond.notify_all()

    # -- publishing -------------------------------------------------------------------------------
    def publish_clock(self, t_ns: int) -> None:
        if t_ns <= self.clock_ns and self.clock_ns:
            return
        self.clock_ns = int(t_ns)
        msg = self._clock_cls()
        msg.clock.sec, msg.clock.nanosec = int(t_ns // 1_000_000_000), int(t_ns % 1_000_000_000)
        self.pub_clock.publish(msg)
        if self.live is not None:
            self.live.time(self.clock_ns)

    def publish(self, topic: str, raw: bytes, msgtype: str, log_ns: int) -> float | None:
        """Publish raw CDR; returns the wall time it went out (None when the type is unplayable)."""
        pub = self.publishers.get(topic)
        if pub is None:
            return None
        pub.publish(raw)
        if self.live is not None:
            self.live.log(topic, msgtype, raw, log_ns)
        return time.monotonic()

    # -- waiting ----------------------------------------------------------------------------------
    def wait_matched(self, consumers: dict[str, int], sim_time_nodes: int, deadline: float) -> list[str]:
        """Wait until every played topic the graph reads has matched its readers and every
        per-frame output has a matched publisher; returns what is still missing at the deadline."""
        while True:
            missing = []
            for topic, n in consumers.items():
                pub = self.publishers.get(topic)
                if pub is not None and pub.get_subscription_count() < n:
                    missing.append(f"{topic} ({pub.get_subscription_count()}/{n} readers)")
            if self.pub_clock.get_subscription_count() < sim_time_nodes:
                missing.append(f"/clock ({self.pub_clock.get_subscription_count()}/{sim_time_nodes} readers)")
            counts = self.recorder.publisher_counts()
            missing += [f"{t} (no publisher)" for t in self._output_topics if counts.get(t, 0) < 1]
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.05)

    def wait_readers_matched(self, consumers: dict[str, int], sim_time_nodes: int,
                             deadline: float) -> list[str]:
        """Wait until, by the nodes' own reports (tps_common.readiness), every played topic has
        ``n`` readers that matched the player's publisher, and ``/clock`` ``sim_time_nodes``: the
        writers matching them (:meth:`wait_matched`) is half of DDS discovery, and a reader that
        has not matched yet loses the first frame. Returns what is still missing at the deadline."""
        return self._poll_reports({**consumers, "/clock": sim_time_nodes}, deadline, writers_too=False)

    def wait_graph_matched(self, internal: dict[str, int], deadline: float) -> list[str]:
        """Wait until every topic one graph node publishes and ``n`` others read is matched in both
        halves, by the nodes' own reports: ``n`` readers have matched a publisher, and a writer has
        matched ``n`` readers (plus this recorder's, where it records the topic). A node's first
        output can be lost otherwise: CI saw the arbiter miss frame 0 of a lockstep replay (the
        fallback's first trajectory never reached it), one frame "dropped". Returns what is still
        missing at the deadline."""
        return self._poll_reports(internal, deadline, writers_too=True)

    def _poll_reports(self, wanted: dict[str, int], deadline: float, writers_too: bool) -> list[str]:
        while True:
            with self._cond:
                readers = list(self.input_matches.values())
                writers = list(self.output_matches.values())
            missing = []
            for topic, n in wanted.items():
                have = sum(1 for counts in readers if counts.get(topic, 0) >= 1)
                if have < n:
                    missing.append(f"{topic} ({have}/{n} readers matched)")
                if writers_too:
                    want = n + (1 if topic in self.recorder.subscriptions else 0)
                    best = max((counts.get(topic, 0) for counts in writers), default=0)
                    if best < want:
                        missing.append(f"{topic} (its writer matched {best}/{want} readers)")
            if not missing or time.monotonic() > deadline:
                return missing
            time.sleep(0.02)

    def unpublished_outputs(self) -> set[str]:
        """Per-frame output topics with no matched publisher."""
        counts = self.recorder.publisher_counts()
        return {t for t in self._output_topics if counts.get(t, 0) < 1}

    def forget_outputs(self, topics: set[str]) -> None:
        """Stop treating ``topics`` as per-frame outputs (they stay recorded if they appear)."""
        with self._cond:
            self._output_topics -= set(topics)
            self.outputs = [o for o in self.outputs if o.topic not in topics]

    def wait_outputs(self, expected: list[tuple[str, int]], timeout_s: float) -> set[tuple[str, int]]:
        """Wait until every (topic, key) arrived; returns the ones still missing."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                missing = {(t, k) for t, k in expected
                           if lookup_key(self.timing.arrivals.get(t, {}), k) is None}
                remaining = deadline - time.monotonic()
                if not missing or remaining <= 0:
                    return missing
                self._cond.wait(min(remaining, 0.05))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        try:
            self.recorder.destroy()
            self.executor.shutdown(timeout_sec=1.0)
            self.node.destroy_node()
        finally:
            if self.context.ok():
                self.rclpy.shutdown(context=self.context)


def _expected(frame: Frame, outputs: list[ResolvedOutput], camera_topic: str,
              skip_nodes: set[str]) -> list[tuple[ResolvedOutput, int]]:
    """(output, stamp key) the graph owes for ``frame``."""
    camera_keys = [stamp_key(m.stamp_ns) for m in frame.messages
                   if m.topic == camera_topic and m.stamp_ns is not None]
    out = []
    for o in outputs:
        if o.node in skip_nodes:
            continue
        if o.trigger == "lidar":
            out.append((o, stamp_key(frame.stamp_ns)))
        elif o.trigger == "camera":
            out += [(o, k) for k in camera_keys]
    return out


def run_replay(bag_path: str | os.PathLike, config: ReplayConfig, options: ReplayOptions,
               table: tuple[NodeOutput, ...] | None = None, log=print) -> dict:
    """Replay ``bag_path`` (see the module docstring) and write ``result.mcap``, ``graph.log`` and
    the report into ``options.out_dir``.

    Returns:
        The report dict (also ``report.json``); see :mod:`tps_eval.replay.report`.

    Raises:
        ReplayError: the graph did not come up, or the bag has no playable lidar frame.
        tps_eval.replay.bagio.BagError / ReplayConfigError: unusable bag or configuration.
    """
    from tps_bringup.runner import GraphProcess, use_project_dds_profile

    from tps_eval.replay import analysis, report
    from tps_eval.replay.recorder import RecordSink

    if options.mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {options.mode!r}")
    if not options.rate > 0:
        raise ValueError(f"rate must be > 0, got {options.rate}")
    t_start = time.monotonic()
    out = Path(options.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result_path = out / RESULT_BAG
    if result_path.exists():
        result_path.unlink()
    graph, skipped_overrides = load_replay_graph(config)
    remaps, consumers, graph_outputs = graph_topics(graph)
    outputs, absent = resolve_outputs(table if table is not None else load_node_table(), remaps,
                                      {n.name: n.namespace for n in graph.nodes})
    exclude = graph_outputs | {o.topic for o in outputs}
    facts = analysis.BagFacts(config.inputs)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    use_project_dds_profile(graph.root)   # a no-op if this process already has a participant
    domain, domain_lock = (options.domain_id, None) if options.domain_id is not None else claim_domain()
    live = None
    if options.foxglove_port is not None:
        from tps_eval.replay.live import FoxgloveLive

        live = FoxgloveLive(port=options.foxglove_port)
        log(f"tps-replay: Foxglove WebSocket server at {live.url} (layout config/foxglove/tps_replay.json)")
    sink = RecordSink(result_path, compress=options.compress)
    if live is not None:
        sink.listeners.append(live.log)
    session = gp = sampler = None
    bag = InputBag(bag_path, config, exclude=exclude)
    notes: list[str] = []
    try:
        with bag:
            facts.keep_logged(bag, outputs)
            session = _Session(domain, bag, outputs, sink, live)
            env = {"ROS_DOMAIN_ID": str(domain),
                   "ROS_AUTOMATIC_DISCOVERY_RANGE": os.environ["ROS_AUTOMATIC_DISCOVERY_RANGE"]}
            graph_log = open(out / GRAPH_LOG, "w")
            gp = GraphProcess(graph, env=env, output=graph_log, colour=False)
            gp.start()
            deadline = time.monotonic() + options.startup_timeout_s
            if not gp.wait_until_up(timeout_s=options.startup_timeout_s):
                raise ReplayError(f"graph '{graph.name}' did not come up within {options.startup_timeout_s:.0f} s "
                                  f"({gp.failure or 'see ' + str(out / GRAPH_LOG)})")
            played_consumed = {t: n for t, n in consumers.items() if t in session.publishers}
            missing = session.wait_matched(played_consumed, len(graph.nodes),
                                           min(deadline, time.monotonic() + OUTPUT_MATCH_TIMEOUT_S))
            silent = session.unpublished_outputs()
            if silent:
                # An output its node does not publish in this configuration (e.g. the tokens with
                # tokenizer_enabled false): not waited for, not measured, said so.
                outputs = [o for o in outputs if o.topic not in silent]
                session.forget_outputs(silent)
                absent = [*absent, *(f"{t} (no publisher)" for t in sorted(silent))]
                missing = [m for m in missing if not m.endswith("(no publisher)")]
                notes.append(f"outputs without a publisher, not measured: {', '.join(sorted(silent))}")
                log(f"tps-replay: {notes[-1]}")
            if missing:
                notes.append(f"not matched before the first frame: {', '.join(missing)}")
                log(f"tps-replay: warning: {notes[-1]}")
            unmatched = session.wait_readers_matched(played_consumed, len(graph.nodes),
                                                     time.monotonic() + READER_MATCH_TIMEOUT_S)
            if unmatched:
                # a node that does not report (not started through tps_common.node.run_node) or
                # a reader that never matched: its first messages may be lost, said so
                notes.append(f"readers not confirmed matched before the first frame: {', '.join(unmatched)}")
                log(f"tps-replay: warning: {notes[-1]}")
            internal = {t: n for t, n in consumers.items() if t in graph_outputs and t not in session.publishers}
            unmatched = session.wait_graph_matched(internal, time.monotonic() + READER_MATCH_TIMEOUT_S)
            if unmatched:
                notes.append(f"node-to-node topics not confirmed matched before the first frame: "
                             f"{', '.join(unmatched)}")
                log(f"tps-replay: warning: {notes[-1]}")
            time.sleep(MATCH_SETTLE_S)
            session.timing.startup_s = time.monotonic() - t_start
            if options.resources:
                from tps_eval.replay.resources import ResourceSampler

                sampler = ResourceSampler(gp.pids).start()
            try:
                _play(bag, session, config, options, outputs, facts, log)
            finally:
                if sampler is not None:
                    sampler.stop()
            facts.set_static(bag.static_transforms())
            _add_configured_statics(facts, config)
            if gp.poll() is not None:
                notes.append(f"the graph ended during the replay: {gp.failure or 'exit ' + str(gp.poll())}")
    finally:
        if gp is not None and gp.running:
            gp.stop()
        if session is not None:
            session.close()
        sink.close()
        if live is not None:
            live.close()
        if domain_lock is not None:
            domain_lock.close()
    timing = session.timing
    timing.wall_s = time.monotonic() - t_start
    if not timing.frames:
        raise ReplayError(f"no lidar frame of {bag_path} was played (topic {config.inputs.get('lidar')})")
    notes += [f"override skipped (node not in the replayed graph): {s}" for s in skipped_overrides]
    notes += [f"{t}: not played ({why})" for t, why in session.unplayable.items()]
    if sink.error:
        notes.append(f"recording problem: {sink.error}")
    result, series = analysis.analyse(result_path, facts, timing, outputs, absent, bag.stats,
                                      undecodable=dict(sink.writer.undecodable))
    result["run"] = {"bag": str(bag_path), "mode": options.mode, "rate": options.rate,
                     "graph": str(config.graph_path()), "nodes": [n.name for n in graph.nodes],
                     "config": config.source or None, "domain_id": domain, "wall_s": round(timing.wall_s, 2),
                     "startup_s": round(timing.startup_s, 2), "host_cpus": os.cpu_count(),
                     "lidar_publish_lag_ms": (analysis.percentiles([1e3 * s for s in timing.publish_lag_s])
                                              if options.mode == "realtime" else None),
                     "load_avg": list(os.getloadavg()), "notes": notes}
    result["resources"] = sampler.summary() if sampler is not None else None
    report.write(result, out, series, facts, plots=options.plots)
    return result


def _add_configured_statics(facts, config: ReplayConfig) -> None:
    from tps_common.frames import RigidTransform

    facts.static_edges += [(st.parent, st.child, RigidTransform.from_xyz_rpy(st.xyz_rpy[:3], st.xyz_rpy[3:]))
                           for st in config.static_transforms]


def _play(bag: InputBag, session: _Session, config: ReplayConfig, options: ReplayOptions,
          outputs: list[ResolvedOutput], facts, log) -> None:
    from tqdm import tqdm

    timing = session.timing
    lidar, camera = config.inputs.get("lidar", ""), config.inputs.get("camera", "")
    per_frame_nodes = {o.node for o in outputs if o.trigger != "none"}
    misses = dict.fromkeys(per_frame_nodes, 0)
    skip: set[str] = set()
    wall0 = bag_t0 = None
    bar = tqdm(desc=f"replay {options.mode}", unit="frame", disable=not options.progress, leave=False)

    def send(m) -> None:
        nonlocal wall0, bag_t0
        target = None
        if options.mode == "realtime":
            if wall0 is None:
                wall0, bag_t0 = time.monotonic(), m.bag_ns
            target = wall0 + (m.bag_ns - bag_t0) / 1e9 / options.rate
            delay = target - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            session.publish_clock(m.bag_ns if config.time.clock == "bag" or m.stamp_ns is None
                                  else max(m.stamp_ns, session.clock_ns))
        facts.add(m)
        if options.with_inputs:
            session.recorder.sink.put(m.topic, m.msgtype, m.raw, m.bag_ns)
        wall = session.publish(m.topic, m.raw, m.msgtype, m.bag_ns)
        if wall is not None and m.stamp_ns is not None and m.topic in (lidar, camera):
            role = "lidar" if m.topic == lidar else "camera"
            timing.trigger_published[role].setdefault(stamp_key(m.stamp_ns), wall)
            if role == "lidar" and target is not None:
                timing.publish_lag_s.append(wall - target)

    try:
        for prefix, frame in bag.frames():
            if bag.tf_static_changed:
                raw = bag.tf_static_raw()
                if raw is not None and TF_STATIC in session.publishers:
                    session.publish(TF_STATIC, raw, "tf2_msgs/msg/TFMessage", 0)
                bag.tf_static_changed = False
            if prefix:
                for m in prefix:
                    send(m)
                if not timing.frames:
                    time.sleep(PREAMBLE_SETTLE_S)
                    wall0 = None        # real time starts with frame 0 (module docstring)
            if frame is None:
                continue
            if options.max_frames is not None and len(timing.frames) >= options.max_frames:
                break
            if options.mode == "lockstep":
                session.publish_clock(frame.clock_ns)
            for m in frame.messages:
                send(m)
            timing.frames.append((frame.index, frame.clock_ns, frame.stamp_ns))
            bar.update(1)
            if options.mode != "lockstep":
                continue
            expected = _expected(frame, outputs, camera, skip)
            missing = session.wait_outputs([(o.topic, k) for o, k in expected], config.lockstep.timeout_s)
            if missing:
                timing.waits_timed_out += 1
            late_nodes = {o.node for o, k in expected if (o.topic, k) in missing}
            for node in per_frame_nodes:
                if node in late_nodes:
                    misses[node] += 1
                    if misses[node] >= config.lockstep.give_up_after and node not in skip:
                        skip.add(node)
                        timing.gave_up[node] = frame.index
                        log(f"tps-replay: node '{node}' silent for {misses[node]} frames: no longer waited for")
                elif node not in skip:
                    misses[node] = 0
            # a node that was given up and answers again is waited for again
            for node in list(skip):
                if any(lookup_key(timing.arrivals.get(o.topic, {}), stamp_key(frame.stamp_ns)) is not None
                       for o in outputs if o.node == node and o.trigger == "lidar"):
                    skip.discard(node)
                    misses[node] = 0
        if options.mode == "realtime":
            time.sleep(options.drain_s)
        else:
            time.sleep(0.2)
    finally:
        bar.close()
