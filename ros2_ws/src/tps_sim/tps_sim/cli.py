"""``tps-sim``: record bags, generate training datasets, run the bridge node.

Subcommands: ``record`` (one episode to a rosbag2, no DDS), ``dataset`` (training shards, in
parallel), ``run`` (the ``sim_bridge`` node), ``scenarios`` (list them). Bad configuration exits
with status 2 and one line naming the field, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tps_common.params import ParameterError, load_schema, validate

EXIT_BAD_CONFIG = 2
EXIT_FAILED = 1


def _scenarios() -> dict:
    try:
        from tps_sim.world import SCENARIOS
    except ImportError:  # the world package is missing or broken: say so instead of crashing
        return {}
    return dict(SCENARIOS)


def _describe(spec) -> str:
    for attr in ("description", "summary", "doc"):
        text = getattr(spec, attr, None) if not isinstance(spec, dict) else spec.get(attr)
        if text:
            family = getattr(spec, "family", None) if not isinstance(spec, dict) else spec.get("family")
            return f"{text}" + (f" [{family}]" if family else "")
    return ""


def scenario_listing() -> str:
    """One line per scenario: name and description."""
    scen = _scenarios()
    if not scen:
        return "  (tps_sim.world is not importable: no scenarios available)"
    return "\n".join(f"  {name:<14} {_describe(spec)}" for name, spec in scen.items())


def _bridge_values(args: argparse.Namespace) -> dict:
    """Bridge parameters from record/run options, validated against the node's schema."""
    values = {
        "scenario": args.scenario, "seed": args.seed, "density": args.density,
        "clutter": args.clutter, "ego_driver": args.ego_driver, "duration_s": args.duration,
        "lidar_beams": args.lidar_beams, "lidar_azimuth_steps": args.lidar_azimuth_steps,
        "faults": args.faults, "obstacles": args.obstacles, "adversary": args.adversary,
    }
    values = {k: v for k, v in values.items() if v is not None}
    return validate(values, load_schema("sim_bridge"), allow_unknown=False)


def _check_world(scenario: str, seed: int, density: float, clutter: str, duration_s: float,
                 adversary: str = "") -> None:
    from tps_sim.bridge import parse_adversary
    from tps_sim.world import WorldConfig

    WorldConfig(scenario=scenario, seed=seed, density=density, clutter=clutter,
                duration_s=duration_s, adversary=parse_adversary(adversary)).validate()


def _check_lidar(beams: int, azimuth_steps: int) -> None:
    from tps_sim.sensors.lidar import LidarParams

    LidarParams(beams=beams, azimuth_steps=azimuth_steps)


def _add_episode_options(p: argparse.ArgumentParser, *, default_driver: str) -> None:
    p.add_argument("--scenario", default="merge", help="scenario name (see `tps-sim scenarios`)")
    p.add_argument("--seed", type=int, default=0, help="episode seed (tps_sim.splits)")
    p.add_argument("--duration", type=float, default=30.0, help="episode length [s, sim time]")
    p.add_argument("--density", type=float, default=1.0, help="traffic density factor (>= 0)")
    p.add_argument("--clutter", default="medium", help="none | low | medium | high")
    p.add_argument("--ego-driver", default=default_driver, choices=["expert", "external"],
                   help="expert: SUMO drives the ego; external: the ego follows controls")
    p.add_argument("--faults", default="", help="sensor faults: YAML/JSON text or file")
    p.add_argument("--obstacles", default="", help="extra obstacles: JSON list or file")
    p.add_argument("--adversary", default="", help="adversary overrides (WorldConfig.adversary, "
                   "e.g. '{\"cut_gap_m\": 4}'): JSON mapping or file")
    p.add_argument("--lidar-beams", type=int, default=32, help="lidar vertical beams")
    p.add_argument("--lidar-azimuth-steps", type=int, default=1024, help="lidar rays per turn")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (its --help lists the scenarios)."""
    parser = argparse.ArgumentParser(
        prog="tps-sim", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="SUMO-based closed-loop world behind the carla-ros-bridge topic contract.",
        epilog="scenarios:\n" + scenario_listing() + "\n\nsplits (tps_sim.splits): train 0..999, "
               "val 1000..1099, test 9000..9099 (held out)")
    sub = parser.add_subparsers(dest="command", metavar="{record,dataset,run,scenarios}")

    rec = sub.add_parser("record", help="run one episode in-process and write a rosbag2 (MCAP)",
                         description="Run one episode in-process (no DDS) and write the bridge's "
                                     "topics to a rosbag2.")
    _add_episode_options(rec, default_driver="expert")
    rec.add_argument("-o", "--output", required=True,
                     help="output: FILE.mcap (one MCAP file) or a rosbag2 directory")
    rec.add_argument("--storage", default="mcap", choices=["mcap", "sqlite3"],
                     help="rosbag2 storage plugin")
    rec.add_argument("--compress", action="store_true",
                     help="zstd compression (MCAP chunks / sqlite3 messages)")
    rec.add_argument("--camera-every", type=int, default=5,
                     help="record the camera every N steps (0 = no camera)")
    rec.add_argument("--no-progress", action="store_true", help="no progress bar")

    from tps_sim import dataset

    ds = sub.add_parser("dataset", help="generate training shards (expert episodes, parallel)",
                        description="Generate one .npz shard per expert episode under "
                                    "OUT/<split>/<scenario>/seed<seed>.npz (tps_sim/dataset.py).")
    dataset.add_arguments(ds)
    ds.add_argument("--no-progress", action="store_true", help="no progress bar")

    run = sub.add_parser("run", help="start the sim_bridge node (same as the `sim_bridge` script)",
                         description="Start the sim_bridge node. Options map to its parameters "
                                     "(config/sim_bridge.param.yaml); append --ros-args ... for "
                                     "anything else.")
    _add_episode_options(run, default_driver="external")
    run.add_argument("--params-file", default=None, help="a sim_bridge .param.yaml")
    run.add_argument("--async", dest="asynchronous", action="store_true",
                     help="free-running (synchronous: false)")
    run.add_argument("--camera", action="store_true", help="publish the camera")
    run.add_argument("--episode-log", default=None, help="per-step episode log (.npz/.json.gz)")
    run.add_argument("--exit-on-end", action="store_true", help="exit 0 when the episode ends")

    sub.add_parser("scenarios", help="list the scenarios")
    return parser


def _cmd_record(args: argparse.Namespace) -> int:
    from tps_sim.bridge import BridgeParams
    from tps_sim.recording import record

    values = _bridge_values(args)
    if args.camera_every < 0:
        raise ParameterError(f"--camera-every must be >= 0, got {args.camera_every}")
    _check_world(values["scenario"], values["seed"], values["density"], values["clutter"],
                 values["duration_s"], values.get("adversary", ""))
    _check_lidar(values["lidar_beams"], values["lidar_azimuth_steps"])
    values["camera_enabled"] = args.camera_every > 0
    values["camera_every_n"] = max(1, args.camera_every)
    params = BridgeParams.from_values(values)
    path = record(params, args.output, storage=args.storage, compress=args.compress,
                  progress=not args.no_progress)
    print(f"wrote {path}")
    return 0


def _cmd_dataset(args: argparse.Namespace) -> int:
    from tps_sim.dataset import generate_dataset

    scen = _scenarios()
    names = list(scen) if args.scenarios == "all" else [s.strip() for s in args.scenarios.split(",")
                                                        if s.strip()]
    unknown = [n for n in names if n not in scen]
    if unknown or not names:
        raise ParameterError(f"--scenarios: unknown scenario(s) {unknown or names}; "
                             f"known: {sorted(scen)}")
    for name, value, low in (("--episodes", args.episodes, 1), ("--workers", args.workers, 1),
                             ("--frame-stride", args.frame_stride, 1),
                             ("--image-every", args.image_every, 0),
                             ("--first-seed-index", args.first_seed_index, 0)):
        if value < low:
            raise ParameterError(f"{name} must be >= {low}, got {value}")
    _check_world(names[0], 0, args.density, args.clutter or "none", args.duration)
    _check_lidar(args.lidar_beams, args.lidar_azimuth_steps)
    image_size = None
    if args.image_size:
        try:
            image_size = tuple(int(v) for v in args.image_size.lower().split("x"))
            if len(image_size) != 2 or min(image_size) < 2:
                raise ValueError
        except ValueError:
            raise ParameterError(f"--image-size must be WxH (pixels >= 2), got {args.image_size!r}") from None
    if args.from_search:
        return _dataset_from_search(args, image_size)
    paths, errors = generate_dataset(
        names, args.split, args.episodes, args.out, workers=args.workers,
        duration_s=args.duration, frame_stride=args.frame_stride, image_every=args.image_every,
        clutter=args.clutter, density=args.density, lidar_beams=args.lidar_beams,
        lidar_azimuth_steps=args.lidar_azimuth_steps, overwrite=args.overwrite,
        progress=not args.no_progress, first_seed_index=args.first_seed_index,
        image_size=image_size)
    for err in errors:
        print(f"tps-sim dataset: episode failed: {err}", file=sys.stderr)
    print(json.dumps({"split": args.split, "shards": len(paths), "failed": len(errors),
                      "out": str(args.out)}))
    return EXIT_FAILED if errors else 0


def _dataset_from_search(args: argparse.Namespace, image_size: tuple | None) -> int:
    """``tps-sim dataset --from-search RESULTS``: targeted episodes around a search's failures,
    with a manifest ``<out>/targeted-<space>-s<seed>.json`` saying where each came from."""
    from tps_sim.dataset import run_tasks, targeted_tasks

    src = Path(args.from_search)
    src = src / "search.json" if src.is_dir() else src
    try:
        summary = json.loads(src.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ParameterError(f"--from-search: cannot read {src}: {exc}") from None
    try:
        tasks = targeted_tasks(summary, args.per_failure, args.perturb)
    except ValueError as exc:
        raise ParameterError(f"--from-search {src}: {exc}") from None
    common = dict(out_dir=str(args.out), frame_stride=args.frame_stride,
                  image_every=args.image_every, lidar_beams=args.lidar_beams,
                  lidar_azimuth_steps=args.lidar_azimuth_steps, overwrite=args.overwrite,
                  image_size=image_size)
    runnable = [{k: v for k, v in t.items() if k not in ("source", "detector_faults")} | common
                for t in tasks]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / f"targeted-{summary.get('space', 'search')}-s{summary.get('seed', 0)}.json"
    manifest.write_text(json.dumps({"search": str(src), "per_failure": args.per_failure,
                                    "perturb": args.perturb, "episodes": tasks}, indent=1))
    paths, errors = run_tasks(runnable, workers=args.workers, progress=not args.no_progress,
                              label="targeted dataset")
    for err in errors:
        print(f"tps-sim dataset: episode failed: {err}", file=sys.stderr)
    detector = sum(1 for t in tasks if t["detector_faults"])
    if detector:
        print(f"tps-sim dataset: {detector} of {len(tasks)} episodes come from failures under a "
              f"detector fault, which sensor data cannot carry (listed in {manifest})",
              file=sys.stderr)
    print(json.dumps({"split": "train", "shards": len(paths), "failed": len(errors),
                      "failures": len({(t['source']['arm'], t['source']['trial']) for t in tasks}),
                      "detector_faults_not_in_data": detector, "manifest": str(manifest),
                      "out": str(args.out)}))
    return EXIT_FAILED if errors else 0


def _cmd_run(args: argparse.Namespace, ros_args: list[str]) -> int:
    values = _bridge_values(args)
    _check_world(values["scenario"], values["seed"], values["density"], values["clutter"],
                 values["duration_s"], values.get("adversary", ""))
    overrides = dict(values)
    overrides["synchronous"] = not args.asynchronous
    overrides["camera_enabled"] = bool(args.camera)
    overrides["exit_on_end"] = bool(args.exit_on_end)
    if args.episode_log:
        overrides["episode_log"] = args.episode_log
    argv = ["sim_bridge", "--ros-args"]
    if args.params_file:
        argv += ["--params-file", args.params_file]
    for key, value in overrides.items():
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str):
            text = json.dumps(value) if (value == "" or any(c in value for c in " :,[]{}'\"")) else value
        else:
            text = repr(value)
        argv += ["-p", f"{key}:={text}"]
    argv += [a for a in ros_args if a != "--ros-args"]
    from tps_sim.nodes.sim_bridge import main as bridge_main

    bridge_main(argv)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Console script ``tps-sim``; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    ros_args: list[str] = []
    if "--ros-args" in argv:
        i = argv.index("--ros-args")
        argv, ros_args = argv[:i], argv[i:]
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_BAD_CONFIG
    try:
        if args.command == "scenarios":
            print(scenario_listing())
            return 0
        if args.command == "record":
            return _cmd_record(args)
        if args.command == "dataset":
            return _cmd_dataset(args)
        return _cmd_run(args, ros_args)
    except (ParameterError, ValueError, FileExistsError) as exc:
        # ConfigError (tps_sim.world) and LidarParams errors are ValueErrors naming the field.
        print(f"tps-sim {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
