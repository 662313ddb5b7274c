"""trajectory_arbiter: selects the planner candidate or the fallback trajectory per cycle.

Inputs: ``~/input/candidate_trajectory`` and ``~/input/fallback_trajectory``
(tps_msgs/PlannedTrajectory), ``~/input/monitor_status`` (tps_msgs/MonitorStatus), ``/clock``.
Output: ``~/output/trajectory`` (tps_msgs/PlannedTrajectory, stamped with the fallback's stamp),
``/diagnostics`` (mode, transitions, silence of planner and monitor). Triggered by the fallback
trajectory; the watchdog runs on sim time.

With ``candidate_wait_s`` > 0 (the synchronous closed loop with the planner,
config/graph/sim_planner.yaml) a fallback trajectory whose stamp the planner has not answered yet
waits for the candidate of that stamp, at most ``candidate_wait_s`` of wall time: the planner joins
the lockstep chain, so the candidate of frame k exists before the controller acts on frame k. A
wait that runs out marks the planner as not answering (no waiting, the watchdog decides) until
its next candidate arrives. ``monitor_wait_s`` > 0 (the full stack, config/graph/sim_stack.yaml) does
the same for the monitor: the fallback of stamp k also waits for the MonitorStatus of stamp k, so the
state that selects the source for frame k is the one computed from frame k. Until the planner's
first candidate (the monitor's first status) has arrived, and while a publisher of it is matched,
the wait is ``startup_wait_s`` instead:
the lockstep bridge holds step 0 up to 20 s wall while the model nodes load and answer it, and a
shorter wait let step 0 go to the fallback on a slow host while the planner's first frame was on its
way (one of two identical full-stack episodes in a CI run: one fallback step and two more mode
transitions).
"""

from __future__ import annotations

import math
import sys
import time

from diagnostic_msgs.msg import DiagnosticArray
from rclpy.clock import Clock as WallClock
from rclpy.clock import ClockType
from rclpy.node import Node
from rosgraph_msgs.msg import Clock
from tps_common import diagnostics as diag
from tps_common.conversions import seconds_to_time, time_to_seconds
from tps_common.node import load_params, run_node
from tps_common.qos import CLOCK_QOS, DIAGNOSTICS_QOS, SELECTED_TRAJECTORY_QOS, TRAJECTORY_QOS
from tps_msgs.msg import MonitorStatus, PlannedTrajectory

from tps_planner import conversions as conv
from tps_planner.arbiter import ArbiterParams, ArbiterResult, TrajectoryArbiter
from tps_planner.trajectory import SOURCE_NAMES, STATE_NAMES

NODE_NAME = "trajectory_arbiter"
CANDIDATE_WAIT_POLL_S = 0.01    # wall period of the check on a fallback waiting for its candidate
STAMP_EPS_S = 1e-6
# How far ahead of this node's /clock a received message's stamp is taken as its receipt time (a
# lagging /clock), never more: a malformed future stamp must not defeat the watchdog [s].
CLOCK_LAG_TOLERANCE_S = 0.3


class TrajectoryArbiterNode(Node):
    """Thin node around :class:`tps_planner.arbiter.TrajectoryArbiter`."""

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("node_name", NODE_NAME)
        super().__init__(**kwargs)
        self.core_params, self.cfg = load_params(self, "trajectory_arbiter", ArbiterParams)
        self.arbiter = TrajectoryArbiter(self.core_params)
        self.clock_s = -math.inf
        self.pub_traj = self.create_publisher(PlannedTrajectory, "~/output/trajectory", SELECTED_TRAJECTORY_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self.sub_candidate = self.create_subscription(PlannedTrajectory, "~/input/candidate_trajectory",
                                                      self._on_candidate, TRAJECTORY_QOS)
        self.create_subscription(PlannedTrajectory, "~/input/fallback_trajectory", self._on_fallback,
                                 TRAJECTORY_QOS)
        self.sub_monitor = self.create_subscription(MonitorStatus, "~/input/monitor_status", self._on_monitor,
                                                    TRAJECTORY_QOS)
        if self.get_parameter("use_sim_time").value:
            self.create_subscription(Clock, "/clock", self._on_clock, CLOCK_QOS)
        self._parked: list[tuple[PlannedTrajectory, float]] = []   # fallbacks waiting for their candidate
        self._newest_candidate_s = -math.inf
        self._planner_answering = True
        self._newest_monitor_s = -math.inf
        self._monitor_answering = True
        if self.cfg["candidate_wait_s"] > 0.0 or self.cfg["monitor_wait_s"] > 0.0:
            self.create_timer(CANDIDATE_WAIT_POLL_S, self._release_parked,
                              clock=WallClock(clock_type=ClockType.STEADY_TIME))

    def _now_s(self) -> float:
        return max(self.get_clock().now().nanoseconds * 1e-9, self.clock_s)

    def _on_clock(self, msg: Clock) -> None:
        self.clock_s = max(self.clock_s, time_to_seconds(msg.clock))

    def _received_s(self, stamp_s: float) -> float:
        """Sim time a message of ``stamp_s`` was received: the clock, but never before its stamp.
        A message computed from the data of stamp k exists only at sim time >= k; a /clock that
        reaches this node after the message (DDS orders no two topics) made a fresh candidate look
        0.2 s old -- "planner silent" -- in 1 of ~5 lockstep replays of the full stack. At most
        ``CLOCK_LAG_TOLERANCE_S`` ahead of the clock: a stamp far in the future (malformed) must not
        keep a dead planner "fresh" past the watchdog."""
        now = self._now_s()
        return max(now, min(stamp_s, now + CLOCK_LAG_TOLERANCE_S)) if math.isfinite(stamp_s) else now

    def _on_candidate(self, msg: PlannedTrajectory) -> None:
        stamp = time_to_seconds(msg.header.stamp)
        reason = self.arbiter.on_candidate(conv.trajectory_from_msg(msg), self._received_s(stamp))
        if reason is not None:
            self._diag("candidate", 2, f"planner candidate rejected: {reason}",
                       {"rejected_candidates": self.arbiter.rejected_candidates})
        # Even a rejected candidate answers its stamp: the fallback of that stamp waits no longer.
        if math.isfinite(stamp):
            self._newest_candidate_s = max(self._newest_candidate_s, stamp)
        self._planner_answering = True
        self._release_parked()

    def _waits_for_candidate(self, stamp_s: float) -> bool:
        return (self.cfg["candidate_wait_s"] > 0.0 and self._planner_answering
                and self._newest_candidate_s < stamp_s - STAMP_EPS_S)

    def _waits_for_monitor(self, stamp_s: float) -> bool:
        return (self.cfg["monitor_wait_s"] > 0.0 and self._monitor_answering
                and self._newest_monitor_s < stamp_s - STAMP_EPS_S)

    def _wait_limit_s(self, key: str, newest_s: float, sub) -> float:
        """Wall time a fallback waits for that input: ``startup_wait_s`` before its first message
        while a publisher of it is matched (a node loading, a first inference), else ``key``'s wait
        (also in a graph without that node, e.g. a replay of perception + fallback + arbiter)."""
        wait_s = self.cfg[key]
        if newest_s == -math.inf and sub.get_publisher_count() > 0:
            return max(wait_s, self.cfg["startup_wait_s"])
        return wait_s

    def _release_parked(self) -> None:
        """Select the parked fallbacks whose candidate and monitor status arrived or whose wait ran
        out (in order)."""
        while self._parked:
            msg, since = self._parked[0]
            stamp = time_to_seconds(msg.header.stamp)
            waited = time.monotonic() - since
            missing = [(key, wait_s, sub) for key, wait_s, waits, sub in (
                ("candidate", self._wait_limit_s("candidate_wait_s", self._newest_candidate_s, self.sub_candidate),
                 self._waits_for_candidate(stamp), self.sub_candidate),
                ("monitor", self._wait_limit_s("monitor_wait_s", self._newest_monitor_s, self.sub_monitor),
                 self._waits_for_monitor(stamp), self.sub_monitor)) if waits]
            if missing:
                if all(waited <= wait_s for _, wait_s, _ in missing) and len(self._parked) == 1:
                    return
                for key, wait_s, sub in missing:
                    # Not answering until its next message: its wait ran out, or the next fallback
                    # came first with no publisher of that input matched (no such node in this
                    # graph). Without the second rule each fallback of a graph without a planner
                    # waited out its successor's arrival, the last one past the end of a replay.
                    if waited > wait_s or sub.get_publisher_count() == 0:
                        if key == "candidate":
                            self._planner_answering = False
                        else:
                            self._monitor_answering = False
            self._parked.pop(0)
            self._select(msg, waited)

    def _on_monitor(self, msg: MonitorStatus) -> None:
        state, reasons = conv.monitor_state_of(msg)
        stamp = time_to_seconds(msg.header.stamp)
        reason = self.arbiter.on_monitor(state, self._received_s(stamp), reasons)
        if reason is not None:
            self._diag("monitor", 2, f"monitor status rejected: {reason}", {})
        # Even a rejected status answers its stamp: the fallback of that stamp waits no longer.
        if math.isfinite(stamp):
            self._newest_monitor_s = max(self._newest_monitor_s, stamp)
        self._monitor_answering = True
        self._release_parked()

    def _on_fallback(self, msg: PlannedTrajectory) -> None:
        stamp = time_to_seconds(msg.header.stamp)
        if self._parked or (math.isfinite(stamp) and (self._waits_for_candidate(stamp)
                                                      or self._waits_for_monitor(stamp))):
            self._parked.append((msg, time.monotonic()))
            self._release_parked()
            return
        self._select(msg, 0.0)

    def _select(self, msg: PlannedTrajectory, waited_s: float) -> None:
        t0 = time.perf_counter()
        fb = conv.trajectory_from_msg(msg)
        now = max(self._now_s(), fb.stamp_s)
        res = self.arbiter.update(fb, now)
        if res.trajectory is not None:
            self.pub_traj.publish(conv.trajectory_to_msg(res.trajectory))
        self._report(res, fb.stamp_s, (time.perf_counter() - t0) * 1e3, waited_s)

    def _report(self, res: ArbiterResult, stamp_s: float, ms: float, waited_s: float = 0.0) -> None:
        values = {
            "mode": res.mode,
            "output_source": SOURCE_NAMES.get(res.trajectory.source, "?") if res.trajectory is not None else "none",
            "mode_transitions": res.transitions, "blending": res.blending, "blend_alpha": res.blend_alpha,
            "planner_age_ms": res.planner_age_s * 1e3, "monitor_age_ms": res.monitor_age_s * 1e3,
            "monitor_state": STATE_NAMES.get(res.monitor_state, "none"), "stamp_s": stamp_s,
            "candidate_wait_ms": waited_s * 1e3, "planner_answering": self._planner_answering,
            "monitor_answering": self._monitor_answering,
        }
        name = self.get_name()
        statuses = [
            diag.status(f"{name}: mode", res.level, res.message, values),
            diag.processing_time_status(name, ms, self.cfg["processing_budget_ms"],
                                        self.cfg["processing_error_budget_ms"]),
        ]
        self.pub_diag.publish(diag.array(seconds_to_time(stamp_s), statuses))

    def _diag(self, aspect: str, level: int, text: str, values: dict) -> None:
        self.pub_diag.publish(diag.array(self.get_clock().now().to_msg(),
                                         [diag.status(f"{self.get_name()}: {aspect}", level, text, values)]))
        self.get_logger().error(text, throttle_duration_sec=2.0)


NODE_CLASS = TrajectoryArbiterNode


def main(args=None) -> None:
    """Console script ``trajectory_arbiter``."""
    sys.exit(run_node(NODE_CLASS, "trajectory_arbiter", args))


if __name__ == "__main__":
    main()
