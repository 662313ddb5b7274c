"""The bridge's per-step episode log: column table, writer (:class:`EpisodeLog`) and validating
reader (:func:`load_episode_log`). ROS-free; the only module that knows the file format.

The bridge core (``tps_sim.bridge``) fills an :class:`EpisodeLog` and writes it when the episode
ends (``episode_log`` parameter); the evaluation (``tps_eval.trace``) and the benchmarks read it
back with :func:`load_episode_log`, which checks every key, dtype and shape and raises
:class:`EpisodeLogError` naming the file and the problem.

Format (``.npz``, or ``.json.gz`` with the same keys as JSON lists)
----------------------------------------------------------------------
One row per simulated step t = 0..T-1 (row 0 = the state after reset). Frames: map (REP-103).

=====================  ==================  ===================================================
key                    shape / dtype       meaning
=====================  ==================  ===================================================
meta_json              str                 JSON: scenario, seed, density, clutter, ego_driver,
                                           dt_s, synchronous, sync_timeout_s, faults, obstacles,
                                           instruction {text, command, exit_number,
                                           target_speed_mps}, step_timeouts, stale_controls,
                                           malformed_controls, controls_received, num_steps,
                                           end_reason, format_version, ``box_columns``
t_s                    (T,) float64        sim time of the step [s]
step                   (T,) int64          step index
stamp_s                (T,) float64        stamp published for the step (t_s + clock-jump
                                           fault offset) [s]
ego                    (T, 12) float64     ego box: x, y, z, yaw, length, width, height, vx, vy,
                                           speed_mps, accel_mps2, yaw_rate (:data:`BOX_COLUMNS`)
route_progress_m       (T,) float64        distance along the route [m]
agent_offsets          (T+1,) int64        agents of step t: rows agent_offsets[t]:[t+1]
agent_id               (A,) int64          stable agent id of the episode
agent_class            (A,) uint8          tps_msgs DetectedAgent.CLASS_* id
agent_box              (A, 12) float64     same columns as ``ego``
static_id              (S,) int64          static objects (clutter, debris), constant in time
static_box             (S, 8) float64      x, y, z, length, width, height, yaw, material (MAT_*)
                                           (:data:`STATIC_COLUMNS`)
collision_offsets      (T+1,) int64        ids the ego's box overlapped at step t:
collision_ids          (C,) int64          rows collision_offsets[t]:[t+1]
control                (T, 5) float64      control applied to *reach* step t: throttle, steer
                                           (+ = right, CARLA), brake, hand_brake, reverse (row 0:
                                           zeros) (:data:`CONTROL_COLUMNS`)
control_received       (T,) bool           a control for step t-1 arrived in time (False on a
                                           timeout, in expert / free-running mode, and row 0)
step_timeout           (T,) bool           the transition into step t was a step timeout
e2e_latency_s          (T,) float64        wall time from publishing step t's sensor data to
                                           receiving the control stamped for step t [s]; NaN
                                           when none arrived
wall_time_s            (T,) float64        wall clock (time.monotonic) when step t was produced
events_json            str                 JSON list (length T) of the event lists of each step
route                  (R, 2) float64      ego route polyline [m]
=====================  ==================  ===================================================

Optional keys (all or none; written when the world has traffic lights, validated when present):

=====================  ==================  ===================================================
light_id               (L,) int64          traffic-light head ids (carla_msgs info ids)
light_head             (L, 4) float64      head pose: x, y, z [m], yaw [rad] (the direction its
                                           lamps face) (:data:`LIGHT_HEAD_COLUMNS`)
light_stop             (L, 4) float64      its stop line: centre x, y [m], direction of travel
                                           [rad], width [m] (:data:`LIGHT_STOP_COLUMNS`)
light_state            (T, L) uint8        state of each head at each step (RED 0, YELLOW 1,
                                           GREEN 2, OFF 3, UNKNOWN 4: CarlaTrafficLightStatus)
=====================  ==================  ===================================================

In ``.json.gz`` a missing (NaN) float is written as ``null`` (NaN is not JSON); the reader turns
``null`` (and a ``NaN`` literal) back into NaN, so both formats read to the same arrays.
"""

from __future__ import annotations

import gzip
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

LOG_FORMAT_VERSION = 1
BOX_COLUMNS = ("x", "y", "z", "yaw", "length", "width", "height", "vx", "vy", "speed_mps",
               "accel_mps2", "yaw_rate")
STATIC_COLUMNS = ("x", "y", "z", "length", "width", "height", "yaw", "material")
CONTROL_COLUMNS = ("throttle", "steer", "brake", "hand_brake", "reverse")
LIGHT_HEAD_COLUMNS = ("x", "y", "z", "yaw")
LIGHT_STOP_COLUMNS = ("x", "y", "yaw", "width")
# Column index by name, for readers: ego[:, BOX["yaw"]], static_box[:, STATIC["material"]].
BOX = {name: i for i, name in enumerate(BOX_COLUMNS)}
STATIC = {name: i for i, name in enumerate(STATIC_COLUMNS)}

# Every key of the log: (dtype, shape). Shape entries are the row counts T (steps), T+1
# (offsets), A (agent rows), S (statics), C (collision ids), R (route points) or a fixed column
# count; () is a JSON string.
LOG_KEYS: dict[str, tuple[Any, tuple]] = {
    "meta_json": (str, ()),
    "t_s": (np.float64, ("T",)),
    "step": (np.int64, ("T",)),
    "stamp_s": (np.float64, ("T",)),
    "ego": (np.float64, ("T", len(BOX_COLUMNS))),
    "route_progress_m": (np.float64, ("T",)),
    "agent_offsets": (np.int64, ("T+1",)),
    "agent_id": (np.int64, ("A",)),
    "agent_class": (np.uint8, ("A",)),
    "agent_box": (np.float64, ("A", len(BOX_COLUMNS))),
    "static_id": (np.int64, ("S",)),
    "static_box": (np.float64, ("S", len(STATIC_COLUMNS))),
    "collision_offsets": (np.int64, ("T+1",)),
    "collision_ids": (np.int64, ("C",)),
    "control": (np.float64, ("T", len(CONTROL_COLUMNS))),
    "control_received": (bool, ("T",)),
    "step_timeout": (bool, ("T",)),
    "e2e_latency_s": (np.float64, ("T",)),
    "wall_time_s": (np.float64, ("T",)),
    "events_json": (str, ()),
    "route": (np.float64, ("R", 2)),
}
# Optional keys, all or none (shape entries as above; L = traffic-light heads).
OPTIONAL_LOG_KEYS: dict[str, tuple[Any, tuple]] = {
    "light_id": (np.int64, ("L",)),
    "light_head": (np.float64, ("L", len(LIGHT_HEAD_COLUMNS))),
    "light_stop": (np.float64, ("L", len(LIGHT_STOP_COLUMNS))),
    "light_state": (np.uint8, ("T", "L")),
}
# Offsets and the rows they index.
_OFFSET_KEYS = {"agent_offsets": "agent_id", "collision_offsets": "collision_ids"}
# A step whose frame carries no traffic-light states logs this state for every head.
_UNKNOWN_LIGHT_STATE = 4


class EpisodeLogError(ValueError):
    """An episode log is missing, unreadable or malformed; the message names the file and the
    problem."""


# --- writer --------------------------------------------------------------------------------------
def box_row(agent) -> list[float]:  # noqa: ANN001 - a world AgentState
    """The 12 :data:`BOX_COLUMNS` of a world ``AgentState``."""
    return [float(agent.center[0]), float(agent.center[1]), float(agent.center[2]),
            float(agent.yaw), float(agent.size[0]), float(agent.size[1]), float(agent.size[2]),
            float(agent.velocity[0]), float(agent.velocity[1]), float(agent.speed_mps),
            float(agent.accel_mps2), float(agent.yaw_rate)]


def static_rows(statics) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001 - a scene3d BoxSet
    """(ids (S,) int64, boxes (S, 8) float64 :data:`STATIC_COLUMNS`) of a ``BoxSet``."""
    if statics is None or len(statics) == 0:
        return np.zeros(0, np.int64), np.zeros((0, len(STATIC_COLUMNS)))
    boxes = np.concatenate([statics.centers, statics.sizes, statics.yaws[:, None],
                            statics.materials[:, None].astype(np.float64)], axis=1)
    return statics.ids.astype(np.int64), boxes


class EpisodeLog:
    """Accumulates the per-step episode log (format in the module docstring)."""

    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.static_id = np.zeros(0, np.int64)
        self.static_box = np.zeros((0, len(STATIC_COLUMNS)))
        self.light_id: np.ndarray | None = None
        self.light_head = np.zeros((0, len(LIGHT_HEAD_COLUMNS)))
        self.light_stop = np.zeros((0, len(LIGHT_STOP_COLUMNS)))

    def add(self, frame, *, control_received: bool, step_timeout: bool,  # noqa: ANN001
            wall_time_s: float) -> None:
        """Append the row of a new step.

        Args:
            frame: the bridge's ``Frame`` of the step (step, t_s, stamp_s, state, scene,
                control, events).
            control_received: a control for the previous step arrived in time.
            step_timeout: the transition into this step was a step timeout.
            wall_time_s: wall clock when the step was produced [s].
        """
        state = frame.state
        lights = getattr(frame.scene, "lights", None) if frame.scene is not None else None
        if not self.rows and frame.scene is not None:
            self.static_id, self.static_box = static_rows(frame.scene.statics)
            if lights is not None and len(lights):
                self.light_id = np.array([h.id for h in lights.heads], np.int64)
                self.light_head = np.array([[*h.position, h.yaw] for h in lights.heads], np.float64)
                self.light_stop = np.array([[*h.stop_xy, h.lane_yaw, h.stop_width_m]
                                            for h in lights.heads], np.float64)
        # Light states: the scene's, else the frame's own (a world stepped without scenes).
        light_states = lights.states if lights is not None else getattr(frame, "light_states", None)
        c = frame.control
        self.rows.append({
            "t_s": float(frame.t_s), "step": int(frame.step), "stamp_s": float(frame.stamp_s),
            "ego": box_row(state.ego),
            "route_progress_m": float(getattr(state, "route_progress_m", float("nan"))),
            "agent_id": [int(a.id) for a in state.agents],
            "agent_class": [int(a.class_id) for a in state.agents],
            "agent_box": [box_row(a) for a in state.agents],
            "collision_ids": [int(i) for i in state.collisions],
            "control": [c["throttle"], c["steer"], c["brake"], float(c["hand_brake"]),
                        float(c["reverse"])],
            "control_received": bool(control_received), "step_timeout": bool(step_timeout),
            "e2e_latency_s": float("nan"), "wall_time_s": float(wall_time_s),
            "events": list(frame.events),
            "light_state": None if light_states is None else [int(v) for v in light_states],
        })

    def set_latency(self, step: int, latency_s: float) -> None:
        """Record the e2e latency [s] of the control that answered ``step``."""
        if self.rows and self.rows[-1]["step"] == step and math.isnan(self.rows[-1]["e2e_latency_s"]):
            self.rows[-1]["e2e_latency_s"] = float(latency_s)

    def arrays(self, meta: dict, route: np.ndarray) -> dict[str, np.ndarray]:
        """The log as a dict of numpy arrays (the ``.npz`` keys)."""
        rows = self.rows
        counts = [len(r["agent_id"]) for r in rows]
        ccounts = [len(r["collision_ids"]) for r in rows]
        agent_box = [b for r in rows for b in r["agent_box"]]
        meta = dict(meta, num_steps=len(rows), format_version=LOG_FORMAT_VERSION,
                    box_columns=list(BOX_COLUMNS))
        lights = {}
        if self.light_id is not None:
            n = self.light_id.shape[0]
            states = [r["light_state"] if r["light_state"] is not None and len(r["light_state"]) == n
                      else [_UNKNOWN_LIGHT_STATE] * n for r in rows]
            lights = {"light_id": self.light_id, "light_head": self.light_head,
                      "light_stop": self.light_stop,
                      "light_state": np.array(states, np.uint8).reshape(len(rows), n)}
        return lights | {
            "meta_json": np.array(json.dumps(meta, sort_keys=True)),
            "t_s": np.array([r["t_s"] for r in rows], np.float64),
            "step": np.array([r["step"] for r in rows], np.int64),
            "stamp_s": np.array([r["stamp_s"] for r in rows], np.float64),
            "ego": np.array([r["ego"] for r in rows], np.float64).reshape(-1, len(BOX_COLUMNS)),
            "route_progress_m": np.array([r["route_progress_m"] for r in rows], np.float64),
            "agent_offsets": np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
            "agent_id": np.array([i for r in rows for i in r["agent_id"]], np.int64),
            "agent_class": np.array([i for r in rows for i in r["agent_class"]], np.uint8),
            "agent_box": np.array(agent_box, np.float64).reshape(-1, len(BOX_COLUMNS)),
            "static_id": self.static_id,
            "static_box": self.static_box,
            "collision_offsets": np.concatenate([[0], np.cumsum(ccounts)]).astype(np.int64),
            "collision_ids": np.array([i for r in rows for i in r["collision_ids"]], np.int64),
            "control": np.array([r["control"] for r in rows], np.float64).reshape(
                -1, len(CONTROL_COLUMNS)),
            "control_received": np.array([r["control_received"] for r in rows], bool),
            "step_timeout": np.array([r["step_timeout"] for r in rows], bool),
            "e2e_latency_s": np.array([r["e2e_latency_s"] for r in rows], np.float64),
            "wall_time_s": np.array([r["wall_time_s"] for r in rows], np.float64),
            "events_json": np.array(json.dumps([r["events"] for r in rows])),
            "route": np.asarray(route, np.float64).reshape(-1, 2),
        }

    def write(self, path: str | os.PathLike, meta: dict, route: np.ndarray) -> Path:
        """Write to ``path`` (``.npz`` or ``.json.gz``; written to a temp name, then renamed)."""
        return write_arrays(path, self.arrays(meta, route))


def _json_value(v: np.ndarray) -> Any:
    """An array as JSON-ready lists; non-finite floats become None (JSON has no NaN)."""
    if v.ndim == 0:
        return v.item()
    if v.dtype.kind == "f" and not np.isfinite(v).all():
        return np.where(np.isfinite(v), v, None).tolist()
    return v.tolist()


def write_arrays(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> Path:
    """Write log arrays (the :data:`LOG_KEYS`) to ``path``: ``.npz`` (compressed) or
    ``.json.gz``; written to a temporary name, then renamed, so a reader never sees half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.name.endswith(".json.gz"):
        doc = {k: _json_value(np.asarray(v)) for k, v in arrays.items()}
        with gzip.open(tmp, "wt") as fh:
            json.dump(doc, fh)
    else:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)
    os.replace(tmp, path)
    return path


# --- validating reader -----------------------------------------------------------------------------
def _read_raw(path: Path) -> dict[str, Any]:
    if path.name.endswith(".json.gz"):
        with gzip.open(path, "rt") as fh:
            raw = json.load(fh)
        if not isinstance(raw, dict):
            raise EpisodeLogError(f"episode log {path}: expected a JSON object at the top level")
        return raw
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    raise EpisodeLogError(f"episode log {path}: unknown format (expected .npz or .json.gz)")


def _typed(path: Path, key: str, value: Any, spec: tuple | None = None) -> Any:
    """``value`` as the key's dtype and dimensionality (strings for the JSON keys)."""
    dtype, shape = spec if spec is not None else LOG_KEYS[key]
    if dtype is str:
        if isinstance(value, np.ndarray):
            if value.ndim != 0:
                raise EpisodeLogError(f"episode log {path}: {key} must be a string, "
                                      f"got an array of shape {value.shape}")
            value = value.item()
        if not isinstance(value, str):
            raise EpisodeLogError(f"episode log {path}: {key} must be a string, "
                                  f"got {type(value).__name__}")
        return value
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise EpisodeLogError(f"episode log {path}: {key} is not {np.dtype(dtype).name}: "
                              f"{exc}") from None
    if arr.size == 0 and len(shape) == 2 and isinstance(shape[1], int):
        arr = arr.reshape(0, shape[1])  # an empty JSON list has lost its column count
    if arr.ndim != len(shape) or (len(shape) == 2 and isinstance(shape[1], int)
                                  and arr.shape[1] != shape[1]):
        want = "(" + ", ".join(str(s) for s in shape) + ")"
        raise EpisodeLogError(f"episode log {path}: {key} has shape {arr.shape}, "
                              f"expected {want}")
    return arr


def _check_rows(path: Path, log: dict) -> None:
    """Row counts agree across keys (module docstring); offsets index their rows."""
    rows = {"T": log["t_s"].shape[0], "T+1": log["t_s"].shape[0] + 1,
            "A": log["agent_id"].shape[0], "S": log["static_id"].shape[0],
            "C": log["collision_ids"].shape[0]}
    for key, (dtype, shape) in LOG_KEYS.items():
        if dtype is str or shape[0] not in rows:
            continue
        n = log[key].shape[0]
        if n != rows[shape[0]]:
            raise EpisodeLogError(f"episode log {path}: {key} has {n} rows, expected "
                                  f"{rows[shape[0]]} ({shape[0]}, from "
                                  f"{'t_s' if shape[0].startswith('T') else key})")
    for key, indexed in _OFFSET_KEYS.items():
        off = log[key]
        if off[0] != 0 or np.any(np.diff(off) < 0) or off[-1] != log[indexed].shape[0]:
            raise EpisodeLogError(f"episode log {path}: {key} must rise from 0 to "
                                  f"len({indexed}) = {log[indexed].shape[0]}, got "
                                  f"{off[0]}..{off[-1]}")


def _check_lights(path: Path, log: dict) -> None:
    """The optional traffic-light keys agree with each other and with the step count."""
    n = log["light_id"].shape[0]
    for key in ("light_head", "light_stop"):
        if log[key].shape[0] != n:
            raise EpisodeLogError(f"episode log {path}: {key} has {log[key].shape[0]} rows, "
                                  f"expected {n} (L, from light_id)")
    t = log["t_s"].shape[0]
    state = log["light_state"]
    if state.size == 0:
        state = state.reshape(t, n)
        log["light_state"] = state
    if state.shape != (t, n):
        raise EpisodeLogError(f"episode log {path}: light_state has shape {state.shape}, "
                              f"expected ({t}, {n}) (T, L)")


def load_episode_log(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate an episode log (``.npz`` or ``.json.gz``).

    Returns:
        The log as :func:`log_from_arrays` returns it.

    Raises:
        EpisodeLogError: naming the file and the problem (missing file, unknown format,
            unreadable, missing key, wrong dtype/shape, row counts that disagree, unknown box
            columns).
    """
    path = Path(path)
    if not path.is_file():
        raise EpisodeLogError(f"episode log {path} does not exist")
    try:
        raw = _read_raw(path)
    except EpisodeLogError:
        raise
    except (OSError, ValueError, EOFError) as exc:
        raise EpisodeLogError(f"episode log {path}: cannot read: {exc}") from exc
    return log_from_arrays(raw, str(path))


def log_from_arrays(raw: dict[str, Any], source: str = "(in memory)") -> dict[str, Any]:
    """Validate log arrays (from a file, or :meth:`EpisodeLog.arrays` of an episode still in
    memory) and return them typed.

    Args:
        raw: every :data:`LOG_KEYS` entry (arrays, lists or strings).
        source: what to call the log in error messages (its path).

    Returns:
        A dict with every :data:`LOG_KEYS` entry as a numpy array of its dtype (``meta_json`` and
        ``events_json`` as str; missing floats as NaN in either format), plus ``meta`` (parsed
        ``meta_json``) and ``events`` (parsed ``events_json``: T lists of event names).

    Raises:
        EpisodeLogError: naming ``source`` and the problem.
    """
    where = Path(source)
    missing = [k for k in LOG_KEYS if k not in raw]
    if missing:
        raise EpisodeLogError(f"episode log {where}: missing keys {missing}")
    log: dict[str, Any] = {k: _typed(where, k, raw[k]) for k in LOG_KEYS}
    optional = [k for k in OPTIONAL_LOG_KEYS if k in raw]
    if optional and len(optional) != len(OPTIONAL_LOG_KEYS):
        raise EpisodeLogError(f"episode log {where}: has {optional} but not "
                              f"{sorted(set(OPTIONAL_LOG_KEYS) - set(optional))} (all or none)")
    log.update({k: _typed(where, k, raw[k], OPTIONAL_LOG_KEYS[k]) for k in optional})
    log.update({k: v for k, v in raw.items() if k not in LOG_KEYS and k not in log})
    _check_rows(where, log)
    if optional:
        _check_lights(where, log)
    try:
        log["meta"] = json.loads(log["meta_json"])
        log["events"] = json.loads(log["events_json"])
    except ValueError as exc:
        raise EpisodeLogError(f"episode log {where}: meta_json/events_json is not JSON: "
                              f"{exc}") from None
    if not isinstance(log["meta"], dict):
        raise EpisodeLogError(f"episode log {where}: meta_json must be a JSON object")
    if not isinstance(log["events"], list) or len(log["events"]) != log["t_s"].shape[0]:
        raise EpisodeLogError(f"episode log {where}: events_json must list the events of each "
                              f"of the {log['t_s'].shape[0]} steps")
    columns = log["meta"].get("box_columns")
    if columns is not None and tuple(columns) != BOX_COLUMNS:
        raise EpisodeLogError(f"episode log {where}: box_columns {columns} differ from this "
                              f"reader's {list(BOX_COLUMNS)}")
    return log
