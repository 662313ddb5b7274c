"""Gap acceptance for lane changes and merges (core; no ROS imports).

The rule (distances along the route, bumper to bumper; speeds along the route):

A change into the target lane starts only if every object in (or moving into) the target lane
is, at the start (tau = 0) and half-way through the change (tau = T/2, T = ``lane_change_time_s``;
the objects keep their speeds, the ego accelerates at its expected ``a_ego`` >= 0 -- a new
follower is taken to notice the ego only once it is half across):

- **ahead** (its rear beyond the ego's front bumper) with a gap of at least
  ``min_gap_m + front_time_gap_s * v_ego + max(0, v_ego - v_obj)^2 / (2 * ego_decel_mps2)``:
  a time gap, plus the room the ego needs to slow to its speed at ``ego_decel_mps2``;
- or **behind** (its front short of the ego's rear bumper) with a gap of at least
  ``min_gap_m + rear_time_gap_s * v_obj + max(0, v_obj - v_after)^2 / (2 * (follower_decel_mps2 + a_ego))``:
  the new follower keeps a time gap and never has to brake harder than ``follower_decel_mps2``
  to fall in behind the ego (MOBIL's safe-braking criterion), where ``v_after`` is the ego's
  speed, or the speed of a slower object ahead in the target lane within twice its required gap
  (the ego will have to slow to it);
- an object **alongside** (neither ahead nor behind) at either instant rejects the change, and so
  does any object whose speed is not known yet (a track measured fewer than ``min_age`` times).

Otherwise the ego stays in its lane and adapts its speed (``tps_planner.fallback``); at the end
of an acceleration lane it stops rather than force its way in.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class GapParams:
    """Parameters of the gap rule (SI units); see the module docstring."""

    min_gap_m: float = 3.0
    front_time_gap_s: float = 1.0
    rear_time_gap_s: float = 1.0
    ego_decel_mps2: float = 2.0
    follower_decel_mps2: float = 3.0
    lane_change_time_s: float = 3.0


@dataclass(frozen=True)
class LaneObject:
    """An object in (or entering) the target lane, along the route: rear and front arc lengths
    [m], speed along the route [m/s] (None = not known yet), an id for reports."""

    s_rear_m: float
    s_front_m: float
    speed_mps: float | None
    object_id: int = 0


@dataclass(frozen=True)
class GapDecision:
    """The verdict: ``accepted``; else ``reason`` and the object that blocks (id, speed, and
    whether it is ahead of the ego's rear bumper)."""

    accepted: bool
    reason: str = ""
    blocking_id: int | None = None
    blocking_speed_mps: float | None = None
    blocking_ahead: bool = False


def required_front_gap_m(v_ego: float, v_lead: float, p: GapParams) -> float:
    """Gap [m] the ego needs behind a lead in the target lane."""
    closing = max(0.0, max(v_ego, 0.0) - max(v_lead, 0.0))
    return p.min_gap_m + p.front_time_gap_s * max(v_ego, 0.0) + closing * closing / (2.0 * p.ego_decel_mps2)


def required_rear_gap_m(v_follower: float, v_ego: float, p: GapParams, ego_accel_mps2: float = 0.0) -> float:
    """Gap [m] a follower in the target lane needs behind the ego (the ego accelerating at
    ``ego_accel_mps2`` meanwhile)."""
    closing = max(0.0, max(v_follower, 0.0) - max(v_ego, 0.0))
    return (p.min_gap_m + p.rear_time_gap_s * max(v_follower, 0.0)
            + closing * closing / (2.0 * (p.follower_decel_mps2 + max(ego_accel_mps2, 0.0))))


def gap_acceptance(ego_front_m: float, ego_length_m: float, ego_speed_mps: float,
                   objects: list[LaneObject], params: GapParams,
                   duration_s: float | None = None, unknown_within_m: float | None = None,
                   ego_accel_mps2: float = 0.0) -> GapDecision:
    """Apply the gap rule (module docstring) to the target lane's ``objects``.

    Args:
        ego_front_m: arc length of the ego's front bumper [m].
        ego_length_m: ego length [m].
        ego_speed_mps: ego speed [m/s].
        objects: the target lane's objects.
        duration_s: the change's duration (default ``params.lane_change_time_s``); a change
            already under way passes what is left of it.
        unknown_within_m: an object whose speed is not known yet rejects only when its bumper gap
            to the ego is at most this [m] (a change under way: it is re-checked every frame);
            None = always.
        ego_accel_mps2: the ego's expected acceleration over the change [m/s^2] (>= 0).

    Returns:
        The decision; when rejected, the first blocking object in the order checked
        (nearest first).
    """
    p = params
    t_end = p.lane_change_time_s if duration_s is None else max(duration_s, 0.0)
    a_e = max(ego_accel_mps2, 0.0)
    v_e = max(ego_speed_mps, 0.0)
    order = sorted(objects, key=lambda o: min(abs(o.s_rear_m - ego_front_m),
                                              abs(ego_front_m - ego_length_m - o.s_front_m)))
    for o in order:
        if o.speed_mps is None:
            gap = max(o.s_rear_m - ego_front_m, ego_front_m - ego_length_m - o.s_front_m, 0.0)
            if unknown_within_m is not None and gap > unknown_within_m:
                continue
            return GapDecision(False, f"object {o.object_id}: speed not known yet", o.object_id, None,
                               o.s_rear_m >= ego_front_m)
    for tau in (0.0, 0.5 * t_end):
        front = ego_front_m + v_e * tau + 0.5 * a_e * tau * tau
        rear = front - ego_length_m
        v_tau = v_e + a_e * tau
        known = [(o, o.s_rear_m + o.speed_mps * tau, o.s_front_m + o.speed_mps * tau)
                 for o in order if o.speed_mps is not None]
        # Behind a slower lead of the target lane the ego ends up at that lead's speed: a
        # follower must be able to fall in behind that speed, not just the ego's now.
        v_after = v_tau
        for o, o_rear, _ in known:
            if o_rear >= front and o_rear - front <= 2.0 * required_front_gap_m(v_tau, o.speed_mps, p):
                v_after = min(v_after, max(o.speed_mps, 0.0))
        for o, o_rear, o_front in known:
            v_o = o.speed_mps
            if o_rear >= front:
                need = required_front_gap_m(v_tau, v_o, p)
                if o_rear - front < need:
                    return GapDecision(False, f"object {o.object_id} ahead: gap {o_rear - front:.1f} m "
                                       f"< {need:.1f} m at t+{tau:.1f} s", o.object_id, v_o, True)
            elif o_front <= rear:
                need = required_rear_gap_m(v_o, v_after, p, a_e if v_after >= v_tau else 0.0)
                if rear - o_front < need:
                    return GapDecision(False, f"object {o.object_id} behind: gap {rear - o_front:.1f} m "
                                       f"< {need:.1f} m at t+{tau:.1f} s", o.object_id, v_o, False)
            else:
                return GapDecision(False, f"object {o.object_id} alongside at t+{tau:.1f} s", o.object_id,
                                   v_o, o.s_rear_m >= ego_front_m - ego_length_m)
    return GapDecision(True)
