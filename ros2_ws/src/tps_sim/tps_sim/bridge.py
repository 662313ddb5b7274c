"""ROS-free core of the simulator bridge: world + sensors + faults, the synchronous step protocol,
step bookkeeping, timeouts and the per-step episode log.

The node (``tps_sim.nodes.sim_bridge``) only converts what this core returns into messages and
publishes them; the recorder (``tps_sim.recording``) drives the same core without DDS.

Synchronous protocol (docs/CONTRACTS.md "Synchronous closed loop")
--------------------------------------------------------------------
After :meth:`SimBridge.start` / each step, the core holds the current step k with published
stamp t_k. :meth:`SimBridge.submit_control` accepts the *first* control whose stamp >= t_k (older
stamps are stale and ignored; malformed ones are rejected or clamped with a named problem).
:meth:`SimBridge.poll` then advances one step with it. When no such control arrived within
``sync_timeout_s`` of wall time, ``poll`` advances with the previous control, counts a step
timeout and adds the event ``step_timeout`` to the next step's ground truth. Until the very first
control arrives (controller still starting), ``poll`` instead returns the current frame again to
be re-published (``Frame.republished``), for at most ``wait_for_controller_s``; no timeout is
counted while waiting. :meth:`SimBridge.hold_start` extends that wait past the first control
(the node holds step 0 until the nodes named in ``wait_for_nodes`` subscribed to its outputs,
matched their readers and answered step 0, e.g. perception and the planner loading their models):
step 0 is re-published and the first control stays pending until the hold is lifted; the hold has
no time limit of its own (the node bounds each of its stages). With
``ego_driver = "expert"`` (SUMO drives) or ``synchronous = False``
the core steps every ``step_period_s`` of wall time regardless of controls; free-running with the
external driver applies the newest control received (any stamp) at each step.

Everything that decides *what* the world does (which control is applied to which step) depends
only on the message stamps and the seed, never on wall-clock timing -- except a step timeout,
which is counted and reported -- so a closed-loop run without timeouts is bit-for-bit repeatable.

Episode log
-----------
With the ``episode_log`` parameter set, every step is appended to a
:class:`tps_sim.episode_log.EpisodeLog` and written when the episode ends; the format (keys,
shapes, units) and its validating reader are documented in :mod:`tps_sim.episode_log`.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from tps_common.levels import ERROR, OK, WARN
from tps_common.params import ParameterError

from tps_sim.episode_log import EpisodeLog
from tps_sim.sensors.rig import (
    BASE_FRAME,
    CAMERA_FRAME,
    CAMERA_MOUNT,
    LIDAR_FRAME,
    LIDAR_MOUNT,
    MAP_FRAME,
    VEHICLE_FRAME,
    SensorRig,
)

EGO_DRIVERS = ("external", "expert")
CONTROL_LIMITS = {"throttle": (0.0, 1.0), "steer": (-1.0, 1.0), "brake": (0.0, 1.0)}
NEUTRAL_CONTROL = {"throttle": 0.0, "steer": 0.0, "brake": 0.0, "hand_brake": False,
                   "reverse": False}
# Seed offsets so the world, the lidar noise and the faults draw from independent streams.
LIDAR_SEED_OFFSET = 1_000_003
FAULT_SEED_OFFSET = 2_000_003


@dataclass(frozen=True)
class BridgeParams:
    """Configuration of one bridge episode (see config/sim_bridge.param.yaml for units)."""

    scenario: str = "highway"
    seed: int = 0
    density: float = 1.0
    clutter: str = "medium"
    ego_driver: str = "external"
    duration_s: float = 30.0
    dt_s: float = 0.1
    synchronous: bool = True
    sync_timeout_s: float = 1.0
    step_period_s: float = 0.1
    wait_for_controller_s: float = 30.0
    wait_for_nodes: str = ""
    lidar_enabled: bool = True
    lidar_beams: int = 32
    lidar_azimuth_steps: int = 1024
    camera_enabled: bool = False
    camera_every_n: int = 1
    faults: str = ""
    obstacles: str = ""
    adversary: str = ""
    instruction: str = ""
    exit_on_end: bool = False
    exit_linger_s: float = 0.5
    episode_log: str = ""
    # Frame names and sensor mounts (tps_sim.sensors.rig.SensorRig: /tf_static and the sensor
    # models): carla-ros-bridge's names; mounts x, y, z [m], roll, pitch, yaw [rad] in base_link.
    map_frame: str = MAP_FRAME
    vehicle_frame: str = VEHICLE_FRAME
    base_frame: str = BASE_FRAME
    lidar_frame: str = LIDAR_FRAME
    camera_frame: str = CAMERA_FRAME
    lidar_mount: tuple[float, ...] = LIDAR_MOUNT
    camera_mount: tuple[float, ...] = CAMERA_MOUNT

    @classmethod
    def from_values(cls, values: dict) -> BridgeParams:
        """Build from a dict of (already schema-validated) values; unknown keys are ignored."""
        names = {f for f in cls.__dataclass_fields__}
        params = cls(**{k: (tuple(v) if k.endswith("_mount") else v)
                        for k, v in values.items() if k in names})
        SensorRig.from_values(asdict(params))  # frame names and mounts, naming the parameter
        if params.ego_driver not in EGO_DRIVERS:
            raise ParameterError(f"parameter 'ego_driver' = {params.ego_driver!r} is not one of "
                                 f"{list(EGO_DRIVERS)}")
        from tps_sim.world import SCENARIOS

        if params.scenario not in SCENARIOS:
            raise ParameterError(f"parameter 'scenario' = {params.scenario!r} is not one of "
                                 f"{sorted(SCENARIOS)}")
        parse_faults(params.faults)  # raise early, naming the parameter
        parse_obstacles(params.obstacles)
        parse_adversary(params.adversary)
        problem = SCENARIOS[params.scenario].instruction_problem(params.instruction)
        if problem is not None:
            raise ParameterError(f"parameter 'instruction' = {problem}")
        return params


def _load_text_or_file(name: str, text: str) -> Any:
    """Parse a parameter holding YAML/JSON text or a path to such a file (None when empty)."""
    import yaml

    text = (text or "").strip()
    if not text:
        return None
    path = Path(text)
    if len(text) < 4096 and "\n" not in text and path.suffix in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise ParameterError(f"parameter '{name}': file {text!r} does not exist")
        text = path.read_text()
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ParameterError(f"parameter '{name}': not valid YAML/JSON: {exc}") from exc


def parse_faults(text: str):
    """``faults`` parameter -> ``SensorFaultConfig`` (None when empty).

    Raises:
        ParameterError: naming ``faults`` and what is wrong (unknown fault key, bad value).
    """
    values = _load_text_or_file("faults", text)
    if values is None:
        return None
    if not isinstance(values, dict):
        raise ParameterError(f"parameter 'faults' must be a mapping of fault settings, got {values!r}")
    from tps_sim.sensors.faults import SensorFaultConfig

    try:
        return SensorFaultConfig.from_dict(values)
    except (ValueError, TypeError) as exc:
        raise ParameterError(f"parameter 'faults': {exc}") from exc


def parse_obstacles(text: str) -> tuple[dict, ...]:
    """``obstacles`` parameter (JSON/YAML list of obstacle dicts, or a file) -> tuple of dicts."""
    values = _load_text_or_file("obstacles", text)
    if values is None:
        return ()
    if isinstance(values, dict):
        values = [values]
    if not isinstance(values, list) or not all(isinstance(v, dict) for v in values):
        raise ParameterError(f"parameter 'obstacles' must be a list of objects, got {values!r}")
    return tuple(values)


def parse_adversary(text: str) -> dict:
    """``adversary`` parameter (JSON/YAML mapping of WorldConfig.adversary overrides, or a file)
    -> dict (the world validates names and ranges against the scenario)."""
    values = _load_text_or_file("adversary", text)
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ParameterError(f"parameter 'adversary' must be a mapping of adversary parameters, "
                             f"got {values!r}")
    return dict(values)


@dataclass(frozen=True)
class ControlVerdict:
    """What :meth:`SimBridge.submit_control` did with a control message.

    ``status`` is one of ``accepted``, ``stale`` (stamp older than the current step), ``duplicate``
    (a control for this step was already accepted), ``latched`` (free-running mode: applied at the
    next step unless a newer one arrives), ``ignored`` (expert mode),
    ``rejected`` (malformed: not applied). ``problems`` lists (level WARN | ERROR of
    :mod:`tps_common.levels`, text naming
    the field) for clamped or rejected fields.
    """

    status: str
    problems: tuple[tuple[str, str], ...] = ()
    control: dict | None = None


def sanitize_control(fields_in: dict) -> tuple[dict | None, list[tuple[str, str]]]:
    """Check a control's fields: non-finite throttle/steer/brake -> rejected (ERROR, None
    returned); out-of-range values -> clamped (WARN). Returns (control or None, problems)."""
    problems: list[tuple[str, str]] = []
    out = dict(NEUTRAL_CONTROL)
    for name, (lo, hi) in CONTROL_LIMITS.items():
        value = fields_in.get(name, 0.0)
        try:
            value = float(value)
        except (TypeError, ValueError):
            problems.append((ERROR, f"control field '{name}' is not a number ({value!r})"))
            continue
        if not math.isfinite(value):
            problems.append((ERROR, f"control field '{name}' is {value} (not finite): "
                                      "control rejected"))
            continue
        if value < lo or value > hi:
            problems.append((WARN, f"control field '{name}' = {value:.4g} out of range "
                                     f"[{lo}, {hi}]: clamped"))
            value = min(max(value, lo), hi)
        out[name] = value
    out["hand_brake"] = bool(fields_in.get("hand_brake", False))
    out["reverse"] = bool(fields_in.get("reverse", False))
    if any(level == ERROR for level, _ in problems):
        return None, problems
    return out, problems


@dataclass(frozen=True, eq=False)
class Frame:
    """What to publish for one step.

    Attributes:
        step: step index; t_s: its sim time [s]; stamp_s: the stamp to publish (t_s plus the
            clock-jump fault offset) [s].
        state: the world's ``WorldState``.
        scene: the ``Scene3D`` the sensors saw.
        lidar_points: (N, 4) float32 x, y, z, intensity in ``ego_vehicle/lidar`` to publish now,
            or None (disabled or dropped by a fault). With a delay fault it is an older scan.
        lidar_stamp_s: stamp of ``lidar_points`` [s].
        lidar_hit_id: (N,) int64 box id each point hit (ground: the lidar's GROUND_ID), for labels;
            None with ``lidar_points``.
        image: (H, W, 3) uint8 RGB or None; image_stamp_s its stamp [s].
        control: the control applied to reach this step (NEUTRAL_CONTROL at step 0).
        events: ground-truth events of this step.
        republished: True when this is the same step sent again while waiting for a controller.
    """

    step: int
    t_s: float
    stamp_s: float
    state: Any
    scene: Any
    lidar_points: np.ndarray | None
    lidar_stamp_s: float
    lidar_hit_id: np.ndarray | None
    image: np.ndarray | None
    image_stamp_s: float
    control: dict
    events: tuple[str, ...]
    republished: bool = False


@dataclass
class BridgeStats:
    """Counters reported in diagnostics and the episode log."""

    steps: int = 0
    step_timeouts: int = 0
    controls_received: int = 0
    stale_controls: int = 0
    duplicate_controls: int = 0
    malformed_controls: int = 0
    clamped_controls: int = 0
    republished_frames: int = 0
    last_e2e_latency_s: float = float("nan")
    end_reason: str = ""


@dataclass
class _Pending:
    control: dict
    received_wall_s: float


@dataclass
class _Clock:
    """Wall-clock bookkeeping of the current step."""

    published_wall_s: float = 0.0
    started_wall_s: float = 0.0


class SimBridge:
    """The bridge's core: owns the world, the sensor models and the fault injector, and decides
    when to step. Wall times are passed in (``now_s``, e.g. ``time.monotonic()``) so the core is
    testable without sleeping."""

    def __init__(self, params: BridgeParams, *, world=None) -> None:
        from tps_sim.world import ConfigError, SimWorld, WorldConfig

        self.params = params
        self.faults_config = parse_faults(params.faults)
        self.obstacles = parse_obstacles(params.obstacles)
        if world is None:
            cfg = WorldConfig(scenario=params.scenario, seed=params.seed, density=params.density,
                              clutter=params.clutter, ego_driver=params.ego_driver,
                              duration_s=params.duration_s, dt_s=params.dt_s,
                              obstacles=self.obstacles,
                              adversary=parse_adversary(params.adversary), instruction=params.instruction)
            try:
                world = SimWorld(cfg)
            except ConfigError as exc:
                raise ParameterError(f"bad world configuration: {exc}") from exc
        self.world = world
        # One source of truth for frame names and mounts: the sensor models and /tf_static.
        self.rig = SensorRig.from_values(asdict(params))
        self.lidar = None
        if params.lidar_enabled:
            from tps_sim.sensors.lidar import LidarModel, LidarParams

            try:
                self.lidar = LidarModel(LidarParams(beams=params.lidar_beams,
                                                    azimuth_steps=params.lidar_azimuth_steps,
                                                    mount=self.rig.lidar_mount))
            except ValueError as exc:
                raise ParameterError(f"parameter 'lidar_beams'/'lidar_azimuth_steps': {exc}") from exc
        self.camera = None
        self.camera_info_fields: dict | None = None
        if params.camera_enabled:
            from tps_sim.sensors.camera import CameraModel, CameraParams

            self.camera = CameraModel(CameraParams(mount=self.rig.camera_mount))
            self.camera_info_fields = self.camera.camera_info_fields()
        self.injector = None
        if self.faults_config is not None:
            from tps_sim.sensors.faults import SensorFaultInjector

            self.injector = SensorFaultInjector(self.faults_config, params.seed + FAULT_SEED_OFFSET)
        self.lidar_rng = np.random.default_rng(params.seed + LIDAR_SEED_OFFSET)
        self.stats = BridgeStats()
        self.log = EpisodeLog()
        self.frame: Frame | None = None
        self._clock = _Clock()
        self._pending: _Pending | None = None
        self._last_control = dict(NEUTRAL_CONTROL)
        self._latest_control: dict | None = None  # free-running mode: newest control
        self._next_events: list[str] = []
        self._delayed_lidar: deque = deque()
        self._delayed_image: deque = deque()
        self._step_for_delay = 0
        self._done = False
        self._closed = False
        self._lane_map = None
        self._start_held = False

    # -- episode ------------------------------------------------------------------------------
    @property
    def waits_for_control(self) -> bool:
        """True when steps wait for the controller (synchronous mode, external ego driver)."""
        return self.params.synchronous and self.params.ego_driver == "external"

    @property
    def route(self) -> np.ndarray:
        return np.asarray(self.world.route, dtype=np.float64).reshape(-1, 2)

    @property
    def instruction(self):
        return self.world.instruction

    @property
    def lane_map(self):
        """The episode's map knowledge (:class:`tps_sim.map_knowledge.LaneMapData`), built once."""
        if self._lane_map is None:
            from tps_sim.map_knowledge import lane_map_of_world

            self._lane_map = lane_map_of_world(self.world)
        return self._lane_map

    @property
    def light_heads(self) -> tuple:
        """The world's traffic-light heads (map knowledge; empty without lights)."""
        return tuple(getattr(self.world, "light_heads", ()))

    @property
    def done(self) -> bool:
        """The episode has ended (duration elapsed or route end reached)."""
        return self._done

    @property
    def current_stamp_ns(self) -> int:
        return int(round(self.frame.stamp_s * 1e9)) if self.frame is not None else 0

    @property
    def accept_from_stamp_ns(self) -> int:
        """The oldest control stamp that answers the current step: the step's own stamp, or the
        stamp of the lidar scan published with it when that is older (a sensor-delay fault
        publishes an older scan, and the stack's control carries the stamp of the data it planned
        from). Without a delay both are the same."""
        if self.frame is None:
            return 0
        stamp_s = self.frame.stamp_s
        if self.frame.lidar_points is not None and self.frame.lidar_stamp_s < stamp_s:
            stamp_s = self.frame.lidar_stamp_s
        return int(round(stamp_s * 1e9))

    def start(self, now_s: float) -> Frame:
        """Reset the world and produce step 0."""
        state = self.world.reset()
        self._clock = _Clock(published_wall_s=now_s, started_wall_s=now_s)
        frame = self._make_frame(state, dict(NEUTRAL_CONTROL), [])
        self._commit(frame, control_received=False, step_timeout=False, now_s=now_s)
        return frame

    def hold_start(self, held: bool) -> None:
        """Hold (True) or release step 0: while held, step 0 is re-published and a control
        already received stays pending, until released (the caller bounds the hold)."""
        self._start_held = bool(held)

    def _held(self) -> bool:
        return self._start_held and self.frame is not None and self.frame.step == 0

    def submit_control(self, fields_in: dict, now_s: float) -> ControlVerdict:
        """Offer a control message (fields as from ``conversions.control_fields``: stamp_ns,
        throttle, steer, brake, hand_brake, reverse)."""
        control, problems = sanitize_control(fields_in)
        problems = tuple(problems)
        if self.frame is None or self._done:
            return ControlVerdict("ignored", problems)
        stamp_ns = int(fields_in.get("stamp_ns", 0))
        free_running = not self.params.synchronous and self.params.ego_driver == "external"
        # Free-running: the newest control always wins (a controller lags by design there).
        if stamp_ns < self.accept_from_stamp_ns and not free_running:
            self.stats.stale_controls += 1
            return ControlVerdict("stale", problems)
        if control is None:
            self.stats.malformed_controls += 1
            return ControlVerdict("rejected", problems)
        self.stats.controls_received += 1
        if problems:
            self.stats.clamped_controls += 1
        if free_running:
            self._latest_control = control
            return ControlVerdict("latched", problems, control)
        if self._pending is not None:
            self.stats.duplicate_controls += 1
            return ControlVerdict("duplicate", problems, control)
        latency = now_s - self._clock.published_wall_s
        self.stats.last_e2e_latency_s = latency
        self.log.set_latency(self.frame.step, latency)
        if not self.waits_for_control:
            return ControlVerdict("ignored", problems, control)
        self._pending = _Pending(control, now_s)
        return ControlVerdict("accepted", problems, control)

    def step_due(self, now_s: float) -> bool:
        """Whether :meth:`poll` would produce a frame now."""
        if self._done or self.frame is None:
            return False
        if not self.waits_for_control:
            return now_s - self._clock.published_wall_s >= self.params.step_period_s
        if self._pending is not None and not self._held():
            return True
        return now_s - self._clock.published_wall_s >= self.params.sync_timeout_s

    def poll(self, now_s: float) -> Frame | None:
        """Advance when due; returns the new frame (or the current one to re-publish while waiting
        for the first control), or None when nothing is to be published."""
        if not self.step_due(now_s):
            return None
        if not self.waits_for_control:
            latest, self._latest_control = self._latest_control, None
            return self._advance(latest or self._last_control, now_s,
                                 control_received=latest is not None, step_timeout=False)
        held = self._held()
        if self._pending is not None and not held:
            pending, self._pending = self._pending, None
            return self._advance(pending.control, now_s, control_received=True, step_timeout=False)
        # No control within sync_timeout_s (or step 0 held).
        waiting_for_first = held or (self.stats.controls_received == 0
                                     and now_s - self._clock.started_wall_s < self.params.wait_for_controller_s)
        if waiting_for_first:
            self.stats.republished_frames += 1
            self._clock.published_wall_s = now_s
            return replace(self.frame, republished=True)
        self.stats.step_timeouts += 1
        self._next_events.append("step_timeout")
        return self._advance(self._last_control, now_s, control_received=False, step_timeout=True)

    def _advance(self, control: dict, now_s: float, *, control_received: bool,
                 step_timeout: bool) -> Frame:
        from tps_sim.world import EgoControl

        self._last_control = dict(control)
        state = self.world.step(EgoControl(throttle=control["throttle"], steer=control["steer"],
                                           brake=control["brake"], hand_brake=control["hand_brake"],
                                           reverse=control["reverse"]))
        events, self._next_events = self._next_events, []
        frame = self._make_frame(state, control, events)
        self._commit(frame, control_received=control_received, step_timeout=step_timeout,
                     now_s=now_s)
        return frame

    def _commit(self, frame: Frame, *, control_received: bool, step_timeout: bool,
                now_s: float) -> None:
        self.frame = frame
        self._pending = None
        self._clock.published_wall_s = now_s
        self.stats.steps = frame.step
        self.log.add(frame, control_received=control_received, step_timeout=step_timeout,
                     wall_time_s=now_s)
        if self.world.is_done(frame.state):
            self._done = True
            # the world's own reason first: an ego off the road (tps_sim.world.world.END_OFF_ROAD)
            # is a driving failure to score, never a world error
            world_reason = getattr(self.world, "done_reason", "")
            self.stats.end_reason = (world_reason if world_reason == "off_road"
                                     else "duration" if frame.t_s + 1e-9 >= self.params.duration_s
                                     else "route_end")

    # -- sensors and faults ---------------------------------------------------------------------
    def _make_frame(self, state, control: dict, events: list[str]) -> Frame:
        t_s = float(state.t_s)
        self._step_for_delay = int(state.step)
        # the bridge's events, then the world's ground-truth ones (e.g. off_drivable: a corner of
        # the ego off the drivable area), so the episode log and /tps/sim/ground_truth carry both
        events = list(events) + [e for e in getattr(state, "events", ()) if e not in events]
        scene = self.world.scene3d(state)
        schedule = None
        clock_offset_s = 0.0
        if self.injector is not None:
            schedule = self.injector.schedule(t_s)
            clock_offset_s = float(getattr(schedule, "clock_offset_s", 0.0) or 0.0)
            events += [f"fault:{name}" for name in self.injector.active(t_s)]
        stamp_s = t_s + clock_offset_s
        lidar_points = lidar_hit_id = None
        lidar_stamp_s = stamp_s
        if self.lidar is not None:
            from tps_sim.sensors.lidar import to_xyzi

            scan = self.lidar.scan(scene, self.lidar_rng)
            points, hit_id = to_xyzi(scan), scan.hit_id
            if self.injector is not None:
                kept, points = self.injector.lidar_mask(t_s, points)
                hit_id = hit_id[kept]
            lidar_points, lidar_hit_id, lidar_stamp_s = self._delay(
                self._delayed_lidar, (points, hit_id, stamp_s), schedule,
                getattr(schedule, "drop_lidar", False))
        image = None
        image_stamp_s = stamp_s
        every = max(1, int(self.params.camera_every_n))
        if self.camera is not None and state.step % every == 0:
            rgb = self.camera.render(scene)
            if self.injector is not None:
                rgb = self.injector.apply_camera(t_s, rgb)
            image, _, image_stamp_s = self._delay(self._delayed_image, (rgb, None, stamp_s),
                                                  schedule, getattr(schedule, "drop_camera", False))
        return Frame(step=int(state.step), t_s=t_s, stamp_s=stamp_s, state=state, scene=scene,
                     lidar_points=lidar_points, lidar_stamp_s=lidar_stamp_s,
                     lidar_hit_id=lidar_hit_id, image=image, image_stamp_s=image_stamp_s,
                     control=dict(control), events=tuple(events))

    def _delay(self, queue: deque, item: tuple, schedule, drop: bool):
        """Apply the fault schedule to one sensor message: a dropped one is never published; a
        delayed one is released ``schedule.delay_steps`` steps later with its own stamp. Returns
        the (data, aux, stamp) to publish now -- the newest released item -- or (None, None, _)."""
        step = self._step_for_delay
        delay = int(getattr(schedule, "delay_steps", 0) or 0) if schedule is not None else 0
        if not drop:
            queue.append((step + max(0, delay), item))
        due = [entry for entry in queue if entry[0] <= step]
        if not due:
            return None, None, item[2]
        for entry in due:
            queue.remove(entry)
        return due[-1][1]

    # -- end ----------------------------------------------------------------------------------
    def meta(self) -> dict:
        """Episode metadata (the episode log's meta_json)."""
        instr = self.world.instruction
        return {
            **{k: v for k, v in asdict(self.params).items() if k != "episode_log"},
            "instruction": {"text": str(instr.text), "command": int(instr.command),
                            "exit_number": int(getattr(instr, "exit_number", 0) or 0),
                            "target_speed_mps": float(getattr(instr, "target_speed_mps", -1.0))},
            **{k: v for k, v in asdict(self.stats).items()},
        }

    def abort(self, reason: str) -> None:
        """End the episode now (e.g. the world failed); ``reason`` goes to the log's end_reason."""
        self._done = True
        self.stats.end_reason = reason

    def close(self) -> Path | None:
        """Write the episode log (when configured) and close the world. Idempotent."""
        if self._closed:
            return None
        self._closed = True
        out = None
        try:
            if self.params.episode_log and self.log.rows:
                out = self.log.write(self.params.episode_log, self.meta(), self.route)
        finally:
            self.world.close()
        return out


@dataclass(frozen=True)
class StatusSummary:
    """Numbers the node reports on /diagnostics."""

    level: int            # tps_common.levels
    message: str
    values: dict = field(default_factory=dict)


def status_summary(bridge: SimBridge) -> StatusSummary:
    """The bridge's health: WARN once a step timed out or a control was malformed."""
    s = bridge.stats
    values = {"step": s.steps, "sim_time_s": f"{bridge.frame.t_s:.3f}" if bridge.frame else "0",
              "step_timeouts": s.step_timeouts, "controls_received": s.controls_received,
              "stale_controls": s.stale_controls, "malformed_controls": s.malformed_controls,
              "clamped_controls": s.clamped_controls,
              "e2e_latency_ms": f"{s.last_e2e_latency_s * 1e3:.2f}",
              "synchronous": bridge.params.synchronous, "ego_driver": bridge.params.ego_driver}
    if s.step_timeouts or s.malformed_controls:
        return StatusSummary(WARN, f"{s.step_timeouts} step timeout(s), "
                                     f"{s.malformed_controls} malformed control(s)", values)
    return StatusSummary(OK, "running" if not bridge.done else f"ended ({s.end_reason})", values)
