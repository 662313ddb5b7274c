"""PointCloud2 <-> numpy conversion benchmark (tps_inference.conversions vs a per-point loop).

The cloud is what a real spinning lidar driver publishes: 131,072 points, x/y/z/intensity float32
at offsets 0..12, ring uint16 at 16, 6 bytes of padding, time float64 at 24, point_step 32
(4 MiB of input). It goes through a real rosbag2/DDS (CDR) serialise -> deserialise round trip
first, so ``msg.data`` is the ``array.array`` a subscriber really receives.

Forward: -> contiguous float32 (N, 4) x, y, z, intensity.
  ours: ``pointcloud2_to_xyzi(msg)`` (also on the same cloud big-endian, the general path);  loop: ``struct.unpack_from('<ffff', data, i * 32)`` per
  point into a list, then ``np.array(..., float32)`` -- on the whole cloud unless
  ``--loop-points`` is smaller (then timed on a prefix and extrapolated per point; the table says so).
Reverse: numpy -> PointCloud2.
  ours: ``array_to_pointcloud2(structured)`` and ``xyzi_to_pointcloud2((N, 4))``;  loop:
  ``struct.pack_into`` per point into a bytearray, then ``msg.data = array.array('B', buf)``.
Also: the cost of filling ``msg.data`` from a list, bytes and array.array (why we never use a list).

"ours" is timed twice: warm (the same message again and again, so its 4 MiB may sit in the CPU
cache) and cold (64 MiB rewritten before each run). The JSON's ours_gbps/speedup are the warm
figures; ours_cold_gbps/speedup_cold the cold ones. Every number is the median of ``--repeats`` runs (time.perf_counter). GB/s counts input bytes
(forward: the 4 MiB message payload; reverse: the same 4 MiB produced), 1 GB = 1e9 bytes.

Run:  .venv/bin/python benchmarks/bench_conversions.py [--repeats 30] [--loop-points 131072]
Writes benchmarks/results/conversions.json.
"""

from __future__ import annotations

import argparse
import array
import json
import os
import platform
import statistics
import struct
import sys
import time
from pathlib import Path

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import PointCloud2
from tps_inference.conversions import (
    array_to_pointcloud2,
    pointcloud2_to_array,
    pointcloud2_to_xyzi,
    xyzi_to_pointcloud2,
)

N_POINTS = 131_072
POINT_STEP = 32
SEED = 0
RESULTS = Path(__file__).resolve().parent / "results" / "conversions.json"
TARGET_GBPS = 1.0
TARGET_SPEEDUP = 100.0

LIDAR_DTYPE = np.dtype({
    "names": ["x", "y", "z", "intensity", "ring", "time"],
    "formats": ["<f4", "<f4", "<f4", "<f4", "<u2", "<f8"],
    "offsets": [0, 4, 8, 12, 16, 24],
    "itemsize": POINT_STEP,
})


def make_cloud(n: int, seed: int) -> np.ndarray:
    """A deterministic lidar-like structured cloud (metres, intensity 0..255, 32 rings, 0.1 s sweep)."""
    rng = np.random.default_rng(seed)
    cloud = np.zeros(n, dtype=LIDAR_DTYPE)
    r = rng.uniform(1.0, 80.0, n)
    az = rng.uniform(-np.pi, np.pi, n)
    cloud["x"], cloud["y"] = r * np.cos(az), r * np.sin(az)
    cloud["z"] = rng.uniform(-1.8, 3.0, n)
    cloud["intensity"] = rng.uniform(0.0, 255.0, n)
    cloud["ring"] = rng.integers(0, 32, n)
    cloud["time"] = np.sort(rng.uniform(0.0, 0.1, n))
    return cloud


_SCRATCH = np.zeros(64 << 20, dtype=np.uint8)  # bigger than any L3 cache here


def median_time_s(fn, repeats: int, cold: bool = False) -> float:
    """Median wall time of ``fn()``; ``cold`` rewrites 64 MiB first (untimed) to evict the caches."""
    times = []
    for _ in range(repeats):
        if cold:
            np.add(_SCRATCH, 1, out=_SCRATCH)
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def loop_to_xyzi(msg: PointCloud2, n_points: int) -> np.ndarray:
    """The straightforward per-point reference: struct.unpack each point's 16 leading bytes."""
    data = bytes(msg.data)  # what a loop author would do first (included in the timing)
    step = msg.point_step
    unpack = struct.Struct("<ffff").unpack_from
    rows = [unpack(data, i * step) for i in range(n_points)]
    return np.array(rows, dtype=np.float32)


def loop_to_cloud(cloud: np.ndarray, n_points: int) -> PointCloud2:
    """Per-point reference for the reverse direction."""
    buf = bytearray(n_points * POINT_STEP)
    pack = struct.Struct("<ffffH6xd").pack_into
    for i in range(n_points):
        p = cloud[i]
        pack(buf, i * POINT_STEP, float(p["x"]), float(p["y"]), float(p["z"]), float(p["intensity"]),
             int(p["ring"]), float(p["time"]))
    msg = PointCloud2()
    msg.data = array.array("B", buf)
    return msg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=30, help="timed runs of the vectorised paths (median)")
    ap.add_argument("--loop-repeats", type=int, default=3, help="timed runs of the per-point loops (median)")
    ap.add_argument("--loop-points", type=int, default=N_POINTS, help="points the loops run over (<= N)")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    n_loop = min(args.loop_points, N_POINTS)

    cloud = make_cloud(N_POINTS, SEED)
    msg = deserialize_message(serialize_message(array_to_pointcloud2(cloud, frame_id="lidar")), PointCloud2)
    in_bytes = len(msg.data)
    assert isinstance(msg.data, array.array) and in_bytes == N_POINTS * POINT_STEP

    # Correctness first: both paths must agree exactly (same float32 values).
    ours = pointcloud2_to_xyzi(msg)
    ref = loop_to_xyzi(msg, n_loop)
    if not (ours.flags.c_contiguous and ours.dtype == np.float32 and ours.shape == (N_POINTS, 4)):
        raise SystemExit(f"pointcloud2_to_xyzi returned {ours.dtype} {ours.shape}")
    if not np.array_equal(ours[:n_loop], ref):
        raise SystemExit("pointcloud2_to_xyzi disagrees with the struct.unpack loop")
    back = loop_to_cloud(cloud, min(n_loop, 1024))
    if bytes(back.data) != bytes(array_to_pointcloud2(cloud[:1024]).data)[: len(back.data)]:
        raise SystemExit("array_to_pointcloud2 bytes disagree with struct.pack_into")

    # The same cloud big-endian: exercises the general path (per-column cast + byte swap).
    msg_be = deserialize_message(serialize_message(array_to_pointcloud2(cloud, is_bigendian=True)), PointCloud2)
    if not np.array_equal(pointcloud2_to_xyzi(msg_be), ours):
        raise SystemExit("big-endian conversion disagrees")
    xyzi = np.ascontiguousarray(ours)
    scale = N_POINTS / n_loop
    t = {
        "ours_xyzi": median_time_s(lambda: pointcloud2_to_xyzi(msg), args.repeats),
        "ours_xyzi_cold": median_time_s(lambda: pointcloud2_to_xyzi(msg), args.repeats, cold=True),
        "ours_xyzi_bigendian": median_time_s(lambda: pointcloud2_to_xyzi(msg_be), args.repeats),
        "ours_view": median_time_s(lambda: pointcloud2_to_array(msg), args.repeats),
        "loop_xyzi": median_time_s(lambda: loop_to_xyzi(msg, n_loop), args.loop_repeats) * scale,
        "ours_from_struct": median_time_s(lambda: array_to_pointcloud2(cloud), args.repeats),
        "ours_from_xyzi": median_time_s(lambda: xyzi_to_pointcloud2(xyzi), args.repeats),
        "loop_from_struct": median_time_s(lambda: loop_to_cloud(cloud, n_loop), args.loop_repeats) * scale,
    }
    payload = bytes(msg.data)
    as_array = array.array("B", payload)
    as_list = list(payload)
    probe = PointCloud2()

    def assign(value):
        probe.data = value

    t["assign_array"] = median_time_s(lambda: assign(as_array), args.repeats)
    t["assign_bytes"] = median_time_s(lambda: assign(payload), max(1, args.loop_repeats))
    t["assign_list"] = median_time_s(lambda: assign(as_list), max(1, args.loop_repeats))

    def row(label, key, nbytes=in_bytes, extrap=False):
        s = t[key]
        return label, s * 1e3, N_POINTS / s / 1e6, nbytes / s / 1e9, extrap

    rows = [
        row("PointCloud2 -> (N,4) f32   ours pointcloud2_to_xyzi", "ours_xyzi"),
        row("PointCloud2 -> (N,4) f32   ours, cold caches", "ours_xyzi_cold"),
        row("PointCloud2 -> (N,4) f32   ours, big-endian (general path)", "ours_xyzi_bigendian"),
        row("PointCloud2 -> (N,4) f32   loop struct.unpack", "loop_xyzi", extrap=n_loop < N_POINTS),
        row("PointCloud2 -> structured  ours pointcloud2_to_array (view)", "ours_view"),
        row("structured -> PointCloud2  ours array_to_pointcloud2", "ours_from_struct"),
        row("(N,4) f32  -> PointCloud2  ours xyzi_to_pointcloud2 (16 B/pt)", "ours_from_xyzi", N_POINTS * 16),
        row("structured -> PointCloud2  loop struct.pack_into", "loop_from_struct", extrap=n_loop < N_POINTS),
        row("msg.data = array.array('B')  (4 MiB)", "assign_array"),
        row("msg.data = bytes             (4 MiB)", "assign_bytes"),
        row("msg.data = list[int]         (4 MiB)", "assign_list"),
    ]
    speedup = t["loop_xyzi"] / t["ours_xyzi"]
    rev_speedup = t["loop_from_struct"] / t["ours_from_struct"]
    load = os.getloadavg()
    conditions = (f"{N_POINTS} points, point_step {POINT_STEP}, {in_bytes} B input; {os.cpu_count()} CPUs, load avg "
                  f"{load[0]:.2f}/{load[1]:.2f}; Python {platform.python_version()}, numpy {np.__version__}; "
                  f"median of {args.repeats} (loops: {args.loop_repeats}) runs; loop over {n_loop} points"
                  f"{' (extrapolated per point)' if n_loop < N_POINTS else ' (whole cloud)'}")
    print(f"\nConversion benchmark -- {conditions}\n")
    print(f"| {'path':62s} | {'median ms':>10s} | {'Mpoints/s':>10s} | {'GB/s':>8s} |")
    print(f"|{'-' * 64}|{'-' * 12}|{'-' * 12}|{'-' * 10}|")
    for label, ms, mpts, gbps, extrap in rows:
        print(f"| {label + (' *' if extrap else ''):62s} | {ms:10.3f} | {mpts:10.2f} | {gbps:8.3f} |")
    if n_loop < N_POINTS:
        print(f"* timed on the first {n_loop} points and extrapolated per point")
    ours_gbps, loop_gbps = in_bytes / t["ours_xyzi"] / 1e9, in_bytes / t["loop_xyzi"] / 1e9
    print(f"\nforward speed-up vs loop: {speedup:.0f}x (target >= {TARGET_SPEEDUP:.0f}x); "
          f"ours {ours_gbps:.2f} GB/s (target >= {TARGET_GBPS} GB/s)")
    print(f"reverse speed-up vs loop: {rev_speedup:.0f}x")

    result = {
        "benchmark": "bench_conversions",
        "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "conditions": conditions,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "n_points": N_POINTS,
        "point_step": POINT_STEP,
        "input_bytes": in_bytes,
        "repeats": args.repeats,
        "loop_repeats": args.loop_repeats,
        "loop_points": n_loop,
        "loop_extrapolated": n_loop < N_POINTS,
        "ours_gbps": ours_gbps,
        "loop_gbps": loop_gbps,
        "speedup": speedup,
        "ours_ms": t["ours_xyzi"] * 1e3,
        "ours_cold_ms": t["ours_xyzi_cold"] * 1e3,
        "ours_cold_gbps": in_bytes / t["ours_xyzi_cold"] / 1e9,
        "speedup_cold": t["loop_xyzi"] / t["ours_xyzi_cold"],
        "loop_ms": t["loop_xyzi"] * 1e3,
        "ours_points_per_s": N_POINTS / t["ours_xyzi"],
        "loop_points_per_s": N_POINTS / t["loop_xyzi"],
        "bigendian_ms": t["ours_xyzi_bigendian"] * 1e3,
        "bigendian_gbps": in_bytes / t["ours_xyzi_bigendian"] / 1e9,
        "view_ms": t["ours_view"] * 1e3,
        "reverse_ours_gbps": in_bytes / t["ours_from_struct"] / 1e9,
        "reverse_ours_ms": t["ours_from_struct"] * 1e3,
        "reverse_xyzi_ms": t["ours_from_xyzi"] * 1e3,
        "reverse_loop_gbps": in_bytes / t["loop_from_struct"] / 1e9,
        "reverse_loop_ms": t["loop_from_struct"] * 1e3,
        "reverse_speedup": rev_speedup,
        "assign_data_ms": {"array.array": t["assign_array"] * 1e3, "bytes": t["assign_bytes"] * 1e3,
                           "list": t["assign_list"] * 1e3},
        "targets": {"ours_gbps": TARGET_GBPS, "speedup": TARGET_SPEEDUP},
        "meets_targets": bool(ours_gbps >= TARGET_GBPS and speedup >= TARGET_SPEEDUP),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
