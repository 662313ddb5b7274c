"""World state dataclasses, their byte serialisation (determinism checks) and ground-truth
futures."""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field

import numpy as np

EGO_ID = 0
STATIC_ID_BASE = 1_000_000  # static objects get ids from here (agents count up from 1)
FUTURE_HORIZON_S = 3.0
FUTURE_STEP_S = 0.5


@dataclass(frozen=True)
class AgentState:
    """One dynamic agent (or the ego) at one step, map frame, SI units.

    Attributes:
        id: stable within an episode; ego = 0.
        sim_id: SUMO's id.
        class_id: tps_msgs DetectedAgent class (1 car, 2 truck, 3 bus, 4 pedestrian, 5 cyclist).
        center: (x, y, z) box centre [m], z = height / 2.
        yaw: heading [rad], REP-103.
        size: (length, width, height) [m].
        velocity: (vx, vy) [m/s], map frame.
        speed_mps: signed speed along the heading [m/s].
        accel_mps2: longitudinal acceleration [m/s^2].
        yaw_rate: [rad/s].
    """

    id: int
    sim_id: str
    class_id: int
    center: tuple
    yaw: float
    size: tuple
    velocity: tuple
    speed_mps: float
    accel_mps2: float
    yaw_rate: float

    def box2d(self) -> np.ndarray:
        """(x, y, yaw, length, width) footprint for the collision check."""
        return np.array([self.center[0], self.center[1], self.yaw, self.size[0], self.size[1]])


@dataclass(frozen=True, eq=False)
class StaticObjects:
    """Static objects (clutter, debris, obstacles), fixed for the episode.

    Attributes:
        ids: (K,) int64 ids (>= STATIC_ID_BASE).
        kinds: tuple of K names: pole, barrier, wall, building, parked_car, debris.
        centers: (K, 3) box centres [m] (z = height / 2).
        yaws: (K,) [rad].
        sizes: (K, 3) length, width, height [m].
        in_lane: (K,) bool — True for obstacles placed on the road (config ``obstacles``),
            False for background clutter placed off the drivable area.
    """

    ids: np.ndarray
    kinds: tuple
    centers: np.ndarray
    yaws: np.ndarray
    sizes: np.ndarray
    in_lane: np.ndarray

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    @classmethod
    def empty(cls) -> StaticObjects:
        """No static objects."""
        return cls(np.zeros(0, np.int64), (), np.zeros((0, 3)), np.zeros(0), np.zeros((0, 3)),
                   np.zeros(0, bool))

    def boxes2d(self) -> np.ndarray:
        """(K, 5) footprints (x, y, yaw, length, width)."""
        return np.column_stack([self.centers[:, :2], self.yaws, self.sizes[:, :2]]) \
            if len(self) else np.zeros((0, 5))


@dataclass(frozen=True, eq=False)
class WorldState:
    """The world at one step.

    Attributes:
        t_s: simulation time since the episode start [s].
        step: step index (0 at reset).
        ego: the ego's state (id 0).
        agents: dynamic agents (vehicles, cyclists, pedestrians), NOT the ego, sorted by id.
        statics: static objects (same object every step of an episode).
        collisions: ids of agents / statics whose oriented box overlaps the ego's this step.
        route_progress_m: arc length of the ego's projection on the route [m].
        traffic_lights: ((tls id, SUMO state string), ...) — informative only.
        events: things that happened this step (e.g. "ego_placement_failed", "bad_control").
    """

    t_s: float
    step: int
    ego: AgentState
    agents: tuple
    statics: StaticObjects
    collisions: tuple
    route_progress_m: float
    traffic_lights: tuple = ()
    events: tuple = field(default_factory=tuple)

    def agent_by_id(self, agent_id: int) -> AgentState | None:
        """The agent (or ego) with ``agent_id``, or None."""
        if agent_id == EGO_ID:
            return self.ego
        for a in self.agents:
            if a.id == agent_id:
                return a
        return None

    def agent_arrays(self) -> dict:
        """Agents as arrays: ids (N,), class_ids (N,), centers (N, 3), yaws (N,), sizes (N, 3),
        velocities (N, 2)."""
        n = len(self.agents)
        if n == 0:
            return {"ids": np.zeros(0, np.int64), "class_ids": np.zeros(0, np.int64),
                    "centers": np.zeros((0, 3)), "yaws": np.zeros(0), "sizes": np.zeros((0, 3)),
                    "velocities": np.zeros((0, 2))}
        return {"ids": np.array([a.id for a in self.agents], np.int64),
                "class_ids": np.array([a.class_id for a in self.agents], np.int64),
                "centers": np.array([a.center for a in self.agents], np.float64),
                "yaws": np.array([a.yaw for a in self.agents], np.float64),
                "sizes": np.array([a.size for a in self.agents], np.float64),
                "velocities": np.array([a.velocity for a in self.agents], np.float64)}

    def to_bytes(self) -> bytes:
        """A canonical byte encoding of the whole ground truth (for determinism checks)."""
        parts = [struct.pack("<dqd", self.t_s, self.step, self.route_progress_m)]
        for a in (self.ego, *self.agents):
            parts.append(_agent_bytes(a))
        parts.append(self.statics.ids.astype("<i8").tobytes())
        parts.append(self.statics.centers.astype("<f8").tobytes())
        parts.append(self.statics.yaws.astype("<f8").tobytes())
        parts.append(self.statics.sizes.astype("<f8").tobytes())
        parts.append("|".join(self.statics.kinds).encode())
        parts.append(np.asarray(self.collisions, "<i8").tobytes())
        parts.append(repr(self.traffic_lights).encode())
        parts.append("|".join(self.events).encode())
        return b"".join(parts)


def _agent_bytes(a: AgentState) -> bytes:
    return (struct.pack("<qq", a.id, a.class_id) + a.sim_id.encode() + b"\0"
            + np.array([*a.center, a.yaw, *a.size, *a.velocity, a.speed_mps, a.accel_mps2,
                        a.yaw_rate], "<f8").tobytes())


def states_digest(states: list) -> str:
    """sha256 hex digest of a sequence of WorldStates."""
    h = hashlib.sha256()
    for s in states:
        h.update(s.to_bytes())
    return h.hexdigest()


@dataclass(frozen=True, eq=False)
class Futures:
    """Future box centres of every agent and the ego, from one step.

    Attributes:
        times_s: (F,) offsets [s] (0.5 .. 3.0 by default).
        xy: {agent id: (F, 2) future centres [m]}; NaN rows where the agent is gone (left the
            simulation) or the recording ends before that time. Ego = id 0.
        valid: {agent id: (F,) bool}.
    """

    times_s: np.ndarray
    xy: dict
    valid: dict


def attach_futures(states: list, horizon_s: float = FUTURE_HORIZON_S,
                   step_s: float = FUTURE_STEP_S) -> list:
    """Future centres for every step of a recorded episode.

    Args:
        states: consecutive WorldStates of one episode (constant dt).
        horizon_s: how far ahead [s].
        step_s: spacing of the future points [s] (must be a multiple of the sim step).

    Returns:
        one :class:`Futures` per state.
    """
    if not states:
        return []
    if len(states) > 1:
        dt = states[1].t_s - states[0].t_s
    else:
        dt = step_s
    stride = int(round(step_s / dt))
    if stride < 1 or abs(stride * dt - step_s) > 1e-6:
        raise ValueError(f"step_s={step_s} is not a multiple of the sim step {dt}")
    n_future = int(round(horizon_s / step_s))
    times = step_s * np.arange(1, n_future + 1)
    # Index every step's positions by agent id once.
    pos = [{s.ego.id: s.ego.center[:2], **{a.id: a.center[:2] for a in s.agents}}
           for s in states]
    out = []
    for k, s in enumerate(states):
        ids = [s.ego.id] + [a.id for a in s.agents]
        xy = {}
        valid = {}
        for i in ids:
            arr = np.full((n_future, 2), np.nan)
            for f in range(n_future):
                j = k + (f + 1) * stride
                if j < len(states):
                    p = pos[j].get(i)
                    if p is not None:
                        arr[f] = p
            xy[i] = arr
            valid[i] = ~np.isnan(arr[:, 0])
        out.append(Futures(times, xy, valid))
    return out
