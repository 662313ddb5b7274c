"""tps_common.stamp_sync: acting on the ego pose of an input's stamp, whatever order DDS delivers in."""

import math

import pytest
from tps_common.geometry import wrap_angle
from tps_common.stamp_sync import (
    STAMP_EPSILON_S,
    EgoPose,
    PoseHistory,
    PoseKind,
    ReleaseCause,
    StampSync,
    StampSyncParams,
    invalid_pose_reason,
)

STEP_S = 0.1                      # synchronous-loop step, s
CONTROLLER_TOLERANCE_S = 0.25     # controller_node.POSE_TOLERANCE_S
FALLBACK_TOLERANCE_S = 0.15       # config/fallback_node.param.yaml pose_tolerance_s
TIGHT_TOLERANCE_S = 0.05          # config/perception_node.param.yaml pose_tolerance_s
SPEED_MPS = 10.0
ABS_TOL = 1e-12                   # float slack for interpolated values

CONTROLLER = StampSyncParams(pose_tolerance_s=CONTROLLER_TOLERANCE_S, startup_needs_pose=True,
                             latest_pose_fallback=True)
FALLBACK = StampSyncParams(pose_tolerance_s=FALLBACK_TOLERANCE_S)


def pose(t_s: float, yaw: float = 0.0) -> EgoPose:
    """Ego driving along +x at SPEED_MPS: x = SPEED_MPS * t."""
    return EgoPose(t_s, SPEED_MPS * t_s, 1.0, yaw, SPEED_MPS)


def only(result):
    assert len(result.released) == 1, result
    return result.released[0]


# ---------------------------------------------------------------- out-of-order arrival
@pytest.mark.parametrize("params", [CONTROLLER, FALLBACK])
def test_input_before_its_odometry_waits_for_it(params):
    sync = StampSync(params)
    sync.on_pose(pose(0.0))
    assert sync.on_input("cloud-1", STEP_S).released == ()
    assert sync.waiting_stamp_s == STEP_S
    r = only(sync.on_pose(pose(STEP_S)))
    assert (r.payload, r.stamp_s, r.cause, r.pose_kind) == ("cloud-1", STEP_S, ReleaseCause.POSE, PoseKind.EXACT)
    assert r.pose == pose(STEP_S)
    assert r.note is None
    assert sync.waiting_stamp_s is None


@pytest.mark.parametrize("params", [CONTROLLER, FALLBACK])
def test_odometry_before_input_releases_at_once(params):
    sync = StampSync(params)
    assert sync.on_pose(pose(0.0)) == sync.on_pose(pose(STEP_S))   # nothing waiting: empty results
    r = only(sync.on_input("cloud-1", STEP_S))
    assert (r.cause, r.pose_kind, r.pose, r.note) == (ReleaseCause.READY, PoseKind.EXACT, pose(STEP_S), None)


def test_odometry_of_a_later_stamp_first_releases_with_interpolated_pose():
    sync = StampSync(FALLBACK)
    sync.on_pose(pose(0.0, yaw=0.0))
    sync.on_input("cloud-1", STEP_S)
    r = only(sync.on_pose(pose(2 * STEP_S, yaw=0.2)))     # odometry of STEP_S lost or late
    assert (r.cause, r.pose_kind) == (ReleaseCause.POSE, PoseKind.INTERPOLATED)
    assert r.pose.stamp_s == STEP_S
    assert r.pose.x == pytest.approx(SPEED_MPS * STEP_S, abs=ABS_TOL)
    assert r.pose.yaw == pytest.approx(0.1, abs=ABS_TOL)
    assert r.note == "no odometry of stamp 0.100 s: pose interpolated between its neighbours"


def test_odometry_of_a_later_stamp_only_gives_the_nearest_within_tolerance():
    sync = StampSync(FALLBACK)
    sync.on_input("cloud-1", STEP_S)
    r = only(sync.on_pose(pose(2 * STEP_S)))
    assert (r.pose_kind, r.pose) == (PoseKind.NEAREST, pose(2 * STEP_S))
    assert r.note == "no odometry of stamp 0.100 s: nearest pose (0.200 s) used"


# ---------------------------------------------------------------- start-up without odometry
def test_startup_without_odometry_supersedes_the_waiting_input():
    sync = StampSync(CONTROLLER)
    assert sync.starting_blind
    assert sync.on_input("traj-0a", 0.0).released == ()
    res = sync.on_input("traj-0b", 0.0)                   # the bridge re-publishes step 0
    assert res.released == ()
    assert [(d.payload, d.stamp_s) for d in res.dropped] == [("traj-0a", 0.0)]
    assert "superseded" in res.dropped[0].reason
    assert sync.on_clock(STEP_S).released == ()           # the clock leaves it waiting too
    r = only(sync.on_pose(pose(0.0)))
    assert (r.payload, r.pose_kind, r.pose) == ("traj-0b", PoseKind.EXACT, pose(0.0))
    assert not sync.starting_blind


def test_startup_pass_through_input_leaves_the_waiting_one_waiting():
    sync = StampSync(CONTROLLER)
    sync.on_input("valid", 0.0)
    r = only(sync.on_input("invalid", 0.0, wait=False))   # e.g. an invalid trajectory: brake at once
    assert (r.payload, r.cause, r.pose, r.pose_kind) == ("invalid", ReleaseCause.PASS_THROUGH, None, PoseKind.NONE)
    assert sync.waiting_stamp_s == 0.0
    assert not sync.starting_blind                       # something was released: start-up is over
    r = only(sync.on_clock(STEP_S))
    assert (r.payload, r.cause, r.pose) == ("valid", ReleaseCause.CLOCK, None)


def test_startup_ends_when_the_node_publishes_on_its_own():
    sync = StampSync(CONTROLLER)
    sync.on_input("traj-0", 0.0)
    sync.mark_started()                                  # e.g. a braking command on a clock tick
    res = sync.on_input("traj-1", STEP_S)
    assert [r.payload for r in res.released] == ["traj-0"] and res.dropped == ()
    assert res.released[0].pose_kind is PoseKind.NONE
    assert res.released[0].note == "no odometry of stamp 0.000 s nor any within 0.250 s: no pose"


def test_without_startup_rule_the_waiting_input_is_released_blind():
    sync = StampSync(FALLBACK)
    sync.on_input("cloud-0a", 0.0)
    res = sync.on_input("cloud-0b", 0.0)
    assert res.dropped == ()
    r = only(res)
    assert (r.payload, r.cause, r.pose, r.pose_kind) == ("cloud-0a", ReleaseCause.NEXT_INPUT, None, PoseKind.NONE)
    assert sync.waiting_stamp_s == 0.0


# ---------------------------------------------------------------- release on clock advance
@pytest.mark.parametrize("params", [CONTROLLER, FALLBACK])
def test_clock_past_the_stamp_releases_with_nearest_pose(params):
    sync = StampSync(params)
    sync.on_pose(pose(0.0))
    sync.on_input("x", STEP_S)
    assert sync.on_clock(STEP_S).released == ()          # /clock = t_k comes with step k's data
    assert sync.on_clock(STEP_S + 0.5 * STAMP_EPSILON_S).released == ()
    r = only(sync.on_clock(2 * STEP_S))
    assert (r.payload, r.cause, r.pose_kind, r.pose) == ("x", ReleaseCause.CLOCK, PoseKind.NEAREST, pose(0.0))
    assert r.note == "no odometry of stamp 0.100 s: nearest pose (0.000 s) used"
    assert sync.on_clock(3 * STEP_S).released == ()       # released once


def test_clock_release_can_be_switched_off_or_delayed():
    off = StampSync(StampSyncParams(release_on_clock=False))
    off.on_input("x", 0.0)
    assert off.on_clock(10.0).released == ()
    delayed = StampSync(StampSyncParams(clock_release_after_s=1.5 * STEP_S))
    delayed.on_input("x", 0.0)
    assert delayed.on_clock(STEP_S).released == ()
    assert only(delayed.on_clock(2 * STEP_S)).cause is ReleaseCause.CLOCK


# ---------------------------------------------------------------- release on the next input
def test_next_input_releases_the_waiting_one_first_with_nearest_pose_and_note():
    sync = StampSync(FALLBACK)
    sync.on_pose(pose(0.0))
    res = sync.on_input("cloud-1", STEP_S)
    assert res.released == ()
    res = sync.on_input("cloud-2", 2 * STEP_S)
    r = only(res)
    assert (r.payload, r.cause, r.pose_kind, r.pose) == ("cloud-1", ReleaseCause.NEXT_INPUT, PoseKind.NEAREST,
                                                         pose(0.0))
    assert r.note == "no odometry of stamp 0.100 s: nearest pose (0.000 s) used"
    assert sync.waiting_stamp_s == 2 * STEP_S


def test_next_input_releases_both_in_order_when_the_new_ones_pose_is_there():
    sync = StampSync(FALLBACK)
    sync.on_input("late-cloud", STEP_S)                  # from before the stored history's end
    sync.on_pose(pose(0.0))
    sync.on_pose(pose(2 * STEP_S))                       # releases late-cloud (interpolated)
    sync.on_input("cloud-3", 3 * STEP_S)
    sync.on_pose(pose(4 * STEP_S))                       # odometry of 0.3 lost: cloud-3 interpolated
    sync.on_input("cloud-5", 5 * STEP_S)
    res = sync.on_input("cloud-4", 4 * STEP_S)           # an older cloud arrives after a newer one
    assert [(r.payload, r.cause, r.pose_kind) for r in res.released] == [
        ("cloud-5", ReleaseCause.NEXT_INPUT, PoseKind.NEAREST),
        ("cloud-4", ReleaseCause.READY, PoseKind.EXACT),
    ]


def test_interpolated_pose_when_released_between_two_stored_poses():
    sync = StampSync(FALLBACK)
    sync.on_pose(pose(0.0))
    sync.on_pose(pose(2 * STEP_S))
    r = only(sync.on_input("cloud-1", STEP_S))           # its odometry lost, both neighbours stored
    assert (r.cause, r.pose_kind) == (ReleaseCause.READY, PoseKind.INTERPOLATED)
    assert r.pose.x == pytest.approx(SPEED_MPS * STEP_S, abs=ABS_TOL)
    assert r.note is not None and "interpolated" in r.note


# ---------------------------------------------------------------- invalid odometry
@pytest.mark.parametrize("field, value", [("x", math.nan), ("yaw", math.inf), ("speed_mps", -math.inf),
                                          ("stamp_s", math.nan)])
def test_non_finite_odometry_is_rejected_with_a_reason(field, value):
    sync = StampSync(FALLBACK)
    sync.on_input("cloud-1", STEP_S)
    bad = EgoPose(**{**pose(STEP_S).__dict__, field: value})
    res = sync.on_pose(bad)
    assert res.released == ()
    assert res.rejected is not None and field in res.rejected and "NaN/inf" in res.rejected
    assert sync.poses.poses == [] and sync.waiting_stamp_s == STEP_S
    assert invalid_pose_reason(pose(STEP_S)) is None
    assert only(sync.on_pose(pose(STEP_S))).pose == pose(STEP_S)


# ---------------------------------------------------------------- tolerance and latest fallback
def test_pose_tolerance_is_a_parameter():
    def release_with(params):
        sync = StampSync(params)
        sync.on_pose(pose(0.0))
        sync.on_input("x", 2 * STEP_S)                   # nearest pose 0.2 s away
        return only(sync.on_clock(3 * STEP_S))

    r = release_with(StampSyncParams(pose_tolerance_s=CONTROLLER_TOLERANCE_S))
    assert (r.pose_kind, r.pose) == (PoseKind.NEAREST, pose(0.0))
    r = release_with(StampSyncParams(pose_tolerance_s=FALLBACK_TOLERANCE_S))
    assert (r.pose_kind, r.pose) == (PoseKind.NONE, None)
    assert r.note == "no odometry of stamp 0.200 s nor any within 0.150 s: no pose"
    r = release_with(StampSyncParams(pose_tolerance_s=TIGHT_TOLERANCE_S, latest_pose_fallback=True))
    assert (r.pose_kind, r.pose) == (PoseKind.LATEST, pose(0.0))
    assert r.note == "no odometry of stamp 0.200 s nor any within 0.050 s: latest pose (0.000 s) used"


@pytest.mark.parametrize("field, value", [("pose_tolerance_s", -0.1), ("stamp_epsilon_s", math.nan),
                                          ("clock_release_after_s", math.inf), ("history_capacity", 0),
                                          ("history_capacity", 2.5)])
def test_bad_params_raise_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        StampSyncParams(**{field: value})


# ---------------------------------------------------------------- history
def test_time_going_back_starts_a_new_episode():
    sync = StampSync(FALLBACK)
    for k in range(1, 6):
        sync.on_pose(pose(k * STEP_S))
    sync.on_pose(pose(0.0))                              # the next episode starts at t = 0
    assert [p.stamp_s for p in sync.poses.poses] == [0.0]
    assert sync.latest_pose == pose(0.0)
    r = only(sync.on_input("x", 3 * STEP_S, wait=False))
    assert (r.pose_kind, r.pose) == (PoseKind.NONE, None)  # the old episode's pose of 0.3 s is gone


def test_time_going_back_keeps_only_older_poses():
    history = PoseHistory(capacity=10)
    for k in range(5):
        history.append(pose(k * STEP_S))
    history.append(pose(2.5 * STEP_S))
    assert [p.stamp_s for p in history.poses] == [0.0, STEP_S, 2 * STEP_S, 2.5 * STEP_S]


def test_history_capacity_drops_the_oldest():
    capacity = 3
    history = PoseHistory(capacity)
    for k in range(5):
        history.append(pose(k * STEP_S))
    assert [p.stamp_s for p in history.poses] == [2 * STEP_S, 3 * STEP_S, 4 * STEP_S]
    assert history.has(3 * STEP_S) and not history.has(STEP_S)
    assert history.reached(4 * STEP_S) and not history.reached(5 * STEP_S)


def test_interpolation_takes_the_short_way_across_pi():
    history = PoseHistory()
    yaw_a, yaw_b = math.pi - 0.1, -math.pi + 0.1          # 0.2 rad apart across +-pi
    history.append(EgoPose(0.0, 0.0, 0.0, yaw_a, 4.0))
    history.append(EgoPose(1.0, 2.0, -4.0, yaw_b, 8.0))
    p, kind = history.lookup(0.25, tolerance_s=0.0)
    assert kind is PoseKind.INTERPOLATED
    assert (p.stamp_s, p.x, p.y, p.speed_mps) == pytest.approx((0.25, 0.5, -1.0, 5.0), abs=ABS_TOL)
    assert wrap_angle(p.yaw - (math.pi - 0.05)) == pytest.approx(0.0, abs=ABS_TOL)
    p = history.at(0.75, tolerance_s=0.0)
    assert wrap_angle(p.yaw - (-math.pi + 0.05)) == pytest.approx(0.0, abs=ABS_TOL)   # not through 0
    assert math.cos(p.yaw) == pytest.approx(math.cos(math.pi - 0.05), abs=ABS_TOL)


def test_lookup_outside_the_history():
    history = PoseHistory()
    history.append(pose(STEP_S))
    history.append(pose(2 * STEP_S))
    assert history.lookup(2 * STEP_S + 0.5 * STAMP_EPSILON_S, 0.0) == (pose(2 * STEP_S), PoseKind.EXACT)
    assert history.lookup(0.0, FALLBACK_TOLERANCE_S) == (pose(STEP_S), PoseKind.NEAREST)
    assert history.lookup(4 * STEP_S, FALLBACK_TOLERANCE_S) == (None, PoseKind.NONE)
    assert PoseHistory().lookup(0.0, CONTROLLER_TOLERANCE_S) == (None, PoseKind.NONE)


# ---------------------------------------------------------------- odometry conversion
@pytest.mark.parametrize(("q", "named"), [
    ((0.0, 0.0, 0.0, 0.0), "norm 0"),                  # the default of a zero-filled message
    ((0.0, -3e38, 0.0, 1.0), "norm 3e+38"),             # atan2 gives a finite yaw all the same
    ((0.0, 0.0, -math.inf, 1.0), "NaN/inf"),            # atan2(-inf, -inf) is finite too
    ((0.0, 0.0, 0.5, 0.5), "norm 0.707"),
])
def test_odometry_with_a_non_unit_quaternion_is_rejected_by_name(q, named):
    from nav_msgs.msg import Odometry
    from tps_common.conversions import odometry_to_pose, seconds_to_time

    msg = Odometry()
    msg.header.stamp = seconds_to_time(STEP_S)
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = q
    p = odometry_to_pose(msg)
    assert math.isfinite(p.yaw) or named == "NaN/inf"
    reason = invalid_pose_reason(p)
    assert reason is not None and "quaternion" in reason and named in reason, reason
    sync = StampSync(FALLBACK)
    sync.on_input("x", STEP_S)
    res = sync.on_pose(p)
    assert res.rejected == reason and res.released == () and sync.poses.poses == []


def test_odometry_with_a_unit_quaternion_converts():
    from nav_msgs.msg import Odometry
    from tps_common.conversions import odometry_to_pose, seconds_to_time, yaw_to_quaternion_msg

    msg = Odometry()
    msg.header.stamp = seconds_to_time(2 * STEP_S)
    msg.pose.pose.position.x, msg.pose.pose.position.y = 3.0, -4.0
    msg.pose.pose.orientation = yaw_to_quaternion_msg(2.5)
    msg.twist.twist.linear.x, msg.twist.twist.linear.y = 3.0, 4.0
    p = odometry_to_pose(msg)
    assert invalid_pose_reason(p) is None
    assert (p.stamp_s, p.x, p.y, p.speed_mps) == pytest.approx((2 * STEP_S, 3.0, -4.0, 5.0))
    assert p.yaw == pytest.approx(2.5)
