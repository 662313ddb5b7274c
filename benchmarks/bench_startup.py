"""Node start-up time: process start -> the node's "ready" log line, median over repeated runs.

    .venv/bin/python benchmarks/bench_startup.py [--runs 7] [--repo DIR]

``--repo`` measures another checkout with its own ``.venv`` (e.g. a clone of an older commit),
so two trees can be compared side by side in one run on the same machine load: the runs of the
trees are interleaved. Prints a table and writes ``benchmarks/results/startup.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "startup.json"
# (executable, its parameter file, the log text that says it is ready)
NODES = [("perception_node", "config/perception_node.param.yaml", "perception ready")]
READY_TIMEOUT_S = 60.0
DOMAIN_ID = "98"   # away from the test sessions' and evaluations' domains


def start_time_s(repo: Path, executable: str, params: str, ready: str) -> float:
    """Seconds from spawning the node's console script until its ready line appears."""
    env = dict(os.environ, ROS_DOMAIN_ID=DOMAIN_ID, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST",
               TPS_ROOT=str(repo))
    env.pop("_ROS_WHEELS_BOOTSTRAP_COMPLETE", None)
    t0 = time.monotonic()
    proc = subprocess.Popen([str(repo / ".venv" / "bin" / executable), "--ros-args", "--params-file",
                             str(repo / params)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, cwd=repo)
    try:
        for line in proc.stdout:
            if ready in line:
                return time.monotonic() - t0
            if time.monotonic() - t0 > READY_TIMEOUT_S:
                break
        raise RuntimeError(f"{executable} in {repo} never printed {ready!r}")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--repo", action="append", default=[], help="another checkout to measure too")
    args = ap.parse_args(argv)
    repos = [ROOT] + [Path(r).resolve() for r in args.repo]
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.runs):
        for repo in repos:               # interleaved: both trees see the same load
            for exe, params, ready in NODES:
                times.setdefault((str(repo), exe), []).append(start_time_s(repo, exe, params, ready))
    load = os.getloadavg()[0]
    print(f"node start-up (spawn -> ready line), {args.runs} runs each, load average {load:.2f}, "
          f"{os.cpu_count()} CPUs")
    print(f"{'tree':40s} {'node':18s} {'median s':>9s} {'min s':>7s} {'max s':>7s}")
    rows = []
    for (repo, exe), ts in times.items():
        row = {"tree": repo, "node": exe, "median_s": statistics.median(ts), "min_s": min(ts),
               "max_s": max(ts), "runs": ts}
        rows.append(row)
        print(f"{repo[-40:]:40s} {exe:18s} {row['median_s']:9.2f} {row['min_s']:7.2f} {row['max_s']:7.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"load_average": load, "cpus": os.cpu_count(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
