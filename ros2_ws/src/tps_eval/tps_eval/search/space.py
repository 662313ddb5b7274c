"""The scenario parameter space of a failure search (``config/search/*.yaml``), plain data.

A space file::

    name: default
    description: free text
    configuration: planner        # the stack configuration searched (tps_eval.suite.CONFIGURATIONS)
    duration_s: 12.0              # episode length [s]
    route_goal_m: 100.0           # scored route (tps_eval.suite)
    parameters:                   # name: {type, low/high or choices[, log]}
      scenario: {type: categorical, choices: [cut_in, hard_brake, stalled]}
      clutter: {type: categorical, choices: [none, low, medium, high]}
      density: {type: float, low: 0.3, high: 2.0}
      adversary.cut_gap_m: {type: float, low: 2.0, high: 13.0}
      fault: {type: categorical, choices: [none, missed_agents, point_dropout]}
      fault.onset_s: {type: float, low: 1.0, high: 8.0}
      fault.severity: {type: float, low: 0.1, high: 1.0}
      obstacle.kind: {type: categorical, choices: [none, debris, parked_car]}
      obstacle.route_s_m: {type: float, low: 30.0, high: 150.0}
      obstacle.lateral_m: {type: float, low: -2.0, high: 2.0}

Parameter names say where a value goes (:data:`PARAMETER_GROUPS`):

- ``scenario`` (required), ``clutter``, ``density``: the episode's world (``WorldConfig``);
- ``adversary.<name>``: ``WorldConfig.adversary`` (``tps_sim.world.config.ADVERSARY_PARAMETERS``);
  it applies only where the scenario's adversary has that parameter, and a point of another
  scenario leaves it out (a conditional parameter: the optimiser never samples it there);
- ``fault`` (one of :data:`FAULTS`), ``fault.onset_s``, ``fault.severity`` in [0, 1]: one fault,
  mapped by :data:`FAULTS` to the detector's ``fault_*`` parameters or the bridge's sensor faults;
  ``fault.*`` apply only when ``fault`` is not ``none``;
- ``obstacle.kind`` (``none`` or a ``WorldConfig`` obstacle kind), ``obstacle.route_s_m``,
  ``obstacle.lateral_m``: one static obstacle on the route; ``obstacle.*`` apply only with a kind.

A **point** is ``{parameter: value}`` of the parameters that apply to it. :meth:`SearchSpace.check`
rejects a point outside the space naming the parameter (:class:`SearchSpaceError`); every point
inside it is accepted by the simulator (``tests/eval/test_search_space.py`` checks the corners of
the shipped spaces against ``WorldConfig.validate`` and the sensor-fault parser).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

PARAMETER_TYPES = ("float", "int", "categorical")
WORLD_PARAMETERS = ("scenario", "clutter", "density")
SPACE_KEYS = ("name", "description", "configuration", "duration_s", "route_goal_m", "parameters")
NONE = "none"


def _detector(**params: Callable[[float], Any]) -> dict:
    return {"node": "perception", "params": params}


def _sensor(name: str, **params: Callable[[float], Any]) -> dict:
    return {"sensor": name, "params": params}


# fault name -> where it goes and its parameters as functions of the severity s in [0, 1].
# Detector faults: perception_node fault_* (tps_perception.faults), onset fault_onset_s.
# Sensor faults: the bridge's tps_sim.sensors.faults, onset onset_s.
FAULTS: dict[str, dict] = {
    "detector_blackout": _detector(fault_blackout=lambda s: True),
    "missed_agents": _detector(fault_drop_rate=lambda s: round(float(s), 4)),       # share dropped
    "phantom_agents": _detector(fault_phantom_rate=lambda s: round(2.0 * s, 4)),   # per frame
    "pose_noise": _detector(fault_position_noise_m=lambda s: round(2.0 * s, 4),
                            fault_heading_noise_rad=lambda s: round(0.5 * s, 4)),
    "point_dropout": _sensor("point_dropout", fraction=lambda s: round(float(s), 4)),
    "nan_points": _sensor("nan_points", fraction=lambda s: round(0.5 * s, 4)),
    "camera_black": _sensor("camera_black", probability=lambda s: round(float(s), 4)),
}


class SearchSpaceError(ValueError):
    """A space file or a point is invalid; the message names the parameter."""


@dataclass(frozen=True)
class Parameter:
    """One dimension of the space."""

    name: str
    type: str
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    log: bool = False

    def check(self, value: Any) -> None:
        """SearchSpaceError naming this parameter when ``value`` is outside its range."""
        if self.type == "categorical":
            if value not in self.choices:
                raise SearchSpaceError(f"{self.name}: {value!r} is not one of {list(self.choices)}")
            return
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SearchSpaceError(f"{self.name}: {value!r} is not a number")
        if self.type == "int" and float(value) != int(value):
            raise SearchSpaceError(f"{self.name}: {value!r} is not an integer")
        if not math.isfinite(float(value)) or not self.low <= float(value) <= self.high:
            raise SearchSpaceError(f"{self.name}: {value!r} outside [{self.low}, {self.high}]")

    def suggest(self, trial) -> Any:
        """The optuna trial's value of this parameter."""
        if self.type == "categorical":
            return trial.suggest_categorical(self.name, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)

    def corners(self) -> list:
        """The extreme values (every choice of a categorical)."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


@dataclass(frozen=True)
class SearchSpace:
    """A parsed space file."""

    name: str
    description: str
    configuration: str
    duration_s: float
    route_goal_m: float | None
    parameters: dict          # name -> Parameter, in file order
    source: str = ""

    # --- which parameters apply to a point ---------------------------------------------------
    def applies(self, name: str, partial: Mapping[str, Any]) -> bool:
        """Whether parameter ``name`` applies given the values decided so far (``scenario``,
        ``fault``, ``obstacle.kind``); parameters are decided in file order, conditions first."""
        from tps_sim.world.config import ADVERSARY_PARAMETERS
        from tps_sim.world.scenarios import SCENARIOS

        if name.startswith("adversary."):
            kinds = ADVERSARY_PARAMETERS[name.split(".", 1)[1]][0]
            return SCENARIOS[partial["scenario"]].adversary in kinds
        if name.startswith("fault."):
            return partial.get("fault", NONE) != NONE
        if name.startswith("obstacle.") and name != "obstacle.kind":
            return partial.get("obstacle.kind", NONE) != NONE
        return True

    def sample(self, trial) -> dict:
        """A point from an optuna trial (define-by-run: only the parameters that apply)."""
        point: dict = {}
        for name, p in self.parameters.items():
            if self.applies(name, point):
                point[name] = p.suggest(trial)
        return point

    def check(self, point: Mapping[str, Any]) -> dict:
        """The point, checked: every parameter declared, in range and applicable, every
        applicable one present. Raises SearchSpaceError naming the parameter."""
        if not isinstance(point, Mapping):
            raise SearchSpaceError(f"a point must be a mapping of parameter -> value, got {point!r}")
        unknown = sorted(set(point) - set(self.parameters))
        if unknown:
            raise SearchSpaceError(f"{unknown[0]}: not a parameter of space {self.name!r} "
                                   f"(parameters: {list(self.parameters)})")
        out: dict = {}
        for name, p in self.parameters.items():
            if not self.applies(name, out):
                if name in point:
                    raise SearchSpaceError(f"{name}: does not apply to this point "
                                           f"(scenario {out.get('scenario')!r}, fault "
                                           f"{out.get('fault', NONE)!r}, obstacle "
                                           f"{out.get('obstacle.kind', NONE)!r})")
                continue
            if name not in point:
                raise SearchSpaceError(f"{name}: missing from the point")
            p.check(point[name])
            out[name] = point[name]
        return out

    # --- a point as an episode ---------------------------------------------------------------
    def case_options(self, point: Mapping[str, Any]) -> dict:
        """The suite-case options of a checked point: scenario, duration_s, density, clutter,
        faults (bridge), obstacles, route_goal_m, node_parameters (perception), adversary."""
        point = self.check(point)
        opts: dict = {"scenario": point["scenario"], "duration_s": self.duration_s,
                      "density": float(point.get("density", 1.0)),
                      "clutter": point.get("clutter", "low"), "faults": {}, "obstacles": [],
                      "route_goal_m": self.route_goal_m, "node_parameters": {},
                      "adversary": {k.split(".", 1)[1]: float(v) for k, v in point.items()
                                    if k.startswith("adversary.")}}
        fault = point.get("fault", NONE)
        if fault != NONE:
            spec = FAULTS[fault]
            onset = float(point.get("fault.onset_s", 0.0))
            severity = float(point.get("fault.severity", 1.0))
            values = {k: fn(severity) for k, fn in spec["params"].items()}
            if "node" in spec:
                opts["node_parameters"] = {spec["node"]: {**values, "fault_onset_s": onset}}
            else:
                opts["faults"] = {spec["sensor"]: {**values, "onset_s": onset}}
        kind = point.get("obstacle.kind", NONE)
        if kind != NONE:
            opts["obstacles"] = [{"kind": kind, "route_s_m": float(point["obstacle.route_s_m"]),
                                  "lateral_m": float(point.get("obstacle.lateral_m", 0.0))}]
        return opts

    def corner_points(self) -> list[dict]:
        """Every combination of the categorical parameters, each with every numeric parameter at
        its low and then at its high end (for checking that the simulator accepts the space)."""
        import itertools

        cats = [n for n, p in self.parameters.items() if p.type == "categorical"]
        points = []
        for combo in itertools.product(*(self.parameters[n].choices for n in cats)):
            for end in (0, -1):
                raw = {n: p.corners()[end] for n, p in self.parameters.items()}
                raw.update(zip(cats, combo, strict=True))
                out: dict = {}
                for name in self.parameters:
                    if self.applies(name, out):
                        out[name] = raw[name]
                points.append(out)
        return points


def space_path(name_or_path: str | Path) -> Path:
    """``config/search/<name>.yaml`` for a name, the path itself for a path."""
    from tps_eval.suite import repo_root

    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return repo_root() / "config" / "search" / f"{name_or_path}.yaml"


def load_space(name_or_path: str | Path) -> SearchSpace:
    """Read and check a space file (SearchSpaceError naming the field)."""
    path = space_path(name_or_path)
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SearchSpaceError(f"space {path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise SearchSpaceError(f"space {path}: not YAML: {exc}") from None
    return parse_space(data, str(path))


def parse_space(data: Any, source: str = "") -> SearchSpace:
    """Validate raw space data (see the module docstring)."""
    from tps_sim.world.config import (
        ADVERSARY_PARAMETERS,
        CLUTTER_LEVELS,
        MAX_DENSITY,
        MAX_DURATION_S,
        OBSTACLE_KINDS,
    )
    from tps_sim.world.scenarios import SCENARIOS

    from tps_eval.suite import CONFIGURATIONS

    where = f"space {source or '?'}"
    if not isinstance(data, dict):
        raise SearchSpaceError(f"{where}: expected a mapping")
    unknown = sorted(set(data) - set(SPACE_KEYS))
    if unknown:
        raise SearchSpaceError(f"{where}: unknown keys {unknown} (allowed: {list(SPACE_KEYS)})")
    config = data.get("configuration", "planner")
    if config not in CONFIGURATIONS:
        raise SearchSpaceError(f"{where}: configuration: {config!r} not one of {list(CONFIGURATIONS)}")
    duration = data.get("duration_s", 12.0)
    if isinstance(duration, bool) or not isinstance(duration, (int, float)) \
            or not 0 < duration <= MAX_DURATION_S:
        raise SearchSpaceError(f"{where}: duration_s: {duration!r} outside (0, {MAX_DURATION_S}]")
    goal = data.get("route_goal_m")
    if goal is not None and (isinstance(goal, bool) or not isinstance(goal, (int, float))
                             or goal <= 0):
        raise SearchSpaceError(f"{where}: route_goal_m: {goal!r} must be a positive number")
    raw = data.get("parameters")
    if not isinstance(raw, dict) or "scenario" not in raw:
        raise SearchSpaceError(f"{where}: parameters: expected a mapping with 'scenario'")
    # the domain every parameter must stay inside (what the simulator accepts)
    allowed_choices = {"scenario": tuple(SCENARIOS), "clutter": CLUTTER_LEVELS,
                       "fault": (NONE, *FAULTS), "obstacle.kind": (NONE, *OBSTACLE_KINDS)}
    allowed_range = {"density": (0.0, MAX_DENSITY), "fault.onset_s": (0.0, MAX_DURATION_S),
                     "fault.severity": (0.0, 1.0), "obstacle.route_s_m": (0.0, 1e5),
                     "obstacle.lateral_m": (-50.0, 50.0)}
    allowed_range.update({f"adversary.{k}": rng for k, (_, rng) in ADVERSARY_PARAMETERS.items()})
    params: dict = {}
    for name, spec in raw.items():
        f = f"{where}: parameters.{name}"
        if name not in allowed_choices and name not in allowed_range:
            raise SearchSpaceError(f"{f}: unknown parameter (known: "
                                   f"{sorted([*allowed_choices, *allowed_range])})")
        if not isinstance(spec, dict) or spec.get("type") not in PARAMETER_TYPES:
            raise SearchSpaceError(f"{f}: expected {{type: {'|'.join(PARAMETER_TYPES)}, ...}}")
        if name in allowed_choices:
            choices = spec.get("choices")
            if spec["type"] != "categorical" or not isinstance(choices, list) or not choices:
                raise SearchSpaceError(f"{f}: must be categorical with a non-empty choices list")
            bad = [c for c in choices if c not in allowed_choices[name]]
            if bad:
                raise SearchSpaceError(f"{f}: choices {bad} not in {list(allowed_choices[name])}")
            params[name] = Parameter(name, "categorical", choices=tuple(choices))
            continue
        lo, hi = spec.get("low"), spec.get("high")
        if spec["type"] == "categorical":
            raise SearchSpaceError(f"{f}: must be float or int")
        for key, v in (("low", lo), ("high", hi)):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise SearchSpaceError(f"{f}.{key}: {v!r} is not a finite number")
        a, b = allowed_range[name]
        if not a <= lo < hi <= b:
            raise SearchSpaceError(f"{f}: [{lo}, {hi}] must be a non-empty range inside [{a}, {b}]")
        log = bool(spec.get("log", False))
        if log and lo <= 0:
            raise SearchSpaceError(f"{f}: a log range needs low > 0")
        params[name] = Parameter(name, spec["type"], float(lo), float(hi), log=log)
    # conditions before the parameters they govern: scenario, fault, obstacle.kind first
    order = sorted(params, key=lambda n: (0 if n in ("scenario", "fault", "obstacle.kind") else 1))
    space = SearchSpace(str(data.get("name") or Path(source).stem or "space"),
                        str(data.get("description", "")), str(config), float(duration),
                        None if goal is None else float(goal), {n: params[n] for n in order},
                        source)
    for name in params:
        if name.startswith("adversary."):
            kinds = ADVERSARY_PARAMETERS[name.split(".", 1)[1]][0]
            if not any(SCENARIOS[s].adversary in kinds for s in params["scenario"].choices):
                raise SearchSpaceError(f"{where}: parameters.{name}: applies to the "
                                       f"{'/'.join(kinds)} adversary, which no scenario of the "
                                       f"space has")
    return space
