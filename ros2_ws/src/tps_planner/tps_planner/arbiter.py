"""Trajectory arbiter (core; no ROS imports).

Chooses, once per fallback trajectory (the pacer in the synchronous loop), between the learned
planner's candidate and the fallback:

| monitor state | planner alive | mode |
|---|---|---|
| NOMINAL, DEGRADED | yes | planner (DEGRADED: speed capped at ``degraded_speed_cap_mps``) |
| NOMINAL, DEGRADED | no (watchdog) | fallback |
| FALLBACK | any | fallback |
| MINIMAL_RISK | any | minimal_risk (the fallback's path, stopping) |
| silent monitor (watchdog) | any | fallback (minimal_risk stays minimal_risk) |

"Silent" means nothing valid received for ``watchdog_timeout_s`` of sim time. With
``monitor_required`` False (a graph without a monitor, e.g. config/graph/sim_planner.yaml) an absent
or silent monitor counts as NOMINAL -- the planner's watchdog still applies -- while a monitor that
does publish is obeyed. When the mode
changes, the output is blended linearly from the last published trajectory to the new source's
over ``blend_window_s`` (source SOURCE_BLEND meanwhile), so the controller sees no step. Handing
control back to the planner blends over the longer ``handback_blend_s``: leaving the planner is a
safety action and stays quick, returning to it is not urgent, and after seconds of fallback the
planner's candidate can lie a metre beside the fallback's path (TEST signalised s9000, stop 32:
a 0.5-s hand-back, then a lateral acceleration of 25.8 m/s^2 and the ego 0.6 m off the road).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tps_common.levels import ERROR as LEVEL_ERROR
from tps_common.levels import OK as LEVEL_OK
from tps_common.levels import WARN as LEVEL_WARN

from tps_planner.trajectory import (
    SOURCE_BLEND,
    SOURCE_MINIMAL_RISK,
    STATE_DEGRADED,
    STATE_FALLBACK,
    STATE_MINIMAL_RISK,
    STATE_NAMES,
    STATE_NOMINAL,
    Trajectory,
    blend,
    retime,
    speed_capped,
    stopping_profile,
    validate_trajectory,
)

MODE_PLANNER = "planner"
MODE_FALLBACK = "fallback"
MODE_MINIMAL_RISK = "minimal_risk"
MODES = (MODE_PLANNER, MODE_FALLBACK, MODE_MINIMAL_RISK)
# Float slack so "silent for 0.2 s" triggers at exactly 0.2 s of sim time despite rounding.
_TIME_EPS_S = 1e-6


@dataclass(frozen=True)
class ArbiterParams:
    """Arbiter parameters. See config/schema/trajectory_arbiter.schema.json."""

    watchdog_timeout_s: float = 0.2     # sim time
    blend_window_s: float = 0.5         # sim time; 0 = switch at once (every blend off)
    handback_blend_s: float = 1.5       # sim time; blending back into the planner (0 = blend_window_s)
    mrm_decel_mps2: float = 2.0         # used when the fallback has not yet turned to a stop
    expected_frame: str = "map"
    monitor_required: bool = True       # False: no monitor in the graph (its silence is no reason to fall back)
    degraded_speed_cap_mps: float = 8.0     # DEGRADED: the planner keeps driving, at most this fast
    degraded_decel_mps2: float = 1.5        # DEGRADED: deceleration down to the cap


@dataclass(frozen=True)
class ArbiterResult:
    """The selected trajectory and the arbiter's state after one cycle."""

    trajectory: Trajectory | None
    mode: str
    blending: bool
    blend_alpha: float
    transitions: int
    level: int
    message: str
    planner_age_s: float
    monitor_age_s: float
    monitor_state: int | None


class TrajectoryArbiter:
    """Per-cycle source selection with watchdog and blending."""

    def __init__(self, params: ArbiterParams | None = None) -> None:
        self.params = params or ArbiterParams()
        self.mode = MODE_FALLBACK
        self.transitions = 0
        self._candidate: Trajectory | None = None
        self._candidate_rx_s: float | None = None
        self._monitor_state: int | None = None
        self._monitor_reasons: tuple[str, ...] = ()
        self._monitor_rx_s: float | None = None
        self._last_output: Trajectory | None = None
        self._blend_from: Trajectory | None = None
        self._blend_start_s = 0.0
        self._blend_s = self.params.blend_window_s
        self.rejected_candidates = 0

    # ---------------------------------------------------------------- inputs
    def on_candidate(self, traj: Trajectory, now_s: float) -> str | None:
        """Store a planner candidate received at sim time ``now_s``; returns why it was rejected
        (invalid candidates do not feed the watchdog), or None."""
        reason = validate_trajectory(traj, self.params.expected_frame)
        if reason is not None:
            self.rejected_candidates += 1
            return reason
        self._candidate = traj
        self._candidate_rx_s = now_s
        return None

    def on_monitor(self, state: int, now_s: float, reasons: tuple[str, ...] = ()) -> str | None:
        """Store a monitor state received at sim time ``now_s``; returns why it was rejected."""
        if state not in STATE_NAMES:
            return f"unknown monitor state {state}"
        self._monitor_state = state
        self._monitor_reasons = tuple(reasons)
        self._monitor_rx_s = now_s
        return None

    # ---------------------------------------------------------------- selection
    def _age(self, rx_s: float | None, now_s: float) -> float:
        return float("inf") if rx_s is None else now_s - rx_s

    def desired_mode(self, now_s: float) -> tuple[str, list[str]]:
        """The mode the state table asks for at ``now_s`` and the reasons when it is not planner."""
        timeout = self.params.watchdog_timeout_s - _TIME_EPS_S
        planner_age = self._age(self._candidate_rx_s, now_s)
        monitor_age = self._age(self._monitor_rx_s, now_s)
        reasons: list[str] = []
        monitor_silent = monitor_age >= timeout
        planner_silent = planner_age >= timeout
        monitor_state = self._monitor_state
        if not self.params.monitor_required and monitor_silent and monitor_state != STATE_MINIMAL_RISK:
            # No monitor in this graph (or it fell silent): a stale state is not obeyed, and the
            # silence is no reason to fall back; the planner watchdog below still is. A minimal-risk
            # manoeuvre is never left this way.
            monitor_state, monitor_silent = None, False
        if monitor_state == STATE_MINIMAL_RISK:
            # Never leave a minimal-risk manoeuvre because the monitor went quiet.
            reasons.append("monitor: MINIMAL_RISK" + ("" if not monitor_silent else " (monitor silent since)"))
            return MODE_MINIMAL_RISK, reasons
        if monitor_silent:
            reasons.append("monitor silent" + ("" if self._monitor_rx_s is None else f" for {monitor_age:.2f} s"))
        if planner_silent:
            reasons.append("planner silent" + (": no candidate trajectory received" if self._candidate_rx_s is None
                                               else f" for {planner_age:.2f} s"))
        if monitor_silent or planner_silent:
            return MODE_FALLBACK, reasons
        if monitor_state == STATE_FALLBACK:
            return MODE_FALLBACK, ["monitor: FALLBACK", *self._monitor_reasons]
        if monitor_state in (STATE_NOMINAL, STATE_DEGRADED) or (
                monitor_state is None and not self.params.monitor_required):
            return MODE_PLANNER, []
        return MODE_FALLBACK, ["no monitor state"]

    def update(self, fallback: Trajectory | None, now_s: float) -> ArbiterResult:
        """One cycle, triggered by a fallback trajectory.

        Args:
            fallback: the fallback's trajectory (its stamp is the cycle's stamp), or None.
            now_s: current sim time, s.
        """
        p = self.params
        mode, reasons = self.desired_mode(now_s)
        if mode != self.mode:
            self.transitions += 1
            self.mode = mode
            if p.blend_window_s > 0.0 and self._last_output is not None:
                self._blend_from = self._last_output
                self._blend_start_s = now_s
                self._blend_s = (p.handback_blend_s if mode == MODE_PLANNER and p.handback_blend_s > 0.0
                                 else p.blend_window_s)
            else:
                self._blend_from = None
        planner_age = self._age(self._candidate_rx_s, now_s)
        monitor_age = self._age(self._monitor_rx_s, now_s)

        fb_reason = validate_trajectory(fallback, p.expected_frame)
        if fb_reason is not None:
            return ArbiterResult(None, mode, False, 0.0, self.transitions, LEVEL_ERROR,
                                 f"fallback trajectory unusable ({fb_reason}): nothing published",
                                 planner_age, monitor_age, self._monitor_state)
        if mode == MODE_PLANNER:
            cand = self._candidate
            target = cand if abs(cand.stamp_s - fallback.stamp_s) < _TIME_EPS_S else retime(cand, fallback.stamp_s)
            if self._monitor_state == STATE_DEGRADED:
                target = speed_capped(target, p.degraded_speed_cap_mps, p.degraded_decel_mps2)
        elif mode == MODE_MINIMAL_RISK:
            target = fallback if fallback.source == SOURCE_MINIMAL_RISK else stopping_profile(
                fallback, p.mrm_decel_mps2)
        else:
            target = fallback

        alpha, blending = 1.0, False
        out = target
        if self._blend_from is not None:
            alpha = (now_s - self._blend_start_s) / self._blend_s
            if alpha < 1.0 - _TIME_EPS_S:
                blending = True
                out = blend(self._blend_from, target, max(alpha, 0.0), SOURCE_BLEND)
            else:
                self._blend_from = None
                alpha = 1.0
        out = replace(out, stamp_s=fallback.stamp_s) if out.stamp_s != fallback.stamp_s else out
        self._last_output = out

        if mode == MODE_PLANNER:
            monitor = STATE_NAMES.get(self._monitor_state, "none") if self._monitor_state is not None else "none"
            level, msg = LEVEL_OK, f"mode planner (monitor {monitor}" + (
                ")" if p.monitor_required else ", not required)")
            if self._monitor_state == STATE_DEGRADED:
                msg += f"; speed capped at {p.degraded_speed_cap_mps:g} m/s"
        elif any(r.startswith(("planner silent", "monitor silent")) for r in reasons):
            who = "planner silent" if any(r.startswith("planner silent") for r in reasons) else "monitor silent"
            level, msg = LEVEL_WARN, f"{who}: driving on fallback ({'; '.join(reasons)})"
        else:
            level, msg = LEVEL_OK, f"mode {mode} (" + "; ".join(reasons) + ")"
        if blending:
            msg += f"; blending {alpha:.2f}"
        return ArbiterResult(out, mode, blending, alpha, self.transitions, level, msg, planner_age, monitor_age,
                             self._monitor_state)
