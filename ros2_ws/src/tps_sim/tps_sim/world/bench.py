"""Timing helper for benchmarks: cost of one ``SimWorld.step`` with ~50 vehicles.

``benchmarks/`` (S2's sensor benchmark) calls :func:`time_world_steps` and prints the table.
"""

from __future__ import annotations

import time

import numpy as np

from tps_sim.world.config import EgoControl, WorldConfig
from tps_sim.world.world import BENCHMARK_DENSITY, BENCHMARK_SCENARIO, SimWorld


def time_world_steps(steps: int = 200, scenario: str = BENCHMARK_SCENARIO,
                     density: float = BENCHMARK_DENSITY, seed: int = 9000,
                     ego_driver: str = "external", clutter: str = "medium") -> dict:
    """Run ``steps`` world steps and time each one.

    Returns:
        dict with scenario, density, ego_driver, steps, mean_vehicles (dynamic agents per step),
        step_ms_mean, step_ms_p50, step_ms_p99 (wall-clock ms per ``SimWorld.step``, which
        includes the SUMO step, reading every agent, the OBB collision check and route
        progress), reset_s.
    """
    world = SimWorld(WorldConfig(scenario=scenario, seed=seed, density=density,
                                 ego_driver=ego_driver, clutter=clutter,
                                 duration_s=max(30.0, steps * 0.1 + 1.0)))
    try:
        t0 = time.perf_counter()
        state = world.reset()
        reset_s = time.perf_counter() - t0
        times, counts = [], []
        control = EgoControl(throttle=0.3)
        for _ in range(steps):
            t = time.perf_counter()
            state = world.step(control)
            times.append(time.perf_counter() - t)
            counts.append(len(state.agents))
    finally:
        world.close()
    ms = 1000.0 * np.asarray(times)
    return {"scenario": scenario, "density": density, "ego_driver": ego_driver, "steps": steps,
            "mean_vehicles": float(np.mean(counts)), "step_ms_mean": float(ms.mean()),
            "step_ms_p50": float(np.percentile(ms, 50)), "step_ms_p99": float(np.percentile(ms, 99)),
            "reset_s": reset_s}
