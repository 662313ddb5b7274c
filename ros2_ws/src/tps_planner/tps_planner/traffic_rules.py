"""The fallback's traffic-light rule (core; no ROS): where the ego must stop for the lights on
its route, from map knowledge (the stop lines) and the classical light reader's states.

For each stop line ahead on the route (its arc length from ``tps_common.traffic_lights
.heads_on_route``), per planning cycle:

1. **State.** The reader's state of that light if it is RED, YELLOW or GREEN with confidence >=
   ``min_confidence``; else the last such state if it is at most ``hold_s`` old (a brief
   occlusion or a missed frame); else UNKNOWN.
2. **Decision** (``gap`` = stop line - front bumper along the route; ``room`` = gap -
   ``stop_margin_m``, where the bumper stops; ``need`` = v^2 / (2 room), the constant
   deceleration that stops there):

   - GREEN: go.
   - YELLOW: stop when ``need <= comfort_decel_mps2``; otherwise the ego cannot stop comfortably
     and goes on (*committed*).
   - RED: stop when ``need <= max_stop_decel_mps2``; otherwise (it cannot stop before the line)
     it goes on, committed.
   - UNKNOWN (or OFF): once the stop point is within the comfortable stopping distance
     ``v^2 / (2 comfort_decel_mps2) + unknown_margin_m``, stop when ``need <=
     max_stop_decel_mps2``, else go on, committed (conservative: a light that cannot be read
     near the line is treated as red); farther away nothing happens yet.

   A committed ego keeps going through YELLOW, RED and UNKNOWN until it has passed the line --
   the dilemma zone is decided once -- unless it comes to a standstill before the line (then the
   light applies again). GREEN clears the commitment.
3. **Output.** Every "stop" is a stationary virtual obstacle for the planner: the arc length where
   the front bumper must stop (``stop line - stop_margin_m``). Lines behind the bumper are
   forgotten.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tps_common.traffic_lights import GREEN, RED, UNKNOWN, YELLOW

_KNOWN = (RED, YELLOW, GREEN)


@dataclass(frozen=True)
class TrafficRuleParams:
    """Traffic-light rule parameters (config/schema/fallback_node.schema.json, ``light_*``)."""

    comfort_decel_mps2: float = 3.0       # YELLOW: stop only when this suffices
    max_stop_decel_mps2: float = 6.0      # RED / UNKNOWN: stop when this suffices
    stop_margin_m: float = 0.5            # the front bumper stops this far before the line
    lookahead_m: float = 150.0            # stop lines farther ahead are ignored
    unknown_margin_m: float = 2.0         # UNKNOWN: act within the comfortable stopping distance + this
    hold_s: float = 1.0                   # a known state is kept this long through UNKNOWN readings
    min_confidence: float = 0.5           # readings below count as UNKNOWN
    standstill_mps: float = 0.3           # below this speed before the line, a commitment ends

    @classmethod
    def from_node_config(cls, cfg: Mapping) -> TrafficRuleParams:
        """The rule parameters of the fallback node's validated parameters (its ``light_*``)."""
        return cls(comfort_decel_mps2=cfg["light_comfort_decel_mps2"], max_stop_decel_mps2=cfg["light_max_stop_decel_mps2"],
                   stop_margin_m=cfg["light_stop_margin_m"], lookahead_m=cfg["light_lookahead_m"],
                   unknown_margin_m=cfg["light_unknown_margin_m"], hold_s=cfg["light_hold_s"],
                   min_confidence=cfg["light_min_confidence"])

    def __post_init__(self) -> None:
        for name in ("comfort_decel_mps2", "max_stop_decel_mps2", "lookahead_m"):
            if not getattr(self, name) > 0.0:
                raise ValueError(f"TrafficRuleParams.{name} must be > 0, got {getattr(self, name)}")
        for name in ("stop_margin_m", "unknown_margin_m", "hold_s", "standstill_mps"):
            if not getattr(self, name) >= 0.0:
                raise ValueError(f"TrafficRuleParams.{name} must be >= 0, got {getattr(self, name)}")
        if self.max_stop_decel_mps2 < self.comfort_decel_mps2:
            raise ValueError("TrafficRuleParams.max_stop_decel_mps2 must be >= comfort_decel_mps2 "
                             f"({self.comfort_decel_mps2}), got {self.max_stop_decel_mps2}")
        if not 0.0 <= self.min_confidence <= 1.0:
            raise ValueError(f"TrafficRuleParams.min_confidence must be in [0, 1], got "
                             f"{self.min_confidence}")


@dataclass(frozen=True)
class RouteStopLine:
    """A light's stop line on the route: ``s_m`` its arc length along the route [m]."""

    light_id: int
    s_m: float


@dataclass(frozen=True)
class LightObservation:
    """The reader's view of one light (tps_msgs/TrafficLightState): state, confidence [0, 1]."""

    light_id: int
    state: int
    confidence: float = 1.0


@dataclass(frozen=True)
class LightDecision:
    """What the rule decided for one stop line this cycle.

    Attributes:
        light_id, s_stop_m: the light and its stop line's arc length [m].
        gap_m: stop line - front bumper along the route [m].
        observed: the reader's state this cycle (UNKNOWN when none / low confidence).
        effective: the state the rule acted on (after ``hold_s``).
        stop: a virtual obstacle is placed.
        reason: why, in words.
        required_decel_mps2: constant deceleration that stops the bumper at the stop point.
    """

    light_id: int
    s_stop_m: float
    gap_m: float
    observed: int
    effective: int
    stop: bool
    reason: str
    required_decel_mps2: float


@dataclass(frozen=True)
class RuleResult:
    """Stops (front-bumper arc lengths [m], nearest first) and the decision per stop line."""

    stops: tuple[float, ...]
    decisions: tuple[LightDecision, ...]

    @property
    def nearest_stop_m(self) -> float | None:
        """The nearest stop [m], or None."""
        return self.stops[0] if self.stops else None


@dataclass
class _Memory:
    state: int = UNKNOWN
    stamp_s: float = -math.inf
    committed: bool = False


class TrafficLightRules:
    """Stateful rule: :meth:`set_stop_lines` when the route or map changes, :meth:`update` every
    planning cycle (module docstring)."""

    def __init__(self, params: TrafficRuleParams | None = None) -> None:
        self.params = params if params is not None else TrafficRuleParams()
        self._lines: tuple[RouteStopLine, ...] = ()
        self._memory: dict[int, _Memory] = {}

    @property
    def stop_lines(self) -> tuple[RouteStopLine, ...]:
        """The route's stop lines, by arc length."""
        return self._lines

    def set_stop_lines(self, lines: Sequence[RouteStopLine]) -> None:
        """Install the route's stop lines (forgets every state and commitment)."""
        self._lines = tuple(sorted(lines, key=lambda ln: (ln.s_m, ln.light_id)))
        self._memory = {}

    def required_decel(self, speed_mps: float, room_m: float) -> float:
        """Constant deceleration [m/s^2] that stops from ``speed_mps`` within ``room_m``."""
        v = max(float(speed_mps), 0.0)
        if v <= 1e-6:
            return 0.0
        return v * v / (2.0 * room_m) if room_m > 1e-3 else math.inf

    def update(self, stamp_s: float, s_front_m: float, speed_mps: float,
               observations: Mapping[int, LightObservation] | None) -> RuleResult:
        """One cycle.

        Args:
            stamp_s: the cycle's stamp [s] (for ``hold_s``).
            s_front_m: the ego's front bumper, arc length along the route [m].
            speed_mps: the ego's speed [m/s].
            observations: the reader's states by light id (None: no reader output this cycle,
                every light UNKNOWN).
        """
        p = self.params
        observations = observations or {}
        stops, decisions = [], []
        v = max(float(speed_mps), 0.0)
        for line in self._lines:
            gap = line.s_m - s_front_m
            mem = self._memory.setdefault(line.light_id, _Memory())
            obs = observations.get(line.light_id)
            observed = UNKNOWN
            if obs is not None and obs.state in _KNOWN and obs.confidence >= p.min_confidence:
                observed = int(obs.state)
                mem.state, mem.stamp_s = observed, float(stamp_s)
            if gap < 0.0:
                self._memory.pop(line.light_id, None)     # passed: forget it
                continue
            if gap > p.lookahead_m:
                continue
            effective = observed
            if effective == UNKNOWN and stamp_s - mem.stamp_s <= p.hold_s:
                effective = mem.state
            if v < p.standstill_mps:
                mem.committed = False
            room = gap - p.stop_margin_m
            need = self.required_decel(v, room)
            stop, commit = False, False
            if effective == GREEN:
                mem.committed = False
                reason = "green: go"
            elif mem.committed:
                reason = "committed to pass (could not stop in time): go"
            elif effective == YELLOW:
                stop, commit = need <= p.comfort_decel_mps2, need > p.comfort_decel_mps2
                reason = ("yellow: stopping" if stop else
                          f"yellow: cannot stop comfortably ({need:.1f} m/s^2): go")
            elif effective == RED:
                stop, commit = need <= p.max_stop_decel_mps2, need > p.max_stop_decel_mps2
                reason = "red: stopping" if stop else f"red: cannot stop ({need:.1f} m/s^2): go"
            elif room > v * v / (2.0 * p.comfort_decel_mps2) + p.unknown_margin_m:
                reason = "unknown: not yet within the stopping distance"
            else:
                stop, commit = need <= p.max_stop_decel_mps2, need > p.max_stop_decel_mps2
                reason = ("unknown within the stopping distance: stopping" if stop else
                          f"unknown, cannot stop ({need:.1f} m/s^2): go")
            mem.committed = mem.committed or commit
            if stop:
                stops.append(line.s_m - p.stop_margin_m)
            decisions.append(LightDecision(line.light_id, line.s_m, gap, observed, effective, stop,
                                           reason, need))
        return RuleResult(tuple(sorted(stops)), tuple(decisions))


class TrafficLightStage:
    """What the fallback node needs around :class:`TrafficLightRules` (ROS-free): the route's
    stop lines from map knowledge, and the reader's outputs by stamp, so that a planning cycle
    uses the reading of its own camera frame (the synchronous loop stays deterministic).

    Args:
        params: the rule's parameters.
        capacity: reader outputs kept (by stamp).
    """

    def __init__(self, params: TrafficRuleParams | None = None, capacity: int = 50) -> None:
        self.rules = TrafficLightRules(params)
        self.capacity = int(capacity)
        self._heads: list = []
        self._route = None
        self._by_stamp: dict[int, dict[int, LightObservation]] = {}

    @staticmethod
    def _key(stamp_s: float) -> int:
        return int(round(float(stamp_s) * 1e6))          # microseconds: exact for sim stamps

    def set_heads(self, heads) -> None:
        """The lights' map knowledge (``tps_common.traffic_lights.LightHead``)."""
        self._heads = list(heads)
        self._match()

    def set_route(self, route_xy) -> None:
        """The route polyline (N, 2) [m, map]."""
        self._route = route_xy
        self._match()

    def _match(self) -> None:
        from tps_common.traffic_lights import heads_on_route

        if self._route is None or not self._heads:
            self.rules.set_stop_lines(())
            return
        self.rules.set_stop_lines([RouteStopLine(h.id, s)
                                   for h, s in heads_on_route(self._heads, self._route)])

    def put(self, stamp_s: float, observations: Sequence[LightObservation]) -> None:
        """Store the reader's output of one camera frame."""
        self._by_stamp[self._key(stamp_s)] = {o.light_id: o for o in observations}
        while len(self._by_stamp) > self.capacity:
            self._by_stamp.pop(min(self._by_stamp))

    @property
    def newest_stamp_s(self) -> float | None:
        """Stamp of the newest reader output [s], None before the first."""
        return max(self._by_stamp) * 1e-6 if self._by_stamp else None

    def has(self, stamp_s: float) -> bool:
        """The reader's output of ``stamp_s`` has arrived."""
        return self._key(stamp_s) in self._by_stamp

    def waits_for(self, stamp_s: float) -> bool:
        """A cycle at ``stamp_s`` should wait for the reader: there are stop lines on the route,
        its output of that stamp has not arrived and the reader has not moved past it."""
        newest = self.newest_stamp_s
        return bool(self.rules.stop_lines) and not self.has(stamp_s) and (
            newest is None or newest < stamp_s - 1e-6)

    def update(self, stamp_s: float, s_front_m: float, speed_mps: float) -> RuleResult:
        """The rule's decision for the cycle at ``stamp_s`` with the reader's output of that
        stamp (every light UNKNOWN when it is missing)."""
        return self.rules.update(stamp_s, s_front_m, speed_mps,
                                 self._by_stamp.get(self._key(stamp_s)))
