"""Per-cycle compute time of the tps_planner cores: fallback planner, arbiter, controller.

Inputs are what the nodes see in the closed loop: lidar scans of ``tps_sim.sensors`` synthetic
scenes (32 x 1024 rays, 50 vehicles, medium clutter, straight 4-lane road; one scene per seed),
the fallback's own trajectories for the arbiter (blending from a planner candidate, the costliest
path) and the controller (pure pursuit and Stanley). Only the core ``update`` is timed
(time.perf_counter), not message conversion or DDS. The first ``--warmup`` cycles are dropped.

Run:  .venv/bin/python benchmarks/bench_planner.py [--frames 200] [--warmup 10]
Writes benchmarks/results/planner.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
from tps_common.stamp_sync import EgoPose
from tps_planner.arbiter import ArbiterParams, TrajectoryArbiter
from tps_planner.controller import Controller, ControllerParams
from tps_planner.fallback import FallbackPlanner
from tps_planner.trajectory import SOURCE_PLANNER, STATE_FALLBACK, STATE_NOMINAL, retime
from tps_sim.sensors.lidar import LidarModel, to_xyzi
from tps_sim.sensors.synthetic import synthetic_scene

DT_S = 0.1
N_SCENES = 10
RESULTS = Path(__file__).resolve().parent / "results" / "planner.json"


def _stats(samples_s: list[float]) -> dict:
    ms = np.asarray(samples_s) * 1e3
    return {"n": int(len(ms)), "mean_ms": float(ms.mean()), "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=200, help="timed cycles per component")
    ap.add_argument("--warmup", type=int, default=10, help="untimed cycles first")
    args = ap.parse_args()

    lidar = LidarModel()
    scans, n_points = [], []
    for seed in range(N_SCENES):
        scene = synthetic_scene(seed, n_vehicles=50, clutter="medium")
        pts = to_xyzi(lidar.scan(scene, np.random.default_rng(seed)))
        scans.append((scene.ego_pose, pts))
        n_points.append(len(pts))
    ego_y = scans[0][0][1]
    route = np.stack([np.arange(-190.0, 190.0, 2.0), np.full(190, ego_y)], axis=1)

    fb = FallbackPlanner()
    fb.set_route(route)
    arb = TrajectoryArbiter(ArbiterParams(blend_window_s=1e6))   # always blending: the costly path
    ctl = {m: Controller(ControllerParams(lateral_mode=m)) for m in ("pure_pursuit", "stanley")}
    times = {"fallback_update": [], "arbiter_update_blend": [], "controller_pure_pursuit": [],
             "controller_stanley": []}
    speed = 10.0
    for k in range(args.warmup + args.frames):
        t = k * DT_S
        (x, y, yaw), pts = scans[k % N_SCENES]
        pose = EgoPose(t, x, y, yaw, speed)
        t0 = time.perf_counter()
        res = fb.update(pts, t, pose, None)
        t_fb = time.perf_counter() - t0
        cand = retime(res.trajectory, t)
        cand = cand.__class__(**{**cand.__dict__, "source": SOURCE_PLANNER, "xy": cand.xy + [0.0, 0.5]})
        arb.on_candidate(cand, t)
        arb.on_monitor(STATE_NOMINAL if k < args.warmup else STATE_FALLBACK, t)
        t0 = time.perf_counter()
        sel = arb.update(res.trajectory, t)
        t_arb = time.perf_counter() - t0
        t_ctl = {}
        for mode, c in ctl.items():
            t0 = time.perf_counter()
            c.update(sel.trajectory, pose, t)
            t_ctl[mode] = time.perf_counter() - t0
        if k >= args.warmup:
            times["fallback_update"].append(t_fb)
            times["arbiter_update_blend"].append(t_arb)
            times["controller_pure_pursuit"].append(t_ctl["pure_pursuit"])
            times["controller_stanley"].append(t_ctl["stanley"])

    stats = {name: _stats(v) for name, v in times.items()}
    cond = {"host": platform.node(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "frames": args.frames, "warmup": args.warmup,
            "lidar_points_per_frame_mean": float(np.mean(n_points)),
            "note": "shared 2-core host with other jobs running: noisy; core update only (no DDS)"}
    print(f"tps_planner core cycle time ({args.frames} cycles, {np.mean(n_points):.0f} lidar points/frame, "
          f"{os.cpu_count()} CPUs shared)")
    print(f"{'component':<26}{'mean ms':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, s in stats.items():
        print(f"{name:<26}{s['mean_ms']:>9.2f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}{s['max_ms']:>9.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"conditions": cond, "results": stats}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
