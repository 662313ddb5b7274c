"""monitor_node: the spatial-certainty confidence monitor (issue 15) around
:class:`tps_planner.monitor.ConfidenceMonitor`.

Inputs (remappable): ``~/input/candidate_trajectory`` (tps_msgs/PlannedTrajectory, map: the
planner's candidate, the trigger), ``~/input/forecasts`` (tps_msgs/Forecasts, base_link),
``~/input/tokens`` (tps_msgs/AgentTokens, base_link), ``~/input/points`` (sensor_msgs/PointCloud2,
lidar frame), ``~/input/odometry`` (nav_msgs/Odometry, map), ``~/input/lane_map`` (tps_msgs/LaneMap,
transient local), ``~/input/route`` (nav_msgs/Path, transient local: the drivable area while no
lane map is known), ``~/input/traffic_lights`` (tps_msgs/TrafficLightStates of the classical
reader), ``~/input/scene`` (tps_msgs/SceneUnderstanding; only reported as ``scene_class``: the
core has no input for it), ``~/input/image`` (sensor_msgs/Image,
front camera), ``/diagnostics`` (the planner's ``<planner>: rationale`` and ``<planner>:
planning`` statuses of each frame; ERROR statuses of other nodes for node health, except the ones
that only flag an injected fault), ``/tf_static`` and ``/tf`` (the lidar extrinsic), ``~/reset``
(std_msgs/Empty: releases a latched MINIMAL_RISK; std_srvs is not installed here, so a topic
stands in for the Trigger service).

Outputs: ``~/output/status`` (tps_msgs/MonitorStatus, stamp = the cycle's stamp), ``/diagnostics``:
``<node>: status`` (OK in NOMINAL, WARN in DEGRADED, ERROR in FALLBACK/MINIMAL_RISK; the signals
as values, the reasons as message), ``<node>: processing_time``, ``<node>: <input>`` ERROR naming an
input that was unusable for a cycle (treated as missing: the core turns it into risk),
``<node>: calibration`` (WARN "uncalibrated: defaults" when the file is missing, ERROR naming a
corrupt file; republished every few seconds of wall time while so). With ``record_path`` set one
JSON line per cycle is appended there (the conformal calibration's closed-loop data).

Cycles: one ``ConfidenceMonitor.update`` per candidate trajectory of stamp k, with the inputs of
stamp k (per-input buffers keyed by stamp). A cycle waits, at most ``input_wait_s`` of wall time,
for the ego pose, the lidar frame and the agent tokens of its stamp (even before the first of them
arrived: at start-up the candidate can overtake them), for the forecasts and the planner's
diagnostics of a candidate's stamp (from the first candidate on with ``expect_planner_streams``,
else once those streams have been seen), and for the light reading once that stream has been seen. When the lidar frame or the
tokens of stamp k are missing or unusable, the newest usable ones within ``lidar_timeout_s`` /
``perception_timeout_s`` stand in (their age goes to the core): one bad frame is not a dead
sensor. When a lidar frame k arrives while the newest candidate is older than
``planner_timeout_s`` (sim time), a cycle runs with no candidate: a silent or crashed planner
still gets a status, so the arbiter falls back (the cycle is dropped if a candidate within the
timeout arrives while it waits). A candidate that arrives after a newer cycle ran is not judged
(``<node>: late_input`` WARN): the core's dwell timers never go back in time. Bad input never
stops the node.

Process crash injection (``fault_crash_at_s`` >= 0, off by default; the process-fault tests): the
process dies with ``os._exit(EXIT_INJECTED_CRASH)`` (70, no cleanup) when the first lidar frame or
odometry stamped at or after that sim time arrives (tps_common.node.crash_if_due), like
planner_node; a process respawned by tps-bringup does not arm it (tps_common.node.injected_crash_time).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.clock import Clock as WallClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Empty
from tps_common import diagnostics as diag
from tps_common.conversions import seconds_to_time, time_to_seconds
from tps_common.frames import parse_static_transform
from tps_common.node import crash_if_due, injected_crash_time, load_params, run_node
from tps_common.qos import DIAGNOSTICS_QOS, LATCHED_QOS, STACK_OUTPUT_QOS, TRAJECTORY_QOS, sensor_qos
from tps_common.stamp_sync import STAMP_EPSILON_S, PoseHistory, invalid_pose_reason
from tps_common.tf import ExtrinsicSource
from tps_msgs.msg import (
    AgentTokens,
    Forecasts,
    LaneMap,
    MonitorStatus,
    PlannedTrajectory,
    SceneUnderstanding,
    TrafficLightStates,
)

from tps_planner import conversions as conv
from tps_planner import monitor_io as io
from tps_planner.fallback import FallbackParams, FallbackPlanner
from tps_planner.lane_map import LaneMap as CoreLaneMap
from tps_planner.lane_map import MapLane, MapMask, attention_mask
from tps_planner.monitor import ConfidenceMonitor, HealthSnapshot, MonitorInputs, MonitorParams, MonitorResult
from tps_planner.trajectory import (
    STATE_DEGRADED,
    STATE_FALLBACK,
    STATE_MINIMAL_RISK,
    STATE_NAMES,
    STATE_NOMINAL,
)

NODE_NAME = "monitor"
ODOM_HISTORY = 100            # poses kept for stamp lookup (10 s at 10 Hz)
BUFFER = 20                   # messages kept per stamped input stream
RELEASE_POLL_S = 0.01         # wall period of the check on cycles waiting for their inputs
CALIBRATION_REPEAT_S = 2.0    # wall period of the calibration WARN/ERROR while it stands
MAX_PENDING = 50              # cycles waiting at most (older ones run first)
LATE_WINDOW_S = 2.0           # a cycle up to this much older than the last one run is late (skipped);
                              # further back, time went back (a new episode or a replay restarted)
DIAG_SUB_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
_LEVEL_OF_STATE = {STATE_NOMINAL: diag.OK, STATE_DEGRADED: diag.WARN}


def resolve_path(path: str) -> Path:
    """A file parameter as a path: absolute as given, relative to the repository root otherwise."""
    from tps_inference.manifest import repo_root

    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_root() / p


class _Series:
    """One input stream's recent messages by stamp (stream order = stamp order): the message *of*
    stamp k (:meth:`at`), the newest at or before k (:meth:`latest`: a camera that runs every n-th
    step, the light reader of that camera). A second message of the same stamp replaces the first;
    a stamp before the newest means time went back (a new episode): the later entries are dropped.
    (tps_common.stamp_sync.StampBuffer pairs by nearest stamp only; the monitor needs both.)"""

    def __init__(self, capacity: int = BUFFER) -> None:
        self.capacity = capacity
        self.items: list[tuple[float, object]] = []

    def put(self, stamp_s: float, value) -> None:
        for i, (s, _) in enumerate(self.items):
            if abs(s - stamp_s) <= STAMP_EPSILON_S:
                self.items[i] = (s, value)
                return
        if self.items and stamp_s < self.items[-1][0]:
            self.items = [it for it in self.items if it[0] < stamp_s]
        self.items.append((stamp_s, value))
        del self.items[: -self.capacity]

    def at(self, stamp_s: float):
        """The value of exactly this stamp (within the stamp epsilon), else None."""
        for s, v in reversed(self.items):
            if abs(s - stamp_s) <= STAMP_EPSILON_S:
                return v
        return None

    def latest(self, stamp_s: float) -> tuple[float, object] | None:
        """(stamp, value) of the newest entry at or before ``stamp_s``, else None."""
        for it in reversed(self.items):
            if it[0] <= stamp_s + STAMP_EPSILON_S:
                return it
        return None

    @property
    def newest_s(self) -> float | None:
        return self.items[-1][0] if self.items else None


@dataclass
class _Pending:
    """A cycle waiting for the inputs of its stamp."""

    stamp_s: float
    candidate: PlannedTrajectory | None
    since: float                 # time.monotonic() when it started waiting
    # what opened it: "candidate", "watchdog" (the planner silent too long), "perception" (agent
    # tokens with a failure status: the planner has nothing to plan this stamp from)
    cause: str = "candidate"


def route_mask(route_xy: np.ndarray, width_m: float) -> MapMask:
    """The drivable area while no lane map is known: one lane ``width_m`` wide along the route."""
    lane = MapLane("route", np.asarray(route_xy, np.float64), float(width_m), 0.0, False, False, "", "",
                   False, False, ())
    return MapMask(CoreLaneMap((lane,), ("route",), (), ()), 0.0, 0.0)


class MonitorNode(Node):
    """Thin node around :class:`tps_planner.monitor.ConfidenceMonitor`."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("node_name", NODE_NAME)
        super().__init__(**kwargs)
        self.core_params, self.cfg = load_params(self, "monitor_node", MonitorParams)
        self.crash_at_s = injected_crash_time(self.cfg["fault_crash_at_s"])   # -1 (off) in a respawned process
        self.pub_status = self.create_publisher(MonitorStatus, "~/output/status", TRAJECTORY_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self.calibration_level, self.calibration_text = diag.OK, ""
        self.monitor = self._make_monitor()
        c = self.cfg
        # The fallback's cloud reduction (mount, ground, overhead, ego body): same obstacle points.
        self.reducer = FallbackPlanner(FallbackParams(
            ego_length_m=c["ego_length_m"], ego_width_m=2.0 * c["ego_half_width_m"],
            ground_threshold_m=c["ground_threshold_m"], max_obstacle_height_m=c["max_obstacle_height_m"],
            ego_body_margin_m=c["ego_body_margin_m"]))
        self.extrinsic = ExtrinsicSource(
            self, target_frame=c["base_frame"], sensor_frame=c["lidar_frame"] or "lidar",
            configured=parse_static_transform("lidar_extrinsic", c["lidar_extrinsic"]), name="lidar")
        self.poses = PoseHistory(ODOM_HISTORY)
        self.tokens = _Series()
        self.clouds = _Series()
        self.forecasts = _Series()
        self.scenes = _Series()
        self.reports = _Series()         # stamp -> io.PlannerReport
        self.lights = _Series()          # stamp -> the reader's colour of the ego lane's light
        self.images = _Series()          # stamp -> (frozen, black)
        self.candidate_stamps = _Series()  # stamps of the candidates received (the planner's heartbeat)
        self._last_image_hash: str | None = None
        self._same_images = 0                  # consecutive images identical to the one before, moving
        self._last_image_stamp: float | None = None
        self.node_errors: list[tuple[float, str]] = []
        self.ignore_prefixes = tuple(x.strip() for x in c["health_ignore_prefixes"].split(",") if x.strip())
        self.mask: MapMask | None = None
        self.mask_source = "none"
        self.attention: MapMask | None = None   # the braking check's map (lane map only)
        self.pending: list[_Pending] = []
        self._last_cycle_s: float | None = None
        self.late_cycles = 0
        self._last_perception = None     # the newest usable snapshots, for a cycle whose own is unusable
        self._last_cloud = None
        self.first_lidar_s: float | None = None
        self.cycles = 0
        self._record = None
        if c["record_path"]:
            path = resolve_path(c["record_path"])
            path.parent.mkdir(parents=True, exist_ok=True)
            self._record = path.open("a", encoding="utf-8")   # noqa: SIM115 (closed in destroy_node)
        qos = sensor_qos(c["reliable_sensor_qos"])
        self.create_subscription(LaneMap, "~/input/lane_map", self._on_lane_map, LATCHED_QOS)
        # raw: decoded by conversions.path_cdr_to_xy (~3 ms for 1600 poses; rclpy's objects ~70 ms)
        self.create_subscription(PathMsg, "~/input/route", self._on_route, LATCHED_QOS, raw=True)
        self.create_subscription(Odometry, "~/input/odometry", self._on_odometry, qos)
        self.create_subscription(PointCloud2, "~/input/points", self._on_points, qos)
        self.create_subscription(Image, "~/input/image", self._on_image, qos)
        self.create_subscription(AgentTokens, "~/input/tokens", self._on_tokens, STACK_OUTPUT_QOS)
        self.create_subscription(Forecasts, "~/input/forecasts", self._on_forecasts, STACK_OUTPUT_QOS)
        self.create_subscription(SceneUnderstanding, "~/input/scene", self._on_scene, STACK_OUTPUT_QOS)
        self.create_subscription(TrafficLightStates, "~/input/traffic_lights", self._on_lights, STACK_OUTPUT_QOS)
        self.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, DIAG_SUB_QOS)
        self.create_subscription(Empty, "~/reset", self._on_reset, 10)
        # The trigger last: a cycle may run as soon as it is subscribed.
        self.create_subscription(PlannedTrajectory, "~/input/candidate_trajectory", self._on_candidate,
                                 TRAJECTORY_QOS)
        wall = WallClock(clock_type=ClockType.STEADY_TIME)
        self.create_timer(RELEASE_POLL_S, self._release, clock=wall)
        self.create_timer(CALIBRATION_REPEAT_S, self._repeat_calibration, clock=wall)
        self.get_logger().info(f"monitor ready ({self.calibration_text or 'calibrated'}); "
                               f"planner timeout {c['planner_timeout_s']:.2f} s")

    # ---------------------------------------------------------------- calibration
    def _make_monitor(self) -> ConfidenceMonitor:
        """The core with the calibration file's thresholds; with the defaults when the file is
        missing (WARN) or unusable (ERROR naming it)."""
        cal = self._load_calibration()
        if cal is not None:
            try:
                return ConfidenceMonitor(self.core_params, cal)
            except Exception as exc:  # noqa: BLE001 - a corrupt file must not stop the node
                self.calibration_level = diag.ERROR
                self.calibration_text = (f"calibration file {resolve_path(self.cfg['calibration_file'])} unusable "
                                         f"({type(exc).__name__}: {exc}): defaults used")
                self.get_logger().error(self.calibration_text)
                self._repeat_calibration()
        return ConfidenceMonitor(self.core_params, None)

    def _load_calibration(self) -> dict | None:
        path = resolve_path(self.cfg["calibration_file"]) if self.cfg["calibration_file"] else None
        if path is None:
            self.calibration_level, self.calibration_text = diag.WARN, "uncalibrated: defaults (no calibration_file)"
        elif not path.exists():
            self.calibration_level = diag.WARN
            self.calibration_text = f"uncalibrated: defaults (calibration file {path} not found)"
        else:
            try:
                from tps_planner.monitor_calibration import load_calibration

                cal = load_calibration(path)
                self.calibration_text = f"calibration {path}"
                self.get_logger().info(f"calibration loaded: {path}")
                return cal
            except Exception as exc:  # noqa: BLE001 - a corrupt file must not stop the node
                self.calibration_level = diag.ERROR
                self.calibration_text = (f"calibration file {path} unusable ({type(exc).__name__}: {exc}): "
                                         "defaults used")
        (self.get_logger().error if self.calibration_level == diag.ERROR else self.get_logger().warn)(
            self.calibration_text)
        self._repeat_calibration()
        return None

    def _repeat_calibration(self) -> None:
        if self.calibration_level != diag.OK:
            self._diag(self.get_clock().now().to_msg(), "calibration", self.calibration_level,
                       self.calibration_text, {"file": self.cfg["calibration_file"]})

    # ---------------------------------------------------------------- latched inputs
    def _on_lane_map(self, msg: LaneMap) -> None:
        if msg.header.frame_id not in ("map", ""):
            self._error("lane_map", f"lane map frame '{msg.header.frame_id}' is not 'map': ignored")
            return
        try:
            lmap = conv.lane_map_from_msg(msg)
            self.mask = MapMask(lmap, self.cfg["drivable_margin_m"], self.cfg["crosswalk_margin_m"])
            self.attention = attention_mask(lmap, self.cfg["crosswalk_margin_m"])
            self.mask_source = "lane_map"
        except Exception as exc:  # noqa: BLE001 - a bad map must not stop the node
            self._error("lane_map", f"unusable lane map: {type(exc).__name__}: {exc}")
            return
        self.get_logger().info(f"lane map: {len(msg.lanes)} lanes (drivable area)")

    def _on_route(self, raw: bytes) -> None:
        try:
            frame_id, xy = conv.path_cdr_to_xy(raw)
        except conv.ConversionError as exc:
            self._error("route", f"route unreadable ({exc}): ignored")
            return
        if frame_id not in ("map", ""):
            self._error("route", f"route frame '{frame_id}' is not 'map': ignored")
        elif len(xy) < 2 or not np.all(np.isfinite(xy)):
            self._error("route", f"route of {len(xy)} pose(s) unusable (needs >= 2 finite poses)")
        elif self.mask_source != "lane_map" and self.cfg["route_drivable_width_m"] > 0.0:
            self.mask, self.mask_source = route_mask(xy, self.cfg["route_drivable_width_m"]), "route"

    # ---------------------------------------------------------------- stamped inputs
    def _stamp(self, msg, input_name: str) -> float | None:
        stamp = time_to_seconds(msg.header.stamp)
        if not math.isfinite(stamp):
            self._error(input_name, f"stamp is not finite ({stamp}): ignored")
            return None
        return stamp

    def _on_odometry(self, msg: Odometry) -> None:
        pose = conv.odometry_to_pose(msg)
        crash_if_due(self, self.crash_at_s, pose.stamp_s, "odometry")
        reason = invalid_pose_reason(pose)
        if reason is not None:
            self._error("odometry", reason, pose.stamp_s if math.isfinite(pose.stamp_s) else None)
            return
        self.poses.append(pose)
        self._release()

    def _on_points(self, msg: PointCloud2) -> None:
        stamp = self._stamp(msg, "points")
        if stamp is None:
            return
        crash_if_due(self, self.crash_at_s, stamp, "points")
        newest = self.clouds.newest_s
        if self.first_lidar_s is None or (newest is not None and stamp < newest - STAMP_EPSILON_S):
            self.first_lidar_s = stamp      # the first frame, or time went back (a new episode)
        self.clouds.put(stamp, msg)
        # The planner's watchdog: a cycle without a candidate when it has been silent too long.
        last = self.candidate_stamps.latest(stamp)
        since = last[0] if last is not None else self.first_lidar_s
        if stamp - since > self.cfg["planner_timeout_s"] + STAMP_EPSILON_S and not self._pending_at(stamp):
            self._add_pending(_Pending(stamp, None, time.monotonic(), "watchdog"))
        self._release()

    def _on_tokens(self, msg: AgentTokens) -> None:
        stamp = self._stamp(msg, "tokens")
        if stamp is None:
            return
        self.tokens.put(stamp, msg)
        # Perception failed on this frame (no input, invalid cloud, inference error): the planner
        # gets no tokens to plan from, so no candidate will open this stamp's cycle -- open it now
        # rather than after planner_timeout_s (the NaN-point fault: 5 cycles late on VAL 1000). Not
        # before the planner has answered once (start-up is the warm-up's business).
        if (int(getattr(msg, "status", AgentTokens.STATUS_OK)) not in io.USABLE_TOKEN_STATUS
                and self.candidate_stamps.newest_s is not None and not self._pending_at(stamp)):
            self._add_pending(_Pending(stamp, None, time.monotonic(), "perception"))
        self._release()

    def _on_forecasts(self, msg: Forecasts) -> None:
        stamp = self._stamp(msg, "forecasts")
        if stamp is not None:
            self.forecasts.put(stamp, msg)
            self._release()

    def _on_scene(self, msg: SceneUnderstanding) -> None:
        stamp = self._stamp(msg, "scene")
        if stamp is None:
            return
        try:
            io.check_scene(msg)
        except io.InputError as exc:
            self._error(exc.input, f"{exc.why}: ignored", stamp)
            return
        self.scenes.put(stamp, msg)

    def _on_lights(self, msg: TrafficLightStates) -> None:
        stamp = self._stamp(msg, "traffic_lights")
        if stamp is None:
            return
        try:
            io.check_light_states(msg)
            colour = io.reader_light_colour(msg, self.cfg["light_range_m"], self.cfg["light_min_confidence"])
        except io.InputError as exc:
            # the reading of this stamp is UNKNOWN (not "no light": the cycle must not wait for it,
            # nor compare the planner's light with a colour read from a malformed message)
            self._error(exc.input, f"{exc.why}: read as UNKNOWN", stamp)
            colour = 4
        self.lights.put(stamp, colour)
        self._release()

    def _on_image(self, msg: Image) -> None:
        stamp = self._stamp(msg, "image")
        if stamp is None:
            return
        try:
            digest, black = io.image_digest(msg, self.cfg["camera_black_threshold"])
        except io.InputError as exc:
            self._error(exc.input, exc.why, stamp)
            self._last_image_hash = None
            self._same_images = 0
            self.images.put(stamp, (False, True))   # an empty frame shows nothing: as good as black
            return
        # Identical bytes are a frozen camera only while the ego moves: a still scene renders the same.
        pose = self.poses.at(stamp, self.cfg["pose_tolerance_s"])
        moving = pose is not None and pose.speed_mps > self.cfg["camera_frozen_min_speed_mps"]
        # (a frame sent again with its own stamp -- the bridge repeats step 0 until the stack
        # subscribes -- is no repeat)
        if self._last_image_stamp is None or abs(stamp - self._last_image_stamp) > STAMP_EPSILON_S:
            self._same_images = self._same_images + 1 if digest == self._last_image_hash and moving else 0
        frozen = self._same_images >= self.cfg["camera_frozen_frames"]
        self._last_image_hash = digest
        self._last_image_stamp = stamp
        self.images.put(stamp, (frozen, black))

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        stamp = time_to_seconds(msg.header.stamp)
        if not math.isfinite(stamp):
            return
        rep, problems = io.planner_report(msg, self.cfg["planner_node_name"], self.reports.at(stamp))
        if problems:
            self._error("diagnostics", f"planner's rationale status unreadable: {'; '.join(problems)}", stamp)
        if rep is not None:
            self.reports.put(stamp, rep)
            self._release()
        errors = io.node_errors(msg, self.get_name(), self.ignore_prefixes,
                                processing_time=self.core_params.processing_time_health)
        if errors:
            self.node_errors += [(stamp, e) for e in errors]
            del self.node_errors[: -200]

    def _on_reset(self, _msg: Empty) -> None:
        before = STATE_NAMES.get(self.monitor.state, "?")
        self.monitor.reset()
        text = f"reset requested: state {before} -> {STATE_NAMES.get(self.monitor.state, '?')}"
        self.get_logger().warn(text)
        self._diag(self.get_clock().now().to_msg(), "reset", diag.OK, text, {})

    # ---------------------------------------------------------------- cycles
    def _on_candidate(self, msg: PlannedTrajectory) -> None:
        stamp = self._stamp(msg, "candidate_trajectory")
        if stamp is None:
            return
        self.candidate_stamps.put(stamp, True)
        waiting = self._pending_at(stamp)
        if waiting is not None:           # a watchdog cycle of this stamp: the candidate came after all
            waiting.candidate = msg
        else:
            self._add_pending(_Pending(stamp, msg, time.monotonic()))
        self._release()

    def _pending_at(self, stamp_s: float) -> _Pending | None:
        return next((p for p in self.pending if abs(p.stamp_s - stamp_s) <= STAMP_EPSILON_S), None)

    def _add_pending(self, p: _Pending) -> None:
        self.pending.append(p)
        self.pending.sort(key=lambda q: q.stamp_s)
        while len(self.pending) > MAX_PENDING:
            self._run(self.pending.pop(0))

    def _may_still_arrive(self, newest: float | None, stamp_s: float) -> bool:
        """A stream seen before whose newest message is older than ``stamp_s``: its message of
        that stamp can still come (streams arrive in stamp order)."""
        return newest is not None and newest < stamp_s - STAMP_EPSILON_S

    def _waits(self, p: _Pending) -> bool:
        k = p.stamp_s
        latest = self.poses.latest
        if latest is None or latest.stamp_s < k - STAMP_EPSILON_S:   # the ego pose is always needed
            return True
        # The lidar frame and the agent tokens of every stamp are expected (a first one too: at
        # start-up the candidate can overtake them); the others once their stream has been seen.
        if any(n is None for n in (self.clouds.newest_s, self.tokens.newest_s)):
            return True
        streams = [self.clouds.newest_s, self.tokens.newest_s, self.lights.newest_s]
        if p.candidate is not None:
            # the planner's forecasts and diagnostics of a candidate's stamp: expected from the first
            # candidate on (expect_planner_streams), else once seen (their first messages can come
            # after the first candidate: the first cycle would run without them, machine-dependent)
            if self.cfg["expect_planner_streams"] and (self.forecasts.newest_s is None or self.reports.newest_s is None):
                return True
            streams += [self.forecasts.newest_s, self.reports.newest_s]
        return any(self._may_still_arrive(n, k) for n in streams)

    def _release(self) -> None:
        """Run the waiting cycles, oldest first, whose inputs are all in (or waited long enough)."""
        while self.pending:
            p = self.pending[0]
            if self._waits(p) and time.monotonic() - p.since <= self.cfg["input_wait_s"]:
                return
            self.pending.pop(0)
            self._run(p)

    def _run(self, p: _Pending) -> None:
        """Run a released cycle unless it is moot: a watchdog cycle whose planner turned out to be
        answering after all (a candidate within the timeout arrived while it waited), or a cycle
        that arrived after a newer one ran (its stamp is history for the arbiter; the core's
        temporal signals and dwell timers must not go back in time)."""
        k = p.stamp_s
        if p.candidate is None and p.cause == "watchdog":
            last = self.candidate_stamps.latest(k)
            if last is not None and k - last[0] <= self.cfg["planner_timeout_s"] + STAMP_EPSILON_S:
                return
        if self._last_cycle_s is not None and self._last_cycle_s - LATE_WINDOW_S < k < \
                self._last_cycle_s - STAMP_EPSILON_S:
            self.late_cycles += 1
            self._diag(seconds_to_time(k), "late_input", diag.WARN,
                       f"the candidate of {k:.3f} s arrived after the cycle of {self._last_cycle_s:.3f} s ran: "
                       "not judged", {"late_cycles": self.late_cycles})
            return
        self._last_cycle_s = k
        self._cycle(p)

    def _cycle(self, p: _Pending) -> None:
        t0 = time.perf_counter()
        k = p.stamp_s
        errors: list[tuple[str, str]] = []
        tol = self.cfg["pose_tolerance_s"]
        pose, kind = self.poses.lookup(k, tol)
        if pose is None:
            errors.append(("odometry", f"no ego pose within {tol:.3f} s of the stamp {k:.3f} s: ego state unknown"))

        def take(input_name: str, series: _Series, fn, *args):
            msg = series.at(k)
            if msg is None:
                return None
            try:
                return fn(msg, *args)
            except io.InputError as exc:
                errors.append((exc.input, f"{exc.why}: treated as missing this cycle"))
            except Exception as exc:  # noqa: BLE001 - a malformed message must not stop the node
                errors.append((input_name, f"{type(exc).__name__}: {exc}: treated as missing this cycle"))
            return None

        candidate = None
        if p.candidate is not None:
            try:
                candidate, problem = io.candidate_from_msg(p.candidate, self.cfg["expected_frame"])
                if problem is not None:
                    errors.append(("candidate_trajectory", f"{problem}: the monitor calls for the fallback"))
            except io.InputError as exc:
                errors.append((exc.input, f"{exc.why}: no candidate this cycle"))
            except Exception as exc:  # noqa: BLE001 - a malformed message must not stop the node
                errors.append(("candidate_trajectory", f"{type(exc).__name__}: {exc}: no candidate this cycle"))
        perception = take("tokens", self.tokens, io.perception_snapshot, pose)
        if perception is not None and pose is not None and perception.status in io.USABLE_TOKEN_STATUS:
            self._last_perception = perception
        elif perception is None:    # none usable of this stamp: the newest usable one, its age tells
            perception = self._recent(self._last_perception, k, self.core_params.perception_timeout_s)
        cloud_msg = self.clouds.at(k)
        if cloud_msg is not None:
            self.reducer.set_lidar_extrinsic(self.extrinsic.transform(cloud_msg.header.frame_id or None))
        cloud = take("points", self.clouds, io.cloud_snapshot, pose, self.reducer, self.cfg["lidar_frame"])
        if cloud is not None and pose is not None:
            self._last_cloud = cloud
        elif cloud is None:
            cloud = self._recent(self._last_cloud, k, self.core_params.lidar_timeout_s)
        forecasts = take("forecasts", self.forecasts, io.forecast_snapshot, pose)
        report: io.PlannerReport | None = self.reports.at(k)
        light_hit = self.lights.latest(k)
        reader_light = (light_hit[1] if light_hit is not None
                        and k - light_hit[0] <= self.cfg["light_max_age_s"] + STAMP_EPSILON_S else None)
        health = self._health(k, perception, cloud)
        if pose is not None:
            ego_xy, ego_yaw, ego_v = np.array([pose.x, pose.y]), float(pose.yaw), float(pose.speed_mps)
        else:
            ego_xy, ego_yaw, ego_v = np.full(2, math.nan), math.nan, math.nan
        inputs = MonitorInputs(
            stamp_s=k, ego_xy=ego_xy, ego_yaw=ego_yaw, ego_speed_mps=ego_v, candidate=candidate,
            perception=perception, cloud=cloud, forecasts=forecasts, drivable=self.mask,
            attention=self.attention,
            consistency_ok=report.consistent if report is not None and p.candidate is not None else None,
            consistency_score=report.consistency_score if report is not None and p.candidate is not None else None,
            planner_light_state=report.light if report is not None and report.has_light else None,
            reader_light_state=reader_light, health=health)
        try:
            res = self.monitor.update(inputs)
        except Exception as exc:  # noqa: BLE001 - a core failure must not silence the monitor
            errors.append(("monitor", f"core failed on the cycle of {k:.3f} s: {type(exc).__name__}: {exc}"))
            state = STATE_MINIMAL_RISK if self.monitor.state == STATE_MINIMAL_RISK else STATE_FALLBACK
            res = MonitorResult(k, state, 0.0, (), (), (), (f"monitor failed: {type(exc).__name__}",),
                                ("monitor",), None)
        self.pub_status.publish(io.status_to_msg(res))
        self.cycles += 1
        if res.transition is not None:
            a, b = res.transition
            why = "; ".join(getattr(res, "transition_reasons", ()) or res.reasons) or "recovered"
            self.get_logger().warn(f"{STATE_NAMES.get(a, a)} -> {STATE_NAMES.get(b, b)} at {k:.3f} s: {why}")
        if self._record is not None:
            try:
                self._record.write(io.record_line(res, p.candidate is not None, candidate) + "\n")
                self._record.flush()
            except (OSError, ValueError) as exc:   # a full disk must not silence the monitor
                errors.append(("record", f"cannot append to {self.cfg['record_path']}: {exc}"))
        self._report(res, k, p, errors, kind, (time.perf_counter() - t0) * 1e3)

    @staticmethod
    def _recent(snapshot, k: float, max_age_s: float):
        """``snapshot`` if its stamp is at most ``max_age_s`` before ``k`` (and not after it), else None."""
        if snapshot is None or not (k - max_age_s - STAMP_EPSILON_S <= snapshot.stamp_s <= k + STAMP_EPSILON_S):
            return None
        return snapshot

    def _health(self, k: float, perception, cloud) -> HealthSnapshot:
        """Input ages at stamp ``k``: of the lidar frame and the perception the cycle uses (else of
        the newest usable one; inf: none yet), of the newest camera image and candidate."""
        def age(newest: float | None) -> float:
            return k - newest if newest is not None else math.inf

        def stamp_of(hit) -> float | None:
            return hit[0] if hit is not None else None

        def used(snapshot, last_usable) -> float | None:
            """Stamp of the snapshot the cycle uses, else of the newest usable one before it."""
            if snapshot is not None:
                return snapshot.stamp_s
            return last_usable.stamp_s if last_usable is not None and last_usable.stamp_s <= k + STAMP_EPSILON_S \
                else None

        img = self.images.latest(k)
        frozen, black = img[1] if img is not None else (False, False)
        window = self.cfg["node_error_window_s"]
        self.node_errors = [(s, e) for s, e in self.node_errors if s > k - 10.0 * window]
        errors = tuple(dict.fromkeys(e for s, e in self.node_errors if k - window < s <= k + STAMP_EPSILON_S))
        return HealthSnapshot(
            lidar_age_s=age(used(cloud, self._last_cloud)),
            camera_age_s=age(stamp_of(img)), camera_frozen=bool(frozen), camera_black=bool(black),
            perception_age_s=age(used(perception, self._last_perception)),
            planner_age_s=age(stamp_of(self.candidate_stamps.latest(k))), node_errors=errors)

    # ---------------------------------------------------------------- diagnostics
    def _report(self, res: MonitorResult, k: float, p: _Pending, errors: list, pose_kind, ms: float) -> None:
        name = self.get_name()
        stamp = seconds_to_time(k)
        level = _LEVEL_OF_STATE.get(res.state, diag.ERROR)
        values = {"state": STATE_NAMES.get(res.state, str(res.state)), "certainty": float(res.certainty),
                  "candidate": p.candidate is not None, "critical": ",".join(res.critical),
                  "drivable": self.mask_source, "pose": str(getattr(pose_kind, "value", pose_kind)),
                  "scene_class": int(scene.scene_class) if (scene := self.scenes.at(k)) is not None else -1,
                  "cycles": self.cycles}
        values.update({n: io.finite_value(v) for n, v in zip(res.signal_names, res.signal_values, strict=True)})
        statuses = [diag.status(f"{name}: status", level, "; ".join(res.reasons) or "nominal", values)]
        for input_name, why in errors:
            text = f"{input_name}: {why}"
            statuses.append(diag.status(f"{name}: {input_name}", diag.ERROR, text, {"input": input_name}))
            self.get_logger().error(text, throttle_duration_sec=2.0)
        statuses.append(diag.processing_time_status(name, ms, self.cfg["node_processing_budget_ms"],
                                                    self.cfg["node_processing_error_budget_ms"]))
        self.pub_diag.publish(diag.array(stamp, statuses))

    def _diag(self, stamp, aspect: str, level: int, text: str, values: dict) -> None:
        self.pub_diag.publish(diag.array(stamp, [diag.status(f"{self.get_name()}: {aspect}", level, text, values)]))

    def _error(self, aspect: str, text: str, stamp_s: float | None = None) -> None:
        stamp = seconds_to_time(stamp_s) if stamp_s is not None else self.get_clock().now().to_msg()
        self._diag(stamp, aspect, diag.ERROR, f"{aspect}: {text}", {"input": aspect})
        self.get_logger().error(f"{aspect}: {text}", throttle_duration_sec=2.0)

    def destroy_node(self) -> None:
        if self._record is not None:
            self._record.close()
            self._record = None
        super().destroy_node()


NODE_CLASS = MonitorNode


def main(args=None) -> None:
    """Console script ``monitor_node``."""
    sys.exit(run_node(NODE_CLASS, "monitor_node", args))


if __name__ == "__main__":
    main()
