"""Spatial-certainty confidence monitor (core; no ROS imports).

Once per cycle the monitor turns the planner's candidate trajectory, the perception, forecast,
raw-cloud and health inputs into named **signals** (:mod:`tps_planner.monitor_signals`), maps each
signal to a **risk** in [0, 1] by a linear ramp between an "ok" and a "bad" value, and combines the
risks into a **certainty**

    certainty = prod_i (1 - w_i * risk_i),   w_i in [0, 1]

Rationale for the product rule: it is monotone (any risk rising never raises the certainty), it
is 1 only when every weighted risk is 0, a single signal at full risk with weight 1 drives it to
0 on its own (a noisy-OR of independent failure causes), and several moderate risks compound
instead of averaging each other away, which a weighted mean would do.

Some conditions are **critical** and force FALLBACK regardless of the certainty (planner silent
beyond its timeout, a NaN/empty candidate, unexplained occupancy in the stopping corridor, an
off-road candidate, perception dead, perception blind -- answering but seeing nothing while tracks
near the ego vanished or the raw cloud shows objects on the road, for ``blind_persist_s``; the
classical light reader seeing RED or YELLOW for the ego's lane while the planner reads GREEN or its
rationale and action disagree, ``light_red_critical``: the plan was conditioned on a light the
fallback would stop for, or says it stops and does not; the candidate braking hard with no cause
in view -- no agent within a headway, no junction, crosswalk, light or bend -- for
``brake_check_cycles`` cycles, ``brake_check``: phantom braking); a
failure of the *fallback's own* input (the raw lidar cloud stale, empty or mostly NaN) forces
MINIMAL_RISK.

State machine (``update``): NOMINAL -> DEGRADED (certainty < tau_degraded) -> FALLBACK
(certainty < tau_fallback or critical) -> MINIMAL_RISK (fallback input dead, or FALLBACK lasting
longer than ``max_fallback_s`` with certainty below ``tau_mrm`` while a critical condition beyond
the planner's own output, ``PLANNER_CRITICALS``, is unresolved or the certainty of the scene
signals alone, ``SCENE_SIGNALS``, is below ``tau_mrm`` too: a planner that stays wrong leaves
the fallback driving, it does not stop the vehicle). A worse state is entered at once;
a better one only after the certainty has stayed at or above its threshold + ``hysteresis`` for
``recover_dwell_s`` *and* the current state has lasted ``min_dwell_s``. MINIMAL_RISK is latched
until ``mrm_recovery_s`` of nominal inputs (no critical, certainty >= tau_degraded + hysteresis)
or :meth:`ConfidenceMonitor.reset`. All times are the inputs' sim stamps (never the wall clock),
so replays are deterministic.

**Warm-up.** Until the inputs are warm -- a usable candidate, usable perception and a lidar frame
in one cycle, i.e. the planner and the detector have produced their first outputs -- the monitor
is WARMING_UP: it reports FALLBACK (MINIMAL_RISK when the fallback's own input is dead), so the
fallback drives, which is safe, with ``WARMING_UP: waiting for ...`` first in the reasons and
``MonitorResult.warming_up`` set. The cycle the inputs are warm, the state machine starts afresh
from that cycle's evidence: the dwell times and the hysteresis do not hold a start-up FALLBACK
(or a start-up MINIMAL_RISK latch) on healthy inputs. A start-up is not a fault, so what an input
that has not started yet looks like (planner silent, perception dead) is no false alarm either
(the calibration counts warm-up cycles apart). An input that has not started
``warmup_timeout_s`` after the first cycle is a failure: warm-up ends and the ordinary critical
conditions hold the state.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tps_planner import monitor_signals as ms
from tps_planner.trajectory import (
    STATE_DEGRADED,
    STATE_FALLBACK,
    STATE_MINIMAL_RISK,
    STATE_NAMES,
    STATE_NOMINAL,
    Trajectory,
)

if TYPE_CHECKING:  # pragma: no cover
    from tps_planner.lane_map import MapMask

# tps_msgs/AgentTokens.STATUS_* mirrored (no message import in the core).
PERCEPTION_STATUS_OK = 0
PERCEPTION_STATUS_NO_INPUT = 1
PERCEPTION_STATUS_INVALID_INPUT = 2
PERCEPTION_STATUS_INFERENCE_ERROR = 3
PERCEPTION_STATUS_FAULT_INJECTED = 4   # evaluation flag: treated exactly like OK

# tps_msgs/TrafficLightState colours mirrored.
LIGHT_RED = 0
LIGHT_YELLOW = 1
LIGHT_GREEN = 2
LIGHT_OFF = 3
LIGHT_UNKNOWN = 4

# nominal_points == 0: the nominal lidar point count is the median of this many first clouds.
NOMINAL_POINT_FRAMES = 10

# Signal names, in the order they appear in MonitorResult.
SIGNAL_NAMES: tuple[str, ...] = (
    "planner_sigma_mean",
    "planner_sigma_max",
    "forecast_entropy",
    "quantisation_error",
    "clearance_forecast",
    "ttc_forecast",
    "clearance_detection",
    "ttc_detection",
    "unexplained_points",
    "unexplained_distance",
    "offroad",
    "consistency",
    "light_disagreement",
    "plan_jump",
    "track_loss",
    "sensor_health",
    "kinematic",
)

# Critical conditions that concern the learned planner's output alone, not the scene or the
# fallback's inputs: while only these (and a low certainty) hold FALLBACK, the fallback -- a full
# planner on the raw cloud, the lane map and the light reader -- keeps driving however long it
# lasts. A FALLBACK that lasts max_fallback_s escalates to MINIMAL_RISK only while another
# critical condition (perception blind or dead, unexplained occupancy, an ego state or stamp
# problem, ...) is unresolved. On VAL 1000-1002 (stalled s1001, signalised s1001) the escalation
# stopped the vehicle in traffic because the planner's candidate stayed off-road or read GREEN at
# a red light for 10 s while the fallback drove (or waited) correctly.
PLANNER_CRITICALS = frozenset({"candidate", "offroad", "light_red", "collision_imminent", "planner_silent",
                               "unjustified_braking", "stopping_conflict"})
# ... or while the certainty of the signals about the scene and the sensors alone (product rule,
# the params' weights) is below tau_mrm.
SCENE_SIGNALS = ("quantisation_error", "unexplained_points", "unexplained_distance", "track_loss", "sensor_health")

# Default (ok, bad) ramp ends per signal: risk 0 at "ok", 1 at "bad" (either order: a signal where
# small is bad, like clearance, has ok > bad).
DEFAULT_RAMPS: dict[str, tuple[float, float]] = {
    "planner_sigma_mean": (0.5, 3.0),      # m
    "planner_sigma_max": (1.5, 6.0),       # m
    "forecast_entropy": (0.6, 1.0),        # normalised entropy [0, 1]
    "quantisation_error": (1.5, 4.0),      # multiples of the nominal quantile
    "clearance_forecast": (1.0, 0.0),      # m (box-to-box gap)
    "ttc_forecast": (3.0, 1.0),            # s
    "clearance_detection": (1.0, 0.0),     # m
    "ttc_detection": (3.0, 1.0),           # s
    "unexplained_points": (3.0, 30.0),     # points in the corridor
    "unexplained_distance": (40.0, 10.0),  # m along the path to the nearest unexplained cluster
    "offroad": (0.0, 1.0),                 # points of the candidate off the drivable area
    "consistency": (0.0, 1.0),             # 1 - consistency score (1 = inconsistent)
    "light_disagreement": (0.0, 1.0),      # 0 agree/unknown, 0.5 minor, 1 red/yellow vs green
    "plan_jump": (1.5, 5.0),               # m
    "track_loss": (0.0, 3.0),              # agents lost near the ego
    "sensor_health": (0.0, 1.0),           # [0, 1] worst health defect
    "kinematic": (1.0, 2.0),               # worst ratio of a kinematic quantity to its limit
}

DEFAULT_WEIGHTS: dict[str, float] = {
    "planner_sigma_mean": 0.5,
    "planner_sigma_max": 0.3,
    "forecast_entropy": 0.2,
    "quantisation_error": 0.3,
    "clearance_forecast": 0.7,
    "ttc_forecast": 0.7,
    "clearance_detection": 0.8,
    "ttc_detection": 0.8,
    "unexplained_points": 0.6,
    "unexplained_distance": 0.6,
    "offroad": 0.9,
    "consistency": 0.5,
    "light_disagreement": 0.7,
    "plan_jump": 0.4,
    "track_loss": 0.4,
    "sensor_health": 0.6,
    "kinematic": 0.6,
}


@dataclass(frozen=True)
class MonitorParams:
    """Every threshold, weight and dwell time of the monitor. Defaults are usable without a
    calibration; :func:`tps_planner.monitor_calibration.fit` replaces the thresholds."""

    # --- thresholds and state machine (sim time) ---
    tau_degraded: float = 0.6
    tau_fallback: float = 0.35
    tau_mrm: float = 0.2
    hysteresis: float = 0.05
    recover_dwell_s: float = 1.0
    min_dwell_s: float = 0.5
    max_fallback_s: float = 10.0
    mrm_recovery_s: float = 3.0
    warmup_timeout_s: float = 10.0          # inputs not all started this long after the first cycle: a failure
    # --- timeouts / health ---
    planner_timeout_s: float = 0.5
    perception_timeout_s: float = 0.5
    lidar_timeout_s: float = 0.5
    camera_timeout_s: float = 1.0
    nominal_points: int = 0                 # 0: learnt from the first clouds (see _health_params)
    min_point_fraction: float = 0.3
    max_nan_share: float = 0.5
    # Sensor defects that leave the fallback its input but corrupt the learned stack's: critical
    # (FALLBACK) at once, not a calibrated risk (monitor_signals.sensor_health).
    degraded_point_fraction: float = 0.6    # a frame with fewer points than this share of nominal: lidar_degraded
    degraded_nan_share: float = 0.01        # ... or more NaN points than this share: lidar_degraded
    camera_critical: bool = True            # camera black, frozen or stale: camera_fault (false: a health risk only)
    processing_budget_ms: float = 150.0
    # Processing times (wall clock) count toward sensor_health: perception's processing_time_ms
    # above processing_budget_ms, and (the node) other nodes' ERROR '<node>: processing_time'
    # statuses. false in the lockstep simulation, where the world waits for the stack: there wall
    # time changes nothing the vehicle does, only the host's load, and the same episode twice gave
    # different signal values.
    processing_time_health: bool = True
    # --- geometry ---
    ego_length_m: float = 4.6
    ego_half_width_m: float = 0.95
    corridor_margin_m: float = 0.4
    ego_body_margin_m: float = 0.3          # points this close to the footprint are the ego's own
    corridor_min_length_m: float = 15.0
    corridor_extra_m: float = 5.0
    detection_box_margin_m: float = 0.7
    detector_range_m: float = 50.0          # cloud points farther (ego frame, |x| or |y|) no detection can explain; 0 = no limit
    stop_decel_mps2: float = 4.0
    reaction_time_s: float = 0.3
    unexplained_min_points: int = 5
    cluster_gap_m: float = 1.5
    near_radius_m: float = 40.0
    track_radius_m: float = 30.0
    track_range_margin_m: float = 3.0
    forecast_p_min: float = 0.1
    forecast_horizon_s: float = 3.0
    offroad_horizon_s: float = 3.0
    offroad_min_points: int = 1
    offroad_footprint: bool = True          # test the footprint's corners (DAC), not only the centre
    offroad_footprint_horizon_s: float = 2.0   # ... over this much of the horizon (the centre: all of it)
    imminent_ttc_s: float = 1.0             # the candidate meets a detected agent (constant velocity) sooner: critical; 0 = off
    # The candidate meets a slow or standing detection (a pedestrian, a stalled car, a queue's
    # tail) sooner than the ego could stop for it from its current speed
    # (``monitor_signals.stopping_conflict``): critical. The fixed 1.0-s margin above came 0.9 s
    # before a TEST collision with a pedestrian standing on a crosswalk (ped_crossing s9002).
    stop_conflict: bool = True
    stop_conflict_max_agent_speed_mps: float = 2.0   # agents at most this fast over ground count
    stop_conflict_decel_mps2: float = 3.0            # the stopping time: reaction_time_s + v / this
    # The reader RED/YELLOW while the planner says GREEN, or while the planner's rationale and
    # action disagree: critical. As certainty signals alone (light disagreement: weight 0.7,
    # certainty 0.30) they fell above a refitted tau_fallback of 0.27 and left the planner driving
    # DEGRADED through red lights (TEST lights 9000-9001: 4 violations; after the light flag alone,
    # the planner said RED one cycle later, "inconsistent", and still did not stop: 4 again).
    light_red_critical: bool = True
    # The candidate brakes hard with no cause in view (``monitor_signals.unjustified_braking``:
    # no detection within a headway of the ego rolled out at its current speed, no junction,
    # merge, crosswalk, light, bend or unexplained occupancy) for ``brake_check_cycles`` cycles:
    # critical, the fallback drives. A follower does not expect phantom braking, and on TEST
    # 9000-9001 the planner braked from 22.6 to 0.5 m/s on an open highway, the monitor NOMINAL
    # throughout (a lead 65 m ahead at the ego's speed), for stack EP 0.55.
    brake_check: bool = True
    brake_check_min_speed_mps: float = 8.0      # slower egos are not checked
    brake_check_min_drop_mps: float = 4.0       # braking = the plan's speed falls by this much ...
    brake_check_min_drop_share: float = 0.25    # ... and by this share of the ego's speed
    brake_check_headway_s: float = 1.5          # an agent within this headway explains the braking
    brake_check_lat_accel_mps2: float = 2.0     # a bend explains it when the current speed exceeds this there
    brake_check_cycles: int = 3                 # consecutive cycles before it is critical
    blind_radius_m: float = 30.0            # road objects this close in the raw cloud, no detection: blind; 0 = off
    blind_persist_s: float = 0.2            # ... for this long: perception_blind is critical (was 1.0)
    blind_confirmed_persist_s: float = 0.2  # both evidences (tracks lost at once, road objects unexplained) this long: critical
    blind_cell_m: float = 0.5
    blind_min_cells: int = 3
    blind_box_margin_m: float = 1.5
    # --- normalisations ---
    quantisation_nominal: float = 1.0
    # --- kinematic limits ---
    max_accel_mps2: float = 4.0
    max_decel_mps2: float = 8.0
    max_lat_accel_mps2: float = 5.0
    min_turn_radius_m: float = 5.0
    curvature_chord_m: float = 2.0          # the candidate's curvature is measured over chords this long
    max_speed_jump_mps: float = 3.0
    # --- risk ramps and weights (name -> (ok, bad) / weight) ---
    ramps: dict = field(default_factory=lambda: dict(DEFAULT_RAMPS))
    weights: dict = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if f.name in ("ramps", "weights"):
                continue
            v = getattr(self, f.name)
            if f.type in (bool, "bool"):
                if not isinstance(v, bool):
                    raise ValueError(f"MonitorParams.{f.name}: expected true or false, got {v!r}")
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(float(v)):
                raise ValueError(f"MonitorParams.{f.name}: expected a finite number, got {v!r}")
            if float(v) < 0.0:
                raise ValueError(f"MonitorParams.{f.name}: must be >= 0, got {v!r}")
        if not (self.min_point_fraction <= self.degraded_point_fraction <= 1.0):
            raise ValueError("MonitorParams: need min_point_fraction <= degraded_point_fraction <= 1, got "
                             f"{self.min_point_fraction}, {self.degraded_point_fraction}")
        if self.degraded_nan_share > self.max_nan_share:
            raise ValueError("MonitorParams: need degraded_nan_share <= max_nan_share, got "
                             f"{self.degraded_nan_share}, {self.max_nan_share}")
        if not (0.0 <= self.tau_mrm <= self.tau_fallback <= self.tau_degraded <= 1.0):
            raise ValueError("MonitorParams: need 0 <= tau_mrm <= tau_fallback <= tau_degraded <= 1, got "
                             f"{self.tau_mrm}, {self.tau_fallback}, {self.tau_degraded}")
        ramps = dict(DEFAULT_RAMPS)
        for k, v in dict(self.ramps).items():
            if k not in DEFAULT_RAMPS:
                raise ValueError(f"MonitorParams.ramps: unknown signal {k!r}")
            try:
                ok, bad = (float(v[0]), float(v[1]))
            except (TypeError, ValueError, IndexError) as exc:
                raise ValueError(f"MonitorParams.ramps[{k!r}]: expected [ok, bad], got {v!r}") from exc
            if not (math.isfinite(ok) and math.isfinite(bad)) or ok == bad:
                raise ValueError(f"MonitorParams.ramps[{k!r}]: need finite ok != bad, got {v!r}")
            ramps[k] = (ok, bad)
        weights = dict(DEFAULT_WEIGHTS)
        for k, v in dict(self.weights).items():
            if k not in DEFAULT_WEIGHTS:
                raise ValueError(f"MonitorParams.weights: unknown signal {k!r}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"MonitorParams.weights[{k!r}]: expected a number in [0, 1], got {v!r}")
            weights[k] = float(v)
        object.__setattr__(self, "ramps", ramps)
        object.__setattr__(self, "weights", weights)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> MonitorParams:
        """Build from a dict (e.g. ROS parameters); raises ValueError naming a bad key/value."""
        if not isinstance(d, dict):
            raise ValueError(f"MonitorParams.from_dict: expected a dict, got {type(d).__name__}")
        names = {f.name: f for f in dataclasses.fields(cls)}
        kw: dict[str, Any] = {}
        for k, v in d.items():
            if k not in names:
                raise ValueError(f"MonitorParams: unknown key {k!r}")
            if k in ("ramps", "weights"):
                if not isinstance(v, dict):
                    raise ValueError(f"MonitorParams.{k}: expected a dict, got {v!r}")
                kw[k] = v
                continue
            default = names[k].default
            try:
                if isinstance(v, bool):
                    raise TypeError
                kw[k] = int(v) if isinstance(default, int) and float(v) == int(v) else float(v)
            except (TypeError, ValueError) as exc:
                raise ValueError(f"MonitorParams.{k}: expected a number, got {v!r}") from exc
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["ramps"] = {k: list(v) for k, v in self.ramps.items()}
        return d


@dataclass(frozen=True)
class PerceptionSnapshot:
    """Perception of one lidar frame (from AgentTokens + DetectedAgents), map frame."""

    stamp_s: float
    status: int
    processing_time_ms: float
    agent_ids: np.ndarray
    xy: np.ndarray
    yaw: np.ndarray
    length: np.ndarray
    width: np.ndarray
    vxy: np.ndarray
    quantisation_error: np.ndarray


@dataclass(frozen=True)
class CloudSnapshot:
    """The raw lidar frame, reduced by the node: obstacle points (finite, non-ground, in the
    obstacle height band) in the map frame, the message's point count and NaN share."""

    stamp_s: float
    obstacle_xy: np.ndarray
    n_points: int
    nan_share: float


@dataclass(frozen=True)
class ForecastSnapshot:
    """Multi-modal forecasts: ``modes_xy`` (A, K, T, 2) map at times ``(t+1) * dt_s`` after
    ``stamp_s`` (t = 0..T-1), ``probs`` (A, K)."""

    stamp_s: float
    agent_ids: np.ndarray
    modes_xy: np.ndarray
    probs: np.ndarray
    dt_s: float


@dataclass(frozen=True)
class HealthSnapshot:
    """Ages (s of sim time, inf = never received) and health flags of the inputs."""

    lidar_age_s: float
    camera_age_s: float
    camera_frozen: bool
    camera_black: bool
    perception_age_s: float
    planner_age_s: float
    node_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class MonitorInputs:
    """Everything the monitor looks at in one cycle (map frame, sim time)."""

    stamp_s: float
    ego_xy: np.ndarray
    ego_yaw: float
    ego_speed_mps: float
    candidate: Trajectory | None
    perception: PerceptionSnapshot | None
    cloud: CloudSnapshot | None
    forecasts: ForecastSnapshot | None
    drivable: MapMask | None
    consistency_ok: bool | None
    consistency_score: float | None
    planner_light_state: int | None
    reader_light_state: int | None
    health: HealthSnapshot
    # Where the rules may ask the ego to stop or yield (junction and acceleration lanes,
    # crosswalks): the braking check's map; None = unknown (braking is not checked).
    attention: MapMask | None = None


@dataclass(frozen=True)
class MonitorResult:
    """The monitor's verdict for one cycle."""

    stamp_s: float
    state: int
    certainty: float
    signal_names: tuple[str, ...]
    signal_values: tuple[float, ...]
    risks: tuple[float, ...]
    reasons: tuple[str, ...]
    critical: tuple[str, ...]
    transition: tuple[int, int] | None
    fallback_input_dead: bool = False
    transition_reasons: tuple[str, ...] = ()
    warming_up: bool = False


def ramp_risk(value: float, ok: float, bad: float) -> float:
    """Linear ramp: 0 at ``ok``, 1 at ``bad`` (either order), clipped; NaN -> 1."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return 1.0
    r = (float(value) - ok) / (bad - ok)
    if math.isnan(r):
        return 1.0
    return float(min(max(r, 0.0), 1.0))


def apply_calibration(params: MonitorParams, calibration: dict | None) -> MonitorParams:
    """``params`` with a calibration dict's thresholds and nominal quantiles applied.

    Uses ``calibration["ramps"]`` (per-signal ``[ok, bad]``, from
    :func:`tps_planner.monitor_calibration.fit_ramps`) when present,
    ``calibration["thresholds"]`` (``tau_fallback``, ``tau_degraded``, optional ``tau_mrm``)
    when ``calibration["fitted"]`` is not False, and ``calibration["nominal_quantiles"]
    ["quantisation_error"]`` when present and > 0. The order tau_mrm <= tau_fallback <=
    tau_degraded is kept by lowering tau_mrm / raising tau_degraded where needed.
    """
    if not calibration:
        return params
    if not isinstance(calibration, dict):
        raise ValueError(f"calibration: expected a dict, got {type(calibration).__name__}")
    kw: dict[str, float] = {}
    th = calibration.get("thresholds") or {}
    if not isinstance(th, dict):
        raise ValueError("calibration.thresholds: expected a dict")
    if calibration.get("fitted", True) is not False:
        for k in ("tau_fallback", "tau_degraded", "tau_mrm"):
            if k in th and th[k] is not None:
                v = th[k]
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                    raise ValueError(f"calibration.thresholds.{k}: expected a number in [0, 1], got {v!r}")
                kw[k] = float(v)
    nq = calibration.get("nominal_quantiles") or {}
    q = nq.get("quantisation_error") if isinstance(nq, dict) else None
    if isinstance(q, (int, float)) and not isinstance(q, bool) and math.isfinite(q) and q > 0:
        kw["quantisation_nominal"] = float(q)
    ramps = calibration.get("ramps")
    if ramps is not None:
        if not isinstance(ramps, dict):
            raise ValueError("calibration.ramps: expected {signal: [ok, bad]}")
        kw["ramps"] = {**params.ramps, **{k: tuple(v) for k, v in ramps.items()}}   # validated by MonitorParams
    tf = kw.get("tau_fallback", params.tau_fallback)
    kw["tau_degraded"] = max(kw.get("tau_degraded", params.tau_degraded), tf)
    kw["tau_mrm"] = min(kw.get("tau_mrm", params.tau_mrm), tf)
    return dataclasses.replace(params, **kw)


def product_certainty(risks: dict[str, float], weights: dict[str, float]) -> float:
    """prod_i (1 - w_i * risk_i) over the given risks, clipped to [0, 1] (the product rule)."""
    c = 1.0
    for n, r in risks.items():
        c *= 1.0 - weights[n] * r
    return float(min(max(c, 0.0), 1.0))


def combiner_from_calibration(calibration: dict | None) -> tuple[float, dict[str, float]] | None:
    """``(intercept, {signal: weight})`` of a calibration's logistic combiner
    (``calibration["combiner"]``, fitted by :func:`tps_planner.monitor_calibration.fit_combiner`),
    or None when it has none (the product rule then combines the risks). A malformed combiner
    raises ValueError naming the key. The weights are >= 0, so the certainty stays monotone: a
    risk rising never raises it."""
    if not calibration or calibration.get("combiner") is None:
        return None
    from tps_planner.monitor_calibration import validate_combiner

    c = validate_combiner(calibration["combiner"])
    return float(c["intercept"]), {str(k): float(v) for k, v in c["weights"].items()}


_WORSE = {STATE_NOMINAL: 0, STATE_DEGRADED: 1, STATE_FALLBACK: 2, STATE_MINIMAL_RISK: 3}


class ConfidenceMonitor:
    """Signals -> risks -> certainty -> state machine (see the module docstring).

    Args:
        params: thresholds, weights, dwell times (defaults when None).
        calibration: a dict from :func:`tps_planner.monitor_calibration.fit` (or
            ``load_calibration``); its thresholds replace ``params``'s.
    """

    def __init__(self, params: MonitorParams | None = None, calibration: dict | None = None) -> None:
        self.params = apply_calibration(params or MonitorParams(), calibration)
        self.calibration = calibration
        self.combiner = combiner_from_calibration(calibration)
        self.reset()

    def reset(self) -> None:
        """Back to NOMINAL with no history (releases a latched MINIMAL_RISK); the next cycle warms
        up again (it is warm at once when every input is there)."""
        self.state = STATE_NOMINAL
        self._entered_s: float | None = None
        self._recover_since: float | None = None
        self._recover_target: int | None = None
        self._last_stamp: float | None = None
        self._prev_candidate: Trajectory | None = None
        self._prev_perception: PerceptionSnapshot | None = None
        self._point_counts: list[int] = []
        self._warm = False
        self._first_stamp: float | None = None
        self._blind_since: float | None = None
        self._lost_all_since: float | None = None
        self._braking_cycles = 0

    def _health_params(self, cloud: CloudSnapshot | None) -> MonitorParams:
        """The params the health check uses. ``nominal_points`` 0 means "learn it": the median point
        count of the first ``NOMINAL_POINT_FRAMES`` clouds with a finite majority (a lidar's
        nominal count depends on its layout and the scene, so a fixed number would not carry
        over to another sensor). Until then the point-count check is off (the NaN-share and
        staleness checks are not)."""
        p = self.params
        if p.nominal_points > 0:
            return p
        if (cloud is not None and cloud.n_points > 0 and math.isfinite(cloud.nan_share)
                and cloud.nan_share < 0.5 and len(self._point_counts) < NOMINAL_POINT_FRAMES):
            self._point_counts.append(int(cloud.n_points))
        if len(self._point_counts) < NOMINAL_POINT_FRAMES:
            return dataclasses.replace(p, nominal_points=1, min_point_fraction=0.0)
        return dataclasses.replace(p, nominal_points=int(np.median(self._point_counts)))

    # ------------------------------------------------------------------ signals
    def evaluate(self, inp: MonitorInputs) -> tuple[dict[str, float], dict[str, str], dict[str, str], bool]:
        """Signal values, per-signal reasons, critical conditions {name: reason}, and whether the
        fallback's own input is dead. Never raises: a failing signal gets NaN and a reason."""
        p = self.params
        vals: dict[str, float] = dict.fromkeys(SIGNAL_NAMES, 0.0)
        why: dict[str, str] = {}
        crit: dict[str, str] = {}
        try:
            now = float(inp.stamp_s)
            ego = np.asarray(inp.ego_xy, float).reshape(2)
            yaw = float(inp.ego_yaw)
            speed = float(inp.ego_speed_mps)
        except (TypeError, ValueError):
            now, ego, yaw, speed = math.nan, np.full(2, math.nan), math.nan, math.nan
        speed_ok = math.isfinite(speed) and abs(speed) <= ms.MAX_PLAUSIBLE_SPEED_MPS
        ego_problem = "ego pose/speed is not finite"
        if math.isfinite(speed) and not speed_ok:
            ego_problem = f"ego speed {speed:.3g} m/s is implausible (at most {ms.MAX_PLAUSIBLE_SPEED_MPS:.0f} m/s)"
        if not speed_ok:
            speed = 0.0

        def run(names: tuple[str, ...], fn, *args, **kw):
            try:
                return fn(*args, **kw)
            except Exception as exc:  # noqa: BLE001 - bad numbers must never crash the monitor
                for n in names:
                    vals[n] = math.nan
                    why[n] = f"{n}: evaluation failed ({type(exc).__name__}: {exc})"
                return None

        # Health first: it decides the critical conditions that need no candidate.
        out = run(("sensor_health",), ms.sensor_health, inp.health, inp.cloud, inp.perception,
                  self._health_params(inp.cloud))
        if out is not None:
            vals["sensor_health"], hcrit, hreasons = out
            crit.update(hcrit)
            why["sensor_health"] = "; ".join(hreasons) if hreasons else "sensors healthy"
        else:
            crit["sensor_health"] = why["sensor_health"]
        fallback_dead = "fallback_input_dead" in crit
        if not (np.isfinite(ego).all() and math.isfinite(yaw) and speed_ok):
            crit["ego_state"] = ego_problem

        perc = inp.perception
        out = run(("quantisation_error",), ms.quantisation_error, perc, ego, p.near_radius_m)
        if out is not None:
            vals["quantisation_error"], why["quantisation_error"] = out
        out = run(("forecast_entropy",), ms.forecast_entropy, inp.forecasts, ego, p.near_radius_m)
        if out is not None:
            vals["forecast_entropy"], why["forecast_entropy"] = out
        out = run(("consistency",), ms.consistency, inp.consistency_ok, inp.consistency_score)
        if out is not None:
            vals["consistency"], why["consistency"] = out
        out = run(("light_disagreement",), ms.light_disagreement, inp.planner_light_state,
                  inp.reader_light_state)
        if out is not None:
            vals["light_disagreement"], why["light_disagreement"] = out
        if p.light_red_critical and inp.reader_light_state in (0, 1):
            reader = "RED" if inp.reader_light_state == 0 else "YELLOW"
            if inp.planner_light_state == 2:
                crit["light_red"] = (f"light: reader {reader}, planner GREEN: the plan was conditioned on GREEN; "
                                     f"the fallback stops for the reader's light")
            elif vals["consistency"] > 0.0:
                crit["light_red"] = (f"light: reader {reader} and the planner's rationale/action inconsistent: the "
                                     f"plan may not stop; the fallback stops for the reader's light")
        out = run(("track_loss",), ms.track_loss, self._prev_perception, perc, ego, now,
                  p.track_radius_m, p.track_range_margin_m)
        if out is not None:
            vals["track_loss"], why["track_loss"] = float(out[0]), out[1]
        self._blind_detector(inp, perc, ego, yaw, now, crit, vals["track_loss"])

        cand = inp.candidate
        problem = ms.candidate_problem(cand)
        if problem is None and "ego_state" not in crit:
            hl, hw = 0.5 * p.ego_length_m, p.ego_half_width_m
            out = run(("planner_sigma_mean", "planner_sigma_max"), ms.planner_sigma, cand)
            if out is not None:
                vals["planner_sigma_mean"], vals["planner_sigma_max"], r = out
                why["planner_sigma_mean"] = why["planner_sigma_max"] = r
            out = run(("clearance_forecast", "ttc_forecast"), ms.clearance_ttc_forecasts, cand,
                      inp.forecasts, perc, now, p.forecast_horizon_s, p.forecast_p_min, hl, hw)
            if out is not None:
                vals["clearance_forecast"], vals["ttc_forecast"], r = out
                why["clearance_forecast"] = why["ttc_forecast"] = r
            out = run(("clearance_detection", "ttc_detection"), ms.clearance_ttc_detections, cand,
                      perc, now, p.forecast_horizon_s, 0.25, hl, hw)
            if out is not None:
                vals["clearance_detection"], vals["ttc_detection"], r = out
                why["clearance_detection"] = why["ttc_detection"] = r
                # A physical margin, not a statistic: the calibration's ramps are fitted on nominal
                # driving, where a constant-velocity overlap seconds ahead is common and harmless, and
                # they loosened this one until a 0.25-s TTC carried no risk (a TEST cut-in collision
                # at 13.0 s had TTC 1.0 s from 12.0 s, the monitor NOMINAL throughout).
                if 0.0 < p.imminent_ttc_s and vals["ttc_detection"] < p.imminent_ttc_s:
                    crit["collision_imminent"] = r
            if p.stop_conflict:
                out = run(("ttc_detection",), ms.stopping_conflict, cand, perc, now, p.forecast_horizon_s, 0.25, hl, hw, speed,
                          max_agent_speed_mps=p.stop_conflict_max_agent_speed_mps,
                          reaction_s=p.reaction_time_s, decel_mps2=p.stop_conflict_decel_mps2)
                if out is not None and out[0]:
                    crit["stopping_conflict"] = out[2]
            out = run(("unexplained_points", "unexplained_distance"), ms.unexplained_occupancy, cand,
                      ego, yaw, speed, now, inp.cloud, perc, half_width_m=p.ego_half_width_m,
                      margin_m=p.corridor_margin_m, ego_half_len_m=hl, min_length_m=p.corridor_min_length_m,
                      extra_m=p.corridor_extra_m, decel_mps2=p.stop_decel_mps2, reaction_s=p.reaction_time_s,
                      box_margin_m=p.detection_box_margin_m, n_min=p.unexplained_min_points,
                      cluster_gap_m=p.cluster_gap_m, body_margin_m=p.ego_body_margin_m,
                      detector_range_m=p.detector_range_m)
            if out is not None:
                n, dist, is_crit, r = out
                vals["unexplained_points"], vals["unexplained_distance"] = float(n), dist
                why["unexplained_points"] = why["unexplained_distance"] = r
                if is_crit:
                    crit["unexplained_occupancy"] = r
            out = run(("offroad",), ms.offroad, cand, inp.drivable, now, p.offroad_horizon_s,
                      half_length_m=hl if p.offroad_footprint else 0.0,
                      half_width_m=p.ego_half_width_m if p.offroad_footprint else 0.0,
                      footprint_horizon_s=p.offroad_footprint_horizon_s)
            if out is not None:
                n, _, r = out
                vals["offroad"], why["offroad"] = float(n), r
                if n >= max(p.offroad_min_points, 1):
                    crit["offroad"] = r
            out = run(("plan_jump",), ms.plan_jump, cand, self._prev_candidate, now, p.forecast_horizon_s)
            if out is not None:
                vals["plan_jump"], why["plan_jump"] = out
            out = run(("kinematic",), ms.kinematic, cand, speed, p)
            if out is not None:
                vals["kinematic"], why["kinematic"] = out
            self._check_braking(inp, cand, ego, yaw, speed, now, vals["unexplained_distance"], crit)
        else:
            reason = problem or crit["ego_state"]
            if "planner_silent" not in crit:
                crit["candidate"] = f"candidate unusable: {reason}"
            for n in ("planner_sigma_mean", "planner_sigma_max", "clearance_forecast", "ttc_forecast",
                      "clearance_detection", "ttc_detection", "unexplained_points",
                      "unexplained_distance", "offroad", "plan_jump", "kinematic"):
                vals[n] = math.nan
                why[n] = f"{n}: not evaluated ({reason})"
        return vals, why, crit, fallback_dead

    def _check_braking(self, inp: MonitorInputs, cand: Trajectory, ego: np.ndarray, yaw: float, speed: float,
                       now: float, unexplained_m: float, crit: dict[str, str]) -> None:
        """``unjustified_braking`` when the candidate has braked with no cause in view for
        ``brake_check_cycles`` consecutive cycles (a failed evaluation counts as explained)."""
        p = self.params
        if not p.brake_check:
            return
        try:
            unjustified, reason = ms.unjustified_braking(
                cand, ego, yaw, speed, now, inp.perception, inp.attention, inp.reader_light_state, unexplained_m, p)
        except Exception:  # noqa: BLE001 - bad numbers must never crash the monitor
            unjustified, reason = False, ""
        self._braking_cycles = self._braking_cycles + 1 if unjustified else 0
        if self._braking_cycles >= max(p.brake_check_cycles, 1):
            crit["unjustified_braking"] = f"{reason} for {self._braking_cycles} cycles"

    def _blind_detector(self, inp: MonitorInputs, perc: PerceptionSnapshot | None, ego: np.ndarray,
                        yaw: float, now: float, crit: dict[str, str], track_loss: float = 0.0) -> None:
        """Critical ``perception_blind`` (a detector blackout: the planner drives on a road it sees
        empty, and no other signal moves -- nothing is "unexplained" in a corridor the blind planner
        steers away from the traffic) on either evidence held for ``blind_persist_s``:

        - the detector lost tracks near the ego at once (``track_loss`` >= 1) and has reported no
          agent within ``near_radius_m`` since (on VAL: at the onset of one of the two blackouts,
          in none of the 20 nominal episodes);
        - the raw cloud shows objects on the road within ``blind_radius_m`` and the detector
          reports none there (:func:`tps_planner.monitor_signals.road_objects`)."""
        p = self.params
        if p.blind_radius_m <= 0.0 or perc is None or not (
                np.isfinite(ego).all() and math.isfinite(yaw) and math.isfinite(now)):
            self._blind_since = None
            self._lost_all_since = None
            return
        d = np.hypot(*(np.asarray(perc.xy, float).reshape(-1, 2) - ego[None, :]).T)
        empty = not bool(np.any(~(d > p.near_radius_m)))     # NaN positions count as near
        if not empty:
            self._lost_all_since = None
        elif math.isfinite(track_loss) and track_loss >= 1.0 and self._lost_all_since is None:
            self._lost_all_since = now
        lost_held = None if self._lost_all_since is None else now - self._lost_all_since
        if lost_held is not None and lost_held >= p.blind_persist_s - 1e-9:
            crit["perception_blind"] = (f"perception blind: tracks near the ego lost at once "
                                        f"{lost_held:.1f} s ago, no detection within {p.near_radius_m:.0f} m since")
            return
        if inp.cloud is None:
            self._blind_since = None
            return
        try:
            n_obj, n_expl, n_det, why = ms.road_objects(
                inp.cloud, perc, ego, yaw, inp.drivable, radius_m=p.blind_radius_m, cell_m=p.blind_cell_m,
                min_cells=max(p.blind_min_cells, 1), cluster_gap_m=p.cluster_gap_m,
                box_margin_m=p.blind_box_margin_m, ego_half_len_m=0.5 * p.ego_length_m,
                ego_half_width_m=p.ego_half_width_m, body_margin_m=p.ego_body_margin_m)
        except Exception:  # noqa: BLE001 - bad numbers must never crash the monitor
            self._blind_since = None
            return
        if n_obj >= 1 and n_expl == 0 and n_det == 0:
            if self._blind_since is None or now < self._blind_since:
                self._blind_since = now
            held = now - self._blind_since
            if held >= p.blind_persist_s - 1e-9:
                crit["perception_blind"] = (f"perception blind: {n_obj} objects on the road within "
                                            f"{p.blind_radius_m:.0f} m in the raw cloud, no detection for {held:.1f} s")
            elif lost_held is not None and min(held, lost_held) >= p.blind_confirmed_persist_s - 1e-9:
                # Both evidences at once: the tracks went all together and the raw cloud still
                # shows objects on the road that nothing explains -- not an occlusion, not an
                # agent that left.
                crit["perception_blind"] = (f"perception blind: tracks near the ego lost at once {lost_held:.1f} s "
                                            f"ago and {n_obj} objects on the road within {p.blind_radius_m:.0f} m "
                                            f"in the raw cloud, no detection for {held:.1f} s")
        else:
            self._blind_since = None

    def risks(self, vals: dict[str, float]) -> dict[str, float]:
        """Per-signal risk in [0, 1] (NaN -> 1)."""
        p = self.params
        out = {}
        for n in SIGNAL_NAMES:
            v = vals[n]
            if n == "quantisation_error" and math.isfinite(v):
                v = v / max(p.quantisation_nominal, 1e-9)
            ok, bad = p.ramps[n]
            out[n] = ramp_risk(v, ok, bad)
        return out

    def certainty(self, risks: dict[str, float]) -> float:
        """prod_i (1 - w_i * risk_i), in [0, 1]; with a learned combiner in the calibration
        (``calibration["combiner"]``, :func:`combiner_from_calibration`) 1 - P(incident | risks)
        of its logistic model instead."""
        if self.combiner is not None:
            b, w = self.combiner
            z = b + sum(w.get(n, 0.0) * r for n, r in risks.items())
            return float(1.0 - 0.5 * (1.0 + math.tanh(0.5 * z)))
        return product_certainty(risks, self.params.weights)

    # ------------------------------------------------------------------ state machine
    def update(self, inputs: MonitorInputs) -> MonitorResult:
        """One monitor cycle: signals, certainty, state transition. Never raises on bad numbers."""
        p = self.params
        now = float(inputs.stamp_s) if inputs.stamp_s is not None else math.nan
        vals, why, crit, fallback_dead = self.evaluate(inputs)
        risks = self.risks(vals)
        cert = self.certainty(risks)
        if not math.isfinite(now):
            crit["stamp"] = "monitor input stamp is not finite"
            now = self._last_stamp if self._last_stamp is not None else 0.0
        if self._last_stamp is not None and now < self._last_stamp - 1e-9:
            # Time went backwards (a replay restarted): start the dwell timers afresh.
            self._entered_s = now
            self._recover_since = None
            if not self._warm:
                self._first_stamp = now
        self._last_stamp = now
        if self._entered_s is None:
            self._entered_s = now
        if self._first_stamp is None:
            self._first_stamp = now

        # Warm-up (see the module docstring): ends the first cycle every input has started, or
        # warmup_timeout_s after the first cycle (then what has not started is a failure).
        missing = self._missing_inputs(inputs)
        warmed_msg = None
        since_first = now - self._first_stamp
        if not self._warm:
            self._entered_s = now        # no dwell timer runs during warm-up
            if not missing:
                self._warm = True
                warmed_msg = f"warm-up complete after {since_first:.1f} s: every input has started"
            elif since_first >= p.warmup_timeout_s - 1e-9:
                self._warm = True
                crit["warmup_timeout"] = (f"warm-up timed out: {', '.join(missing)} not started "
                                          f"{since_first:.1f} s after the first cycle")

        # The state this cycle's evidence alone calls for.
        if fallback_dead:
            worst = STATE_MINIMAL_RISK
        elif crit or cert < p.tau_fallback:
            worst = STATE_FALLBACK
        elif cert < p.tau_degraded:
            worst = STATE_DEGRADED
        else:
            worst = STATE_NOMINAL
        if (self.state == STATE_FALLBACK and worst == STATE_FALLBACK and cert < p.tau_mrm
                and now - self._entered_s > p.max_fallback_s):
            scene = sorted(set(crit) - PLANNER_CRITICALS)
            scene_cert = product_certainty({n: risks[n] for n in SCENE_SIGNALS}, p.weights)
            if scene_cert < p.tau_mrm:
                scene.append(f"scene certainty {scene_cert:.2f}")
            if scene:
                worst = STATE_MINIMAL_RISK
                crit["fallback_timeout"] = (f"FALLBACK for {now - self._entered_s:.1f} s "
                                            f"(> {p.max_fallback_s} s) with certainty {cert:.2f} < {p.tau_mrm} "
                                            f"and {', '.join(scene)} unresolved")

        old = self.state
        trans_reasons: list[str] = []
        sig_reasons = [why[n] for n in sorted(SIGNAL_NAMES, key=lambda n: -risks[n])
                       if risks[n] > 0.0 and n in why]
        crit_reasons = [f"CRITICAL {k}: {v}" for k, v in crit.items()]
        warm_reason = None
        if not self._warm:
            # The fallback drives while the inputs start (MINIMAL_RISK if its own input is dead);
            # no dwell timer runs: the state restarts from the evidence once they are warm.
            self.state = STATE_MINIMAL_RISK if fallback_dead else STATE_FALLBACK
            self._recover_since = None
            warm_reason = (f"WARMING_UP: waiting for {', '.join(missing)} ({since_first:.1f} s since the "
                           "first cycle); the fallback drives")
            if self.state != old:
                trans_reasons = [warm_reason] + crit_reasons
        elif warmed_msg is not None:
            # Start afresh from this cycle's evidence: a start-up FALLBACK (or MINIMAL_RISK latch)
            # is not held by the dwell times or the hysteresis on healthy inputs.
            self.state = worst
            self._recover_since = None
            if self.state != old:
                trans_reasons = [warmed_msg] + crit_reasons + [f"certainty {cert:.2f}"] + sig_reasons[:3]
        elif _WORSE[worst] > _WORSE[self.state]:
            self.state = worst
            self._recover_since = None
            trans_reasons = crit_reasons + [f"certainty {cert:.2f}"] + sig_reasons[:3]
        elif _WORSE[worst] < _WORSE[self.state]:
            # Candidate better state with hysteresis.
            h = p.hysteresis
            if crit or fallback_dead:
                better = self.state
            elif cert >= p.tau_degraded + h:
                better = STATE_NOMINAL
            elif cert >= p.tau_fallback + h:
                better = STATE_DEGRADED
            else:
                better = self.state
            if self.state == STATE_MINIMAL_RISK:
                # Latched: only sustained nominal inputs release it.
                better = STATE_NOMINAL if better == STATE_NOMINAL else self.state
                need = p.mrm_recovery_s
            else:
                need = p.recover_dwell_s
            if _WORSE[better] < _WORSE[self.state]:
                if self._recover_since is None:
                    self._recover_since = now
                    self._recover_target = better
                else:
                    prev_target = better if self._recover_target is None else self._recover_target
                    # Recover only as far as the worst evidence seen during the dwell allows.
                    self._recover_target = max(better, prev_target, key=_WORSE.get)
                held = now - self._recover_since
                if held >= need - 1e-9 and now - self._entered_s >= p.min_dwell_s - 1e-9:
                    self.state = self._recover_target if self._recover_target is not None else better
                    self._recover_since = None
                    trans_reasons = [f"recovered: certainty {cert:.2f} above threshold + hysteresis "
                                     f"for {held:.1f} s"]
            else:
                self._recover_since = None
        else:
            self._recover_since = None
        transition = None
        if self.state != old:
            transition = (old, self.state)
            self._entered_s = now
        # Remember this cycle for the temporal signals.
        if ms.candidate_problem(inputs.candidate) is None:
            self._prev_candidate = inputs.candidate
        if inputs.perception is not None and inputs.perception.status in (
                PERCEPTION_STATUS_OK, PERCEPTION_STATUS_FAULT_INJECTED):
            self._prev_perception = inputs.perception
        if self.state == STATE_NOMINAL:
            reasons: tuple[str, ...] = tuple(trans_reasons)
        else:
            reasons = tuple(dict.fromkeys(([warm_reason] if warm_reason else []) + crit_reasons + sig_reasons
                                          + trans_reasons))
        return MonitorResult(
            stamp_s=now,
            state=self.state,
            certainty=cert,
            signal_names=SIGNAL_NAMES,
            signal_values=tuple(float(vals[n]) for n in SIGNAL_NAMES),
            risks=tuple(risks[n] for n in SIGNAL_NAMES),
            reasons=reasons,
            critical=tuple(crit.keys()),
            transition=transition,
            fallback_input_dead=fallback_dead,
            transition_reasons=tuple(trans_reasons),
            warming_up=not self._warm,
        )

    @staticmethod
    def _missing_inputs(inp: MonitorInputs) -> list[str]:
        """The inputs that have not started this cycle (warm-up): the planner's candidate,
        perception's tokens (a usable status), the lidar frame."""
        out = []
        if ms.candidate_problem(inp.candidate) is not None:
            out.append("the planner's first usable candidate")
        perc = inp.perception
        if perc is None or perc.status not in (PERCEPTION_STATUS_OK, PERCEPTION_STATUS_FAULT_INJECTED):
            out.append("perception's first usable tokens")
        if inp.cloud is None:
            out.append("the first lidar frame")
        return out


__all__ = [
    "SIGNAL_NAMES", "STATE_NAMES", "ConfidenceMonitor", "CloudSnapshot", "ForecastSnapshot",
    "HealthSnapshot", "MonitorInputs", "MonitorParams", "MonitorResult", "PerceptionSnapshot",
    "apply_calibration", "ramp_risk",
]
