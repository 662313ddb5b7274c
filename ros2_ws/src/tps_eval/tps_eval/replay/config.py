"""The replay configuration (``tps-replay --config FILE``) and the node table
(``config/replay/nodes.yaml``). Plain data, no ROS.

A configuration adapts a bag to the stack without code: which graph runs, graph overrides, topic
remaps, the lidar's field names and frame, static transforms, and how stamps are treated::

    graph: config/graph/stack_carla.yaml     # the node graph to replay into (default)
    nodes: [perception]                      # run only these nodes of it (default: all)
    set:                                     # tps-bringup --set overrides of the graph
      - nodes.perception.parameters.expected_frame=velodyne
    remap: {/velodyne_points: /carla/ego_vehicle/lidar}   # bag topic -> topic the graph reads
    inputs:                                  # roles of topics (after remapping)
      lidar: /carla/ego_vehicle/lidar        # the frame trigger (lockstep waits after each)
      camera: /carla/ego_vehicle/rgb_front/image
      odometry: /carla/ego_vehicle/odometry
      ground_truth: /tps/sim/ground_truth
      lane_map: /tps/map/lane_map
      route: /planning/route
    play: []                                 # play only these bag topics (after remap; [] = all)
    drop: [/my_driver/diagnostics]           # bag topics (after remap) never played
    lidar:
      fields: {reflectivity: intensity}      # PointField renames, bag name -> stack name
      frame_id: ""                           # rewrite the cloud's frame_id ("" = keep)
    static_transforms:                       # published on /tf_static with the bag's own
      - {parent: base_link, child: velodyne, xyz_rpy: [1.2, 0.0, 2.0, 0.0, 0.035, 0.017]}
    time:
      clock: bag                             # /clock follows bag time (bag) or the lidar stamps (header)
      restamp: false                         # true: header stamps := bag time (broken driver clocks)
      non_monotonic: drop                    # a stamp going back on a topic: drop | keep
    lockstep:
      timeout_s: 5.0                         # wall seconds a frame waits for the graph's outputs
      give_up_after: 3                       # frames a silent node is waited for before giving up
    markers: false                           # true: add the stack_markers node (MarkerArray of the
                                             # graph's outputs on /tps/viz/markers, for RViz/Foxglove)

Errors name the field (:class:`ReplayConfigError`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

DEFAULT_GRAPH = "config/graph/stack_carla.yaml"
NODE_TABLE = "config/replay/nodes.yaml"
# Input roles and their default topics: the simulator's bags (carla-ros-bridge contract).
DEFAULT_INPUTS = {
    "lidar": "/carla/ego_vehicle/lidar",
    "camera": "/carla/ego_vehicle/rgb_front/image",
    "odometry": "/carla/ego_vehicle/odometry",
    "ground_truth": "/tps/sim/ground_truth",
    "lane_map": "/tps/map/lane_map",
    "route": "/planning/route",
}
TRIGGERS = ("lidar", "camera", "none")
ROLES = ("detections", "tokens", "candidate_trajectory", "fallback_trajectory", "selected_trajectory",
         "forecasts", "scene", "monitor_status", "traffic_lights", "control", "markers")
CLOCK_MODES = ("bag", "header")
NON_MONOTONIC = ("drop", "keep")
# Topics the replayer owns or that never go back into a graph.
NEVER_PLAYED = ("/clock", "/rosout", "/parameter_events", "/diagnostics", "/diagnostics_agg")
TOP_KEYS = ("graph", "nodes", "set", "remap", "inputs", "play", "drop", "lidar", "static_transforms", "markers",
            "time", "lockstep")


class ReplayConfigError(ValueError):
    """A replay configuration or node table is invalid; the message names the field."""


def repo_root() -> Path:
    """The repository root (``TPS_ROOT`` overrides)."""
    env = os.environ.get("TPS_ROOT")
    if env:
        return Path(env)
    # ros2_ws/src/tps_eval/tps_eval/replay/config.py -> repository root
    return Path(__file__).resolve().parents[5]


@dataclass(frozen=True)
class StaticTransform:
    """A configured ``/tf_static`` edge: ``T_parent<-child`` as x, y, z [m], roll, pitch, yaw [rad]."""

    parent: str
    child: str
    xyz_rpy: tuple[float, ...]


@dataclass(frozen=True)
class TimeConfig:
    """How bag time and header stamps are used (module docstring)."""

    clock: str = "bag"
    restamp: bool = False
    non_monotonic: str = "drop"


@dataclass(frozen=True)
class LockstepConfig:
    """Lockstep waiting: per frame ``timeout_s`` of wall time; a node silent for ``give_up_after``
    frames in a row is no longer waited for (its missing outputs still count as drops)."""

    timeout_s: float = 5.0
    give_up_after: int = 3


@dataclass(frozen=True)
class ReplayConfig:
    """A parsed replay configuration (module docstring); every field has the simulator's default."""

    graph: str = DEFAULT_GRAPH
    nodes: tuple[str, ...] = ()
    set: tuple[str, ...] = ()
    remap: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=lambda: dict(DEFAULT_INPUTS))
    play: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    lidar_fields: dict = field(default_factory=dict)
    lidar_frame_id: str = ""
    static_transforms: tuple[StaticTransform, ...] = ()
    time: TimeConfig = field(default_factory=TimeConfig)
    lockstep: LockstepConfig = field(default_factory=LockstepConfig)
    markers: bool = False
    source: str = ""

    def graph_path(self, root: Path | None = None) -> Path:
        """The graph file (relative paths against the repository root)."""
        p = Path(self.graph)
        return p if p.is_absolute() else (root or repo_root()) / p

    def played_name(self, bag_topic: str) -> str:
        """The topic a bag topic is published on (after ``remap``)."""
        return self.remap.get(bag_topic, bag_topic)

    def with_overrides(self, **changes: Any) -> ReplayConfig:
        """A copy with some fields replaced (CLI options)."""
        return replace(self, **changes)


def _str_map(value: Any, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                               for k, v in value.items()):
        raise ReplayConfigError(f"{where}: expected a mapping of strings, got {value!r}")
    return dict(value)


def _str_list(value: Any, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ReplayConfigError(f"{where}: expected a list of strings, got {value!r}")
    return tuple(value)


def parse_config(data: Any, source: str = "") -> ReplayConfig:
    """Validate raw configuration data (see the module docstring).

    Raises:
        ReplayConfigError: naming the key at fault.
    """
    where = f"replay config {source}".strip()
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ReplayConfigError(f"{where}: expected a mapping at the top level")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise ReplayConfigError(f"{where}: unknown keys {unknown} (allowed: {list(TOP_KEYS)})")
    graph = data.get("graph", DEFAULT_GRAPH)
    if not isinstance(graph, str) or not graph:
        raise ReplayConfigError(f"{where}: graph: expected a graph file path")
    inputs = dict(DEFAULT_INPUTS)
    inputs.update(_str_map(data.get("inputs"), f"{where}: inputs"))
    lidar = data.get("lidar") or {}
    if not isinstance(lidar, dict) or set(lidar) - {"fields", "frame_id"}:
        raise ReplayConfigError(f"{where}: lidar: expected a mapping with 'fields' and/or 'frame_id'")
    frame_id = lidar.get("frame_id") or ""
    if not isinstance(frame_id, str):
        raise ReplayConfigError(f"{where}: lidar.frame_id: expected a string")
    statics = []
    for i, st in enumerate(data.get("static_transforms") or []):
        w = f"{where}: static_transforms[{i}]"
        if not isinstance(st, dict) or set(st) != {"parent", "child", "xyz_rpy"}:
            raise ReplayConfigError(f"{w}: expected {{parent, child, xyz_rpy}}")
        values = st["xyz_rpy"]
        if (not isinstance(values, list) or len(values) != 6
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)):
            raise ReplayConfigError(f"{w}.xyz_rpy: expected 6 numbers (x, y, z [m], roll, pitch, yaw "
                                    f"[rad]), got {values!r}")
        if not st["parent"] or not st["child"] or st["parent"] == st["child"]:
            raise ReplayConfigError(f"{w}: parent and child must be two different frame names")
        statics.append(StaticTransform(str(st["parent"]), str(st["child"]),
                                       tuple(float(v) for v in values)))
    t = data.get("time") or {}
    if not isinstance(t, dict) or set(t) - {"clock", "restamp", "non_monotonic"}:
        raise ReplayConfigError(f"{where}: time: expected keys clock, restamp, non_monotonic")
    time_cfg = TimeConfig(clock=t.get("clock", "bag"), restamp=t.get("restamp", False),
                          non_monotonic=t.get("non_monotonic", "drop"))
    if time_cfg.clock not in CLOCK_MODES:
        raise ReplayConfigError(f"{where}: time.clock: {time_cfg.clock!r} not one of {list(CLOCK_MODES)}")
    if time_cfg.non_monotonic not in NON_MONOTONIC:
        raise ReplayConfigError(f"{where}: time.non_monotonic: {time_cfg.non_monotonic!r} not one of "
                                f"{list(NON_MONOTONIC)}")
    if not isinstance(time_cfg.restamp, bool):
        raise ReplayConfigError(f"{where}: time.restamp: expected true or false")
    ls = data.get("lockstep") or {}
    if not isinstance(ls, dict) or set(ls) - {"timeout_s", "give_up_after"}:
        raise ReplayConfigError(f"{where}: lockstep: expected keys timeout_s, give_up_after")
    lockstep = LockstepConfig(timeout_s=float(ls.get("timeout_s", 5.0)),
                              give_up_after=int(ls.get("give_up_after", 3)))
    if not lockstep.timeout_s > 0 or lockstep.give_up_after < 1:
        raise ReplayConfigError(f"{where}: lockstep: timeout_s must be > 0 and give_up_after >= 1")
    markers = data.get("markers", False)
    if not isinstance(markers, bool):
        raise ReplayConfigError(f"{where}: markers: expected true or false")
    return ReplayConfig(
        markers=markers, graph=graph, nodes=_str_list(data.get("nodes"), f"{where}: nodes"),
        set=_str_list(data.get("set"), f"{where}: set"),
        remap=_str_map(data.get("remap"), f"{where}: remap"), inputs=inputs,
        play=_str_list(data.get("play"), f"{where}: play"),
        drop=_str_list(data.get("drop"), f"{where}: drop"),
        lidar_fields=_str_map(lidar.get("fields"), f"{where}: lidar.fields"), lidar_frame_id=frame_id,
        static_transforms=tuple(statics), time=time_cfg, lockstep=lockstep, source=source)


def load_config(path: str | os.PathLike | None) -> ReplayConfig:
    """Read a configuration file (None: the defaults, for the simulator's own bags)."""
    if path is None:
        return ReplayConfig()
    p = Path(path)
    if not p.is_file():
        raise ReplayConfigError(f"replay config {p}: no such file")
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ReplayConfigError(f"replay config {p}: not valid YAML: {exc}") from None
    return parse_config(data, str(p))


# --- the node table ---------------------------------------------------------------------------
@dataclass(frozen=True)
class NodeOutput:
    """One row of the node table: a node's output as the replay measures it."""

    node: str
    output: str
    type: str
    trigger: str
    role: str


def load_node_table(path: str | os.PathLike | None = None) -> tuple[NodeOutput, ...]:
    """Rows of ``config/replay/nodes.yaml`` (or ``path``).

    Raises:
        ReplayConfigError: a bad row, naming it.
    """
    p = Path(path) if path is not None else repo_root() / NODE_TABLE
    try:
        data = yaml.safe_load(p.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ReplayConfigError(f"node table {p}: {exc}") from None
    rows = (data or {}).get("nodes") if isinstance(data, dict) else None
    if not isinstance(rows, list):
        raise ReplayConfigError(f"node table {p}: expected a 'nodes' list")
    out = []
    for i, row in enumerate(rows):
        w = f"node table {p}: nodes[{i}]"
        keys = {"node", "output", "type", "trigger", "role"}
        if not isinstance(row, dict) or set(row) != keys:
            raise ReplayConfigError(f"{w}: expected exactly the keys {sorted(keys)}")
        if row["trigger"] not in TRIGGERS:
            raise ReplayConfigError(f"{w}.trigger: {row['trigger']!r} not one of {list(TRIGGERS)}")
        if row["role"] not in ROLES:
            raise ReplayConfigError(f"{w}.role: {row['role']!r} not one of {list(ROLES)}")
        if str(row["type"]).count("/") != 2:
            raise ReplayConfigError(f"{w}.type: {row['type']!r} is not a 'pkg/msg/Name' type")
        out.append(NodeOutput(**{k: str(v) for k, v in row.items()}))
    return tuple(out)


@dataclass(frozen=True)
class ResolvedOutput:
    """A node-table row bound to a graph: the topic its output is published on."""

    node: str
    topic: str
    type: str
    trigger: str
    role: str


def resolve_outputs(table: tuple[NodeOutput, ...], remaps_by_node: dict[str, dict[str, str]],
                    namespaces: dict[str, str] | None = None) -> tuple[list[ResolvedOutput], list[str]]:
    """Bind the table to a graph.

    Args:
        table: the node table.
        remaps_by_node: node name -> {from: to} of the graph's remaps.
        namespaces: node name -> namespace (default none).

    Returns:
        (outputs of nodes in the graph, names of table nodes absent from it).
    """
    namespaces = namespaces or {}
    present, absent = [], []
    for row in table:
        if row.node not in remaps_by_node:
            if row.node not in absent:
                absent.append(row.node)
            continue
        topic = remaps_by_node[row.node].get(row.output)
        if topic is None:  # not remapped: ~/x is /<ns>/<node>/x
            ns = namespaces.get(row.node, "").rstrip("/")
            topic = f"{ns}/{row.node}/{row.output[2:]}" if row.output.startswith("~/") else row.output
        present.append(ResolvedOutput(row.node, topic, row.type, row.trigger, row.role))
    return present, absent


# --- the graph -----------------------------------------------------------------------------------
MARKERS_NODE = "stack_markers"
MARKERS_TOPIC = "/tps/viz/markers"
# node-table role -> the stack_markers input it feeds
MARKERS_INPUTS = {"detections": "~/input/detections", "tokens": "~/input/tokens",
                  "candidate_trajectory": "~/input/candidate_trajectory",
                  "fallback_trajectory": "~/input/fallback_trajectory",
                  "selected_trajectory": "~/input/selected_trajectory", "monitor_status": "~/input/monitor_status"}


def markers_node_entry(graph_data: dict, table: tuple[NodeOutput, ...] | None = None) -> dict:
    """A graph entry for the ``stack_markers`` node (tps_eval.viz) wired to the outputs of the
    graph's nodes (found through the node table's roles and the graph's remaps)."""
    nodes = [n for n in graph_data.get("nodes") or [] if isinstance(n, dict)]
    remaps = {n.get("name"): dict(n.get("remaps") or {}) for n in nodes}
    outputs, _ = resolve_outputs(table if table is not None else load_node_table(), remaps,
                                 {n.get("name"): n.get("namespace", "") for n in nodes})
    wiring = {}
    for o in outputs:
        if o.role in MARKERS_INPUTS and MARKERS_INPUTS[o.role] not in wiring:
            wiring[MARKERS_INPUTS[o.role]] = o.topic
    wiring["~/output/markers"] = MARKERS_TOPIC
    return {"name": MARKERS_NODE, "package": "tps_eval", "executable": "stack_markers",
            "params": ["config/stack_markers.param.yaml"], "remaps": wiring}


def load_replay_graph(config: ReplayConfig, extra_overrides: tuple[str, ...] = ()):
    """The graph to replay into: ``config.graph`` restricted to ``config.nodes`` (when given), with
    ``use_sim_time: true`` and the ``set`` overrides (those naming a node outside the subset are
    skipped). Returns (graph, skipped overrides).

    Raises:
        ReplayConfigError: unknown node names in ``nodes``; tps_bringup's GraphError for a bad graph.
    """
    from tps_bringup.graph import apply_overrides, find_root, parse_graph

    path = config.graph_path()
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ReplayConfigError(f"graph {path}: {exc}") from None
    names = [n.get("name") for n in data.get("nodes") or [] if isinstance(n, dict)]
    if config.nodes:
        unknown = sorted(set(config.nodes) - set(names))
        if unknown:
            raise ReplayConfigError(f"nodes: {unknown} not in graph {path} (nodes: {names})")
        data = dict(data, nodes=[n for n in data["nodes"] if n.get("name") in config.nodes])
        names = list(config.nodes)
    if config.markers and MARKERS_NODE not in names:
        data = dict(data, nodes=[*data["nodes"], markers_node_entry(data)])
        names.append(MARKERS_NODE)
    overrides, skipped = ["use_sim_time=true"], []
    for text in (*config.set, *extra_overrides):
        parts = text.split("=", 1)[0].split(".")
        if parts[0] == "nodes" and len(parts) > 1 and parts[1] not in names:
            skipped.append(text)
            continue
        overrides.append(text)
    data = apply_overrides(data, overrides)
    return parse_graph(data, root=find_root(path.parent), source=path), skipped


def graph_topics(graph) -> tuple[dict[str, dict[str, str]], dict[str, int], set[str]]:
    """(node -> remaps, input topic -> how many nodes read it, output topics) of a graph, from its
    ``~/input/...`` and ``~/output/...`` remaps."""
    remaps = {n.name: dict(n.remaps) for n in graph.nodes}
    consumers: dict[str, int] = {}
    outputs: set[str] = set()
    for table in remaps.values():
        for src, dst in table.items():
            if src.startswith("~/input/"):
                consumers[dst] = consumers.get(dst, 0) + 1
            elif src.startswith("~/output/"):
                outputs.add(dst)
    return remaps, consumers, outputs
