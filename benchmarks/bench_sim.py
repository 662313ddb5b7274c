"""Simulation cost on ONE CPU core: sensor models (lidar 32 x 1024 + camera 640 x 360) and the
SUMO world step.

Two scene sources:
  synthetic  ``tps_sim.sensors.synthetic.synthetic_scene``: exactly ``--vehicles`` agents (default
             50) on a 400 m, 4-lane straight road around the ego, clutter "medium"; a different
             seed per frame (``--frames`` frames).
  world      ``tps_sim.world.SimWorld`` (SUMO via libsumo), scenario ``BENCHMARK_SCENARIO``
             (highway) at ``--density`` (default 1.0: ~50 vehicles in the network on seed 0,
             measured; ``BENCHMARK_DENSITY`` 1.3 gives ~70), clutter medium, the expert driving; every step
             of ``--steps`` steps after ``--warmup-steps`` untimed ones. The agent count is
             reported (all agents in the network, the sensors see every one of them).

Rows: world.step (SUMO step + pose read-back + ego), world.scene3d (state -> Scene3D), lidar
scan, camera render, sensors (lidar + to_xyzi + camera: the 50 Hz target), and the whole
simulation step (world.step + scene3d + sensors). Each is timed with time.perf_counter per frame;
the table shows the median, the 90th percentile and Hz = 1000 / median.

Conditions: the process is pinned to one core (os.sched_setaffinity) and every thread pool
(OpenMP/BLAS/numba/OpenCV) is limited to one thread before numpy is imported. numba kernels are
compiled (warm-up call) before anything is timed. The machine is shared, so the numbers are
noisy; the load average at start and end is printed and stored.

``--scenario signalised`` times the world rows at the signalised junction instead (traffic-light
heads, poles and stop lines in view: the cost of the lights, issue 12).

Run:  .venv/bin/python benchmarks/bench_sim.py [--frames 100] [--steps 200] [--core N]
      [--scenario NAME] [--out PATH]
Writes benchmarks/results/sim.json.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
             "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numba  # noqa: E402
import numpy as np  # noqa: E402
from tps_sim.sensors.camera import CameraModel, CameraParams  # noqa: E402
from tps_sim.sensors.lidar import LidarModel, LidarParams, to_xyzi  # noqa: E402
from tps_sim.sensors.synthetic import synthetic_scene  # noqa: E402
from tqdm import tqdm  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "sim.json"
TARGET_SENSOR_HZ = 50.0   # camera + lidar frame on one core (issue 12 keeps it at >= 50 Hz)
CLUTTER = "medium"
SEED = 0
WORLD_DENSITY = 1.0  # highway, seed 0: 46..53 agents over 200 steps (measured)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def summary(times_s: list[float]) -> dict:
    ms = np.asarray(times_s) * 1e3
    median = float(np.median(ms))
    return {"ms_median": round(median, 3), "ms_p90": round(float(np.percentile(ms, 90)), 3),
            "hz": round(1000.0 / median, 1) if median > 0 else None, "n": int(ms.size)}


def time_sensors(lidar: LidarModel, camera: CameraModel, scene, rng: np.random.Generator,
                 out: dict[str, list[float]]) -> None:
    t0 = time.perf_counter()
    scan = lidar.scan(scene, rng)
    xyzi = to_xyzi(scan)
    t1 = time.perf_counter()
    image = camera.render(scene)
    t2 = time.perf_counter()
    assert xyzi.shape[0] > 0 and image.shape == (camera.params.height, camera.params.width, 3)
    out["lidar scan (32x1024) + to_xyzi"].append(t1 - t0)
    out["camera render (640x360)"].append(t2 - t1)
    out["sensors (lidar + camera)"].append(t2 - t0)
    out["_points"].append(xyzi.shape[0])


def bench_synthetic(lidar: LidarModel, camera: CameraModel, frames: int,
                    vehicles: int) -> tuple[dict, dict]:
    scenes = [synthetic_scene(SEED + k, n_vehicles=vehicles, clutter=CLUTTER)
              for k in range(frames)]
    rng = np.random.default_rng(SEED)
    out: dict[str, list[float]] = {k: [] for k in ("lidar scan (32x1024) + to_xyzi",
                                                   "camera render (640x360)",
                                                   "sensors (lidar + camera)", "_points")}
    for scene in tqdm(scenes, desc="synthetic frames", leave=False):
        time_sensors(lidar, camera, scene, rng, out)
    info = {"vehicles": int(len(scenes[0].agents)), "statics": int(len(scenes[0].statics)),
            "points_mean": float(np.mean(out.pop("_points")))}
    return {k: summary(v) for k, v in out.items()}, info


def bench_world(lidar: LidarModel, camera: CameraModel, steps: int, warmup_steps: int,
                density: float, scenario: str | None = None) -> tuple[dict, dict]:
    from tps_sim.world import (
        BENCHMARK_SCENARIO,
        EgoControl,
        SimWorld,
        WorldConfig,
    )

    scenario = scenario or BENCHMARK_SCENARIO
    cfg = WorldConfig(scenario=scenario, seed=SEED, density=density,
                      clutter=CLUTTER, ego_driver="expert", duration_s=(steps + warmup_steps + 10)
                      * 0.1)
    world = SimWorld(cfg)
    control = EgoControl(throttle=0.0)
    rng = np.random.default_rng(SEED)
    out: dict[str, list[float]] = {k: [] for k in (
        "world.step (SUMO + ego)", "world.scene3d", "lidar scan (32x1024) + to_xyzi",
        "camera render (640x360)", "sensors (lidar + camera)", "_points")}
    full: list[float] = []
    agents: list[int] = []
    statics = 0
    try:
        state = world.reset()
        for _ in range(warmup_steps):
            state = world.step(control)
        for _ in tqdm(range(steps), desc="world steps", leave=False):
            if world.is_done(state):
                break
            t0 = time.perf_counter()
            state = world.step(control)
            t1 = time.perf_counter()
            scene = world.scene3d(state)
            t2 = time.perf_counter()
            time_sensors(lidar, camera, scene, rng, out)
            t3 = time.perf_counter()
            out["world.step (SUMO + ego)"].append(t1 - t0)
            out["world.scene3d"].append(t2 - t1)
            full.append(t3 - t0)
            agents.append(len(scene.agents))
            statics = len(scene.statics)
    finally:
        world.close()
    out["simulation step (world + scene3d + sensors)"] = full
    info = {"scenario": scenario, "density": density,
            "agents_mean": float(np.mean(agents)), "agents_min": int(np.min(agents)),
            "agents_max": int(np.max(agents)), "statics": int(statics),
            "points_mean": float(np.mean(out.pop("_points")))}
    return {k: summary(v) for k, v in out.items()}, info


def print_table(title: str, rows: dict) -> None:
    print(f"\n{title}")
    print(f"{'component':<46} {'ms median':>10} {'ms p90':>9} {'Hz':>8} {'n':>5}")
    for name, r in rows.items():
        print(f"{name:<46} {r['ms_median']:>10.2f} {r['ms_p90']:>9.2f} {r['hz']:>8.1f} "
              f"{r['n']:>5}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100, help="synthetic frames to time")
    parser.add_argument("--steps", type=int, default=200, help="SimWorld steps to time")
    parser.add_argument("--warmup-steps", type=int, default=20, help="untimed SimWorld steps")
    parser.add_argument("--vehicles", type=int, default=50, help="vehicles in synthetic scenes")
    parser.add_argument("--density", type=float, default=WORLD_DENSITY,
                        help="SimWorld traffic density (1.0: ~50 vehicles on the highway)")
    parser.add_argument("--core", type=int, default=None,
                        help="CPU core to pin to (default: the first allowed one)")
    parser.add_argument("--no-world", action="store_true", help="skip the SUMO rows")
    parser.add_argument("--scenario", default=None,
                        help="SimWorld scenario of the world rows (default: the benchmark's highway)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="JSON output path")
    args = parser.parse_args(argv)

    core = args.core if args.core is not None else min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {core})
    cv2.setNumThreads(1)
    numba.set_num_threads(1)
    load_start = os.getloadavg()

    lidar = LidarModel(LidarParams())
    camera = CameraModel(CameraParams())
    t = time.perf_counter()
    lidar.warm_up()
    camera.warm_up()
    warm_up_s = time.perf_counter() - t
    # One untimed frame so first-call allocations are not timed either.
    time_sensors(lidar, camera, synthetic_scene(SEED, args.vehicles, CLUTTER),
                 np.random.default_rng(0), {k: [] for k in (
                     "lidar scan (32x1024) + to_xyzi", "camera render (640x360)",
                     "sensors (lidar + camera)", "_points")})

    conditions = {
        "cpu": cpu_model(), "pinned_core": core, "threads": 1, "python": sys.version.split()[0],
        "numpy": np.__version__, "numba": numba.__version__, "opencv": cv2.__version__,
        "numba_warm_up_s": round(warm_up_s, 3), "load_avg_start": [round(v, 2) for v in load_start],
        "lidar": {"beams": lidar.params.beams, "azimuth_steps": lidar.params.azimuth_steps,
                  "range_noise_sigma_m": lidar.params.range_noise_sigma_m,
                  "dropout_prob": lidar.params.dropout_prob},
        "camera": {"width": camera.params.width, "height": camera.params.height},
        "clutter": CLUTTER,
    }
    print(f"Simulation benchmark: one core (#{core}, {conditions['cpu']}), 1 thread per pool; "
          f"numba warmed up before timing ({warm_up_s:.2f} s incl. compile/cache load); "
          f"load average at start {load_start[0]:.2f} (shared machine: numbers are noisy).")

    synthetic_rows, synthetic_info = bench_synthetic(lidar, camera, args.frames, args.vehicles)
    print_table(f"synthetic scenes: {synthetic_info['vehicles']} vehicles, "
                f"{synthetic_info['statics']} clutter objects ({CLUTTER}), "
                f"{synthetic_info['points_mean']:.0f} points/frame mean, {args.frames} frames",
                synthetic_rows)
    result = {"conditions": conditions,
              "synthetic": {"info": synthetic_info, "rows": synthetic_rows}}
    if not args.no_world:
        world_rows, world_info = bench_world(lidar, camera, args.steps, args.warmup_steps,
                                             args.density, args.scenario)
        print_table(f"SimWorld {world_info['scenario']} density {world_info['density']}: "
                    f"{world_info['agents_mean']:.0f} agents (min {world_info['agents_min']}, "
                    f"max {world_info['agents_max']}), {world_info['statics']} clutter objects, "
                    f"{world_info['points_mean']:.0f} points/frame mean", world_rows)
        result["world"] = {"info": world_info, "rows": world_rows}
    sensor_hz = synthetic_rows["sensors (lidar + camera)"]["hz"]
    result["target"] = {"sensor_hz": TARGET_SENSOR_HZ, "synthetic_sensor_hz": sensor_hz,
                        "met": bool(sensor_hz >= TARGET_SENSOR_HZ)}
    conditions["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print(f"\nTarget: sensors >= {TARGET_SENSOR_HZ:.0f} Hz on one core (lidar 32x1024 + camera, "
          f"{args.vehicles} vehicles, clutter {CLUTTER}): {sensor_hz:.1f} Hz -> "
          f"{'met' if result['target']['met'] else 'NOT met'}. "
          f"Load average at end {conditions['load_avg_end'][0]:.2f}.")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
