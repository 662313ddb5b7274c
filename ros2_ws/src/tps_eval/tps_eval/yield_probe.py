"""Probe: do SUMO foes yield to an externally driven (moveToXY) ego inside junctions?

A pure-pursuit route follower drives the external ego through the junction at ~9 m/s and NEVER
yields; we count episodes in which some foe's box overlaps the ego's (classified by the
evaluation's taxonomy, :func:`tps_eval.metrics.classify_collision`, through the same episode-log
-> trace path as a closed-loop episode), and foe hard-braking events (< -3 m/s^2 within 25 m of
the ego) as a sign that foes did react::

    tps-eval yield-probe --scenario priority --seeds 9000:9010 --density 2
"""

from __future__ import annotations

import argparse
import math
from typing import TYPE_CHECKING

import numpy as np
from tps_common.geometry import wrap_angle

from tps_eval.expert_check import WorldEpisodeRecorder
from tps_eval.metrics import collision_events
from tps_eval.seeds import SeedSet

if TYPE_CHECKING:  # the world (libsumo) is imported where an episode runs
    from tps_sim.world import EgoControl, SimWorld

LOOKAHEAD_M = 8.0
CRUISE_MPS = 9.0
REACT_RADIUS_M = 25.0
HARD_BRAKE_MPS2 = -3.0
DEFAULT_SEEDS = "9000:9010"
DEFAULT_DENSITY = 2.0
DEFAULT_DURATION_S = 30.0


def follow_route(world: SimWorld, state, cruise_mps: float = CRUISE_MPS) -> EgoControl:  # noqa: ANN001
    """Pure-pursuit steering on the route plus bang-bang speed control (CARLA convention)."""
    from tps_sim.world import EgoControl
    from tps_sim.world.clutter import pose_on_route

    ex, ey, yaw = state.ego.center[0], state.ego.center[1], state.ego.yaw
    tx, ty, _ = pose_on_route(world.route, state.route_progress_m + LOOKAHEAD_M, 0.0)
    alpha = math.atan2(ty - ey, tx - ex) - yaw
    alpha = wrap_angle(alpha, include_pi=True)
    p = world.ego_params
    delta = math.atan2(2.0 * p.wheelbase_m * math.sin(alpha), math.hypot(tx - ex, ty - ey))
    steer = float(np.clip(-delta / p.max_wheel_angle_rad, -1.0, 1.0))  # + steer = right
    v = state.ego.speed_mps
    return EgoControl(throttle=0.5 if v < cruise_mps else 0.0,
                      brake=0.2 if v > cruise_mps + 1.0 else 0.0, steer=steer)


def probe(scenario: str, seeds: list, density: float,
          duration_s: float = DEFAULT_DURATION_S) -> list:
    """Per seed: (seed, collision descriptions ``kind/ego-fault|foe-fault``, foe hard-brake
    steps, route progress [m])."""
    from tps_sim.world import SimWorld, WorldConfig

    out = []
    for seed in seeds:
        world = SimWorld(WorldConfig(scenario=scenario, seed=seed, ego_driver="external",
                                     clutter="none", density=density, duration_s=duration_s))
        try:
            state = world.reset()
            recorder = WorldEpisodeRecorder(world, f"(yield probe {scenario} seed {seed})")
            recorder.add(state)
            brakes = 0
            while not world.is_done(state):
                state = world.step(follow_route(world, state))
                recorder.add(state)
                ego_xy = np.array(state.ego.center[:2])
                for a in state.agents:
                    if (np.hypot(*(np.array(a.center[:2]) - ego_xy)) < REACT_RADIUS_M
                            and a.accel_mps2 < HARD_BRAKE_MPS2):
                        brakes += 1
            events = [e for e in collision_events(recorder.trace(scenario)) if not e.static]
            seen = sorted(f"{e.kind}/{'ego' if e.at_fault else 'foe'}-fault" for e in events)
            out.append((seed, seen, brakes, state.route_progress_m))
        finally:
            world.close()
    return out


def add_arguments(ap: argparse.ArgumentParser) -> None:
    """The options of ``tps-eval yield-probe``."""
    from tps_eval import seeds as S

    S.add_arguments(ap, default=f"{DEFAULT_SEEDS}, the first ten TEST seeds")
    ap.add_argument("--scenario", default="priority")
    ap.add_argument("--density", type=float, default=DEFAULT_DENSITY)
    ap.add_argument("--duration", type=float, default=DEFAULT_DURATION_S, help="episode length [s]")


def run(args: argparse.Namespace, seeds: SeedSet) -> int:
    """``tps-eval yield-probe``: print one line per seed and a summary (always 0)."""
    rows = probe(args.scenario, list(seeds.seeds), args.density, args.duration)
    for seed, cols, brakes, prog in rows:
        print(f"seed {seed}: collisions {cols} foe hard-brake steps {brakes} progress {prog:.0f} m")
    n_col = sum(1 for r in rows if r[1])
    n_react = sum(1 for r in rows if r[2])
    print(f"{args.scenario} density {args.density} seeds {seeds.describe()}: {n_col}/{len(rows)} "
          f"episodes with a collision, foes braked hard near the ego in {n_react}/{len(rows)}")
    return 0
