"""Stamp synchronisation: act on the ego pose *of an input's stamp* (ROS-free core).

Why. In the synchronous closed loop (docs/CONTRACTS.md) the bridge publishes, per step, ``/clock``
= t_k and then every sensor message and the odometry stamped t_k. DDS does not order messages
across topics, so a node may receive the lidar cloud (or a trajectory planned from it) of t_k
before or after the odometry of t_k. Acting on "the latest pose" therefore made two runs of the
same seed diverge; every node must act on the pose of its input's stamp, and wait for it.

Protocol (one :class:`StampSync` per node, fed from its callbacks; every call returns a
:class:`SyncResult` saying what to act on *now*, in order):

1. :meth:`StampSync.on_pose` -- odometry arrived. A non-finite pose is rejected with a reason
   (the node turns it into a diagnostic). Otherwise it is stored in the :class:`PoseHistory`,
   and the waiting input is released once the newest pose reaches its stamp.
2. :meth:`StampSync.on_input` -- an input (cloud, trajectory, ...) arrived. A still-waiting older
   input is released first (its odometry never came: it gets the nearest pose). The new input is
   released at once when the history has reached its stamp, else it waits (one slot). An input
   that needs no pose passes straight through (``wait=False``).
3. :meth:`StampSync.on_clock` -- ``/clock`` (or a wall-clock timer) advanced. Once the clock is
   past a waiting input's stamp, its step is over and its odometry is not coming: release it.

A released input carries the pose to use, found by :meth:`PoseHistory.lookup` at release time:
the stored pose of its stamp (``exact``), else linear interpolation between the neighbours
(``interpolated``), else the nearest within ``pose_tolerance_s`` (``nearest``), else optionally
the newest pose (``latest``), else none; plus a short note whenever the pose is not the exact one.

A second stream paired by stamp (the planner's camera image beside its agent tokens) is kept in a
:class:`StampBuffer`: the message within a slop of the released input's stamp, and whether waiting
for it can still help (streams arrive in stamp order).

Start-up (``startup_needs_pose``, the controller's rule): until the first pose arrives and
before anything was released or published, a waiting input is never released blind: the next
waiting input supersedes it (reported in :attr:`SyncResult.dropped`) and the clock leaves it
waiting. Acting on it would have produced an output that depends on which message won the DDS
race, which made the first step nondeterministic.

Units: stamps and clock in seconds of (simulation) time; poses in ``map`` (REP-103, metres,
radians, m/s).
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, TypeVar

from tps_common.geometry import wrap_angle

__all__ = [
    "STAMP_EPSILON_S",
    "Dropped",
    "EgoPose",
    "PoseHistory",
    "PoseKind",
    "Release",
    "ReleaseCause",
    "StampBuffer",
    "StampSync",
    "StampSyncParams",
    "SyncResult",
    "invalid_pose_reason",
]

STAMP_EPSILON_S = 1e-6   # two stamps closer than this are the same stamp, s

T = TypeVar("T")


@dataclass(frozen=True)
class EgoPose:
    """Ego state in ``map``: position (m), yaw (rad), longitudinal speed (m/s) at ``stamp_s`` (s)."""

    stamp_s: float
    x: float
    y: float
    yaw: float
    speed_mps: float = 0.0
    problem: str | None = None   # why the message it came from is unusable beyond NaN/inf fields


def invalid_pose_reason(pose: EgoPose) -> str | None:
    """Why ``pose`` cannot be used (a NaN/inf field, or the ``problem`` its conversion found), or
    None when it is usable.

    Args:
        pose: the pose to check.

    Returns:
        e.g. ``"odometry of stamp 1.200 s contains NaN/inf (x, yaw): ignored"``, or None.
    """
    bad = [name for name in ("stamp_s", "x", "y", "yaw", "speed_mps")
           if not math.isfinite(getattr(pose, name))]
    if bad:
        return f"odometry of stamp {pose.stamp_s:.3f} s contains NaN/inf ({', '.join(bad)}): ignored"
    if pose.problem:
        return f"odometry of stamp {pose.stamp_s:.3f} s: {pose.problem}: ignored"
    return None


class PoseKind(StrEnum):
    """Where a looked-up pose came from."""

    EXACT = "exact"                 # the stored pose of the stamp
    INTERPOLATED = "interpolated"   # linear between the stored neighbours of the stamp
    NEAREST = "nearest"             # the stored pose nearest to the stamp, within the tolerance
    LATEST = "latest"               # the newest pose, none being within the tolerance
    NONE = "none"                   # no pose


class PoseHistory:
    """The recent ego poses, sorted by stamp, for looking up the pose *of a given stamp*.

    A pose whose stamp is not after the newest one means time went back (a new episode, or a
    clock jump back): every stored pose at or after its stamp is dropped.
    """

    def __init__(self, capacity: int = 50, stamp_epsilon_s: float = STAMP_EPSILON_S) -> None:
        """Args:
            capacity: poses kept (the oldest are dropped), >= 1.
            stamp_epsilon_s: two stamps closer than this are the same stamp, s.
        """
        if capacity < 1:
            raise ValueError(f"PoseHistory capacity = {capacity}: must be >= 1")
        self.capacity = capacity
        self.stamp_epsilon_s = stamp_epsilon_s
        self.poses: list[EgoPose] = []

    def append(self, pose: EgoPose) -> None:
        """Add a pose; a stamp not after the newest one means time went back (a new episode)."""
        if self.poses and pose.stamp_s <= self.poses[-1].stamp_s:
            self.poses = [p for p in self.poses if p.stamp_s < pose.stamp_s]
        self.poses.append(pose)
        del self.poses[: -self.capacity]

    @property
    def latest(self) -> EgoPose | None:
        """The newest pose (None when empty)."""
        return self.poses[-1] if self.poses else None

    def has(self, stamp_s: float, tol_s: float | None = None) -> bool:
        """True when a pose with exactly this stamp (within ``tol_s`` s, default the history's
        stamp epsilon) is stored."""
        tol = self.stamp_epsilon_s if tol_s is None else tol_s
        return any(abs(p.stamp_s - stamp_s) <= tol for p in self.poses)

    def reached(self, stamp_s: float, tol_s: float | None = None) -> bool:
        """True when the newest pose is at or after ``stamp_s`` (less ``tol_s`` s, default the
        history's stamp epsilon): the odometry of that stamp has arrived or never will."""
        tol = self.stamp_epsilon_s if tol_s is None else tol_s
        return bool(self.poses) and self.poses[-1].stamp_s >= stamp_s - tol

    def lookup(self, stamp_s: float, tolerance_s: float) -> tuple[EgoPose | None, PoseKind]:
        """The pose at ``stamp_s`` and where it came from.

        Args:
            stamp_s: the stamp, s.
            tolerance_s: how far the nearest stored pose may be from ``stamp_s`` when there is
                neither the stored pose of the stamp nor neighbours on both sides of it, s.

        Returns:
            ``(pose, kind)``: the stored pose (EXACT); else linear interpolation between the
            neighbours, yaw along the short way (INTERPOLATED; the pose carries ``stamp_s``, and
            its yaw is ``a.yaw + w * dyaw``, unwrapped, so it may leave [-pi, pi) by up to the
            step); else the nearest within ``tolerance_s`` (NEAREST); else ``(None, NONE)``.
        """
        history = self.poses
        eps = self.stamp_epsilon_s
        stamps = [p.stamp_s for p in history]
        i = bisect.bisect_left(stamps, stamp_s - eps)
        if i < len(history) and abs(stamps[i] - stamp_s) <= eps:
            return history[i], PoseKind.EXACT
        if 0 < i < len(history):
            a, b = history[i - 1], history[i]
            w = (stamp_s - a.stamp_s) / (b.stamp_s - a.stamp_s)
            dyaw = wrap_angle(b.yaw - a.yaw, include_pi=True)
            return EgoPose(stamp_s, a.x + w * (b.x - a.x), a.y + w * (b.y - a.y), a.yaw + w * dyaw,
                           a.speed_mps + w * (b.speed_mps - a.speed_mps)), PoseKind.INTERPOLATED
        nearest = history[min(i, len(history) - 1)] if history else None
        if nearest is not None and abs(nearest.stamp_s - stamp_s) <= tolerance_s:
            return nearest, PoseKind.NEAREST
        return None, PoseKind.NONE

    def at(self, stamp_s: float, tolerance_s: float) -> EgoPose | None:
        """Pose at ``stamp_s`` (s): the stored one, else linear interpolation between neighbours,
        else the nearest within ``tolerance_s`` (s); None if there is none. See :meth:`lookup`."""
        return self.lookup(stamp_s, tolerance_s)[0]


class StampBuffer(Generic[T]):
    """The recent messages of a second stream (a camera image, ...) by stamp, to pair with the
    input a :class:`StampSync` releases: :meth:`nearest` finds the one whose stamp is within a slop
    of the input's stamp, :meth:`may_still_arrive` says whether waiting for it can help.

    Like :class:`PoseHistory`, a stamp not after the newest one means time went back: the entries
    at or after it are dropped.
    """

    def __init__(self, capacity: int = 10, stamp_epsilon_s: float = STAMP_EPSILON_S) -> None:
        """Args:
            capacity: messages kept (the oldest are dropped), >= 1.
            stamp_epsilon_s: two stamps closer than this are the same stamp, s.
        """
        if capacity < 1:
            raise ValueError(f"StampBuffer capacity = {capacity}: must be >= 1")
        self.capacity = capacity
        self.stamp_epsilon_s = stamp_epsilon_s
        self._items: list[tuple[float, T]] = []

    def __len__(self) -> int:
        return len(self._items)

    @property
    def newest_stamp_s(self) -> float | None:
        """Stamp of the newest message (s), None when empty."""
        return self._items[-1][0] if self._items else None

    def put(self, stamp_s: float, payload: T) -> None:
        """Store a message of stamp ``stamp_s`` (s)."""
        if self._items and stamp_s <= self._items[-1][0]:
            self._items = [it for it in self._items if it[0] < stamp_s]
        self._items.append((stamp_s, payload))
        del self._items[: -self.capacity]

    def nearest(self, stamp_s: float, slop_s: float) -> tuple[float, T] | None:
        """``(stamp, payload)`` of the stored message nearest to ``stamp_s`` if it lies within
        ``slop_s`` (+ the stamp epsilon) of it, else None."""
        if not self._items:
            return None
        best = min(self._items, key=lambda it: abs(it[0] - stamp_s))
        return best if abs(best[0] - stamp_s) <= slop_s + self.stamp_epsilon_s else None

    def may_still_arrive(self, stamp_s: float, slop_s: float) -> bool:
        """True when no stored message is later than ``stamp_s + slop_s``: a message within the
        slop of ``stamp_s`` can still come (streams are in stamp order)."""
        newest = self.newest_stamp_s
        return newest is None or newest < stamp_s + slop_s - self.stamp_epsilon_s


@dataclass(frozen=True)
class StampSyncParams:
    """Policy of a :class:`StampSync`.

    Attributes:
        pose_tolerance_s: how far from an input's stamp the nearest pose may be when neither its
            own pose nor neighbours on both sides are stored, s (>= 0).
        history_capacity: poses kept for lookup (50 = 5 s at 10 Hz), >= 1.
        stamp_epsilon_s: two stamps closer than this are the same stamp, s (>= 0).
        release_on_clock: release a waiting input once the clock is past its stamp.
        clock_release_after_s: how far past its stamp the clock must be to release a waiting
            input, s (>= 0). 0 with sim time (a clock tick past the stamp means its step is
            over); on a vehicle (wall clock) the odometry latency budget, else the first wall
            tick releases every input without waiting.
        startup_needs_pose: before the first pose and before anything was released or published
            (:meth:`StampSync.mark_started`), never release a waiting input without a pose: the
            next waiting input supersedes (drops) it and the clock leaves it waiting. The
            controller's start-up rule.
        latest_pose_fallback: with no pose within ``pose_tolerance_s``, hand out the newest pose
            (kind LATEST) rather than none. The controller's rule (it must steer with something).
    """

    pose_tolerance_s: float = 0.25
    history_capacity: int = 50
    stamp_epsilon_s: float = STAMP_EPSILON_S
    release_on_clock: bool = True
    clock_release_after_s: float = 0.0
    startup_needs_pose: bool = False
    latest_pose_fallback: bool = False

    def __post_init__(self) -> None:
        for name in ("pose_tolerance_s", "stamp_epsilon_s", "clock_release_after_s"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0.0):
                raise ValueError(f"StampSyncParams.{name} = {value!r}: must be a finite number >= 0")
        if isinstance(self.history_capacity, bool) or not isinstance(self.history_capacity, int) \
                or self.history_capacity < 1:
            raise ValueError(f"StampSyncParams.history_capacity = {self.history_capacity!r}: "
                             "must be an integer >= 1")


class ReleaseCause(StrEnum):
    """What released an input."""

    READY = "ready"                 # its pose was already there when it arrived
    POSE = "pose"                   # the odometry of its stamp (or a later one) arrived
    NEXT_INPUT = "next_input"       # the next input arrived first: its odometry never came
    CLOCK = "clock"                 # the clock passed its stamp: its odometry never came
    PASS_THROUGH = "pass_through"   # it did not wait (``wait=False``)


@dataclass(frozen=True)
class Release(Generic[T]):
    """An input to act on now.

    Attributes:
        payload: the input as given to :meth:`StampSync.on_input`.
        stamp_s: its stamp, s.
        pose: the ego pose to use (None when there is none; see ``pose_kind``).
        pose_kind: where ``pose`` came from.
        cause: what released it.
        note: None when ``pose`` is the stored pose of the stamp, else a short human-readable
            sentence for the node's diagnostics (e.g. "no odometry of stamp 1.200 s: nearest
            pose (1.100 s) used").
    """

    payload: T
    stamp_s: float
    pose: EgoPose | None
    pose_kind: PoseKind
    cause: ReleaseCause
    note: str | None = None


@dataclass(frozen=True)
class Dropped(Generic[T]):
    """An input that will never be released.

    Attributes:
        payload: the input as given to :meth:`StampSync.on_input`.
        stamp_s: its stamp, s.
        reason: why (human-readable, for a log line or a diagnostic).
    """

    payload: T
    stamp_s: float
    reason: str


@dataclass(frozen=True)
class SyncResult(Generic[T]):
    """What one :class:`StampSync` call decided.

    Attributes:
        released: inputs to act on now, in this order (an older waiting input comes first).
        dropped: inputs given up (start-up supersede only).
        rejected: why the pose passed to :meth:`StampSync.on_pose` was not stored (None if it
            was, or for the other calls).
    """

    released: tuple[Release[T], ...] = ()
    dropped: tuple[Dropped[T], ...] = ()
    rejected: str | None = None


@dataclass(frozen=True)
class _Waiting(Generic[T]):
    payload: T
    stamp_s: float


class StampSync(Generic[T]):
    """Holds at most one input until the ego pose of its stamp is known, then releases it with
    that pose (see the module docstring for the protocol and why).

    One instance per node and input stream; not thread-safe (call it from one callback group).

    Extending to pairing several inputs by stamp (a planner that needs the detections, the route
    state and the pose of one stamp): the single waiting slot becomes a small table keyed by
    stamp, each entry holding one payload per named stream; ``on_input(stream, payload,
    stamp_s)`` files the payload under its stamp, and an entry is released when every required
    stream is present and :meth:`_ready` holds for its stamp. What ends a wait stays as here
    (the next complete entry, the clock past the stamp, the start-up supersede), entries are
    released in stamp order, and ``Release.payload`` becomes a mapping stream -> payload. The
    pose lookup, :class:`Release`, :class:`SyncResult` and the params carry over unchanged;
    keeping the policy in :meth:`_ready` / :meth:`_release` is what keeps that change local.
    """

    def __init__(self, params: StampSyncParams | None = None) -> None:
        """Args:
            params: the policy; default :class:`StampSyncParams()`.
        """
        self.params = params if params is not None else StampSyncParams()
        self._poses = PoseHistory(self.params.history_capacity, self.params.stamp_epsilon_s)
        self._waiting: _Waiting[T] | None = None
        self._started = False

    # ------------------------------------------------------------------ state
    @property
    def poses(self) -> PoseHistory:
        """The pose history (read it; feed it only through :meth:`on_pose`)."""
        return self._poses

    @property
    def latest_pose(self) -> EgoPose | None:
        """The newest stored pose (None before the first valid odometry)."""
        return self._poses.latest

    @property
    def waiting_stamp_s(self) -> float | None:
        """Stamp of the input waiting for its pose (s), or None."""
        return self._waiting.stamp_s if self._waiting is not None else None

    @property
    def starting_blind(self) -> bool:
        """True while the start-up rule holds (``startup_needs_pose``, no pose yet, nothing
        released and :meth:`mark_started` not called)."""
        return self.params.startup_needs_pose and self._poses.latest is None and not self._started

    def mark_started(self) -> None:
        """Start-up is over: the node published an output of its own (e.g. the controller's
        braking command on a clock tick). Releasing an input ends start-up too."""
        self._started = True

    # ------------------------------------------------------------------ events
    def on_pose(self, pose: EgoPose) -> SyncResult[T]:
        """Odometry arrived.

        Args:
            pose: the ego pose of the odometry's stamp (``map``).

        Returns:
            ``rejected`` set (and nothing stored) when a field is NaN/inf; else the waiting
            input in ``released`` when this pose reaches its stamp (cause POSE).
        """
        reason = invalid_pose_reason(pose)
        if reason is not None:
            return SyncResult(rejected=reason)
        self._poses.append(pose)
        if self._waiting is not None and self._ready(self._waiting.stamp_s):
            return SyncResult(released=(self._release_waiting(ReleaseCause.POSE),))
        return SyncResult()

    def on_input(self, payload: T, stamp_s: float, wait: bool = True) -> SyncResult[T]:
        """An input arrived.

        A still-waiting older input is released first (cause NEXT_INPUT, with the nearest pose),
        except during start-up (``starting_blind``), when a new waiting input supersedes it
        (``dropped``) and a pass-through one leaves it waiting.

        Args:
            payload: the input (any object; handed back in the :class:`Release`).
            stamp_s: its stamp, s (a non-finite stamp is never reached: pass it with
                ``wait=False``).
            wait: False for an input that must not wait for its pose (e.g. an invalid trajectory
                that only triggers a brake, or a node configured without odometry): it is
                released at once with whatever pose the history holds (cause PASS_THROUGH).

        Returns:
            ``released``: the older input (if released) and then this one, if its pose is
            already known (cause READY) or it passes through; otherwise this one now waits.
        """
        released: list[Release[T]] = []
        dropped: list[Dropped[T]] = []
        if self._waiting is not None:
            if not self.starting_blind:
                released.append(self._release_waiting(ReleaseCause.NEXT_INPUT))
            elif wait:
                old, self._waiting = self._waiting, None
                dropped.append(Dropped(old.payload, old.stamp_s,
                                       f"input of stamp {old.stamp_s:.3f} s superseded by the one of "
                                       f"{stamp_s:.3f} s before any odometry arrived"))
        if not wait:
            released.append(self._release(payload, stamp_s, ReleaseCause.PASS_THROUGH))
        elif self._ready(stamp_s):
            released.append(self._release(payload, stamp_s, ReleaseCause.READY))
        else:
            self._waiting = _Waiting(payload, stamp_s)
        return SyncResult(released=tuple(released), dropped=tuple(dropped))

    def on_clock(self, now_s: float) -> SyncResult[T]:
        """The clock advanced (``/clock`` with sim time, or a wall-clock timer).

        Args:
            now_s: the current time, s.

        Returns:
            The waiting input in ``released`` (cause CLOCK) once ``now_s`` is past its stamp by
            more than ``clock_release_after_s`` (+ the stamp epsilon) and ``release_on_clock``
            is set; during start-up (``starting_blind``) it keeps waiting.
        """
        waiting = self._waiting
        if waiting is None or not self.params.release_on_clock or self.starting_blind:
            return SyncResult()
        if now_s > waiting.stamp_s + self.params.clock_release_after_s + self.params.stamp_epsilon_s:
            return SyncResult(released=(self._release_waiting(ReleaseCause.CLOCK),))
        return SyncResult()

    # ------------------------------------------------------------------ policy
    def _ready(self, stamp_s: float) -> bool:
        """The pose of ``stamp_s`` is as known as it will get: the newest pose reached it."""
        return self._poses.reached(stamp_s)

    def _release_waiting(self, cause: ReleaseCause) -> Release[T]:
        waiting, self._waiting = self._waiting, None
        assert waiting is not None
        return self._release(waiting.payload, waiting.stamp_s, cause)

    def _release(self, payload: T, stamp_s: float, cause: ReleaseCause) -> Release[T]:
        """Look up the pose of ``stamp_s`` now and hand the input out; ends start-up."""
        tol = self.params.pose_tolerance_s
        pose, kind = self._poses.lookup(stamp_s, tol)
        if pose is None and self.params.latest_pose_fallback and self._poses.latest is not None:
            pose, kind = self._poses.latest, PoseKind.LATEST
        self._started = True
        return Release(payload, stamp_s, pose, kind, cause, _note(stamp_s, pose, kind, tol))


def _note(stamp_s: float, pose: EgoPose | None, kind: PoseKind, tolerance_s: float) -> str | None:
    """The diagnostic sentence for a pose that is not the stored one of ``stamp_s``."""
    head = f"no odometry of stamp {stamp_s:.3f} s"
    if kind is PoseKind.EXACT:
        return None
    if kind is PoseKind.INTERPOLATED:
        return f"{head}: pose interpolated between its neighbours"
    if kind is PoseKind.NEAREST and pose is not None:
        return f"{head}: nearest pose ({pose.stamp_s:.3f} s) used"
    if kind is PoseKind.LATEST and pose is not None:
        return f"{head} nor any within {tolerance_s:.3f} s: latest pose ({pose.stamp_s:.3f} s) used"
    return f"{head} nor any within {tolerance_s:.3f} s: no pose"
