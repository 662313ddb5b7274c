"""Per-cycle compute time of the tps_planner cores: fallback planner, arbiter, controller.

Inputs are what the nodes see in the closed loop: lidar scans of a ``tps_sim.sensors`` synthetic
scene (32 x 1024 rays, 50 vehicles, medium clutter, straight 4-lane road) played as a sequence --
the vehicles drive along their lanes at 20 m/s and the ego at 20 m/s, so the fallback's object
tracks live from frame to frame as on the road --, the fallback's own trajectories for the
arbiter (blending from a planner candidate, the costliest path) and the controller (pure pursuit
and Stanley). The fallback runs as in the closed loop, with a lane map of the road (occupancy
clustering and tracking, lanes, gap checks), and for comparison without one (the route only).
Only the core ``update`` is timed (time.perf_counter), not message conversion or DDS. The first
``--warmup`` cycles are dropped. The 1-minute load average before and after is recorded: on a
shared host the figures are only as good as the load they were taken under.

Run:  .venv/bin/python benchmarks/bench_planner.py [--frames 200] [--warmup 10]
Writes benchmarks/results/planner.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from tps_common.stamp_sync import EgoPose
from tps_planner.arbiter import ArbiterParams, TrajectoryArbiter
from tps_planner.controller import Controller, ControllerParams
from tps_planner.fallback import FallbackParams, FallbackPlanner
from tps_planner.lane_map import LaneMap, MapLane
from tps_planner.trajectory import SOURCE_PLANNER, STATE_FALLBACK, STATE_NOMINAL, retime
from tps_sim.sensors.lidar import LidarModel, to_xyzi
from tps_sim.sensors.synthetic import synthetic_scene

DT_S = 0.1
SPEED_MPS = 20.0
RESULTS = Path(__file__).resolve().parent / "results" / "planner.json"
LANES, LANE_WIDTH_M, ROAD_LENGTH_M = 4, 3.5, 400.0


def lane_map(ego_y: float) -> LaneMap:
    """The synthetic road's four lanes (all along +x for the map), the route in the ego's."""
    ys = -LANES * LANE_WIDTH_M / 2 + LANE_WIDTH_M * (np.arange(LANES) + 0.5)
    lanes = []
    for k, y in enumerate(ys):
        left = f"l{k + 1}" if k + 1 < LANES else ""
        right = f"l{k - 1}" if k > 0 else ""
        lanes.append(MapLane(f"l{k}", np.array([[-ROAD_LENGTH_M, y], [ROAD_LENGTH_M, y]]), LANE_WIDTH_M, 25.0,
                             left_id=left, right_id=right, can_change_left=bool(left),
                             can_change_right=bool(right)))
    ego_lane = f"l{int(np.argmin(np.abs(ys - ego_y)))}"
    return LaneMap(tuple(lanes), (ego_lane,))


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
    base = synthetic_scene(0, n_vehicles=50, clutter="medium", length_m=ROAD_LENGTH_M)
    ego_x0, ego_y, _ = base.ego_pose
    heading = np.where(np.cos(base.agents.yaws) >= 0.0, 1.0, -1.0)
    load_before = os.getloadavg()[0]
    scans, n_points = [], []
    for k in range(args.warmup + args.frames):
        t = k * DT_S
        centers = base.agents.centers.copy()
        centers[:, 0] += heading * SPEED_MPS * t
        agents = replace(base.agents, centers=centers)
        ego = (ego_x0 + SPEED_MPS * t, ego_y, 0.0)
        scene = replace(base, agents=agents, ego_pose=ego, time_s=t)
        pts = to_xyzi(lidar.scan(scene, np.random.default_rng(k)))
        scans.append((ego, pts))
        n_points.append(len(pts))
    route = np.stack([np.arange(-ROAD_LENGTH_M, ROAD_LENGTH_M, 2.0), np.full(int(ROAD_LENGTH_M), ego_y)], axis=1)

    fb = FallbackPlanner(FallbackParams(require_lane_map=True))
    fb.set_route(route)
    fb.set_lane_map(lane_map(ego_y))
    fb_plain = FallbackPlanner()
    fb_plain.set_route(route)
    arb = TrajectoryArbiter(ArbiterParams(blend_window_s=1e6))   # always blending: the costly path
    ctl = {m: Controller(ControllerParams(lateral_mode=m)) for m in ("pure_pursuit", "stanley")}
    times = {"fallback_update": [], "fallback_update_no_map": [], "arbiter_update_blend": [],
             "controller_pure_pursuit": [], "controller_stanley": []}
    objects = []
    for k in range(args.warmup + args.frames):
        t = k * DT_S
        (x, y, yaw), pts = scans[k]
        pose = EgoPose(t, x, y, yaw, SPEED_MPS)
        t0 = time.perf_counter()
        res = fb.update(pts, t, pose, None)
        t_fb = time.perf_counter() - t0
        t0 = time.perf_counter()
        fb_plain.update(pts, t, pose, None)
        t_plain = time.perf_counter() - t0
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
            times["fallback_update_no_map"].append(t_plain)
            times["arbiter_update_blend"].append(t_arb)
            times["controller_pure_pursuit"].append(t_ctl["pure_pursuit"])
            times["controller_stanley"].append(t_ctl["stanley"])
            objects.append(len(res.objects))
    load_after = os.getloadavg()[0]

    stats = {name: _stats(v) for name, v in times.items()}
    cond = {"host": platform.node(), "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__, "frames": args.frames, "warmup": args.warmup,
            "lidar_points_per_frame_mean": float(np.mean(n_points)),
            "tracked_objects_per_frame_mean": float(np.mean(objects)),
            "load_avg_1min_before": round(load_before, 2), "load_avg_1min_after": round(load_after, 2),
            "note": "shared 2-core host: noisy (see the load averages); core update only (no DDS)"}
    print(f"tps_planner core cycle time ({args.frames} cycles, {np.mean(n_points):.0f} lidar points/frame, "
          f"{np.mean(objects):.0f} tracked objects/frame, {os.cpu_count()} CPUs shared, load average "
          f"{load_before:.2f} before / {load_after:.2f} after)")
    print(f"{'component':<26}{'mean ms':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}")
    for name, s in stats.items():
        print(f"{name:<26}{s['mean_ms']:>9.2f}{s['p50_ms']:>9.2f}{s['p99_ms']:>9.2f}{s['max_ms']:>9.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"conditions": cond, "results": stats}, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
