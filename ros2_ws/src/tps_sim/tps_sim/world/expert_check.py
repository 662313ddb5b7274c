"""Expert check: SUMO driving the ego (ego_driver="expert") must never collide by the project's
own oriented-box test. Run over test seeds of every scenario::

    python -m tps_sim.world.expert_check --seeds 10 --duration 30 [--json out.json]

Prints a table (one row per scenario) and exits non-zero if any episode had a collision.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from tps_sim import splits
from tps_sim.world.collision import classify_collision
from tps_sim.world.config import WorldConfig
from tps_sim.world.scenarios import SCENARIOS
from tps_sim.world.world import SimWorld


@dataclass
class EpisodeResult:
    """Outcome of one expert episode."""

    scenario: str
    seed: int
    steps: int
    duration_s: float
    route_progress_m: float
    mean_speed_mps: float
    collision_steps: int
    collision_ids: list
    collision_kinds: list
    min_gap_m: float
    wall_s: float
    error: str = ""


def run_episode(scenario: str, seed: int, duration_s: float, density: float = 1.0,
                clutter: str = "none") -> EpisodeResult:
    """Run one expert episode and collect its collisions (with classification)."""
    t0 = time.perf_counter()
    world = SimWorld(WorldConfig(scenario=scenario, seed=seed, density=density, clutter=clutter,
                                 ego_driver="expert", duration_s=duration_s))
    try:
        try:
            state = world.reset()
        except RuntimeError as exc:  # e.g. SUMO refused to insert the ego
            return EpisodeResult(scenario, seed, 0, 0.0, 0.0, 0.0, 0, [], [], float("nan"),
                                 time.perf_counter() - t0, str(exc))
        speeds, ids, kinds = [], set(), []
        collision_steps = 0
        min_gap = np.inf
        while not world.is_done(state):
            state = world.step()
            speeds.append(state.ego.speed_mps)
            if state.agents:
                d = np.hypot(*(np.array([a.center[:2] for a in state.agents])
                               - np.array(state.ego.center[:2])).T)
                min_gap = min(min_gap, float(d.min()))
            if state.collisions:
                collision_steps += 1
                for cid in state.collisions:
                    other = state.agent_by_id(cid)
                    if other is not None and cid not in ids:
                        info = classify_collision(state.ego.box2d(), state.ego.velocity, cid,
                                                  other.box2d(), other.velocity)
                        kinds.append(f"{cid}:{info.kind}:{'fault' if info.ego_at_fault else 'no'}")
                    ids.add(cid)
        return EpisodeResult(scenario, seed, state.step, state.t_s, state.route_progress_m,
                             float(np.mean(speeds)) if speeds else 0.0, collision_steps,
                             sorted(ids), kinds, float(min_gap), time.perf_counter() - t0)
    finally:
        world.close()


def run_expert_check(scenarios: list, seeds: list, duration_s: float, density: float = 1.0,
                     progress: bool = True) -> list:
    """Every (scenario, seed) episode; returns EpisodeResults."""
    jobs = [(sc, sd) for sc in scenarios for sd in seeds]
    it = jobs
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc="expert check", unit="episode")
    return [run_episode(sc, sd, duration_s, density) for sc, sd in it]


def summary_table(results: list) -> str:
    """Markdown table: per scenario episodes, collision episodes, mean progress and speed."""
    rows = ["| scenario | episodes | failed resets | episodes with collision | collision steps "
            "| mean progress [m] | mean speed [m/s] |", "|---|---|---|---|---|---|---|"]
    for sc in dict.fromkeys(r.scenario for r in results):
        rs = [r for r in results if r.scenario == sc]
        rows.append(f"| {sc} | {len(rs)} | {sum(1 for r in rs if r.error)} | "
                    f"{sum(1 for r in rs if r.collision_ids)} | "
                    f"{sum(r.collision_steps for r in rs)} | "
                    f"{np.mean([r.route_progress_m for r in rs]):.1f} | "
                    f"{np.mean([r.mean_speed_mps for r in rs]):.1f} |")
    return "\n".join(rows)


def main(argv: list | None = None) -> int:
    """CLI entry point (see module docstring)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenarios", default="all", help="comma-separated names or 'all'")
    ap.add_argument("--seeds", type=int, default=10, help="first N test seeds (tps_sim.splits)")
    ap.add_argument("--duration", type=float, default=30.0, help="episode length [s]")
    ap.add_argument("--density", type=float, default=1.0)
    ap.add_argument("--json", default="", help="write per-episode results here")
    args = ap.parse_args(argv)
    names = list(SCENARIOS) if args.scenarios == "all" else args.scenarios.split(",")
    results = run_expert_check(names, splits.seeds("test", args.seeds), args.duration,
                               args.density)
    print(summary_table(results))
    for r in results:
        if r.collision_ids:
            print(f"COLLISION {r.scenario} seed {r.seed}: {r.collision_kinds}")
        if r.error:
            print(f"RESET FAILED {r.scenario} seed {r.seed}: {r.error}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump([asdict(r) for r in results], f, indent=1)
    return 1 if any(r.collision_ids or r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
