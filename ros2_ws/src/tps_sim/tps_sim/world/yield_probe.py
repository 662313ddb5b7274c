"""Probe: do SUMO foes yield to an externally driven (moveToXY) ego inside junctions?

A pure-pursuit route follower drives the external ego through the junction at ~9 m/s and NEVER
yields; we count episodes in which some foe's box overlaps the ego's, and foe hard-braking
events (< -3 m/s^2 within 25 m of the ego) as a sign that foes did react::

    python -m tps_sim.world.yield_probe --scenario priority --seeds 10 --density 2
"""

from __future__ import annotations

import argparse
import math

import numpy as np

from tps_sim import splits
from tps_sim.world.clutter import pose_on_route
from tps_sim.world.collision import classify_collision
from tps_sim.world.config import EgoControl, WorldConfig
from tps_sim.world.world import SimWorld

LOOKAHEAD_M = 8.0
CRUISE_MPS = 9.0
REACT_RADIUS_M = 25.0
HARD_BRAKE_MPS2 = -3.0


def follow_route(world: SimWorld, state, cruise_mps: float = CRUISE_MPS) -> EgoControl:  # noqa: ANN001
    """Pure-pursuit steering on the route plus bang-bang speed control (CARLA convention)."""
    ex, ey, yaw = state.ego.center[0], state.ego.center[1], state.ego.yaw
    tx, ty, _ = pose_on_route(world.route, state.route_progress_m + LOOKAHEAD_M, 0.0)
    alpha = math.atan2(ty - ey, tx - ex) - yaw
    alpha = math.atan2(math.sin(alpha), math.cos(alpha))
    p = world.ego_params
    delta = math.atan2(2.0 * p.wheelbase_m * math.sin(alpha), math.hypot(tx - ex, ty - ey))
    steer = float(np.clip(-delta / p.max_wheel_angle_rad, -1.0, 1.0))  # + steer = right
    v = state.ego.speed_mps
    return EgoControl(throttle=0.5 if v < cruise_mps else 0.0,
                      brake=0.2 if v > cruise_mps + 1.0 else 0.0, steer=steer)


def probe(scenario: str, seeds: list, density: float, duration_s: float = 30.0) -> list:
    """Per seed: (seed, collision descriptions, foe hard-brake events, route progress [m])."""
    out = []
    for seed in seeds:
        world = SimWorld(WorldConfig(scenario=scenario, seed=seed, ego_driver="external",
                                     clutter="none", density=density, duration_s=duration_s))
        try:
            state = world.reset()
            seen, brakes = {}, 0
            while not world.is_done(state):
                state = world.step(follow_route(world, state))
                ego_xy = np.array(state.ego.center[:2])
                for a in state.agents:
                    if (np.hypot(*(np.array(a.center[:2]) - ego_xy)) < REACT_RADIUS_M
                            and a.accel_mps2 < HARD_BRAKE_MPS2):
                        brakes += 1
                for cid in state.collisions:
                    other = state.agent_by_id(cid)
                    if other is not None and cid not in seen:
                        info = classify_collision(state.ego.box2d(), state.ego.velocity, cid,
                                                  other.box2d(), other.velocity)
                        seen[cid] = f"{info.kind}/{'ego' if info.ego_at_fault else 'foe'}-fault"
            out.append((seed, sorted(seen.values()), brakes, state.route_progress_m))
        finally:
            world.close()
    return out


def main(argv: list | None = None) -> int:
    """CLI: print one line per seed and a summary."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", default="priority")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--density", type=float, default=2.0)
    args = ap.parse_args(argv)
    rows = probe(args.scenario, splits.seeds("test", args.seeds), args.density)
    for seed, cols, brakes, prog in rows:
        print(f"seed {seed}: collisions {cols} foe hard-brake steps {brakes} progress {prog:.0f} m")
    n_col = sum(1 for r in rows if r[1])
    n_react = sum(1 for r in rows if r[2])
    print(f"{args.scenario} density {args.density}: {n_col}/{len(rows)} episodes with a "
          f"collision, foes braked hard near the ego in {n_react}/{len(rows)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
