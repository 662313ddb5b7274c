"""The bridge core's step-0 hold (``hold_start``, the node's ``wait_for_nodes``): while held,
step 0 is re-published and the first control stays pending; it is applied once the hold is lifted,
not before, however long that takes (the node bounds its stages); no step timeout is counted
meanwhile."""

from __future__ import annotations

from test_bridge_core import TIMEOUT_S, control, make_core


def test_held_step_zero_keeps_the_first_control_until_released():
    core = make_core()
    try:
        f0 = core.start(0.0)
        core.hold_start(True)
        assert core.submit_control(control(f0, throttle=0.4), 0.1).status == "accepted"
        assert core.poll(0.1) is None, "held: the pending control must not advance step 0"
        again = core.poll(0.1 + TIMEOUT_S + 0.01)
        assert again is not None and again.republished and again.step == 0
        assert core.submit_control(control(f0, throttle=0.9), 0.7).status == "duplicate"
        assert core.stats.step_timeouts == 0
        core.hold_start(False)
        f1 = core.poll(0.8)
        assert f1 is not None and f1.step == 1 and f1.control["throttle"] == 0.4
    finally:
        core.close()


def test_hold_outlasts_wait_for_controller_s_until_released():
    """The hold is the node's: with the core's own wait_for_controller_s bound it lapsed while a
    planner loading under load had not answered step 0, and the loop ran ahead on the fallback."""
    core = make_core(wait_for_controller_s=1.0)
    try:
        f0 = core.start(0.0)
        core.hold_start(True)
        core.submit_control(control(f0, throttle=0.3), 0.1)
        assert core.poll(0.3) is None
        assert core.poll(TIMEOUT_S + 0.01).republished
        late = core.poll(5.0)
        assert late is not None and late.republished and late.step == 0, "held step 0 advanced on its own"
        core.hold_start(False)
        f1 = core.poll(5.01)
        assert f1 is not None and f1.step == 1 and f1.control["throttle"] == 0.3
        assert core.stats.step_timeouts == 0
    finally:
        core.close()


def test_not_held_by_default():
    core = make_core()
    try:
        f0 = core.start(0.0)
        core.submit_control(control(f0), 0.1)
        f1 = core.poll(0.1)
        assert f1 is not None and f1.step == 1
    finally:
        core.close()
