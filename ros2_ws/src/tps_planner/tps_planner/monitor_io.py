"""Messages -> the confidence monitor's snapshots, and its result -> messages (monitor_node).

Imports message types, never rclpy, so every conversion is testable without a running graph.
Every function that reads an input raises :class:`InputError` naming the input and why when the
message cannot be used (malformed, NaN geometry, wrong frame); the node turns that into an ERROR
diagnostic and treats the input as missing for the cycle (which the core turns into risk).

Frames: the core works in ``map``. Agent tokens and forecasts are in ``base_link`` of their
stamp (tps_msgs contracts) and are moved to ``map`` with the ego pose of that stamp; the lidar
cloud is reduced exactly as the fallback planner reduces it (same conversion, lidar mount, ground,
overhead and ego-body removal: :meth:`tps_planner.fallback.FallbackPlanner.obstacle_points_map`),
so the monitor's "obstacle points" are the fallback's.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image, PointCloud2
from std_msgs.msg import Header
from tps_common.conversions import seconds_to_time, time_to_seconds
from tps_common.diagnostics import PROCESSING_TIME_ASPECT
from tps_common.levels import ERROR
from tps_common.stamp_sync import EgoPose
from tps_msgs.msg import (
    AgentTokens,
    Forecasts,
    MonitorStatus,
    PlannedTrajectory,
    SceneUnderstanding,
    TrafficLightStates,
)

from tps_planner import conversions as conv
from tps_planner.fallback import FallbackPlanner
from tps_planner.monitor import CloudSnapshot, ForecastSnapshot, MonitorResult, PerceptionSnapshot
from tps_planner.trajectory import Trajectory

__all__ = [
    "FINITE_LIMIT",
    "InputError",
    "PlannerReport",
    "candidate_from_msg",
    "cloud_snapshot",
    "finite_value",
    "forecast_snapshot",
    "image_digest",
    "node_errors",
    "perception_snapshot",
    "planner_light_colour",
    "planner_report",
    "reader_light_colour",
    "record_line",
    "candidate_rows",
    "status_to_msg",
]

FINITE_LIMIT = 1.0e9          # a non-finite signal value is published as +-this (MonitorStatus is float32)
USABLE_TOKEN_STATUS = (AgentTokens.STATUS_OK, AgentTokens.STATUS_FAULT_INJECTED)
FAULT_FLAG = "fault injected"   # perception's message when a configured fault altered a frame
# tps_planner.vlm.layout.LIGHTS index (the planner's ``light`` diagnostic value) -> TrafficLightState
# colour; "none" (no stop line within the planner's range) -> None.
_LIGHT_OF_PLANNER_INDEX = {1: 0, 2: 1, 3: 2}   # red, yellow, green


class InputError(ValueError):
    """An input message that cannot be used this cycle; ``input`` names it (for the diagnostic)."""

    def __init__(self, input_name: str, why: str) -> None:
        super().__init__(f"{input_name}: {why}")
        self.input = input_name
        self.why = why


def _to_map(xy: np.ndarray, pose: EgoPose) -> np.ndarray:
    c, s = math.cos(pose.yaw), math.sin(pose.yaw)
    xy = np.asarray(xy, np.float64).reshape(-1, 2)
    return np.stack([pose.x + c * xy[:, 0] - s * xy[:, 1], pose.y + s * xy[:, 0] + c * xy[:, 1]], axis=1)


def _rotate(v: np.ndarray, yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    v = np.asarray(v, np.float64).reshape(-1, 2)
    return np.stack([c * v[:, 0] - s * v[:, 1], s * v[:, 0] + c * v[:, 1]], axis=1)


def _frame_pose(frame_id: str, pose: EgoPose | None, input_name: str, stamp_s: float) -> EgoPose | None:
    """The pose that moves ``frame_id`` to map (None: already map); raises when it is needed but unknown."""
    if frame_id == "map":
        return None
    if frame_id not in ("base_link", ""):
        raise InputError(input_name, f"frame '{frame_id}' is neither 'base_link' nor 'map'")
    if pose is None:
        raise InputError(input_name, f"no ego pose of the stamp {stamp_s:.3f} s to move base_link to map")
    return pose


# ---------------------------------------------------------------- candidate
def candidate_from_msg(msg: PlannedTrajectory, expected_frame: str = "map") -> tuple[Trajectory, str | None]:
    """The planner's candidate as a core Trajectory and what is wrong with it (None: nothing).

    A candidate with no points or NaN/inf values is still handed to the core, which makes it a
    critical condition with its own reason (FALLBACK); the node also raises an ERROR diagnostic
    with the returned problem. Raises InputError ``candidate_trajectory`` for a candidate in
    another frame (its numbers cannot be compared with anything: the cycle has no candidate).
    """
    traj = conv.trajectory_from_msg(msg)
    if expected_frame and traj.frame_id != expected_frame:
        raise InputError("candidate_trajectory", f"frame '{traj.frame_id}' is not '{expected_frame}'")
    if len(traj) == 0:
        return traj, "no points"
    bad = [name for name in ("t_s", "xy", "yaw", "speed_mps", "accel_mps2", "sigma_m")
           if not np.all(np.isfinite(getattr(traj, name)))]
    if not math.isfinite(traj.stamp_s):
        bad.append("stamp")
    return traj, (f"NaN/inf in {', '.join(bad)}" if bad else None)


# ---------------------------------------------------------------- perception
def perception_snapshot(msg: AgentTokens, pose: EgoPose | None) -> PerceptionSnapshot:
    """AgentTokens (base_link of its stamp) -> PerceptionSnapshot in map.

    A failure status (no input, invalid input, inference error) is passed through with no agents:
    the core turns it into risk. STATUS_FAULT_INJECTED is passed through as it is (the core treats
    it like OK). Raises InputError ``tokens`` on NaN/inf geometry, a wrong frame or no pose.
    """
    stamp = time_to_seconds(msg.header.stamp)
    status = int(msg.status)
    ms = float(msg.processing_time_ms)
    if not math.isfinite(ms):
        ms = math.inf
    _, geom, qerr, ids = conv.tokens_to_arrays(msg)
    if status not in USABLE_TOKEN_STATUS:
        geom, qerr, ids = np.zeros((0, 7)), np.zeros(0), np.zeros(0, np.int64)
    if not (np.all(np.isfinite(geom)) and np.all(np.isfinite(qerr))):
        bad = sorted({int(i) for i in ids[~(np.isfinite(geom).all(axis=1) & np.isfinite(qerr))]})
        raise InputError("tokens", f"NaN/inf geometry or quantisation error (agents {bad[:5]})")
    if np.any(geom[:, 3:5] < 0.0) or np.any(qerr < 0.0):
        raise InputError("tokens", "negative box size or quantisation error")
    to_map = _frame_pose(msg.header.frame_id, pose, "tokens", stamp) if len(ids) else None
    xy, yaw, vxy = geom[:, 0:2], geom[:, 2], geom[:, 5:7]
    if to_map is not None:
        xy = _to_map(xy, to_map)
        yaw = yaw + to_map.yaw
        vxy = _rotate(vxy, to_map.yaw)   # over-ground velocity in base_link axes -> map axes
    return PerceptionSnapshot(stamp_s=stamp, status=status, processing_time_ms=ms, agent_ids=ids.astype(np.int64),
                              xy=np.asarray(xy, np.float64).reshape(-1, 2), yaw=np.asarray(yaw, np.float64),
                              length=geom[:, 3].copy(), width=geom[:, 4].copy(),
                              vxy=np.asarray(vxy, np.float64).reshape(-1, 2), quantisation_error=qerr)


# ---------------------------------------------------------------- lidar
def cloud_snapshot(msg: PointCloud2, pose: EgoPose | None, reducer: FallbackPlanner,
                   expected_frame: str = "") -> CloudSnapshot:
    """PointCloud2 (lidar frame) -> CloudSnapshot: the fallback's obstacle points in map (``reducer``
    is a FallbackPlanner whose lidar extrinsic the caller has set), the point count and the share
    of non-finite points. NaN points are a signal, not an error. Without the ego pose of its stamp
    (``pose`` None) the counts are kept and the obstacle points are left out: the lidar is alive,
    the ego state is unknown (the node reports the odometry, the core goes critical on the ego
    state). Raises InputError ``points`` for a malformed message or a wrong frame."""
    stamp = time_to_seconds(msg.header.stamp)
    if expected_frame and msg.header.frame_id != expected_frame:
        raise InputError("points", f"cloud frame '{msg.header.frame_id}' is not '{expected_frame}'")
    try:
        xyz = conv.pointcloud_to_xyz(msg)
    except conv.ConversionError as exc:
        raise InputError("points", f"malformed point cloud: {exc}") from exc
    n = len(xyz)
    finite = np.isfinite(xyz).all(axis=1)
    nan_share = float(1.0 - finite.mean()) if n else 0.0
    if pose is None:   # the lidar is alive, its points cannot be placed: the ego state is what is unknown
        return CloudSnapshot(stamp_s=stamp, obstacle_xy=np.zeros((0, 2)), n_points=int(n), nan_share=nan_share)
    pts = reducer.obstacle_points_map(np.asarray(xyz[finite], np.float64), pose)
    return CloudSnapshot(stamp_s=stamp, obstacle_xy=np.ascontiguousarray(pts[:, :2]), n_points=int(n),
                         nan_share=nan_share)


# ---------------------------------------------------------------- forecasts
def forecast_snapshot(msg: Forecasts, pose: EgoPose | None) -> ForecastSnapshot:
    """Forecasts (base_link of their stamp) -> ForecastSnapshot in map, (A, K, T, 2). Agents with
    fewer modes are padded with zero-probability copies of their last mode, shorter modes with
    their last waypoint. Raises InputError ``forecasts`` on NaN/inf, negative probabilities,
    empty modes, a non-positive time step or a wrong frame."""
    stamp = time_to_seconds(msg.header.stamp)
    fcs = list(msg.forecasts)
    if not fcs:
        return ForecastSnapshot(stamp, np.zeros(0, np.int64), np.zeros((0, 1, 1, 2)), np.zeros((0, 1)), 0.5)
    to_map = _frame_pose(msg.header.frame_id, pose, "forecasts", stamp)
    k_max = max(len(f.modes) for f in fcs)
    t_max = max((len(m.waypoints) for f in fcs for m in f.modes), default=0)
    if k_max == 0 or t_max == 0:
        raise InputError("forecasts", "an agent forecast without modes or waypoints")
    dts = {float(f.time_step_s) for f in fcs}
    dt = min(dts)
    if not (math.isfinite(dt) and dt > 0.0) or any(not math.isfinite(d) for d in dts):
        raise InputError("forecasts", f"time step {sorted(dts)} s is not a positive finite number")
    if max(dts) - dt > 1e-6:
        raise InputError("forecasts", f"agents with different time steps {sorted(dts)} s")
    modes = np.zeros((len(fcs), k_max, t_max, 2))
    probs = np.zeros((len(fcs), k_max))
    ids = np.array([f.agent_id for f in fcs], np.int64)
    for a, f in enumerate(fcs):
        if not f.modes:
            raise InputError("forecasts", f"agent {f.agent_id} has no modes")
        for k in range(k_max):
            m = f.modes[min(k, len(f.modes) - 1)]
            wp = np.array([[p.x, p.y] for p in m.waypoints], np.float64).reshape(-1, 2)
            if len(wp) == 0:
                raise InputError("forecasts", f"agent {f.agent_id} mode {k} has no waypoints")
            modes[a, k, :len(wp)] = wp
            modes[a, k, len(wp):] = wp[-1]
            probs[a, k] = float(m.probability) if k < len(f.modes) else 0.0
    if not (np.all(np.isfinite(modes)) and np.all(np.isfinite(probs))):
        raise InputError("forecasts", "NaN/inf waypoints or probabilities")
    if np.any(probs < 0.0):
        raise InputError("forecasts", "negative mode probability")
    if to_map is not None:
        modes = _to_map(modes.reshape(-1, 2), to_map).reshape(modes.shape)
    return ForecastSnapshot(stamp_s=stamp, agent_ids=ids, modes_xy=modes, probs=probs, dt_s=dt)


# ---------------------------------------------------------------- scene
SCENE_CLASS_MAX = 6      # tps_msgs/SceneUnderstanding SCENE_URBAN
INTENT_MAX = 7           # tps_msgs/AgentRelevance INTENT_CROSSING
UNIT_SLACK = 1e-3        # a relevance or confidence "in [0, 1]" may be off by float32 rounding


def check_scene(msg: SceneUnderstanding) -> None:
    """Raise InputError ``scene`` when the planner's scene understanding is malformed: a frame other
    than ``base_link``/``map``, an unknown ``scene_class``, an agent's relevance outside [0, 1] or
    not finite, an unknown intent, an agent listed twice. The monitor only reports the scene class
    (the message is stored for that); a malformed one is not reported as if it were the planner's."""
    if msg.header.frame_id not in ("base_link", "map", ""):
        raise InputError("scene", f"frame '{msg.header.frame_id}' is neither 'base_link' nor 'map'")
    if int(msg.scene_class) > SCENE_CLASS_MAX:
        raise InputError("scene", f"unknown scene_class {int(msg.scene_class)}")
    seen = set()
    for a in msg.agents:
        r = float(a.relevance)
        if not (math.isfinite(r) and -UNIT_SLACK <= r <= 1.0 + UNIT_SLACK):
            raise InputError("scene", f"agent {a.agent_id} relevance {r} is not in [0, 1]")
        if int(a.intent) > INTENT_MAX:
            raise InputError("scene", f"agent {a.agent_id} has an unknown intent {int(a.intent)}")
        if a.agent_id in seen:
            raise InputError("scene", f"agent {a.agent_id} listed twice")
        seen.add(a.agent_id)


# ---------------------------------------------------------------- traffic lights
LIGHT_STATE_MAX = 4      # tps_msgs/TrafficLightState UNKNOWN
LIGHT_REASON_MAX = 6     # tps_msgs/TrafficLightState REASON_NO_CALIBRATION


def check_light_states(msg: TrafficLightStates) -> None:
    """Raise InputError ``traffic_lights`` when the reader's message is malformed: a frame other than
    ``map``, an unknown state or reason, a confidence outside [0, 1] or not finite, a non-finite
    stop-line distance, a light listed twice. Such a reading is not a colour (the cycle treats the
    light input as missing)."""
    if msg.header.frame_id not in ("map", ""):
        raise InputError("traffic_lights", f"frame '{msg.header.frame_id}' is not 'map'")
    seen = set()
    for li in msg.lights:
        if int(li.state) > LIGHT_STATE_MAX:
            raise InputError("traffic_lights", f"light {li.id} has an unknown state {int(li.state)}")
        if int(li.reason) > LIGHT_REASON_MAX:
            raise InputError("traffic_lights", f"light {li.id} has an unknown reason {int(li.reason)}")
        c = float(li.confidence)
        if not (math.isfinite(c) and -UNIT_SLACK <= c <= 1.0 + UNIT_SLACK):
            raise InputError("traffic_lights", f"light {li.id} confidence {c} is not in [0, 1]")
        if not math.isfinite(float(li.distance_to_stop_line_m)):
            raise InputError("traffic_lights", f"light {li.id} stop-line distance is not finite")
        if li.id in seen:
            raise InputError("traffic_lights", f"light {li.id} listed twice")
        seen.add(li.id)


def reader_light_colour(msg: TrafficLightStates, range_m: float = 80.0, min_confidence: float = 0.5) -> int | None:
    """The classical reader's colour of the light governing the ego lane: the nearest stop line on
    the route ahead (the reader lists them nearest first; ``0 <= distance <= range_m``, the
    planner's stop-line range). A reading below ``min_confidence`` is UNKNOWN (4), as the
    fallback's traffic rule treats it. None: no stop line within range (no light governs)."""
    for li in msg.lights:
        d = float(li.distance_to_stop_line_m)
        if math.isfinite(d) and 0.0 <= d <= range_m:
            conf = float(li.confidence)
            if int(li.state) in (0, 1, 2) and math.isfinite(conf) and conf >= min_confidence:
                return int(li.state)
            return 4
    return None


def planner_light_colour(value: str | None) -> int | None:
    """The planner's ``light`` diagnostic value (tps_planner.vlm.layout.LIGHTS index: 0 none,
    1 red, 2 yellow, 3 green) -> TrafficLightState colour (RED 0, YELLOW 1, GREEN 2); None when it
    says "none" or the value is missing/unreadable."""
    try:
        return _LIGHT_OF_PLANNER_INDEX.get(int(float(value)))
    except (TypeError, ValueError, OverflowError):
        return None


# ---------------------------------------------------------------- diagnostics
@dataclass(frozen=True)
class PlannerReport:
    """What the planner said about one frame on /diagnostics (its ``rationale`` and ``planning``
    statuses, both stamped with the frame's stamp)."""

    consistent: bool | None = None
    consistency_score: float | None = None
    light: int | None = None          # TrafficLightState colour the planner believes governs the ego lane
    has_light: bool = False           # a ``planning`` status was seen (``light`` None then means "none")


def _truthy(text: str) -> bool | None:
    t = text.strip().lower()
    if t in ("true", "1", "yes"):
        return True
    if t in ("false", "0", "no"):
        return False
    return None


def planner_report(msg: DiagnosticArray, planner_name: str, previous: PlannerReport | None = None
                   ) -> tuple[PlannerReport | None, list[str]]:
    """The planner's report in ``msg`` merged into ``previous`` (the other status of the same stamp
    may have come in an earlier array), or None when ``msg`` has none; plus the problems found
    (unreadable values) for an ERROR diagnostic."""
    rep = previous or PlannerReport()
    found, problems = False, []
    for st in msg.status:
        if st.name == f"{planner_name}: rationale":
            kv = {v.key: v.value for v in st.values}
            consistent = _truthy(kv.get("consistent", ""))
            try:
                score = float(kv["consistency_score"])
            except (KeyError, ValueError):
                score = None
            if score is not None and not math.isfinite(score):
                problems.append(f"consistency_score '{kv.get('consistency_score')}' is not finite")
                score = None
            if consistent is None:
                problems.append(f"'consistent' = {kv.get('consistent')!r} is not a boolean")
            rep = PlannerReport(consistent, score, rep.light, rep.has_light)
            found = True
        elif st.name == f"{planner_name}: planning":
            kv = {v.key: v.value for v in st.values}
            if "light" in kv:
                rep = PlannerReport(rep.consistent, rep.consistency_score, planner_light_colour(kv["light"]), True)
                found = True
    return (rep if found else None), problems


def node_errors(msg: DiagnosticArray, own_name: str, ignore_prefixes: tuple[str, ...] = (),
                processing_time: bool = True) -> list[str]:
    """``"<status name>: <message>"`` of every ERROR status in ``msg`` from another node, except the
    ones that only flag an injected fault (an evaluation flag, never raised on a vehicle), names
    starting with one of ``ignore_prefixes`` and, without ``processing_time``, the
    ``<node>: processing_time`` statuses (wall-clock overruns: ``processing_time_health``)."""
    out = []
    for st in msg.status:
        level = st.level[0] if isinstance(st.level, (bytes, bytearray)) else int(st.level)
        if level != ERROR or st.name.startswith(f"{own_name}:"):
            continue
        if not processing_time and st.name.endswith(f": {PROCESSING_TIME_ASPECT}"):
            continue
        if any(st.name.startswith(p) for p in ignore_prefixes if p):
            continue
        if FAULT_FLAG in st.message.lower():
            continue
        out.append(f"{st.name}: {st.message}")
    return out


# ---------------------------------------------------------------- camera
def image_digest(msg: Image, black_threshold: float) -> tuple[str, bool]:
    """(hash of the image bytes and geometry, black: mean intensity below ``black_threshold`` on
    0..255). Raises InputError ``image`` for an empty or truncated image."""
    data = bytes(msg.data)
    if msg.height == 0 or msg.width == 0 or not data:
        raise InputError("image", f"empty image ({msg.width}x{msg.height}, {len(data)} bytes)")
    if msg.step * msg.height > len(data):
        raise InputError("image", f"{len(data)} bytes < step {msg.step} x height {msg.height}")
    h = hashlib.blake2b(data, digest_size=16)
    h.update(f"{msg.width}x{msg.height}:{msg.encoding}".encode())
    arr = np.frombuffer(data, np.uint8)
    if msg.encoding.endswith("16"):
        mean = float(arr.view(np.uint16 if len(arr) % 2 == 0 else np.uint8).mean()) / 257.0
    else:
        mean = float(arr.mean())
    return h.hexdigest(), mean < black_threshold


# ---------------------------------------------------------------- outputs
def finite_value(v: float) -> float:
    """A signal value as MonitorStatus carries it: NaN -> +FINITE_LIMIT (unknown = worst),
    +-inf and beyond -> +-FINITE_LIMIT."""
    v = float(v)
    if math.isnan(v):
        return FINITE_LIMIT
    return max(-FINITE_LIMIT, min(FINITE_LIMIT, v))


def status_to_msg(res: MonitorResult) -> MonitorStatus:
    """MonitorResult -> MonitorStatus (stamp = the cycle's stamp; non-finite values clamped)."""
    msg = MonitorStatus(header=Header(stamp=seconds_to_time(res.stamp_s), frame_id="map"))
    msg.state = int(res.state)
    c = float(res.certainty)
    msg.certainty = float(min(max(c, 0.0), 1.0)) if math.isfinite(c) else 0.0
    msg.signal_names = [str(n) for n in res.signal_names]
    msg.signal_values = [finite_value(v) for v in res.signal_values]
    msg.reasons = [str(r) for r in res.reasons]
    return msg


def _json_number(v: float) -> float | str:
    v = float(v)
    return v if math.isfinite(v) else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))


def record_line(res: MonitorResult, planner_present: bool, candidate: Trajectory | None = None) -> str:
    """One JSON line per cycle for the conformal calibration: a record of
    ``tps_planner.monitor_calibration`` less ``incident`` and ``episode`` (the evaluation adds them):
    ``t_s`` (= ``stamp_s``), ``certainty``, ``critical`` (bool) and ``signals``, plus ``state``,
    ``risks``, ``critical_signals``, ``reasons``, ``candidate`` (False: a cycle without one) and
    ``warming_up`` (the inputs had not all started: the calibration counts those cycles apart).
    Non-finite numbers are written as the strings "inf", "-inf", "nan" (``float()`` reads them).
    With the judged ``candidate``, ``cand`` holds its points as rows ``t, x, y, yaw, speed`` (t from
    the cycle's stamp, map frame; see :func:`candidate_rows`): the evaluation asks whether it
    would have collided (``tps_eval.candidate_collision``)."""
    line = {
        "stamp_s": res.stamp_s, "t_s": res.stamp_s, "state": int(res.state),
        "certainty": _json_number(res.certainty), "critical": bool(res.critical),
        "signals": {n: _json_number(v) for n, v in zip(res.signal_names, res.signal_values, strict=True)},
        "risks": {n: _json_number(r) for n, r in zip(res.signal_names, res.risks, strict=True)},
        "critical_signals": list(res.critical), "reasons": list(res.reasons), "candidate": planner_present,
        "warming_up": bool(getattr(res, "warming_up", False)),
    }
    rows = candidate_rows(candidate, res.stamp_s)
    if rows is not None:
        line["cand"] = rows
    return json.dumps(line, separators=(",", ":"))


def candidate_rows(candidate: Trajectory | None, stamp_s: float) -> list[list[float]] | None:
    """The candidate's points as rows ``t, x, y, yaw, speed`` (t from ``stamp_s``, s; mm / mrad
    resolution) for the cycle record; None without a candidate or with a non-finite value (such a
    candidate is unusable, and the record says so through ``critical_signals``)."""
    if candidate is None or not len(candidate):
        return None
    cols = np.column_stack([np.asarray(candidate.t_s, float) + (float(candidate.stamp_s) - float(stamp_s)),
                            np.asarray(candidate.xy, float).reshape(-1, 2), np.asarray(candidate.yaw, float),
                            np.asarray(candidate.speed_mps, float)])
    if not np.isfinite(cols).all():
        return None
    return [[round(float(v), 3) for v in row] for row in cols]
