"""Cost of the simulator bridge per step, and the closed-loop step rate over real DDS.

Part 1 (in-process, no DDS): the bridge core (``tps_sim.bridge.SimBridge``) in expert mode on
scenario ``--scenario`` / ``--seed``, lidar 32 x 1024, camera off (the closed-loop default):
  core.poll   world step + scene3d + lidar scan + faults + episode-log row
  messages    ``conversions.frame_messages`` (all messages of one step)
  serialize   ``rclpy.serialization.serialize_message`` of those messages (what DDS / a bag does)
Part 2 (DDS): ``sim_bridge`` as a subprocess in synchronous mode and a minimal controller in this
process that answers every /clock with a control; ``--dds-steps`` steps. Reported: steps per
second of wall time (after the first control), and the e2e latency the bridge logs (sensor
publication -> control receipt), p50 / p90 / p99.

Conditions: the machine is shared (2 cores, other jobs running): numbers are noisy; the load
average at start and end is printed and stored. Nothing is pinned; numba is warmed up by an
untimed first step.

Run:  .venv/bin/python benchmarks/bench_bridge.py [--steps 100] [--dds-steps 200]
Writes benchmarks/results/bridge.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "bridge.json"
VENV_BIN = Path(sys.executable).parent
ROS_DOMAIN_ID = "55"
DDS_SYNC_TIMEOUT_S = 5.0


def stats_ms(samples_s: list[float]) -> dict:
    a = np.asarray(samples_s) * 1e3
    return {"median_ms": float(np.median(a)), "p90_ms": float(np.percentile(a, 90)),
            "p99_ms": float(np.percentile(a, 99)), "n": int(a.size)}


def bench_in_process(scenario: str, seed: int, steps: int) -> dict:
    from rclpy.serialization import serialize_message
    from tps_sim import conversions as conv
    from tps_sim.bridge import BridgeParams, SimBridge
    from tqdm import tqdm

    core = SimBridge(BridgeParams(scenario=scenario, seed=seed, ego_driver="expert",
                                  step_period_s=0.0, duration_s=(steps + 2) * 0.1))
    t_poll, t_msg, t_ser, n_agents, n_points, n_bytes = [], [], [], [], [], []
    try:
        frame = core.start(0.0)
        frame = core.poll(1.0)  # warm-up (numba compile, caches): untimed
        now = 1.0
        for _ in tqdm(range(steps), desc="in-process", unit="step", file=sys.stderr):
            now += 1.0
            t0 = time.perf_counter()
            frame = core.poll(now)
            t1 = time.perf_counter()
            msgs = conv.frame_messages(frame, scenario, seed)
            t2 = time.perf_counter()
            size = sum(len(serialize_message(m)) for _, m in msgs)
            t3 = time.perf_counter()
            t_poll.append(t1 - t0)
            t_msg.append(t2 - t1)
            t_ser.append(t3 - t2)
            n_agents.append(len(frame.state.agents))
            n_points.append(len(frame.lidar_points))
            n_bytes.append(size)
    finally:
        core.close()
    total = [a + b + c for a, b, c in zip(t_poll, t_msg, t_ser, strict=True)]
    return {"core.poll (world + scene + lidar)": stats_ms(t_poll),
            "frame_messages (build)": stats_ms(t_msg),
            "serialize_message (all topics)": stats_ms(t_ser),
            "total per step": stats_ms(total),
            "agents_mean": float(np.mean(n_agents)), "points_mean": float(np.mean(n_points)),
            "bytes_per_step_mean": float(np.mean(n_bytes))}


def bench_dds(scenario: str, seed: int, steps: int) -> dict:
    import rclpy
    from carla_msgs.msg import CarlaEgoVehicleControl
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from tps_sim.episode_log import load_episode_log

    os.environ.setdefault("ROS_DOMAIN_ID", ROS_DOMAIN_ID)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    tmp = Path(tempfile.mkdtemp(prefix="bench_bridge_"))
    log_path = tmp / "log.npz"
    argv = [str(VENV_BIN / "sim_bridge"), "--ros-args", "-p", f"scenario:={scenario}",
            "-p", f"seed:={seed}", "-p", f"duration_s:={steps * 0.1:.1f}", "-p", "exit_on_end:=true",
            "-p", f"sync_timeout_s:={DDS_SYNC_TIMEOUT_S}", "-p", f"episode_log:={log_path}"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    context = rclpy.Context()
    rclpy.init(context=context)
    first_answer = [None]
    try:
        node = rclpy.create_node("bench_controller", context=context)
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(CarlaEgoVehicleControl, "/carla/ego_vehicle/vehicle_control_cmd", qos)

        def on_clock(msg: Clock) -> None:
            ctrl = CarlaEgoVehicleControl(throttle=0.3)
            ctrl.header.stamp = msg.clock
            pub.publish(ctrl)
            if first_answer[0] is None:
                first_answer[0] = time.monotonic()

        node.create_subscription(Clock, "/clock", on_clock, qos)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + 300.0
        while proc.poll() is None and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
        executor.shutdown()
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    log = load_episode_log(log_path)
    wall = log["wall_time_s"]
    lat = log["e2e_latency_s"][np.isfinite(log["e2e_latency_s"])]
    return {"steps": int(len(wall) - 1), "step_timeouts": int(log["meta"]["step_timeouts"]),
            "steps_per_s": float((len(wall) - 1) / (wall[-1] - wall[0])),
            "e2e_latency": stats_ms(list(lat)), "returncode": proc.returncode}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="highway")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--dds-steps", type=int, default=200)
    args = parser.parse_args(argv)
    load0 = os.getloadavg()
    inproc = bench_in_process(args.scenario, args.seed, args.steps)
    dds = bench_dds(args.scenario, args.seed, args.dds_steps)
    load1 = os.getloadavg()
    print(f"\nbridge cost per step: {args.scenario} seed {args.seed}, lidar 32x1024, camera off, "
          f"{inproc['agents_mean']:.0f} agents, {inproc['points_mean']:.0f} points, "
          f"{inproc['bytes_per_step_mean'] / 1e3:.0f} kB/step serialized")
    print(f"{'component':<36} {'median ms':>10} {'p90 ms':>8} {'p99 ms':>8}")
    for name, row in inproc.items():
        if isinstance(row, dict):
            print(f"{name:<36} {row['median_ms']:>10.2f} {row['p90_ms']:>8.2f} {row['p99_ms']:>8.2f}")
    lat = dds["e2e_latency"]
    print(f"\nclosed loop over DDS (sim_bridge subprocess + minimal controller), {dds['steps']} steps")
    print(f"{'metric':<36} {'value':>10}")
    print(f"{'steps per second (wall)':<36} {dds['steps_per_s']:>10.1f}")
    print(f"{'step timeouts':<36} {dds['step_timeouts']:>10d}")
    print(f"{'e2e latency median ms':<36} {lat['median_ms']:>10.2f}")
    print(f"{'e2e latency p90 ms':<36} {lat['p90_ms']:>10.2f}")
    print(f"{'e2e latency p99 ms':<36} {lat['p99_ms']:>10.2f}")
    print(f"\nload average (1 min) at start {load0[0]:.2f}, at end {load1[0]:.2f}; "
          f"{os.cpu_count()} CPUs, {platform.processor() or platform.machine()}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({
        "scenario": args.scenario, "seed": args.seed, "in_process": inproc, "dds": dds,
        "loadavg_start": load0, "loadavg_end": load1, "cpus": os.cpu_count(),
        "conditions": "shared 2-core machine, not pinned, numba warmed up, camera off",
    }, indent=2) + "\n")
    print(f"wrote {RESULTS}")
    return 0 if dds["returncode"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
