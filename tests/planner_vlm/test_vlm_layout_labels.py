"""The VLM planner's numeric inputs and ground-truth labels (numpy only, fast)."""

from __future__ import annotations

import numpy as np
import pytest
from tps_planner.vlm import labels, layout
from tps_planner.vlm.layout import PlannerConfig


def test_config_roundtrip_and_unknown_key():
    cfg = PlannerConfig(max_agents=12, camera_grid=(1, 3), use_camera=False)
    assert PlannerConfig.from_dict(cfg.to_dict()) == cfg
    assert cfg.camera_tokens == 0
    with pytest.raises(ValueError, match="bogus"):
        PlannerConfig.from_dict({**cfg.to_dict(), "bogus": 1})


def test_route_frame_offset_heading_and_points():
    route = np.array([[0.0, 0.0], [100.0, 0.0]])
    s, lat, head = layout.route_frame(route, np.array([10.0, 1.5, 0.1]))
    assert s == pytest.approx(10.0) and lat == pytest.approx(1.5) and head == pytest.approx(0.1)
    _, lat, _ = layout.route_frame(route, np.array([10.0, -2.0, 0.0]))
    assert lat == pytest.approx(-2.0)
    # facing along +y at (10, 0): the route's points ahead (+x in map) are to the ego's right (-y)
    pts = layout.route_points_ahead(route, np.array([10.0, 0.0, np.pi / 2]), 3, 8.0)
    np.testing.assert_allclose(pts, [[0, -8], [0, -16], [0, -24]], atol=1e-9)
    # past the end the last point repeats
    pts = layout.route_points_ahead(route, np.array([90.0, 0.0, 0.0]), 3, 8.0)
    np.testing.assert_allclose(pts[:, 0], [8.0, 10.0, 10.0])


def test_ego_features_size_flags_and_bad_input():
    route = np.array([[0.0, 0.0], [100.0, 0.0]])
    f = layout.ego_features(10.0, -1.0, 0.05, route, np.array([5.0, 0.0, 0.0]), 30.0, 12.0)
    assert f.shape == (layout.ego_dim(8),) and f.dtype == np.float32
    assert f[-4] == 1.0 and f[-3] == pytest.approx(30.0 / layout.POS_SCALE_M) and f[-2] == 1.0
    g = layout.ego_features(10.0, -1.0, 0.05, route, np.array([5.0, 0.0, 0.0]), None, -1.0)
    assert g[-4] == 0.0 and g[-3] == 0.0 and g[-2] == 0.0 and g[-1] == 0.0
    with pytest.raises(ValueError, match="speed_mps"):
        layout.ego_features(float("nan"), 0.0, 0.0, route, np.zeros(3), None, -1.0)


def test_acceleration_slot_follows_the_config_everywhere_the_inputs_are_built():
    """ego_accel_input False: the acceleration the ego token carries is 0 in frame_inputs (node, open
    loop, export) and in the trainer's conversion, whatever the odometry says; a config saved before
    the field existed reads the measured acceleration (the checkpoints trained with it)."""
    from tps_planner.vlm.inputs import frame_inputs

    route = np.array([[0.0, 0.0], [200.0, 0.0]])
    kw = dict(speed_mps=20.0, accel_mps2=-4.5, yaw_rate_rps=0.0, route_xy=route, pose=np.zeros(3),
              stop_line_m=None, target_speed_mps=25.0, tok_code=np.zeros(0, int), tok_geom=np.zeros((0, 7)),
              tok_qerr=np.zeros(0))
    measured = frame_inputs(PlannerConfig(), **kw)["ego"]
    zeroed = frame_inputs(PlannerConfig(ego_accel_input=False), **kw)["ego"]
    assert measured[1] == pytest.approx(-4.5 / 3.0) and zeroed[1] == 0.0
    np.testing.assert_array_equal(np.delete(measured, 1), np.delete(zeroed, 1))   # nothing else changes
    old = {k: v for k, v in PlannerConfig().to_dict().items() if k != "ego_accel_input"}
    assert PlannerConfig.from_dict(old).ego_accel_input is True
    assert layout.ego_accel_input(PlannerConfig(ego_accel_input=False), -4.5) == 0.0


def test_agent_features_and_selection():
    geom = np.array([[30.0, 0.0, 0.0, 4.5, 1.8, 10.0, 0.0], [5.0, 2.0, 1.0, 4.5, 1.8, 0.0, 0.0]], np.float32)
    f = layout.agent_features(geom, np.array([0.1, 0.2]))
    assert f.shape == (2, layout.AGENT_DIM)
    assert f[0, 0] == pytest.approx(30.0 / layout.POS_SCALE_M) and f[0, 6] == pytest.approx(0.5)
    np.testing.assert_array_equal(layout.select_agents(geom, 1), [1])
    bad = geom.copy()
    bad[1, 5] = np.inf
    with pytest.raises(ValueError, match="row 1"):
        layout.agent_features(bad, np.zeros(2))
    with pytest.raises(ValueError, match=r"\(N, 7\)"):
        layout.agent_features(geom[:, :6], np.zeros(2))


def test_intent_to_msg_keeps_message_values():
    for i in range(layout.MSG_INTENT_MAX + 1):
        assert layout.intent_to_msg(i) == i
    assert layout.intent_to_msg(layout.INTENT_BRAKING) == layout.INTENT_UNKNOWN


def _box(x=10.0, y=0.0, yaw=0.0, v=10.0):
    return np.array([x, y, 0.8, 4.5, 1.8, 1.6, yaw, v * np.cos(yaw), v * np.sin(yaw)], np.float32)


def _line(p0, step, n=6):
    return np.array([p0 + step * (k + 1) for k in range(n)], np.float64)


@pytest.mark.parametrize("case, expected", [
    ("keep", layout.INTENT_KEEP_LANE), ("stopped", layout.INTENT_STOPPED), ("left_turn", layout.INTENT_TURN_LEFT),
    ("change_right", layout.INTENT_CHANGE_RIGHT), ("braking", layout.INTENT_BRAKING),
    ("ped_crossing", layout.INTENT_CROSSING), ("no_future", layout.INTENT_UNKNOWN)])
def test_intent_rules(case, expected):
    valid = np.ones(6, bool)
    cls = 1
    box = _box()
    if case == "keep":
        fut = _line(np.array([10.0, 0.0]), np.array([5.0, 0.0]))
    elif case == "stopped":
        box = _box(v=0.0)
        fut = np.tile([10.0, 0.0], (6, 1))
    elif case == "left_turn":   # quarter circle of radius 10 m to the left
        ang = np.linspace(np.pi / 12, np.pi / 2, 6)
        fut = np.stack([10.0 + 10.0 * np.sin(ang), 10.0 - 10.0 * np.cos(ang)], 1)
    elif case == "change_right":   # 3.5 m to the right, heading restored
        x = 10.0 + 5.0 * np.arange(1, 7)
        fut = np.stack([x, -3.5 * np.clip(np.arange(1, 7) / 4.0, 0, 1)], 1)
    elif case == "braking":   # 10 m/s -> ~1 m/s in 3 s
        steps = np.array([4.5, 3.6, 2.7, 1.8, 1.0, 0.5])
        fut = np.stack([10.0 + np.cumsum(steps), np.zeros(6)], 1)
    elif case == "ped_crossing":
        cls, box = labels.CLASS_PEDESTRIAN, _box(yaw=np.pi / 2, v=1.4)
        fut = _line(np.array([10.0, 0.0]), np.array([0.0, 0.7]))
    else:
        fut, valid = np.zeros((6, 2)), np.zeros(6, bool)
    assert labels.intent_label(box, cls, fut, valid) == expected


def test_lead_relevance_and_light():
    boxes = np.stack([_box(30.0, 0.3), _box(15.0, 3.5), _box(-10.0, 0.0), _box(50.0, 0.0)])
    path = np.stack([np.arange(1, 9) * 5.0, np.zeros(8)], 1)
    assert labels.lead_index(boxes, path) == 0
    assert labels.lead_index(boxes[1:3], path) == -1
    fut = np.stack([_line(b[:2], np.array([5.0, 0.0])) for b in boxes])
    ego = _line(np.array([0.0, 0.0]), np.array([5.0, 0.0]))
    rel = labels.relevance_labels(boxes, fut, np.ones((4, 6), bool), ego, np.ones(6, bool), lead=0)
    assert rel.tolist() == [True, False, False, False]
    stops = np.array([[[20.0, -3.0], [20.0, 3.0]], [[8.0, -3.0], [8.0, 3.0]], [[-5.0, -3.0], [-5.0, 3.0]]])
    state = np.array([0, 2, 0], np.uint8)       # red, green, red (passed)
    assert labels.governing_light(state, stops, np.array([True, False, True])) == (layout.LIGHT_RED, 20.0)
    assert labels.governing_light(state, stops, np.array([True, True, True])) == (layout.LIGHT_GREEN, 8.0)
    assert labels.governing_light(state, stops, np.array([False, False, True])) == (layout.LIGHT_NONE, None)
    assert labels.governing_light(np.zeros(0), np.zeros((0, 2, 2)), np.zeros(0, bool)) == (layout.LIGHT_NONE, None)
