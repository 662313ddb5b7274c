"""planner_node: the VLM planner (issue 14) -- agent tokens, the front camera, the ego state, the
route and the driving instruction in; the candidate trajectory, forecasts and scene understanding
out.

Inputs: ``~/input/tokens`` (tps_msgs/AgentTokens, base_link, one per lidar frame: the trigger),
``~/input/image`` (sensor_msgs/Image rgb8, bgr8, rgba8 or bgra8, front camera), ``~/input/odometry``
(nav_msgs/Odometry), ``~/input/route`` (nav_msgs/Path, map, transient local),
``~/input/lane_map`` (tps_msgs/LaneMap, map, transient local; optional: with it the route the
planner reads is anchored to the ego's lane once the ego drives in a lane beside the route's,
tps_planner.vlm.route_anchor),
``~/input/instruction`` (tps_msgs/DrivingInstruction, transient local),
``~/input/traffic_light_info`` (carla_msgs/CarlaTrafficLightInfoList, transient local: map
knowledge, for the distance to the next stop line on the route), ``/clock`` (with use_sim_time).

Outputs (stamp = the tokens' stamp = the lidar frame's): ``~/output/trajectory``
(tps_msgs/PlannedTrajectory, map, source PLANNER: the ego at t = 0, then 8 points at 0.5 s with
speeds, accelerations and position sigma; the arbiter's candidate), ``~/output/forecasts``
(tps_msgs/Forecasts, base_link, K modes per agent), ``~/output/scene``
(tps_msgs/SceneUnderstanding, base_link: scene class, relevance and intent per agent, lead agent,
the rationale rendered from exactly the stage-1/2 outputs the plan was conditioned on),
``~/output/markers`` (visualization_msgs/MarkerArray, map), ``/diagnostics``:
``<node>: planning`` (inputs used), ``<node>: rationale`` (the consistency signal for the monitor:
keys ``consistent``, ``consistency_score``, ``claims``, ``violations``; WARN when the plan does not
do what the rationale says), ``<node>: processing_time`` (stage times), and ``<node>: <input>``
ERROR naming the input whenever a frame is not planned.

Pairing (tps_common.stamp_sync): each AgentTokens waits for the odometry of its stamp (the next
tokens or the clock passing its stamp release it with the nearest pose within ``sync_slop_s``);
the camera image is the one within ``sync_slop_s`` of the stamp (a frame waits for it at most
``image_wait_s`` of wall time). Model inputs are built only by tps_planner.vlm.inputs.frame_inputs
(via tps_planner.vlm.onboard) and run by tps_planner.vlm.runtime.PlannerRuntime.

Never a stale plan: a frame with a missing, stale, non-finite or malformed input (no odometry /
route / instruction, tokens older than ``max_input_age_s``, tokens with a failure status, codes out
of range, NaN geometry, a bad image) publishes nothing but an ERROR diagnostic that names the input
and why; a missing or corrupt model file is an ERROR diagnostic naming the file. The node keeps
running in every case.

Fault injection (issue 15's fault matrix, off by default): with ``fault_crash_at_s`` >= 0 the
process dies abruptly -- ``os._exit(EXIT_INJECTED_CRASH)`` (70) after logging "injected crash", no
cleanup, like a real crash -- when the first input stamp (agent tokens, odometry or /clock) at or
after that sim time arrives; a process respawned by tps-bringup (graph key ``respawn``) does not arm
it (tps_common.node.injected_crash_time), so the crash fires once per run.
"""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from carla_msgs.msg import CarlaTrafficLightInfoList
from diagnostic_msgs.msg import DiagnosticArray
from nav_msgs.msg import Odometry
from nav_msgs.msg import Path as PathMsg
from rclpy.clock import Clock as WallClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import Image
from tps_common import diagnostics as diag
from tps_common.conversions import light_heads_from_info, seconds_to_time, time_to_seconds
from tps_common.node import EXIT_INJECTED_CRASH, exit_now, injected_crash_time, load_params, run_node
from tps_common.params import ParameterError
from tps_common.qos import (
    CLOCK_QOS,
    DIAGNOSTICS_QOS,
    LATCHED_QOS,
    STACK_OUTPUT_QOS,
    TRAJECTORY_QOS,
    sensor_qos,
)
from tps_common.stamp_sync import PoseKind, Release, StampBuffer, StampSync, StampSyncParams
from tps_msgs.msg import (
    AgentTokens,
    DrivingInstruction,
    Forecasts,
    LaneMap,
    PlannedTrajectory,
    SceneUnderstanding,
)
from visualization_msgs.msg import MarkerArray

from tps_planner import conversions as conv
from tps_planner.vlm.onboard import InputError, OnboardPlanner, ego_motion, route_stop_line_m
from tps_planner.vlm.route_anchor import AnchoredRoute, AnchorParams, RouteAnchor

NODE_NAME = "planner"
ODOM_HISTORY = 50            # poses kept for stamp lookup (5 s at 10 Hz)
IMAGE_HISTORY = 10           # camera frames kept for pairing
AUTO_BACKEND = "auto"         # ORT INT8 when the export is there, else torch eager
AUTO_PREFERRED = "onnxruntime-int8"
PARK_POLL_S = 0.02           # wall period of the check on frames waiting for their image
MODEL_ERROR_PERIOD_S = 1.0   # wall period of the ERROR while there is no usable model
USABLE_TOKEN_STATUS = (AgentTokens.STATUS_OK, AgentTokens.STATUS_FAULT_INJECTED)
CAMERA_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8")   # 8-bit colour; alpha dropped, RGB for the model
TOKENS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)


def injected_crash_due(crash_at_s: float, stamp_s: float) -> bool:
    """Fault injection: the planner process must die now (``fault_crash_at_s`` >= 0 and an input
    stamped at or after it arrived). A negative ``crash_at_s`` is off; a non-finite stamp never
    triggers it."""
    return crash_at_s >= 0.0 and math.isfinite(stamp_s) and stamp_s >= crash_at_s


def resolve_model_path(path: str) -> Path:
    """``model_path`` as a file: absolute as given, relative to the repository root otherwise."""
    from tps_inference.manifest import repo_root

    p = Path(path).expanduser()
    return p if p.is_absolute() else repo_root() / p


class PlannerNode(Node):
    """Thin node around :class:`tps_planner.vlm.onboard.OnboardPlanner`."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("node_name", NODE_NAME)
        super().__init__(**kwargs)
        _, self.cfg = load_params(self, "planner_node")
        from tps_planner.vlm.runtime import BACKENDS

        if self.cfg["backend"] not in (*BACKENDS, AUTO_BACKEND):
            raise ParameterError(f"parameter 'backend' = {self.cfg['backend']!r} is not one of "
                                 f"{[*BACKENDS, AUTO_BACKEND]}")
        self.backend_note = ""
        self.pub_traj = self.create_publisher(PlannedTrajectory, "~/output/trajectory", TRAJECTORY_QOS)
        self.pub_forecasts = self.create_publisher(Forecasts, "~/output/forecasts", STACK_OUTPUT_QOS)
        self.pub_scene = self.create_publisher(SceneUnderstanding, "~/output/scene", STACK_OUTPUT_QOS)
        self.pub_markers = self.create_publisher(MarkerArray, "~/output/markers", 5)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        # The model first: the subscriptions below tell the bridge (wait_for_nodes) it is ready.
        self.model_path = resolve_model_path(self.cfg["model_path"])
        self.core: OnboardPlanner | None = None
        self.model_error = ""
        self._next_model_error = 0.0
        self._load_model()
        self.sync: StampSync = StampSync(StampSyncParams(
            pose_tolerance_s=self.cfg["sync_slop_s"], history_capacity=ODOM_HISTORY,
            clock_release_after_s=0.0 if self.get_parameter("use_sim_time").value else self.cfg["sync_slop_s"]))
        self.images: StampBuffer = StampBuffer(IMAGE_HISTORY)
        self._parked: list[tuple[Release, float]] = []
        self.route_xy: np.ndarray | None = None
        self.route_error = "no route received"
        self.lane_map = None
        self.anchor: RouteAnchor | None = None
        self.anchor_note = "no route received"
        self.instruction: DrivingInstruction | None = None
        self.instruction_error = "no instruction received"
        self.light_heads: list = []
        self.light_note = "no traffic light info received (no stop line known)"
        self.clock_s = -math.inf
        self.last_tokens_s: float | None = None
        self._first_clock_s: float | None = None
        self.planned = 0
        qos = sensor_qos(self.cfg["reliable_sensor_qos"])
        # raw: the route's CDR bytes decoded by conversions.path_cdr_to_xy (~3 ms for 1600 poses)
        # instead of rclpy's message objects (~70 ms of this executor thread at each drive start)
        self.create_subscription(PathMsg, "~/input/route", self._on_route, LATCHED_QOS, raw=True)
        self.create_subscription(LaneMap, "~/input/lane_map", self._on_lane_map, LATCHED_QOS)
        self.create_subscription(DrivingInstruction, "~/input/instruction", self._on_instruction, LATCHED_QOS)
        self.create_subscription(CarlaTrafficLightInfoList, "~/input/traffic_light_info", self._on_light_info,
                                 LATCHED_QOS)
        self.create_subscription(Odometry, "~/input/odometry", self._on_odometry, qos)
        self.create_subscription(Image, "~/input/image", self._on_image, qos)
        # Depth 1: a planner that fell behind plans the newest frame next, never a backlog of stale ones.
        self.create_subscription(AgentTokens, "~/input/tokens", self._on_tokens, TOKENS_QOS)
        if self.get_parameter("use_sim_time").value:
            self.create_subscription(Clock, "/clock", self._on_clock, CLOCK_QOS)
        else:
            self.create_timer(0.1, lambda: self._on_time(self.get_clock().now().nanoseconds * 1e-9))
        self.create_timer(PARK_POLL_S, self._release_parked, clock=WallClock(clock_type=ClockType.STEADY_TIME))
        self.get_logger().info(f"planner ready: {self.model_path} ({self.core.runtime.description})"
                               if self.core is not None
                               else f"planner NOT planning: {self.model_error}")

    # ---------------------------------------------------------------- model
    def _runtime(self, runtime_cls):
        """The configured backend; ``auto``: ORT INT8 where the checkpoint's export is present and
        matches it (``make export-planner``), else torch eager -- said in a WARN diagnostic."""
        backend = self.cfg["backend"]
        if backend != AUTO_BACKEND:
            return runtime_cls(self.model_path, backend=backend, threads=self.cfg["threads"])
        try:
            return runtime_cls(self.model_path, backend=AUTO_PREFERRED, threads=self.cfg["threads"])
        except (ValueError, ImportError) as exc:
            self.backend_note = (f"backend auto: {AUTO_PREFERRED} unusable ({exc}); running torch eager, "
                                 "several times slower on a CPU")
            self.get_logger().warning(self.backend_note)
            self._diag(seconds_to_time(0.0), "model", diag.WARN, self.backend_note, {})
            return runtime_cls(self.model_path, backend="torch", threads=self.cfg["threads"])

    def _load_model(self) -> None:
        from tps_planner.vlm.runtime import PlannerRuntime

        try:
            runtime = self._runtime(PlannerRuntime)
            core = OnboardPlanner(runtime, lateral_band_m=self.cfg["lateral_band_m"])
            w, h = runtime.cfg.camera_size
            rng = np.random.default_rng(0)
            # Warm-up over the shapes a drive brings (agent counts, a full-size image to downscale):
            # torch builds its kernels per shape, and the first frame must not stall the lockstep.
            for i in range(self.cfg["warmup_runs"]):
                for n in (0, 1, 4, 12, int(runtime.cfg.max_agents)):
                    geom = np.column_stack([rng.uniform(-40, 60, n), rng.uniform(-8, 8, n), np.zeros(n),
                                            np.full(n, 4.5), np.full(n, 1.9), rng.uniform(0, 10, n), np.zeros(n)])
                    core.update(stamp_s=0.0, pose=np.zeros(3), speed_mps=5.0, accel_mps2=0.0, yaw_rate_rps=0.0,
                                route_xy=np.array([[0.0, 0.0], [100.0, 0.0]]), stop_line_m=None, text="keep lane",
                                target_speed_mps=-1.0, tok_code=np.zeros(n, np.int64), tok_geom=geom,
                                tok_qerr=np.zeros(n), tok_id=np.arange(n),
                                image=np.zeros((h * (1 + i % 2) + 1, w * (1 + i % 2) + 1, 3), np.uint8))
            self.core = core
        except Exception as exc:  # noqa: BLE001 - a bad model file must not kill the node
            self.model_error = f"model file {self.model_path} unusable: {type(exc).__name__}: {exc}"
            self.get_logger().error(self.model_error)
            self._diag_error("model", self.model_error)

    # ---------------------------------------------------------------- latched inputs
    def _on_route(self, raw: bytes) -> None:
        try:
            frame_id, xy = conv.path_cdr_to_xy(raw)
        except conv.ConversionError as exc:
            frame_id, xy, self.route_error = "", None, f"unreadable ({exc})"
        if xy is None:
            pass                                    # route_error says why
        elif frame_id not in ("map", ""):
            self.route_error = f"route frame '{frame_id}' is not 'map'"
        elif len(xy) < 2:
            self.route_error = f"route has {len(xy)} pose(s): needs at least 2"
        elif not np.all(np.isfinite(xy)):
            self.route_error = "route contains NaN/inf"
        else:
            self.route_xy, self.route_error = xy, ""
            self._build_anchor()
            return
        self.route_xy = None
        self.anchor = None
        self._diag_error("route", f"route: {self.route_error}: no plan until a usable route arrives")

    def _on_lane_map(self, msg: LaneMap) -> None:
        if msg.header.frame_id not in ("map", ""):
            self._diag_error("lane_map", f"lane map frame '{msg.header.frame_id}' is not 'map': ignored "
                             "(the planner reads the route as given)")
            return
        try:
            self.lane_map = conv.lane_map_from_msg(msg)
        except (ValueError, IndexError, TypeError) as exc:
            self.lane_map = None
            self._diag_error("lane_map", f"unusable lane map: {exc} (the planner reads the route as given)")
        self._build_anchor()

    def _build_anchor(self) -> None:
        """Lay the lane map over the route for the route anchoring (route_anchor); without a lane
        map, or with one that does not fit the route, the planner reads the route as given."""
        if self.route_xy is None:
            return
        params = AnchorParams(enabled=self.cfg["anchor_route_to_lane"], lookahead_m=self.cfg["anchor_lookahead_m"])
        try:
            self.anchor = RouteAnchor(self.route_xy, self.lane_map, params)
            self.anchor_note = "" if self.lane_map is not None else "no lane map: route as given"
        except Exception as exc:  # noqa: BLE001 - a map the anchoring cannot use must not kill the node
            self.anchor = None
            self.anchor_note = f"route anchoring unusable ({type(exc).__name__}: {exc}): route as given"
            self._diag_error("lane_map", f"lane map: {self.anchor_note}")

    def _on_instruction(self, msg: DrivingInstruction) -> None:
        if not msg.text.strip():
            self.instruction_error = "instruction text is empty"
        elif not math.isfinite(msg.target_speed_mps):
            self.instruction_error = f"target_speed_mps is not finite ({msg.target_speed_mps})"
        else:
            self.instruction, self.instruction_error = msg, ""
            self.get_logger().info(f"instruction: '{msg.text}' (command {msg.command})")
            return
        self.instruction = None
        self._diag_error("instruction", f"instruction: {self.instruction_error}: no plan until a usable one arrives")

    def _on_light_info(self, msg: CarlaTrafficLightInfoList) -> None:
        try:
            self.light_heads = light_heads_from_info(msg)
            self.light_note = ""
        except ValueError as exc:
            self.light_heads = []
            self.light_note = f"traffic light info ignored: {exc}"
            self._diag(seconds_to_time(max(self.clock_s, 0.0)), "traffic_light_info", diag.ERROR,
                       f"traffic_light_info: {exc} (no stop line known)", {})

    # ---------------------------------------------------------------- synchronised inputs
    def _maybe_crash(self, stamp_s: float, what: str) -> None:
        """FAULT INJECTION (``fault_crash_at_s``): die abruptly, without cleanup, like a real crash."""
        crash_at_s = injected_crash_time(self.cfg["fault_crash_at_s"])   # -1 (off) in a respawned process
        if injected_crash_due(crash_at_s, stamp_s):
            self.get_logger().fatal(f"injected crash: fault_crash_at_s = {crash_at_s:.3f} s, "
                                    f"{what} stamped {stamp_s:.3f} s arrived; exiting with code {EXIT_INJECTED_CRASH}")
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(EXIT_INJECTED_CRASH)

    def _on_odometry(self, msg: Odometry) -> None:
        self._maybe_crash(time_to_seconds(msg.header.stamp), "odometry")
        res = self.sync.on_pose(conv.odometry_to_pose(msg))
        if res.rejected:
            self._diag_error("odometry", f"odometry: {res.rejected}", time_to_seconds(msg.header.stamp))
        for r in res.released:
            self._process(r)

    def _on_image(self, msg: Image) -> None:
        stamp = time_to_seconds(msg.header.stamp)
        if not math.isfinite(stamp):
            self._diag_error("image", f"image: stamp is not finite ({stamp})")
            return
        self.images.put(stamp, msg)
        self._release_parked()

    def _on_tokens(self, msg: AgentTokens) -> None:
        stamp = time_to_seconds(msg.header.stamp)
        if not math.isfinite(stamp):
            self._diag_error("tokens", f"tokens: stamp is not finite ({stamp}): no plan")
            return
        self._maybe_crash(stamp, "agent tokens")
        self.last_tokens_s = stamp
        for r in self.sync.on_input(msg, stamp).released:
            self._process(r)

    def _on_clock(self, msg: Clock) -> None:
        self._maybe_crash(time_to_seconds(msg.clock), "clock")
        self._on_time(time_to_seconds(msg.clock))

    def _on_time(self, now_s: float) -> None:
        # The latest clock, not the largest: one far-future /clock message (malformed, found by
        # tests/fuzz) must not make every later frame "stale" for good; a clock going back is a reset.
        self.clock_s = now_s
        if self.core is None and time.monotonic() >= self._next_model_error:
            self._next_model_error = time.monotonic() + MODEL_ERROR_PERIOD_S
            self._diag_error("model", f"{self.model_error}: not planning", now_s)
        for r in self.sync.on_clock(now_s).released:   # the clock moved on without its odometry
            self._process(r)
        timeout = self.cfg["tokens_timeout_s"]
        if self._first_clock_s is None:
            self._first_clock_s = now_s
        if self.last_tokens_s is None:
            if now_s - self._first_clock_s > timeout:
                self._diag_error("tokens", f"tokens: no agent tokens received (timeout {timeout:.2f} s): no plan",
                                 now_s)
        elif now_s - self.last_tokens_s > timeout:
            self._diag_error("tokens", f"tokens: stale, last ones {now_s - self.last_tokens_s:.2f} s ago "
                             f"(timeout {timeout:.2f} s): no plan", now_s)

    # ---------------------------------------------------------------- pairing with the image
    def _process(self, r: Release) -> None:
        while self._parked:                      # an older frame first, with what it has
            self._plan(self._parked.pop(0)[0])
        if (self.cfg["image_wait_s"] > 0.0 and self.images.nearest(r.stamp_s, self.cfg["sync_slop_s"]) is None
                and self.images.may_still_arrive(r.stamp_s, self.cfg["sync_slop_s"])):
            self._parked.append((r, time.monotonic()))
            return
        self._plan(r)

    def _release_parked(self) -> None:
        slop = self.cfg["sync_slop_s"]
        while self._parked:
            r, since = self._parked[0]
            if (self.images.nearest(r.stamp_s, slop) is None and self.images.may_still_arrive(r.stamp_s, slop)
                    and time.monotonic() - since <= self.cfg["image_wait_s"]):
                return
            self._parked.pop(0)
            self._plan(r)

    # ---------------------------------------------------------------- planning
    def _image_of(self, stamp_s: float) -> tuple[np.ndarray | None, str]:
        """(RGB image within the slop or None, why not)."""
        from tps_inference.conversions import ConversionError, image_to_array

        hit = self.images.nearest(stamp_s, self.cfg["sync_slop_s"])
        if hit is None:
            newest = self.images.newest_stamp_s
            return None, ("no camera image received" if newest is None else
                          f"no camera image within {self.cfg['sync_slop_s']:.3f} s of the tokens' stamp "
                          f"{stamp_s:.3f} s (newest {newest:.3f} s)")
        msg = hit[1]
        if msg.encoding not in CAMERA_ENCODINGS:
            raise InputError("image", f"encoding '{msg.encoding}' is not one of {list(CAMERA_ENCODINGS)}")
        try:
            img = image_to_array(msg)
        except ConversionError as exc:
            raise InputError("image", f"malformed image: {exc}") from exc
        if img.ndim != 3 or img.shape[0] < 2 or img.shape[1] < 2:
            raise InputError("image", f"image of shape {img.shape} is too small")
        img = img[..., :3]
        return np.ascontiguousarray(img[..., ::-1] if msg.encoding.startswith("bgr") else img), ""

    def _plan(self, r: Release) -> None:
        t0 = time.perf_counter()
        msg: AgentTokens = r.payload
        stamp = r.stamp_s
        try:
            self._check_inputs(msg, r)
            image, image_note = self._image_of(stamp)
            if image is None and self.cfg["camera_required"]:
                raise InputError("image", image_note)
            pose = r.pose
            prev = next(((p.stamp_s, p.speed_mps, p.yaw) for p in reversed(self.sync.poses.poses)
                         if p.stamp_s < stamp - 1e-6), None)
            accel, yaw_rate = ego_motion(pose.speed_mps, pose.yaw, stamp, prev)
            pose_arr = np.array([pose.x, pose.y, pose.yaw])
            stop_line = route_stop_line_m(self.light_heads, self.route_xy, pose_arr)
            anchored = self._anchored_route(pose_arr)
            code, geom, qerr, ids = conv.tokens_to_arrays(msg)
            ins = self.instruction
            res = self.core.update(stamp_s=stamp, pose=pose_arr, speed_mps=pose.speed_mps, accel_mps2=accel,
                                   yaw_rate_rps=yaw_rate, route_xy=anchored.xy, stop_line_m=stop_line,
                                   text=ins.text, target_speed_mps=float(ins.target_speed_mps), tok_code=code,
                                   tok_geom=geom, tok_qerr=qerr, tok_id=ids, image=image)
        except InputError as exc:
            self._diag_error(exc.input, f"{exc}: no plan", stamp)
            return
        except Exception as exc:  # noqa: BLE001 - a model failure must not kill the node
            self._diag_error("model", f"model: planner failed on the frame of {stamp:.3f} s: "
                             f"{type(exc).__name__}: {exc}: no plan", stamp)
            return
        # forecasts and scene before the candidate: the monitor's cycle is triggered by the candidate
        self.pub_forecasts.publish(conv.forecasts_to_msg(res, msg.header.frame_id or "base_link"))
        self.pub_scene.publish(conv.scene_to_msg(res, msg.header.frame_id or "base_link"))
        self.pub_traj.publish(conv.trajectory_to_msg(res.trajectory))
        if self.cfg["publish_markers"]:
            self.pub_markers.publish(conv.planner_markers(res, pose_arr))
        self.planned += 1
        self._report(res, r, image_note, (time.perf_counter() - t0) * 1e3, accel, yaw_rate, len(msg.tokens),
                     anchored)

    def _anchored_route(self, pose_arr: np.ndarray) -> AnchoredRoute:
        if self.anchor is None:
            return AnchoredRoute(self.route_xy, "", 0.0, self.anchor_note or "route as given")
        out = self.anchor.route_for(pose_arr)
        return out if not self.anchor_note else AnchoredRoute(out.xy, out.lane_id, out.offset_m, self.anchor_note)

    def _check_inputs(self, msg: AgentTokens, r: Release) -> None:
        """Raise InputError naming the first input that keeps this frame from being planned."""
        if self.core is None:
            raise InputError("model", self.model_error)
        if msg.status not in USABLE_TOKEN_STATUS:
            raise InputError("tokens", f"perception reported status {msg.status} ({msg.status_message or 'no reason'})")
        expected = self.cfg["expected_tokens_frame"]
        if expected and msg.header.frame_id != expected:
            raise InputError("tokens", f"frame '{msg.header.frame_id}' is not '{expected}'")
        if int(msg.codebook_size) != int(self.core.cfg.codebook_size):
            raise InputError("tokens", f"codebook size {msg.codebook_size} is not the planner's "
                             f"{self.core.cfg.codebook_size}")
        age = self.clock_s - r.stamp_s
        if age > self.cfg["max_input_age_s"]:
            raise InputError("tokens", f"stale: stamp {r.stamp_s:.3f} s is {age:.2f} s behind the clock "
                             f"(max {self.cfg['max_input_age_s']:.2f} s)")
        if r.pose is None:
            raise InputError("odometry", f"no odometry within {self.cfg['sync_slop_s']:.3f} s of the tokens' stamp "
                             f"{r.stamp_s:.3f} s" + ("" if self.sync.latest_pose is None else
                                                     f" (newest {self.sync.latest_pose.stamp_s:.3f} s)"))
        if self.route_xy is None:
            raise InputError("route", self.route_error)
        if self.cfg["require_lane_map"] and self.lane_map is None:
            raise InputError("lane_map", "no usable lane map yet (require_lane_map): no plan until one arrives")
        if self.instruction is None:
            raise InputError("instruction", self.instruction_error)

    def _report(self, res, r: Release, image_note: str, ms: float, accel: float, yaw_rate: float,
                n_tokens: int, anchored: AnchoredRoute) -> None:
        notes = [n for n in (r.note if r.pose_kind is not PoseKind.EXACT else "", image_note, self.light_note,
                             self.backend_note) if n]
        level = diag.WARN if (r.pose_kind is not PoseKind.EXACT or image_note or self.backend_note) else diag.OK
        end = res.plan_base[-1]
        values = {
            "tokens": n_tokens, "agents": len(res.agents), "camera": res.camera_used,
            "pose": r.pose_kind.value, "ego_speed_mps": r.pose.speed_mps, "ego_accel_mps2": accel,
            "ego_yaw_rate_rps": yaw_rate,
            "stop_line_m": res.stop_line_m if res.stop_line_m is not None else float("inf"),
            "instruction": self.instruction.text, "plan_end_x_m": float(end[0]), "plan_end_y_m": float(end[1]),
            "plan_speed_end_mps": float(res.trajectory.speed_mps[-1]),
            "confidence": float(res.trajectory.confidence), "scene": int(res.scene), "light": int(res.light),
            "lead_agent_id": res.lead_agent_id if res.lead_agent_id is not None else -1, "plans": self.planned,
            "backend": self.core.runtime.description,
            "lateral_shift_m": float(res.lateral_shift_m),
            "route_lane": anchored.lane_id, "route_shift_m": anchored.offset_m, "route_note": anchored.note,
        }
        c = res.consistency
        stamp = seconds_to_time(res.stamp_s)
        name = self.get_name()
        statuses = [
            diag.status(f"{name}: planning", level, "; ".join(notes) or "ok", values),
            diag.status(f"{name}: rationale", diag.OK if c.consistent else diag.WARN,
                        "consistent" if c.consistent else "; ".join(c.violations),
                        {"consistent": c.consistent, "consistency_score": float(c.score),
                         "claims": len(res.rationale.claims), "violations": len(c.violations),
                         "rationale": res.rationale.text}),
            diag.processing_time_status(name, ms, self.cfg["processing_budget_ms"],
                                        self.cfg["processing_error_budget_ms"], res.timings_ms),
        ]
        self.pub_diag.publish(diag.array(stamp, statuses))

    def _diag(self, stamp, aspect: str, level: int, text: str, values: dict) -> None:
        self.pub_diag.publish(diag.array(stamp, [diag.status(f"{self.get_name()}: {aspect}", level, text, values)]))

    def _diag_error(self, aspect: str, text: str, stamp_s: float | None = None) -> None:
        stamp = seconds_to_time(stamp_s) if stamp_s is not None else self.get_clock().now().to_msg()
        self._diag(stamp, aspect, diag.ERROR, text, {"input": aspect})
        self.get_logger().error(text, throttle_duration_sec=2.0)


NODE_CLASS = PlannerNode


def main(args=None) -> None:
    """Console script ``planner_node``: exits at once after a clean stop (torch and transformers
    take seconds to tear down: tps_common.node.exit_now)."""
    exit_now(run_node(NODE_CLASS, "planner_node", args))


if __name__ == "__main__":
    main()
