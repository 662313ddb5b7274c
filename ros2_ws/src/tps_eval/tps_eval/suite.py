"""Evaluation suites (``config/suites/<name>.yaml``): cases x seeds x configurations.

A suite file::

    name: smoke
    description: free text
    seeds: "9000:9001"             # "A:B" = [A, B), "A", "A,B,C", a list, or {split, count}
                                   # (tps_eval.seeds: syntax, split label, held out)
    configurations: [stack, expert, naive]
    defaults: {duration_s: 15.0, density: 0.6, clutter: low, faults: {}, obstacles: []}
    cases:
      - scenario: roundabout
        route_goal_m: 120.0        # scored route: the first 120 m from the ego's start
                                   # (default: to the end of the route)
      - scenario: highway          # one of tps_sim.world.SCENARIOS
      - scenario: highway
        id: highway_debris         # unique case id (default: the scenario name)
        obstacles: [{kind: debris, route_s_m: 110.0, lateral_m: 0.0}]
      - scenario: cut_in
        id: cut_in_tight
        adversary: {cut_gap_m: 4.0}   # overrides of the adversary's seeded parameters
                                      # (tps_sim.world.config.ADVERSARY_PARAMETERS)
        seeds: [5017]              # this case's own seeds instead of the suite's (e.g. the
                                   # failures a tps-eval search found, each with its seed)
      - scenario: highway
        id: highway_left
        instruction: change_lane_left  # WorldConfig.instruction: '' (the scenario's own),
                                   # 'seeded' or one of the scenario's instruction variants
      - scenario: cut_in
        id: cut_in_detector_blackout
        node_parameters:           # parameters of the graph's nodes for this case, by node name;
          perception: {fault_blackout: true}   # applied in each configuration whose graph has
                                   # the node (a node no configuration's graph has is an error);
                                   # merged per node over defaults.node_parameters (the case wins)

Configurations: ``stack`` (the full stack, ``sim_stack.yaml``: perception, the light reader, the VLM
planner, the confidence monitor, the fallback, the arbiter and the controller; the monitor's state
selects the source), ``planner`` (``sim_planner.yaml``: the same without the monitor; the arbiter
takes the VLM planner's candidate, its watchdog falls back only when the candidate is missing or
late), ``shadow`` (``sim_monitor_shadow.yaml``: ``planner`` with the monitor judging every frame
unheard, its cycles recorded for calibration), ``perception`` (``sim_perception.yaml``: the fallback's graph plus perception_node, nothing
reads its output: perception measured in the loop, driving equal to ``fallback``'s), ``fallback`` (the fallback driving alone: the safety net measured
on its own, whatever the stack becomes), ``expert`` (the bridge alone, SUMO drives the ego: the
privileged rule-based reference) and ``naive`` (the fallback with ``ignore_obstacles``: a lane
keeper at the lanes' speed limits). Each maps to a graph file under ``config/graph/`` (``graphs:``
in the suite overrides the mapping); ``tps-eval closedloop --configurations`` runs a subset.

Everything here is plain data (no ROS); bad files raise :class:`SuiteError` naming the field.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tps_eval.seeds import SeedError, SeedSet, seed_set

CONFIGURATIONS = ("stack", "planner", "shadow", "perception", "fallback", "expert", "naive")
DEFAULT_CONFIGURATIONS = ("stack", "expert", "naive")   # a suite that names none
# Report order of the configurations (aggregates, tables, JSON).
CONFIGURATION_ORDER = ("stack", "planner", "shadow", "perception", "fallback", "naive", "expert")
DEFAULT_GRAPHS = {
    "stack": "config/graph/sim_stack.yaml",        # the full stack: perception, planner, monitor, fallback, ...
    "planner": "config/graph/sim_planner.yaml",    # the full stack without the monitor: the VLM planner drives
    "shadow": "config/graph/sim_monitor_shadow.yaml",   # the planner drives, the monitor judges unheard
    "perception": "config/graph/sim_perception.yaml",   # the fallback graph + perception_node
    "fallback": "config/graph/sim_fallback.yaml",
    "expert": "config/graph/sim_expert.yaml",
    "naive": "config/graph/sim_naive.yaml",
}
CASE_OPTION_KEYS = ("duration_s", "density", "clutter", "faults", "obstacles", "route_goal_m",
                    "node_parameters", "adversary", "instruction")
SUITE_KEYS = ("name", "description", "seeds", "configurations", "defaults", "cases", "graphs")
BUILTIN_DEFAULTS = {"duration_s": 15.0, "density": 1.0, "clutter": "medium", "faults": {},
                    "obstacles": [], "route_goal_m": None, "node_parameters": {}, "adversary": {},
                    "instruction": ""}


class SuiteError(ValueError):
    """A suite file or a seed range is invalid; the message names the field."""


def repo_root() -> Path:
    """The repository root (``TPS_ROOT`` overrides): where config/ and runs/ live."""
    env = os.environ.get("TPS_ROOT")
    if env:
        return Path(env)
    # ros2_ws/src/tps_eval/tps_eval/suite.py -> repository root
    return Path(__file__).resolve().parents[4]


@dataclass(frozen=True)
class Case:
    """One scenario variant of a suite."""

    id: str
    scenario: str
    duration_s: float
    density: float
    clutter: str
    faults: dict = field(default_factory=dict)
    obstacles: list = field(default_factory=list)
    route_goal_m: float | None = None
    node_parameters: dict = field(default_factory=dict)   # {node name: {parameter: value}}
    adversary: dict = field(default_factory=dict)   # WorldConfig.adversary overrides
    seeds: tuple = ()         # the case's own seeds; empty: the suite's
    instruction: str = ""     # WorldConfig.instruction ('' = the scenario's own)


@dataclass(frozen=True)
class Suite:
    """A parsed suite file."""

    name: str
    description: str
    seeds: tuple[int, ...]
    configurations: tuple[str, ...]
    cases: tuple[Case, ...]
    graphs: dict
    source: str = ""
    seed_spec: str = ""

    @property
    def seed_set(self) -> SeedSet:
        """The suite's seeds with their split label (``tps_eval.seeds``)."""
        return SeedSet(self.seeds, self.seed_spec)


@dataclass(frozen=True)
class EpisodeSpec:
    """Everything one worker needs to run one episode (plain, picklable data)."""

    suite: str
    case_id: str
    scenario: str
    seed: int
    configuration: str
    duration_s: float
    density: float
    clutter: str
    faults: dict
    obstacles: list
    graph: str
    out_dir: str
    route_goal_m: float | None = None
    record: bool = False          # write the episode's full topic set to <episode dir>/episode.mcap
    node_parameters: dict = field(default_factory=dict)   # {node: {parameter: value}} of this graph
    adversary: dict = field(default_factory=dict)   # WorldConfig.adversary overrides (bridge)
    instruction: str = ""     # WorldConfig.instruction (bridge)

    @property
    def key(self) -> str:
        """Unique, file-name-safe id of the episode within a run."""
        return f"{self.case_id}-s{self.seed}-{self.configuration}"

    @property
    def group(self) -> tuple[str, int]:
        """(case id, seed): the episodes that share a world and so an expert reference."""
        return (self.case_id, self.seed)

    def to_dict(self) -> dict:
        """JSON-ready dict."""
        return asdict(self)


def suite_path(name_or_path: str | os.PathLike) -> Path:
    """``config/suites/<name>.yaml`` for a name, the path itself for a path."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.exists():
        return p
    return repo_root() / "config" / "suites" / f"{name_or_path}.yaml"


def available_suites() -> list[str]:
    """Names of the suites under ``config/suites``."""
    d = repo_root() / "config" / "suites"
    return sorted(p.stem for p in d.glob("*.yaml"))


def load_suite(name_or_path: str | os.PathLike, seeds: Any = None,
               configurations: Any = None) -> Suite:
    """Read and validate a suite; ``seeds`` (e.g. ``"9000:9005"``) overrides the file's seeds,
    ``configurations`` (a list or a comma-separated string) its configurations.

    Raises:
        SuiteError: unknown suite, bad YAML, unknown keys, unknown scenario, bad option.
    """
    path = suite_path(name_or_path)
    if not path.is_file():
        raise SuiteError(f"suite {str(name_or_path)!r}: no file {path} (available: "
                         f"{', '.join(available_suites())})")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SuiteError(f"suite {path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise SuiteError(f"suite {path}: expected a mapping at the top level")
    if configurations is not None:
        if isinstance(configurations, str):
            configurations = [c.strip() for c in configurations.split(",") if c.strip()]
        data = dict(data, configurations=list(configurations))
    return parse_suite(data, seeds=seeds, source=str(path))


def parse_suite(data: dict, seeds: Any = None, source: str = "") -> Suite:
    """Validate raw suite data (see the module docstring)."""
    where = f"suite {source or data.get('name', '?')}"
    unknown = set(data) - set(SUITE_KEYS)
    if unknown:
        raise SuiteError(f"{where}: unknown keys {sorted(unknown)} (allowed: {list(SUITE_KEYS)})")
    name = str(data.get("name") or Path(source).stem or "suite")
    try:
        seed_list = seed_set(seeds if seeds is not None else data.get("seeds", "9000:9001"))
    except SeedError as exc:
        raise SuiteError(f"seeds: {exc}") from None
    configs = tuple(data.get("configurations", DEFAULT_CONFIGURATIONS))
    for c in configs:
        if c not in CONFIGURATIONS:
            raise SuiteError(f"{where}: configurations: unknown {c!r} (allowed: "
                             f"{list(CONFIGURATIONS)})")
    if any(c != "expert" for c in configs):
        # EP needs the expert's progress in the same world.
        if "expert" not in configs:
            configs = configs + ("expert",)
    graphs = dict(DEFAULT_GRAPHS)
    graphs.update(data.get("graphs") or {})
    defaults = dict(BUILTIN_DEFAULTS)
    raw_defaults = data.get("defaults") or {}
    bad = set(raw_defaults) - set(CASE_OPTION_KEYS)
    if bad:
        raise SuiteError(f"{where}: defaults: unknown keys {sorted(bad)} (allowed: "
                         f"{list(CASE_OPTION_KEYS)})")
    defaults.update(raw_defaults)
    raw_cases = data.get("cases")
    if not isinstance(raw_cases, list) or not raw_cases:
        raise SuiteError(f"{where}: cases: expected a non-empty list")
    from tps_sim.world.config import CLUTTER_LEVELS, MAX_DENSITY, MAX_DURATION_S, ConfigError, WorldConfig
    from tps_sim.world.scenarios import SCENARIOS

    cases = []
    ids = set()
    for i, rc in enumerate(raw_cases):
        f = f"{where}: cases[{i}]"
        if not isinstance(rc, dict) or "scenario" not in rc:
            raise SuiteError(f"{f}: expected a mapping with 'scenario'")
        bad = set(rc) - set(CASE_OPTION_KEYS) - {"scenario", "id", "seeds"}
        if bad:
            raise SuiteError(f"{f}: unknown keys {sorted(bad)}")
        scen = rc["scenario"]
        if scen not in SCENARIOS:
            raise SuiteError(f"{f}.scenario: unknown {scen!r} (expected one of "
                             f"{sorted(SCENARIOS)})")
        opts = {k: rc.get(k, defaults[k]) for k in CASE_OPTION_KEYS}
        if isinstance(rc.get("node_parameters"), dict) and isinstance(defaults["node_parameters"], dict):
            # per node, a case's parameters are added to (and win over) the defaults' for that node
            merged = {n: dict(v) for n, v in defaults["node_parameters"].items() if isinstance(v, dict)}
            for n, v in rc["node_parameters"].items():
                merged[n] = {**merged.get(n, {}), **v} if isinstance(v, dict) else v
            opts["node_parameters"] = merged
        cid = str(rc.get("id", scen))
        if cid in ids:
            raise SuiteError(f"{f}.id: duplicate case id {cid!r}")
        ids.add(cid)
        dur = opts["duration_s"]
        if not isinstance(dur, (int, float)) or not 0 < float(dur) <= MAX_DURATION_S:
            raise SuiteError(f"{f}.duration_s: {dur!r} outside (0, {MAX_DURATION_S}]")
        dens = opts["density"]
        if not isinstance(dens, (int, float)) or not 0 <= float(dens) <= MAX_DENSITY:
            raise SuiteError(f"{f}.density: {dens!r} outside [0, {MAX_DENSITY}]")
        if opts["clutter"] not in CLUTTER_LEVELS:
            raise SuiteError(f"{f}.clutter: {opts['clutter']!r} not one of {list(CLUTTER_LEVELS)}")
        if not isinstance(opts["faults"], dict):
            raise SuiteError(f"{f}.faults: expected a mapping")
        if not isinstance(opts["obstacles"], list):
            raise SuiteError(f"{f}.obstacles: expected a list")
        goal = opts["route_goal_m"]
        if goal is not None and (isinstance(goal, bool) or not isinstance(goal, (int, float))
                                 or not goal > 0):
            raise SuiteError(f"{f}.route_goal_m: {goal!r} must be a positive number of metres")
        node_params = _node_parameters(opts["node_parameters"], f"{f}.node_parameters")
        try:
            WorldConfig(scenario=scen, adversary=opts["adversary"], instruction=opts["instruction"]).validate()
        except ConfigError as exc:
            raise SuiteError(f"{f}.{exc}") from None
        case_seeds: tuple = ()
        if "seeds" in rc:
            try:
                case_seeds = tuple(seed_set(rc["seeds"]).seeds)
            except SeedError as exc:
                raise SuiteError(f"{f}.seeds: {exc}") from None
        cases.append(Case(cid, scen, float(dur), float(dens), str(opts["clutter"]),
                          dict(opts["faults"]), list(opts["obstacles"]),
                          None if goal is None else float(goal), node_params,
                          dict(opts["adversary"]), case_seeds, str(opts["instruction"])))
    return Suite(name, str(data.get("description", "")), seed_list.seeds, configs,
                 tuple(cases), graphs, source, seed_list.spec)


def _node_parameters(value: Any, where: str) -> dict:
    """``{node name: {parameter: scalar}}`` checked (a case's ``node_parameters``)."""
    if not isinstance(value, dict):
        raise SuiteError(f"{where}: expected a mapping of node name -> {{parameter: value}}")
    out = {}
    for node, params in value.items():
        if not isinstance(params, dict) or not params:
            raise SuiteError(f"{where}.{node}: expected a non-empty mapping of parameter -> value")
        for k, v in params.items():
            if not isinstance(v, (bool, int, float, str)):
                raise SuiteError(f"{where}.{node}.{k}: {v!r} is not a bool, number or string")
        out[str(node)] = {str(k): v for k, v in params.items()}
    return out


def graph_node_names(graph: str | os.PathLike) -> set[str]:
    """The node names a graph file declares (``nodes[].name``); empty when it cannot be read."""
    try:
        data = yaml.safe_load(Path(graph).read_text())
    except (OSError, yaml.YAMLError):
        return set()
    nodes = data.get("nodes") if isinstance(data, dict) else None
    return {str(n["name"]) for n in nodes or [] if isinstance(n, dict) and "name" in n}


def plan_episodes(suite: Suite, out_dir: str | os.PathLike) -> list[EpisodeSpec]:
    """Every episode of the suite, in a fixed order (case, seed, configuration).

    A case's ``node_parameters`` go to the configurations whose graph has that node (a detector
    fault means nothing to the expert's graph, which has no detector).

    Raises:
        SuiteError: a case names a node that no configuration's graph of the suite has.
    """
    root = repo_root()
    graphs = {}
    for cfg in suite.configurations:
        graph = Path(suite.graphs[cfg])
        graphs[cfg] = graph if graph.is_absolute() else root / graph
    names = {cfg: graph_node_names(g) for cfg, g in graphs.items()}
    for case in suite.cases:
        unknown = set(case.node_parameters) - set().union(*names.values())
        if unknown:
            raise SuiteError(f"suite {suite.name}: case {case.id}: node_parameters names "
                             f"{sorted(unknown)}, which no graph of {list(suite.configurations)} has")
    specs = []
    for case in suite.cases:
        for seed in case.seeds or suite.seeds:
            for cfg in suite.configurations:
                graph = graphs[cfg]
                specs.append(EpisodeSpec(
                    suite=suite.name, case_id=case.id, scenario=case.scenario, seed=int(seed),
                    configuration=cfg, duration_s=case.duration_s, density=case.density,
                    clutter=case.clutter, faults=json.loads(json.dumps(case.faults)),
                    obstacles=json.loads(json.dumps(case.obstacles)), graph=str(graph),
                    out_dir=str(out_dir), route_goal_m=case.route_goal_m,
                    node_parameters={n: dict(p) for n, p in case.node_parameters.items()
                                     if n in names[cfg]},
                    adversary=dict(case.adversary), instruction=case.instruction))
    return specs
