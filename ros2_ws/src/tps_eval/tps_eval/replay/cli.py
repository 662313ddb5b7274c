"""``tps-replay``: play a rosbag2 into the real node graph on sim time and report what it did.

    tps-replay runs/bags/merge.mcap --mode lockstep --out runs/replay/merge
    tps-replay vehicle_bag/ --config config/replay/foreign_lidar_example.yaml --out runs/replay/vehicle
    tps-replay runs/bags/merge.mcap --mode realtime --rate 0.5 --foxglove
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

EXIT_USAGE = 2
EXIT_FAILED = 1

EPILOG = """modes:
  lockstep   each lidar frame waits for the graph's outputs of that frame (deterministic, machine
             speed does not matter; twice the same bag gives the same outputs)
  realtime   messages at their bag times scaled by --rate (1 = real time, 0.5 = half speed): latency
             and drops as on a vehicle

configuration (--config FILE, YAML; none is needed for the simulator's own bags):
  graph, nodes (a subset of the graph), set (tps-bringup overrides), remap (bag topic -> graph
  topic), inputs (roles: lidar, camera, odometry, ground_truth, lane_map, route), play, drop,
  lidar.fields (PointField renames), lidar.frame_id, static_transforms ({parent, child, xyz_rpy}),
  time (clock: bag|header, restamp, non_monotonic: drop|keep), lockstep (timeout_s, give_up_after),
  markers (true: the stack_markers node draws the outputs on /tps/viz/markers).
  Documented in tps_eval/replay/config.py; example: config/replay/foreign_lidar_example.yaml.
  The nodes measured and waited for: config/replay/nodes.yaml (one row per node output).

output (--out DIR, default runs/replay/<bag>-<UTC timestamp>/):
  result.mcap   the graph's outputs (/tps/...), /tf, /tf_static, /diagnostics (--with-inputs: the
                played inputs too); schemas embedded (Foxglove, mcap-ros2-support, ros2 bag)
  report.json   frames, latency_ms and dropped per node, processing_ms, unreadable, input,
                monitor_state_share, fallback_share, open_loop (L2 / collision at 1-3 s),
                detections, vs_logged_run, run
  report.md     the same as tables; timeline.png, latency.png, bev_<k>.png
  graph.log     the nodes' output

exit status: 0 done, 1 the replay failed (graph did not start, no frame), 2 bad arguments or
configuration."""


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tps-replay", description=__doc__.split("\n\n")[0],
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("bag", help="rosbag2: an .mcap file or a rosbag2 directory (mcap or sqlite3)")
    ap.add_argument("--mode", choices=("lockstep", "realtime"), default="lockstep")
    ap.add_argument("--rate", type=float, default=1.0, help="realtime: playback rate factor (default 1)")
    ap.add_argument("--config", default=None, help="replay configuration (YAML), see below")
    ap.add_argument("--graph", default=None, help="graph file (overrides the configuration's)")
    ap.add_argument("--nodes", default=None, help="comma-separated subset of the graph's nodes")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra tps-bringup graph override (repeatable)")
    ap.add_argument("--out", default=None, help="output directory")
    ap.add_argument("--foxglove", nargs="?", const=8765, type=int, default=None, metavar="PORT",
                    help="serve the run live over the Foxglove WebSocket protocol (default port 8765)")
    ap.add_argument("--markers", action="store_true",
                    help="add the stack_markers node: MarkerArray of the outputs on /tps/viz/markers (recorded)")
    ap.add_argument("--with-inputs", action="store_true", help="also write the played inputs to result.mcap")
    ap.add_argument("--compress", action="store_true", help="zstd-compress result.mcap")
    ap.add_argument("--max-frames", type=int, default=None, help="stop after this many lidar frames")
    ap.add_argument("--domain-id", type=int, default=None,
                    help="ROS domain (default $ROS_DOMAIN_ID, else a free one claimed with a lock file)")
    ap.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    return ap


def _summary(result: dict) -> str:
    lines = [f"frames {result['frames']}, unreadable {result['unreadable']}, "
             f"fallback share {result['fallback_share']}, monitor: {result['monitor_state_share'] or 'none'}"]
    for node, lat in result["latency_ms"].items():
        lat = lat or {}
        lines.append(f"  {node:<22} latency p50 {lat.get('p50', '-')} p95 {lat.get('p95', '-')} "
                     f"p99 {lat.get('p99', '-')} ms, dropped {result['dropped'].get(node)}")
    ol = (result.get("open_loop") or {}).get("selected")
    if ol:
        lines.append("  open loop (selected): " + ", ".join(
            f"L2@{k} {v['l2_m']} m" for k, v in ol.items() if isinstance(v, dict)))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Console script ``tps-replay``."""
    args = build_parser().parse_args(argv)
    from tps_bringup.graph import GraphError

    from tps_eval.replay.bagio import BagError
    from tps_eval.replay.config import ReplayConfigError, load_config
    from tps_eval.replay.player import ReplayError, ReplayOptions, run_replay

    try:
        config = load_config(args.config)
        changes = {}
        if args.graph:
            changes["graph"] = args.graph
        if args.nodes:
            changes["nodes"] = tuple(n.strip() for n in args.nodes.split(",") if n.strip())
        if args.set:
            changes["set"] = (*config.set, *args.set)
        if args.markers:
            changes["markers"] = True
        config = config.with_overrides(**changes)
        if not args.rate > 0:
            raise ReplayConfigError(f"--rate must be > 0, got {args.rate}")
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        from tps_eval.replay.config import repo_root

        out = Path(args.out) if args.out else repo_root() / "runs" / "replay" / f"{Path(args.bag).stem}-{stamp}"
        options = ReplayOptions(out_dir=out, mode=args.mode, rate=args.rate, domain_id=args.domain_id,
                                foxglove_port=args.foxglove, with_inputs=args.with_inputs,
                                compress=args.compress, progress=not args.quiet, max_frames=args.max_frames,
                                plots=not args.no_plots)
        result = run_replay(args.bag, config, options, log=lambda s: print(s, file=sys.stderr, flush=True))
    except (ReplayConfigError, GraphError, BagError, ValueError, FileExistsError) as exc:
        print(f"tps-replay: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ReplayError as exc:
        print(f"tps-replay: failed: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print("tps-replay: interrupted", file=sys.stderr)
        return 130
    print(_summary(result))
    print(f"report: {result['files']['markdown']}")
    print(f"result bag: {result['files']['result_bag']}")
    if args.quiet:
        print(json.dumps({"frames": result["frames"], "dropped": result["dropped"]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
