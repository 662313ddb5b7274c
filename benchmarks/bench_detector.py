"""Detector latency: preprocess + network + postprocess for one 32 x 1024 lidar frame.

torch eager vs ONNX Runtime FP32 vs ONNX Runtime INT8 (static QDQ), side by side, with the
shipped model (models/detector), ``threads`` intra-op threads (2 by default, the target
machine's cores). The frame is a real simulated one: a VAL-split episode from the dataset
generator (32 beams x 1024 azimuth steps; only rays that hit something return a point).
Postprocess = decode (sigmoid, 3x3 max-pool peaks, top-k, circle NMS) + tracker update.

Prints a table and writes benchmarks/results/detector.json (median and p90 per stage, ms).
The backends run round-robin (one frame each per round) so that a shared host's load hits them
alike; the machine load is recorded too: on a shared host the numbers are noisy.

    python benchmarks/bench_detector.py [--iters 50] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "detector.json"
SCENE = ("cut_in", 1002, 8.0)  # VAL seed; the frame used is the last one
BACKENDS = ("torch", "onnxruntime", "onnxruntime-int8")


def real_frame():
    from tps_eval.detector.data import episode_frames
    from tps_sim.dataset import generate_episode

    with tempfile.TemporaryDirectory() as tmp:
        path = generate_episode(SCENE[0], SCENE[1], tmp, duration_s=SCENE[2], frame_stride=1, image_every=0)
        frames = list(episode_frames(path))
    return frames[-1]


def stats(values: list[float]) -> dict:
    a = np.asarray(values)
    return {"median": float(np.median(a)), "p90": float(np.percentile(a, 90)), "mean": float(a.mean())}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--model-dir", type=Path, default=REPO / "models" / "detector")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    from tps_perception.backends import load_meta, make_backend
    from tps_perception.detector import Detector, DetectorParams

    frame = real_frame()
    meta = load_meta(args.model_dir)
    load_before = os.getloadavg()
    rows = {}
    detectors = {}
    for name in BACKENDS:
        try:
            detectors[name] = Detector(DetectorParams.from_meta(meta), make_backend(name, args.model_dir, args.threads))
        except (FileNotFoundError, ValueError) as exc:
            rows[name] = {"skipped": str(exc)}
    # Round-robin over the backends, one frame each per round: on a shared host the load then
    # hits every backend alike, so the side-by-side comparison stays fair.
    samples = {name: {"pre": [], "net": [], "post": [], "tot": []} for name in detectors}
    last = {}
    for k in range(args.warmup + args.iters):
        for name, det in detectors.items():
            res = det.run(frame.points, frame.t_s + 0.1 * k, frame.ego_pose)
            last[name] = res
            if k >= args.warmup:
                sm = samples[name]
                sm["pre"].append(res.preprocess_ms)
                sm["net"].append(res.network_ms)
                sm["post"].append(res.postprocess_ms)
                sm["tot"].append(res.total_ms)
    for name, sm in samples.items():
        rows[name] = {"preprocess_ms": stats(sm["pre"]), "network_ms": stats(sm["net"]),
                      "postprocess_ms": stats(sm["post"]), "total_ms": stats(sm["tot"]),
                      "detections": len(last[name].detections)}
    rows = {name: rows[name] for name in BACKENDS if name in rows}
    load_after = os.getloadavg()
    import onnxruntime
    import torch

    conditions = {
        "frame": f"{SCENE[0]} seed {SCENE[1]} (VAL), last frame at {frame.t_s:.1f} s, clutter {frame.clutter}",
        "points": int(len(frame.points)), "lidar": "32 beams x 1024 azimuth steps (returns only)",
        "threads": args.threads, "iters": args.iters, "warmup": args.warmup,
        "cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
        "loadavg_before": load_before, "loadavg_after": load_after,
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "note": "shared 2-core host (other engineers' jobs running): noisy; compare rows of one run only",
    }
    print(f"detector latency, ms ({conditions['points']} points, threads={args.threads}, "
          f"load avg {load_before[0]:.1f} -> {load_after[0]:.1f})")
    head = f"{'backend':<18}{'pre med':>9}{'net med':>9}{'post med':>9}{'total med':>11}{'total p90':>11}"
    print(head)
    print("-" * len(head))
    for name, r in rows.items():
        if "skipped" in r:
            print(f"{name:<18}skipped: {r['skipped']}")
            continue
        print(f"{name:<18}{r['preprocess_ms']['median']:>9.2f}{r['network_ms']['median']:>9.2f}"
              f"{r['postprocess_ms']['median']:>9.2f}{r['total_ms']['median']:>11.2f}{r['total_ms']['p90']:>11.2f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"conditions": conditions, "results": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
