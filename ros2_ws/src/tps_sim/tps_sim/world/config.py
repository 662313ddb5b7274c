"""World configuration, ego control input and the driving instruction (no rclpy, no libsumo)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# tps_msgs/DrivingInstruction constants, copied as plain ints so the core never imports rclpy
# (tests/sim_world/test_config.py checks they equal the generated message's constants).
CMD_FOLLOW_LANE = 0
CMD_TURN_LEFT = 1
CMD_TURN_RIGHT = 2
CMD_GO_STRAIGHT = 3
CMD_CHANGE_LANE_LEFT = 4
CMD_CHANGE_LANE_RIGHT = 5
CMD_STOP = 6
CMD_TAKE_EXIT = 7

# tps_msgs/DetectedAgent class ids.
CLASS_UNKNOWN = 0
CLASS_CAR = 1
CLASS_TRUCK = 2
CLASS_BUS = 3
CLASS_PEDESTRIAN = 4
CLASS_CYCLIST = 5

CLUTTER_LEVELS = ("none", "low", "medium", "high")
EGO_DRIVERS = ("external", "expert")
OBSTACLE_KINDS = ("debris", "barrier", "parked_car", "pole")
MAX_DURATION_S = 3600.0
MAX_DT_S = 1.0
MAX_DENSITY = 5.0
# Scripted adversary parameters a WorldConfig may set (WorldConfig.adversary): name -> (the
# scenario adversaries it applies to, allowed range). Unset ones are drawn from the seed
# (tps_sim.world.world: the ranges in brackets); set ones override the draw, which is still made,
# so the rest of the episode (traffic, clutter, light phases) stays the seed's.
ADVERSARY_PARAMETERS: dict = {
    # initial gap ahead of the ego [m]: cut_in 40-60, hard_brake 45-65, stalled 130-190
    "gap_m": (("cut_in", "hard_brake", "stalled"), (5.0, 300.0)),
    # the cutter drives this much slower than the ego [m/s] (3-6; floor 5 m/s)
    "speed_delta_mps": (("cut_in",), (0.0, 20.0)),
    # bumper gap at which the cutter changes into the ego lane, before the closing-speed term [m] (7-13)
    "cut_gap_m": (("cut_in",), (1.0, 50.0)),
    # when the lead starts braking [s of episode time] (3-6)
    "brake_at_s": (("hard_brake",), (0.0, MAX_DURATION_S)),
    # the lead's braking deceleration [m/s^2] (7.5)
    "brake_decel_mps2": (("hard_brake",), (0.5, 12.0)),
    # how long the lead stands still before driving on [s] (3)
    "hold_s": (("hard_brake",), (0.0, MAX_DURATION_S)),
}


class ConfigError(ValueError):
    """A world configuration value is invalid; the message names the field."""


@dataclass(frozen=True)
class EgoControl:
    """One control command in CARLA's convention (carla_msgs/CarlaEgoVehicleControl).

    Attributes:
        throttle: [0, 1].
        steer: [-1, 1], POSITIVE = TURN RIGHT (clockwise seen from above), normalised by the
            ego's maximum wheel angle (docs/CONTRACTS.md "Control").
        brake: [0, 1].
        hand_brake: strong braking when True.
        reverse: drive backwards (throttle accelerates in reverse).
    """

    throttle: float = 0.0
    steer: float = 0.0
    brake: float = 0.0
    hand_brake: bool = False
    reverse: bool = False

    def sanitized(self) -> tuple[EgoControl, list[str]]:
        """A copy with every value clipped into range and NaN/inf replaced by 0 (brake by 1),
        plus a list of human-readable problems found (empty when the command was valid)."""
        problems: list[str] = []

        def clean(name: str, value: float, lo: float, hi: float, bad: float) -> float:
            v = float(value)
            if not math.isfinite(v):
                problems.append(f"EgoControl.{name} is {v}; using {bad}")
                return bad
            if v < lo or v > hi:
                problems.append(f"EgoControl.{name}={v} outside [{lo}, {hi}]; clipped")
                return min(max(v, lo), hi)
            return v

        fixed = EgoControl(
            throttle=clean("throttle", self.throttle, 0.0, 1.0, 0.0),
            steer=clean("steer", self.steer, -1.0, 1.0, 0.0),
            brake=clean("brake", self.brake, 0.0, 1.0, 1.0),
            hand_brake=bool(self.hand_brake),
            reverse=bool(self.reverse),
        )
        return fixed, problems


@dataclass(frozen=True)
class Instruction:
    """The scenario's driving instruction (mirrors tps_msgs/DrivingInstruction).

    Attributes:
        text: natural-language instruction, e.g. "take the second exit".
        command: one of the CMD_* constants (= DrivingInstruction constants).
        exit_number: 1-based exit for CMD_TAKE_EXIT, else 0.
        target_speed_mps: requested cruise speed [m/s]; < 0 means none given.
    """

    text: str
    command: int
    exit_number: int = 0
    target_speed_mps: float = -1.0


@dataclass(frozen=True)
class WorldConfig:
    """Everything that determines an episode (together with the code version).

    Attributes:
        scenario: one of ``tps_sim.world.SCENARIOS``.
        seed: episode seed (SUMO ``--seed``, clutter placement, adversary timing). See
            ``tps_sim.splits`` for which seeds may be used for what.
        density: traffic-flow scale factor, >= 0 (0 = no background traffic; 1 = nominal).
        clutter: background clutter level, one of none/low/medium/high.
        ego_driver: "external" (kinematic bicycle model driven by EgoControl) or "expert"
            (SUMO drives the ego; the rule-based expert).
        duration_s: episode length [s].
        dt_s: simulation step [s].
        obstacles: extra static objects placed relative to the ego route, each a mapping with
            "kind" (debris/barrier/parked_car/pole), "route_s_m" (distance along the route
            AHEAD OF THE EGO'S START [m]), "lateral_m" (left of the route centreline [m]),
            optional "size_m" [l, w, h] and "yaw_rad" (relative to the route heading). SUMO
            traffic and the expert see them (a stopped placeholder vehicle blocks the lane).
        warmup_s: seconds of SUMO traffic simulated before t = 0 so the roads are populated.
        adversary: overrides of the scripted adversary's seeded parameters (``ADVERSARY_PARAMETERS``:
            e.g. ``{"cut_gap_m": 4.0, "speed_delta_mps": 8.0}`` for cut_in); each must apply to the
            scenario's adversary. Empty: everything drawn from the seed.
        instruction: "" = the scenario's own instruction; "seeded" = a seeded pick among the
            scenario's instruction variants (``Scenario.instruction_variants``; its own where it
            has none); a variant key (e.g. "change_lane_left") = that one. The expert executes it.
    """

    scenario: str = "highway"
    seed: int = 0
    density: float = 1.0
    clutter: str = "medium"
    ego_driver: str = "external"
    duration_s: float = 30.0
    dt_s: float = 0.1
    obstacles: tuple = field(default_factory=tuple)
    warmup_s: float = 40.0
    adversary: dict = field(default_factory=dict)
    instruction: str = ""

    def validate(self) -> None:
        """Raise ConfigError naming the first invalid field."""
        from tps_sim.world.scenarios import SCENARIOS  # local: scenarios imports config

        if not isinstance(self.scenario, str) or self.scenario not in SCENARIOS:
            raise ConfigError(f"scenario: unknown scenario {self.scenario!r}; expected one of "
                              f"{sorted(SCENARIOS)}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"seed: must be a non-negative int, got {self.seed!r}")
        if self.seed >= 2**31:
            raise ConfigError(f"seed: must be < 2**31 (SUMO's --seed), got {self.seed}")
        _check_number("density", self.density, 0.0, MAX_DENSITY)
        if self.clutter not in CLUTTER_LEVELS:
            raise ConfigError(f"clutter: unknown level {self.clutter!r}; expected one of "
                              f"{list(CLUTTER_LEVELS)}")
        if self.ego_driver not in EGO_DRIVERS:
            raise ConfigError(f"ego_driver: unknown driver {self.ego_driver!r}; expected one of "
                              f"{list(EGO_DRIVERS)}")
        _check_number("dt_s", self.dt_s, 0.0, MAX_DT_S, low_open=True)
        _check_number("duration_s", self.duration_s, 0.0, MAX_DURATION_S, low_open=True)
        if self.duration_s < self.dt_s:
            raise ConfigError(f"duration_s: {self.duration_s} is shorter than one step "
                              f"(dt_s={self.dt_s})")
        _check_number("warmup_s", self.warmup_s, 0.0, 600.0)
        if not isinstance(self.obstacles, (tuple, list)):
            raise ConfigError("obstacles: must be a tuple of mappings")
        for i, ob in enumerate(self.obstacles):
            _check_obstacle(i, ob)
        _check_adversary(self.adversary, SCENARIOS[self.scenario].adversary, self.scenario)
        problem = SCENARIOS[self.scenario].instruction_problem(self.instruction)
        if problem is not None:
            raise ConfigError(f"instruction: {problem}")


def _check_number(name: str, value: object, lo: float, hi: float, low_open: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name}: must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ConfigError(f"{name}: must be finite, got {v}")
    if (v <= lo if low_open else v < lo) or v > hi:
        bracket = "(" if low_open else "["
        raise ConfigError(f"{name}: {v} outside the allowed range {bracket}{lo}, {hi}]")


def _check_adversary(values: object, kind: str, scenario: str) -> None:
    if not isinstance(values, dict):
        raise ConfigError(f"adversary: must be a mapping, got {type(values).__name__}")
    for name, value in values.items():
        if name not in ADVERSARY_PARAMETERS:
            raise ConfigError(f"adversary.{name}: unknown parameter; expected one of "
                              f"{sorted(ADVERSARY_PARAMETERS)}")
        kinds, (lo, hi) = ADVERSARY_PARAMETERS[name]
        if kind not in kinds:
            raise ConfigError(f"adversary.{name}: applies to the {'/'.join(kinds)} adversary; "
                              f"scenario {scenario!r} has {kind or 'none'}")
        _check_number(f"adversary.{name}", value, lo, hi)


def _check_obstacle(i: int, ob: object) -> None:
    field_name = f"obstacles[{i}]"
    if not isinstance(ob, dict):
        raise ConfigError(f"{field_name}: must be a mapping, got {type(ob).__name__}")
    unknown = set(ob) - {"kind", "route_s_m", "lateral_m", "size_m", "yaw_rad"}
    if unknown:
        raise ConfigError(f"{field_name}: unknown keys {sorted(unknown)}")
    if ob.get("kind") not in OBSTACLE_KINDS:
        raise ConfigError(f"{field_name}.kind: {ob.get('kind')!r} not one of {list(OBSTACLE_KINDS)}")
    if "route_s_m" not in ob:
        raise ConfigError(f"{field_name}.route_s_m: missing")
    _check_number(f"{field_name}.route_s_m", ob["route_s_m"], 0.0, 1e5)
    _check_number(f"{field_name}.lateral_m", ob.get("lateral_m", 0.0), -50.0, 50.0)
    _check_number(f"{field_name}.yaw_rad", ob.get("yaw_rad", 0.0), -10.0, 10.0)
    if "size_m" in ob:
        size = ob["size_m"]
        if not isinstance(size, (list, tuple)) or len(size) != 3:
            raise ConfigError(f"{field_name}.size_m: must be [length, width, height]")
        for k, v in enumerate(size):
            _check_number(f"{field_name}.size_m[{k}]", v, 0.0, 100.0, low_open=True)
