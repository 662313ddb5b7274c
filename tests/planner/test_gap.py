"""The gap rule (tps_planner.gap) on constructed scenes: a car alongside, a fast car approaching
from behind, a gap just too small and one just large enough, ahead and behind."""

import pytest
from tps_planner.gap import (
    GapParams,
    LaneObject,
    gap_acceptance,
    required_front_gap_m,
    required_rear_gap_m,
)

EGO_LENGTH_M = 4.6
CAR_LENGTH_M = 4.5
EGO_FRONT_M = 100.0                 # arc length of the ego's front bumper
EGO_REAR_M = EGO_FRONT_M - EGO_LENGTH_M
JUST_M = 0.05                       # "just" too small / large enough
P = GapParams()                     # min gap 3 m, time gaps 1 s, ego 2 / follower 3 m/s^2, change 3 s


def car_behind(gap_m: float, speed_mps: float | None, object_id: int = 1) -> LaneObject:
    """A car whose front bumper is ``gap_m`` behind the ego's rear bumper."""
    front = EGO_REAR_M - gap_m
    return LaneObject(front - CAR_LENGTH_M, front, speed_mps, object_id)


def car_ahead(gap_m: float, speed_mps: float | None, object_id: int = 2) -> LaneObject:
    """A car whose rear bumper is ``gap_m`` ahead of the ego's front bumper."""
    rear = EGO_FRONT_M + gap_m
    return LaneObject(rear, rear + CAR_LENGTH_M, speed_mps, object_id)


def decide(objects, ego_speed_mps: float, **kw):
    return gap_acceptance(EGO_FRONT_M, EGO_LENGTH_M, ego_speed_mps, objects, P, **kw)


def test_empty_lane_is_accepted():
    assert decide([], 20.0).accepted


def test_car_alongside_rejects_at_any_speed():
    alongside = LaneObject(EGO_REAR_M + 1.0, EGO_REAR_M + 1.0 + CAR_LENGTH_M, 20.0, 7)
    for ego_speed in (0.0, 20.0, 30.0):
        d = decide([alongside], ego_speed)
        assert not d.accepted
        assert "alongside" in d.reason and d.blocking_id == 7


def test_fast_car_approaching_from_behind_rejects_a_gap_that_suits_a_slow_one():
    # 40 m behind the ego's rear bumper: enough for a follower at the ego's speed ...
    assert decide([car_behind(40.0, 20.0)], 20.0).accepted
    # ... not for one closing at 10 m/s: it would have to brake harder than 3 m/s^2.
    d = decide([car_behind(40.0, 30.0)], 20.0)
    assert not d.accepted and "behind" in d.reason and d.blocking_speed_mps == 30.0


HALF_S = 0.5 * P.lane_change_time_s    # the second instant the rule checks


@pytest.mark.parametrize("v_follower, v_ego", [(20.0, 20.0), (30.0, 20.0), (25.0, 10.0), (25.0, 0.0)])
def test_rear_gap_just_too_small_and_just_large_enough(v_follower, v_ego):
    # Constant ego speed here: the follower must keep its gap at t = 0 and half-way through the
    # change; closing, half-way binds.
    closing = max(v_follower - v_ego, 0.0) * HALF_S
    need = required_rear_gap_m(v_follower, v_ego, P) + closing
    assert not decide([car_behind(need - JUST_M, v_follower)], v_ego).accepted
    assert decide([car_behind(need + JUST_M, v_follower)], v_ego).accepted


@pytest.mark.parametrize("v_lead, v_ego", [(20.0, 20.0), (15.0, 20.0), (25.0, 20.0)])
def test_front_gap_just_too_small_and_just_large_enough(v_lead, v_ego):
    closing = max(v_ego - v_lead, 0.0) * HALF_S
    need = required_front_gap_m(v_ego, v_lead, P) + closing
    assert not decide([car_ahead(need - JUST_M, v_lead)], v_ego).accepted
    assert decide([car_ahead(need + JUST_M, v_lead)], v_ego).accepted


def test_required_gaps_follow_the_stated_rule():
    # front: min gap + time gap x ego speed + room to slow to the lead's speed at 2 m/s^2
    assert required_front_gap_m(20.0, 10.0, P) == pytest.approx(3.0 + 20.0 + 100 / 4.0)
    assert required_front_gap_m(20.0, 25.0, P) == pytest.approx(3.0 + 20.0)
    # rear: min gap + time gap x follower speed + room it needs to fall in behind the ego braking
    # at 3 m/s^2 (the ego's own acceleration helps)
    assert required_rear_gap_m(30.0, 20.0, P) == pytest.approx(3.0 + 30.0 + 100 / 6.0)
    assert required_rear_gap_m(30.0, 20.0, P, ego_accel_mps2=2.0) == pytest.approx(3.0 + 30.0 + 100 / 10.0)
    assert required_rear_gap_m(10.0, 20.0, P) == pytest.approx(3.0 + 10.0)


def test_the_ego_accelerating_shortens_the_rear_gap_it_needs():
    follower = car_behind(90.0, 25.0)
    assert not decide([follower], 5.0).accepted
    assert decide([follower], 5.0, ego_accel_mps2=2.0).accepted


def test_a_slower_lead_in_the_target_lane_makes_the_follower_gap_larger():
    # The ego will end up at the lead's 12 m/s: the follower at 20 m/s must slow to that, not to
    # the ego's 20 m/s now.
    follower = car_behind(30.0, 20.0)
    assert decide([follower], 20.0).accepted
    lead = car_ahead(60.0, 12.0)
    d = decide([follower, lead], 20.0)
    assert not d.accepted and d.blocking_id == follower.object_id


def test_unknown_speed_rejects_unless_far_for_a_change_under_way():
    new_track = car_behind(50.0, None, object_id=9)
    d = decide([new_track], 20.0)
    assert not d.accepted and "not known" in d.reason
    assert decide([new_track], 20.0, unknown_within_m=10.0).accepted
    assert not decide([car_behind(5.0, None)], 20.0, unknown_within_m=10.0).accepted


def test_standstill_merge_needs_the_follower_far_back():
    # From standstill (end of an acceleration lane, accelerating at 2 m/s^2) a follower at 25 m/s
    # needs, half-way through the change (ego at 3 m/s, 2.25 m on; follower 37.5 m on),
    # 3 + 25 + 22^2 / 10 = 76.4 m: 111.7 m now.
    assert not decide([car_behind(105.0, 25.0)], 0.0, ego_accel_mps2=2.0).accepted
    assert decide([car_behind(115.0, 25.0)], 0.0, ego_accel_mps2=2.0).accepted
