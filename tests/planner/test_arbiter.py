"""Unit tests of the trajectory arbiter core (no ROS)."""

import numpy as np
import pytest
from planner_helpers import DT_S, constant_speed_trajectory, straight_route
from tps_planner.arbiter import (
    LEVEL_WARN,
    MODE_FALLBACK,
    MODE_MINIMAL_RISK,
    MODE_PLANNER,
    ArbiterParams,
    TrajectoryArbiter,
)
from tps_planner.trajectory import (
    SOURCE_BLEND,
    SOURCE_FALLBACK,
    SOURCE_MINIMAL_RISK,
    SOURCE_PLANNER,
    STATE_DEGRADED,
    STATE_FALLBACK,
    STATE_MINIMAL_RISK,
    STATE_NOMINAL,
)

WATCHDOG_S = 0.2
BLEND_S = 0.5
ROUTE = straight_route()


def _planner(t: float, y: float = 0.0):
    """A planner candidate 1.5 m left of the fallback's, 8 points at 0.5 s."""
    traj = constant_speed_trajectory(ROUTE + [0.0, y], 50.0, 10.0, t, n=8, source=SOURCE_PLANNER)
    return traj.__class__(**{**traj.__dict__, "t_s": traj.t_s + 0.5})


def _fallback(t: float):
    return constant_speed_trajectory(ROUTE, 50.0, 8.0, t, n=33, step_s=0.25)


@pytest.mark.parametrize("state, expected", [
    (STATE_NOMINAL, MODE_PLANNER),
    (STATE_DEGRADED, MODE_PLANNER),
    (STATE_FALLBACK, MODE_FALLBACK),
    (STATE_MINIMAL_RISK, MODE_MINIMAL_RISK),
])
def test_state_table(state, expected):
    arb = TrajectoryArbiter(ArbiterParams(blend_window_s=0.0))
    arb.on_candidate(_planner(0.0, 1.5), 0.0)
    arb.on_monitor(state, 0.0)
    res = arb.update(_fallback(0.0), 0.0)
    assert res.mode == expected
    expected_source = {MODE_PLANNER: SOURCE_PLANNER, MODE_FALLBACK: SOURCE_FALLBACK,
                       MODE_MINIMAL_RISK: SOURCE_MINIMAL_RISK}[expected]
    assert res.trajectory.source == expected_source
    if expected == MODE_MINIMAL_RISK:
        assert res.trajectory.speed_mps[-1] == pytest.approx(0.0)       # stops
        assert np.all(np.diff(res.trajectory.speed_mps) <= 1e-9)


def test_no_planner_drives_on_fallback_and_says_so():
    arb = TrajectoryArbiter()
    res = arb.update(_fallback(0.0), 0.0)
    assert res.mode == MODE_FALLBACK and res.trajectory.source == SOURCE_FALLBACK
    assert res.level == LEVEL_WARN and res.message.startswith("planner silent: driving on fallback")
    assert res.transitions == 0


def test_blend_is_continuous_and_linear():
    """NOMINAL -> FALLBACK: the first point moves from the planner's path to the fallback's in
    equal steps over the blend window; no step larger than one window share."""
    arb = TrajectoryArbiter(ArbiterParams(blend_window_s=BLEND_S))
    lateral, sources, alphas = [], [], []
    for k in range(12):
        t = k * DT_S
        arb.on_candidate(_planner(t, 1.5), t)
        arb.on_monitor(STATE_NOMINAL if k < 3 else STATE_FALLBACK, t)
        res = arb.update(_fallback(t), t)
        first = res.trajectory.xy[np.argmin(np.abs(res.trajectory.t_s - 1.0))]
        lateral.append(first[1])
        sources.append(res.trajectory.source)
        alphas.append(res.blend_alpha)
    lateral = np.array(lateral)
    assert lateral[0] == pytest.approx(1.5) and lateral[-1] == pytest.approx(0.0)
    steps = np.abs(np.diff(lateral))
    assert steps.max() <= 1.5 * DT_S / BLEND_S + 1e-6
    assert sources[3:8] == [SOURCE_BLEND] * 5 and sources[8] == SOURCE_FALLBACK
    assert np.allclose(np.diff(alphas[3:8]), DT_S / BLEND_S)
    assert arb.transitions == 2          # start-up fallback -> planner, then planner -> fallback


def test_watchdog_switches_at_200ms_sim_time():
    arb = TrajectoryArbiter(ArbiterParams(watchdog_timeout_s=WATCHDOG_S))
    for k in range(5):                     # planner + monitor alive: planner mode
        t = k * DT_S
        arb.on_candidate(_planner(t), t)
        arb.on_monitor(STATE_NOMINAL, t)
        assert arb.update(_fallback(t), t).mode == MODE_PLANNER
    last = 4 * DT_S
    # The planner dies; the monitor keeps saying NOMINAL.
    arb.on_monitor(STATE_NOMINAL, last + 0.1)
    assert arb.update(_fallback(last + 0.1), last + 0.1).mode == MODE_PLANNER      # 100 ms: not yet
    arb.on_monitor(STATE_NOMINAL, last + WATCHDOG_S)
    res = arb.update(_fallback(last + WATCHDOG_S), last + WATCHDOG_S)           # 200 ms: fallback
    assert res.mode == MODE_FALLBACK and res.level == LEVEL_WARN
    assert "planner silent" in res.message
    assert res.trajectory.stamp_s == pytest.approx(last + WATCHDOG_S)


def test_silent_monitor_triggers_watchdog_and_minimal_risk_is_sticky():
    arb = TrajectoryArbiter(ArbiterParams(blend_window_s=0.0))
    arb.on_candidate(_planner(0.0), 0.0)
    arb.on_monitor(STATE_NOMINAL, 0.0)
    assert arb.update(_fallback(0.0), 0.0).mode == MODE_PLANNER
    arb.on_candidate(_planner(0.3), 0.3)
    res = arb.update(_fallback(0.3), 0.3)
    assert res.mode == MODE_FALLBACK and "monitor silent" in res.message
    arb.on_monitor(STATE_MINIMAL_RISK, 0.4)
    arb.on_candidate(_planner(0.4), 0.4)
    assert arb.update(_fallback(0.4), 0.4).mode == MODE_MINIMAL_RISK
    arb.on_candidate(_planner(1.4), 1.4)
    assert arb.update(_fallback(1.4), 1.4).mode == MODE_MINIMAL_RISK             # monitor silent since


def test_stale_candidate_is_retimed_to_the_cycle_stamp():
    arb = TrajectoryArbiter()
    arb.on_candidate(_planner(0.0), 0.0)
    arb.on_monitor(STATE_NOMINAL, 0.1)
    res = arb.update(_fallback(0.1), 0.1)
    assert res.mode == MODE_PLANNER
    assert res.trajectory.stamp_s == pytest.approx(0.1)
    # 0.1 s later along a 10 m/s plan: the point at t=0.5 is where the old plan was at 0.6 s.
    assert res.trajectory.xy[0, 0] == pytest.approx(_planner(0.0).xy[0, 0] + 1.0, abs=1e-6)


def test_invalid_inputs_are_rejected():
    arb = TrajectoryArbiter()
    bad = _planner(0.0)
    bad.xy[2, 0] = np.nan
    assert "NaN" in arb.on_candidate(bad, 0.0)
    assert arb.on_monitor(9, 0.0) is not None
    empty = _fallback(0.0).__class__(0.0, np.zeros(0), np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0))
    res = arb.update(empty, 0.0)
    assert res.trajectory is None and "unusable" in res.message


def test_degraded_caps_the_candidate_speed_and_nominal_does_not():
    """DEGRADED keeps the planner but caps its speed, easing down to the cap (no step); NOMINAL and
    FALLBACK are unaffected by the cap."""
    params = ArbiterParams(blend_window_s=0.0, degraded_speed_cap_mps=4.0, degraded_decel_mps2=2.0)
    arb = TrajectoryArbiter(params)
    cand = constant_speed_trajectory(ROUTE, 50.0, 10.0, 0.0, n=9, source=SOURCE_PLANNER)
    fb = _fallback(0.0)
    arb.on_candidate(cand, 0.0)
    arb.on_monitor(STATE_NOMINAL, 0.0)
    out = arb.update(fb, 0.0).trajectory
    assert np.allclose(out.speed_mps, 10.0)
    arb.on_monitor(STATE_DEGRADED, 0.0)
    res = arb.update(fb, 0.0)
    v = res.trajectory.speed_mps
    assert res.mode == MODE_PLANNER and "speed capped" in res.message
    assert v[0] == pytest.approx(10.0) and np.all(np.diff(v) <= 1e-9) and v[-1] == pytest.approx(4.0)
    expected = np.maximum(4.0, 10.0 - 2.0 * (cand.t_s - cand.t_s[0]))
    assert np.allclose(v, expected)
    # positions follow the new speeds along the same path: less distance covered than planned
    assert res.trajectory.xy[-1, 0] < cand.xy[-1, 0] - 1.0
    assert np.allclose(res.trajectory.xy[:, 1], cand.xy[:, 1])


def test_handing_back_to_the_planner_blends_over_the_longer_handback_window():
    """FALLBACK -> NOMINAL blends over handback_blend_s (the planner's path 1.5 m beside the
    fallback's comes in over 1.5 s), NOMINAL -> FALLBACK over blend_window_s; 0 = the short one."""
    def run(params: ArbiterParams) -> tuple[list, list]:
        arb = TrajectoryArbiter(params)
        lateral, alphas = [], []
        for k in range(40):
            t = k * DT_S
            arb.on_candidate(_planner(t, 1.5), t)
            arb.on_monitor(STATE_FALLBACK if k < 5 else STATE_NOMINAL, t)
            res = arb.update(_fallback(t), t)
            lateral.append(res.trajectory.xy[np.argmin(np.abs(res.trajectory.t_s - 1.0))][1])
            alphas.append(res.blend_alpha)
        return lateral, alphas

    lateral, alphas = run(ArbiterParams(blend_window_s=BLEND_S, handback_blend_s=3 * BLEND_S))
    assert lateral[4] == pytest.approx(0.0) and lateral[-1] == pytest.approx(1.5)
    n = int(round(3 * BLEND_S / DT_S))
    assert np.allclose(np.diff(alphas[5:5 + n]), DT_S / (3 * BLEND_S))
    assert np.abs(np.diff(lateral)).max() <= 1.5 * DT_S / (3 * BLEND_S) + 1e-6
    lateral, alphas = run(ArbiterParams(blend_window_s=BLEND_S, handback_blend_s=0.0))
    assert np.allclose(np.diff(alphas[5:5 + int(round(BLEND_S / DT_S))]), DT_S / BLEND_S)
