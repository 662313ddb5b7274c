"""The bridge core without DDS: the synchronous step protocol, timeouts, faults, episode log,
parameter errors and control sanitising (real SUMO world, lidar off where not needed)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sim_bridge_helpers import SCENARIO, SEED
from tps_common.levels import ERROR, WARN
from tps_common.params import ParameterError, load_schema, validate
from tps_sim.bridge import BridgeParams, SimBridge, sanitize_control
from tps_sim.episode_log import load_episode_log

TIMEOUT_S = 0.5
STEPS = 5


def make_core(**overrides) -> SimBridge:
    values = dict(scenario=SCENARIO, seed=SEED, duration_s=STEPS * 0.1, lidar_enabled=False,
                  sync_timeout_s=TIMEOUT_S, wait_for_controller_s=2.0)
    values.update(overrides)
    return SimBridge(BridgeParams(**values))


def control(frame, throttle=0.5, steer=0.0, brake=0.0, dt_ns=0) -> dict:
    return {"stamp_ns": int(round(frame.stamp_s * 1e9)) + dt_ns, "throttle": throttle,
            "steer": steer, "brake": brake}


def test_sync_protocol_stale_duplicate_timeout_and_log(tmp_path):
    core = make_core(episode_log=str(tmp_path / "log.npz"))
    try:
        f0 = core.start(0.0)
        assert f0.step == 0 and core.poll(0.1) is None, "must wait for a control"
        # while no control ever arrived, step 0 is re-published, no timeout counted
        again = core.poll(0.0 + TIMEOUT_S + 0.01)
        assert again is not None and again.republished and again.step == 0
        assert core.stats.step_timeouts == 0
        assert core.submit_control(control(f0, dt_ns=-1), 1.0).status == "stale"
        assert core.submit_control(control(f0), 1.0).status == "accepted"
        assert core.submit_control(control(f0, throttle=0.1), 1.0).status == "duplicate"
        f1 = core.poll(1.0)
        assert f1.step == 1 and f1.control["throttle"] == 0.5
        # a control stamped later than the current step is also accepted (stamp >= t_k)
        assert core.submit_control(control(f1, throttle=0.7, dt_ns=5), 1.1).status == "accepted"
        f2 = core.poll(1.1)
        # no control for step 2: after the timeout, the previous control is applied and counted
        assert core.poll(1.1 + TIMEOUT_S / 2) is None
        f3 = core.poll(1.1 + TIMEOUT_S + 0.01)
        assert f3.step == 3 and "step_timeout" in f3.events
        assert f3.control["throttle"] == pytest.approx(0.7)
        assert core.stats.step_timeouts == 1
        now = 2.0
        while not core.done:
            now += TIMEOUT_S + 0.01
            f = core.poll(now)
            assert f is not None
        assert core.stats.end_reason == "duration"
        assert f2.step == 2
    finally:
        path = core.close()
    log = load_episode_log(path)
    assert len(log["t_s"]) == STEPS + 1
    assert log["step_timeout"].tolist() == [False, False, False, True] + [True] * (STEPS - 3)
    assert log["control_received"].tolist()[:4] == [False, True, True, False]
    assert log["meta"]["step_timeouts"] == STEPS - 2
    assert log["events"][3] == ["step_timeout"]
    assert log["agent_offsets"][-1] == len(log["agent_id"]) == len(log["agent_box"])
    assert log["collision_offsets"][-1] == len(log["collision_ids"])
    assert log["ego"].shape == (STEPS + 1, 12) and log["route"].shape[1] == 2


def test_json_gz_log_matches_npz(tmp_path):
    logs = {}
    for suffix in ("npz", "json.gz"):
        core = make_core(ego_driver="expert", synchronous=True, step_period_s=0.0,
                         episode_log=str(tmp_path / f"log.{suffix}"))
        core.start(0.0)
        while not core.done:
            core.poll(1.0)
        logs[suffix] = load_episode_log(core.close())
    a, b = logs["npz"], logs["json.gz"]
    for key in ("t_s", "ego", "agent_id", "agent_box", "static_box", "control", "route"):
        np.testing.assert_allclose(np.asarray(a[key], float), np.asarray(b[key], float), err_msg=key)
    assert np.isnan(b["e2e_latency_s"]).all()


def test_expert_mode_ignores_controls_and_steps_on_period():
    core = make_core(ego_driver="expert", step_period_s=0.1)
    try:
        f0 = core.start(0.0)
        assert core.submit_control(control(f0), 0.01).status == "ignored"
        assert core.poll(0.05) is None
        assert core.poll(0.1).step == 1
    finally:
        core.close()


def test_faults_blackout_and_drop_events():
    faults = '{"lidar_blackout": {"onset_s": 0.2, "duration_s": 0.2}}'
    core = make_core(lidar_enabled=True, lidar_beams=8, lidar_azimuth_steps=64, faults=faults,
                     ego_driver="expert", step_period_s=0.0)
    try:
        frames = [core.start(0.0)]
        while not core.done:
            frames.append(core.poll(1.0))
    finally:
        core.close()
    for f in frames:
        on = 0.2 - 1e-9 <= f.t_s < 0.4 - 1e-9
        assert ("fault:lidar_blackout" in f.events) == on, (f.t_s, f.events)
        assert (len(f.lidar_points) == 0) == on
        assert len(f.lidar_hit_id) == len(f.lidar_points)


def test_sensor_delay_keeps_stamps():
    faults = {"sensor_delay": {"onset_s": 0.0, "duration_s": 10.0, "steps": 2}}
    import json

    core = make_core(lidar_enabled=True, lidar_beams=4, lidar_azimuth_steps=32,
                     faults=json.dumps(faults), ego_driver="expert", step_period_s=0.0)
    try:
        frames = [core.start(0.0)]
        while not core.done:
            frames.append(core.poll(1.0))
    finally:
        core.close()
    assert frames[0].lidar_points is None and frames[1].lidar_points is None
    for f in frames[2:]:
        assert f.lidar_stamp_s == pytest.approx(f.stamp_s - 0.2)


@pytest.mark.parametrize("name,value,needle", [
    ("faults", '{"no_such_fault": {}}', "no_such_fault"),
    ("faults", "/nonexistent/faults.yaml", "faults"),
    ("obstacles", "[1, 2]", "obstacles"),
    ("scenario", "atlantis", "scenario"),
    ("instruction", "take_exit_9", "parameter 'instruction' = 'take_exit_9' is not an instruction of scenario"),
])
def test_bad_parameters_name_the_parameter(name, value, needle):
    values = validate({name: value}, load_schema("sim_bridge"))
    with pytest.raises(ParameterError, match=needle):
        BridgeParams.from_values(values)


@pytest.mark.parametrize("name,value", [("density", -1.0), ("lidar_beams", 0),
                                        ("sync_timeout_s", 0.0), ("clutter", "extreme")])
def test_schema_rejects(name, value):
    with pytest.raises(ParameterError, match=name):
        validate({name: value}, load_schema("sim_bridge"))


def test_sanitize_control():
    ok, problems = sanitize_control({"throttle": 0.5, "steer": -0.2, "brake": 0.0})
    assert ok["throttle"] == 0.5 and not problems
    clamped, problems = sanitize_control({"throttle": 1.5, "steer": -3.0, "brake": -0.1})
    assert (clamped["throttle"], clamped["steer"], clamped["brake"]) == (1.0, -1.0, 0.0)
    assert [lv for lv, _ in problems] == [WARN] * 3
    assert "throttle" in problems[0][1] and "steer" in problems[1][1]
    for field in ("throttle", "steer", "brake"):
        for bad in (math.nan, math.inf, -math.inf):
            rejected, problems = sanitize_control({field: bad})
            assert rejected is None
            assert problems[0][0] == ERROR and field in problems[0][1]


def test_free_running_applies_newest_control():
    core = make_core(synchronous=False, step_period_s=0.1)
    try:
        f0 = core.start(0.0)
        assert core.poll(0.05) is None, "steps on the wall period only"
        f1 = core.poll(0.1)
        assert f1.control["throttle"] == 0.0, "no control yet: neutral"
        # an old stamp is fine when free-running; the newest control wins
        assert core.submit_control(control(f0, throttle=0.2), 0.12).status == "latched"
        assert core.submit_control(control(f0, throttle=0.4), 0.13).status == "latched"
        f2 = core.poll(0.21)
        assert f2.control["throttle"] == pytest.approx(0.4)
        f3 = core.poll(0.32)
        assert f3.control["throttle"] == pytest.approx(0.4), "the last control is held"
        assert core.stats.step_timeouts == 0
    finally:
        core.close()
    rows = core.log.rows
    assert [r["control_received"] for r in rows] == [False, False, True, False]


def test_clock_jump_offsets_stamps_and_sync_uses_published_stamp():
    faults = '{"clock_jump": {"onset_s": 0.2, "offset_s": 5.0}}'
    core = make_core(faults=faults)
    try:
        frame = core.start(0.0)
        now = 0.0
        frames = [frame]
        while not core.done:
            now += 0.01
            verdict = core.submit_control(control(frame), now)
            assert verdict.status == "accepted", (frame.step, verdict)
            frame = core.poll(now)
            frames.append(frame)
        assert core.stats.step_timeouts == 0
    finally:
        core.close()
    for f in frames:
        jumped = f.t_s >= 0.2 - 1e-9
        assert f.stamp_s == pytest.approx(f.t_s + (5.0 if jumped else 0.0))
        assert ("fault:clock_jump" in f.events) == jumped


def test_message_drop_drops_lidar():
    faults = '{"message_drop": {"onset_s": 0.0, "duration_s": 100.0, "lidar_probability": 1.0, "camera_probability": 0.0}}'
    core = make_core(lidar_enabled=True, lidar_beams=4, lidar_azimuth_steps=32, faults=faults,
                     ego_driver="expert", step_period_s=0.0)
    try:
        frames = [core.start(0.0)]
        while not core.done:
            frames.append(core.poll(1.0))
    finally:
        core.close()
    assert all(f.lidar_points is None for f in frames)
    assert all("fault:message_drop" in f.events for f in frames)


def test_sensor_delay_a_control_stamped_with_the_delayed_scan_answers_the_step():
    """With a sensor-delay fault the bridge publishes an older scan, and the stack's control carries
    the stamp of the data it planned from: that control answers the step (no step timeout), while
    one older than the published scan is still stale."""
    core = make_core(lidar_enabled=True, duration_s=1.0,
                     faults='{"sensor_delay": {"onset_s": 0.2, "steps": 3}}')
    try:
        frame = core.start(0.0)
        now, timeouts = 0.0, 0
        for _ in range(8):
            if frame.lidar_points is not None:
                lidar_ns = int(round(frame.lidar_stamp_s * 1e9))
                if frame.lidar_stamp_s < frame.stamp_s - 1e-9:
                    assert core.submit_control({"stamp_ns": lidar_ns - 1, "throttle": 0.3}, now).status == "stale"
                assert core.submit_control({"stamp_ns": lidar_ns, "throttle": 0.3}, now).status == "accepted"
            else:
                # nothing published this step (the delay queue is filling): the controller brakes
                # on the clock, stamped with the step
                assert core.submit_control(control(frame, throttle=0.0, brake=0.3), now).status == "accepted"
            now += 0.01
            frame = core.poll(now)
            assert frame is not None
            timeouts += "step_timeout" in frame.events
        assert timeouts == 0
        assert core.stats.stale_controls >= 1    # the older-than-published controls above
    finally:
        core.close()


def test_the_instruction_parameter_picks_the_episode_instruction_the_bridge_publishes():
    from tps_sim.world.config import CMD_CHANGE_LANE_LEFT

    core = make_core(scenario="highway", instruction="change_lane_left")
    plain = make_core(scenario="highway")
    try:
        assert (core.instruction.text, core.instruction.command) == ("change lane left", CMD_CHANGE_LANE_LEFT)
        assert plain.instruction.text == "keep lane"
    finally:
        core.close()
        plain.close()
