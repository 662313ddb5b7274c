"""Node graph files (``config/graph/*.yaml``): load, validate, override, translate.

The format is the one in ``docs/CONTRACTS.md`` ("Node graph files")::

    name: sim_fallback              # free text
    mode: processes                 # processes | single_process (one executor)
    use_sim_time: true              # passed to every node
    nodes:
      - name: fallback              # node name (__node)
        package: tps_planner
        executable: fallback_node   # console_script name
        namespace: ""               # optional
        params: [config/fallback_node.param.yaml]   # relative to the repository root
        parameters: {max_speed_mps: 12.0}          # inline overrides (optional)
        remaps: {"~/input/points": /carla/ego_vehicle/lidar}
        required: true              # default true (false for a respawning node)
        respawn: false              # restart the node when it exits (processes mode only)
        respawn_delay_s: 1.0        # wall seconds between the exit and the restart
        args: []                    # extra command-line arguments (optional)

``respawn`` is ros2 launch's ``respawn``/``respawn_delay``: a node that exits on its own (crash,
kill, exit code 0 alike) is started again after ``respawn_delay_s`` with the same command line
(parameters, remaps), and the runner logs and counts each restart (``GraphProcess.restarts``). A
respawning node is implicitly not ``required`` (its exit never stops the graph; writing
``required: true`` beside ``respawn: true`` is an error). ``single_process`` mode rejects
``respawn``: one process hosts every node there, and it cannot restart one of them alone.

Everything here is ROS-free (no rclpy import), so it is unit-testable anywhere, and it is the single
place where a graph entry becomes node arguments: :meth:`NodeInvocation.ros_args` feeds the
``tps-bringup`` runner and :meth:`NodeInvocation.launch_kwargs` feeds the ROS 2 launch files
(``tps_bringup.launch_support``).
"""

from __future__ import annotations

import copy
import difflib
import functools
import importlib.metadata
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tps_common.params import ParameterError, load_schema, validate_value

from tps_bringup.demo import LISTENER_SCHEMA, TALKER_SCHEMA

MODES = ("processes", "single_process")
TOP_LEVEL_KEYS = ("name", "mode", "use_sim_time", "nodes")
NODE_KEYS = ("name", "package", "executable", "namespace", "params", "parameters", "remaps", "required", "respawn",
             "respawn_delay_s", "args")
REQUIRED_NODE_KEYS = ("name", "package", "executable")
DEFAULT_MODE = "processes"
DEFAULT_USE_SIM_TIME = False
DEFAULT_RESPAWN_DELAY_S = 1.0   # ros2 launch's respawn_delay default is 0; 1 s keeps a crash loop slow
MAX_RESPAWN_DELAY_S = 3600.0

# rcl node names: letters, digits, underscores; must not start with a digit.
_NODE_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAMESPACE_RE = re.compile(r"^(/[A-Za-z_][A-Za-z0-9_]*)*/?$")
# pip / setuptools console-script wrappers: "from tps_bringup.nodes.talker import main".
_SCRIPT_IMPORT_RE = re.compile(r"^from\s+([\w.]+)\s+import\s+(\w+)", re.MULTILINE)


class GraphError(ValueError):
    """A graph file is invalid. ``problems`` lists every problem found, each naming its culprit."""

    def __init__(self, problems: str | Sequence[str], source: str | os.PathLike | None = None) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        self.source = str(source) if source is not None else None
        where = f"graph {self.source}: " if self.source else "graph: "
        if len(self.problems) == 1:
            text = where + self.problems[0]
        else:
            text = where + f"{len(self.problems)} problems:\n" + "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(text)


@dataclass(frozen=True)
class NodeSpec:
    """One validated node entry of a graph."""

    name: str
    package: str
    executable: str
    namespace: str = ""
    params: tuple[Path, ...] = ()  # absolute parameter-file paths
    parameters: Mapping[str, Any] = field(default_factory=dict)  # flattened: "a.b" -> value
    remaps: tuple[tuple[str, str], ...] = ()
    required: bool = True
    args: tuple[str, ...] = ()
    executable_path: Path | None = None  # resolved on disk (None when not checked)
    respawn: bool = False
    respawn_delay_s: float = DEFAULT_RESPAWN_DELAY_S

    @property
    def full_name(self) -> str:
        """Fully qualified node name, e.g. ``/ns/talker``."""
        ns = self.namespace.rstrip("/")
        return f"{ns}/{self.name}"


@dataclass(frozen=True)
class Graph:
    """A validated node graph."""

    name: str
    mode: str
    use_sim_time: bool
    nodes: tuple[NodeSpec, ...]
    root: Path  # repository root that relative parameter-file paths were resolved against
    source: Path | None = None

    def node(self, name: str) -> NodeSpec:
        """The node called ``name`` (KeyError when absent)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def to_json(self) -> str:
        """Serialise (for the single_process host, which rebuilds it with :func:`graph_from_json`)."""
        return json.dumps(
            {
                "name": self.name,
                "mode": self.mode,
                "use_sim_time": self.use_sim_time,
                "root": str(self.root),
                "source": str(self.source) if self.source else None,
                "nodes": [
                    {
                        "name": n.name,
                        "package": n.package,
                        "executable": n.executable,
                        "namespace": n.namespace,
                        "params": [str(p) for p in n.params],
                        "parameters": dict(n.parameters),
                        "remaps": [list(r) for r in n.remaps],
                        "required": n.required,
                        "respawn": n.respawn,
                        "respawn_delay_s": n.respawn_delay_s,
                        "args": list(n.args),
                        "executable_path": str(n.executable_path) if n.executable_path else None,
                    }
                    for n in self.nodes
                ],
            }
        )


def graph_from_json(text: str) -> Graph:
    """Inverse of :meth:`Graph.to_json` (no re-validation: the sender validated it)."""
    data = json.loads(text)
    nodes = tuple(
        NodeSpec(
            name=n["name"],
            package=n["package"],
            executable=n["executable"],
            namespace=n["namespace"],
            params=tuple(Path(p) for p in n["params"]),
            parameters=dict(n["parameters"]),
            remaps=tuple((a, b) for a, b in n["remaps"]),
            required=n["required"],
            args=tuple(n["args"]),
            executable_path=Path(n["executable_path"]) if n["executable_path"] else None,
            respawn=bool(n.get("respawn", False)),
            respawn_delay_s=float(n.get("respawn_delay_s", DEFAULT_RESPAWN_DELAY_S)),
        )
        for n in data["nodes"]
    )
    return Graph(
        name=data["name"],
        mode=data["mode"],
        use_sim_time=data["use_sim_time"],
        nodes=nodes,
        root=Path(data["root"]),
        source=Path(data["source"]) if data["source"] else None,
    )


# --------------------------------------------------------------------------------------- overrides


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"nodes.talker.parameters.rate_hz=20"`` into (["nodes", "talker", ...], 20).

    The value is parsed as a YAML scalar (``false`` -> bool, ``10`` -> int, ``[a, b]`` -> list).

    Raises:
        GraphError: when there is no ``=`` or the key is empty.
    """
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise GraphError(f"--set {text!r}: expected KEY=VALUE (e.g. use_sim_time=false)")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise GraphError(f"--set {text!r}: value is not valid YAML: {exc}") from exc
    return key.split("."), value


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``--set key=value`` overrides to raw graph data; return a new dict.

    Paths: top-level keys (``use_sim_time=false``, ``mode=single_process``); node keys addressed by
    node name (``nodes.fallback.required=false``); one inline parameter
    (``nodes.fallback.parameters.max_speed_mps=10``; the rest of the path after ``parameters.`` is
    the parameter name, dots included); one remap (``nodes.talker.remaps./chatter=/x``).

    Raises:
        GraphError: naming the override that does not apply (no such node, not a mapping, ...).
    """
    if not isinstance(data, Mapping):
        raise GraphError(f"cannot apply --set to a graph that is not a mapping (got {type(data).__name__})")
    out: dict[str, Any] = copy.deepcopy(dict(data))
    for text in overrides:
        path, value = parse_override(text)
        if path[0] != "nodes":
            if len(path) != 1:
                raise GraphError(f"--set {text!r}: top-level key '{path[0]}' takes no sub-keys")
            out[path[0]] = value
            continue
        if len(path) < 3:
            raise GraphError(f"--set {text!r}: use nodes.<node name>.<key>=VALUE")
        nodes = out.get("nodes")
        if not isinstance(nodes, list):
            raise GraphError(f"--set {text!r}: the graph has no 'nodes' list")
        matches = [n for n in nodes if isinstance(n, dict) and n.get("name") == path[1]]
        if not matches:
            names = [n.get("name") for n in nodes if isinstance(n, dict)]
            raise GraphError(f"--set {text!r}: no node named '{path[1]}' (nodes: {', '.join(map(str, names))})")
        if len(matches) > 1:
            raise GraphError(f"--set {text!r}: more than one node named '{path[1]}'")
        node = matches[0]
        key = path[2]
        if len(path) == 3:
            node[key] = value
        elif key in ("parameters", "remaps"):
            sub = node.get(key) or {}
            if not isinstance(sub, dict):
                raise GraphError(f"--set {text!r}: node '{path[1]}' key '{key}' is not a mapping")
            if key == "parameters":
                sub = flatten_parameters(sub)
            sub[".".join(path[3:])] = value
            node[key] = sub
        else:
            raise GraphError(f"--set {text!r}: node key '{key}' takes no sub-keys (only parameters and remaps do)")
    return out


def flatten_parameters(params: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}, "c": 2}`` -> ``{"a.b": 1, "c": 2}`` (ROS nested parameter names)."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten_parameters(value, name + "."))
        else:
            flat[name] = value
    return flat


# ------------------------------------------------------------------------------ executable lookup


def _norm_dist(name: str) -> str:
    return re.sub(r"[-_.]+", "_", name).lower()


@functools.lru_cache(maxsize=1)
def _all_console_scripts() -> tuple[tuple[str, str, str], ...]:
    """(script name, "module:func", distribution name) of every installed console script.

    Cached: scanning the installed distributions costs ~0.1 s. Call ``_all_console_scripts.cache_clear()``
    after installing packages in a long-lived process.
    """
    out = []
    for ep in importlib.metadata.entry_points(group="console_scripts"):
        dist = getattr(ep, "dist", None)
        out.append((ep.name, ep.value, (dist.metadata["Name"] or "") if dist is not None else ""))
    return tuple(out)


def _console_scripts(package: str) -> dict[str, str]:
    """Console scripts of the installed distribution ``package`` (name -> "module:func")."""
    want = _norm_dist(package)
    return {name: value for name, value, dist in _all_console_scripts() if _norm_dist(dist) == want}


def _owner_of_console_script(executable: str) -> str | None:
    for name, _value, dist in _all_console_scripts():
        if name == executable and dist:
            return dist
    return None


def search_dirs(package: str, env: Mapping[str, str] | None = None) -> list[Path]:
    """Where :func:`find_executable` looks, in order: ``<prefix>/lib/<package>`` for every prefix
    of ``AMENT_PREFIX_PATH`` (colcon installs), the running interpreter's ``bin`` (the venv), then
    every directory on ``PATH``."""
    env = os.environ if env is None else env
    dirs = [Path(p) / "lib" / package for p in env.get("AMENT_PREFIX_PATH", "").split(os.pathsep) if p]
    dirs.append(Path(sys.executable).parent)
    dirs.extend(Path(p) for p in env.get("PATH", "").split(os.pathsep) if p)
    unique: list[Path] = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def find_executable(package: str, executable: str, env: Mapping[str, str] | None = None) -> Path:
    """Locate the executable of a node on disk.

    Raises:
        GraphError: naming the executable and package, where it looked, and close matches; or when
            the console script found belongs to another package.
    """
    if "/" in executable:
        raise GraphError(f"executable {executable!r} of package '{package}' must be a name, not a path")
    for directory in search_dirs(package, env):
        candidate = directory / executable
        if candidate.is_file() and os.access(candidate, os.X_OK):
            owner = _owner_of_console_script(executable)
            if owner is not None and _norm_dist(owner) != _norm_dist(package) and directory.name != package:
                raise GraphError(
                    f"executable '{executable}' is a console script of package '{owner}', not of '{package}'"
                )
            return candidate
    scripts = sorted(_console_scripts(package))
    hint = ""
    close = difflib.get_close_matches(executable, scripts, n=3)
    if close:
        hint = f"; did you mean {', '.join(close)}?"
    elif scripts:
        hint = f"; package '{package}' provides: {', '.join(scripts)}"
    else:
        hint = f"; is package '{package}' installed (bash scripts/setup.sh)?"
    return_dirs = ", ".join(str(d) for d in search_dirs(package, env)[:3])
    raise GraphError(
        f"executable '{executable}' of package '{package}' not found (looked in {return_dirs} and PATH){hint}"
    )


def find_entry_point(package: str, executable: str, executable_path: Path | None = None) -> tuple[str, str]:
    """The ``(module, function)`` behind a node's console script (for single_process mode).

    Looked up in the installed distributions' entry points, else read from the wrapper script.

    Raises:
        GraphError: when neither names it.
    """
    value = _console_scripts(package).get(executable)
    if value is None and executable_path is not None:
        try:
            match = _SCRIPT_IMPORT_RE.search(Path(executable_path).read_text(errors="replace")[:4096])
        except OSError:
            match = None
        if match:
            value = f"{match.group(1)}:{match.group(2)}"
    if value is None:
        raise GraphError(
            f"executable '{executable}' of package '{package}' is not a Python console script, "
            "so it cannot run in single_process mode"
        )
    module, _, func = value.partition(":")
    return module.strip(), (func.strip() or "main")


# ------------------------------------------------------------------------------------- validation


def find_root(start: Path | None) -> Path:
    """The repository root for relative parameter-file paths: ``$TPS_ROOT``, else the nearest
    ancestor of ``start`` holding ``config/`` and ``ros2_ws/``, else the working directory."""
    if os.environ.get("TPS_ROOT"):
        return Path(os.environ["TPS_ROOT"]).resolve()
    if start is not None:
        for d in [start.resolve(), *start.resolve().parents]:
            if (d / "config").is_dir() and (d / "ros2_ws").is_dir():
                return d
    return Path.cwd().resolve()


def _check_params_file(path: Path) -> str | None:
    """A problem with a ROS parameter file, or None."""
    if not path.is_file():
        return "not found"
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        return f"not valid YAML ({exc})"
    if not isinstance(data, dict) or not data:
        return "must be a mapping of node names (e.g. '/**') to {ros__parameters: ...}"
    for key, value in data.items():
        if not isinstance(value, dict) or "ros__parameters" not in value:
            return f"entry {key!r} has no 'ros__parameters' mapping"
    return None


def parse_graph(
    data: Any,
    *,
    root: Path,
    source: Path | None = None,
    check_executables: bool = True,
    env: Mapping[str, str] | None = None,
) -> Graph:
    """Validate raw graph data and build a :class:`Graph`.

    Args:
        data: the parsed YAML.
        root: repository root; relative ``params`` paths are resolved against it.
        source: the file it came from (for messages).
        check_executables: resolve every executable on disk (off for launch files on another host).
        env: environment for the executable lookup (default ``os.environ``).

    Raises:
        GraphError: listing every problem, each naming the key, node, file or executable at fault.
    """
    problems: list[str] = []
    if not isinstance(data, dict):
        raise GraphError(f"must be a mapping with keys {', '.join(TOP_LEVEL_KEYS)}, got {type(data).__name__}", source)
    unknown = [k for k in data if k not in TOP_LEVEL_KEYS]
    for k in unknown:
        problems.append(f"unknown top-level key '{k}' (allowed: {', '.join(TOP_LEVEL_KEYS)})")
    name = data.get("name", source.stem if source else "graph")
    if not isinstance(name, str) or not name:
        problems.append(f"'name' must be a non-empty string, got {name!r}")
        name = str(name)
    mode = data.get("mode", DEFAULT_MODE)
    if mode not in MODES:
        problems.append(f"bad mode {mode!r} (allowed: {', '.join(MODES)})")
    use_sim_time = data.get("use_sim_time", DEFAULT_USE_SIM_TIME)
    if not isinstance(use_sim_time, bool):
        problems.append(f"'use_sim_time' must be true or false, got {use_sim_time!r}")
    raw_nodes = data.get("nodes")
    if not isinstance(raw_nodes, list) or not raw_nodes:
        problems.append("'nodes' must be a non-empty list of node entries")
        raw_nodes = []

    nodes: list[NodeSpec] = []
    seen: set[str] = set()
    for index, raw in enumerate(raw_nodes):
        node, node_problems = _parse_node(raw, index, root, mode, check_executables, env)
        problems.extend(node_problems)
        if node is None:
            continue
        if node.name in seen:
            problems.append(f"duplicate node name '{node.name}'")
        seen.add(node.name)
        nodes.append(node)
    if problems:
        raise GraphError(problems, source)
    return Graph(name=name, mode=mode, use_sim_time=use_sim_time, nodes=tuple(nodes), root=root, source=source)


# Schemas of nodes that do not keep theirs in config/schema/ (the demo nodes of this package).
BUILTIN_SCHEMAS: dict[str, dict] = {"tps_demo_talker": TALKER_SCHEMA, "tps_demo_listener": LISTENER_SCHEMA}


def node_schema(executable: str, root: Path) -> tuple[dict | None, str]:
    """The parameter schema of a node executable: ``<root>/config/schema/<executable>.schema.json``
    (the naming every node uses with ``tps_common.params.load_schema``), else a built-in one.

    Returns:
        (schema or None, where it came from).
    """
    path = root / "config" / "schema" / f"{executable}.schema.json"
    if path.is_file():
        return load_schema(path), str(path.relative_to(root))
    if executable in BUILTIN_SCHEMAS:
        return BUILTIN_SCHEMAS[executable], "built-in"
    return None, ""


def _check_against_schema(label: str, executable: str, parameters: dict[str, Any], root: Path) -> list[str]:
    """Validate inline parameters against the node's schema in place (ints widened to floats for
    number parameters, as rclpy would otherwise refuse ``max_speed_mps:=10`` for a double)."""
    try:
        schema, where = node_schema(executable, root)
    except ParameterError as exc:
        return [f"{label}: {exc}"]
    if schema is None:
        return []
    specs = schema.get("parameters", {})
    problems = []
    for name in list(parameters):
        if name not in specs:
            problems.append(
                f"{label}: unknown parameter '{name}' for {executable} (schema {where}; known: {', '.join(sorted(specs))})"
            )
            continue
        try:
            parameters[name] = validate_value(name, parameters[name], specs[name])
        except ParameterError as exc:
            problems.append(f"{label}: {exc} (schema {where})")
    return problems


def _is_ros_parameter_value(value: Any) -> bool:
    scalar = (bool, int, float, str)
    if isinstance(value, scalar):
        return True
    if isinstance(value, list) and value:
        kinds = {bool if isinstance(v, bool) else (float if isinstance(v, (int, float)) else type(v)) for v in value}
        return len(kinds) == 1 and kinds <= {bool, float, str}
    return False


def _parse_node(
    raw: Any, index: int, root: Path, mode: Any, check_executables: bool, env: Mapping[str, str] | None
) -> tuple[NodeSpec | None, list[str]]:
    problems: list[str] = []
    if not isinstance(raw, dict):
        return None, [f"nodes[{index}] must be a mapping, got {raw!r}"]
    label = f"node '{raw['name']}'" if isinstance(raw.get("name"), str) else f"nodes[{index}]"
    for k in raw:
        if k not in NODE_KEYS:
            problems.append(f"{label}: unknown key '{k}' (allowed: {', '.join(NODE_KEYS)})")
    missing = [k for k in REQUIRED_NODE_KEYS if not isinstance(raw.get(k), str) or not raw.get(k)]
    for k in missing:
        problems.append(f"{label}: '{k}' is missing or not a non-empty string")
    if missing:
        return None, problems
    name, package, executable = raw["name"], raw["package"], raw["executable"]
    if not _NODE_NAME_RE.match(name):
        problems.append(f"{label}: invalid node name (letters, digits, underscores; not starting with a digit)")
    namespace = raw.get("namespace") or ""
    if not isinstance(namespace, str):
        problems.append(f"{label}: 'namespace' must be a string, got {namespace!r}")
        namespace = ""
    elif namespace and not namespace.startswith("/"):
        namespace = "/" + namespace
    if namespace and not _NAMESPACE_RE.match(namespace):
        problems.append(f"{label}: invalid namespace {namespace!r}")

    params_raw = raw.get("params") or []
    params: list[Path] = []
    if not isinstance(params_raw, list) or not all(isinstance(p, str) for p in params_raw):
        problems.append(f"{label}: 'params' must be a list of parameter-file paths, got {params_raw!r}")
    else:
        for p in params_raw:
            path = Path(p) if Path(p).is_absolute() else root / p
            why = _check_params_file(path)
            if why:
                problems.append(f"{label}: parameter file '{p}' {why} (resolved to {path})")
            params.append(path)

    parameters = raw.get("parameters") or {}
    if not isinstance(parameters, dict):
        problems.append(f"{label}: 'parameters' must be a mapping, got {parameters!r}")
        parameters = {}
    parameters = flatten_parameters(parameters)
    if "use_sim_time" in parameters:
        problems.append(f"{label}: set 'use_sim_time' at the graph's top level, not in 'parameters'")
    for pname, pvalue in parameters.items():
        if pvalue is None or (isinstance(pvalue, list) and not pvalue):
            problems.append(f"{label}: parameter '{pname}' has no value ({pvalue!r}); ROS cannot infer its type")
        elif not _is_ros_parameter_value(pvalue):
            problems.append(
                f"{label}: parameter '{pname}' = {pvalue!r} is not a ROS parameter value "
                "(bool, int, float, string, or a list of one of them)"
            )

    if not problems:
        problems.extend(_check_against_schema(label, executable, parameters, root))

    remaps_raw = raw.get("remaps") or {}
    remaps: list[tuple[str, str]] = []
    if not isinstance(remaps_raw, dict):
        problems.append(f"{label}: 'remaps' must be a mapping from -> to, got {remaps_raw!r}")
    else:
        for src, dst in remaps_raw.items():
            if not isinstance(src, str) or not isinstance(dst, str) or not src or not dst:
                problems.append(f"{label}: remap {src!r} -> {dst!r} must map a topic name to a topic name")
            else:
                remaps.append((src, dst))

    respawn = raw.get("respawn", False)
    if not isinstance(respawn, bool):
        problems.append(f"{label}: 'respawn' must be true or false, got {respawn!r}")
        respawn = False
    required = raw.get("required", not respawn)
    if not isinstance(required, bool):
        problems.append(f"{label}: 'required' must be true or false, got {required!r}")
    elif respawn and required:
        problems.append(f"{label}: 'respawn: true' cannot be 'required: true' (a respawning node's exit never "
                        "stops the graph; drop 'required')")
    respawn_delay_s = raw.get("respawn_delay_s", DEFAULT_RESPAWN_DELAY_S)
    if isinstance(respawn_delay_s, bool) or not isinstance(respawn_delay_s, (int, float)) \
            or not 0.0 <= float(respawn_delay_s) <= MAX_RESPAWN_DELAY_S:
        problems.append(f"{label}: 'respawn_delay_s' must be a number of seconds in [0, {MAX_RESPAWN_DELAY_S:g}], "
                        f"got {respawn_delay_s!r}")
        respawn_delay_s = DEFAULT_RESPAWN_DELAY_S
    if mode == "single_process" and respawn:
        problems.append(f"{label}: 'respawn' needs mode 'processes' (single_process runs every node in one process, "
                        "which cannot restart one node alone)")
    args = raw.get("args") or []
    if not isinstance(args, list) or not all(isinstance(a, (str, int, float)) for a in args):
        problems.append(f"{label}: 'args' must be a list of strings, got {args!r}")
        args = []
    args = [str(a) for a in args]
    if mode == "single_process" and args:
        problems.append(f"{label}: 'args' cannot be passed in single_process mode (nodes are classes there)")

    executable_path: Path | None = None
    if check_executables:
        try:
            executable_path = find_executable(package, executable, env)
            if mode == "single_process":
                find_entry_point(package, executable, executable_path)
        except GraphError as exc:
            problems.extend(f"{label}: {p}" for p in exc.problems)
    node = NodeSpec(
        name=name,
        package=package,
        executable=executable,
        namespace=namespace,
        params=tuple(params),
        parameters=parameters,
        remaps=tuple(remaps),
        required=required if isinstance(required, bool) else not respawn,
        args=tuple(args),
        executable_path=executable_path,
        respawn=respawn,
        respawn_delay_s=float(respawn_delay_s),
    )
    return node, problems


def load_graph(
    path: str | os.PathLike,
    overrides: Sequence[str] = (),
    *,
    root: str | os.PathLike | None = None,
    check_executables: bool = True,
    env: Mapping[str, str] | None = None,
) -> Graph:
    """Read a graph YAML, apply ``--set`` overrides, validate.

    Args:
        path: the graph file.
        overrides: ``key=value`` strings (see :func:`apply_overrides`).
        root: repository root (default: :func:`find_root` from the graph file).
        check_executables: resolve every executable on disk.
        env: environment for the executable lookup (default ``os.environ``).

    Raises:
        GraphError: the file is missing, not YAML, or invalid (every problem named).
    """
    source = Path(path)
    try:
        data = yaml.safe_load(source.read_text())
    except FileNotFoundError as exc:
        raise GraphError("file not found", source) from exc
    except (OSError, yaml.YAMLError) as exc:
        raise GraphError(f"cannot read YAML: {exc}", source) from exc
    try:
        data = apply_overrides(data, overrides) if overrides else data
    except GraphError as exc:
        raise GraphError(exc.problems, source) from None
    root_path = Path(root).resolve() if root is not None else find_root(source.parent)
    return parse_graph(data, root=root_path, source=source, check_executables=check_executables, env=env)


# ---------------------------------------------------------------------------------- translation


def format_parameter_value(value: Any) -> str:
    """A parameter value as the YAML text ``-p name:=VALUE`` expects (strings quoted when needed;
    a numeric list holding any float is written all-float, since rcl wants one type per array)."""
    if isinstance(value, list) and any(isinstance(v, float) for v in value):
        value = [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in value]
    text = yaml.safe_dump(value, default_flow_style=True, width=1 << 30).strip()
    if text.endswith("\n..."):
        text = text[: -len("\n...")]
    elif text.endswith("..."):
        text = text[:-3].strip()
    return text


@dataclass(frozen=True)
class NodeInvocation:
    """How to start one node: the translation shared by the runner and the ROS 2 launch file."""

    name: str
    package: str
    executable: str
    namespace: str
    params_files: tuple[str, ...]
    parameters: Mapping[str, Any]  # inline parameters, use_sim_time last
    remaps: tuple[tuple[str, str], ...]
    args: tuple[str, ...]
    required: bool
    executable_path: Path | None
    respawn: bool = False
    respawn_delay_s: float = DEFAULT_RESPAWN_DELAY_S

    def ros_args(self) -> list[str]:
        """``--ros-args -r __node:=NAME [-r __ns:=NS] --params-file F ... -p k:=v ... -r a:=b ...
        -p use_sim_time:=...`` (the node-specific arguments, also the ``cli_args`` of NODE_CLASS)."""
        out = ["--ros-args", "-r", f"__node:={self.name}"]
        if self.namespace:
            out += ["-r", f"__ns:={self.namespace}"]
        for f in self.params_files:
            out += ["--params-file", f]
        inline = dict(self.parameters)
        use_sim_time = inline.pop("use_sim_time")
        for key, value in inline.items():
            out += ["-p", f"{key}:={format_parameter_value(value)}"]
        for src, dst in self.remaps:
            out += ["-r", f"{src}:={dst}"]
        out += ["-p", f"use_sim_time:={format_parameter_value(use_sim_time)}"]
        return out

    def command(self) -> list[str]:
        """The full command line of the node's own process (processes mode)."""
        exe = str(self.executable_path) if self.executable_path else self.executable
        return [exe, *self.args, *self.ros_args()]

    def launch_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``launch_ros.actions.Node`` (``tps_bringup.launch_support``);
        a respawning node gets launch's ``respawn``/``respawn_delay``."""
        kwargs = {
            "package": self.package,
            "executable": self.executable,
            "name": self.name,
            "namespace": self.namespace,
            "parameters": [*self.params_files, dict(self.parameters)],
            "remappings": list(self.remaps),
            "arguments": list(self.args),
            "output": "screen",
        }
        if self.respawn:
            kwargs["respawn"] = True
            kwargs["respawn_delay"] = float(self.respawn_delay_s)
        return kwargs


def node_invocation(node: NodeSpec, graph: Graph) -> NodeInvocation:
    """Translate one graph node into its :class:`NodeInvocation` (graph-level use_sim_time included)."""
    parameters = dict(node.parameters)
    parameters["use_sim_time"] = graph.use_sim_time
    return NodeInvocation(
        name=node.name,
        package=node.package,
        executable=node.executable,
        namespace=node.namespace,
        params_files=tuple(str(p) for p in node.params),
        parameters=parameters,
        remaps=node.remaps,
        args=node.args,
        required=node.required,
        executable_path=node.executable_path,
        respawn=node.respawn,
        respawn_delay_s=node.respawn_delay_s,
    )


def invocations(graph: Graph) -> list[NodeInvocation]:
    """Every node of the graph, translated, in file order."""
    return [node_invocation(n, graph) for n in graph.nodes]
